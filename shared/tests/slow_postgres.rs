//! A slow statement, a held row lock and a long reader, on the real local Postgres:
//! the caller gets its 503 within its deadline, the statement does not run on, the
//! next call on the same pool is served, and a migration never queues readers.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Form, TestApp};
use facesvg::app::App;
use facesvg::migrate::{LockPolicy, MigrateError};

/// The client deadline of these tests' apps (DB_TIMEOUT_MS).
const DEADLINE_MS: u64 = 600;

/// A test app whose one pooled connection logs in as the application role, so the
/// role's server-side limits apply as in AWS.
async fn app_as_role(
    tweak: impl FnOnce(&mut std::collections::HashMap<String, String>),
) -> (TestApp, Arc<App>) {
    let t = TestApp::spawn_with(|s| {
        s.insert("DB_TIMEOUT_MS".into(), DEADLINE_MS.to_string());
        s.insert("DB_POOL_SIZE".into(), "1".into());
        tweak(s);
    })
    .await;
    let mut config = t.app.config.clone();
    config.database_url = role_url(&t);
    let app = Arc::new(App::from_config(config).await.expect("app as role"));
    (t, app)
}

fn role_url(t: &TestApp) -> String {
    let base = t.admin_pg.rsplit_once('/').unwrap().0;
    format!(
        "{}/{}",
        base.replace("postgres@", "facesvg_app@"),
        t.db_name
    )
}

