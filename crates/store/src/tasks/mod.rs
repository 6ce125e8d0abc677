//! `task_executions`: one row per (run, task), created when the run starts.
//! The fan-in counter (`needs_remaining`) and the item counters live here.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::{TaskExecutionId, TaskStatus, WorkflowExecutionId};

use crate::error::{Context, StoreError};

mod finish;
pub(crate) use finish::{CascadeRow, cascade, finished_columns};
pub use finish::{Finish, Finished, ResultOf, finish};

/// A task of a run, as stored.
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
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
    /// Items this round kept from an earlier one (see `weft retry`).
    pub items_kept: i32,
    /// Whether this round keeps the items that succeeded in an earlier
    /// round with the same input (set by `weft retry` on a fan-out that
    /// failed or was canceled).
    pub keep_items: bool,
    /// The result.
    pub result: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// When its needs were all terminal and it was decided.
    pub decided_at: Option<DateTime<Utc>>,
    /// When it became terminal.
    pub finished_at: Option<DateTime<Utc>>,
    /// Whether it is an exit handler (`on_exit:`).
    #[serde(default)]
    pub exit_handler: bool,
    /// Whether its definition takes a lock across runs (`mutex`,
    /// `semaphore`): only then can it hold a claim to release when it ends.
    pub locks: bool,
}

pub(crate) const TASK_COLUMNS: &str = "id, workflow_execution_id, task_name, status, needs, needs_remaining, with_items, \
     allow_failure, concurrency, attempt_base, items_total, items_dispatched, items_succeeded, items_failed, items_kept, \
     keep_items, result, error, decided_at, finished_at, exit_handler, locks";

/// A task row to create when its run starts.
#[derive(Debug, Clone)]
pub struct NewTask<'a> {
    /// The task's name.
    pub name: &'a str,
    /// The tasks it needs.
    pub needs: &'a [String],
    /// The tasks that need it.
    pub successors: Vec<&'a str>,
    /// Whether it fans out.
    pub with_items: bool,
    /// Whether its failure still lets the run succeed.
    pub allow_failure: bool,
    /// Items in flight at most.
    pub concurrency: Option<i32>,
    /// Whether it is an exit handler: one that needs no other waits on one
    /// more need, the main tasks (see [`cascade`]).
    pub exit_handler: bool,
    /// Whether it takes a lock across runs (`mutex`, `semaphore`).
    pub locks: bool,
}

/// Creates every task row of several runs in one statement. Returns the
/// rows. The unique (run, task) index refuses a second set.
///
/// # Errors
/// [`StoreError::Duplicate`] if a run's tasks exist already.
pub async fn create_all(
    conn: &mut PgConnection,
    runs: &[(WorkflowExecutionId, Vec<NewTask<'_>>)],
) -> Result<Vec<TaskRow>, StoreError> {
    let tasks = || {
        runs.iter()
            .flat_map(|(run, tasks)| tasks.iter().map(move |t| (*run, t)))
    };
    let run_ids: Vec<Uuid> = tasks().map(|(run, _)| run.as_uuid()).collect();
    let ids: Vec<Uuid> = tasks().map(|_| TaskExecutionId::new().as_uuid()).collect();
    let names: Vec<&str> = tasks().map(|(_, t)| t.name).collect();
    let needs: Vec<serde_json::Value> = tasks().map(|(_, t)| serde_json::json!(t.needs)).collect();
    let successors: Vec<serde_json::Value> = tasks()
        .map(|(_, t)| serde_json::json!(t.successors))
        .collect();
    let with_items: Vec<bool> = tasks().map(|(_, t)| t.with_items).collect();
    let allow_failure: Vec<bool> = tasks().map(|(_, t)| t.allow_failure).collect();
    let concurrency: Vec<Option<i32>> = tasks().map(|(_, t)| t.concurrency).collect();
    let exit_handler: Vec<bool> = tasks().map(|(_, t)| t.exit_handler).collect();
    let locks: Vec<bool> = tasks().map(|(_, t)| t.locks).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO task_executions \
             (id, workflow_execution_id, task_name, needs, needs_remaining, successors, with_items, \
              allow_failure, concurrency, exit_handler, locks) \
         SELECT id, run, name, ARRAY(SELECT jsonb_array_elements_text(needs)), \
                jsonb_array_length(needs) + CASE WHEN eh AND jsonb_array_length(needs) = 0 THEN 1 ELSE 0 END, \
                ARRAY(SELECT jsonb_array_elements_text(successors)), wi, af, conc, eh, locks \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::bool[], $6::bool[], $7::int[], \
                     $8::jsonb[], $9::bool[], $10::bool[]) \
              AS t(id, run, name, needs, wi, af, conc, successors, eh, locks) \
         RETURNING {TASK_COLUMNS}"
    )))
    .bind(&ids)
    .bind(&run_ids)
    .bind(&names)
    .bind(&needs)
    .bind(&with_items)
    .bind(&allow_failure)
    .bind(&concurrency)
    .bind(&successors)
    .bind(&exit_handler)
    .bind(&locks)
    .fetch_all(conn)
    .await
    .context("creating the runs' tasks")
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

