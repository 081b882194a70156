//! The numbers behind the service's decisions, in one place: how long things live
//! and when they have expired, what the sweep deletes and how much per run, what a
//! failing cache tier costs, what a caller may ask of the statistics, and how large
//! an SVG a status answer carries inline. The modules that act on them (named with
//! each) read them from here; `config` fills only what an operator may change from
//! the environment (`CACHE_TTL_HOURS`, `STUCK_AFTER_SECS`, `SWEEP_BATCH`, …).

/// How long things live, and when they have expired.
pub mod lifetime {
    use std::time::Duration;

    use chrono::{DateTime, Utc};

    /// Whether an outcome whose life ends at `expires_at` has expired at `now`:
    /// from that instant on it is never served, from any tier, and the sweep may
    /// delete it. The one comparison; SQL writes it as `expired_sql!()` (its
    /// negation as `live_sql!()`), nowhere by hand.
    pub fn is_expired(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        expires_at <= now
    }

    /// [`is_expired`] in SQL, for a row of `task_results`. A macro, not a const:
    /// the statements are literals built by `concat!`, which splices only literals.
    macro_rules! expired_sql {
        () => {
            "ttl_expires_at <= now()"
        };
    }
    pub(crate) use expired_sql;

    /// The negation of `expired_sql!()`: a row of `task_results` still served.
    macro_rules! live_sql {
        () => {
            "ttl_expires_at > now()"
        };
    }
    pub(crate) use live_sql;

    /// [`is_expired`] in SQL, for a row of `task_results`, where a statement is
    /// built at run time (`format!`).
    pub const EXPIRED_SQL: &str = expired_sql!();

    /// A task the sweep failed as stuck is kept at least this long (beyond a shorter
    /// `CACHE_TTL_HOURS`), so that its client reads `task_stuck` rather than 404.
    pub const STUCK_FAILURE_VISIBLE: Duration = Duration::from_secs(24 * 3600);

    /// A direct upload's form is valid this long (`services::uploads`).
    pub const UPLOAD_TTL: Duration = Duration::from_secs(15 * 60);

    /// A task whose message was never confirmed sent is re-sent by an identical
    /// submit after this long (its first submitter may have died;
    /// `services::submit`).
    pub const UNCONFIRMED_ENQUEUE: Duration = Duration::from_secs(30);

    /// Redis's per-tenant daily request counters outlive the longest statistics
    /// window ([`super::ranges::STATS_DAYS`]) by two days.
    pub const REDIS_DAILY_COUNTERS: Duration = Duration::from_secs(92 * 24 * 3600);
}

/// What the sweep (`sweep`, cache-cleanup) deletes, and how much per run.
pub mod sweep {
    use std::time::Duration;

    /// Failures are kept this long after they finished.
    pub const FAILURE_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
    /// Entries never hit are deleted this long after their submit (only when the
    /// hit counts were folded in the same run).
    pub const UNUSED_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
    /// Batches per step and run: a backlog is finished by the next scheduled runs.
    pub const MAX_BATCHES: usize = 50;
    /// Unconfirmed sends older than this are the relay's: younger ones may still be
    /// in their submitter's hands.
    pub const RELAY_AFTER: Duration = Duration::from_secs(10);
    /// How long Postgres remembers a folded batch once it is no longer in Redis
    /// (a marker whose batch is still there is kept however old).
    pub const FOLD_MEMORY: Duration = Duration::from_secs(24 * 3600);
    /// Raw `processing_metrics` rows are kept this long, then only their daily
    /// aggregates (`daily_metrics`).
    pub const RAW_METRICS_KEEP: Duration = Duration::from_secs(14 * 24 * 3600);
    /// Daily aggregates and request counts are kept this long: past the longest
    /// statistics window ([`super::ranges::STATS_DAYS`]), a year for operators.
    pub const DAILY_KEEP: Duration = Duration::from_secs(400 * 24 * 3600);
    /// Days rolled up per run: a backlog is caught up by the next runs.
    pub const ROLLUP_DAYS_PER_RUN: u32 = 31;
    /// Rows per retention delete.
    pub const RETENTION_BATCH: i64 = 10_000;
    /// Rows per eviction statement of the general cache's size limits
    /// (`CACHE_KV_MAX_ENTRIES`, `CACHE_KV_MAX_SIZE_MB`); at most [`MAX_BATCHES`]
    /// statements per limit and run.
    pub const CACHE_LIMIT_BATCH: i64 = 1000;
}

