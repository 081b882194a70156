//! Schema migrations, embedded in the binary and applied idempotently.
//!
//! Each file in `migrations/` is applied once, in order, inside one transaction that
//! holds a transaction-scoped advisory lock: concurrent runs (two deploys, or a
//! deploy and a developer) serialise, and the second one finds nothing to do.
//!
//! A migration never queues the service behind it: its transaction waits at most
//! [`LockPolicy::wait`] for a table lock (`SET LOCAL lock_timeout`). An `ALTER TABLE`
//! waiting behind a long query would otherwise hold every later query on that table
//! behind itself. A run that gave up is rolled back whole and tried again, a
//! bounded number of times, then fails with [`MigrateError::LockBusy`].

use std::time::Duration;

use thiserror::Error;
use tokio_postgres::error::SqlState;
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
    (
        6,
        "bounded_growth",
        include_str!("../../migrations/0006_bounded_growth.sql"),
    ),
    (
        7,
        "tenant_quotas",
        include_str!("../../migrations/0007_tenant_quotas.sql"),
    ),
    (
        8,
        "cache_counters",
        include_str!("../../migrations/0008_cache_counters.sql"),
    ),
    (
        9,
        "cache_tiers",
        include_str!("../../migrations/0009_cache_tiers.sql"),
    ),
];

/// Arbitrary constant shared by every runner: "facesvg" in ASCII.
const LOCK_KEY: i64 = 0x0066_6163_6573_7667;

#[derive(Debug, Error)]
pub enum MigrateError {
    #[error("gave up after {attempts} attempts of {wait:?} each waiting for a table lock held by other sessions; run the migrations again when the database is quieter")]
    LockBusy { attempts: u32, wait: Duration },
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

/// How long a migration waits for a table lock, and how often it tries.
#[derive(Debug, Clone, Copy)]
pub struct LockPolicy {
    /// The longest any query on a migrated table is held up behind the migration.
    pub wait: Duration,
    pub attempts: u32,
    /// Pause between attempts (doubled each time).
    pub backoff: Duration,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            // Below the functions' 3 s deadline: a request queued behind a waiting
            // ALTER still gets its answer.
            wait: Duration::from_secs(2),
            attempts: 5,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Applies pending migrations; returns the versions applied by this call.
pub async fn run(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
    run_list(client, MIGRATIONS, LockPolicy::default()).await
}

/// Applies the pending ones of `migrations` under `policy` (tests pass their own).
#[tracing::instrument(skip_all, fields(migrations = migrations.len()))]
pub async fn run_list(
    client: &mut Client,
    migrations: &[(i32, &str, &str)],
    policy: LockPolicy,
) -> Result<Vec<i32>, MigrateError> {
    let mut pause = policy.backoff;
    for attempt in 1..=policy.attempts.max(1) {
        match run_once(client, migrations, policy.wait).await {
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                tracing::warn!(attempt, "migration gave up waiting for a table lock");
                if attempt < policy.attempts {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
            other => return Ok(other?),
        }
    }
    Err(MigrateError::LockBusy {
        attempts: policy.attempts.max(1),
        wait: policy.wait,
    })
}

async fn run_once(
    client: &mut Client,
    migrations: &[(i32, &str, &str)],
    lock_wait: Duration,
) -> Result<Vec<i32>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // The advisory lock is ours alone (other migrators): wait for it as long as it takes.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{}ms'",
        lock_wait.as_millis().max(1)
    ))
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
    for (version, name, sql) in migrations {
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

/// The server-side limits of the application role's sessions in one database, a
/// little above the client's deadline: the client cancels its own statement first
/// (see [`crate::db`]); the server ends whatever a cancel did not reach (a lost
/// network, RDS Proxy) instead of letting it run on. Set per role and database
/// (`ALTER ROLE … IN DATABASE … SET`), not per session: session state would pin
/// RDS Proxy's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleLimits {
    pub statement_timeout: Duration,
    /// A lock wait is part of a statement: it ends first, with its own error.
    pub lock_timeout: Duration,
    /// A transaction left open between statements (its caller gone).
    pub idle_in_transaction: Duration,
}

impl RoleLimits {
    /// The limits for a client whose calls have `deadline` (`DB_TIMEOUT_MS`).
    pub fn for_deadline(deadline: Duration) -> Self {
        RoleLimits {
            statement_timeout: deadline + Duration::from_secs(1),
            lock_timeout: deadline + Duration::from_millis(500),
            idle_in_transaction: deadline + Duration::from_secs(2),
        }
    }
}

/// Sets [`RoleLimits`] on the application role for the current database. Run by the
/// schema owner after the migrations, at every deploy (the deadline may change).
#[tracing::instrument(skip_all, fields(?limits))]
pub async fn set_app_limits(
    client: &Client,
    limits: RoleLimits,
) -> Result<(), tokio_postgres::Error> {
    let ms = |d: Duration| d.as_millis().max(1);
    // ALTER ROLE takes no bind parameters: the values are integers formatted here,
    // the database name is quoted by Postgres itself (format %I).
    client
        .batch_execute(&format!(
            "DO $$ BEGIN
                 EXECUTE format('ALTER ROLE {APP_ROLE} IN DATABASE %I SET statement_timeout = {}', current_database());
                 EXECUTE format('ALTER ROLE {APP_ROLE} IN DATABASE %I SET lock_timeout = {}', current_database());
                 EXECUTE format('ALTER ROLE {APP_ROLE} IN DATABASE %I SET idle_in_transaction_session_timeout = {}', current_database());
             END $$",
            ms(limits.statement_timeout),
            ms(limits.lock_timeout),
            ms(limits.idle_in_transaction),
        ))
        .await
}

/// Sets the login password of the application role to `password`, sent as a
/// SCRAM-SHA-256 verifier computed here: the clear password never reaches the
/// server, its statement log or `pg_stat_statements`. Run by the schema owner after
/// the migrations, with the password from the application's secret, so that the
/// secret RDS Proxy presents and the role agree after every deploy that runs the
/// migrations resource. The secret has no rotation schedule: a changed password
/// takes effect when that resource runs again (its `Version` changes).
#[tracing::instrument(skip_all)]
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
