//! Exit handlers (`on_exit:`) in the store: the run's `main_remaining`
//! counter and the phase switch outside the completion path.
//!
//! Exit handlers are task rows with `exit_handler = true`. One that needs
//! no other exit handler is created with one extra `needs_remaining`, the
//! main tasks; the statement that brings the run's `main_remaining` to zero
//! counts it down ([`crate::tasks`]'s cascade), and so does
//! [`end_main_phase`] when a cancellation ends the main tasks. Either holds
//! the run's row, so exactly one transaction releases them (ADR 0011).

use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::{TaskStatus, WorkflowExecutionId};

use crate::error::{Context, StoreError};

/// Sets `main_remaining` of runs just started that have exit handlers:
/// (run, number of main tasks). Guarded: only a run whose counter is not
/// set yet.
///
/// # Errors
/// A database error.
pub async fn count_main(
    conn: &mut PgConnection,
    runs: &[(WorkflowExecutionId, i32)],
) -> Result<(), StoreError> {
    if runs.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = runs.iter().map(|(id, _)| id.as_uuid()).collect();
    let counts: Vec<i32> = runs.iter().map(|(_, n)| *n).collect();
    sqlx::query(
        "UPDATE workflow_executions w SET main_remaining = c.n \
         FROM UNNEST($1::uuid[], $2::int[]) AS c(id, n) \
         WHERE w.id = c.id AND w.main_remaining IS NULL",
    )
    .bind(&ids)
    .bind(&counts)
    .execute(conn)
    .await
    .context("counting the runs' main tasks")?;
    Ok(())
}

/// Whether the run has exit handlers.
///
/// # Errors
/// A database error.
pub async fn has_exit_handlers(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
) -> Result<bool, StoreError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM task_executions \
                        WHERE workflow_execution_id = $1 AND exit_handler)",
    )
    .bind(id.as_uuid())
    .fetch_one(conn)
    .await
    .context("looking for exit handlers")
}

/// Ends the main tasks of a canceling run with exit handlers once none of
/// its main executions runs: its unfinished main tasks become `canceled`,
/// the run's counters go down by as many, `main_remaining` to zero, and the
/// exit handlers that need no other are released (left to decide: the
/// caller asks an executor to, with a `workflow.submitted`). The caller
/// holds the run's row. Returns whether this call ended the main phase
/// (false when it had ended already).
///
/// # Errors
/// A database error.
pub async fn end_main_phase(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
) -> Result<bool, StoreError> {
    let unfinished = TaskStatus::source_names(TaskStatus::Canceled);
    // A canceled fan-out keeps its partial result, as without handlers.
    let ended: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "WITH c AS ( \
             UPDATE task_executions t SET status = $2, finished_at = clock_timestamp(), \
                 error = COALESCE(error, 'the run was canceled'), \
                 result = CASE WHEN t.with_items AND t.items_total IS NOT NULL THEN {items} \
                               ELSE t.result END \
             WHERE workflow_execution_id = $1 AND NOT exit_handler AND status = ANY($3) \
             RETURNING id \
         ) \
         UPDATE workflow_executions w \
         SET tasks_remaining = w.tasks_remaining - (SELECT count(*) FROM c)::int, main_remaining = 0 \
         WHERE w.id = $1 AND w.main_remaining > 0 \
         RETURNING w.tasks_remaining",
        items = crate::tasks::items_result("t")
    )))
    .bind(id.as_uuid())
    .bind(TaskStatus::Canceled.as_str())
    .bind(&unfinished)
    .fetch_optional(&mut *conn)
    .await
    .context("ending the main tasks of a canceled run")?;
    if ended.is_none() {
        return Ok(false);
    }
    // The canceled main tasks' locks across runs go to the next in line.
    crate::shared_limits::release_run_tasks(&mut *conn, id).await?;
    sqlx::query(
        "UPDATE task_executions SET needs_remaining = needs_remaining - 1 \
         WHERE workflow_execution_id = $1 AND exit_handler AND cardinality(needs) = 0 \
           AND status = $2 AND needs_remaining > 0",
    )
    .bind(id.as_uuid())
    .bind(TaskStatus::Waiting.as_str())
    .execute(&mut *conn)
    .await
    .context("releasing the exit handlers")?;
    tracing::info!(workflow_execution_id = %id, "main tasks canceled; exit handlers released");
    Ok(true)
}

/// In a round of `weft retry` (after its tasks were reset and fan-in was
/// recounted): recounts `main_remaining` from the main tasks waiting
/// again, and gives the exit handlers that need no other their extra need
/// back while main tasks are left to run (with none, they are decided at
/// once).
///
/// # Errors
/// A database error.
pub async fn recount_round(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
) -> Result<(), StoreError> {
    sqlx::query(
        "WITH w AS ( \
             UPDATE workflow_executions SET main_remaining = ( \
                 SELECT count(*) FROM task_executions \
                 WHERE workflow_execution_id = $1 AND NOT exit_handler AND status = $2)::int \
             WHERE id = $1 AND main_remaining IS NOT NULL \
             RETURNING main_remaining \
         ) \
         UPDATE task_executions SET needs_remaining = needs_remaining + 1 \
         WHERE workflow_execution_id = $1 AND exit_handler AND cardinality(needs) = 0 \
           AND status = $2 AND (SELECT main_remaining FROM w) > 0",
    )
    .bind(id.as_uuid())
    .bind(TaskStatus::Waiting.as_str())
    .execute(conn)
    .await
    .context("recounting the main tasks of a new round")?;
    Ok(())
}

/// A main task of a run whose exit handlers are being decided, with what
/// `workflow.status`, `.failures` and `.duration` are made of.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MainTask {
    /// The run.
    #[sqlx(try_from = "Uuid")]
    pub workflow_execution_id: WorkflowExecutionId,
    /// The task's name.
    pub task_name: String,
    /// Its status.
    #[sqlx(try_from = "String")]
    pub status: TaskStatus,
    /// Whether its failure still lets the run succeed.
    pub allow_failure: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// Whether the run is canceling.
    pub canceling: bool,
    /// Seconds since the run started.
    pub duration: f64,
}

/// The main tasks of runs (in the order they finished), for their exit
/// handlers' context.
///
/// # Errors
/// A database error.
pub async fn main_tasks(
    conn: &mut PgConnection,
    runs: &[WorkflowExecutionId],
) -> Result<Vec<MainTask>, StoreError> {
    let ids: Vec<Uuid> = runs.iter().map(|r| r.as_uuid()).collect();
    sqlx::query_as(
        "SELECT t.workflow_execution_id, t.task_name, t.status, t.allow_failure, t.error, \
                w.status = $2 AS canceling, \
                extract(epoch FROM clock_timestamp() - coalesce(w.started_at, w.created_at))::float8 AS duration \
         FROM task_executions t JOIN workflow_executions w ON w.id = t.workflow_execution_id \
         WHERE w.id = ANY($1) AND NOT t.exit_handler \
         ORDER BY t.workflow_execution_id, t.finished_at, t.task_name",
    )
    .bind(&ids)
    .bind(weft_common::WorkflowStatus::Canceling.as_str())
    .fetch_all(conn)
    .await
    .context("reading the main tasks for exit handlers")
}
