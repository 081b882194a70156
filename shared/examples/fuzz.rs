//! Fuzzing on stable Rust: every parser that reads untrusted bytes, driven by a
//! mutating, outcome-guided loop over a committed seed corpus.
//!
//! ```text
//! infra/fuzz.sh [EXECUTIONS] [TARGET…]          # 10,000,000 per target by default
//! cargo run --profile fuzz -p facesvg --example fuzz -- run TARGET EXECUTIONS
//! cargo run --profile fuzz -p facesvg --example fuzz -- replay TARGET FILE…
//! cargo run --profile fuzz -p facesvg --example fuzz -- seed   # rewrites shared/fuzz/corpus
//! ```
//!
//! Why not libFuzzer or AFL: both need a nightly compiler or an instrumenting
//! toolchain that this project's machines do not have. Instead each execution gets
//! an input that is either a mutation of a corpus entry (bit flips, interesting
//! integers, dictionary tokens, splices, duplicated runs; PNG chunk CRCs repaired
//! half the time so mutations get past the checksum) or a freshly generated
//! structured input (`arbitrary` drives the key target). Inputs that produce an
//! outcome not seen before (Ok, or a new error code, field and message shape) join
//! the working corpus: a coarse stand-in for coverage.
//!
//! An execution fails when it panics (properties are asserted inside the targets),
//! runs longer than a second (`FUZZ_SLOW_MS`; a watchdog saves the input and aborts), or
//! allocates more at its peak than the target's budget, derived from the service's
//! configured limits. Failing inputs are written to `.local/fuzz/crashes/TARGET/`.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use facesvg::cache::kv::key::{escape, normalize_tag, Key, KeyBuilder};
use facesvg::input::image::{self, ImageFormat};
use facesvg::input::landmarks::Landmarks;
use facesvg::input::{multipart, segmentation, RenderParams, Submission};
use facesvg::key::{input_hash, sha256, KeyInputs};
use facesvg::labels::LabelScheme;
use facesvg::limits::Limits;
use facesvg::message::{InputsRef, TaskInputs};
use facesvg::worker;

// ---------------------------------------------------------------------------
// Allocation accounting: the peak of live heap bytes during one execution.

#[global_allocator]
static ALLOC: facesvg::heap::Counting = facesvg::heap::Counting;

// ---------------------------------------------------------------------------
// A small, seedable generator (splitmix64): runs repeat given the same seed.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// ---------------------------------------------------------------------------
// Targets.

/// What one execution ended in, reduced to a shape: Ok, or the error's code, field
/// and message with digits dropped (so "got 12 points" and "got 13 points" are one).
type Outcome = u64;

fn outcome(s: &str) -> Outcome {
    // The first words only, up to a quote or parenthesis and without digits:
    // messages quote the input and give sizes, and neither makes a new outcome.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.split(['"', '(', '`', '\''])
        .next()
        .unwrap_or("")
        .split_whitespace()
        .take(6)
        .for_each(|w| {
            w.chars()
                .filter(|c| !c.is_ascii_digit())
                .for_each(|c| c.hash(&mut h))
        });
    h.finish()
}

/// Executions that got through every stage of their target (a form that became a
/// submission with its map decoded, a map decoded, a key built, …): the depth the
/// loop reaches, reported with the counts.
static ACCEPTED: AtomicU64 = AtomicU64::new(0);

fn accepted() {
    ACCEPTED.fetch_add(1, Relaxed);
}

