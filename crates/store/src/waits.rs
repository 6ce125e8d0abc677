//! Durable waits (`wait:` tasks): the `waits` rows and their guards.
//!
//! A wait is an execution moved `queued → running` with no worker, a row
//! here, and (when it ends by itself) a `wait.due` message in the outbox
//! due at its time ([ADR 0015](../../../docs/decisions/0015-durable-waits-and-signals.md)).
//! It ends once, by whichever comes first:
//! - its due time: the executor applying `wait.due` sets the row's
//!   `resolution` ([`resolve_due`]) and records the execution's end in the
//!   same transaction;
//! - a signal, an approval or a rejection: [`deliver`] sets `resolution`
//!   and writes the execution's `execution.completed` to the outbox in
//!   one transaction, which an executor then applies as a worker's report;
//! - the run's cancellation, which cancels its open waits at once
//!   ([`cancel_open`]).
//!
//! `resolution` is set only by `UPDATE … WHERE resolution IS NULL`: the
//! row lock orders the contenders and the loser changes nothing, so a
//! signal is never applied twice and never after its timeout. The run's
//! row is read `FOR KEY SHARE` first, as every dispatching transaction
//! does, so a cancellation cannot slip between a delivery and its commit.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::message::ExecutionCompleted;
use weft_common::wait::{Delivery, Resolution, WaitFacts, WaitMode};
use weft_common::{
    Envelope, ExecutionId, ExecutionStatus, TaskStatus, Workflow, WorkflowExecutionId,
    WorkflowStatus,
};

use crate::error::{Context, StoreError};
use crate::outbox;
use crate::runs::{self, RunLock};

/// A wait to start.
#[derive(Debug, Clone)]
pub struct NewWait<'a> {
    /// The execution that waits.
    pub execution: ExecutionId,
    /// The attempt its dispatch carried.
    pub attempt: i32,
    /// Its run.
    pub run: WorkflowExecutionId,
    /// What it waits for.
    pub mode: WaitMode,
    /// The signal's name (`approval` for approvals).
    pub signal: Option<&'a str>,
}

/// Moves a wait task's execution `queued → running` (guarded, at the
/// dispatched attempt; no worker and no deadline, so the reaper leaves it
/// alone) and returns when it started, by the database's clock — the
/// instant its due time counts from. `None`: it was not queued at that
/// attempt (a duplicated dispatch, or it was canceled); nothing changed.
///
/// # Errors
/// A database error.
pub async fn begin(
    conn: &mut PgConnection,
    execution: ExecutionId,
    attempt: i32,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    sqlx::query_scalar(
        "UPDATE executions \
         SET status = $3, started_at = clock_timestamp(), seen_at = clock_timestamp(), deadline = NULL \
         WHERE id = $1 AND attempt = $2 AND status = ANY($4) \
         RETURNING started_at",
    )
    .bind(execution.as_uuid())
    .bind(attempt)
    .bind(ExecutionStatus::Running.as_str())
    .bind(ExecutionStatus::source_names(ExecutionStatus::Running))
    .fetch_optional(conn)
    .await
    .context("starting a wait")
}

/// Records the wait of an execution [`begin`] moved to `running`, due at
/// `due_at` (`None`: only a delivery ends it). An execution has one wait;
/// a second insert changes nothing.
///
/// # Errors
/// A database error.
pub async fn insert(
    conn: &mut PgConnection,
    wait: &NewWait<'_>,
    due_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO waits (execution_id, workflow_execution_id, mode, signal, due_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (execution_id) DO NOTHING",
    )
    .bind(wait.execution.as_uuid())
    .bind(wait.run.as_uuid())
    .bind(wait.mode.as_str())
    .bind(wait.signal)
    .bind(due_at)
    .execute(conn)
    .await
    .context("recording a wait")?;
    Ok(())
}

/// A wait whose due time came, claimed by [`resolve_due`].
#[derive(Debug, Clone)]
pub struct Due {
    /// What it waited for.
    pub mode: WaitMode,
    /// The time that came.
    pub due_at: DateTime<Utc>,
    /// How it ended: `elapsed` (a timer) or `timed_out`.
    pub resolution: Resolution,
}

