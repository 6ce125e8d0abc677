-- Sub-workflows: a run started by a `workflow:` task of another run (a
-- child run) carries out one execution (task item × attempt) of its parent.

ALTER TABLE workflow_executions
    -- The run whose task started this one; NULL for a run a user submitted.
    ADD COLUMN parent_run_id uuid REFERENCES workflow_executions (id) ON DELETE CASCADE,
    -- The parent's execution this run carries out. Unique: an execution
    -- starts one child run at most, however often its dispatch is
    -- delivered (the insert is `ON CONFLICT (parent_execution_id) DO NOTHING`).
    ADD COLUMN parent_execution_id uuid UNIQUE REFERENCES executions (id) ON DELETE CASCADE,
    -- How deep the run is nested: 0 for a submitted run, its parent's + 1.
    -- A `workflow:` task fails instead of starting a child deeper than its
    -- `max_depth`.
    ADD COLUMN depth integer NOT NULL DEFAULT 0 CHECK (depth >= 0),
    -- Which definition each `workflow:` task starts, resolved and stored at
    -- submit: {"<definition id>": {"<task>": "<definition id>"}}, for every
    -- workflow of the bundle (a child run copies its parent's). NULL when
    -- the workflow starts no sub-workflow.
    ADD COLUMN links jsonb,
    ADD CONSTRAINT workflow_executions_parent_check CHECK (
        (parent_run_id IS NULL) = (parent_execution_id IS NULL)
        AND (parent_run_id IS NULL) = (depth = 0)
    );

-- `weft status` lists a run's children; cancellation cascades to them.
CREATE INDEX workflow_executions_parent_run_idx ON workflow_executions (parent_run_id)
    WHERE parent_run_id IS NOT NULL;
