//! facesvg: a face photo, its landmarks and an optional face-parsing label map in,
//! an SVG of facial-region masks out, answered from a content-addressed cache when
//! the same inputs were seen before.
//!
//! The four Lambda binaries in `functions/` are thin: each builds an [`app::App`]
//! from the environment and hands one of these entry points to the runtime:
//!
//! - [`api::submit`]: validate, hash, look up the tiers, record and enqueue a miss.
//! - [`worker::handle_batch`]: render queued tasks (SQS batch, partial failures).
//! - [`api::status`]: task state, the SVG, cache statistics and health.
//! - [`sweep::run`]: delete expired, failed and unused entries; fail stuck tasks.
//!
//! Every decision lives here so that it is tested without the Lambda runtime.

pub mod api;
pub mod app;
pub mod cache;
pub mod config;
pub mod db;
pub mod deadline;
pub mod deploy;
pub mod heap;
pub mod input;
pub mod key;
pub mod labels;
pub mod limits;
pub mod message;
pub mod metrics;
pub mod migrate;
pub mod objects;
pub mod policy;
pub mod queue;
pub mod quota;
pub mod render;
pub mod secrets;
pub mod services;
pub mod sweep;
pub mod tasks;
pub mod telemetry;
pub mod worker;

/// Version of the renderer's output. It is part of every cache key: bump it whenever
/// the SVG for the same inputs would change, and old entries are never served again.
pub const RENDERER_VERSION: &str = "facesvg-render/4";

// Re-exported so that the function binaries depend on this crate alone.
pub use aws_lambda_events;
pub use lambda_http;
pub use lambda_runtime;
pub use serde_json;
