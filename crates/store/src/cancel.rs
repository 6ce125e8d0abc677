//! Cancelling a run: stop dispatching, stop what runs, end `canceled`.
//!
//! [`request`] moves the run to `canceling`, cancels every execution that
//! has not started (its dispatch, if already on a queue, will find its guard
//! flipped) and returns the executions to kill on the workers. [`settle`]
//! ends the run `canceled` once none of its executions is live; it runs in
//! the request's transaction and after every completion of a canceling run,
//! under a lock on the run row so exactly one transaction settles it.

use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::message::{CancelExecutions, WorkflowFinished};
use weft_common::{Envelope, ExecutionId, WorkflowExecutionId, WorkflowStatus};

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
    let not_started: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE executions SET status = 'canceled', finished_at = clock_timestamp(), error = 'canceled before it started' \
         WHERE workflow_execution_id = $1 AND status IN ('pending', 'queued') RETURNING id",
    )
    .bind(id.as_uuid())
    .fetch_all(&mut *conn)
    .await
    .context("canceling executions that have not started")?;
    let running: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM executions WHERE workflow_execution_id = $1 AND status = 'running'",
    )
    .bind(id.as_uuid())
    .fetch_all(&mut *conn)
    .await
    .context("finding running executions")?;
    let killing: Vec<ExecutionId> = running
        .iter()
        .chain(&not_started)
        .copied()
        .map(ExecutionId::from)
        .collect();
    let count = killing.len();
    if !killing.is_empty() {
        let message = Envelope::new(CancelExecutions {
            workflow_execution_id: id,
            execution_ids: killing,
        });
        outbox::enqueue(&mut *conn, &[(message, None)], None).await?;
    }
    let settled = settle(&mut *conn, id, &run.workflow_name).await?;
    outbox::notify(&mut *conn).await?;
    Ok(Requested::Accepted {
        killing: count,
        settled,
    })
}

/// Ends a `canceling` run `canceled` if none of its executions is queued or
/// running: its unfinished tasks become `canceled` and `WorkflowFinished` is
/// enqueued. Returns whether it did. Locks the run row first, so two
/// completions racing here cannot both settle it (or both miss it).
///
/// # Errors
/// A database error.
pub async fn settle(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
    workflow: &str,
) -> Result<bool, StoreError> {
    if runs::status(&mut *conn, id, true).await? != WorkflowStatus::Canceling {
        return Ok(false);
    }
    let live: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM executions WHERE workflow_execution_id = $1 AND status IN ('queued', 'running'))",
    )
    .bind(id.as_uuid())
    .fetch_one(&mut *conn)
    .await
    .context("checking for live executions")?;
    if live {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE task_executions SET status = 'canceled', finished_at = clock_timestamp(), \
             error = COALESCE(error, 'the run was canceled') \
         WHERE workflow_execution_id = $1 AND status IN ('waiting', 'running')",
    )
    .bind(id.as_uuid())
    .execute(&mut *conn)
    .await
    .context("canceling unfinished tasks")?;
    sqlx::query(
        "UPDATE executions SET status = 'canceled', finished_at = clock_timestamp() \
         WHERE workflow_execution_id = $1 AND status = 'pending'",
    )
    .bind(id.as_uuid())
    .execute(&mut *conn)
    .await
    .context("canceling pending executions")?;
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
    Ok(done)
}
