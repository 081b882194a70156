-- The general-purpose cache's counters summed across the fleet (see
-- `cache::kv::stats` and `tasks::counts`). Each instance counts in memory and sends
-- what it counted since its last send: to a pending hash in Redis, folded here by
-- cache-cleanup with the request counts (same batch markers), or straight here
-- without Redis. One row per (namespace, tier): bounded by the namespaces the
-- program uses. `tier` is `memory`, `redis` or `postgres` (what each tier
-- answered) or `callers` (what callers got, whichever tier answered).
CREATE TABLE cache_counters (
    namespace  text        NOT NULL,
    tier       text        NOT NULL CHECK (tier IN ('callers', 'memory', 'redis', 'postgres')),
    hits       int8        NOT NULL DEFAULT 0,
    misses     int8        NOT NULL DEFAULT 0,
    sets       int8        NOT NULL DEFAULT 0,
    deletes    int8        NOT NULL DEFAULT 0,
    errors     int8        NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, tier)
);
GRANT SELECT, INSERT, UPDATE ON cache_counters TO facesvg_app;
