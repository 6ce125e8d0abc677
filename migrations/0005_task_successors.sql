-- Each task's successors (the tasks that need it), stored with the task, so
-- the statement that finishes a task counts down its successors without
-- the engine naming them: an execution's completion can finish its plain
-- task in the same statement that records it.

ALTER TABLE task_executions ADD COLUMN successors text[] NOT NULL DEFAULT '{}';

-- Tasks of runs created before this column: their successors are the tasks
-- of the same run that list them in `needs`.
UPDATE task_executions t
SET successors = ARRAY(
    SELECT s.task_name FROM task_executions s
    WHERE s.workflow_execution_id = t.workflow_execution_id AND t.task_name = ANY (s.needs)
    ORDER BY s.task_name
)
WHERE EXISTS (
    SELECT 1 FROM task_executions s
    WHERE s.workflow_execution_id = t.workflow_execution_id AND t.task_name = ANY (s.needs)
);

ALTER TABLE task_executions ALTER COLUMN successors DROP DEFAULT;
