-- When the start message of a run still `pending` was last sent again. A
-- `workflow.submitted` lost on the way (a purged queue, a broker node lost
-- without replicated queues) would leave its run pending forever: the
-- executors' redispatcher sends it again once the run has waited longer
-- than `--redispatch-after` since it was stored (or since this).
ALTER TABLE workflow_executions ADD COLUMN resubmitted_at timestamptz;
