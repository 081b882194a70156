//! Rendering: label map (or landmarks) → SVG of region masks, plus the result JSON.
//!
//! With a label map, every non-background class becomes one `<path>` whose subpaths
//! are the region's outer borders and holes ([`trace`]), filled even-odd. Without
//! one, regions come from the landmark groups ([`landmark_regions`]). The SVG's
//! viewBox is the frontal crop: the landmarks' face box with a margin, clamped to
//! the image; path coordinates stay in image pixels so they overlay the photo.

pub mod budget;
pub mod landmark_regions;
pub mod shared_borders;
pub mod simplify;
pub mod synthetic;
pub mod trace;
pub mod worst;

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use self::budget::{BudgetError, Limit, RenderBudget};
use crate::input::{CropMode, LabelMap, Landmarks, RenderParams};
use crate::labels;
use crate::RENDERER_VERSION;

/// Margin around the landmarks' box, as a share of its longer side.
const CROP_MARGIN: f64 = 0.25;

/// The SVG's bytes besides the path data, with room to spare: the header, a tag per
/// region (19 classes, ~140 bytes each) and the landmarks (478 dots of ~50 bytes).
const SVG_FRAME_BYTES: usize = 64 * 1024;

/// Path data is kept in blocks of this many bytes: it grows without ever copying
/// what it holds (a `String` that doubles holds both copies for a moment) and
/// leaves at most one block part-empty per label.
const PATH_BLOCK_BYTES: usize = 64 * 1024;

/// Text in blocks of [`PATH_BLOCK_BYTES`].
#[derive(Default)]
struct Blocks {
    blocks: Vec<String>,
}

impl Blocks {
    /// Room in the last block for `bytes` more, as a `String` has room for a push.
    #[inline]
    fn room_for(&mut self, bytes: usize) -> Option<&mut String> {
        self.blocks
            .last_mut()
            .filter(|b| b.capacity() - b.len() >= bytes)
    }

    #[cold]
    fn spill(&mut self, mut s: &str) -> std::fmt::Result {
        while !s.is_empty() {
            let room = self.blocks.last().map_or(0, |b| b.capacity() - b.len());
            if room == 0 {
                self.blocks.push(String::with_capacity(PATH_BLOCK_BYTES));
                continue;
            }
            // Path data is ASCII; a character is never split all the same.
            let mut take = room.min(s.len());
            while !s.is_char_boundary(take) {
                take -= 1;
            }
            if take == 0 {
                self.blocks.push(String::with_capacity(PATH_BLOCK_BYTES));
                continue;
            }
            if let Some(block) = self.blocks.last_mut() {
                block.push_str(&s[..take]);
            }
            s = &s[take..];
        }
        Ok(())
    }
}

