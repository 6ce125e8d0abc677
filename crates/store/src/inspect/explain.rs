//! The facts behind `weft explain`: a run, each task with its spec and
//! what its executions of the current round add up to, and the live
//! workers of the pools it uses. Turning them into sentences is
//! [`weft_common::explain`]'s job; RabbitMQ's figures (queue depth,
//! consumers) are added by the caller, which holds a connection to it.
//!
//! Cost: three statements whatever the width of the run's fan-outs — the
//! run, its tasks with their executions aggregated in SQL (only live
//! executions are counted, through the `(workflow_execution_id, status)`
//! index, and one failed try per task is read), the pools' workers.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use weft_common::explain::{
    FailureFacts, NeedFacts, PoolFacts, RunFacts, TaskFacts, abbreviate, shown_status,
};
use weft_common::{ExecutionStatus, Workflow, WorkflowExecutionId};

use crate::error::{Context, StoreError};
use crate::runs;
use crate::tasks::TaskRow;
use crate::workers;

/// How many characters of a failed item's input are shown.
const INPUT_CHARS: usize = 60;

/// How many of the workers running a task are named.
const WORKERS_NAMED: i32 = 5;

/// A task row with its current round's executions aggregated.
#[derive(Debug, sqlx::FromRow)]
struct TaskState {
    #[sqlx(flatten)]
    task: TaskRow,
    running: i64,
    queued: i64,
    retrying: i64,
    pending: i64,
    next_retry_at: Option<DateTime<Utc>>,
    workers: Vec<String>,
    failed_item: Option<i32>,
    failed_input: Option<Value>,
    failed_attempt: Option<i32>,
    failed_status: Option<String>,
    failed_error: Option<String>,
}

/// What `weft explain --json` prints and `GET /api/v1/runs/{run}/explain`
/// answers: the facts as read, the sentences made of them, and the run's
/// child runs.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    /// The facts, as read.
    pub facts: RunFacts,
    /// One sentence for the run and one per task.
    pub explanation: weft_common::explain::Explanation,
    /// The runs its `workflow:` tasks started.
    pub children: Vec<crate::children::ChildRun>,
}

impl Report {
    /// The report of `facts` (its sentences made now) and `children`.
    #[must_use]
    pub fn new(facts: RunFacts, children: Vec<crate::children::ChildRun>) -> Self {
        Self {
            explanation: facts.explain(),
            facts,
            children,
        }
    }
}

/// The facts about run `id` (`None` if there is no such run); a worker is
/// live when heard from within `grace`.
///
/// # Errors
/// A database error; [`StoreError::Corrupt`] if the run's workflow
/// definition no longer parses.
pub async fn run_facts(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
    grace: Duration,
) -> Result<Option<RunFacts>, StoreError> {
    let Some(run) = runs::get(conn, id).await? else {
        return Ok(None);
    };
    let (source, origin) = runs::definition(conn, run.definition_id).await?;
    let workflow = Workflow::parse_stored(&source, &origin).map_err(|e| StoreError::Corrupt {
        what: "workflow definition",
        detail: format!("run {id}'s workflow no longer parses: {e}"),
    })?;
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&mut *conn)
        .await
        .context("reading the clock")?;
    let rows = task_states(conn, id).await?;
    let shown = |name: &str| {
        rows.iter()
            .find(|r| r.task.task_name == name)
            .map_or("waiting", |r| {
                shown_status(r.task.status, r.running, r.queued, r.pending)
            })
    };
    let mut waits = crate::waits::facts(conn, id).await?;
    let mut tasks = Vec::with_capacity(rows.len());
    for spec in workflow.tasks() {
        let Some(row) = rows.iter().find(|r| r.task.task_name == spec.name()) else {
            continue;
        };
        let needs = spec
            .needs()
            .iter()
            .map(|n| NeedFacts {
                name: n.clone(),
                status: shown(n).to_owned(),
            })
            .collect();
        let mut facts = task_facts(row, spec, needs)?;
        facts.wait = waits
            .iter()
            .position(|(task, _)| task == spec.name())
            .map(|i| waits.swap_remove(i).1);
        if spec.lock().is_some() {
            facts.lock = crate::shared_limits::task_facts(conn, row.task.id).await?;
        }
        tasks.push(facts);
    }
    // Waits run on no pool: the executors keep their time.
    let pools: BTreeSet<String> = workflow
        .tasks()
        .filter(|t| t.wait().is_none())
        .map(|t| t.queue().to_owned())
        .collect();
    let pools: Vec<String> = pools.into_iter().collect();
    let live = workers::live_in_pools(conn, &pools, grace).await?;
    let pools = pools
        .into_iter()
        .map(|name| {
            let serving: Vec<&workers::WorkerRow> =
                live.iter().filter(|w| w.queues.contains(&name)).collect();
            let actions: BTreeSet<String> = serving
                .iter()
                .flat_map(|w| w.actions.iter().cloned())
                .collect();
            PoolFacts {
                live_workers: serving.iter().map(|w| w.id.clone()).collect(),
                actions: actions.into_iter().collect(),
                ready: None,
                consumers: None,
                name,
            }
        })
        .collect();
    let in_flight = match workflow.parallelism() {
        Some(_) => crate::parallelism::in_flight(conn, id).await?,
        None => 0,
    };
    Ok(Some(RunFacts {
        id: run.id,
        workflow: run.workflow_name,
        status: run.status,
        error: run.error,
        created_at: run.created_at,
        started_at: run.started_at,
        finished_at: run.finished_at,
        now,
        parallelism: workflow.parallelism(),
        in_flight,
        limit: crate::shared_limits::facts(conn, id).await?,
        tasks,
        pools,
    }))
}

