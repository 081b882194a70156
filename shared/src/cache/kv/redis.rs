//! The Redis tier, and the cross-instance lock of `get_or_compute`.
//!
//! Keys (under the configured prefix `{p}`):
//! - `{p}:kv:e:{namespace}:{tenant}:{id}`: a hash per entry: `v` (the JSON), `w`
//!   (the epoch it was written at), `g` (grace ms), `c` (compute ms), `t` (tags,
//!   newline-separated) and one `s:{scope}` field per scope it belongs to. The
//!   key's own PTTL is its remaining life (expiry plus grace).
//! - `{p}:kv:epoch`: a counter every invalidation advances.
//! - `{p}:kv:gens`: a hash of scope → epoch of its last invalidation.
//! - `{p}:kv:lock:{namespace}:{tenant}:{id}`: single-flight locks.
//!
//! Invalidation is one `INCR` and one `HSET`, whatever the number of keys. A read
//! is one Lua script for the whole batch: it fetches each entry and, only when the
//! epoch has moved since the entry was written, that entry's scope generations,
//! and drops entries written before one of them. So a read is one round trip
//! (one `EVALSHA`), the current generations come with the entry, and nothing scans
//! keys. Invalidated entries stay in memory until their TTL (or the next read of
//! them, which deletes them).
//!
//! Calls go through a [`RedisLink`]: in a function instance, the one the outcome
//! cache's Redis tier uses too, so both share one connection, one deadline per call
//! and one circuit breaker. A Redis that is down or hangs costs a bounded delay,
//! after which the other tiers answer.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use tracing::instrument;

use super::backend::{Backend, Entry, Invalidated, NamespaceUsage, Tier, Usage};
use super::key::{tag_scope, Key, Scope};
use super::KvError;
use crate::cache::link::RedisLink;

/// The `SCAN` pattern of every entry key under the stack's `prefix`.
pub fn entry_pattern(prefix: &str) -> String {
    format!("{prefix}:kv:e:*")
}

/// The tenant (as keys store it, escaped) of the entry key `key` under `prefix`.
pub fn entry_tenant<'k>(prefix: &str, key: &'k str) -> Option<&'k str> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(":kv:e:")?;
    let mut parts = rest.splitn(3, ':');
    let (_namespace, tenant, _id) = (parts.next()?, parts.next()?, parts.next()?);
    Some(tenant)
}

