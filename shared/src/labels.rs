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

/// LaPa's 11 classes in its own order. LaPa's "left" is taken as the subject's left,
/// as in CelebAMask-HQ's names.
const LAPA_CLASSES: [&str; 11] = [
    "background",
    "skin",
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "nose",
    "u_lip",
    "mouth",
    "l_lip",
    "hair",
];

pub const BACKGROUND: u8 = 0;

/// The classes of the face itself, for the `face` crop: skin, brows, eyes and
/// glasses, nose, mouth and lips (not ears, neck, hair, hat or clothes).
pub fn is_face_class(label: u8) -> bool {
    matches!(label, 1..=6 | 10..=13)
}

/// How the numbers (or colours) of a submitted label map are to be read. Three
/// orders are in real use and disagree, even on left and right; the request names
/// its scheme and the map is translated into the canonical (BiSeNet) order by class
/// name. The scheme is part of the cache key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelScheme {
    /// face-parsing.PyTorch (BiSeNet) order of the CelebAMask-HQ classes.
    #[default]
    Bisenet,
    /// The official CelebAMask-HQ order (1 skin, 2 nose, … 18 cloth).
    CelebamaskHq,
    /// LaPa's 11 classes.
    Lapa,
}

impl LabelScheme {
    pub const NAMES: &'static str = "bisenet, celebamask-hq, lapa";

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bisenet" | "face-parsing" => Some(LabelScheme::Bisenet),
            "celebamask-hq" | "celebamask" => Some(LabelScheme::CelebamaskHq),
            "lapa" => Some(LabelScheme::Lapa),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LabelScheme::Bisenet => "bisenet",
            LabelScheme::CelebamaskHq => "celebamask-hq",
            LabelScheme::Lapa => "lapa",
        }
    }

    /// Number of classes (labels run from 0 to this minus one).
    pub fn classes(self) -> usize {
        match self {
            LabelScheme::Bisenet | LabelScheme::CelebamaskHq => 19,
            LabelScheme::Lapa => LAPA_CLASSES.len(),
        }
    }

    /// A table from this scheme's labels to canonical labels.
    pub fn to_canonical(self) -> [Option<u8>; 256] {
        let mut table = [None; 256];
        let names: Vec<&str> = match self {
            LabelScheme::Bisenet => CLASS_NAMES.to_vec(),
            LabelScheme::CelebamaskHq => OFFICIAL_PALETTE.iter().map(|(n, _)| *n).collect(),
            LabelScheme::Lapa => LAPA_CLASSES.to_vec(),
        };
        for (i, name) in names.iter().enumerate() {
            table[i] = label_of(name);
        }
        table
    }

    /// Whether RGB maps in the CelebAMask-HQ palette are accepted (LaPa has none).
    pub fn has_palette(self) -> bool {
        self != LabelScheme::Lapa
    }
}

pub fn name(label: u8) -> Option<&'static str> {
    CLASS_NAMES.get(usize::from(label)).copied()
}

pub fn label_of(name: &str) -> Option<u8> {
    CLASS_NAMES.iter().position(|n| *n == name).map(|i| i as u8)
}

/// Label for an RGB colour of the CelebAMask-HQ palette: the definition, a search
/// of the palette. A label map's pixels are read through [`PaletteLookup`].
pub fn label_of_colour(rgb: [u8; 3]) -> Option<u8> {
    OFFICIAL_PALETTE
        .iter()
        .find(|(_, c)| *c == rgb)
        .and_then(|(n, _)| label_of(n))
}

/// Neither a channel value of the palette nor a label.
const ABSENT: u8 = u8::MAX;

/// [`label_of_colour`] as tables, for the millions of pixels of an RGB label map:
/// each channel's value → its rank among that channel's values in the palette
/// (seven at most), and the three ranks → the label. Four byte loads per pixel
/// instead of a search of nineteen colours and a class name.
pub struct PaletteLookup {
    ranks: [[u8; 256]; 3],
    /// Ranks per channel: the table's strides.
    counts: [usize; 3],
    labels: Vec<u8>,
}

