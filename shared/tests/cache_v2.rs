//! The V2 typed API (`facesvg::cache::kv::v2`) on the real local Redis and
//! Postgres: embeddings, perceptual hashes and crawl de-duplication by image
//! content and tenant, each tier keeping them for its own lifetime (Redis 1 h /
//! 2 h / 24 h, Postgres without expiry), and answers with either store gone: a
//! private `redis-server` that the test stops, a Postgres port where nothing
//! listens. A missing service fails the test loudly.

use std::sync::Arc;
use std::time::Duration;

use facesvg::cache::kv::v2::{content_hash, raw_key, Crawled, CRAWLED, EMBEDDINGS, PHASHES};
use facesvg::cache::kv::*;
use facesvg::db::Db as Pool;

#[path = "common/kv.rs"]
mod kv_support;
use kv_support::{free_port, redis_url, OwnRedis};

fn fresh_prefix() -> String {
    kv_support::fresh_prefix("v2test")
}

async fn fresh_db() -> Pool {
    kv_support::fresh_db("v2").await.0
}

fn memory() -> Arc<MemoryBackend> {
    Arc::new(MemoryBackend::new(
        10_000,
        16 << 20,
        Duration::from_secs(60),
    ))
}

/// Redis and Postgres of one deployment, with the default lifetimes (the V2 presets).
struct Stack {
    redis: Arc<RedisBackend>,
    pg: Arc<PostgresBackend>,
    pool: Pool,
}

impl Stack {
    async fn on(redis_url: &str) -> Stack {
        let pool = fresh_db().await;
        let redis = Arc::new(
            RedisBackend::from_url(redis_url, &fresh_prefix(), Duration::from_millis(1000))
                .expect("redis url"),
        );
        redis
            .health()
            .await
            .unwrap_or_else(|e| panic!("Redis at {redis_url} is required: {e}"));
        Stack {
            pg: Arc::new(PostgresBackend::new(pool.clone(), Duration::from_secs(3))),
            redis,
            pool,
        }
    }

    async fn new() -> Stack {
        Stack::on(&redis_url()).await
    }

    /// One instance: its own memory tier over the shared Redis and Postgres.
    fn instance(&self) -> Cache {
        Cache::builder()
            .tier(memory())
            .tier(self.redis.clone())
            .tier(self.pg.clone())
            .build()
    }

    async fn expires_at_is_null(&self, k: &Key) -> bool {
        let c = self.pool.conn().await.unwrap();
        let row = c
            .query_one(
                "SELECT expires_at IS NULL AND stale_until IS NULL FROM cache_store
                  WHERE namespace = $1 AND tenant = $2 AND key = $3",
                &[&k.namespace(), &k.tenant(), &k.id()],
            )
            .await
            .unwrap();
        row.get(0)
    }

    /// The entry's remaining lifetime in Redis.
    async fn redis_ttl(&self, k: &Key) -> Option<Duration> {
        let got = self.redis.get_many(&[k], false).await.unwrap();
        got.into_iter().next().flatten().map(|e| e.ttl)
    }
}

