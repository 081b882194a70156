//! Tracing a label map into closed outlines along pixel edges.
//!
//! One pass over the map marks, for every labelled pixel, which of its four sides
//! borders a different label (or the image edge). Each marked side is a directed
//! unit edge with its pixel on the right-hand side; following edges of the same label
//! from vertex to vertex closes a loop. Outer borders come out clockwise and holes
//! counter-clockwise (y down), and because outlines run along pixel edges rather than
//! through pixel centres, two neighbouring regions share their border exactly: no
//! gaps, no overlaps, and an even-odd fill of a region's loops reproduces its pixels.
//!
//! Where two pixels of a label touch only at a corner (a saddle), the walk turns
//! right, so regions are 4-connected and loops touch at such vertices without ever
//! crossing.
//!
//! Each loop is then cut into chains at junctions (vertices where the label across
//! the border changes, and saddles), and each chain is simplified exactly
//! ([`super::simplify`]) in a canonical orientation — the one in which the smaller
//! label is on the right — so that both regions along a border get the very same
//! points, and the shared border stays free of gaps and overlaps.

use super::budget::{BudgetError, Clock, Limit, RenderBudget};
use super::shared_borders::{ChainKey, SharedBorders};
use super::simplify::{self, Chain, Sides, P};
use crate::input::LabelMap;
use crate::labels::BACKGROUND;

/// The "label" beyond the image's edge.
const OUTSIDE: u16 = 256;

const TOP: u8 = 1;
const RIGHT: u8 = 2;
const BOTTOM: u8 = 4;
const LEFT: u8 = 8;

/// Directions, clockwise in image coordinates (y down): +1 is a right turn.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dir {
    R = 0,
    D = 1,
    L = 2,
    U = 3,
}

impl Dir {
    /// The direction of a unit step.
    fn of_step(d: (i64, i64)) -> Dir {
        match d {
            (1, 0) => Dir::R,
            (0, 1) => Dir::D,
            (-1, 0) => Dir::L,
            _ => Dir::U,
        }
    }
}

/// One region of the map: its label and pixel statistics.
#[derive(Debug, Clone, Copy)]
pub struct Region {
    pub label: u8,
    pub area: u64,
    /// Pixel bounds: x0 ≤ x < x1, y0 ≤ y < y1.
    pub bbox: [u32; 4],
    pub centroid: [f64; 2],
}

/// Where the second pass hands each ring as soon as it is simplified, label by label
/// in the order the rings are found. [`trace`] collects them as points; the renderer
/// writes them straight into path data, which is several times smaller than the
/// points, so a large map never holds all of its rings as points at once.
pub trait Rings {
    /// `ring`: closed, in doubled coordinates (half-pixel units), the last point
    /// connecting back to the first.
    fn ring(&mut self, label: u8, ring: &[P]) -> Result<(), BudgetError>;
}

/// One region of the map: its label, its pixel statistics and its loops.
#[derive(Debug, Clone)]
pub struct TracedRegion {
    pub label: u8,
    pub area: u64,
    /// Pixel bounds: x0 ≤ x < x1, y0 ≤ y < y1.
    pub bbox: [u32; 4],
    pub centroid: [f64; 2],
    /// Closed rings of points in doubled coordinates (half-pixel units); the last
    /// point connects back to the first.
    pub loops: Vec<Vec<P>>,
}

struct Grid<'a> {
    w: i64,
    h: i64,
    labels: &'a [u8],
}

/// Of the pixels around a vertex, the one on the right of the edge leaving it in
/// each direction (the edge's pixel) and the one on its left (across the edge), as
/// indices into a [`Grid::block`].
const RIGHT_OF: [usize; 4] = [3, 2, 0, 1];
const LEFT_OF: [usize; 4] = [1, 3, 2, 0];

/// The shift of the lane of a packed block (see `follow`) that holds the pixel left
/// of direction d, 16 · LEFT_OF[d], a byte for each d: one constant the walk keeps
/// in a register, where indexing `LEFT_OF` had it copy the table every edge.
const ACROSS_SHIFTS: u32 = {
    let (mut t, mut d) = (0, 0);
    while d < 4 {
        t |= ((16 * LEFT_OF[d]) as u32) << (8 * d);
        d += 1;
    }
    t
};

/// For a walk arriving in direction `d` at a vertex whose pixels of the walk's label
/// are the mask `m`, the direction it leaves in: the first of right, straight, left
/// with an edge of the label (its pixel on the right, another label on its left),
/// or 4 where there is none (a mask the walk cannot arrive at).
const NEXT: [[u8; 16]; 4] = {
    let mut t = [[4u8; 16]; 4];
    let mut d = 0;
    while d < 4 {
        let mut m = 0;
        while m < 16 {
            let mut k = 0;
            while k < 3 {
                // Right turn, straight on, left turn.
                let nd = (d + [1, 0, 3][k]) % 4;
                let (r, l) = (1 << RIGHT_OF[nd], 1 << LEFT_OF[nd]);
                if m & r != 0 && m & l == 0 {
                    t[d][m] = nd as u8;
                    break;
                }
                k += 1;
            }
            m += 1;
        }
        d += 1;
    }
    t
};

/// What the walk keeps of each unit edge besides its start: the label across it (9
/// bits: 0–255, or [`OUTSIDE`]), which pixels around its start vertex have the
/// loop's label (4 bits: top-left, top-right, bottom-left, bottom-right, the order of `simplify`'s groups), and whether that vertex is a pinch point.
type Across = u16;
const ACROSS_LABEL: Across = 0x1FF;
const MASK_SHIFT: u32 = 9;
const PINCH: Across = 1 << 13;

