//! The Postgres tier: the `cache_store` table (migrations 0002 and 0009), a JSONB
//! document per `(namespace, tenant, key)`.
//!
//! Every read filters on `expires_at > now()` (or `stale_until` on the stale path)
//! in the query itself, so a row past its expiry is never served, swept or not;
//! [`PostgresBackend::cleanup_expired`] deletes such rows in bounded batches. A row
//! without expiry (an entry kept [`FOREVER`]) has both columns NULL.
//! Batches are one statement over `unnest` arrays, and a read counts the hit in
//! the same statement (`UPDATE … RETURNING`) when hit counting is on. Invalidation deletes the matching
//! rows through an index (primary key, tenant, or the GIN index on tags), so it
//! costs the rows it removes, never the table. Each call has a timeout and a
//! circuit breaker: with Postgres down, the tiers above keep answering.
//!
//! `last_used_at` orders the size limits' evictions (least recently used first,
//! [`PostgresBackend::evict_over_entries`], [`PostgresBackend::evict_over_bytes`]).
//! A write sets it; a read moves it forward only when it is older than
//! [`TOUCH_EVERY`], in the read's own statement, so that a hot row costs one
//! row write per interval rather than one per hit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::db::Db;
use async_trait::async_trait;
use serde::Serialize;
use tokio_postgres::Row;
use tracing::instrument;

use super::backend::{Backend, Entry, Guard, Invalidated, NamespaceUsage, Tier, Usage};
use super::key::{Key, Scope};
use super::{KvError, FOREVER};
pub use crate::policy::tiers::KV_TOUCH_EVERY as TOUCH_EVERY;

/// The entry's columns; a row without expiry reads as a TTL of -1 ([`FOREVER`]):
/// spelled out, as `greatest` ignores a NULL.
const COLUMNS: &str = "s.value::text, \
    CASE WHEN s.expires_at IS NULL THEN -1 \
         ELSE greatest(0, (extract(epoch from (s.expires_at - now())) * 1000))::int8 END, \
    CASE WHEN s.stale_until IS NULL THEN 0 \
         ELSE greatest(0, (extract(epoch from (s.stale_until - greatest(s.expires_at, now()))) * 1000))::int8 END, \
    s.compute_ms, s.tags";

/// A row a read may return: within its TTL, or without one.
const FRESH: &str = "(s.expires_at IS NULL OR s.expires_at > now())";
/// A row the stale path may return: within its grace, or without expiry.
const SERVABLE: &str = "(s.stale_until IS NULL OR s.stale_until > now())";

/// What a sweep of expired rows did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cleanup {
    pub deleted: u64,
    pub batches: u32,
    /// Whether rows past their life may remain (the batch budget ran out).
    pub more: bool,
}

/// What enforcing the size limits deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Evicted {
    pub rows: u64,
    pub bytes: u64,
    pub batches: u32,
    /// Whether the statement budget ran out before the limit was met.
    pub more: bool,
}

/// One row, as the operator listing shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    pub key: String,
    pub bytes: i64,
    pub hits: i64,
    /// `None`: kept without expiry.
    pub expires_in_ms: Option<i64>,
}

pub struct PostgresBackend {
    pool: Db,
    guard: Guard,
    count_hits: bool,
    statements: AtomicU64,
}

impl PostgresBackend {
    pub fn new(pool: Db, timeout: Duration) -> Self {
        PostgresBackend {
            pool,
            guard: Guard::new(Tier::Postgres, timeout),
            count_hits: false,
            statements: AtomicU64::new(0),
        }
    }

    /// Counts each hit in the row's `hits` (`UPDATE … RETURNING`, same round trip).
    /// Off by default: a counted read is a synchronous row write, measured at about
    /// 40x a plain `SELECT` (`benches/cache.rs`); without it a read is a `SELECT`.
    pub fn count_hits(mut self, on: bool) -> Self {
        self.count_hits = on;
        self
    }

