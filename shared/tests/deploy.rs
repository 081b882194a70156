//! Deploy-time paths on real services: credentials from Secrets Manager (moto), and
//! the migrations custom resource answering CloudFormation over HTTP.

mod common;

use std::sync::Arc;

use common::TestApp;
use facesvg::app::App;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A one-shot stand-in for CloudFormation's presigned ResponseURL: returns its URL
/// and a handle yielding the body of the PUT it received.
async fn response_url() -> (String, tokio::task::JoinHandle<(String, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/cfn-response?X-Amz-Signature=abc",
        listener.local_addr().unwrap()
    );
    let handle = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .unwrap();
                    let request_line = text.lines().next().unwrap().to_owned();
                    let body: Value = serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap();
                    return (request_line, body);
                }
            }
            assert!(n > 0, "connection closed early");
        }
    });
    (url, handle)
}

/// Handles an event as the function does, but answers the local listener that
/// stands in for CloudFormation's S3 URL.
async fn local_answer(app: &facesvg::app::App, event: Value) -> Value {
    facesvg::deploy::handle_custom_resource_with(app, &event, |url| {
        url.starts_with("http://127.0.0.1:")
            .then_some(())
            .ok_or_else(|| "not local".to_owned())
    })
    .await
}

fn cfn_event(request_type: &str, url: &str) -> Value {
    json!({
        "RequestType": request_type, "ResponseURL": url, "StackId": "arn:aws:cloudformation:stack/facesvg",
        "RequestId": "req-1", "LogicalResourceId": "DatabaseMigrations", "ResourceType": "Custom::FacesvgMigrations",
        "ResourceProperties": {"ServiceToken": "arn", "Version": "0001"}
    })
}

async fn app_on_database(t: &TestApp, db: &str) -> Arc<App> {
    let mut config = t.app.config.clone();
    config.database_url = t
        .admin_pg
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/{db}"))
        .unwrap();
    Arc::new(App::from_config(config).await.unwrap())
}

#[tokio::test]
async fn the_migrations_resource_migrates_and_answers_cloudformation() {
    let t = TestApp::spawn().await;
    let fresh = fresh_database(&t, "fresh").await;
    let app = app_on_database(&t, &fresh).await;

    let (url, got) = response_url().await;
    let sent = local_answer(&app, cfn_event("Create", &url)).await;
    let (request_line, body) = got.await.unwrap();
    assert!(
        request_line.starts_with("PUT /cfn-response?X-Amz-Signature=abc"),
        "{request_line}"
    );
    assert_eq!(body, sent);
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["Data"]["Applied"], facesvg::migrate::MIGRATIONS.len());
    assert_eq!(body["RequestId"], "req-1");
    let n: i64 = app
        .tasks
        .pool()
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM task_results", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the schema exists");

    // An update applies nothing new; a delete leaves the data alone.
    let (url, got) = response_url().await;
    local_answer(&app, cfn_event("Update", &url)).await;
    assert_eq!(got.await.unwrap().1["Data"]["Applied"], 0);
    let (url, got) = response_url().await;
    local_answer(&app, cfn_event("Delete", &url)).await;
    assert_eq!(got.await.unwrap().1["Status"], "SUCCESS");
}

#[tokio::test]
async fn a_failed_migration_fails_the_deploy() {
    let t = TestApp::spawn().await;
    let app = app_on_database(&t, "facesvg_no_such_database").await;
    let (url, got) = response_url().await;
    local_answer(&app, cfn_event("Create", &url)).await;
    let body = got.await.unwrap().1;
    assert_eq!(body["Status"], "FAILED");
    assert!(
        body["Reason"].as_str().unwrap().contains("database"),
        "{body}"
    );
}

#[tokio::test]
async fn database_credentials_come_from_secrets_manager() {
    let t = TestApp::spawn().await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret = sm
        .create_secret()
        .name(format!("{}-db", t.db_name))
        .secret_string(json!({"username": "postgres", "password": "from-the-secret"}).to_string())
        .send()
        .await
        .expect("Secrets Manager emulator")
        .arn
        .unwrap();
    let mut config = t.app.config.clone();
    // The URL names a role that does not exist: only the secret's user can connect.
    config.database_url = config.database_url.replacen("postgres@", "nobody@", 1);
    config.database_secret_arn = Some(secret);
    let app = App::from_config(config).await.expect("app");
    assert_eq!(
        app.config.database_credentials.as_ref().unwrap().0,
        "postgres"
    );
    app.tasks
        .ping()
        .await
        .expect("connected with the secret's credentials");

    let mut config = t.app.config.clone();
    config.database_secret_arn =
        Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:missing".into());
    assert!(
        App::from_config(config).await.is_err(),
        "a missing secret stops the cold start"
    );
}