fn across_label(a: Across) -> u16 {
    a & ACROSS_LABEL
}

/// Two diagonal pixels of one label, each of the other two pixels of another (the
/// two others of one label or of two): the borders of three or four regions pass
/// through the vertex, and every one of them must cut its chain there, whether or
/// not the label across changes along its own loop. A cut seen from one side only
/// simplifies one shared border two ways: slivers of gap and overlap.
fn is_pinch([tl, tr, bl, br]: [u16; 4]) -> bool {
    (tl == br && tr != tl && bl != tl) || (tr == bl && tl != tr && br != tr)
}

impl Grid<'_> {
    /// The labels of the four pixels around vertex (x, y), top-left, top-right,
    /// bottom-left, bottom-right; [`OUTSIDE`] beyond the image.
    #[inline]
    fn block(&self, x: i64, y: i64) -> [u16; 4] {
        if x >= 1 && y >= 1 && x < self.w && y < self.h {
            let i = ((y - 1) * self.w + x - 1) as usize;
            let w = self.w as usize;
            [
                u16::from(self.labels[i]),
                u16::from(self.labels[i + 1]),
                u16::from(self.labels[i + w]),
                u16::from(self.labels[i + w + 1]),
            ]
        } else {
            let at = |x: i64, y: i64| self.label(x, y).map_or(OUTSIDE, u16::from);
            [at(x - 1, y - 1), at(x, y - 1), at(x - 1, y), at(x, y)]
        }
    }

    fn label(&self, x: i64, y: i64) -> Option<u8> {
        if x < 0 || y < 0 || x >= self.w || y >= self.h {
            None
        } else {
            Some(self.labels[(y * self.w + x) as usize])
        }
    }

    /// The pixel on the right of an edge leaving vertex `v` in direction `d`, and
    /// which of its sides that edge is.
    fn interior(v: (i64, i64), d: Dir) -> ((i64, i64), u8) {
        let (x, y) = v;
        match d {
            Dir::R => ((x, y), TOP),
            Dir::D => ((x - 1, y), RIGHT),
            Dir::L => ((x - 1, y - 1), BOTTOM),
            Dir::U => ((x, y - 1), LEFT),
        }
    }
}

/// Constraint pixels of a chain between `right` and `left` labels.
struct ChainSides<'a> {
    grid: &'a Grid<'a>,
    right: u16,
    left: u16,
}

impl Sides for ChainSides<'_> {
    fn side(&self, x: i64, y: i64) -> Option<bool> {
        let l = u16::from(self.grid.label(x, y)?);
        if l == self.right {
            Some(true)
        } else if l == self.left {
            Some(false)
        } else {
            None
        }
    }
}

/// Traces every non-background region of `map`, ordered by label, with no limits
/// (for trusted maps; the service uses [`trace_within`]).
pub fn trace(map: &LabelMap) -> Vec<TracedRegion> {
    match trace_within(map, &RenderBudget::UNLIMITED) {
        Ok(regions) => regions,
        Err(e) => unreachable!("an unlimited budget cannot be exceeded: {e}"),
    }
}

/// Traces every non-background region of `map`, ordered by label, and stops as soon
/// as the work exceeds `budget`: border edges are counted row by row in the first
/// pass, rings and points as the second pass keeps them.
pub fn trace_within(
    map: &LabelMap,
    budget: &RenderBudget,
) -> Result<Vec<TracedRegion>, BudgetError> {
    trace_timed(map, budget).map(|(regions, _)| regions)
}

/// [`trace_within`], also returning the time spent simplifying chains (see
/// [`trace_into`]).
pub fn trace_timed(
    map: &LabelMap,
    budget: &RenderBudget,
) -> Result<(Vec<TracedRegion>, std::time::Duration), BudgetError> {
    struct Collect(Vec<Vec<Vec<P>>>);
    impl Rings for Collect {
        fn ring(&mut self, label: u8, ring: &[P]) -> Result<(), BudgetError> {
            self.0[usize::from(label)].push(ring.to_vec());
            Ok(())
        }
    }
    let mut loops = Collect(vec![Vec::new(); 256]);
    let (regions, simplifying) = trace_into(map, budget, &mut loops)?;
    let traced = regions
        .into_iter()
        .map(|r| TracedRegion {
            label: r.label,
            area: r.area,
            bbox: r.bbox,
            centroid: r.centroid,
            loops: std::mem::take(&mut loops.0[usize::from(r.label)]),
        })
        .collect();
    Ok((traced, simplifying))
}

