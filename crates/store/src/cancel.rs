//! Cancelling a run: stop dispatching, stop what runs, end `canceled`.
//!
//! [`request`] moves the run to `canceling` and asks the workers to kill
//! its running actions. [`settle`] cancels every execution that has not
//! started (its dispatch, if already on a queue, finds its guard flipped
//! and is dropped by the worker) and ends the run `canceled` once none of
//! its executions runs; it runs in the request's transaction and after
//! every completion of a canceling run, under a lock on the run row so
//! exactly one transaction settles it. A run's live child runs
//! (sub-workflows) are canceled with it, recursively; its open waits
//! (`wait:` tasks, which no worker runs) end at once
//! ([`crate::waits::cancel_open`]). A run with exit
//! handlers (`on_exit:`) keeps them: once no main execution runs, its main
//! tasks end `canceled`, its exit handlers run to the end (with their own
//! timeouts; a second request changes nothing), and the run ends
//! `canceled` after them ([`crate::exit`]).

use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::message::{CancelExecutions, WorkflowSubmitted};
use weft_common::{
    Envelope, ExecutionId, ExecutionStatus, TaskStatus, WorkflowExecutionId, WorkflowStatus,
};

use crate::error::{Context, StoreError};
use crate::outbox;
use crate::runs::{self, RunLock};

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

/// What a cancellation request did, as `weft cancel` says it and
/// `POST /api/v1/runs/{run}/cancel` answers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Canceled {
    /// The run.
    pub id: WorkflowExecutionId,
    /// `canceled` (ended at once), `canceling` (its running actions are
    /// being stopped), `already_canceling` or `already_finished`.
    pub outcome: String,
    /// The sentence `weft cancel` prints.
    pub message: String,
}

impl Requested {
    /// What the request did to run `id`, in words; `None` for
    /// [`Requested::NotFound`].
    #[must_use]
    pub fn outcome(&self, id: WorkflowExecutionId) -> Option<Canceled> {
        let (outcome, message) = match self {
            Self::Accepted { settled: true, .. } => ("canceled", format!("{id} canceled")),
            Self::Accepted {
                killing,
                settled: false,
            } => (
                "canceling",
                format!(
                    "{id} canceling: stopping {killing} execution(s); `weft watch {id}` follows it to the end"
                ),
            ),
            Self::AlreadyCanceling => ("already_canceling", format!("{id} is already canceling")),
            Self::Finished(status) => (
                "already_finished",
                format!("{id} already finished ({status}); nothing to cancel"),
            ),
            Self::NotFound => return None,
        };
        Some(Canceled {
            id,
            outcome: outcome.to_owned(),
            message,
        })
    }
}

/// [`request`] in a transaction of its own, run again on a transient
/// error (what `weft cancel` and the API do).
///
/// # Errors
/// A database error.
pub async fn request_committed(
    pool: &sqlx::PgPool,
    id: WorkflowExecutionId,
) -> Result<Requested, StoreError> {
    crate::transact::retrying(|| request_once(pool, id)).await
}

async fn request_once(
    pool: &sqlx::PgPool,
    id: WorkflowExecutionId,
) -> Result<Requested, StoreError> {
    let mut tx = pool.begin().await.context("beginning a transaction")?;
    let requested = request(&mut tx, id).await?;
    tx.commit().await.context("committing a transaction")?;
    Ok(requested)
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
    // `FOR UPDATE` first: every transaction that read the run as running
    // (and may be dispatching its work) commits before this goes on, and
    // none reads it again before this commits (see `runs::RunLock`).
    let Some(status) = runs::lock_status(&mut *conn, id).await? else {
        return Ok(Requested::NotFound);
    };
    match status {
        WorkflowStatus::Canceling => return Ok(Requested::AlreadyCanceling),
        status if !status.dispatches() => return Ok(Requested::Finished(status)),
        _ => {}
    }
    let Some(run) = runs::get(&mut *conn, id).await? else {
        return Ok(Requested::NotFound);
    };
    if !runs::transition(&mut *conn, id, WorkflowStatus::Canceling, None, None).await? {
        let status = runs::status(&mut *conn, id, RunLock::None).await?;
        return Ok(match status {
            WorkflowStatus::Canceling => Requested::AlreadyCanceling,
            other => Requested::Finished(other),
        });
    }
    let settled = settle(&mut *conn, id, &run.workflow_name).await?;
    // Kill what runs: read after the unstarted executions were canceled,
    // under the run's lock, so an execution whose start report committed
    // meanwhile is among them.
    if !settled.running.is_empty() {
        let message = Envelope::new(CancelExecutions {
            workflow_execution_id: id,
            execution_ids: settled.running.clone(),
        });
        outbox::enqueue(&mut *conn, &[(message, None)], None).await?;
    }
    // Its live child runs (sub-workflows) are canceled too, and theirs in
    // turn; each child's end completes its parent execution `canceled`,
    // and the last one lets this run settle. Parent before child, always:
    // no transaction locks a child run and then its parent.
    for child in crate::children::live_children(&mut *conn, id).await? {
        Box::pin(request(&mut *conn, child)).await?;
    }
    outbox::notify(&mut *conn).await?;
    Ok(Requested::Accepted {
        killing: settled.running.len() + settled.stopped,
        settled: settled.canceled,
    })
}

