//! Making tasks terminal: [`finish`], and the cascade every statement
//! that ends tasks closes with (successors counted down, each run's
//! unfinished tasks counted, locks across runs released).

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::{TaskExecutionId, TaskStatus, WorkflowExecutionId};

use super::{TASK_COLUMNS, TaskRow, items_result};
use crate::error::{Context, StoreError};

/// What a finished task's result is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResultOf<'a> {
    /// None (`NULL`).
    Nothing,
    /// This value.
    Value(&'a Value),
    /// Its items' results in item order, one per item of its current round
    /// from its latest successful execution — assembled by the statement
    /// that finishes it, so no process holds a wide fan-out's results.
    Items,
}

/// A task to make terminal, with what follows from it.
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    /// The task.
    pub task: TaskExecutionId,
    /// Its terminal status.
    pub to: TaskStatus,
    /// Its result.
    pub result: ResultOf<'a>,
    /// Why it failed or was skipped.
    pub error: Option<&'a str>,
}

/// What finishing tasks did.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    /// The tasks that became terminal (a task whose guard refused is left
    /// out: nothing changed for it, do nothing).
    pub tasks: Vec<TaskRow>,
    /// Successors whose last need was among them: exactly one transaction
    /// sees each of them reach zero, and that transaction decides them.
    /// By run, then name.
    pub ready: Vec<TaskRow>,
    /// The runs whose last unfinished task was among them, in id order.
    pub runs_done: Vec<WorkflowExecutionId>,
}

/// A row of [`cascade`]: a task made terminal (`finished`, with its run's
/// unfinished tasks after it) or a successor that became ready.
#[derive(sqlx::FromRow, serde::Deserialize)]
pub(crate) struct CascadeRow {
    finished: bool,
    #[sqlx(flatten)]
    #[serde(flatten)]
    task: TaskRow,
    tasks_remaining: Option<i32>,
}

impl Finished {
    /// Releases what the tasks that ended held of a lock across runs
    /// (`mutex`, `semaphore`), granting it to the next waiting task, in
    /// the transaction that ended them: every statement that makes tasks
    /// terminal through [`cascade`] calls this on its result. Only a task
    /// whose definition takes a lock ([`TaskRow::locks`]) can hold one, so
    /// when none of them does, nothing is asked.
    pub(crate) async fn release_locks(&self, conn: &mut PgConnection) -> Result<(), StoreError> {
        let ended: Vec<TaskExecutionId> = self
            .tasks
            .iter()
            .filter(|t| t.locks)
            .map(|t| t.id)
            .collect();
        crate::shared_limits::release_tasks(conn, &ended).await
    }

    /// Sorts the rows of [`cascade`] out.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if a finished task's run was not counted.
    pub(crate) fn of(rows: Vec<CascadeRow>) -> Result<Self, StoreError> {
        let mut finished = Self::default();
        for row in rows {
            if !row.finished {
                finished.ready.push(row.task);
                continue;
            }
            match row.tasks_remaining {
                Some(0) => finished.runs_done.push(row.task.workflow_execution_id),
                Some(_) => {}
                None => {
                    return Err(StoreError::Corrupt {
                        what: "workflow execution",
                        detail: format!("the run of task `{}` vanished", row.task.task_name),
                    });
                }
            }
            finished.tasks.push(row.task);
        }
        finished.ready.sort_by(|a, b| {
            (a.workflow_execution_id.as_uuid(), &a.task_name)
                .cmp(&(b.workflow_execution_id.as_uuid(), &b.task_name))
        });
        finished.runs_done.sort_by_key(|r| r.as_uuid());
        finished.runs_done.dedup();
        Ok(finished)
    }
}

/// What the `RETURNING` of a statement that makes tasks terminal (`t`)
/// hands to [`cascade`]: every column, but a fan-out's result, which can be
/// as large as all its items' results together — read it when an
/// expression needs it ([`by_names`]).
pub(crate) fn finished_columns() -> String {
    let columns = crate::prefixed("t", TASK_COLUMNS).replace(
        "t.result, ",
        "CASE WHEN t.with_items THEN NULL ELSE t.result END AS result, ",
    );
    format!("{columns}, t.successors")
}