/// Traces every non-background region of `map`, handing each ring to `rings` as soon
/// as it is simplified, and returns the regions ordered by label with the time spent
/// simplifying. Stops as soon as the work exceeds `budget`: border edges are counted
/// row by row in the first pass, each loop's edges as it is walked, rings and points
/// as the second pass finds them, and the wall clock every few thousand steps of
/// either pass. Simplification runs loop by loop inside the second pass (each loop
/// as soon as it is followed, while its edges are in the scratch buffers), so it is
/// timed there, around each call: the output is the same as without timing.
pub fn trace_into(
    map: &LabelMap,
    budget: &RenderBudget,
    rings: &mut impl Rings,
) -> Result<(Vec<Region>, std::time::Duration), BudgetError> {
    let mut simplifying = std::time::Duration::ZERO;
    let mut clock = Clock::start(budget);
    let (w, h) = (map.width as usize, map.height as usize);
    budget.check(Limit::Pixels, (w * h) as u64)?;
    let labels = &map.labels;
    let grid = Grid {
        w: w as i64,
        h: h as i64,
        labels,
    };

    // Pass 1: boundary sides and per-label statistics.
    let (mut sides, stats, edges) = sides_and_stats(labels, w, h, budget, &mut clock)?;
    let regions = stats.iter().skip(1).filter(|s| s.area > 0).count();
    budget.check(Limit::Regions, regions as u64)?;

    // Pass 2: follow each unvisited boundary edge around its loop. No loop is longer
    // than all the borders together, nor than the budget lets one be: the scratch
    // buffers are sized once, for the longest loop there can be, and never grow.
    let longest = edges.min(budget.max_loop_edges) as usize;
    let mut scratch = Scratch::with_capacity(longest);
    let (mut ring_count, mut points) = (0u64, 0u64);
    for y in 0..h {
        let mut x = 0;
        while x < w {
            // Most of the map has no side left to follow: skip it eight at a time, to
            // the first pixel with one.
            if x + 8 <= w {
                let mut word = [0u8; 8];
                word.copy_from_slice(&sides[y * w + x..y * w + x + 8]);
                let word = u64::from_le_bytes(word);
                if word == 0 {
                    x += 8;
                    continue;
                }
                x += word.trailing_zeros() as usize / 8;
            }
            while sides[y * w + x] != 0 {
                let bits = sides[y * w + x];
                let side = bits & bits.wrapping_neg();
                let label = labels[y * w + x];
                let (xi, yi) = (x as i64, y as i64);
                let (start, dir) = match side {
                    TOP => ((xi, yi), Dir::R),
                    RIGHT => ((xi + 1, yi), Dir::D),
                    BOTTOM => ((xi + 1, yi + 1), Dir::L),
                    _ => ((xi, yi + 1), Dir::U),
                };
                follow(
                    &grid,
                    &mut sides,
                    (label, start, dir),
                    &mut scratch.edges,
                    budget,
                    &mut clock,
                )?;
                let simplify_start = std::time::Instant::now();
                simplify_loop(&grid, &sides, u16::from(label), &mut scratch, &mut clock)?;
                simplifying += simplify_start.elapsed();
                ring_count += 1;
                points += scratch.ring.len() as u64;
                budget.check(Limit::Rings, ring_count)?;
                budget.check(Limit::Points, points)?;
                rings.ring(label, &scratch.ring)?;
            }
            x += 1;
        }
        clock.tick(w as u32)?;
    }

    let regions = (1..=255u8)
        .filter(|&l| stats[usize::from(l)].area > 0)
        .map(|l| {
            let s = stats[usize::from(l)];
            Region {
                label: l,
                area: s.area,
                bbox: [s.x0, s.y0, s.x1, s.y1],
                // Pixel centres sit at +0.5.
                centroid: [
                    s.sx as f64 / s.area as f64 + 0.5,
                    s.sy as f64 / s.area as f64 + 0.5,
                ],
            }
        })
        .collect();
    Ok((regions, simplifying))
}

/// Pixel statistics of one label, as pass 1 gathers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stats {
    area: u64,
    sx: u64,
    sy: u64,
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
}

const NO_PIXELS: Stats = Stats {
    area: 0,
    sx: 0,
    sy: 0,
    x0: u32::MAX,
    y0: u32::MAX,
    x1: 0,
    y1: 0,
};

/// Pass 1: for every labelled pixel, which of its sides border another label or the
/// image's edge (`TOP | RIGHT | BOTTOM | LEFT`), each label's statistics, and the
/// border edges of them all, counted against the budget row by row.
fn sides_and_stats(
    labels: &[u8],
    w: usize,
    h: usize,
    budget: &RenderBudget,
    clock: &mut Clock,
) -> Result<(Vec<u8>, [Stats; 256], u64), BudgetError> {
    let mut stats = [NO_PIXELS; 256];
    // Pages of `sides` that cover only background are never written: a mostly empty
    // map (a face in a large photo) costs little more than the scan for its labels.
    let mut sides = vec![0u8; w * h];
    let mut edges = 0u64;
    for y in 0..h {
        clock.tick(w as u32)?;
        let row = &labels[y * w..(y + 1) * w];
        let Some((lo, hi)) = labelled_span(row) else {
            continue;
        };
        let out = &mut sides[y * w..(y + 1) * w];
        row_sides(labels, w, h, y, (lo, hi), &mut out[lo..hi]);
        let row_edges = count_sides(&out[lo..hi]);
        // Statistics a run of one label at a time.
        for_each_run(&row[lo..hi], |l, x0, x1| {
            if l != BACKGROUND {
                let (x0, x1) = ((lo + x0) as u64, (lo + x1) as u64);
                let s = &mut stats[usize::from(l)];
                s.area += x1 - x0;
                s.sx += (x0 + x1 - 1) * (x1 - x0) / 2;
                s.sy += y as u64 * (x1 - x0);
                s.x0 = s.x0.min(x0 as u32);
                s.y0 = s.y0.min(y as u32);
                s.x1 = s.x1.max(x1 as u32);
                s.y1 = s.y1.max(y as u32 + 1);
            }
        });
        edges += row_edges;
        budget.check(Limit::Edges, edges)?;
    }
    Ok((sides, stats, edges))
}

