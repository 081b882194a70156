//! Checking SVGs with an independent rasteriser (resvg), and making label-map PNGs.

use resvg::{tiny_skia, usvg};

/// (label, `d`) of every region path in a facesvg SVG, in document order.
pub fn region_paths(svg: &str) -> Vec<(u8, String)> {
    svg.split("<path")
        .skip(1)
        .map(|p| {
            let attr = |name: &str| {
                let start = p.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
                p[start..start + p[start..].find('"').unwrap()].to_owned()
            };
            (attr("data-label").parse().unwrap(), attr("d"))
        })
        .collect()
}

/// Rasterises one path over a `w`×`h` image without anti-aliasing: a pixel is in
/// when the renderer covers its centre.
pub fn rasterise(d: &str, w: u32, h: u32) -> Vec<bool> {
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">\
         <path shape-rendering=\"crispEdges\" fill-rule=\"evenodd\" d=\"{d}\"/></svg>"
    );
    let tree = usvg::Tree::from_str(&svg, &usvg::Options::default()).unwrap();
    let mut pixmap = tiny_skia::Pixmap::new(w, h).unwrap();
    resvg::render(
        &tree,
        tiny_skia::Transform::identity(),
        &mut pixmap.as_mut(),
    );
    pixmap.pixels().iter().map(|p| p.alpha() > 127).collect()
}

/// An 8-bit greyscale PNG of `labels` (row-major, `w`×`h`).
pub fn grey_png(w: u32, h: u32, labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, w, h);
    e.set_color(png::ColorType::Grayscale);
    let mut writer = e.write_header().unwrap();
    writer.write_image_data(labels).unwrap();
    writer.finish().unwrap();
    out
}
