//! Deadlines for network calls, derived from the invocation's remaining time.
//!
//! Every backend call has its own configured timeout, but a request must also be
//! answered (with our own 503 and `Retry-After`) before Lambda's timeout cuts it off
//! with API Gateway's bare 503/504. An edge that knows the invocation's deadline
//! runs its work inside [`scope`]; each store call then takes the smaller of its own
//! timeout and the time left minus [`ANSWER_MARGIN`]. Outside a scope (tests, the
//! sweep's own loop) only the configured timeout applies.

use std::future::Future;
use std::time::{Duration, Instant};

pub use crate::policy::deadlines::ANSWER_MARGIN;
use crate::policy::deadlines::FLOOR;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The instant Lambda ends an invocation whose `deadline` is in epoch milliseconds
/// (as in the invocation's context); `None` when the context carries none.
pub fn from_epoch_ms(deadline_ms: u64) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    // A deadline already past when the invocation starts is not one: emulators
    // (cargo lambda sends a fixed 600000) put a duration where Lambda puts an
    // instant. Trusting it would give every call the floor.
    if deadline_ms <= now_ms {
        return None;
    }
    Some(Instant::now() + Duration::from_millis(deadline_ms - now_ms))
}

/// Runs `work` with `deadline` as the end of the invocation.
pub async fn scope<F: Future>(deadline: Option<Instant>, work: F) -> F::Output {
    match deadline {
        Some(d) => DEADLINE.scope(d, work).await,
        None => work.await,
    }
}

/// The time a call may take: `configured`, or less if the invocation ends sooner.
pub fn allowance(configured: Duration) -> Duration {
    let left = DEADLINE
        .try_with(|d| d.saturating_duration_since(Instant::now()))
        .ok()
        .map(|left| left.saturating_sub(ANSWER_MARGIN).max(FLOOR));
    match left {
        Some(left) => configured.min(left),
        None => configured,
    }
}

/// Runs `call` within its [`allowance`]; `Err(elapsed)` when it did not finish.
pub async fn bounded<F: Future>(configured: Duration, call: F) -> Result<F::Output, Duration> {
    let allowed = allowance(configured);
    tokio::time::timeout(allowed, call)
        .await
        .map_err(|_| allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_in_the_past_is_no_deadline() {
        assert_eq!(from_epoch_ms(0), None);
        assert_eq!(from_epoch_ms(600_000), None, "cargo lambda's fixed value");
        let soon = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 5_000;
        let left = from_epoch_ms(soon).unwrap() - Instant::now();
        assert!(
            left <= Duration::from_secs(5) && left > Duration::from_secs(3),
            "{left:?}"
        );
    }

    #[tokio::test]
    async fn the_invocation_deadline_shortens_a_call() {
        let configured = Duration::from_secs(10);
        assert_eq!(allowance(configured), configured, "outside a scope");
        let deadline = Instant::now() + Duration::from_secs(1);
        let inside = scope(Some(deadline), async { allowance(configured) }).await;
        assert!(inside <= Duration::from_millis(700), "{inside:?}");
        let late = scope(Some(Instant::now()), async { allowance(configured) }).await;
        assert_eq!(late, FLOOR);
        let slow = scope(Some(Instant::now()), async {
            bounded(configured, tokio::time::sleep(Duration::from_secs(5))).await
        })
        .await;
        assert_eq!(slow, Err(FLOOR));
    }
}
