//! The submit function: API Gateway → [`facesvg::api::submit`].

use facesvg::lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    facesvg::telemetry::init();
    let app = facesvg::app::App::from_env().await?;
    let app = &app;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(facesvg::api::submit(app, req).await)
    }))
    .await
}
