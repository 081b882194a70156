//! No answer over Lambda's limit: a function returns at most 6 MB (API Gateway turns
//! more into a 502), so an SVG too large for that is answered with a redirect to
//! S3, and the client still ends with the SVG. Every other route is bounded by
//! construction; the wrapper around every handler refuses anything larger.

mod common;

use common::{Form, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `url` (the emulator's plain HTTP) as any HTTP client following a redirect
/// would; returns the status and the body.
async fn fetch(url: &str) -> (u16, Vec<u8>) {
    let rest = url
        .strip_prefix("http://")
        .expect("the emulator is plain HTTP");
    let (host, path) = rest.split_once('/').unwrap();
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = answer[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut plain = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            plain.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = plain;
    }
    (status, body)
}

/// An SVG of `bytes` bytes (a valid document: a long run of small paths).
fn big_svg(bytes: usize) -> Vec<u8> {
    let mut svg = br#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">"#.to_vec();
    while svg.len() < bytes {
        svg.extend_from_slice(br#"<path class="r1" d="M0 0h1v1z"/>"#);
        svg.push(b'\n');
    }
    svg.extend_from_slice(b"</svg>");
    svg
}

#[tokio::test]
async fn an_svg_too_large_for_a_lambda_answer_redirects_to_s3_and_arrives_whole() {
    let t = TestApp::spawn().await;
    let r = t.submit(&Form::takeo()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["task_id"].as_str().unwrap().to_owned();
    let (_, failed) = t.drain().await;
    assert!(failed.is_empty());
    let path = format!("/api/v1/frontal/crop/result/{id}.svg");

    // The rendered face: small, answered through the function.
    let r = t.get(&path).await;
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("<svg"));

    // The same task's SVG grown past what Lambda returns: 7 MiB, and one of 5.5 MiB
    // (under the limit) whose quotes and newlines, escaped in the answer's JSON,
    // take it past the limit too.
    let key: String = t
        .db()
        .await
        .query_one(
            "SELECT svg_s3_key FROM task_results WHERE task_id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    for size in [7 << 20, 11 << 19] {
        let svg = big_svg(size);
        t.s3.client()
            .put_object()
            .bucket(&t.app.config.s3_bucket)
            .key(&key)
            .body(svg.clone().into())
            .send()
            .await
            .unwrap();
        let r = t.get(&path).await;
        assert_eq!(r.status, 303, "{size} bytes: {}", r.body);
        assert_eq!(r.headers["cache-control"], "private, no-store");
        let location = &r.headers["location"];
        assert!(location.contains("X-Amz-Signature"), "{location}");
        let (status, body) = fetch(location).await;
        assert_eq!(status, 200);
        assert_eq!(body.len(), svg.len());
        assert!(body == svg, "the SVG arrived changed");
    }
}