/// The side bits of row `y`'s pixels `lo..hi` into `out` (as long as that span):
/// a side is marked where the neighbour differs or lies beyond the image, and
/// background pixels have none. The pixels with both neighbours in the row go
/// through one branch-free loop that the compiler vectorises; then the row's ends.
pub(super) fn row_sides(
    labels: &[u8],
    w: usize,
    h: usize,
    y: usize,
    (lo, hi): (usize, usize),
    out: &mut [u8],
) {
    let row = &labels[y * w..(y + 1) * w];
    // Beyond the image's top and bottom every side is a border: the row itself
    // stands in for the missing neighbour (so nothing differs), and the side is
    // forced.
    let (up, force_up) = match y {
        0 => (row, TOP),
        _ => (&labels[(y - 1) * w..y * w], 0),
    };
    let (down, force_down) = match y + 1 == h {
        true => (row, BOTTOM),
        false => (&labels[(y + 1) * w..(y + 2) * w], 0),
    };
    let force = force_up | force_down;
    let bits = |c: u8, u: u8, d: u8, r: u8, l: u8| -> u8 {
        let differs = |n: u8, bit: u8| u8::from(c != n) * bit;
        (differs(u, TOP) | differs(d, BOTTOM) | differs(r, RIGHT) | differs(l, LEFT) | force)
            & u8::from(c != BACKGROUND).wrapping_neg()
    };
    let (inner_lo, inner_hi) = (lo.max(1), hi.min(w - 1));
    if inner_lo < inner_hi {
        for (((((o, &c), &u), &d), &r), &l) in out[inner_lo - lo..inner_hi - lo]
            .iter_mut()
            .zip(&row[inner_lo..inner_hi])
            .zip(&up[inner_lo..inner_hi])
            .zip(&down[inner_lo..inner_hi])
            .zip(&row[inner_lo + 1..=inner_hi])
            .zip(&row[inner_lo - 1..inner_hi - 1])
        {
            *o = bits(c, u, d, r, l);
        }
    }
    let ends = [lo, hi - 1];
    let ends = if lo + 1 == hi { &ends[..1] } else { &ends[..] };
    for &x in ends.iter().filter(|&&x| x < inner_lo || x >= inner_hi) {
        // Beyond the image's left and right, a label that differs.
        let c = row[x];
        let r = if x + 1 < w { row[x + 1] } else { !c };
        let l = if x > 0 { row[x - 1] } else { !c };
        out[x - lo] = bits(c, up[x], down[x], r, l);
    }
}

/// Calls `f(label, start, end)` for each run of one label in `row`, the run's end
/// found eight pixels at a time.
pub(super) fn for_each_run(row: &[u8], mut f: impl FnMut(u8, usize, usize)) {
    let n = row.len();
    let mut x = 0;
    while x < n {
        let l = row[x];
        let mut end = x + 1;
        let spread = u64::from(l) * 0x0101_0101_0101_0101;
        while end + 8 <= n {
            let mut word = [0u8; 8];
            word.copy_from_slice(&row[end..end + 8]);
            let differ = u64::from_le_bytes(word) ^ spread;
            if differ != 0 {
                end += differ.trailing_zeros() as usize / 8;
                break;
            }
            end += 8;
        }
        if end + 8 > n {
            end += row[end..].iter().position(|&c| c != l).unwrap_or(n - end);
        }
        f(l, x, end);
        x = end;
    }
}

/// How many side bits `sides` has set (four bits a byte at most): eight bytes at a
/// time, their bits summed within each byte, the bytes of up to 63 words added
/// before they are summed across (63 · 4 < 256).
pub(super) fn count_sides(sides: &[u8]) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const EVEN: u64 = 0x00FF_00FF_00FF_00FF;
    const FIVES: u64 = 0x55 * ONES;
    const THREES: u64 = 0x33 * ONES;
    let per_byte = |x: u64| {
        let pairs = (x & FIVES) + ((x >> 1) & FIVES);
        (pairs & THREES) + ((pairs >> 2) & THREES)
    };
    // Bytes to four 16-bit lanes, then the lanes summed into the top one.
    let across = |bytes: u64| {
        ((bytes & EVEN) + ((bytes >> 8) & EVEN)).wrapping_mul(0x0001_0001_0001_0001) >> 48
    };
    let mut total = 0;
    for group in sides.chunks(8 * 63) {
        let words = group.chunks_exact(8);
        let tail = words.remainder();
        let mut acc = 0u64;
        for word in words {
            let mut b = [0u8; 8];
            b.copy_from_slice(word);
            acc += per_byte(u64::from_le_bytes(b));
        }
        total += across(acc) + tail.iter().map(|&b| u64::from(b.count_ones())).sum::<u64>();
    }
    total
}

/// The first and one past the last non-background pixel of a row, if it has any;
/// eight pixels at a time, since most rows of a photo's map are mostly background.
pub(super) fn labelled_span(row: &[u8]) -> Option<(usize, usize)> {
    let mut lo = 0;
    while lo + 8 <= row.len() && is_zero_word(&row[lo..lo + 8]) {
        lo += 8;
    }
    lo += row[lo..].iter().position(|&c| c != BACKGROUND)?;
    let mut hi = row.len();
    while hi >= lo + 8 && is_zero_word(&row[hi - 8..hi]) {
        hi -= 8;
    }
    while row[hi - 1] == BACKGROUND {
        hi -= 1;
    }
    Some((lo, hi))
}

/// Eight bytes, all zero (the background label, or no side left).
fn is_zero_word(bytes: &[u8]) -> bool {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_ne_bytes(word) == 0
}

/// Buffers reused across loops: a large map has hundreds of thousands of them.
struct Scratch {
    /// The loop being simplified, as (start vertex, label across) per unit edge;
    /// narrow, because one loop of a large map can run to millions of edges. Its
    /// chains are simplified in place, through [`Window`]s.
    edges: Vec<(V, Across)>,
    /// The simplifier's buffers: one byte of constraints per vertex of the chain
    /// being simplified, and its candidate ends.
    simplifier: simplify::Scratch,
    /// The simplified loop, handed to [`Rings`] and then reused.
    ring: Vec<P>,
    /// Chains simplified for one region, kept for the region across.
    shared: SharedBorders,
}

