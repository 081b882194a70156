//! Facial landmarks: iBUG `.pts`, plain `x y` / `x,y` lines, or JSON `[[x, y], …]`.
//!
//! Points are kept in thousandths of a pixel. The cache key hashes these canonical
//! numbers, not the text, so whitespace or format differences share a key; and the
//! renderer draws from the same rounded numbers, so one key always means one SVG.

use serde::{Deserialize, Serialize};

use super::InputError;
use crate::limits::Limits;

const FIELD: &str = "landmarks";
/// Point counts of the supported models: iBUG 68, MediaPipe Face Mesh 468 (478 with irises).
pub const SUPPORTED_COUNTS: [usize; 3] = [68, 468, 478];
const MAX_POINTS: usize = 478;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Landmarks {
    /// (x, y) in 1/1000 px, origin at the top-left corner of the image.
    pub points: Vec<[i32; 2]>,
}

impl Landmarks {
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Point `i` in pixels.
    pub fn xy(&self, i: usize) -> (f64, f64) {
        let [x, y] = self.points[i];
        (f64::from(x) / 1000.0, f64::from(y) / 1000.0)
    }

    pub fn iter_px(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        (0..self.points.len()).map(|i| self.xy(i))
    }

    /// Parses and validates landmarks for an image of `width`×`height` pixels.
    pub fn parse(raw: &[u8], width: u32, height: u32, limits: &Limits) -> Result<Self, InputError> {
        if raw.len() > limits.max_landmarks_bytes {
            return Err(InputError::too_large(
                FIELD,
                format!("over the limit of {} bytes", limits.max_landmarks_bytes),
            ));
        }
        let text =
            std::str::from_utf8(raw).map_err(|_| InputError::invalid(FIELD, "not UTF-8 text"))?;
        let text = text.trim_start_matches('\u{feff}').trim();
        if text.is_empty() {
            return Err(InputError::invalid(FIELD, "the file is empty"));
        }
        let points = if text.starts_with('[') {
            parse_json(text)?
        } else {
            parse_lines(text)?
        };
        if !SUPPORTED_COUNTS.contains(&points.len()) {
            return Err(InputError::invalid(
                FIELD,
                format!("expected 68, 468 or 478 points, got {}", points.len()),
            ));
        }
        // MediaPipe emits coordinates normalised to 0..1; scale them to pixels.
        let normalised = points.len() >= 468
            && points
                .iter()
                .all(|&(x, y)| (0.0..=1.0).contains(&x) && (0.0..=1.0).contains(&y));
        let (sx, sy) = if normalised {
            (f64::from(width), f64::from(height))
        } else {
            (1.0, 1.0)
        };

        // Detectors place jaw points slightly outside a tight crop; allow a quarter of
        // the image beyond each edge, no more.
        let (w, h) = (f64::from(width), f64::from(height));
        let (mx, my) = (w * 0.25, h * 0.25);
        let mut out = Vec::with_capacity(points.len());
        for (i, &(x, y)) in points.iter().enumerate() {
            let (x, y) = (x * sx, y * sy);
            if x < -mx || x > w + mx || y < -my || y > h + my {
                return Err(InputError::invalid(
                    FIELD,
                    format!(
                        "point {} ({x}, {y}) lies outside the {width}×{height} image",
                        i + 1
                    ),
                ));
            }
            out.push([(x * 1000.0).round() as i32, (y * 1000.0).round() as i32]);
        }
        Ok(Landmarks { points: out })
    }
}

fn number(token: &str, line: usize) -> Result<f64, InputError> {
    let value: f64 = token.parse().map_err(|_| {
        InputError::invalid(
            FIELD,
            format!("line {line}: {:?} is not a number", shorten(token)),
        )
    })?;
    if !value.is_finite() {
        return Err(InputError::invalid(
            FIELD,
            format!("line {line}: {token} is not a finite number"),
        ));
    }
    Ok(value)
}

fn shorten(s: &str) -> String {
    s.chars().take(24).collect()
}

/// iBUG `.pts` (`version: 1`, `n_points: N`, `{`, N lines, `}`) or bare point lines.
fn parse_lines(text: &str) -> Result<Vec<(f64, f64)>, InputError> {
    let mut declared = None;
    let mut in_braces = false;
    let mut saw_braces = false;
    let mut points = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let lineno = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !in_braces {
            if let Some(rest) = line.strip_prefix("n_points:") {
                let n: usize = rest.trim().parse().map_err(|_| {
                    InputError::invalid(
                        FIELD,
                        format!("line {lineno}: n_points is not a whole number"),
                    )
                })?;
                declared = Some(n);
                continue;
            }
            if line.starts_with("version:") {
                continue;
            }
            if line == "{" {
                in_braces = true;
                saw_braces = true;
                continue;
            }
        } else if line == "}" {
            in_braces = false;
            continue;
        }
        if saw_braces && !in_braces {
            return Err(InputError::invalid(
                FIELD,
                format!("line {lineno}: text after the closing brace"),
            ));
        }
        if points.len() == MAX_POINTS {
            return Err(InputError::invalid(
                FIELD,
                format!("more than {MAX_POINTS} points"),
            ));
        }
        let mut tokens = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty());
        let (Some(x), Some(y)) = (tokens.next(), tokens.next()) else {
            return Err(InputError::invalid(
                FIELD,
                format!("line {lineno}: expected two numbers \"x y\""),
            ));
        };
        let (x, y) = (number(x, lineno)?, number(y, lineno)?);
        // A third number (depth, as MediaPipe gives) is allowed and ignored.
        if let Some(z) = tokens.next() {
            number(z, lineno)?;
        }
        if tokens.next().is_some() {
            return Err(InputError::invalid(
                FIELD,
                format!("line {lineno}: more than three numbers"),
            ));
        }
        points.push((x, y));
    }
    if in_braces {
        return Err(InputError::invalid(
            FIELD,
            "the .pts block has no closing brace",
        ));
    }
    if let Some(n) = declared {
        if n != points.len() {
            return Err(InputError::invalid(
                FIELD,
                format!("n_points says {n} but {} points follow", points.len()),
            ));
        }
    }
    Ok(points)
}

