-- Durable waits, signals and approvals (`wait:` tasks, ADR 0015): one row
-- per execution of a wait task that an executor started. The wait is this
-- row and a `wait.due` message in the outbox due at `due_at`, not a
-- sleeping process: it survives any restart and holds no worker slot.

CREATE TABLE waits (
    -- The execution (task item × attempt) that waits: it is `running` while
    -- the wait is open, with no worker. One wait per execution, however
    -- often its dispatch is delivered (`ON CONFLICT DO NOTHING`).
    execution_id uuid PRIMARY KEY REFERENCES executions (id) ON DELETE CASCADE,
    -- Its run, for the cancellation (which ends a run's open waits at once)
    -- and for `weft audit`.
    workflow_execution_id uuid NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
    -- What it waits for: `timer` (a duration or a time), `signal`, `approval`
    -- (`weft_common::wait::WaitMode`).
    mode text NOT NULL CHECK (mode IN ('timer', 'signal', 'approval')),
    -- The signal's name (`approval` for approvals); NULL for timers.
    signal text,
    -- When it ends by itself: a timer's time, a signal's timeout; NULL for
    -- a signal or an approval without a timeout. A timer always has one.
    due_at timestamptz,
    -- How it ended, set once by a guarded update (`… WHERE resolution IS
    -- NULL`) in the transaction that records the execution's end (the due
    -- time) or writes it to the outbox (a signal, an approval): whichever
    -- comes first wins, the other finds it set and changes nothing
    -- (`weft_common::wait::Resolution`).
    resolution text CHECK (resolution IN ('elapsed', 'signaled', 'approved', 'rejected', 'timed_out')),
    -- When it ended, and what a signal delivered (its checked payload, or
    -- `{approved, by, comment}`), who delivered it.
    resolved_at timestamptz,
    payload jsonb,
    resolved_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (mode <> 'timer' OR due_at IS NOT NULL),
    CHECK (mode = 'timer' OR signal IS NOT NULL),
    CHECK ((resolution IS NULL) = (resolved_at IS NULL))
);

-- A run's waits: its cancellation ends the open ones; `status` shows them.
CREATE INDEX waits_run_idx ON waits (workflow_execution_id);
