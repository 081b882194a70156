//! Borders simplified once for the two regions they separate.
//!
//! The tracer walks every border between two labelled regions twice, once in each
//! region's loop, and cuts it into the same chain both times (chains end where the
//! label across changes and at pinch points, which both sides see alike). The
//! simplifier is deterministic on a chain in its canonical orientation, so the
//! second walk would compute the very points the first did: the first keeps them
//! here and the second takes them, and simplification, most of a render's
//! instructions on maps with long curved borders, runs once per border instead of
//! twice. A border with the background or the image's edge is walked once and is
//! never kept; neither are chains of two vertices, whose entries would cost more
//! than simplifying them again.
//!
//! Only the first of the two sides keeps a chain (the tracer tells which side it
//! is from the border flags the other side's walk clears), and the second takes
//! it. What is taken is dead space, compacted away when it is half of the room;
//! no more than [`MAX_KEPT_POINTS`] points in [`MAX_KEPT_CHAINS`] chains wait at
//! once (past those, chains are simplified twice again), and the heap it holds has
//! the bound [`bytes_at_most`] that the render budget adds up.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use super::simplify::P;
use crate::labels::BACKGROUND;

/// Chains of fewer vertices are simplified again rather than kept. A chain of two is
/// one segment whatever happens; from three on, keeping and taking one (two keyed
/// hashes and a copy of its points) costs fewer instructions than simplifying it
/// again. Measured with callgrind against 12: -3 % a render of the blob mosaic,
/// -10 % the heavy map, -17 % the ragged one, where most borders are short; 2 was
/// worse than 3 on those two.
pub const MIN_VERTICES: usize = 3;

/// The most points kept at once (8 bytes each).
pub const MAX_KEPT_POINTS: usize = 1 << 18;

/// The most chains kept at once.
pub const MAX_KEPT_CHAINS: usize = 1 << 15;

/// Heap of one kept chain's entry, with room for the table's growth: a 32-byte
/// bucket and its control byte, at most 8/7 of the entries in buckets, and a table
/// that doubles (both copies held while it moves).
const BYTES_PER_CHAIN: u64 = 3 * 33 * 8 / 7 + 1;

/// The most heap kept borders hold while a map of `edges` border edges is traced:
/// no more points than two an edge (a segment can end at every vertex and
/// midpoint), no more chains than one per `MIN_VERTICES - 1` edges, and points in a
/// vector that at most doubles past its length, or is copied while compacted.
pub fn bytes_at_most(edges: u64) -> u64 {
    let points = edges.saturating_mul(2).min(MAX_KEPT_POINTS as u64);
    let chains = (edges / (MIN_VERTICES as u64 - 1)).min(MAX_KEPT_CHAINS as u64);
    points * 8 * 3 + chains * BYTES_PER_CHAIN
}

/// A chain in its canonical orientation: its first two vertices, how many it has,
/// and the labels on its right and left. A unit edge lies in one chain of each of
/// its two regions' loops, so its first edge names it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChainKey {
    first: (u32, u32),
    second: (u32, u32),
    vertices: u32,
    labels: (u8, u8),
}

/// Three words, rather than seven fields one by one: the keyed hasher's cost is
/// mostly per call, and every chain kept is hashed twice.
impl Hash for ChainKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let pair = |(x, y): (u32, u32)| u64::from(x) | u64::from(y) << 32;
        state.write_u64(pair(self.first));
        state.write_u64(pair(self.second));
        state.write_u64(
            u64::from(self.vertices)
                | u64::from(self.labels.0) << 32
                | u64::from(self.labels.1) << 40,
        );
    }
}

impl ChainKey {
    /// `None` for a chain not worth keeping or whose parts do not fit the key.
    pub fn new(first: P, second: P, vertices: usize, (right, left): (u16, u16)) -> Option<Self> {
        // The background's and the outside's borders are walked from one side only.
        let walked_once = |l: u16| l == u16::from(BACKGROUND) || l > 255;
        if vertices < MIN_VERTICES || walked_once(right) || walked_once(left) {
            return None;
        }
        let point = |(x, y): P| Some((u32::try_from(x).ok()?, u32::try_from(y).ok()?));
        Some(ChainKey {
            first: point(first)?,
            second: point(second)?,
            vertices: u32::try_from(vertices).ok()?,
            labels: (u8::try_from(right).ok()?, u8::try_from(left).ok()?),
        })
    }
}

/// Simplified chains waiting for the region across. Points are stored in doubled
/// coordinates, which are never negative on a map, at 8 bytes each.
#[derive(Default)]
pub struct SharedBorders {
    /// Keyed with the standard (seeded) hasher: chain positions come from the
    /// caller's map, which could otherwise be drawn to collide.
    waiting: HashMap<ChainKey, (u32, u32)>,
    points: Vec<(u32, u32)>,
    /// Points of chains still waiting; the rest of `points` is dead space.
    live: usize,
}

impl SharedBorders {
    /// Appends the points the other region kept for `key` to `out`, and forgets
    /// them; `false` (and `out` untouched) if none were kept.
    pub fn take(&mut self, key: &ChainKey, out: &mut Vec<P>) -> bool {
        let Some((start, len)) = self.waiting.remove(key) else {
            return false;
        };
        let kept = &self.points[start as usize..(start + len) as usize];
        out.extend(kept.iter().map(|&(x, y)| (i64::from(x), i64::from(y))));
        self.live -= len as usize;
        if self.waiting.is_empty() {
            // Nothing else waits: the space is reused from the start.
            self.points.clear();
        }
        true
    }

