//! The hardest label maps within the input limits, one family per stage of a
//! render, so that the render budget's promises (time and memory) can be measured
//! on them: `facesvg-probe` builds them at full size, `tests/worst_maps.rs` at sizes
//! a debug build renders in seconds.
//!
//! Each family aims at one stage's cost and, where a limit guards it, comes in two
//! variants: just under the limit (the most work that is rendered) and just over it
//! (refused as late as possible, after the most work that is thrown away).

use crate::input::LabelMap;
use crate::labels;

use super::synthetic::Rng;

/// The largest map the input limits admit with the longest rows: 8192 px wide
/// (`MAX_IMAGE_SIDE`) and as tall as 40 MP (`MAX_IMAGE_PIXELS`) allows.
pub const WIDEST: (u32, u32) = (8192, 4882);

/// How a map travels: label numbers, or colours of the CelebAMask-HQ palette.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Grey,
    Rgb,
    Rgba,
}

/// A map and how it is sent.
#[derive(Debug, Clone)]
pub struct WorstMap {
    pub map: LabelMap,
    pub encoding: Encoding,
}

impl WorstMap {
    pub fn grey(map: LabelMap) -> Self {
        WorstMap {
            map,
            encoding: Encoding::Grey,
        }
    }

    /// The PNG a client would send, as small as the encoder makes it.
    pub fn png(&self) -> Vec<u8> {
        let (color, channels) = match self.encoding {
            Encoding::Grey => (png::ColorType::Grayscale, 1),
            Encoding::Rgb => (png::ColorType::Rgb, 3),
            Encoding::Rgba => (png::ColorType::Rgba, 4),
        };
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.map.width, self.map.height);
        encoder.set_color(color);
        encoder.set_compression(png::Compression::High);
        let written = encoder.write_header().and_then(|mut writer| {
            // Row by row, so that a 40 MP RGBA map never exists as one buffer.
            let mut stream = writer.stream_writer()?;
            let mut row = Vec::with_capacity(self.map.width as usize * channels);
            for labels in self.map.labels.chunks_exact(self.map.width as usize) {
                row.clear();
                for &l in labels {
                    match self.encoding {
                        Encoding::Grey => row.push(l),
                        _ => {
                            row.extend_from_slice(&labels::fill(l));
                            if self.encoding == Encoding::Rgba {
                                row.push(255);
                            }
                        }
                    }
                }
                std::io::Write::write_all(&mut stream, &row)?;
            }
            stream.finish()
        });
        if let Err(e) = written {
            unreachable!("encoding into memory cannot fail: {e}");
        }
        out
    }
}

fn blank(w: u32, h: u32) -> LabelMap {
    LabelMap {
        width: w,
        height: h,
        labels: vec![0; w as usize * h as usize],
    }
}

/// Every pixel one label: the decoder's work at its most (for RGB, `label` should be
/// the class whose colour comes last in the palette) and the tracer's least.
pub fn uniform(w: u32, h: u32, label: u8) -> LabelMap {
    LabelMap {
        width: w,
        height: h,
        labels: vec![label; w as usize * h as usize],
    }
}

/// Labels 1 and 2 alternating on every pixel: four border edges per pixel, refused
/// by the edge count within the first rows.
pub fn checkerboard(w: u32, h: u32) -> LabelMap {
    let labels = (0..h)
        .flat_map(|y| (0..w).map(move |x| 1 + ((x + y) % 2) as u8))
        .collect();
    LabelMap {
        width: w,
        height: h,
        labels,
    }
}

/// Sparse noise: each pixel label 1 with probability `1 / one_in`, else background.
/// A stream the decoder inflates mostly literal by literal.
pub fn noise(w: u32, h: u32, one_in: u64, seed: u64) -> LabelMap {
    let mut rng = Rng(seed | 1);
    let labels = (0..u64::from(w) * u64::from(h))
        .map(|_| u8::from(rng.below(one_in) == 0))
        .collect();
    LabelMap {
        width: w,
        height: h,
        labels,
    }
}