// Rings are written a character or a number at a time: while the last block has
// room, each write is a plain push.
impl std::fmt::Write for Blocks {
    #[inline]
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        match self.room_for(s.len()) {
            Some(block) => {
                block.push_str(s);
                Ok(())
            }
            None => self.spill(s),
        }
    }

    #[inline]
    fn write_char(&mut self, c: char) -> std::fmt::Result {
        match self.room_for(c.len_utf8()) {
            Some(block) => {
                block.push(c);
                Ok(())
            }
            None => self.spill(c.encode_utf8(&mut [0; 4])),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxPx {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionInfo {
    pub name: String,
    pub label: u8,
    /// Area in square pixels.
    pub area: f64,
    pub bbox: BoxPx,
    pub centroid: [f64; 2],
    pub paths: usize,
    pub points: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderResult {
    pub renderer_version: String,
    pub source: String,
    pub image: ImageSize,
    pub crop_box: BoxPx,
    pub regions: Vec<RegionInfo>,
    pub svg_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}

pub struct Rendered {
    pub svg: String,
    pub result: RenderResult,
    /// Where the time went: tracing the label map's borders (without simplifying
    /// them), simplifying the traced chains, and writing the SVG and the result.
    pub trace_ms: f64,
    pub simplify_ms: f64,
    pub svg_ms: f64,
}

pub struct RenderInput<'a> {
    pub width: u32,
    pub height: u32,
    pub landmarks: &'a Landmarks,
    pub label_map: Option<&'a LabelMap>,
    pub params: RenderParams,
}

/// Renders with no limits (trusted inputs, tests); the service uses [`render_within`].
pub fn render(input: &RenderInput<'_>) -> Rendered {
    match render_within(input, &RenderBudget::UNLIMITED) {
        Ok(r) => r,
        Err(e) => unreachable!("an unlimited budget cannot be exceeded: {e}"),
    }
}

/// Renders the SVG and its result, stopping as soon as the work exceeds `budget`.
pub fn render_within(
    input: &RenderInput<'_>,
    budget: &RenderBudget,
) -> Result<Rendered, BudgetError> {
    let started = std::time::Instant::now();
    let (traced, simplifying) = match input.label_map {
        Some(map) => {
            let mut paths = PathData::new(budget);
            let (regions, simplifying) = trace::trace_into(map, budget, &mut paths)?;
            (Some((regions, paths)), simplifying)
        }
        None => (None, std::time::Duration::ZERO),
    };
    let traced_ms = started.elapsed().as_secs_f64() * 1000.0;
    let simplify_ms = simplifying.as_secs_f64() * 1000.0;
    let crop = match input.params.crop {
        CropMode::Landmarks => crop_box(input.landmarks, input.width, input.height),
        CropMode::None => BoxPx {
            x: 0.0,
            y: 0.0,
            width: input.width.into(),
            height: input.height.into(),
        },
        CropMode::Face => traced
            .as_ref()
            .and_then(|(regions, _)| face_box(regions, input.width, input.height))
            .unwrap_or_else(|| crop_box(input.landmarks, input.width, input.height)),
    };
    // One buffer, header first, sized for the traced path data and what surrounds it
    // (the tags, at most 478 landmark dots): it never grows, so it never holds two
    // copies of itself. The SVG's budget is its size.
    let traced_bytes = traced.as_ref().map_or(0, |(_, p)| p.bytes);
    let mut svg = String::with_capacity(SVG_FRAME_BYTES + traced_bytes);
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"{} {} {} {}\" width=\"{}\" height=\"{}\" data-renderer=\"{}\">",
        num(crop.x),
        num(crop.y),
        num(crop.width),
        num(crop.height),
        num(crop.width),
        num(crop.height),
        RENDERER_VERSION
    );
    let _ = writeln!(
        svg,
        "<g class=\"regions\" fill-rule=\"evenodd\" fill-opacity=\"{}\">",
        num(input.params.opacity())
    );
    let written = |svg: &String| budget.check(Limit::SvgBytes, svg.len() as u64);
    let mut regions = Vec::new();
    let source = match traced {
        Some((traced, mut paths)) => {
            for region in traced {
                let name = labels::name(region.label).unwrap_or("unknown");
                let l = usize::from(region.label);
                open_path(&mut svg, name, region.label);
                // Each block of path data is dropped once copied, so the SVG fills as
                // the path data drains.
                for block in std::mem::take(&mut paths.data[l].blocks) {
                    svg.push_str(&block);
                }
                written(&svg)?;
                svg.push_str("\"/>\n");
                let [x0, y0, x1, y1] = region.bbox;
                regions.push(RegionInfo {
                    name: name.to_owned(),
                    label: region.label,
                    area: region.area as f64,
                    bbox: BoxPx {
                        x: x0.into(),
                        y: y0.into(),
                        width: (x1 - x0).into(),
                        height: (y1 - y0).into(),
                    },
                    centroid: [round2(region.centroid[0]), round2(region.centroid[1])],
                    paths: paths.rings[l],
                    points: paths.points[l],
                });
            }
            "segmentation_map"
        }
        None => {
            for region in landmark_regions::regions(input.landmarks) {
                open_path(&mut svg, region.name, region.label);
                let (mut area, mut cx, mut cy, mut points) = (0.0, 0.0, 0.0, 0);
                for (i, ring) in region.rings.iter().enumerate() {
                    write_polygon(&mut svg, ring);
                    points += ring.len();
                    // The first ring is the outline, later ones are holes.
                    let (a, x, y) = landmark_regions::ring_moments(ring);
                    let sign = if (i == 0) == (a >= 0.0) { 1.0 } else { -1.0 };
                    area += sign * a;
                    cx += sign * x;
                    cy += sign * y;
                }
                svg.push_str("\"/>\n");
                written(&svg)?;
                let (x0, y0, x1, y1) =
                    landmark_regions::bounds(region.rings.iter().flatten().copied());
                let centroid = if area.abs() > 1e-9 {
                    [cx / area, cy / area]
                } else {
                    [(x0 + x1) / 2.0, (y0 + y1) / 2.0]
                };
                regions.push(RegionInfo {
                    name: region.name.to_owned(),
                    label: region.label,
                    area: round2(area.abs()),
                    bbox: BoxPx {
                        x: round2(x0),
                        y: round2(y0),
                        width: round2(x1 - x0),
                        height: round2(y1 - y0),
                    },
                    centroid: [round2(centroid[0]), round2(centroid[1])],
                    paths: region.rings.len(),
                    points,
                });
            }
            "landmarks"
        }
    };
    svg.push_str("</g>\n");
    if input.params.show_landmarks {
        let r = (crop.width.max(crop.height) * 0.004).max(1.0);
        let _ = writeln!(svg, "<g class=\"landmarks\" fill=\"#00e676\">");
        for (x, y) in input.landmarks.iter_px() {
            let _ = writeln!(
                svg,
                "<circle cx=\"{}\" cy=\"{}\" r=\"{}\"/>",
                num(x),
                num(y),
                num(r)
            );
        }
        svg.push_str("</g>\n");
    }
    svg.push_str("</svg>\n");
    written(&svg)?;

    let result = RenderResult {
        renderer_version: RENDERER_VERSION.to_owned(),
        source: source.to_owned(),
        image: ImageSize {
            width: input.width,
            height: input.height,
        },
        crop_box: crop,
        regions,
        svg_bytes: svg.len(),
    };
    Ok(Rendered {
        svg,
        result,
        trace_ms: (traced_ms - simplify_ms).max(0.0),
        simplify_ms,
        svg_ms: started.elapsed().as_secs_f64() * 1000.0 - traced_ms,
    })
}

/// The landmarks' box grown by [`CROP_MARGIN`] on every side, in whole pixels,
/// clamped to the image.
pub fn crop_box(landmarks: &Landmarks, width: u32, height: u32) -> BoxPx {
    let (x0, y0, x1, y1) = landmark_regions::bounds(landmarks.iter_px());
    margin_box(x0, y0, x1, y1, width, height)
}

/// The pixel box of the face classes among `regions`, grown and clamped as the
/// landmarks' box is; `None` if there are no face pixels.
pub fn face_box(regions: &[trace::Region], width: u32, height: u32) -> Option<BoxPx> {
    let face = regions.iter().filter(|r| labels::is_face_class(r.label));
    let [x0, y0, x1, y1] = face.map(|r| r.bbox).reduce(|a, b| {
        [
            a[0].min(b[0]),
            a[1].min(b[1]),
            a[2].max(b[2]),
            a[3].max(b[3]),
        ]
    })?;
    Some(margin_box(
        x0.into(),
        y0.into(),
        x1.into(),
        y1.into(),
        width,
        height,
    ))
}

fn margin_box(x0: f64, y0: f64, x1: f64, y1: f64, width: u32, height: u32) -> BoxPx {
    let margin = (x1 - x0).max(y1 - y0) * CROP_MARGIN;
    let (w, h) = (f64::from(width), f64::from(height));
    let cx0 = (x0 - margin).floor().clamp(0.0, w - 1.0);
    let cy0 = (y0 - margin).floor().clamp(0.0, h - 1.0);
    let cx1 = (x1 + margin).ceil().clamp(cx0 + 1.0, w);
    let cy1 = (y1 + margin).ceil().clamp(cy0 + 1.0, h);
    BoxPx {
        x: cx0,
        y: cy0,
        width: cx1 - cx0,
        height: cy1 - cy0,
    }
}

/// Each label's rings written as path data as the tracer finds them, with their
/// counts: the text is a fraction of the size of the points it replaces.
struct PathData<'b> {
    data: Vec<Blocks>,
    rings: [usize; 256],
    points: [usize; 256],
    /// Path data written so far, all labels: checked against the SVG's budget as it
    /// grows, since all of it ends up in the SVG.
    bytes: usize,
    budget: &'b RenderBudget,
}

impl<'b> PathData<'b> {
    fn new(budget: &'b RenderBudget) -> Self {
        PathData {
            data: (0..256).map(|_| Blocks::default()).collect(),
            rings: [0; 256],
            points: [0; 256],
            bytes: 0,
            budget,
        }
    }
}

impl trace::Rings for PathData<'_> {
    fn ring(&mut self, label: u8, ring: &[simplify::P]) -> Result<(), BudgetError> {
        let l = usize::from(label);
        // A long ring's text stops where the budget does, rather than being written
        // whole and refused after.
        let room = (self.budget.max_svg_bytes)
            .saturating_sub(self.bytes as u64)
            .try_into()
            .unwrap_or(usize::MAX);
        let mut counted = Counted {
            out: &mut self.data[l],
            bytes: 0,
            room,
        };
        let written = write_ring(&mut counted, ring);
        self.bytes += counted.bytes;
        self.rings[l] += 1;
        self.points[l] += ring.len();
        if written.is_err() {
            return self
                .budget
                .check(Limit::SvgBytes, self.budget.max_svg_bytes.saturating_add(1));
        }
        self.budget.check(Limit::SvgBytes, self.bytes as u64)
    }
}

