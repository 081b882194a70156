//! Property tests of the tracer on random label maps, checked with an independent
//! rasteriser (resvg): every region comes back pixel for pixel, the regions cover
//! exactly the labelled pixels once each, and no border crosses itself. The maps:
//! Voronoi blobs with specks, the benchmark's wavy blob mosaics and ragged cells
//! (`render::synthetic`) at small sizes, and noise of two to four labels, where
//! pinch points (two pixels of one label touching only at a corner, the other two
//! of two other labels) are everywhere.
//!
//! Rasterising at one sample per pixel cannot see a sliver between two regions
//! whose shared border was simplified two ways: `shared_borders_are_one_border`
//! samples sixteen points a pixel, exactly (integer ray casting, so no rasteriser's
//! rounding), and finds no point two regions cover, nor a point no region covers
//! inside the labelled area away from the background.

mod common;

use common::raster::{rasterise, region_paths};
use facesvg::input::{LabelMap, Landmarks, RenderParams};
use facesvg::render::{render, synthetic, trace, RenderInput};
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

/// The benchmark's blob mosaic at small sizes.
fn blob_map() -> impl Strategy<Value = LabelMap> {
    (24u32..80, any::<u64>()).prop_map(|(n, seed)| synthetic::blob_map(n, seed))
}

/// The benchmark's ragged cells at small sizes.
fn ragged_map() -> impl Strategy<Value = LabelMap> {
    (16u32..64, any::<u64>()).prop_map(|(n, seed)| synthetic::ragged_map(n, seed))
}

/// Noise of two to four labels (background among them or not): pinch points of
/// every kind on every other vertex.
fn pinch_map() -> impl Strategy<Value = LabelMap> {
    (2u32..16, 2u32..16, 2u8..5, any::<bool>(), any::<u64>()).prop_map(
        |(w, h, classes, background, seed)| {
            let mut state = seed | 1;
            let labels = (0..w * h)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % u64::from(classes)) as u8 + u8::from(!background)
                })
                .collect();
            LabelMap {
                width: w,
                height: h,
                labels,
            }
        },
    )
}

fn render_map(map: &LabelMap) -> String {
    let landmarks = Landmarks {
        points: vec![[1000, 1000]; 68],
    };
    render(&RenderInput {
        width: map.width,
        height: map.height,
        landmarks: &landmarks,
        label_map: Some(map),
        params: RenderParams::default(),
    })
    .svg
}

/// Rasterised back at one pixel per unit (resvg), every region is its pixels (IoU
/// 1.0) and every labelled pixel is covered once: no gap, no overlap.
fn rasterises_back_exactly(map: &LabelMap) -> Result<(), TestCaseError> {
    let (w, h) = (map.width, map.height);
    let svg = render_map(map);
    let mut cover = vec![0u8; (w * h) as usize];
    for (label, d) in region_paths(&svg) {
        let raster = rasterise(&d, w, h);
        for (i, &inside) in raster.iter().enumerate() {
            prop_assert_eq!(
                inside,
                map.labels[i] == label,
                "label {} pixel ({}, {}) in {}",
                label,
                i as u32 % w,
                i as u32 / w,
                d
            );
            cover[i] += u8::from(inside);
        }
    }
    for (i, &c) in cover.iter().enumerate() {
        prop_assert_eq!(c, u8::from(map.labels[i] != 0));
    }
    Ok(())
}

/// Whether the point `s` (in eighths of a pixel) is inside `rings` (doubled
/// coordinates), even-odd, by a ray towards +x: exact integer arithmetic, and a
/// point on an edge belongs to the region on that edge's right-hand side of the ray
/// only, so two regions with one shared border never both hold a point of it.
fn inside(rings: &[Vec<(i64, i64)>], (sx, sy): (i64, i64)) -> bool {
    let mut odd = false;
    for ring in rings {
        for (i, &(ax, ay)) in ring.iter().enumerate() {
            let (bx, by) = ring[(i + 1) % ring.len()];
            // Eighths of a pixel are quarters of a doubled unit.
            let (ax, ay, bx, by) = (4 * ax, 4 * ay, 4 * bx, 4 * by);
            if (ay <= sy) == (by <= sy) {
                continue;
            }
            // The edge crosses the ray's line at x = ax + (sy - ay)(bx - ax)/(by - ay):
            // counted when strictly right of the point.
            let (num, den) = ((sy - ay) * (bx - ax), by - ay);
            let right = if den > 0 {
                ax * den + num > sx * den
            } else {
                ax * den + num < sx * den
            };
            odd ^= right;
        }
    }
    odd
}

/// Sixteen points a pixel, each in at most one region, and in exactly one wherever
/// the pixel and its eight neighbours are labelled (no background border can move
/// that far): a shared border simplified two ways (a sliver) shows up here.
fn shared_borders_are_one_border(map: &LabelMap) -> Result<(), TestCaseError> {
    let (w, h) = (map.width as i64, map.height as i64);
    let regions = trace::trace(map);
    for py in 0..h {
        for px in 0..w {
            let labelled_around = (py - 1..=py + 1).all(|y| {
                (px - 1..=px + 1).all(|x| {
                    x < 0 || y < 0 || x >= w || y >= h || map.labels[(y * w + x) as usize] != 0
                })
            });
            for (i, j) in (0..4).flat_map(|i| (0..4).map(move |j| (i, j))) {
                let s = (8 * px + 1 + 2 * i, 8 * py + 1 + 2 * j);
                let holders: Vec<u8> = regions
                    .iter()
                    .filter(|r| inside(&r.loops, s))
                    .map(|r| r.label)
                    .collect();
                prop_assert!(
                    holders.len() <= 1,
                    "point ({}, {})/8 in regions {:?}",
                    s.0,
                    s.1,
                    holders
                );
                if labelled_around {
                    prop_assert_eq!(holders.len(), 1, "point ({}, {})/8 in no region", s.0, s.1);
                }
            }
        }
    }
    Ok(())
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
        rasterises_back_exactly(&map)?;
    }

    #[test]
    fn blob_mosaics_rasterise_back_exactly(map in blob_map()) {
        rasterises_back_exactly(&map)?;
    }

    #[test]
    fn ragged_cells_rasterise_back_exactly(map in ragged_map()) {
        rasterises_back_exactly(&map)?;
    }

    #[test]
    fn pinch_points_rasterise_back_exactly(map in pinch_map()) {
        rasterises_back_exactly(&map)?;
    }

    #[test]
    fn shared_borders_are_one_border_at_pinch_points(map in pinch_map()) {
        shared_borders_are_one_border(&map)?;
    }

    #[test]
    fn shared_borders_are_one_border_in_blob_mosaics(map in blob_map()) {
        shared_borders_are_one_border(&map)?;
    }

    #[test]
    fn shared_borders_are_one_border_in_ragged_cells(map in ragged_map()) {
        shared_borders_are_one_border(&map)?;
    }

    #[test]
    fn shared_borders_are_one_border_in_voronoi_maps(map in label_map()) {
        shared_borders_are_one_border(&map)?;
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