/// Ends an open wait of `execution` at `attempt` because its due time
/// came: a timer `elapsed`, a signal or an approval `timed_out`. Guarded:
/// `None` when it was already resolved (a delivery came first, or this is
/// a duplicated `wait.due`) or its execution is no longer running — the
/// caller does nothing. The caller records the execution's end in the same
/// transaction.
///
/// # Errors
/// A database error; [`StoreError::Corrupt`] for an unknown mode.
pub async fn resolve_due(
    conn: &mut PgConnection,
    execution: ExecutionId,
    attempt: i32,
) -> Result<Option<Due>, StoreError> {
    let row: Option<(String, Option<DateTime<Utc>>, String)> = sqlx::query_as(
        "UPDATE waits w \
         SET resolution = CASE WHEN w.mode = $3 THEN $4 ELSE $5 END, resolved_at = clock_timestamp() \
         FROM executions e \
         WHERE w.execution_id = $1 AND e.id = w.execution_id AND e.attempt = $2 \
           AND e.status = $6 AND w.resolution IS NULL AND w.due_at IS NOT NULL \
         RETURNING w.mode, w.due_at, w.resolution",
    )
    .bind(execution.as_uuid())
    .bind(attempt)
    .bind(WaitMode::Timer.as_str())
    .bind(Resolution::Elapsed.as_str())
    .bind(Resolution::TimedOut.as_str())
    .bind(ExecutionStatus::Running.as_str())
    .fetch_optional(conn)
    .await
    .context("ending a wait at its time")?;
    let Some((mode, due_at, resolution)) = row else {
        return Ok(None);
    };
    let corrupt = |detail: String| StoreError::Corrupt {
        what: "wait",
        detail,
    };
    Ok(Some(Due {
        mode: WaitMode::from_name(&mode)
            .ok_or_else(|| corrupt(format!("unknown wait mode `{mode}`")))?,
        due_at: due_at.unwrap_or_else(Utc::now),
        resolution: Resolution::from_name(&resolution)
            .ok_or_else(|| corrupt(format!("unknown wait resolution `{resolution}`")))?,
    }))
}

/// Cancels the open waits of a `canceling` run at once (its exit
/// handlers' excepted, as `cancel::settle` excepts them): they have no
/// worker to stop. A `wait.due` or a delivery that comes later finds the
/// execution canceled and changes nothing. Returns how many it canceled.
///
/// # Errors
/// A database error.
pub async fn cancel_open(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<usize, StoreError> {
    let done = sqlx::query(
        "UPDATE executions e SET status = $2, finished_at = clock_timestamp(), \
             error = 'canceled while waiting' \
         FROM waits w, task_executions t \
         WHERE w.workflow_execution_id = $1 AND e.id = w.execution_id AND e.status = $3 \
           AND t.id = e.task_execution_id AND NOT t.exit_handler",
    )
    .bind(run.as_uuid())
    .bind(ExecutionStatus::Canceled.as_str())
    .bind(ExecutionStatus::Running.as_str())
    .execute(conn)
    .await
    .context("canceling a run's waits")?;
    Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
}

/// The open or latest wait of each of a run's tasks, for `status` and
/// `explain`: (task name, facts).
///
/// # Errors
/// A database error.
pub async fn facts(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<Vec<(String, WaitFacts)>, StoreError> {
    let rows: Vec<WaitRow> = sqlx::query_as(
        "SELECT DISTINCT ON (t.task_name) t.task_name AS task, w.mode, w.signal, w.due_at, w.resolution \
         FROM waits w JOIN executions e ON e.id = w.execution_id \
              JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE w.workflow_execution_id = $1 \
         ORDER BY t.task_name, e.attempt DESC",
    )
    .bind(run.as_uuid())
    .fetch_all(conn)
    .await
    .context("reading a run's waits")?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some((
                r.task,
                WaitFacts {
                    mode: WaitMode::from_name(&r.mode)?,
                    signal: r.signal,
                    due_at: r.due_at,
                    resolution: r.resolution.as_deref().and_then(Resolution::from_name),
                },
            ))
        })
        .collect())
}

/// A task's latest wait as read for [`facts`].
#[derive(sqlx::FromRow)]
struct WaitRow {
    task: String,
    mode: String,
    signal: Option<String>,
    due_at: Option<DateTime<Utc>>,
    resolution: Option<String>,
}

/// What a delivery (`weft signal`, `approve`, `reject`) did.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivered {
    /// Recorded; an executor ends the task's attempt with it.
    Accepted {
        /// How the wait ended.
        resolution: Resolution,
        /// The attempt it ended.
        attempt: i32,
        /// The result the task gets (a signal's payload, an approval).
        result: Option<Value>,
    },
    /// Refused; the sentence says why (the task keeps waiting unless it
    /// was not waiting).
    Refused(Refusal),
    /// No run has this id.
    NotFound,
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `not_waiting`, `already_delivered`, `invalid` (a payload or a kind
    /// of delivery the wait does not take), `unknown_task`.
    pub reason: &'static str,
    /// The sentence.
    pub message: String,
}