/// A task to read by name: its run, its name, and whether its result is
/// wanted (an expression refers to it) or only its status (a trigger rule).
pub type ByName<'a> = (WorkflowExecutionId, &'a str, bool);

/// Reads the named tasks of runs (statuses for trigger rules, results for
/// expressions), in one statement. A result is read only where it is
/// wanted (`None` otherwise): a wide fan-out's is large. Unknown names are
/// simply absent.
///
/// # Errors
/// A database error.
pub async fn by_names(
    conn: &mut PgConnection,
    names: &[ByName<'_>],
) -> Result<Vec<TaskRow>, StoreError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let runs: Vec<Uuid> = names.iter().map(|(run, _, _)| run.as_uuid()).collect();
    let tasks: Vec<&str> = names.iter().map(|(_, name, _)| *name).collect();
    let results: Vec<bool> = names.iter().map(|(_, _, result)| *result).collect();
    let columns = with_result_if("t", "n.result");
    let rows: Vec<Read> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT ON (t.id) {columns} FROM task_executions t \
         JOIN UNNEST($1::uuid[], $2::text[], $3::bool[]) AS n(run, name, result) \
           ON t.workflow_execution_id = n.run AND t.task_name = n.name \
         ORDER BY t.id, n.result DESC"
    )))
    .bind(&runs)
    .bind(&tasks)
    .bind(&results)
    .fetch_all(&mut *conn)
    .await
    .context("reading tasks by name")?;
    with_long_results(conn, rows).await
}

/// Every task of several runs, by run then in creation order; each run
/// with whether its tasks' results are wanted (`None` otherwise: a wide
/// fan-out's is large, and a run's end needs them only to render its
/// output).
///
/// # Errors
/// A database error.
pub async fn for_runs(
    conn: &mut PgConnection,
    runs: &[(WorkflowExecutionId, bool)],
) -> Result<Vec<TaskRow>, StoreError> {
    let ids: Vec<Uuid> = runs.iter().map(|(r, _)| r.as_uuid()).collect();
    let results: Vec<bool> = runs.iter().map(|(_, result)| *result).collect();
    let columns = with_result_if("t", "r.result");
    let rows: Vec<Read> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM task_executions t \
         JOIN (SELECT DISTINCT ON (id) * FROM UNNEST($1::uuid[], $2::bool[]) AS r(id, result) \
               ORDER BY id, result DESC) r ON r.id = t.workflow_execution_id \
         ORDER BY t.workflow_execution_id, t.created_at, t.task_name"
    )))
    .bind(&ids)
    .bind(&results)
    .fetch_all(&mut *conn)
    .await
    .context("reading runs' tasks")?;
    with_long_results(conn, rows).await
}

