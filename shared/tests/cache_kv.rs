//! The general-purpose cache (`facesvg::cache::kv`) on the real local Redis and
//! Postgres: a fresh database and a fresh Redis key prefix per test. Tests that
//! count Redis commands, or need a Redis or Postgres that hangs or is gone, start
//! their own (a private `redis-server`, a TCP listener that never answers, a port
//! where nothing listens). A missing service fails the test loudly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use facesvg::cache::kv::*;
use facesvg::db::Db as Pool;
use serde::{Deserialize, Serialize};

#[path = "common/kv.rs"]
mod kv_support;
use kv_support::{free_port, redis_url, OwnRedis};

fn fresh_prefix() -> String {
    kv_support::fresh_prefix("kvtest")
}

async fn fresh_db() -> (Pool, String) {
    kv_support::fresh_db("kv").await
}

fn memory() -> Arc<MemoryBackend> {
    Arc::new(MemoryBackend::new(
        10_000,
        16 << 20,
        Duration::from_secs(3600),
    ))
}

fn redis_at(url: &str, prefix: &str) -> Arc<RedisBackend> {
    // Generous: tests run many things at once on two cores.
    Arc::new(RedisBackend::from_url(url, prefix, Duration::from_millis(1000)).expect("redis url"))
}

fn postgres(pool: &Pool) -> Arc<PostgresBackend> {
    Arc::new(PostgresBackend::new(pool.clone(), Duration::from_secs(3)))
}

/// The three shared backends of one deployment.
struct Stack {
    redis: Arc<RedisBackend>,
    pg: Arc<PostgresBackend>,
    pool: Pool,
}

impl Stack {
    async fn new() -> Stack {
        let (pool, _) = fresh_db().await;
        let redis = redis_at(&redis_url(), &fresh_prefix());
        redis
            .health()
            .await
            .unwrap_or_else(|e| panic!("Redis at {} is required: {e}", redis_url()));
        Stack {
            pg: postgres(&pool),
            redis,
            pool,
        }
    }

    /// One instance: its own memory tier over the shared Redis and Postgres.
    fn instance(&self) -> (Cache, Arc<MemoryBackend>) {
        let mem = memory();
        let cache = Cache::builder()
            .tier(mem.clone())
            .tier(self.redis.clone())
            .tier(self.pg.clone())
            .locks(self.redis.clone())
            .build();
        (cache, mem)
    }

