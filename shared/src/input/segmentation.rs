//! The optional face-parsing label map: an 8-bit PNG of label numbers (greyscale or
//! palette indices), or an RGB(A) PNG in the CelebAMask-HQ colour palette.
//!
//! Its header is checked at submit time, before anything is decoded: it must be a
//! PNG of exactly the photo's size. Its pixels are decoded on a cache miss (and again
//! by the worker), with the decoder's allocation capped at what those dimensions need.

use std::io::Cursor;

use super::image::{
    check_dimensions, check_png_chunks, header_dimensions, sniff, ImageFormat, ImageInfo,
};
use super::InputError;
use crate::labels::{self, LabelScheme};
use crate::limits::Limits;

const FIELD: &str = "segmentation_map";

/// One label per pixel, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    pub width: u32,
    pub height: u32,
    pub labels: Vec<u8>,
}

impl LabelMap {
    pub fn get(&self, x: u32, y: u32) -> u8 {
        self.labels[(y * self.width + x) as usize]
    }
}

pub fn check_header(data: &[u8], image: &ImageInfo, limits: &Limits) -> Result<(), InputError> {
    if sniff(data) != Some(ImageFormat::Png) {
        return Err(InputError::unsupported(
            FIELD,
            "the label map must be a PNG",
        ));
    }
    let (w, h) = header_dimensions(FIELD, data, ImageFormat::Png)?;
    check_dimensions(FIELD, w, h, limits)?;
    if (w, h) != (image.width, image.height) {
        return Err(InputError::invalid(
            FIELD,
            format!(
                "the label map is {w}×{h} px but the image is {}×{} px",
                image.width, image.height
            ),
        ));
    }
    check_png_chunks(FIELD, data)
}

/// Decodes a BiSeNet-order label map (the default scheme); see [`decode_scheme`].
pub fn decode(
    data: &[u8],
    width: u32,
    height: u32,
    limits: &Limits,
) -> Result<LabelMap, InputError> {
    decode_scheme(data, width, height, LabelScheme::Bisenet, limits)
}

/// Decodes a label map that must be `width`×`height`.
pub fn decode_scheme(
    data: &[u8],
    width: u32,
    height: u32,
    scheme: LabelScheme,
    limits: &Limits,
) -> Result<LabelMap, InputError> {
    let (w, h) = header_dimensions(FIELD, data, ImageFormat::Png)?;
    check_dimensions(FIELD, w, h, limits)?;
    if (w, h) != (width, height) {
        return Err(InputError::invalid(
            FIELD,
            format!("the label map is {w}×{h} px but the image is {width}×{height} px"),
        ));
    }
    let pixels = w as usize * h as usize;
    // Rows are decoded one at a time into the label buffer, so the peak is one byte
    // per pixel whatever the colour type (an RGBA frame would be four); the decoder's
    // own allocations are capped at a few rows plus slack.
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(data),
        png::Limits {
            bytes: w as usize * 4 * 4 + (1 << 20),
        },
    );
    decoder.set_transformations(png::Transformations::IDENTITY);
    let corrupt = |e: png::DecodingError| InputError::invalid(FIELD, format!("corrupt PNG: {e}"));
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let info = reader.info();
    if info.bit_depth != png::BitDepth::Eight {
        return Err(InputError::invalid(
            FIELD,
            format!("expected 8 bits per channel, got {:?}", info.bit_depth),
        ));
    }
    let channels = match info.color_type {
        png::ColorType::Grayscale | png::ColorType::Indexed => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
    };
    if channels >= 3 && !scheme.has_palette() {
        return Err(InputError::invalid(
            FIELD,
            format!(
                "the {} scheme has no colour palette: send 8-bit labels",
                scheme.as_str()
            ),
        ));
    }
    let table = scheme.to_canonical();
    let palette = labels::PaletteLookup::new();
    let mut labels = vec![0u8; pixels];
    let mut mapped = Vec::with_capacity(w as usize);
    let mut next_line = 0usize;
    while let Some(row) = reader.next_interlaced_row().map_err(corrupt)? {
        mapped.clear();
        let pixels = row.data().chunks_exact(channels);
        if channels <= 2 {
            for p in pixels {
                // Numbers in the scheme's order, translated to the canonical order.
                mapped.push(table[usize::from(p[0])].ok_or_else(|| {
                    InputError::invalid(
                        FIELD,
                        format!(
                            "a pixel has label {}, but {} labels run from 0 to {}",
                            p[0],
                            scheme.as_str(),
                            scheme.classes() - 1
                        ),
                    )
                })?);
            }
        } else {
            for p in pixels {
                let rgb = [p[0], p[1], p[2]];
                mapped.push(palette.label(rgb).ok_or_else(|| {
                    InputError::invalid(
                        FIELD,
                        format!(
                            "a pixel has colour #{:02x}{:02x}{:02x}, which is not in the CelebAMask-HQ palette",
                            rgb[0], rgb[1], rgb[2]
                        ),
                    )
                })?);
            }
        }
        match row.interlace() {
            png::InterlaceInfo::Adam7(pass) => {
                png::expand_interlaced_row(&mut labels, w as usize, &mapped, pass, 8);
            }
            png::InterlaceInfo::Null(_) => {
                let line = next_line;
                next_line += 1;
                let dest = labels
                    .get_mut(line * w as usize..(line + 1) * w as usize)
                    .ok_or_else(|| InputError::invalid(FIELD, "corrupt PNG: too many rows"))?;
                if mapped.len() != dest.len() {
                    return Err(InputError::invalid(FIELD, "corrupt PNG: short row"));
                }
                dest.copy_from_slice(&mapped);
            }
        }
    }
    Ok(LabelMap {
        width: w,
        height: h,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(w: u32, h: u32, color: png::ColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(color);
        let mut wr = e.write_header().unwrap();
        wr.write_image_data(data).unwrap();
        wr.finish().unwrap();
        out
    }

    #[test]
    fn grey_labels_and_palette_colours_decode_to_the_same_map() {
        let grey = encode(2, 1, png::ColorType::Grayscale, &[1, 10]);
        let rgb = encode(2, 1, png::ColorType::Rgb, &[204, 0, 0, 76, 153, 0]);
        let a = decode(&grey, 2, 1, &Limits::default()).unwrap();
        let b = decode(&rgb, 2, 1, &Limits::default()).unwrap();
        assert_eq!(a.labels, vec![1, 10]);
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_unknown_labels_colours_and_sizes() {
        let grey = encode(2, 1, png::ColorType::Grayscale, &[1, 200]);
        assert!(decode(&grey, 2, 1, &Limits::default())
            .unwrap_err()
            .message
            .contains("label 200"));
        let rgb = encode(1, 1, png::ColorType::Rgb, &[1, 2, 3]);
        assert!(decode(&rgb, 1, 1, &Limits::default())
            .unwrap_err()
            .message
            .contains("palette"));
        let ok = encode(2, 1, png::ColorType::Grayscale, &[1, 1]);
        let info = ImageInfo {
            format: ImageFormat::Png,
            width: 3,
            height: 1,
        };
        assert!(check_header(&ok, &info, &Limits::default())
            .unwrap_err()
            .message
            .contains("2×1"));
    }
}