/// `[[x, y], …]`, `[[x, y, z], …]` or `[{"x": …, "y": …}, …]`.
fn parse_json(text: &str) -> Result<Vec<(f64, f64)>, InputError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| InputError::invalid(FIELD, format!("invalid JSON: {e}")))?;
    let items = value
        .as_array()
        .ok_or_else(|| InputError::invalid(FIELD, "expected a JSON array of points"))?;
    if items.len() > MAX_POINTS {
        return Err(InputError::invalid(
            FIELD,
            format!("more than {MAX_POINTS} points"),
        ));
    }
    let coord = |v: Option<&serde_json::Value>, i: usize| -> Result<f64, InputError> {
        let n = v.and_then(|v| v.as_f64()).ok_or_else(|| {
            InputError::invalid(FIELD, format!("point {}: expected numeric x and y", i + 1))
        })?;
        if n.is_finite() {
            Ok(n)
        } else {
            Err(InputError::invalid(
                FIELD,
                format!("point {}: not a finite number", i + 1),
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            serde_json::Value::Array(a) if a.len() == 2 || a.len() == 3 => {
                Ok((coord(a.first(), i)?, coord(a.get(1), i)?))
            }
            serde_json::Value::Object(o) => Ok((coord(o.get("x"), i)?, coord(o.get("y"), i)?)),
            _ => Err(InputError::invalid(
                FIELD,
                format!("point {}: expected [x, y] or {{\"x\": …, \"y\": …}}", i + 1),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(n: usize) -> String {
        let body: Vec<String> = (0..n)
            .map(|i| format!("{}.25 {}.5", 10 + i, 20 + i))
            .collect();
        format!("version: 1\nn_points: {n}\n{{\n{}\n}}\n", body.join("\n"))
    }

    #[test]
    fn formats_and_whitespace_give_the_same_points() {
        let limits = Limits::default();
        let a = Landmarks::parse(pts(68).as_bytes(), 200, 200, &limits).unwrap();
        let lines: Vec<String> = (0..68)
            .map(|i| format!("  {}.250,\t{}.50 ", 10 + i, 20 + i))
            .collect();
        let b = Landmarks::parse(lines.join("\r\n").as_bytes(), 200, 200, &limits).unwrap();
        let json: Vec<String> = (0..68)
            .map(|i| format!("[{}.25,{}.5]", 10 + i, 20 + i))
            .collect();
        let c = Landmarks::parse(
            format!("[{}]", json.join(",")).as_bytes(),
            200,
            200,
            &limits,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.points[0], [10_250, 20_500]);
    }

    #[test]
    fn rejects_text_nan_counts_and_out_of_range() {
        let limits = Limits::default();
        let with_text = pts(68).replacen("10.25", "ten", 1);
        assert!(Landmarks::parse(with_text.as_bytes(), 200, 200, &limits)
            .unwrap_err()
            .message
            .contains("not a number"));
        let with_nan = pts(68).replacen("10.25", "NaN", 1);
        assert!(Landmarks::parse(with_nan.as_bytes(), 200, 200, &limits)
            .unwrap_err()
            .message
            .contains("finite"));
        assert!(Landmarks::parse(pts(5).as_bytes(), 200, 200, &limits)
            .unwrap_err()
            .message
            .contains("got 5"));
        assert!(Landmarks::parse(pts(68).as_bytes(), 40, 40, &limits)
            .unwrap_err()
            .message
            .contains("outside"));
        let wrong_n = pts(68).replace("n_points: 68", "n_points: 67");
        assert!(Landmarks::parse(wrong_n.as_bytes(), 200, 200, &limits).is_err());
    }

    #[test]
    fn normalised_mediapipe_points_are_scaled() {
        let json: Vec<String> = (0..468)
            .map(|i| format!("[{},0.5,0.1]", i as f64 / 1000.0))
            .collect();
        let lm = Landmarks::parse(
            format!("[{}]", json.join(",")).as_bytes(),
            1000,
            800,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(lm.points[100], [100_000, 400_000]);
    }
}
