//! Regions from landmarks alone, for requests without a label map.
//!
//! The iBUG 68-point groups give the face oval (jaw closed over the brows), brows,
//! eyes, nose, lips and inner mouth, drawn the same way the fixtures' label maps
//! were drawn; MediaPipe's 468/478-point mesh gives the same regions from its
//! published contour index lists. Both models give one vocabulary: the same region
//! names, in the same order, each with its label in the BiSeNet scheme
//! ([`crate::labels`]), so a client reads the same set whatever model it sends.
//! The 68-point brows are polylines: they become bands a few pixels thick so that
//! they have an area (the mesh outlines its brows).

use crate::input::Landmarks;
use crate::labels;

/// A region as polygons in pixel coordinates (even-odd: later rings can be holes).
#[derive(Debug, Clone)]
pub struct PolygonRegion {
    pub name: &'static str,
    pub label: u8,
    pub rings: Vec<Vec<(f64, f64)>>,
}

enum Shape {
    Ring(&'static [usize]),
    Hull(&'static [usize]),
    Band(&'static [usize]),
}

const IBUG_68: &[(&str, Shape)] = &[
    (
        "skin",
        Shape::Ring(&[
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 26, 25, 24, 23, 22, 21, 20,
            19, 18, 17,
        ]),
    ),
    ("nose", Shape::Hull(&[27, 28, 29, 30, 31, 32, 33, 34, 35])),
    ("r_brow", Shape::Band(&[17, 18, 19, 20, 21])),
    ("l_brow", Shape::Band(&[22, 23, 24, 25, 26])),
    ("r_eye", Shape::Ring(&[36, 37, 38, 39, 40, 41])),
    ("l_eye", Shape::Ring(&[42, 43, 44, 45, 46, 47])),
    (
        "u_lip",
        Shape::Ring(&[48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60]),
    ),
    (
        "l_lip",
        Shape::Ring(&[54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64]),
    ),
    ("mouth", Shape::Ring(&[60, 61, 62, 63, 64, 65, 66, 67])),
];

// MediaPipe Face Mesh contours (FACEMESH_FACE_OVAL, _LIPS, _LEFT_EYE, …) as rings.
const MESH_OVAL: &[usize] = &[
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
    148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
];
// The lips from FACEMESH_LIPS's four arcs: each lip is the band between its outer
// and inner arc, closed at the corners (outer 61/291, inner 78/308), the way the
// 68-point table closes 48..54 over 64..60. The two lips share the corner edges and
// together tile the outer ring minus the mouth, as in a label map.
const MESH_U_LIP: &[usize] = &[
    61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191,
    78,
];
const MESH_L_LIP: &[usize] = &[
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 308, 324, 318, 402, 317, 14, 87, 178, 88,
    95, 78,
];
const MESH_LIPS_INNER: &[usize] = &[
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191,
];
const MESH: &[(&str, Shape)] = &[
    ("skin", Shape::Ring(MESH_OVAL)),
    (
        "nose",
        Shape::Hull(&[
            1, 2, 98, 327, 168, 6, 197, 195, 5, 4, 19, 94, 64, 294, 48, 278, 115, 344, 49, 279,
        ]),
    ),
    (
        "r_brow",
        Shape::Ring(&[46, 53, 52, 65, 55, 107, 66, 105, 63, 70]),
    ),
    (
        "l_brow",
        Shape::Ring(&[276, 283, 282, 295, 285, 336, 296, 334, 293, 300]),
    ),
    (
        "r_eye",
        Shape::Ring(&[
            33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
        ]),
    ),
    (
        "l_eye",
        Shape::Ring(&[
            263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466,
        ]),
    ),
    ("u_lip", Shape::Ring(MESH_U_LIP)),
    ("l_lip", Shape::Ring(MESH_L_LIP)),
    ("mouth", Shape::Ring(MESH_LIPS_INNER)),
];

/// Regions for a supported landmark model, in drawing order (face first).
pub fn regions(landmarks: &Landmarks) -> Vec<PolygonRegion> {
    let table = if landmarks.len() == 68 { IBUG_68 } else { MESH };
    let pt = |i: usize| landmarks.xy(i);
    // Brow thickness scales with the face: 3 % of the jaw's width, at least 1 px.
    let (bx0, _, bx1, _) = bounds(landmarks.iter_px());
    let half_band = ((bx1 - bx0) * 0.015).max(0.5);
    table
        .iter()
        .map(|(name, shape)| {
            let ring = |idx: &[usize]| idx.iter().map(|&i| pt(i)).collect::<Vec<_>>();
            let rings = match shape {
                Shape::Ring(idx) => vec![ring(idx)],
                Shape::Hull(idx) => vec![convex_hull(ring(idx))],
                Shape::Band(idx) => vec![band(&ring(idx), half_band)],
            };
            let label = labels::label_of(name).unwrap_or(0);
            PolygonRegion { name, label, rings }
        })
        .collect()
}

pub fn bounds(points: impl Iterator<Item = (f64, f64)>) -> (f64, f64, f64, f64) {
    points.fold(
        (f64::MAX, f64::MAX, f64::MIN, f64::MIN),
        |(x0, y0, x1, y1), (x, y)| (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
    )
}

/// A closed band of half-width `r` around an open polyline.
fn band(line: &[(f64, f64)], r: f64) -> Vec<(f64, f64)> {
    let n = line.len();
    let normal = |i: usize| {
        let (a, b) = (line[i.saturating_sub(1)], line[(i + 1).min(n - 1)]);
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len = (dx * dx + dy * dy).sqrt().max(1e-9);
        (-dy / len, dx / len)
    };
    let upper = (0..n).map(|i| {
        let (nx, ny) = normal(i);
        (line[i].0 + nx * r, line[i].1 + ny * r)
    });
    let lower = (0..n).rev().map(|i| {
        let (nx, ny) = normal(i);
        (line[i].0 - nx * r, line[i].1 - ny * r)
    });
    upper.chain(lower).collect()
}

/// Andrew's monotone chain.
fn convex_hull(mut pts: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let cross = |o: (f64, f64), a: (f64, f64), b: (f64, f64)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut hull: Vec<(f64, f64)> = Vec::with_capacity(pts.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &(f64, f64)>> = if pass == 0 {
            Box::new(pts.iter())
        } else {
            Box::new(pts.iter().rev())
        };
        for &p in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// Signed area (shoelace) and area-weighted centroid sums of one ring.
pub fn ring_moments(ring: &[(f64, f64)]) -> (f64, f64, f64) {
    let (mut a, mut cx, mut cy) = (0.0, 0.0, 0.0);
    for i in 0..ring.len() {
        let (p, q) = (ring[i], ring[(i + 1) % ring.len()]);
        let c = p.0 * q.1 - q.0 * p.1;
        a += c;
        cx += (p.0 + q.0) * c;
        cy += (p.1 + q.1) * c;
    }
    (a / 2.0, cx / 6.0, cy / 6.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hull_of_a_square_with_an_inner_point() {
        let h = convex_hull(vec![
            (0.0, 0.0),
            (2.0, 0.0),
            (1.0, 1.0),
            (2.0, 2.0),
            (0.0, 2.0),
        ]);
        assert_eq!(h.len(), 4);
        assert!((ring_moments(&h).0.abs() - 4.0).abs() < 1e-9);
    }

    #[test]
    fn both_models_give_one_vocabulary() {
        fn names(t: &[(&'static str, Shape)]) -> Vec<&'static str> {
            t.iter().map(|(n, _)| *n).collect()
        }
        assert_eq!(names(IBUG_68), names(MESH));
        for name in names(MESH) {
            assert!(labels::label_of(name).is_some(), "{name} has no label");
        }
        let most = |t: &[(&'static str, Shape)]| {
            t.iter()
                .flat_map(|(_, s)| match s {
                    Shape::Ring(i) | Shape::Hull(i) | Shape::Band(i) => i.iter().copied(),
                })
                .max()
        };
        assert_eq!(most(IBUG_68), Some(67));
        assert!(most(MESH) < Some(468), "indices within the 468-point mesh");
    }

    #[test]
    fn band_has_the_expected_area() {
        let b = band(&[(0.0, 0.0), (10.0, 0.0)], 1.0);
        assert!((ring_moments(&b).0.abs() - 20.0).abs() < 1e-9);
    }
}