fn input_outcome(r: &Result<impl Sized, facesvg::input::InputError>) -> Outcome {
    match r {
        Ok(_) => 1,
        Err(e) => outcome(&format!("{} {} {}", e.kind.code(), e.field, e.message)),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Multipart,
    Landmarks,
    Image,
    LabelmapGray,
    LabelmapRgb,
    Key,
    Message,
}

const TARGETS: [Target; 7] = [
    Target::Multipart,
    Target::Landmarks,
    Target::Image,
    Target::LabelmapGray,
    Target::LabelmapRgb,
    Target::Key,
    Target::Message,
];

const BOUNDARY: &str = "fuzz-boundary";
/// The photo's size that landmark and label-map targets check against.
const FACE: (u32, u32) = (64, 48);

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Multipart => "multipart",
            Target::Landmarks => "landmarks",
            Target::Image => "image",
            Target::LabelmapGray => "labelmap_gray",
            Target::LabelmapRgb => "labelmap_rgb",
            Target::Key => "key",
            Target::Message => "message",
        }
    }

    fn parse(s: &str) -> Option<Target> {
        TARGETS.into_iter().find(|t| t.name() == s)
    }

    /// Longest input the loop builds: a little past each parser's own limit where
    /// that limit is small, so that the limit itself is exercised.
    fn max_len(self, limits: &Limits) -> usize {
        match self {
            Target::Landmarks => limits.max_landmarks_bytes + 1024,
            Target::Multipart | Target::Message => 256 * 1024,
            _ => 64 * 1024,
        }
    }

    /// The most one execution may hold on the heap: the configured limits of what
    /// it parses (a label map may be `max_image_pixels` bytes), a few copies of the
    /// input, and a fixed allowance for decoder state.
    fn budget(self, limits: &Limits, input_len: usize) -> usize {
        let base = 4 * 1024 * 1024 + 8 * input_len;
        match self {
            Target::LabelmapGray | Target::LabelmapRgb | Target::Multipart | Target::Message => {
                base + limits.max_image_pixels as usize
            }
            _ => base,
        }
    }

    fn run(self, data: &[u8], limits: &Limits) -> Outcome {
        match self {
            Target::Multipart => run_multipart(data, limits),
            Target::Landmarks => run_landmarks(data, limits),
            Target::Image => input_outcome(&image::inspect(data, limits).inspect(|info| {
                accepted();
                assert!(info.width >= 1 && info.height >= 1);
                assert!(
                    info.width <= limits.max_image_side && info.height <= limits.max_image_side
                );
                assert!(u64::from(info.width) * u64::from(info.height) <= limits.max_image_pixels);
                assert_eq!(image::sniff(data), Some(info.format));
            })),
            Target::LabelmapGray | Target::LabelmapRgb => run_labelmap(data, limits),
            Target::Key => run_key(data),
            Target::Message => run_message(data, limits),
        }
    }

    fn dictionary(self) -> &'static [&'static [u8]] {
        match self {
            Target::Multipart => &[
                b"--fuzz-boundary\r\n",
                b"--fuzz-boundary--",
                b"\r\n\r\n",
                b"Content-Disposition: form-data; name=\"",
                b"\"; filename=\"x\"",
                b"Content-Type: image/png\r\n",
                b"name=\"image\"",
                b"name=\"landmarks\"",
                b"name=\"segmentation_map\"",
                b"name=\"region_opacity\"",
                b"name=\"label_scheme\"",
                b"name=\"crop\"",
                b"name=\"show_landmarks\"",
                b"celebamask-hq",
                b"1e309",
                b"NaN",
            ],
            Target::Landmarks => &[
                b"version: 1\nn_points: 68\n{\n",
                b"\n}",
                b"[[",
                b"]]",
                b"],[",
                b"1e308",
                b"-0.0",
                b"NaN",
                b"inf",
                b"\xef\xbb\xbf",
                b"0.5,0.5\n",
                b"\r\n",
            ],
            Target::Image => &[
                b"\x89PNG\r\n\x1a\n",
                b"IHDR",
                b"IDAT",
                b"IEND",
                b"\xff\xd8\xff",
                b"\xff\xc0\x00\x11\x08",
                b"\xff\xc2",
                b"\xff\xda",
                b"RIFF",
                b"WEBPVP8 ",
                b"VP8L",
                b"VP8X",
                b"\x9d\x01\x2a",
                b"\xff\xff\xff\xff",
            ],
            Target::LabelmapGray | Target::LabelmapRgb => &[
                b"IHDR",
                b"IDAT",
                b"PLTE",
                b"tRNS",
                b"IEND",
                b"\x00\x00\x00\x00",
                b"\xff\xff\xff\xff",
                b"\x78\x9c",
            ],
            Target::Key => &[b":", b"%", b"#", b"\x00", b"\xff", b"*", b" ", b"%3A"],
            Target::Message => &[
                b"{\"v\":1,",
                b"\"kind\":\"inline\"",
                b"\"kind\":\"s3\"",
                b"\"segmentation_png\":\"",
                b"\"label_scheme\":\"lapa\"",
                b"\"crop\":\"face\"",
                b"\"width\":65535",
                b"null",
                b"[[0,0]]",
                b"\\u0000",
                b"4294967295",
            ],
        }
    }

    /// A fresh structured input, built from the generator rather than mutated.
    fn generate(self, rng: &mut Rng) -> Vec<u8> {
        match self {
            Target::Multipart => {
                let (w, h) = FACE;
                form(
                    &png_gray(w, h, &rng.bytes((w * h) as usize)),
                    &pts(68, w, h, rng),
                    rng.chance(2).then(|| label_png(rng, false)),
                    &[("region_opacity", "0.25"), ("crop", "face")][..rng.below(3)],
                )
            }
            Target::Landmarks => match rng.below(3) {
                0 => pts(68, FACE.0, FACE.1, rng).into_bytes(),
                1 => json_points(if rng.chance(2) { 468 } else { 478 }, rng, true).into_bytes(),
                _ => json_points(68, rng, false).into_bytes(),
            },
            Target::Image => {
                let (w, h) = (1 + rng.below(40) as u32, 1 + rng.below(40) as u32);
                match rng.below(3) {
                    0 => png_gray(w, h, &rng.bytes((w * h) as usize)),
                    1 => encoded(w, h, rng, ImageFormat::Jpeg),
                    _ => encoded(w, h, rng, ImageFormat::Webp),
                }
            }
            Target::LabelmapGray => {
                let mut out = vec![rng.below(3) as u8];
                out.extend(label_png(rng, false));
                out
            }
            Target::LabelmapRgb => {
                let mut out = vec![rng.below(3) as u8];
                out.extend(label_png(rng, true));
                out
            }
            Target::Key => {
                let n = 1 + rng.below(300);
                rng.bytes(n)
            }
            Target::Message => message(rng).into_bytes(),
        }
    }
}

