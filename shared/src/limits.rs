//! What a request may send and what its render may cost: the numbers, with their
//! defaults. `config` fills them from the environment; `input` checks a request
//! against them before allocating; `render::budget` measures a label map's cost
//! against [`RenderBudget`] and the renderer stops when it runs out. They are a leaf
//! module so that the parsers, the renderer and the configuration all read them
//! without depending on one another.

use thiserror::Error;

/// Size and shape limits, all checked before any allocation they protect.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_image_bytes: usize,
    /// Largest photo sent as a direct upload (an S3 POST, outside the request body).
    pub max_upload_bytes: usize,
    pub max_image_side: u32,
    pub max_image_pixels: u64,
    pub max_landmarks_bytes: usize,
    pub max_segmentation_bytes: usize,
    /// Largest SQS message body this service sends; bigger inputs go through S3.
    pub max_message_bytes: usize,
    /// The work one render may do; its `max_pixels` is `max_image_pixels`.
    pub render: RenderBudget,
}

/// Lambda's limit on a synchronous invocation's payload. API Gateway sends the
/// multipart body base64-encoded inside the event, so the body itself can be at most
/// about three quarters of it.
pub const LAMBDA_SYNC_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// Room kept in the event for everything that is not the body (headers, context).
const EVENT_OVERHEAD_BYTES: usize = 64 * 1024;

/// Room kept in a response for everything that is not the body (status, headers).
const RESPONSE_OVERHEAD_BYTES: usize = 64 * 1024;

/// Whether a text body fits a function's answer: Lambda returns at most
/// [`LAMBDA_SYNC_PAYLOAD_BYTES`], and the body travels as a JSON string, so every
/// `"`, `\` and control character costs its escape. One pass, no allocation.
pub fn fits_lambda_response(body: &[u8]) -> bool {
    let limit = LAMBDA_SYNC_PAYLOAD_BYTES - RESPONSE_OVERHEAD_BYTES;
    if body.len() > limit {
        return false;
    }
    // No byte escapes to more than six: a body this small fits unread (every
    // answer but a large SVG, which the handler wrapper checks again).
    if body.len() * 6 <= limit {
        return true;
    }
    let escapes: usize = body
        .iter()
        .map(|&b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0..=0x1f => 5,
            _ => 0,
        })
        .sum();
    body.len() + escapes <= limit
}

/// The largest body whose base64 form still fits a synchronous invocation.
pub const fn max_body_for_lambda() -> usize {
    (LAMBDA_SYNC_PAYLOAD_BYTES - EVENT_OVERHEAD_BYTES) / 4 * 3
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: max_body_for_lambda(),
            max_image_bytes: 4 * 1024 * 1024,
            max_upload_bytes: 16 * 1024 * 1024,
            max_image_side: 8192,
            max_image_pixels: 40_000_000,
            max_landmarks_bytes: 64 * 1024,
            max_segmentation_bytes: 4 * 1024 * 1024,
            // SQS's classic limit; leaves room for attributes.
            max_message_bytes: 250 * 1024,
            render: RenderBudget::default(),
        }
    }
}

/// Limits on one render. The defaults pass the real faces of the test data and the
/// heavy synthetic maps (up to 4096², islands of 1–3 px and 1-px strokes), and keep a
/// render of any map within the input limits under 165 MB (157 MiB) of heap, the map
/// included (`render::budget::heap_bound`; the worst maps measured, by
/// `facesvg-probe` and `tests/worst_maps.rs`, hold 134 MiB) and under a second on the
/// machine the limits were measured on (`SECURITY.md` has the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderBudget {
    /// Pixels of the label map.
    pub max_pixels: u64,
    /// Distinct non-background labels present.
    pub max_regions: u32,
    /// Unit pixel edges on region borders, before simplification: the length of every
    /// outline, and the work of the tracing walk.
    pub max_edges: u64,
    /// Unit edges of the longest single outline. One outline is walked and
    /// simplified as a whole, with 29 bytes of working memory per edge, reserved once
    /// (`render::budget::LOOP_BYTES_PER_EDGE`): a corridor 1 px wide folded back and
    /// forth is one very long outline in a PNG of a few kilobytes.
    pub max_loop_edges: u64,
    /// Closed rings kept: outer borders and holes of every region.
    pub max_rings: u64,
    /// Points left in the rings after simplification: what is kept in memory.
    pub max_points: u64,
    /// Bytes of SVG written.
    pub max_svg_bytes: u64,
    /// Wall-clock milliseconds of tracing and simplifying: a backstop should the
    /// limits above ever let a map cost more time than measured (under a second for
    /// the worst maps; five seconds leaves room for Lambda's fraction of a vCPU at
    /// 1024 MB and a loaded instance, and is far inside process's 30 s timeout).
    /// Unlike them it depends on the machine and its load, so a render refused by it
    /// is not a verdict on the inputs (see [`BudgetError::is_deterministic`]).
    pub max_render_ms: u64,
}

