-- Concurrency limits shared across runs (a workflow's `limit:`, a task's
-- `mutex:`/`semaphore:`; ADR 0016).
--
-- A limit is a *scope* (the workflow's name) cut into *keys* (the rendered
-- `limit.key` of each run, `customer=acme`). A run holds a *claim*: waiting
-- in line, or holding a slot. Every change to a scope's keys and claims is
-- made under a lock on the scope's row, by the transaction that starts,
-- ends or re-opens a run: a slot freed by a run's end is granted to the next
-- waiter in that same transaction. The counters on the rows are what
-- decisions read; picking the next waiter is an index lookup, never a scan
-- of the line (`weft audit` recounts them).

-- One row per limited workflow (by name): the lock every change takes.
CREATE TABLE limit_scopes (
    scope       text PRIMARY KEY,
    -- `limit.runs_total`: slots across every key of the scope (NULL: no cap).
    runs_total  integer CHECK (runs_total >= 1),
    -- `limit.order`: which key a freed slot goes to when several could take it.
    fair        boolean NOT NULL DEFAULT false,
    -- Claims of the scope holding a slot (the sum of its keys' `holders`).
    holders     integer NOT NULL DEFAULT 0 CHECK (holders >= 0),
    -- Grants made so far: each key remembers the grant it was last served at.
    turn        bigint NOT NULL DEFAULT 0
);

-- One row per key of a scope.
CREATE TABLE limit_keys (
    scope        text NOT NULL REFERENCES limit_scopes (scope) ON DELETE CASCADE,
    key          text NOT NULL,
    -- `limit.runs` of the latest run admitted under this key (never set below
    -- `holders`: a lowered limit applies as holders end).
    capacity     integer NOT NULL CHECK (capacity >= 1),
    -- Claims holding a slot of this key.
    holders      integer NOT NULL DEFAULT 0 CHECK (holders >= 0),
    -- Claims waiting in this key's line.
    waiters      integer NOT NULL DEFAULT 0 CHECK (waiters >= 0),
    -- The first waiter in line (`limit_claims.seq`), NULL when none waits.
    head_seq     bigint,
    -- The scope's `turn` when this key was last granted a slot (`fair`).
    served_turn  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, key),
    CHECK (holders <= capacity),
    CHECK ((waiters = 0) = (head_seq IS NULL))
);

-- Keys that could take a slot now (someone waits, a slot is free), in the
-- two orders a grant picks them in: O(log keys) whatever the line's length.
CREATE INDEX limit_keys_fifo_idx ON limit_keys (scope, head_seq)
    WHERE waiters > 0 AND holders < capacity;
CREATE INDEX limit_keys_fair_idx ON limit_keys (scope, served_turn, head_seq)
    WHERE waiters > 0 AND holders < capacity;

-- A run's place under its key: in line (`waiting`) or holding a slot.
-- Deleted when the run ends (the run's own timestamps keep the history).
CREATE TABLE limit_claims (
    -- Arrival order: the line is FIFO by this number.
    seq                    bigserial PRIMARY KEY,
    scope                  text NOT NULL,
    key                    text NOT NULL,
    -- The run that holds or waits (for a task's lock: the task's run).
    workflow_execution_id  uuid NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
    -- For a task's `mutex`/`semaphore`: the task; NULL for a run's `limit`.
    task_execution_id      uuid REFERENCES task_executions (id) ON DELETE CASCADE,
    state                  text NOT NULL CHECK (state IN ('waiting', 'holding')),
    created_at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    granted_at             timestamptz,
    FOREIGN KEY (scope, key) REFERENCES limit_keys (scope, key) ON DELETE CASCADE,
    CHECK ((state = 'holding') = (granted_at IS NOT NULL))
);

-- One claim per run for its workflow's `limit`, one per task for its lock;
-- a run's claims are found by its id when it ends.
CREATE UNIQUE INDEX limit_claims_run_idx ON limit_claims (workflow_execution_id)
    WHERE task_execution_id IS NULL;
CREATE UNIQUE INDEX limit_claims_task_idx ON limit_claims (task_execution_id);
CREATE INDEX limit_claims_of_run_idx ON limit_claims (workflow_execution_id);

-- The next waiter of a key (and a waiter's place in line), and a key's
-- holders. Not a partial index: the queries bind the state as a parameter,
-- and the executors plan generic plans, which cannot use a partial one.
CREATE INDEX limit_claims_line_idx ON limit_claims (scope, key, state, seq);
-- Holders granted longest ago: the redispatcher's search for a granted
-- run whose start was not taken (its query names the state literally).
CREATE INDEX limit_claims_holding_idx ON limit_claims (granted_at) WHERE state = 'holding';

ALTER TABLE workflow_executions
    -- The key the run waited under or held (`customer=acme`), kept after
    -- its claim is deleted: `weft status` and tests read which runs shared
    -- a key. NULL: the run's workflow has no `limit`.
    ADD COLUMN limit_key text;

-- The redispatcher's search for pending runs whose start was not taken
-- (`overdue::resubmit_stale_runs`), by their due time: a run waiting in
-- line has `resubmitted_at = 'infinity'` until it is granted a slot, so
-- however long the line, the search never visits it.
CREATE INDEX workflow_executions_pending_due_idx
    ON workflow_executions ((GREATEST(created_at, resubmitted_at)))
    WHERE status = 'pending';
