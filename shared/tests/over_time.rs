//! What only time shows: a sweep step that fails, counts folded across failures and
//! crashes, a row that changes under a submit, a stuck task with a short TTL, and a
//! message whose inputs no longer match its task. Each fails on the code before it.

mod common;

use common::{Form, TestApp};
use facesvg::sweep::Step;

async fn task_id(r: &common::Resp) -> String {
    r.json()["task_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_failed_step_does_not_stop_the_others_and_fails_the_invocation() {
    let t = TestApp::spawn_with(|s| {
        s.insert("STUCK_AFTER_SECS".into(), "60".into());
    })
    .await;
    // One finished entry past its TTL, one task stuck open.
    t.render(&Form::takeo()).await;
    t.db()
        .await
        .execute(
            "UPDATE task_results SET ttl_expires_at = now() - interval '1 minute'",
            &[],
        )
        .await
        .unwrap();
    let stuck = t.submit(&Form::einstein()).await;
    assert_eq!(stuck.status, 202);
    t.db()
        .await
        .execute(
            "UPDATE task_results SET submitted_at = now() - interval '2 hours' WHERE status = 'PENDING'",
            &[],
        )
        .await
        .unwrap();
    // Break one step: failing a stuck task raises.
    t.db()
        .await
        .batch_execute(
            "CREATE FUNCTION break_stuck() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.error->>'code' = 'task_stuck' THEN RAISE EXCEPTION 'step broken by the test'; END IF;
             RETURN NEW; END $$;
             CREATE TRIGGER break_stuck BEFORE UPDATE ON task_results
                 FOR EACH ROW EXECUTE FUNCTION break_stuck();",
        )
        .await
        .unwrap();

    facesvg::metrics::capture();
    let report = facesvg::sweep::run(&t.app).await;
    assert_eq!(report.failed_steps, vec![Step::Stuck], "{report:?}");
    assert_eq!(report.expired, 1, "the deletions still ran: {report:?}");
    assert!(report.unused_rule_applied, "the folds still ran");
    let records = facesvg::metrics::captured();
    assert!(
        records
            .iter()
            .any(|r| r.contains("\"Errors\"") && r.contains("\"Step\":\"stuck\"")),
        "an Errors metric names the step: {records:?}"
    );

    // The scheduled invocation ends as an error (the schedule's retry and DLQ see it),
    // after running the other steps.
    let scheduled =
        serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    let err = facesvg::sweep::handle_event(&t.app, scheduled.clone())
        .await
        .expect_err("a failed step fails the invocation");
    match &err {
        facesvg::sweep::CleanupError::Steps(failed) => assert_eq!(failed.steps, vec![Step::Stuck]),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("stuck"), "{err}");
    // The admin route answers 503 rather than a report that hides the failure.
    let admin = common::http_event("POST", "/api/v1/cache/cleanup", Some("tenant-a"), None, b"");
    let out = facesvg::sweep::handle_event(&t.app, admin).await.unwrap();
    assert_eq!(out["statusCode"], 503, "{out}");

    // Mended, the next run succeeds.
    t.db()
        .await
        .batch_execute("DROP TRIGGER break_stuck ON task_results")
        .await
        .unwrap();
    let ok = facesvg::sweep::handle_event(&t.app, scheduled)
        .await
        .unwrap();
    assert_eq!(ok["stuck_failed"], 1, "{ok}");
}

/// The hits of the only row, as Postgres holds them.
async fn folded_hits(t: &TestApp) -> i64 {
    t.db()
        .await
        .query_one("SELECT cache_hits FROM task_results", &[])
        .await
        .unwrap()
        .get(0)
}

/// Hit counter keys of this app's prefix left in Redis.
async fn hit_keys(t: &TestApp) -> Vec<String> {
    let mut r = t.redis().await;
    redis::cmd("KEYS")
        .arg(format!("{}:hits*", t.app.config.redis_prefix))
        .query_async(&mut r)
        .await
        .unwrap()
}

#[tokio::test]
async fn hit_folds_survive_a_postgres_error_and_a_crash_after_commit() {
    let t = TestApp::spawn().await;
    t.render(&Form::takeo()).await;
    for _ in 0..3 {
        assert_eq!(t.submit(&Form::takeo()).await.status, 200);
    }
    t.app.outcomes.flush_counts().await;

    // Postgres refuses the hits: nothing is lost, the batch waits in Redis.
    t.db()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse_hits() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.cache_hits <> OLD.cache_hits THEN RAISE EXCEPTION 'refused'; END IF;
             RETURN NEW; END $$;
             CREATE TRIGGER refuse_hits BEFORE UPDATE ON task_results
                 FOR EACH ROW EXECUTE FUNCTION refuse_hits();",
        )
        .await
        .unwrap();
    facesvg::sweep::fold_hits(&t.app)
        .await
        .expect_err("the fold fails");
    assert_eq!(folded_hits(&t).await, 0);
    t.db()
        .await
        .batch_execute("DROP TRIGGER refuse_hits ON task_results")
        .await
        .unwrap();
    assert_eq!(
        facesvg::sweep::fold_hits(&t.app).await.unwrap(),
        Some(1),
        "the batch left in Redis is folded"
    );
    assert_eq!(folded_hits(&t).await, 3);
    assert!(hit_keys(&t).await.is_empty(), "{:?}", hit_keys(&t).await);

    // A fold that committed and died before deleting its batch: the next fold finds
    // the batch, skips it (Postgres remembers it), and deletes it.
    for _ in 0..2 {
        assert_eq!(t.submit(&Form::takeo()).await.status, 200);
    }
    t.app.outcomes.flush_counts().await;
    let batch = t.app.outcomes.redis.take_hits().await.unwrap().unwrap();
    assert_eq!(batch.hits.iter().map(|h| h.1).sum::<i64>(), 2);
    t.app
        .tasks
        .add_hits(&batch.hits, Some(batch.batch))
        .await
        .unwrap();
    assert_eq!(folded_hits(&t).await, 5);
    facesvg::sweep::fold_hits(&t.app).await.unwrap();
    assert_eq!(folded_hits(&t).await, 5, "never counted twice");
    assert!(hit_keys(&t).await.is_empty());
}