/// What [`settle`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    /// Executions it canceled before they started (their dispatches, if
    /// delivered, are dropped by the workers).
    pub stopped: usize,
    /// Executions still running, which keep the run `canceling`.
    pub running: Vec<ExecutionId>,
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
/// Locks the run row first (`FOR NO KEY UPDATE`: one settler at a time),
/// so two transactions racing here cannot both settle it (or both miss
/// it); then the run's unfinished tasks.
///
/// # Errors
/// A database error.
pub async fn settle(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
    workflow: &str,
) -> Result<Settled, StoreError> {
    if runs::status(&mut *conn, id, RunLock::Count).await? != WorkflowStatus::Canceling {
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
         WHERE workflow_execution_id = $1 AND status = ANY($3) \
           AND task_execution_id NOT IN (SELECT id FROM task_executions \
                                         WHERE workflow_execution_id = $1 AND exit_handler) \
         RETURNING id",
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
    // Waits (`wait:` tasks) have no worker to stop: they end here.
    crate::waits::cancel_open(&mut *conn, id).await?;
    let running: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM executions WHERE workflow_execution_id = $1 AND status = $2 \
           AND task_execution_id NOT IN (SELECT id FROM task_executions \
                                         WHERE workflow_execution_id = $1 AND exit_handler)",
    )
    .bind(id.as_uuid())
    .bind(ExecutionStatus::Running.as_str())
    .fetch_all(&mut *conn)
    .await
    .context("finding running executions")?;
    if !running.is_empty() {
        return Ok(Settled {
            stopped: stopped.len(),
            running: running.into_iter().map(ExecutionId::from).collect(),
            canceled: false,
        });
    }
    // With exit handlers, the main tasks end here and the handlers run
    // (an executor decides them); the run ends once they are terminal,
    // `canceled`, by the step that finishes their last (ADR 0011).
    if crate::exit::has_exit_handlers(&mut *conn, id).await? {
        if crate::exit::end_main_phase(&mut *conn, id).await? {
            let message = Envelope::new(WorkflowSubmitted {
                workflow_execution_id: id,
            });
            outbox::enqueue(&mut *conn, &[(message, None)], None).await?;
            outbox::notify(&mut *conn).await?;
        }
        return Ok(Settled {
            stopped: stopped.len(),
            running: Vec::new(),
            canceled: false,
        });
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE task_executions t SET status = $2, finished_at = clock_timestamp(), \
             error = COALESCE(error, 'the run was canceled'), \
             result = CASE WHEN t.with_items AND t.items_total IS NOT NULL THEN {items} \
                           ELSE t.result END \
         WHERE workflow_execution_id = $1 AND status = ANY($3)",
        items = crate::tasks::items_result("t")
    )))
    .bind(id.as_uuid())
    .bind(TaskStatus::Canceled.as_str())
    .bind(&unfinished)
    .execute(&mut *conn)
    .await
    .context("canceling unfinished tasks")?;
    // A canceled run reports what it did too: its output, rendered from
    // the tasks as they ended.
    let (output, notes) = crate::output::render_now(&mut *conn, id).await?;
    let error = match notes {
        Some(notes) => format!("canceled by request; {notes}"),
        None => "canceled by request".to_owned(),
    };
    let ended = runs::end_many(
        &mut *conn,
        &[runs::Ending {
            id,
            workflow,
            to: WorkflowStatus::Canceled,
            output: output.as_ref(),
            error: Some(&error),
        }],
        None,
    )
    .await?;
    let done = !ended.is_empty();
    Ok(Settled {
        stopped: stopped.len(),
        running: Vec::new(),
        canceled: done,
    })
}
