//! The cache-cleanup function: the EventBridge schedule and the admin HTTP route
//! → [`facesvg::sweep::handle_event`].

use std::sync::Arc;

use facesvg::lambda_runtime::{run_concurrent, service_fn, Error, LambdaEvent};
use facesvg::serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    facesvg::telemetry::init();
    // One `App` per instance, shared by its invocations: one at a time on classic
    // Lambda, several at once where AWS_LAMBDA_MAX_CONCURRENCY > 1 (Managed Instances).
    let app = Arc::new(facesvg::app::App::from_env().await?);
    run_concurrent(service_fn(move |event: LambdaEvent<Value>| {
        let app = Arc::clone(&app);
        // A failed step is an invocation error: the schedule's retry and DLQ see it.
        async move {
            facesvg::sweep::handle_event(&app, event.payload)
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
