//! `weft retry`: re-open a finished run as a new round.
//!
//! A round re-runs a set of tasks and **everything downstream of them**,
//! and keeps the rest with their outcomes and results:
//! - [`Scope::Unfinished`] (plain `weft retry` of a failed or canceled run):
//!   the tasks that did not succeed (failed, skipped, canceled). A fan-out
//!   among them that failed or was canceled keeps its items that succeeded
//!   (`keep_items`): the new round runs only the items that did not, and an
//!   item is kept only if its input renders the same again.
//! - [`Scope::Tasks`] (`weft retry --task NAME`, on any finished run): the
//!   named tasks, all of their items.
//!
//! A task downstream of one that runs again is decided again from scratch
//! (its trigger rule, its `when`, its inputs): a `one_failed` handler of a
//! task that now succeeds ends `skipped`. Every reset task goes back to
//! `waiting` with its counters cleared and its `attempt_base` moved past
//! its earlier executions, so the new round's attempt numbers never
//! collide with the old ones; earlier rounds' executions stay as history.
//! Fan-in counters are recomputed from the tasks that wait again, and a
//! `WorkflowSubmitted` message asks an executor to decide the tasks whose
//! needs are all terminal — the same message a new run gets.

use sqlx::PgConnection;
use weft_common::message::WorkflowSubmitted;
use weft_common::{Envelope, TaskStatus, WorkflowExecutionId, WorkflowStatus};

use crate::error::{Context, StoreError};
use crate::{outbox, runs};

/// Which tasks a round runs again (and everything downstream of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every task that did not succeed, of a failed or canceled run.
    Unfinished,
    /// These tasks, of any finished run.
    Tasks(&'a [String]),
}

/// What a retry request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reopened {
    /// The run is running again as round `round`; these tasks run again.
    Reopened {
        /// The tasks reset to `waiting`, by name.
        tasks: Vec<String>,
        /// The new round's number (`run_attempt`).
        round: i32,
    },
    /// The run is in this status, which this scope cannot re-open: not
    /// finished yet, or (without named tasks) it succeeded.
    NotRetryable(WorkflowStatus),
    /// Named tasks the run does not have, and the ones it has.
    UnknownTasks {
        /// The names given that are not tasks of the run.
        unknown: Vec<String>,
        /// The run's tasks.
        known: Vec<String>,
    },
    /// The run's workflow has a `limit:` whose key has no free slot (or
    /// has runs waiting): a re-opened run would run over the limit or
    /// jump the line. The sentence says which.
    LimitFull(String),
    /// No run has this id.
    NotFound,
}

/// A run re-opened by a retry, as `POST /api/v1/runs/{run}/retry`
/// answers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Retried {
    /// The run.
    pub id: WorkflowExecutionId,
    /// The new round's number.
    pub round: i32,
    /// The tasks that run again, by name.
    pub tasks: Vec<String>,
    /// The sentence `weft retry` prints.
    pub message: String,
}

impl Reopened {
    /// The retry of run `id`: `Ok` with what runs again, or `Err` with why
    /// nothing did (as `weft retry` says it; `None` for no such run).
    ///
    /// # Errors
    /// The sentence saying why the run was not re-opened.
    pub fn outcome(self, id: WorkflowExecutionId) -> Result<Retried, Option<String>> {
        match self {
            Self::Reopened { tasks, round } => Ok(Retried {
                id,
                round,
                message: format!(
                    "{id} re-opened as round {round}; running again: {}",
                    tasks.join(", ")
                ),
                tasks,
            }),
            Self::NotRetryable(status) if status.is_terminal() => Err(Some(format!(
                "{id} {status}: nothing failed to run again; `weft retry {id} --task NAME` re-runs a task and everything downstream of it"
            ))),
            Self::NotRetryable(status) => Err(Some(format!(
                "{id} is {status}; only a finished run can be retried (`weft cancel {id}` stops it)"
            ))),
            Self::UnknownTasks { unknown, known } => Err(Some(format!(
                "run {id} has no task {}; its tasks are: {}",
                unknown
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                known.join(", ")
            ))),
            Self::LimitFull(why) => Err(Some(format!("{id} was not re-opened: {why}"))),
            Self::NotFound => Err(None),
        }
    }
}

