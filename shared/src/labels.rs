//! Face-parsing classes: names, label numbers and colours.
//!
//! Labels follow the face-parsing.PyTorch (BiSeNet) order of the CelebAMask-HQ
//! classes, which is what most deployed parsers emit. An RGB label map is read in
//! the official CelebAMask-HQ colour palette, whose class order differs; colours are
//! translated by class name, so the two can never be mixed up by position.

/// Class names by label number (BiSeNet order).
pub const CLASS_NAMES: [&str; 19] = [
    "background",
    "skin",
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "eye_g",
    "l_ear",
    "r_ear",
    "ear_r",
    "nose",
    "mouth",
    "u_lip",
    "l_lip",
    "neck",
    "neck_l",
    "cloth",
    "hair",
    "hat",
];

/// The official CelebAMask-HQ palette, in the official class order.
const OFFICIAL_PALETTE: [(&str, [u8; 3]); 19] = [
    ("background", [0, 0, 0]),
    ("skin", [204, 0, 0]),
    ("nose", [76, 153, 0]),
    ("eye_g", [204, 204, 0]),
    ("l_eye", [51, 51, 255]),
    ("r_eye", [204, 0, 204]),
    ("l_brow", [0, 255, 255]),
    ("r_brow", [255, 204, 204]),
    ("l_ear", [102, 51, 0]),
    ("r_ear", [255, 0, 0]),
    ("mouth", [102, 204, 0]),
    ("u_lip", [255, 255, 0]),
    ("l_lip", [0, 0, 153]),
    ("hair", [0, 0, 204]),
    ("hat", [255, 51, 153]),
    ("ear_r", [0, 204, 204]),
    ("neck_l", [0, 51, 0]),
    ("neck", [255, 153, 51]),
    ("cloth", [0, 204, 0]),
];

pub const BACKGROUND: u8 = 0;

pub fn name(label: u8) -> Option<&'static str> {
    CLASS_NAMES.get(usize::from(label)).copied()
}

pub fn label_of(name: &str) -> Option<u8> {
    CLASS_NAMES.iter().position(|n| *n == name).map(|i| i as u8)
}

/// Label for an RGB colour of the CelebAMask-HQ palette.
pub fn label_of_colour(rgb: [u8; 3]) -> Option<u8> {
    OFFICIAL_PALETTE
        .iter()
        .find(|(_, c)| *c == rgb)
        .and_then(|(n, _)| label_of(n))
}

/// Fill colour of a class in the SVG: the palette colour, so that an SVG overlays
/// like the masks people already know.
pub fn fill(label: u8) -> [u8; 3] {
    name(label)
        .and_then(|n| OFFICIAL_PALETTE.iter().find(|(p, _)| *p == n))
        .map(|(_, c)| *c)
        .unwrap_or([128, 128, 128])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_maps_by_name_not_position() {
        assert_eq!(label_of_colour([76, 153, 0]), label_of("nose"));
        assert_eq!(label_of("nose"), Some(10));
        assert_eq!(label_of_colour([0, 255, 255]), Some(2)); // l_brow
        assert_eq!(label_of_colour([1, 2, 3]), None);
        for (i, name) in CLASS_NAMES.iter().enumerate() {
            assert_eq!(label_of_colour(fill(i as u8)), Some(i as u8), "{name}");
        }
    }
}
