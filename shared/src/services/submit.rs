//! Submitting: a validated [`Submission`] in, a [`SubmitOutcome`] out. Every decision
//! of a submit lives here; the HTTP edge (`api::submit`) only parses and translates.
//!
//! Order of work is chosen so that a hit costs as little as possible: the cache key
//! first, then the tiers ([`crate::cache::outcomes`]); the label map's pixels are
//! decoded (and its cost judged against the render budget) only on a miss.
//!
//! A miss records the task and its queue message in one INSERT (the outbox), then
//! sends the message. If the send fails, the task is still accepted: its message is
//! in the row, and the relay (`sweep::relay`) sends it. A task id once answered is
//! therefore never taken back, and no task waits on a client's retry.

use chrono::Utc;
use thiserror::Error;
use uuid::Uuid;

use crate::cache::outcomes::{Answer, Found, OutcomeCache, Tier};
use crate::input::{InputError, Submission};
use crate::key::{input_hash, sha256, KeyInputs};
use crate::limits::Limits;
use crate::message::{InputsRef, TaskInputs, TaskMessage, MESSAGE_VERSION};
use crate::objects::{input_key, ObjectStore};
use crate::queue::TaskQueue;
use crate::quota::{Kind, Quotas, Refused};
use crate::render::budget::admit;
use crate::tasks::failure::Failure;
use crate::tasks::results::{Inserted, Pending};
use crate::tasks::{Outcome, StoreError, TaskRecords, TaskRow, TaskStatus};
use crate::RENDERER_VERSION;

// Returned once per request and matched at once: boxing the outcome would add an
// allocation to every hit for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum SubmitOutcome {
    /// A finished outcome (a success, or a cached deterministic failure).
    Cached { outcome: Outcome, tier: Tier },
    /// The task will run (or is running): poll its status.
    Accepted {
        task_id: Uuid,
        status: TaskStatus,
        /// Another identical submit created it.
        deduplicated: bool,
    },
}

