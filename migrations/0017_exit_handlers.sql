-- Exit handlers (`on_exit:`): tasks of a run that start once every main
-- task is terminal, whatever the run's outcome (ADR 0011).

ALTER TABLE task_executions
    -- Whether the task is an exit handler. Its executions are told apart
    -- by joining their task: cancellation leaves them alone, and run-wide
    -- `parallelism` does not count them.
    ADD COLUMN exit_handler boolean NOT NULL DEFAULT false;

ALTER TABLE workflow_executions
    -- Main tasks (not exit handlers) not yet terminal; NULL for a run
    -- without exit handlers. Counted down with `tasks_remaining` by the
    -- statements that make tasks terminal: the one that brings it to zero
    -- releases the exit handlers that need no other (each waits on one
    -- extra `needs_remaining` for the main tasks), so exactly one
    -- transaction starts the exit phase.
    ADD COLUMN main_remaining integer CHECK (main_remaining >= 0);
