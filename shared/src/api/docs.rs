//! Static pages served by the status function: the OpenAPI description, a browsable
//! API page, the result viewer and the operator's dashboard. Being assets, they are answered before any tenant
//! check; they carry no data of any tenant.
//!
//! The pages are compiled in (`include_str!`) and work offline: each is one HTML
//! document with its style and script inlined, and a Content-Security-Policy that
//! allows exactly those inline blocks (by hash), requests to this origin only, and
//! no other script, style, font or frame. A page that tried to load anything from
//! elsewhere would be blocked by the browser, not just frowned upon.

use std::sync::OnceLock;

use base64::Engine as _;
use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Response};
use sha2::{Digest, Sha256};

/// The OpenAPI 3.1 description of every route, served at `GET /openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

const BASE_CSS: &str = include_str!("assets/base.css");
const DOCS_HTML: &str = include_str!("assets/docs.html");
const DOCS_CSS: &str = include_str!("assets/docs.css");
const DOCS_JS: &str = include_str!("assets/docs.js");
const VIEWER_HTML: &str = include_str!("assets/viewer.html");
const VIEWER_CSS: &str = include_str!("assets/viewer.css");
const VIEWER_JS: &str = include_str!("assets/viewer.js");
const DASHBOARD_HTML: &str = include_str!("assets/dashboard.html");
const DASHBOARD_CSS: &str = include_str!("assets/dashboard.css");
const DASHBOARD_JS: &str = include_str!("assets/dashboard.js");

/// Where a page's inlined style and script go in its HTML template.
const STYLE_SLOT: &str = "/*STYLE*/";
const SCRIPT_SLOT: &str = "/*SCRIPT*/";

/// A page put together once per cold start, with the policy that admits it.
pub struct Page {
    pub html: String,
    pub csp: String,
}

impl Page {
    fn assemble(template: &str, css: &[&str], js: &str) -> Page {
        let style = css.concat();
        let html = template
            .replacen(STYLE_SLOT, &style, 1)
            .replacen(SCRIPT_SLOT, js, 1);
        // blob: is the photo the viewer shows (a local file, never uploaded for display).
        let csp = format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; img-src 'self' blob:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash(js),
            hash(&style)
        );
        Page { html, csp }
    }
}

fn hash(inline: &str) -> String {
    let digest = Sha256::digest(inline.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The API documentation page (`GET /docs`).
pub fn docs_page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(|| Page::assemble(DOCS_HTML, &[BASE_CSS, DOCS_CSS], DOCS_JS))
}

/// The result viewer (`GET /viewer`).
pub fn viewer_page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(|| Page::assemble(VIEWER_HTML, &[BASE_CSS, VIEWER_CSS], VIEWER_JS))
}

/// The operator's dashboard (`GET /dashboard`): its charts are drawn by its own
/// script from the admin routes it calls.
pub fn dashboard_page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(|| Page::assemble(DASHBOARD_HTML, &[BASE_CSS, DASHBOARD_CSS], DASHBOARD_JS))
}

/// The asset for `path`, if it is one. `path` may carry a stage or local prefix
/// (`/dev/docs`); task routes never match, whatever their last segment.
pub fn static_route(method: &Method, path: &str) -> Option<Response<Body>> {
    if method != Method::GET || path.contains("/api/") {
        return None;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    match name {
        "openapi.json" => Some(respond(
            "application/json",
            OPENAPI_JSON.to_owned(),
            None,
            // Public and tenant-free: other tools (code generators, linters) may load it.
            Some("*"),
        )),
        "docs" => {
            let page = docs_page();
            Some(respond(
                "text/html; charset=utf-8",
                page.html.clone(),
                Some(&page.csp),
                None,
            ))
        }
        "viewer" | "dashboard" => {
            let page = if name == "viewer" {
                viewer_page()
            } else {
                dashboard_page()
            };
            Some(respond(
                "text/html; charset=utf-8",
                page.html.clone(),
                Some(&page.csp),
                None,
            ))
        }
        _ => None,
    }
}

fn respond(
    content_type: &'static str,
    body: String,
    csp: Option<&str>,
    allow_origin: Option<&'static str>,
) -> Response<Body> {
    let mut resp = Response::new(Body::Text(body));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Compiled into the binary: a deployment changes them, so keep browser caches short.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Some(policy) = csp.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    if let Some(origin) = allow_origin {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static(origin),
        );
    }
    resp
}