/// A writer that counts what passes through it, and refuses text beyond `room`.
struct Counted<'a, W> {
    out: &'a mut W,
    bytes: usize,
    room: usize,
}

impl<W: Write> Write for Counted<'_, W> {
    #[inline]
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.bytes + s.len() > self.room {
            return Err(std::fmt::Error);
        }
        self.bytes += s.len();
        self.out.write_str(s)
    }

    #[inline]
    fn write_char(&mut self, c: char) -> std::fmt::Result {
        if self.bytes + c.len_utf8() > self.room {
            return Err(std::fmt::Error);
        }
        self.bytes += c.len_utf8();
        self.out.write_char(c)
    }
}

fn open_path(out: &mut String, name: &str, label: u8) {
    let [r, g, b] = labels::fill(label);
    let _ = write!(
        out,
        "<path id=\"region-{name}\" class=\"region {name}\" data-label=\"{label}\" fill=\"#{r:02x}{g:02x}{b:02x}\" d=\""
    );
}

/// A ring in doubled coordinates as `M x y` and relative moves: `h`/`v` for
/// axis-aligned steps, `l` otherwise, repeated commands without their letter, no
/// separator before a minus sign, and halves written as `.5`.
fn write_ring(out: &mut impl Write, ring: &[simplify::P]) -> std::fmt::Result {
    let Some(&(x0, y0)) = ring.first() else {
        return Ok(());
    };
    let mut text = Staged::new(out);
    text.byte(b'M')?;
    text.half(x0, false)?;
    text.half(y0, true)?;
    let mut prev = (x0, y0);
    let mut last_cmd = b'M';
    for &(x, y) in &ring[1..] {
        let (dx, dy) = (x - prev.0, y - prev.1);
        let cmd = if dy == 0 {
            b'h'
        } else if dx == 0 {
            b'v'
        } else {
            b'l'
        };
        let repeat = cmd == last_cmd && cmd == b'l';
        if !repeat {
            text.byte(cmd)?;
        }
        match cmd {
            b'h' => text.half(dx, false)?,
            b'v' => text.half(dy, false)?,
            _ => {
                text.half(dx, repeat)?;
                text.half(dy, true)?;
            }
        }
        last_cmd = cmd;
        prev = (x, y);
    }
    text.byte(b'z')?;
    text.flush()
}

