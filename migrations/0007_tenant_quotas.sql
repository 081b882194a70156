-- A fair share per tenant (see `quota`).

-- Tenants' token buckets when Redis is not there to hold them: the instant each
-- bucket is full again. Rows past that instant mean nothing and are swept.
CREATE TABLE tenant_quotas (
    tenant text        NOT NULL,
    bucket text        NOT NULL,
    tat    timestamptz NOT NULL,
    PRIMARY KEY (tenant, bucket)
);
CREATE INDEX tenant_quotas_tat ON tenant_quotas (tat);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_quotas TO facesvg_app;

-- A tenant's open tasks, counted against its cap on every miss. Open tasks are few
-- at any time, so the partial index stays small (and builds quickly).
CREATE INDEX task_results_tenant_open ON task_results (tenant)
    WHERE status IN ('PENDING', 'PROCESSING');
