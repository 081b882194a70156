-- The application's own role. The functions connect as `facesvg_app`, never as the
-- owner of the schema: they can read and write the rows they use, and nothing
-- else. No DDL (no CREATE, ALTER, DROP or TRUNCATE: those belong to the owner that
-- runs these migrations), no other schema, no sequences beyond the ones they insert
-- through. The cleanup's deletes are granted explicitly, table by table.
--
-- Roles are cluster-wide while migrations run per database: two databases migrated
-- at once (tests, or two stacks on one server) may both try to create it.
DO $$
BEGIN
    CREATE ROLE facesvg_app LOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

REVOKE ALL ON SCHEMA public FROM facesvg_app;
GRANT USAGE ON SCHEMA public TO facesvg_app;

-- Tasks: submit inserts, the worker and the relay update, the sweep deletes.
GRANT SELECT, INSERT, UPDATE, DELETE ON task_results TO facesvg_app;
-- Metrics are written with each finished task and read by the statistics.
GRANT SELECT, INSERT ON processing_metrics TO facesvg_app;
GRANT USAGE ON SEQUENCE processing_metrics_id_seq TO facesvg_app;
