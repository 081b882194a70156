//! The worst label maps within the input limits (`render::worst`), decoded and
//! rendered as the worker does, each rendered or refused by the limit it aims at and
//! holding no more heap than the budget's bound (`render::budget::heap_bound`) says:
//! measured with a counting allocator, not timed. The maps and the budget are the
//! service's scaled down twenty times (pixels, edges, loop edges, rings, points,
//! SVG bytes), so that a debug build runs them in seconds; `facesvg-probe` runs them
//! at full size (README, "Benchmarks"). Then: a batch of the worst maps fits the
//! process function's memory as the template configures it.

use std::sync::{Mutex, OnceLock};

use facesvg::config::Config;
use facesvg::input::{segmentation, CropMode, ImageFormat, ImageInfo, Landmarks, RenderParams};
use facesvg::limits::{Limit, Limits, RenderBudget};
use facesvg::message::TaskInputs;
use facesvg::render::budget::{count_edges, heap_bound, LOOP_BYTES_PER_EDGE};
use facesvg::render::worst::{self, Encoding, WorstMap, WIDEST};
use facesvg::render::{render_within, RenderInput};

#[global_allocator]
static GLOBAL: facesvg::heap::Counting = facesvg::heap::Counting;

/// The counting allocator's peak is the process's: one measurement at a time.
static MEASURING: Mutex<()> = Mutex::new(());

/// The scale of these maps against the service's limits.
const SCALE: u64 = 20;
/// 2 MP (40 MP / 20), as wide for its height as the widest full-size map.
const SIZE: (u32, u32) = (2048, 976);

fn scaled() -> RenderBudget {
    let full = RenderBudget::default();
    RenderBudget {
        max_edges: full.max_edges / SCALE,
        max_loop_edges: full.max_loop_edges / SCALE,
        max_rings: full.max_rings / SCALE,
        max_points: full.max_points / SCALE,
        max_svg_bytes: full.max_svg_bytes / SCALE,
        ..full
    }
}

/// What one map cost.
#[derive(Debug)]
struct Measured {
    /// Heap beyond the decoded map, at the peak of decoding.
    decode: u64,
    /// Heap beyond the decoded map, at the peak of rendering (its SVG included).
    render: u64,
    edges: u64,
    submit: Option<Limit>,
    verdict: Option<Limit>,
    svg_bytes: usize,
}

fn measure(map: &WorstMap, budget: &RenderBudget) -> Measured {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let png = map.png();
    let (w, h) = (map.map.width, map.map.height);
    let limits = Limits {
        render: *budget,
        ..Limits::default()
    };
    assert!(png.len() <= limits.max_segmentation_bytes);
    let pixels = u64::from(w) * u64::from(h);

    let mark = facesvg::heap::mark();
    let decoded = segmentation::decode_scheme(&png, w, h, Default::default(), &limits)
        .expect("every worst map decodes");
    let decode = (facesvg::heap::peak_since(mark) as u64).saturating_sub(pixels);
    assert_eq!(decoded, map.map);
    drop(png);

    let submit = count_edges(&decoded, budget).err().map(|e| e.limit);
    let edges = count_edges(&decoded, &RenderBudget::UNLIMITED)
        .map(|c| c.edges)
        .unwrap_or(0);
    let landmarks = Landmarks {
        points: vec![[0, 0], [w as i32 * 1000, h as i32 * 1000]],
    };
    let input = RenderInput {
        width: w,
        height: h,
        landmarks: &landmarks,
        label_map: Some(&decoded),
        params: RenderParams {
            crop: CropMode::None,
            show_landmarks: true,
            ..RenderParams::default()
        },
    };
    let mark = facesvg::heap::mark();
    let out = render_within(&input, budget);
    let render = facesvg::heap::peak_since(mark) as u64;
    Measured {
        decode,
        render,
        edges,
        submit,
        svg_bytes: out.as_ref().map_or(0, |r| r.svg.len()),
        verdict: out.err().map(|e| e.limit),
    }
}

struct Case {
    name: &'static str,
    map: WorstMap,
    budget: RenderBudget,
    submit: Option<Limit>,
    verdict: Option<Limit>,
}

