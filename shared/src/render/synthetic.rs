//! Synthetic label maps for benchmarks and stress tests: deterministic, any size,
//! and built to exercise the tracer where it is hardest — all 19 classes, holes
//! (glasses, lips), islands inside holes (eyes inside the glasses' rims), strokes
//! 1–5 px wide and specks of 1–4 px scattered everywhere.
//!
//! Besides the face ([`face_map`]) and its hardest form ([`heavy_map`]): a mosaic of
//! wavy blobs ([`blob_map`]), as a face parser's output looks at camera resolution
//! (long staircases along curves), and ragged cells ([`ragged_map`]), whose borders
//! are noise, as a hostile caller could send.

use crate::input::LabelMap;

/// xorshift64*: the same maps on every platform, for these and `worst`'s.
pub(crate) struct Rng(pub(crate) u64);

/// `count` squares of 1 to `max_side` px of random labels (background included) at
/// random places of a `size`² map.
fn squares(labels: &mut [u8], size: usize, count: usize, max_side: u64, rng: &mut Rng) {
    for _ in 0..count {
        let label = rng.below(19) as u8;
        let s = 1 + rng.below(max_side) as usize;
        let (x, y) = (
            rng.below(size as u64) as usize,
            rng.below(size as u64) as usize,
        );
        for py in y..(y + s).min(size) {
            for px in x..(x + s).min(size) {
                labels[py * size + px] = label;
            }
        }
    }
}

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        // xorshift64*: deterministic across platforms, no dependency.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// A closed wavy outline around a centre: its radius at angle θ is
/// `r · (1 + Σ a_k sin(f_k θ + φ_k))`, a few harmonics of small amplitude, so the
/// outline is smooth and its border a long staircase along a curve.
#[derive(Clone, Copy)]
struct Wavy {
    cx: f64,
    cy: f64,
    r: f64,
    harmonics: [(f64, f64, f64); 3],
}

impl Wavy {
    fn random(cx: f64, cy: f64, r: f64, rng: &mut Rng) -> Self {
        let mut harmonics = [(0.0, 0.0, 0.0); 3];
        for (k, h) in harmonics.iter_mut().enumerate() {
            *h = (
                rng.range(0.02, 0.16) / (k + 1) as f64,
                (2 + rng.below(6) + 2 * k as u64) as f64,
                rng.range(0.0, std::f64::consts::TAU),
            );
        }
        Wavy {
            cx,
            cy,
            r,
            harmonics,
        }
    }

    /// The same outline shrunk about its centre (a hole or an island in it).
    fn scaled(self, s: f64) -> Self {
        Wavy {
            r: self.r * s,
            ..self
        }
    }

    /// Whether the pixel centre (x, y) lies inside.
    fn contains(&self, x: f64, y: f64) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let d2 = dx * dx + dy * dy;
        let most = self.r * 1.5;
        if d2 > most * most {
            return false;
        }
        let theta = dy.atan2(dx);
        let wave: f64 = self
            .harmonics
            .iter()
            .map(|&(a, f, phi)| a * (f * theta + phi).sin())
            .sum();
        let r = self.r * (1.0 + wave);
        d2 <= r * r
    }
}

/// Paints `label` on every pixel of the `size`² map within `radius` of the point
/// (x, y); a stroke 1 px wide paints the one pixel under the point.
fn dab(labels: &mut [u8], size: usize, (x, y): (f64, f64), width: u32, label: u8) {
    if width <= 1 {
        if x >= 0.0 && y >= 0.0 && (x as usize) < size && (y as usize) < size {
            labels[y as usize * size + x as usize] = label;
        }
        return;
    }
    let r = f64::from(width) / 2.0;
    let (x0, x1) = ((x - r).floor().max(0.0), (x + r).ceil().min(size as f64));
    let (y0, y1) = ((y - r).floor().max(0.0), (y + r).ceil().min(size as f64));
    for py in y0 as usize..y1.max(y0) as usize {
        for px in x0 as usize..x1.max(x0) as usize {
            let (dx, dy) = (px as f64 + 0.5 - x, py as f64 + 0.5 - y);
            if dx * dx + dy * dy <= r * r {
                labels[py * size + px] = label;
            }
        }
    }
}

