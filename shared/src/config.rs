//! Settings, read once per cold start from the environment. Every setting has a
//! default that works against the local stack started by `infra/stack.sh up`.

use std::time::Duration;

use thiserror::Error;

use crate::limits::{max_body_for_lambda, Limits, RenderBudget, LAMBDA_SYNC_PAYLOAD_BYTES};

#[derive(Debug, Error)]
#[error("environment variable {name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

/// How the tenant of a request is established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// The tenant is a claim of the JWT that API Gateway's authorizer verified. A
    /// request without it is refused with 401. Locally, the gateway fills the claims.
    Jwt,
    /// Single-tenant mode for trusted setups: every request belongs to `public`.
    None,
}

/// Every environment variable the functions read. The deployment template must set
/// each of them (a test checks `template.yaml` against this list).
pub const VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_SECRET_ARN",
    "MIGRATION_SECRET_ARN",
    "DB_POOL_SIZE",
    "DB_TIMEOUT_MS",
    "DB_CONNECT_TIMEOUT_MS",
    "AWS_CONNECT_TIMEOUT_MS",
    "AWS_ATTEMPT_TIMEOUT_MS",
    "AWS_OPERATION_TIMEOUT_MS",
    "REDIS_URL",
    "REDIS_AUTH_SECRET_ARN",
    "REDIS_TIMEOUT_MS",
    "REDIS_PREFIX",
    "S3_BUCKET",
    "QUEUE_URL",
    "CACHE_TTL_HOURS",
    "L0_MAX_BYTES",
    "L0_TTL_SECS",
    "STALE_CLAIM_SECS",
    "STUCK_AFTER_SECS",
    "PRESIGN_TTL_SECS",
    "SWEEP_BATCH",
    "CACHE_KV_TTLS",
    "AUTH_MODE",
    "TENANT_CLAIM",
    "ADMIN_SCOPE",
    "MAX_BODY_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_UPLOAD_BYTES",
    "MAX_IMAGE_SIDE",
    "MAX_IMAGE_PIXELS",
    "MAX_LANDMARKS_BYTES",
    "MAX_SEGMENTATION_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_RENDER_REGIONS",
    "MAX_RENDER_EDGES",
    "MAX_RENDER_LOOP_EDGES",
    "MAX_RENDER_RINGS",
    "MAX_RENDER_POINTS",
    "MAX_SVG_BYTES",
    "MAX_RENDER_MS",
    "BATCH_MEMORY_PERCENT",
];

/// Variables the Lambda runtime sets by itself; read, but not set by the template.
pub const RUNTIME_VARIABLES: &[&str] = &["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"];

