-- Daily performance per tenant: requests per tier, renders, failures, processing
-- times, and the per-stage timings of each task.

-- Requests per (tenant, UTC day, tier), as `OutcomeCache::count` counts them. Filled
-- by folding Redis's pending counts (see `cache::outcomes` and `sweep::fold_requests`),
-- or directly by `flush_counts` when the deployment runs without Redis.
CREATE TABLE request_counts (
    tenant   text   NOT NULL,
    day      date   NOT NULL,
    tier     text   NOT NULL CHECK (tier IN ('l0', 'redis', 'postgres', 'miss')),
    requests bigint NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (tenant, day, tier)
);

-- Batches of Redis counts already added to `request_counts`: a fold that committed
-- here but could not delete its Redis copy finds its batch id on the next run and
-- skips it, so a count is never added twice. Pruned by the sweep after a day.
CREATE TABLE request_count_folds (
    batch     uuid        PRIMARY KEY,
    folded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX request_count_folds_time ON request_count_folds (folded_at);

-- Per-stage timings of a finished task (ms per stage), served by the status route
-- and cached with the outcome. The same figures are rows of processing_metrics.
ALTER TABLE task_results ADD COLUMN stages jsonb;

-- The top route: a tenant's most-hit entries.
CREATE INDEX task_results_tenant_hits ON task_results (tenant, cache_hits DESC)
    WHERE status = 'SUCCESS';
-- The daily view and the per-stage statistics read one tenant's metrics by time.
CREATE INDEX processing_metrics_tenant_time ON processing_metrics (tenant, recorded_at);

-- One row per tenant and UTC day with any request, render or failure. Renders,
-- failures and processing times come from processing_metrics (`processing_ms` is
-- written with every success, `failure_ms` with every failure), which outlives the
-- task rows the sweep deletes. A UNION ALL grouped by (tenant, date), rather than a
-- join, lets a `WHERE tenant = … AND date >= …` on the view reach both tables'
-- indexes instead of aggregating every tenant first.
CREATE VIEW cache_performance AS
SELECT tenant,
       day                                                             AS date,
       COALESCE(sum(requests), 0)::int8                                AS requests,
       COALESCE(sum(requests) FILTER (WHERE tier = 'l0'), 0)::int8       AS hits_l0,
       COALESCE(sum(requests) FILTER (WHERE tier = 'redis'), 0)::int8    AS hits_redis,
       COALESCE(sum(requests) FILTER (WHERE tier = 'postgres'), 0)::int8 AS hits_postgres,
       COALESCE(sum(requests) FILTER (WHERE tier <> 'miss'), 0)::int8    AS hits,
       CASE WHEN COALESCE(sum(requests), 0) = 0 THEN 0::float8
            ELSE round(100.0 * COALESCE(sum(requests) FILTER (WHERE tier <> 'miss'), 0)
                       / sum(requests), 2)::float8
       END                                                             AS hit_ratio_percent,
       count(*) FILTER (WHERE metric = 'processing_ms')                AS renders,
       count(*) FILTER (WHERE metric = 'failure_ms')                   AS failures,
       avg(value) FILTER (WHERE metric = 'processing_ms')              AS processing_ms_avg,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY value)
           FILTER (WHERE metric = 'processing_ms')                     AS processing_ms_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY value)
           FILTER (WHERE metric = 'processing_ms')                     AS processing_ms_p95
FROM (
    SELECT tenant, day, tier, requests, NULL::text AS metric, NULL::float8 AS value
    FROM request_counts
    UNION ALL
    SELECT tenant, (recorded_at AT TIME ZONE 'UTC')::date, NULL, NULL, metric_name, value
    FROM processing_metrics
    WHERE metric_name IN ('processing_ms', 'failure_ms') AND tenant IS NOT NULL
) events
GROUP BY tenant, day;

-- The functions' role (0004): counts are written by flush_counts (no Redis) and the
-- sweep's fold, fold markers pruned by the sweep, the view read by the daily route.
GRANT SELECT, INSERT, UPDATE ON request_counts TO facesvg_app;
GRANT SELECT, INSERT, DELETE ON request_count_folds TO facesvg_app;
GRANT SELECT ON cache_performance TO facesvg_app;
