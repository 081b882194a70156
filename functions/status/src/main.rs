//! The status function: task state, the SVG and health → [`facesvg::api::status`].

use facesvg::lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    facesvg::telemetry::init();
    let app = facesvg::app::App::from_env().await?;
    let app = &app;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(facesvg::api::status(app, req).await)
    }))
    .await
}