/// The answer to a delivery, as `weft signal` prints it and `POST
/// /api/v1/runs/{run}/tasks/{task}/signal` answers it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Signaled {
    /// The run.
    pub id: WorkflowExecutionId,
    /// The task.
    pub task: String,
    /// `signaled`, `approved` or `rejected`.
    pub resolution: Resolution,
    /// The attempt it ended.
    pub attempt: i32,
    /// The result the task gets, if it succeeds.
    pub result: Option<Value>,
    /// The sentence the CLI prints.
    pub message: String,
}

impl Delivered {
    /// The answer for run `id`'s task `task`: `Ok` when accepted, `Err`
    /// with the refusal otherwise (`None`: no such run).
    ///
    /// # Errors
    /// The refusal.
    pub fn outcome(self, id: WorkflowExecutionId, task: &str) -> Result<Signaled, Option<Refusal>> {
        match self {
            Self::Accepted {
                resolution,
                attempt,
                result,
            } => Ok(Signaled {
                id,
                task: task.to_owned(),
                resolution,
                attempt,
                message: format!(
                    "{id}: task `{task}` {resolution} (attempt {attempt}); an executor records it next"
                ),
                result,
            }),
            Self::Refused(r) => Err(Some(r)),
            Self::NotFound => Err(None),
        }
    }
}

fn refused(reason: &'static str, message: String) -> Delivered {
    Delivered::Refused(Refusal { reason, message })
}

/// [`deliver`] in a transaction of its own, run again on a transient error
/// (what `weft signal` and the API do).
///
/// # Errors
/// A database error.
pub async fn deliver_committed(
    pool: &sqlx::PgPool,
    run: WorkflowExecutionId,
    task: &str,
    delivery: &Delivery,
) -> Result<Delivered, StoreError> {
    crate::transact::retrying(|| deliver_once(pool, run, task, delivery.clone())).await
}

async fn deliver_once(
    pool: &sqlx::PgPool,
    run: WorkflowExecutionId,
    task: &str,
    delivery: Delivery,
) -> Result<Delivered, StoreError> {
    let mut tx = pool.begin().await.context("beginning a transaction")?;
    let delivered = deliver(&mut tx, run, task, delivery).await?;
    tx.commit().await.context("committing a transaction")?;
    Ok(delivered)
}

/// The task's latest wait (or the lack of one).
#[derive(sqlx::FromRow)]
struct Current {
    task_status: String,
    execution_id: Option<Uuid>,
    attempt: Option<i32>,
    execution_status: Option<String>,
    has_wait: bool,
    resolution: Option<String>,
}

