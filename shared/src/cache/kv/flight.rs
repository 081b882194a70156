//! Pieces of `get_or_compute`: its options, the XFetch decision and the seeded
//! random source behind it.
//!
//! XFetch (Vattani, Chierichetti, Lowenstein, "Optimal probabilistic cache stampede
//! prevention", VLDB 2015): a reader recomputes early when
//! `delta · beta · −ln(r) ≥ time left`, with `delta` the value's last computation
//! time and `r` uniform in (0, 1]. Refreshes spread out before expiry instead of
//! piling up at it; the chance grows as expiry nears and with slower computations.

use std::sync::Mutex;
use std::time::Duration;

/// Options of [`super::Cache::get_or_compute_with`].
#[derive(Clone, Debug, Default)]
pub struct ComputeOptions {
    /// Lifetime of a computed value; the namespace's default when `None`.
    pub ttl: Option<Duration>,
    /// Serve-stale-on-error: a value is kept this long past its expiry and
    /// returned flagged stale when a recomputation fails. Zero turns it off.
    pub grace: Duration,
    /// Tags stored with a computed value.
    pub tags: Vec<String>,
    /// XFetch's `beta` (1.0 is the paper's default); `None` turns it off.
    pub early_refresh: Option<f64>,
}

/// Cross-instance single flight, through a Redis lock.
#[derive(Clone, Debug)]
pub struct FlightOptions {
    /// The lock's expiry: a holder that dies blocks the others this long at most.
    /// Longer than the slowest computation, or a second one may start.
    pub lock_ttl: Duration,
    /// How long a caller waits for another instance's computation before it
    /// computes itself (it never returns an error for waiting).
    pub max_wait: Duration,
    /// How often a waiter looks for the value (and for a lock freed by expiry).
    pub poll: Duration,
}

impl Default for FlightOptions {
    fn default() -> Self {
        FlightOptions {
            lock_ttl: Duration::from_secs(10),
            max_wait: Duration::from_secs(10),
            poll: Duration::from_millis(25),
        }
    }
}

/// Whether XFetch says to recompute now.
pub fn xfetch_refresh_now(left: Duration, compute_ms: u32, beta: f64, r: f64) -> bool {
    if compute_ms == 0 || beta <= 0.0 || !(r > 0.0 && r <= 1.0) {
        return false;
    }
    let gap_ms = f64::from(compute_ms) * beta * -r.ln();
    gap_ms >= left.as_secs_f64() * 1000.0
}

/// xorshift64: tiny and seedable, so tests pick the draws; not for secrets.
pub struct XorShift(Mutex<u64>);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        XorShift(Mutex::new(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        }))
    }

    pub fn next_u64(&self) -> u64 {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut x = *s;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *s = x;
        x
    }

    /// Uniform in (0, 1].
    pub fn next_f64(&self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfetch_refreshes_more_as_expiry_nears() {
        let d = Duration::from_millis;
        // −ln(0.5) ≈ 0.69: with delta 100 ms, a 60 ms remainder refreshes, 80 does not.
        assert!(xfetch_refresh_now(d(60), 100, 1.0, 0.5));
        assert!(!xfetch_refresh_now(d(80), 100, 1.0, 0.5));
        // A larger beta refreshes earlier; unknown computation time never does.
        assert!(xfetch_refresh_now(d(80), 100, 2.0, 0.5));
        assert!(!xfetch_refresh_now(d(1), 0, 1.0, 0.5));
        // r = 1 means −ln r = 0: only an expired entry would refresh.
        assert!(!xfetch_refresh_now(d(1), 100, 1.0, 1.0));
    }

    #[test]
    fn seeded_draws_repeat_and_stay_in_range() {
        let (a, b) = (XorShift::new(7), XorShift::new(7));
        for _ in 0..1000 {
            let x = a.next_f64();
            assert_eq!(x, b.next_f64());
            assert!(x > 0.0 && x <= 1.0);
        }
        assert_ne!(XorShift::new(8).next_u64(), XorShift::new(7).next_u64());
    }
}