/// The text of k / 2 for k below 20 (`0`, `.5`, `1`, … `9.5`), padded to three
/// bytes, and its length.
const SMALL_HALVES: [([u8; 3], u8); 20] = {
    let mut t = [([0u8; 3], 0u8); 20];
    let mut k = 0;
    while k < 20 {
        let (whole, half) = (k / 2, k % 2 == 1);
        t[k] = match (whole, half) {
            (0, true) => ([b'.', b'5', 0], 2),
            (w, false) => ([b'0' + w as u8, 0, 0], 1),
            (w, true) => ([b'0' + w as u8, b'.', b'5'], 3),
        };
        k += 1;
    }
    t
};

/// Path text gathered on the stack and handed on a few hundred bytes at a time:
/// a number costs a few byte stores rather than a trip through `fmt`.
struct Staged<'w, W: Write> {
    out: &'w mut W,
    buf: [u8; 256],
    len: usize,
}

impl<'w, W: Write> Staged<'w, W> {
    /// The longest number: a separator, a sign, 19 digits and `.5`.
    const NUMBER: usize = 23;

    fn new(out: &'w mut W) -> Self {
        Staged {
            out,
            buf: [0; 256],
            len: 0,
        }
    }

    fn flush(&mut self) -> std::fmt::Result {
        // Only ASCII is ever staged.
        let text = std::str::from_utf8(&self.buf[..self.len]).map_err(|_| std::fmt::Error)?;
        self.out.write_str(text)?;
        self.len = 0;
        Ok(())
    }