/// The schema owner's secret is read when a migration runs, not at the cold start
/// of the function that sweeps every minute: a missing one fails the migration
/// (and so the deploy, with the reason), and nothing else.
#[tokio::test]
async fn a_missing_owner_secret_fails_the_migration_not_the_cold_start() {
    let t = TestApp::spawn().await;
    let mut config = t.app.config.clone();
    config.migration_secret_arn =
        Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:no-such-owner".into());
    let app = App::from_config(config)
        .await
        .expect("the cold start reads no owner secret");
    assert_eq!(
        facesvg::sweep::relay(&app).await.expect("the relay runs"),
        0
    );
    let (url, got) = response_url().await;
    local_answer(&app, cfn_event("Create", &url)).await;
    let body = got.await.unwrap().1;
    assert_eq!(body["Status"], "FAILED", "{body}");
    assert!(
        body["Reason"].as_str().unwrap().contains("no-such-owner"),
        "{body}"
    );
}

/// In AWS the migrations run as the schema owner (its secret is the cleanup
/// function's alone) and then give the application role the password of the
/// functions' own secret, as a SCRAM verifier: the role the functions and RDS
/// Proxy use works after every deploy, and the owner's password is in no other
/// function.
#[tokio::test]
async fn migrations_run_as_the_owner_and_set_the_app_role_password_from_its_secret() {
    let t = TestApp::spawn().await;
    let fresh = fresh_database(&t, "owner").await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret = |name: String, user: &str, password: &str| {
        let sm = sm.clone();
        let body = json!({"username": user, "password": password}).to_string();
        async move {
            sm.create_secret()
                .name(name)
                .secret_string(body)
                .send()
                .await
                .expect("Secrets Manager emulator")
                .arn
                .unwrap()
        }
    };
    let app_password = format!("app-{}", uuid::Uuid::new_v4().simple());
    let owner = secret(format!("{fresh}-owner"), "postgres", "owner-password").await;
    let role = secret(format!("{fresh}-app"), "facesvg_app", &app_password).await;

    let mut config = t.app.config.clone();
    config.database_url = t
        .admin_pg
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/{fresh}"))
        .unwrap()
        .replacen("postgres@", "nobody@", 1);
    config.database_secret_arn = Some(role);
    config.migration_secret_arn = Some(owner);
    let app = App::from_config(config).await.expect("app");
    assert_eq!(
        app.config.database_credentials.as_ref().unwrap().0,
        "facesvg_app"
    );

    let (url, got) = response_url().await;
    local_answer(&app, cfn_event("Create", &url)).await;
    let body = got.await.unwrap().1;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["Data"]["Applied"], facesvg::migrate::MIGRATIONS.len());

    // The owner made the schema; the role can use it, not change it.
    let (db, conn) = tokio_postgres::connect(
        &format!("{}/{fresh}", t.admin_pg.rsplit_once('/').unwrap().0),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let owner_of: String = db
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'task_results'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner_of, "postgres");
    app.tasks
        .ping()
        .await
        .expect("the functions connect as the role");

    // The role's password is the secret's, stored as a SCRAM verifier.
    let verifier = || async {
        let v: Option<String> = db
            .query_one(
                "SELECT rolpassword FROM pg_authid WHERE rolname = 'facesvg_app'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        v.unwrap_or_default()
    };
    let first = verifier().await;
    assert!(first.starts_with("SCRAM-SHA-256$4096:"), "{first}");
    assert!(!first.contains(&app_password));
    // The local server trusts every login, so a connection proves nothing about the
    // password: the verifier itself must be the secret's password's.
    assert!(
        scram_matches(&first, &app_password),
        "verifier of another password"
    );
    assert!(!scram_matches(&first, "owner-password"));
    // An Update of the resource sets it again: a fresh salt.
    let (url, got) = response_url().await;
    local_answer(&app, cfn_event("Update", &url)).await;
    assert_eq!(got.await.unwrap().1["Status"], "SUCCESS");
    let second = verifier().await;
    assert!(second.starts_with("SCRAM-SHA-256$") && second != first);
}