/// How much an operator's clear or a tenant's deletion (`sweep::purge`) does per call.
pub mod purge {
    use std::time::Duration;

    /// Rows per delete statement (task rows, metrics, counts, `cache_store`).
    pub const ROW_BATCH: i64 = 500;
    /// Keys asked of Redis per `SCAN`/`HSCAN` page, and objects per S3 listing.
    pub const SCAN_COUNT: u32 = 1000;
    /// The work of one call over HTTP: API Gateway cuts a request off at 30 s,
    /// so a call stops starting batches after this and answers `complete: false`
    /// (the caller calls again; each call resumes where the data is).
    pub const HTTP_BUDGET: Duration = Duration::from_secs(20);
}

/// What a failing cache tier costs (`cache::breaker`, used by the Redis link both
/// caches share and by the general-purpose cache's Postgres tier).
pub mod tiers {
    use std::time::Duration;

    /// Consecutive failures that open a tier's circuit breaker.
    pub const BREAKER_FAILURES: u32 = 3;
    /// How long an open breaker skips its tier before one probe is let through.
    pub const BREAKER_OPEN_FOR: Duration = Duration::from_secs(5);
    /// The general-purpose cache's memory tier: entries, bytes, and the longest an
    /// entry lives there (it cannot hear other instances' invalidations).
    pub const KV_MEMORY_ENTRIES: u64 = 10_000;
    pub const KV_MEMORY_BYTES: u64 = 4 << 20;
    pub const KV_MEMORY_MAX_TTL: Duration = Duration::from_secs(60);
    /// A read moves a `cache_store` row's `last_used_at` (the size limits' LRU
    /// order) only when it is older than this: a hot row is written once per
    /// interval, not on every hit, and the order is exact to this grain.
    pub const KV_TOUCH_EVERY: Duration = Duration::from_secs(3600);
    /// Request and hit counts an instance keeps before it sends them: at most this
    /// many requests (`cache::outcomes`). An instance that dies loses them, which
    /// only delays the sweep's "unused" rule and rounds the statistics.
    pub const COUNT_BATCH: u32 = 64;
    /// An instance sends its counts at most this often (unless a batch is full, or
    /// the request is a miss, which goes to the backends anyway): a quiet instance
    /// sends each count at once, a busy one one pipeline a second.
    pub const COUNT_INTERVAL: Duration = Duration::from_secs(1);
}

/// How long a client is told to wait between polls of an open task
/// (`services::poll`): the recent median time to completion, within these bounds.
pub mod poll {
    use std::time::Duration;

    /// How long a computed median is reused.
    pub const REFRESH: Duration = Duration::from_secs(60);
    /// Bounds of the advice, in whole seconds (the `Retry-After` header's unit).
    pub const MIN_SECS: u64 = 1;
    pub const MAX_SECS: u64 = 30;
}

/// How much of an invocation's time a call may take (`deadline`, `db`).
pub mod deadlines {
    use std::time::Duration;

    /// Time kept back at the end of an invocation to turn a timeout into an answer.
    pub const ANSWER_MARGIN: Duration = Duration::from_millis(300);
    /// No call is given less than this, however late it starts.
    pub const FLOOR: Duration = Duration::from_millis(20);
    /// How long a cancel request for a cut-off statement may take before it is
    /// given up (the role's `statement_timeout` ends the statement anyway).
    pub const CANCEL: Duration = Duration::from_secs(2);
    /// The client deadline of one maintenance statement of the sweep (a day's
    /// rollup, a batch of deletes); its transaction raises the server's limits to
    /// match (`SET LOCAL`).
    pub const MAINTENANCE: Duration = Duration::from_secs(60);
}

