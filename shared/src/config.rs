//! Settings, read once per cold start from the environment. Every setting has a
//! default that works against the local stack started by `infra/stack.sh up`.

use std::time::Duration;

use thiserror::Error;

use crate::limits::{max_body_for_lambda, Limits, RenderBudget, LAMBDA_SYNC_PAYLOAD_BYTES};
use crate::policy::tenants::{Rate, TenantLimits};

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
    "TENANT_RENDERS_PER_MINUTE",
    "TENANT_RENDER_BURST",
    "TENANT_UPLOADS_PER_MINUTE",
    "TENANT_INVALIDATIONS_PER_MINUTE",
    "TENANT_OPEN_TASKS",
    "STUCK_AFTER_SECS",
    "PRESIGN_TTL_SECS",
    "SWEEP_BATCH",
    "CACHE_KV_TTLS",
    "CACHE_KV_MAX_ENTRIES",
    "CACHE_KV_MAX_SIZE_MB",
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
pub const RUNTIME_VARIABLES: &[&str] = &[
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_NAME",
];

#[derive(Debug, Clone, Copy)]
pub struct AwsTimeouts {
    pub connect: Duration,
    pub attempt: Duration,
    pub operation: Duration,
}

/// `Debug` is written out below, not derived: it never shows a password or a token.
#[derive(Clone)]
pub struct Config {
    /// Host, port, database and TLS mode; credentials may come from a secret instead.
    pub database_url: String,
    /// Secrets Manager secret with `username` and `password` (the RDS secret shape).
    pub database_secret_arn: Option<String>,
    /// (user, password) resolved from `database_secret_arn` at start-up.
    pub database_credentials: Option<(String, String)>,
    /// The schema owner's secret (the RDS master user), given to the function that
    /// applies migrations only: it migrates as the owner, then sets the application
    /// role's password to the one in `database_secret_arn`. Read by the migration
    /// that needs it ([`crate::deploy`]), never at start-up.
    pub migration_secret_arn: Option<String>,
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
    /// Default TTLs of the general-purpose cache per namespace (`stats`, `recent`, …),
    /// and per tier where a namespace gives them (the V2 presets, `name@tier=`).
    pub kv_ttls: crate::cache::kv::Ttls,
    /// Entry caps per namespace and the byte cap of its Postgres tier, enforced by
    /// the sweep.
    pub kv_limits: crate::cache::kv::SizeLimits,
    /// Bytes that the renders of one SQS batch may hold at once (a share of the
    /// function's memory): records wait for room rather than run out of memory together.
    pub batch_memory_bytes: u64,
    pub auth_mode: AuthMode,
    pub tenant_claim: String,
    pub admin_scope: String,
    /// Prefix of every Redis key, so that tests (and stacks) can share one server.
    pub redis_prefix: String,
    pub limits: Limits,
    /// What one tenant may start (renders, upload forms, invalidations, open tasks).
    pub tenant_limits: TenantLimits,
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
        // The Lambda runtime sets AWS_LAMBDA_FUNCTION_NAME, and so does infra/run.sh
        // for the local functions (which authenticate through the local gateway's
        // claims). No variable re-admits `none` there: one that could would be set by
        // the same template mistake this refusal is here to catch.
        let in_lambda = get("AWS_LAMBDA_FUNCTION_NAME").is_some_and(|v| !v.is_empty());
        if auth_mode == AuthMode::None && in_lambda {
            return Err(ConfigError {
                name: "AUTH_MODE",
                problem: "\"none\" is refused in a Lambda function (AWS_LAMBDA_FUNCTION_NAME \
                          is set): every caller would be tenant \"public\" with the admin scope"
                    .into(),
            });
        }
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
        let t = TenantLimits::default();
        let rate = |per_minute: &'static str, burst: Option<&'static str>, default: Rate| {
            let per_minute = n(per_minute, default.per_minute.into())?.min(u32::MAX.into()) as u32;
            let burst = match burst {
                Some(name) => n(name, default.burst.into())?.clamp(1, u32::MAX.into()) as u32,
                None => per_minute.max(1),
            };
            Ok::<_, ConfigError>(Rate { per_minute, burst })
        };
        let tenant_limits = TenantLimits {
            renders: rate(
                "TENANT_RENDERS_PER_MINUTE",
                Some("TENANT_RENDER_BURST"),
                t.renders,
            )?,
            uploads: rate("TENANT_UPLOADS_PER_MINUTE", None, t.uploads)?,
            invalidations: rate("TENANT_INVALIDATIONS_PER_MINUTE", None, t.invalidations)?,
            open_tasks: n("TENANT_OPEN_TASKS", t.open_tasks.into())?.min(u32::MAX.into()) as u32,
        };
        let redis_prefix = s("REDIS_PREFIX", crate::cache::link::DEFAULT_PREFIX);
        crate::cache::link::check_prefix(&redis_prefix).map_err(|problem| ConfigError {
            name: "REDIS_PREFIX",
            problem,
        })?;
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
            kv_limits: kv_limits(&get)?,
            batch_memory_bytes: memory_mb * 1024 * 1024 / 100 * batch_percent,
            auth_mode,
            tenant_claim: s("TENANT_CLAIM", "tenant"),
            admin_scope: s("ADMIN_SCOPE", "facesvg/admin"),
            redis_prefix,
            limits,
            tenant_limits,
        })
    }
}

