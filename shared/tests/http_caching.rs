//! HTTP caching of the read routes on the real stack: strong ETags, `Cache-Control`
//! up to the entry's expiry, `304` for a matching `If-None-Match` without reading S3
//! (the real S3 store, wrapped to count its reads), `no-store` for open tasks.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{get_if_none_match, Form, TestApp};
use facesvg::objects::{ObjectError, ObjectStore};

/// The emulator-backed store, counting the objects it reads.
struct CountingReads {
    inner: Arc<dyn ObjectStore>,
    gets: Arc<AtomicUsize>,
}

#[async_trait]
impl ObjectStore for CountingReads {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), ObjectError> {
        self.inner.put(key, body, content_type).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<usize, ObjectError> {
        self.inner.delete_many(keys).await
    }
    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, ObjectError> {
        self.inner.presign_get(key, ttl).await
    }
    async fn ping(&self) -> Result<(), ObjectError> {
        self.inner.ping().await
    }
}

async fn counted() -> (TestApp, Arc<AtomicUsize>) {
    let mut t = TestApp::spawn().await;
    let gets = Arc::new(AtomicUsize::new(0));
    let inner = t.app.objects.clone();
    Arc::get_mut(&mut t.app)
        .expect("no other handle yet")
        .objects = Arc::new(CountingReads {
        inner,
        gets: gets.clone(),
    });
    (t, gets)
}

fn max_age(cache_control: &str) -> u64 {
    cache_control
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no max-age in {cache_control:?}"))
}

#[tokio::test]
async fn a_finished_svg_is_revalidated_with_304_without_reading_s3() {
    let (t, gets) = counted().await;
    let status = t.render(&Form::einstein()).await;
    let id = status["task_id"].as_str().unwrap();
    let path = format!("/api/v1/frontal/crop/result/{id}.svg");

    let first = t.get(&path).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(gets.load(Ordering::SeqCst), 1);
    let etag = first.headers["etag"].clone();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );
    let cc = &first.headers["cache-control"];
    assert!(
        cc.starts_with("private, max-age=") && cc.ends_with(", immutable"),
        "{cc}"
    );
    // Private to the caller: a browser shared by two tenants keeps one copy each.
    assert_eq!(first.headers["vary"], "Authorization");
    // Up to the entry's expiry (CACHE_TTL_HOURS=24), not a fixed hour.
    let age = max_age(cc);
    assert!((24 * 3600 - 120..=24 * 3600).contains(&age), "{cc}");

    // The same tag again: 304, no body, the same headers, and S3 is not read.
    let again = get_if_none_match(&t, &path, &etag).await;
    assert_eq!(again.status, 304, "{}", again.body);
    assert!(again.body.is_empty());
    assert_eq!(again.headers["etag"], etag);
    assert!(again.headers["cache-control"].ends_with(", immutable"));
    let weak_and_listed = format!("\"other\", W/{etag}");
    assert_eq!(
        get_if_none_match(&t, &path, &weak_and_listed).await.status,
        304
    );
    assert_eq!(gets.load(Ordering::SeqCst), 1, "304s never read S3");

    // Another instance (cold L0, Redis) and a task found in Postgres: the same tag.
    let other = t.another_instance().await;
    let mut event = common::http_event("GET", &path, Some("tenant-a"), None, b"");
    event["headers"]["if-none-match"] = serde_json::json!(etag);
    let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
    let r = common::to_resp(facesvg::api::status(&other, req).await);
    assert_eq!(r.status, 304);

    // A stale tag gets the SVG (and reads it).
    let stale = get_if_none_match(&t, &path, "\"stale\"").await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, first.body);
    assert_eq!(gets.load(Ordering::SeqCst), 2);

    // The tag is the tenant's: another tenant with it gets 404, not 304.
    let mut event = common::http_event("GET", &path, Some("tenant-b"), None, b"");
    event["headers"]["if-none-match"] = serde_json::json!(etag);
    let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
    let r = common::to_resp(facesvg::api::status(&t.app, req).await);
    assert_eq!(r.status, 404, "{}", r.body);

    // Another face: another tag.
    let takeo = t.render(&Form::takeo()).await;
    let path2 = format!(
        "/api/v1/frontal/crop/result/{}.svg",
        takeo["task_id"].as_str().unwrap()
    );
    let r = get_if_none_match(&t, &path2, &etag).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.headers["etag"], etag);
}

#[tokio::test]
async fn status_answers_are_cached_while_finished_and_never_while_open() {
    let (t, gets) = counted().await;
    let r = t.submit(&Form::takeo()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["task_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/frontal/crop/status/{id}");

    // Open: no-store, Retry-After, no validator; If-None-Match changes nothing.
    let open = get_if_none_match(&t, &path, "*").await;
    assert_eq!(open.status, 200, "{}", open.body);
    assert_eq!(open.headers["cache-control"], "no-store");
    assert!(open.headers.contains_key("retry-after"));
    assert!(!open.headers.contains_key("etag"));

    t.drain().await;
    let done = t.get(&path).await;
    assert_eq!(done.json()["status"], "SUCCESS", "{}", done.body);
    let etag = done.headers["etag"].clone();
    let cc = &done.headers["cache-control"];
    assert!(cc.starts_with("private, max-age="), "{cc}");
    assert!(!cc.contains("immutable"), "{cc}");
    // Never longer than the presigned svg_url it carries (PRESIGN_TTL_SECS=300).
    assert!((290..=300).contains(&max_age(cc)), "{cc}");
    assert!(!done.headers.contains_key("retry-after"));

    let again = get_if_none_match(&t, &path, &etag).await;
    assert_eq!(again.status, 304, "{}", again.body);
    assert!(again.body.is_empty());
    assert_eq!(again.headers["etag"], etag);
    // A repeated answer (the same link) has the same tag.
    assert_eq!(t.get(&path).await.headers["etag"], etag);
    assert_eq!(gets.load(Ordering::SeqCst), 0, "status never reads S3");
}

#[tokio::test]
async fn listings_carry_their_short_max_age() {
    let t = TestApp::spawn().await;
    for (route, secs) in [
        ("/api/v1/cache/stats", 30),
        ("/api/v1/cache/recent", 10),
        ("/api/v1/cache/daily", 60),
        ("/api/v1/cache/top", 30),
    ] {
        let r = t.get(route).await;
        assert_eq!(r.status, 200, "{route}: {}", r.body);
        assert_eq!(
            r.headers["cache-control"],
            format!("private, max-age={secs}"),
            "{route}"
        );
        assert_eq!(r.headers["vary"], "Authorization", "{route}");
    }
}