/// Vertical 1-px lines of label 1, `pitch` px apart, full height: as many as make
/// `edges` border edges in all (each line is one outline of `2h + 2`), spread evenly
/// over the rows so that a map over the edge limit breaks it only in its last row.
pub fn vertical_lines(w: u32, h: u32, edges: u64) -> LabelMap {
    let mut map = blank(w, h);
    let per_line = 2 * u64::from(h) + 2;
    let lines = edges.div_ceil(per_line).min(u64::from(w).div_ceil(2)) as usize;
    let pitch = (w as usize / lines.max(1)).max(2);
    for y in 0..h as usize {
        let row = &mut map.labels[y * w as usize..(y + 1) * w as usize];
        for x in (0..lines).map(|i| i * pitch) {
            row[x] = 1;
        }
    }
    map
}

/// `count` corridors of label 1, each 1 px wide and folded back and forth across the
/// map (rows 2 px apart, joined at alternate ends), each with one outline of
/// `loop_edges` unit edges (rounded down to even): the longest single outline, walked
/// and simplified as a whole, that the fewest bytes of PNG can carry. A margin of
/// background keeps each outline one chain (the image's edge would cut it).
pub fn corridors(w: u32, h: u32, count: u32, loop_edges: u64) -> LabelMap {
    let mut map = blank(w, h);
    let (wu, hu) = (w as usize, h as usize);
    let (x0, x1) = (1, wu - 1);
    // A path of p pixels that touches itself nowhere but between neighbours along it
    // has an outline of 2p + 2 edges.
    let pixels = (loop_edges.saturating_sub(2) / 2) as usize;
    let mut y = 1usize;
    for _ in 0..count {
        let mut left = pixels;
        let mut rightwards = true;
        while left > 0 && y + 1 < hu {
            let run = left.min(x1 - x0);
            for i in 0..run {
                let x = if rightwards { x0 + i } else { x1 - 1 - i };
                map.labels[y * wu + x] = 1;
            }
            left -= run;
            if left > 0 && y + 3 < hu {
                // The fold: one pixel below the row's last.
                let x = if rightwards { x1 - 1 } else { x0 };
                map.labels[(y + 1) * wu + x] = 1;
                left -= 1;
                y += 2;
                rightwards = !rightwards;
            } else {
                break;
            }
        }
        // The next corridor starts two rows further down.
        y += 4;
    }
    map
}

/// `count` islands, each a bar of `len` × 1 px (`2 len + 2` edges, one outline),
/// on a lattice with one background pixel between them, labels cycling through the
/// 18 classes so that the SVG has every path: the most outlines (and SVG) per edge.
pub fn islands(w: u32, h: u32, count: u64, len: u32) -> LabelMap {
    let mut map = blank(w, h);
    let (wu, len) = (w as usize, len as usize);
    let per_row = (wu + 1) / (len + 1);
    let mut placed = 0u64;
    let mut label = 0u8;
    'rows: for y in (0..h as usize).step_by(2) {
        for i in 0..per_row {
            if placed == count {
                break 'rows;
            }
            label = label % 18 + 1;
            let x = i * (len + 1);
            map.labels[y * wu + x..y * wu + x + len].fill(label);
            placed += 1;
        }
    }
    map
}

/// Bands of label 1, two rows tall, whose top row has a tooth at every other pixel:
/// outlines that simplification can hardly shorten (the most points per edge).
/// `bands` of them, three rows apart, each one outline of about `3 w` edges, inside
/// a margin of background.
pub fn serrated(w: u32, h: u32, bands: u32) -> LabelMap {
    let mut map = blank(w, h);
    let wu = w as usize;
    for b in 0..bands as usize {
        let y = 1 + b * 3;
        if y + 2 >= h as usize {
            break;
        }
        for x in (1..wu - 1).step_by(2) {
            map.labels[y * wu + x] = 1;
        }
        map.labels[(y + 1) * wu + 1..(y + 2) * wu - 1].fill(1);
    }
    map
}

