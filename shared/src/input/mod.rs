//! Request inputs: parsing and validation of the submit form.
//!
//! Everything a client sends passes through here before it touches a cache, a
//! database or a queue. Each check runs before the allocation it protects: the body
//! length before parsing, the image header before anything is decoded, the label
//! map's header before its pixels. A problem is an [`InputError`] that names the
//! form field, which the HTTP edge turns into a 4xx JSON error.

pub mod image;
pub mod landmarks;
pub mod multipart;
pub mod segmentation;

use thiserror::Error;

pub use self::image::{ImageFormat, ImageInfo};
pub use self::landmarks::Landmarks;
pub use self::segmentation::LabelMap;
use crate::labels::LabelScheme;
use crate::limits::Limits;

/// A client error in the inputs. `field` names the form field (or `body`).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct InputError {
    pub field: &'static str,
    pub kind: InputErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputErrorKind {
    Missing,
    Invalid,
    TooLarge,
    UnsupportedMediaType,
    /// Well-formed, but more work to render than the budget allows (422).
    TooComplex,
}

impl InputErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            InputErrorKind::Missing => "missing_field",
            InputErrorKind::Invalid => "invalid_field",
            InputErrorKind::TooLarge => "too_large",
            InputErrorKind::UnsupportedMediaType => "unsupported_media_type",
            InputErrorKind::TooComplex => "too_complex",
        }
    }
}

impl InputError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        InputError {
            field,
            kind: InputErrorKind::Invalid,
            message: message.into(),
        }
    }
    pub fn missing(field: &'static str) -> Self {
        InputError {
            field,
            kind: InputErrorKind::Missing,
            message: "this field is required".into(),
        }
    }
    pub fn too_large(field: &'static str, message: impl Into<String>) -> Self {
        InputError {
            field,
            kind: InputErrorKind::TooLarge,
            message: message.into(),
        }
    }
    pub fn too_complex(field: &'static str, e: crate::limits::BudgetError) -> Self {
        InputError {
            field,
            kind: InputErrorKind::TooComplex,
            message: e.to_string(),
        }
    }
    pub fn unsupported(field: &'static str, message: impl Into<String>) -> Self {
        InputError {
            field,
            kind: InputErrorKind::UnsupportedMediaType,
            message: message.into(),
        }
    }
}

/// Rendering options of a request. Both are part of the cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RenderParams {
    pub show_landmarks: bool,
    /// Opacity in thousandths (0..=1000): quantised so that 0.5 and 0.5000001 share a key.
    pub opacity_milli: u16,
    /// How the label map's numbers are to be read.
    #[serde(default)]
    pub label_scheme: LabelScheme,
    /// Which box becomes the SVG's viewBox.
    #[serde(default)]
    pub crop: CropMode,
}

/// The frontal crop: which box of the image the SVG's viewBox shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CropMode {
    /// The landmarks' box plus a margin of a quarter of its longer side, clamped to
    /// the image.
    #[default]
    Landmarks,
    /// The box of the label map's face classes, with the same margin (needs a map;
    /// falls back to the landmarks' box if the map has no face pixels).
    Face,
    /// The whole image.
    None,
}

impl CropMode {
    pub const NAMES: &'static str = "landmarks, face, none";

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "landmarks" => Some(CropMode::Landmarks),
            "face" => Some(CropMode::Face),
            "none" => Some(CropMode::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CropMode::Landmarks => "landmarks",
            CropMode::Face => "face",
            CropMode::None => "none",
        }
    }
}

impl Default for RenderParams {
    fn default() -> Self {
        RenderParams {
            show_landmarks: false,
            opacity_milli: 500,
            label_scheme: LabelScheme::Bisenet,
            crop: CropMode::Landmarks,
        }
    }
}

impl RenderParams {
    pub fn opacity(&self) -> f64 {
        f64::from(self.opacity_milli) / 1000.0
    }
}

/// The validated submit form: everything needed to compute the cache key and, on a
/// miss, the task message. The segmentation map is kept as its PNG bytes (compact
/// for the message); [`Submission::decode_label_map`] checks it fully.
#[derive(Debug)]
pub struct Submission<'a> {
    pub image: &'a [u8],
    pub image_info: ImageInfo,
    pub landmarks: Landmarks,
    pub segmentation_png: Option<&'a [u8]>,
    pub params: RenderParams,
}

