-- Seeing inside a run (`weft status ID --task NAME`, `weft logs`): what an
-- attempt printed, and which item it ran, kept with each execution.

-- What the attempt printed: the last 64 KiB of its stdout and stderr (or a
-- custom action's log lines) and its exit code, as the worker reported
-- them with its completion, whatever the ending (`weft_common::logs::
-- AttemptLogs`). NULL when it printed nothing, never ran, or was ended by
-- the executor (reaped, canceled before it started).
ALTER TABLE executions ADD COLUMN logs jsonb;

-- A short one-line rendering of the item's value (its compact JSON, at
-- most 40 characters, `weft_common::abbrev::item_label`), so an item is
-- shown by what it is, not only by its index, without keeping a copy of
-- a value that may be large. NULL for a plain task.
ALTER TABLE executions ADD COLUMN item_label text;

-- No index: the reads of one task's executions use the unique
-- (task_execution_id, item_index, attempt) key, those of one run's the
-- (workflow_execution_id, status) index of migration 0007.
