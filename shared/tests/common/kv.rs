//! What the general-purpose cache's tests (`cache_kv.rs`, `cache_v2.rs`) share: a
//! fresh migrated database, a fresh Redis key prefix (one hash tag, as the service
//! requires), and a private `redis-server` a test may stop. Included with
//! `#[path]`, so that these tests do not build the whole service harness.
#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use facesvg::db::Db as Pool;
use uuid::Uuid;

pub fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn redis_url() -> String {
    env("REDIS_URL", "redis://127.0.0.1:6379/")
}

fn short_id() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A key prefix no other test uses: one hash tag, like the service's own.
pub fn fresh_prefix(label: &str) -> String {
    format!("{{{label}-{}}}", short_id())
}

/// A fresh, migrated database named after `label`; its pool and URL.
pub async fn fresh_db(label: &str) -> (Pool, String) {
    let admin = env(
        "FACESVG_TEST_PG",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let name = format!("facesvg_test_{label}_{}", short_id());
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("Postgres at {admin} is required (run infra/stack.sh up): {e}"));
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let url = admin
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/{name}"))
        .expect("database URL");
    let (mut db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect test db");
    tokio::spawn(conn);
    facesvg::migrate::run(&mut db).await.expect("migrations");
    (
        facesvg::app::pg_pool(&url, None, 8, Duration::from_secs(5)).expect("pool"),
        url,
    )
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private redis-server, so that a test can count its commands or stop it.
pub struct OwnRedis {
    child: Child,
    pub url: String,
    dir: std::path::PathBuf,
}

impl OwnRedis {
    pub async fn start() -> OwnRedis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("kvtest-redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is required on PATH (infra/stack.sh installs it)");
        // Owned before the wait, so that a failed start still stops the server.
        let own = OwnRedis {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
            dir,
        };
        let client = ::redis::Client::open(own.url.as_str()).unwrap();
        for _ in 0..100 {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                let pong: Result<String, _> = ::redis::cmd("PING").query_async(&mut c).await;
                if pong.is_ok() {
                    return own;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private redis-server on {port} did not start");
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
