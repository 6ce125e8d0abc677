//! `weft retry`: re-open a failed run as a new round.
//!
//! Succeeded tasks keep their results; every failed, skipped or canceled
//! task goes back to `waiting` with its counters cleared and its
//! `attempt_base` moved past its earlier executions, so the new round's
//! attempt numbers never collide with the old ones (the unique
//! (task, item, attempt) index still guards them). Fan-in counters are
//! recomputed from the tasks that are waiting again, and a
//! `WorkflowSubmitted` message asks an executor to decide the tasks whose
//! needs are all terminal — the same message a new run gets.

use sqlx::PgConnection;
use weft_common::message::WorkflowSubmitted;
use weft_common::{Envelope, WorkflowExecutionId, WorkflowStatus};

use crate::error::{Context, StoreError};
use crate::{outbox, runs};

/// What a retry request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reopened {
    /// The run is running again; this many tasks will run again.
    Reopened {
        /// The tasks reset to `waiting`.
        tasks: Vec<String>,
        /// The new round's number (`run_attempt`).
        round: i32,
    },
    /// Only failed runs can be retried; the run is in this status.
    NotFailed(WorkflowStatus),
    /// No run has this id.
    NotFound,
}

/// Re-opens a failed run; see the module docs.
///
/// # Errors
/// A database error.
pub async fn reopen(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
) -> Result<Reopened, StoreError> {
    let Some(run) = runs::get(&mut *conn, id).await? else {
        return Ok(Reopened::NotFound);
    };
    let round: Option<i32> = sqlx::query_scalar(
        "UPDATE workflow_executions \
         SET status = 'running', run_attempt = run_attempt + 1, output = NULL, error = NULL, finished_at = NULL \
         WHERE id = $1 AND status = 'failed' RETURNING run_attempt",
    )
    .bind(id.as_uuid())
    .fetch_optional(&mut *conn)
    .await
    .context("re-opening the run")?;
    let Some(round) = round else {
        let status = runs::status(&mut *conn, id, false).await?;
        return Ok(Reopened::NotFailed(status));
    };
    let tasks: Vec<String> = sqlx::query_scalar(
        "UPDATE task_executions t \
         SET status = 'waiting', \
             attempt_base = GREATEST(t.attempt_base, \
                 coalesce((SELECT max(attempt) FROM executions WHERE task_execution_id = t.id), 0)), \
             items_total = NULL, items_dispatched = 0, items_succeeded = 0, items_failed = 0, \
             result = NULL, error = NULL, decided_at = NULL, finished_at = NULL \
         WHERE t.workflow_execution_id = $1 AND t.status IN ('failed', 'skipped', 'canceled') \
         RETURNING t.task_name",
    )
    .bind(id.as_uuid())
    .fetch_all(&mut *conn)
    .await
    .context("resetting the tasks to run again")?;
    sqlx::query(
        "UPDATE task_executions t \
         SET needs_remaining = (SELECT count(*) FROM task_executions n \
                                WHERE n.workflow_execution_id = t.workflow_execution_id \
                                  AND n.task_name = ANY(t.needs) AND n.status = 'waiting') \
         WHERE t.workflow_execution_id = $1 AND t.status = 'waiting'",
    )
    .bind(id.as_uuid())
    .execute(&mut *conn)
    .await
    .context("recounting fan-in")?;
    sqlx::query("UPDATE workflow_executions SET tasks_remaining = $2 WHERE id = $1")
        .bind(id.as_uuid())
        .bind(i32::try_from(tasks.len()).unwrap_or(i32::MAX))
        .execute(&mut *conn)
        .await
        .context("recounting the tasks remaining")?;
    let message = Envelope::new(WorkflowSubmitted {
        workflow_execution_id: id,
    });
    outbox::enqueue(&mut *conn, &[(message, None)], None).await?;
    outbox::notify(&mut *conn).await?;
    tracing::info!(workflow_execution_id = %id, workflow = %run.workflow_name, round, tasks = tasks.len(), "run re-opened");
    Ok(Reopened::Reopened { tasks, round })
}