    /// Statements sent so far (each is one round trip), for tests and benchmarks.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, KvError> {
        self.guard
            .run(crate::db::guarded(async {
                let client = self
                    .pool
                    .conn()
                    .await
                    .map_err(|e| KvError::Pool(e.to_string()))?;
                let stmt = client.prepare_cached(sql).await?;
                self.statements.fetch_add(1, Ordering::Relaxed);
                Ok(client.query(&stmt, params).await?)
            }))
            .await
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, KvError> {
        self.guard
            .run(crate::db::guarded(async {
                let client = self
                    .pool
                    .conn()
                    .await
                    .map_err(|e| KvError::Pool(e.to_string()))?;
                let stmt = client.prepare_cached(sql).await?;
                self.statements.fetch_add(1, Ordering::Relaxed);
                Ok(client.execute(&stmt, params).await?)
            }))
            .await
    }

    /// Deletes rows past their life (expiry plus grace), `batch` rows per
    /// statement, at most `max_batches` statements.
    #[instrument(skip_all, fields(batch = batch, max_batches = max_batches))]
    pub async fn cleanup_expired(&self, batch: i64, max_batches: u32) -> Result<Cleanup, KvError> {
        let mut out = Cleanup::default();
        let batch = batch.clamp(1, 100_000);
        while out.batches < max_batches {
            let n = self
                .execute(
                    "DELETE FROM cache_store WHERE ctid = ANY(ARRAY(
                         SELECT ctid FROM cache_store WHERE stale_until <= now()
                         LIMIT $1 FOR UPDATE SKIP LOCKED))",
                    &[&batch],
                )
                .await?;
            out.batches += 1;
            out.deleted += n;
            if (n as i64) < batch {
                return Ok(out);
            }
        }
        out.more = true;
        Ok(out)
    }

    /// Deletes up to `batch` rows of `tenant` (as keys store it, escaped), or of
    /// every tenant with `None`, whatever their expiry: a tenant's deletion and the
    /// operator's clear (`sweep::purge`). Returns the rows deleted.
    #[instrument(skip_all, fields(tenant = tenant.unwrap_or("*"), batch = batch))]
    pub async fn delete_rows(&self, tenant: Option<&str>, batch: i64) -> Result<u64, KvError> {
        let batch = batch.clamp(1, 100_000);
        match tenant {
            Some(t) => {
                self.execute(
                    "DELETE FROM cache_store WHERE ctid = ANY(ARRAY(
                         SELECT ctid FROM cache_store WHERE tenant = $1 LIMIT $2))",
                    &[&t, &batch],
                )
                .await
            }
            None => {
                self.execute(
                    "DELETE FROM cache_store WHERE ctid = ANY(ARRAY(
                         SELECT ctid FROM cache_store LIMIT $1))",
                    &[&batch],
                )
                .await
            }
        }
    }

    /// Deletes the least recently used rows of `namespace` beyond `max` rows,
    /// at most `batch` rows per statement and `max_batches` statements.
    #[instrument(skip_all, fields(%namespace, max = max))]
    pub async fn evict_over_entries(
        &self,
        namespace: &str,
        max: u64,
        batch: i64,
        max_batches: u32,
    ) -> Result<Evicted, KvError> {
        let rows = self
            .query(
                "SELECT count(*) FROM cache_store WHERE namespace = $1",
                &[&namespace],
            )
            .await?;
        let count: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
        let mut excess = (count.max(0) as u64).saturating_sub(max);
        let mut out = Evicted::default();
        while excess > 0 {
            if out.batches >= max_batches {
                out.more = true;
                break;
            }
            let take = excess.min(batch.clamp(1, 100_000) as u64) as i64;
            let (n, bytes) = self
                .deleted(
                    "WITH gone AS (
                        DELETE FROM cache_store WHERE ctid = ANY(ARRAY(
                            SELECT ctid FROM cache_store WHERE namespace = $1
                             ORDER BY last_used_at LIMIT $2 FOR UPDATE SKIP LOCKED))
                        RETURNING pg_column_size(value) AS b)
                     SELECT count(*), coalesce(sum(b), 0)::int8 FROM gone",
                    &[&namespace, &take],
                )
                .await?;
            out.batches += 1;
            out.rows += n;
            out.bytes += bytes;
            if n == 0 {
                // Every candidate is locked by a concurrent sweep: it evicts them.
                break;
            }
            excess = excess.saturating_sub(n);
        }
        Ok(out)
    }

    /// Deletes the least recently used rows, whatever their namespace, until the
    /// values' bytes (`pg_column_size`, the measure of [`Backend::usage`]'s bytes,
    /// expired rows included) are at most `max_bytes`: at most `batch` rows per statement and `max_batches`
    /// statements, and no row more than needed.
    #[instrument(skip_all, fields(max_bytes = max_bytes))]
    pub async fn evict_over_bytes(
        &self,
        max_bytes: u64,
        batch: i64,
        max_batches: u32,
    ) -> Result<Evicted, KvError> {
        let rows = self
            .query(
                "SELECT coalesce(sum(pg_column_size(value)), 0)::int8 FROM cache_store",
                &[],
            )
            .await?;
        let total: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
        let mut excess = (total.max(0) as u64).saturating_sub(max_bytes);
        let mut out = Evicted::default();
        while excess > 0 {
            if out.batches >= max_batches {
                out.more = true;
                break;
            }
            let need = excess.min(i64::MAX as u64) as i64;
            // A window over the locked batch keeps the rows up to the first one
            // that brings the deleted bytes to `need`.
            let (n, bytes) = self
                .deleted(
                    "WITH pick AS (
                        SELECT ctid AS id, last_used_at AS used, pg_column_size(value)::int8 AS b
                          FROM cache_store ORDER BY last_used_at LIMIT $1::int8 FOR UPDATE SKIP LOCKED),
                     upto AS (
                        SELECT id FROM (
                            SELECT id, (sum(b) OVER (ORDER BY used ROWS UNBOUNDED PRECEDING))::int8 - b AS before
                              FROM pick) w
                         WHERE before < $2::int8),
                     gone AS (
                        DELETE FROM cache_store WHERE ctid = ANY(ARRAY(SELECT id FROM upto))
                        RETURNING pg_column_size(value) AS b)
                     SELECT count(*), coalesce(sum(b), 0)::int8 FROM gone",
                    &[&batch.clamp(1, 100_000), &need],
                )
                .await?;
            out.batches += 1;
            out.rows += n;
            out.bytes += bytes;
            if n == 0 {
                break;
            }
            excess = excess.saturating_sub(bytes);
        }
        Ok(out)
    }

    /// Runs a `… SELECT count(*), sum(bytes) FROM gone` statement.
    async fn deleted(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(u64, u64), KvError> {
        let rows = self.query(sql, params).await?;
        let (n, bytes): (i64, i64) = rows.first().map(|r| (r.get(0), r.get(1))).unwrap_or((0, 0));
        Ok((n.max(0) as u64, bytes.max(0) as u64))
    }

    /// Keys of a namespace (optionally one tenant's), most recent first.
    #[instrument(skip_all, fields(%namespace, ?tenant, limit = limit))]
    pub async fn list_keys(
        &self,
        namespace: &str,
        tenant: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Listed>, KvError> {
        let rows = self
            .query(
                "SELECT namespace || ':' || tenant || ':' || key, pg_column_size(value)::int8, hits,
                        (extract(epoch from (expires_at - now())) * 1000)::int8
                   FROM cache_store
                  WHERE namespace = $1 AND ($2::text IS NULL OR tenant = $2)
                    AND (expires_at IS NULL OR expires_at > now())
                  ORDER BY created_at DESC LIMIT $3",
                &[&namespace, &tenant, &limit.clamp(1, 10_000)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Listed {
                key: r.get(0),
                bytes: r.get(1),
                hits: r.get(2),
                expires_in_ms: r.get(3),
            })
            .collect())
    }

    async fn select(&self, key: &Key) -> Result<Option<Entry>, KvError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM cache_store s
              WHERE s.namespace = $1 AND s.tenant = $2 AND s.key = $3 AND {FRESH}"
        );
        let rows = self
            .query(&sql, &[&key.namespace(), &key.tenant(), &key.id()])
            .await?;
        Ok(rows.first().map(entry))
    }
}

