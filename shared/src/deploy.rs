//! Work CloudFormation asks for at deploy time: applying the database migrations.
//!
//! The stack declares a custom resource served by the cache-cleanup function (the
//! one function that already does maintenance). On `Create` and `Update` the
//! migrations run, under the advisory lock of [`crate::migrate`], so concurrent
//! deploys serialise; `Delete` does nothing (the data outlives the resource). The
//! answer is PUT to the presigned `ResponseURL`, as CloudFormation requires: a
//! failure fails the deploy instead of leaving a stack with a stale schema.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tracing::instrument;

use crate::app::App;

const PHYSICAL_ID: &str = "facesvg-migrations";

pub fn is_custom_resource(event: &Value) -> bool {
    event.get("RequestType").is_some() && event.get("ResponseURL").is_some()
}

/// Whether `url` may receive the answer: CloudFormation's presigned URLs are
/// `https` and name one of its response buckets
/// (`cloudformation-custom-resource-response-<region without dashes>`), in the
/// host (`<bucket>.s3.amazonaws.com`, `<bucket>.s3.<region>.amazonaws.com`,
/// `<bucket>.s3-<region>.amazonaws.com`) or first in the path of an S3 endpoint
/// (`s3.amazonaws.com/<bucket>/…`). Anything else (plain `http`, another bucket,
/// another host, a port, credentials in the URL) is refused without a connection:
/// an event forged by whoever can invoke the function must not make it send the
/// migration's outcome, or anything, to a bucket of their choosing. The S3 gateway
/// endpoint's policy says the same in the VPC; this holds wherever the code runs.
pub fn check_response_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| "ResponseURL is not a URL".to_owned())?;
    if uri.scheme_str() != Some("https") {
        return Err("ResponseURL must be https".into());
    }
    let authority = uri.authority().ok_or("ResponseURL has no host")?;
    if authority.as_str().contains('@') || authority.port().is_some_and(|p| p.as_u16() != 443) {
        return Err("ResponseURL must not carry credentials or a port".into());
    }
    let host = authority.host().to_ascii_lowercase();
    let virtual_hosted = host
        .split_once('.')
        .is_some_and(|(bucket, endpoint)| is_response_bucket(bucket) && is_s3_endpoint(endpoint));
    let path_style = is_s3_endpoint(&host)
        && uri
            .path()
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .is_some_and(|(bucket, key)| {
                // A dot segment could walk out of the bucket on whatever normalises it.
                let lower = key.to_ascii_lowercase();
                is_response_bucket(bucket)
                    && !key.is_empty()
                    && !key.split('/').any(|s| s == "." || s == "..")
                    && !lower.contains("%2e")
            });
    if virtual_hosted || path_style {
        Ok(())
    } else {
        Err("ResponseURL must name CloudFormation's response bucket on Amazon S3".into())
    }
}

