//! The process function: SQS batches → [`facesvg::worker::handle_batch`], with
//! partial batch responses so that only failed messages are redelivered.

use std::sync::Arc;

use facesvg::aws_lambda_events::event::sqs::SqsEvent;
use facesvg::lambda_runtime::{run_concurrent, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    facesvg::telemetry::init();
    // One `App` per instance, shared by its invocations: one at a time on classic
    // Lambda, several at once where AWS_LAMBDA_MAX_CONCURRENCY > 1 (Managed Instances);
    // the render memory budget in `App` then spans the concurrent batches.
    let app = Arc::new(facesvg::app::App::from_env().await?);
    run_concurrent(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Error>(facesvg::worker::handle_batch(&app, event.payload).await) }
    }))
    .await
}