/// [`reopen`] in a transaction of its own, run again on a transient error
/// (what `weft retry` and the API do).
///
/// # Errors
/// A database error.
pub async fn reopen_committed(
    pool: &sqlx::PgPool,
    id: WorkflowExecutionId,
    scope: Scope<'_>,
) -> Result<Reopened, StoreError> {
    crate::transact::retrying(|| reopen_once(pool, id, scope)).await
}

async fn reopen_once(
    pool: &sqlx::PgPool,
    id: WorkflowExecutionId,
    scope: Scope<'_>,
) -> Result<Reopened, StoreError> {
    let mut tx = pool.begin().await.context("beginning a transaction")?;
    let reopened = reopen(&mut tx, id, scope).await?;
    tx.commit().await.context("committing a transaction")?;
    Ok(reopened)
}

/// The run statuses a scope re-opens.
fn reopens(scope: Scope<'_>, status: WorkflowStatus) -> bool {
    match scope {
        Scope::Unfinished => matches!(status, WorkflowStatus::Failed | WorkflowStatus::Canceled),
        Scope::Tasks(_) => status.is_terminal(),
    }
}

/// Re-opens a finished run; see the module docs. Locks the run row first,
/// so two retries of the same run serialise: the second finds it running.
///
/// # Errors
/// A database error.
pub async fn reopen(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
    scope: Scope<'_>,
) -> Result<Reopened, StoreError> {
    let Some(status) = runs::lock_status(&mut *conn, id).await? else {
        return Ok(Reopened::NotFound);
    };
    if !reopens(scope, status) {
        return Ok(Reopened::NotRetryable(status));
    }
    let known: Vec<String> = sqlx::query_scalar(
        "SELECT task_name FROM task_executions WHERE workflow_execution_id = $1 ORDER BY task_name",
    )
    .bind(id.as_uuid())
    .fetch_all(&mut *conn)
    .await
    .context("reading the run's tasks")?;
    let unfinished = [
        TaskStatus::Failed,
        TaskStatus::Skipped,
        TaskStatus::Canceled,
    ];
    let roots: Vec<String> = match scope {
        Scope::Tasks(names) => {
            let unknown: Vec<String> = names
                .iter()
                .filter(|n| !known.contains(n))
                .cloned()
                .collect();
            if !unknown.is_empty() {
                return Ok(Reopened::UnknownTasks { unknown, known });
            }
            names.to_vec()
        }
        Scope::Unfinished => sqlx::query_scalar(
            "SELECT task_name FROM task_executions \
             WHERE workflow_execution_id = $1 AND status = ANY($2)",
        )
        .bind(id.as_uuid())
        .bind(unfinished.map(TaskStatus::as_str))
        .fetch_all(&mut *conn)
        .await
        .context("finding the tasks that did not succeed")?,
    };
    if roots.is_empty() {
        // A failed or canceled run has a task that did not succeed; this
        // one has none (it failed to start): nothing to run again.
        return Ok(Reopened::NotRetryable(status));
    }
    // A run of a limited workflow runs again only with a slot of its key
    // (it released its own when it ended).
    if let Some(run) = runs::get(&mut *conn, id).await?
        && let Some(key) = &run.limit_key
        && let Err(why) =
            crate::shared_limits::take_if_free(&mut *conn, id, &run.workflow_name, key).await?
    {
        return Ok(Reopened::LimitFull(why));
    }
    // Every exit handler runs again in a new round, after its main tasks
    // (ADR 0011).
    let exit_handlers: Vec<String> = sqlx::query_scalar(
        "SELECT task_name FROM task_executions WHERE workflow_execution_id = $1 AND exit_handler",
    )
    .bind(id.as_uuid())
    .fetch_all(&mut *conn)
    .await
    .context("reading the run's exit handlers")?;
    let mut roots = roots;
    for name in exit_handlers {
        if !roots.contains(&name) {
            roots.push(name);
        }
    }
    // The roots and every task downstream of them (through the stored
    // successors), each reset once. A fan-out that failed or was canceled
    // keeps its succeeded items in an unfinished-scope round.
    let keeps = matches!(scope, Scope::Unfinished);
    let tasks: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE reset(name) AS ( \
             SELECT unnest($2::text[]) \
             UNION \
             SELECT s.name FROM reset \
             JOIN task_executions t ON t.workflow_execution_id = $1 AND t.task_name = reset.name \
             CROSS JOIN LATERAL unnest(t.successors) AS s(name) \
         ) \
         UPDATE task_executions t \
         SET status = $3, \
             attempt_base = GREATEST(t.attempt_base, \
                 coalesce((SELECT max(attempt) FROM executions WHERE task_execution_id = t.id), 0)), \
             keep_items = $4 AND t.with_items AND t.status = ANY($5), \
             items_total = NULL, items_dispatched = 0, items_succeeded = 0, items_failed = 0, \
             items_kept = 0, result = NULL, error = NULL, decided_at = NULL, finished_at = NULL \
         FROM reset WHERE t.workflow_execution_id = $1 AND t.task_name = reset.name \
         RETURNING t.task_name",
    )
    .bind(id.as_uuid())
    .bind(&roots)
    .bind(TaskStatus::Waiting.as_str())
    .bind(keeps)
    .bind([TaskStatus::Failed.as_str(), TaskStatus::Canceled.as_str()])
    .fetch_all(&mut *conn)
    .await
    .context("resetting the tasks to run again")?;
    sqlx::query(
        "UPDATE task_executions t \
         SET needs_remaining = (SELECT count(*) FROM task_executions n \
                                WHERE n.workflow_execution_id = t.workflow_execution_id \
                                  AND n.task_name = ANY(t.needs) AND n.status = $2) \
         WHERE t.workflow_execution_id = $1 AND t.status = $2",
    )
    .bind(id.as_uuid())
    .bind(TaskStatus::Waiting.as_str())
    .execute(&mut *conn)
    .await
    .context("recounting fan-in")?;
    crate::exit::recount_round(&mut *conn, id).await?;
    let round: i32 = sqlx::query_scalar(
        "UPDATE workflow_executions \
         SET status = $2, run_attempt = run_attempt + 1, tasks_remaining = $3, output = NULL, \
             error = NULL, finished_at = NULL \
         WHERE id = $1 RETURNING run_attempt",
    )
    .bind(id.as_uuid())
    .bind(WorkflowStatus::Running.as_str())
    .bind(i32::try_from(tasks.len()).unwrap_or(i32::MAX))
    .fetch_one(&mut *conn)
    .await
    .context("re-opening the run")?;
    let message = Envelope::new(WorkflowSubmitted {
        workflow_execution_id: id,
    });
    outbox::enqueue(&mut *conn, &[(message, None)], None).await?;
    outbox::notify(&mut *conn).await?;
    let mut tasks = tasks;
    tasks.sort();
    tracing::info!(workflow_execution_id = %id, round, tasks = tasks.len(), "run re-opened");
    Ok(Reopened::Reopened { tasks, round })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_retry_reopens_failed_and_canceled_runs_only() {
        for status in WorkflowStatus::ALL {
            let expected = matches!(status, WorkflowStatus::Failed | WorkflowStatus::Canceled);
            assert_eq!(reopens(Scope::Unfinished, *status), expected, "{status}");
        }
    }

    #[test]
    fn named_tasks_reopen_any_finished_run() {
        for status in WorkflowStatus::ALL {
            assert_eq!(
                reopens(Scope::Tasks(&[]), *status),
                status.is_terminal(),
                "{status}"
            );
        }
    }
}
