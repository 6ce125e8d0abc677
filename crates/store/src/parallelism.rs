//! Run-wide parallelism (`parallelism: N`): at most N of a run's
//! executions in flight (`queued` or `running`) at once.
//!
//! Executions of a limited run are created `pending` and are dispatched
//! only by the executor's slot filler, which every transaction that may
//! free or take a slot of the run runs before it commits: it locks the
//! run row ([`free_slots`], `FOR NO KEY UPDATE`), counts the run's
//! executions in flight, and dispatches up to the difference from the
//! tasks that wait ([`waiting`]). Transactions of one run serialise on
//! its row, so the count one of them reads is never stale by more than
//! what it changed itself: exact under any number of executors.
//!
//! Which executions count is one SQL predicate, [`COUNTED`], used by the
//! count, the filler and `weft audit` alike (and one Rust predicate,
//! `Task::counts_toward_parallelism`, for the tasks whose executions are
//! held).

use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::{ExecutionStatus, TaskExecutionId, TaskStatus, WorkflowExecutionId};

use crate::error::{Context, StoreError};
use crate::executions::{EXECUTION_COLUMNS, ExecutionRow};
use crate::tasks::{TASK_COLUMNS, TaskRow};

/// The tasks (alias `t`, a `task_executions` row) whose executions take
/// the run's slots: the main tasks', not the exit handlers' (`on_exit`),
/// which run whatever holds the slots (the text is the `counted_tasks!`
/// macro in `lib.rs`, which `audit` splices into its queries too).
pub const COUNTED: &str = counted_tasks!();

/// Records the `parallelism` of runs that start (a run without one keeps
/// `NULL`).
///
/// # Errors
/// A database error.
pub async fn record(
    conn: &mut PgConnection,
    runs: &[(WorkflowExecutionId, i32)],
) -> Result<(), StoreError> {
    if runs.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = runs.iter().map(|(id, _)| id.as_uuid()).collect();
    let limits: Vec<i32> = runs.iter().map(|(_, n)| *n).collect();
    sqlx::query(
        "UPDATE workflow_executions w SET parallelism = r.n \
         FROM UNNEST($1::uuid[], $2::int[]) AS r(id, n) \
         WHERE w.id = r.id AND w.parallelism IS DISTINCT FROM r.n",
    )
    .bind(&ids)
    .bind(&limits)
    .execute(conn)
    .await
    .context("recording runs' parallelism")?;
    Ok(())
}

/// Locks the rows of those of `runs` that have a `parallelism`, in id
/// order, `FOR NO KEY UPDATE` until the transaction ends. A transaction
/// that will fill a run's slots takes this first, before the rows of its
/// tasks and executions: two transactions of a limited run then never
/// hold each other's rows in opposite orders. Returns the runs locked.
///
/// # Errors
/// A database error.
pub async fn lock(
    conn: &mut PgConnection,
    runs: &[WorkflowExecutionId],
) -> Result<Vec<WorkflowExecutionId>, StoreError> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = runs.iter().map(|id| id.as_uuid()).collect();
    let locked: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM workflow_executions \
         WHERE id = ANY($1) AND parallelism IS NOT NULL \
         ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await
    .context("locking limited runs")?;
    Ok(locked.into_iter().map(WorkflowExecutionId::from).collect())
}

/// How many more executions the run may have in flight: `limit` minus
/// those in flight now (zero or less: none). Locks the run row `FOR NO
/// KEY UPDATE` first (a no-op when [`lock`] took it), then counts in a
/// statement of its own, so the count sees every transaction that held
/// the lock before.
///
/// # Errors
/// A database error.
pub async fn free_slots(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
    limit: i32,
) -> Result<i32, StoreError> {
    sqlx::query("SELECT 1 FROM workflow_executions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(run.as_uuid())
        .execute(&mut *conn)
        .await
        .context("locking a limited run")?;
    let in_flight = in_flight(conn, run).await?;
    Ok(limit.saturating_sub(i32::try_from(in_flight).unwrap_or(i32::MAX)))
}

/// A run's executions in flight (`queued` — due or waiting for their
/// retry backoff — or `running`) that take its slots.
///
/// # Errors
/// A database error.
pub async fn in_flight(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM executions e JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE e.workflow_execution_id = $1 AND e.status = ANY($2) AND {COUNTED}"
    )))
    .bind(run.as_uuid())
    .bind(live_statuses())
    .fetch_one(conn)
    .await
    .context("counting a run's executions in flight")
}

/// The statuses that hold a slot.
pub(crate) fn live_statuses() -> [&'static str; 2] {
    [
        ExecutionStatus::Queued.as_str(),
        ExecutionStatus::Running.as_str(),
    ]
}

/// The run's running tasks that have items left to dispatch and may
/// still dispatch them (no item failed), whose executions take slots.
/// Unordered: the caller hands slots out in the workflow's task order.
///
/// # Errors
/// A database error.
pub async fn waiting(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<Vec<TaskRow>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM task_executions t \
         WHERE t.workflow_execution_id = $1 AND t.status = $2 AND t.items_failed = 0 \
           AND t.items_dispatched < t.items_total AND {COUNTED}",
        columns = crate::prefixed("t", TASK_COLUMNS),
    )))
    .bind(run.as_uuid())
    .bind(TaskStatus::Running.as_str())
    .fetch_all(conn)
    .await
    .context("finding tasks waiting for run-wide slots")
}

/// Guarded `pending → queued` of a plain task's execution of this
/// attempt (its task claimed it, see
/// [`claim_next_items`](crate::tasks::claim_next_items)). `None`: it was
/// not pending.
///
/// # Errors
/// A database error.
pub async fn queue_plain(
    conn: &mut PgConnection,
    task: TaskExecutionId,
    attempt: i32,
) -> Result<Option<ExecutionRow>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE executions SET status = $3, queued_at = clock_timestamp() \
         WHERE task_execution_id = $1 AND item_index IS NULL AND attempt = $2 \
           AND status = ANY($4) \
         RETURNING {EXECUTION_COLUMNS}"
    )))
    .bind(task.as_uuid())
    .bind(attempt)
    .bind(ExecutionStatus::Queued.as_str())
    .bind(ExecutionStatus::source_names(ExecutionStatus::Queued))
    .fetch_optional(conn)
    .await
    .context("queueing a task held for a run-wide slot")
}
