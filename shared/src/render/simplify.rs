//! Exact simplification of traced borders.
//!
//! A traced border runs along pixel edges, so a diagonal border is a staircase of
//! one-pixel steps. This module replaces runs of it by straight segments whenever
//! the replacement leaves every nearby pixel centre on the side it was on, and at
//! least a sixteenth of a pixel away from it: the simplified outline, rasterised by
//! sampling pixel centres (as SVG renderers do, in fixed point), gives back exactly
//! the same pixels. Segment ends are taken from the border's
//! lattice vertices and edge midpoints; lines through edge midpoints are what lets
//! a staircase collapse into one segment without touching any pixel centre.
//!
//! All coordinates here are doubled (half-pixel units) so that midpoints and pixel
//! centres are integers and every test is exact integer arithmetic.
//!
//! Neighbouring regions must share their border exactly, so the same border must
//! simplify the same way from both sides: callers pass chains in a canonical
//! orientation (see `trace`), and this function is deterministic.

use super::budget::{BudgetError, Clock};

pub type P = (i64, i64);

/// A chain of lattice vertices one unit step apart, read by index: the tracer hands
/// a window of the loop it has just walked, read in place either way round, rather
/// than a copy (a loop can run to millions of edges).
pub trait Chain {
    /// How many vertices, first and last included.
    fn vertices(&self) -> usize;
    fn at(&self, i: usize) -> P;
    /// The constraints around every vertex, in order, into `out` (cleared first):
    /// read through `sides`, unless the chain knows them already (the tracer does,
    /// inside a chain).
    fn groups(&self, sides: &impl Sides, out: &mut Vec<Group>) {
        out.clear();
        out.extend((0..self.vertices()).map(|i| group_of(sides, self.at(i))));
    }
}

impl Chain for [P] {
    fn vertices(&self) -> usize {
        self.len()
    }
    fn at(&self, i: usize) -> P {
        self[i]
    }
}

const fn cross(a: P, b: P) -> i64 {
    a.0 * b.1 - a.1 * b.0
}

fn sub(a: P, b: P) -> P {
    (a.0 - b.0, a.1 - b.1)
}

const fn dot(a: P, b: P) -> i64 {
    a.0 * b.0 + a.1 * b.1
}

/// Which label a pixel of the border's neighbourhood has, relative to the chain.
pub trait Sides {
    /// For the pixel whose top-left corner is (x, y) in lattice units: `Some(true)`
    /// if it must stay right of the chain, `Some(false)` left, `None` if it does not
    /// constrain this chain (outside the image, or a third label at a junction).
    fn side(&self, x: i64, y: i64) -> Option<bool>;
}

/// Longest run (in dense points) one segment may cover.
const MAX_SPAN: usize = 4096;

/// How many dense points past the last candidate the forward pass looks on before
/// it gives up, rather than on until the cone is empty. A staircase's vertices and
/// midpoints go in and out of the cone by turns; with 8, every segment of the
/// bench's maps reached as far as with no limit, with 4 the blob mosaic's SVG grew
/// by 4 %.
const GIVE_UP: usize = 8;

/// How near a segment may pass a pixel centre, as the inverse of the half-side of a
/// square around the centre (in doubled units) that must lie wholly on its side:
/// 8 is 1/16 of a pixel. Exact arithmetic would accept a centre at any distance,
/// down to 1/(2·length); a renderer's fixed-point edges (tiny-skia's slopes are
/// 16.16) can move a line by 1/32 of a pixel over 2,048 rows, and a centre nearer
/// than that would change sides. The square's test is linear: the centre's cross
/// product must exceed the segment's L1 length over 8.
const MARGIN: i64 = 8;

/// Whether the centre at cross product `cross` from a segment of direction `d`
/// clears it by the margin.
#[inline]
fn clears(cross: i64, d: P) -> bool {
    MARGIN * cross.abs() > d.0.abs() + d.1.abs()
}