/// Delivers a signal, an approval or a rejection to run `run`'s task
/// `task`: checks it against the task's `wait:` (a signal's payload field
/// by field), then — guarded: the task's latest execution is running with
/// an open wait — records it on the wait and writes the execution's end
/// (`execution.completed`) to the outbox, waking the relays on commit.
/// Refused, changing nothing, when the run is not running, the task does
/// not wait or is not waiting now (its state named), the wait was already
/// resolved (a duplicate), or the delivery does not fit.
///
/// # Errors
/// A database error.
pub async fn deliver(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
    task: &str,
    delivery: Delivery,
) -> Result<Delivered, StoreError> {
    let Some(row) = runs::get(&mut *conn, run).await? else {
        return Ok(Delivered::NotFound);
    };
    // Held until the commit: a cancellation request waits for this
    // transaction, or came first and is seen here.
    let status = runs::status(&mut *conn, run, RunLock::Dispatch).await?;
    let (source, origin) = runs::definition(&mut *conn, row.definition_id).await?;
    let workflow = Workflow::parse_stored(&source, &origin).map_err(|d| StoreError::Corrupt {
        what: "run",
        detail: format!("the stored workflow of run {run} no longer parses: {d}"),
    })?;
    let Some(spec) = workflow.task(task) else {
        let known: Vec<&str> = workflow.tasks().map(weft_common::Task::name).collect();
        return Ok(refused(
            "unknown_task",
            format!(
                "run {run} has no task `{task}`; its tasks are: {}",
                known.join(", ")
            ),
        ));
    };
    let Some(wait) = spec.wait() else {
        return Ok(refused(
            "not_waiting",
            format!(
                "task `{task}` does not wait for a signal: it runs `{}`",
                spec.action()
            ),
        ));
    };
    if !(status == WorkflowStatus::Running
        || (status == WorkflowStatus::Canceling && spec.is_exit_handler()))
    {
        return Ok(refused(
            "not_waiting",
            format!(
                "run {run} is {status}: task `{task}` takes nothing now, not even {}",
                delivery.what()
            ),
        ));
    }
    let current: Option<Current> = sqlx::query_as(
        "SELECT t.status AS task_status, e.id AS execution_id, e.attempt, e.status AS execution_status, \
                (w.execution_id IS NOT NULL) AS has_wait, w.resolution \
         FROM task_executions t \
         LEFT JOIN LATERAL (SELECT id, attempt, status FROM executions \
                            WHERE task_execution_id = t.id ORDER BY attempt DESC LIMIT 1) e ON true \
         LEFT JOIN waits w ON w.execution_id = e.id \
         WHERE t.workflow_execution_id = $1 AND t.task_name = $2",
    )
    .bind(run.as_uuid())
    .bind(task)
    .fetch_optional(&mut *conn)
    .await
    .context("reading a task's wait")?;
    let Some(current) = current else {
        return Ok(refused(
            "not_waiting",
            format!("task `{task}` of run {run} has not been created yet"),
        ));
    };
    let not_waiting = |why: String| Ok(refused("not_waiting", why));
    let (Some(execution), Some(attempt)) = (current.execution_id, current.attempt) else {
        let why = if current.task_status == TaskStatus::Waiting.as_str() {
            " (its needs are not done, so its wait has not started)"
        } else {
            ""
        };
        return not_waiting(format!(
            "task `{task}` is {}{why}: it is not waiting for {}",
            current.task_status,
            delivery.what()
        ));
    };
    let terminal = current
        .task_status
        .parse::<TaskStatus>()
        .is_ok_and(TaskStatus::is_terminal);
    if terminal {
        let ended = current
            .resolution
            .as_deref()
            .map(|r| format!(" (its wait ended: {r})"))
            .unwrap_or_default();
        return not_waiting(format!(
            "task `{task}` is {}{ended}: it is not waiting for {}",
            current.task_status,
            delivery.what()
        ));
    }
    if let Some(resolution) = current.resolution.as_deref() {
        return Ok(refused(
            "already_delivered",
            format!(
                "task `{task}` (attempt {attempt}) already ended its wait ({resolution}); a second {} is not applied",
                delivery
                    .what()
                    .trim_start_matches("a ")
                    .trim_start_matches("an ")
            ),
        ));
    }
    let running = ExecutionStatus::Running.as_str();
    if current.task_status != TaskStatus::Running.as_str()
        || current.execution_status.as_deref() != Some(running)
        || !current.has_wait
    {
        let state = match current.execution_status.as_deref() {
            Some(s) if current.task_status == TaskStatus::Running.as_str() => {
                format!("running (attempt {attempt} is {s}, its wait has not started)")
            }
            _ => current.task_status.clone(),
        };
        return not_waiting(format!(
            "task `{task}` is {state}: it is not waiting for {}",
            delivery.what()
        ));
    }
    let by = match &delivery {
        Delivery::Approve { by, .. } | Delivery::Reject { by, .. } => Some(by.clone()),
        Delivery::Signal(_) => None,
    };
    let ending = match wait.resolve(task, delivery) {
        Ok(ending) => ending,
        Err(why) => return Ok(refused("invalid", why)),
    };
    // The guard: only an open wait of a running execution takes it. A
    // concurrent delivery or due time that resolved it first made this
    // match nothing.
    let taken: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE waits SET resolution = $2, resolved_at = clock_timestamp(), payload = $3, resolved_by = $4 \
         WHERE execution_id = $1 AND resolution IS NULL \
           AND EXISTS (SELECT 1 FROM executions e WHERE e.id = $1 AND e.status = $5) \
         RETURNING resolved_at",
    )
    .bind(execution)
    .bind(ending.resolution.as_str())
    .bind(ending.result.as_ref())
    .bind(by.as_deref())
    .bind(running)
    .fetch_optional(&mut *conn)
    .await
    .context("recording a signal")?;
    // The attempt ends when the delivery was taken, by the database's
    // clock (what `weft audit` compares it with).
    let Some(taken_at) = taken else {
        return Ok(refused(
            "already_delivered",
            format!(
                "task `{task}` (attempt {attempt}) ended its wait meanwhile; this delivery is not applied"
            ),
        ));
    };
    let completed = Envelope::new(ExecutionCompleted {
        execution_id: ExecutionId::from(execution),
        workflow_execution_id: run,
        attempt: u32::try_from(attempt).unwrap_or(0),
        status: ending.status,
        result: ending.result.clone(),
        error: ending.error.clone(),
        worker_id: delivered_by(ending.resolution, by.as_deref()),
        started_at: None,
        finished_at: taken_at,
        logs: None,
    });
    outbox::enqueue(&mut *conn, &[(completed, None)], None).await?;
    outbox::notify(&mut *conn).await?;
    Ok(Delivered::Accepted {
        resolution: ending.resolution,
        attempt,
        result: ending.result,
    })
}

/// What a wait's execution records as its worker: what ended it.
#[must_use]
pub fn delivered_by(resolution: Resolution, by: Option<&str>) -> String {
    match by {
        Some(by) => format!("{resolution}:{by}"),
        None => resolution.as_str().to_owned(),
    }
}