#[tokio::test]
async fn a_fold_marker_lives_as_long_as_its_batch() {
    let t = TestApp::spawn().await;
    t.render(&Form::takeo()).await;
    t.app.outcomes.flush_counts().await;
    // A fold that committed, then could not delete its batch for two days.
    let batch = t
        .app
        .outcomes
        .redis
        .take_request_counts()
        .await
        .unwrap()
        .unwrap();
    assert!(t
        .app
        .tasks
        .add_request_counts(&batch.counts, Some(batch.batch))
        .await
        .unwrap());
    let total = || async {
        t.db()
            .await
            .query_one(
                "SELECT COALESCE(sum(requests), 0)::int8 FROM request_counts",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let before = total().await;
    assert!(before > 0);
    t.db()
        .await
        .execute(
            "UPDATE request_count_folds SET folded_at = now() - interval '2 days'",
            &[],
        )
        .await
        .unwrap();
    // A marker of another, finished batch, as old: that one goes.
    t.db()
        .await
        .execute(
            "INSERT INTO request_count_folds (batch, folded_at) VALUES (gen_random_uuid(), now() - interval '2 days')",
            &[],
        )
        .await
        .unwrap();
    // The sweep prunes markers while the batch is still in Redis: its marker stays.
    assert_eq!(facesvg::sweep::prune_fold_markers(&t.app).await.unwrap(), 1);
    assert_eq!(t.count_rows("request_count_folds").await, 1);
    // So the batch, offered again, is skipped and deleted.
    assert_eq!(facesvg::sweep::fold_requests(&t.app).await.unwrap(), 0);
    assert_eq!(total().await, before, "the batch was not counted twice");
    // Once the batch is gone from Redis, its old marker goes too.
    assert_eq!(facesvg::sweep::prune_fold_markers(&t.app).await.unwrap(), 1);
    assert_eq!(t.count_rows("request_count_folds").await, 0);
}

#[tokio::test]
async fn a_reopen_that_finds_the_row_gone_answers_from_what_is_there() {
    let t = TestApp::spawn().await;
    let first = t.render(&Form::takeo()).await;
    let old_id = first["task_id"].as_str().unwrap().to_owned();
    // A retryable failure, then the sweep deletes the row between the submit's read
    // and its reopen (the hook: the reopening UPDATE finds the row deleted).
    t.db()
        .await
        .batch_execute(
            r#"UPDATE task_results SET status = 'FAILURE',
                   error = '{"code": "task_stuck", "message": "m", "retryable": true}';
               CREATE FUNCTION swept_meanwhile() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN IF OLD.status = 'FAILURE' AND NEW.status = 'PENDING' THEN
                   DELETE FROM task_results WHERE task_id = OLD.task_id; RETURN NULL; END IF;
               RETURN NEW; END $$;
               CREATE TRIGGER swept_meanwhile BEFORE UPDATE ON task_results
                   FOR EACH ROW EXECUTE FUNCTION swept_meanwhile();"#,
        )
        .await
        .unwrap();
    // The cached success is gone from the tiers above Postgres, as the sweep does.
    let hash: String = t
        .db()
        .await
        .query_one("SELECT input_hash FROM task_results", &[])
        .await
        .unwrap()
        .get(0);
    t.app
        .outcomes
        .forget(&t.tenant, &hash, old_id.parse().unwrap())
        .await
        .unwrap();
    let fresh = t.another_instance().await;
    let again = common::submit_to(&fresh, Some(&t.tenant), &Form::takeo()).await;
    assert_eq!(again.status, 202, "{}", again.body);
    let new_id = task_id(&again).await;
    assert_ne!(new_id, old_id, "the deleted task's id is not handed out");
    // The id answered is one that exists and runs.
    let s = t.status(&new_id).await;
    assert_eq!(s["status"], "PENDING", "{s}");
    let (n, failed) = t.drain().await;
    assert!(n >= 1 && failed.is_empty());
    assert_eq!(t.status(&new_id).await["status"], "SUCCESS");
}

#[tokio::test]
async fn a_stuck_task_with_a_short_ttl_stays_visible_as_stuck() {
    let t = TestApp::spawn_with(|s| {
        s.insert("CACHE_TTL_HOURS".into(), "1".into());
        s.insert("STUCK_AFTER_SECS".into(), "60".into());
    })
    .await;
    let r = t.submit(&Form::takeo()).await;
    assert_eq!(r.status, 202);
    let id = task_id(&r).await;
    // Open for two hours: stuck, and past its one-hour TTL.
    t.db()
        .await
        .execute(
            "UPDATE task_results SET submitted_at = now() - interval '2 hours',
                                     ttl_expires_at = now() - interval '1 hour'",
            &[],
        )
        .await
        .unwrap();
    let report = facesvg::sweep::run(&t.app).await;
    assert_eq!(report.stuck_failed, 1, "{report:?}");
    assert_eq!(report.expired, 0, "{report:?}");
    let s = t.status(&id).await;
    assert_eq!(s["status"], "FAILURE");
    assert_eq!(s["error"]["code"], "task_stuck");
    // Visible for the stated minimum, whatever the TTL.
    let left: f64 = t
        .db()
        .await
        .query_one(
            "SELECT extract(epoch FROM ttl_expires_at - now())::float8 FROM task_results",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let min = facesvg::sweep::STUCK_FAILURE_VISIBLE.as_secs_f64();
    assert!(left > min - 60.0 && left <= min, "{left}");
}

#[tokio::test]
async fn a_message_whose_inputs_no_longer_match_fails_its_task_visibly() {
    let t = TestApp::spawn().await;
    let r = t.submit(&Form::takeo()).await;
    let id = task_id(&r).await;
    // As a release that serialises inputs differently would send it.
    let mut records = t.receive_all().await;
    assert_eq!(records.len(), 1);
    let mut body: serde_json::Value =
        serde_json::from_str(records[0].body.as_deref().unwrap()).unwrap();
    let x = &mut body["inputs"]["inputs"]["landmarks"][0][0];
    *x = serde_json::json!(x.as_i64().unwrap() + 1000);
    records[0].body = Some(body.to_string());
    facesvg::metrics::capture();
    let failed = t.deliver(records).await;
    assert!(failed.is_empty(), "not retried: {failed:?}");
    let s = t.status(&id).await;
    assert_eq!(s["status"], "FAILURE", "{s}");
    assert_eq!(s["error"]["code"], "inputs_mismatch");
    assert_eq!(s["error"]["retryable"], true);
    assert!(facesvg::metrics::captured()
        .iter()
        .any(|r| r.contains("\"Kind\":\"inputs_mismatch\"")));
    assert_eq!(
        t.render_count().await,
        0,
        "nothing rendered from the message"
    );

    // Submitted again, it runs with this release's inputs.
    let again = t.submit(&Form::takeo()).await;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(task_id(&again).await, id);
    let (n, failed) = t.drain().await;
    assert_eq!((n, failed.len()), (1, 0));
    assert_eq!(t.status(&id).await["status"], "SUCCESS");
}

#[tokio::test]
async fn cache_cleanup_runs_nothing_for_an_event_it_does_not_know() {
    let t = TestApp::spawn().await;
    // A task past its TTL: a sweep would delete it.
    t.render(&Form::takeo()).await;
    t.db()
        .await
        .execute(
            "UPDATE task_results SET ttl_expires_at = now() - interval '1 minute'",
            &[],
        )
        .await
        .unwrap();
    for event in [
        serde_json::json!({}),
        serde_json::json!({"job": "sweep-everything"}),
        serde_json::json!({"source": "aws.s3", "detail-type": "Object Created", "detail": {}}),
    ] {
        let err = facesvg::sweep::handle_event(&t.app, event.clone())
            .await
            .expect_err("an unknown event fails the invocation");
        assert!(
            matches!(err, facesvg::sweep::CleanupError::Unknown(_)),
            "{event}: {err}"
        );
    }
    assert_eq!(t.count_rows("task_results").await, 1, "nothing was swept");
    // The relay job is its own event: it relays and folds, and sweeps nothing.
    let relayed = facesvg::sweep::handle_event(&t.app, serde_json::json!({"job": "relay"}))
        .await
        .unwrap();
    assert!(relayed.get("relayed").is_some(), "{relayed}");
    assert_eq!(t.count_rows("task_results").await, 1);
}

#[tokio::test]
async fn only_known_namespaces_can_be_invalidated() {
    // Each invalidated scope stays a field of the generation hash: a caller may not
    // mint new ones.
    let t = TestApp::spawn().await;
    let post = |body: &'static str| {
        let event = common::http_event(
            "POST",
            "/api/v1/cache/invalidate",
            Some("tenant-a"),
            Some("application/json"),
            body.as_bytes(),
        );
        let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
        let app = t.app.clone();
        async move { common::to_resp(facesvg::api::status(&app, req).await) }
    };
    let r = post(r#"{"namespace": "made-up-1"}"#).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["field"], "namespace");
    let r = post(r#"{"namespace": "stats"}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut redis = t.redis().await;
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(format!("{}:kv:gens", t.app.config.redis_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(fields.iter().all(|f| !f.contains("made-up")), "{fields:?}");
}
