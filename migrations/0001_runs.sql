-- Workflow definitions and runs.

-- A workflow's source, stored once however many times it is submitted.
-- Executors parse it on first use and cache the parsed form by id.
CREATE TABLE workflow_definitions (
    -- UUIDv5 of the source text: the same YAML always maps to the same row.
    id          uuid PRIMARY KEY,
    -- The workflow's `name:`.
    name        text NOT NULL,
    -- The YAML exactly as submitted.
    source      text NOT NULL,
    -- The file it was read from, for diagnostics.
    origin      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One submitted run of a workflow.
CREATE TABLE workflow_executions (
    id               uuid PRIMARY KEY,
    definition_id    uuid NOT NULL REFERENCES workflow_definitions (id),
    -- Copied from the definition so listings need no join.
    workflow_name    text NOT NULL,
    -- pending → running → succeeded | failed; pending | running → canceling → canceled.
    status           text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'canceling', 'canceled')),
    -- The resolved input (defaults applied).
    input            jsonb NOT NULL,
    -- The rendered `output:` once the run succeeded.
    output           jsonb,
    -- Why the run failed, when it did.
    error            text,
    -- Optional client-chosen key: a second submit with it returns this run.
    idempotency_key  text UNIQUE,
    -- Number of tasks in the workflow.
    tasks_total      integer NOT NULL CHECK (tasks_total > 0),
    -- Counter of tasks not yet terminal. Decremented in the transaction that
    -- makes a task terminal; the one transaction that sees 0 finishes the run.
    tasks_remaining  integer NOT NULL CHECK (tasks_remaining >= 0),
    -- 1, then +1 for every `weft retry` of the run.
    run_attempt      integer NOT NULL DEFAULT 1 CHECK (run_attempt >= 1),
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
);

CREATE INDEX workflow_executions_created_idx ON workflow_executions (created_at DESC, id DESC);
CREATE INDEX workflow_executions_status_created_idx ON workflow_executions (status, created_at DESC);
