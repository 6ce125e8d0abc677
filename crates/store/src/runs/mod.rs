//! `workflow_definitions` and `workflow_executions`: submitting, starting,
//! finishing and reading runs.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::message::{ExecutionCompleted, WorkflowFinished, WorkflowSubmitted};
use weft_common::{Envelope, RunRef, WorkflowExecutionId, WorkflowStatus};

use crate::error::{Context, StoreError};
use crate::outbox;

mod resolving;
mod submitting;

pub use resolving::{CANDIDATES_SHOWN, Resolved, resolve};
pub use submitting::{Handoff, NewRun, Submitted, definition_id, submit, submit_leased};

/// A run as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    /// The run's id.
    #[sqlx(try_from = "Uuid")]
    pub id: WorkflowExecutionId,
    /// The content-addressed definition it runs.
    pub definition_id: Uuid,
    /// The workflow's name.
    pub workflow_name: String,
    /// Where it stands.
    #[sqlx(try_from = "String")]
    pub status: WorkflowStatus,
    /// The resolved input.
    pub input: Value,
    /// The rendered output, whatever the outcome (`null` parts: see `error`).
    pub output: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// The client's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// Number of tasks.
    pub tasks_total: i32,
    /// Tasks not yet terminal.
    pub tasks_remaining: i32,
    /// 1, +1 per `weft retry`.
    pub run_attempt: i32,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When the executor started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it became terminal.
    pub finished_at: Option<DateTime<Utc>>,
    /// The tick it is for, when a schedule started it
    /// (`workflow.scheduled_at`).
    pub scheduled_at: Option<DateTime<Utc>>,
    /// The key it waited under or held of its workflow's `limit:`
    /// (`customer=acme`), once it got in line.
    pub limit_key: Option<String>,
}

pub(crate) const RUN_COLUMNS: &str = "id, definition_id, workflow_name, status, input, output, error, idempotency_key, \
     tasks_total, tasks_remaining, run_attempt, created_at, started_at, finished_at, scheduled_at, limit_key";

/// Reads a definition's source and origin.
///
/// # Errors
/// A database error; [`StoreError::Corrupt`] if it does not exist.
pub async fn definition(conn: &mut PgConnection, id: Uuid) -> Result<(String, String), StoreError> {
    sqlx::query_as("SELECT source, origin FROM workflow_definitions WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
        .context("reading a workflow definition")?
        .ok_or_else(|| StoreError::Corrupt {
            what: "run",
            detail: format!("definition {id} is missing"),
        })
}

/// Reads one run.
///
/// # Errors
/// A database error.
pub async fn get(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
) -> Result<Option<RunRow>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM workflow_executions WHERE id = $1"
    )))
    .bind(id.as_uuid())
    .fetch_optional(conn)
    .await
    .context("reading a run")
}

/// The newest runs, optionally only those of one status and of one
/// workflow (by name).
///
/// # Errors
/// A database error.
pub async fn list(
    conn: &mut PgConnection,
    status: Option<WorkflowStatus>,
    workflow: Option<&str>,
    limit: i64,
) -> Result<Vec<RunRow>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM workflow_executions \
         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR workflow_name = $2) \
         ORDER BY created_at DESC, id DESC LIMIT $3"
    )))
    .bind(status.map(WorkflowStatus::as_str))
    .bind(workflow)
    .bind(limit)
    .fetch_all(conn)
    .await
    .context("listing runs")
}

/// Locks the rows of those of `ids` that are still `pending`, in id order,
/// `FOR UPDATE` until the transaction ends, and returns them: a start
/// decides what to do with each (its shared limit, see
/// [`crate::shared_limits::admit`]) before [`start_many`] moves it.
///
/// # Errors
/// A database error.
pub async fn lock_pending(
    conn: &mut PgConnection,
    ids: &[WorkflowExecutionId],
) -> Result<Vec<RunRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM workflow_executions WHERE id = ANY($1) AND status = $2 \
         ORDER BY id FOR UPDATE"
    )))
    .bind(&ids)
    .bind(WorkflowStatus::Pending.as_str())
    .fetch_all(conn)
    .await
    .context("locking pending runs")
}

