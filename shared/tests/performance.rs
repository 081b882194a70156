//! Daily performance, the most-hit entries and per-stage timings, on real Postgres
//! and Redis: every number of `GET /api/v1/cache/daily` and `/top` for a known mix of
//! requests, renders and failures over three days; the fold of Redis's request
//! counts into Postgres (never twice, never lost); counts written directly without
//! Redis; and stage timings recorded once and read by the status and stats routes.

mod common;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::{Form, TestApp};
use facesvg::cache::outcomes::{Answer, Tier};
use facesvg::cache::redis::RequestCount;
use facesvg::tasks::metrics::Metric;
use facesvg::tasks::results::{Claim, Inserted};
use facesvg::tasks::{Stage, Stages, TaskError};
use serde_json::{json, Value};
use uuid::Uuid;

fn count(tenant: &str, day: NaiveDate, tier: &str, n: i64) -> RequestCount {
    RequestCount {
        tenant: tenant.into(),
        day,
        tier: tier.into(),
        requests: n,
    }
}

/// Noon (UTC) of `day`.
fn noon(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(12, 0, 0).unwrap().and_utc()
}

/// A task of `tenant` taken through the store as the worker takes it: inserted,
/// claimed, and finished with `processing_ms` (a success with `regions` regions, or
/// a failure), its metrics then moved to noon of `day`.
async fn finished_task(
    t: &TestApp,
    tenant: &str,
    day: NaiveDate,
    processing_ms: i32,
    regions: Option<usize>,
) -> (Uuid, String) {
    let tasks = &t.app.tasks;
    let hash = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let ttl = std::time::Duration::from_secs(3600);
    let Inserted::Created(row) = tasks
        .insert_pending(tenant, &hash, "test", ttl)
        .await
        .unwrap()
    else {
        panic!("fresh hash")
    };
    let claim = tasks
        .claim(row.task_id, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Claimed { .. }), "{claim:?}");
    match regions {
        Some(n) => {
            let result = json!({"regions": vec![json!({}); n]});
            let metrics = [Metric {
                name: "processing_ms",
                value: f64::from(processing_ms),
            }];
            tasks
                .complete_success(
                    row.task_id,
                    &result,
                    "k",
                    1,
                    processing_ms,
                    ttl,
                    &Stages::default(),
                    &metrics,
                )
                .await
                .unwrap()
                .expect("claimed");
        }
        None => {
            let error = TaskError {
                code: "too_complex".into(),
                message: "m".into(),
                field: None,
                retryable: false,
            };
            tasks
                .complete_failure(row.task_id, &error, processing_ms, ttl)
                .await
                .unwrap()
                .expect("claimed");
        }
    }
    t.db()
        .await
        .execute(
            "UPDATE processing_metrics SET recorded_at = $2 WHERE task_id = $1",
            &[&row.task_id, &noon(day)],
        )
        .await
        .unwrap();
    (row.task_id, hash)
}

