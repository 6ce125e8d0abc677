-- Whether a task's definition takes a lock across runs (`mutex` or
-- `semaphore`): only such a task ever has a claim in `limit_claims`, so
-- the transaction that ends a task without one has nothing to release
-- and asks nothing (one statement fewer for nearly every completion).
-- Set from the definition when the run's task rows are created and never
-- changed; rows from before this column say `true`, which keeps the
-- release check for them.
ALTER TABLE task_executions ADD COLUMN locks boolean NOT NULL DEFAULT true;
