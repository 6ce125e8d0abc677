//! A run's attempt history: one [`Attempt`] per execution of its tasks.
//!
//! Attempts are numbered twice. Stored, `executions.attempt` keeps
//! counting across the rounds of `weft retry` (a task whose round 1 made
//! three attempts starts round 2 at attempt 4, ADR 0008), which keeps the
//! unique (task, item, attempt) key true. Shown, an attempt is numbered
//! within its round — `round 2, attempt 1` — which is what a retry policy
//! counts (`retry.attempts` is per round) and what a person expects. Every
//! item of a round starts at the round's first attempt number, so the
//! attempt within the round is the stored one minus the lowest stored one
//! of its (task, round), plus one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::{ExecutionId, ExecutionStatus, WorkflowExecutionId};

use crate::error::{Context, StoreError};

/// One execution of a task: an item's attempt in a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    /// The execution's id.
    #[sqlx(try_from = "Uuid")]
    pub execution_id: ExecutionId,
    /// Its task's name.
    pub task: String,
    /// The item's position, for a with_items task.
    pub item_index: Option<i32>,
    /// The item's value, abbreviated to one line (its compact JSON, at most
    /// 40 characters); `None` for a plain task and for executions stored
    /// before labels were kept.
    pub item: Option<String>,
    /// The run's round (`weft retry`) it belongs to, from 1.
    pub round: i32,
    /// Which try of the item within its round, from 1 (see the module
    /// docs).
    pub attempt: i32,
    /// The stored attempt number, counted across rounds.
    pub attempt_number: i32,
    /// Where it stands.
    #[sqlx(try_from = "String")]
    pub status: ExecutionStatus,
    /// Whether this round kept an earlier round's success for the item
    /// instead of running it again: nothing ran, `kept_from` did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_from: Option<Uuid>,
    /// The worker that ran it.
    pub worker: Option<String>,
    /// When its dispatch was written (a retry's: when it was scheduled).
    pub queued_at: Option<DateTime<Utc>>,
    /// When a retry's dispatch was due (its backoff's end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
    /// When the action began.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// From its start to its end (or to now while it runs), in
    /// milliseconds.
    pub duration_ms: Option<i64>,
    /// What went wrong.
    pub error: Option<String>,
}

/// Which attempts to read. Empty: every attempt of every task of the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttemptFilter<'a> {
    /// Only this task's.
    pub task: Option<&'a str>,
    /// Only this item's (its index).
    pub item: Option<i32>,
    /// Only this attempt within its round.
    pub attempt: Option<i32>,
    /// Only this round's.
    pub round: Option<i32>,
    /// Only the ended ones (succeeded, failed, timed out, canceled).
    pub ended: bool,
}

/// The columns of an [`Attempt`] read from `a`, the rows of [`SOURCE`].
pub(super) const ATTEMPT_COLUMNS: &str = "a.id AS execution_id, a.task_name AS task, a.item_index, \
     a.item_label AS item, a.round, a.attempt - a.round_base AS attempt, a.attempt AS attempt_number, \
     a.status, a.kept_from, a.worker_id AS worker, a.queued_at, a.due_at, a.started_at, a.finished_at, \
     (extract(epoch FROM COALESCE(a.finished_at, CASE WHEN a.started_at IS NOT NULL THEN clock_timestamp() END) \
              - a.started_at) * 1000)::int8 AS duration_ms, \
     a.error";

/// The executions of run `$1` (of task `$2` unless NULL) with their task's
/// name and their round's first stored attempt number, as `a`; filtered
/// by `$3` item, `$4` attempt within the round, `$5` round, `$6` ended only
/// (`$7`: the ended statuses), less the executions listed in `$8` (a
/// hashed lookup: a follower's list of those it has shown grows with the
/// run).
///
/// The rounds' bases are a hash aggregate over the run's executions
/// joined back by hash, and the rows come unordered (the caller sorts
/// them, [`sort`]): no sort in the database, whose rows carry logs and
/// would spill to disk once a fan-out has thousands of items.
pub(super) const SOURCE: &str = "( \
         SELECT e.*, t.task_name, b.round_base \
         FROM executions e \
         JOIN task_executions t ON t.id = e.task_execution_id \
         JOIN ( \
             SELECT x.task_execution_id, x.round, min(x.attempt) - 1 AS round_base \
             FROM executions x WHERE x.workflow_execution_id = $1 \
             GROUP BY x.task_execution_id, x.round \
         ) b ON b.task_execution_id = e.task_execution_id AND b.round = e.round \
         WHERE e.workflow_execution_id = $1 AND t.workflow_execution_id = $1 \
           AND ($2::text IS NULL OR t.task_name = $2) \
     ) a \
     WHERE ($3::int IS NULL OR a.item_index = $3) \
       AND ($4::int IS NULL OR a.attempt - a.round_base = $4) \
       AND ($5::int IS NULL OR a.round = $5) \
       AND (NOT $6 OR a.status = ANY($7::text[])) \
       AND a.id NOT IN (SELECT unnest($8::uuid[]))";