#[derive(Debug, Clone, Copy)]
pub struct AwsTimeouts {
    pub connect: Duration,
    pub attempt: Duration,
    pub operation: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Host, port, database and TLS mode; credentials may come from a secret instead.
    pub database_url: String,
    /// Secrets Manager secret with `username` and `password` (the RDS secret shape).
    pub database_secret_arn: Option<String>,
    /// (user, password) resolved from `database_secret_arn` at start-up.
    pub database_credentials: Option<(String, String)>,
    /// The schema owner's secret (the RDS master user), given to the function that
    /// applies migrations only: it migrates as the owner, then sets the application
    /// role's password to the one in `database_secret_arn`.
    pub migration_secret_arn: Option<String>,
    /// (user, password) resolved from `migration_secret_arn` at start-up.
    pub migration_credentials: Option<(String, String)>,
    pub db_pool_size: usize,
    /// Deadline of one Postgres call: waiting for a pooled connection, connecting,
    /// and the queries of that call together.
    pub db_timeout: Duration,
    /// Deadline of one TCP connect and start-up to Postgres.
    pub db_connect_timeout: Duration,
    /// S3 and SQS: connect, one attempt, and a whole operation with its retries.
    pub aws_timeouts: AwsTimeouts,
    /// `redis://` or `rediss://` (TLS).
    pub redis_url: String,
    /// Secrets Manager secret with the ElastiCache auth `token`.
    pub redis_auth_secret_arn: Option<String>,
    pub redis_timeout: Duration,
    pub s3_bucket: String,
    pub queue_url: String,
    pub cache_ttl: Duration,
    pub l0_max_bytes: usize,
    pub l0_ttl: Duration,
    /// A claim older than this is taken to belong to a crashed worker.
    pub stale_claim: Duration,
    /// Tasks queued or claimed for longer than this are failed by the sweep (retryably).
    pub stuck_after: Duration,
    pub presign_ttl: Duration,
    pub sweep_batch: i64,
    /// Default TTLs of the general-purpose cache per namespace (`stats`, `recent`, …).
    pub kv_ttls: crate::cache::kv::Ttls,
    /// Bytes that the renders of one SQS batch may hold at once (a share of the
    /// function's memory): records wait for room rather than run out of memory together.
    pub batch_memory_bytes: u64,
    pub auth_mode: AuthMode,
    pub tenant_claim: String,
    pub admin_scope: String,
    /// Prefix of every Redis key, so that tests (and stacks) can share one server.
    pub redis_prefix: String,
    pub limits: Limits,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get`, so that tests can supply their own.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let s = |name: &'static str, default: &str| get(name).unwrap_or_else(|| default.to_owned());
        let n = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.trim().parse::<u64>().map_err(|_| ConfigError {
                    name,
                    problem: format!("{v:?} is not a non-negative integer"),
                }),
            }
        };
        let auth_mode = match s("AUTH_MODE", "jwt").as_str() {
            "jwt" => AuthMode::Jwt,
            "none" => AuthMode::None,
            other => {
                return Err(ConfigError {
                    name: "AUTH_MODE",
                    problem: format!("{other:?} is not one of jwt, none"),
                })
            }
        };
        let defaults = Limits::default();
        let max_image_pixels = n("MAX_IMAGE_PIXELS", defaults.max_image_pixels)?;
        let budget = defaults.render;
        let render = RenderBudget {
            max_pixels: max_image_pixels,
            max_regions: n("MAX_RENDER_REGIONS", budget.max_regions.into())?.min(255) as u32,
            max_edges: n("MAX_RENDER_EDGES", budget.max_edges)?,
            max_loop_edges: n("MAX_RENDER_LOOP_EDGES", budget.max_loop_edges)?,
            max_rings: n("MAX_RENDER_RINGS", budget.max_rings)?,
            max_points: n("MAX_RENDER_POINTS", budget.max_points)?,
            max_svg_bytes: n("MAX_SVG_BYTES", budget.max_svg_bytes)?,
            max_render_ms: n("MAX_RENDER_MS", budget.max_render_ms)?,
        };
        let limits = Limits {
            max_body_bytes: n("MAX_BODY_BYTES", defaults.max_body_bytes as u64)? as usize,
            max_image_bytes: n("MAX_IMAGE_BYTES", defaults.max_image_bytes as u64)? as usize,
            max_upload_bytes: n("MAX_UPLOAD_BYTES", defaults.max_upload_bytes as u64)? as usize,
            max_image_side: n("MAX_IMAGE_SIDE", defaults.max_image_side as u64)? as u32,
            max_image_pixels,
            max_landmarks_bytes: n("MAX_LANDMARKS_BYTES", defaults.max_landmarks_bytes as u64)?
                as usize,
            max_segmentation_bytes: n(
                "MAX_SEGMENTATION_BYTES",
                defaults.max_segmentation_bytes as u64,
            )? as usize,
            max_message_bytes: n("MAX_MESSAGE_BYTES", defaults.max_message_bytes as u64)? as usize,
            render,
        };
        // Lambda tells the function its memory size; locally, assume the deployed 1024 MB.
        let memory_mb = n("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 1024)?;
        let batch_percent = n("BATCH_MEMORY_PERCENT", 75)?;
        if !(10..=90).contains(&batch_percent) {
            return Err(ConfigError {
                name: "BATCH_MEMORY_PERCENT",
                problem: format!("{batch_percent} is not between 10 and 90"),
            });
        }
        if limits.max_body_bytes > max_body_for_lambda() {
            return Err(ConfigError {
                name: "MAX_BODY_BYTES",
                problem: format!(
                    "{} bytes cannot reach the function: base64-encoded in the event it \
                     exceeds Lambda's {} byte payload limit (at most {})",
                    limits.max_body_bytes,
                    LAMBDA_SYNC_PAYLOAD_BYTES,
                    max_body_for_lambda()
                ),
            });
        }
        let ttl_hours = n("CACHE_TTL_HOURS", 24)?;
        if ttl_hours == 0 {
            return Err(ConfigError {
                name: "CACHE_TTL_HOURS",
                problem: "must be at least 1".into(),
            });
        }
        Ok(Config {
            database_url: s("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/facesvg"),
            database_secret_arn: get("DATABASE_SECRET_ARN").filter(|v| !v.is_empty()),
            database_credentials: None,
            migration_secret_arn: get("MIGRATION_SECRET_ARN").filter(|v| !v.is_empty()),
            migration_credentials: None,
            db_pool_size: n("DB_POOL_SIZE", 2)?.max(1) as usize,
            db_timeout: Duration::from_millis(n("DB_TIMEOUT_MS", 3000)?.max(1)),
            db_connect_timeout: Duration::from_millis(n("DB_CONNECT_TIMEOUT_MS", 2000)?.max(1)),
            aws_timeouts: AwsTimeouts {
                connect: Duration::from_millis(n("AWS_CONNECT_TIMEOUT_MS", 1000)?.max(1)),
                attempt: Duration::from_millis(n("AWS_ATTEMPT_TIMEOUT_MS", 3000)?.max(1)),
                operation: Duration::from_millis(n("AWS_OPERATION_TIMEOUT_MS", 8000)?.max(1)),
            },
            redis_url: s("REDIS_URL", "redis://127.0.0.1:6379/"),
            redis_auth_secret_arn: get("REDIS_AUTH_SECRET_ARN").filter(|v| !v.is_empty()),
            redis_timeout: Duration::from_millis(n("REDIS_TIMEOUT_MS", 50)?),
            s3_bucket: s("S3_BUCKET", "facesvg-local"),
            queue_url: s(
                "QUEUE_URL",
                "http://127.0.0.1:4566/123456789012/facesvg-tasks",
            ),
            cache_ttl: Duration::from_secs(ttl_hours * 3600),
            l0_max_bytes: n("L0_MAX_BYTES", 8 * 1024 * 1024)? as usize,
            l0_ttl: Duration::from_secs(n("L0_TTL_SECS", 60)?),
            stale_claim: Duration::from_secs(n("STALE_CLAIM_SECS", 180)?),
            stuck_after: Duration::from_secs(n("STUCK_AFTER_SECS", 3600)?),
            presign_ttl: Duration::from_secs(n("PRESIGN_TTL_SECS", 300)?),
            sweep_batch: n("SWEEP_BATCH", 500)?.clamp(1, 10_000) as i64,
            kv_ttls: crate::cache::kv::Ttls::parse(&s(
                "CACHE_KV_TTLS",
                "default=1h,stats=30s,recent=10s,daily=60s,top=30s",
            ))
            .map_err(|e| ConfigError {
                name: "CACHE_KV_TTLS",
                problem: e.to_string(),
            })?,
            batch_memory_bytes: memory_mb * 1024 * 1024 / 100 * batch_percent,
            auth_mode,
            tenant_claim: s("TENANT_CLAIM", "tenant"),
            admin_scope: s("ADMIN_SCOPE", "facesvg/admin"),
            redis_prefix: s("REDIS_PREFIX", "facesvg"),
            limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn reads_only_the_listed_variables() {
        let asked = RefCell::new(Vec::new());
        Config::from_lookup(|k| {
            asked.borrow_mut().push(k.to_owned());
            None
        })
        .unwrap();
        let asked = asked.into_inner();
        for name in &asked {
            assert!(
                VARIABLES.contains(&name.as_str()) || RUNTIME_VARIABLES.contains(&name.as_str()),
                "{name} is read but not in VARIABLES"
            );
        }
        for name in VARIABLES {
            assert!(
                asked.iter().any(|a| a == name),
                "{name} is listed but never read"
            );
        }
    }

    #[test]
    fn rejects_bad_numbers_and_modes() {
        let err =
            Config::from_lookup(|k| (k == "DB_POOL_SIZE").then(|| "many".to_owned())).unwrap_err();
        assert_eq!(err.name, "DB_POOL_SIZE");
        assert!(Config::from_lookup(|k| (k == "AUTH_MODE").then(|| "open".to_owned())).is_err());
        assert!(Config::from_lookup(|k| (k == "CACHE_TTL_HOURS").then(|| "0".to_owned())).is_err());
        let too_big =
            Config::from_lookup(|k| (k == "MAX_BODY_BYTES").then(|| "8000000".to_owned()));
        assert_eq!(too_big.unwrap_err().name, "MAX_BODY_BYTES");
    }
}
