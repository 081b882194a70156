//! The process function: SQS batches → [`facesvg::worker::handle_batch`], with
//! partial batch responses so that only failed messages are redelivered.

use facesvg::aws_lambda_events::event::sqs::SqsEvent;
use facesvg::lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    facesvg::telemetry::init();
    let app = facesvg::app::App::from_env().await?;
    let app = &app;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(facesvg::worker::handle_batch(app, event.payload).await)
    }))
    .await
}