fn task_facts(
    row: &TaskState,
    spec: &weft_common::Task,
    needs: Vec<NeedFacts>,
) -> Result<TaskFacts, StoreError> {
    let t = &row.task;
    let last_failure = match (&row.failed_status, row.failed_attempt) {
        (Some(status), Some(attempt)) => Some(FailureFacts {
            item_index: row.failed_item,
            input: row.failed_input.as_ref().map_or_else(String::new, |v| {
                // A sealed input (it holds secrets) is shown as `***`.
                let mut shown = v.clone();
                weft_common::secret::redact_sealed(&mut shown);
                abbreviate(&shown, INPUT_CHARS)
            }),
            attempt,
            status: status
                .parse()
                .map_err(|e: weft_common::state::UnknownStatus| StoreError::Corrupt {
                    what: "execution",
                    detail: e.to_string(),
                })?,
            error: row.failed_error.clone(),
        }),
        _ => None,
    };
    Ok(TaskFacts {
        exit_handler: t.exit_handler,
        lock: None,
        name: t.task_name.clone(),
        status: t.status,
        shown_status: shown_status(t.status, row.running, row.queued, row.pending),
        action: spec.action().to_owned(),
        pool: spec.queue().to_owned(),
        trigger: spec.trigger(),
        when: spec.when().map(str::to_owned),
        needs,
        with_items: t.with_items,
        concurrency: t.concurrency,
        items_total: t.items_total,
        items_succeeded: t.items_succeeded,
        items_failed: t.items_failed,
        running: row.running,
        queued: row.queued,
        pending: row.pending,
        retrying: row.retrying,
        next_retry_at: row.next_retry_at,
        workers: row.workers.clone(),
        max_attempts: spec.retry().attempts,
        last_failure,
        error: t.error.clone(),
        decided_at: t.decided_at,
        finished_at: t.finished_at,
        wait: None,
    })
}

/// Every task of a run, each with its current round's live executions
/// counted and its latest failed try.
async fn task_states(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
) -> Result<Vec<TaskState>, StoreError> {
    use ExecutionStatus::{Failed, Pending, Queued, Running, TimedOut};
    let sql = format!(
        "SELECT {task_columns}, \
                COALESCE(e.running, 0) AS running, COALESCE(e.queued, 0) AS queued, \
                COALESCE(e.retrying, 0) AS retrying, COALESCE(e.pending, 0) AS pending, \
                e.next_retry_at, COALESCE(e.workers, '{{}}') AS workers, \
                f.item_index AS failed_item, f.input AS failed_input, \
                f.attempt - t.attempt_base AS failed_attempt, f.status AS failed_status, \
                f.error AS failed_error \
         FROM task_executions t \
         LEFT JOIN LATERAL ( \
             SELECT count(*) FILTER (WHERE status = '{running}') AS running, \
                    count(*) FILTER (WHERE status = '{queued}' AND (due_at IS NULL OR due_at <= now())) AS queued, \
                    count(*) FILTER (WHERE status = '{queued}' AND due_at > now()) AS retrying, \
                    count(*) FILTER (WHERE status = '{pending}') AS pending, \
                    min(due_at) FILTER (WHERE status = '{queued}' AND due_at > now()) AS next_retry_at, \
                    (array_agg(DISTINCT worker_id) FILTER (WHERE status = '{running}' AND worker_id IS NOT NULL))[1:{WORKERS_NAMED}] AS workers \
             FROM executions \
             WHERE workflow_execution_id = t.workflow_execution_id AND task_execution_id = t.id \
               AND status IN ('{pending}', '{queued}', '{running}') AND attempt > t.attempt_base \
         ) e ON true \
         LEFT JOIN LATERAL ( \
             SELECT item_index, input, attempt, status, error FROM executions \
             WHERE workflow_execution_id = t.workflow_execution_id AND task_execution_id = t.id \
               AND status IN ('{failed}', '{timed_out}') AND attempt > t.attempt_base \
             ORDER BY finished_at DESC NULLS LAST, item_index LIMIT 1 \
         ) f ON true \
         WHERE t.workflow_execution_id = $1",
        task_columns = crate::prefixed("t", crate::tasks::TASK_COLUMNS),
        running = Running.as_str(),
        queued = Queued.as_str(),
        pending = Pending.as_str(),
        failed = Failed.as_str(),
        timed_out = TimedOut.as_str(),
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id.as_uuid())
        .fetch_all(conn)
        .await
        .context("reading a run's tasks and their executions")
}
