//! Sub-workflows: child runs started by `workflow:` tasks.
//!
//! - At submit, [`store_bundle`] stores every workflow a run may start
//!   (content-addressed, like any definition) and the run's `links`: which
//!   definition each `workflow:` task of each definition starts.
//! - An executor that receives the dispatch of such a task calls
//!   [`start_child`]: one statement moves the execution `queued → running`
//!   (guarded) and inserts the child run, which carries the execution's id
//!   under a unique index — a redelivered or duplicated dispatch finds the
//!   guard flipped (or the index taken) and starts nothing.
//! - When the child ends, [`runs::end_many`](crate::runs::end_many) writes
//!   the parent execution's completion in the same statement (see
//!   [`parents_of`]), so the parent advances through the completion path
//!   a worker's report takes.
//! - Cancelling a run cancels its live children (and theirs), see
//!   [`crate::cancel::request`]; the reaper timing out a parent execution
//!   cancels its child ([`cancel_children_of`]).

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::{Bundle, ExecutionId, ExecutionStatus, WorkflowExecutionId, WorkflowStatus};

use crate::error::{Context, StoreError};
use crate::runs::{self, definition_id};

/// The `links` of a bundle: `{definition: {task: definition}}` for every
/// workflow of it that starts sub-workflows; `None` if none does.
///
/// # Errors
/// [`StoreError::Bundle`] when two files of the bundle have the same text
/// (so the same definition) but their `workflow:` paths, relative to
/// different folders, reach different files: a run could not tell which.
pub fn links_of(bundle: &Bundle) -> Result<Option<Value>, StoreError> {
    let mut links: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in bundle.files() {
        if file.calls.is_empty() {
            continue;
        }
        let calls: BTreeMap<String, String> = file
            .calls
            .iter()
            .map(|(task, child)| {
                let source = &bundle.files()[*child].source;
                (task.clone(), definition_id(source).to_string())
            })
            .collect();
        let key = definition_id(&file.source).to_string();
        if let Some(earlier) = links.get(&key)
            && *earlier != calls
        {
            return Err(StoreError::Bundle(format!(
                "{} has the same text as another file of the run but its `workflow:` paths reach other files; \
                 give the copies different names or contents",
                file.origin
            )));
        }
        links.insert(key, calls);
    }
    if links.is_empty() {
        return Ok(None);
    }
    serde_json::to_value(links)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            what: "run links",
            detail: e.to_string(),
        })
}

/// Stores the definitions of a bundle's sub-workflows (each once, like
/// any definition) and the run's `links`. Call it in the transaction that
/// submits the run, after the submit, so the run's start message commits
/// with them.
///
/// # Errors
/// A database error.
pub async fn store_bundle(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
    bundle: &Bundle,
    links: &Value,
) -> Result<(), StoreError> {
    let files = &bundle.files()[1..];
    let ids: Vec<Uuid> = files.iter().map(|f| definition_id(&f.source)).collect();
    let names: Vec<&str> = files.iter().map(|f| f.workflow.name()).collect();
    let sources: Vec<&str> = files.iter().map(|f| f.source.as_str()).collect();
    let origins: Vec<&str> = files.iter().map(|f| f.origin.as_str()).collect();
    sqlx::query(
        "WITH d AS ( \
             INSERT INTO workflow_definitions (id, name, source, origin) \
             SELECT * FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[]) \
             ON CONFLICT (id) DO NOTHING \
         ) \
         UPDATE workflow_executions SET links = $6 WHERE id = $1",
    )
    .bind(run.as_uuid())
    .bind(&ids)
    .bind(&names)
    .bind(&sources)
    .bind(&origins)
    .bind(links)
    .execute(conn)
    .await
    .context("storing a run's sub-workflows")?;
    Ok(())
}

/// What starting a child needs to know of the parent run.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Lineage {
    /// The parent's definition.
    pub definition_id: Uuid,
    /// The parent's depth (0 for a submitted run).
    pub depth: i32,
    /// The parent's links (see [`links_of`]).
    pub links: Option<Value>,
}

impl Lineage {
    /// The definition `task` of the parent starts, if the run's links
    /// name it.
    #[must_use]
    pub fn child_definition(&self, task: &str) -> Option<Uuid> {
        self.links
            .as_ref()?
            .get(self.definition_id.to_string())?
            .get(task)?
            .as_str()?
            .parse()
            .ok()
    }
}

