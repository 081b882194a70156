//! Poll advice: how long a client should wait before asking for an open task again.
//!
//! The 202 of a submit and the status of an open task carry `Retry-After`, taken
//! from the recent median time from submit to completion, so that a client that
//! honours it polls once instead of hammering the status route (each poll is an
//! API call and an invocation). The median is read from Postgres at most once a
//! minute per instance; until then, and if that read fails, one second is advised.

use std::sync::Mutex;
use std::time::Instant;

use crate::tasks::TaskStore;

use crate::policy::poll::{MAX_SECS, MIN_SECS, REFRESH};

#[derive(Default)]
pub struct PollAdvice {
    cached: Mutex<Option<(Instant, u64)>>,
}

impl PollAdvice {
    /// Seconds to wait before the next poll.
    pub async fn retry_after(&self, tasks: &TaskStore) -> u64 {
        if let Some((at, secs)) = *self.cached.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < REFRESH {
                return secs;
            }
        }
        let secs = match tasks.median_completion().await {
            Ok(Some(median)) => median.as_secs_f64().ceil() as u64,
            Ok(None) => MIN_SECS,
            Err(e) => {
                tracing::warn!(error = %e, "no completion median; advising the minimum");
                MIN_SECS
            }
        }
        .clamp(MIN_SECS, MAX_SECS);
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), secs));
        secs
    }
}
