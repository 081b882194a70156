//! The route table (`facesvg::api::routes`) against everything else that lists
//! routes: the local gateway's `infra/routes.json`, the OpenAPI description, and each
//! function's dispatch. (`tests/template.rs` checks `template.yaml` against it.)

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use facesvg::api::routes::{self, Access, Function, ROUTES};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_local_gateway_reads_the_current_table() {
    let path = root().join("infra/routes.json");
    let text = std::fs::read_to_string(&path).expect("infra/routes.json");
    let file: serde_json::Value = serde_json::from_str(&text).expect("routes.json parses");
    assert_eq!(
        file,
        serde_json::to_value(ROUTES).unwrap(),
        "infra/routes.json is stale: cargo run -q -p facesvg --bin facesvg-routes > infra/routes.json"
    );
}

#[test]
fn the_openapi_description_has_every_route_and_no_other() {
    let spec: serde_json::Value =
        serde_json::from_str(facesvg::api::docs::OPENAPI_JSON).expect("openapi.json");
    let described: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "delete", "patch"].contains(&m.as_str()))
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(described, table);
}

/// `event` as `function` answers it: (status, body).
async fn answer(
    t: &common::TestApp,
    function: Function,
    event: serde_json::Value,
) -> (u16, String) {
    match function {
        Function::Status | Function::Submit => {
            let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
            let resp = if function == Function::Status {
                facesvg::api::status(&t.app, req).await
            } else {
                facesvg::api::submit(&t.app, req).await
            };
            let r = common::to_resp(resp);
            (r.status, r.body)
        }
        Function::CacheCleanup => {
            let out = facesvg::sweep::handle_event(&t.app, event)
                .await
                .expect("an HTTP event is answered");
            (
                out["statusCode"].as_u64().unwrap() as u16,
                out["body"].as_str().unwrap_or_default().to_owned(),
            )
        }
    }
}

/// Each function answers its own routes, and "no route" for the others': a route
/// served by the wrong function would be a drift between the table and a dispatch.
#[tokio::test]
async fn each_function_serves_exactly_its_routes() {
    let t = common::TestApp::spawn().await;
    let no_route = |body: &str| body.contains("no route for");
    for route in ROUTES {
        let path = route
            .path
            .replace("{task_id}", "00000000-0000-4000-8000-000000000000");
        let event = common::http_event(route.method, &path, Some("tenant-a"), None, b"");
        let (status, body) = answer(&t, route.function, event.clone()).await;
        assert!(
            !no_route(&body) && status != 405,
            "{} is not served by {}: {status} {body}",
            route.key,
            route.function.name()
        );
        for other in [Function::Status, Function::Submit] {
            if other != route.function {
                let (status, body) = answer(&t, other, event.clone()).await;
                assert!(
                    status == 404 && no_route(&body),
                    "{} answered by {}: {status} {body}",
                    route.key,
                    other.name()
                );
            }
        }
        // Public routes answer without credentials; the others refuse them.
        let anonymous = common::http_event(route.method, &path, None, None, b"");
        let (status, body) = answer(&t, route.function, anonymous).await;
        match route.access {
            Access::Public => assert_ne!(status, 401, "{}: {body}", route.key),
            Access::Tenant | Access::Admin => assert_eq!(status, 401, "{}: {body}", route.key),
        }
    }
    // A method the table does not have on a path it has: 405, not 404.
    let event = common::http_event(
        "DELETE",
        "/api/v1/cache/invalidate",
        Some("tenant-a"),
        None,
        b"",
    );
    assert_eq!(answer(&t, Function::Status, event).await.0, 405);
    assert!(matches!(
        routes::find("DELETE", "/api/v1/cache/invalidate"),
        routes::Found::WrongMethod
    ));
}
