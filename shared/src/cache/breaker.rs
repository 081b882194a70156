//! A minimal circuit breaker: after `threshold` consecutive failures the circuit
//! opens for `cool_down`, during which calls are skipped at no cost; the first call
//! after that is let through as a probe, and one success closes it again.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    epoch: Instant,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the circuit is open (0: closed).
    open_until_ms: AtomicU64,
}

impl Breaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cool_down,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether a call may go ahead now.
    pub fn allow(&self) -> bool {
        self.now_ms() >= self.open_until_ms.load(Ordering::Relaxed)
    }

    pub fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until_ms.store(0, Ordering::Relaxed);
    }

    pub fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.threshold {
            let until = self.now_ms() + self.cool_down.as_millis() as u64;
            self.open_until_ms.store(until, Ordering::Relaxed);
        }
    }

    pub fn is_open(&self) -> bool {
        !self.allow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_closes_on_success() {
        let b = Breaker::new(2, Duration::from_secs(60));
        assert!(b.allow());
        b.failure();
        assert!(b.allow());
        b.failure();
        assert!(!b.allow());
        b.success();
        assert!(b.allow());
    }

    #[test]
    fn lets_a_probe_through_after_cool_down() {
        let b = Breaker::new(1, Duration::ZERO);
        b.failure();
        assert!(b.allow());
    }
}