/// Statements of the application role still running in the test database.
async fn running_statements(t: &TestApp) -> Vec<String> {
    let (admin, conn) = tokio_postgres::connect(
        &format!("{}/{}", t.admin_pg.rsplit_once('/').unwrap().0, t.db_name),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    admin
        .query(
            "SELECT query FROM pg_stat_activity
             WHERE datname = current_database() AND usename = 'facesvg_app' AND state <> 'idle'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn assert_unavailable(r: &common::Resp, started: Instant) {
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));
    assert_eq!(r.json()["error"]["code"], "unavailable");
    // The statement would have run 30 s: the answer came from the client's deadline.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_statement_slower_than_its_deadline_is_cancelled_and_frees_the_pool() {
    let (t, app) = app_as_role(|_| {}).await;
    // The test hook: inserting a task for tenant "slow" sleeps 30 s on the server.
    t.slow_inserts_for_tenant_slow().await;

    let started = Instant::now();
    let slow = common::submit_to(&app, Some("slow"), &Form::takeo()).await;
    assert_unavailable(&slow, started);

    // The pool's only connection was the one cut off: the next call still gets a
    // working connection at once, not one queued behind the 30 s statement.
    let next = common::submit_to(&app, Some("tenant-a"), &Form::takeo()).await;
    assert_eq!(next.status, 202, "{}", next.body);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let running = running_statements(&t).await;
    assert!(running.is_empty(), "still running: {running:?}");
    assert_eq!(
        t.count_rows("task_results WHERE tenant = 'slow'").await,
        0,
        "the cut-off insert was rolled back"
    );
}

#[tokio::test]
async fn a_row_locked_by_another_session_costs_the_deadline_not_the_lock() {
    // Without Redis, a fresh instance reads the row from Postgres.
    let (t, app) = app_as_role(|s| {
        s.insert("REDIS_URL".into(), "none".into());
    })
    .await;
    t.render(&Form::takeo()).await;
    // The entry becomes a retryable failure: the next submit reopens it (an UPDATE).
    t.db()
        .await
        .execute(
            r#"UPDATE task_results SET status = 'FAILURE',
                   error = '{"code": "render_failed", "message": "m", "retryable": true}'"#,
            &[],
        )
        .await
        .unwrap();
    let (locker, conn) = tokio_postgres::connect(
        &format!("{}/{}", t.admin_pg.rsplit_once('/').unwrap().0, t.db_name),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    locker
        .batch_execute("BEGIN; SELECT 1 FROM task_results FOR UPDATE")
        .await
        .unwrap();

    let started = Instant::now();
    let blocked = common::submit_to(&app, Some(&t.tenant), &Form::takeo()).await;
    assert_unavailable(&blocked, started);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let running = running_statements(&t).await;
    assert!(running.is_empty(), "still waiting: {running:?}");

    // Another call on the same pool, while the lock is still held, is served.
    let other = common::submit_to(&app, Some("tenant-b"), &Form::einstein()).await;
    assert_eq!(other.status, 202, "{}", other.body);

    locker.batch_execute("ROLLBACK").await.unwrap();
    let retried = common::submit_to(&app, Some(&t.tenant), &Form::takeo()).await;
    assert_eq!(retried.status, 202, "{}", retried.body);
}

#[tokio::test]
async fn the_role_has_server_side_limits_a_little_above_the_deadline() {
    let (t, _app) = app_as_role(|_| {}).await;
    let (client, conn) = tokio_postgres::connect(&role_url(&t), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let show = |name: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    // 600 ms deadline: statements end 1 s after it, lock waits 0.5 s, idle
    // transactions 2 s.
    assert_eq!(show("statement_timeout").await, "1600ms");
    assert_eq!(show("lock_timeout").await, "1100ms");
    assert_eq!(show("idle_in_transaction_session_timeout").await, "2600ms");

    // A session with no client deadline at all is still stopped by the server.
    let started = Instant::now();
    let err = client
        .execute("SELECT pg_sleep(30)", &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_migration_behind_a_long_reader_gives_up_and_retries_without_blocking_readers() {
    let t = TestApp::spawn().await;
    let db_url = format!("{}/{}", t.admin_pg.rsplit_once('/').unwrap().0, t.db_name);
    let connect = || async {
        let (c, conn) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c
    };
    // A long reader holds its lock on task_results until it commits.
    let long_reader = connect().await;
    long_reader
        .batch_execute("BEGIN; SELECT count(*) FROM task_results")
        .await
        .unwrap();

    let mut list: Vec<(i32, &str, &str)> = facesvg::migrate::MIGRATIONS.to_vec();
    list.push((
        10_000,
        "test_alter",
        "ALTER TABLE task_results ADD COLUMN probe integer",
    ));
    let policy = LockPolicy {
        wait: Duration::from_millis(200),
        attempts: 3,
        backoff: Duration::from_millis(100),
    };
    let migrating = {
        let list = list.clone();
        let mut migrator = connect().await;
        tokio::spawn(async move { facesvg::migrate::run_list(&mut migrator, &list, policy).await })
    };

    // Readers keep being served while the migration waits and retries: none waits
    // longer than the migration's lock wait (their own limit is 1 s).
    let reader = connect().await;
    reader
        .batch_execute("SET statement_timeout = '1s'")
        .await
        .unwrap();
    let mut reads = 0;
    while !migrating.is_finished() {
        reader
            .query_one("SELECT count(*) FROM task_results", &[])
            .await
            .expect("a reader was blocked behind the migration");
        reads += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reads > 0);
    match migrating.await.unwrap() {
        Err(MigrateError::LockBusy { attempts: 3, wait }) => {
            assert_eq!(wait, Duration::from_millis(200))
        }
        other => panic!("expected LockBusy, got {other:?}"),
    }
    let applied: i64 = reader
        .query_one(
            "SELECT count(*) FROM schema_migrations WHERE version = 10000",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(applied, 0, "a migration that gave up is rolled back whole");

    // Once the reader is done, the same run applies it.
    long_reader.batch_execute("COMMIT").await.unwrap();
    let mut migrator = connect().await;
    let done = facesvg::migrate::run_list(&mut migrator, &list, policy)
        .await
        .unwrap();
    assert_eq!(done, vec![10_000]);
    reader
        .query("SELECT probe FROM task_results LIMIT 1", &[])
        .await
        .expect("the column exists");
}
