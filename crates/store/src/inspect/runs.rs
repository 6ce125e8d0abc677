//! Listing runs a page at a time, newest first: `weft list` and
//! `GET /api/v1/runs`. Pages are cut by keyset on (created_at, id), so a
//! page costs the same on the first page as on the thousandth, and runs
//! submitted while a client pages do not shift what it sees.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::{WorkflowExecutionId, WorkflowStatus};

use crate::error::{Context, StoreError};

/// One run in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunListItem {
    /// The run's id.
    #[sqlx(try_from = "Uuid")]
    pub id: WorkflowExecutionId,
    /// Its workflow's name.
    #[sqlx(rename = "workflow_name")]
    pub workflow: String,
    /// Where it stands.
    #[sqlx(try_from = "String")]
    pub status: WorkflowStatus,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When an executor started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// The run whose `workflow:` task started it (`None`: submitted).
    #[sqlx(rename = "parent_run_id")]
    pub parent: Option<Uuid>,
    /// The registered version it runs (`None`: submitted from a file).
    #[serde(default)]
    pub workflow_version: Option<i32>,
    /// The schedule that started it.
    #[serde(default)]
    #[sqlx(rename = "schedule_name")]
    pub schedule: Option<String>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs in this status.
    pub status: Option<WorkflowStatus>,
    /// Only runs of this workflow (by name).
    pub workflow: Option<String>,
    /// Only the children of this run.
    pub parent: Option<WorkflowExecutionId>,
    /// Only runs submitted by a user (no child runs).
    pub top: bool,
}

/// Where a page ends: the last run it showed. Shown to clients as an
/// opaque string (`next_cursor`), given back to fetch the next page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    created_at: DateTime<Utc>,
    id: Uuid,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            self.created_at.timestamp_micros(),
            self.id.simple()
        )
    }
}

/// A cursor that was not one this server handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a cursor from an earlier page (pass `next_cursor` as it was given)")]
pub struct BadCursor(pub String);

impl FromStr for Cursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadCursor(s.to_owned());
        let (micros, id) = s.split_once('.').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        Ok(Self {
            created_at: DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
            id: Uuid::try_parse(id).map_err(|_| bad())?,
        })
    }
}

/// One page of runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunPage {
    /// The runs, newest first.
    pub items: Vec<RunListItem>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The most runs one page holds.
pub const MAX_PAGE: i64 = 1_000;

/// Runs matching `filter`, newest first, after `after` (the start when
/// `None`), at most `limit` (clamped to 1..=[`MAX_PAGE`]).
///
/// # Errors
/// A database error.
pub async fn page(
    conn: &mut PgConnection,
    filter: &RunFilter,
    limit: i64,
    after: Option<Cursor>,
) -> Result<RunPage, StoreError> {
    let limit = limit.clamp(1, MAX_PAGE);
    // One more than asked says whether there is a next page.
    let mut items: Vec<RunListItem> = sqlx::query_as(
        "SELECT id, workflow_name, status, created_at, started_at, finished_at, parent_run_id, \
                workflow_version, schedule_name \
         FROM workflow_executions \
         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR workflow_name = $2) \
           AND ($3::uuid IS NULL OR parent_run_id = $3) AND (NOT $4 OR parent_run_id IS NULL) \
           AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6)) \
         ORDER BY created_at DESC, id DESC LIMIT $7",
    )
    .bind(filter.status.map(WorkflowStatus::as_str))
    .bind(filter.workflow.as_deref())
    .bind(filter.parent.map(|p| p.as_uuid()))
    .bind(filter.top)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit + 1)
    .fetch_all(conn)
    .await
    .context("listing runs")?;
    let more = items.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = more.then(|| items.last()).flatten().map(|last| {
        Cursor {
            created_at: last.created_at,
            id: last.id.as_uuid(),
        }
        .to_string()
    });
    Ok(RunPage { items, next_cursor })
}

/// The list items of the runs `ids` (those that exist), newest first.
///
/// # Errors
/// A database error.
pub async fn items(
    conn: &mut PgConnection,
    ids: &[WorkflowExecutionId],
) -> Result<Vec<RunListItem>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    sqlx::query_as(
        "SELECT id, workflow_name, status, created_at, started_at, finished_at, parent_run_id \
         FROM workflow_executions WHERE id = ANY($1) ORDER BY created_at DESC, id DESC",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await
    .context("reading runs' list items")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_what_it_wrote() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
    }

    #[test]
    fn a_foreign_cursor_is_refused_saying_so() {
        for bad in ["", "abc", "12.", ".x", "12.not-a-uuid", "x.0190f1c0"] {
            let err = bad.parse::<Cursor>().unwrap_err().to_string();
            assert!(err.contains("not a cursor"), "{bad}: {err}");
        }
    }
}