fn key(ns: &str, tenant: &str, image: &[u8]) -> Key {
    KeyBuilder::new(ns)
        .unwrap()
        .key(tenant, &[&content_hash(image)])
        .unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

/// Lifetimes measured on a server, seconds after they were set: a minute of slack.
fn about(got: Option<Duration>, want: Duration) -> bool {
    got.is_some_and(|g| g <= want && g > want - Duration::from_secs(60))
}

#[tokio::test]
async fn embeddings_and_phashes_are_cached_by_content_and_tenant_for_each_tiers_lifetime() {
    let s = Stack::new().await;
    let c = s.instance();
    let v2 = V2::new(&c);
    let image = b"\x89PNG a face".to_vec();
    let embedding: Vec<f32> = vec![0.1, -2.5e-7, 3.4028235e38, 0.0, 1.0 / 3.0];

    assert_eq!(v2.get_embedding(&image, "t1").await.unwrap(), None);
    v2.set_embedding(&image, &embedding, "t1").await.unwrap();
    v2.set_phash(&image, u64::MAX - 1, "t1").await.unwrap();

    // Another instance (empty memory) reads both, exactly, from Redis.
    let other = s.instance();
    let v2b = V2::new(&other);
    assert_eq!(
        v2b.get_embedding(&image, "t1").await.unwrap(),
        Some(embedding.clone())
    );
    assert_eq!(
        v2b.get_phash(&image, "t1").await.unwrap(),
        Some(u64::MAX - 1)
    );
    let ek = key(EMBEDDINGS, "t1", &image);
    assert_eq!(
        other.lookup::<Vec<f32>>(&ek).await.unwrap().tier,
        Some(Tier::Memory),
        "the first read filled memory"
    );
    // Another tenant, or other bytes, is another entry.
    assert_eq!(v2b.get_embedding(&image, "t2").await.unwrap(), None);
    assert_eq!(v2b.get_phash(b"other bytes", "t1").await.unwrap(), None);

    // Each tier keeps them for its own lifetime: Redis 1 h and 2 h, Postgres forever.
    let pk = key(PHASHES, "t1", &image);
    assert!(
        about(s.redis_ttl(&ek).await, HOUR),
        "{:?}",
        s.redis_ttl(&ek).await
    );
    assert!(about(s.redis_ttl(&pk).await, 2 * HOUR));
    assert!(s.expires_at_is_null(&ek).await);
    assert!(s.expires_at_is_null(&pk).await);
    let pg = s.pg.get_many(&[&ek], false).await.unwrap().pop().flatten();
    assert_eq!(pg.map(|e| e.ttl), Some(FOREVER));
}

#[tokio::test]
async fn a_backfill_writes_redis_for_its_own_lifetime_capped_by_what_is_left_below() {
    let s = Stack::new().await;
    let c = s.instance();
    let v2 = V2::new(&c);
    let image = b"a photo".to_vec();
    v2.set_embedding(&image, &[1.0, 2.0], "t").await.unwrap();
    let ek = key(EMBEDDINGS, "t", &image);
    // Redis lets it go after its hour; Postgres still has it.
    s.redis.delete_many(&[&ek]).await.unwrap();
    let fresh = s.instance();
    let l = fresh.lookup::<Vec<f32>>(&ek).await.unwrap();
    assert_eq!(
        (l.value, l.tier),
        (Some(vec![1.0, 2.0]), Some(Tier::Postgres))
    );
    // Back in Redis for Redis's hour, not for Postgres's "forever".
    assert!(
        about(s.redis_ttl(&ek).await, HOUR),
        "{:?}",
        s.redis_ttl(&ek).await
    );

    // A crawl record with 10 s left in Postgres comes back into Redis for at most
    // those 10 s, not for Redis's 24 h.
    let ck = key(CRAWLED, "t", &image);
    let record = Crawled {
        url: "https://example.test/a.jpg".into(),
        raw_key: raw_key("t", &image),
        thumbnail_key: None,
    };
    let e = Entry::new(
        serde_json::to_vec(&record).unwrap().into(),
        Duration::from_secs(10),
    );
    s.pg.set_many(&[(&ck, &e)]).await.unwrap();
    let (skip, raw) = V2::new(&s.instance())
        .should_skip("https://example.test/b.jpg", &image, "t")
        .await
        .unwrap();
    assert!(skip);
    assert_eq!(raw, record.raw_key);
    let left = s.redis_ttl(&ck).await.expect("backfilled into Redis");
    assert!(left <= Duration::from_secs(10), "{left:?}");
}

#[tokio::test]
async fn crawl_deduplication_skips_stored_content_whatever_its_url() {
    let s = Stack::new().await;
    let c = s.instance();
    let v2 = V2::new(&c);
    let image = b"crawled image bytes".to_vec();
    let url = "https://example.test/photo.jpg";

    let (skip, raw) = v2.should_skip(url, &image, "t").await.unwrap();
    assert!(!skip);
    assert_eq!(raw, format!("raw/t/{}", content_hash(&image)));
    v2.store_crawled(url, &image, &raw, Some("thumbs/t/x.jpg"), "t")
        .await
        .unwrap();

    // The same bytes from another URL, in another instance: skip, and where they lie.
    let other = s.instance();
    let v2b = V2::new(&other);
    assert_eq!(
        v2b.should_skip("https://mirror.test/copy.jpg", &image, "t")
            .await
            .unwrap(),
        (true, raw.clone())
    );
    assert_eq!(
        v2b.crawled(&image, "t").await.unwrap(),
        Some(Crawled {
            url: url.into(),
            raw_key: raw.clone(),
            thumbnail_key: Some("thumbs/t/x.jpg".into()),
        })
    );
    // New bytes at the same URL are new content; another tenant has crawled nothing.
    let (skip, changed) = v2b.should_skip(url, b"new bytes", "t").await.unwrap();
    assert!(!skip);
    assert_ne!(changed, raw);
    let (skip, theirs) = v2b.should_skip(url, &image, "t2").await.unwrap();
    assert!(!skip);
    assert_ne!(theirs, raw);
    // Redis 24 h, Postgres forever.
    let ck = key(CRAWLED, "t", &image);
    assert!(about(s.redis_ttl(&ck).await, 24 * HOUR));
    assert!(s.expires_at_is_null(&ck).await);
}

#[tokio::test]
async fn with_redis_stopped_postgres_answers() {
    let mut redis = OwnRedis::start().await;
    let s = Stack::on(&redis.url).await;
    let c = s.instance();
    let v2 = V2::new(&c);
    let image = b"seen before redis went down".to_vec();
    v2.set_embedding(&image, &[0.5, 0.25], "t").await.unwrap();
    v2.set_phash(&image, 42, "t").await.unwrap();
    v2.store_crawled("https://e.test/1", &image, "raw/t/1", None, "t")
        .await
        .unwrap();

    redis.stop();
    let bound = Duration::from_secs(10);
    let fresh = s.instance();
    let v2b = V2::new(&fresh);
    let got = tokio::time::timeout(bound, v2b.get_embedding(&image, "t"))
        .await
        .expect("must not hang")
        .unwrap();
    assert_eq!(got, Some(vec![0.5, 0.25]));
    assert_eq!(v2b.get_phash(&image, "t").await.unwrap(), Some(42));
    assert_eq!(
        v2b.should_skip("https://e.test/2", &image, "t")
            .await
            .unwrap(),
        (true, "raw/t/1".to_owned())
    );
    let l = fresh
        .lookup::<u64>(&key(PHASHES, "t", b"written while down"))
        .await
        .unwrap();
    assert_eq!(l.failed, vec![Tier::Redis], "Redis is really down");
    // Writes go on, to Postgres, and another instance reads them there.
    v2b.set_phash(b"written while down", 7, "t").await.unwrap();
    let third = s.instance();
    let l = third
        .lookup::<u64>(&key(PHASHES, "t", b"written while down"))
        .await
        .unwrap();
    assert_eq!((l.value, l.tier), (Some(7), Some(Tier::Postgres)));
}

#[tokio::test]
async fn with_postgres_stopped_redis_answers() {
    let s = Stack::new().await;
    let c = s.instance();
    let v2 = V2::new(&c);
    let image = b"seen before postgres went down".to_vec();
    v2.set_embedding(&image, &[9.0], "t").await.unwrap();
    v2.set_phash(&image, 1 << 63, "t").await.unwrap();
    v2.store_crawled("https://e.test/1", &image, "raw/t/9", Some("th/9"), "t")
        .await
        .unwrap();

    // The same Redis, and a Postgres where nothing listens any more.
    let url = format!("postgres://postgres@127.0.0.1:{}/nothing", free_port());
    let dead_pg = Arc::new(PostgresBackend::new(
        facesvg::app::pg_pool(&url, None, 2, Duration::from_secs(2)).unwrap(),
        Duration::from_millis(300),
    ));
    let down = Cache::builder()
        .tier(memory())
        .tier(s.redis.clone())
        .tier(dead_pg)
        .build();
    let v2b = V2::new(&down);
    let bound = Duration::from_secs(10);
    let got = tokio::time::timeout(bound, v2b.get_embedding(&image, "t"))
        .await
        .expect("must not hang")
        .unwrap();
    assert_eq!(got, Some(vec![9.0]));
    assert_eq!(v2b.get_phash(&image, "t").await.unwrap(), Some(1 << 63));
    assert_eq!(
        v2b.should_skip("https://e.test/2", &image, "t")
            .await
            .unwrap(),
        (true, "raw/t/9".to_owned())
    );
    // A miss is not confirmed while Postgres is down.
    let l = down
        .lookup::<Vec<f32>>(&key(EMBEDDINGS, "t", b"never seen"))
        .await
        .unwrap();
    assert_eq!((l.value, l.failed), (None, vec![Tier::Postgres]));
    // Writes go on, to Redis, for Redis's lifetime.
    v2b.set_embedding(b"written while down", &[4.0], "t")
        .await
        .unwrap();
    let ek = key(EMBEDDINGS, "t", b"written while down");
    assert!(about(s.redis_ttl(&ek).await, HOUR));
    let another = Cache::builder()
        .tier(memory())
        .tier(s.redis.clone())
        .build();
    assert_eq!(
        V2::new(&another)
            .get_embedding(b"written while down", "t")
            .await
            .unwrap(),
        Some(vec![4.0])
    );
}
