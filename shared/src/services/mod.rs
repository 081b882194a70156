//! Services: one module per use case, each an async function over the stores that
//! holds the decisions of that use case. The edges (`api/`, `worker`, `sweep`) call
//! them and translate; the stores (`cache/`, `tasks/`, `objects/`, `queue/`) hold no
//! policy.

pub mod cache_stats;
pub mod dashboard;
pub mod health;
pub mod links;
pub mod poll;
pub mod submit;
pub mod uploads;
