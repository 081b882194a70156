//! Who is asking: the tenant and the admin scope, from the claims that API
//! Gateway's JWT authorizer verified. Locally, the gateway in `infra/` fills in the
//! same request context, so tests run this exact code.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use super::ApiError;
use crate::config::{AuthMode, Config};

pub struct Caller {
    pub tenant: String,
    pub admin: bool,
}

/// Whether `name` is a tenant a claim may carry: 1 to 128 characters of
/// `[A-Za-z0-9-_.@]` (no separator of any key, path or pattern).
pub fn is_tenant(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

pub fn caller(config: &Config, req: &Request) -> Result<Caller, ApiError> {
    if config.auth_mode == AuthMode::None {
        return Ok(Caller {
            tenant: "public".into(),
            admin: true,
        });
    }
    let Some(RequestContext::ApiGatewayV2(ctx)) = req.request_context_ref() else {
        return Err(ApiError::Unauthorized);
    };
    let jwt = ctx
        .authorizer
        .as_ref()
        .and_then(|a| a.jwt.as_ref())
        .ok_or(ApiError::Unauthorized)?;
    let tenant = jwt
        .claims
        .get(&config.tenant_claim)
        .ok_or(ApiError::Unauthorized)?;
    if !is_tenant(tenant) {
        return Err(ApiError::Unauthorized);
    }
    // API Gateway passes scopes as a list; some issuers put them in a `scope` claim.
    let admin = jwt
        .scopes
        .as_ref()
        .is_some_and(|s| s.iter().any(|x| x == &config.admin_scope))
        || jwt
            .claims
            .get("scope")
            .is_some_and(|s| s.split_whitespace().any(|x| x == config.admin_scope));
    Ok(Caller {
        tenant: tenant.clone(),
        admin,
    })
}
