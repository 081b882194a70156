-- The general-purpose cache's Postgres tier (facesvg::cache::kv::postgres).
-- One row per (namespace, tenant, key); the value is any JSON document.
CREATE TABLE cache_store (
    namespace   text        NOT NULL,
    tenant      text        NOT NULL,
    -- "C" collation: the primary key's btree then serves `key LIKE 'prefix%'`
    -- (delete by key prefix) without a second index.
    key         text COLLATE "C" NOT NULL,
    value       jsonb       NOT NULL,
    tags        text[]      NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Reads never return a row at or past this instant, swept or not.
    expires_at  timestamptz NOT NULL,
    -- Serve-stale-on-error keeps a row this long past expiry, for that path only;
    -- equal to expires_at when no grace was asked for. The sweep deletes past it.
    stale_until timestamptz NOT NULL,
    -- How long the value took to compute, for probabilistic early refresh (XFetch).
    compute_ms  integer     NOT NULL DEFAULT 0,
    hits        bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, tenant, key),
    CHECK (stale_until >= expires_at)
);

-- The sweep, and active/expired counts.
CREATE INDEX cache_store_stale_until ON cache_store (stale_until);
CREATE INDEX cache_store_expires_at ON cache_store (expires_at);
-- Invalidation of one tenant across namespaces.
CREATE INDEX cache_store_tenant ON cache_store (tenant);
-- Invalidation by tag costs the tagged rows, not the table.
CREATE INDEX cache_store_tags ON cache_store USING gin (tags);
-- Queries into stored documents (`value @> '{...}'`).
CREATE INDEX cache_store_value ON cache_store USING gin (value jsonb_path_ops);

-- The functions' own role (see 0004_app_role.sql) reads and writes cache rows; the
-- sweep deletes them. This migration may run before 0004 (a fresh database) or
-- after it (a database migrated before this file existed): create the role the
-- same idempotent way 0004 does, so the grant holds in both orders.
DO $$
BEGIN
    CREATE ROLE facesvg_app LOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON cache_store TO facesvg_app;
