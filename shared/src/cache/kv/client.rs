//! [`Cache`]: the typed face of the tiers (serde values, per-namespace TTLs) and
//! the owner of `get_or_compute`'s single flight, early refresh and stale serving.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tracing::instrument;

use super::backend::{Backend, Entry, Memo, Tier};
use super::flight::{xfetch_refresh_now, ComputeOptions, FlightOptions, XorShift};
use super::key::{normalize_tag, Key, Scope};
use super::redis::RedisBackend;
use super::stats::Stats;
use super::tiered::{Found, InvalidateReport, Tiered};
use super::{KvError, Ttls};

/// Options of [`Cache::set_with`] and [`Cache::set_if_absent`].
#[derive(Clone, Debug, Default)]
pub struct SetOptions {
    /// The namespace's default when `None`.
    pub ttl: Option<Duration>,
    /// Kept this long past expiry for `get_or_compute`'s stale serving only.
    pub grace: Duration,
    pub tags: Vec<String>,
}

/// Where a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Read from this tier.
    Tier(Tier),
    /// Computed by this call.
    Computed,
    /// Computed by a concurrent caller, in this instance or another.
    Waited,
}

/// A value from [`Cache::get_or_compute`].
#[derive(Clone, Debug, PartialEq)]
pub struct Fetched<T> {
    pub value: T,
    pub source: Source,
    /// Past its expiry, served because the recomputation failed.
    pub stale: bool,
}

/// A read with the details a caller may need to answer honestly.
#[derive(Clone, Debug)]
pub struct Lookup<T> {
    pub value: Option<T>,
    pub tier: Option<Tier>,
    /// Remaining lifetime of the value.
    pub ttl: Option<Duration>,
    /// Tiers that failed: a miss with failures is not a confirmed miss.
    pub failed: Vec<Tier>,
}

/// Outcome of [`Cache::set_if_absent`].
#[derive(Clone, Debug, PartialEq)]
pub enum Conditional<T> {
    /// This call's value was stored.
    Stored,
    /// Another writer's value was there (or won the race): here it is.
    Exists(T),
}

/// Options of [`Cache::warm`].
#[derive(Clone, Debug)]
pub struct WarmOptions {
    /// Keys looked up (and written) per round trip.
    pub batch: usize,
    /// Computations running at once.
    pub concurrency: usize,
    pub set: SetOptions,
}