/// Pixel-centre constraints of one vertex: two bits for each of the four pixels
/// around it (in the order of [`AROUND`]), whether it constrains the chain and
/// whether it must stay on the right. The centres follow from the vertex, so one
/// byte holds what four optional (centre, side) pairs (96 bytes) did.
pub type Group = u8;

/// The pixels around a vertex, as offsets of their top-left corners.
const AROUND: [P; 4] = [(-1, -1), (0, -1), (-1, 0), (0, 0)];

/// The constraints of the four pixels around vertex (x, y), read through `sides`.
pub fn group_of(sides: &impl Sides, (x, y): P) -> Group {
    let mut g = 0;
    for (k, (dx, dy)) in AROUND.into_iter().enumerate() {
        if let Some(right) = sides.side(x + dx, y + dy) {
            g |= (1 | u8::from(right) << 1) << (2 * k);
        }
    }
    g
}

/// Every group's constraints as offsets of pixel centres from the vertex (doubled
/// coordinates, so ±1) and sides, in the order of [`AROUND`]: decoded once, for all
/// 256, so that the simplifier's inner loop reads them as it read the stored pairs.
struct Decoded {
    count: [u8; 256],
    items: [[(i8, i8, bool); 4]; 256],
}

const DECODED: Decoded = {
    let mut d = Decoded {
        count: [0; 256],
        items: [[(0, 0, false); 4]; 256],
    };
    let mut g = 0;
    while g < 256 {
        let mut k = 0;
        let mut n = 0;
        while k < 4 {
            let bits = (g >> (2 * k)) & 3;
            if bits & 1 != 0 {
                let (dx, dy) = AROUND[k];
                d.items[g][n] = ((2 * dx + 1) as i8, (2 * dy + 1) as i8, bits & 2 != 0);
                n += 1;
            }
            k += 1;
        }
        d.count[g] = n as u8;
        g += 1;
    }
    d
};

/// The directions a segment from the anchor may take: an open cone from `lo`
/// turning (positive cross products) to `hi`, every direction (`all`, before the
/// first cut) or none (`empty`, for good). Plain fields rather than an enum, so
/// that the simplifier's inner loop keeps them in registers.
#[derive(Clone, Copy)]
struct Cone {
    lo: P,
    hi: P,
    all: bool,
    empty: bool,
}

impl Cone {
    const ALL: Cone = Cone {
        lo: (0, 0),
        hi: (0, 0),
        all: true,
        empty: false,
    };

    /// Intersects with the open half-plane {d : cross(n, d) > 0}.
    #[inline]
    const fn cut(&mut self, n: P) {
        if self.all {
            (self.lo, self.hi, self.all) = (n, (-n.0, -n.1), false);
            return;
        }
        let (cl, ch) = (cross(n, self.lo), cross(n, self.hi));
        if cl >= 0 && ch >= 0 {
            // n parallel to the boundary line of a half-plane cone: the same
            // half-plane, or the opposite one.
            if cl == 0 && ch == 0 && dot(n, self.lo) <= 0 {
                self.empty = true;
            }
        } else if cl < 0 && ch < 0 {
            self.empty = true;
        } else if cl < 0 {
            self.lo = n;
        } else {
            self.hi = (-n.0, -n.1);
        }
    }

    #[inline]
    fn contains(&self, d: P) -> bool {
        !self.empty && (self.all || (cross(self.lo, d) > 0 && cross(d, self.hi) > 0))
    }
}

