-- The general cache's per-tier lifetimes and size limits (facesvg::cache::kv).

-- A value kept without expiry (a namespace's `@postgres=forever`, such as the V2
-- embeddings) has both instants NULL; reads treat NULL as "never expires" and the
-- sweep of expired rows never reaches it. Either both are NULL or neither is.
ALTER TABLE cache_store ALTER COLUMN expires_at DROP NOT NULL;
ALTER TABLE cache_store ALTER COLUMN stale_until DROP NOT NULL;
ALTER TABLE cache_store DROP CONSTRAINT IF EXISTS cache_store_check;
ALTER TABLE cache_store ADD CONSTRAINT cache_store_lifetime CHECK (
    (expires_at IS NULL AND stale_until IS NULL)
    OR (expires_at IS NOT NULL AND stale_until IS NOT NULL AND stale_until >= expires_at)
);

-- The last write, or the last read older than an hour before it (see
-- `policy::tiers::KV_TOUCH_EVERY`): the order in which the size limits
-- (`CACHE_KV_MAX_ENTRIES`, `CACHE_KV_MAX_SIZE_MB`) evict. A constant default adds
-- the column without rewriting the table; rows written before it all read as
-- used at this migration.
ALTER TABLE cache_store ADD COLUMN last_used_at timestamptz NOT NULL DEFAULT now();
-- Least recently used first: of one namespace (entry caps), of the table (byte cap).
CREATE INDEX cache_store_namespace_lru ON cache_store (namespace, last_used_at);
CREATE INDEX cache_store_lru ON cache_store (last_used_at);