/// Puts attempts in the order they are listed in: by task, item (a plain
/// task's one first), then in the order they were made.
pub(super) fn sort<T>(rows: &mut [T], attempt: impl Fn(&T) -> &Attempt) {
    rows.sort_by(|a, b| {
        let (a, b) = (attempt(a), attempt(b));
        (&a.task, a.item_index, a.attempt_number).cmp(&(&b.task, b.item_index, b.attempt_number))
    });
}

/// Binds the parameters of [`SOURCE`] to `query`.
pub(super) fn bind_source<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    run: WorkflowExecutionId,
    filter: &AttemptFilter<'q>,
    except: &'q [Uuid],
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    let ended: Vec<&str> = ExecutionStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str())
        .collect();
    query
        .bind(run.as_uuid())
        .bind(filter.task)
        .bind(filter.item)
        .bind(filter.attempt)
        .bind(filter.round)
        .bind(filter.ended)
        .bind(ended)
        .bind(except)
}

/// The attempts of run `run` that `filter` selects, by task, item and
/// attempt ([`sort`]). Empty if the run or the task does not exist, or has not run
/// yet: the caller tells those apart from the run's tasks.
///
/// # Errors
/// A database error.
pub async fn attempts(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
    filter: &AttemptFilter<'_>,
) -> Result<Vec<Attempt>, StoreError> {
    let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM {SOURCE}");
    let mut rows = bind_source(sqlx::query_as(sqlx::AssertSqlSafe(sql)), run, filter, &[])
        .fetch_all(conn)
        .await
        .context("reading a run's attempts")?;
    sort(&mut rows, |a| a);
    Ok(rows)
}

/// The names of a run's tasks, sorted (empty: no such run).
///
/// # Errors
/// A database error.
pub async fn task_names(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(
        "SELECT task_name FROM task_executions WHERE workflow_execution_id = $1 ORDER BY task_name",
    )
    .bind(run.as_uuid())
    .fetch_all(conn)
    .await
    .context("reading a run's task names")
}

/// One page of a run's attempts (`GET /api/v1/runs/{run}/attempts`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptPage {
    /// The attempts, by task, item and attempt.
    pub items: Vec<Attempt>,
    /// The `offset` of the next page; `None` on the last page.
    pub next_offset: Option<i64>,
}

/// The most attempts one page holds.
pub const MAX_ATTEMPT_PAGE: i64 = 10_000;

/// A page of the attempts [`attempts`] would list, in the same order:
/// `limit` (clamped to 1..=[`MAX_ATTEMPT_PAGE`]) of them from `offset`.
/// Sorted in the database (the rows carry no logs), so a page of a
/// 100,000-item fan-out costs one index-ordered read, not all of them.
///
/// # Errors
/// A database error.
pub async fn page(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
    filter: &AttemptFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<AttemptPage, StoreError> {
    let limit = limit.clamp(1, MAX_ATTEMPT_PAGE);
    let offset = offset.max(0);
    // One more than asked says whether there is a next page.
    let sql = format!(
        "SELECT {ATTEMPT_COLUMNS} FROM {SOURCE} \
         ORDER BY a.task_name COLLATE \"C\", a.item_index NULLS FIRST, a.attempt \
         LIMIT {} OFFSET {offset}",
        limit + 1
    );
    let mut items: Vec<Attempt> =
        bind_source(sqlx::query_as(sqlx::AssertSqlSafe(sql)), run, filter, &[])
            .fetch_all(conn)
            .await
            .context("reading a page of a run's attempts")?;
    let limit_len = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = items.len() > limit_len;
    items.truncate(limit_len);
    Ok(AttemptPage {
        items,
        next_offset: more.then_some(offset + limit),
    })
}

/// What to tell someone who asked for task `task` of run `run` when it
/// has no such task: no such run, a run not started yet, or the names of
/// its tasks. `None` when the task exists.
///
/// # Errors
/// A database error.
pub async fn task_problem(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
    task: &str,
) -> Result<Option<String>, StoreError> {
    let names = task_names(conn, run).await?;
    if names.iter().any(|n| n == task) {
        return Ok(None);
    }
    if !names.is_empty() {
        return Ok(Some(format!(
            "run {run} has no task `{task}` (its tasks: {})",
            names.join(", ")
        )));
    }
    Ok(Some(match crate::runs::get(conn, run).await? {
        None => format!("no run with id {run}"),
        Some(r) => format!("run {run} is {}: it has no task executions yet", r.status),
    }))
}