/// Folds into `cone` the pixel centres of group `g` around a vertex at `w` from the
/// anchor (doubled units). Each centre's margin square must stay on its side; the
/// corner of the square nearest a segment depends on the quadrant the segment heads
/// into: this guesses it from the way to the vertex, and where that runs along an
/// axis, cuts with both corners across it. A segment in another quadrant is caught
/// by the full test of its inside (see [`guessed_right`]).
#[inline(always)]
const fn fold(cone: &mut Cone, w: P, g: Group) {
    let (e0, e1) = (-w.1.signum(), w.0.signum());
    let g = g as usize;
    let (items, count) = (&DECODED.items[g], DECODED.count[g] as usize);
    let mut k = 0;
    while k < count {
        let (ox, oy, right) = items[k];
        // The centre, from the anchor.
        let u = (w.0 + ox as i64, w.1 + oy as i64);
        let s = if right { -MARGIN } else { MARGIN };
        let (ux, uy) = (u.0 * s, u.1 * s);
        match (e0, e1) {
            (0, e1) => {
                cone.cut((ux + 1, uy + e1));
                cone.cut((ux - 1, uy + e1));
            }
            (e0, 0) => {
                cone.cut((ux + e0, uy + 1));
                cone.cut((ux + e0, uy - 1));
            }
            (e0, e1) => cone.cut((ux + e0, uy + e1)),
        }
        k += 1;
    }
}

/// The cone after the first fold from an anchor, as [`fold`] leaves it: its ends
/// are small (within ±33), so that a table of them fits in a few kilobytes.
#[derive(Clone, Copy)]
struct FirstFold {
    lo: (i8, i8),
    hi: (i8, i8),
    empty: bool,
}

/// How far (in doubled units, each way) the first vertex strictly inside a segment
/// lies from its anchor: two steps from a vertex, or a step and a half from a
/// midpoint.
const FIRST_REACH: i64 = 3;
const FIRST_SIDE: usize = 2 * FIRST_REACH as usize + 1;

/// The first fold of the forward pass from every anchor, worked out once: for the
/// first vertex strictly inside, at each `w` within [`FIRST_REACH`] of the anchor,
/// with all four of its pixels constraining (as inside a chain, which is where
/// nearly every fold is), and for each mask of those on the right. A fold of four
/// centres, most of them cut twice, becomes one read.
static FIRST_FOLDS: [[FirstFold; 16]; FIRST_SIDE * FIRST_SIDE] = {
    let none = FirstFold {
        lo: (0, 0),
        hi: (0, 0),
        empty: false,
    };
    let mut t = [[none; 16]; FIRST_SIDE * FIRST_SIDE];
    let mut slot = 0;
    while slot < FIRST_SIDE * FIRST_SIDE {
        let w = (
            (slot / FIRST_SIDE) as i64 - FIRST_REACH,
            (slot % FIRST_SIDE) as i64 - FIRST_REACH,
        );
        let mut mask = 0;
        while mask < 16 {
            let mut cone = Cone::ALL;
            fold(&mut cone, w, full_group(mask));
            // Four centres around a vertex cut a cone that was every direction.
            assert!(!cone.all);
            t[slot][mask] = FirstFold {
                lo: (narrow(cone.lo.0), narrow(cone.lo.1)),
                hi: (narrow(cone.hi.0), narrow(cone.hi.1)),
                empty: cone.empty,
            };
            mask += 1;
        }
        slot += 1;
    }
    t
};

/// A table entry's coordinate: the build fails if one does not fit.
const fn narrow(v: i64) -> i8 {
    assert!(v >= i8::MIN as i64 && v <= i8::MAX as i64);
    v as i8
}

/// The groups of a vertex whose four pixels all constrain (as inside a chain), by
/// the mask of those on the right: what the tracer knows of such a vertex, and the
/// index of the first folds' table.
pub const FULL_GROUPS: [Group; 16] = {
    let mut t = [0; 16];
    let mut m = 0;
    while m < 16 {
        t[m] = full_group(m);
        m += 1;
    }
    t
};

/// The group of a vertex whose four pixels all constrain, those in `mask` (bits in
/// the order of [`AROUND`]) on the right.
const fn full_group(mask: usize) -> Group {
    let mut g = 0;
    let mut k = 0;
    while k < 4 {
        g |= (1 | (((mask >> k) & 1) as u8) << 1) << (2 * k);
        k += 1;
    }
    g
}

