//! Tracing set up once per process: JSON lines (CloudWatch indexes them), level
//! from `RUST_LOG` (default `info`). Safe to call more than once.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}
