//! `task_executions`: one row per (run, task), created when the run starts.
//! The fan-in counter (`needs_remaining`) and the item counters live here.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::{TaskExecutionId, TaskStatus, WorkflowExecutionId};

use crate::error::{Context, StoreError};

/// A task of a run, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    /// Its id.
    #[sqlx(try_from = "Uuid")]
    pub id: TaskExecutionId,
    /// The run.
    #[sqlx(try_from = "Uuid")]
    pub workflow_execution_id: WorkflowExecutionId,
    /// The task's name.
    pub task_name: String,
    /// Where it stands.
    #[sqlx(try_from = "String")]
    pub status: TaskStatus,
    /// The tasks it needs.
    pub needs: Vec<String>,
    /// Needs not yet terminal.
    pub needs_remaining: i32,
    /// Whether it fans out.
    pub with_items: bool,
    /// Whether its failure still lets the run succeed.
    pub allow_failure: bool,
    /// Items in flight at most.
    pub concurrency: Option<i32>,
    /// Attempts of earlier rounds; this round starts at `attempt_base + 1`.
    pub attempt_base: i32,
    /// Items in all (1 for a plain task), once known.
    pub items_total: Option<i32>,
    /// Items dispatched so far.
    pub items_dispatched: i32,
    /// Items that succeeded.
    pub items_succeeded: i32,
    /// Items that failed after their retries.
    pub items_failed: i32,
    /// The result.
    pub result: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// When its needs were all terminal and it was decided.
    pub decided_at: Option<DateTime<Utc>>,
    /// When it became terminal.
    pub finished_at: Option<DateTime<Utc>>,
}

const TASK_COLUMNS: &str = "id, workflow_execution_id, task_name, status, needs, needs_remaining, with_items, \
     allow_failure, concurrency, attempt_base, items_total, items_dispatched, items_succeeded, items_failed, result, error, \
     decided_at, finished_at";

/// A task row to create when its run starts.
#[derive(Debug, Clone)]
pub struct NewTask<'a> {
    /// The task's name.
    pub name: &'a str,
    /// The tasks it needs.
    pub needs: &'a [String],
    /// Whether it fans out.
    pub with_items: bool,
    /// Whether its failure still lets the run succeed.
    pub allow_failure: bool,
    /// Items in flight at most.
    pub concurrency: Option<i32>,
}

/// Creates every task row of a run in one statement. Returns the rows.
/// The unique (run, task) index refuses a second set.
///
/// # Errors
/// [`StoreError::Duplicate`] if the run's tasks exist already.
pub async fn create_all(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
    tasks: &[NewTask<'_>],
) -> Result<Vec<TaskRow>, StoreError> {
    let ids: Vec<Uuid> = tasks
        .iter()
        .map(|_| TaskExecutionId::new().as_uuid())
        .collect();
    let names: Vec<&str> = tasks.iter().map(|t| t.name).collect();
    let needs: Vec<serde_json::Value> = tasks.iter().map(|t| serde_json::json!(t.needs)).collect();
    let with_items: Vec<bool> = tasks.iter().map(|t| t.with_items).collect();
    let allow_failure: Vec<bool> = tasks.iter().map(|t| t.allow_failure).collect();
    let concurrency: Vec<Option<i32>> = tasks.iter().map(|t| t.concurrency).collect();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO task_executions \
             (id, workflow_execution_id, task_name, needs, needs_remaining, with_items, allow_failure, concurrency) \
         SELECT id, $1, name, ARRAY(SELECT jsonb_array_elements_text(needs)), jsonb_array_length(needs), wi, af, conc \
         FROM UNNEST($2::uuid[], $3::text[], $4::jsonb[], $5::bool[], $6::bool[], $7::int[]) \
              AS t(id, name, needs, wi, af, conc) \
         RETURNING {TASK_COLUMNS}"
    )))
    .bind(run.as_uuid())
    .bind(&ids)
    .bind(&names)
    .bind(&needs)
    .bind(&with_items)
    .bind(&allow_failure)
    .bind(&concurrency)
    .fetch_all(conn)
    .await
    .context("creating the run's tasks")
}

/// Reads one task.
///
/// # Errors
/// A database error.
pub async fn get(conn: &mut PgConnection, id: TaskExecutionId) -> Result<TaskRow, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM task_executions WHERE id = $1"
    )))
    .bind(id.as_uuid())
    .fetch_one(conn)
    .await
    .context("reading a task")
}

/// Reads the named tasks of a run (statuses for trigger rules, results for
/// expressions). Unknown names are simply absent.
///
/// # Errors
/// A database error.
pub async fn by_names(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
    names: &[&str],
) -> Result<Vec<TaskRow>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM task_executions WHERE workflow_execution_id = $1 AND task_name = ANY($2)"
    )))
    .bind(run.as_uuid())
    .bind(names)
    .fetch_all(conn)
    .await
    .context("reading tasks by name")
}

