//! API Gateway (HTTP API, payload 2.0) events in and out of the Lambda runtime.
//!
//! `lambda_http` decodes an event in five passes over the body: a `RawValue` scan and
//! copy (it tries each event kind it knows in turn), a second scan and copy into
//! the event's `body` string, and a base64 decode into a third buffer. A submit's
//! body is the image, so each pass is a pass over the image before the one that
//! hashes it. [`HttpEvent`] decodes the one kind of event our routes receive with
//! one scan and one copy (serde's, into the body string), and decodes the base64
//! in place (SIMD), in that string's own buffer: the request's body is the
//! allocation the JSON parser made, and nothing else on the way is proportional to
//! it.
//!
//! Everything else is `lambda_http`'s own conversion (headers, query, path, the
//! request context with the authorizer's claims), so handlers see the same
//! [`Request`] either way; [`run`] is the runtime loop of the HTTP functions.

use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_http::http::header::SET_COOKIE;
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request, RequestExt, Response};
use lambda_runtime::{Context, LambdaEvent};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A request as API Gateway delivered it, decoded (see the module docs).
pub struct HttpEvent(pub Request);

/// A body API Gateway marked as base64 that was not: kept on the request (whose
/// body is then empty) so that the edge answers 400 naming the body.
#[derive(Clone, Copy, Debug)]
pub struct MalformedBody;

impl<'de> Deserialize<'de> for HttpEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut event = ApiGatewayV2httpRequest::deserialize(d)?;
        let raw = event.body.take();
        let base64 = event.is_base64_encoded;
        let mut req: Request = LambdaRequest::ApiGatewayV2(event).into();
        match raw {
            None => {}
            Some(text) if !base64 => *req.body_mut() = Body::Text(text),
            Some(encoded) => match decode_base64_in_place(encoded) {
                Some(bytes) => *req.body_mut() = Body::Binary(bytes),
                None => {
                    req.extensions_mut().insert(MalformedBody);
                }
            },
        }
        Ok(HttpEvent(req))
    }
}

/// Decodes an event from the bytes the runtime API delivered.
pub fn decode(event: &[u8]) -> Result<Request, serde_json::Error> {
    serde_json::from_slice::<HttpEvent>(event).map(|e| e.0)
}

/// Standard base64 (padded, as API Gateway sends it) decoded into the buffer that
/// holds it (the output never overtakes the input: 3 bytes out per 4 in), with the
/// CPU's vector instructions where it has them (AVX2, SSE4.1, NEON: picked at run
/// time). Strict: whitespace, a misplaced pad or a non-canonical end is refused.
fn decode_base64_in_place(encoded: String) -> Option<Vec<u8>> {
    let mut buf = encoded.into_bytes();
    let len = base64_simd::STANDARD.decode_inplace(&mut buf).ok()?.len();
    buf.truncate(len);
    Some(buf)
}

/// A response as API Gateway takes it (payload 2.0): headers joined, cookies apart,
/// a binary body base64-encoded.
pub struct HttpAnswer(ApiGatewayV2httpResponse);

impl From<Response<Body>> for HttpAnswer {
    fn from(resp: Response<Body>) -> Self {
        let (parts, body) = resp.into_parts();
        let mut headers = parts.headers;
        let cookies = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        headers.remove(SET_COOKIE);
        let mut out = ApiGatewayV2httpResponse::default();
        out.status_code = i64::from(parts.status.as_u16());
        out.is_base64_encoded = matches!(body, Body::Binary(_));
        out.body = match body {
            Body::Empty => None,
            b => Some(b),
        };
        out.headers = headers;
        out.cookies = cookies;
        HttpAnswer(out)
    }
}