/// A fair share: what one tenant may start, whatever the others do (`quota`). Hits
/// are cheap and unlimited; what costs a render, an upload form or an invalidation
/// is counted per tenant in a token bucket.
pub mod tenants {
    use std::time::Duration;

    /// A token bucket: `burst` at once, refilled at `per_minute`. `per_minute` 0
    /// means no limit.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Rate {
        pub per_minute: u32,
        pub burst: u32,
    }

    impl Rate {
        pub fn is_limited(&self) -> bool {
            self.per_minute > 0
        }
        /// The time one token takes to come back.
        pub fn interval(&self) -> Duration {
            Duration::from_secs(60) / self.per_minute.max(1)
        }
        /// How far ahead of now a bucket may run before it refuses: `burst` tokens.
        pub fn tolerance(&self) -> Duration {
            self.interval() * self.burst.max(1)
        }
    }

    /// Renders a tenant may start (misses and re-runs): one a second, and 20 at
    /// once, two for each of the process function's ten instances, so that one
    /// tenant's burst holds the others' tasks back by two renders at most.
    pub const RENDERS: Rate = Rate {
        per_minute: 60,
        burst: 20,
    };
    /// Direct-upload forms (each one lets the tenant put up to 16 MiB in the bucket).
    pub const UPLOADS: Rate = Rate {
        per_minute: 30,
        burst: 30,
    };
    /// Invalidations of the general-purpose cache (each one is a write to every tier).
    pub const INVALIDATIONS: Rate = Rate {
        per_minute: 10,
        burst: 10,
    };
    /// Tasks of one tenant queued or running at once: one tenant's backlog cannot
    /// age the others' tasks into `task_stuck`.
    pub const OPEN_TASKS: u32 = 100;
    /// How long an instance keeps the public `/health` verdict: an anonymous flood
    /// costs one probe of each backend per instance this often.
    pub const HEALTH_VERDICT_FOR: Duration = Duration::from_secs(5);
    /// `Retry-After` of a refusal for open tasks: about one batch of renders.
    pub const OPEN_TASKS_RETRY: Duration = Duration::from_secs(5);

    /// The limits of every tenant, as configured (`config` fills them from
    /// `TENANT_*`; these constants are the defaults).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct TenantLimits {
        pub renders: Rate,
        pub uploads: Rate,
        pub invalidations: Rate,
        /// 0: no cap.
        pub open_tasks: u32,
    }

    impl Default for TenantLimits {
        fn default() -> Self {
            TenantLimits {
                renders: RENDERS,
                uploads: UPLOADS,
                invalidations: INVALIDATIONS,
                open_tasks: OPEN_TASKS,
            }
        }
    }
}

/// How a hit ratio reads in words: `cache_efficiency` of `/cache/stats`, the
/// original service's label, and the one place its thresholds are set.
pub mod efficiency {
    /// The lowest hit ratio (0..1) of each label, best first; below the last is
    /// `poor`. A cache answering four requests in five is doing its job; under
    /// two in five, most requests pay for a render.
    pub const LABELS: [(f64, &str); 3] = [(0.8, "excellent"), (0.6, "good"), (0.4, "fair")];
    pub const POOR: &str = "poor";

    /// The label of a hit ratio (0..1); no traffic is `poor` (nothing was saved).
    pub fn label(hit_ratio: f64) -> &'static str {
        LABELS
            .iter()
            .find(|(floor, _)| hit_ratio >= *floor)
            .map_or(POOR, |(_, label)| label)
    }

    /// `part / whole`, 0 when `whole` is 0: every hit ratio the service reports.
    pub fn ratio(part: u64, whole: u64) -> f64 {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    }
}

