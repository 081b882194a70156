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
//! a few kilobytes ([`count_edges`]), so submit refuses the worst maps before anything
//! is queued; the renderer re-checks everything (it must not trust the queue) and
//! stops early on rings, points and output bytes.
//!
//! What the limits cost at most is here too: the heap a render can hold
//! ([`heap_bound`], which the worker reserves of its batch's memory), and a clock
//! ([`Clock`]) that stops a render past `max_render_ms` should the limits ever fail
//! to bound its time.

use std::time::{Duration, Instant};

use super::trace;
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

/// Heap per edge of the longest loop, held while it is simplified: its edge list (12
/// bytes an edge: start vertex and label across), the simplifier's constraints (one
/// byte a vertex) and room for the simplified ring (16 bytes a point, one point an
/// edge; the hardest maps measured keep a third of that). Reserved once per render
/// (the ring: per loop), never grown by doubling.
///
/// Checked against measurement: `infra/render-bench.sh` (`infra/bench.sh render`)
/// prints the heap a real render held per border edge of the map, its `trace/e`
/// and `render/e` columns. On the synthetic, heavy, blob and ragged maps at 1024²
/// and 2048² they were 14.8–22.1 and 18.0–29.4 bytes an edge (the small faces'
/// larger figures are `RENDER_FIXED_BYTES` spread over few edges; the borders kept
/// for the region across, bounded apart, are most of the rise on the heavy and
/// ragged maps since chains of three vertices are kept); this constant
/// and `PATH_BYTES_PER_EDGE` together allow 49, which also covers a map whose
/// longest loop is all of its borders. Should the bench print more, these
/// constants are what to raise.
pub const LOOP_BYTES_PER_EDGE: u64 = 12 + 1 + 16;

/// Heap per pixel while tracing: which sides of each pixel are borders.
pub const TRACE_BYTES_PER_PIXEL: u64 = 1;

/// Bytes of path data one border edge can produce at most: a point per edge, each a
/// relative move of at most 16 characters (`l-8191.5-4881.5`), and a ring's `M` and
/// `z` (a ring has four edges at least).
const PATH_BYTES_PER_EDGE: u64 = 20;

/// Heap of the decoder beyond the map, per pixel of a row (its row buffers, capped
/// by the PNG limits `input::segmentation` gives it, and one row of labels), and
/// for its fixed state (the inflater's window and tables).
const DECODE_BYTES_PER_COLUMN: u64 = 4 * 4 + 1;
const DECODE_FIXED_BYTES: u64 = 2 << 20;

/// Heap around the work that does not grow with the map: the path data's partly
/// filled blocks (one per label), the per-label tables, the regions and the result.
const RENDER_FIXED_BYTES: u64 = 2 << 20;

/// The most heap a render within `budget` of a `width`×`height` label map holds at
/// once, the map included: what the worker reserves of its batch's memory before it
/// decodes the map. The larger of
///
/// - decoding: the map and the decoder's rows;
/// - tracing: the map, the border flags, the longest loop's working memory
///   ([`LOOP_BYTES_PER_EDGE`]), the borders kept for the region across
///   ([`super::shared_borders::bytes_at_most`]) and the path data written so far;
/// - writing the SVG: the map, the path data and the SVG it drains into.
///
/// `tests/worst_maps.rs` measures the worst maps against it with a counting
/// allocator; `facesvg-probe` does so at full size.
pub fn heap_bound(budget: &RenderBudget, width: u32, height: u32) -> u64 {
    let pixels = u64::from(width) * u64::from(height);
    // A pixel has four sides, so no map has more border edges than four a pixel.
    let edges = budget.max_edges.min(pixels.saturating_mul(4));
    let longest_loop = budget.max_loop_edges.min(edges);
    let path = budget
        .max_svg_bytes
        .min(edges.saturating_mul(PATH_BYTES_PER_EDGE));
    let svg = path.saturating_add(64 * 1024);
    let decode = u64::from(width) * DECODE_BYTES_PER_COLUMN + DECODE_FIXED_BYTES;
    let trace = (pixels * TRACE_BYTES_PER_PIXEL)
        .saturating_add(
            longest_loop
                .saturating_add(1)
                .saturating_mul(LOOP_BYTES_PER_EDGE),
        )
        .saturating_add(super::shared_borders::bytes_at_most(edges))
        .saturating_add(path);
    let write = path.saturating_add(svg);
    pixels
        .saturating_add(decode.max(trace).max(write))
        .saturating_add(RENDER_FIXED_BYTES)
}

/// Steps of work (pixels scanned, edges walked, candidate points tried) between two
/// readings of the clock: well under a millisecond of work, while a reading costs
/// tens of nanoseconds.
const STEPS_PER_READING: u32 = 1 << 14;

/// The render's deadline (`max_render_ms` from its start), read every
/// [`STEPS_PER_READING`] steps of work, so that the loops that do the work can
/// count every step.
pub struct Clock {
    deadline: Option<Instant>,
    max_ms: u64,
    left: u32,
}

