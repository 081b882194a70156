//! Sixty days of traffic, simulated with old timestamps, then the sweeps: every
//! table and key family ends within its stated bound (README, "Bounds"), and the
//! daily view's numbers for the kept window are unchanged by the rollup and pruning.

mod common;

use common::{Form, TestApp};
use facesvg::tasks::statistics::DailyPerformance;

const DAYS: i32 = 60;

/// Traffic of two tenants over `DAYS` days, as the functions would have written it:
/// task rows (each living one day), their metrics, request counts, fold markers,
/// general-cache rows.
async fn sixty_days(t: &TestApp) {
    t.db()
        .await
        .batch_execute(&format!(
            "INSERT INTO task_results (task_id, tenant, input_hash, status, result, svg_bytes, processing_time_ms,
                                       renderer_version, submitted_at, completed_at, ttl_expires_at)
             SELECT gen_random_uuid(), tn, md5(tn || '/' || d || '/' || i), 'SUCCESS', '{{}}', 100, 10 + i,
                    'v', at, at + interval '1 second', at + interval '1 day'
             FROM unnest(ARRAY['tenant-a', 'tenant-b']) tn, generate_series(1, {DAYS}) d, generate_series(1, 20) i,
                  LATERAL (SELECT now() - d * interval '1 day' + i * interval '1 minute' AS at) a;
             INSERT INTO processing_metrics (metric_name, value, component, task_id, tenant, recorded_at)
             SELECT m, (d * 7 + i * 13) % 997, 'process', task_id, tenant, completed_at
             FROM task_results, generate_series(1, 3) i, unnest(ARRAY['processing_ms', 'stage_trace_ms']) m
                  , LATERAL (SELECT extract(day FROM now() - submitted_at)::int AS d) dd;
             INSERT INTO processing_metrics (metric_name, value, component, tenant, recorded_at)
             SELECT 'failure_ms', d, 'process', tn, now() - d * interval '1 day'
             FROM unnest(ARRAY['tenant-a', 'tenant-b']) tn, generate_series(1, {DAYS}) d;
             INSERT INTO request_counts (tenant, day, tier, requests)
             SELECT tn, (now() AT TIME ZONE 'UTC')::date - d, k, d + 1
             FROM unnest(ARRAY['tenant-a', 'tenant-b']) tn, generate_series(1, {DAYS}) d,
                  unnest(ARRAY['l0', 'redis', 'postgres', 'miss']) k;
             INSERT INTO request_count_folds (batch, folded_at)
             SELECT gen_random_uuid(), now() - d * interval '1 day' FROM generate_series(1, {DAYS}) d;
             INSERT INTO cache_store (namespace, tenant, key, value, expires_at, stale_until, created_at)
             SELECT 'stats', tn, 'k' || d, '1', now() - d * interval '1 day' + interval '30 seconds',
                    now() - d * interval '1 day' + interval '30 seconds', now() - d * interval '1 day'
             FROM unnest(ARRAY['tenant-a', 'tenant-b']) tn, generate_series(1, {DAYS}) d;"
        ))
        .await
        .unwrap();
}

fn same(a: &[DailyPerformance], b: &[DailyPerformance]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} days before, {} after", a.len(), b.len()));
    }
    let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        (None, None) => true,
        _ => false,
    };
    for (x, y) in a.iter().zip(b) {
        let counts = (x.date, x.requests, x.hits, x.hits_l0, x.renders, x.failures)
            == (y.date, y.requests, y.hits, y.hits_l0, y.renders, y.failures);
        if !counts
            || !close(x.processing_ms_avg, y.processing_ms_avg)
            || !close(x.processing_ms_p50, y.processing_ms_p50)
            || !close(x.processing_ms_p95, y.processing_ms_p95)
        {
            return Err(format!("{x:?}\n  became\n{y:?}"));
        }
    }
    Ok(())
}

const TABLES: [&str; 6] = [
    "task_results",
    "processing_metrics",
    "daily_metrics",
    "request_counts",
    "request_count_folds",
    "cache_store",
];

async fn table_sizes(t: &TestApp) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for table in TABLES {
        out.push((table, t.count_rows(table).await));
    }
    out
}