fn cases() -> Vec<Case> {
    let (w, h) = SIZE;
    let b = scaled();
    let grey = WorstMap::grey;
    let case = |name, map, submit, verdict| Case {
        name,
        map,
        budget: b,
        submit,
        verdict,
    };
    let loop_edges = b.max_loop_edges;
    let line_edges = 2 * u64::from(h) + 2;
    vec![
        case(
            "rgb-uniform",
            WorstMap {
                map: worst::uniform(w, h, 16),
                encoding: Encoding::Rgb,
            },
            None,
            None,
        ),
        case(
            "rgba-uniform",
            WorstMap {
                map: worst::uniform(w, h, 16),
                encoding: Encoding::Rgba,
            },
            None,
            None,
        ),
        case(
            "grey-noise",
            grey(worst::noise(w, h, 24, 7)),
            Some(Limit::Edges),
            Some(Limit::Edges),
        ),
        case(
            "checkerboard",
            grey(worst::checkerboard(w, h)),
            Some(Limit::Edges),
            Some(Limit::Edges),
        ),
        case(
            "lines-under-edges",
            grey(worst::vertical_lines(
                w,
                h,
                b.max_edges / line_edges * line_edges,
            )),
            None,
            None,
        ),
        case(
            "lines-over-edges",
            grey(worst::vertical_lines(w, h, b.max_edges + 1)),
            Some(Limit::Edges),
            Some(Limit::Edges),
        ),
        case(
            "corridor",
            grey(worst::corridors(w, h, 1, loop_edges)),
            None,
            None,
        ),
        case(
            "corridor-over",
            grey(worst::corridors(w, h, 1, loop_edges + 2)),
            None,
            Some(Limit::LoopEdges),
        ),
        case(
            "corridors-2",
            grey(worst::corridors(w, h, 2, loop_edges)),
            None,
            None,
        ),
        case(
            "islands-under-rings",
            grey(worst::islands(w, h, b.max_rings, 4)),
            None,
            None,
        ),
        case(
            "dots-over-rings",
            grey(worst::islands(w, h, b.max_rings + 1, 1)),
            None,
            Some(Limit::Rings),
        ),
        case(
            "jagged",
            grey(worst::jagged(w, h, loop_edges, loop_edges, 11)),
            None,
            None,
        ),
        case(
            "jagged-total",
            grey(worst::jagged(w, h, loop_edges, b.max_edges, 13)),
            None,
            None,
        ),
        case("serrated", grey(worst::serrated(w, h, 40)), None, None),
        Case {
            name: "serrated-over-points",
            map: grey(worst::serrated(w, h, 40)),
            budget: RenderBudget {
                max_points: 50_000,
                ..b
            },
            submit: None,
            verdict: Some(Limit::Points),
        },
        Case {
            name: "islands-over-svg",
            map: grey(worst::islands(w, h, b.max_rings, 4)),
            budget: RenderBudget {
                max_svg_bytes: 100_000,
                ..b
            },
            submit: None,
            verdict: Some(Limit::SvgBytes),
        },
        Case {
            name: "corridor-over-time",
            map: grey(worst::corridors(w, h, 1, loop_edges)),
            budget: RenderBudget {
                max_render_ms: 0,
                ..b
            },
            submit: None,
            verdict: Some(Limit::RenderTime),
        },
    ]
}

/// Every case, measured once for the tests that read them.
fn measured() -> &'static [(Case, Measured)] {
    static MEASURED: OnceLock<Vec<(Case, Measured)>> = OnceLock::new();
    MEASURED.get_or_init(|| {
        cases()
            .into_iter()
            .map(|case| {
                let m = measure(&case.map, &case.budget);
                (case, m)
            })
            .collect()
    })
}

#[test]
fn the_worst_maps_are_rendered_or_refused_by_their_limit_within_the_heap_bound() {
    for (case, m) in measured() {
        let (w, h) = (case.map.map.width, case.map.map.height);
        let pixels = u64::from(w) * u64::from(h);
        let bound = heap_bound(&case.budget, w, h);
        eprintln!(
            "{:>22}: decode {:>6.2} MiB, render {:>6.2} MiB beyond the map ({:.2} B/px, {:>5.1} B/edge beyond 1 B/px), bound {:>6.2} MiB with the map, {} edges, {} SVG bytes, {:?}",
            case.name,
            m.decode as f64 / 1048576.0,
            m.render as f64 / 1048576.0,
            m.render as f64 / pixels as f64,
            m.render.saturating_sub(pixels) as f64 / m.edges.max(1) as f64,
            bound as f64 / 1048576.0,
            m.edges,
            m.svg_bytes,
            m.verdict,
        );
        assert_eq!(m.submit, case.submit, "{}: verdict at submit", case.name);
        assert_eq!(m.verdict, case.verdict, "{}: verdict at render", case.name);
        assert!(
            pixels + m.decode <= bound,
            "{}: decoding held {} bytes beyond the map, bound {bound}",
            case.name,
            m.decode
        );
        assert!(
            pixels + m.render <= bound,
            "{}: rendering held {} bytes beyond the map, bound {bound}",
            case.name,
            m.render
        );
    }
}