/// A result that is a list longer than this is not read with its row but
/// element by element (see [`with_long_results`]).
const LONG_RESULT: i32 = 1_024;

/// A task row as read with a result that may be left to read element by
/// element.
#[derive(sqlx::FromRow)]
struct Read {
    #[sqlx(flatten)]
    row: TaskRow,
    /// Its result is wanted, and is a list longer than [`LONG_RESULT`]:
    /// `row.result` is `None` until [`with_long_results`] reads it.
    long_result: bool,
}

/// The columns of a task row (alias `alias`) whose result is read when
/// `wanted` (an SQL boolean) holds and it is not a long list, and whether
/// it is one.
fn with_result_if(alias: &str, wanted: &str) -> String {
    let long = format!(
        "jsonb_typeof({alias}.result) = 'array' AND jsonb_array_length({alias}.result) > {LONG_RESULT}"
    );
    crate::prefixed(alias, TASK_COLUMNS).replace(
        &format!("{alias}.result, "),
        &format!(
            "CASE WHEN {wanted} AND NOT ({long}) THEN {alias}.result END AS result, \
             COALESCE({wanted} AND {long}, false) AS long_result, "
        ),
    )
}

/// Fills in the long list results of `rows`, reading them element by
/// element: a wide fan-out's result (100,000 items of 1 KiB is 100 MB)
/// read whole would be held twice at once, as the bytes of its row and as
/// the value decoded from them; streamed, only the value is built, one
/// element at a time.
async fn with_long_results(
    conn: &mut PgConnection,
    rows: Vec<Read>,
) -> Result<Vec<TaskRow>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for Read {
        mut row,
        long_result,
    } in rows
    {
        if long_result {
            row.result = Some(Value::Array(list_result(conn, row.id).await?));
        }
        out.push(row);
    }
    Ok(out)
}