fn run_multipart(data: &[u8], limits: &Limits) -> Outcome {
    // An optional first line `CT: …` is the Content-Type header: the boundary
    // parser is fuzzed with the body.
    let (content_type, body) = match data.strip_prefix(b"CT: ") {
        Some(rest) => {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            (
                String::from_utf8_lossy(&rest[..end]).into_owned(),
                rest.get(end + 1..).unwrap_or(&[]),
            )
        }
        None => (format!("multipart/form-data; boundary={BOUNDARY}"), data),
    };
    let boundary = match multipart::boundary(&content_type) {
        Ok(b) => b,
        Err(e) => return input_outcome(&Err::<(), _>(e)),
    };
    let form = match multipart::parse(body, boundary) {
        Ok(f) => f,
        Err(e) => return input_outcome(&Err::<(), _>(e)),
    };
    for part in &form.parts {
        // Zero-copy: every part borrows the body.
        let range = body.as_ptr_range();
        assert!(range.contains(&part.data.as_ptr()) || part.data.is_empty());
    }
    let submission = match Submission::from_form(&form, limits) {
        Ok(s) => s,
        Err(e) => return input_outcome(&Err::<(), _>(e)) ^ 2,
    };
    let map = facesvg::render::budget::admit(&submission, limits);
    let hash = input_hash(&KeyInputs {
        tenant: "fuzz",
        image_sha256: sha256(submission.image),
        landmarks: &submission.landmarks,
        segmentation_sha256: submission.segmentation_png.map(sha256),
        params: submission.params,
    });
    assert_eq!(hash.len(), 64);
    if map.is_ok() {
        accepted();
    }
    input_outcome(&map) ^ 3
}

fn run_landmarks(data: &[u8], limits: &Limits) -> Outcome {
    let (w, h) = FACE;
    let parsed = Landmarks::parse(data, w, h, limits);
    if let Ok(points) = &parsed {
        accepted();
        // Canonicalisation: the same points written in another format parse to the
        // same numbers, and so to the same cache key. (A 468-point set that fits in
        // one pixel is read as normalised either way; that ambiguity is the format's.)
        let as_pts: String = points
            .points
            .iter()
            .map(|[x, y]| {
                format!(
                    "{}.{:03} {}.{:03}\n",
                    x / 1000,
                    (x % 1000).abs(),
                    y / 1000,
                    (y % 1000).abs()
                )
            })
            .collect();
        let tiny = points
            .points
            .iter()
            .all(|p| p[0].abs() <= 1000 && p[1].abs() <= 1000);
        let negative = points.points.iter().any(|p| p[0] < 0 || p[1] < 0);
        if !(tiny || negative) {
            let again = Landmarks::parse(as_pts.as_bytes(), w, h, limits)
                .expect("canonical points written as lines parse again");
            assert_eq!(&again, points, "canonical form differs after a round trip");
            let key = |l: &Landmarks| {
                input_hash(&KeyInputs {
                    tenant: "t",
                    image_sha256: [0; 32],
                    landmarks: l,
                    segmentation_sha256: None,
                    params: RenderParams::default(),
                })
            };
            assert_eq!(key(&again), key(points));
        }
    }
    input_outcome(&parsed)
}

fn run_labelmap(data: &[u8], limits: &Limits) -> Outcome {
    let Some((&scheme, png)) = data.split_first() else {
        return 0;
    };
    let scheme = [
        LabelScheme::Bisenet,
        LabelScheme::CelebamaskHq,
        LabelScheme::Lapa,
    ][usize::from(scheme % 3)];
    // The photo's size is the one the PNG claims (or, for 1 input in 8, 1×1 off):
    // a map of any other size is refused before its pixels are read.
    let claimed = png
        .get(16..24)
        .map(|d| {
            (
                u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
                u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
            )
        })
        .unwrap_or((1, 1));
    let (w, h) = if data.len().is_multiple_of(8) {
        (claimed.0 ^ 1, claimed.1)
    } else {
        claimed
    };
    let map = segmentation::decode_scheme(png, w, h, scheme, limits);
    if let Ok(map) = &map {
        accepted();
        assert_eq!((map.width, map.height), (w, h));
        assert_eq!(map.labels.len(), w as usize * h as usize);
        assert!(map
            .labels
            .iter()
            .all(|&l| usize::from(l) < facesvg::labels::CLASS_NAMES.len()));
    }
    input_outcome(&map)
}