#[tokio::test]
async fn sslmode_require_really_requires_tls() {
    let t = TestApp::spawn().await;
    let mut config = t.app.config.clone();
    // The local server has no TLS: a TLS-only pool must refuse to fall back to plain text.
    config.database_url = format!("{}?sslmode=require", config.database_url);
    let app = App::from_config(config).await.expect("app");
    let err = app.tasks.ping().await.expect_err("plain-text fallback");
    assert!(
        err.to_string().to_lowercase().contains("tls") || err.to_string().contains("ssl"),
        "{err}"
    );
}

#[tokio::test]
async fn the_custom_resource_answers_only_cloudformations_response_buckets() {
    for good in [
        "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/arn%3Aaws/x?X-Amz-Signature=abc",
        "https://cloudformation-custom-resource-response-euwest1.s3.eu-west-1.amazonaws.com/x",
        "https://s3.amazonaws.com/cloudformation-custom-resource-response-useast1/x",
    ] {
        assert_eq!(facesvg::deploy::check_response_url(good), Ok(()), "{good}");
    }
    for bad in [
        "http://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x",
        "https://evil.example.com/x",
        "https://s3.amazonaws.com.evil.example/x",
        "https://user:pw@s3.amazonaws.com/x",
        "https://s3.amazonaws.com:8443/x",
        "https://s3.amazonaws.com/bucket/x",
        "https://s3-external-1.amazonaws.com/bucket/x",
        "https://any-bucket.s3.amazonaws.com/x",
        "https://169.254.169.254/latest/meta-data",
        "not a url",
    ] {
        assert!(facesvg::deploy::check_response_url(bad).is_err(), "{bad}");
    }
    // Through the real entry point, a local http URL gets no request at all.
    let app = TestApp::spawn().await;
    let (url, got) = response_url().await;
    let sent = facesvg::sweep::handle_event(&app.app, cfn_event("Create", &url))
        .await
        .expect("handled");
    assert_eq!(sent["Status"], "SUCCESS", "the migration itself ran");
    let waited = tokio::time::timeout(std::time::Duration::from_millis(500), got).await;
    assert!(
        waited.is_err(),
        "the forged ResponseURL was never contacted"
    );
}

/// Whether a Postgres SCRAM-SHA-256 verifier (`SCRAM-SHA-256$iter:salt$stored:server`)
/// was made from `password` (RFC 5802: PBKDF2-HMAC-SHA-256, then the stored key).
fn scram_matches(verifier: &str, password: &str) -> bool {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let b64 = base64::engine::general_purpose::STANDARD;
    let hmac = |key: &[u8], msg: &[u8]| -> [u8; 32] {
        let mut k = [0u8; 64];
        k[..key.len()].copy_from_slice(key); // keys here are at most 32 bytes
        let inner = Sha256::new()
            .chain_update(k.map(|b| b ^ 0x36))
            .chain_update(msg)
            .finalize();
        Sha256::new()
            .chain_update(k.map(|b| b ^ 0x5c))
            .chain_update(inner)
            .finalize()
            .into()
    };
    let Some((params, keys)) = verifier
        .strip_prefix("SCRAM-SHA-256$")
        .and_then(|v| v.split_once('$'))
    else {
        return false;
    };
    let (iterations, salt) = params.split_once(':').unwrap();
    let (stored, _server) = keys.split_once(':').unwrap();
    let salt = b64.decode(salt).unwrap();
    let mut u = hmac(
        password.as_bytes(),
        &[salt.as_slice(), &1u32.to_be_bytes()].concat(),
    );
    let mut salted = u;
    for _ in 1..iterations.parse::<u32>().unwrap() {
        u = hmac(password.as_bytes(), &u);
        salted.iter_mut().zip(u).for_each(|(s, b)| *s ^= b);
    }
    let client_key = hmac(&salted, b"Client Key");
    b64.encode(Sha256::digest(client_key)) == stored
}

/// Creates an empty database beside the test's own and returns its name.
async fn fresh_database(t: &TestApp, suffix: &str) -> String {
    let fresh = format!("{}_{suffix}", t.db_name);
    let (admin, conn) = tokio_postgres::connect(&t.admin_pg, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("CREATE DATABASE {fresh}"))
        .await
        .unwrap();
    fresh
}
