//! Durable waits (`wait:` tasks): starting them and ending them at their
//! time ([ADR 0015](../../../docs/decisions/0015-durable-waits-and-signals.md)).
//!
//! A wait task's dispatch goes to the executors (`execution.wait`); the
//! one that takes it, under the run's dispatch lock, moves the execution
//! `queued → running`, records the wait (`waits`) and writes a
//! `wait.due` message to the outbox due at the wait's time — one
//! transaction, so a crash before the commit redelivers the dispatch and
//! one after it leaves the message to whichever executor's relay is alive
//! when it is due. Nothing sleeps and no worker slot is held. The due
//! message ends the wait through [`weft_store::waits::resolve_due`]'s
//! guard and records the execution's end as a worker's report would be
//! (retries and trigger rules apply); a signal that came first, or a
//! cancellation, makes it a counted duplicate. A time already past ends
//! the wait in the transaction that starts it.

use weft_common::message::{Dispatch, WaitDue};
use weft_common::wait::{Ending, Wait};
use weft_common::{Envelope, ExecutionStatus, WorkflowStatus};
use weft_store::executions::Completion;
use weft_store::runs::{self, RunLock};
use weft_store::waits::{self, NewWait};

use crate::engine::{Applied, Engine};
use crate::error::EngineError;
use crate::step::Outgoing;

impl Engine {
    /// Starts the wait of a `wait:` task's execution; see the module docs.
    #[tracing::instrument(
        skip_all,
        fields(workflow_execution_id = %d.workflow_execution_id, task = %d.task_name, execution_id = %d.execution_id),
        err
    )]
    pub(crate) async fn start_wait(&self, d: &Dispatch) -> Result<Applied, EngineError> {
        let mut tx = self.begin().await?;
        let run = d.workflow_execution_id;
        // Held until the commit: a cancellation request waits for it, and
        // one that came first is seen here.
        let status = runs::status(&mut tx, run, RunLock::Dispatch).await?;
        if !matches!(status, WorkflowStatus::Running | WorkflowStatus::Canceling) {
            return Ok(Applied::Duplicate);
        }
        let wait = self
            .wait_of(&mut tx, d.workflow_execution_id, &d.task_name)
            .await?;
        if status == WorkflowStatus::Canceling && !wait.1 {
            return Ok(Applied::Duplicate);
        }
        let wait = wait.0;
        let attempt = i32::try_from(d.attempt).unwrap_or(i32::MAX);
        let Some(started) = waits::begin(&mut tx, d.execution_id, attempt).await? else {
            return Ok(Applied::Duplicate);
        };
        let due = match wait.due(started, &d.input) {
            Ok(due) => due,
            Err(why) => {
                tracing::warn!(error = %why, "the wait cannot start");
                let completion = Completion {
                    id: d.execution_id,
                    run,
                    attempt,
                    status: ExecutionStatus::Failed,
                    result: None,
                    error: Some(&why),
                    worker_id: None,
                    started_at: Some(started),
                    finished_at: None,
                    logs: None,
                };
                return self.complete(tx, &completion).await;
            }
        };
        let new = NewWait {
            execution: d.execution_id,
            attempt,
            run,
            mode: wait.mode(),
            signal: wait.signal_name(),
        };
        waits::insert(&mut tx, &new, due).await?;
        tracing::info!(due_at = ?due, mode = wait.mode().as_str(), "wait started");
        let Some(due) = due else {
            // Only a signal or an approval ends it.
            self.commit_messages(tx, Outgoing::default()).await?;
            return Ok(Applied::Changed);
        };
        if due <= started {
            // `until` in the past: it ends now, in this transaction.
            return match waits::resolve_due(&mut tx, d.execution_id, attempt).await? {
                Some(_) => {
                    self.end_wait(tx, d.execution_id, run, attempt, wait.elapsed(due))
                        .await
                }
                None => Ok(Applied::Duplicate),
            };
        }
        let outgoing = Outgoing {
            queued: vec![(
                Envelope::new(WaitDue {
                    execution_id: d.execution_id,
                    workflow_execution_id: run,
                    task_name: d.task_name.clone(),
                    attempt: d.attempt,
                }),
                Some(due),
            )],
            ..Outgoing::default()
        };
        self.commit_messages(tx, outgoing).await?;
        Ok(Applied::Changed)
    }

    /// Ends a wait whose due time came, unless something ended it first.
    #[tracing::instrument(
        skip_all,
        fields(workflow_execution_id = %m.workflow_execution_id, task = %m.task_name, execution_id = %m.execution_id),
        err
    )]
    pub(crate) async fn wait_due(&self, m: &WaitDue) -> Result<Applied, EngineError> {
        let mut tx = self.begin().await?;
        let run = m.workflow_execution_id;
        // The run's row before the wait's, as a delivery takes them.
        runs::status(&mut tx, run, RunLock::Dispatch).await?;
        let attempt = i32::try_from(m.attempt).unwrap_or(i32::MAX);
        let Some(due) = waits::resolve_due(&mut tx, m.execution_id, attempt).await? else {
            return Ok(Applied::Duplicate);
        };
        let (wait, _) = self.wait_of(&mut tx, run, &m.task_name).await?;
        if wait.mode() != due.mode {
            return Err(EngineError::Inconsistent(format!(
                "the wait of execution {} is stored as a {} wait, but task `{}` waits for a {}",
                m.execution_id,
                due.mode.as_str(),
                m.task_name,
                wait.mode().as_str()
            )));
        }
        tracing::info!(resolution = %due.resolution, "wait due");
        self.end_wait(tx, m.execution_id, run, attempt, wait.elapsed(due.due_at))
            .await
    }

    /// The task's `wait:` and whether it is an exit handler.
    async fn wait_of(
        &self,
        tx: &mut sqlx::PgConnection,
        run: weft_common::WorkflowExecutionId,
        task: &str,
    ) -> Result<(Wait, bool), EngineError> {
        let Some(row) = runs::get(&mut *tx, run).await? else {
            return Err(EngineError::Inconsistent(format!(
                "a wait names run {run}, which does not exist"
            )));
        };
        let workflow = self.inner.catalog.get(tx, row.definition_id).await?;
        let spec = workflow.task(task).ok_or_else(|| {
            EngineError::Inconsistent(format!(
                "a wait names task `{task}`, which the workflow of run {run} does not define"
            ))
        })?;
        let wait = spec.wait().cloned().ok_or_else(|| {
            EngineError::Inconsistent(format!(
                "a wait names task `{task}` of run {run}, which does not wait"
            ))
        })?;
        Ok((wait, spec.is_exit_handler()))
    }

    /// Records a wait's end as its execution's completion (guarded, like a
    /// worker's report; the retry policy applies) and commits.
    async fn end_wait(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Postgres>,
        execution: weft_common::ExecutionId,
        run: weft_common::WorkflowExecutionId,
        attempt: i32,
        ending: Ending,
    ) -> Result<Applied, EngineError> {
        let worker = waits::delivered_by(ending.resolution, None);
        let completion = Completion {
            id: execution,
            run,
            attempt,
            status: ending.status,
            result: ending.result.as_ref(),
            error: ending.error.as_deref(),
            worker_id: Some(&worker),
            started_at: None,
            finished_at: None,
            logs: None,
        };
        self.complete(tx, &completion).await
    }
}