fn run_key(data: &[u8]) -> Outcome {
    let mut u = Unstructured::new(data);
    let (Ok(ns), Ok(version), Ok(tenant), Ok(n)) = (
        u.arbitrary::<&str>(),
        u.arbitrary::<u32>(),
        u.arbitrary::<&str>(),
        u.int_in_range(0..=18usize),
    ) else {
        return 0;
    };
    let parts: Vec<&str> = (0..n).map_while(|_| u.arbitrary::<&str>().ok()).collect();
    let builder = match KeyBuilder::new(ns) {
        Ok(b) => b.version(version),
        Err(e) => return outcome(&e.to_string()),
    };
    let key = match builder.key(tenant, &parts) {
        Ok(k) => k,
        Err(e) => return outcome(&e.to_string()) ^ 1,
    };
    // The stored form parses back to the same key, and a key belongs to the scope
    // of each proper prefix of its parts.
    assert_eq!(Key::parse(key.full()).expect("a built key parses"), key);
    let scopes = key.scopes();
    for k in 1..parts.len() {
        let prefix = builder
            .prefix(tenant, &parts[..k])
            .expect("a proper prefix");
        assert!(
            scopes.contains(&prefix.id()),
            "key not in its prefix's scope"
        );
    }
    // Escaping is injective on what it escapes, and keys of different parts differ.
    if let Ok(other) = u.arbitrary::<&str>() {
        if other != tenant {
            assert_ne!(escape(other), escape(tenant));
        }
        let mut changed = parts.clone();
        if let Some(last) = changed.last_mut() {
            if *last != other {
                *last = other;
                let k2 = builder.key(tenant, &changed).expect("same shape");
                assert_ne!(k2.full(), key.full(), "two part lists share a key");
            }
        }
    }
    // A stored tag has no separator and a bounded length (long tags are hashed).
    let tag = normalize_tag(tenant);
    assert!(!tag.contains(':') && tag.len() <= 3 * 64, "tag {tag:?}");
    accepted();
    2
}

fn run_message(data: &[u8], limits: &Limits) -> Outcome {
    let body = String::from_utf8_lossy(data);
    if let Some(rest) = body.strip_prefix("S3:") {
        // Inputs that came through a claim check.
        return match worker::decode_inputs(rest.as_bytes()) {
            Ok(inputs) => decode_inputs_map(&inputs, limits) ^ 4,
            Err(e) => outcome(&e.to_string()) ^ 5,
        };
    }
    match worker::decode_message(&body) {
        Ok(message) => {
            let again = serde_json::to_string(&message).expect("a message serialises");
            assert_eq!(
                worker::decode_message(&again).expect("and decodes again"),
                message
            );
            match &message.inputs {
                InputsRef::Inline { inputs } => decode_inputs_map(inputs, limits),
                InputsRef::S3 { .. } => {
                    accepted();
                    6
                }
            }
        }
        Err(e) => outcome(&e.to_string()),
    }
}

/// What process does next with decoded inputs: the map's base64, then its PNG.
fn decode_inputs_map(inputs: &TaskInputs, limits: &Limits) -> Outcome {
    match inputs.segmentation_bytes() {
        Err(e) => outcome(&e.to_string()) ^ 7,
        Ok(None) => {
            accepted();
            8
        }
        Ok(Some(png)) => {
            let map = segmentation::decode_scheme(
                &png,
                inputs.image.width,
                inputs.image.height,
                inputs.params.label_scheme,
                limits,
            );
            if map.is_ok() {
                accepted();
            }
            input_outcome(&map)
        }
    }
}

// ---------------------------------------------------------------------------
// Structured inputs (seeds and generated cases).

fn png_encode(
    w: u32,
    h: u32,
    color: png::ColorType,
    palette: Option<Vec<u8>>,
    data: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, w, h);
    e.set_color(color);
    if let Some(p) = palette {
        e.set_palette(p);
    }
    let mut wr = e.write_header().expect("png header");
    wr.write_image_data(data).expect("png data");
    wr.finish().expect("png end");
    out
}

fn png_gray(w: u32, h: u32, data: &[u8]) -> Vec<u8> {
    png_encode(w, h, png::ColorType::Grayscale, None, data)
}

