//! Applies the database migrations: `facesvg-migrate [DATABASE_URL]`.
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
    match facesvg::migrate::run(&mut client).await {
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
