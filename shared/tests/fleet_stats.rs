//! The general-purpose cache seen across the fleet: two instances of one
//! deployment (two `App`s on the same Postgres and Redis) take traffic, and
//! `GET /api/v1/admin/cache/stats` answers the sum of both, every number of it
//! checked; `facesvg-cache stats` (the binary) prints the same view; the admin
//! health gives the entry totals.

mod common;

use std::time::Duration;

use common::{get_on, TestApp};
use facesvg::cache::kv::{KeyBuilder, SetOptions};
use serde_json::{json, Value};

const ROUTE: &str = "/api/v1/admin/cache/stats";

/// A tier's counters, and its entries when the tier is a shared one.
fn tier(c: [i64; 5], entries: Option<(u64, u64, u64)>) -> Value {
    let ratio = if c[0] + c[1] == 0 {
        0.0
    } else {
        c[0] as f64 / (c[0] + c[1]) as f64
    };
    let mut v = json!({
        "hits": c[0], "misses": c[1], "sets": c[2], "deletes": c[3], "errors": c[4],
        "hit_ratio": ratio,
    });
    let (a, e, b) = match entries {
        Some((a, e, b)) => (json!(a), json!(e), json!(b)),
        None => (Value::Null, Value::Null, Value::Null),
    };
    v["entries_active"] = a;
    v["entries_expired"] = e;
    v["bytes"] = b;
    v
}

fn callers(c: [i64; 5]) -> Value {
    let mut v = tier(c, None);
    let o = v.as_object_mut().unwrap();
    for k in ["entries_active", "entries_expired", "bytes"] {
        o.remove(k);
    }
    v
}

