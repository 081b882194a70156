//! The content-addressed cache key.
//!
//! `input_hash` is SHA-256 over a versioned, length-prefixed encoding of everything
//! that determines the SVG: the tenant, the image's digest, the landmarks as canonical
//! integers (1/1000 px), the label map's digest (or "none"), the rendering options
//! (landmark dots, opacity, label scheme) and the renderer version. Length prefixes make the encoding unambiguous: no two
//! different inputs can produce the same byte stream.

use sha2::{Digest, Sha256};

use crate::input::{Landmarks, RenderParams};
use crate::RENDERER_VERSION;

const KEY_SCHEME: &[u8] = b"facesvg-key/2";

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Everything the key is computed from, borrowed from the request.
pub struct KeyInputs<'a> {
    pub tenant: &'a str,
    pub image_sha256: [u8; 32],
    pub landmarks: &'a Landmarks,
    pub segmentation_sha256: Option<[u8; 32]>,
    pub params: RenderParams,
}

/// Lowercase hex SHA-256 of the canonical encoding.
pub fn input_hash(k: &KeyInputs<'_>) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(KEY_SCHEME);
    field(k.tenant.as_bytes());
    field(&k.image_sha256);
    let mut points = Vec::with_capacity(k.landmarks.len() * 8);
    for [x, y] in &k.landmarks.points {
        points.extend_from_slice(&x.to_be_bytes());
        points.extend_from_slice(&y.to_be_bytes());
    }
    field(&points);
    match &k.segmentation_sha256 {
        Some(d) => field(d),
        None => field(b"none"),
    }
    field(&[u8::from(k.params.show_landmarks)]);
    field(&k.params.opacity_milli.to_be_bytes());
    field(k.params.label_scheme.as_str().as_bytes());
    field(k.params.crop.as_str().as_bytes());
    field(RENDERER_VERSION.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(
        tenant: &'a str,
        lm: &'a Landmarks,
        params: RenderParams,
        seg: Option<[u8; 32]>,
    ) -> KeyInputs<'a> {
        KeyInputs {
            tenant,
            image_sha256: sha256(b"img"),
            landmarks: lm,
            segmentation_sha256: seg,
            params,
        }
    }

    #[test]
    fn every_input_changes_the_key() {
        let lm = Landmarks {
            points: vec![[1, 2], [3, 4]],
        };
        let lm2 = Landmarks {
            points: vec![[1, 2], [3, 5]],
        };
        let p = RenderParams::default();
        let base = input_hash(&inputs("a", &lm, p, None));
        assert_eq!(base.len(), 64);
        assert_eq!(base, input_hash(&inputs("a", &lm, p, None)));
        assert_ne!(base, input_hash(&inputs("b", &lm, p, None)));
        assert_ne!(base, input_hash(&inputs("a", &lm2, p, None)));
        assert_ne!(base, input_hash(&inputs("a", &lm, p, Some(sha256(b"seg")))));
        assert_ne!(
            base,
            input_hash(&inputs(
                "a",
                &lm,
                RenderParams {
                    show_landmarks: true,
                    ..p
                },
                None
            ))
        );
        assert_ne!(
            base,
            input_hash(&inputs(
                "a",
                &lm,
                RenderParams {
                    opacity_milli: 501,
                    ..p
                },
                None
            ))
        );
        let lapa = RenderParams {
            label_scheme: crate::labels::LabelScheme::Lapa,
            ..p
        };
        assert_ne!(base, input_hash(&inputs("a", &lm, lapa, None)));
        for crop in [crate::input::CropMode::Face, crate::input::CropMode::None] {
            let other = RenderParams { crop, ..p };
            assert_ne!(base, input_hash(&inputs("a", &lm, other, None)), "{crop:?}");
        }
    }
}
