//! Hostile inputs (issue list of the load-and-faults work): each is answered 4xx
//! naming its field, writes nothing, and is refused within a memory bound, measured
//! here as the peak of the bytes this test process allocates while the request is
//! answered (a counting global allocator).

mod common;

use common::{http_event, to_resp, Form, Resp, TestApp};

#[global_allocator]
static GLOBAL: facesvg::heap::Counting = facesvg::heap::Counting;

/// Runs `f` and returns its result with the peak of live bytes above the start.
async fn peak_of<T>(f: impl std::future::Future<Output = T>) -> (T, usize) {
    let mark = facesvg::heap::mark();
    let out = f.await;
    (out, facesvg::heap::peak_since(mark))
}

/// The most a refusal may hold at once: the request itself (its event as the test
/// builds and Lambda parses it: JSON, base64, the decoded body
/// and parsed parts) plus a few MiB; far below what any of these inputs claims.
const BOUND: usize = 48 << 20;

fn grey_png(w: u32, h: u32, value: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, w, h);
    e.set_color(png::ColorType::Grayscale);
    e.set_compression(png::Compression::High);
    let mut wr = e.write_header().unwrap();
    wr.write_image_data(&vec![value; (w * h) as usize]).unwrap();
    wr.finish().unwrap();
    out
}

/// A baseline JPEG that is only a header claiming `w`×`h`, and an end marker.
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    j.extend_from_slice(&h.to_be_bytes());
    j.extend_from_slice(&w.to_be_bytes());
    j.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    j.extend_from_slice(&[0xFF, 0xD9]);
    j
}

/// An extended WebP (VP8X) header claiming `w`×`h`.
fn webp_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut chunk = vec![0u8; 10];
    chunk[4..7].copy_from_slice(&(w - 1).to_le_bytes()[..3]);
    chunk[7..10].copy_from_slice(&(h - 1).to_le_bytes()[..3]);
    let mut body = b"WEBPVP8X".to_vec();
    body.extend_from_slice(&10u32.to_le_bytes());
    body.extend_from_slice(&chunk);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn raw_submit<'a>(
    t: &'a TestApp,
    content_type: &str,
    body: Vec<u8>,
) -> impl std::future::Future<Output = Resp> + 'a {
    let event = http_event(
        "POST",
        "/api/v1/frontal/crop/submit",
        Some("tenant-a"),
        Some(content_type),
        &body,
    );
    async move {
        let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
        to_resp(facesvg::api::submit(&t.app, req).await)
    }
}

#[tokio::test]
async fn hostile_inputs_are_refused_by_field_within_a_memory_bound() {
    let t = TestApp::spawn().await;
    let takeo = Form::takeo;

    // A 6000×6000 photo (within every limit) and a map of its size that inflates
    // 36 MB from about 40 KB, every pixel a label the scheme does not have.
    let big_photo = grey_png(6000, 6000, 128);
    let bomb = grey_png(6000, 6000, 77);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let million_lines = "1 1\n".repeat(1_000_000).into_bytes();
    let nested = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000)).into_bytes();
    let cases: Vec<(&str, Form, u16, &str)> = vec![
        (
            "label map declaring 60000×60000",
            takeo().replace("segmentation_map", "m.png", {
                let mut p = grey_png(1, 1, 0);
                p[16..20].copy_from_slice(&60000u32.to_be_bytes());
                p[20..24].copy_from_slice(&60000u32.to_be_bytes());
                let crc = crc32fast::hash(&p[12..29]);
                p[29..33].copy_from_slice(&crc.to_be_bytes());
                p
            }),
            413,
            "segmentation_map",
        ),
        (
            "zlib bomb: 36 MB of labels outside the scheme from a ~40 KB map",
            takeo().replace("image", "big.png", big_photo).replace(
                "segmentation_map",
                "m.png",
                bomb,
            ),
            400,
            "segmentation_map",
        ),
        (
            "JPEG claiming 65535×65535",
            takeo().replace("image", "x.jpg", jpeg_claiming(65535, 65535)),
            413,
            "image",
        ),
        (
            "WebP claiming 65535×65535",
            takeo().replace("image", "x.webp", webp_claiming(65535, 65535)),
            413,
            "image",
        ),
        (
            "1,000,000 landmark lines",
            takeo().replace("landmarks", "l.txt", million_lines),
            413,
            "landmarks",
        ),
        (
            "landmarks nested 200,000 deep",
            takeo().replace("landmarks", "l.json", nested),
            413,
            "landmarks",
        ),
    ];
    for (name, form, status, field) in cases {
        let (resp, peak) = peak_of(t.submit(&form)).await;
        // A JPEG or WebP that is only a header is refused as unreadable (400) by the
        // header reader before its size is judged (413): either is a refusal
        // before any pixel buffer exists.
        let status = if name.contains("claiming") && resp.status == 400 {
            400
        } else {
            status
        };
        assert_eq!(resp.status, status, "{name}: {}", resp.body);
        assert_eq!(
            resp.json()["error"]["field"],
            field,
            "{name}: {}",
            resp.body
        );
        assert!(peak < BOUND, "{name}: {peak} bytes at the peak");
        eprintln!(
            "{name}: {} {}, peak {:.1} MiB",
            resp.status,
            field,
            peak as f64 / 1048576.0
        );
    }

    // Bodies the parser must bound: 10,000 parts, and a 1 MB header line.
    let boundary = "b0undary";
    let mut many = Vec::new();
    for i in 0..10_000 {
        many.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nx\r\n")
                .as_bytes(),
        );
    }
    many.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let long_header = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{}\"\r\n\r\nx\r\n--{boundary}--\r\n",
        "a".repeat(1 << 20)
    )
    .into_bytes();
    let ct = format!("multipart/form-data; boundary={boundary}");
    for (name, body) in [("10,000 parts", many), ("a 1 MB header line", long_header)] {
        let (resp, peak) = peak_of(raw_submit(&t, &ct, body)).await;
        assert!(matches!(resp.status, 400 | 413), "{name}: {}", resp.body);
        eprintln!(
            "{name}: {}, peak {:.1} MiB",
            resp.status,
            peak as f64 / 1048576.0
        );
        assert_eq!(
            resp.json()["error"]["field"],
            "body",
            "{name}: {}",
            resp.body
        );
        assert!(peak < BOUND, "{name}: {peak} bytes at the peak");
    }

    // Identity and query: a tenant claim that is not a plain name, a task id that
    // is not a UUID, numbers out of range.
    let odd_tenant = t.submit_as(Some("ténant\u{7}\u{fffd}"), &takeo()).await;
    assert_eq!(odd_tenant.status, 401, "{}", odd_tenant.body);
    let not_uuid = t
        .get("/api/v1/frontal/crop/status/..%2F..%2Fetc%2Fpasswd")
        .await;
    assert_eq!(not_uuid.status, 404, "{}", not_uuid.body);
    for (path, field) in [
        ("/api/v1/cache/stats?days=100000", "days"),
        ("/api/v1/cache/recent?limit=-1", "limit"),
        ("/api/v1/cache/daily?days=abc", "days"),
        ("/api/v1/cache/top?limit=1000000000000000000000", "limit"),
    ] {
        let r = t.get(path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.json()["error"]["field"], field, "{path}");
    }

    // None of it wrote anything.
    assert_eq!(t.count_rows("task_results").await, 0);
    assert_eq!(t.queue_depth().await, 0);
    assert!(t.s3_keys("").await.is_empty());
}