impl Serialize for HttpAnswer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl HttpAnswer {
    /// The answer as the runtime posts it back (what a test or a benchmark reads).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// Attaches what the runtime knows of the invocation: its context (deadline, request
/// id) and X-Ray's trace header, as `lambda_http` does.
pub fn with_invocation(mut req: Request, context: Context) -> Request {
    if let Some(trace) = context
        .xray_trace_id
        .as_deref()
        .and_then(|t| lambda_http::http::HeaderValue::from_str(t).ok())
    {
        req.headers_mut().insert("x-amzn-trace-id", trace);
    }
    req.with_lambda_context(context)
}

/// The runtime loop of an HTTP function: each invocation's event decoded by
/// [`HttpEvent`], answered by `handler`, posted back as an [`HttpAnswer`].
/// Invocations run concurrently where Lambda allows it (see `lambda_runtime`).
pub async fn run<F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(Request) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    lambda_runtime::run_concurrent(lambda_runtime::service_fn(
        move |event: LambdaEvent<HttpEvent>| {
            let handler = handler.clone();
            async move {
                let req = with_invocation(event.payload.0, event.context);
                Ok::<_, lambda_runtime::Error>(HttpAnswer::from(handler(req).await))
            }
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn base64_in_place_matches_the_crate_for_every_length() {
        let engine = base64::engine::general_purpose::STANDARD;
        for len in [0usize, 1, 2, 3, 4, 3071, 3072, 3073, 6144, 10_000, 100_003] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let encoded = engine.encode(&data);
            assert_eq!(decode_base64_in_place(encoded), Some(data), "length {len}");
        }
    }

    fn event(body: &str, base64: bool) -> String {
        serde_json::json!({
            "version": "2.0", "routeKey": "$default",
            "rawPath": "/api/v1/frontal/crop/status/x", "rawQueryString": "a=1&b=two",
            "queryStringParameters": {"a": "1", "b": "two"},
            "cookies": ["c=1"],
            "headers": {"host": "example.com", "content-type": "multipart/form-data; boundary=x", "x-many": "1,2"},
            "requestContext": {
                "accountId": "1", "apiId": "api", "domainName": "example.com", "domainPrefix": "example",
                "http": {"method": "POST", "path": "/api/v1/frontal/crop/status/x", "protocol": "HTTP/1.1",
                         "sourceIp": "10.0.0.1", "userAgent": "t"},
                "requestId": "rid", "routeKey": "$default", "stage": "$default",
                "time": "24/Nov/2026:18:00:00 +0000", "timeEpoch": 1795370400000u64,
                "authorizer": {"jwt": {"claims": {"tenant": "acme"}, "scopes": ["facesvg/admin"]}}
            },
            "isBase64Encoded": base64, "body": body,
        })
        .to_string()
    }

    /// Everything but the body is `lambda_http`'s conversion: the same request.
    #[test]
    fn decodes_as_lambda_http_does() {
        let engine = base64::engine::general_purpose::STANDARD;
        for (body, base64) in [
            (engine.encode(b"\x00binary\xff body"), true),
            ("{\"text\": true}".to_owned(), false),
            (String::new(), true),
        ] {
            let e = event(&body, base64);
            let ours = decode(e.as_bytes()).unwrap();
            let theirs = lambda_http::request::from_str(&e).unwrap();
            assert_eq!(ours.method(), theirs.method());
            assert_eq!(ours.uri(), theirs.uri());
            assert_eq!(ours.headers(), theirs.headers());
            assert_eq!(ours.body().as_ref(), theirs.body().as_ref(), "{body}");
            assert_eq!(
                format!("{:?}", ours.request_context_ref()),
                format!("{:?}", theirs.request_context_ref())
            );
            assert_eq!(
                ours.query_string_parameters_ref()
                    .map(|q| q.first("b").map(str::to_owned)),
                theirs
                    .query_string_parameters_ref()
                    .map(|q| q.first("b").map(str::to_owned))
            );
        }
        let bad = decode(event("%%%", true).as_bytes()).unwrap();
        assert!(bad.extensions().get::<MalformedBody>().is_some());
    }

    #[test]
    fn answers_as_lambda_http_would() {
        let resp = Response::builder()
            .status(201)
            .header("content-type", "image/svg+xml")
            .header("set-cookie", "a=1")
            .body(Body::Binary(b"<svg/>".to_vec()))
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&HttpAnswer::from(resp).to_json().unwrap()).unwrap();
        assert_eq!(json["statusCode"], 201);
        assert_eq!(json["isBase64Encoded"], true);
        assert_eq!(
            json["body"],
            base64::engine::general_purpose::STANDARD.encode(b"<svg/>")
        );
        assert_eq!(json["headers"]["content-type"], "image/svg+xml");
        assert_eq!(json["cookies"], serde_json::json!(["a=1"]));
        assert!(json["headers"].get("set-cookie").is_none());
    }

    #[test]
    fn malformed_base64_is_refused_even_padded_mid_body() {
        assert_eq!(decode_base64_in_place("not base64!".into()), None);
        let engine = base64::engine::general_purpose::STANDARD;
        // A padded quantum at the end of a block, with more data after it.
        let mut s = "A".repeat(4092);
        s.push_str("AA==");
        s.push_str(&engine.encode(b"more"));
        assert_eq!(decode_base64_in_place(s), None);
    }
}