/// Every task of a run, in creation order.
///
/// # Errors
/// A database error.
pub async fn for_run(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<Vec<TaskRow>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM task_executions WHERE workflow_execution_id = $1 ORDER BY created_at, task_name"
    )))
    .bind(run.as_uuid())
    .fetch_all(conn)
    .await
    .context("reading a run's tasks")
}

/// Guarded `waiting → running`: the task was decided to run with `items`
/// items, of which `dispatched` are dispatched now. `false`: someone else
/// decided it already — do nothing.
///
/// # Errors
/// A database error.
pub async fn start(
    conn: &mut PgConnection,
    id: TaskExecutionId,
    items: i32,
    dispatched: i32,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE task_executions \
         SET status = 'running', items_total = $2, items_dispatched = $3, decided_at = clock_timestamp() \
         WHERE id = $1 AND status = 'waiting'",
    )
    .bind(id.as_uuid())
    .bind(items)
    .bind(dispatched)
    .execute(conn)
    .await
    .context("starting a task")?;
    Ok(done.rows_affected() == 1)
}

/// What finishing a task did.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The task, now terminal.
    pub task: TaskRow,
    /// Its successors whose last need this was: exactly one transaction
    /// sees each of them reach zero, and that transaction decides them.
    pub ready: Vec<TaskRow>,
    /// Tasks of the run not terminal yet; 0 means the run is done.
    pub tasks_remaining: i32,
}

#[derive(sqlx::FromRow)]
struct FinishRow {
    finished: bool,
    #[sqlx(flatten)]
    task: TaskRow,
    tasks_remaining: Option<i32>,
}

/// Guarded transition of a task into a terminal state, with the result or
/// error, and in the same statement what follows from it: one need of each
/// named successor counted down, and the run's count of unfinished tasks.
/// Only waiting successors count (after `weft retry`, a successor that
/// finished in an earlier round keeps its outcome); they are locked in name
/// order so concurrent fan-ins cannot deadlock. `None`: the task was not in
/// a state this transition leaves — nothing changed, do nothing.
///
/// # Errors
/// A database error.
pub async fn finish(
    conn: &mut PgConnection,
    task: &TaskRow,
    to: TaskStatus,
    result: Option<&Value>,
    error: Option<&str>,
    successors: &[&str],
) -> Result<Option<Finished>, StoreError> {
    let rows: Vec<FinishRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH f AS ( \
             UPDATE task_executions \
             SET status = $2, result = $3, error = $4, finished_at = clock_timestamp(), \
                 decided_at = COALESCE(decided_at, clock_timestamp()) \
             WHERE id = $1 AND status = ANY($5) RETURNING {TASK_COLUMNS} \
         ), locked AS ( \
             SELECT id FROM task_executions \
             WHERE workflow_execution_id = $6 AND task_name = ANY($7) AND status = 'waiting' \
               AND EXISTS (SELECT 1 FROM f) \
             ORDER BY task_name FOR UPDATE \
         ), s AS ( \
             UPDATE task_executions t SET needs_remaining = t.needs_remaining - 1 \
             FROM locked WHERE t.id = locked.id RETURNING {successor} \
         ), r AS ( \
             UPDATE workflow_executions SET tasks_remaining = tasks_remaining - 1 \
             WHERE id = $6 AND EXISTS (SELECT 1 FROM f) RETURNING tasks_remaining \
         ) \
         SELECT true AS finished, f.*, (SELECT tasks_remaining FROM r) AS tasks_remaining FROM f \
         UNION ALL \
         SELECT false, s.*, NULL FROM s WHERE s.needs_remaining = 0",
        successor = crate::prefixed("t", TASK_COLUMNS)
    )))
    .bind(task.id.as_uuid())
    .bind(to.as_str())
    .bind(result)
    .bind(error)
    .bind(TaskStatus::source_names(to))
    .bind(task.workflow_execution_id.as_uuid())
    .bind(successors)
    .fetch_all(conn)
    .await
    .context("finishing a task")?;
    let mut finished = None;
    let mut ready = Vec::new();
    for row in rows {
        if row.finished {
            finished = Some((row.task, row.tasks_remaining));
        } else {
            ready.push(row.task);
        }
    }
    let Some((task, remaining)) = finished else {
        return Ok(None);
    };
    let Some(tasks_remaining) = remaining else {
        return Err(StoreError::Corrupt {
            what: "workflow execution",
            detail: format!("the run of task `{}` vanished", task.task_name),
        });
    };
    ready.sort_by(|a, b| a.task_name.cmp(&b.task_name));
    Ok(Some(Finished {
        task,
        ready,
        tasks_remaining,
    }))
}

/// Finished items (after their retries) of one task, to count at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemsDone {
    /// The task.
    pub task: TaskExecutionId,
    /// How many of them succeeded.
    pub succeeded: i32,
    /// How many of them failed.
    pub failed: i32,
}