/// A label map of 1–40 px a side: 8-bit labels (some outside every scheme) or
/// CelebAMask-HQ palette colours (some not in it), grey, indexed or RGB.
fn label_png(rng: &mut Rng, colour: bool) -> Vec<u8> {
    const COLOURS: [[u8; 3]; 6] = [
        [0, 0, 0],
        [204, 0, 0],
        [76, 153, 0],
        [51, 51, 255],
        [255, 255, 0],
        [0, 0, 204],
    ];
    let (w, h) = (1 + rng.below(40) as u32, 1 + rng.below(40) as u32);
    let n = (w * h) as usize;
    // One map in four has stray values (a label or colour outside the scheme): the
    // rest are valid, so that decoding gets to the end of most of them.
    let dirty = rng.chance(4);
    let label = |rng: &mut Rng| {
        if dirty && rng.chance(50) {
            rng.next() as u8
        } else {
            rng.below(11) as u8
        }
    };
    if !colour {
        let data: Vec<u8> = (0..n).map(|_| label(rng)).collect();
        return if rng.chance(3) {
            let palette = (0..256).flat_map(|i| [i as u8; 3]).collect();
            png_encode(w, h, png::ColorType::Indexed, Some(palette), &data)
        } else {
            png_gray(w, h, &data)
        };
    }
    let data: Vec<u8> = (0..n)
        .flat_map(|_| {
            if dirty && rng.chance(50) {
                [rng.next() as u8; 3]
            } else {
                COLOURS[rng.below(COLOURS.len())]
            }
        })
        .collect();
    if rng.chance(2) {
        let rgba: Vec<u8> = data
            .chunks(3)
            .flat_map(|c| [c[0], c[1], c[2], 255])
            .collect();
        png_encode(w, h, png::ColorType::Rgba, None, &rgba)
    } else {
        png_encode(w, h, png::ColorType::Rgb, None, &data)
    }
}

