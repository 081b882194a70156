//! The statistics at scale: one million task rows and ten million metric rows over a
//! hundred tenants and a hundred days, on the real local Postgres. Each statement
//! behind `/cache/stats`, `/daily`, `/top`, `/recent` and `Retry-After` is timed as
//! it was before migration 0006 (the same database, its indexes and view taken back
//! inside a transaction that is rolled back, every raw metric row still there) and as
//! it is now (after the sweep's rollup and pruning). Prints median and p99 of each.
//!
//! `infra/bench.sh statistics`, or `cargo bench -p facesvg --bench statistics` with
//! the stack up. `STATS_TASKS` and `STATS_METRICS` change the sizes.

use std::time::{Duration, Instant};

use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

const TENANTS: i64 = 100;
const DAYS: i64 = 100;
const TENANT: &str = "tenant-7";

/// The statements as they were before 0006 (the daily view's definition and the
/// stage timings changed; the others only gained indexes).
const OLD_VIEW: &str = "
CREATE VIEW cache_performance AS
SELECT tenant, day AS date,
       COALESCE(sum(requests), 0)::int8 AS requests,
       COALESCE(sum(requests) FILTER (WHERE tier = 'l0'), 0)::int8 AS hits_l0,
       COALESCE(sum(requests) FILTER (WHERE tier = 'redis'), 0)::int8 AS hits_redis,
       COALESCE(sum(requests) FILTER (WHERE tier = 'postgres'), 0)::int8 AS hits_postgres,
       COALESCE(sum(requests) FILTER (WHERE tier <> 'miss'), 0)::int8 AS hits,
       CASE WHEN COALESCE(sum(requests), 0) = 0 THEN 0::float8
            ELSE round(100.0 * COALESCE(sum(requests) FILTER (WHERE tier <> 'miss'), 0) / sum(requests), 2)::float8
       END AS hit_ratio_percent,
       count(*) FILTER (WHERE metric = 'processing_ms') AS renders,
       count(*) FILTER (WHERE metric = 'failure_ms') AS failures,
       avg(value) FILTER (WHERE metric = 'processing_ms') AS processing_ms_avg,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY value) FILTER (WHERE metric = 'processing_ms') AS processing_ms_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY value) FILTER (WHERE metric = 'processing_ms') AS processing_ms_p95
FROM (
    SELECT tenant, day, tier, requests, NULL::text AS metric, NULL::float8 AS value FROM request_counts
    UNION ALL
    SELECT tenant, (recorded_at AT TIME ZONE 'UTC')::date, NULL, NULL, metric_name, value
    FROM processing_metrics WHERE metric_name IN ('processing_ms', 'failure_ms') AND tenant IS NOT NULL
) events
GROUP BY tenant, day";

const OLD_STAGE_TIMINGS: &str = "SELECT metric_name, count(*), avg(value), min(value), max(value),
        percentile_cont(0.95) WITHIN GROUP (ORDER BY value)
 FROM processing_metrics
 WHERE tenant = $1 AND recorded_at > now() - make_interval(days => $2) AND metric_name = ANY($3)
 GROUP BY metric_name";

