//! Applies the database migrations: `facesvg-migrate [DATABASE_URL]`, then sets the
//! application role's server-side limits from `DB_TIMEOUT_MS` (default 3000).
//! Idempotent and safe to run concurrently; used locally and at deploy.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/facesvg".into());
    let (mut client, conn) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("facesvg-migrate: cannot connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(conn);
    // The application role's server-side limits follow the functions' deadline.
    let deadline_ms = match std::env::var("DB_TIMEOUT_MS") {
        Ok(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("facesvg-migrate: DB_TIMEOUT_MS must be a positive number of milliseconds, got {v:?}");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => 3000,
    };
    let limits =
        facesvg::migrate::RoleLimits::for_deadline(std::time::Duration::from_millis(deadline_ms));
    let applied = facesvg::migrate::run(&mut client).await;
    let applied = match applied {
        Ok(a) => facesvg::migrate::set_app_limits(&client, limits)
            .await
            .map(|()| a)
            .map_err(facesvg::migrate::MigrateError::from),
        Err(e) => Err(e),
    };
    match applied {
        Ok(applied) => {
            eprintln!(
                "facesvg-migrate: applied {applied:?} ({} known)",
                facesvg::migrate::MIGRATIONS.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("facesvg-migrate: {e}");
            ExitCode::FAILURE
        }
    }
}