/// The mask of pixels on the right of a group whose four pixels all constrain, or
/// `None` for another group.
#[inline(always)]
fn full_mask(g: Group) -> Option<usize> {
    if g & 0x55 != 0x55 {
        return None;
    }
    // The right bits (odd) gathered into the low four.
    let x = usize::from(g >> 1) & 0x55;
    let x = (x | x >> 1) & 0x33;
    Some((x | x >> 2) & 0x0F)
}

/// The cone after the first fold, from the table when the vertex's group is full.
#[inline(always)]
fn first_fold(w: P, g: Group) -> Cone {
    if w.0.abs() <= FIRST_REACH && w.1.abs() <= FIRST_REACH {
        if let Some(mask) = full_mask(g) {
            let slot = (w.0 + FIRST_REACH) as usize * FIRST_SIDE + (w.1 + FIRST_REACH) as usize;
            let f = FIRST_FOLDS[slot][mask];
            let wide = |(x, y): (i8, i8)| (i64::from(x), i64::from(y));
            return Cone {
                lo: wide(f.lo),
                hi: wide(f.hi),
                all: false,
                empty: f.empty,
            };
        }
    }
    let mut cone = Cone::ALL;
    fold(&mut cone, w, g);
    cone
}

/// Simplifies a chain of lattice vertices (one unit step apart) and returns the
/// kept points in doubled coordinates, first and last included.
pub fn simplify(vertices: &[P], sides: &impl Sides) -> Vec<P> {
    let mut out = Vec::new();
    let unlimited = &mut Clock::unlimited();
    match simplify_within(
        vertices,
        sides,
        &mut Scratch::default(),
        &mut out,
        unlimited,
    ) {
        Ok(()) => out,
        Err(e) => unreachable!("a clock without a deadline cannot run out: {e}"),
    }
}

/// Buffers [`simplify_within`] reuses from chain to chain.
#[derive(Default)]
pub struct Scratch {
    /// The constraints around each vertex of the chain.
    groups: Vec<Group>,
    /// The ends a segment from the anchor may reach as far as its inside goes: room
    /// for as many as the longest chain's span has points (at most [`MAX_SPAN`], 32
    /// KiB), the forward pass counting those it writes.
    candidates: Vec<usize>,
}

impl Scratch {
    /// Room for chains of up to `vertices` vertices, reserved once.
    pub fn with_capacity(vertices: usize) -> Self {
        Scratch {
            groups: Vec::with_capacity(vertices),
            candidates: Vec::new(),
        }
    }
}