    /// Keeps a chain's simplified `points` for the region across, unless as many as
    /// may be kept are waiting already.
    pub fn keep(&mut self, key: ChainKey, points: &[P]) {
        if self.live + points.len() > MAX_KEPT_POINTS || self.waiting.len() >= MAX_KEPT_CHAINS {
            return;
        }
        if self.points.len() + points.len() > MAX_KEPT_POINTS {
            // Out of room, though the live points and these fit: move the live ones
            // to the front of a vector of their own.
            self.compact();
        }
        let start = self.points.len();
        let narrow = |&(x, y): &P| Some((u32::try_from(x).ok()?, u32::try_from(y).ok()?));
        for p in points {
            match narrow(p) {
                Some(q) => self.points.push(q),
                None => {
                    // Off the map's lattice: not kept, the other side simplifies it.
                    self.points.truncate(start);
                    return;
                }
            }
        }
        if let (Ok(s), Ok(n)) = (u32::try_from(start), u32::try_from(points.len())) {
            self.waiting.insert(key, (s, n));
            self.live += points.len();
        } else {
            self.points.truncate(start);
        }
    }

    /// Moves the waiting chains' points to a vector of their own, dropping the
    /// space of those taken.
    fn compact(&mut self) {
        let mut points = Vec::with_capacity(self.live);
        for (start, len) in self.waiting.values_mut() {
            let from = *start as usize..(*start + *len) as usize;
            // Fewer than MAX_KEPT_POINTS: fits u32.
            *start = points.len() as u32;
            points.extend_from_slice(&self.points[from]);
        }
        self.points = points;
    }

    /// Chains kept and not yet taken.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(x: i64) -> ChainKey {
        ChainKey::new((x, 0), (x + 1, 0), 20, (1, 2)).expect("a key")
    }

    #[test]
    fn a_kept_chain_is_taken_once() {
        let mut shared = SharedBorders::default();
        shared.keep(key(1), &[(2, 0), (40, 0)]);
        shared.keep(key(2), &[(4, 0), (40, 2)]);
        let mut out = vec![(0, 0)];
        assert!(shared.take(&key(2), &mut out));
        assert_eq!(out, vec![(0, 0), (4, 0), (40, 2)]);
        assert!(!shared.take(&key(2), &mut out), "taken twice");
        assert!(shared.take(&key(1), &mut out));
        assert_eq!(&out[3..], &[(2, 0), (40, 0)]);
        assert_eq!(shared.waiting(), 0);
        assert!(shared.points.is_empty(), "space not reused");
    }

    #[test]
    fn short_chains_and_other_labels_are_not_keys() {
        assert!(ChainKey::new((0, 0), (1, 0), MIN_VERTICES - 1, (1, 2)).is_none());
        assert!(ChainKey::new((0, 0), (1, 0), 50, (1, 256)).is_none());
        assert!(ChainKey::new((0, 0), (1, 0), 50, (0, 3)).is_none());
        assert_ne!(
            ChainKey::new((0, 0), (1, 0), 50, (1, 2)),
            ChainKey::new((0, 0), (0, 1), 50, (1, 2)),
        );
    }

    #[test]
    fn no_more_is_kept_than_the_bound() {
        let mut shared = SharedBorders::default();
        let long = vec![(2, 0); MAX_KEPT_POINTS / 2 + 1];
        shared.keep(key(1), &long);
        shared.keep(key(2), &long);
        assert_eq!(shared.waiting(), 1, "the second would pass the bound");
        assert!(shared.points.len() <= MAX_KEPT_POINTS);
        let mut out = Vec::new();
        assert!(shared.take(&key(1), &mut out) && !shared.take(&key(2), &mut out));
        // Once taken, there is room again.
        shared.keep(key(2), &long);
        assert_eq!(shared.waiting(), 1);
        assert!(bytes_at_most(u64::MAX) < 16 << 20);
    }

    #[test]
    fn taken_space_is_reused_while_others_wait() {
        let mut shared = SharedBorders::default();
        let chunk = vec![(2, 0); MAX_KEPT_POINTS / 4];
        shared.keep(key(0), &[(6, 0), (8, 2)]);
        // Far more than the room in all, a quarter waiting at a time.
        for k in 1..20 {
            shared.keep(key(k), &chunk);
            assert_eq!(shared.waiting(), 2, "chain {k} not kept");
            assert!(shared.take(&key(k), &mut Vec::new()));
            assert!(shared.points.len() <= MAX_KEPT_POINTS);
        }
        let mut out = Vec::new();
        assert!(shared.take(&key(0), &mut out));
        assert_eq!(out, vec![(6, 0), (8, 2)], "moved intact");
    }

    #[test]
    fn points_off_the_lattice_are_not_kept() {
        let mut shared = SharedBorders::default();
        shared.keep(key(1), &[(2, 0), (-1, 0)]);
        assert!(!shared.take(&key(1), &mut Vec::new()));
        assert!(shared.points.is_empty());
    }
}
