//! Operator commands for the general-purpose cache (`facesvg::cache::kv`), against
//! the stack the environment configures (DATABASE_URL, REDIS_URL, REDIS_PREFIX,
//! REDIS_TIMEOUT_MS, as the functions read them). Answers are JSON on stdout.
//!
//! ```text
//! facesvg-cache stats          # the fleet's counters, entries and bytes per namespace and tier
//! facesvg-cache get NAMESPACE:TENANT:ID
//! facesvg-cache delete NAMESPACE:TENANT:ID
//! facesvg-cache keys NAMESPACE [TENANT] [--limit N]
//! facesvg-cache invalidate --tenant T [--namespace N] | --namespace N | --tag TAG
//! facesvg-cache clear-expired [--batch N] [--max-batches N]
//! facesvg-cache clear                 # every cached result (sweep::purge::clear_all)
//! facesvg-cache delete-tenant TENANT  # everything of one tenant (sweep::purge::delete_tenant)
//! ```
//!
//! `REDIS_URL=none` runs on Postgres alone.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use facesvg::cache::kv::{Cache, Key, PostgresBackend, RedisBackend, Scope};
use facesvg::config::Config;
use serde_json::json;

const USAGE: &str =
    "usage: facesvg-cache stats | get KEY | delete KEY | keys NAMESPACE [TENANT] [--limit N]
       | invalidate (--tenant T [--namespace N] | --namespace N | --tag TAG)
       | clear-expired [--batch N] [--max-batches N]
       | clear | delete-tenant TENANT
KEY is namespace:tenant:id as stored (see `keys`).";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(out) => {
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("facesvg-cache: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The value following `--name`, if given.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn number(args: &[String], name: &str, default: i64) -> Result<i64, String> {
    match flag(args, name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("{name}: {v:?} is not a number")),
    }
}

/// Positional arguments, flags and their values left out.
fn positional(args: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
        } else if a.starts_with("--") {
            skip = true;
        } else {
            out.push(a.as_str());
        }
    }
    out
}

async fn run(args: &[String]) -> Result<serde_json::Value, String> {
    let Some(cmd) = args.first().map(String::as_str) else {
        return Err(USAGE.into());
    };
    let rest = &args[1..];
    let config = Config::from_env().map_err(|e| e.to_string())?;
    if cmd == "stats" {
        // The fleet's view, as the admin route answers it: the counters every
        // instance sent (this process's own are nothing to speak of), folded now.
        let app = facesvg::app::App::from_config(config)
            .await
            .map_err(|e| e.to_string())?;
        let stats = facesvg::services::cache_stats::fleet(&app.cache_sources())
            .await
            .map_err(|e| e.to_string())?;
        return Ok(json!(stats));
    }
    if cmd == "clear" || cmd == "delete-tenant" {
        let tenant = match (cmd, positional(rest).first()) {
            ("clear", None) => None,
            ("delete-tenant", Some(t)) if facesvg::api::auth::is_tenant(t) => Some(t.to_string()),
            _ => return Err(USAGE.into()),
        };
        let app = facesvg::app::App::from_config(config)
            .await
            .map_err(|e| e.to_string())?;
        return purge(&app, tenant.as_deref()).await;
    }
    let pool = facesvg::app::pg_pool(&config.database_url, None, 2, config.db_connect_timeout)
        .map_err(|e| e.to_string())?;
    let pg = Arc::new(PostgresBackend::new(pool, Duration::from_secs(30)));
    let mut builder = Cache::builder();
    if config.redis_url != "none" {
        // An operator waits longer than a request would.
        let timeout = config.redis_timeout.max(Duration::from_secs(5));
        let redis = RedisBackend::from_url(&config.redis_url, &config.redis_prefix, timeout)
            .map_err(|e| e.to_string())?;
        builder = builder.tier(Arc::new(redis));
    }
    let cache = builder.tier(pg.clone()).build();
    let key = |i: usize| -> Result<Key, String> {
        let raw = positional(rest)
            .get(i)
            .copied()
            .ok_or_else(|| USAGE.to_owned())?;
        Key::parse(raw).map_err(|e| e.to_string())
    };
    match cmd {
        "get" => {
            let k = key(0)?;
            let l = cache
                .lookup::<serde_json::Value>(&k)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!({
                "key": k.full(),
                "found": l.value.is_some(),
                "value": l.value,
                "tier": l.tier,
                "ttl_ms": l.ttl.map(|d| d.as_millis() as u64),
                "failed_tiers": l.failed,
            }))
        }
        "delete" => {
            let k = key(0)?;
            let existed = cache.delete(&k).await.map_err(|e| e.to_string())?;
            Ok(json!({"key": k.full(), "deleted": existed}))
        }
        "keys" => {
            let pos = positional(rest);
            let ns = pos.first().ok_or_else(|| USAGE.to_owned())?;
            let listed = pg
                .list_keys(ns, pos.get(1).copied(), number(rest, "--limit", 100)?)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!(listed))
        }
        "invalidate" => {
            let scope = match (
                flag(rest, "--tenant"),
                flag(rest, "--namespace"),
                flag(rest, "--tag"),
            ) {
                (Some(t), None, None) => Scope::tenant(t),
                (Some(t), Some(ns), None) => {
                    Scope::tenant_namespace(t, ns).map_err(|e| e.to_string())?
                }
                (None, Some(ns), None) => Scope::namespace(ns).map_err(|e| e.to_string())?,
                (None, None, Some(tag)) => Scope::tag(tag),
                _ => return Err(USAGE.into()),
            };
            let report = cache.invalidate(&scope).await;
            if !report.complete() {
                return Err(format!(
                    "not applied on every tier: {}",
                    serde_json::to_string(&report).unwrap_or_default()
                ));
            }
            Ok(json!(report))
        }
        "clear-expired" => {
            let batch = number(rest, "--batch", 1000)?;
            let max = number(rest, "--max-batches", 100)?.clamp(1, 1_000_000) as u32;
            let done = pg
                .cleanup_expired(batch, max)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!(done))
        }
        _ => Err(USAGE.into()),
    }
}

/// Calls the clear or a tenant's deletion until it is complete, a minute a call,
/// and answers the summed counts; a call whose tier failed ends it with an error.
async fn purge(app: &facesvg::app::App, tenant: Option<&str>) -> Result<serde_json::Value, String> {
    use facesvg::sweep::purge;
    let mut total: Option<purge::PurgeReport> = None;
    for _ in 0..10_000 {
        let until = std::time::Instant::now() + Duration::from_secs(60);
        let report = match tenant {
            Some(t) => purge::delete_tenant(app, t, until).await,
            None => purge::clear_all(app, until).await,
        }
        .map_err(|e| e.to_string())?;
        let (complete, failed) = (report.complete, report.errors.clone());
        match total.as_mut() {
            Some(sum) => sum.absorb(report),
            None => total = Some(report),
        }
        if !failed.is_empty() {
            return Err(format!("a tier failed: {failed:?}; run it again"));
        }
        if complete {
            break;
        }
    }
    Ok(json!(total))
}
