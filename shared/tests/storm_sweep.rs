//! The sweep running during a storm of submits and renders, with every message
//! delivered twice and in reverse order: each task renders exactly once, nothing
//! in use is swept, and every accepted task ends in SUCCESS.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use common::{submit_to, Form, TestApp};

#[tokio::test]
async fn a_sweep_during_a_storm_with_duplicated_reordered_deliveries_loses_nothing() {
    let t = Arc::new(TestApp::spawn().await);
    let forms: Vec<Form> = (0..8)
        .map(|i| Form::takeo().field("region_opacity", &format!("0.{i}")))
        .collect();

    // Submits (each input three times), sweeps and deliveries, all at once.
    let submits = futures::future::join_all(forms.iter().cycle().take(24).map(|f| {
        let t = t.clone();
        let f = f.clone();
        async move { submit_to(&t.app, Some("tenant-a"), &f).await }
    }));
    let sweeps = {
        let t = t.clone();
        async move {
            let mut reports = Vec::new();
            for _ in 0..5 {
                reports.push(facesvg::sweep::run(&t.app).await);
                tokio::task::yield_now().await;
            }
            reports
        }
    };
    let workers = {
        let t = t.clone();
        async move {
            for _ in 0..5 {
                let mut records = t.receive_all().await;
                // Twice each, the second copy first and the whole batch reversed.
                let mut twice = records.clone();
                twice.append(&mut records);
                twice.reverse();
                let mut event = SqsEvent::default();
                event.records = twice;
                facesvg::worker::handle_batch(&t.app, event).await;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    let (answers, reports, ()) = tokio::join!(submits, sweeps, workers);
    for r in &reports {
        assert!(r.errors.is_empty(), "{r:?}");
    }
    let ids: BTreeSet<String> = answers
        .iter()
        .map(|r| {
            assert!(matches!(r.status, 200 | 202), "{} {}", r.status, r.body);
            r.json()["task_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), forms.len(), "one task per distinct input");

    // Whatever is still queued (messages are deleted by the harness's drain only).
    t.drain().await;
    for id in &ids {
        assert_eq!(t.status(id).await["status"], "SUCCESS", "{id}");
    }
    let db = t.db().await;
    let rows = db
        .query(
            "SELECT attempts FROM task_results WHERE tenant = 'tenant-a'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), forms.len(), "nothing in use was swept");
    assert!(
        rows.iter().all(|r| r.get::<_, i32>(0) == 1),
        "each task claimed and rendered once"
    );
    let renders = t.render_count().await;
    assert_eq!(renders, forms.len() as i64, "one render per task");
    assert_eq!(t.s3_keys("results/").await.len(), forms.len());
}