#[derive(Debug, Error)]
pub enum SubmitError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("task store: {0}")]
    Store(#[from] StoreError),
    #[error("object store: {0}")]
    Objects(#[from] crate::objects::ObjectError),
    #[error("{0}")]
    Internal(String),
    /// The task's row changed under every pass (other submits, the sweep): the
    /// caller retries shortly.
    #[error("the task changed under every attempt to submit it")]
    Contended,
    /// The tenant is over one of its limits (`quota`).
    #[error(transparent)]
    RateLimited(#[from] Refused),
}

/// The cache key of `tenant`'s submission.
pub fn key_of(tenant: &str, sub: &Submission<'_>) -> String {
    input_hash(&KeyInputs {
        tenant,
        image_sha256: sha256(sub.image),
        landmarks: &sub.landmarks,
        segmentation_sha256: sub.segmentation_png.map(sha256),
        params: sub.params,
    })
}

/// What a submit touches, and nothing else: the task records, the outcome cache
/// in front of them, the object store (claim checks), the queue, and two settings.
pub struct Submitting<'a> {
    pub tasks: &'a dyn TaskRecords,
    pub outcomes: &'a OutcomeCache,
    pub objects: &'a dyn ObjectStore,
    pub queue: &'a dyn TaskQueue,
    /// Tenants' token buckets (renders).
    pub quota: &'a dyn Quotas,
    pub limits: &'a Limits,
    /// Most tasks one tenant may have queued or running (0: no cap).
    pub open_tasks: u32,
    /// How long an outcome lives (`CACHE_TTL_HOURS`).
    pub cache_ttl: std::time::Duration,
}

impl Submitting<'_> {
    pub async fn submit(
        &self,
        tenant: &str,
        sub: &Submission<'_>,
    ) -> Result<SubmitOutcome, SubmitError> {
        let hash = key_of(tenant, sub);
        tracing::Span::current().record("input_hash", hash.as_str());
        let cache = self.outcomes;

        // At most three passes: a row inserted, reopened or deleted concurrently by
        // another submit or the sweep is looked at again.
        let mut refused: Option<TaskRow> = None;
        for _ in 0..3 {
            let row = match cache.by_hash(self.tasks, tenant, &hash).await? {
                Found::Hit(outcome, tier) => {
                    cache
                        .count(tenant, Answer::Hit(tier), Some(outcome.task_id))
                        .await;
                    return Ok(SubmitOutcome::Cached { outcome, tier });
                }
                Found::Row(row) => row,
                Found::Absent => {
                    self.may_render(tenant).await?;
                    // Judge the label map now, so that a bad one is refused before
                    // anything is written.
                    self.admit_or_remember(tenant, &hash, sub).await?;
                    let task_id = Uuid::new_v4();
                    let prepared = self.prepare(tenant, &hash, task_id, sub).await?;
                    let pending = Pending {
                        task_id,
                        outbox: Some(prepared.body.clone()),
                        inputs_sha256: Some(prepared.inputs_sha256.clone()),
                    };
                    match self
                        .tasks
                        .insert_with_outbox(
                            tenant,
                            &hash,
                            RENDERER_VERSION,
                            self.cache_ttl,
                            &pending,
                        )
                        .await?
                    {
                        Inserted::Created(row) => {
                            self.send(row.task_id, &prepared).await;
                            cache.count(tenant, Answer::Miss, None).await;
                            return Ok(accepted(&row, false));
                        }
                        Inserted::Existing(_) => {
                            // Someone else recorded it first; an object we stored for
                            // our own claim check is not needed.
                            self.forget_claim_check(&prepared).await;
                            continue;
                        }
                    }
                }
            };
            if let Some(outcome) = refused
                .as_ref()
                .filter(|before| unchanged(before, &row))
                .and_then(|_| row.outcome())
            {
                // Postgres refused to reopen a row that this instance's clock calls
                // expired, and nobody touched it since: by the database's clock (the
                // one the sweep and the reopen use) it is still live. Serve it.
                cache
                    .count(tenant, Answer::Hit(Tier::Postgres), Some(outcome.task_id))
                    .await;
                return Ok(SubmitOutcome::Cached {
                    outcome,
                    tier: Tier::Postgres,
                });
            }
            if row.status == TaskStatus::Failure || row.is_expired() {
                // A retryable failure (lost or stuck), or an entry past its TTL that the
                // sweep has not deleted yet: run it again with these inputs.
                self.may_render(tenant).await?;
                admit(sub, self.limits)?;
                let prepared = self.prepare(tenant, &hash, row.task_id, sub).await?;
                if self
                    .tasks
                    .reopen(
                        row.task_id,
                        self.cache_ttl,
                        &prepared.body,
                        &prepared.inputs_sha256,
                    )
                    .await?
                {
                    self.send(row.task_id, &prepared).await;
                    cache.count(tenant, Answer::Miss, None).await;
                    return Ok(SubmitOutcome::Accepted {
                        task_id: row.task_id,
                        status: TaskStatus::Pending,
                        deduplicated: false,
                    });
                }
                // The row changed in between: another submit reopened it, or the sweep
                // deleted it. Answer from what is there now, never with a task id that
                // nothing will run. (A claim-check object stays: a concurrent reopen of
                // the same task may use the same key; the lifecycle rule removes it.)
                refused = Some(row);
                continue;
            }
            cache.count(tenant, Answer::Miss, None).await;
            // Open task. If its message was never confirmed, its submitter may have died
            // between insert and send: send it again (process is idempotent).
            let unconfirmed = row.enqueued_at.is_none()
                && (Utc::now() - row.submitted_at).num_seconds()
                    > crate::policy::lifetime::UNCONFIRMED_ENQUEUE.as_secs() as i64;
            if unconfirmed {
                admit(sub, self.limits)?;
                let prepared = self.prepare(tenant, &hash, row.task_id, sub).await?;
                self.send(row.task_id, &prepared).await;
            }
            return Ok(accepted(&row, true));
        }
        Err(SubmitError::Contended)
    }
}

/// Whether `now` is the row `before` was, untouched by any writer in between.
fn unchanged(before: &TaskRow, now: &TaskRow) -> bool {
    before.task_id == now.task_id
        && before.status == now.status
        && before.submitted_at == now.submitted_at
        && before.completed_at == now.completed_at
}

