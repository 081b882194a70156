//! Statistics that cost the same on day 1 and day 400: every statement behind
//! `/cache/stats`, `/daily`, `/top`, `/recent` and `Retry-After` reads an index,
//! never a whole large table, on a database holding a long history.

mod common;

use common::TestApp;
use tokio_postgres::types::{ToSql, Type};

/// The tables that grow with traffic.
const LARGE: [&str; 4] = [
    "task_results",
    "processing_metrics",
    "daily_metrics",
    "request_counts",
];

/// A history: 50 tenants, 40,000 task rows and 400,000 metric rows over 60 days,
/// the last two weeks raw and the rest rolled up, with fresh planner statistics.
async fn fill_history(t: &TestApp) {
    let db = t.db().await;
    db.batch_execute(
        "INSERT INTO task_results (task_id, tenant, input_hash, status, result, svg_bytes, processing_time_ms,
                                   cache_hits, renderer_version, submitted_at, completed_at, ttl_expires_at)
         SELECT gen_random_uuid(), 'tenant-' || (i % 50), md5(i::text),
                CASE WHEN i % 10 = 0 THEN 'FAILURE' ELSE 'SUCCESS' END,
                '{\"regions\": []}', 1000, i % 500, i % 7, 'v',
                now() - (i % 60) * interval '1 day', now() - (i % 60) * interval '1 day' + interval '1 second',
                now() + interval '1 day'
         FROM generate_series(1, 40000) i;
         INSERT INTO processing_metrics (metric_name, value, component, tenant, recorded_at)
         SELECT (ARRAY['processing_ms', 'stage_decode_ms', 'stage_trace_ms', 'stage_svg_ms', 'failure_ms'])[1 + i % 5],
                i % 1000, 'process', 'tenant-' || (i % 50), now() - (i % 60) * interval '1 day'
         FROM generate_series(1, 400000) i;
         INSERT INTO request_counts (tenant, day, tier, requests)
         SELECT 'tenant-' || t, (now() AT TIME ZONE 'UTC')::date - d, k, 10
         FROM generate_series(0, 49) t, generate_series(0, 59) d, unnest(ARRAY['l0', 'redis', 'postgres', 'miss']) k;
         UPDATE metrics_rollup SET rolled_through = '2000-01-01';",
    )
    .await
    .unwrap();
    // Roll up everything but the last two weeks (as the sweep would have).
    while t.app.tasks.roll_up_metrics(31).await.unwrap() > 0 {}
    db.batch_execute(
        "DELETE FROM processing_metrics WHERE recorded_at < now() - interval '14 days';
         ANALYZE;",
    )
    .await
    .unwrap();
}

/// Values for a statement's parameters, by type.
fn params(types: &[Type]) -> Vec<Box<dyn ToSql + Sync>> {
    let stages: Vec<&str> = facesvg::tasks::stages::Stage::ALL
        .iter()
        .map(|s| s.metric())
        .collect();
    types
        .iter()
        .map(|t| -> Box<dyn ToSql + Sync> {
            match *t {
                Type::TEXT | Type::VARCHAR => Box::new("tenant-7"),
                Type::INT4 => Box::new(90i32),
                Type::INT8 => Box::new(100i64),
                Type::TEXT_ARRAY => {
                    Box::new(stages.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                }
                ref other => panic!("no test value for a parameter of type {other}"),
            }
        })
        .collect()
}

#[tokio::test]
async fn every_statistics_statement_reads_an_index() {
    let t = TestApp::spawn().await;
    fill_history(&t).await;
    let db = t.db().await;
    // The planner would rather scan small tables; these are "large" by what they
    // grow to, so judge the plan as it is at scale.
    db.batch_execute("SET enable_seqscan = off").await.unwrap();
    let statements = facesvg::tasks::statistics::statistics_statements();
    assert_eq!(statements.len(), 8);
    for (name, sql) in statements {
        let explain = format!("EXPLAIN (COSTS OFF) {sql}");
        let stmt = db
            .prepare(&explain)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let values = params(stmt.params());
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|b| b.as_ref()).collect();
        let plan: Vec<String> = db
            .query(&stmt, &refs)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        for table in LARGE {
            assert!(
                !plan.contains(&format!("Seq Scan on {table}")),
                "{name} scans {table} whole:\n{plan}"
            );
        }
        assert!(plan.contains("Index"), "{name} reads no index:\n{plan}");
    }
}
