-- Run-wide parallelism (`parallelism: N` at the top of a workflow): at
-- most N of a run's executions in flight (queued or running) at once,
-- its fan-outs' items and retries included. Executions past the limit are
-- created `pending` and dispatched as slots free up, by whichever
-- transaction frees them, under a lock on the run row (ADR 0012).

ALTER TABLE workflow_executions
    -- The workflow's `parallelism`, recorded when the run starts (the
    -- definition says it too; this copy is what `weft audit` and
    -- `weft status` read). NULL: no run-wide limit.
    ADD COLUMN parallelism integer CHECK (parallelism >= 1);

-- Counting a run's executions in flight uses the (workflow_execution_id,
-- status) index of migration 0007; nothing new is indexed.