/// How many counts an instance keeps while the place they go to (Redis, or
/// Postgres without Redis) does not answer (`cache::outcomes`): enough for minutes
/// of an outage at a busy instance's rate, bounded so that a long one cannot grow
/// the instance's memory. Past them, new keys' counts are dropped (and logged).
pub mod buffers {
    /// Distinct (tenant, day, tier) request counts kept.
    pub const MAX_REQUEST_KEYS: usize = 10_000;
    /// Distinct tasks whose hits are kept.
    pub const MAX_HIT_TASKS: usize = 50_000;
}

/// What a caller may ask of the statistics routes: (default, allowed range).
pub mod ranges {
    use std::ops::RangeInclusive;

    /// `days` of `/cache/stats` and `/cache/daily`.
    pub const STATS_DAYS: (i64, RangeInclusive<i64>) = (7, 1..=90);
    /// `limit` of `/cache/recent`.
    pub const RECENT_LIMIT: (i64, RangeInclusive<i64>) = (20, 1..=100);
    /// `limit` of `/cache/top`.
    pub const TOP_LIMIT: (i64, RangeInclusive<i64>) = (10, 1..=100);
    /// `minutes` of `/admin/metrics`: the per-minute series and the stage
    /// percentiles. Twelve hours at most: one row per minute in the answer, and
    /// raw `processing_metrics` rows (kept 14 days) are what it reads.
    pub const METRICS_MINUTES: (i64, RangeInclusive<i64>) = (60, 1..=720);
    /// `days` of `/admin/metrics`: the requests per day and tier.
    pub const METRICS_DAYS: (i64, RangeInclusive<i64>) = (7, 1..=90);
}

/// What the read routes carry in one answer.
pub mod answers {
    /// The largest SVG that `GET …/status/{task_id}?include=svg` carries inline
    /// (64 KiB). A face's SVG is a few KiB (einstein with its label map: 2,252
    /// bytes), so most clients are spared the second request; a larger one (a
    /// detailed label map's can take hundreds of KiB) is still fetched from
    /// `svg_url`, which keeps a status answer (polled, and kept by clients) small.
    /// Even if every byte escaped to six in Lambda's JSON framing, 64 KiB takes a
    /// sixteenth of the 6 MB a function may answer.
    pub const INLINE_SVG_MAX_BYTES: u64 = 64 * 1024;

    const _: () =
        assert!(INLINE_SVG_MAX_BYTES * 6 * 16 <= crate::limits::LAMBDA_SYNC_PAYLOAD_BYTES as u64);

    /// Whether an SVG of `bytes` is carried inline.
    pub fn inline_svg(bytes: u64) -> bool {
        bytes <= INLINE_SVG_MAX_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_svg_is_inlined_up_to_its_stated_size() {
        assert!(answers::inline_svg(0));
        assert!(answers::inline_svg(65_536));
        assert!(!answers::inline_svg(65_537));
    }

    #[test]
    fn an_outcome_expires_at_its_instant_not_after() {
        let at = chrono::Utc::now();
        assert!(lifetime::is_expired(at, at));
        assert!(!lifetime::is_expired(
            at + chrono::Duration::milliseconds(1),
            at
        ));
        assert!(lifetime::is_expired(
            at - chrono::Duration::milliseconds(1),
            at
        ));
    }

    #[test]
    fn efficiency_labels_follow_their_thresholds() {
        assert_eq!(efficiency::label(1.0), "excellent");
        assert_eq!(efficiency::label(0.8), "excellent");
        assert_eq!(efficiency::label(0.79), "good");
        assert_eq!(efficiency::label(0.6), "good");
        assert_eq!(efficiency::label(0.5), "fair");
        assert_eq!(efficiency::label(0.39), "poor");
        assert_eq!(efficiency::label(0.0), "poor");
        assert_eq!(efficiency::ratio(3, 4), 0.75);
        assert_eq!(efficiency::ratio(0, 0), 0.0);
    }

    #[test]
    fn daily_rows_outlive_the_longest_statistics_window() {
        let longest = *ranges::STATS_DAYS.1.end() as u64 * 24 * 3600;
        assert!(sweep::DAILY_KEEP.as_secs() > longest);
        assert!(sweep::RAW_METRICS_KEEP < sweep::DAILY_KEEP);
    }
}