/// [`simplify`], appending to `out`, reusing `scratch`, and stopping when `clock`
/// runs out.
///
/// From each anchor, a segment is grown greedily in two passes. Forwards, the
/// constraints of the vertices strictly inside fold into a cone of directions (a
/// few multiplications a vertex), and every end whose direction the cone admits is
/// a candidate, until the cone is empty (or [`GIVE_UP`] points on). Backwards, from the furthest candidate, the
/// full test of the pixels at both ends (which knows about the joint with the
/// previous segment) picks the first that holds. The full test is most of the cost
/// of a candidate, and on a long curved staircase nearly every candidate is inside
/// the cone, so testing from the far end runs it about once a segment instead of
/// once a candidate, and reaches at least as far.
#[inline(always)]
pub fn simplify_within<C: Chain + ?Sized>(
    vertices: &C,
    sides: &impl Sides,
    scratch: &mut Scratch,
    out: &mut Vec<P>,
    clock: &mut Clock,
) -> Result<(), BudgetError> {
    let n = vertices.vertices();
    if n < 2 {
        out.extend((0..n).map(|i| vertices.at(i)).map(|(x, y)| (2 * x, 2 * y)));
        return Ok(());
    }
    let last = 2 * (n - 1);
    let Scratch { groups, candidates } = scratch;
    // A segment's candidates are points of its span past the first two.
    let room = MAX_SPAN.min(last);
    if candidates.len() < room {
        candidates.resize(room, 0);
    }
    // Pixel-centre constraints around each vertex, computed once.
    vertices.groups(sides, groups);
    clock.tick(u32::try_from(n).unwrap_or(u32::MAX))?;

    out.push(dense(vertices, 0));
    let mut prev: Option<P> = None;
    let mut a = 0usize;
    while a < last {
        let pa = dense(vertices, a);
        // Vertices strictly inside the segment constrain its direction only (a
        // cone); the few at either end get the full test, which knows about joints.
        let near_a = (a / 2, a.div_ceil(2));
        let (b, count, guesses) = reach(vertices, groups, (a, pa), last, candidates);
        // One step for each point looked at (at most MAX_SPAN).
        clock.tick((b - a) as u32)?;
        let anchor = Anchor {
            prev,
            at: pa,
            near: near_a,
            guesses,
        };
        let ok = |b: usize| holds(vertices, groups, anchor, b);
        // The furthest candidate that holds, or the vertex just before it if that
        // holds too: lattice vertices keep corners square (and take fewer bytes).
        // The vertex is tried first, so a midpoint is tried only when it fails.
        let mut best = a + 1;
        let mut k = count;
        while k > 0 {
            k -= 1;
            let b = candidates[k];
            // A test reads the vertices at both ends, and those inside when a corner
            // was guessed wrong: up to two tests' worth.
            clock.tick(u32::try_from(b - a).unwrap_or(u32::MAX))?;
            if b % 2 == 1 && k > 0 && candidates[k - 1] == b - 1 {
                if ok(b - 1) {
                    best = b - 1;
                    break;
                }
                if ok(b) {
                    best = b;
                    break;
                }
                k -= 1; // b - 1 is tried
                continue;
            }
            if ok(b) {
                best = b;
                break;
            }
        }
        out.push(dense(vertices, best));
        prev = Some(pa);
        a = best;
    }
    Ok(())
}

/// The forward pass from the anchor `a` (at `pa`): the constraints of the vertices
/// strictly inside fold into a cone of directions, a vertex at a time, and every
/// point the cone admits goes into `candidates`, until the cone is empty, the chain
/// has turned away from it ([`GIVE_UP`]) or the span ends. Returns the first point
/// not looked at, how many candidates it wrote and the corners guessed. A function of its own, so that its few
/// values stay in registers rather than sharing them with the backward pass.
#[inline(never)]
fn reach<C: Chain + ?Sized>(
    vertices: &C,
    groups: &[Group],
    (a, pa): (usize, P),
    last: usize,
    candidates: &mut [usize],
) -> (usize, usize, u16) {
    let mut cone = Cone::ALL;
    // The next vertex to fold and the one folded before it (from the first fold
    // on, which takes all four pixels and needs none).
    let first = a.div_ceil(2) + 1;
    let mut coned = first;
    let mut before = (0, 0);
    let mut guesses = 0u16; // the corners guessed, as bits of `corner_bit`
    let (mut count, mut newest) = (0, usize::MAX / 2); // candidates: none yet
    let end = last.min(a + MAX_SPAN);
    let mut b = a + 2;
    // The vertex at or just before `b`, read once for the point on it and once
    // for the midpoint after it.
    let mut here = vertices.at(b / 2);
    while b <= end {
        // Points up to `b` take the vertices before the one at or just before it:
        // one more each time `b` reaches a vertex past the first two.
        if b >= 2 * coned + 2 {
            let v = vertices.at(coned);
            let w = (2 * v.0 - pa.0, 2 * v.1 - pa.1);
            guesses |= corner_bit(-w.1.signum(), w.0.signum());
            if coned == first {
                // All four pixels of the first vertex.
                cone = first_fold(w, groups[coned]);
            } else {
                // The two pixels beyond the edge from the vertex before (those
                // beside it are folded in already: each centre once).
                fold(&mut cone, w, groups[coned] & new_beyond(sub(v, before)));
            }
            before = v;
            coned += 1;
        }
        if cone.empty {
            break;
        }
        let point = if b.is_multiple_of(2) {
            (2 * here.0, 2 * here.1)
        } else {
            let next = vertices.at(b / 2 + 1);
            let mid = (here.0 + next.0, here.1 + next.1);
            here = next;
            mid
        };
        if cone.contains(sub(point, pa)) {
            // One for each point of the span past the first two at most: within
            // the room `simplify_within` makes (MAX_SPAN, or the chain's span).
            candidates[count] = b;
            count += 1;
            newest = b;
        } else if b > newest + GIVE_UP {
            // The chain has turned away from every direction the cone has left.
            break;
        }
        b += 1;
    }
    (b, count, guesses)
}