impl Default for RenderBudget {
    fn default() -> Self {
        RenderBudget {
            max_pixels: 40_000_000,
            max_regions: 64,
            max_edges: 5_000_000,
            max_loop_edges: 2_000_000,
            max_rings: 500_000,
            max_points: 4_000_000,
            max_svg_bytes: 24 * 1024 * 1024,
            max_render_ms: 5_000,
        }
    }
}

impl RenderBudget {
    /// No limits: for offline tools that render trusted maps.
    pub const UNLIMITED: RenderBudget = RenderBudget {
        max_pixels: u64::MAX,
        max_regions: u32::MAX,
        max_edges: u64::MAX,
        max_loop_edges: u64::MAX,
        max_rings: u64::MAX,
        max_points: u64::MAX,
        max_svg_bytes: u64::MAX,
        max_render_ms: u64::MAX,
    };

    pub(crate) fn check(&self, what: Limit, value: u64) -> Result<(), BudgetError> {
        let max = match what {
            Limit::Pixels => self.max_pixels,
            Limit::Regions => u64::from(self.max_regions),
            Limit::Edges => self.max_edges,
            Limit::LoopEdges => self.max_loop_edges,
            Limit::Rings => self.max_rings,
            Limit::Points => self.max_points,
            Limit::SvgBytes => self.max_svg_bytes,
            Limit::RenderTime => self.max_render_ms,
        };
        if value > max {
            Err(BudgetError { limit: what, max })
        } else {
            Ok(())
        }
    }
}

/// The quantity a render ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Pixels,
    Regions,
    Edges,
    LoopEdges,
    Rings,
    Points,
    SvgBytes,
    /// The wall clock (`max_render_ms`), not a quantity of the inputs.
    RenderTime,
}

impl Limit {
    /// Name of the limit as configured (the environment variable, lower-cased).
    pub fn name(self) -> &'static str {
        match self {
            Limit::Pixels => "max_image_pixels",
            Limit::Regions => "max_render_regions",
            Limit::Edges => "max_render_edges",
            Limit::LoopEdges => "max_render_loop_edges",
            Limit::Rings => "max_render_rings",
            Limit::Points => "max_render_points",
            Limit::SvgBytes => "max_svg_bytes",
            Limit::RenderTime => "max_render_ms",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Limit::Pixels => "pixels",
            Limit::Regions => "regions",
            Limit::Edges => "border edges",
            Limit::LoopEdges => "edges in one outline",
            Limit::Rings => "outlines (islands and holes)",
            Limit::Points => "outline points",
            Limit::SvgBytes => "bytes of SVG",
            Limit::RenderTime => "milliseconds of rendering",
        }
    }
}

/// A render refused for its cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the label map is too complex to render: more than {max} {} ({})", .limit.what(), .limit.name())]
pub struct BudgetError {
    pub limit: Limit,
    pub max: u64,
}

impl BudgetError {
    /// Whether the same inputs always break this limit: every limit but the clock
    /// counts something of the inputs; the clock also counts the machine's speed and
    /// load, so a render it stops may finish on the next try.
    pub fn is_deterministic(&self) -> bool {
        self.limit != Limit::RenderTime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_fits_a_response_by_its_escaped_length() {
        let limit = LAMBDA_SYNC_PAYLOAD_BYTES - RESPONSE_OVERHEAD_BYTES;
        assert!(fits_lambda_response(&vec![b'a'; limit]));
        assert!(!fits_lambda_response(&vec![b'a'; limit + 1]));
        // Quotes double: half the bytes of quotes fill the same room.
        assert!(fits_lambda_response(&vec![b'"'; limit / 2]));
        assert!(!fits_lambda_response(&vec![b'"'; limit / 2 + 1]));
        let escaped = serde_json::to_string(&"\"\\\n\u{1}x").unwrap().len() - 2;
        assert_eq!(escaped, 2 + 2 + 2 + 6 + 1);
    }

    #[test]
    fn the_largest_body_fits_lambdas_payload_once_base64_encoded() {
        let body = Limits::default().max_body_bytes;
        let encoded = body.div_ceil(3) * 4;
        assert!(encoded + EVENT_OVERHEAD_BYTES <= LAMBDA_SYNC_PAYLOAD_BYTES);
        assert!(Limits::default().max_image_bytes < body);
    }
}