    #[inline]
    fn byte(&mut self, b: u8) -> std::fmt::Result {
        if self.len == self.buf.len() {
            self.flush()?;
        }
        self.buf[self.len] = b;
        self.len += 1;
        Ok(())
    }

    /// Appends `v / 2` as the shortest SVG number, with a separator if one is needed.
    #[inline]
    fn half(&mut self, v: i64, separate: bool) -> std::fmt::Result {
        if self.len + Self::NUMBER > self.buf.len() {
            self.flush()?;
        }
        let at = self.len;
        // One bounds check for the whole number.
        let out = &mut self.buf[at..at + Self::NUMBER];
        let a = v.unsigned_abs();
        let mut n = 0;
        if v < 0 {
            out[0] = b'-';
            n = 1;
        } else if separate {
            out[0] = b' ';
            n = 1;
        }
        if a < 20 {
            // Most steps of a simplified outline are a few pixels: their text is
            // copied from a table.
            let (text, len) = SMALL_HALVES[a as usize];
            out[n..n + 3].copy_from_slice(&text);
            n += usize::from(len);
        } else {
            let mut digits = [0u8; 20];
            let mut whole = a / 2;
            let mut i = digits.len();
            loop {
                i -= 1;
                digits[i] = b'0' + (whole % 10) as u8;
                whole /= 10;
                if whole == 0 {
                    break;
                }
            }
            let count = digits.len() - i;
            out[n..n + count].copy_from_slice(&digits[i..]);
            n += count;
            if !a.is_multiple_of(2) {
                out[n..n + 2].copy_from_slice(b".5");
                n += 2;
            }
        }
        self.len = at + n;
        Ok(())
    }
}

