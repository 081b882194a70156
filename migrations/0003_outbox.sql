-- Transactional outbox. A task's queue message is written in the same INSERT as its
-- row, and cleared once SQS confirmed the send: a row whose message was never
-- confirmed is re-sent by the relay (cache-cleanup, every minute), never lost and
-- never deleted under a caller that was told its task id.
-- `inputs_sha256` authenticates the inputs a message carries: the worker renders a
-- message only if its inputs hash to the value recorded with the row, so a message
-- forged for another tenant's task writes nothing.
ALTER TABLE task_results
    ADD COLUMN outbox        text,
    ADD COLUMN inputs_sha256 text;

CREATE INDEX task_results_unsent ON task_results (submitted_at)
    WHERE enqueued_at IS NULL AND outbox IS NOT NULL;