/// Guarded `pending → running` of several runs in one statement, locking
/// them in id order. Returns the runs it started; a run left out was not
/// pending any more (already started by another executor, or canceled) —
/// do nothing for it.
///
/// # Errors
/// A database error.
pub async fn start_many(
    conn: &mut PgConnection,
    ids: &[WorkflowExecutionId],
) -> Result<Vec<RunRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH p AS ( \
             SELECT id FROM workflow_executions WHERE id = ANY($1) AND status = 'pending' \
             ORDER BY id FOR UPDATE \
         ) \
         UPDATE workflow_executions w SET status = 'running', started_at = clock_timestamp() \
         FROM p WHERE w.id = p.id RETURNING {returned}",
        returned = crate::prefixed("w", RUN_COLUMNS)
    )))
    .bind(&ids)
    .fetch_all(conn)
    .await
    .context("starting runs")
}

/// A run's move into a terminal (or canceling) state, with its output and
/// error.
#[derive(Debug, Clone, Copy)]
struct Transition<'a> {
    /// The run.
    pub id: WorkflowExecutionId,
    /// Where it goes.
    pub to: WorkflowStatus,
    /// The rendered output (kept when `None`).
    pub output: Option<&'a Value>,
    /// Why it failed (kept when `None`).
    pub error: Option<&'a str>,
    /// A message to write to the outbox if, and only if, the run moves.
    pub message: Option<&'a Envelope>,
    /// A second such message: a child run's completion of its parent
    /// execution (see [`end_many`]).
    pub also: Option<&'a Envelope>,
}

/// Guarded transition into a terminal (or canceling) state, recording output
/// and error. `false`: the run was not in a state this transition leaves.
/// A run *ends* only through [`end_many`], which writes its
/// `workflow.finished`; this one is for `canceling`.
///
/// # Errors
/// A database error.
pub(crate) async fn transition(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
    to: WorkflowStatus,
    output: Option<&Value>,
    error: Option<&str>,
) -> Result<bool, StoreError> {
    let changed = transition_many(
        conn,
        &[Transition {
            id,
            to,
            output,
            error,
            message: None,
            also: None,
        }],
        None,
    )
    .await?;
    Ok(changed.iter().any(|moved| moved.id == id))
}

/// A run [`transition_many`] moved.
struct Moved {
    id: WorkflowExecutionId,
    /// The outbox row of its message.
    row: Option<i64>,
    /// The outbox row of its second message.
    also: Option<i64>,
    /// Whether it can have a claim of a shared limit (`limit_claims`):
    /// it was admitted under a `limit:` (`limit_key`, never cleared), or
    /// one of its tasks takes a lock (`task_executions.locks`, set when it
    /// started). Nothing else ever claims for a run.
    claims: bool,
}

