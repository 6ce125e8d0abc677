//! Executions that will not report back by themselves: running ones whose
//! deadline passed or whose worker went silent (or stopped listing them),
//! for the reaper; queued ones no worker took, whose dispatch may be lost,
//! for the redispatcher. Both are claimed with `FOR UPDATE SKIP LOCKED`, so
//! any number of executors share the work.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::{ExecutionId, ExecutionStatus, WorkflowExecutionId, WorkflowStatus};

use crate::error::{Context, StoreError};
use crate::executions::{EXECUTION_COLUMNS, ExecutionRow};

/// A running execution the reaper should end, and why.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Overdue {
    /// The execution.
    #[sqlx(try_from = "Uuid")]
    pub id: ExecutionId,
    /// Its run.
    #[sqlx(try_from = "Uuid")]
    pub workflow_execution_id: WorkflowExecutionId,
    /// Its attempt.
    pub attempt: i32,
    /// A sentence for the execution's error.
    pub reason: String,
}

/// Claims one running execution whose deadline passed or whose worker has
/// not sent a heartbeat for `heartbeat_grace_ms`, locking it (`SKIP LOCKED`:
/// concurrent reapers take different rows) until the transaction ends.
/// Executions in `exclude` are passed over: the reaper's quarantine of rows
/// whose reaping failed for a reason retrying cannot fix, so one such row
/// is not picked first on every pass ahead of all the others.
///
/// Both clocks compared are the database's: `deadline` and
/// `last_heartbeat` are stamped with it as the reports arrive (see
/// [`started`](crate::executions::started) and [`crate::workers::heartbeat`]).
///
/// # Errors
/// A database error.
pub async fn claim_overdue(
    conn: &mut PgConnection,
    heartbeat_grace_ms: i64,
    exclude: &[ExecutionId],
) -> Result<Option<Overdue>, StoreError> {
    let exclude: Vec<Uuid> = exclude.iter().map(|id| id.as_uuid()).collect();
    sqlx::query_as(
        "SELECT e.id, e.workflow_execution_id, e.attempt, \
                CASE WHEN e.deadline < now() \
                     THEN 'timed out: no result ' || (e.timeout_ms / 1000.0)::text || 's after it started (worker ' || COALESCE(e.worker_id, '?') || ')' \
                     WHEN w.last_heartbeat < now() - make_interval(secs => $1::float8 / 1000) \
                     THEN 'worker ' || e.worker_id || ' was lost (no heartbeat since ' || w.last_heartbeat::text || ')' \
                     ELSE 'worker ' || e.worker_id || ' no longer runs it (not in its heartbeats since ' || e.seen_at::text \
                          || '): its report was lost' END AS reason \
         FROM executions e LEFT JOIN workers w ON w.id = e.worker_id \
         WHERE e.status = 'running' \
           AND (e.deadline < now() OR w.last_heartbeat < now() - make_interval(secs => $1::float8 / 1000) \
                OR (e.seen_at < now() - make_interval(secs => $1::float8 / 1000) \
                    AND w.last_heartbeat > e.seen_at + make_interval(secs => $1::float8 / 1000))) \
           AND e.id <> ALL($2) \
         ORDER BY e.deadline NULLS LAST LIMIT 1 FOR UPDATE OF e SKIP LOCKED",
    )
    .bind(heartbeat_grace_ms)
    .bind(&exclude)
    .fetch_optional(conn)
    .await
    .context("finding overdue executions")
}

/// How long a queued execution may wait to be taken by a worker before its
/// dispatch is presumed lost and sent again (`--redispatch-after`), and the
/// age from which `weft audit` reports it.
pub const DEFAULT_REDISPATCH_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// A queued execution no worker has taken for too long: its dispatch may
/// have been lost (a purged queue, a broker node lost without replicated
/// queues, a dispatch dead-lettered).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stale {
    /// The execution: its dispatch is rebuilt from it (same id, attempt
    /// and input).
    #[sqlx(flatten)]
    pub execution: ExecutionRow,
    /// Its run's workflow definition (for the task's action, pool and
    /// timeout).
    pub definition_id: Uuid,
    /// Since when it has waited: its dispatch's last write to the outbox,
    /// or the end of its retry backoff.
    pub waiting_since: DateTime<Utc>,
}

/// The SQL for "since when a queued execution waits to be taken": the
/// expression `executions_queued_since_idx` indexes, spelled once.
const QUEUED_SINCE: &str = "GREATEST(e.queued_at, e.due_at, e.redispatched_at)";