    fn single(&self, tier: Tier) -> Cache {
        let b: Arc<dyn Backend> = match tier {
            Tier::Memory => memory(),
            Tier::Redis => self.redis.clone(),
            Tier::Postgres => self.pg.clone(),
        };
        Cache::builder().tier(b).build()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Doc {
    name: String,
    n: u32,
    tags: Vec<String>,
}

fn doc(name: &str, n: u32) -> Doc {
    Doc {
        name: name.into(),
        n,
        tags: vec!["a".into(), "b".into()],
    }
}

fn key(ns: &str, tenant: &str, parts: &[&str]) -> Key {
    KeyBuilder::new(ns).unwrap().key(tenant, parts).unwrap()
}

const ALL: [Tier; 3] = [Tier::Memory, Tier::Redis, Tier::Postgres];

#[tokio::test]
async fn every_operation_on_every_tier() {
    let s = Stack::new().await;
    for tier in ALL {
        let c = s.single(tier);
        let t = format!("{tier}");
        let k1 = key("docs", &t, &["one"]);
        let k2 = key("docs", &t, &["two"]);
        let ttl = Some(Duration::from_secs(60));

        assert_eq!(c.get::<Doc>(&k1).await.unwrap(), None, "{tier}");
        assert!(!c.exists(&k1).await.unwrap(), "{tier}");
        c.set(&k1, &doc("one", 1), ttl).await.unwrap();
        assert_eq!(
            c.get::<Doc>(&k1).await.unwrap(),
            Some(doc("one", 1)),
            "{tier}"
        );
        assert!(c.exists(&k1).await.unwrap(), "{tier}");
        let l = c.lookup::<Doc>(&k1).await.unwrap();
        assert_eq!(l.tier, Some(tier));
        assert!(
            l.ttl.unwrap() <= Duration::from_secs(60) && l.ttl.unwrap() > Duration::from_secs(50)
        );
        // Overwrite, and a type mismatch is an error, not a miss.
        c.set(&k1, &doc("uno", 11), ttl).await.unwrap();
        assert_eq!(c.get::<Doc>(&k1).await.unwrap().unwrap().n, 11, "{tier}");
        assert!(
            matches!(c.get::<u64>(&k1).await, Err(KvError::Malformed(_))),
            "{tier}"
        );

        // Batches, in order, with gaps.
        let k3 = key("docs", &t, &["three"]);
        c.set_many(
            &[(k2.clone(), doc("two", 2)), (k3.clone(), doc("three", 3))],
            &SetOptions {
                ttl,
                ..SetOptions::default()
            },
        )
        .await
        .unwrap();
        let missing = key("docs", &t, &["missing"]);
        let got: Vec<Option<Doc>> = c
            .get_many(&[k3.clone(), missing.clone(), k1.clone(), k2.clone()])
            .await
            .unwrap();
        assert_eq!(
            got,
            vec![
                Some(doc("three", 3)),
                None,
                Some(doc("uno", 11)),
                Some(doc("two", 2))
            ],
            "{tier}"
        );

        // Conditional set.
        let k4 = key("docs", &t, &["four"]);
        assert_eq!(
            c.set_if_absent(&k4, &doc("first", 4), &SetOptions::default())
                .await
                .unwrap(),
            Conditional::Stored,
            "{tier}"
        );
        assert_eq!(
            c.set_if_absent(&k4, &doc("second", 4), &SetOptions::default())
                .await
                .unwrap(),
            Conditional::Exists(doc("first", 4)),
            "{tier}"
        );

        // Delete one key, then a prefix, then the namespace.
        assert!(c.delete(&k2).await.unwrap(), "{tier}");
        assert!(!c.delete(&k2).await.unwrap(), "{tier}");
        assert_eq!(c.get::<Doc>(&k2).await.unwrap(), None, "{tier}");

        let b = KeyBuilder::new("users").unwrap();
        let u1 = b.key(&t, &["42", "profile"]).unwrap();
        let u2 = b.key(&t, &["42", "avatar"]).unwrap();
        let u3 = b.key(&t, &["43", "profile"]).unwrap();
        let u42 = b.key(&t, &["42"]).unwrap();
        for k in [&u1, &u2, &u3, &u42] {
            c.set(k, &doc("u", 0), ttl).await.unwrap();
        }
        let report = c.invalidate(&b.prefix(&t, &["42"]).unwrap()).await;
        assert!(report.complete(), "{report:?}");
        assert_eq!(c.get::<Doc>(&u1).await.unwrap(), None, "{tier}");
        assert_eq!(c.get::<Doc>(&u2).await.unwrap(), None, "{tier}");
        assert!(
            c.get::<Doc>(&u3).await.unwrap().is_some(),
            "{tier}: other prefix"
        );
        assert!(
            c.get::<Doc>(&u42).await.unwrap().is_some(),
            "{tier}: the prefix's own key"
        );

        let report = c.clear("docs").await.unwrap();
        assert!(report.complete());
        for k in [&k1, &k3, &k4] {
            assert_eq!(c.get::<Doc>(k).await.unwrap(), None, "{tier}: cleared");
        }
        assert!(
            c.get::<Doc>(&u3).await.unwrap().is_some(),
            "{tier}: other namespace"
        );
        // The key is usable again after a clear.
        c.set(&k1, &doc("again", 1), ttl).await.unwrap();
        assert_eq!(
            c.get::<Doc>(&k1).await.unwrap().unwrap().name,
            "again",
            "{tier}"
        );

        let stats = c.stats().await;
        let ts = &stats.tiers[0];
        assert_eq!(ts.tier, tier);
        assert!(ts.healthy, "{ts:?}");
        assert!(ts.counters.hits > 5 && ts.counters.misses > 5, "{ts:?}");
        assert!(ts.counters.sets >= 8 && ts.counters.deletes >= 1, "{ts:?}");
        assert_eq!(ts.counters.errors, 0);
        let usage = ts.usage.as_ref().expect("usage");
        assert!(usage.entries >= 1 && usage.bytes > 0, "{tier}: {usage:?}");
        assert!(stats.namespaces["docs"].hits > 0);
        assert!(stats.namespaces["users"].sets >= 4);
        assert!(stats.overall.hit_ratio > 0.0 && stats.overall.hit_ratio < 1.0);
    }
}

#[tokio::test]
async fn entries_expire_on_every_tier() {
    let s = Stack::new().await;
    for tier in ALL {
        let c = s.single(tier);
        let k = key("short", "t", &[tier.as_str()]);
        c.set(&k, &1u32, Some(Duration::from_millis(300)))
            .await
            .unwrap();
        assert_eq!(c.get::<u32>(&k).await.unwrap(), Some(1), "{tier}");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(c.get::<u32>(&k).await.unwrap(), None, "{tier}: expired");
        assert!(!c.exists(&k).await.unwrap(), "{tier}");
        // An expired entry is absent for a conditional set too.
        assert_eq!(
            c.set_if_absent(&k, &2u32, &SetOptions::default())
                .await
                .unwrap(),
            Conditional::Stored,
            "{tier}"
        );
    }

    // A namespace's default TTL comes from configuration.
    let c = Cache::builder()
        .tier(s.redis.clone())
        .ttls(Ttls::parse("default=1h,blink=300ms").unwrap())
        .build();
    let (blink, stay) = (key("blink", "t", &["x"]), key("stay", "t", &["x"]));
    c.set(&blink, &"b", None).await.unwrap();
    c.set(&stay, &"s", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(c.get::<String>(&blink).await.unwrap(), None);
    let l = c.lookup::<String>(&stay).await.unwrap();
    assert!(l.ttl.unwrap() > Duration::from_secs(3500), "{:?}", l.ttl);
}

#[tokio::test]
async fn a_postgres_row_past_expiry_is_never_served_and_the_sweep_deletes_in_batches() {
    let s = Stack::new().await;
    let db = s.pool.get().await.unwrap();
    db.execute(
        "INSERT INTO cache_store (namespace, tenant, key, value, expires_at, stale_until)
         SELECT 'old', 't', 'v1:' || i, '{\"n\": 1}', now() - interval '1 second', now() - interval '1 second'
           FROM generate_series(1, 25) i",
        &[],
    )
    .await
    .unwrap();
    let c = s.single(Tier::Postgres);
    let k = key("old", "t", &["1"]);
    assert_eq!(
        c.get::<serde_json::Value>(&k).await.unwrap(),
        None,
        "no sweep ran"
    );
    let ks: Vec<Key> = (1..=25)
        .map(|i| key("old", "t", &[&i.to_string()]))
        .collect();
    let got: Vec<Option<serde_json::Value>> = c.get_many(&ks).await.unwrap();
    assert!(got.iter().all(Option::is_none));

    let usage = s.pg.usage().await.unwrap();
    assert_eq!((usage.entries, usage.expired), (0, Some(25)));
    c.set(&key("live", "t", &["1"]), &5, None).await.unwrap();
    let usage = s.pg.usage().await.unwrap();
    assert_eq!((usage.entries, usage.expired), (1, Some(25)));
    assert_eq!(usage.namespaces["old"].expired, Some(25));

    let first = s.pg.cleanup_expired(10, 2).await.unwrap();
    assert_eq!(
        first,
        Cleanup {
            deleted: 20,
            batches: 2,
            more: true
        }
    );
    let second = s.pg.cleanup_expired(10, 2).await.unwrap();
    assert_eq!(
        second,
        Cleanup {
            deleted: 5,
            batches: 1,
            more: false
        }
    );
    let usage = s.pg.usage().await.unwrap();
    assert_eq!((usage.entries, usage.expired), (1, Some(0)));
}

#[tokio::test]
async fn backfill_carries_the_remaining_ttl() {
    let s = Stack::new().await;
    let (c, mem) = s.instance();
    let k = key("fill", "t", &["x"]);
    // Only in Postgres, with 10 s to live.
    let e = Entry::new(
        serde_json::to_vec(&doc("deep", 1)).unwrap().into(),
        Duration::from_secs(10),
    );
    s.pg.set_many(&[(&k, &e)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let l = c.lookup::<Doc>(&k).await.unwrap();
    assert_eq!(l.tier, Some(Tier::Postgres));
    let left = l.ttl.unwrap();
    assert!(left <= Duration::from_millis(8900), "{left:?}");

    for b in [mem.clone() as Arc<dyn Backend>, s.redis.clone()] {
        let got = b.get_many(&[&k], false).await.unwrap().pop().flatten();
        let got = got.unwrap_or_else(|| panic!("{} was not backfilled", b.tier()));
        assert!(got.ttl <= left, "{}: {:?} > {:?}", b.tier(), got.ttl, left);
        assert!(
            got.ttl > Duration::from_secs(7),
            "{}: {:?}",
            b.tier(),
            got.ttl
        );
    }
    assert_eq!(c.lookup::<Doc>(&k).await.unwrap().tier, Some(Tier::Memory));

    // A hit in Redis fills memory only; Postgres is not asked.
    let (c2, mem2) = s.instance();
    let before = s.pg.statements();
    assert_eq!(c2.lookup::<Doc>(&k).await.unwrap().tier, Some(Tier::Redis));
    assert_eq!(s.pg.statements(), before);
    assert!(mem2.get_many(&[&k], false).await.unwrap()[0].is_some());
}

/// A private redis-server on a free port, for exclusive command statistics or a
/// server the test can stop.
impl OwnRedis {
    async fn calls(&self) -> HashMap<String, u64> {
        let client = ::redis::Client::open(self.url.as_str()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = ::redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await
            .unwrap();
        info.lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.split(',').find_map(|f| f.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect()
    }
}

fn delta(after: &HashMap<String, u64>, before: &HashMap<String, u64>, cmd: &str) -> u64 {
    after.get(cmd).copied().unwrap_or(0) - before.get(cmd).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_batch_costs_one_round_trip_per_tier() {
    let own = OwnRedis::start().await;
    let (pool, _) = fresh_db().await;
    let redis = redis_at(&own.url, &fresh_prefix());
    let pg = postgres(&pool);
    let c = Cache::builder()
        .tier(redis.clone())
        .tier(pg.clone())
        .build();
    let ks: Vec<Key> = (0..100)
        .map(|i| key("batch", "t", &[&i.to_string()]))
        .collect();
    // Warm the connection and load the scripts (EVALSHA falls back to EVAL once).
    c.set(&key("batch", "t", &["warm"]), &0, None)
        .await
        .unwrap();
    let _ = c.get::<u32>(&key("batch", "t", &["warm"])).await.unwrap();

    // 50 values written to both tiers: one script call, one statement.
    let items: Vec<(Key, u32)> = ks[..50].iter().cloned().zip(0..).collect();
    let (r0, p0) = (own.calls().await, pg.statements());
    c.set_many(&items, &SetOptions::default()).await.unwrap();
    let (r1, p1) = (own.calls().await, pg.statements());
    assert_eq!(delta(&r1, &r0, "evalsha"), 1, "{r1:?}");
    assert_eq!(p1 - p0, 1);

    // 50 more only in Postgres.
    let deep: Vec<Entry> = (50..100u32)
        .map(|i| {
            Entry::new(
                serde_json::to_vec(&i).unwrap().into(),
                Duration::from_secs(60),
            )
        })
        .collect();
    let deep_items: Vec<(&Key, &Entry)> = ks[50..].iter().zip(&deep).collect();
    pg.set_many(&deep_items).await.unwrap();

    // 100 keys: Redis answers 50 in one call, Postgres the other 50 in one
    // statement, and one more script call backfills those 50 into Redis.
    let (r0, p0) = (own.calls().await, pg.statements());
    let got: Vec<Option<u32>> = c.get_many(&ks).await.unwrap();
    let (r1, p1) = (own.calls().await, pg.statements());
    assert_eq!(got, (0..100).map(Some).collect::<Vec<_>>());
    assert_eq!(delta(&r1, &r0, "evalsha"), 2, "read + backfill: {r1:?}");
    for cmd in ["mget", "eval", "scan", "keys"] {
        assert_eq!(delta(&r1, &r0, cmd), 0, "{cmd}");
    }
    assert_eq!(p1 - p0, 1);
    // commandstats also lists what runs inside the scripts (no network round
    // trips): one GET of the epoch per script, one HGETALL per key read.
    assert_eq!(delta(&r1, &r0, "get"), 2);
    assert_eq!(delta(&r1, &r0, "hgetall"), 100);

    // Now all in Redis: one call, Postgres untouched.
    let (r0, p0) = (own.calls().await, pg.statements());
    let _: Vec<Option<u32>> = c.get_many(&ks).await.unwrap();
    let (r1, p1) = (own.calls().await, pg.statements());
    assert_eq!(delta(&r1, &r0, "evalsha"), 1);
    assert_eq!(p1, p0);

    // The same 100 keys one by one: 100 calls.
    let r0 = own.calls().await;
    for k in &ks {
        let _ = c.get::<u32>(k).await.unwrap();
    }
    assert_eq!(delta(&own.calls().await, &r0, "evalsha"), 100);
}

async fn present(c: &Cache, k: &Key) -> bool {
    c.get::<String>(k).await.unwrap().is_some()
}

#[tokio::test]
async fn invalidation_by_tenant_and_namespace_leaves_other_tenants_intact() {
    let s = Stack::new().await;
    let (c, _) = s.instance();
    let (other_instance, _) = s.instance();
    let mut keys = Vec::new();
    for tenant in ["acme", "bolt"] {
        for ns in ["stats", "recent"] {
            for i in 0..3 {
                let k = key(ns, tenant, &[&i.to_string()]);
                c.set(&k, &format!("{tenant}/{ns}/{i}"), None)
                    .await
                    .unwrap();
                keys.push((tenant, ns, k));
            }
        }
    }
    // Another instance has read everything into its own memory tier too.
    for (_, _, k) in &keys {
        assert!(other_instance.get::<String>(k).await.unwrap().is_some());
    }
    let report = c.invalidate(&Scope::tenant("acme")).await;
    assert!(report.complete(), "{report:?}");
    let removed_pg = report
        .tiers
        .iter()
        .find(|t| t.tier == Tier::Postgres)
        .and_then(|t| t.outcome);
    assert_eq!(removed_pg, Some(Invalidated::Removed(6)));
    for (tenant, _, k) in &keys {
        assert_eq!(present(&c, k).await, *tenant == "bolt", "{k:?}");
        // Each shared tier on its own agrees.
        let in_redis = s.redis.get_many(&[k], false).await.unwrap()[0].is_some();
        let in_pg = s.pg.get_many(&[k], false).await.unwrap()[0].is_some();
        assert_eq!(
            (in_redis, in_pg),
            (*tenant == "bolt", *tenant == "bolt"),
            "{k:?}"
        );
    }

    // One tenant's namespace.
    let report = c
        .invalidate(&Scope::tenant_namespace("bolt", "stats").unwrap())
        .await;
    assert!(report.complete());
    for (tenant, ns, k) in &keys {
        let expect = *tenant == "bolt" && *ns == "recent";
        assert_eq!(present(&c, k).await, expect, "{k:?}");
    }
    // Entries written after an invalidation are served again.
    let k = key("stats", "acme", &["0"]);
    c.set(&k, &"new".to_owned(), None).await.unwrap();
    assert_eq!(c.get::<String>(&k).await.unwrap().as_deref(), Some("new"));

    // A namespace, all tenants.
    let report = c.clear("recent").await.unwrap();
    assert!(report.complete());
    for (_, _, k) in keys.iter().filter(|(_, ns, _)| *ns == "recent") {
        assert!(!present(&c, k).await);
        assert!(s.redis.get_many(&[k], false).await.unwrap()[0].is_none());
    }
    assert!(present(&c, &k).await, "another namespace stays");
}

#[tokio::test]
async fn two_hundred_concurrent_calls_over_four_instances_compute_once() {
    let s = Stack::new().await;
    let instances: Vec<Arc<Cache>> = (0..4).map(|_| Arc::new(s.instance().0)).collect();
    let computations = Arc::new(AtomicUsize::new(0));
    let k = key("flight", "t", &["expensive"]);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (c, n, k) = (instances[i % 4].clone(), computations.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            c.get_or_compute(&k, None, || async {
                n.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, String>(doc("computed", 7))
            })
            .await
        }));
    }
    let mut sources = HashMap::new();
    for t in tasks {
        let got = t.await.unwrap().expect("every caller gets the value");
        assert_eq!(got.value, doc("computed", 7));
        assert!(!got.stale);
        *sources.entry(format!("{:?}", got.source)).or_insert(0) += 1;
    }
    assert_eq!(computations.load(Ordering::SeqCst), 1, "{sources:?}");
    assert_eq!(sources.get("Computed"), Some(&1), "{sources:?}");
}

#[tokio::test]
async fn a_dead_lock_holder_is_replaced_after_its_lock_expires() {
    let s = Stack::new().await;
    let flight = FlightOptions {
        lock_ttl: Duration::from_millis(800),
        max_wait: Duration::from_secs(10),
        poll: Duration::from_millis(20),
    };
    let build = || {
        Arc::new(
            Cache::builder()
                .tier(memory())
                .tier(s.redis.clone())
                .tier(s.pg.clone())
                .locks(s.redis.clone())
                .single_flight(flight.clone())
                .build(),
        )
    };
    let (a, b) = (build(), build());
    let k = key("flight", "t", &["dies"]);

    // Instance A takes the lock and dies mid-computation.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (ka, a2) = (k.clone(), a.clone());
    let holder = tokio::spawn(async move {
        a2.get_or_compute(&ka, None, || async move {
            let _ = started_tx.send(());
            std::future::pending::<Result<u32, String>>().await
        })
        .await
    });
    started_rx.await.unwrap();
    holder.abort();
    let _ = holder.await;
    // Its lock is still there: nobody else may compute yet.
    assert!(!s
        .redis
        .try_lock(&k, "probe", Duration::from_secs(1))
        .await
        .unwrap());

    let computed = Arc::new(AtomicUsize::new(0));
    let n = computed.clone();
    let redis = s.redis.clone();
    let k2 = k.clone();
    let got = b
        .get_or_compute(&k, None, || async move {
            n.fetch_add(1, Ordering::SeqCst);
            // B computes only once the dead holder's lock has expired: a fresh
            // lock attempt now fails because B holds it.
            assert!(!redis
                .try_lock(&k2, "probe", Duration::from_secs(1))
                .await
                .unwrap());
            Ok::<_, String>(42u32)
        })
        .await
        .unwrap();
    assert_eq!((got.value, got.source), (42, Source::Computed));
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    // B released its lock.
    assert!(s
        .redis
        .try_lock(&k, "after", Duration::from_millis(100))
        .await
        .unwrap());
    assert_eq!(a.get::<u32>(&k).await.unwrap(), Some(42));
}

#[tokio::test]
async fn xfetch_refreshes_before_expiry_with_a_seeded_source() {
    let s = Stack::new().await;
    // The first draw of seed 11, replayed: the test knows what the cache will draw.
    let r = XorShift::new(11).next_f64();
    assert!(r < 0.99, "pick a seed whose first draw is not ~1: {r}");
    let k = key("xfetch", "t", &["v"]);
    let versions = Arc::new(AtomicUsize::new(0));
    let compute = |v: Arc<AtomicUsize>| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, String>(v.fetch_add(1, Ordering::SeqCst) as u32)
    };
    let cache = |seed| {
        Cache::builder()
            .tier(s.redis.clone())
            .tier(s.pg.clone())
            .rng_seed(seed)
            .build()
    };
    let c = cache(11);
    let mut opts = ComputeOptions {
        ttl: Some(Duration::from_secs(60)),
        ..ComputeOptions::default()
    };
    let first = c
        .get_or_compute_with(&k, &opts, || compute(versions.clone()))
        .await
        .unwrap();
    assert_eq!((first.value, first.source), (0, Source::Computed));

    // beta tiny: −ln(r)·20 ms·1e-6 is far below 60 s: served from the cache.
    opts.early_refresh = Some(1e-6);
    let again = c
        .get_or_compute_with(&k, &opts, || compute(versions.clone()))
        .await
        .unwrap();
    assert_eq!((again.value, again.source), (0, Source::Tier(Tier::Redis)));

    // beta huge: with this seed's draw, 20 ms·beta·−ln(r) exceeds the ~60 s left,
    // so the value is recomputed while the old one is still fresh.
    let c = cache(11);
    opts.early_refresh = Some(120_000.0 / (20.0 * -r.ln()));
    let left = c.lookup::<u32>(&k).await.unwrap().ttl.unwrap();
    assert!(left > Duration::from_secs(50), "still fresh: {left:?}");
    let early = c
        .get_or_compute_with(&k, &opts, || compute(versions.clone()))
        .await
        .unwrap();
    assert_eq!((early.value, early.source), (1, Source::Computed));
    assert_eq!(c.get::<u32>(&k).await.unwrap(), Some(1));
}

#[tokio::test]
async fn a_stale_value_is_served_when_the_computation_fails() {
    let s = Stack::new().await;
    let (c, _) = s.instance();
    let k = key("stale", "t", &["v"]);
    let opts = ComputeOptions {
        ttl: Some(Duration::from_millis(300)),
        grace: Duration::from_secs(30),
        ..ComputeOptions::default()
    };
    let v1 = c
        .get_or_compute_with(&k, &opts, || async { Ok::<_, String>(doc("v1", 1)) })
        .await
        .unwrap();
    assert!(!v1.stale);
    tokio::time::sleep(Duration::from_millis(600)).await;

    // Expired for everyone else...
    assert_eq!(c.get::<Doc>(&k).await.unwrap(), None);
    // ...but kept for the stale path, flagged.
    let got = c
        .get_or_compute_with(&k, &opts, || async { Err::<Doc, _>("renderer down") })
        .await
        .unwrap();
    assert_eq!(got.value, doc("v1", 1));
    assert!(got.stale);

    // A successful recomputation replaces it; without grace, failure is an error.
    let fresh = c
        .get_or_compute_with(&k, &opts, || async { Ok::<_, String>(doc("v2", 2)) })
        .await
        .unwrap();
    assert_eq!(
        (fresh.value.n, fresh.stale, fresh.source),
        (2, false, Source::Computed)
    );
    let none = key("stale", "t", &["never"]);
    let err = c
        .get_or_compute(&none, None, || async { Err::<Doc, _>("boom") })
        .await
        .unwrap_err();
    assert!(
        matches!(err, KvError::Compute(ref m) if m == "boom"),
        "{err}"
    );
}

/// A TCP listener that accepts connections and never answers.
async fn hanging_listener() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = l.accept().await {
            held.push(sock);
        }
    });
    (port, task)
}

#[tokio::test]
async fn a_hanging_redis_costs_a_bounded_delay_and_postgres_answers() {
    let (pool, _) = fresh_db().await;
    let (port, listener) = hanging_listener().await;
    let redis = Arc::new(
        RedisBackend::from_url(
            &format!("redis://127.0.0.1:{port}/"),
            "hang",
            Duration::from_millis(200),
        )
        .unwrap(),
    );
    let pg = postgres(&pool);
    let c = Cache::builder()
        .tier(memory())
        .tier(redis.clone())
        .tier(pg.clone())
        .locks(redis.clone())
        .build();
    let bound = Duration::from_secs(5);
    let k = key("deg", "t", &["r"]);
    tokio::time::timeout(bound, c.set(&k, &doc("pg", 1), None))
        .await
        .expect("set must not hang")
        .expect("Postgres takes the write");
    // Another instance (empty memory) reads it from Postgres.
    let c2 = Cache::builder()
        .tier(memory())
        .tier(redis.clone())
        .tier(pg.clone())
        .build();
    let l = tokio::time::timeout(bound, c2.lookup::<Doc>(&k))
        .await
        .expect("get must not hang")
        .unwrap();
    assert_eq!(l.value, Some(doc("pg", 1)));
    assert_eq!(l.tier, Some(Tier::Postgres));
    assert_eq!(l.failed, vec![Tier::Redis]);
    // get_or_compute works without the lock service.
    let got = tokio::time::timeout(
        bound,
        c2.get_or_compute(&key("deg", "t", &["c"]), None, || async {
            Ok::<_, String>(3u8)
        }),
    )
    .await
    .expect("get_or_compute must not hang")
    .unwrap();
    assert_eq!(got.value, 3);
    // After repeated timeouts the breaker skips Redis without waiting.
    for _ in 0..3 {
        let _ = redis.health().await;
    }
    assert!(matches!(
        redis.health().await,
        Err(KvError::CircuitOpen(Tier::Redis))
    ));
    let stats = c2.stats().await;
    assert!(stats.tiers[1].counters.errors >= 1, "{:?}", stats.tiers[1]);
    assert!(!stats.tiers[1].healthy);
    assert!(stats.tiers[2].healthy);
    listener.abort();
}

#[tokio::test]
async fn with_postgres_stopped_redis_serves_alone() {
    let s = Stack::new().await;
    let (hang_port, listener) = hanging_listener().await;
    let dead_port = free_port(); // nothing listens there any more
    for port in [dead_port, hang_port] {
        let url = format!("postgres://postgres@127.0.0.1:{port}/nothing");
        let dead_pg = Arc::new(PostgresBackend::new(
            facesvg::app::pg_pool(&url, None, 2, Duration::from_secs(2)).unwrap(),
            Duration::from_millis(300),
        ));
        let c = Cache::builder()
            .tier(memory())
            .tier(s.redis.clone())
            .tier(dead_pg.clone())
            .locks(s.redis.clone())
            .build();
        let bound = Duration::from_secs(5);
        let k = key("deg", "t", &["p", &port.to_string()]);
        tokio::time::timeout(bound, c.set(&k, &"redis only", None))
            .await
            .expect("set must not hang")
            .expect("Redis takes the write");
        let c2 = Cache::builder()
            .tier(memory())
            .tier(s.redis.clone())
            .tier(dead_pg.clone())
            .build();
        let l = tokio::time::timeout(bound, c2.lookup::<String>(&k))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (l.value.as_deref(), l.tier),
            (Some("redis only"), Some(Tier::Redis))
        );
        // A miss is not confirmed while Postgres is down: the caller sees which tier failed.
        let miss = tokio::time::timeout(bound, c2.lookup::<String>(&key("deg", "t", &["nope"])))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((miss.value, miss.failed), (None, vec![Tier::Postgres]));
        // Only Postgres behind it: no tier answers, which is an error, not a miss.
        let alone = Cache::builder().tier(dead_pg.clone()).build();
        let err = tokio::time::timeout(bound, alone.get::<String>(&k))
            .await
            .unwrap();
        assert!(matches!(err, Err(KvError::Unavailable)), "{err:?}");
    }
    listener.abort();
}