fn encoded(w: u32, h: u32, rng: &mut Rng, format: ImageFormat) -> Vec<u8> {
    let pixels =
        ::image::RgbImage::from_raw(w, h, rng.bytes((w * h * 3) as usize)).expect("w×h×3 bytes");
    let format = match format {
        ImageFormat::Jpeg => ::image::ImageFormat::Jpeg,
        ImageFormat::Webp => ::image::ImageFormat::WebP,
        ImageFormat::Png => ::image::ImageFormat::Png,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    ::image::DynamicImage::ImageRgb8(pixels)
        .write_to(&mut out, format)
        .expect("encodes");
    out.into_inner()
}

fn pts(n: usize, w: u32, h: u32, rng: &mut Rng) -> String {
    let mut s = format!("version: 1\nn_points: {n}\n{{\n");
    for _ in 0..n {
        s += &format!(
            "{} {}\n",
            rng.below(w as usize * 1000) as f64 / 1000.0,
            rng.below(h as usize * 1000) as f64 / 1000.0
        );
    }
    s + "}\n"
}

fn json_points(n: usize, rng: &mut Rng, normalised: bool) -> String {
    let scale = if normalised { 1.0 } else { f64::from(FACE.1) };
    let points: Vec<String> = (0..n)
        .map(|_| {
            format!(
                "[{}, {}]",
                rng.below(1001) as f64 / 1000.0 * scale,
                rng.below(1001) as f64 / 1000.0 * scale
            )
        })
        .collect();
    format!("[{}]", points.join(", "))
}

fn form(image: &[u8], landmarks: &str, map: Option<Vec<u8>>, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    let mut part = |name: &str, file: bool, data: &[u8]| {
        b.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes(),
        );
        if file {
            b.extend_from_slice(b"; filename=\"f\"\r\nContent-Type: application/octet-stream");
        }
        b.extend_from_slice(b"\r\n\r\n");
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    };
    part("image", true, image);
    part("landmarks", true, landmarks.as_bytes());
    if let Some(m) = &map {
        part("segmentation_map", true, m);
    }
    for (k, v) in fields {
        part(k, false, v.as_bytes());
    }
    b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

fn message(rng: &mut Rng) -> String {
    let (w, h) = FACE;
    let landmarks = Landmarks::parse(pts(68, w, h, rng).as_bytes(), w, h, &Limits::default())
        .expect("generated points");
    let params = RenderParams {
        opacity_milli: rng.below(1001) as u16,
        ..RenderParams::default()
    };
    let map = rng.chance(2).then(|| {
        let mut data = label_png(rng, false);
        // Most maps match the photo's size so that their pixels are read.
        if let Some(dims) = data.get_mut(16..24) {
            if !rng.chance(4) {
                dims.copy_from_slice(&[0, 0, 0, w as u8, 0, 0, 0, h as u8]);
            }
        }
        fix_png_crcs(&mut data);
        data
    });
    let inputs = TaskInputs::new(
        facesvg::input::ImageInfo {
            format: ImageFormat::Png,
            width: w,
            height: h,
        },
        landmarks,
        map.as_deref(),
        params,
    );
    let message = facesvg::message::TaskMessage {
        v: facesvg::message::MESSAGE_VERSION,
        task_id: uuid::Uuid::from_u128(u128::from(rng.next())),
        tenant: "fuzz".into(),
        input_hash: "0".repeat(64),
        inputs: if rng.chance(4) {
            InputsRef::S3 {
                key: "inputs/fuzz/x.json".into(),
            }
        } else {
            InputsRef::Inline {
                inputs: inputs.clone(),
            }
        },
    };
    if rng.chance(5) {
        format!(
            "S3:{}",
            serde_json::to_string(&inputs).expect("inputs serialise")
        )
    } else {
        serde_json::to_string(&message).expect("message serialises")
    }
}

/// Rewrites every PNG chunk's CRC so that a mutated chunk reaches the decoder
/// instead of stopping at the checksum. Leaves anything that is not a PNG alone.
fn fix_png_crcs(data: &mut [u8]) {
    if !data.starts_with(b"\x89PNG\r\n\x1a\n") {
        return;
    }
    let mut pos = 8usize;
    while let Some(len) = data
        .get(pos..pos + 4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
    {
        let Some(end) = (pos + 8).checked_add(len) else {
            return;
        };
        if end + 4 > data.len() {
            return;
        }
        let crc = crc32fast::hash(&data[pos + 4..end]);
        data[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        pos = end + 4;
    }
}

// ---------------------------------------------------------------------------
// Mutation.

const INTERESTING_U32: [u32; 10] = [
    0,
    1,
    2,
    255,
    256,
    8192,
    8193,
    65535,
    0x7fff_ffff,
    0xffff_ffff,
];

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>], dict: &[&[u8]], max_len: usize) {
    for _ in 0..1 + rng.below(6) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = [
                    0u8, 0xff, 0x7f, 0x80, b'\n', b':', b'[', b'"', b'-', b'0', b'.', b',',
                ][rng.below(12)];
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes = rng.bytes(n);
                data.splice(i..i, bytes);
            }
            3 if len > 1 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                data.drain(i..i + n);
            }
            4 if len > 1 => {
                // Duplicate a run, sometimes many times: repeated parts, lines, chunks.
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let run = data[i..i + n].to_vec();
                let times = if rng.chance(8) { 1 + rng.below(200) } else { 1 };
                let at = rng.below(len + 1);
                for _ in 0..times {
                    data.splice(at..at, run.iter().copied());
                }
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let n = 1 + rng.below(other.len() - i);
                    let at = rng.below(len + 1);
                    data.splice(at..at, other[i..i + n].iter().copied());
                }
            }
            6 if !dict.is_empty() => {
                let token = dict[rng.below(dict.len())];
                let at = rng.below(len + 1);
                if rng.chance(2) && at + token.len() <= len {
                    data[at..at + token.len()].copy_from_slice(token);
                } else {
                    data.splice(at..at, token.iter().copied());
                }
            }
            7 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = INTERESTING_U32[rng.below(INTERESTING_U32.len())];
                let bytes = if rng.chance(2) {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                data[i..i + 4].copy_from_slice(&bytes);
            }
            _ if len > 0 => {
                let i = rng.below(len);
                data.truncate(i.max(1));
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data.truncate(max_len);
}

// ---------------------------------------------------------------------------
// The loop.

struct Report {
    executions: u64,
    accepted: u64,
    failures: u64,
    outcomes: usize,
    corpus: usize,
    peak: usize,
    slowest: Duration,
    elapsed: Duration,
}

/// What the watchdog needs to save a hanging input.
struct Current {
    started_ns: AtomicU64,
    input: Mutex<Vec<u8>>,
}

fn crash_dir(target: Target) -> PathBuf {
    PathBuf::from(std::env::var("FUZZ_OUT").unwrap_or_else(|_| ".local/fuzz".into()))
        .join("crashes")
        .join(target.name())
}

fn save_failure(target: Target, kind: &str, data: &[u8]) -> PathBuf {
    let dir = crash_dir(target);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{kind}-{}", &hex::encode(sha256(data))[..16]));
    let _ = std::fs::write(&path, data);
    path
}

fn corpus_dir(target: Target) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target.name())
}

