//! The authorization matrix: every route × every kind of caller, with the status
//! code each must get, and a check that nothing of another tenant is visible.

mod common;

use common::{http_event, to_resp, Form, Resp, TestApp};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    NoTenantClaim,
    MalformedTenant,
    TenantA,
    TenantB,
    Admin,
}

const CALLERS: [Caller; 6] = [
    Caller::Anonymous,
    Caller::NoTenantClaim,
    Caller::MalformedTenant,
    Caller::TenantA,
    Caller::TenantB,
    Caller::Admin,
];

/// An API Gateway event with exactly the claims of `caller`.
fn event(
    caller: Caller,
    method: &str,
    target: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Value {
    let mut e = http_event(method, target, Some("placeholder"), content_type, body);
    let jwt = |claims: Value, scopes: Value| json!({"jwt": {"claims": claims, "scopes": scopes}});
    let authorizer = match caller {
        Caller::Anonymous => Value::Null,
        Caller::NoTenantClaim => jwt(json!({"sub": "user"}), json!([])),
        // Not a tenant name: path separators and spaces (a non-UTF-8 claim cannot
        // reach us: API Gateway delivers claims as JSON strings).
        Caller::MalformedTenant => jwt(json!({"tenant": "../tenant-a x", "sub": "u"}), json!([])),
        Caller::TenantA => jwt(json!({"tenant": "tenant-a", "sub": "u"}), json!([])),
        Caller::TenantB => jwt(json!({"tenant": "tenant-b", "sub": "u"}), json!([])),
        Caller::Admin => jwt(
            json!({"tenant": "ops", "sub": "u"}),
            json!(["facesvg/admin"]),
        ),
    };
    match authorizer {
        Value::Null => {
            e["requestContext"]
                .as_object_mut()
                .unwrap()
                .remove("authorizer");
        }
        a => e["requestContext"]["authorizer"] = a,
    }
    e
}

async fn call(
    t: &TestApp,
    caller: Caller,
    method: &str,
    target: &str,
    form: Option<&Form>,
) -> Resp {
    let (ct, body) = match form {
        Some(f) => {
            let (ct, body) = f.encode();
            (Some(ct), body)
        }
        None => (None, Vec::new()),
    };
    let e = event(caller, method, target, ct.as_deref(), &body);
    let maintenance = matches!(
        facesvg::api::routes::find(method, target.split('?').next().unwrap_or(target)),
        facesvg::api::routes::Found::Route(r)
            if r.function == facesvg::api::routes::Function::CacheCleanup
    );
    if maintenance {
        let out = facesvg::sweep::handle_event(&t.app, e)
            .await
            .expect("handled");
        return Resp {
            status: out["statusCode"].as_u64().unwrap() as u16,
            headers: Default::default(),
            body: out["body"].as_str().unwrap_or_default().to_owned(),
        };
    }
    let req = facesvg::api::event::decode(e.to_string().as_bytes()).unwrap();
    let resp = if method == "POST" {
        facesvg::api::submit(&t.app, req).await
    } else {
        facesvg::api::status(&t.app, req).await
    };
    to_resp(resp)
}

#[tokio::test]
async fn every_route_answers_every_caller_as_its_rights_say() {
    let t = TestApp::spawn().await;
    // Tenant A owns one finished task.
    let first = call(
        &t,
        Caller::TenantA,
        "POST",
        "/api/v1/frontal/crop/submit",
        Some(&Form::takeo()),
    )
    .await;
    assert_eq!(first.status, 202, "{}", first.body);
    let task = first.json()["task_id"].as_str().unwrap().to_owned();
    t.drain().await;
    let status = format!("/api/v1/frontal/crop/status/{task}");
    let svg = format!("/api/v1/frontal/crop/result/{task}.svg");

    use Caller::*;
    // (route, method, [anonymous, no tenant, malformed, A, B, admin])
    let matrix: Vec<(&str, &str, [u16; 6])> = vec![
        (
            "/api/v1/frontal/crop/submit",
            "POST",
            [401, 401, 401, 200, 202, 202],
        ),
        (
            "/api/v1/frontal/crop/uploads",
            "POST",
            [401, 401, 401, 201, 201, 201],
        ),
        (&status, "GET", [401, 401, 401, 200, 404, 404]),
        (&svg, "GET", [401, 401, 401, 200, 404, 404]),
        (
            "/api/v1/cache/stats?days=7",
            "GET",
            [401, 401, 401, 200, 200, 200],
        ),
        (
            "/api/v1/cache/recent?limit=5",
            "GET",
            [401, 401, 401, 200, 200, 200],
        ),
        (
            "/api/v1/cache/daily?days=7",
            "GET",
            [401, 401, 401, 200, 200, 200],
        ),
        (
            "/api/v1/cache/top?limit=5",
            "GET",
            [401, 401, 401, 200, 200, 200],
        ),
        (
            "/api/v1/cache/cleanup",
            "POST",
            [401, 401, 401, 403, 403, 200],
        ),
        ("/health", "GET", [200, 200, 200, 200, 200, 200]),
        ("/api/v1/health", "GET", [401, 401, 401, 403, 403, 200]),
        (
            "/api/v1/admin/cache/stats",
            "GET",
            [401, 401, 401, 403, 403, 200],
        ),
        (
            "/api/v1/admin/metrics?minutes=5",
            "GET",
            [401, 401, 401, 403, 403, 200],
        ),
        ("/dashboard", "GET", [200, 200, 200, 200, 200, 200]),
    ];
    for (route, method, expected) in &matrix {
        for (caller, want) in CALLERS.iter().zip(expected) {
            let form = (*method == "POST" && route.ends_with("/submit")).then(Form::takeo);
            let r = call(&t, *caller, method, route, form.as_ref()).await;
            assert_eq!(
                r.status, *want,
                "{method} {route} as {caller:?}: {}",
                r.body
            );
            if r.status >= 400 {
                assert!(
                    r.json()["error"]["code"].is_string(),
                    "JSON error: {}",
                    r.body
                );
            }
            // Nothing of tenant A is visible to anyone else.
            if *caller != TenantA {
                assert!(
                    !r.body.contains(&task),
                    "{route} as {caller:?} shows A's task: {}",
                    r.body
                );
            }
            // The public verdict never shows a backend; the admin route does.
            if route.ends_with("/health") && r.status == 200 {
                let j = r.json();
                assert_eq!(
                    j.get("checks").is_some(),
                    *route == "/api/v1/health",
                    "{route} as {caller:?}: {j}"
                );
            }
        }
    }

    // B's statistics and listing hold none of A's requests.
    let stats = call(&t, TenantB, "GET", "/api/v1/cache/stats?days=7", None)
        .await
        .json();
    let recent = call(&t, TenantB, "GET", "/api/v1/cache/recent?limit=100", None)
        .await
        .json();
    let a_stats = call(&t, TenantA, "GET", "/api/v1/cache/stats?days=7", None)
        .await
        .json();
    assert_ne!(stats, a_stats);
    assert!(recent["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["task_id"] != json!(task)));

    // Deleting on request, last (each call deletes what its caller may): a tenant
    // names no other tenant, the admin's routes need the admin scope.
    let deletions: Vec<(&str, &str, [u16; 6])> = vec![
        (
            "/api/v1/admin/tenants/tenant-a/data",
            "DELETE",
            [401, 401, 401, 403, 403, 200],
        ),
        (
            "/api/v1/tenant/data",
            "DELETE",
            [401, 401, 401, 200, 200, 200],
        ),
        (
            "/api/v1/admin/cache/clear",
            "POST",
            [401, 401, 401, 403, 403, 200],
        ),
    ];
    for (route, method, expected) in &deletions {
        for (caller, want) in CALLERS.iter().zip(expected) {
            // Until the admin deletes it, A's task is A's alone and untouched.
            let before = call(&t, TenantA, "GET", &status, None).await.status;
            let r = call(&t, *caller, method, route, None).await;
            assert_eq!(
                r.status, *want,
                "{method} {route} as {caller:?}: {}",
                r.body
            );
            assert!(!r.body.contains(&task), "{route} as {caller:?}: {}", r.body);
            let after = call(&t, TenantA, "GET", &status, None).await.status;
            if r.status != 200 {
                assert_eq!(after, before, "a refused {route} as {caller:?} touched A");
            }
        }
    }
    let gone = call(&t, TenantA, "GET", &status, None).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
}