/// Today (UTC), once the test can run to its end within it: the service dates
/// counts by its clock and Postgres by `now()`, and a test that straddled midnight
/// would compare two days.
async fn same_day_for_a_minute() -> NaiveDate {
    let now = Utc::now();
    let midnight = (now.date_naive() + Duration::days(1))
        .and_hms_opt(0, 0, 1)
        .unwrap()
        .and_utc();
    if midnight - now < Duration::seconds(60) {
        let wait = (midnight - now).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
    }
    Utc::now().date_naive()
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test]
async fn daily_and_top_report_every_number_of_three_days_and_only_the_callers() {
    let t = TestApp::spawn().await;
    let tasks = &t.app.tasks;
    let today = same_day_for_a_minute().await;
    let (d1, d2) = (today - Duration::days(1), today - Duration::days(2));

    // Requests of the two earlier days, as a fold of Redis's counts writes them.
    tasks
        .add_request_counts(
            &[
                count("tenant-a", d2, "l0", 6),
                count("tenant-a", d2, "redis", 2),
                count("tenant-a", d2, "postgres", 1),
                count("tenant-a", d2, "miss", 3),
                count("tenant-a", d1, "l0", 1),
                count("tenant-a", d1, "miss", 3),
                count("tenant-b", d1, "miss", 50),
            ],
            None,
        )
        .await
        .unwrap();
    // Today's through the service's own counting and the minutely fold.
    for answer in [
        Answer::Hit(Tier::L0),
        Answer::Hit(Tier::L0),
        Answer::Hit(Tier::Redis),
        Answer::Miss,
    ] {
        t.app.outcomes.count("tenant-a", answer, None).await;
    }
    t.app
        .outcomes
        .count("tenant-b", Answer::Hit(Tier::Postgres), None)
        .await;
    facesvg::sweep::fold_requests(&t.app).await.unwrap();

    // Renders and failures: three renders two days ago, one render and one failure
    // yesterday, two renders today; another tenant's render and failure today.
    let (a1, _) = finished_task(&t, "tenant-a", d2, 100, Some(3)).await;
    let (a2, _) = finished_task(&t, "tenant-a", d2, 200, Some(5)).await;
    finished_task(&t, "tenant-a", d2, 400, Some(1)).await;
    let (a4, _) = finished_task(&t, "tenant-a", d1, 50, Some(2)).await;
    finished_task(&t, "tenant-a", d1, 7, None).await;
    finished_task(&t, "tenant-a", today, 10, Some(4)).await;
    finished_task(&t, "tenant-a", today, 30, Some(4)).await;
    let (b1, _) = finished_task(&t, "tenant-b", today, 999, Some(9)).await;
    finished_task(&t, "tenant-b", today, 5, None).await;

    // Hits, as the sweep folds them, with the last hit set by the test.
    tasks
        .add_hits(&[(a1, 5), (a2, 2), (a4, 2), (b1, 100)], None)
        .await
        .unwrap();
    let (h1, h2, h4) = (
        noon(d1),
        noon(d2),
        noon(d1) - Duration::hours(1), // a4 ties with a2 on hits, hit later
    );
    let db = t.db().await;
    for (id, at) in [(a1, h1), (a2, h2), (a4, h4)] {
        db.execute(
            "UPDATE task_results SET last_hit_at = $2 WHERE task_id = $1",
            &[&id, &at],
        )
        .await
        .unwrap();
    }

    let r = t.get("/api/v1/cache/daily?days=3").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "private, max-age=60");
    let body = r.json();
    assert_eq!(body["days"], 3);
    let rows = body["daily"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{body}");
    let expect = [
        // date, requests, l0, redis, postgres, hits, ratio, renders, failures
        (today, 4, 2, 1, 0, 3, 75.0, 2, 0),
        (d1, 4, 1, 0, 0, 1, 25.0, 1, 1),
        (d2, 12, 6, 2, 1, 9, 75.0, 3, 0),
    ];
    for (row, (day, req, l0, redis, pg, hits, ratio, renders, failures)) in rows.iter().zip(expect)
    {
        assert_eq!(row["date"], day.to_string(), "{row}");
        assert_eq!(row["requests"], req, "{row}");
        assert_eq!(row["hits_l0"], l0, "{row}");
        assert_eq!(row["hits_redis"], redis, "{row}");
        assert_eq!(row["hits_postgres"], pg, "{row}");
        assert_eq!(row["hits"], hits, "{row}");
        assert!(close(&row["hit_ratio_percent"], ratio), "{row}");
        assert_eq!(row["renders"], renders, "{row}");
        assert_eq!(row["failures"], failures, "{row}");
    }
    // Processing times of the renders (failures are not renders): average, and the
    // continuous percentiles (p50 of 10, 30 is 20; p95 of 100, 200, 400 is 380).
    let times = |row: &Value| {
        [
            row["processing_ms_avg"].clone(),
            row["processing_ms_p50"].clone(),
            row["processing_ms_p95"].clone(),
        ]
    };
    for (row, want) in rows.iter().zip([
        [20.0, 20.0, 29.0],
        [50.0, 50.0, 50.0],
        [700.0 / 3.0, 200.0, 380.0],
    ]) {
        let got = times(row);
        assert!(
            got.iter().zip(want).all(|(g, w)| close(g, w)),
            "{got:?} vs {want:?}"
        );
    }
    // The window: one day is today alone.
    let r = t.get("/api/v1/cache/daily?days=1").await.json();
    assert_eq!(r["daily"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["daily"][0]["date"], today.to_string());

    // Another tenant sees its own day only.
    let b = t
        .get_as(Some("tenant-b"), "/api/v1/cache/daily")
        .await
        .json();
    let b_rows = b["daily"].as_array().unwrap();
    assert_eq!(b_rows.len(), 2, "{b}");
    assert_eq!(
        (
            b_rows[0]["requests"].clone(),
            b_rows[0]["hits_postgres"].clone(),
            b_rows[0]["renders"].clone(),
            b_rows[0]["failures"].clone()
        ),
        (json!(1), json!(1), json!(1), json!(1)),
        "{b}"
    );
    assert_eq!(
        (b_rows[1]["requests"].clone(), b_rows[1]["renders"].clone()),
        (json!(50), json!(0)),
        "{b}"
    );

    // Top: by hits, ties by the later hit; key prefix, regions and last hit.
    let hash_of = |id: Uuid| {
        let db = &db;
        async move {
            let h: String = db
                .query_one(
                    "SELECT input_hash FROM task_results WHERE task_id = $1",
                    &[&id],
                )
                .await
                .unwrap()
                .get(0);
            h[..12].to_owned()
        }
    };
    let r = t.get("/api/v1/cache/top").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "private, max-age=30");
    let entries = r.json()["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 3, "only entries with hits: {entries:?}");
    for (e, (id, hits, regions, at)) in
        entries
            .iter()
            .zip([(a1, 5, 3, h1), (a4, 2, 2, h4), (a2, 2, 5, h2)])
    {
        assert_eq!(e["key_prefix"], hash_of(id).await, "{e}");
        assert_eq!(e["hits"], hits, "{e}");
        assert_eq!(e["regions"], regions, "{e}");
        let last: DateTime<Utc> = e["last_hit_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(last, at, "{e}");
    }
    let one = t.get("/api/v1/cache/top?limit=1").await.json();
    assert_eq!(one["entries"].as_array().unwrap().len(), 1);
    assert_eq!(one["entries"][0]["hits"], 5);
    let b = t.get_as(Some("tenant-b"), "/api/v1/cache/top").await.json();
    assert_eq!(b["entries"].as_array().unwrap().len(), 1, "{b}");
    assert_eq!(b["entries"][0]["hits"], 100);

    // Out of range: 400 naming the field.
    for (target, field) in [
        ("/api/v1/cache/daily?days=0", "days"),
        ("/api/v1/cache/daily?days=91", "days"),
        ("/api/v1/cache/top?limit=0", "limit"),
        ("/api/v1/cache/top?limit=101", "limit"),
        ("/api/v1/cache/top?limit=ten", "limit"),
    ] {
        let r = t.get(target).await;
        assert_eq!(r.status, 400, "{target}: {}", r.body);
        assert_eq!(r.json()["error"]["field"], field, "{target}");
    }
}

/// The fold takes Redis's pending counts aside atomically and remembers each batch
/// in Postgres: a fold cut off before Postgres committed is finished by the next
/// run, one cut off after is not counted twice, and counts arriving meanwhile wait
/// for the next batch.
#[tokio::test]
async fn request_counts_reach_postgres_once_whatever_step_a_fold_dies_in() {
    let t = TestApp::spawn().await;
    let redis = &t.app.outcomes.redis;
    let today = same_day_for_a_minute().await;
    let requests = |t: &TestApp| {
        let app = t.app.clone();
        async move {
            app.tasks
                .daily("tenant-a", 1)
                .await
                .unwrap()
                .first()
                .map_or(0, |d| d.requests)
        }
    };
    let hit = Answer::Hit(Tier::L0);
    for _ in 0..3 {
        t.app.outcomes.count("tenant-a", hit, None).await;
    }
    t.app.outcomes.flush_counts().await;

    // Dies after taking the batch, before Postgres: nothing is lost.
    let batch = redis.take_request_counts().await.unwrap().expect("a batch");
    assert_eq!(batch.counts, vec![count("tenant-a", today, "l0", 3)]);
    assert_eq!(requests(&t).await, 0);
    assert_eq!(facesvg::sweep::fold_requests(&t.app).await.unwrap(), 1);
    assert_eq!(requests(&t).await, 3);

    // Dies after Postgres committed, before Redis forgot the batch; two more
    // requests arrive meanwhile.
    for _ in 0..2 {
        t.app.outcomes.count("tenant-a", Answer::Miss, None).await;
    }
    t.app.outcomes.flush_counts().await;
    let batch = redis.take_request_counts().await.unwrap().expect("a batch");
    assert!(t
        .app
        .tasks
        .add_request_counts(&batch.counts, Some(batch.batch))
        .await
        .unwrap());
    assert_eq!(requests(&t).await, 5);
    t.app.outcomes.count("tenant-a", Answer::Miss, None).await;
    t.app.outcomes.flush_counts().await;
    // The next run offers the same batch again (skipped), then the new count.
    assert_eq!(facesvg::sweep::fold_requests(&t.app).await.unwrap(), 1);
    assert_eq!(requests(&t).await, 6);
    assert_eq!(facesvg::sweep::fold_requests(&t.app).await.unwrap(), 0);
    assert_eq!(requests(&t).await, 6);
    let day = t.app.tasks.daily("tenant-a", 1).await.unwrap();
    assert_eq!((day[0].hits_l0, day[0].hits), (3, 3), "{day:?}");

    // The sweep folds too, and reports it.
    t.app.outcomes.count("tenant-a", hit, None).await;
    let report = facesvg::sweep::run(&t.app).await;
    assert_eq!(report.requests_folded, 1, "{report:?}");
    assert_eq!(requests(&t).await, 7);
}

/// Without Redis the instance writes its counts to Postgres itself: a render and a
/// hit, end to end, show in the daily route.
#[tokio::test]
async fn without_redis_counts_are_written_directly_and_the_daily_route_shows_them() {
    let t = TestApp::spawn_with(|env| {
        env.insert("REDIS_URL".into(), "none".into());
    })
    .await;
    t.render(&Form::takeo()).await;
    let hit = t.submit(&Form::takeo()).await;
    assert_eq!(hit.json()["cache_tier"], "l0", "{}", hit.body);
    t.app.outcomes.flush_counts().await;
    let r = t.get("/api/v1/cache/daily?days=1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let day = &r.json()["daily"][0];
    assert_eq!(day["requests"], 2, "{day}");
    assert_eq!(day["hits_l0"], 1, "{day}");
    assert_eq!(day["renders"], 1, "{day}");
    assert!(close(&day["hit_ratio_percent"], 50.0), "{day}");
    // The hit reached the row too: the entry is in the top list.
    let top = t.get("/api/v1/cache/top").await.json();
    assert_eq!(top["entries"][0]["hits"], 1, "{top}");
}

/// Each stage is measured once: the status route's `stages`, the task's
/// `processing_metrics` rows and the stats route's aggregates are the same figures.
#[tokio::test]
async fn stages_are_recorded_once_and_read_by_status_and_stats() {
    let t = TestApp::spawn().await;
    let mut per_task = Vec::new();
    let mut ids = Vec::new();
    for form in [Form::einstein(), Form::takeo()] {
        let status = t.render(&form).await;
        let stages = status["stages"].clone();
        let names: Vec<&str> = stages
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut want: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
        want.sort_unstable();
        assert_eq!(names, want, "{stages}");
        assert!(
            stages
                .as_object()
                .unwrap()
                .values()
                .all(|v| v.as_f64().is_some_and(|ms| ms >= 0.0)),
            "{stages}"
        );
        // The rows hold exactly the figures the status answer gives.
        let id = Uuid::parse_str(status["task_id"].as_str().unwrap()).unwrap();
        let rows = t
            .db()
            .await
            .query(
                "SELECT metric_name, value FROM processing_metrics WHERE task_id = $1 AND metric_name LIKE 'stage_%'",
                &[&id],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), Stage::ALL.len());
        for row in rows {
            let stage = Stage::from_metric(row.get(0)).unwrap();
            let value: f64 = row.get(1);
            assert_eq!(
                stages[stage.name()].as_f64(),
                Some(value),
                "{}",
                stage.name()
            );
        }
        per_task.push(stages);
        ids.push(id);
    }
    // Answered from Postgres (another instance, the task gone from Redis), the
    // stages are the same, the commit stage (added after the commit) included.
    let id = ids[0];
    let mut conn = t.redis().await;
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{}:t:{id}", t.app.outcomes.redis.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    let other = t.another_instance().await;
    let event = common::http_event(
        "GET",
        &format!("/api/v1/frontal/crop/status/{id}"),
        Some("tenant-a"),
        None,
        b"",
    );
    let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
    let from_pg = common::to_resp(facesvg::api::status(&other, req).await).json();
    assert_eq!(from_pg["stages"], per_task[0], "{from_pg}");

    let stats = t.get("/api/v1/cache/stats?days=1").await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    let agg = stats.json()["stages"].clone();
    for stage in Stage::ALL {
        let name = stage.name();
        let values: Vec<f64> = per_task.iter().map(|s| s[name].as_f64().unwrap()).collect();
        let (lo, hi) = (values[0].min(values[1]), values[0].max(values[1]));
        let a = &agg[name];
        assert_eq!(a["count"], 2, "{name}: {a}");
        assert!(close(&a["min"], lo) && close(&a["max"], hi), "{name}: {a}");
        assert!(close(&a["avg"], (lo + hi) / 2.0), "{name}: {a}");
        assert!(close(&a["p95"], lo + 0.95 * (hi - lo)), "{name}: {a}");
    }
    // Simplification is timed apart from tracing for a face with a label map.
    assert!(per_task[0]["simplify"].as_f64().unwrap() > 0.0);
}
