//! What each attempt printed: an [`Attempt`] with its [`AttemptLogs`] —
//! failed attempts included, successful ones too.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::{AttemptLogs, ExecutionId, ExecutionStatus, WorkflowExecutionId};

use super::attempts::{ATTEMPT_COLUMNS, Attempt, AttemptFilter, SOURCE, bind_source, sort};
use crate::error::{Context, StoreError};

/// An attempt and what it printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptLog {
    /// The attempt (task, item, round, attempt, status, worker, times).
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub attempt: Attempt,
    /// The tails of its stdout and stderr and its exit code, as its worker
    /// reported them; `None` if it printed nothing or never ran.
    #[sqlx(json(nullable))]
    pub logs: Option<AttemptLogs>,
    /// A failure's structured details (a custom action's
    /// `ActionError::with_details`), when the attempt reported no logs:
    /// what there is to show of it beyond its error.
    pub details: Option<Value>,
}

/// The attempts of run `run` that `filter` selects with their logs, by
/// task, item and attempt, leaving out the executions in `except` (those a
/// follower has shown already).
///
/// # Errors
/// A database error.
pub async fn logs(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
    filter: &AttemptFilter<'_>,
    except: &[ExecutionId],
) -> Result<Vec<AttemptLog>, StoreError> {
    let except: Vec<Uuid> = except.iter().map(|id| id.as_uuid()).collect();
    let sql = format!(
        "SELECT {ATTEMPT_COLUMNS}, a.logs, \
                CASE WHEN a.logs IS NULL AND a.status <> '{succeeded}' THEN a.result END AS details \
         FROM {SOURCE}",
        succeeded = ExecutionStatus::Succeeded.as_str(),
    );
    let mut rows: Vec<AttemptLog> = bind_source(
        sqlx::query_as(sqlx::AssertSqlSafe(sql)),
        run,
        filter,
        &except,
    )
    .fetch_all(conn)
    .await
    .context("reading a run's logs")?;
    sort(&mut rows, |log| &log.attempt);
    Ok(rows)
}

/// At most `limit` of the attempts [`logs`] would list (none left out),
/// from `offset`, in the same order. The page is cut on the attempts'
/// keys alone (a top-N sort of small rows), and only its rows' logs are
/// read, so a fan-out of 100,000 attempts with their logs is never read
/// or sorted whole.
///
/// # Errors
/// A database error.
pub async fn page(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
    filter: &AttemptFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<Vec<AttemptLog>, StoreError> {
    let sql = format!(
        "SELECT p.*, x.logs, \
                CASE WHEN x.logs IS NULL AND x.status <> '{succeeded}' THEN x.result END AS details \
         FROM ( \
             SELECT {ATTEMPT_COLUMNS} FROM {SOURCE} \
             ORDER BY a.task_name COLLATE \"C\", a.item_index NULLS FIRST, a.attempt \
             LIMIT {limit} OFFSET {offset} \
         ) p JOIN executions x ON x.id = p.execution_id \
         ORDER BY p.task COLLATE \"C\", p.item_index NULLS FIRST, p.attempt_number",
        succeeded = ExecutionStatus::Succeeded.as_str(),
        limit = limit.max(0),
        offset = offset.max(0),
    );
    bind_source(sqlx::query_as(sqlx::AssertSqlSafe(sql)), run, filter, &[])
        .fetch_all(conn)
        .await
        .context("reading a page of a run's logs")
}
