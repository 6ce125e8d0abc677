-- One row per dispatched unit of work: a task item × attempt.

CREATE TABLE executions (
    id                     uuid PRIMARY KEY,
    task_execution_id      uuid NOT NULL REFERENCES task_executions (id) ON DELETE CASCADE,
    -- Denormalised from the task so cancellation and the reaper need no join.
    workflow_execution_id  uuid NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
    -- The item's position for a with_items task; NULL for a plain task.
    item_index             integer CHECK (item_index >= 0),
    -- 1 for the first try, +1 per retry.
    attempt                integer NOT NULL CHECK (attempt >= 1),
    -- pending → queued → running → succeeded | failed | timed_out | canceled.
    status                 text NOT NULL
        CHECK (status IN ('pending', 'queued', 'running', 'succeeded', 'failed', 'timed_out', 'canceled')),
    -- The rendered input the worker receives.
    input                  jsonb NOT NULL,
    result                 jsonb,
    error                  text,
    -- The worker that reported it started (or finished).
    worker_id              text,
    -- The task's per-attempt timeout.
    timeout_ms             bigint CHECK (timeout_ms > 0),
    created_at             timestamptz NOT NULL DEFAULT now(),
    -- When its dispatch was written to the outbox (pending → queued).
    queued_at              timestamptz,
    -- When its dispatch becomes due (a retry's backoff).
    due_at                 timestamptz,
    started_at             timestamptz,
    finished_at            timestamptz,
    -- Past this instant a running execution is reaped as timed out.
    deadline               timestamptz,
    CONSTRAINT executions_unit_key UNIQUE NULLS NOT DISTINCT (task_execution_id, item_index, attempt)
);

-- Cancellation and `weft status` find a run's live executions.
CREATE INDEX executions_live_by_run_idx ON executions (workflow_execution_id)
    WHERE status IN ('queued', 'running');
-- The reaper finds expired deadlines without scanning history.
CREATE INDEX executions_deadline_idx ON executions (deadline) WHERE status = 'running';
-- The reaper finds the executions of a lost worker.
CREATE INDEX executions_worker_idx ON executions (worker_id) WHERE status = 'running';