impl Submitting<'_> {
    /// Whether `tenant` may start one more render: with a token in its renders
    /// bucket, and under its cap of open tasks (hits never get here). The bucket
    /// first: a flood is refused by one Redis script, without a query.
    async fn may_render(&self, tenant: &str) -> Result<(), SubmitError> {
        self.quota.take(tenant, Kind::Renders).await?;
        if self.open_tasks > 0 {
            let cap = i64::from(self.open_tasks);
            if self.tasks.open_tasks(tenant, cap).await? >= cap {
                return Err(Refused {
                    limit: "open_tasks",
                    retry_after: crate::policy::tenants::OPEN_TASKS_RETRY,
                }
                .into());
            }
        }
        Ok(())
    }

    /// [`admit`], remembering a map refused for its cost as a cached failure: the
    /// same inputs are then answered from the cache without the map being decoded
    /// and judged again.
    async fn admit_or_remember(
        &self,
        tenant: &str,
        hash: &str,
        sub: &Submission<'_>,
    ) -> Result<(), SubmitError> {
        let Err(refused) = admit(sub, self.limits) else {
            return Ok(());
        };
        if refused.kind == crate::input::InputErrorKind::TooComplex {
            let error = Failure::Inputs(&refused).error();
            match self
                .tasks
                .insert_failure(tenant, hash, RENDERER_VERSION, self.cache_ttl, &error)
                .await
            {
                Ok(Some(row)) => {
                    if let Some(outcome) = row.outcome() {
                        self.outcomes.publish(&outcome).await;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "refusal not remembered"),
            }
        }
        Err(refused.into())
    }
}

fn accepted(row: &TaskRow, deduplicated: bool) -> SubmitOutcome {
    SubmitOutcome::Accepted {
        task_id: row.task_id,
        status: if row.status == TaskStatus::Processing {
            TaskStatus::Processing
        } else {
            TaskStatus::Pending
        },
        deduplicated,
    }
}

/// A task's queue message, ready to be recorded and sent.
struct Prepared {
    body: String,
    inputs_sha256: String,
    claim_check: Option<String>,
}