fn load_corpus(target: Target) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir(target))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn fuzz(target: Target, executions: u64, max_seconds: Option<u64>, seed: u64) -> Report {
    let limits = Limits::default();
    let mut corpus = load_corpus(target);
    assert!(
        !corpus.is_empty(),
        "no seed corpus for {} in {}",
        target.name(),
        corpus_dir(target).display()
    );
    let seeds = corpus.len();
    let mut rng = Rng(seed ^ (target as u64) << 32);
    let dict = target.dictionary();
    let max_len = target.max_len(&limits);
    let mut seen = HashSet::new();

    let slow = slow_limit();
    let current = Arc::new(Current {
        started_ns: AtomicU64::new(0),
        input: Mutex::new(Vec::new()),
    });
    let clock = Instant::now();
    {
        // The watchdog: an execution over a second is a hang; save it and stop.
        let current = Arc::clone(&current);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            let started = current.started_ns.load(Relaxed);
            if started != 0
                && (clock.elapsed().as_nanos() as u64).saturating_sub(started)
                    > slow.as_nanos() as u64
            {
                let input = current.input.lock().map(|i| i.clone()).unwrap_or_default();
                let path = save_failure(target, "hang", &input);
                eprintln!(
                    "[fuzz] {}: an execution ran over 1 s; input saved to {}",
                    target.name(),
                    path.display()
                );
                std::process::exit(3);
            }
        });
    }

    let mut report = Report {
        executions: 0,
        accepted: 0,
        failures: 0,
        outcomes: 0,
        corpus: 0,
        peak: 0,
        slowest: Duration::ZERO,
        elapsed: Duration::ZERO,
    };
    // The seeds run first, unchanged: the committed corpus is also a regression suite.
    let mut queue: Vec<Vec<u8>> = corpus.clone();
    let deadline = max_seconds.map(|s| clock + Duration::from_secs(s));
    while report.executions < executions {
        if report.executions.is_multiple_of(4096) && deadline.is_some_and(|d| Instant::now() > d) {
            break;
        }
        let input = match queue.pop() {
            Some(seed) => seed,
            None if rng.chance(4) => target.generate(&mut rng),
            None => {
                let mut data = corpus[rng.below(corpus.len())].clone();
                mutate(&mut rng, &mut data, &corpus, dict, max_len);
                if rng.chance(2) {
                    let png_at =
                        usize::from(matches!(target, Target::LabelmapGray | Target::LabelmapRgb));
                    if let Some(png) = data.get_mut(png_at..) {
                        fix_png_crcs(png);
                    }
                }
                data
            }
        };
        if let Ok(mut slot) = current.input.lock() {
            slot.clear();
            slot.extend_from_slice(&input);
        }
        if let Ok(mut m) = LAST_PANIC.lock() {
            m.clear();
        }
        let base = facesvg::heap::mark();
        let started = Instant::now();
        current
            .started_ns
            .store(clock.elapsed().as_nanos() as u64 | 1, Relaxed);
        let result = panic::catch_unwind(AssertUnwindSafe(|| target.run(&input, &limits)));
        current.started_ns.store(0, Relaxed);
        let took = started.elapsed();
        let peak = facesvg::heap::peak_since(base);
        report.executions += 1;
        report.slowest = report.slowest.max(took);
        report.peak = report.peak.max(peak);

        let failure = match &result {
            Err(_) => Some("panic"),
            Ok(_) if took > slow => Some("slow"),
            Ok(_) if peak > target.budget(&limits, input.len()) => Some("memory"),
            Ok(_) => None,
        };
        if let Some(kind) = failure {
            report.failures += 1;
            let path = save_failure(target, kind, &input);
            let what = LAST_PANIC.lock().map(|m| m.clone()).unwrap_or_default();
            eprintln!(
                "[fuzz] {}: {kind} ({} bytes in, {:.1} ms, {} KiB peak) {what}; saved to {}",
                target.name(),
                input.len(),
                took.as_secs_f64() * 1e3,
                peak / 1024,
                path.display()
            );
            if report.failures >= 20 {
                break;
            }
            continue;
        }
        if let Ok(outcome) = result {
            if seen.insert(outcome) && corpus.len() < 4096 && report.executions > seeds as u64 {
                corpus.push(input);
            }
        }
    }
    report.accepted = ACCEPTED.load(Relaxed);
    report.outcomes = seen.len();
    report.corpus = corpus.len();
    report.elapsed = clock.elapsed();
    report
}

static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