impl Scratch {
    /// Room for a loop of `longest` edges, reserved once: growing by doubling would
    /// hold up to three times the largest loop's bytes at the moment of a copy.
    fn with_capacity(longest: usize) -> Self {
        Scratch {
            // One more: the loop's first vertex, repeated at its end.
            edges: Vec::with_capacity(longest + 1),
            simplifier: simplify::Scratch::with_capacity(longest + 1),
            ring: Vec::new(),
            shared: SharedBorders::default(),
        }
    }
}

/// A lattice vertex as stored in the scratch edges (0 ≤ x ≤ width, 0 ≤ y ≤ height).
type V = (u32, u32);

fn wide((x, y): V) -> P {
    (i64::from(x), i64::from(y))
}

/// Walks the loop of `label` from the edge (`start`, `dir`), clearing the sides it
/// passes, and leaves its unit edges, as (start vertex, [`Across`]), in `edges`.
/// A loop is refused before its edges outgrow the budget (and `edges`' capacity).
///
/// Each vertex is read once, as the block of four pixels around it: which of them
/// have the label decides the way on ([`NEXT`]), the pixel left of the way on is the
/// label across, and the block tells a pinch point.
fn follow(
    grid: &Grid<'_>,
    sides: &mut [u8],
    (label, start, dir): (u8, (i64, i64), Dir),
    edges: &mut Vec<(V, Across)>,
    budget: &RenderBudget,
    clock: &mut Clock,
) -> Result<(), BudgetError> {
    let (w, h) = (grid.w, grid.h);
    // The block of four pixels around a vertex, packed as four 16-bit lanes (in the
    // order of `Grid::block`): the label across is a shift, and at the image's
    // edge the mask of the loop's label is found in all four lanes at once.
    const LANES: u64 = 0x0001_0001_0001_0001;
    let pack = |b: [u16; 4]| -> u64 {
        u64::from(b[0]) | u64::from(b[1]) << 16 | u64::from(b[2]) << 32 | u64::from(b[3]) << 48
    };
    let unpack = |p: u64| -> [u16; 4] { [0, 16, 32, 48].map(|s| (p >> s) as u16) };
    let spread = u64::from(label) * LANES;
    let mask = |p: u64| -> usize {
        // Lanes hold at most 9 bits, so adding 0x7FFF carries into a lane's top bit
        // exactly when it is not zero, and never into the next lane.
        const TOPS: u64 = 0x8000 * LANES;
        let set = ((p ^ spread) + 0x7FFF * LANES) & TOPS;
        let same = !set & TOPS;
        // The four top bits gathered into bits 48–51 (no two products meet there).
        ((same >> 15).wrapping_mul(1 << 48 | 1 << 33 | 1 << 18 | 1 << 3) >> 48) as usize & 0xF
    };
    let keep = |p: u64, m: usize, d: usize| -> Across {
        let pinch = match PINCH_BY_MASK[m] {
            Pinch::Never => false,
            Pinch::Always => true,
            Pinch::IfOthersDiagonal => is_pinch(unpack(p)),
        };
        (p >> ((ACROSS_SHIFTS >> (8 * d)) & 0xFF)) as Across & ACROSS_LABEL
            | (m as Across) << MASK_SHIFT
            | if pinch { PINCH } else { 0 }
    };
    // Per direction (R, D, L, U): the step, and the edge's pixel (on its right) as
    // an offset from the block of four pixels around the vertex (from its top-left
    // pixel, at `i`), with the side of it that the edge is.
    const STEP: [(i64, i64); 4] = [(1, 0), (0, 1), (-1, 0), (0, -1)];
    let step_i = [1, w, -1, -w];
    let pixel = [(w + 1, TOP), (w, RIGHT), (0, BOTTOM), (1, LEFT)];
    // The budget and the clock are checked every `CHECK_EVERY` edges (the clock
    // ticked for the edges walked since), and where the loop would reach its
    // budget if that is sooner: one compare an edge, and a loop is still refused
    // at the edge that would break the budget.
    const CHECK_EVERY: usize = 256;
    edges.clear();
    let (mut x, mut y) = start;
    let mut i = (y - 1) * w + x - 1;
    let start_i = i;
    let mut d = dir as usize;
    let b = pack(grid.block(x, y));
    let mut kept = keep(b, mask(b), d);
    let (mut next_check, mut ticked) = (0, 0);
    let wu = w as usize;
    loop {
        let (offset, side) = pixel[d];
        sides[(i + offset) as usize] &= !side;
        if edges.len() == next_check {
            if edges.len() as u64 >= budget.max_loop_edges {
                return budget.check(Limit::LoopEdges, edges.len() as u64 + 1);
            }
            let room = (budget.max_loop_edges - edges.len() as u64).min(CHECK_EVERY as u64);
            next_check += room as usize;
            clock.tick((edges.len() - ticked) as u32)?;
            ticked = edges.len();
        }
        // Vertices lie within 0..=width and 0..=height, both u32.
        edges.push(((x as u32, y as u32), kept));
        let (sx, sy) = STEP[d];
        (x, y) = (x + sx, y + sy);
        i += step_i[d];
        // The four pixels around the vertex, read at once away from the image's edge.
        let (b, m) = match (x >= 1 && y >= 1 && x < w && y < h).then(|| {
            let (top, bottom) = (i as usize, i as usize + wu);
            (
                grid.labels.get(top..top + 2),
                grid.labels.get(bottom..bottom + 2),
            )
        }) {
            Some((Some(&[p0, p1]), Some(&[p2, p3]))) => {
                // The walk waits on each vertex's mask to know where the next one
                // is: four compares side by side are fewer cycles to it than the
                // lanes' arithmetic, which is left to the pixels at the edge.
                let is = |p: u8, bit: usize| usize::from(p == label) << bit;
                let p =
                    u64::from(p0) | u64::from(p1) << 16 | u64::from(p2) << 32 | u64::from(p3) << 48;
                (p, is(p0, 0) | is(p1, 1) | is(p2, 2) | is(p3, 3))
            }
            _ => {
                let p = pack(grid.block(x, y));
                (p, mask(p))
            }
        };
        // Right turn first (keeps regions 4-connected at saddles), then straight, then
        // left; a mask the walk cannot arrive at has no way on (4), and no step.
        d = usize::from(NEXT[d][m]);
        if d >= 4 {
            unreachable!("a boundary vertex always has an outgoing edge of the same label");
        }
        // The block index names a vertex but for (w, y) and (0, y + 1); the edges
        // that can leave the two (D or L, R or U: the pixel on the right is in the
        // image) never meet, so index and direction name the start edge.
        if i == start_i && d == dir as usize {
            return clock.tick((edges.len() - ticked) as u32);
        }
        kept = keep(b, m, d);
    }
}

