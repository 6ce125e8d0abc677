//! Starting a child run for the dispatch of a `workflow:` task.
//!
//! The dispatch of such a task is routed to the executors
//! (`execution.child`) instead of a worker pool; everything before it —
//! deciding the task, its items and `concurrency`, retries and their
//! backoff, the redispatcher — is the path any task takes. The executor
//! that receives it starts the child in one transaction: under the parent
//! run's dispatch lock (a cancellation cannot slip in between), the
//! execution moves `queued → running` and the child run is inserted
//! carrying the execution's id (unique), with its `workflow.submitted` in
//! the outbox. A duplicated or redelivered dispatch changes nothing. When
//! the child ends, `runs::end_many` reports its end to the parent
//! execution (see `weft_store::children`).

use weft_common::child::{child_depth, child_input};
use weft_common::message::{Dispatch, WorkflowSubmitted};
use weft_common::{Envelope, ExecutionStatus, WorkflowExecutionId, WorkflowStatus};
use weft_store::children::{self, NewChild};
use weft_store::executions::Completion;
use weft_store::runs::{self, RunLock};

use crate::engine::{Applied, Engine};
use crate::error::EngineError;
use crate::step::Outgoing;

impl Engine {
    /// Starts the child run of a `workflow:` task's execution, or fails the
    /// execution when it cannot start one (nested deeper than the task's
    /// `max_depth`, an input the child does not take, no stored workflow).
    #[tracing::instrument(
        skip_all,
        fields(workflow_execution_id = %d.workflow_execution_id, task = %d.task_name, execution_id = %d.execution_id),
        err
    )]
    pub(crate) async fn start_child(&self, d: &Dispatch) -> Result<Applied, EngineError> {
        let mut tx = self.begin().await?;
        let run = d.workflow_execution_id;
        // Held until the commit: a cancellation request waits for it, and
        // one that came first is seen here.
        // A canceling run still starts its exit handlers' children.
        let status = runs::status(&mut tx, run, RunLock::Dispatch).await?;
        if !matches!(status, WorkflowStatus::Running | WorkflowStatus::Canceling) {
            return Ok(Applied::Duplicate);
        }
        let lineage = children::lineage(&mut tx, run).await?;
        let parent = self
            .inner
            .catalog
            .get(&mut tx, lineage.definition_id)
            .await?;
        let task = parent.task(&d.task_name).ok_or_else(|| {
            EngineError::Inconsistent(format!(
                "a child dispatch names task `{}`, which the workflow of run {run} does not define",
                d.task_name
            ))
        })?;
        if status == WorkflowStatus::Canceling && !task.is_exit_handler() {
            return Ok(Applied::Duplicate);
        }
        let depth = match child_depth(lineage.depth, task) {
            Ok(depth) => depth,
            Err(why) => return self.fail_child(tx, d, &why).await,
        };
        let Some(definition) = lineage.child_definition(&d.task_name) else {
            let why = format!(
                "run {run} has no stored workflow for task `{}` ({}): it was stored without its \
                 sub-workflows; submit it with `weft submit`, which reads and stores them",
                d.task_name,
                task.action()
            );
            return self.fail_child(tx, d, &why).await;
        };
        let workflow = match self.inner.catalog.get(&mut tx, definition).await {
            Ok(workflow) => workflow,
            Err(EngineError::InvalidDefinition { detail, .. }) => {
                return self.fail_child(tx, d, &detail).await;
            }
            Err(e) => return Err(e),
        };
        // The child's own secret inputs are stored sealed, as a submit
        // stores them (a parent cannot pass its secrets: validation).
        let input = match child_input(&workflow, &d.input).and_then(|input| {
            workflow
                .seal_input(self.inner.config.secrets.as_deref(), input)
                .map_err(|e| format!("sealing the sub-workflow's secret inputs: {e}"))
        }) {
            Ok(input) => serde_json::Value::Object(input),
            Err(why) => return self.fail_child(tx, d, &why).await,
        };
        let id = WorkflowExecutionId::new();
        let new = NewChild {
            id,
            execution: d.execution_id,
            attempt: i32::try_from(d.attempt).unwrap_or(i32::MAX),
            parent: run,
            definition_id: definition,
            workflow_name: workflow.name(),
            input: &input,
            tasks_total: i32::try_from(workflow.tasks().count()).unwrap_or(i32::MAX),
            depth,
            links: lineage.links.as_ref(),
        };
        if !children::start_child(&mut tx, &new).await? {
            return Ok(Applied::Duplicate);
        }
        tracing::info!(child = %id, workflow = %workflow.name(), depth, "child run started");
        let outgoing = Outgoing {
            queued: vec![(
                Envelope::new(WorkflowSubmitted {
                    workflow_execution_id: id,
                }),
                None,
            )],
            ..Outgoing::default()
        };
        self.commit_messages(tx, outgoing).await?;
        Ok(Applied::Changed)
    }

    /// Fails the execution (guarded, like a worker's report of a failed
    /// action; the task's retry policy applies) without starting a child.
    async fn fail_child(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Postgres>,
        d: &Dispatch,
        why: &str,
    ) -> Result<Applied, EngineError> {
        tracing::warn!(error = %why, "not starting a child run");
        let completion = Completion {
            id: d.execution_id,
            run: d.workflow_execution_id,
            attempt: i32::try_from(d.attempt).unwrap_or(i32::MAX),
            status: ExecutionStatus::Failed,
            result: None,
            error: Some(why),
            worker_id: None,
            started_at: None,
            finished_at: None,
            logs: None,
        };
        self.complete(tx, &completion).await
    }
}