/// The elements of a task's list result, streamed from the database.
async fn list_result(
    conn: &mut PgConnection,
    id: TaskExecutionId,
) -> Result<Vec<Value>, StoreError> {
    use futures_util::TryStreamExt as _;

    let len: Option<i32> = sqlx::query_scalar(
        "SELECT jsonb_array_length(result) FROM task_executions \
         WHERE id = $1 AND jsonb_typeof(result) = 'array'",
    )
    .bind(id.as_uuid())
    .fetch_optional(&mut *conn)
    .await
    .context("reading a result's length")?;
    // Read as a long list a moment ago, in this transaction: a result is
    // only reset by `weft retry`, which waits for the run's lock.
    let len = len
        .and_then(|len| usize::try_from(len).ok())
        .ok_or_else(|| StoreError::Corrupt {
            what: "task result",
            detail: format!("task {id}'s list result changed while it was read"),
        })?;
    let mut elements = vec![Value::Null; len];
    let mut rows = sqlx::query_as::<_, (i64, sqlx::types::Json<Value>)>(
        "SELECT e.n, e.value FROM task_executions t \
         CROSS JOIN LATERAL jsonb_array_elements(t.result) WITH ORDINALITY AS e(value, n) \
         WHERE t.id = $1 AND jsonb_typeof(t.result) = 'array'",
    )
    .bind(id.as_uuid())
    .fetch(&mut *conn);
    // Placed by their ordinal, so the order rows arrive in does not matter.
    while let Some((n, sqlx::types::Json(value))) =
        rows.try_next().await.context("reading a result")?
    {
        let slot = usize::try_from(n - 1)
            .ok()
            .and_then(|i| elements.get_mut(i))
            .ok_or_else(|| StoreError::Corrupt {
                what: "task result",
                detail: format!("element {n} of task {id}'s result of {len}"),
            })?;
        *slot = value;
    }
    Ok(elements)
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

/// The SQL value of a fan-out's result (the task row aliased `alias`):
/// one entry per item of its current round, in item order, each from the
/// item's latest successful execution, `null` for an item that did not
/// succeed — whatever the task's outcome, so a failed or canceled fan-out
/// keeps what its items produced. One pass over the task's succeeded
/// executions, hash-joined to the item indexes: O(items).
pub(crate) fn items_result(alias: &str) -> String {
    format!(
        "(SELECT coalesce(jsonb_agg(r.result ORDER BY g.i), '[]'::jsonb) \
          FROM generate_series(0, coalesce({alias}.items_total, 0) - 1) AS g(i) \
          LEFT JOIN (SELECT DISTINCT ON (x.item_index) x.item_index, x.result FROM executions x \
                     WHERE x.task_execution_id = {alias}.id AND x.status = 'succeeded' \
                       AND x.attempt > {alias}.attempt_base \
                     ORDER BY x.item_index, x.attempt DESC) r ON r.item_index = g.i)"
    )
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

/// A task of a run with what its executions add, for `weft status`: the
/// figures of its current round (the latest it ran in; see `weft retry`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskSummary {
    /// The task row.
    #[sqlx(flatten)]
    pub task: TaskRow,
    /// The highest attempt of its current round's executions, counted
    /// within the round (0: none yet).
    pub attempts: i32,
    /// When its current round's first execution began.
    pub started_at: Option<DateTime<Utc>>,
    /// Its executions a worker runs now.
    pub running: i64,
    /// Its executions dispatched and due, not yet taken by a worker.
    pub queued: i64,
    /// Its executions waiting for a slot (`concurrency`, `parallelism`).
    pub pending: i64,
    /// The latest round of the run it has executions in (`None`: none).
    pub round: Option<i32>,
    /// How many earlier rounds it has executions in.
    pub earlier_rounds: i32,
}

impl TaskSummary {
    /// The status to show: the stored one, except `queued` for a running
    /// task whose live executions all wait for a worker (see
    /// [`weft_common::explain::shown_status`]).
    #[must_use]
    pub fn shown_status(&self) -> &'static str {
        weft_common::explain::shown_status(
            self.task.status,
            self.running,
            self.queued,
            self.pending,
        )
    }
}

/// Every task of a run with its current round's attempts and start time.
///
/// # Errors
/// A database error.
pub async fn summaries(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<Vec<TaskSummary>, StoreError> {
    // Attempts after `attempt_base` are the current round's, for a task
    // `weft retry` reset (ADR 0008) as for one it did not.
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {}, GREATEST(COALESCE(e.max_attempt, 0) - t.attempt_base, 0) AS attempts, \
                e.started_at, COALESCE(e.running, 0) AS running, COALESCE(e.queued, 0) AS queued, \
                COALESCE(e.pending, 0) AS pending, \
                e.round, GREATEST(COALESCE(e.rounds, 0)::int4 - 1, 0) AS earlier_rounds \
         FROM task_executions t \
         LEFT JOIN LATERAL ( \
             SELECT max(attempt) AS max_attempt, \
                    min(started_at) FILTER (WHERE attempt > t.attempt_base) AS started_at, \
                    count(*) FILTER (WHERE status = '{running}') AS running, \
                    count(*) FILTER (WHERE status = '{queued}' AND (due_at IS NULL OR due_at <= now())) AS queued, \
                    count(*) FILTER (WHERE status = '{pending}' AND attempt > t.attempt_base) AS pending, \
                    max(round) AS round, count(DISTINCT round) AS rounds \
             FROM executions WHERE task_execution_id = t.id \
         ) e ON true \
         WHERE t.workflow_execution_id = $1 ORDER BY t.task_name",
        crate::prefixed("t", TASK_COLUMNS),
        running = weft_common::ExecutionStatus::Running.as_str(),
        queued = weft_common::ExecutionStatus::Queued.as_str(),
        pending = weft_common::ExecutionStatus::Pending.as_str(),
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