/// [`transition`] for several runs in one statement, each with its own
/// guard, locked in id order. Returns the runs that changed, each with the
/// outbox row of its message (written in the same statement, leased as
/// [`outbox::enqueue`] does) and whether it can hold a claim ([`Moved`]);
/// the wake-up for `weft watch` / `submit --wait` (they poll as well) goes
/// out in the same statement for each that became terminal. A run listed
/// twice moves once.
///
/// # Errors
/// A database error.
async fn transition_many(
    conn: &mut PgConnection,
    moves: &[Transition<'_>],
    lease: Option<std::time::Duration>,
) -> Result<Vec<Moved>, StoreError> {
    if moves.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = moves.iter().map(|m| m.id.as_uuid()).collect();
    let statuses: Vec<&str> = moves.iter().map(|m| m.to.as_str()).collect();
    let outputs: Vec<Option<String>> = moves
        .iter()
        .map(|m| m.output.map(Value::to_string))
        .collect();
    let errors: Vec<Option<&str>> = moves.iter().map(|m| m.error).collect();
    let terminal: Vec<bool> = moves.iter().map(|m| m.to.is_terminal()).collect();
    // The states each move may leave, as one comma-separated string per row
    // (arrays of arrays do not bind). The wake-ups' `SELECT` runs only if
    // read: the final condition reads it.
    let sources: Vec<String> = moves
        .iter()
        .map(|m| WorkflowStatus::source_names(m.to).join(","))
        .collect();
    let mut exchanges: Vec<Option<&str>> = Vec::with_capacity(moves.len());
    let mut keys: Vec<Option<String>> = Vec::with_capacity(moves.len());
    let mut payloads: Vec<Option<String>> = Vec::with_capacity(moves.len());
    let mut messages: Vec<Option<Uuid>> = Vec::with_capacity(moves.len());
    for m in moves {
        let encoded = m.message.map(outbox::encode).transpose()?;
        let (exchange, key, payload) = match encoded {
            Some((exchange, key, payload)) => (Some(exchange), Some(key), Some(payload)),
            None => (None, None, None),
        };
        exchanges.push(exchange);
        keys.push(key);
        payloads.push(payload);
        messages.push(m.message.map(|e| e.id.as_uuid()));
    }
    let mut exchanges2: Vec<Option<&str>> = Vec::with_capacity(moves.len());
    let mut keys2: Vec<Option<String>> = Vec::with_capacity(moves.len());
    let mut payloads2: Vec<Option<String>> = Vec::with_capacity(moves.len());
    let mut messages2: Vec<Option<Uuid>> = Vec::with_capacity(moves.len());
    for m in moves {
        let encoded = m.also.map(outbox::encode).transpose()?;
        let (exchange, key, payload) = match encoded {
            Some((exchange, key, payload)) => (Some(exchange), Some(key), Some(payload)),
            None => (None, None, None),
        };
        exchanges2.push(exchange);
        keys2.push(key);
        payloads2.push(payload);
        messages2.push(m.also.map(|e| e.id.as_uuid()));
    }
    let changed: Vec<(Uuid, Option<i64>, Option<i64>, bool)> = sqlx::query_as(
        "WITH i AS ( \
             SELECT DISTINCT ON (id) * \
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::text[], \
                         $8::text[], $9::text[], $10::text[], $11::uuid[], \
                         $13::text[], $14::text[], $15::text[], $16::uuid[]) \
                  AS i(id, status, output, error, terminal, sources, exchange, key, payload, message, \
                       exchange2, key2, payload2, message2) \
         ), l AS ( \
             SELECT w.id FROM workflow_executions w JOIN i ON i.id = w.id \
             WHERE w.status = ANY(string_to_array(i.sources, ',')) \
             ORDER BY w.id FOR NO KEY UPDATE OF w \
         ), u AS ( \
             UPDATE workflow_executions w \
             SET status = i.status, output = COALESCE(i.output::jsonb, w.output), \
                 error = COALESCE(i.error, w.error), \
                 finished_at = CASE WHEN i.terminal THEN clock_timestamp() ELSE w.finished_at END \
             FROM i, l WHERE w.id = i.id AND l.id = i.id \
               AND w.status = ANY(string_to_array(i.sources, ',')) \
             RETURNING w.id, i.terminal, i.exchange, i.key, i.payload, i.message, \
                       i.exchange2, i.key2, i.payload2, i.message2, \
                       w.limit_key IS NOT NULL OR EXISTS ( \
                           SELECT 1 FROM task_executions t \
                           WHERE t.workflow_execution_id = w.id AND t.locks) AS claims \
         ), n AS ( \
             SELECT pg_notify($7, id::text) FROM u WHERE terminal \
         ), o AS ( \
             INSERT INTO outbox (exchange, routing_key, payload, not_before) \
             SELECT m.exchange, m.key, m.payload::jsonb, now() + make_interval(secs => $12::float8 / 1000) \
             FROM u CROSS JOIN LATERAL (VALUES (u.exchange, u.key, u.payload), \
                                               (u.exchange2, u.key2, u.payload2)) AS m(exchange, key, payload) \
             WHERE m.payload IS NOT NULL \
             RETURNING id, (payload->>'id')::uuid AS message \
         ) \
         SELECT u.id, o.id, o2.id, u.claims FROM u LEFT JOIN o ON o.message = u.message \
             LEFT JOIN o o2 ON o2.message = u.message2 \
         WHERE (SELECT count(*) FROM n) >= 0",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&outputs)
    .bind(&errors)
    .bind(&terminal)
    .bind(&sources)
    .bind(FINISHED_CHANNEL)
    .bind(&exchanges)
    .bind(&keys)
    .bind(&payloads)
    .bind(&messages)
    .bind(outbox::lease_millis(lease))
    .bind(&exchanges2)
    .bind(&keys2)
    .bind(&payloads2)
    .bind(&messages2)
    .fetch_all(conn)
    .await
    .context("changing runs' status")?;
    Ok(changed
        .into_iter()
        .map(|(id, row, also, claims)| Moved {
            id: WorkflowExecutionId::from(id),
            row,
            also,
            claims,
        })
        .collect())
}

/// The channel `NOTIFY`ed with a run's id when it becomes terminal.
pub const FINISHED_CHANNEL: &str = "weft_run_finished";

/// How a transaction locks a run's row, and why. The modes are chosen so
/// that a cancellation cannot slip between a decision to dispatch and its
/// commit, while completions of one run do not wait for each other:
/// - [`RunLock::Dispatch`] (`FOR KEY SHARE`): a transaction that may
///   dispatch work of the run (a completion, a stream window, a resumed
///   run) holds it from the statement that reads the run's status until it
///   commits. Any number hold it at once.
/// - [`RunLock::Count`] (`FOR NO KEY UPDATE`): counting down the run's
///   unfinished tasks, ending it, settling a cancellation — one at a time,
///   alongside the dispatchers.
/// - [`RunLock::Cancel`] (`FOR UPDATE`): a cancellation request (and `weft
///   retry`) waits until every transaction that read the run as running
///   has committed, and none reads it until the request commits: those that
///   read it later see `canceling` and dispatch nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunLock {
    /// A plain read: a cancellation that commits right after it is noticed
    /// by the next message of the run.
    None,
    /// `FOR KEY SHARE`, see the type's docs.
    Dispatch,
    /// `FOR NO KEY UPDATE`, see the type's docs.
    Count,
    /// `FOR UPDATE`, see the type's docs.
    Cancel,
}