/// Claims up to `limit` queued executions of running runs that have waited
/// longer than `older_than_ms` to be taken, oldest first, locking them
/// (`SKIP LOCKED`: concurrent redispatchers take different rows) until the
/// transaction ends; `exclude` is passed over (rows already looked at in
/// this pass). `pending` executions (waiting for a concurrency slot) were
/// never dispatched and are not claimed.
///
/// # Errors
/// A database error.
pub async fn claim_stale_queued(
    conn: &mut PgConnection,
    older_than_ms: i64,
    exclude: &[ExecutionId],
    limit: i64,
) -> Result<Vec<Stale>, StoreError> {
    let exclude: Vec<Uuid> = exclude.iter().map(|id| id.as_uuid()).collect();
    // The status is spelled into the text (from the enum, not a literal):
    // the planner uses the partial index only for a predicate it can see.
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns}, w.definition_id, {QUEUED_SINCE} AS waiting_since \
         FROM executions e JOIN workflow_executions w ON w.id = e.workflow_execution_id \
         WHERE e.status = '{queued}' AND w.status = $1 \
           AND {QUEUED_SINCE} < now() - make_interval(secs => $2::float8 / 1000) \
           AND e.id <> ALL($3) \
         ORDER BY {QUEUED_SINCE} LIMIT $4 FOR UPDATE OF e SKIP LOCKED",
        columns = crate::prefixed("e", EXECUTION_COLUMNS),
        queued = ExecutionStatus::Queued.as_str(),
    )))
    .bind(WorkflowStatus::Running.as_str())
    .bind(older_than_ms)
    .bind(&exclude)
    .bind(limit)
    .fetch_all(conn)
    .await
    .context("finding queued executions not taken")
}

/// Records that the dispatches of these executions were written to the
/// outbox again (guarded: only those still queued). Returns the ones
/// recorded.
///
/// # Errors
/// A database error.
pub async fn redispatched(
    conn: &mut PgConnection,
    ids: &[ExecutionId],
) -> Result<Vec<ExecutionId>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    let done: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE executions SET redispatched_at = clock_timestamp(), redispatches = redispatches + 1 \
         WHERE id = ANY($1) AND status = $2 RETURNING id",
    )
    .bind(&ids)
    .bind(ExecutionStatus::Queued.as_str())
    .fetch_all(conn)
    .await
    .context("recording redispatches")?;
    Ok(done.into_iter().map(ExecutionId::from).collect())
}

/// Sends again, through the outbox (due at once, relays woken), the start
/// message of up to `limit` runs still `pending` longer than
/// `older_than_ms` after they were stored or last re-sent, and records the
/// re-send (`resubmitted_at`). Returns the runs. Their
/// first message may turn up after all: a run starts once (its start is
/// a guarded `pending → running`).
///
/// # Errors
/// A database error.
pub async fn resubmit_stale_runs(
    conn: &mut PgConnection,
    older_than_ms: i64,
    limit: i64,
) -> Result<Vec<WorkflowExecutionId>, StoreError> {
    // Runs waiting in line for a shared limit's slot (`limit:`) are not
    // stale: their `resubmitted_at` is `infinity` until a slot is granted,
    // and the partial index over the pending runs' due time never visits
    // them, however long the line. A run granted a slot whose start is not
    // taken is found among the slots' holders (a set bounded by the
    // limits, not by the line).
    let stale: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM workflow_executions \
         WHERE status = '{pending}' \
           AND GREATEST(created_at, resubmitted_at) < now() - make_interval(secs => $1::float8 / 1000) \
         ORDER BY GREATEST(created_at, resubmitted_at) LIMIT $2 FOR UPDATE SKIP LOCKED",
        pending = WorkflowStatus::Pending.as_str()
    )))
    .bind(older_than_ms)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("finding runs whose start was not taken")?;
    let granted: Vec<Uuid> = sqlx::query_scalar(
        "SELECT r.id FROM limit_claims c JOIN workflow_executions r ON r.id = c.workflow_execution_id \
         WHERE c.state = 'holding' AND r.status = $1 \
           AND c.granted_at < now() - make_interval(secs => $2::float8 / 1000) \
           AND (r.resubmitted_at = 'infinity' \
                OR r.resubmitted_at < now() - make_interval(secs => $2::float8 / 1000)) \
         ORDER BY c.granted_at LIMIT $3 FOR UPDATE OF r SKIP LOCKED",
    )
    .bind(WorkflowStatus::Pending.as_str())
    .bind(older_than_ms)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("finding runs granted a slot whose start was not taken")?;
    let mut stale = stale;
    let granted: Vec<Uuid> = granted
        .into_iter()
        .filter(|id| !stale.contains(id))
        .collect();
    stale.extend(granted);
    if stale.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query(
        "UPDATE workflow_executions SET resubmitted_at = clock_timestamp() WHERE id = ANY($1)",
    )
    .bind(&stale)
    .execute(&mut *conn)
    .await
    .context("recording re-sent starts")?;
    let runs: Vec<WorkflowExecutionId> = stale.into_iter().map(WorkflowExecutionId::from).collect();
    let messages: Vec<(weft_common::Envelope, Option<DateTime<Utc>>)> = runs
        .iter()
        .map(|id| {
            let start = weft_common::message::WorkflowSubmitted {
                workflow_execution_id: *id,
            };
            (weft_common::Envelope::new(start), None)
        })
        .collect();
    crate::outbox::enqueue(&mut *conn, &messages, None).await?;
    crate::outbox::notify(&mut *conn).await?;
    Ok(runs)
}
