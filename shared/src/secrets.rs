//! Credentials from AWS Secrets Manager, read once per cold start.
//!
//! The template never holds a secret in clear: the functions get the secrets' ARNs
//! and fetch them here. The database secret has RDS's shape (`username`,
//! `password`); the Redis secret holds the ElastiCache auth `token`.

use thiserror::Error;
use tracing::instrument;

#[derive(Debug, Error)]
pub enum SecretError {
    #[error("secret {arn}: {message}")]
    Fetch { arn: String, message: String },
    #[error("secret {arn} has no string field {field:?}")]
    MissingField { arn: String, field: &'static str },
}

/// Fetches a JSON secret and returns the requested string fields, in order.
#[instrument(skip_all, fields(%arn, ?fields), err)]
pub async fn fetch_fields(
    sdk: &aws_config::SdkConfig,
    arn: &str,
    fields: &[&'static str],
) -> Result<Vec<String>, SecretError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretError::Fetch {
            arn: arn.to_owned(),
            message: crate::telemetry::error_chain(&e),
        })?;
    let text = out.secret_string().unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| SecretError::Fetch {
        arn: arn.to_owned(),
        message: format!("not JSON: {e}"),
    })?;
    fields
        .iter()
        .map(|&field| {
            json.get(field)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| SecretError::MissingField {
                    arn: arn.to_owned(),
                    field,
                })
        })
        .collect()
}

/// Puts a password into a `redis://` or `rediss://` URL, percent-encoding it.
pub fn redis_url_with_password(url: &str, password: &str) -> String {
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            // Drop any credentials already in the URL.
            let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
            format!("{scheme}://:{encoded}@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_go_into_redis_urls_encoded() {
        assert_eq!(
            redis_url_with_password("rediss://h:6379/", "a b/c"),
            "rediss://:a%20b%2Fc@h:6379/"
        );
        assert_eq!(
            redis_url_with_password("redis://:old@h:1/", "new"),
            "redis://:new@h:1/"
        );
    }
}
