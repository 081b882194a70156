//! facesvg without a service: render files, make synthetic label maps, time the renderer.
//!
//!   facesvg-render render --image FACE --landmarks PTS [--segmentation MAP.png] [--scheme lapa]
//!                  [--show-landmarks] [--opacity 0.5] [--crop landmarks|face|none]
//!                  [--svg OUT.svg] [--json OUT.json]
//!   facesvg-render synth [--kind heavy|blobs|ragged] --size N [--seed S] --out MAP.png
//!   facesvg-render synth --kind checker|stripes|sieve --width W --height H --out MAP.png
//!   facesvg-render time --map MAP.png [--runs N] [--svg OUT.svg] [--unlimited]
//!
//! `render` applies the service's own validation and limits, the render budget
//! included. `time` prints one JSON line (median milliseconds over the runs, SVG
//! bytes, peak resident memory, the most heap a render held beyond its inputs (the
//! SVG included) and tracing alone held, the map's border edges, and the budget's
//! verdict); it renders within the
//! service's budget unless `--unlimited`. `synth` makes a face-like map, or with
//! `--kind heavy` the same face made as hard as maps get (1-px strokes, islands of
//! 1–3 px, mosaics where six labels meet); `blobs` a mosaic of wavy blobs with holes,
//! islands, curved strokes and specks (a parser's map at camera resolution); `ragged`
//! cells whose borders are noise. The other kinds are hostile shapes: labels
//! alternating on every pixel, 1-px stripes, and a region pierced by a hole at every
//! other pixel.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Instant;

use facesvg::input::{image, segmentation, CropMode, LabelMap, Landmarks, RenderParams};
use facesvg::labels::LabelScheme;
use facesvg::limits::Limits;
use facesvg::limits::RenderBudget;
use facesvg::render::budget::count_edges;
use facesvg::render::trace::{self, Rings};
use facesvg::render::{render_within, synthetic, RenderInput};

// `time` reports what a render itself allocates at most (its inputs excluded).
#[global_allocator]
static ALLOCATOR: facesvg::heap::Counting = facesvg::heap::Counting;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("usage: facesvg-render render|synth|time [options] (see the source's header)");
        return ExitCode::from(2);
    };
    let mut opts: HashMap<String, String> = HashMap::new();
    let mut flags = Vec::new();
    let mut it = args[1..].iter().peekable();
    while let Some(a) = it.next() {
        let Some(name) = a.strip_prefix("--") else {
            eprintln!("unexpected argument {a:?}");
            return ExitCode::from(2);
        };
        match it.peek() {
            Some(v) if !v.starts_with("--") => {
                opts.insert(name.to_owned(), it.next().cloned().unwrap_or_default());
            }
            _ => flags.push(name.to_owned()),
        }
    }
    let result = match command.as_str() {
        "render" => cmd_render(&opts, &flags),
        "synth" => cmd_synth(&opts),
        "time" => cmd_time(&opts, &flags),
        other => Err(format!("unknown command {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("facesvg-render: {e}");
            ExitCode::from(1)
        }
    }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

fn need<'a>(opts: &'a HashMap<String, String>, name: &str) -> Result<&'a str, String> {
    opts.get(name)
        .map(String::as_str)
        .ok_or_else(|| format!("--{name} is required"))
}