/// Counts finished items in one atomic update per task row, all in one
/// statement, and returns each running task's counters after it (in task id
/// order; a task no longer running is left out). Rows are locked in id
/// order, so concurrent counters of overlapping tasks cannot deadlock. A
/// task is done when `items_succeeded + items_failed` reaches `items_total`,
/// or reaches `items_dispatched` once an item failed: exactly one
/// transaction sees that.
///
/// The keys are joined to the table: run it in a transaction with
/// sequential scans disabled (as the executor's are), or a plan made while
/// the table was small scans it whole once it has grown.
///
/// # Errors
/// A database error.
pub async fn items_finished(
    conn: &mut PgConnection,
    done: &[ItemsDone],
) -> Result<Vec<TaskRow>, StoreError> {
    if done.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = done.iter().map(|d| d.task.as_uuid()).collect();
    let succeeded: Vec<i32> = done.iter().map(|d| d.succeeded).collect();
    let failed: Vec<i32> = done.iter().map(|d| d.failed).collect();
    let mut rows: Vec<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH d AS ( \
             SELECT id, sum(ok)::int AS ok, sum(bad)::int AS bad \
             FROM UNNEST($1::uuid[], $2::int[], $3::int[]) AS d(id, ok, bad) GROUP BY id \
         ), locked AS ( \
             SELECT t.id FROM task_executions t JOIN d ON d.id = t.id \
             WHERE t.status = 'running' ORDER BY t.id FOR UPDATE OF t \
         ) \
         UPDATE task_executions t \
         SET items_succeeded = t.items_succeeded + d.ok, items_failed = t.items_failed + d.bad \
         FROM d JOIN locked ON locked.id = d.id \
         WHERE t.id = d.id AND t.status = 'running' \
         RETURNING {columns}",
        columns = crate::prefixed("t", TASK_COLUMNS)
    )))
    .bind(&ids)
    .bind(&succeeded)
    .bind(&failed)
    .fetch_all(conn)
    .await
    .context("counting finished items")?;
    rows.sort_by_key(|t| t.id.as_uuid());
    Ok(rows)
}

/// Claims up to `count` undispatched items of a running task, unless an
/// item has failed or none is left: returns the claimed indexes (each index
/// is claimed once).
///
/// # Errors
/// A database error.
pub async fn claim_next_items(
    conn: &mut PgConnection,
    id: TaskExecutionId,
    count: i32,
) -> Result<std::ops::Range<i32>, StoreError> {
    let claimed: Option<(i32, i32)> = sqlx::query_as(
        "UPDATE task_executions t \
         SET items_dispatched = LEAST(t.items_total, t.items_dispatched + $2) \
         FROM (SELECT items_dispatched AS before FROM task_executions WHERE id = $1 FOR UPDATE) b \
         WHERE t.id = $1 AND t.status = 'running' AND t.items_failed = 0 \
           AND t.items_dispatched < t.items_total \
         RETURNING b.before, t.items_dispatched",
    )
    .bind(id.as_uuid())
    .bind(count)
    .fetch_optional(conn)
    .await
    .context("claiming the next items")?;
    Ok(claimed.map_or(0..0, |(from, to)| from..to))
}

impl TaskRow {
    /// Items finished (succeeded or failed after retries).
    #[must_use]
    pub const fn items_done(&self) -> i32 {
        self.items_succeeded + self.items_failed
    }

    /// Whether every item that will ever finish has: all of them, or — once
    /// one failed and no new item starts — every dispatched one.
    #[must_use]
    pub fn all_items_done(&self) -> bool {
        let done = self.items_done();
        match self.items_total {
            Some(total) if self.items_failed == 0 => done >= total,
            Some(_) => done >= self.items_dispatched,
            None => false,
        }
    }
}

/// A task of a run with what its executions add, for `weft status`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskSummary {
    /// The task row.
    #[sqlx(flatten)]
    pub task: TaskRow,
    /// The highest attempt of any of its executions (0: none).
    pub attempts: i32,
    /// When its first execution began.
    pub started_at: Option<DateTime<Utc>>,
}

/// Every task of a run with its attempts and start time.
///
/// # Errors
/// A database error.
pub async fn summaries(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<Vec<TaskSummary>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {}, COALESCE(e.attempts, 0) AS attempts, e.started_at \
         FROM task_executions t \
         LEFT JOIN LATERAL ( \
             SELECT max(attempt) AS attempts, min(started_at) AS started_at \
             FROM executions WHERE task_execution_id = t.id \
         ) e ON true \
         WHERE t.workflow_execution_id = $1 ORDER BY t.task_name",
        crate::prefixed("t", TASK_COLUMNS)
    )))
    .bind(run.as_uuid())
    .fetch_all(conn)
    .await
    .context("summarising a run's tasks")
}

/// Tasks of a run that wait with every need terminal. After a commit this
/// is empty — the transaction that zeroes a counter decides the task — except
/// right after `weft retry` re-opened the run.
///
/// # Errors
/// A database error.
pub async fn undecided(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<Vec<TaskRow>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM task_executions \
         WHERE workflow_execution_id = $1 AND status = 'waiting' AND needs_remaining = 0 ORDER BY task_name"
    )))
    .bind(run.as_uuid())
    .fetch_all(conn)
    .await
    .context("finding undecided tasks")
}
