//! The status function: task state, the SVG and health → [`facesvg::api::status`].
// The runtime's service stack around an async handler is deep for the layout
// query (the status handler's future overflowed the default of 128).
#![recursion_limit = "256"]

use std::sync::Arc;

use facesvg::lambda_http::{Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    facesvg::telemetry::init();
    // One `App` per instance, shared by its invocations: one at a time on classic
    // Lambda, several at once where AWS_LAMBDA_MAX_CONCURRENCY > 1 (Managed Instances).
    let app = Arc::new(facesvg::app::App::from_env().await?);
    facesvg::api::event::run(move |req: Request| {
        let app = Arc::clone(&app);
        async move { facesvg::api::status(&app, req).await }
    })
    .await
}