/// Whether a vertex whose pixels of the walk's label are the mask can be a pinch
/// point ([`is_pinch`]): always when they are two diagonal pixels, never when
/// they are two beside each other or three, and when they are one only if the two
/// pixels beside it have one label and the one across another.
#[derive(Clone, Copy)]
enum Pinch {
    Never,
    Always,
    IfOthersDiagonal,
}

const PINCH_BY_MASK: [Pinch; 16] = {
    let mut t = [Pinch::Never; 16];
    t[0b1001] = Pinch::Always;
    t[0b0110] = Pinch::Always;
    t[0b0001] = Pinch::IfOthersDiagonal;
    t[0b0010] = Pinch::IfOthersDiagonal;
    t[0b0100] = Pinch::IfOthersDiagonal;
    t[0b1000] = Pinch::IfOthersDiagonal;
    t
};

/// Forwards or `BACKWARDS`, a chain's vertices and their constraints. The way is a
/// type parameter, so the simplifier's inner loops read vertices without a branch.
struct Window<'e, 'g, const BACKWARDS: bool> {
    edges: &'e [(V, Across)],
    grid: &'g Grid<'g>,
}

impl<const BACKWARDS: bool> Window<'_, '_, BACKWARDS> {
    #[inline]
    fn index(&self, i: usize) -> usize {
        if BACKWARDS {
            self.edges.len() - 1 - i
        } else {
            i
        }
    }
}

impl<const BACKWARDS: bool> Chain for Window<'_, '_, BACKWARDS> {
    fn vertices(&self) -> usize {
        self.edges.len()
    }
    #[inline]
    fn at(&self, i: usize) -> P {
        wide(self.edges[self.index(i)].0)
    }
    fn groups(&self, sides: &impl Sides, out: &mut Vec<simplify::Group>) {
        out.clear();
        let n = self.edges.len();
        // Inside a chain only the loop's label and the one across are around a
        // vertex (a third would make it a junction or a pinch point, where chains
        // end), so all four pixels constrain, and the walk kept which have the
        // loop's label. At the chain's ends and on the image's edge, where some do
        // not constrain, the pixels are read.
        // The loop's label is on the chain's right when it runs the loop's way.
        let flip = if BACKWARDS { 0xF } else { 0 };
        let (w, h) = (self.grid.w, self.grid.h);
        let group = |i: usize, &(v, a): &(V, Across)| {
            let (x, y) = (i64::from(v.0), i64::from(v.1));
            if i == 0 || i + 1 == n || x == 0 || y == 0 || x >= w || y >= h {
                simplify::group_of(sides, wide(v))
            } else {
                let g = simplify::FULL_GROUPS[usize::from(((a >> MASK_SHIFT) as u8 & 0xF) ^ flip)];
                debug_assert_eq!(g, simplify::group_of(sides, wide(v)), "vertex {v:?}");
                g
            }
        };
        if BACKWARDS {
            out.extend(
                self.edges
                    .iter()
                    .rev()
                    .enumerate()
                    .map(|(i, e)| group(i, e)),
            );
        } else {
            out.extend(self.edges.iter().enumerate().map(|(i, e)| group(i, e)));
        }
    }
}

/// Simplifies the chain of `vertices` between `label` and `across` in its canonical
/// orientation (the smaller label on the right), appending its points to `ring` in
/// the loop's own orientation.
fn simplify_chain(
    grid: &Grid<'_>,
    border_sides: &[u8],
    (label, across): (u16, u16),
    vertices: &[(V, Across)],
    (simplifier, ring, shared): (&mut simplify::Scratch, &mut Vec<P>, &mut SharedBorders),
    clock: &mut Clock,
) -> Result<(), BudgetError> {
    if let [(v, _), (next, _)] = vertices {
        // One edge, the border exactly: the simplifier would keep both ends (its
        // pixels are on their sides, half a pixel off), so it is not asked.
        let ends = [wide(*v), wide(*next)];
        if cfg!(debug_assertions) {
            let sides = ChainSides {
                grid,
                right: label,
                left: across,
            };
            let simplified = simplify::simplify(&ends, &sides);
            assert_eq!(simplified, ends.map(|(x, y)| (2 * x, 2 * y)), "one edge");
        }
        ring.extend(ends.map(|(x, y)| (2 * x, 2 * y)));
        return clock.tick(2);
    }
    let flipped = label > across;
    // The region across walks this chain too, later or earlier: earlier if its walk
    // has cleared the flag of the chain's first edge on its own pixel.
    let first = match vertices {
        [(v, _), (next, _), ..] => {
            // The pixel across is the interior of the same edge walked back.
            let (v, next) = (wide(*v), wide(*next));
            let (pixel, side) = Grid::interior(next, Dir::of_step((v.0 - next.0, v.1 - next.1)));
            let inside = pixel.0 >= 0 && pixel.1 >= 0 && pixel.0 < grid.w && pixel.1 < grid.h;
            inside && border_sides[(pixel.1 * grid.w + pixel.0) as usize] & side != 0
        }
        _ => true,
    };
    let (right, left) = if flipped {
        (across, label)
    } else {
        (label, across)
    };
    let sides = ChainSides { grid, right, left };
    let from = ring.len();
    let scratch = (simplifier, &mut *ring, shared);
    if flipped {
        let window = Window::<true> {
            edges: vertices,
            grid,
        };
        simplify_window(&window, &sides, first, scratch, clock)?;
        // Simplified in its canonical orientation, then turned round in place.
        ring[from..].reverse();
    } else {
        let window = Window::<false> {
            edges: vertices,
            grid,
        };
        simplify_window(&window, &sides, first, scratch, clock)?;
    }
    Ok(())
}