/// A mosaic of overlapping wavy blobs of all 18 classes, as a face parser's map
/// looks at camera resolution: borders are long pixel staircases along curves.
/// Most blobs have a wavy hole (showing what lies beneath), some holding an island
/// of another class; over them run thin curved strokes 1–5 px wide, and specks of
/// 1–4 px. Blobs are 12 to about `n/12` px across in radius, and their number grows
/// with the map's area, so a larger map is more of the same.
pub fn blob_map(n: u32, seed: u64) -> LabelMap {
    let size = n as usize;
    let nf = f64::from(n);
    let mut labels = vec![0u8; size * size];
    let mut rng = Rng(seed.wrapping_mul(0xA076_1D64_78BD_642F) | 1);
    let blobs = 24 + size * size / 12_000;
    for i in 0..blobs {
        // Every class in turn, from a random start: all 18 are always there.
        let label = 1 + ((i as u64 + seed) % 18) as u8;
        let r = rng.range(4.0, 12.0 + nf / 12.0);
        let outline = Wavy::random(rng.range(0.0, nf), rng.range(0.0, nf), r, &mut rng);
        let hole = (rng.below(10) < 7).then(|| {
            let mut h = Wavy::random(outline.cx, outline.cy, r * rng.range(0.25, 0.55), &mut rng);
            h.cx += rng.range(-0.15, 0.15) * r;
            h.cy += rng.range(-0.15, 0.15) * r;
            h
        });
        let island = hole
            .filter(|_| rng.below(10) < 4)
            .map(|h| (h.scaled(rng.range(0.3, 0.6)), 1 + rng.below(18) as u8));
        let reach = r * 1.5 + 1.0;
        let (x0, x1) = (
            (outline.cx - reach).max(0.0) as usize,
            ((outline.cx + reach).ceil().max(0.0) as usize).min(size),
        );
        let (y0, y1) = (
            (outline.cy - reach).max(0.0) as usize,
            ((outline.cy + reach).ceil().max(0.0) as usize).min(size),
        );
        for py in y0..y1 {
            let y = py as f64 + 0.5;
            for px in x0..x1 {
                let x = px as f64 + 0.5;
                if !outline.contains(x, y) {
                    continue;
                }
                let cell = &mut labels[py * size + px];
                match (&hole, &island) {
                    (_, Some((isl, l))) if isl.contains(x, y) => *cell = *l,
                    (Some(h), _) if h.contains(x, y) => {}
                    _ => *cell = label,
                }
            }
        }
    }
    // Thin curved strokes 1–5 px wide (hair strands, wrinkles, glasses' arms).
    for _ in 0..(size / 6).max(4) {
        let label = 1 + rng.below(18) as u8;
        let width = 1 + rng.below(5) as u32;
        let (mut x, mut y) = (rng.range(0.0, nf), rng.range(0.0, nf));
        let mut angle = rng.range(0.0, std::f64::consts::TAU);
        let bend = rng.range(-0.03, 0.03);
        let wobble = rng.range(0.0, 0.04);
        let len = 16.0 + rng.range(0.0, nf / 5.0);
        // Half-pixel steps: a 1-px stroke stays 8-connected.
        let mut t = 0.0;
        while t < len {
            dab(&mut labels, size, (x, y), width, label);
            angle += (bend + wobble * (t * 0.05).sin()) * 0.5;
            x += 0.5 * angle.cos();
            y += 0.5 * angle.sin();
            t += 0.5;
        }
    }
    // Specks of 1–4 px (1×1, 1×2, 2×1, 2×2) of any class.
    for _ in 0..(size * size / 2_000).max(8) {
        let label = 1 + rng.below(18) as u8;
        let (sw, sh) = (1 + rng.below(2) as usize, 1 + rng.below(2) as usize);
        let (x, y) = (rng.below(n as u64) as usize, rng.below(n as u64) as usize);
        for py in y..(y + sh).min(size) {
            for px in x..(x + sw).min(size) {
                labels[py * size + px] = label;
            }
        }
    }
    LabelMap {
        width: n,
        height: n,
        labels,
    }
}

