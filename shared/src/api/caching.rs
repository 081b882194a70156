//! HTTP caching of the read routes: the one place that decides validators,
//! `Cache-Control` and `304 Not Modified`.
//!
//! - A finished task's SVG never changes: its bytes follow from the content key (the
//!   tenant-scoped input hash) and the renderer version, so its strong `ETag` is
//!   derived from those two alone, and a matching `If-None-Match` is answered `304`
//!   from the outcome cache, without reading S3. `Cache-Control: private,
//!   max-age=<seconds to the entry's expiry>, immutable`.
//! - A finished task's status is JSON that also carries a presigned `svg_url`, which
//!   changes when the link is re-signed. Its `ETag` is derived from the content key,
//!   the renderer version and the answer's bytes (so two different answers never
//!   share a strong tag), and its `max-age` ends with the entry or with the link,
//!   whichever comes first: a cached status never hands out an expired link.
//! - `?include=svg` puts the SVG itself in a finished status answer (up to
//!   [`crate::policy::answers::INLINE_SVG_MAX_BYTES`]). The include set is part of
//!   the tag, so the answers with and without the SVG never share one; the SVG's
//!   bytes are not: like the SVG route's tag, they follow from the content key, so
//!   the tag is taken over the answer without them and a matching `If-None-Match`
//!   is answered `304` without reading S3. Its freshness is the status answer's.
//! - An open task (or a failure that will be run again) is `no-store`, with the
//!   `Retry-After` of [`crate::services::poll`].
//! - Listings (stats, daily, top, recent) get a short `max-age`: the TTL they are
//!   cached with on the server (see `status::cached_listing`).

use chrono::{DateTime, Utc};
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use sha2::{Digest, Sha256};

/// A strong entity tag over `parts` (length-prefixed, so no two lists collide).
fn tag(kind: &str, parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in std::iter::once(kind.as_bytes()).chain(parts.iter().copied()) {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    format!("\"{}\"", &hex::encode(h.finalize())[..32])
}

/// The SVG's tag: the content key and the renderer version determine its bytes.
pub fn svg_etag(input_hash: &str) -> String {
    tag(
        "svg",
        &[input_hash.as_bytes(), crate::RENDERER_VERSION.as_bytes()],
    )
}

/// A finished status answer's tag: the content key, the renderer version, what the
/// request asked to include (`""` or `"svg"`) and the answer itself without the
/// inlined SVG (it holds the presigned link; the SVG follows from the content key).
pub fn status_etag(input_hash: &str, include: &str, body: &[u8]) -> String {
    tag(
        "status",
        &[
            input_hash.as_bytes(),
            crate::RENDERER_VERSION.as_bytes(),
            include.as_bytes(),
            body,
        ],
    )
}

/// Whether `If-None-Match` names `etag` (or is `*`). RFC 9110 §13.1.2: the weak
/// comparison, so `W/"x"` matches `"x"`.
pub fn not_modified(req: &Request, etag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let want = opaque(etag);
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || opaque(t) == want)
}

/// Whole seconds from now until `until` (0 once past).
pub fn seconds_until(until: DateTime<Utc>) -> u64 {
    (until - Utc::now()).num_seconds().max(0) as u64
}

/// `private, max-age=N[, immutable]`.
fn private(max_age: u64, immutable: bool) -> HeaderValue {
    let value = if immutable {
        format!("private, max-age={max_age}, immutable")
    } else {
        format!("private, max-age={max_age}")
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("no-store"))
}

/// Marks a finished answer as cacheable by the caller until `max_age` seconds.
pub fn finished(resp: &mut Response<Body>, etag: &str, max_age: u64, immutable: bool) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, private(max_age, immutable));
    h.insert(header::VARY, HeaderValue::from_static("Authorization"));
}

/// `304 Not Modified`: no body, the same validator and freshness as a `200`.
pub fn unchanged(etag: &str, max_age: u64, immutable: bool) -> Response<Body> {
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = StatusCode::NOT_MODIFIED;
    finished(&mut resp, etag, max_age, immutable);
    resp
}

/// An open task: never from a cache; poll again after `retry_after` seconds.
pub fn open(resp: &mut Response<Body>, retry_after: Option<u64>) {
    let h = resp.headers_mut();
    if let Some(secs) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A listing cached `max_age` seconds on the server: the caller may keep it as long.
///
/// Every private answer varies with the caller: a browser shared by two tenants must
/// not answer one with the other's copy (`Vary: Authorization`).
pub fn listing(resp: &mut Response<Body>, max_age: u64) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, private(max_age, false));
    h.insert(header::VARY, HeaderValue::from_static("Authorization"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_inm(value: &str) -> Request {
        let mut req = Request::default();
        req.headers_mut()
            .insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
        req
    }

    #[test]
    fn tags_are_strong_distinct_and_matched_as_rfc_9110_says() {
        let svg = svg_etag("abc");
        assert!(svg.starts_with('"') && svg.ends_with('"') && !svg.starts_with("W/"));
        assert_eq!(svg, svg_etag("abc"));
        assert_ne!(svg, svg_etag("abd"));
        assert_ne!(
            status_etag("abc", "", b"{}"),
            status_etag("abc", "", b"{ }")
        );
        assert_ne!(
            status_etag("abc", "", b"{}"),
            status_etag("abc", "svg", b"{}")
        );
        assert_ne!(status_etag("abc", "", b""), svg);
        assert!(not_modified(&with_inm(&svg), &svg));
        assert!(not_modified(&with_inm(&format!("\"x\", W/{svg}")), &svg));
        assert!(not_modified(&with_inm("*"), &svg));
        assert!(!not_modified(&with_inm("\"x\""), &svg));
        assert!(!not_modified(&Request::default(), &svg));
    }
}