/// `cloudformation-custom-resource-response-` and a region without its dashes.
fn is_response_bucket(name: &str) -> bool {
    name.strip_prefix("cloudformation-custom-resource-response-")
        .is_some_and(|region| {
            !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// An S3 endpoint of AWS: `s3`, `s3.<region>` or `s3-<region>` under
/// `amazonaws.com` (`amazonaws.com.cn` in China).
fn is_s3_endpoint(host: &str) -> bool {
    let Some(name) = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
    else {
        return false;
    };
    let region = |r: &str| {
        !r.is_empty()
            && !r.starts_with('-')
            && !r.ends_with('-')
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    name == "s3"
        || name.strip_prefix("s3.").is_some_and(region)
        || name.strip_prefix("s3-").is_some_and(region)
}

/// Handles a custom-resource event and returns the response it sent.
pub async fn handle_custom_resource(app: &App, event: &Value) -> Value {
    handle_custom_resource_with(app, event, check_response_url).await
}

/// [`handle_custom_resource`] with another check of the `ResponseURL` (tests answer
/// to a local listener).
pub async fn handle_custom_resource_with(
    app: &App,
    event: &Value,
    check_url: fn(&str) -> Result<(), String>,
) -> Value {
    let field = |k: &str| {
        event
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let outcome = match field("RequestType").as_str() {
        "Create" | "Update" => migrate(app).await,
        "Delete" => Ok(Vec::new()),
        other => Err(format!("unknown RequestType {other:?}")),
    };
    let (status, reason, applied) = match outcome {
        Ok(applied) => ("SUCCESS", format!("applied {applied:?}"), applied),
        Err(e) => ("FAILED", e, Vec::new()),
    };
    let physical = event
        .get("PhysicalResourceId")
        .and_then(Value::as_str)
        .unwrap_or(PHYSICAL_ID);
    let response = json!({
        "Status": status,
        "Reason": reason,
        "PhysicalResourceId": physical,
        "StackId": field("StackId"),
        "RequestId": field("RequestId"),
        "LogicalResourceId": field("LogicalResourceId"),
        "Data": {"Applied": applied.len(), "Known": crate::migrate::MIGRATIONS.len()},
    });
    let url = field("ResponseURL");
    if let Err(e) = check_url(&url) {
        // The URL itself is never logged: it is a credential (a presigned PUT).
        tracing::error!(error = %e, "refusing to answer CloudFormation");
        return response;
    }
    if let Err(e) = respond(&url, &response).await {
        // CloudFormation will time the resource out; the log says why.
        tracing::error!(error = %e, "could not answer CloudFormation");
    }
    response
}

/// Applies the migrations. In AWS the function holds two secrets: the schema
/// owner's (`MIGRATION_SECRET_ARN`), read here, when CloudFormation asks for a
/// migration, and never at start-up (the same function sweeps every minute); and
/// the application role's (`DATABASE_SECRET_ARN`), whose password is then given to
/// that role. Locally, and where no owner secret is configured, the function's own
/// connection migrates.
async fn migrate(app: &App) -> Result<Vec<i32>, String> {
    let config = &app.config;
    let limits = crate::migrate::RoleLimits::for_deadline(config.db_timeout);
    let Some(owner_secret) = &config.migration_secret_arn else {
        let mut client = app
            .tasks
            .pool()
            .get()
            .await
            .map_err(|e| format!("database: {e}"))?;
        let applied = crate::migrate::run(&mut client)
            .await
            .map_err(|e| format!("migration failed: {e}"))?;
        // The functions connect as the owner here; the role's limits still hold for
        // anything that connects as the role.
        if let Err(e) = crate::migrate::set_app_limits(&client, limits).await {
            tracing::warn!(error = %e, "could not set the application role's limits");
        }
        return Ok(applied);
    };
    let owner = app
        .secrets
        .credentials(owner_secret)
        .await
        .map_err(|e| format!("the schema owner's {e}"))?;
    let pool = crate::app::pg_pool(
        &config.database_url,
        Some(&owner),
        1,
        config.db_connect_timeout,
    )
    .map_err(|e| format!("database: {e}"))?;
    let mut client = pool.get().await.map_err(|e| format!("database: {e}"))?;
    let applied = crate::migrate::run(&mut client)
        .await
        .map_err(|e| format!("migration failed: {e}"))?;
    match &config.database_credentials {
        Some((user, password)) if user == crate::migrate::APP_ROLE => {
            crate::migrate::set_app_password(&client, password)
                .await
                .map_err(|e| format!("setting the application role's password failed: {e}"))?;
            crate::migrate::set_app_limits(&client, limits)
                .await
                .map_err(|e| format!("setting the application role's limits failed: {e}"))?;
        }
        // A deployment whose functions connect as the owner has no role to update.
        _ => tracing::warn!("the functions do not connect as the application role"),
    }
    Ok(applied)
}

#[instrument(skip_all, err)]
async fn respond(url: &str, body: &Value) -> Result<(), String> {
    let tls = crate::app::rustls_client_config().map_err(|e| e.to_string())?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let bytes = Bytes::from(body.to_string());
    // The presigned URL was signed without a content type: send an empty one.
    let req = hyper::Request::put(url)
        .header("content-type", "")
        .header("content-length", bytes.len())
        .body(Full::new(bytes))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(20), client.request(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("ResponseURL answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cloudformations_response_buckets_receive_the_answer() {
        let key = "arn%3Aaws%3Acloudformation%3Aus-east-1%3A123456789012%3Astack/facesvg/1f2e%7CDatabaseMigrations%7Creq?X-Amz-Signature=abc";
        for good in [
            format!("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/{key}"),
            format!("https://cloudformation-custom-resource-response-euwest1.s3.eu-west-1.amazonaws.com/{key}"),
            format!("https://cloudformation-custom-resource-response-euwest1.s3-eu-west-1.amazonaws.com/{key}"),
            format!("https://cloudformation-custom-resource-response-cnnorth1.s3.cn-north-1.amazonaws.com.cn/{key}"),
            format!("https://s3.amazonaws.com/cloudformation-custom-resource-response-useast1/{key}"),
            format!("https://s3.eu-west-1.amazonaws.com/cloudformation-custom-resource-response-euwest1/{key}"),
            format!("https://s3-us-gov-west-1.amazonaws.com/cloudformation-custom-resource-response-usgovwest1/{key}"),
            format!("https://CloudFormation-Custom-Resource-Response-USEast1.S3.AmazonAWS.com:443/{key}"),
        ] {
            assert_eq!(check_response_url(&good), Ok(()), "{good}");
        }
        for bad in [
            // Not https, or not where S3 listens.
            format!("http://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/{key}"),
            format!("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com:8443/{key}"),
            format!("https://user:pw@cloudformation-custom-resource-response-useast1.s3.amazonaws.com/{key}"),
            format!("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com.evil.example/{key}"),
            format!("https://cloudformation-custom-resource-response-useast1.evil.example/{key}"),
            "https://169.254.169.254/latest/meta-data".to_owned(),
            "http://127.0.0.1:4566/cloudformation-custom-resource-response-useast1/x".to_owned(),
            // Another bucket, in the host or in the path.
            format!("https://attacker-bucket.s3.amazonaws.com/{key}"),
            format!("https://s3.amazonaws.com/attacker-bucket/{key}"),
            format!("https://s3-external-1.amazonaws.com/attacker-bucket/{key}"),
            format!("https://cloudformation-custom-resource-response-.s3.amazonaws.com/{key}"),
            format!("https://cloudformation-custom-resource-response-us-east-1.s3.amazonaws.com/{key}"),
            format!("https://x.cloudformation-custom-resource-response-useast1.s3.amazonaws.com/{key}"),
            format!("https://s3.amazonaws.com/cloudformation-custom-resource-response-useast1evil.example/{key}"),
            // A path that leaves the bucket, or no object at all.
            "https://s3.amazonaws.com/cloudformation-custom-resource-response-useast1/../attacker/x".to_owned(),
            "https://s3.amazonaws.com/cloudformation-custom-resource-response-useast1/%2E%2E/attacker/x".to_owned(),
            "https://s3.amazonaws.com/cloudformation-custom-resource-response-useast1/".to_owned(),
            "https://s3.amazonaws.com/cloudformation-custom-resource-response-useast1".to_owned(),
            "https://s3.dualstack.us-east-1.amazonaws.com/cloudformation-custom-resource-response-useast1/x".to_owned(),
            "not a url".to_owned(),
        ] {
            assert!(check_response_url(&bad).is_err(), "{bad}");
        }
    }

    const OWNER: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:owner";

    /// AWS configuration whose every call fails at once: nothing listens there.
    async fn unreachable_aws() -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url("http://127.0.0.1:1")
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "key", "secret", None, None, "test",
            ))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await
    }

    #[tokio::test]
    async fn the_owners_secret_is_read_by_a_migration_not_at_start_up() {
        let config = crate::config::Config::from_lookup(|k| match k {
            "MIGRATION_SECRET_ARN" => Some(OWNER.into()),
            "REDIS_URL" => Some("none".into()),
            _ => None,
        })
        .unwrap();
        // Any read of a secret would fail: a cold start that succeeds read none.
        let app = App::from_sdk(config, &unreachable_aws().await)
            .await
            .unwrap_or_else(|e| panic!("the cold start read a secret: {e}"));
        // The migration event is what reads it (and, here, fails on it, before any
        // connection to the database).
        let event = json!({
            "RequestType": "Create", "ResponseURL": "https://unused.example/x",
            "StackId": "s", "RequestId": "r", "LogicalResourceId": "DatabaseMigrations",
        });
        let answer =
            handle_custom_resource_with(&app, &event, |_| Err("not answered here".into())).await;
        assert_eq!(answer["Status"], "FAILED", "{answer}");
        let reason = answer["Reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with(&format!("the schema owner's secret {OWNER}")),
            "{reason}"
        );
        // Nor does anything but a migration: a deletion needs no secret.
        let delete = json!({"RequestType": "Delete", "ResponseURL": "https://unused.example/x"});
        let answer =
            handle_custom_resource_with(&app, &delete, |_| Err("not answered here".into())).await;
        assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    }
}