async fn scalar(t: &TestApp, sql: &str) -> i64 {
    t.db().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn sixty_days_of_traffic_end_within_their_bounds() {
    let t = TestApp::spawn().await;
    // Today's real traffic too, through the functions (Redis keys, counts, metrics).
    t.render(&Form::takeo()).await;
    assert_eq!(t.submit(&Form::takeo()).await.status, 200);
    // Through the general cache too (its counters go to `cache_counters`).
    assert_eq!(t.get("/api/v1/cache/stats?days=1").await.status, 200);
    sixty_days(&t).await;
    // Today's counts are in Redis until folded; fold them before taking the picture.
    facesvg::sweep::fold_requests(&t.app).await.unwrap();

    let before = (
        t.app.tasks.daily("tenant-a", 90).await.unwrap(),
        t.app.tasks.daily("tenant-b", 90).await.unwrap(),
    );
    assert_eq!(before.0.len(), DAYS as usize + 1, "{:?}", before.0);
    let rows_before = scalar(&t, "SELECT count(*) FROM processing_metrics").await;
    let sizes_before = table_sizes(&t).await;

    // The sweeps, until no backlog is left.
    let mut runs = 0;
    loop {
        let report = facesvg::sweep::run(&t.app).await;
        assert!(report.is_ok(), "{report:?}");
        runs += 1;
        if !report.more && report.retention.days_rolled_up == 0 {
            break;
        }
        assert!(runs < 10, "the backlog never ends: {report:?}");
    }

    // The daily view tells the same story from the aggregates.
    let after = (
        t.app.tasks.daily("tenant-a", 90).await.unwrap(),
        t.app.tasks.daily("tenant-b", 90).await.unwrap(),
    );
    same(&before.0, &after.0).unwrap();
    same(&before.1, &after.1).unwrap();

    // processing_metrics: raw rows of the last 14 days only (plus the day being
    // recorded), everything older in daily_metrics.
    let raw_days = scalar(
        &t,
        "SELECT count(DISTINCT (recorded_at AT TIME ZONE 'UTC')::date) FROM processing_metrics",
    )
    .await;
    assert!(raw_days <= 15, "{raw_days} days of raw metrics");
    assert_eq!(
        scalar(&t, "SELECT count(*) FROM processing_metrics WHERE recorded_at < now() - interval '14 days'").await,
        0
    );
    let rows_after = scalar(&t, "SELECT count(*) FROM processing_metrics").await;
    assert!(
        rows_after * 3 < rows_before,
        "{rows_before} -> {rows_after}"
    );
    // daily_metrics: at most one row per tenant, day and metric.
    let daily = scalar(&t, "SELECT count(*) FROM daily_metrics").await;
    assert!(daily <= 2 * i64::from(DAYS) * 3, "{daily}");
    // task_results: nothing past its TTL.
    assert_eq!(
        scalar(
            &t,
            "SELECT count(*) FROM task_results WHERE ttl_expires_at < now()"
        )
        .await,
        0
    );
    // Fold markers: a day, no more (none is in progress in Redis).
    assert_eq!(
        scalar(
            &t,
            "SELECT count(*) FROM request_count_folds WHERE folded_at < now() - interval '1 day'"
        )
        .await,
        0
    );
    // cache_store: nothing past its life.
    assert_eq!(
        scalar(
            &t,
            "SELECT count(*) FROM cache_store WHERE stale_until <= now()"
        )
        .await,
        0
    );

    // cache_counters: one row per namespace and tier (or callers), whatever the traffic.
    assert!(
        scalar(&t, "SELECT count(*) FROM cache_counters").await
            <= 4 * scalar(&t, "SELECT count(DISTINCT namespace) FROM cache_counters").await
    );
    assert!(scalar(&t, "SELECT count(*) FROM cache_counters").await > 0);

    // Redis: every key of this deployment either lives under a TTL or is one of
    // the fixed few whose size is bounded otherwise.
    let mut r = t.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", t.app.config.redis_prefix))
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut r)
            .await
            .unwrap();
        let rest = &key[t.app.config.redis_prefix.len() + 1..];
        let fixed = ["kv:epoch", "kv:gens", "requests", "hits", "kvcounts"].contains(&rest);
        assert!(ttl > 0 || fixed, "{key} never expires");
    }
    // The figures, for whoever runs this with --nocapture.
    println!("growth over {DAYS} days, rows before -> after {runs} sweeps:");
    for ((table, b), (_, a)) in sizes_before.iter().zip(table_sizes(&t).await) {
        println!("  {table:<22} {b:>7} -> {a:>7}");
    }
    println!("  raw metric days left: {raw_days}");
}
