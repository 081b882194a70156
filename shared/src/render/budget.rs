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

use crate::input::{InputError, LabelMap, Submission};
use crate::labels::BACKGROUND;
use crate::limits::Limits;
// The budget's numbers are limits of the inputs (`crate::limits`); what a map
// costs against them is the renderer's knowledge, here.
pub use crate::limits::{BudgetError, Limit, RenderBudget};

/// Decodes `sub`'s label map and judges its cost: a map whose borders alone break
/// the render budget is refused after one pass over its pixels, so that it is never
/// queued. What submit (and the fuzzer) call on a miss.
pub fn admit(sub: &Submission<'_>, limits: &Limits) -> Result<Option<LabelMap>, InputError> {
    let map = sub.decode_label_map(limits)?;
    if let Some(map) = &map {
        count_edges(map, &limits.render)
            .map_err(|e| InputError::too_complex("segmentation_map", e))?;
    }
    Ok(map)
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