fn cmd_render(opts: &HashMap<String, String>, flags: &[String]) -> Result<(), String> {
    let limits = Limits::default();
    let img = read(need(opts, "image")?)?;
    let info = image::inspect(&img, &limits).map_err(|e| e.to_string())?;
    let landmarks = Landmarks::parse(
        &read(need(opts, "landmarks")?)?,
        info.width,
        info.height,
        &limits,
    )
    .map_err(|e| e.to_string())?;
    let label_scheme = match opts.get("scheme") {
        Some(name) => {
            LabelScheme::parse(name).ok_or(format!("--scheme: one of {}", LabelScheme::NAMES))?
        }
        None => LabelScheme::default(),
    };
    let map = match opts.get("segmentation") {
        Some(p) => Some(
            segmentation::decode_scheme(&read(p)?, info.width, info.height, label_scheme, &limits)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let opacity: f64 = opts
        .get("opacity")
        .map(|o| o.parse().map_err(|_| "--opacity: not a number"))
        .transpose()?
        .unwrap_or(0.5);
    if !(0.0..=1.0).contains(&opacity) {
        return Err("--opacity must be within 0..1".into());
    }
    let params = RenderParams {
        show_landmarks: flags.iter().any(|f| f == "show-landmarks"),
        opacity_milli: (opacity * 1000.0).round() as u16,
        label_scheme,
        crop: match opts.get("crop") {
            Some(c) => CropMode::parse(c).ok_or(format!("--crop: one of {}", CropMode::NAMES))?,
            None => CropMode::default(),
        },
    };
    let out = render_within(
        &RenderInput {
            width: info.width,
            height: info.height,
            landmarks: &landmarks,
            label_map: map.as_ref(),
            params,
        },
        &limits.render,
    )
    .map_err(|e| e.to_string())?;
    let svg_path = opts.get("svg").cloned().unwrap_or_else(|| "out.svg".into());
    std::fs::write(&svg_path, &out.svg).map_err(|e| format!("{svg_path}: {e}"))?;
    let json = serde_json::to_string_pretty(&out.result).map_err(|e| e.to_string())?;
    match opts.get("json") {
        Some(p) => std::fs::write(p, json).map_err(|e| format!("{p}: {e}"))?,
        None => println!("{json}"),
    }
    Ok(())
}

fn cmd_synth(opts: &HashMap<String, String>) -> Result<(), String> {
    const SQUARE: [&str; 4] = ["face", "heavy", "blobs", "ragged"];
    if let Some(kind) = opts.get("kind").filter(|k| !SQUARE.contains(&k.as_str())) {
        let dim = |name: &str| -> Result<u32, String> {
            need(opts, name)?
                .parse::<u32>()
                .ok()
                .filter(|v| (1..=8192).contains(v))
                .ok_or(format!("--{name}: a number within 1..8192"))
        };
        let (w, h) = (dim("width")?, dim("height")?);
        let labels: Vec<u8> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| match kind.as_str() {
                "checker" => 1 + ((x + y) % 2) as u8,
                "stripes" => 1 + (x % 2) as u8,
                // Skin with a background hole at every other pixel of every other row.
                "sieve" => u8::from(!(x % 2 == 1 && y % 2 == 1)),
                _ => 0,
            })
            .collect();
        if !["checker", "stripes", "sieve"].contains(&kind.as_str()) {
            return Err(format!(
                "--kind {kind:?}: one of face, heavy, blobs, ragged, checker, stripes, sieve"
            ));
        }
        return write_grey_png(need(opts, "out")?, w, h, &labels);
    }
    let n: u32 = need(opts, "size")?
        .parse()
        .map_err(|_| "--size: not a number")?;
    if !(16..=8192).contains(&n) {
        return Err("--size must be within 16..8192".into());
    }
    let seed: u64 = opts
        .get("seed")
        .map(|s| s.parse().map_err(|_| "--seed: not a number"))
        .transpose()?
        .unwrap_or(1);
    let map = match opts.get("kind").map(String::as_str) {
        Some("heavy") => synthetic::heavy_map(n, seed),
        Some("blobs") => synthetic::blob_map(n, seed),
        Some("ragged") => synthetic::ragged_map(n, seed),
        _ => synthetic::face_map(n, seed),
    };
    write_grey_png(need(opts, "out")?, n, n, &map.labels)
}

fn write_grey_png(out: &str, w: u32, h: u32, labels: &[u8]) -> Result<(), String> {
    let file = std::fs::File::create(out).map_err(|e| format!("{out}: {e}"))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(labels).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())
}

/// Landmarks that span the whole map, so the crop box is the image.
fn spanning_landmarks(map: &LabelMap) -> Landmarks {
    let (w, h) = (map.width as f64 * 1000.0, map.height as f64 * 1000.0);
    Landmarks {
        points: (0..68)
            .map(|i| {
                let t = i as f64 / 68.0 * std::f64::consts::TAU;
                [
                    ((0.5 + 0.5 * t.cos()) * w) as i32,
                    ((0.5 + 0.5 * t.sin()) * h) as i32,
                ]
            })
            .collect(),
    }
}

fn cmd_time(opts: &HashMap<String, String>, flags: &[String]) -> Result<(), String> {
    let path = need(opts, "map")?;
    let bytes = read(path)?;
    let limits = Limits {
        max_image_side: 8192,
        max_image_pixels: 70_000_000,
        ..Limits::default()
    };
    let (w, h) = {
        let d = png::Decoder::new(std::io::Cursor::new(&bytes))
            .read_info()
            .map_err(|e| e.to_string())?;
        (d.info().width, d.info().height)
    };
    let map = segmentation::decode(&bytes, w, h, &limits).map_err(|e| e.to_string())?;
    let landmarks = spanning_landmarks(&map);
    let runs: usize = opts
        .get("runs")
        .map(|r| r.parse().map_err(|_| "--runs: not a number"))
        .transpose()?
        .unwrap_or(5);
    let input = RenderInput {
        width: w,
        height: h,
        landmarks: &landmarks,
        label_map: Some(&map),
        params: RenderParams::default(),
    };
    let budget = if flags.iter().any(|f| f == "unlimited") {
        RenderBudget::UNLIMITED
    } else {
        Limits::default().render
    };
    let mut times = Vec::new();
    let mut svg_bytes = 0;
    let mut verdict = "rendered".to_owned();
    let mut render_peak = 0;
    for _ in 0..runs.max(1) {
        let mark = facesvg::heap::mark();
        let t = Instant::now();
        let out = render_within(&input, &budget);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        render_peak = render_peak.max(facesvg::heap::peak_since(mark));
        match out {
            Ok(out) => {
                svg_bytes = out.svg.len();
                if let Some(p) = opts.get("svg") {
                    std::fs::write(p, &out.svg).map_err(|e| format!("{p}: {e}"))?;
                }
            }
            Err(e) => verdict = format!("refused: {e}"),
        }
    }
    times.sort_by(f64::total_cmp);
    // Tracing and simplifying alone, the rings discarded as they come: the heap of
    // the trace stage, next to the whole render's.
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
    let _ = trace::trace_into(&map, &budget, &mut Discard);
    let trace_peak = facesvg::heap::peak_since(mark);
    let edges = count_edges(&map, &RenderBudget::UNLIMITED)
        .map(|c| c.edges)
        .unwrap_or(0);
    let peak_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({"map": path, "width": w, "height": h, "median_ms": times[times.len() / 2], "svg_bytes": svg_bytes, "peak_rss_kib": peak_kib, "render_peak_heap_bytes": render_peak, "trace_peak_heap_bytes": trace_peak, "edges": edges, "verdict": verdict})
    );
    Ok(())
}