/// `CACHE_KV_MAX_ENTRIES` and `CACHE_KV_MAX_SIZE_MB`, each error named by its variable.
fn kv_limits(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<crate::cache::kv::SizeLimits, ConfigError> {
    use crate::cache::kv::SizeLimits;
    let entries = get("CACHE_KV_MAX_ENTRIES").unwrap_or_default();
    let size = get("CACHE_KV_MAX_SIZE_MB").unwrap_or_default();
    SizeLimits::parse(&entries, "").map_err(|e| ConfigError {
        name: "CACHE_KV_MAX_ENTRIES",
        problem: e.to_string(),
    })?;
    SizeLimits::parse(&entries, &size).map_err(|e| ConfigError {
        name: "CACHE_KV_MAX_SIZE_MB",
        problem: e.to_string(),
    })
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured without `..`: a field added to `Config` does not compile here
        // until someone decides whether it may be shown.
        let Config {
            database_url,
            database_secret_arn,
            database_credentials,
            migration_secret_arn,
            db_pool_size,
            db_timeout,
            db_connect_timeout,
            aws_timeouts,
            redis_url,
            redis_auth_secret_arn,
            redis_timeout,
            s3_bucket,
            queue_url,
            cache_ttl,
            l0_max_bytes,
            l0_ttl,
            stale_claim,
            stuck_after,
            presign_ttl,
            sweep_batch,
            kv_ttls,
            kv_limits,
            batch_memory_bytes,
            auth_mode,
            tenant_claim,
            admin_scope,
            redis_prefix,
            limits,
            tenant_limits,
        } = self;
        let user_only =
            |c: &Option<(String, String)>| c.as_ref().map(|(user, _)| format!("{user}:{REDACTED}"));
        f.debug_struct("Config")
            .field("database_url", &redacted(database_url))
            .field("database_secret_arn", database_secret_arn)
            .field("database_credentials", &user_only(database_credentials))
            .field("migration_secret_arn", migration_secret_arn)
            .field("db_pool_size", db_pool_size)
            .field("db_timeout", db_timeout)
            .field("db_connect_timeout", db_connect_timeout)
            .field("aws_timeouts", aws_timeouts)
            .field("redis_url", &redacted(redis_url))
            .field("redis_auth_secret_arn", redis_auth_secret_arn)
            .field("redis_timeout", redis_timeout)
            .field("s3_bucket", s3_bucket)
            .field("queue_url", queue_url)
            .field("cache_ttl", cache_ttl)
            .field("l0_max_bytes", l0_max_bytes)
            .field("l0_ttl", l0_ttl)
            .field("stale_claim", stale_claim)
            .field("stuck_after", stuck_after)
            .field("presign_ttl", presign_ttl)
            .field("sweep_batch", sweep_batch)
            .field("kv_ttls", kv_ttls)
            .field("kv_limits", kv_limits)
            .field("batch_memory_bytes", batch_memory_bytes)
            .field("auth_mode", auth_mode)
            .field("tenant_claim", tenant_claim)
            .field("admin_scope", admin_scope)
            .field("redis_prefix", redis_prefix)
            .field("limits", limits)
            .field("tenant_limits", tenant_limits)
            .finish()
    }
}

const REDACTED: &str = "<redacted>";