fn write_polygon(out: &mut String, ring: &[(f64, f64)]) {
    for (i, &(x, y)) in ring.iter().enumerate() {
        out.push(if i == 0 { 'M' } else { 'L' });
        out.push_str(&num(x));
        out.push(' ');
        out.push_str(&num(y));
    }
    out.push('z');
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Shortest decimal with at most two fractional digits.
fn num(v: f64) -> String {
    let r = round2(v);
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        let s = format!("{r:.2}");
        s.trim_end_matches('0').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_data_written_as_traced_is_the_rings_written_after() {
        let map = synthetic::heavy_map(96, 7);
        let budget = RenderBudget::UNLIMITED;
        let traced = trace::trace(&map);
        let mut paths = PathData::new(&budget);
        let (regions, _) = trace::trace_into(&map, &budget, &mut paths).unwrap();
        assert_eq!(regions.len(), traced.len());
        let mut total = 0;
        for (r, t) in regions.iter().zip(&traced) {
            assert_eq!((r.label, r.area, r.bbox), (t.label, t.area, t.bbox));
            let mut want = String::new();
            for ring in &t.loops {
                write_ring(&mut want, ring).unwrap();
            }
            let l = usize::from(r.label);
            assert_eq!(paths.data[l].blocks.concat(), want, "label {l}");
            assert_eq!(paths.rings[l], t.loops.len());
            assert_eq!(paths.points[l], t.loops.iter().map(Vec::len).sum::<usize>());
            total += want.len();
        }
        assert_eq!(paths.bytes, total);
    }

    #[test]
    fn path_data_in_blocks_is_the_text_written_and_stops_at_the_budget() {
        let ring: Vec<simplify::P> = (0..40_000).map(|i| (i, (i * 7) % 13)).collect();
        let mut want = String::new();
        write_ring(&mut want, &ring).unwrap();
        assert!(want.len() > 2 * PATH_BLOCK_BYTES);
        let mut blocks = Blocks::default();
        for _ in 0..2 {
            write_ring(&mut blocks, &ring).unwrap();
        }
        assert_eq!(blocks.blocks.concat(), want.repeat(2));
        assert!(blocks
            .blocks
            .iter()
            .all(|b| b.capacity() == PATH_BLOCK_BYTES));

        let budget = RenderBudget {
            max_svg_bytes: want.len() as u64 + 10,
            ..RenderBudget::UNLIMITED
        };
        let mut paths = PathData::new(&budget);
        assert!(trace::Rings::ring(&mut paths, 1, &ring).is_ok());
        let over = trace::Rings::ring(&mut paths, 1, &ring).unwrap_err();
        assert_eq!(over.limit, Limit::SvgBytes);
        assert!(
            paths.bytes <= budget.max_svg_bytes as usize,
            "{}",
            paths.bytes
        );
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(3.10), "3.1");
        assert_eq!(num(-0.456), "-0.46");
    }

    #[test]
    fn rings_use_short_relative_moves() {
        let mut s = String::new();
        write_ring(&mut s, &[(6, 2), (6, 6), (2, 6), (2, 2)]).unwrap();
        assert_eq!(s, "M3 1v2h-2v-2z");
        let mut s = String::new();
        write_ring(&mut s, &[(0, 0), (1, 0), (15, 14), (16, 16), (0, 16)]).unwrap();
        assert_eq!(s, "M0 0h.5l7 7 .5 1h-8z");
    }

    #[test]
    fn mediapipe_meshes_render_regions_from_their_contours() {
        // 478 points on a spiral: the contour index lists must all be in range.
        let points = (0..478)
            .map(|i| {
                let t = i as f64 * 0.1;
                [
                    ((100.0 + t.cos() * (10.0 + t)) * 1000.0) as i32,
                    ((100.0 + t.sin() * (10.0 + t)) * 1000.0) as i32,
                ]
            })
            .collect();
        let landmarks = Landmarks { points };
        let out = render(&RenderInput {
            width: 200,
            height: 200,
            landmarks: &landmarks,
            label_map: None,
            params: RenderParams::default(),
        });
        let names: Vec<&str> = out.result.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["skin", "nose", "r_brow", "l_brow", "r_eye", "l_eye", "u_lip", "l_lip", "mouth"]
        );
        let labels: Vec<u8> = out.result.regions.iter().map(|r| r.label).collect();
        assert_eq!(labels, [1, 10, 3, 2, 5, 4, 12, 13, 11]);
        assert_eq!(out.svg.matches("<path").count(), 9);
    }
}
