//! `POST /api/v1/cache/invalidate`: who may drop which entries of the
//! general-purpose cache.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;

use super::super::{auth, json_response, ApiError};
use crate::app::App;

/// `POST /api/v1/cache/invalidate` with `{"namespace"?, "tenant"?, "tag"?}`: drops
/// entries of the general-purpose cache. A tenant invalidates only its own entries
/// (all of them, or one namespace); the admin scope may name any tenant, a namespace
/// across tenants, or a tag. The answer gives each tier's counts.
pub(super) async fn invalidate(
    app: &App,
    req: &Request,
    caller: &auth::Caller,
) -> Result<Response<Body>, ApiError> {
    use crate::cache::kv::Scope;
    use crate::input::InputError;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        namespace: Option<String>,
        tenant: Option<String>,
        tag: Option<String>,
    }
    let body: &[u8] = req.body().as_ref();
    if body.len() > 4096 {
        return Err(InputError::too_large("body", "at most 4096 bytes").into());
    }
    let ask: Ask = if body.iter().all(u8::is_ascii_whitespace) {
        Ask {
            namespace: None,
            tenant: None,
            tag: None,
        }
    } else {
        serde_json::from_slice(body).map_err(|e| {
            InputError::invalid(
                "body",
                format!("expected {{\"namespace\", \"tenant\", \"tag\"}}: {e}"),
            )
        })?
    };
    let bad = |field: &'static str, e: crate::cache::kv::KvError| {
        ApiError::from(InputError::invalid(field, e.to_string()))
    };
    // Only a namespace this deployment caches in: each invalidated scope is a
    // permanent field of Redis's generation hash and of every instance's memory, so
    // their number is bounded by tenants × known namespaces, not by callers.
    if let Some(ns) = &ask.namespace {
        let known = &app.config.kv_ttls;
        if !known.knows(ns.as_str()) {
            let names = known.names();
            return Err(InputError::invalid(
                "namespace",
                format!(
                    "unknown namespace; this deployment caches in {}",
                    names.join(", ")
                ),
            )
            .into());
        }
    }
    // Each invalidation writes to every tier: counted against the caller's tenant.
    {
        use crate::quota::Quotas;
        app.quota
            .take(&caller.tenant, crate::quota::Kind::Invalidations)
            .await?;
    }
    let report = match (ask.tag, ask.tenant, ask.namespace) {
        (Some(tag), None, None) if caller.admin => app.kv.invalidate_tag(&tag).await,
        (Some(_), _, _) if !caller.admin => return Err(ApiError::Forbidden),
        (Some(_), _, _) => {
            return Err(InputError::invalid("tag", "a tag is invalidated on its own").into())
        }
        (None, Some(t), _) if t != caller.tenant && !caller.admin => {
            return Err(ApiError::Forbidden)
        }
        // The admin scope: a namespace across every tenant.
        (None, None, Some(ns)) if caller.admin => {
            app.kv
                .invalidate(&Scope::namespace(&ns).map_err(|e| bad("namespace", e))?)
                .await
        }
        (None, tenant, ns) => {
            let tenant = tenant.unwrap_or_else(|| caller.tenant.clone());
            let scope = match ns {
                Some(ns) => {
                    Scope::tenant_namespace(&tenant, &ns).map_err(|e| bad("namespace", e))?
                }
                None => Scope::tenant(&tenant),
            };
            app.kv.invalidate(&scope).await
        }
    };
    Ok(json_response(StatusCode::OK, &json!(report)))
}
