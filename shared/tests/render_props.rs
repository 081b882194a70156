//! Property tests of the tracer on random label maps, checked with an independent
//! rasteriser (resvg): every region comes back pixel for pixel, the regions cover
//! exactly the labelled pixels once each, and no border crosses itself.

mod common;

use common::raster::{rasterise, region_paths};
use facesvg::input::{LabelMap, Landmarks, RenderParams};
use facesvg::render::{render, trace, RenderInput};
use proptest::prelude::*;

/// Random maps: blobs of a few labels (so there are long borders and junctions),
/// sprinkled with single-pixel specks.
fn label_map() -> impl Strategy<Value = LabelMap> {
    (4u32..28, 4u32..28, 2u8..6, any::<u64>()).prop_map(|(w, h, classes, seed)| {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let centres: Vec<(i64, i64, u8)> = (0..classes * 2)
            .map(|_| {
                (
                    (next() % w as u64) as i64,
                    (next() % h as u64) as i64,
                    (next() % classes as u64) as u8,
                )
            })
            .collect();
        let mut labels = Vec::with_capacity((w * h) as usize);
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                let nearest = centres
                    .iter()
                    .min_by_key(|(cx, cy, _)| (cx - x).pow(2) + (cy - y).pow(2))
                    .unwrap();
                let speck = next() % 13 == 0;
                labels.push(if speck {
                    (next() % classes as u64) as u8
                } else {
                    nearest.2
                });
            }
        }
        LabelMap {
            width: w,
            height: h,
            labels,
        }
    })
}

fn segments_cross(a: (f64, f64), b: (f64, f64), c: (f64, f64), d: (f64, f64)) -> bool {
    let cross = |o: (f64, f64), p: (f64, f64), q: (f64, f64)| {
        (p.0 - o.0) * (q.1 - o.1) - (p.1 - o.1) * (q.0 - o.0)
    };
    let (d1, d2) = (cross(c, d, a), cross(c, d, b));
    let (d3, d4) = (cross(a, b, c), cross(a, b, d));
    // Proper crossings only: touching at a vertex is allowed (saddles).
    d1 * d2 < 0.0 && d3 * d4 < 0.0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn regions_rasterise_back_exactly_and_tile_the_labelled_pixels(map in label_map()) {
        let (w, h) = (map.width, map.height);
        let landmarks = Landmarks { points: vec![[1000, 1000]; 68] };
        let out = render(&RenderInput { width: w, height: h, landmarks: &landmarks, label_map: Some(&map), params: RenderParams::default() });
        let mut cover = vec![0u8; (w * h) as usize];
        for (label, d) in region_paths(&out.svg) {
            let raster = rasterise(&d, w, h);
            for (i, &inside) in raster.iter().enumerate() {
                prop_assert_eq!(inside, map.labels[i] == label, "label {} pixel ({}, {}) in {}", label, i as u32 % w, i as u32 / w, d);
                cover[i] += u8::from(inside);
            }
        }
        for (i, &c) in cover.iter().enumerate() {
            prop_assert_eq!(c, u8::from(map.labels[i] != 0));
        }
    }

    #[test]
    fn rings_are_closed_and_never_cross_themselves(map in label_map()) {
        for region in trace::trace(&map) {
            for ring in &region.loops {
                prop_assert!(ring.len() >= 3);
                let pts: Vec<(f64, f64)> = ring.iter().map(|&(x, y)| (x as f64, y as f64)).collect();
                let n = pts.len();
                for i in 0..n {
                    for j in i + 2..n {
                        if i == 0 && j == n - 1 {
                            continue; // adjacent through the closing edge
                        }
                        prop_assert!(
                            !segments_cross(pts[i], pts[(i + 1) % n], pts[j], pts[(j + 1) % n]),
                            "label {} ring crosses itself at segments {} and {}", region.label, i, j
                        );
                    }
                }
            }
        }
    }
}
