//! The `processing_metrics` table: one row per measured quantity of a task.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::StoreError;

/// The `processing_metrics` name written with every success (its processing time)
/// and every failure; the daily view counts renders and failures by them.
pub const SUCCESS_METRIC: &str = "processing_ms";
pub const FAILURE_METRIC: &str = "failure_ms";

#[derive(Debug, Clone, Copy)]
pub struct Metric<'a> {
    pub name: &'a str,
    pub value: f64,
}

/// Inserts metrics with the caller's client, so that they commit with the result.
pub async fn insert<C: GenericClient>(
    client: &C,
    component: &str,
    task_id: Uuid,
    tenant: &str,
    metrics: &[Metric<'_>],
) -> Result<(), StoreError> {
    if metrics.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = metrics.iter().map(|m| m.name).collect();
    let values: Vec<f64> = metrics.iter().map(|m| m.value).collect();
    client
        .execute(
            "INSERT INTO processing_metrics (metric_name, value, component, task_id, tenant)
             SELECT n, v, $3, $4, $5 FROM unnest($1::text[], $2::float8[]) AS m(n, v)",
            &[&names, &values, &component, &task_id, &tenant],
        )
        .await?;
    Ok(())
}
