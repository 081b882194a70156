//! facesvg-probe: the hardest label maps within the input limits, each decoded and
//! rendered as the worker does (within `Limits::default()`), one fresh process per
//! map so that peaks never mix. Prints one table row per map.
//!
//!   facesvg-probe                 # every map (release build: a minute or two)
//!   facesvg-probe --only corridor,jagged
//!   facesvg-probe --list
//!   facesvg-probe --write DIR     # the maps as PNG files, for other tools
//!   facesvg-probe --file MAP.png…  # label maps made elsewhere, the same way
//!
//! Columns: the stage the map aims at; the PNG's bytes (every map fits the 4 MiB
//! `MAX_SEGMENTATION_BYTES`); wall milliseconds to decode and to render (split into
//! tracing, simplifying and writing the SVG when it is rendered); the peak
//! resident memory of the whole process (VmHWM: binary, PNG bytes, map, decoder,
//! render); the most heap held beyond the decoded map while decoding, while tracing
//! and simplifying alone (the rings discarded: measured after the rest, in a second
//! run), and while rendering all of it, SVG included (a counting allocator); that
//! last per pixel, and per border edge beyond the byte a pixel of border flags;
//! border edges, outlines and points; the SVG's bytes; and the verdict at submit (the
//! one-pass edge count) and at render.

use std::process::{Command, ExitCode};
use std::time::Instant;

use facesvg::input::{segmentation, CropMode, LabelMap, Landmarks, RenderParams};
use facesvg::limits::{Limits, RenderBudget};
use facesvg::render::budget::count_edges;
use facesvg::render::trace::{self, Rings};
use facesvg::render::worst::{self, Encoding, WorstMap, WIDEST};
use facesvg::render::{render_within, synthetic, RenderInput};

#[global_allocator]
static ALLOCATOR: facesvg::heap::Counting = facesvg::heap::Counting;

/// The cloth class: its colour is the last of the palette.
const LAST_COLOUR: u8 = 16;

struct Family {
    name: &'static str,
    stage: &'static str,
    build: fn() -> WorstMap,
}

fn families() -> Vec<Family> {
    vec![
        Family {
            name: "face-4096",
            stage: "reference",
            build: || WorstMap::grey(synthetic::face_map(4096, 1)),
        },
        Family {
            name: "rgb-uniform",
            stage: "decode",
            build: || WorstMap {
                map: worst::uniform(WIDEST.0, WIDEST.1, LAST_COLOUR),
                encoding: Encoding::Rgb,
            },
        },
        Family {
            name: "rgba-uniform",
            stage: "decode",
            build: || WorstMap {
                map: worst::uniform(WIDEST.0, WIDEST.1, LAST_COLOUR),
                encoding: Encoding::Rgba,
            },
        },
        Family {
            name: "grey-noise",
            stage: "decode",
            build: || WorstMap::grey(worst::noise(WIDEST.0, WIDEST.1, 24, 7)),
        },
        Family {
            name: "rgb-noise",
            stage: "decode",
            build: || WorstMap {
                map: worst::noise(WIDEST.0, WIDEST.1, 64, 7),
                encoding: Encoding::Rgb,
            },
        },
        Family {
            name: "checkerboard",
            stage: "trace",
            build: || WorstMap::grey(worst::checkerboard(WIDEST.0, WIDEST.1)),
        },
        Family {
            name: "lines-under-edges",
            stage: "trace",
            build: || WorstMap::grey(worst::vertical_lines(WIDEST.0, WIDEST.1, 4_990_000)),
        },
        Family {
            name: "lines-over-edges",
            stage: "trace",
            build: || WorstMap::grey(worst::vertical_lines(WIDEST.0, WIDEST.1, 5_000_001)),
        },
        Family {
            name: "corridor-6324",
            stage: "trace",
            build: || WorstMap::grey(worst::corridors(6324, 6324, 1, 2_000_000)),
        },
        Family {
            name: "corridor",
            stage: "trace",
            build: || WorstMap::grey(worst::corridors(WIDEST.0, WIDEST.1, 1, 2_000_000)),
        },
        Family {
            name: "corridor-over",
            stage: "trace",
            build: || WorstMap::grey(worst::corridors(WIDEST.0, WIDEST.1, 1, 2_000_002)),
        },
        Family {
            name: "corridors-2",
            stage: "trace",
            build: || WorstMap::grey(worst::corridors(WIDEST.0, WIDEST.1, 2, 2_000_000)),
        },
        Family {
            name: "rgb-corridor",
            stage: "decode+trace",
            build: || WorstMap {
                map: worst::corridors(WIDEST.0, WIDEST.1, 1, 2_000_000),
                encoding: Encoding::Rgb,
            },
        },
        Family {
            name: "islands-under-rings",
            stage: "trace+svg",
            build: || WorstMap::grey(worst::islands(WIDEST.0, WIDEST.1, 500_000, 4)),
        },
        Family {
            name: "dots-over-rings",
            stage: "trace",
            build: || WorstMap::grey(worst::islands(WIDEST.0, WIDEST.1, 500_001, 1)),
        },
        Family {
            name: "jagged",
            stage: "simplify",
            build: || WorstMap::grey(worst::jagged(WIDEST.0, WIDEST.1, 2_000_000, 2_000_000, 11)),
        },
        Family {
            name: "jagged-5m",
            stage: "simplify",
            build: || WorstMap::grey(worst::jagged(WIDEST.0, WIDEST.1, 2_000_000, 5_000_000, 13)),
        },
        Family {
            name: "serrated",
            stage: "simplify+svg",
            build: || WorstMap::grey(worst::serrated(WIDEST.0, WIDEST.1, 203)),
        },
    ]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--child") => child(&args[1..]),
        Some("--list") => {
            for f in families() {
                println!("{}\t{}", f.name, f.stage);
            }
            Ok(())
        }
        Some("--file") => files(&args[1..]),
        Some("--write") => match args.get(1) {
            Some(dir) => write_maps(dir),
            None => Err("--write DIR".into()),
        },
        Some("--only") => match args.get(1) {
            Some(names) => parent(&names.split(',').collect::<Vec<_>>()),
            None => Err("--only NAME[,NAME…]".into()),
        },
        None => parent(&[]),
        Some(other) => Err(format!("unexpected argument {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("facesvg-probe: {e}");
            ExitCode::from(1)
        }
    }
}