/// Builds the message: inputs inline when they fit, else stored in S3 first and
/// referenced (claim check). `inputs_sha256` is over the inputs' JSON, which the
/// worker recomputes to authenticate what it renders.
impl Submitting<'_> {
    async fn prepare(
        &self,
        tenant: &str,
        hash: &str,
        task_id: Uuid,
        sub: &Submission<'_>,
    ) -> Result<Prepared, SubmitError> {
        let inputs = TaskInputs::new(
            sub.image_info,
            sub.landmarks.clone(),
            sub.segmentation_png,
            sub.params,
        );
        let inputs_json =
            serde_json::to_vec(&inputs).map_err(|e| SubmitError::Internal(e.to_string()))?;
        let inputs_sha256 = hex::encode(sha256(&inputs_json));
        let mut message = TaskMessage {
            v: MESSAGE_VERSION,
            task_id,
            tenant: tenant.to_owned(),
            input_hash: hash.to_owned(),
            inputs: InputsRef::Inline { inputs },
        };
        let inline =
            serde_json::to_string(&message).map_err(|e| SubmitError::Internal(e.to_string()))?;
        if inline.len() <= self.limits.max_message_bytes {
            return Ok(Prepared {
                body: inline,
                inputs_sha256,
                claim_check: None,
            });
        }
        let key = input_key(tenant, task_id);
        self.objects
            .put(&key, inputs_json, "application/json")
            .await?;
        message.inputs = InputsRef::S3 { key: key.clone() };
        Ok(Prepared {
            body: serde_json::to_string(&message)
                .map_err(|e| SubmitError::Internal(e.to_string()))?,
            inputs_sha256,
            claim_check: Some(key),
        })
    }

    /// Sends a recorded message and confirms it in the row. A failed send is logged and
    /// left to the relay: the row holds the message.
    async fn send(&self, task_id: Uuid, prepared: &Prepared) {
        match self.queue.send(prepared.body.clone()).await {
            Ok(()) => {
                if let Err(e) = self
                    .tasks
                    .mark_enqueued(task_id, prepared.claim_check.as_deref())
                    .await
                {
                    // The message is out; the relay may send it once more, which the
                    // worker's idempotent claim absorbs.
                    tracing::warn!(error = %e, %task_id, "enqueue not recorded");
                }
            }
            Err(e) => tracing::warn!(error = %e, %task_id, "send failed; the relay will send it"),
        }
    }

    async fn forget_claim_check(&self, prepared: &Prepared) {
        if let Some(key) = &prepared.claim_check {
            if let Err(e) = self.objects.delete_many(std::slice::from_ref(key)).await {
                tracing::warn!(error = %e, "unneeded claim-check object left for the sweep");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The decisions of a submit against in-memory stores: what is recorded, what is
    //! sent, what is reused and what is run again. The same paths run against
    //! Postgres, Redis, S3 and SQS in `tests/pipeline.rs`, `tests/outbox.rs` and
    //! `tests/expiry.rs`.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::cache::memory::MemoryTier;
    use crate::cache::redis::RedisTier;
    use crate::input::image::{ImageFormat, ImageInfo};
    use crate::input::{Landmarks, RenderParams};
    use crate::objects::ObjectError;
    use crate::policy::tenants::{Rate, TenantLimits};
    use crate::queue::QueueError;
    use crate::quota::memory::MemoryQuotas;
    use crate::tasks::failure::Failure;
    use crate::tasks::records::memory::MemoryRecords;

    #[derive(Default)]
    struct Objects(Mutex<Vec<(String, Vec<u8>)>>);

    #[async_trait]
    impl ObjectStore for Objects {
        async fn put(&self, key: &str, body: Vec<u8>, _: &str) -> Result<(), ObjectError> {
            self.0.lock().unwrap().push((key.to_owned(), body));
            Ok(())
        }
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectError> {
            let objects = self.0.lock().unwrap();
            Ok(objects
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone()))
        }
        async fn delete_many(&self, keys: &[String]) -> Result<usize, ObjectError> {
            let mut objects = self.0.lock().unwrap();
            let before = objects.len();
            objects.retain(|(k, _)| !keys.contains(k));
            Ok(before - objects.len())
        }
        async fn presign_get(&self, key: &str, _: Duration) -> Result<String, ObjectError> {
            Ok(format!("memory://{key}"))
        }
        async fn ping(&self) -> Result<(), ObjectError> {
            Ok(())
        }
    }

    #[derive(Default)]
    struct Queue {
        sent: Mutex<Vec<String>>,
        down: AtomicBool,
    }

    #[async_trait]
    impl TaskQueue for Queue {
        async fn send(&self, body: String) -> Result<(), QueueError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(QueueError::Backend("queue down".into()));
            }
            self.sent.lock().unwrap().push(body);
            Ok(())
        }
        async fn ping(&self) -> Result<(), QueueError> {
            Ok(())
        }
    }

    /// A database whose clock is behind this instance's: it refuses every reopen.
    struct SlowClock(MemoryRecords);

    #[async_trait]
    impl TaskRecords for SlowClock {
        async fn find_by_hash(&self, t: &str, h: &str) -> Result<Option<TaskRow>, StoreError> {
            self.0.find_by_hash(t, h).await
        }
        async fn get(&self, t: &str, id: Uuid) -> Result<Option<TaskRow>, StoreError> {
            self.0.get(t, id).await
        }
        async fn insert_with_outbox(
            &self,
            t: &str,
            h: &str,
            v: &str,
            ttl: Duration,
            p: &Pending,
        ) -> Result<Inserted, StoreError> {
            self.0.insert_with_outbox(t, h, v, ttl, p).await
        }
        async fn reopen(&self, _: Uuid, _: Duration, _: &str, _: &str) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn mark_enqueued(&self, id: Uuid, k: Option<&str>) -> Result<(), StoreError> {
            self.0.mark_enqueued(id, k).await
        }
        async fn open_tasks(&self, t: &str, at_most: i64) -> Result<i64, StoreError> {
            self.0.open_tasks(t, at_most).await
        }
        async fn insert_failure(
            &self,
            t: &str,
            h: &str,
            v: &str,
            ttl: Duration,
            e: &crate::tasks::TaskError,
        ) -> Result<Option<TaskRow>, StoreError> {
            self.0.insert_failure(t, h, v, ttl, e).await
        }
    }

    struct World {
        tasks: MemoryRecords,
        outcomes: OutcomeCache,
        objects: Objects,
        queue: Queue,
        quotas: MemoryQuotas,
        limits: Limits,
        open_tasks: u32,
    }

    impl World {
        fn new() -> Self {
            World {
                tasks: MemoryRecords::default(),
                outcomes: OutcomeCache::new(
                    MemoryTier::new(1 << 20, Duration::from_secs(60)),
                    RedisTier::new(None, "test"),
                ),
                objects: Objects::default(),
                queue: Queue::default(),
                // Generous: only the tests of the limits meet them.
                quotas: MemoryQuotas::new(TenantLimits {
                    renders: Rate {
                        per_minute: 600,
                        burst: 100,
                    },
                    ..Default::default()
                }),
                limits: Limits::default(),
                open_tasks: 100,
            }
        }
        fn submitting(&self) -> Submitting<'_> {
            self.submitting_to(&self.tasks)
        }
        fn submitting_to<'a>(&'a self, tasks: &'a dyn TaskRecords) -> Submitting<'a> {
            Submitting {
                tasks,
                outcomes: &self.outcomes,
                objects: &self.objects,
                queue: &self.queue,
                quota: &self.quotas,
                limits: &self.limits,
                open_tasks: self.open_tasks,
                cache_ttl: Duration::from_secs(3600),
            }
        }
        fn sent(&self) -> Vec<TaskMessage> {
            let sent = self.queue.sent.lock().unwrap();
            sent.iter()
                .map(|b| serde_json::from_str(b).unwrap())
                .collect()
        }
    }

    const IMAGE: &[u8] = b"\x89PNG\r\n\x1a\n not really decoded by a submit";

    fn submission(opacity_milli: u16) -> Submission<'static> {
        Submission {
            image: IMAGE,
            image_info: ImageInfo {
                format: ImageFormat::Png,
                width: 640,
                height: 480,
            },
            landmarks: Landmarks {
                points: vec![[100_000, 100_000], [300_000, 120_000], [200_000, 300_000]],
            },
            segmentation_png: None,
            params: RenderParams {
                show_landmarks: false,
                opacity_milli,
                label_scheme: Default::default(),
                crop: Default::default(),
            },
        }
    }

    fn accepted(outcome: SubmitOutcome) -> (Uuid, bool) {
        match outcome {
            SubmitOutcome::Accepted {
                task_id,
                deduplicated,
                ..
            } => (task_id, deduplicated),
            other => panic!("expected Accepted, got {other:?}"),
        }
    }

    fn finish(world: &World, task_id: Uuid, change: impl FnOnce(&mut TaskRow)) {
        world.tasks.update(task_id, |r| {
            r.completed_at = Some(chrono::Utc::now());
            change(r);
        });
    }

    #[tokio::test]
    async fn a_miss_is_recorded_and_sent_once_and_a_duplicate_shares_it() {
        let world = World::new();
        let sub = submission(500);
        let (id, dedup) = accepted(world.submitting().submit("t1", &sub).await.unwrap());
        assert!(!dedup);
        let sent = world.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].task_id, id);
        assert_eq!(sent[0].input_hash, key_of("t1", &sub));
        let row = world.tasks.row(id).unwrap();
        assert!(
            row.enqueued_at.is_some(),
            "the send is confirmed in the row"
        );
        assert!(world.tasks.outbox.lock().unwrap().is_empty());

        let (again, dedup) = accepted(world.submitting().submit("t1", &sub).await.unwrap());
        assert_eq!(again, id);
        assert!(dedup);
        assert_eq!(world.sent().len(), 1, "a duplicate sends nothing");

        // Another tenant with the same inputs gets a task of its own.
        let (other, _) = accepted(world.submitting().submit("t2", &sub).await.unwrap());
        assert_ne!(other, id);
    }

    #[tokio::test]
    async fn a_failed_send_still_accepts_and_leaves_the_message_to_the_relay() {
        let world = World::new();
        world.queue.down.store(true, Ordering::SeqCst);
        let (id, _) = accepted(
            world
                .submitting()
                .submit("t", &submission(1))
                .await
                .unwrap(),
        );
        assert!(world.tasks.row(id).unwrap().enqueued_at.is_none());
        let outbox = world.tasks.outbox.lock().unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox[0].0, id);
    }

    #[tokio::test]
    async fn a_cached_failure_is_answered_and_a_retryable_one_runs_again() {
        let world = World::new();
        let sub = submission(2);
        let (id, _) = accepted(world.submitting().submit("t", &sub).await.unwrap());
        let bad = crate::input::InputError::invalid("segmentation_map", "not a PNG");
        finish(&world, id, |r| {
            r.status = TaskStatus::Failure;
            r.error = Some(Failure::Inputs(&bad).error());
        });
        match world.submitting().submit("t", &sub).await.unwrap() {
            SubmitOutcome::Cached { outcome, .. } => {
                assert_eq!(outcome.task_id, id);
                assert_eq!(outcome.status, TaskStatus::Failure);
            }
            other => panic!("expected the cached failure, got {other:?}"),
        }
        assert_eq!(world.sent().len(), 1);

        let sub = submission(3);
        let (id, _) = accepted(world.submitting().submit("t", &sub).await.unwrap());
        finish(&world, id, |r| {
            r.status = TaskStatus::Failure;
            r.error = Some(Failure::Stuck.error());
        });
        let (again, dedup) = accepted(world.submitting().submit("t", &sub).await.unwrap());
        assert_eq!(again, id, "the same task runs again");
        assert!(!dedup);
        assert_eq!(world.tasks.row(id).unwrap().status, TaskStatus::Pending);
        assert_eq!(world.sent().len(), 3);
    }

    #[tokio::test]
    async fn an_expired_success_runs_again_but_a_live_one_is_a_hit() {
        let world = World::new();
        let sub = submission(4);
        let (id, _) = accepted(world.submitting().submit("t", &sub).await.unwrap());
        finish(&world, id, |r| {
            r.status = TaskStatus::Success;
            r.svg_s3_key = Some("svg/t/x.svg".into());
        });
        assert!(matches!(
            world.submitting().submit("t", &sub).await.unwrap(),
            SubmitOutcome::Cached { .. }
        ));
        // Past its TTL: the tiers above hold it no longer than that, and the row is
        // run again rather than served.
        finish(&world, id, |r| {
            r.ttl_expires_at = chrono::Utc::now() - chrono::Duration::seconds(1)
        });
        crate::cache::OutcomeTier::remove(&world.outcomes.l0, "t", &key_of("t", &sub), id)
            .await
            .ok();
        let (again, _) = accepted(world.submitting().submit("t", &sub).await.unwrap());
        assert_eq!(again, id);
        assert_eq!(world.tasks.row(id).unwrap().status, TaskStatus::Pending);
    }

    #[tokio::test]
    async fn a_row_expired_only_by_this_instances_clock_is_served_not_a_500() {
        let world = World::new();
        let slow = SlowClock(MemoryRecords::default());
        let sub = submission(5);
        let (id, _) = accepted(world.submitting_to(&slow).submit("t", &sub).await.unwrap());
        slow.0.update(id, |r| {
            r.status = TaskStatus::Success;
            r.completed_at = Some(chrono::Utc::now());
            r.ttl_expires_at = chrono::Utc::now() - chrono::Duration::milliseconds(1);
        });
        match world.submitting_to(&slow).submit("t", &sub).await.unwrap() {
            SubmitOutcome::Cached { outcome, tier } => {
                assert_eq!(outcome.task_id, id);
                assert_eq!(tier, Tier::Postgres);
            }
            other => panic!("expected the row served, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn inputs_too_large_for_a_message_travel_by_claim_check() {
        let mut world = World::new();
        world.limits.max_message_bytes = 64;
        let (id, _) = accepted(
            world
                .submitting()
                .submit("t", &submission(6))
                .await
                .unwrap(),
        );
        let sent = world.sent();
        let InputsRef::S3 { key } = &sent[0].inputs else {
            panic!("expected a claim check");
        };
        let stored = world
            .objects
            .get(key)
            .await
            .unwrap()
            .expect("inputs stored");
        let inputs: TaskInputs = serde_json::from_slice(&stored).unwrap();
        assert_eq!(inputs.landmarks, submission(6).landmarks);
        assert_eq!(
            world.tasks.row(id).unwrap().input_s3_key.as_deref(),
            Some(key.as_str())
        );
    }

    #[tokio::test]
    async fn a_tenant_over_its_renders_is_refused_while_another_and_hits_go_on() {
        let mut world = World::new();
        world.quotas = MemoryQuotas::new(TenantLimits {
            renders: Rate {
                per_minute: 1,
                burst: 3,
            },
            ..Default::default()
        });
        let first = submission(100);
        let (id, _) = accepted(world.submitting().submit("flood", &first).await.unwrap());
        for opacity in 101..103 {
            accepted(
                world
                    .submitting()
                    .submit("flood", &submission(opacity))
                    .await
                    .unwrap(),
            );
        }
        let refused = world
            .submitting()
            .submit("flood", &submission(103))
            .await
            .unwrap_err();
        match refused {
            SubmitError::RateLimited(r) => {
                assert_eq!(r.limit, "renders_per_minute");
                assert!(r.retry_after > Duration::from_secs(50), "{r:?}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(world.sent().len(), 3, "a refused miss records nothing");
        // A duplicate of an open task starts no render: it is not counted.
        let (again, _) = accepted(world.submitting().submit("flood", &first).await.unwrap());
        assert_eq!(again, id);
        // Hits are never limited.
        finish(&world, id, |r| {
            r.status = TaskStatus::Success;
            r.svg_s3_key = Some("svg/flood/x.svg".into());
        });
        assert!(matches!(
            world.submitting().submit("flood", &first).await.unwrap(),
            SubmitOutcome::Cached { .. }
        ));
        // Another tenant has a bucket of its own.
        accepted(
            world
                .submitting()
                .submit("quiet", &submission(103))
                .await
                .unwrap(),
        );
    }

    #[tokio::test]
    async fn a_tenant_at_its_cap_of_open_tasks_starts_no_more() {
        let mut world = World::new();
        world.open_tasks = 2;
        let (a, _) = accepted(
            world
                .submitting()
                .submit("t", &submission(200))
                .await
                .unwrap(),
        );
        accepted(
            world
                .submitting()
                .submit("t", &submission(201))
                .await
                .unwrap(),
        );
        match world.submitting().submit("t", &submission(202)).await {
            Err(SubmitError::RateLimited(r)) => assert_eq!(r.limit, "open_tasks"),
            other => panic!("expected the cap, got {other:?}"),
        }
        accepted(
            world
                .submitting()
                .submit("u", &submission(202))
                .await
                .unwrap(),
        );
        // One finishes: room for one more.
        finish(&world, a, |r| {
            r.status = TaskStatus::Success;
            r.svg_s3_key = Some("svg/t/a.svg".into());
        });
        accepted(
            world
                .submitting()
                .submit("t", &submission(202))
                .await
                .unwrap(),
        );
    }

    #[tokio::test]
    async fn a_map_refused_for_its_cost_is_remembered_and_not_read_again() {
        let mut world = World::new();
        // A 4×4 map with two regions: more border edges than a budget of 4 allows.
        world.limits.render.max_edges = 4;
        let mut png = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut png, 4, 4);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&[0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0])
                .unwrap();
        }
        let mut sub = submission(300);
        sub.image_info.width = 4;
        sub.image_info.height = 4;
        sub.landmarks = Landmarks {
            points: vec![[1_000, 1_000], [3_000, 1_000], [2_000, 3_000]],
        };
        sub.segmentation_png = Some(&png);
        match world.submitting().submit("t", &sub).await {
            Err(SubmitError::Input(e)) => {
                assert_eq!(e.kind, crate::input::InputErrorKind::TooComplex)
            }
            other => panic!("expected the budget's refusal, got {other:?}"),
        }
        assert!(world.sent().is_empty());
        // The second time the answer comes from the tiers, before any map is read
        // (a refusal would be an `Err`): the remembered failure, with its task.
        let remembered = world.tasks.rows.lock().unwrap()[0].clone();
        match world.submitting().submit("t", &sub).await.unwrap() {
            SubmitOutcome::Cached { outcome, .. } => {
                assert_eq!(outcome.task_id, remembered.task_id);
                let error = outcome.error.expect("the refusal");
                assert_eq!(error.code, "too_complex");
                assert_eq!(error.field.as_deref(), Some("segmentation_map"));
            }
            other => panic!("expected the remembered refusal, got {other:?}"),
        }
    }
}