/// Reads a run's lineage.
///
/// # Errors
/// A database error; [`StoreError::Corrupt`] if the run does not exist.
pub async fn lineage(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<Lineage, StoreError> {
    sqlx::query_as("SELECT definition_id, depth, links FROM workflow_executions WHERE id = $1")
        .bind(run.as_uuid())
        .fetch_optional(conn)
        .await
        .context("reading a run's lineage")?
        .ok_or_else(|| StoreError::Corrupt {
            what: "run",
            detail: format!("run {run} does not exist"),
        })
}

/// A child run to start for a parent execution.
#[derive(Debug, Clone)]
pub struct NewChild<'a> {
    /// The child run's id.
    pub id: WorkflowExecutionId,
    /// The parent execution it carries out.
    pub execution: ExecutionId,
    /// The attempt the dispatch was for.
    pub attempt: i32,
    /// The parent run.
    pub parent: WorkflowExecutionId,
    /// The child's definition (stored at submit).
    pub definition_id: Uuid,
    /// The child's workflow name.
    pub workflow_name: &'a str,
    /// The child's resolved input.
    pub input: &'a Value,
    /// Its number of tasks.
    pub tasks_total: i32,
    /// Its depth (the parent's + 1).
    pub depth: i32,
    /// The links it inherits from the parent.
    pub links: Option<&'a Value>,
}

/// Moves the parent execution `queued → running` (guarded, at the
/// dispatched attempt; its deadline is its timeout from now, enforced by
/// the reaper) and inserts the child run `pending`, in one statement.
/// `false`: the execution was not queued at that attempt (a duplicate
/// dispatch, or it was canceled) or already has a child — nothing was
/// written. The caller writes the child's `workflow.submitted` to the
/// outbox in the same transaction when this returns `true`.
///
/// # Errors
/// A database error.
pub async fn start_child(
    conn: &mut PgConnection,
    child: &NewChild<'_>,
) -> Result<bool, StoreError> {
    let started: Option<Uuid> = sqlx::query_scalar(
        "WITH e AS ( \
             UPDATE executions \
             SET status = $3, started_at = clock_timestamp(), seen_at = clock_timestamp(), \
                 deadline = clock_timestamp() + make_interval(secs => timeout_ms::float8 / 1000) \
             WHERE id = $1 AND attempt = $2 AND status = ANY($4) \
             RETURNING id \
         ) \
         INSERT INTO workflow_executions \
             (id, definition_id, workflow_name, input, tasks_total, tasks_remaining, \
              parent_run_id, parent_execution_id, depth, links) \
         SELECT $5, $6, $7, $8, $9, $9, $10, e.id, $11, $12 FROM e \
         ON CONFLICT (parent_execution_id) DO NOTHING \
         RETURNING id",
    )
    .bind(child.execution.as_uuid())
    .bind(child.attempt)
    .bind(ExecutionStatus::Running.as_str())
    .bind(ExecutionStatus::source_names(ExecutionStatus::Running))
    .bind(child.id.as_uuid())
    .bind(child.definition_id)
    .bind(child.workflow_name)
    .bind(child.input)
    .bind(child.tasks_total)
    .bind(child.parent.as_uuid())
    .bind(child.depth)
    .bind(child.links)
    .fetch_optional(conn)
    .await
    .context("starting a child run")?;
    Ok(started.is_some())
}

/// The parent execution a child run carries out.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ParentLink {
    /// The child run.
    #[sqlx(try_from = "Uuid")]
    pub child: WorkflowExecutionId,
    /// The parent execution.
    #[sqlx(try_from = "Uuid")]
    pub execution: ExecutionId,
    /// The parent run.
    #[sqlx(try_from = "Uuid")]
    pub parent: WorkflowExecutionId,
    /// The execution's attempt.
    pub attempt: i32,
}

/// The parent executions of those of `runs` that are child runs.
///
/// # Errors
/// A database error.
pub async fn parents_of(
    conn: &mut PgConnection,
    runs: &[WorkflowExecutionId],
) -> Result<Vec<ParentLink>, StoreError> {
    let ids: Vec<Uuid> = runs.iter().map(|r| r.as_uuid()).collect();
    sqlx::query_as(
        "SELECT w.id AS child, e.id AS execution, e.workflow_execution_id AS parent, e.attempt \
         FROM workflow_executions w JOIN executions e ON e.id = w.parent_execution_id \
         WHERE w.id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await
    .context("reading child runs' parents")
}

/// The live child runs (pending or running) of `run`, in id order.
///
/// # Errors
/// A database error.
pub async fn live_children(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<Vec<WorkflowExecutionId>, StoreError> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM workflow_executions WHERE parent_run_id = $1 AND status = ANY($2) ORDER BY id",
    )
    .bind(run.as_uuid())
    .bind(dispatching())
    .fetch_all(conn)
    .await
    .context("finding a run's live children")?;
    Ok(ids.into_iter().map(WorkflowExecutionId::from).collect())
}