fn write_maps(dir: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
    for family in families() {
        let path = std::path::Path::new(dir).join(format!("{}.png", family.name));
        std::fs::write(&path, (family.build)().png())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

const HEADER: &str = "| map | stage | size | PNG KiB | decode ms | render ms (trace/simplify/svg) | total ms | peak RSS MiB | heap decode MiB | heap trace MiB | heap render MiB | B/px | B/edge | edges | rings | points | SVG KiB | submit | render |";

fn print_header() {
    println!("{HEADER}");
    println!("|{}", " --- |".repeat(19));
}

fn parent(only: &[&str]) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("facesvg-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    print_header();
    for family in families() {
        if !only.is_empty() && !only.contains(&family.name) {
            continue;
        }
        let map = (family.build)();
        let png = map.png();
        let (w, h) = (map.map.width, map.map.height);
        drop(map);
        let path = dir.join(format!("{}.png", family.name));
        std::fs::write(&path, &png).map_err(|e| e.to_string())?;
        let row = probe(family.name, family.stage, &path, png.len(), (w, h));
        let _ = std::fs::remove_file(&path);
        row?;
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}

/// Rows for label maps made elsewhere (an interlaced PNG, a real model's output).
fn files(paths: &[String]) -> Result<(), String> {
    print_header();
    for path in paths {
        let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        let (w, h) = png::Decoder::new(std::io::Cursor::new(&bytes))
            .read_info()
            .map(|r| (r.info().width, r.info().height))
            .map_err(|e| format!("{path}: {e}"))?;
        let name = std::path::Path::new(path)
            .file_name()
            .map_or(path.as_str(), |n| n.to_str().unwrap_or(path));
        probe(
            name,
            "file",
            std::path::Path::new(path),
            bytes.len(),
            (w, h),
        )?;
    }
    Ok(())
}

/// Runs one map in a fresh process of this program and prints its row.
fn probe(
    name: &str,
    stage: &str,
    path: &std::path::Path,
    png_bytes: usize,
    (w, h): (u32, u32),
) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(&exe)
        .arg("--child")
        .arg(path)
        .arg(w.to_string())
        .arg(h.to_string())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        println!(
            "| {name} | {stage} | {w}×{h} | child failed: {} {} |",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return Ok(());
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| e.to_string())?;
    let mib = |k: &str| v[k].as_f64().unwrap_or(0.0) / 1048576.0;
    let int = |k: &str| v[k].as_u64().unwrap_or(0);
    let ms = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let pixels = u64::from(w) * u64::from(h);
    let render_heap = int("render_heap");
    let edges = int("edges");
    let per_edge = if edges > 0 {
        format!(
            "{:.0}",
            render_heap.saturating_sub(pixels) as f64 / edges as f64
        )
    } else {
        "–".into()
    };
    let over_file = png_bytes > Limits::default().max_segmentation_bytes;
    println!(
        "| {name} | {stage} | {w}×{h} | {}{} | {:.0} | {:.0} ({}) | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
        png_bytes / 1024,
        if over_file { " (over the file limit)" } else { "" },
        ms("decode_ms"),
        ms("render_ms"),
        v["stages"].as_str().unwrap_or("–"),
        ms("decode_ms") + ms("render_ms"),
        v["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
        mib("decode_heap"),
        mib("trace_heap"),
        mib("render_heap"),
        render_heap as f64 / pixels as f64,
        per_edge,
        edges,
        v["rings"].as_u64().map_or("–".into(), |r| r.to_string()),
        v["points"].as_u64().map_or("–".into(), |r| r.to_string()),
        v["svg_bytes"].as_u64().map_or("–".into(), |b| (b / 1024).to_string()),
        v["submit"].as_str().unwrap_or("?"),
        v["render"].as_str().unwrap_or("?"),
    );
    Ok(())
}

/// Landmarks that span the whole map, so the crop box is the image.
fn spanning_landmarks(w: u32, h: u32) -> Landmarks {
    let (w, h) = (f64::from(w) * 1000.0, f64::from(h) * 1000.0);
    Landmarks {
        points: (0..68)
            .map(|i| {
                let t = f64::from(i) / 68.0 * std::f64::consts::TAU;
                [
                    ((0.5 + 0.5 * t.cos()) * w) as i32,
                    ((0.5 + 0.5 * t.sin()) * h) as i32,
                ]
            })
            .collect(),
    }
}

fn verdict(r: Result<(), facesvg::limits::BudgetError>) -> String {
    match r {
        Ok(()) => "rendered".into(),
        Err(e) => format!("refused: {}", e.limit.name()),
    }
}

/// One map, as the worker meets it: the PNG's bytes decoded, then rendered within
/// the default budget. Prints one JSON line.
fn child(args: &[String]) -> Result<(), String> {
    let [path, w, h] = args else {
        return Err("--child FILE WIDTH HEIGHT".into());
    };
    let (w, h): (u32, u32) = (
        w.parse().map_err(|_| "width")?,
        h.parse().map_err(|_| "height")?,
    );
    let limits = Limits::default();
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;

    let mark = facesvg::heap::mark();
    let started = Instant::now();
    let map = segmentation::decode_scheme(&bytes, w, h, Default::default(), &limits);
    let decode_ms = started.elapsed().as_secs_f64() * 1000.0;
    let pixels = u64::from(w) * u64::from(h);
    let decode_heap = (facesvg::heap::peak_since(mark) as u64).saturating_sub(pixels);
    let map: LabelMap = match map {
        Ok(map) => map,
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({"decode_ms": decode_ms, "decode_heap": decode_heap, "peak_rss_kib": peak_rss_kib(), "submit": format!("refused at decode: {}", e.message), "render": "–"})
            );
            return Ok(());
        }
    };
    drop(bytes);
    let submit = verdict(count_edges(&map, &limits.render).map(|_| ()));
    let edges = count_edges(&map, &RenderBudget::UNLIMITED)
        .map(|c| c.edges)
        .unwrap_or(0);

    let landmarks = spanning_landmarks(w, h);
    let input = RenderInput {
        width: w,
        height: h,
        landmarks: &landmarks,
        label_map: Some(&map),
        params: RenderParams {
            crop: CropMode::None,
            ..RenderParams::default()
        },
    };
    let mark = facesvg::heap::mark();
    let started = Instant::now();
    let out = render_within(&input, &limits.render);
    let render_ms = started.elapsed().as_secs_f64() * 1000.0;
    let render_heap = facesvg::heap::peak_since(mark) as u64;
    let stages = out
        .as_ref()
        .ok()
        .map(|r| format!("{:.0}/{:.0}/{:.0}", r.trace_ms, r.simplify_ms, r.svg_ms));
    let (rings, points, svg_bytes) = match &out {
        Ok(r) => (
            Some(r.result.regions.iter().map(|g| g.paths).sum::<usize>()),
            Some(r.result.regions.iter().map(|g| g.points).sum::<usize>()),
            Some(r.svg.len()),
        ),
        Err(_) => (None, None, None),
    };
    let render = verdict(out.map(|_| ()));
    let peak_rss_kib = peak_rss_kib();

    // Tracing and simplifying alone, the rings discarded as they come.
    struct Discard;
    impl Rings for Discard {
        fn ring(
            &mut self,
            _: u8,
            _: &[facesvg::render::simplify::P],
        ) -> Result<(), facesvg::limits::BudgetError> {
            Ok(())
        }
    }
    let mark = facesvg::heap::mark();
    let _ = trace::trace_into(&map, &limits.render, &mut Discard);
    let trace_heap = facesvg::heap::peak_since(mark) as u64;
    println!(
        "{}",
        serde_json::json!({
            "decode_ms": decode_ms, "render_ms": render_ms, "peak_rss_kib": peak_rss_kib,
            "decode_heap": decode_heap, "trace_heap": trace_heap, "render_heap": render_heap, "edges": edges,
            "rings": rings, "points": points, "svg_bytes": svg_bytes, "stages": stages,
            "submit": submit, "render": render,
        })
    );
    Ok(())
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}