/// Dense point `k` of a chain, in doubled coordinates: vertex i at 2i, the
/// midpoint of edge i at 2i + 1.
#[inline]
fn dense<C: Chain + ?Sized>(vertices: &C, k: usize) -> P {
    let (x, y) = vertices.at(k / 2);
    if k.is_multiple_of(2) {
        (2 * x, 2 * y)
    } else {
        let (nx, ny) = vertices.at(k / 2 + 1);
        (x + nx, y + ny)
    }
}

/// What the end test of the segments from one anchor needs, by value.
#[derive(Clone, Copy)]
struct Anchor {
    /// The kept point before the anchor, if any.
    prev: Option<P>,
    /// The anchor, in doubled coordinates.
    at: P,
    /// The vertices at the anchor (one, or both ends of its edge).
    near: (usize, usize),
    /// The corners the forward pass guessed.
    guesses: u16,
}

/// Whether the segment from `anchor` to dense point `b` keeps every pixel centre
/// on its side: the full test of the vertices at both ends (which knows about the
/// joint with the segment before), and of those inside when the forward pass
/// guessed a margin's corner wrong. A function of its own, as [`reach`] is.
#[inline(never)]
fn holds<C: Chain + ?Sized>(vertices: &C, groups: &[Group], anchor: Anchor, b: usize) -> bool {
    let Anchor {
        prev,
        at: pa,
        near: near_a,
        guesses,
    } = anchor;
    let n = vertices.vertices();
    let pb = dense(vertices, b);
    let d = sub(pb, pa);
    let len2 = dot(d, d);
    // The vertices at the ends: those at the anchor, the next not folded into
    // the cone when `b` was a candidate, and those at `b`, in chain order (so a
    // repeat follows the vertex it repeats).
    let vb = b / 2;
    let ends = [
        near_a.0,
        near_a.1,
        vb.max((near_a.1 + 1).max(vb).min(n - 1)),
        b.div_ceil(2).min(n - 1),
    ];
    let mut tested = usize::MAX;
    for i in ends {
        if i != tested {
            tested = i;
            if !around_holds(prev, pa, pb, (d, len2), vertices.at(i), groups[i]) {
                return false;
            }
        }
    }
    guessed_right(guesses, d) || inside_clears(vertices, groups, pa, pb, near_a.1 + 1..ends[2])
}

/// One bit for each corner guess (e0, e1) of the cone's folding, each of -1, 0
/// (both) and 1.
const fn corner_bit(e0: i64, e1: i64) -> u16 {
    1 << ((e0 + 1) * 3 + (e1 + 1))
}

/// Whether every corner in `guesses` is the nearest for a segment along `d`, so
/// that the cone's margins hold for it exactly.
fn guessed_right(guesses: u16, d: P) -> bool {
    guesses & !RIGHT_CORNERS[((d.0.signum() + 1) * 3 + d.1.signum() + 1) as usize] == 0
}