/// Cancels the live child run of each of `executions` (and its children):
/// the reaper ended those executions (timed out), so nothing waits for
/// their children any more. Returns how many runs it asked to cancel.
///
/// # Errors
/// A database error.
pub async fn cancel_children_of(
    conn: &mut PgConnection,
    executions: &[ExecutionId],
) -> Result<usize, StoreError> {
    let ids: Vec<Uuid> = executions.iter().map(|e| e.as_uuid()).collect();
    let children: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM workflow_executions WHERE parent_execution_id = ANY($1) AND status = ANY($2) \
         ORDER BY id",
    )
    .bind(&ids)
    .bind(dispatching())
    .fetch_all(&mut *conn)
    .await
    .context("finding the child runs of executions")?;
    for child in &children {
        crate::cancel::request(&mut *conn, WorkflowExecutionId::from(*child)).await?;
    }
    Ok(children.len())
}

/// The statuses of a run that may still start work.
fn dispatching() -> Vec<&'static str> {
    weft_common::state::WorkflowStatus::ALL
        .iter()
        .filter(|s| s.dispatches())
        .map(|s| s.as_str())
        .collect()
}

/// A child run, as `weft status` lists it under its parent.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChildRun {
    /// The child run.
    #[sqlx(try_from = "Uuid")]
    pub id: WorkflowExecutionId,
    /// Its workflow.
    pub workflow_name: String,
    /// Where it stands.
    #[sqlx(try_from = "String")]
    pub status: WorkflowStatus,
    /// The parent task that started it.
    pub task_name: String,
    /// The item of that task, for a fan-out.
    pub item_index: Option<i32>,
    /// The attempt of that task.
    pub attempt: i32,
}

/// The child runs of `run`, by task, item and attempt.
///
/// # Errors
/// A database error.
pub async fn children(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<Vec<ChildRun>, StoreError> {
    sqlx::query_as(
        "SELECT w.id, w.workflow_name, w.status, t.task_name, e.item_index, e.attempt \
         FROM workflow_executions w \
         JOIN executions e ON e.id = w.parent_execution_id \
         JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE w.parent_run_id = $1 \
         ORDER BY t.task_name, e.item_index NULLS FIRST, e.attempt",
    )
    .bind(run.as_uuid())
    .fetch_all(conn)
    .await
    .context("listing a run's child runs")
}

/// The run that started `run` and `run`'s depth; `None` for a submitted
/// run.
///
/// # Errors
/// A database error.
pub async fn parent_of(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<Option<(WorkflowExecutionId, i32)>, StoreError> {
    let row: Option<(Option<Uuid>, i32)> =
        sqlx::query_as("SELECT parent_run_id, depth FROM workflow_executions WHERE id = $1")
            .bind(run.as_uuid())
            .fetch_optional(conn)
            .await
            .context("reading a run's parent")?;
    Ok(row.and_then(|(parent, depth)| parent.map(|p| (WorkflowExecutionId::from(p), depth))))
}

/// Stores a submitted run (see [`runs::submit`]). For a workflow that
/// starts sub-workflows, the run (its `source` is the bundle's root), its
/// start message, the sub-workflows' definitions and the run's links (see
/// [`links_of`]) commit in one transaction, so an executor never starts a
/// run whose links are missing. The start message's `NOTIFY` wakes the
/// executors' relays to publish it: the submitter needs no broker.
///
/// # Errors
/// A database error; [`StoreError::Bundle`] if the bundle's links are
/// ambiguous.
pub async fn submit_bundle(
    pool: &sqlx::PgPool,
    run: &runs::NewRun<'_>,
    bundle: &Bundle,
) -> Result<runs::Submitted, StoreError> {
    let Some(links) = links_of(bundle)? else {
        // One statement stores the run and its message: it commits alone.
        let mut conn = pool
            .acquire()
            .await
            .context("reaching the database to submit")?;
        return runs::submit(&mut conn, run).await;
    };
    let mut tx = pool
        .begin()
        .await
        .context("beginning a transaction to submit")?;
    let submitted = runs::submit(&mut tx, run).await?;
    if let runs::Submitted::Created(id) = submitted {
        store_bundle(&mut tx, id, bundle, &links).await?;
    }
    tx.commit().await.context("committing a submit")?;
    Ok(submitted)
}