/// The common tail of the statements that make tasks terminal: given a CTE
/// `f` of the tasks made terminal (returning [`finished_columns`]), counts
/// down one need of each waiting successor per finished need, and each
/// run's count of unfinished tasks — and of unfinished main tasks
/// (`main_remaining`, NULL without exit handlers): the statement that
/// brings it to zero counts down the extra need of the run's exit handlers
/// that need no other one, which become ready with the successors
/// (exactly one statement sees it reach zero: it holds the run's row).
/// Only waiting successors count (after `weft retry`, a successor that finished in an earlier round keeps its
/// outcome). Successors are locked by run then name, runs in id order, so
/// concurrent fan-ins cannot deadlock. Ends with the CTE `cascade` of
/// [`CascadeRow`]s.
pub(crate) fn cascade() -> String {
    format!(
        "edges AS ( \
             SELECT f.workflow_execution_id AS run, e.name, count(*)::int AS n \
             FROM f CROSS JOIN LATERAL unnest(f.successors) AS e(name) \
             GROUP BY 1, 2 \
         ), waiting AS ( \
             SELECT t.id, edges.n FROM task_executions t \
             JOIN edges ON t.workflow_execution_id = edges.run AND t.task_name = edges.name \
             WHERE t.status = 'waiting' \
             ORDER BY t.workflow_execution_id, t.task_name FOR UPDATE OF t \
         ), counted AS ( \
             UPDATE task_executions t SET needs_remaining = t.needs_remaining - waiting.n \
             FROM waiting WHERE t.id = waiting.id RETURNING {successor} \
         ), done AS ( \
             SELECT workflow_execution_id AS run, count(*)::int AS n, \
                    count(*) FILTER (WHERE NOT f.exit_handler)::int AS main \
             FROM f GROUP BY 1 \
         ), runs_locked AS ( \
             SELECT w.id, done.n, done.main FROM workflow_executions w JOIN done ON done.run = w.id \
             ORDER BY w.id FOR NO KEY UPDATE OF w \
         ), runs_counted AS ( \
             UPDATE workflow_executions w SET tasks_remaining = w.tasks_remaining - runs_locked.n, \
                 main_remaining = w.main_remaining - runs_locked.main \
             FROM runs_locked WHERE w.id = runs_locked.id \
             RETURNING w.id, w.tasks_remaining, \
                 (w.main_remaining = 0 AND runs_locked.main > 0) AS main_done \
         ), released AS ( \
             UPDATE task_executions t SET needs_remaining = t.needs_remaining - 1 \
             FROM runs_counted WHERE runs_counted.main_done \
               AND t.workflow_execution_id = runs_counted.id AND t.exit_handler \
               AND cardinality(t.needs) = 0 AND t.status = 'waiting' \
             RETURNING {released} \
         ), cascade AS ( \
             SELECT true AS finished, {finished}, runs_counted.tasks_remaining \
             FROM f LEFT JOIN runs_counted ON runs_counted.id = f.workflow_execution_id \
             UNION ALL \
             SELECT false, {ready}, NULL FROM counted WHERE counted.needs_remaining = 0 \
             UNION ALL \
             SELECT false, {released_ready}, NULL FROM released WHERE released.needs_remaining = 0 \
         )",
        successor = crate::prefixed("t", TASK_COLUMNS),
        finished = crate::prefixed("f", TASK_COLUMNS),
        ready = crate::prefixed("counted", TASK_COLUMNS),
        released = crate::prefixed("t", TASK_COLUMNS),
        released_ready = crate::prefixed("released", TASK_COLUMNS),
    )
}

/// Guarded transitions of tasks into terminal states, with their results or
/// errors, and in the same statement what follows from them (see
/// [`cascade`]). A task listed twice finishes once.
///
/// # Errors
/// A database error.
pub async fn finish(
    conn: &mut PgConnection,
    finishes: &[Finish<'_>],
) -> Result<Finished, StoreError> {
    if finishes.is_empty() {
        return Ok(Finished::default());
    }
    let ids: Vec<Uuid> = finishes.iter().map(|f| f.task.as_uuid()).collect();
    let statuses: Vec<&str> = finishes.iter().map(|f| f.to.as_str()).collect();
    let results: Vec<Option<String>> = finishes
        .iter()
        .map(|f| match f.result {
            ResultOf::Value(value) => Some(value.to_string()),
            ResultOf::Nothing | ResultOf::Items => None,
        })
        .collect();
    let of_items: Vec<bool> = finishes
        .iter()
        .map(|f| f.result == ResultOf::Items)
        .collect();
    let errors: Vec<Option<&str>> = finishes.iter().map(|f| f.error).collect();
    // The states each task may leave, as one comma-separated string per row
    // (arrays of arrays do not bind).
    let sources: Vec<String> = finishes
        .iter()
        .map(|f| TaskStatus::source_names(f.to).join(","))
        .collect();
    let rows: Vec<CascadeRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH i AS ( \
             SELECT DISTINCT ON (id) * \
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[]) \
                  AS i(id, status, result, error, sources, items) \
         ), f AS ( \
             UPDATE task_executions t \
             SET status = i.status, error = i.error, \
                 result = CASE WHEN i.items THEN {items} ELSE i.result::jsonb END, \
                 finished_at = clock_timestamp(), decided_at = COALESCE(t.decided_at, clock_timestamp()) \
             FROM i WHERE t.id = i.id AND t.status = ANY(string_to_array(i.sources, ',')) \
             RETURNING {finished} \
         ), {cascade} \
         SELECT * FROM cascade",
        finished = finished_columns(),
        cascade = cascade(),
        items = items_result("t"),
    )))
    .bind(&ids)
    .bind(&statuses)
    .bind(&results)
    .bind(&errors)
    .bind(&sources)
    .bind(&of_items)
    .fetch_all(&mut *conn)
    .await
    .context("finishing tasks")?;
    let finished = Finished::of(rows)?;
    finished.release_locks(conn).await?;
    Ok(finished)
}
