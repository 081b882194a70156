//! What a failure becomes. Every way a task can fail is named here, with its fate:
//!
//! | failure | fate | why |
//! | --- | --- | --- |
//! | the inputs cannot be rendered (bad label map, over the render budget) | **cached**: `FAILURE`, not retryable; every tier serves it and a resubmit answers 422 | the same inputs fail the same way |
//! | the render ran past its deadline (`render_timeout`, `MAX_RENDER_MS`) | **run again on the next submit**: `FAILURE`, retryable | the clock measures the instance and its load as much as the inputs: the same inputs may finish next time. Not redelivered: a map that really is too slow would spend up to [`MAX_RECEIVES`] more deadlines before the DLQ, and its client would wait for `task_stuck` |
//! | the claim-check inputs are gone (`inputs_missing`) | **run again on the next submit**: `FAILURE`, retryable; never served from a cache | nothing is wrong with the inputs |
//! | the queued inputs do not match the row (`inputs_mismatch`) | run again on the next submit | a forged message, or one from another release |
//! | the task outlived `STUCK_AFTER_SECS` (`task_stuck`) | run again on the next submit | its messages were lost or dead-lettered |
//! | a fault of a backend during the run (Postgres, S3, a busy claim, a malformed message) | **redelivered**: the message is a batch item failure and comes back; after [`MAX_RECEIVES`] deliveries SQS parks it in the DLQ, and the sweep later fails the task as `task_stuck` | the next delivery may succeed |
//!
//! The row keeps the verdict as `error.retryable`: [`Fate::of`] reads it back, so
//! the cache ([`super::TaskRow::outcome`]) and a reopen (`TaskStore::reopen`, which
//! tests the same field in SQL) agree with the worker that wrote it.

use super::TaskError;
use crate::input::InputError;

/// Deliveries of one message before SQS moves it to the dead-letter queue
/// (`maxReceiveCount` of the task queue's redrive policy; a test checks the template).
pub const MAX_RECEIVES: u32 = 5;

/// A task that ends in `FAILURE`.
#[derive(Debug, Clone, Copy)]
pub enum Failure<'a> {
    /// The inputs cannot be rendered.
    Inputs(&'a InputError),
    /// The claim-check object holding the inputs is gone.
    InputsMissing,
    /// The message's inputs are not the ones recorded with the task.
    InputsMismatch,
    /// The task was neither finished nor failed within `STUCK_AFTER_SECS`.
    Stuck,
    /// The render ran past `MAX_RENDER_MS`.
    RenderTimeout,
}

/// What becomes of a failed task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Stored and served again for the same inputs, from every tier.
    Cached,
    /// Stored for its client to read, never served from a cache; the next identical
    /// submit runs the task again.
    RunAgain,
}

impl Fate {
    /// The fate a stored error was given.
    pub fn of(error: &TaskError) -> Fate {
        if error.retryable {
            Fate::RunAgain
        } else {
            Fate::Cached
        }
    }
}

impl Failure<'_> {
    pub fn fate(&self) -> Fate {
        match self {
            Failure::Inputs(_) => Fate::Cached,
            Failure::InputsMissing
            | Failure::InputsMismatch
            | Failure::Stuck
            | Failure::RenderTimeout => Fate::RunAgain,
        }
    }

    /// The error stored in the row and shown to the client.
    pub fn error(&self) -> TaskError {
        let (code, message, field) = match self {
            Failure::Inputs(e) => (e.kind.code(), e.message.as_str(), Some(e.field)),
            Failure::InputsMissing => (
                "inputs_missing",
                "the task's inputs are gone; submit it again",
                None,
            ),
            Failure::InputsMismatch => (
                "inputs_mismatch",
                "the task's queued inputs could not be verified; submit it again",
                None,
            ),
            Failure::Stuck => (
                "task_stuck",
                "the task did not finish in time; submit it again to retry",
                None,
            ),
            Failure::RenderTimeout => (
                "render_timeout",
                "the render ran out of time (max_render_ms); submit it again to retry",
                Some("segmentation_map"),
            ),
        };
        TaskError {
            code: code.into(),
            message: message.into(),
            field: field.map(Into::into),
            retryable: self.fate() == Fate::RunAgain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_inputs_fault_is_cached_and_the_row_remembers_the_verdict() {
        let bad = InputError::invalid("segmentation_map", "not a PNG");
        for failure in [
            Failure::Inputs(&bad),
            Failure::InputsMissing,
            Failure::InputsMismatch,
            Failure::Stuck,
            Failure::RenderTimeout,
        ] {
            let error = failure.error();
            assert_eq!(Fate::of(&error), failure.fate(), "{failure:?}");
        }
        assert_eq!(Failure::Inputs(&bad).fate(), Fate::Cached);
        assert_eq!(
            Failure::Inputs(&bad).error().field.as_deref(),
            Some("segmentation_map")
        );
        assert_eq!(Failure::Stuck.fate(), Fate::RunAgain);
        assert_eq!(Failure::RenderTimeout.fate(), Fate::RunAgain);
        assert!(Failure::RenderTimeout.error().retryable);
    }
}
