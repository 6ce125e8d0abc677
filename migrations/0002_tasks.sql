-- One row per (run, task): the exactly-once anchor of dispatch.

CREATE TABLE task_executions (
    id                     uuid PRIMARY KEY,
    workflow_execution_id  uuid NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
    task_name              text NOT NULL,
    -- waiting → running → succeeded | failed | skipped | canceled.
    status                 text NOT NULL DEFAULT 'waiting'
        CHECK (status IN ('waiting', 'running', 'succeeded', 'failed', 'skipped', 'canceled')),
    -- The tasks it needs (from the workflow), for audits and operators.
    needs                  text[] NOT NULL,
    -- Fan-in counter: needs not yet terminal. Decremented in the transaction
    -- that makes a need terminal; the one that sees 0 decides this task.
    needs_remaining        integer NOT NULL CHECK (needs_remaining >= 0),
    -- Whether the task fans out over `with_items`.
    with_items             boolean NOT NULL,
    -- Whether a failure of this task still lets the run succeed.
    allow_failure          boolean NOT NULL,
    -- Items in flight at most (`concurrency`); NULL = unbounded.
    concurrency            integer CHECK (concurrency >= 1),
    -- Item counters. A plain task has exactly one item. items_dispatched only
    -- grows while items_failed = 0; the task is done when every dispatched
    -- item is finished and either all items are or one failed.
    items_total            integer CHECK (items_total >= 0),
    items_dispatched       integer NOT NULL DEFAULT 0 CHECK (items_dispatched >= 0),
    items_succeeded        integer NOT NULL DEFAULT 0 CHECK (items_succeeded >= 0),
    items_failed           integer NOT NULL DEFAULT 0 CHECK (items_failed >= 0),
    -- Attempts of earlier rounds (`weft retry` of the run): this round's
    -- first attempt is attempt_base + 1, so attempt numbers never repeat.
    attempt_base           integer NOT NULL DEFAULT 0 CHECK (attempt_base >= 0),
    -- The action's result (a plain task) or the item results in item order.
    result                 jsonb,
    error                  text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    -- When its needs were all terminal and it was decided (run or skip).
    decided_at             timestamptz,
    finished_at            timestamptz,
    CONSTRAINT task_executions_run_task_key UNIQUE (workflow_execution_id, task_name),
    CONSTRAINT task_executions_items_consistent CHECK (
        items_succeeded + items_failed <= items_dispatched
        AND (items_total IS NULL OR items_dispatched <= items_total)
    )
);