/// Shared Lua: `read(k, epoch)` returns `{v, pttl, grace, compute, tags}` for a
/// valid entry, `false` for none (deleting an invalidated one on the way).
const READ_FN: &str = r#"
local function read(k, epoch)
  local h = redis.call('HGETALL', k)
  if #h == 0 then return false end
  local v, w, g, c, t = nil, 0, '0', '0', ''
  local scopes = {}
  for j = 1, #h, 2 do
    local f = h[j]
    if f == 'v' then v = h[j + 1]
    elseif f == 'w' then w = tonumber(h[j + 1])
    elseif f == 'g' then g = h[j + 1]
    elseif f == 'c' then c = h[j + 1]
    elseif f == 't' then t = h[j + 1]
    else scopes[#scopes + 1] = string.sub(f, 3) end
  end
  if not v then return false end
  if w < epoch and #scopes > 0 then
    local gens = redis.call('HMGET', KEYS[1], unpack(scopes))
    for _, b in ipairs(gens) do
      if b and tonumber(b) > w then
        redis.call('DEL', k)
        return false
      end
    end
  end
  return {v, redis.call('PTTL', k), g, c, t}
end
local epoch = tonumber(redis.call('GET', KEYS[2]) or '0')
"#;

/// KEYS: gens, epoch, entries…
const GET_BODY: &str = r#"
local out = {}
for i = 3, #KEYS do out[i - 2] = read(KEYS[i], epoch) end
return out
"#;

/// KEYS: gens, epoch, entries…; ARGV: nx, then per entry: pttl, grace, compute,
/// value, tags, n, n scopes. With nx, an entry is written only where no fresh one
/// is, and the fresh one is returned instead.
const SET_BODY: &str = r#"
local nx = ARGV[1] == '1'
local a = 2
local out = {}
for i = 3, #KEYS do
  local k = KEYS[i]
  local n = tonumber(ARGV[a + 5])
  local existing = false
  if nx then
    existing = read(k, epoch)
    if existing and existing[2] - tonumber(existing[3]) <= 0 then existing = false end
  end
  if existing then
    out[i - 2] = existing
  else
    redis.call('DEL', k)
    local args = {'v', ARGV[a + 3], 'w', epoch, 'g', ARGV[a + 1], 'c', ARGV[a + 2], 't', ARGV[a + 4]}
    for j = 1, n do
      args[#args + 1] = 's:' .. ARGV[a + 5 + j]
      args[#args + 1] = '1'
    end
    redis.call('HSET', k, unpack(args))
    redis.call('PEXPIRE', k, ARGV[a])
    out[i - 2] = false
  end
  a = a + 6 + n
end
return out
"#;

/// KEYS: gens, epoch; ARGV: scope.
const INVALIDATE: &str = r#"
local e = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], e)
return e
"#;

/// KEYS: lock; ARGV: token. Deletes the lock only if this caller still holds it.
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

pub struct RedisBackend {
    link: Arc<RedisLink>,
    prefix: String,
    get: Script,
    set: Script,
    invalidate: Script,
    unlock: Script,
}

impl RedisBackend {
    pub fn new(link: Arc<RedisLink>, prefix: &str) -> Self {
        RedisBackend {
            link,
            prefix: format!("{prefix}:kv"),
            get: Script::new(&format!("{READ_FN}{GET_BODY}")),
            set: Script::new(&format!("{READ_FN}{SET_BODY}")),
            invalidate: Script::new(INVALIDATE),
            unlock: Script::new(UNLOCK),
        }
    }

    /// With a link of its own, for tools and tests that have no outcome cache to
    /// share one with. `timeout` bounds each call, connecting included.
    pub fn from_url(url: &str, prefix: &str, timeout: Duration) -> Result<Self, KvError> {
        let link = RedisLink::open(url, timeout).map_err(KvError::Redis)?;
        Ok(Self::new(Arc::new(link), prefix))
    }

    fn entry_key(&self, k: &Key) -> String {
        format!("{}:e:{}", self.prefix, k.full())
    }
    fn gens_key(&self) -> String {
        format!("{}:gens", self.prefix)
    }
    fn epoch_key(&self) -> String {
        format!("{}:epoch", self.prefix)
    }
    fn lock_key(&self, k: &Key) -> String {
        format!("{}:lock:{}", self.prefix, k.full())
    }

    async fn call<T, F, Fut>(&self, op: F) -> Result<T, KvError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, redis::RedisError>>,
    {
        Ok(self.link.call(op).await?)
    }

    /// Takes the single-flight lock of `key` for `ttl` if nobody holds it.
    #[instrument(skip_all, fields(key = key.full(), ?ttl))]
    pub async fn try_lock(&self, key: &Key, token: &str, ttl: Duration) -> Result<bool, KvError> {
        let k = self.lock_key(key);
        let ms = ttl.as_millis().max(1) as u64;
        let got: Option<String> = self
            .call(|mut c| async move {
                redis::cmd("SET")
                    .arg(&k)
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(got.is_some())
    }

    /// Releases the lock if `token` still holds it (it may have expired and been
    /// taken by someone else meanwhile).
    #[instrument(skip_all, fields(key = key.full()))]
    pub async fn unlock(&self, key: &Key, token: &str) -> Result<(), KvError> {
        let k = self.lock_key(key);
        let script = &self.unlock;
        let _: i64 = self
            .call(|mut c| async move { script.key(&k).arg(token).invoke_async(&mut c).await })
            .await?;
        Ok(())
    }

    async fn run_set(
        &self,
        items: &[(&Key, &Entry)],
        nx: bool,
    ) -> Result<Vec<Option<Entry>>, KvError> {
        let mut inv = self.set.prepare_invoke();
        inv.key(self.gens_key())
            .key(self.epoch_key())
            .arg(if nx { "1" } else { "0" });
        for (k, e) in items {
            let mut scopes = k.scopes();
            scopes.extend(e.tags.iter().map(|t| tag_scope(t)));
            inv.key(self.entry_key(k))
                .arg((e.ttl + e.grace).as_millis().max(1) as u64)
                .arg(e.grace.as_millis() as u64)
                .arg(e.compute_ms)
                .arg(&e.value[..])
                .arg(e.tags.join("\n"))
                .arg(scopes.len())
                .arg(scopes);
        }
        let raw: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        parse_entries(raw, items.len())
    }
}

/// Decodes the scripts' answer: one `false` or `{v, pttl, grace, compute, tags}` per key.
fn parse_entries(raw: Value, n: usize) -> Result<Vec<Option<Entry>>, KvError> {
    let bad = |what: &str| KvError::Protocol(format!("redis script answer: {what}"));
    let Value::Array(items) = raw else {
        return Err(bad("not an array"));
    };
    if items.len() != n {
        return Err(bad("wrong length"));
    }
    items
        .into_iter()
        .map(|item| match item {
            Value::Nil => Ok(None),
            Value::Array(f) if f.len() == 5 => {
                let mut f = f.into_iter();
                let value = match f.next() {
                    Some(Value::BulkString(b)) => b,
                    _ => return Err(bad("value")),
                };
                let pttl = match f.next() {
                    Some(Value::Int(ms)) => ms,
                    _ => return Err(bad("pttl")),
                };
                let num = |v: Option<Value>| -> Result<i64, KvError> {
                    match v {
                        Some(Value::BulkString(b)) => std::str::from_utf8(&b)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| bad("number")),
                        Some(Value::Int(i)) => Ok(i),
                        _ => Err(bad("number")),
                    }
                };
                let grace = num(f.next())?;
                let compute = num(f.next())?;
                let tags = match f.next() {
                    Some(Value::BulkString(b)) => String::from_utf8(b).map_err(|_| bad("tags"))?,
                    _ => return Err(bad("tags")),
                };
                // PTTL -1 (no expiry) cannot happen for our keys; treat as expired.
                if pttl <= 0 {
                    return Ok(None);
                }
                let life = pttl as u64;
                let grace = (grace.max(0) as u64).min(life);
                Ok(Some(Entry {
                    value: value.into(),
                    ttl: Duration::from_millis(life - grace),
                    grace: Duration::from_millis(grace),
                    compute_ms: compute.clamp(0, i64::from(u32::MAX)) as u32,
                    memo: Default::default(),
                    tags: tags
                        .split('\n')
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect(),
                }))
            }
            _ => Err(bad("entry")),
        })
        .collect()
}

#[async_trait]
impl Backend for RedisBackend {
    fn tier(&self) -> Tier {
        Tier::Redis
    }

    #[instrument(skip_all, fields(keys = keys.len()))]
    async fn get_many(&self, keys: &[&Key], stale: bool) -> Result<Vec<Option<Entry>>, KvError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.get.prepare_invoke();
        inv.key(self.gens_key()).key(self.epoch_key());
        for k in keys {
            inv.key(self.entry_key(k));
        }
        let raw: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let mut got = parse_entries(raw, keys.len())?;
        if !stale {
            for e in got.iter_mut() {
                if e.as_ref().is_some_and(|e| !e.is_fresh()) {
                    *e = None;
                }
            }
        }
        Ok(got)
    }

    #[instrument(skip_all, fields(keys = items.len()))]
    async fn set_many(&self, items: &[(&Key, &Entry)]) -> Result<(), KvError> {
        let items: Vec<(&Key, &Entry)> = items
            .iter()
            .filter(|(_, e)| e.is_fresh())
            .copied()
            .collect();
        if items.is_empty() {
            return Ok(());
        }
        self.run_set(&items, false).await.map(|_| ())
    }

    #[instrument(skip_all, fields(key = key.full()))]
    async fn set_if_absent(&self, key: &Key, entry: &Entry) -> Result<Option<Entry>, KvError> {
        let mut got = self.run_set(&[(key, entry)], true).await?;
        Ok(got.pop().flatten())
    }

    #[instrument(skip_all, fields(keys = keys.len()))]
    async fn delete_many(&self, keys: &[&Key]) -> Result<u64, KvError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let ks: Vec<String> = keys.iter().map(|k| self.entry_key(k)).collect();
        let n: u64 = self
            .call(|mut c| async move { redis::cmd("DEL").arg(&ks).query_async(&mut c).await })
            .await?;
        Ok(n)
    }

    #[instrument(skip_all, fields(scope = %scope.id()))]
    async fn invalidate(&self, scope: &Scope) -> Result<Invalidated, KvError> {
        let (gens, epoch, id) = (self.gens_key(), self.epoch_key(), scope.id());
        let script = &self.invalidate;
        let at: u64 = self
            .call(|mut c| async move {
                script
                    .key(&gens)
                    .key(&epoch)
                    .arg(&id)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(Invalidated::Generation(at))
    }

    /// Counts by `SCAN` over this tier's entry keys: an operator's question, never
    /// asked on a request path. Includes invalidated entries not yet expired. An
    /// entry whose remaining life is within its grace is expired (kept only for
    /// stale serving); `bytes` are the values of the others.
    #[instrument(skip_all)]
    async fn usage(&self) -> Result<Usage, KvError> {
        let pattern = format!("{}:e:*", self.prefix);
        let strip = format!("{}:e:", self.prefix);
        let mut usage = Usage {
            expired: Some(0),
            ..Usage::default()
        };
        let mut cursor: u64 = 0;
        loop {
            let p = pattern.clone();
            let (next, keys): (u64, Vec<String>) = self
                .call(|mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&p)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            if !keys.is_empty() {
                let ks = keys.clone();
                let sizes: Vec<(u64, i64, Option<i64>)> = self
                    .call(|mut c| async move {
                        let mut pipe = redis::pipe();
                        for k in &ks {
                            pipe.cmd("HSTRLEN").arg(k).arg("v");
                            pipe.cmd("PTTL").arg(k);
                            pipe.cmd("HGET").arg(k).arg("g");
                        }
                        let flat: Vec<Value> = pipe.query_async(&mut c).await?;
                        Ok(flat
                            .chunks(3)
                            .map(|c| {
                                let n = |v: &Value| {
                                    redis::from_redis_value::<Option<i64>>(v.clone())
                                        .ok()
                                        .flatten()
                                };
                                (
                                    n(&c[0]).unwrap_or(0).max(0) as u64,
                                    n(&c[1]).unwrap_or(-2),
                                    n(&c[2]),
                                )
                            })
                            .collect())
                    })
                    .await?;
                for (k, (size, pttl, grace)) in keys.iter().zip(sizes) {
                    if pttl == -2 {
                        continue; // gone between the scan and the read
                    }
                    let ns = k
                        .strip_prefix(&strip)
                        .and_then(|rest| rest.split(':').next())
                        .unwrap_or_default()
                        .to_owned();
                    let expired = pttl >= 0 && pttl <= grace.unwrap_or(0);
                    let per: &mut NamespaceUsage = usage.namespaces.entry(ns).or_default();
                    if expired {
                        *per.expired.get_or_insert(0) += 1;
                        usage.expired = usage.expired.map(|e| e + 1);
                    } else {
                        per.expired.get_or_insert(0);
                        per.entries += 1;
                        per.bytes += size;
                        usage.entries += 1;
                        usage.bytes += size;
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(usage)
    }

    async fn health(&self) -> Result<(), KvError> {
        let _: String = self
            .call(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
            .await?;
        Ok(())
    }
}
