//! The work budget of one render, checked while the work is done.
//!
//! A label map's cost is not its file size: a 51 KB PNG can declare 40 megapixels in
//! which two labels alternate on every pixel, and tracing it naively takes gigabytes
//! and half a minute. Pixels alone do not measure it either: what costs time and
//! memory is the length of the borders (unit edges walked), the rings kept (islands
//! and holes), the points left after simplification, and the SVG written. Each has a
//! limit, and each is checked as it grows, so a hostile map is refused after the
//! cheap pass that first exceeds a limit, never after the expensive one.
//!
//! The edge count is known after one pass over the pixels with no allocation beyond
//! the map itself ([`count_edges`]), so submit refuses the worst maps before anything
//! is queued; the renderer re-checks everything (it must not trust the queue) and
//! stops early on rings, points and output bytes.

use thiserror::Error;

use crate::input::LabelMap;
use crate::labels::BACKGROUND;

/// Limits on one render. The defaults pass the real faces of the test data and the
/// heavy synthetic maps (up to 4096², islands of 1–3 px and 1-px strokes), and keep a
/// render of any map within the input limits under about a quarter of a gigabyte.
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
    /// simplified as a whole, with about 40 bytes of working memory per edge: a
    /// comb of thin teeth joined into one region is one very long outline.
    pub max_loop_edges: u64,
    /// Closed rings kept: outer borders and holes of every region.
    pub max_rings: u64,
    /// Points left in the rings after simplification: what is kept in memory.
    pub max_points: u64,
    /// Bytes of SVG written.
    pub max_svg_bytes: u64,
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
        }
    }
}

/// A render refused for its cost. Deterministic: the same inputs break the same limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the label map is too complex to render: more than {max} {} ({})", .limit.what(), .limit.name())]
pub struct BudgetError {
    pub limit: Limit,
    pub max: u64,
}

/// What [`count_edges`] learnt in its one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Complexity {
    pub regions: u32,
    pub edges: u64,
}

/// Counts the border edges of `map` (each labelled pixel's sides that face another
/// label or the image's edge) and its regions, stopping at the first row that breaks
/// the budget. No allocation; one pass over the pixels.
pub fn count_edges(map: &LabelMap, budget: &RenderBudget) -> Result<Complexity, BudgetError> {
    let (w, h) = (map.width as usize, map.height as usize);
    budget.check(Limit::Pixels, (w * h) as u64)?;
    let labels = &map.labels;
    let mut present = [false; 256];
    let mut edges = 0u64;
    for y in 0..h {
        let row = &labels[y * w..(y + 1) * w];
        let above = (y > 0).then(|| &labels[(y - 1) * w..y * w]);
        let below = (y + 1 < h).then(|| &labels[(y + 1) * w..(y + 2) * w]);
        let mut row_edges = 0u32;
        for x in 0..w {
            let l = row[x];
            if l == BACKGROUND {
                continue;
            }
            present[usize::from(l)] = true;
            row_edges += u32::from(above.is_none_or(|a| a[x] != l))
                + u32::from(below.is_none_or(|b| b[x] != l))
                + u32::from(x == 0 || row[x - 1] != l)
                + u32::from(x + 1 == w || row[x + 1] != l);
        }
        edges += u64::from(row_edges);
        budget.check(Limit::Edges, edges)?;
    }
    let regions = present.iter().filter(|&&p| p).count() as u32;
    budget.check(Limit::Regions, u64::from(regions))?;
    Ok(Complexity { regions, edges })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkerboard(w: u32, h: u32) -> LabelMap {
        let labels = (0..h)
            .flat_map(|y| (0..w).map(move |x| 1 + ((x + y) % 2) as u8))
            .collect();
        LabelMap {
            width: w,
            height: h,
            labels,
        }
    }

    #[test]
    fn a_square_has_its_perimeter_in_edges() {
        let map = LabelMap {
            width: 4,
            height: 4,
            labels: vec![0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0],
        };
        let c = count_edges(&map, &RenderBudget::default()).unwrap();
        assert_eq!(
            c,
            Complexity {
                regions: 1,
                edges: 8
            }
        );
    }

    #[test]
    fn a_checkerboard_breaks_the_edge_limit_early() {
        let map = checkerboard(64, 64);
        let budget = RenderBudget {
            max_edges: 1000,
            ..RenderBudget::default()
        };
        let err = count_edges(&map, &budget).unwrap_err();
        assert_eq!(err.limit, Limit::Edges);
        assert!(err.to_string().contains("max_render_edges"), "{err}");
        assert_eq!(
            count_edges(&map, &RenderBudget::UNLIMITED).unwrap().edges,
            64 * 64 * 4
        );
    }

    #[test]
    fn too_many_labels_break_the_region_limit() {
        let map = LabelMap {
            width: 20,
            height: 1,
            labels: (1..=20).collect(),
        };
        let budget = RenderBudget {
            max_regions: 19,
            ..RenderBudget::default()
        };
        assert_eq!(
            count_edges(&map, &budget).unwrap_err().limit,
            Limit::Regions
        );
    }
}
