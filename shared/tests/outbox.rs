//! The outbox under a storm: SQS sends fail at random while duplicate and distinct
//! submits arrive together. Every task answered 202 reaches a terminal state with
//! no client resubmitting (the relay sends what submit could not), and no task id
//! that was handed out ever answers 404.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use common::{status_on, submit_to, Form, TestApp};
use facesvg::app::App;
use facesvg::queue::{QueueError, TaskQueue};

/// The real queue, failing a seeded share of sends before they reach SQS.
struct Flaky {
    inner: Arc<dyn TaskQueue>,
    state: AtomicU64,
    percent: u64,
    failed: AtomicUsize,
    sent: AtomicUsize,
}

#[async_trait]
impl TaskQueue for Flaky {
    async fn send(&self, body: String) -> Result<(), QueueError> {
        // xorshift64: deterministic for a seed, independent of scheduling order
        // enough for a storm (each send draws the next number).
        let mut x = self.state.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.store(x, Ordering::Relaxed);
        if x % 100 < self.percent {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(QueueError::Backend("injected send failure".into()));
        }
        self.inner.send(body).await?;
        self.sent.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn ping(&self) -> Result<(), QueueError> {
        self.inner.ping().await
    }
}

async fn status_code(app: &App, tenant: &str, id: &str) -> (u16, String) {
    let r = status_on(app, tenant, id).await;
    let status = if r.status == 200 {
        r.json()["status"].as_str().unwrap_or_default().to_owned()
    } else {
        r.body.clone()
    };
    (r.status, status)
}

/// Twelve distinct inputs: two faces, with and without their label maps, in the
/// three crop modes.
fn distinct_forms() -> Vec<Form> {
    let mut forms = Vec::new();
    for face in [Form::einstein(), Form::takeo()] {
        for seg in [true, false] {
            for crop in ["landmarks", "face", "none"] {
                if !seg && crop == "face" {
                    // `face` needs the label map; use a second landmarks-only variant.
                    continue;
                }
                let f = if seg {
                    face.clone()
                } else {
                    face.clone().without("segmentation_map")
                };
                forms.push(f.field("crop", crop));
            }
        }
    }
    forms
}

#[tokio::test]
async fn random_send_failures_in_a_storm_lose_no_task_and_never_answer_404() {
    let t = TestApp::spawn().await;
    let mut app = App::from_config(t.app.config.clone()).await.expect("app");
    let flaky = Arc::new(Flaky {
        inner: app.queue.clone(),
        state: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        percent: 50,
        failed: AtomicUsize::new(0),
        sent: AtomicUsize::new(0),
    });
    app.queue = flaky.clone();
    let app = Arc::new(app);
    let tenant = t.tenant.clone();

    // Each distinct input submitted five times, all at once.
    let forms = distinct_forms();
    let storm = forms
        .iter()
        .enumerate()
        .flat_map(|(i, f)| (0..5).map(move |_| (i, f.clone())));
    let answers = futures::future::join_all(storm.map(|(i, f)| {
        let (app, tenant) = (app.clone(), tenant.clone());
        async move { (i, submit_to(&app, Some(&tenant), &f).await) }
    }))
    .await;
    let mut ids: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for (i, r) in &answers {
        assert!(
            r.status == 202 || r.status == 200,
            "a send failure is not the client's problem: {} {}",
            r.status,
            r.body
        );
        ids.entry(*i)
            .or_default()
            .insert(r.json()["task_id"].as_str().unwrap().to_owned());
    }
    assert!(
        flaky.failed.load(Ordering::SeqCst) > 0,
        "the storm must have lost sends"
    );
    assert!(
        ids.values().all(|s| s.len() == 1),
        "duplicates share one task: {ids:?}"
    );
    let all: Vec<String> = ids.values().flatten().cloned().collect();
    assert_eq!(all.len(), forms.len());

    // No client resubmits. Time passes (the relay only sends what has waited
    // RELAY_AFTER, so that it does not race a submit's own send), the relay runs
    // (through the same failing queue), the workers run; every task id answers
    // 200 at every step until each is terminal.
    let mut rounds = 0;
    loop {
        let mut open = 0;
        for id in &all {
            let (code, status) = status_code(&app, &tenant, id).await;
            assert_eq!(code, 200, "task {id} answered {code}: {status}");
            if status != "SUCCESS" && status != "FAILURE" {
                open += 1;
            }
        }
        if open == 0 {
            break;
        }
        rounds += 1;
        assert!(
            rounds <= 30,
            "{open} tasks still open after {rounds} rounds"
        );
        t.age_outbox().await;
        facesvg::sweep::relay(&app).await.expect("relay");
        t.drain().await;
    }
    for id in &all {
        assert_eq!(status_code(&app, &tenant, id).await.1, "SUCCESS", "{id}");
    }
    assert_eq!(t.count_rows("task_results").await, forms.len() as i64);
    assert_eq!(t.s3_keys("results/").await.len(), forms.len());
    let unsent: i64 = t
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM task_results WHERE outbox IS NOT NULL AND enqueued_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unsent, 0, "every outbox entry confirmed");
    assert_eq!(t.queue_depth().await, 0);
}
