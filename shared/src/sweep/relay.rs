//! The outbox relay step.

use super::{MAX_BATCHES, RELAY_AFTER};
use crate::app::App;
use crate::tasks::StoreError;

/// The outbox relay: sends every task message that was recorded but never confirmed
/// sent (its submitter's send failed, or it died in between), in bounded batches.
/// A message sent twice is harmless: the worker's claim is idempotent.
pub async fn relay(app: &App) -> Result<u64, StoreError> {
    let mut sent = 0;
    for _ in 0..MAX_BATCHES {
        let unsent = app
            .tasks
            .unsent(RELAY_AFTER, app.config.sweep_batch)
            .await?;
        if unsent.is_empty() {
            break;
        }
        let mut progressed = false;
        for (task_id, body) in unsent {
            match app.queue.send(body).await {
                Ok(()) => {
                    app.tasks.mark_enqueued(task_id, None).await?;
                    sent += 1;
                    progressed = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, %task_id, "relay send failed; next run retries")
                }
            }
        }
        if !progressed {
            break;
        }
    }
    Ok(sent)
}
