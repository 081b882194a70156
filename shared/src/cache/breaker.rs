//! A minimal circuit breaker with a half-open state.
//!
//! Closed: calls go ahead. After `threshold` consecutive failures it opens for
//! `cool_down`, during which calls are skipped at no cost. When the cool-down ends
//! it is half-open: exactly one call is let through as a probe, and every other
//! call is still skipped until the probe reports. A successful probe closes the
//! circuit; a failed one opens it for another cool-down. Without the half-open
//! state, every request arriving at the end of a cool-down would pay the timeout of
//! a backend that is still down.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    epoch: Instant,
    failures: AtomicU32,
    /// One more than the milliseconds since `epoch` until which the circuit is open
    /// (0: closed).
    open_until_ms: AtomicU64,
    /// When (ms since `epoch`, +1) the outstanding probe went out; 0: none. A probe
    /// that never reports (its caller was cancelled) is replaced after a cool-down.
    probe_since_ms: AtomicU64,
}

impl Breaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cool_down,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            probe_since_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether a call may go ahead now. Once the circuit has opened, only one
    /// caller at a time gets `true` until a call reports success.
    pub fn allow(&self) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = self.now_ms();
        if now + 1 < until {
            return false;
        }
        // Half-open: the first caller to stamp the probe slot is the probe.
        let since = self.probe_since_ms.load(Ordering::Acquire);
        let lease = (self.cool_down.as_millis() as u64).max(1000);
        let free = since == 0 || now + 1 >= since + lease;
        free && self
            .probe_since_ms
            .compare_exchange(since, now + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until_ms.store(0, Ordering::Release);
        self.probe_since_ms.store(0, Ordering::Release);
    }

    pub fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.threshold {
            let until = self.now_ms() + self.cool_down.as_millis() as u64 + 1;
            self.open_until_ms.store(until, Ordering::Release);
            self.probe_since_ms.store(0, Ordering::Release);
        }
    }

    pub fn is_open(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) != 0
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
        assert!(!b.is_open());
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let b = Breaker::new(1, Duration::ZERO);
        b.failure();
        assert!(b.allow(), "the probe");
        assert!(!b.allow(), "everyone else waits for the probe");
        assert!(!b.allow());
        b.failure();
        assert!(
            b.allow(),
            "a failed probe opens it again; the next cool-down ends"
        );
        assert!(!b.allow());
        b.success();
        assert!(b.allow() && b.allow(), "closed: every call goes ahead");
    }
}
