-- Bounded growth: raw metrics are rolled up into daily aggregates and pruned, and
-- every statistics query reads an index, whatever the history's length.

-- One row per (tenant, UTC day, metric) of processing_metrics, written once the day
-- is over (see `TaskStore::roll_up_metrics`). Percentiles are of that day exactly.
CREATE TABLE daily_metrics (
    tenant      text             NOT NULL,
    day         date             NOT NULL,
    metric_name text             NOT NULL,
    count       bigint           NOT NULL,
    sum         double precision NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    p50         double precision NOT NULL,
    p95         double precision NOT NULL,
    PRIMARY KEY (tenant, day, metric_name)
);
-- Pruning the oldest days.
CREATE INDEX daily_metrics_day ON daily_metrics (day);
CREATE INDEX request_counts_day ON request_counts (day);

-- The last UTC day rolled up: raw rows of that day and before are read from
-- daily_metrics only (the raw rows may be pruned), later ones from processing_metrics.
CREATE TABLE metrics_rollup (
    only_row       boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    rolled_through date    NOT NULL
);
-- Nothing rolled up yet: the first sweeps roll up every finished day with rows.
INSERT INTO metrics_rollup (rolled_through) VALUES ('2000-01-01');

-- The rollup reads a day of every tenant, retention deletes the oldest rows: both
-- by time alone.
CREATE INDEX processing_metrics_time ON processing_metrics (recorded_at);

-- Statistics on task_results through indexes only:
-- per-status counts of a tenant (index-only scan),
CREATE INDEX task_results_tenant_status ON task_results (tenant, status)
    INCLUDE (cache_hits, svg_bytes, ttl_expires_at);
-- a tenant's processing times over a window,
CREATE INDEX task_results_tenant_done ON task_results (tenant, completed_at)
    INCLUDE (processing_time_ms) WHERE status = 'SUCCESS';
-- the latest successes of every tenant (Retry-After's median).
CREATE INDEX task_results_done ON task_results (completed_at)
    INCLUDE (submitted_at) WHERE status = 'SUCCESS';

-- The daily view, now over the aggregates for days rolled up and the raw rows for
-- the days after. A UNION ALL grouped by (tenant, date) still lets a
-- `WHERE tenant = … AND date > …` reach each branch's index.
DROP VIEW cache_performance;
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
       COALESCE(sum(n) FILTER (WHERE metric = 'processing_ms'), 0)::int8 AS renders,
       COALESCE(sum(n) FILTER (WHERE metric = 'failure_ms'), 0)::int8    AS failures,
       (sum(total) FILTER (WHERE metric = 'processing_ms')
           / NULLIF(sum(n) FILTER (WHERE metric = 'processing_ms'), 0))::float8 AS processing_ms_avg,
       max(p50) FILTER (WHERE metric = 'processing_ms')                AS processing_ms_p50,
       max(p95) FILTER (WHERE metric = 'processing_ms')                AS processing_ms_p95
FROM (
    SELECT tenant, day, tier, requests,
           NULL::text AS metric, NULL::int8 AS n, NULL::float8 AS total,
           NULL::float8 AS p50, NULL::float8 AS p95
    FROM request_counts
    UNION ALL
    SELECT tenant, day, NULL, NULL, metric_name, count, sum, p50, p95
    FROM daily_metrics
    WHERE metric_name IN ('processing_ms', 'failure_ms')
    UNION ALL
    SELECT tenant, day, NULL, NULL, metric_name, count(*), sum(value),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY value),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY value)
    FROM (
        SELECT tenant, (recorded_at AT TIME ZONE 'UTC')::date AS day, metric_name, value
        FROM processing_metrics
        WHERE metric_name IN ('processing_ms', 'failure_ms') AND tenant IS NOT NULL
          AND recorded_at >= (SELECT (rolled_through + 1)::timestamp AT TIME ZONE 'UTC'
                              FROM metrics_rollup)
    ) raw
    GROUP BY tenant, day, metric_name
) events
GROUP BY tenant, day;

-- The functions' role: the sweep rolls up and prunes.
GRANT SELECT ON cache_performance TO facesvg_app;
GRANT SELECT, INSERT, DELETE ON daily_metrics TO facesvg_app;
GRANT SELECT, UPDATE ON metrics_rollup TO facesvg_app;
GRANT DELETE ON processing_metrics TO facesvg_app;
GRANT DELETE ON request_counts TO facesvg_app;