impl PaletteLookup {
    pub fn new() -> Self {
        let mut ranks = [[ABSENT; 256]; 3];
        let mut counts = [0usize; 3];
        for (_, rgb) in OFFICIAL_PALETTE {
            for c in 0..3 {
                let rank = &mut ranks[c][usize::from(rgb[c])];
                if *rank == ABSENT {
                    *rank = counts[c] as u8;
                    counts[c] += 1;
                }
            }
        }
        let mut table = PaletteLookup {
            ranks,
            counts,
            labels: vec![ABSENT; counts.iter().product()],
        };
        // Each cell is what the search finds for its colour: the first entry of
        // that colour, whatever its name gives.
        for (name, rgb) in OFFICIAL_PALETTE.iter().rev() {
            if let Some(i) = table.index(*rgb) {
                table.labels[i] = label_of(name).unwrap_or(ABSENT);
            }
        }
        table
    }

    fn index(&self, [r, g, b]: [u8; 3]) -> Option<usize> {
        let [rr, rg, rb] = [
            self.ranks[0][usize::from(r)],
            self.ranks[1][usize::from(g)],
            self.ranks[2][usize::from(b)],
        ];
        if rr == ABSENT || rg == ABSENT || rb == ABSENT {
            return None;
        }
        let [_, cg, cb] = self.counts;
        Some((usize::from(rr) * cg + usize::from(rg)) * cb + usize::from(rb))
    }

    /// The label of `rgb`, exactly as [`label_of_colour`] answers.
    #[inline]
    pub fn label(&self, rgb: [u8; 3]) -> Option<u8> {
        let label = self.labels[self.index(rgb)?];
        (label != ABSENT).then_some(label)
    }
}

impl Default for PaletteLookup {
    fn default() -> Self {
        Self::new()
    }
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
    fn schemes_translate_by_class_name() {
        let official = LabelScheme::CelebamaskHq.to_canonical();
        assert_eq!(official[2], label_of("nose"));
        assert_eq!(official[6], label_of("l_brow"));
        let lapa = LabelScheme::Lapa.to_canonical();
        assert_eq!(lapa[8], label_of("mouth"));
        assert_eq!(lapa[10], label_of("hair"));
        assert_eq!(lapa[11], None);
        let bisenet = LabelScheme::Bisenet.to_canonical();
        assert!((0..19).all(|i| bisenet[i] == Some(i as u8)));
        assert_eq!(
            LabelScheme::parse("CelebAMask-HQ"),
            Some(LabelScheme::CelebamaskHq)
        );
        assert_eq!(LabelScheme::parse("ade20k"), None);
    }

    #[test]
    fn palette_maps_by_name_not_position() {
        assert_eq!(label_of_colour([76, 153, 0]), label_of("nose"));
        assert_eq!(label_of("nose"), Some(10));
        assert_eq!(label_of_colour([0, 255, 255]), Some(2)); // l_brow
        assert_eq!(label_of_colour([1, 2, 3]), None);
        let lookup = PaletteLookup::new();
        assert_eq!(lookup.label([1, 2, 3]), None);
        assert_eq!(lookup.label([76, 153, 0]), label_of("nose"));
        for (i, name) in CLASS_NAMES.iter().enumerate() {
            assert_eq!(label_of_colour(fill(i as u8)), Some(i as u8), "{name}");
        }
    }

    #[test]
    fn the_lookup_answers_as_the_search_for_every_nearby_colour() {
        // Every channel value of the palette, its neighbours and the extremes, in
        // every combination: the cells of the table and every way to miss them.
        let mut values: Vec<u8> = OFFICIAL_PALETTE
            .iter()
            .flat_map(|(_, c)| *c)
            .flat_map(|v| [v.saturating_sub(1), v, v.saturating_add(1)])
            .chain([0, 1, 127, 128, 254, 255])
            .collect();
        values.sort_unstable();
        values.dedup();
        let lookup = PaletteLookup::new();
        for &r in &values {
            for &g in &values {
                for &b in &values {
                    assert_eq!(
                        lookup.label([r, g, b]),
                        label_of_colour([r, g, b]),
                        "{r} {g} {b}"
                    );
                }
            }
        }
    }
}
