//! What is read of a task's attempts beyond its row: how each item of a
//! fan-out ended (`tasks.X.items`), when an item's first attempt started
//! (`retry.max_duration`), and the note a retry decision adds to a failed
//! attempt's error.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use weft_common::{ExecutionId, ItemState, TaskExecutionId};

use crate::error::{Context, StoreError};

/// How each item of fan-outs ended in their current round, in item order:
/// its latest attempt's status and error (`pending` for an item with no
/// attempt). One statement per task; each reads that task's executions
/// once (one row per item and attempt, without results), so a fan-out of
/// `n` items costs O(n), never more.
///
/// `tasks` are (task, attempt base, items in all); a task whose items are
/// not known yet (`None`) has none.
///
/// # Errors
/// A database error.
pub async fn item_states(
    conn: &mut PgConnection,
    tasks: &[(TaskExecutionId, i32, Option<i32>)],
) -> Result<HashMap<TaskExecutionId, Arc<[ItemState]>>, StoreError> {
    let mut out = HashMap::with_capacity(tasks.len());
    for &(task, attempt_base, total) in tasks {
        let total = total.unwrap_or(0);
        let rows: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT e.status, e.error FROM generate_series(0, $3 - 1) AS g(i) \
             LEFT JOIN (SELECT DISTINCT ON (item_index) item_index, status, error FROM executions \
                        WHERE task_execution_id = $1 AND attempt > $2 \
                        ORDER BY item_index, attempt DESC) e ON e.item_index = g.i \
             ORDER BY g.i",
        )
        .bind(task.as_uuid())
        .bind(attempt_base)
        .bind(total)
        .fetch_all(&mut *conn)
        .await
        .context("reading how a fan-out's items ended")?;
        let states: Arc<[ItemState]> = rows
            .into_iter()
            .map(|(status, error)| {
                let status = status.unwrap_or_else(|| "pending".to_owned());
                let error = if status == "succeeded" { None } else { error };
                ItemState { status, error }
            })
            .collect();
        out.insert(task, states);
    }
    Ok(out)
}

/// When the first attempt (in the current round, after `attempt_base`) of
/// an item of a task started — or was created, if it never started.
///
/// # Errors
/// A database error.
pub async fn first_started(
    conn: &mut PgConnection,
    task: TaskExecutionId,
    item_index: Option<i32>,
    attempt_base: i32,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    sqlx::query_scalar(
        "SELECT min(COALESCE(started_at, created_at)) FROM executions \
         WHERE task_execution_id = $1 AND item_index IS NOT DISTINCT FROM $2 AND attempt > $3",
    )
    .bind(task.as_uuid())
    .bind(item_index)
    .bind(attempt_base)
    .fetch_one(conn)
    .await
    .context("reading when an item's first attempt started")
}

/// Adds `note` to the error of an attempt that ended (why it was not
/// retried), so the task's error says so. Not a state change: the
/// execution's status is not touched, and only a terminal one is noted.
///
/// # Errors
/// A database error.
pub async fn note_error(
    conn: &mut PgConnection,
    execution: ExecutionId,
    note: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE executions SET error = CASE WHEN error IS NULL OR error = '' THEN $2 \
                                            ELSE error || ' (' || $2 || ')' END \
         WHERE id = $1 AND status = ANY($3)",
    )
    .bind(execution.as_uuid())
    .bind(note)
    .bind(
        [
            weft_common::ExecutionStatus::Failed,
            weft_common::ExecutionStatus::TimedOut,
        ]
        .map(|s| s.as_str()),
    )
    .execute(conn)
    .await
    .context("noting why an attempt was not retried")?;
    Ok(())
}
