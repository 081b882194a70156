-- Tasks and their results: the source of truth behind the Redis tier.
CREATE TABLE task_results (
    task_id            uuid PRIMARY KEY,
    tenant             text        NOT NULL,
    input_hash         text        NOT NULL,
    status             text        NOT NULL
        CHECK (status IN ('PENDING', 'PROCESSING', 'SUCCESS', 'FAILURE')),
    result             jsonb,
    svg_s3_key         text,
    svg_bytes          bigint,
    -- Claim check: inputs too large for a queue message.
    input_s3_key       text,
    error              jsonb,
    processing_time_ms integer,
    cache_hits         bigint      NOT NULL DEFAULT 0,
    attempts           integer     NOT NULL DEFAULT 0,
    renderer_version   text        NOT NULL,
    submitted_at       timestamptz NOT NULL DEFAULT now(),
    enqueued_at        timestamptz,
    started_at         timestamptz,
    completed_at       timestamptz,
    last_hit_at        timestamptz,
    ttl_expires_at     timestamptz NOT NULL,
    CONSTRAINT task_results_tenant_hash UNIQUE (tenant, input_hash)
);

-- The sweep: expired entries, old failures, never-hit entries, stuck tasks.
CREATE INDEX task_results_ttl ON task_results (ttl_expires_at);
CREATE INDEX task_results_failed ON task_results (completed_at) WHERE status = 'FAILURE';
CREATE INDEX task_results_unused ON task_results (submitted_at) WHERE cache_hits = 0;
CREATE INDEX task_results_open ON task_results (submitted_at) WHERE status IN ('PENDING', 'PROCESSING');
-- Per-tenant listings and statistics.
CREATE INDEX task_results_tenant_recent ON task_results (tenant, submitted_at DESC);

CREATE TABLE processing_metrics (
    id          bigserial PRIMARY KEY,
    metric_name text             NOT NULL,
    value       double precision NOT NULL,
    component   text             NOT NULL,
    -- No foreign key: metrics outlive the cache entries the sweep deletes.
    task_id     uuid,
    tenant      text,
    recorded_at timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX processing_metrics_name_time ON processing_metrics (metric_name, recorded_at);
CREATE INDEX processing_metrics_task ON processing_metrics (task_id);