impl RunLock {
    /// The locking clause.
    pub(crate) const fn clause(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Dispatch => "FOR KEY SHARE",
            Self::Count => "FOR NO KEY UPDATE",
            Self::Cancel => "FOR UPDATE",
        }
    }
}

/// Reads a run's status, locking its row as `lock` says until the
/// transaction ends.
///
/// # Errors
/// A database error, or [`StoreError::Corrupt`] if the run does not exist.
pub async fn status(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
    lock: RunLock,
) -> Result<WorkflowStatus, StoreError> {
    let sql = format!(
        "SELECT status FROM workflow_executions WHERE id = $1 {}",
        lock.clause()
    );
    let status: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id.as_uuid())
        .fetch_optional(conn)
        .await
        .context("reading a run's status")?;
    let status = status.ok_or_else(|| StoreError::Corrupt {
        what: "run",
        detail: format!("run {id} does not exist"),
    })?;
    status
        .parse()
        .map_err(|e: weft_common::state::UnknownStatus| StoreError::Corrupt {
            what: "run",
            detail: e.to_string(),
        })
}

/// Locks a run's row `FOR UPDATE` ([`RunLock::Cancel`]) until the
/// transaction ends and reads its status; `None` if no run has this id. A
/// cancellation request and the re-opening of a finished run (`weft
/// retry`) decide under this lock.
///
/// # Errors
/// A database error, or [`StoreError::Corrupt`] for an unknown status.
pub async fn lock_status(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
) -> Result<Option<WorkflowStatus>, StoreError> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM workflow_executions WHERE id = $1 FOR UPDATE")
            .bind(id.as_uuid())
            .fetch_optional(conn)
            .await
            .context("locking a run")?;
    status
        .map(|s| {
            s.parse()
                .map_err(|e: weft_common::state::UnknownStatus| StoreError::Corrupt {
                    what: "run",
                    detail: e.to_string(),
                })
        })
        .transpose()
}

/// A run to end: into a terminal status, with its output and error.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    /// The run.
    pub id: WorkflowExecutionId,
    /// Its workflow's name, for the message.
    pub workflow: &'a str,
    /// A terminal status.
    pub to: WorkflowStatus,
    /// The rendered output (kept when `None`).
    pub output: Option<&'a Value>,
    /// Why it failed or was canceled (kept when `None`).
    pub error: Option<&'a str>,
}

/// A run [`end_many`] ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The run.
    pub id: WorkflowExecutionId,
    /// The status it ended in.
    pub to: WorkflowStatus,
    /// Its `workflow.finished` message, written to the outbox.
    pub message: Envelope,
    /// The message's outbox row.
    pub outbox_id: i64,
    /// For a child run: the completion of the parent execution it carried
    /// out, written to the outbox in the same statement (row, message).
    pub parent: Option<(i64, Envelope)>,
}

