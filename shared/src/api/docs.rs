//! Static pages served by the status function: the OpenAPI description, a browsable
//! API page and the result viewer. Being assets, they are answered before any tenant
//! check; they carry no data of any tenant.

use lambda_http::http::Method;
use lambda_http::{Body, Response};

/// The asset for `path`, if it is one.
pub fn static_route(method: &Method, path: &str) -> Option<Response<Body>> {
    let _ = (method, path);
    None
}