/// For each quadrant of a segment's direction (its signs s0, s1, at (s0 + 1) · 3 +
/// s1 + 1), the corner guesses that are right for it, as bits of `corner_bit`.
const RIGHT_CORNERS: [u16; 9] = {
    let mut t = [0; 9];
    let mut q = 0;
    while q < 9 {
        let (s0, s1) = (q as i64 / 3 - 1, q as i64 % 3 - 1);
        let mut e0 = -1;
        while e0 <= 1 {
            let mut e1 = -1;
            while e1 <= 1 {
                if (e0 == 0 || s1 == 0 || e0 == -s1) && (e1 == 0 || s0 == 0 || e1 == s0) {
                    t[q] |= corner_bit(e0, e1);
                }
                e1 += 1;
            }
            e0 += 1;
        }
        q += 1;
    }
    t
};

/// The constraints of a vertex reached by the unit `step`, less those of the two
/// pixels beside the edge it came along (which the vertex before has too).
fn new_beyond(step: P) -> Group {
    match step {
        (1, 0) => 0xCC,  // top-right and bottom-right
        (-1, 0) => 0x33, // top-left and bottom-left
        (0, 1) => 0xF0,  // bottom-left and bottom-right
        _ => 0x0F,       // top-left and top-right
    }
}

/// Whether the segment `a`→`b` keeps every constraint pixel around the `inside`
/// vertices on its side and clear of it by the margin. The cone folded them in
/// already, but with a guess at which corner of each centre's margin square is
/// nearest the segment, which a segment into another quadrant can prove wrong.
fn inside_clears<C: Chain + ?Sized>(
    vertices: &C,
    groups: &[Group],
    a: P,
    b: P,
    inside: std::ops::Range<usize>,
) -> bool {
    let d = sub(b, a);
    let Some(first) = inside.clone().next() else {
        return true;
    };
    // The cross product of each vertex follows from the last's: they are one unit
    // step apart (two in doubled units).
    let mut v = vertices.at(first);
    let mut c = cross(d, (2 * v.0 - a.0, 2 * v.1 - a.1));
    for i in inside {
        let next = vertices.at(i);
        c += 2 * cross(d, sub(next, v));
        v = next;
        let g = usize::from(groups[i]);
        for &(ox, oy, right) in &DECODED.items[g][..usize::from(DECODED.count[g])] {
            let s = c + cross(d, (i64::from(ox), i64::from(oy)));
            if (s > 0) != right || !clears(s, d) {
                return false;
            }
        }
    }
    true
}

/// Whether segment `a`→`b` (after the kept segment `prev`→`a`) keeps every
/// constraint pixel around vertex `v` (constraints `g`) on its side; `d` is `b - a`
/// and `len2` its squared length. Pixels beyond `b` are judged with the next
/// segment.
#[inline(always)]
fn around_holds(prev: Option<P>, a: P, b: P, (d, len2): (P, i64), v: P, g: Group) -> bool {
    // The vertex from `a`; its centres are one (doubled) unit off it.
    let (vx, vy) = (2 * v.0 - a.0, 2 * v.1 - a.1);
    let g = usize::from(g);
    for &(ox, oy, right) in &DECODED.items[g][..usize::from(DECODED.count[g])] {
        let u = (vx + i64::from(ox), vy + i64::from(oy));
        let t = dot(u, d);
        if t >= len2 {
            continue;
        }
        let is_right = if t <= 0 {
            match prev {
                Some(p) => {
                    let c = (a.0 + u.0, a.1 + u.1);
                    match joint_side(p, a, b, c) {
                        Some(r) => r,
                        None => return false,
                    }
                }
                // Behind the chain's first point: the neighbouring chain's business.
                None => continue,
            }
        } else {
            // Beside the segment: on its side, and clear of it.
            let s = cross(d, u);
            if !clears(s, d) {
                return false;
            }
            s > 0
        };
        if is_right != right {
            return false;
        }
    }
    true
}