/// Appends the simplified chain, in its canonical orientation, to `ring`: as the
/// region across kept it, or simplified here (and kept for that region if it is
/// still to walk the chain: `first`).
fn simplify_window<const BACKWARDS: bool>(
    window: &Window<'_, '_, BACKWARDS>,
    sides: &ChainSides<'_>,
    first: bool,
    (simplifier, ring, shared): (&mut simplify::Scratch, &mut Vec<P>, &mut SharedBorders),
    clock: &mut Clock,
) -> Result<(), BudgetError> {
    let from = ring.len();
    let n = window.vertices();
    let key = (n >= 2)
        .then(|| ChainKey::new(window.at(0), window.at(1), n, (sides.right, sides.left)))
        .flatten();
    match key {
        Some(key) if !first && shared.take(&key, ring) => {
            clock.tick(u32::try_from(ring.len() - from).unwrap_or(u32::MAX))?;
            if cfg!(debug_assertions) {
                // What sharing relies on, checked on every shared chain of every
                // debug build's render: the region across got the same points.
                let mut again = Vec::new();
                let unlimited = &mut Clock::unlimited();
                simplify::simplify_within(window, sides, simplifier, &mut again, unlimited)?;
                assert_eq!(&ring[from..], &again[..], "chain {key:?}");
            }
        }
        _ => {
            simplify::simplify_within(window, sides, simplifier, ring, clock)?;
            if let Some(key) = key.filter(|_| first) {
                shared.keep(key, &ring[from..]);
            }
        }
    }
    Ok(())
}