impl Default for WarmOptions {
    fn default() -> Self {
        WarmOptions {
            batch: 100,
            concurrency: 8,
            set: SetOptions::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WarmReport {
    pub computed: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// What a flight leaves for everyone who joined it.
#[derive(Clone)]
struct Landed {
    value: Arc<[u8]>,
    source: Source,
    stale: bool,
}

type Flight = Arc<OnceCell<Result<Landed, String>>>;

pub struct CacheBuilder {
    tiers: Vec<Arc<dyn Backend>>,
    locks: Option<Arc<RedisBackend>>,
    ttls: Ttls,
    flight: FlightOptions,
    seed: Option<u64>,
}

impl CacheBuilder {
    /// Adds a tier below the ones added before (lookup order).
    pub fn tier(mut self, tier: Arc<dyn Backend>) -> Self {
        self.tiers.push(tier);
        self
    }
    /// The Redis that holds cross-instance single-flight locks. Without it,
    /// single flight holds within the instance only.
    pub fn locks(mut self, redis: Arc<RedisBackend>) -> Self {
        self.locks = Some(redis);
        self
    }
    pub fn ttls(mut self, ttls: Ttls) -> Self {
        self.ttls = ttls;
        self
    }
    pub fn single_flight(mut self, options: FlightOptions) -> Self {
        self.flight = options;
        self
    }
    /// Seeds XFetch's random source (tests); otherwise seeded from the clock.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    pub fn build(self) -> Cache {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
        Cache {
            tiers: Tiered::new(self.tiers, self.ttls),
            locks: self.locks,
            flight: self.flight,
            flights: Mutex::new(HashMap::new()),
            rng: XorShift::new(seed),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            lock_seq: AtomicU64::new(0),
        }
    }
}

pub struct Cache {
    tiers: Tiered,
    locks: Option<Arc<RedisBackend>>,
    flight: FlightOptions,
    flights: Mutex<HashMap<String, Flight>>,
    rng: XorShift,
    instance: String,
    lock_seq: AtomicU64,
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, KvError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// A found entry's value as `T`: the tier's decoded copy when it keeps one of this
/// type, else the JSON decoded (and kept, where the tier has room for it).
fn decode_entry<T: Cacheable>(e: &Entry) -> Result<T, KvError> {
    decode_kept(&e.value, &e.memo)
}

fn decode_kept<T: Cacheable>(json: &[u8], memo: &Memo) -> Result<T, KvError> {
    if let Some(v) = memo.get::<T>() {
        return Ok(v);
    }
    let v: T = decode(json)?;
    if memo.wants() {
        memo.fill(v.clone());
    }
    Ok(v)
}

/// What a typed read can return: JSON-decodable, and cheap enough to clone out of
/// the in-process tier's decoded copy (see [`super::backend::Memo`]).
pub trait Cacheable: DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: DeserializeOwned + Clone + Send + Sync + 'static> Cacheable for T {}

fn encode<T: Serialize>(value: &T) -> Result<Arc<[u8]>, KvError> {
    Ok(serde_json::to_vec(value)?.into())
}

impl Cache {
    pub fn builder() -> CacheBuilder {
        CacheBuilder {
            tiers: Vec::new(),
            locks: None,
            ttls: Ttls::default(),
            flight: FlightOptions::default(),
            seed: None,
        }
    }

    pub fn tiers(&self) -> &[Arc<dyn Backend>] {
        self.tiers.tiers()
    }

    pub fn ttls(&self) -> &Ttls {
        self.tiers.ttls()
    }

    fn entry(&self, key: &Key, value: Arc<[u8]>, opts: &SetOptions) -> Entry {
        Entry {
            value,
            ttl: opts
                .ttl
                .unwrap_or_else(|| self.ttls().for_namespace(key.namespace())),
            grace: opts.grace,
            compute_ms: 0,
            tags: opts.tags.iter().map(|t| normalize_tag(t)).collect(),
            memo: Default::default(),
        }
    }

    /// No span of its own: each tier's I/O has one, and a memory hit does none.
    pub async fn get<T: Cacheable>(&self, key: &Key) -> Result<Option<T>, KvError> {
        // A hit in this process is answered before any future of the walk exists;
        // the walk is boxed so that it does not make every read's future large.
        let mut local = None;
        if self
            .tiers
            .peek_local(key, &mut |json, memo| local = Some(decode_kept(json, memo)))
        {
            if let Some(v) = local {
                return v.map(Some);
            }
        }
        let l = Box::pin(self.lookup(key)).await?;
        Ok(l.value)
    }

    /// Like [`Cache::get`], with the answering tier, the remaining TTL and the
    /// tiers that failed. Errs only if no tier answered at all.
    pub async fn lookup<T: Cacheable>(&self, key: &Key) -> Result<Lookup<T>, KvError> {
        let (found, failed) = self.tiers.get_one(key, false).await;
        if found.is_none() && failed.len() == self.tiers.tiers().len() {
            return Err(KvError::Unavailable);
        }
        Ok(match found {
            Some(f) => Lookup {
                value: Some(decode_entry(&f.entry)?),
                tier: Some(f.tier),
                ttl: Some(f.entry.ttl),
                failed,
            },
            None => Lookup {
                value: None,
                tier: None,
                ttl: None,
                failed,
            },
        })
    }

    pub async fn exists(&self, key: &Key) -> Result<bool, KvError> {
        let (found, failed) = self.tiers.get_one(key, false).await;
        let hit = found.is_some();
        if !hit && failed.len() == self.tiers.tiers().len() {
            return Err(KvError::Unavailable);
        }
        Ok(hit)
    }

    /// Stores `value` for `ttl` (the namespace's default when `None`).
    pub async fn set<T: Serialize>(
        &self,
        key: &Key,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        self.set_with(
            key,
            value,
            &SetOptions {
                ttl,
                ..SetOptions::default()
            },
        )
        .await
    }

    #[instrument(skip_all, fields(key = key.full()))]
    pub async fn set_with<T: Serialize>(
        &self,
        key: &Key,
        value: &T,
        opts: &SetOptions,
    ) -> Result<(), KvError> {
        let e = self.entry(key, encode(value)?, opts);
        self.tiers.set_many(&[(key, &e)]).await
    }

    /// Deletes `key` from every tier; whether any tier held it.
    pub async fn delete(&self, key: &Key) -> Result<bool, KvError> {
        Ok(self.tiers.delete_many(&[key]).await? > 0)
    }

    /// One round trip per tier for the whole batch; results in order.
    #[instrument(skip_all, fields(keys = keys.len()))]
    pub async fn get_many<T: Cacheable>(&self, keys: &[Key]) -> Result<Vec<Option<T>>, KvError> {
        let refs: Vec<&Key> = keys.iter().collect();
        let walk = self.tiers.get_many(&refs, false).await;
        if walk.failed.len() == self.tiers.tiers().len() && !keys.is_empty() {
            return Err(KvError::Unavailable);
        }
        walk.found
            .into_iter()
            .map(|f| f.map(|f| decode_entry(&f.entry)).transpose())
            .collect()
    }

    /// One round trip per tier for the whole batch.
    #[instrument(skip_all, fields(keys = items.len()))]
    pub async fn set_many<T: Serialize>(
        &self,
        items: &[(Key, T)],
        opts: &SetOptions,
    ) -> Result<(), KvError> {
        let entries = items
            .iter()
            .map(|(k, v)| Ok((k, self.entry(k, encode(v)?, opts))))
            .collect::<Result<Vec<_>, KvError>>()?;
        let refs: Vec<(&Key, &Entry)> = entries.iter().map(|(k, e)| (*k, e)).collect();
        self.tiers.set_many(&refs).await
    }

    /// Stores `value` only if `key` holds no fresh value; atomic on every tier,
    /// the lowest answering tier deciding. The loser gets the winner's value.
    #[instrument(skip_all, fields(key = key.full()))]
    pub async fn set_if_absent<T: Serialize + DeserializeOwned>(
        &self,
        key: &Key,
        value: &T,
        opts: &SetOptions,
    ) -> Result<Conditional<T>, KvError> {
        let e = self.entry(key, encode(value)?, opts);
        Ok(match self.tiers.set_if_absent(key, &e).await? {
            None => Conditional::Stored,
            Some(existing) => Conditional::Exists(decode(&existing.value)?),
        })
    }

    /// Makes every entry in `scope` unreadable on every tier (see [`Scope`]).
    #[instrument(skip_all, fields(scope = %scope.id()))]
    pub async fn invalidate(&self, scope: &Scope) -> InvalidateReport {
        self.tiers.invalidate(scope).await
    }

    pub async fn invalidate_tag(&self, tag: &str) -> InvalidateReport {
        self.invalidate(&Scope::tag(tag)).await
    }

    /// Every entry of a namespace, all tenants.
    pub async fn clear(&self, namespace: &str) -> Result<InvalidateReport, KvError> {
        Ok(self.invalidate(&Scope::namespace(namespace)?).await)
    }

    pub async fn stats(&self) -> Stats {
        self.tiers.stats().await
    }

    /// The running totals of this instance's counters, readable from another task:
    /// what `cache::outcomes` sends on so that the fleet's counters add up.
    pub fn counter_source(&self) -> super::stats::CounterSource {
        self.tiers.counter_source()
    }

    /// The tiers, in lookup order (what the fleet's statistics report on).
    pub fn tier_kinds(&self) -> Vec<Tier> {
        self.tiers.tiers().iter().map(|t| t.tier()).collect()
    }

    /// Fills the `keys` that hold no value, `opts.batch` keys per round trip and
    /// at most `opts.concurrency` computations at a time.
    pub async fn warm<T, E, F, Fut>(
        &self,
        keys: &[Key],
        opts: &WarmOptions,
        compute: F,
    ) -> WarmReport
    where
        T: Serialize,
        E: Display,
        F: Fn(Key) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut report = WarmReport::default();
        for chunk in keys.chunks(opts.batch.max(1)) {
            let refs: Vec<&Key> = chunk.iter().collect();
            let walk = self.tiers.get_many(&refs, false).await;
            let missing: Vec<Key> = chunk
                .iter()
                .zip(&walk.found)
                .filter(|(_, f)| f.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            report.skipped += (chunk.len() - missing.len()) as u64;
            let computed: Vec<(Key, Result<T, E>)> = stream::iter(missing)
                .map(|k| {
                    let fut = compute(k.clone());
                    async move { (k, fut.await) }
                })
                .buffer_unordered(opts.concurrency.max(1))
                .collect()
                .await;
            let mut entries = Vec::new();
            for (k, r) in computed {
                match r
                    .map_err(|e| e.to_string())
                    .and_then(|v| encode(&v).map_err(|e| e.to_string()))
                {
                    Ok(bytes) => {
                        let e = self.entry(&k, bytes, &opts.set);
                        entries.push((k, e));
                    }
                    Err(msg) => {
                        tracing::warn!(key = k.full(), error = %msg, "warming: computation failed");
                        report.failed += 1;
                    }
                }
            }
            let refs: Vec<(&Key, &Entry)> = entries.iter().map(|(k, e)| (k, e)).collect();
            match self.tiers.set_many(&refs).await {
                Ok(()) => report.computed += refs.len() as u64,
                Err(e) => {
                    tracing::warn!(error = %e, "warming: no tier took the batch");
                    report.failed += refs.len() as u64;
                }
            }
        }
        report
    }

    /// [`Cache::get_or_compute_with`] with a TTL and no other option.
    pub async fn get_or_compute<T, E, F, Fut>(
        &self,
        key: &Key,
        ttl: Option<Duration>,
        f: F,
    ) -> Result<Fetched<T>, KvError>
    where
        T: Serialize + Cacheable,
        E: Display,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let opts = ComputeOptions {
            ttl,
            ..ComputeOptions::default()
        };
        self.get_or_compute_with(key, &opts, f).await
    }

    /// The cached value, or `f`'s, computed once for all concurrent callers: in
    /// this instance they join one flight; across instances a Redis lock elects
    /// one computer and the others wait (bounded) for its value. A computation
    /// that fails returns the stale value (within `grace`), flagged, if one is left.
    #[instrument(skip_all, fields(key = key.full()))]
    pub async fn get_or_compute_with<T, E, F, Fut>(
        &self,
        key: &Key,
        opts: &ComputeOptions,
        f: F,
    ) -> Result<Fetched<T>, KvError>
    where
        T: Serialize + Cacheable,
        E: Display,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let (found, _) = self.tiers.get_one(key, !opts.grace.is_zero()).await;
        let mut early = false;
        if let Some(hit) = &found {
            if hit.entry.is_fresh() {
                early = opts.early_refresh.is_some_and(|beta| {
                    xfetch_refresh_now(
                        hit.entry.ttl,
                        hit.entry.compute_ms,
                        beta,
                        self.rng.next_f64(),
                    )
                });
                if !early {
                    return Ok(Fetched {
                        value: decode_entry(&hit.entry)?,
                        source: Source::Tier(hit.tier),
                        stale: false,
                    });
                }
                tracing::debug!(key = key.full(), "early refresh (XFetch)");
            }
        }
        let flight: Flight = {
            let mut m = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(key.full().to_owned()).or_default().clone()
        };
        let led = AtomicBool::new(false);
        let landed = flight
            .get_or_init(|| {
                led.store(true, Ordering::Relaxed);
                self.lead(key, opts, f, early, found)
            })
            .await
            .clone();
        {
            let mut m = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            if m.get(key.full()).is_some_and(|c| Arc::ptr_eq(c, &flight)) {
                m.remove(key.full());
            }
        }
        let landed = landed.map_err(KvError::Compute)?;
        let source = match landed.source {
            Source::Computed if !led.load(Ordering::Relaxed) => Source::Waited,
            s => s,
        };
        Ok(Fetched {
            value: decode(&landed.value)?,
            source,
            stale: landed.stale,
        })
    }

    async fn fresh(&self, key: &Key) -> Option<Found> {
        self.tiers
            .get_many(&[key], false)
            .await
            .found
            .into_iter()
            .next()
            .flatten()
    }

    /// The leader of this instance's flight: takes the cross-instance lock (or
    /// waits for whoever holds it), computes, stores, releases.
    async fn lead<T, E, F, Fut>(
        &self,
        key: &Key,
        opts: &ComputeOptions,
        f: F,
        early: bool,
        fallback: Option<Found>,
    ) -> Result<Landed, String>
    where
        T: Serialize,
        E: Display,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let waited = |f: Found| Landed {
            value: f.entry.value,
            source: Source::Waited,
            stale: false,
        };
        // An early refresh knows a fresh value exists: it must not stop at it.
        if !early {
            if let Some(hit) = self.fresh(key).await {
                return Ok(waited(hit));
            }
        }
        let token = format!(
            "{}-{}",
            self.instance,
            self.lock_seq.fetch_add(1, Ordering::Relaxed)
        );
        let mut held = None;
        if let Some(locks) = &self.locks {
            let deadline = Instant::now() + self.flight.max_wait;
            loop {
                match locks.try_lock(key, &token, self.flight.lock_ttl).await {
                    Ok(true) => {
                        held = Some(locks);
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "single-flight lock unavailable; computing here");
                        break;
                    }
                }
                if early {
                    // Someone else is refreshing; the current value is still fresh.
                    if let Some(hit) = fallback.clone() {
                        return Ok(Landed {
                            value: hit.entry.value,
                            source: Source::Tier(hit.tier),
                            stale: false,
                        });
                    }
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        key = key.full(),
                        "single-flight wait exceeded; computing here"
                    );
                    break;
                }
                tokio::time::sleep(self.flight.poll).await;
                if let Some(hit) = self.fresh(key).await {
                    return Ok(waited(hit));
                }
            }
        }
        // The previous holder may have stored the value just before we got the lock.
        if held.is_some() && !early {
            if let Some(hit) = self.fresh(key).await {
                if let Some(l) = held {
                    let _ = l.unlock(key, &token).await;
                }
                return Ok(waited(hit));
            }
        }
        let started = Instant::now();
        let result = f().await;
        let compute_ms = started.elapsed().as_millis().min(u32::MAX as u128) as u32;
        let out = match result
            .map_err(|e| e.to_string())
            .and_then(|v| encode(&v).map_err(|e| e.to_string()))
        {
            Ok(bytes) => {
                let mut e = self.entry(
                    key,
                    bytes.clone(),
                    &SetOptions {
                        ttl: opts.ttl,
                        grace: opts.grace,
                        tags: opts.tags.clone(),
                    },
                );
                e.compute_ms = compute_ms.max(1);
                if let Err(err) = self.tiers.set_many(&[(key, &e)]).await {
                    tracing::warn!(error = %err, "computed value not stored");
                }
                Ok(Landed {
                    value: bytes,
                    source: Source::Computed,
                    stale: false,
                })
            }
            Err(msg) => match fallback {
                Some(f) => {
                    tracing::warn!(key = key.full(), error = %msg, stale = !f.entry.is_fresh(),
                        "computation failed; serving the previous value");
                    Ok(Landed {
                        stale: !f.entry.is_fresh(),
                        value: f.entry.value,
                        source: Source::Tier(f.tier),
                    })
                }
                None => Err(msg),
            },
        };
        if let Some(l) = held {
            if let Err(e) = l.unlock(key, &token).await {
                tracing::warn!(error = %e, "single-flight unlock failed; the lock will expire");
            }
        }
        out
    }
}