/// Side of `c` near the joint `a` of segments `p`→`a`→`b` (y down: positive cross
/// products are on the right). `None` when `c` lies on a line that decides it.
fn joint_side(p: P, a: P, b: P, c: P) -> Option<bool> {
    let (d1, d2) = (sub(a, p), sub(b, a));
    let s1 = cross(d1, sub(c, p)).signum();
    let s2 = cross(d2, sub(c, a)).signum();
    let turn = cross(d1, d2);
    if turn == 0 {
        return (s2 != 0).then_some(s2 > 0);
    }
    if s1 == 0 || s2 == 0 {
        return None;
    }
    Some(if turn > 0 {
        s1 > 0 && s2 > 0
    } else {
        s1 > 0 || s2 > 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Right of the chain: pixels with y ≥ x (a 45° staircase boundary).
    struct Diagonal;
    impl Sides for Diagonal {
        fn side(&self, x: i64, y: i64) -> Option<bool> {
            Some(y >= x)
        }
    }

    #[test]
    fn a_staircase_collapses_to_a_few_segments() {
        // Lattice path (0,0) → (1,0) → (1,1) → (2,1) → … → (8,8): pixels (k, k) and
        // below are on the right, their centres on the diagonal, so no one segment
        // from (0,0) holds. Each anchor takes its furthest end (here a corner part
        // way along), so 32 dense points become four segments.
        let mut v = vec![(0, 0)];
        for k in 0..8 {
            v.push((k + 1, k));
            v.push((k + 1, k + 1));
        }
        let out = simplify(&v, &Diagonal);
        assert!(out.len() <= 5, "{out:?}");
        assert_eq!(out.first(), Some(&(0, 0)));
        assert_eq!(out.last(), Some(&(16, 16)));
    }

    /// The table of right corners against the rule it is built from, for each
    /// corner alone and every direction's quadrant.
    #[test]
    fn right_corners_follow_the_quadrant_rule() {
        for d in [
            (3, 1),
            (-2, 5),
            (0, 4),
            (-7, 0),
            (0, -1),
            (5, -5),
            (-1, -9),
            (6, 0),
        ] {
            let (s0, s1) = (i64::signum(d.0), i64::signum(d.1));
            for e0 in -1..=1 {
                for e1 in -1..=1 {
                    let rule =
                        (e0 == 0 || s1 == 0 || e0 == -s1) && (e1 == 0 || s0 == 0 || e1 == s0);
                    assert_eq!(
                        guessed_right(corner_bit(e0, e1), d),
                        rule,
                        "{d:?} ({e0}, {e1})"
                    );
                }
            }
            assert!(guessed_right(0, d), "no guess is never wrong");
        }
    }

    /// The table of first folds read back for every vertex near an anchor and every
    /// full group, against folding their centres one by one; and groups that are not
    /// full are folded one by one.
    #[test]
    fn first_folds_are_the_folds_they_stand_for() {
        let same = |a: Cone, b: Cone| (a.lo, a.hi, a.all, a.empty) == (b.lo, b.hi, b.all, b.empty);
        for x in -FIRST_REACH..=FIRST_REACH {
            for y in -FIRST_REACH..=FIRST_REACH {
                for g in 0..=255u8 {
                    let mut cone = Cone::ALL;
                    fold(&mut cone, (x, y), g);
                    assert!(same(first_fold((x, y), g), cone), "({x}, {y}) group {g:#x}");
                    let full = full_mask(g).map(full_group);
                    assert_eq!(full, (g & 0x55 == 0x55).then_some(g), "group {g:#x}");
                }
            }
        }
        // Beyond the table's reach, folded as well.
        let mut cone = Cone::ALL;
        fold(&mut cone, (9, -4), 0xFF);
        assert!(same(first_fold((9, -4), 0xFF), cone));
    }

    #[test]
    fn straight_runs_keep_only_their_ends() {
        struct Below;
        impl Sides for Below {
            fn side(&self, _x: i64, y: i64) -> Option<bool> {
                Some(y >= 0)
            }
        }
        let v: Vec<P> = (0..=10).map(|x| (x, 0)).collect();
        assert_eq!(simplify(&v, &Below), vec![(0, 0), (20, 0)]);
    }
}
