//! The application's Postgres role: enough for the whole pipeline, and nothing more.

mod common;

use common::{Form, TestApp};

/// The test database's URL with the application's role as its user.
fn as_app_role(t: &TestApp) -> String {
    let base = t.admin_pg.rsplit_once('/').unwrap().0;
    let base = base.replace("postgres@", "facesvg_app@");
    format!("{base}/{}", t.db_name)
}

#[tokio::test]
async fn the_application_role_runs_the_pipeline_but_cannot_change_the_schema() {
    // The test database is migrated by its owner; the service connects as the role
    // and runs the whole pipeline: submit, render, a hit, the sweep.
    let t = TestApp::spawn().await;
    let url = as_app_role(&t);
    let mut config = t.app.config.clone();
    config.database_url = url.clone();
    let app = facesvg::app::App::from_config(config).await.unwrap();
    let first = common::submit_to(&app, Some("tenant-a"), &Form::takeo()).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let records = t.receive_all().await;
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = records;
    let resp = facesvg::worker::handle_batch(&app, event).await;
    assert!(resp.batch_item_failures.is_empty());
    let again = common::submit_to(&app, Some("tenant-a"), &Form::takeo()).await;
    assert_eq!(again.status, 200, "{}", again.body);
    let report = facesvg::sweep::run(&app).await;
    assert!(report.errors.is_empty(), "{report:?}");

    // And no DDL at all.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for ddl in [
        "DROP TABLE task_results",
        "ALTER TABLE task_results ADD COLUMN x int",
        "TRUNCATE task_results",
        "CREATE TABLE intruder (x int)",
        "DROP TABLE processing_metrics",
        "DELETE FROM schema_migrations",
    ] {
        let err = client.batch_execute(ddl).await.expect_err(ddl);
        let code = err.code().map(|c| c.code().to_owned());
        assert!(
            matches!(code.as_deref(), Some("42501") | Some("42P01")),
            "{ddl}: {err:?}"
        );
    }
}