/// An execution longer than this is a hang: 1 s, or `FUZZ_SLOW_MS` (the test
/// command's smoke run uses a debug build on a busy machine, and allows more).
fn slow_limit() -> Duration {
    let ms = std::env::var("FUZZ_SLOW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    Duration::from_millis(ms)
}

fn write_seeds() {
    let mut rng = Rng(0x5eed);
    for target in TARGETS {
        let dir = corpus_dir(target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        let mut seeds: Vec<Vec<u8>> = (0..8).map(|_| target.generate(&mut rng)).collect();
        seeds.extend(extra_seeds(target, &mut rng));
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("seed written");
        }
        println!("{}: {} seeds", target.name(), seeds.len());
    }
}

/// Hand-shaped seeds the generators would rarely produce.
fn extra_seeds(target: Target, rng: &mut Rng) -> Vec<Vec<u8>> {
    match target {
        Target::Multipart => vec![
            [b"CT: multipart/form-data; boundary=\"fuzz-boundary\"\n".as_slice(), &target.generate(rng)].concat(),
            b"--fuzz-boundary\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n\r\n--fuzz-boundary--".to_vec(),
        ],
        Target::Landmarks => vec![
            (0..68).map(|i| format!("{},{}\n", i % 60, i % 40)).collect::<String>().into_bytes(),
            format!("\u{feff}{}", json_points(68, rng, false)).into_bytes(),
        ],
        Target::Image => vec![
            // WebP lossy key frame header and an extended (VP8X) canvas.
            [b"RIFF\x1a\x00\x00\x00WEBPVP8 \x0e\x00\x00\x00\x10\x02\x00\x9d\x01\x2a\x40\x00\x30\x00".as_slice(), &[0; 6]].concat(),
            b"RIFF\x16\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00\x3f\x00\x00\x2f\x00\x00".to_vec(),
            // Baseline and progressive JPEG frame headers claiming 65535².
            b"\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01\xff\xd9".to_vec(),
            b"\xff\xd8\xff\xc2\x00\x0b\x08\x00\x10\x00\x10\x01\x01\x11\x00\xff\xd9".to_vec(),
        ],
        Target::LabelmapGray => {
            // An interlaced (Adam7) map: the encoder writes none, so flip the flag of a
            // 1×1 map, whose single pass is the same bytes.
            let mut one = png_gray(1, 1, &[3]);
            one[28] = 1;
            fix_png_crcs(&mut one);
            vec![[&[0u8][..], &one].concat()]
        }
        Target::LabelmapRgb => vec![[&[1u8][..], &png_encode(2, 1, png::ColorType::Rgb, None, &[204, 0, 0, 76, 153, 0])].concat()],
        Target::Key => vec![b"\x05cache\x00\x00\x00\x01\x06tenant\x02\x03a:b\x01%".to_vec()],
        Target::Message => vec![b"{\"v\":2}".to_vec(), b"{\"v\":1,\"task_id\":\"00000000-0000-0000-0000-000000000000\",\"tenant\":\"t\",\"input_hash\":\"\",\"inputs\":{\"kind\":\"s3\",\"key\":\"k\"}}".to_vec()],
    }
}

fn usage() -> ! {
    let names: Vec<_> = TARGETS.iter().map(|t| t.name()).collect();
    eprintln!(
        "usage: fuzz run TARGET EXECUTIONS [--max-seconds S] [--seed N] | replay TARGET FILE… | seed\ntargets: {}",
        names.join(", ")
    );
    std::process::exit(2);
}

fn main() {
    panic::set_hook(Box::new(|info| {
        if let Ok(mut m) = LAST_PANIC.lock() {
            *m = info.to_string();
        }
    }));
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("seed") => write_seeds(),
        Some("run") => {
            let target = args
                .get(1)
                .and_then(|t| Target::parse(t))
                .unwrap_or_else(|| usage());
            let executions: u64 = args
                .get(2)
                .and_then(|n| n.replace('_', "").parse().ok())
                .unwrap_or_else(|| usage());
            let flag = |name: &str| {
                args.iter()
                    .position(|a| a == name)
                    .and_then(|i| args.get(i + 1))
                    .and_then(|v| v.parse().ok())
            };
            let report = fuzz(
                target,
                executions,
                flag("--max-seconds"),
                flag("--seed").unwrap_or(1),
            );
            println!(
                "[fuzz] {:<14} executions {:>11}  accepted {:>10}  failures {}  outcomes {:>4}  corpus {:>4}  peak {:>6} KiB  slowest {:>7.2} ms  {:>6.1} s  ({:.0}/s)",
                target.name(),
                report.executions,
                report.accepted,
                report.failures,
                report.outcomes,
                report.corpus,
                report.peak / 1024,
                report.slowest.as_secs_f64() * 1e3,
                report.elapsed.as_secs_f64(),
                report.executions as f64 / report.elapsed.as_secs_f64()
            );
            if report.failures > 0 {
                std::process::exit(1);
            }
        }
        Some("replay") => {
            let target = args
                .get(1)
                .and_then(|t| Target::parse(t))
                .unwrap_or_else(|| usage());
            let limits = Limits::default();
            for file in &args[2..] {
                let data = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
                let r = panic::catch_unwind(AssertUnwindSafe(|| target.run(&data, &limits)));
                let what = LAST_PANIC.lock().map(|m| m.clone()).unwrap_or_default();
                println!(
                    "{file}: {}",
                    if r.is_ok() {
                        "ok".to_owned()
                    } else {
                        format!("panic: {what}")
                    }
                );
            }
        }
        _ => usage(),
    }
}