/// A connection string as it may be shown: the password of a URL's user
/// (`postgres://user:secret@host`, `rediss://:token@host`) and every `password=`
/// parameter (a URL's query, a libpq `key=value` string) replaced. `REDIS_URL`
/// holds the ElastiCache token once the start-up has put it there.
pub fn redacted(url: &str) -> String {
    let url = match url.split_once("://") {
        // The last `@`: a password may hold one (unencoded); too much redacted is
        // the safe side.
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:{REDACTED}@{host}"),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    const KEY: &str = "password=";
    let mut out = String::with_capacity(url.len());
    let mut rest = url.as_str();
    while let Some(at) = rest.to_ascii_lowercase().find(KEY) {
        let value = &rest[at + KEY.len()..];
        out.push_str(&rest[..at + KEY.len()]);
        out.push_str(REDACTED);
        rest = &value[value_len(value)..];
    }
    out.push_str(rest);
    out
}

/// Bytes of a parameter's value at the start of `value`: a libpq quoted value
/// (`'…'`, with `\\` escapes) up to its closing quote, else up to the next
/// separator of a query (`&`, `#`) or of a `key=value` string (whitespace).
fn value_len(value: &str) -> usize {
    let mut chars = value.char_indices();
    if value.starts_with('\'') {
        chars.next();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '\'' => return i + 1,
                _ => {}
            }
        }
        return value.len();
    }
    value
        .find(|c: char| c == '&' || c == '#' || c.is_whitespace())
        .unwrap_or(value.len())
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
        for (name, bad) in [
            ("CACHE_KV_MAX_ENTRIES", "embeddings"),
            ("CACHE_KV_MAX_ENTRIES", "embeddings=many"),
            ("CACHE_KV_MAX_SIZE_MB", "lots"),
            ("CACHE_KV_TTLS", "embeddings@disk=1h"),
        ] {
            let err = Config::from_lookup(|k| (k == name).then(|| bad.to_owned())).unwrap_err();
            assert_eq!(err.name, name, "{bad}");
        }
    }

    #[test]
    fn size_limits_and_per_tier_lifetimes_are_read() {
        use crate::cache::kv::{Tier, FOREVER};
        let config = Config::from_lookup(|k| match k {
            "CACHE_KV_MAX_ENTRIES" => Some("embeddings=1000, crawled=20".to_owned()),
            "CACHE_KV_MAX_SIZE_MB" => Some("512".to_owned()),
            "CACHE_KV_TTLS" => Some("default=1h,crawled@postgres=forever,crawled@redis=5m".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.kv_limits.max_entries["embeddings"], 1000);
        assert_eq!(config.kv_limits.max_entries["crawled"], 20);
        assert_eq!(config.kv_limits.max_bytes, Some(512 << 20));
        let ttls = &config.kv_ttls;
        assert_eq!(ttls.tier_cap("crawled", Tier::Postgres), Some(FOREVER));
        assert_eq!(
            ttls.tier_cap("crawled", Tier::Redis),
            Some(Duration::from_secs(300))
        );
        let none = Config::from_lookup(|_| None).unwrap();
        assert!(none.kv_limits.is_empty());
    }
    #[test]
    fn debug_never_shows_a_password_or_a_token() {
        let mut config = Config::from_lookup(|k| match k {
            "DATABASE_URL" => Some("postgres://facesvg:pg-secret-1@db:5432/facesvg?password=pg-secret-2&sslmode=require".into()),
            "REDIS_URL" => Some("rediss://:redis-token-3@cache:6379/".into()),
            _ => None,
        })
        .unwrap();
        config.database_credentials = Some(("facesvg_app".into(), "pg-secret-4".into()));
        let shown = format!("{config:?} {config:#?}");
        for secret in [
            "pg-secret-1",
            "pg-secret-2",
            "redis-token-3",
            "pg-secret-4",
            "pg-secret-5",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // What an operator needs is still there.
        for visible in [
            "db:5432",
            "facesvg_app",
            "cache:6379",
            "sslmode=require",
            "<redacted>",
        ] {
            assert!(shown.contains(visible), "{visible} missing from {shown}");
        }
    }

    #[test]
    fn connection_strings_lose_their_passwords_only() {
        for (url, shown) in [
            (
                "postgres://postgres@127.0.0.1:5432/facesvg",
                "postgres://postgres@127.0.0.1:5432/facesvg",
            ),
            ("postgres://u:p%40ss@h/db", "postgres://u:<redacted>@h/db"),
            ("postgres://u:p@ss@h/db", "postgres://u:<redacted>@h/db"),
            ("rediss://:tok@h:6379/", "rediss://:<redacted>@h:6379/"),
            ("redis://127.0.0.1:6379/", "redis://127.0.0.1:6379/"),
            ("none", "none"),
            (
                "postgres://h/db?user=u&PASSWORD=x&sslmode=require",
                "postgres://h/db?user=u&PASSWORD=<redacted>&sslmode=require",
            ),
            (
                "host=h password=x user=u",
                "host=h password=<redacted> user=u",
            ),
            (
                r"host=h password='a \' b' user=u",
                "host=h password=<redacted> user=u",
            ),
            ("password='unterminated", "password=<redacted>"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
    }

    #[test]
    fn auth_mode_none_is_refused_inside_lambda() {
        let env = |name: Option<&'static str>| {
            move |k: &str| match k {
                "AUTH_MODE" => Some("none".to_owned()),
                "AWS_LAMBDA_FUNCTION_NAME" => name.map(str::to_owned),
                _ => None,
            }
        };
        let err = Config::from_lookup(env(Some("facesvg-dev-submit"))).unwrap_err();
        assert_eq!(err.name, "AUTH_MODE");
        assert!(err.problem.contains("AWS_LAMBDA_FUNCTION_NAME"), "{err}");
        // Outside Lambda (tests, the operator tools) it is still a choice.
        let config = Config::from_lookup(env(None)).unwrap();
        assert_eq!(config.auth_mode, AuthMode::None);
        let config = Config::from_lookup(env(Some(""))).unwrap();
        assert_eq!(config.auth_mode, AuthMode::None);
        // JWT is what the deployed stack and the local run use, in Lambda or not.
        let jwt = Config::from_lookup(|k| match k {
            "AUTH_MODE" => Some("jwt".to_owned()),
            "AWS_LAMBDA_FUNCTION_NAME" => Some("facesvg-dev-submit".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(jwt.auth_mode, AuthMode::Jwt);
    }
}
