-- Retry rounds: every execution knows the round of its run it belongs to,
-- and a round of `weft retry` keeps the items of a fan-out that already
-- succeeded with the same input instead of running them again.

-- The run's round (`workflow_executions.run_attempt`) the execution was
-- created in. Rows written before this column get 1: their rounds are not
-- known any more (attempt numbers still order them).
ALTER TABLE executions ADD COLUMN round integer NOT NULL DEFAULT 1 CHECK (round >= 1);

-- The execution of an earlier round whose success this row keeps: it was
-- created `succeeded` with that execution's result, and nothing was
-- dispatched for it. No foreign key: both rows go with their run, and a
-- key would make every delete of an execution look for rows naming it.
ALTER TABLE executions ADD COLUMN kept_from uuid;

-- Dispatch order of an item in a round that kept items: kept items take
-- the first positions, the items to run the rest, so the task's
-- `items_dispatched` counter still claims a prefix of positions. NULL in a
-- round that kept nothing (the item's index is its position), so the hot
-- path writes no entry in the index below.
ALTER TABLE executions ADD COLUMN seq integer CHECK (seq >= 0);

CREATE INDEX executions_seq_idx ON executions (task_execution_id, seq) WHERE seq IS NOT NULL;

-- Set by `weft retry` on a fan-out that failed or was canceled: its next
-- round keeps every item that succeeded in an earlier round with the same
-- rendered input.
ALTER TABLE task_executions ADD COLUMN keep_items boolean NOT NULL DEFAULT false;

-- How many items this round kept (counted in `items_dispatched` and
-- `items_succeeded` from the start).
ALTER TABLE task_executions ADD COLUMN items_kept integer NOT NULL DEFAULT 0 CHECK (items_kept >= 0);