#[tokio::test]
async fn set_if_absent_races_have_exactly_one_winner_on_every_tier() {
    let s = Stack::new().await;
    // Each tier on its own, then the composition over two instances.
    let mem = memory();
    let tiers: Vec<(String, Arc<Cache>, Arc<Cache>)> = vec![
        (
            "memory".into(),
            Arc::new(Cache::builder().tier(mem.clone()).build()),
            Arc::new(Cache::builder().tier(mem).build()),
        ),
        (
            "redis".into(),
            Arc::new(s.single(Tier::Redis)),
            Arc::new(s.single(Tier::Redis)),
        ),
        (
            "postgres".into(),
            Arc::new(s.single(Tier::Postgres)),
            Arc::new(s.single(Tier::Postgres)),
        ),
        (
            "tiered".into(),
            Arc::new(s.instance().0),
            Arc::new(s.instance().0),
        ),
    ];
    for (name, a, b) in tiers {
        for round in 0..20 {
            let k = key("nx", "t", &[&name, &round.to_string()]);
            let (ka, kb) = (k.clone(), k.clone());
            let (a2, b2) = (a.clone(), b.clone());
            let ta = tokio::spawn(async move {
                a2.set_if_absent(&ka, &"from-a".to_owned(), &SetOptions::default())
                    .await
            });
            let tb = tokio::spawn(async move {
                b2.set_if_absent(&kb, &"from-b".to_owned(), &SetOptions::default())
                    .await
            });
            let (ra, rb) = (ta.await.unwrap().unwrap(), tb.await.unwrap().unwrap());
            let winner = match (&ra, &rb) {
                (Conditional::Stored, Conditional::Exists(v)) => {
                    assert_eq!(v, "from-a", "{name}");
                    "from-a"
                }
                (Conditional::Exists(v), Conditional::Stored) => {
                    assert_eq!(v, "from-b", "{name}");
                    "from-b"
                }
                other => panic!("{name} round {round}: not exactly one winner: {other:?}"),
            };
            assert_eq!(
                a.get::<String>(&k).await.unwrap().as_deref(),
                Some(winner),
                "{name}"
            );
            assert_eq!(
                b.get::<String>(&k).await.unwrap().as_deref(),
                Some(winner),
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn warm_fills_only_the_missing_keys() {
    let s = Stack::new().await;
    let (c, _) = s.instance();
    let ks: Vec<Key> = (0..25)
        .map(|i| key("warm", "t", &[&i.to_string()]))
        .collect();
    for k in &ks[..5] {
        c.set(k, &"already".to_owned(), None).await.unwrap();
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let opts = WarmOptions {
        batch: 10,
        concurrency: 3,
        ..WarmOptions::default()
    };
    let report = c
        .warm(&ks, &opts, |k| {
            let (calls, running, peak) = (calls.clone(), running.clone(), peak.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                if k.id().ends_with(":13") {
                    Err("cannot compute 13".to_owned())
                } else {
                    Ok(format!("warm {}", k.id()))
                }
            }
        })
        .await;
    assert_eq!(
        report,
        WarmReport {
            computed: 19,
            skipped: 5,
            failed: 1
        }
    );
    assert_eq!(calls.load(Ordering::SeqCst), 20);
    assert!(peak.load(Ordering::SeqCst) <= 3, "concurrency bound");
    let got: Vec<Option<String>> = c.get_many(&ks).await.unwrap();
    assert_eq!(got[0].as_deref(), Some("already"));
    assert_eq!(got[7].as_deref(), Some("warm v1:7"));
    assert_eq!(got[13], None);
    // Warming again computes nothing but the failed key.
    let again = c
        .warm(&ks, &opts, |_| async { Ok::<_, String>("late".to_owned()) })
        .await;
    assert_eq!(
        again,
        WarmReport {
            computed: 1,
            skipped: 24,
            failed: 0
        }
    );
}

#[tokio::test]
async fn invalidating_a_tag_removes_every_entry_carrying_it_on_every_tier() {
    let s = Stack::new().await;
    let (c, mem) = s.instance();
    let with = |tags: &[&str]| SetOptions {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..SetOptions::default()
    };
    // Entries derived from user 42 (the parent), and unrelated ones.
    let children = [
        (key("profile", "t", &["42"]), with(&["user:42"])),
        (
            key("avatar", "t", &["42", "small"]),
            with(&["user:42", "images"]),
        ),
        (key("feed", "other", &["42"]), with(&["user:42"])),
    ];
    let unrelated = [
        (key("profile", "t", &["43"]), with(&["user:43"])),
        (key("avatar", "t", &["43", "small"]), with(&["images"])),
        (key("profile", "t", &["44"]), SetOptions::default()),
    ];
    for (k, o) in children.iter().chain(&unrelated) {
        c.set_with(k, &k.full().to_owned(), o).await.unwrap();
    }
    let report = c.invalidate_tag("user:42").await;
    assert!(report.complete(), "{report:?}");
    let pg_removed = report
        .tiers
        .iter()
        .find(|t| t.tier == Tier::Postgres)
        .unwrap()
        .outcome;
    assert_eq!(pg_removed, Some(Invalidated::Removed(3)));
    for (k, _) in &children {
        assert_eq!(c.get::<String>(k).await.unwrap(), None, "{k:?}");
        for b in [
            mem.clone() as Arc<dyn Backend>,
            s.redis.clone(),
            s.pg.clone(),
        ] {
            assert!(
                b.get_many(&[k], false).await.unwrap()[0].is_none(),
                "{} {k:?}",
                b.tier()
            );
        }
    }
    for (k, _) in &unrelated {
        assert_eq!(
            c.get::<String>(k).await.unwrap().as_deref(),
            Some(k.full()),
            "{k:?}"
        );
        for b in [
            mem.clone() as Arc<dyn Backend>,
            s.redis.clone(),
            s.pg.clone(),
        ] {
            assert!(
                b.get_many(&[k], false).await.unwrap()[0].is_some(),
                "{} {k:?}",
                b.tier()
            );
        }
    }
    // Tagging again after the invalidation works.
    let (k, o) = &children[0];
    c.set_with(k, &"back".to_owned(), o).await.unwrap();
    assert_eq!(c.get::<String>(k).await.unwrap().as_deref(), Some("back"));
}

#[tokio::test]
async fn the_memory_tier_is_bounded_by_entries_and_by_bytes() {
    let by_entries = MemoryBackend::new(10, 1 << 30, Duration::from_secs(60));
    let by_bytes = MemoryBackend::new(1_000_000, 64 * 1024, Duration::from_secs(60));
    let small: Arc<[u8]> = b"1".to_vec().into();
    let big: Arc<[u8]> = serde_json::to_vec(&"x".repeat(4000)).unwrap().into();
    for i in 0..200 {
        let k = key("mem", "t", &[&i.to_string()]);
        by_entries
            .set_many(&[(&k, &Entry::new(small.clone(), Duration::from_secs(60)))])
            .await
            .unwrap();
        by_bytes
            .set_many(&[(&k, &Entry::new(big.clone(), Duration::from_secs(60)))])
            .await
            .unwrap();
    }
    let n = by_entries.entry_count();
    assert!(n <= 10 && n > 0, "{n}");
    let u = by_bytes.usage().await.unwrap();
    assert!(u.bytes <= 64 * 1024 && u.entries > 0, "{u:?}");
    // The memory tier caps TTLs at its max_ttl.
    let capped = MemoryBackend::new(10, 1 << 20, Duration::from_millis(200));
    let k = key("mem", "t", &["cap"]);
    capped
        .set_many(&[(&k, &Entry::new(small, Duration::from_secs(3600)))])
        .await
        .unwrap();
    let got = capped.get_many(&[&k], false).await.unwrap()[0]
        .clone()
        .unwrap();
    assert!(got.ttl <= Duration::from_millis(200));
}

#[tokio::test]
async fn postgres_counts_hits_when_asked_and_lists_keys() {
    let s = Stack::new().await;
    let counting =
        Arc::new(PostgresBackend::new(s.pool.clone(), Duration::from_secs(3)).count_hits(true));
    let c = Cache::builder().tier(counting).build();
    let (k1, k2) = (key("hits", "t", &["a"]), key("hits", "t", &["b"]));
    c.set(&k1, &1, None).await.unwrap();
    c.set(&k2, &2, None).await.unwrap();
    for _ in 0..3 {
        assert_eq!(c.get::<u32>(&k1).await.unwrap(), Some(1));
    }
    let _: Vec<Option<u32>> = c.get_many(&[k1.clone(), k2.clone()]).await.unwrap();
    // The default backend reads without writing.
    assert_eq!(
        s.single(Tier::Postgres).get::<u32>(&k2).await.unwrap(),
        Some(2)
    );
    let listed = s.pg.list_keys("hits", Some("t"), 10).await.unwrap();
    let hits: HashMap<&str, i64> = listed.iter().map(|l| (l.key.as_str(), l.hits)).collect();
    assert_eq!(hits[k1.full()], 4);
    assert_eq!(hits[k2.full()], 1);
    assert!(listed
        .iter()
        .all(|l| l.bytes > 0 && l.expires_in_ms.is_some_and(|ms| ms > 0)));
}

/// The in-process tier keeps the first typed read's value, so that later hits do
/// not parse the JSON again; a read as another type still decodes the bytes.
#[tokio::test]
async fn a_memory_hit_reuses_the_decoded_value() {
    let c = Cache::builder().tier(memory()).build();
    let k = key("memo", "acme", &["a"]);
    c.set(&k, &doc("a", 1), None).await.unwrap();
    let kept = |c: &Cache| format!("{:?}", c.tiers()[0].get_local(&k).unwrap().memo);
    assert_eq!(kept(&c), "Memo(empty)", "nothing decoded before a read");
    assert_eq!(c.get::<Doc>(&k).await.unwrap(), Some(doc("a", 1)));
    assert_eq!(kept(&c), "Memo(kept)");
    assert_eq!(c.get::<Doc>(&k).await.unwrap(), Some(doc("a", 1)));
    let as_json = c.get::<serde_json::Value>(&k).await.unwrap().unwrap();
    assert_eq!(as_json["name"], "a", "another type decodes the bytes");
    // A new value replaces the slot, and with it the decoded copy.
    c.set(&k, &doc("b", 2), None).await.unwrap();
    assert_eq!(c.get::<Doc>(&k).await.unwrap(), Some(doc("b", 2)));
}