impl<'a> Submission<'a> {
    /// Validates the multipart fields. Cheap checks only: header dimensions, the
    /// image's structure, the landmarks; the label map's pixels are decoded later,
    /// on a cache miss, by [`Submission::decode_label_map`].
    pub fn from_form(form: &multipart::Form<'a>, limits: &Limits) -> Result<Self, InputError> {
        const KNOWN: [&str; 7] = [
            "image",
            "landmarks",
            "segmentation_map",
            "show_landmarks",
            "region_opacity",
            "label_scheme",
            "crop",
        ];
        if let Some(unknown) = form.parts.iter().find(|p| !KNOWN.contains(&p.name)) {
            return Err(InputError::invalid(
                "body",
                format!(
                    "unknown form field {:?}; expected one of {}",
                    unknown.name,
                    KNOWN.join(", ")
                ),
            ));
        }
        for part in &form.parts {
            let (field, limit) = match part.name {
                "image" => ("image", limits.max_image_bytes),
                "landmarks" => ("landmarks", limits.max_landmarks_bytes),
                "segmentation_map" => ("segmentation_map", limits.max_segmentation_bytes),
                "show_landmarks" => ("show_landmarks", 64),
                "label_scheme" => ("label_scheme", 64),
                "crop" => ("crop", 64),
                _ => ("region_opacity", 64),
            };
            if part.data.len() > limit {
                return Err(InputError::too_large(
                    field,
                    format!(
                        "{} bytes is over the limit of {limit} bytes",
                        part.data.len()
                    ),
                ));
            }
        }
        let image = form
            .get("image")
            .ok_or_else(|| InputError::missing("image"))?;
        if image.data.is_empty() {
            return Err(InputError::invalid("image", "the file is empty"));
        }
        let image_info = self::image::inspect(image.data, limits)?;

        let landmarks_part = form
            .get("landmarks")
            .ok_or_else(|| InputError::missing("landmarks"))?;
        let landmarks = Landmarks::parse(
            landmarks_part.data,
            image_info.width,
            image_info.height,
            limits,
        )?;

        let segmentation_png = match form.get("segmentation_map") {
            Some(p) if !p.data.is_empty() => {
                segmentation::check_header(p.data, &image_info, limits)?;
                Some(p.data)
            }
            _ => None,
        };

        let show_landmarks = match form.get("show_landmarks") {
            None => false,
            Some(p) => parse_bool(p.data).ok_or_else(|| {
                InputError::invalid(
                    "show_landmarks",
                    "expected true or false (also 1/0, yes/no, on/off)",
                )
            })?,
        };
        let opacity_milli = match form.get("region_opacity") {
            None => RenderParams::default().opacity_milli,
            Some(p) => parse_opacity(p.data)?,
        };
        let label_scheme = match form.get("label_scheme") {
            None => LabelScheme::default(),
            Some(p) => std::str::from_utf8(p.data)
                .ok()
                .and_then(LabelScheme::parse)
                .ok_or_else(|| {
                    InputError::invalid(
                        "label_scheme",
                        format!("expected one of {}", LabelScheme::NAMES),
                    )
                })?,
        };
        let crop = match form.get("crop") {
            None => CropMode::default(),
            Some(p) => std::str::from_utf8(p.data)
                .ok()
                .and_then(CropMode::parse)
                .ok_or_else(|| {
                    InputError::invalid("crop", format!("expected one of {}", CropMode::NAMES))
                })?,
        };
        if crop == CropMode::Face && segmentation_png.is_none() {
            return Err(InputError::invalid(
                "crop",
                "crop=face needs a segmentation_map to find the face in",
            ));
        }
        Ok(Submission {
            image: image.data,
            image_info,
            landmarks,
            segmentation_png,
            params: RenderParams {
                show_landmarks,
                opacity_milli,
                label_scheme,
                crop,
            },
        })
    }

    /// Decodes and checks the label map's pixels (size, labels, scheme). What the
    /// map would cost to render is the renderer's judgement
    /// (`render::budget::count_edges`), made by the caller.
    pub fn decode_label_map(&self, limits: &Limits) -> Result<Option<LabelMap>, InputError> {
        let Some(png) = self.segmentation_png else {
            return Ok(None);
        };
        let map = segmentation::decode_scheme(
            png,
            self.image_info.width,
            self.image_info.height,
            self.params.label_scheme,
            limits,
        )?;
        Ok(Some(map))
    }
}

fn parse_bool(raw: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(raw).ok()?.trim().to_ascii_lowercase();
    match text.as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

fn parse_opacity(raw: &[u8]) -> Result<u16, InputError> {
    let bad = || InputError::invalid("region_opacity", "expected a number from 0 to 1");
    if raw.len() > 32 {
        return Err(bad());
    }
    let text = std::str::from_utf8(raw).map_err(|_| bad())?.trim();
    let value: f64 = text.parse().map_err(|_| bad())?;
    if !value.is_finite() || !(0.0..=1.0).contains(&value) {
        return Err(InputError::invalid(
            "region_opacity",
            format!("{text} is outside 0..1"),
        ));
    }
    Ok((value * 1000.0).round() as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opacity_is_quantised_and_bounded() {
        assert_eq!(parse_opacity(b"0.5").unwrap(), 500);
        assert_eq!(parse_opacity(b" 0.50001 ").unwrap(), 500);
        assert_eq!(parse_opacity(b"1").unwrap(), 1000);
        assert_eq!(parse_opacity(b"1.5").unwrap_err().field, "region_opacity");
        assert!(parse_opacity(b"NaN").is_err());
        assert!(parse_opacity(b"-0.1").is_err());
        assert!(parse_opacity(b"half").is_err());
    }

    #[test]
    fn booleans_accept_the_usual_spellings() {
        assert_eq!(parse_bool(b"True"), Some(true));
        assert_eq!(parse_bool(b"0"), Some(false));
        assert_eq!(parse_bool(b"maybe"), None);
    }
}