/// The stored size of the row of `namespace` holding `value` (what the Postgres
/// tier reports as bytes).
async fn pg_size(t: &TestApp, namespace: &str, value: &Value) -> u64 {
    let n: i32 = t
        .db()
        .await
        .query_one(
            "SELECT pg_column_size(value) FROM cache_store WHERE namespace = $1 AND value = $2::text::jsonb",
            &[&namespace, &value.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    n as u64
}

#[tokio::test]
async fn two_instances_traffic_adds_up_in_the_fleet_view() {
    let t = TestApp::spawn().await;
    let a = t.app.clone();
    let b = t.another_instance().await;
    let fleet = KeyBuilder::new("fleet").unwrap();
    let other = KeyBuilder::new("other").unwrap();
    let k = |id: &str| fleet.key("t1", &[id]).unwrap();
    let (v1, v2, v4, v5) = (
        json!({"n": 1}),
        json!({"n": 2}),
        json!({"other": true}),
        json!([5]),
    );

    // Instance A: two sets, a hit in memory, a miss everywhere, a delete, and an
    // entry that expires at once but is kept a minute for stale serving.
    a.kv.set(&k("k1"), &v1, None).await.unwrap();
    a.kv.set(&k("k2"), &v2, None).await.unwrap();
    assert_eq!(a.kv.get::<Value>(&k("k1")).await.unwrap(), Some(v1.clone()));
    assert_eq!(a.kv.get::<Value>(&k("k3")).await.unwrap(), None);
    assert!(a.kv.delete(&k("k2")).await.unwrap());
    let stale_only = SetOptions {
        ttl: Some(Duration::from_millis(500)),
        grace: Duration::from_secs(120),
        tags: Vec::new(),
    };
    a.kv.set_with(&k("k5"), &v5, &stale_only).await.unwrap();

    // Instance B: its memory is empty, so k1 comes from Redis (and fills memory),
    // then from memory; a set in another namespace; the deleted k2 is a miss.
    assert_eq!(b.kv.get::<Value>(&k("k1")).await.unwrap(), Some(v1.clone()));
    assert_eq!(b.kv.get::<Value>(&k("k1")).await.unwrap(), Some(v1.clone()));
    b.kv.set(&other.key("t2", &["k4"]).unwrap(), &v4, None)
        .await
        .unwrap();
    assert_eq!(b.kv.get::<Value>(&k("k2")).await.unwrap(), None);
    // B sends what it counted (as it does at most a second after its traffic).
    b.outcomes.flush_counts().await;
    tokio::time::sleep(Duration::from_millis(600)).await; // k5 past its TTL

    let r = get_on(&a, Some("ops"), ROUTE).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.headers.get("cache-control").map(String::as_str),
        Some("no-store")
    );
    let got = r.json();
    println!(
        "GET {ROUTE} after the two-instance traffic:\n{}",
        serde_json::to_string_pretty(&got).unwrap()
    );

    let s = |v: &Value| v.to_string().len() as u64;
    let fleet_pg = pg_size(&t, "fleet", &v1).await;
    let other_pg = pg_size(&t, "other", &v4).await;
    let expected_namespaces = json!({
        "fleet": {
            // A: hit k1, miss k3; B: hit k1 twice, miss k2. Sets k1, k2, k5; delete k2.
            "callers": callers([3, 2, 3, 1, 0]),
            "tiers": {
                // Hits: A's k1, B's second k1. Misses: A's k3, B's first k1, B's k2.
                "memory": tier([2, 3, 3, 1, 0], None),
                // Hit: B's first k1. Misses: k3, k2. k5 is kept only for stale serving.
                "redis": tier([1, 2, 3, 1, 0], Some((1, 1, s(&v1)))),
                "postgres": tier([0, 2, 3, 1, 0], Some((1, 1, fleet_pg))),
            }
        },
        "other": {
            "callers": callers([0, 0, 1, 0, 0]),
            "tiers": {
                "memory": tier([0, 0, 1, 0, 0], None),
                "redis": tier([0, 0, 1, 0, 0], Some((1, 0, s(&v4)))),
                "postgres": tier([0, 0, 1, 0, 0], Some((1, 0, other_pg))),
            }
        }
    });
    assert_eq!(got["namespaces"], expected_namespaces, "{got}");
    assert_eq!(got["callers"], callers([3, 2, 4, 1, 0]));
    assert_eq!(got["tiers"], json!(["memory", "redis", "postgres"]));
    assert_eq!(
        got["entries"],
        json!({
            "redis": {"active": 2, "expired": 1, "bytes": s(&v1) + s(&v4)},
            "postgres": {"active": 2, "expired": 1, "bytes": fleet_pg + other_pg},
        })
    );
    // Redis's own figures are the whole server's (other tests share it): they are
    // there and agree with each other.
    let redis = &got["redis"];
    assert_eq!(redis["status"], "ok", "{redis}");
    assert!(redis["used_memory_bytes"].as_u64().unwrap() > 0);
    let (h, m) = (
        redis["keyspace_hits"].as_u64().unwrap(),
        redis["keyspace_misses"].as_u64().unwrap(),
    );
    assert!(h > 0 && m > 0, "{redis}");
    let rate = redis["keyspace_hit_rate"].as_f64().unwrap();
    assert!((rate - h as f64 / (h + m) as f64).abs() < 1e-12, "{redis}");

    // Asked again with no traffic in between: nothing is counted twice.
    let again = get_on(&b, Some("ops"), ROUTE).await.json();
    assert_eq!(again["namespaces"], expected_namespaces, "{again}");
    // Only the admin scope may ask.
    let mut event = common::http_event("GET", ROUTE, Some("ops"), None, b"");
    event["requestContext"]["authorizer"]["jwt"]["scopes"] = json!([]);
    let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
    assert_eq!(
        common::to_resp(facesvg::api::status(&a, req).await).status,
        403
    );

    // The operator's command prints the same view, from its own process.
    let c = &t.app.config;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_facesvg-cache"))
        .arg("stats")
        .env("DATABASE_URL", &c.database_url)
        .env("REDIS_URL", &c.redis_url)
        .env("REDIS_PREFIX", &c.redis_prefix)
        .output()
        .expect("facesvg-cache runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(printed["namespaces"], expected_namespaces, "{printed}");
    assert_eq!(printed["callers"], got["callers"]);
    assert_eq!(printed["entries"], got["entries"]);

    // The admin health gives the Postgres tier's totals.
    let health = get_on(&a, Some("ops"), "/api/v1/health").await.json();
    assert_eq!(
        health["entries"],
        json!({"active": 2, "expired": 1}),
        "{health}"
    );
}