/// Cells of all 18 classes (about 48 px across, on a jittered grid) whose borders
/// are noise: each pixel takes the class of the cell nearest to itself moved by up
/// to 3 px in a random direction. Borders are ragged bands a few pixels wide, full
/// of specks, pinch points (two pixels of one class touching only at a corner) and
/// junctions, with no straight run for a simplifier to keep: what a hostile caller,
/// or a noisy parser, could send.
pub fn ragged_map(n: u32, seed: u64) -> LabelMap {
    const CELL: usize = 48;
    let size = n as usize;
    let mut rng = Rng(seed.wrapping_mul(0xE703_7ED1_A0B4_28DB) | 1);
    let cells = size.div_ceil(CELL);
    // One seed per grid cell, at a random place in it, with a class.
    let seeds: Vec<(f64, f64, u8)> = (0..cells * cells)
        .map(|i| {
            let (gx, gy) = ((i % cells) as f64, (i / cells) as f64);
            (
                (gx + rng.unit()) * CELL as f64,
                (gy + rng.unit()) * CELL as f64,
                1 + ((i as u64 + seed) % 18) as u8,
            )
        })
        .collect();
    let mut labels = vec![0u8; size * size];
    for py in 0..size {
        for px in 0..size {
            let x = px as f64 + 0.5 + rng.range(-3.0, 3.0);
            let y = py as f64 + 0.5 + rng.range(-3.0, 3.0);
            let (gx, gy) = (
                (x / CELL as f64).floor() as i64,
                (y / CELL as f64).floor() as i64,
            );
            let mut best = (f64::MAX, 0u8);
            for cy in gy - 1..=gy + 1 {
                for cx in gx - 1..=gx + 1 {
                    if cx < 0 || cy < 0 || cx as usize >= cells || cy as usize >= cells {
                        continue;
                    }
                    let (sx, sy, l) = seeds[cy as usize * cells + cx as usize];
                    let d = (sx - x).powi(2) + (sy - y).powi(2);
                    if d < best.0 {
                        best = (d, l);
                    }
                }
            }
            labels[py * size + px] = best.1;
        }
    }
    LabelMap {
        width: n,
        height: n,
        labels,
    }
}

/// An ellipse test in relative coordinates (0..1 of the map's side).
fn in_ellipse(x: f64, y: f64, cx: f64, cy: f64, rx: f64, ry: f64) -> bool {
    let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
    dx * dx + dy * dy <= 1.0
}

/// A square map of side `n` with a face-like layout of every class, plus strokes
/// and specks placed by `seed`.
pub fn face_map(n: u32, seed: u64) -> LabelMap {
    let size = n as usize;
    let mut labels = vec![0u8; size * size];
    let inv = 1.0 / f64::from(n);
    for py in 0..size {
        let y = (py as f64 + 0.5) * inv;
        for px in 0..size {
            let x = (px as f64 + 0.5) * inv;
            let wave = 0.02 * (x * 40.0).sin();
            let mut l = 0u8;
            if y > 0.86 + wave * 0.5 {
                l = 16; // cloth
            }
            if in_ellipse(x, y, 0.5, 0.85, 0.14, 0.2) && y < 0.9 {
                l = 14; // neck
            }
            if y > 0.8 && y < 0.81 + wave * 0.1 && (0.4..0.6).contains(&x) {
                l = 15; // necklace
            }
            if in_ellipse(x, y, 0.5, 0.38, 0.34, 0.36) {
                l = 17; // hair
            }
            if in_ellipse(x, y, 0.5, 0.1, 0.3, 0.1) {
                l = 18; // hat
            }
            if in_ellipse(x, y, 0.22, 0.5, 0.05, 0.09) {
                l = 8; // r_ear (subject's right: image left)
            }
            if in_ellipse(x, y, 0.78, 0.5, 0.05, 0.09) {
                l = 7; // l_ear
            }
            if in_ellipse(x, y, 0.78, 0.6, 0.012, 0.012)
                || in_ellipse(x, y, 0.22, 0.6, 0.012, 0.012)
            {
                l = 9; // earrings
            }
            if in_ellipse(x, y, 0.5, 0.5, 0.26, 0.33 + wave) {
                l = 1; // skin
            }
            for (cx, brow, eye) in [(0.39, 3u8, 5u8), (0.61, 2, 4)] {
                // Glasses: a rim (ring) whose hole holds the eye (an island).
                if in_ellipse(x, y, cx, 0.45, 0.085, 0.06)
                    && !in_ellipse(x, y, cx, 0.45, 0.07, 0.047)
                {
                    l = 6;
                }
                if in_ellipse(x, y, cx, 0.45, 0.045, 0.02) {
                    l = eye;
                }
                if in_ellipse(x, y, cx, 0.37 - (x - cx).abs() * 0.3, 0.07, 0.012) {
                    l = brow;
                }
            }
            if (0.485..0.515).contains(&x) && (0.44..0.6).contains(&y)
                || in_ellipse(x, y, 0.5, 0.6, 0.045, 0.025)
            {
                l = 10; // nose
            }
            if in_ellipse(x, y, 0.5, 0.7, 0.09, 0.04) {
                l = if y < 0.7 { 12 } else { 13 }; // lips around …
                if in_ellipse(x, y, 0.5, 0.7, 0.06, 0.012) {
                    l = 11; // … the mouth, a hole in them
                }
            }
            labels[py * size + px] = l;
        }
    }

    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // Strokes 1–5 px wide: hair strands and wrinkles of random classes.
    let strokes = (size / 8).max(4);
    for _ in 0..strokes {
        let label = 1 + rng.below(18) as u8;
        let width = 1 + rng.below(5) as i64;
        let (mut x, mut y) = (rng.below(n as u64) as f64, rng.below(n as u64) as f64);
        let angle = rng.below(628) as f64 / 100.0;
        let len = 8 + rng.below((n / 6).max(9) as u64);
        for _ in 0..len {
            for oy in 0..width {
                for ox in 0..width {
                    let (px, py) = (x as i64 + ox, y as i64 + oy);
                    if px >= 0 && py >= 0 && (px as usize) < size && (py as usize) < size {
                        labels[py as usize * size + px as usize] = label;
                    }
                }
            }
            x += angle.cos();
            y += angle.sin();
        }
    }
    // Specks of 1–4 px, about one per 500 px².
    squares(&mut labels, size, (size * size / 500).max(8), 4, &mut rng);
    LabelMap {
        width: n,
        height: n,
        labels,
    }
}

