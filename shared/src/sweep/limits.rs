//! The size-limits step: the general cache's Postgres tier (`cache_store`) brought
//! back under its caps, least recently used rows first (`last_used_at`), each
//! namespace's entry cap (`CACHE_KV_MAX_ENTRIES`) and then the table's byte cap
//! (`CACHE_KV_MAX_SIZE_MB`). Runs after the expired rows are gone, so a cap never
//! costs a live row while a dead one is left. Redis and memory copies of an evicted
//! row live out their own (short) tier lifetimes.

use super::{CACHE_LIMIT_BATCH, MAX_BATCHES};
use crate::app::App;
use crate::cache::kv::{Evicted, KvError};

/// Evicts what is over the caps; what it did, summed over the caps.
pub(super) async fn limits(app: &App) -> Result<Evicted, KvError> {
    let caps = &app.config.kv_limits;
    let mut total = Evicted::default();
    let mut add = |e: Evicted| {
        total.rows += e.rows;
        total.bytes += e.bytes;
        total.batches += e.batches;
        total.more |= e.more;
    };
    for (namespace, &max) in &caps.max_entries {
        add(app
            .kv_store
            .evict_over_entries(namespace, max, CACHE_LIMIT_BATCH, MAX_BATCHES as u32)
            .await?);
    }
    if let Some(max) = caps.max_bytes {
        add(app
            .kv_store
            .evict_over_bytes(max, CACHE_LIMIT_BATCH, MAX_BATCHES as u32)
            .await?);
    }
    if total.rows > 0 {
        tracing::info!(
            rows = total.rows,
            bytes = total.bytes,
            "cache_store over its size limits: evicted"
        );
    }
    Ok(total)
}
