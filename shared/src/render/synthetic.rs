//! Synthetic label maps for benchmarks and stress tests: deterministic, any size,
//! and built to exercise the tracer where it is hardest — all 19 classes, holes
//! (glasses, lips), islands inside holes (eyes inside the glasses' rims), strokes
//! 1–5 px wide and specks of 1–4 px scattered everywhere.

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