impl Clock {
    /// Starts the clock of a render within `budget`.
    pub fn start(budget: &RenderBudget) -> Clock {
        Clock {
            deadline: Instant::now().checked_add(Duration::from_millis(budget.max_render_ms)),
            max_ms: budget.max_render_ms,
            left: STEPS_PER_READING,
        }
    }

    /// A clock that never runs out.
    pub fn unlimited() -> Clock {
        Clock {
            deadline: None,
            max_ms: u64::MAX,
            left: u32::MAX,
        }
    }

    /// Counts `steps` of work; past the deadline, the render is refused.
    #[inline]
    pub fn tick(&mut self, steps: u32) -> Result<(), BudgetError> {
        match self.left.checked_sub(steps) {
            Some(left) if left > 0 => {
                self.left = left;
                Ok(())
            }
            _ => self.read(),
        }
    }

    #[cold]
    fn read(&mut self) -> Result<(), BudgetError> {
        let Some(deadline) = self.deadline else {
            self.left = u32::MAX;
            return Ok(());
        };
        self.left = STEPS_PER_READING;
        if Instant::now() >= deadline {
            return Err(BudgetError {
                limit: Limit::RenderTime,
                max: self.max_ms,
            });
        }
        Ok(())
    }
}

/// What [`count_edges`] learnt in its one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Complexity {
    pub regions: u32,
    pub edges: u64,
}

/// Counts the border edges of `map` (each labelled pixel's sides that face another
/// label or the image's edge) and its regions, stopping at the first row that breaks
/// the budget. One pass over the pixels, with the tracer's own row kernels (so the
/// count is the tracer's by construction), through a buffer of at most
/// [`COUNT_CHUNK`] side bytes: nothing the size of the map is allocated.
pub fn count_edges(map: &LabelMap, budget: &RenderBudget) -> Result<Complexity, BudgetError> {
    let (w, h) = (map.width as usize, map.height as usize);
    budget.check(Limit::Pixels, (w * h) as u64)?;
    let labels = &map.labels;
    let mut present = [false; 256];
    let mut edges = 0u64;
    let mut chunk = vec![0u8; w.min(COUNT_CHUNK)];
    for y in 0..h {
        let row = &labels[y * w..(y + 1) * w];
        let Some((lo, hi)) = trace::labelled_span(row) else {
            continue;
        };
        let mut x = lo;
        while x < hi {
            let end = hi.min(x + COUNT_CHUNK);
            let out = &mut chunk[..end - x];
            trace::row_sides(labels, w, h, y, (x, end), out);
            edges += trace::count_sides(out);
            x = end;
        }
        trace::for_each_run(&row[lo..hi], |l, _, _| present[usize::from(l)] = true);
        budget.check(Limit::Edges, edges)?;
    }
    present[usize::from(BACKGROUND)] = false;
    let regions = present.iter().filter(|&&p| p).count() as u32;
    budget.check(Limit::Regions, u64::from(regions))?;
    Ok(Complexity { regions, edges })
}

/// The most side bytes [`count_edges`] holds at once: a row is counted in spans of
/// this many pixels.
pub const COUNT_CHUNK: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    use crate::render::worst::checkerboard;

    /// Each labelled pixel's sides that face another label or the image's edge,
    /// pixel by pixel, and the labels present.
    fn naive_count(map: &LabelMap) -> Complexity {
        let (w, h) = (map.width as usize, map.height as usize);
        let at = |x: usize, y: usize| map.labels[y * w + x];
        let mut present = [false; 256];
        let mut edges = 0;
        for y in 0..h {
            for x in 0..w {
                let l = at(x, y);
                if l == BACKGROUND {
                    continue;
                }
                present[usize::from(l)] = true;
                edges += u64::from(y == 0 || at(x, y - 1) != l)
                    + u64::from(y + 1 == h || at(x, y + 1) != l)
                    + u64::from(x == 0 || at(x - 1, y) != l)
                    + u64::from(x + 1 == w || at(x + 1, y) != l);
            }
        }
        let regions = present.iter().filter(|&&p| p).count() as u32;
        Complexity { regions, edges }
    }

    #[test]
    fn edges_are_counted_as_pixel_by_pixel_in_spans_and_long_rows() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Rows shorter than a word, across words, and across the counting span.
        for (w, h) in [
            (1, 1),
            (3, 5),
            (17, 4),
            (COUNT_CHUNK + 37, 3),
            (2 * COUNT_CHUNK, 2),
        ] {
            for change in [2, 12, 200] {
                let mut label = 1u8;
                let labels = (0..w * h)
                    .map(|_| {
                        let r = next();
                        if r % change == 0 {
                            label = (r >> 8) as u8 % 5;
                        }
                        label
                    })
                    .collect();
                let map = LabelMap {
                    width: w as u32,
                    height: h as u32,
                    labels,
                };
                let got = count_edges(&map, &RenderBudget::UNLIMITED).unwrap();
                assert_eq!(
                    got,
                    naive_count(&map),
                    "{w}×{h}, a new label every {change}"
                );
            }
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