/// Outlines of at most `loop_edges` edges each, `total_edges` in all, whose walls
/// are random staircases: bands three rows tall, flat below and 1–3 px high above
/// (a random walk), joined at alternate ends into regions inside a margin of
/// background. The simplifier's hardest long chains: every step is a corner it must
/// judge.
pub fn jagged(w: u32, h: u32, loop_edges: u64, total_edges: u64, seed: u64) -> LabelMap {
    let mut map = blank(w, h);
    let (wu, hu) = (w as usize, h as usize);
    let mut rng = Rng(seed | 1);
    // Columns 1..w-1: heights[i] is column 1 + i.
    let inner = wu - 2;
    let mut heights = vec![3u8; inner];
    let (mut edges, mut total) = (0u64, 0u64);
    let mut y0 = 1usize;
    let mut band = 0usize;
    while y0 + 4 <= hu {
        for x in 1..inner.saturating_sub(1) {
            let step = rng.below(3) as i16 - 1;
            heights[x] = (i16::from(heights[x - 1]) + step).clamp(1, 3) as u8;
        }
        // Both ends full height, so that the folds join the bands.
        heights[0] = 3;
        heights[inner - 1] = 3;
        let steps: u64 = heights
            .windows(2)
            .map(|p| u64::from(p[0].abs_diff(p[1])))
            .sum();
        let band_edges = 2 * inner as u64 + 6 + steps;
        if total + band_edges > total_edges {
            break;
        }
        if edges + band_edges > loop_edges {
            // This outline is full: the band starts the next one.
            (edges, band) = (0, 0);
        }
        for (i, &hx) in heights.iter().enumerate() {
            for y in y0 + 3 - usize::from(hx)..y0 + 3 {
                map.labels[y * wu + 1 + i] = 1;
            }
        }
        if band > 0 {
            // The fold from the band above (through its background row) adds two
            // side edges and removes two: the outline is the bands' sum.
            let x = if band % 2 == 1 { wu - 2 } else { 1 };
            map.labels[(y0 - 1) * wu + x] = 1;
        }
        edges += band_edges;
        total += band_edges;
        band += 1;
        y0 += 4;
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::budget::{count_edges, RenderBudget};
    use crate::render::trace;

    fn edges(map: &LabelMap) -> u64 {
        count_edges(map, &RenderBudget::UNLIMITED).unwrap().edges
    }

    #[test]
    fn each_corridor_is_one_outline_of_the_length_asked() {
        let map = corridors(64, 64, 2, 1000);
        assert_eq!(edges(&map), 2000);
        let traced = trace::trace(&map);
        assert_eq!(traced.len(), 1);
        assert_eq!(traced[0].loops.len(), 2);
    }

    #[test]
    fn a_jagged_map_is_one_outline_within_its_length() {
        let map = jagged(200, 64, 5000, 5000, 3);
        let e = edges(&map);
        assert!(e <= 5000 && e > 4000, "{e}");
        assert_eq!(trace::trace(&map)[0].loops.len(), 1);
        let map = jagged(200, 100, 2000, 6000, 3);
        assert!(edges(&map) <= 6000);
        assert!(trace::trace(&map)[0].loops.len() >= 3);
    }

    #[test]
    fn islands_and_lines_are_counted_as_asked() {
        let map = islands(100, 40, 300, 4);
        assert_eq!(edges(&map), 300 * 10);
        let rings: usize = trace::trace(&map).iter().map(|r| r.loops.len()).sum();
        assert_eq!(rings, 300);
        let map = vertical_lines(100, 10, 200);
        assert_eq!(edges(&map), 10 * 22);
    }

    #[test]
    fn palette_maps_decode_to_their_labels() {
        let limits = crate::limits::Limits::default();
        let map = islands(40, 8, 60, 2);
        for encoding in [Encoding::Grey, Encoding::Rgb, Encoding::Rgba] {
            let png = WorstMap {
                map: map.clone(),
                encoding,
            }
            .png();
            let decoded = crate::input::segmentation::decode(&png, 40, 8, &limits).unwrap();
            assert_eq!(decoded, map, "{encoding:?}");
        }
    }
}