const NEW_INDEXES: [&str; 4] = [
    "task_results_tenant_status",
    "task_results_tenant_done",
    "task_results_done",
    "processing_metrics_time",
];

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn fill(db: &Client, tasks: i64, metrics: i64) {
    let started = Instant::now();
    // Attributes drawn at random (seeded): a tenant's rows spread over every day,
    // status and metric, as traffic would spread them.
    db.batch_execute(&format!(
        "SELECT setseed(0.42);
         INSERT INTO task_results (task_id, tenant, input_hash, status, result, svg_bytes, processing_time_ms,
                                   cache_hits, renderer_version, submitted_at, completed_at, ttl_expires_at)
         SELECT gen_random_uuid(), 'tenant-' || (i % {TENANTS}), md5(i::text),
                CASE WHEN r < 0.05 THEN 'FAILURE' WHEN r < 0.07 THEN 'PENDING' ELSE 'SUCCESS' END,
                '{{\"regions\": [1, 2, 3]}}', 20000, (random() * 900)::int, (random() * 13)::int, 'v',
                at, at + interval '2 seconds', now() + interval '30 days'
         FROM generate_series(1, {tasks}) i,
              LATERAL (SELECT random() AS r,
                              now() - random() * {DAYS} * interval '1 day' + i * interval '0 seconds' AS at) a;
         INSERT INTO processing_metrics (metric_name, value, component, tenant, recorded_at)
         SELECT (ARRAY['processing_ms', 'stage_decode_ms', 'stage_trace_ms', 'stage_simplify_ms', 'stage_svg_ms',
                       'stage_s3_put_ms', 'stage_commit_ms', 'render_ms', 'regions', 'failure_ms'])
                    [1 + (random() * 9.999)::int % 10],
                random() * 1000, 'process', 'tenant-' || (i % {TENANTS}),
                now() - random() * {DAYS} * interval '1 day' + i * interval '0 seconds'
         FROM generate_series(1, {metrics}) i;
         INSERT INTO request_counts (tenant, day, tier, requests)
         SELECT 'tenant-' || t, (now() AT TIME ZONE 'UTC')::date - d, k, 100
         FROM generate_series(0, {TENANTS} - 1) t, generate_series(0, {DAYS}) d,
              unnest(ARRAY['l0', 'redis', 'postgres', 'miss']) k;
         ANALYZE;"
    ))
    .await
    .expect("fill");
    eprintln!(
        "[statistics] {tasks} task rows, {metrics} metric rows in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// (median, p99) in ms of `runs` executions of `sql`.
async fn time(db: &Client, sql: &str, runs: usize) -> (f64, f64) {
    let stmt = db
        .prepare(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let stages: Vec<String> = facesvg::tasks::stages::Stage::ALL
        .iter()
        .map(|s| s.metric().to_owned())
        .collect();
    let values: Vec<Box<dyn ToSql + Sync>> = stmt
        .params()
        .iter()
        .map(|t| -> Box<dyn ToSql + Sync> {
            match *t {
                tokio_postgres::types::Type::TEXT => Box::new(TENANT),
                tokio_postgres::types::Type::INT4 => Box::new(7i32),
                tokio_postgres::types::Type::INT8 => Box::new(20i64),
                tokio_postgres::types::Type::TEXT_ARRAY => Box::new(stages.clone()),
                ref other => panic!("parameter type {other}"),
            }
        })
        .collect();
    let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|b| b.as_ref()).collect();
    db.query(&stmt, &refs).await.expect("warm-up");
    let mut ms: Vec<f64> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        db.query(&stmt, &refs).await.expect("query");
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let p = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.99))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let tasks = env("STATS_TASKS", 1_000_000);
    let metrics = env("STATS_METRICS", 10_000_000);
    let admin = std::env::var("FACESVG_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("facesvg_test_stats_{}", std::process::id());
    let (root, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("Postgres is required (infra/stack.sh up)");
    tokio::spawn(conn);
    root.batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let url = format!("{}/{name}", admin.rsplit_once('/').expect("url").0);
    let (mut db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    facesvg::migrate::run(&mut db).await.expect("migrate");
    fill(&db, tasks, metrics).await;

    let statements = facesvg::tasks::statistics::statistics_statements();
    let runs = |name: &str| {
        if name == "daily" || name == "stage_timings" {
            20
        } else {
            50
        }
    };

    // Before: the old statements, without 0006's indexes, every raw row present.
    let mut before = Vec::new();
    db.batch_execute(&format!(
        "BEGIN; DROP INDEX {}; DROP VIEW cache_performance; {OLD_VIEW};",
        NEW_INDEXES.join(", ")
    ))
    .await
    .expect("take 0006 back");
    for (name, sql) in &statements {
        let sql = if *name == "stage_timings" {
            OLD_STAGE_TIMINGS
        } else {
            sql.as_str()
        };
        before.push(time(&db, sql, runs(name)).await);
    }
    db.batch_execute("ROLLBACK").await.expect("rollback");

    // After: the sweep's rollup and pruning, as the hourly runs would have done.
    let started = Instant::now();
    let pool = facesvg::app::pg_pool(&url, None, 2, Duration::from_secs(5)).expect("pool");
    let store = facesvg::tasks::results::TaskStore::new(pool, Duration::from_secs(60));
    let mut days = 0;
    loop {
        let n = store.roll_up_metrics(31).await.expect("rollup");
        days += n;
        if n == 0 {
            break;
        }
    }
    let mut pruned = 0;
    loop {
        let (n, more) = store
            .prune_metrics(facesvg::sweep::RAW_METRICS_KEEP, 100_000, 50)
            .await
            .expect("prune");
        pruned += n;
        if !more {
            break;
        }
    }
    db.batch_execute("VACUUM ANALYZE").await.expect("analyze");
    eprintln!(
        "[statistics] rollup of {days} days and pruning of {pruned} raw rows in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "statistics at {tasks} task rows, {metrics} metric rows, {TENANTS} tenants, {DAYS} days (ms)"
    );
    println!(
        "{:<18} {:>12} {:>12} {:>12} {:>12} {:>9}",
        "statement", "before p50", "before p99", "after p50", "after p99", "p50 ratio"
    );
    for ((name, sql), (b50, b99)) in statements.iter().zip(before) {
        let (a50, a99) = time(&db, sql, runs(name)).await;
        println!(
            "{name:<18} {b50:>12.2} {b99:>12.2} {a50:>12.2} {a99:>12.2} {:>8.3}x",
            a50 / b50
        );
    }
    drop(db);
    let _ = root
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}
