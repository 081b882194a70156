//! The cache-cleanup function: the EventBridge schedule and the admin HTTP route
//! → [`facesvg::sweep::handle_event`].

use facesvg::lambda_runtime::{run, service_fn, Error, LambdaEvent};
use facesvg::serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    facesvg::telemetry::init();
    let app = facesvg::app::App::from_env().await?;
    let app = &app;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(facesvg::sweep::handle_event(app, event.payload).await)
    }))
    .await
}
