//! The photo: format, dimensions and structural integrity, without decoding pixels.
//!
//! Rendering needs only the image's size (regions come from landmarks and the label
//! map), so the pixels are never decoded. The header gives the dimensions, which are
//! checked against the limits; the container is then walked to reject truncated or
//! corrupt files (a PNG's chunk CRCs and IEND, a JPEG's end marker, a WebP's RIFF
//! length), which costs a pass over the bytes and no allocation.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::InputError;
use crate::limits::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    Jpeg,
    Webp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

pub fn sniff(data: &[u8]) -> Option<ImageFormat> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some(ImageFormat::Webp)
    } else {
        None
    }
}

/// Dimensions from the header, checked against `limits`, then the structure.
pub fn inspect(data: &[u8], limits: &Limits) -> Result<ImageInfo, InputError> {
    let format = sniff(data)
        .ok_or_else(|| InputError::unsupported("image", "not a JPEG, PNG or WebP image"))?;
    let (width, height) = header_dimensions("image", data, format)?;
    check_dimensions("image", width, height, limits)?;
    check_structure(data, format)?;
    Ok(ImageInfo {
        format,
        width,
        height,
    })
}

pub(crate) fn header_dimensions(
    field: &'static str,
    data: &[u8],
    format: ImageFormat,
) -> Result<(u32, u32), InputError> {
    if format == ImageFormat::Png {
        // The IHDR chunk is first and fixed: read it directly, so that the size
        // limit applies before any decoder runs, even to a file that is only a header.
        return match data.get(12..24) {
            Some(ihdr) if &ihdr[0..4] == b"IHDR" => Ok((
                u32::from_be_bytes([ihdr[4], ihdr[5], ihdr[6], ihdr[7]]),
                u32::from_be_bytes([ihdr[8], ihdr[9], ihdr[10], ihdr[11]]),
            )),
            _ => Err(InputError::invalid(
                field,
                "truncated or corrupt PNG: no IHDR chunk",
            )),
        };
    }
    let image_format = match format {
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Webp => image::ImageFormat::WebP,
    };
    // `into_dimensions` reads the header only; the decoders allocate nothing
    // proportional to the image for it.
    image::ImageReader::with_format(Cursor::new(data), image_format)
        .into_dimensions()
        .map_err(|e| InputError::invalid(field, format!("unreadable {format:?} header: {e}")))
}

pub(crate) fn check_dimensions(
    field: &'static str,
    width: u32,
    height: u32,
    limits: &Limits,
) -> Result<(), InputError> {
    if width == 0 || height == 0 {
        return Err(InputError::invalid(field, "the image has no pixels"));
    }
    if width > limits.max_image_side || height > limits.max_image_side {
        return Err(InputError::too_large(
            field,
            format!(
                "{width}×{height} px is over the limit of {} px per side",
                limits.max_image_side
            ),
        ));
    }
    if u64::from(width) * u64::from(height) > limits.max_image_pixels {
        return Err(InputError::too_large(
            field,
            format!(
                "{width}×{height} px is over the limit of {} pixels",
                limits.max_image_pixels
            ),
        ));
    }
    Ok(())
}

fn check_structure(data: &[u8], format: ImageFormat) -> Result<(), InputError> {
    match format {
        ImageFormat::Png => check_png_chunks("image", data),
        ImageFormat::Jpeg => {
            // Encoders may pad after EOI; allow a little trailing slack.
            let tail = &data[data.len().saturating_sub(64)..];
            if tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
                Ok(())
            } else {
                Err(InputError::invalid(
                    "image",
                    "truncated JPEG: no end-of-image marker",
                ))
            }
        }
        ImageFormat::Webp => {
            let declared = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
            if declared + 8 > data.len() {
                Err(InputError::invalid(
                    "image",
                    "truncated WebP: the file is shorter than its RIFF header says",
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// Walks every chunk of a PNG, checking lengths and CRCs, up to `IEND`.
pub(crate) fn check_png_chunks(field: &'static str, data: &[u8]) -> Result<(), InputError> {
    let truncated = || InputError::invalid(field, "truncated or corrupt PNG");
    let mut pos = 8;
    loop {
        let header = data.get(pos..pos + 8).ok_or_else(truncated)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = &header[4..8];
        let end = pos
            .checked_add(12)
            .and_then(|p| p.checked_add(len))
            .ok_or_else(truncated)?;
        let chunk = data.get(pos + 4..end).ok_or_else(truncated)?;
        let (body, crc) = chunk.split_at(chunk.len() - 4);
        if crc32fast::hash(body) != u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(InputError::invalid(
                field,
                "corrupt PNG: a chunk fails its CRC check",
            ));
        }
        if kind == b"IEND" {
            return Ok(());
        }
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Grayscale);
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_image_data(&vec![0u8; (width * height) as usize])
            .unwrap();
        writer.finish().unwrap();
        out
    }

    #[test]
    fn reads_dimensions_and_accepts_a_whole_png() {
        let info = inspect(&png(7, 5), &Limits::default()).unwrap();
        assert_eq!(
            (info.format, info.width, info.height),
            (ImageFormat::Png, 7, 5)
        );
    }

    #[test]
    fn rejects_truncated_and_corrupt_pngs() {
        let whole = png(16, 16);
        let err = inspect(&whole[..whole.len() - 5], &Limits::default()).unwrap_err();
        assert_eq!(err.field, "image");
        let mut flipped = whole.clone();
        let n = flipped.len();
        flipped[n - 20] ^= 0x55;
        assert!(inspect(&flipped, &Limits::default()).is_err());
    }

    #[test]
    fn rejects_huge_headers_before_decoding() {
        // A valid 30000×30000 header followed by nothing: must fail on the limit.
        let mut header = png(1, 1)[..33].to_vec();
        header[16..20].copy_from_slice(&30000u32.to_be_bytes());
        header[20..24].copy_from_slice(&30000u32.to_be_bytes());
        let crc = crc32fast::hash(&header[12..29]);
        header[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = inspect(&header, &Limits::default()).unwrap_err();
        assert_eq!(err.kind, super::super::InputErrorKind::TooLarge);
    }

    #[test]
    fn rejects_non_images() {
        assert_eq!(
            inspect(b"hello", &Limits::default()).unwrap_err().kind,
            super::super::InputErrorKind::UnsupportedMediaType
        );
    }
}