/// Ends runs: the one way a run reaches a terminal status. Each moves only
/// from a state its target may be entered from (a guard per run, locked in
/// id order, in one statement), and the same statement writes its
/// `workflow.finished` message to the outbox, due after `lease` (see
/// [`outbox::enqueue`]), and wakes `weft watch` / `submit --wait`. A
/// child run's end (a sub-workflow) is also written there as the
/// `execution.completed` of the parent execution it carried out
/// ([`Ended::parent`]), so exactly the transaction that ends the child
/// reports it. A run
/// left out of the result did not move (someone else ended it, or it is
/// `canceling` and this ending was not `canceled`): do nothing for it.
///
/// # Errors
/// A database error; [`StoreError::Corrupt`] if a target is not terminal.
pub async fn end_many(
    conn: &mut PgConnection,
    endings: &[Ending<'_>],
    lease: Option<std::time::Duration>,
) -> Result<Vec<Ended>, StoreError> {
    if let Some(e) = endings.iter().find(|e| !e.to.is_terminal()) {
        return Err(StoreError::Corrupt {
            what: "run ending",
            detail: format!("run {} cannot end `{}`: not a terminal status", e.id, e.to),
        });
    }
    if endings.is_empty() {
        return Ok(Vec::new());
    }
    let messages: Vec<Envelope> = endings
        .iter()
        .map(|e| {
            Envelope::new(WorkflowFinished {
                workflow_execution_id: e.id,
                workflow: e.workflow.to_owned(),
                status: e.to,
            })
        })
        .collect();
    // A child run's end completes its parent execution: the completion
    // is written by the statement that ends the run, so exactly the one
    // transaction that ends it reports it, and the parent advances through
    // the path a worker's report takes.
    let ids: Vec<WorkflowExecutionId> = endings.iter().map(|e| e.id).collect();
    let parents = crate::children::parents_of(conn, &ids).await?;
    let completions: Vec<Option<Envelope>> = endings
        .iter()
        .map(|e| {
            let link = parents.iter().find(|p| p.child == e.id)?;
            let (status, result, error) =
                weft_common::child::outcome_of_child(e.id, e.to, e.output, e.error)?;
            Some(Envelope::new(ExecutionCompleted {
                execution_id: link.execution,
                workflow_execution_id: link.parent,
                attempt: u32::try_from(link.attempt).unwrap_or(0),
                status,
                result,
                error,
                worker_id: weft_common::child::child_worker_id(e.id),
                started_at: None,
                finished_at: Utc::now(),
                logs: None,
            }))
        })
        .collect();
    let moves: Vec<Transition<'_>> = endings
        .iter()
        .zip(&messages)
        .zip(&completions)
        .map(|((e, message), also)| Transition {
            id: e.id,
            to: e.to,
            output: e.output,
            error: e.error,
            message: Some(message),
            also: also.as_ref(),
        })
        .collect();
    let moved = transition_many(conn, &moves, lease).await?;
    // What the ended runs held of a shared limit (`limit:`) is released,
    // and granted to the next in line, by this same transaction: exactly
    // once, whatever ended them. Runs that can have no claim ask nothing.
    let claiming: Vec<WorkflowExecutionId> =
        moved.iter().filter(|m| m.claims).map(|m| m.id).collect();
    crate::shared_limits::release(conn, &claiming).await?;
    let mut ended = Vec::with_capacity(moved.len());
    for Moved {
        id,
        row,
        also: also_row,
        ..
    } in moved
    {
        let Some(((ending, message), also)) = endings
            .iter()
            .zip(&messages)
            .zip(&completions)
            .find(|((e, _), _)| e.id == id)
        else {
            continue;
        };
        let outbox_id = row.ok_or_else(|| StoreError::Corrupt {
            what: "run ending",
            detail: format!("run {id} ended but its message was not written"),
        })?;
        let parent = match (also, also_row) {
            (Some(envelope), Some(row)) => Some((row, envelope.clone())),
            (None, _) => None,
            (Some(_), None) => {
                return Err(StoreError::Corrupt {
                    what: "run ending",
                    detail: format!(
                        "child run {id} ended but its parent's completion was not written"
                    ),
                });
            }
        };
        ended.push(Ended {
            id,
            to: ending.to,
            message: message.clone(),
            outbox_id,
            parent,
        });
    }
    Ok(ended)
}
