-- History stays cheap to read and to delete: the indexes that the reads of
-- one run (`weft status`, `cancel`, `audit ID`) and `weft prune` need once
-- millions of executions are stored.
--
-- Built inside the migration's transaction (sqlx wraps each migration in
-- one), so an upgrade holds off writes to `executions` while the index is
-- built: a second or two per million rows on a small machine.

-- A run's executions, whatever their status. It serves:
-- - `weft status` and `weft audit ID`, which read every execution of a run;
-- - cancellation, which looks for the run's `pending` or `queued` ones, then
--   its `running` ones, and the canceling run's end, which asks whether any
--   is still `queued` or `running`: with status second, those lookups read
--   only the matching entries, however many finished executions a large
--   fan-out left behind;
-- - the `ON DELETE CASCADE` from a pruned run, whose foreign key on
--   `workflow_execution_id` would otherwise scan the whole table once per
--   deleted run.
-- It replaces `executions_live_by_run_idx` (partial on `queued`/`running`),
-- which answered none of these but the last, and whose entries this index
-- holds too: one index to maintain per write instead of two.
CREATE INDEX executions_run_status_idx ON executions (workflow_execution_id, status);
DROP INDEX executions_live_by_run_idx;

-- Finished runs by age, oldest first: what `weft prune` and the executor's
-- retention loop delete. Only a terminal run has a `finished_at` (`weft
-- retry` clears it when it re-opens one), so live runs never enter it and
-- it grows with history only as long as history is kept.
CREATE INDEX workflow_executions_finished_idx ON workflow_executions (finished_at)
    WHERE finished_at IS NOT NULL;

-- `workflow_definitions` gets no index and is not pruned: a submit inserts
-- its definition `ON CONFLICT DO NOTHING` in the statement that stores the
-- run, so a definition deleted between that conflict and the run's foreign
-- key check would fail the submit. Definitions are one row per distinct
-- workflow source, not per run: they grow with the workflows a team
-- writes, not with the history it runs.