#[test]
fn the_longest_loop_costs_what_the_budget_says_an_edge() {
    let (w, h) = SIZE;
    let b = scaled();
    let pixels = u64::from(w) * u64::from(h);
    let (_, m) = measured()
        .iter()
        .find(|(case, _)| case.name == "corridor")
        .expect("the corridor is measured");
    assert_eq!(m.verdict, None);
    // Beyond the map: the border flags (a byte a pixel), the loop's working memory,
    // and little else (its SVG is a few kilobytes: the corridor simplifies well).
    let per_edge = m.render.saturating_sub(pixels) as f64 / b.max_loop_edges as f64;
    eprintln!("corridor: {per_edge:.1} bytes an edge of its one loop");
    assert!(per_edge <= LOOP_BYTES_PER_EDGE as f64 + 2.0, "{per_edge}");
    assert!(
        per_edge >= LOOP_BYTES_PER_EDGE as f64 - 2.0,
        "the bound is the cost, not a guess: {per_edge}"
    );
}

fn template() -> serde_yaml::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let text = std::fs::read_to_string(path).expect("template.yaml");
    serde_yaml::from_str(&text).expect("template.yaml parses")
}

#[test]
fn a_batch_of_the_worst_maps_fits_the_process_functions_memory() {
    // The process function as deployed: its memory size, and every setting of the
    // template that is a plain value (the rest keep their defaults).
    // The memory size is a parameter (the size profiles set it): every value it
    // allows must hold, since the batch's budget follows the memory.
    let t = template();
    let size = &t["Resources"]["ProcessFunction"]["Properties"]["MemorySize"];
    let sizes: Vec<u64> = match size {
        serde_yaml::Value::Tagged(tagged) if tagged.tag == "!Ref" => {
            let name = tagged.value.as_str().expect("a parameter's name");
            t["Parameters"][name]["AllowedValues"]
                .as_sequence()
                .expect("the memory parameter lists its allowed values")
                .iter()
                .map(|v| v.as_u64().expect("a memory size"))
                .collect()
        }
        v => vec![v.as_u64().expect("process's MemorySize")],
    };
    assert!(!sizes.is_empty());
    for memory_mb in sizes {
        fits_in(&t, memory_mb);
    }
}

fn fits_in(t: &serde_yaml::Value, memory_mb: u64) {
    let env = t["Globals"]["Function"]["Environment"]["Variables"].clone();
    let config = Config::from_lookup(|name| {
        if name == "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" {
            return Some(memory_mb.to_string());
        }
        match &env[name] {
            serde_yaml::Value::String(v) => Some(v.clone()),
            _ => None,
        }
    })
    .expect("the template's settings");
    let percent: u64 = env["BATCH_MEMORY_PERCENT"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .expect("BATCH_MEMORY_PERCENT");
    let memory = memory_mb << 20;
    assert_eq!(config.batch_memory_bytes, memory / 100 * percent);
    assert_eq!(config.limits.render, RenderBudget::default());

    // The largest map there is, as a queued task: its weight is what it reserves of
    // the batch's budget before it is decoded.
    let (w, h) = WIDEST;
    let inputs = TaskInputs::new(
        ImageInfo {
            format: ImageFormat::Png,
            width: w,
            height: h,
        },
        Landmarks {
            points: vec![[0, 0]; 68],
        },
        Some(b"\x89PNG"),
        RenderParams::default(),
    );
    let weight = u64::from(facesvg::worker::render_weight(&config, &inputs)) << 10;
    let bound = heap_bound(&config.limits.render, w, h);
    assert!(weight >= bound, "{weight} < {bound}");
    let permits = config.batch_memory_bytes >> 10;
    let admitted = permits / (weight >> 10);
    assert!(admitted >= 1, "one worst map always runs");

    // What the worst map costs at full size, from the costs measured at a twentieth
    // of it: every cost beyond the map grows with the limits (pixels, edges, loop
    // edges, SVG bytes), all twenty times larger there.
    let beyond_map = measured()
        .iter()
        .filter(|(case, _)| case.budget == scaled())
        .map(|(_, m)| m.decode.max(m.render))
        .max()
        .unwrap_or(0);
    let pixels = u64::from(w) * u64::from(h);
    let worst = pixels + beyond_map * SCALE;
    eprintln!(
        "worst map at full size: {} MiB; weight {} MiB; {admitted} at once in {} MiB of {memory_mb} MiB",
        worst >> 20,
        weight >> 20,
        config.batch_memory_bytes >> 20
    );
    assert!(worst <= weight, "the weight covers the measured cost");
    assert!(
        admitted * worst <= config.batch_memory_bytes,
        "{admitted} worst renders at once exceed the batch's memory"
    );
    assert!(config.batch_memory_bytes < memory);
}
