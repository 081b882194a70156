//! Schema migrations, embedded in the binary and applied idempotently.
//!
//! Each file in `migrations/` is applied once, in order, inside one transaction that
//! holds a transaction-scoped advisory lock: concurrent runs (two deploys, or a
//! deploy and a developer) serialise, and the second one finds nothing to do.

use tokio_postgres::Client;

/// (version, name, SQL), in order. Append only: never edit an applied migration.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "task_results",
        include_str!("../../migrations/0001_task_results.sql"),
    ),
    (
        2,
        "cache_store",
        include_str!("../../migrations/0002_cache_store.sql"),
    ),
    (
        3,
        "outbox",
        include_str!("../../migrations/0003_outbox.sql"),
    ),
    (
        4,
        "app_role",
        include_str!("../../migrations/0004_app_role.sql"),
    ),
    (
        5,
        "daily_performance",
        include_str!("../../migrations/0005_daily_performance.sql"),
    ),
];

/// Arbitrary constant shared by every runner: "facesvg" in ASCII.
const LOCK_KEY: i64 = 0x0066_6163_6573_7667;

/// Applies pending migrations; returns the versions applied by this call.
#[tracing::instrument(skip(client))]
pub async fn run(client: &mut Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut done = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tracing::info!(version, name, "applying migration");
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        done.push(*version);
    }
    tx.commit().await?;
    Ok(done)
}

/// The role the application connects as (created by migration 0004).
pub const APP_ROLE: &str = "facesvg_app";

/// Sets the login password of the application role to `password`, sent as a
/// SCRAM-SHA-256 verifier computed here: the clear password never reaches the
/// server, its statement log or `pg_stat_statements`. Run by the schema owner after
/// the migrations, with the password from the application's secret, so that the
/// secret RDS Proxy presents and the role agree after every deploy that runs the
/// migrations resource. The secret has no rotation schedule: a changed password
/// takes effect when that resource runs again (its `Version` changes).
#[tracing::instrument(skip(client, password))]
pub async fn set_app_password(
    client: &Client,
    password: &str,
) -> Result<(), tokio_postgres::Error> {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    // ALTER ROLE takes no bind parameters; the verifier's alphabet (base64, digits,
    // `$`, `:`) holds no quote, and the role name is a constant.
    debug_assert!(!verifier.contains('\''));
    client
        .batch_execute(&format!(
            "ALTER ROLE {APP_ROLE} WITH LOGIN PASSWORD '{verifier}'"
        ))
        .await
}
