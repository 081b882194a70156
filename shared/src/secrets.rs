//! Credentials from AWS Secrets Manager: the ones every invocation needs once per
//! cold start, the schema owner's only when a migration runs ([`Secrets`]).
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
        message: format!("not JSON: {}", crate::telemetry::json_error(&e)),
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

/// Reads a secret when it is needed rather than at start-up: the schema owner's is
/// wanted by a migration (a deploy), not by the sweeps that the same function runs
/// every minute, and a secret never read is one that no instance holds.
#[derive(Clone, Default)]
pub struct Secrets {
    /// `None` in an [`crate::app::App`] built around given backends, which has no
    /// AWS configuration: every read fails.
    sdk: Option<aws_config::SdkConfig>,
}

impl Secrets {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Secrets {
            sdk: Some(sdk.clone()),
        }
    }

    /// (username, password) of an RDS-shaped secret.
    pub async fn credentials(&self, arn: &str) -> Result<(String, String), SecretError> {
        let sdk = self.sdk.as_ref().ok_or_else(|| SecretError::Fetch {
            arn: arn.to_owned(),
            message: "no AWS configuration to read it with".into(),
        })?;
        let mut fields = fetch_fields(sdk, arn, &["username", "password"])
            .await?
            .into_iter();
        match (fields.next(), fields.next()) {
            (Some(user), Some(password)) => Ok((user, password)),
            _ => Err(SecretError::MissingField {
                arn: arn.to_owned(),
                field: "password",
            }),
        }
    }
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
