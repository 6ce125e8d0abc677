//! Cancelling a run: stop dispatching, stop what runs, end `canceled`.
//!
//! [`request`] moves the run to `canceling` and asks the workers to kill
//! its running actions. [`settle`] cancels every execution that has not
//! started (its dispatch, if already on a queue, finds its guard flipped
//! and is dropped by the worker) and ends the run `canceled` once none of
//! its executions runs; it runs in the request's transaction and after
//! every completion of a canceling run, under a lock on the run row so
//! exactly one transaction settles it.

use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::message::{CancelExecutions, WorkflowFinished};
use weft_common::{
    Envelope, ExecutionId, ExecutionStatus, TaskStatus, WorkflowExecutionId, WorkflowStatus,
};

use crate::error::{Context, StoreError};
use crate::{outbox, runs};

/// What a cancellation request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// The run is now `canceling` (or already `canceled`, when nothing ran).
    Accepted {
        /// Executions asked to stop on the workers.
        killing: usize,
        /// Whether the run ended `canceled` at once.
        settled: bool,
    },
    /// It was already canceling: nothing new to do.
    AlreadyCanceling,
    /// The run had already finished with this status: nothing to do.
    Finished(WorkflowStatus),
    /// No run has this id.
    NotFound,
}

/// Requests cancellation of a run; see the module docs. Enqueues the
/// `CancelExecutions` broadcast (and `WorkflowFinished` when settled) and
/// wakes relays on commit.
///
/// # Errors
/// A database error.
pub async fn request(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
) -> Result<Requested, StoreError> {
    let Some(run) = runs::get(&mut *conn, id).await? else {
        return Ok(Requested::NotFound);
    };
    if !runs::transition(&mut *conn, id, WorkflowStatus::Canceling, None, None).await? {
        let status = runs::status(&mut *conn, id, false).await?;
        return Ok(match status {
            WorkflowStatus::Canceling => Requested::AlreadyCanceling,
            other => Requested::Finished(other),
        });
    }
    // What has not started is canceled first, then what runs is looked up:
    // a worker's start report is not blocked by any lock held here, so an
    // execution may go `queued → running` at any moment. Looked up the
    // other way round, one that started between the two statements would
    // be in neither list — not queued any more when `settle` cancels what
    // has not started, not running yet when the running ones were listed —
    // and would run to its end with the run stuck `canceling` meanwhile.
    // In this order, the statement canceling the queued ones either flips
    // it (and `settle` asks to kill it) or waits for its start to commit
    // and leaves it `running`, for the look-up after it to find.
    let settled = settle(&mut *conn, id, &run.workflow_name).await?;
    let running: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM executions WHERE workflow_execution_id = $1 AND status = $2",
    )
    .bind(id.as_uuid())
    .bind(ExecutionStatus::Running.as_str())
    .fetch_all(&mut *conn)
    .await
    .context("finding running executions")?;
    if !running.is_empty() {
        let message = Envelope::new(CancelExecutions {
            workflow_execution_id: id,
            execution_ids: running.iter().copied().map(ExecutionId::from).collect(),
        });
        outbox::enqueue(&mut *conn, &[(message, None)], None).await?;
    }
    outbox::notify(&mut *conn).await?;
    Ok(Requested::Accepted {
        killing: running.len() + settled.stopped,
        settled: settled.canceled,
    })
}

/// What [`settle`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Executions it canceled before they started (their dispatches, if
    /// delivered, are dropped by the workers).
    pub stopped: usize,
    /// Whether the run ended `canceled`.
    pub canceled: bool,
}

/// Cancels the executions of a `canceling` run that have not started and
/// asks the workers to drop them; then, if none of its executions is
/// running, ends the run `canceled`: its unfinished tasks become
/// `canceled` and `WorkflowFinished` is enqueued. Runs in the transaction
/// of a cancellation request and after every completion of a canceling
/// run.
///
/// Locks the run row first, so two transactions racing here cannot both
/// settle it (or both miss it); then the run's unfinished tasks, so a
/// transaction that decided one of them to run before it saw the run
/// canceling commits first and its new executions are seen (and
/// canceled) here, instead of running after the run ended.
///
/// # Errors
/// A database error.
pub async fn settle(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
    workflow: &str,
) -> Result<Settled, StoreError> {
    if runs::status(&mut *conn, id, true).await? != WorkflowStatus::Canceling {
        return Ok(Settled::default());
    }
    let unfinished = TaskStatus::source_names(TaskStatus::Canceled);
    sqlx::query(
        "SELECT id FROM task_executions WHERE workflow_execution_id = $1 AND status = ANY($2) \
         ORDER BY id FOR UPDATE",
    )
    .bind(id.as_uuid())
    .bind(&unfinished)
    .execute(&mut *conn)
    .await
    .context("locking the unfinished tasks")?;
    let stopped: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE executions SET status = $2, finished_at = clock_timestamp(), \
             error = 'canceled before it started' \
         WHERE workflow_execution_id = $1 AND status = ANY($3) RETURNING id",
    )
    .bind(id.as_uuid())
    .bind(ExecutionStatus::Canceled.as_str())
    .bind([
        ExecutionStatus::Pending.as_str(),
        ExecutionStatus::Queued.as_str(),
    ])
    .fetch_all(&mut *conn)
    .await
    .context("canceling executions that have not started")?;
    if !stopped.is_empty() {
        let message = Envelope::new(CancelExecutions {
            workflow_execution_id: id,
            execution_ids: stopped.iter().copied().map(ExecutionId::from).collect(),
        });
        outbox::enqueue(&mut *conn, &[(message, None)], None).await?;
    }
    let settled = |canceled| Settled {
        stopped: stopped.len(),
        canceled,
    };
    let running: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM executions WHERE workflow_execution_id = $1 AND status = $2)",
    )
    .bind(id.as_uuid())
    .bind(ExecutionStatus::Running.as_str())
    .fetch_one(&mut *conn)
    .await
    .context("checking for running executions")?;
    if running {
        return Ok(settled(false));
    }
    sqlx::query(
        "UPDATE task_executions SET status = $2, finished_at = clock_timestamp(), \
             error = COALESCE(error, 'the run was canceled') \
         WHERE workflow_execution_id = $1 AND status = ANY($3)",
    )
    .bind(id.as_uuid())
    .bind(TaskStatus::Canceled.as_str())
    .bind(&unfinished)
    .execute(&mut *conn)
    .await
    .context("canceling unfinished tasks")?;
    let done = runs::transition(
        &mut *conn,
        id,
        WorkflowStatus::Canceled,
        None,
        Some("canceled by request"),
    )
    .await?;
    if done {
        let message = Envelope::new(WorkflowFinished {
            workflow_execution_id: id,
            workflow: workflow.to_owned(),
            status: WorkflowStatus::Canceled,
        });
        outbox::enqueue(&mut *conn, &[(message, None)], None).await?;
    }
    Ok(settled(done))
}