/// Cuts a loop into chains at junctions and pinch points, simplifies each in
/// canonical orientation, and joins them back into one ring (doubled coordinates)
/// in `scratch.ring`. The loop's edges are turned round to start where its first
/// chain does, and its first vertex repeated at the end, so that every chain is one
/// run of them.
fn simplify_loop(
    grid: &Grid<'_>,
    sides: &[u8],
    label: u16,
    scratch: &mut Scratch,
    clock: &mut Clock,
) -> Result<(), BudgetError> {
    let Scratch {
        edges,
        simplifier,
        ring,
        shared,
    } = scratch;
    let m = edges.len();
    // Simplification keeps fewer points than the loop has edges (a third at most on
    // the hardest maps measured): room for one per edge, made before the loop is
    // simplified and never by doubling a full buffer, which would hold both copies.
    ring.clear();
    if ring.capacity() < m + 1 {
        *ring = Vec::new();
        ring.reserve_exact(m + 1);
    }
    let is_break = |edges: &[(V, Across)], i: usize| {
        let before = if i == 0 { m - 1 } else { i - 1 };
        let (prev, this) = (edges[before].1, edges[i].1);
        across_label(prev) != across_label(this) || this & PINCH != 0
    };
    let Some(first) = (0..m).find(|&i| is_break(edges, i)) else {
        // One neighbour all around: a closed chain. It starts (and ends) at its
        // smallest vertex: the first such in its canonical orientation.
        let across = across_label(edges[0].1);
        let flipped = label > across;
        let key = |&i: &usize| (edges[i].0 .1, edges[i].0 .0);
        let start = if flipped {
            (0..m).rev().min_by_key(key)
        } else {
            (0..m).min_by_key(key)
        }
        .unwrap_or(0);
        edges.rotate_left(start);
        edges.push(edges[0]);
        simplify_chain(
            grid,
            sides,
            (label, across),
            edges,
            (simplifier, ring, shared),
            clock,
        )?;
        // The last point is the first again. The ring starts at the smallest vertex
        // in the canonical orientation, and runs the loop's way.
        ring.pop();
        return Ok(());
    };
    edges.rotate_left(first);
    edges.push(edges[0]);
    let edges = &edges[..];
    let mut i = 0;
    while i < m {
        // One chain: edges i..j, all with the same label across, and the vertices
        // from i's start to j's.
        let mut j = i + 1;
        while j < m && !is_break(edges, j) {
            j += 1;
        }
        simplify_chain(
            grid,
            sides,
            (label, across_label(edges[i].1)),
            &edges[i..=j],
            (&mut *simplifier, &mut *ring, &mut *shared),
            clock,
        )?;
        ring.pop(); // the next chain starts there
        i = j;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(w: u32, h: u32, rows: &[&str]) -> LabelMap {
        let labels = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| b - b'0'))
            .collect();
        LabelMap {
            width: w,
            height: h,
            labels,
        }
    }

    #[test]
    fn a_square_is_one_clockwise_loop_of_four_corners() {
        let m = map(4, 4, &["0000", "0110", "0110", "0000"]);
        let regions = trace(&m);
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].area, 4);
        assert_eq!(regions[0].bbox, [1, 1, 3, 3]);
        let ring = &regions[0].loops[0];
        assert_eq!(ring.len(), 4, "{ring:?}");
        for corner in [(6, 2), (6, 6), (2, 6), (2, 2)] {
            assert!(ring.contains(&corner), "{ring:?}");
        }
    }

    #[test]
    fn a_ring_has_a_hole_and_its_island_has_its_own_loop() {
        let m = map(5, 5, &["11111", "10001", "10201", "10001", "11111"]);
        let regions = trace(&m);
        assert_eq!(regions[0].loops.len(), 2, "outer border and hole");
        assert_eq!(regions[1].label, 2);
        assert_eq!(regions[1].loops.len(), 1);
    }

    #[test]
    fn saddles_split_into_touching_loops() {
        let m = map(2, 2, &["10", "01"]);
        let r = &trace(&m)[0];
        assert_eq!(r.loops.len(), 2);
        assert!(r.loops.iter().all(|l| l.len() == 4));
    }

    /// Pass 1 as first written, pixel by pixel: the reference for the vectorised one.
    fn naive_sides_and_stats(labels: &[u8], w: usize, h: usize) -> (Vec<u8>, [Stats; 256]) {
        let mut stats = [NO_PIXELS; 256];
        let mut sides = vec![0u8; w * h];
        for y in 0..h {
            for x in 0..w {
                let l = labels[y * w + x];
                if l == BACKGROUND {
                    continue;
                }
                let s = &mut stats[usize::from(l)];
                s.area += 1;
                s.sx += x as u64;
                s.sy += y as u64;
                s.x0 = s.x0.min(x as u32);
                s.y0 = s.y0.min(y as u32);
                s.x1 = s.x1.max(x as u32 + 1);
                s.y1 = s.y1.max(y as u32 + 1);
                let mut bits = 0;
                if y == 0 || labels[(y - 1) * w + x] != l {
                    bits |= TOP;
                }
                if x + 1 == w || labels[y * w + x + 1] != l {
                    bits |= RIGHT;
                }
                if y + 1 == h || labels[(y + 1) * w + x] != l {
                    bits |= BOTTOM;
                }
                if x == 0 || labels[y * w + x - 1] != l {
                    bits |= LEFT;
                }
                sides[y * w + x] = bits;
            }
        }
        (sides, stats)
    }

    #[test]
    fn pass_one_matches_the_pixel_by_pixel_reference() {
        // Widths on both sides of the eight-pixel words, rows all background, sparse
        // and dense labels, and runs of one label longer than a word (mode 9: a new
        // label every twelve pixels or so, background among them).
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let budget = RenderBudget::UNLIMITED;
        for w in 1..=40 {
            for h in 1..=5 {
                for density in [0, 1, 4, 8, 9] {
                    let mut label = 1;
                    let labels: Vec<u8> = (0..w * h)
                        .map(|_| {
                            let r = next();
                            if density == 9 {
                                if r % 12 == 0 {
                                    label = ((r >> 8) % 4) as u8;
                                }
                                label
                            } else if r % 8 < density {
                                (1 + (r >> 8) % 3) as u8
                            } else {
                                BACKGROUND
                            }
                        })
                        .collect();
                    let (sides, stats, edges) =
                        sides_and_stats(&labels, w, h, &budget, &mut Clock::unlimited()).unwrap();
                    let (want_sides, want_stats) = naive_sides_and_stats(&labels, w, h);
                    assert_eq!(sides, want_sides, "{w}×{h}: {labels:?}");
                    assert_eq!(stats, want_stats, "{w}×{h}: {labels:?}");
                    let want_edges: u32 = want_sides.iter().map(|s| s.count_ones()).sum();
                    assert_eq!(edges, u64::from(want_edges), "{w}×{h}: {labels:?}");
                }
            }
        }
    }

    #[test]
    fn the_pinch_table_agrees_with_the_labels() {
        // Every block of four labels from five, seen from each label in it.
        for code in 0..5u32.pow(4) {
            let b = [0, 1, 2, 3].map(|k| (code / 5u32.pow(k) % 5) as u16);
            for l in b {
                let m = (0..4).fold(0, |m, k| m | usize::from(b[k] == l) << k);
                let by_table = match PINCH_BY_MASK[m] {
                    Pinch::Never => false,
                    Pinch::Always => true,
                    Pinch::IfOthersDiagonal => is_pinch(b),
                };
                assert_eq!(by_table, is_pinch(b), "{b:?} seen from {l}");
            }
        }
    }

    #[test]
    fn side_bits_are_counted_across_words_and_groups() {
        // Past one group of 63 words with every byte at its most (four bits), and
        // lengths that leave a tail.
        for len in [0, 1, 7, 8, 9, 63 * 8 - 1, 63 * 8, 63 * 8 + 5, 3000] {
            let full = vec![0xFu8; len];
            assert_eq!(count_sides(&full), 4 * len as u64, "{len}");
            let mixed: Vec<u8> = (0..len).map(|i| (i * 7 % 16) as u8).collect();
            let want: u64 = mixed.iter().map(|&b| u64::from(b.count_ones())).sum();
            assert_eq!(count_sides(&mixed), want, "{len}");
        }
    }

    #[test]
    fn labelled_span_finds_the_first_and_last_label() {
        assert_eq!(labelled_span(&[0; 20]), None);
        assert_eq!(labelled_span(&[]), None);
        let mut row = [0u8; 21];
        row[9] = 3;
        assert_eq!(labelled_span(&row), Some((9, 10)));
        row[20] = 1;
        row[0] = 2;
        assert_eq!(labelled_span(&row), Some((0, 21)));
    }
}