/// A TTL column as [`COLUMNS`] reads it: -1 is a row without expiry.
fn ttl_of(ms: i64) -> Duration {
    if ms < 0 {
        FOREVER
    } else {
        Duration::from_millis(ms as u64)
    }
}

fn entry(r: &Row) -> Entry {
    let value: String = r.get(0);
    let ttl: i64 = r.get(1);
    let grace: i64 = r.get(2);
    let compute: i32 = r.get(3);
    Entry {
        value: value.into_bytes().into(),
        ttl: ttl_of(ttl),
        grace: Duration::from_millis(grace.max(0) as u64),
        compute_ms: compute.max(0) as u32,
        tags: r.get(4),
        memo: Default::default(),
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// A TTL as stored: `None` (NULL, no expiry) for [`FOREVER`].
fn ms_or_forever(d: Duration) -> Option<i64> {
    (d < FOREVER).then(|| ms(d))
}

/// Escapes LIKE's wildcards so that a key prefix matches literally.
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str(":%");
    out
}

#[async_trait]
impl Backend for PostgresBackend {
    fn tier(&self) -> Tier {
        Tier::Postgres
    }

    #[instrument(skip_all, fields(keys = keys.len()))]
    async fn get_many(&self, keys: &[&Key], stale: bool) -> Result<Vec<Option<Entry>>, KvError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let ns: Vec<&str> = keys.iter().map(|k| k.namespace()).collect();
        let tenants: Vec<&str> = keys.iter().map(|k| k.tenant()).collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.id()).collect();
        let live = if stale { SERVABLE } else { FRESH };
        let touch = ms(TOUCH_EVERY);
        let sql = if self.count_hits {
            format!(
                "UPDATE cache_store s SET hits = s.hits + 1, last_used_at = now()
                   FROM unnest($1::text[], $2::text[], $3::text[]) AS k(namespace, tenant, key)
                  WHERE s.namespace = k.namespace AND s.tenant = k.tenant AND s.key = k.key
                    AND {live}
              RETURNING s.namespace, s.tenant, s.key, {COLUMNS}"
            )
        } else {
            // The touch is a data-modifying CTE: it runs in the read's round trip and
            // writes only rows whose last use is older than TOUCH_EVERY. Its condition
            // is on `t`, so a concurrent reader that waited for the row lock re-checks
            // it on the new row version and skips the row.
            format!(
                "WITH hit AS (
                    SELECT s.namespace, s.tenant, s.key, {COLUMNS}, s.last_used_at AS used
                      FROM cache_store s
                      JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(namespace, tenant, key)
                        ON s.namespace = k.namespace AND s.tenant = k.tenant AND s.key = k.key
                     WHERE {live}),
                 touched AS (
                    UPDATE cache_store t SET last_used_at = now()
                      FROM hit
                     WHERE t.namespace = hit.namespace AND t.tenant = hit.tenant
                       AND t.key = hit.key AND hit.used < now() - $4::int8 * interval '1 millisecond'
                       AND t.last_used_at < now() - $4::int8 * interval '1 millisecond')
                 SELECT * FROM hit"
            )
        };
        let rows = if self.count_hits {
            self.query(&sql, &[&ns, &tenants, &ids]).await?
        } else {
            self.query(&sql, &[&ns, &tenants, &ids, &touch]).await?
        };
        let mut found: HashMap<(String, String, String), Entry> = HashMap::new();
        for r in &rows {
            let shifted = ShiftedRow(r);
            found.insert((r.get(0), r.get(1), r.get(2)), shifted.entry());
        }
        Ok(keys
            .iter()
            .map(|k| {
                found
                    .get(&(
                        k.namespace().to_owned(),
                        k.tenant().to_owned(),
                        k.id().to_owned(),
                    ))
                    .cloned()
            })
            .collect())
    }

    #[instrument(skip_all, fields(keys = items.len()))]
    async fn set_many(&self, items: &[(&Key, &Entry)]) -> Result<(), KvError> {
        // One row per key (the last write wins), as ON CONFLICT cannot touch a row twice.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, (k, e)) in items.iter().enumerate() {
            if e.is_fresh() {
                last.insert(k.full(), i);
            }
        }
        if last.is_empty() {
            return Ok(());
        }
        let mut idx: Vec<usize> = last.into_values().collect();
        idx.sort_unstable();
        let pick = |f: &dyn Fn(&Key, &Entry) -> String| -> Vec<String> {
            idx.iter().map(|&i| f(items[i].0, items[i].1)).collect()
        };
        let ns = pick(&|k, _| k.namespace().to_owned());
        let tenants = pick(&|k, _| k.tenant().to_owned());
        let ids = pick(&|k, _| k.id().to_owned());
        let values = idx
            .iter()
            .map(|&i| String::from_utf8(items[i].1.value.to_vec()))
            .collect::<Result<Vec<String>, _>>()
            .map_err(|_| KvError::Protocol("value is not UTF-8 JSON".into()))?;
        let tags = pick(&|_, e| e.tags.join("\n"));
        let ttl: Vec<Option<i64>> = idx.iter().map(|&i| ms_or_forever(items[i].1.ttl)).collect();
        let grace: Vec<i64> = idx.iter().map(|&i| ms(items[i].1.grace)).collect();
        let compute: Vec<i32> = idx
            .iter()
            .map(|&i| items[i].1.compute_ms.min(i32::MAX as u32) as i32)
            .collect();
        self.execute(
            "INSERT INTO cache_store AS s
                    (namespace, tenant, key, value, tags, expires_at, stale_until, compute_ms)
             SELECT k.namespace, k.tenant, k.key, k.value::jsonb,
                    coalesce(string_to_array(nullif(k.tags, ''), E'\\n'), '{}'),
                    now() + k.ttl * interval '1 millisecond',
                    now() + (k.ttl + k.grace) * interval '1 millisecond',
                    k.compute
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::int8[], $7::int8[], $8::int4[])
                    AS k(namespace, tenant, key, value, tags, ttl, grace, compute)
             ON CONFLICT (namespace, tenant, key) DO UPDATE
                SET value = EXCLUDED.value, tags = EXCLUDED.tags, created_at = now(),
                    expires_at = EXCLUDED.expires_at, stale_until = EXCLUDED.stale_until,
                    compute_ms = EXCLUDED.compute_ms, hits = 0, last_used_at = now()",
            &[&ns, &tenants, &ids, &values, &tags, &ttl, &grace, &compute],
        )
        .await?;
        Ok(())
    }

    #[instrument(skip_all, fields(key = key.full()))]
    async fn set_if_absent(&self, key: &Key, entry: &Entry) -> Result<Option<Entry>, KvError> {
        let value = std::str::from_utf8(&entry.value)
            .map_err(|_| KvError::Protocol("value is not UTF-8 JSON".into()))?;
        let tags: Vec<&str> = entry.tags.iter().map(String::as_str).collect();
        // An expired row counts as absent: it is replaced, in the same statement.
        // A loser sees the winner's row only after the winner commits, which is
        // when ON CONFLICT stops waiting; hence the separate read below.
        for _ in 0..3 {
            let n = self
                .execute(
                    "INSERT INTO cache_store AS s
                            (namespace, tenant, key, value, tags, expires_at, stale_until, compute_ms)
                     VALUES ($1, $2, $3, $4::text::jsonb, $5::text[],
                             now() + $6::int8 * interval '1 millisecond',
                             now() + ($6::int8 + $7::int8) * interval '1 millisecond', $8::int4)
                     ON CONFLICT (namespace, tenant, key) DO UPDATE
                        SET value = EXCLUDED.value, tags = EXCLUDED.tags, created_at = now(),
                            expires_at = EXCLUDED.expires_at, stale_until = EXCLUDED.stale_until,
                            compute_ms = EXCLUDED.compute_ms, hits = 0, last_used_at = now()
                      WHERE s.expires_at <= now()",
                    &[
                        &key.namespace(),
                        &key.tenant(),
                        &key.id(),
                        &value,
                        &tags,
                        &ms_or_forever(entry.ttl),
                        &ms(entry.grace),
                        &(entry.compute_ms.min(i32::MAX as u32) as i32),
                    ],
                )
                .await?;
            if n == 1 {
                return Ok(None);
            }
            // The winner's row may expire or be deleted before we read it: try again.
            if let Some(existing) = self.select(key).await? {
                return Ok(Some(existing));
            }
        }
        Err(KvError::Protocol(
            "set_if_absent: the row kept changing".into(),
        ))
    }

    #[instrument(skip_all, fields(keys = keys.len()))]
    async fn delete_many(&self, keys: &[&Key]) -> Result<u64, KvError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let ns: Vec<&str> = keys.iter().map(|k| k.namespace()).collect();
        let tenants: Vec<&str> = keys.iter().map(|k| k.tenant()).collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.id()).collect();
        self.execute(
            "DELETE FROM cache_store s
              USING unnest($1::text[], $2::text[], $3::text[]) AS k(namespace, tenant, key)
              WHERE s.namespace = k.namespace AND s.tenant = k.tenant AND s.key = k.key",
            &[&ns, &tenants, &ids],
        )
        .await
    }

    #[instrument(skip_all, fields(scope = %scope.id()))]
    async fn invalidate(&self, scope: &Scope) -> Result<Invalidated, KvError> {
        let n = match scope {
            Scope::Namespace(ns) => {
                self.execute("DELETE FROM cache_store WHERE namespace = $1", &[ns])
                    .await?
            }
            Scope::Tenant(t) => {
                self.execute("DELETE FROM cache_store WHERE tenant = $1", &[t])
                    .await?
            }
            Scope::TenantNamespace { tenant, namespace } => {
                self.execute(
                    "DELETE FROM cache_store WHERE namespace = $1 AND tenant = $2",
                    &[namespace, tenant],
                )
                .await?
            }
            Scope::Prefix {
                namespace,
                tenant,
                id_prefix,
            } => {
                self.execute(
                    "DELETE FROM cache_store WHERE namespace = $1 AND tenant = $2 AND key LIKE $3",
                    &[namespace, tenant, &like_prefix(id_prefix)],
                )
                .await?
            }
            Scope::Tag(tag) => {
                self.execute(
                    "DELETE FROM cache_store WHERE tags @> ARRAY[$1::text]",
                    &[tag],
                )
                .await?
            }
        };
        Ok(Invalidated::Removed(n))
    }

    #[instrument(skip_all)]
    async fn usage(&self) -> Result<Usage, KvError> {
        let rows = self
            .query(
                "SELECT namespace,
                        count(*) FILTER (WHERE expires_at IS NULL OR expires_at > now()),
                        count(*) FILTER (WHERE expires_at <= now()),
                        coalesce(sum(pg_column_size(value))
                                 FILTER (WHERE expires_at IS NULL OR expires_at > now()), 0)::int8
                   FROM cache_store GROUP BY namespace",
                &[],
            )
            .await?;
        let mut usage = Usage {
            expired: Some(0),
            ..Usage::default()
        };
        for r in &rows {
            let (active, expired, bytes): (i64, i64, i64) = (r.get(1), r.get(2), r.get(3));
            usage.entries += active as u64;
            usage.bytes += bytes as u64;
            usage.expired = Some(usage.expired.unwrap_or(0) + expired as u64);
            usage.namespaces.insert(
                r.get(0),
                NamespaceUsage {
                    entries: active as u64,
                    bytes: bytes as u64,
                    expired: Some(expired as u64),
                },
            );
        }
        Ok(usage)
    }

    async fn health(&self) -> Result<(), KvError> {
        self.query("SELECT 1", &[]).await.map(|_| ())
    }
}

/// A row of `get_many`, whose entry columns follow the three key columns.
struct ShiftedRow<'a>(&'a Row);

impl ShiftedRow<'_> {
    fn entry(&self) -> Entry {
        let r = self.0;
        let value: String = r.get(3);
        let ttl: i64 = r.get(4);
        let grace: i64 = r.get(5);
        let compute: i32 = r.get(6);
        Entry {
            value: value.into_bytes().into(),
            ttl: ttl_of(ttl),
            grace: Duration::from_millis(grace.max(0) as u64),
            compute_ms: compute.max(0) as u32,
            tags: r.get(7),
            memo: Default::default(),
        }
    }
}