/// [`face_map`] made as hard as a label map gets for a tracer while still looking
/// like one: on top of the face, 1-px strokes that wander (8-connected, so they
/// meet the regions they cross at corners), islands of 1–3 px at one per 64 px²,
/// and mosaics of 2–4 px cells where five or six labels meet at every junction.
pub fn heavy_map(n: u32, seed: u64) -> LabelMap {
    let mut map = face_map(n, seed);
    let size = n as usize;
    let labels = &mut map.labels;
    let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    // Mosaics: patches of n/16 px with cells of 2–4 px, six labels each.
    let patch = (size / 16).max(8);
    for _ in 0..24 {
        let (px, py) = (rng.below(n as u64) as usize, rng.below(n as u64) as usize);
        let cell = 2 + rng.below(3) as usize;
        let palette: Vec<u8> = (0..6).map(|_| 1 + rng.below(18) as u8).collect();
        for y in py..(py + patch).min(size) {
            for x in px..(px + patch).min(size) {
                let c = (x / cell).wrapping_mul(7) ^ (y / cell).wrapping_mul(13);
                labels[y * size + x] = palette[c % palette.len()];
            }
        }
    }
    // Strokes 1 px wide: random walks that turn at every step.
    for _ in 0..(size / 2).max(8) {
        let label = 1 + rng.below(18) as u8;
        let (mut x, mut y) = (rng.below(n as u64) as i64, rng.below(n as u64) as i64);
        for _ in 0..(size / 4).max(16) {
            if x >= 0 && y >= 0 && (x as usize) < size && (y as usize) < size {
                labels[y as usize * size + x as usize] = label;
            }
            x += rng.below(3) as i64 - 1;
            y += rng.below(3) as i64 - 1;
        }
    }
    // Islands of 1–3 px, one per 64 px².
    squares(labels, size, (size * size / 64).max(8), 3, &mut rng);
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_is_present_and_the_map_is_deterministic() {
        let a = face_map(256, 7);
        assert_eq!(a, face_map(256, 7));
        assert_ne!(a, face_map(256, 8));
        for class in 0..19u8 {
            assert!(a.labels.contains(&class), "class {class} missing");
        }
    }

    #[test]
    fn blob_and_ragged_maps_have_every_class_and_are_deterministic() {
        for make in [blob_map, ragged_map] {
            let a = make(256, 5);
            assert_eq!(a, make(256, 5));
            assert_ne!(a, make(256, 6));
            for class in 1..19u8 {
                assert!(a.labels.contains(&class), "class {class} missing");
            }
        }
    }

    #[test]
    fn the_heavy_map_has_many_more_borders_than_the_face() {
        let borders = |m: &LabelMap| {
            let w = m.width as usize;
            m.labels
                .windows(2)
                .enumerate()
                .filter(|(i, p)| (i + 1) % w != 0 && p[0] != p[1])
                .count()
        };
        let (face, heavy) = (face_map(512, 3), heavy_map(512, 3));
        assert_eq!(heavy, heavy_map(512, 3));
        assert!(
            borders(&heavy) > 3 * borders(&face),
            "{} vs {}",
            borders(&heavy),
            borders(&face)
        );
    }
}
