//! Concurrency limits shared across runs (a workflow's `limit:`; see
//! `weft_common::shared_limit` and ADR 0016).
//!
//! A run of a limited workflow holds a *claim* under its key: `waiting`
//! in line, or `holding` a slot. Three transactions change claims, each
//! under a lock on the scope's row (`limit_scopes`, one per workflow
//! name), taken after the rows of the runs it moves:
//! - the run's start ([`admit`]): the run gets in line (once) and the free
//!   slots are granted; it starts only if it holds one, else it stays
//!   `pending`;
//! - the run's end ([`release`], called by `runs::end_many`, the one way a
//!   run ends, whatever ended it: its last task, a cancellation, a failed
//!   start): its claim is deleted and the slot granted to the next waiter
//!   in the same transaction, with that run's start message written to the
//!   outbox;
//! - a re-opened run (`weft retry`, [`take_if_free`]): it takes a slot if
//!   one is free and nobody waits, or is refused.
//!
//! Counters on the key and scope rows (`holders`, `waiters`, `head_seq`)
//! decide; the next key is found through a partial index over the keys
//! that could take a slot (its predicate is written in the query, so a
//! generic plan uses it) and the next waiter through the line's index:
//! granting costs O(log n) whatever the number of waiters. `weft audit`
//! recounts everything ([`crate::audit`]).

use std::collections::{BTreeMap, HashSet};

use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::message::WorkflowSubmitted;
use weft_common::{Envelope, LimitFacts, TaskExecutionId, WorkflowExecutionId};

use crate::error::{Context, StoreError};
use crate::outbox;

/// A claim's state: in line.
const WAITING: &str = "waiting";
/// A claim's state: holding a slot.
const HOLDING: &str = "holding";

/// A run to put in line under its workflow's limit.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    /// The run (pending).
    pub run: WorkflowExecutionId,
    /// Its workflow's name.
    pub scope: &'a str,
    /// Its rendered key (`customer=acme`).
    pub key: &'a str,
    /// `limit.runs`.
    pub runs: i32,
    /// `limit.runs_total`.
    pub runs_total: Option<i32>,
    /// `limit.order: fair`.
    pub fair: bool,
}

/// Puts each run in line under its key — once: a run already in line or
/// holding a slot keeps its place, so a duplicated start message changes
/// nothing — and grants the free slots in line order. Returns the runs
/// among `admissions` that hold a slot (start those); every other run
/// granted a slot gets its start message written to the outbox, and
/// relays are woken on commit.
///
/// The caller has locked the admitted runs' rows (pending) already:
/// run rows before scope rows, in every path.
///
/// # Errors
/// A database error.
pub async fn admit(
    conn: &mut PgConnection,
    admissions: &[Admission<'_>],
) -> Result<HashSet<WorkflowExecutionId>, StoreError> {
    let mut by_scope: BTreeMap<&str, Vec<&Admission<'_>>> = BTreeMap::new();
    for a in admissions {
        by_scope.entry(a.scope).or_default().push(a);
    }
    let mut granted = Vec::new();
    for (scope, runs) in &by_scope {
        // The scope's row, created once, locked until commit (`ON
        // CONFLICT DO UPDATE` locks the row even when its `WHERE` spares
        // it a new version); its cap and order follow the latest
        // definition admitted (a cap is never set below the slots held: a
        // lowered one applies as they end).
        let (runs_total, fair) = (runs[0].runs_total, runs[0].fair);
        sqlx::query(
            "INSERT INTO limit_scopes (scope, runs_total, fair) VALUES ($1, $2, $3) \
             ON CONFLICT (scope) DO UPDATE SET \
                 runs_total = CASE WHEN EXCLUDED.runs_total IS NULL THEN NULL \
                                   ELSE GREATEST(EXCLUDED.runs_total, limit_scopes.holders) END, \
                 fair = EXCLUDED.fair \
             WHERE limit_scopes.fair <> EXCLUDED.fair \
                OR limit_scopes.runs_total IS DISTINCT FROM \
                   CASE WHEN EXCLUDED.runs_total IS NULL THEN NULL \
                        ELSE GREATEST(EXCLUDED.runs_total, limit_scopes.holders) END",
        )
        .bind(scope)
        .bind(runs_total)
        .bind(fair)
        .execute(&mut *conn)
        .await
        .context("locking a limit's scope")?;
        for a in runs {
            sqlx::query(
                "INSERT INTO limit_keys (scope, key, capacity) VALUES ($1, $2, $3) \
                 ON CONFLICT (scope, key) DO UPDATE SET \
                     capacity = GREATEST(EXCLUDED.capacity, limit_keys.holders) \
                 WHERE limit_keys.capacity <> GREATEST(EXCLUDED.capacity, limit_keys.holders)",
            )
            .bind(a.scope)
            .bind(a.key)
            .bind(a.runs)
            .execute(&mut *conn)
            .await
            .context("recording a limit's key")?;
            let seq: Option<i64> = sqlx::query_scalar(
                "INSERT INTO limit_claims (scope, key, workflow_execution_id, state) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (workflow_execution_id) WHERE task_execution_id IS NULL DO NOTHING \
                 RETURNING seq",
            )
            .bind(a.scope)
            .bind(a.key)
            .bind(a.run.as_uuid())
            .bind(WAITING)
            .fetch_optional(&mut *conn)
            .await
            .context("getting a run in line")?;
            if let Some(seq) = seq {
                sqlx::query(
                    "UPDATE limit_keys SET waiters = waiters + 1, \
                         head_seq = COALESCE(head_seq, $3) \
                     WHERE scope = $1 AND key = $2",
                )
                .bind(a.scope)
                .bind(a.key)
                .bind(seq)
                .execute(&mut *conn)
                .await
                .context("counting a run in line")?;
                // Until a slot is granted, the run is not a stale start
                // for the redispatcher (see `overdue::resubmit_stale_runs`).
                sqlx::query(
                    "UPDATE workflow_executions SET limit_key = $2, resubmitted_at = 'infinity' \
                     WHERE id = $1",
                )
                .bind(a.run.as_uuid())
                .bind(a.key)
                .execute(&mut *conn)
                .await
                .context("recording a run's limit key")?;
            }
        }
        granted.extend(grant(conn, scope).await?.into_iter().map(|(run, _)| run));
    }
    let ids: Vec<Uuid> = admissions.iter().map(|a| a.run.as_uuid()).collect();
    let holding: Vec<Uuid> = sqlx::query_scalar(
        "SELECT workflow_execution_id FROM limit_claims \
         WHERE workflow_execution_id = ANY($1) AND state = $2 AND task_execution_id IS NULL",
    )
    .bind(&ids)
    .bind(HOLDING)
    .fetch_all(&mut *conn)
    .await
    .context("reading which runs hold a slot")?;
    let holding: HashSet<WorkflowExecutionId> =
        holding.into_iter().map(WorkflowExecutionId::from).collect();
    let others: Vec<WorkflowExecutionId> = granted
        .into_iter()
        .filter(|run| !holding.contains(run))
        .collect();
    start_granted(conn, &others).await?;
    Ok(holding)
}

/// Releases what `runs` (which just ended) hold or wait for: their claims
/// are deleted and each freed slot granted to the next waiter, whose start
/// message is written to the outbox — in the caller's transaction, the
/// one that ended the runs (`runs::end_many`), so a slot is released
/// exactly once and never outlives its holder. Runs without a claim cost
/// one indexed read.
///
/// # Errors
/// A database error.
pub async fn release(
    conn: &mut PgConnection,
    runs: &[WorkflowExecutionId],
) -> Result<(), StoreError> {
    let ids: Vec<Uuid> = runs.iter().map(|id| id.as_uuid()).collect();
    release_claims(conn, "workflow_execution_id", &ids).await
}

/// Releases the locks (`mutex`/`semaphore`) of tasks that just became
/// terminal, in the transaction that ended them, and grants each freed
/// slot to the next waiting task, whose run gets a message that makes an
/// executor dispatch it ([`granted_tasks`]). Tasks without a lock cost
/// one indexed read.
///
/// # Errors
/// A database error.
pub async fn release_tasks(
    conn: &mut PgConnection,
    tasks: &[TaskExecutionId],
) -> Result<(), StoreError> {
    let ids: Vec<Uuid> = tasks.iter().map(|id| id.as_uuid()).collect();
    release_claims(conn, "task_execution_id", &ids).await
}

/// Releases the locks held or waited for by the tasks of `run` (its main
/// tasks, canceled while its exit handlers run on; exit handlers take no
/// lock), leaving the run's own claim of its workflow's limit.
///
/// # Errors
/// A database error.
pub async fn release_run_tasks(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<(), StoreError> {
    let tasks: Vec<Uuid> = sqlx::query_scalar(
        "SELECT task_execution_id FROM limit_claims \
         WHERE workflow_execution_id = $1 AND task_execution_id IS NOT NULL",
    )
    .bind(run.as_uuid())
    .fetch_all(&mut *conn)
    .await
    .context("finding a run's task locks")?;
    release_claims(conn, "task_execution_id", &tasks).await
}

/// Deletes the claims whose `column` (a run's or a task's id) is in
/// `ids`, fixes the counters and grants what they freed.
async fn release_claims(
    conn: &mut PgConnection,
    column: &'static str,
    ids: &[Uuid],
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let scopes: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT scope FROM limit_claims WHERE {column} = ANY($1) ORDER BY scope"
    )))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .context("finding the limits of ended runs")?;
    if scopes.is_empty() {
        return Ok(());
    }
    // The scopes' rows first, in order: every change to their claims
    // happens under these locks.
    sqlx::query("SELECT 1 FROM limit_scopes WHERE scope = ANY($1) ORDER BY scope FOR UPDATE")
        .bind(&scopes)
        .execute(&mut *conn)
        .await
        .context("locking limits' scopes")?;
    let freed: Vec<(String, String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "DELETE FROM limit_claims WHERE {column} = ANY($1) RETURNING scope, key, state, seq"
    )))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .context("releasing ended runs' claims")?;
    for (scope, key, state, seq) in &freed {
        if state == HOLDING {
            sqlx::query(
                "WITH k AS ( \
                     UPDATE limit_keys SET holders = holders - 1 WHERE scope = $1 AND key = $2 \
                 ) \
                 UPDATE limit_scopes SET holders = holders - 1 WHERE scope = $1",
            )
            .bind(scope)
            .bind(key)
            .execute(&mut *conn)
            .await
            .context("freeing a slot")?;
        } else {
            // A waiter left the line (its run was canceled or failed to
            // start): the head moves on if it was the head.
            sqlx::query(
                "UPDATE limit_keys SET waiters = waiters - 1, \
                     head_seq = CASE WHEN head_seq <> $3 THEN head_seq ELSE \
                         (SELECT min(c.seq) FROM limit_claims c \
                          WHERE c.scope = $1 AND c.key = $2 AND c.state = $4) END \
                 WHERE scope = $1 AND key = $2",
            )
            .bind(scope)
            .bind(key)
            .bind(seq)
            .bind(WAITING)
            .execute(&mut *conn)
            .await
            .context("taking a run out of line")?;
        }
    }
    let mut granted = Vec::new();
    for scope in &scopes {
        granted.extend(grant(conn, scope).await?.into_iter().map(|(run, _)| run));
    }
    start_granted(conn, &granted).await?;
    if !freed.is_empty() {
        tracing::debug!(
            released = freed.len(),
            granted = granted.len(),
            "released shared-limit claims of ended runs"
        );
    }
    Ok(())
}

/// A re-opened run (`weft retry`) of a limited workflow takes a slot of
/// `key` if one is free and nobody waits for it (a retry does not jump the
/// line); `Err` with the sentence saying why not. The caller holds the
/// run's row.
///
/// # Errors
/// A database error (outer); the refusal (inner).
pub async fn take_if_free(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
    scope: &str,
    key: &str,
) -> Result<Result<(), String>, StoreError> {
    let free: Option<(i32, i32, i32, Option<i32>, i32)> = sqlx::query_as(
        "SELECT k.capacity, k.holders, k.waiters, s.runs_total, s.holders \
         FROM limit_scopes s JOIN limit_keys k ON k.scope = s.scope \
         WHERE s.scope = $1 AND k.key = $2 FOR UPDATE OF s",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await
    .context("locking a limit's scope")?;
    let Some((capacity, holders, waiters, runs_total, scope_holders)) = free else {
        return Err(StoreError::Corrupt {
            what: "shared limit",
            detail: format!(
                "run {run} has limit key `{key}` but its limit `{scope}` has no such key"
            ),
        });
    };
    if holders >= capacity || waiters > 0 || runs_total.is_some_and(|t| scope_holders >= t) {
        return Ok(Err(format!(
            "limit {key} has no free slot ({holders} of {capacity} held, {waiters} waiting); retry once a run under it ends"
        )));
    }
    sqlx::query(
        "INSERT INTO limit_claims (scope, key, workflow_execution_id, state, granted_at) \
         VALUES ($1, $2, $3, $4, clock_timestamp())",
    )
    .bind(scope)
    .bind(key)
    .bind(run.as_uuid())
    .bind(HOLDING)
    .execute(&mut *conn)
    .await
    .context("taking a slot for a re-opened run")?;
    sqlx::query(
        "WITH k AS ( \
             UPDATE limit_keys SET holders = holders + 1 WHERE scope = $1 AND key = $2 \
         ) \
         UPDATE limit_scopes SET holders = holders + 1 WHERE scope = $1",
    )
    .bind(scope)
    .bind(key)
    .execute(&mut *conn)
    .await
    .context("counting a slot taken")?;
    Ok(Ok(()))
}

/// Grants the scope's free slots, one at a time, each to the first
/// waiter of the key the scope's order picks among those with a free
/// slot; stops when the scope's cap is reached or no key can take one.
/// Every step is an index lookup. Called under the scope's lock.
async fn grant(
    conn: &mut PgConnection,
    scope: &str,
) -> Result<Vec<(WorkflowExecutionId, Option<TaskExecutionId>)>, StoreError> {
    let mut granted = Vec::new();
    loop {
        // The scope's cap, checked on its row (locked by the caller).
        let (fair, full): (bool, bool) = sqlx::query_as(
            "SELECT fair, runs_total IS NOT NULL AND holders >= runs_total \
             FROM limit_scopes WHERE scope = $1",
        )
        .bind(scope)
        .fetch_one(&mut *conn)
        .await
        .context("reading a limit's scope")?;
        if full {
            break;
        }
        // The key to serve: only keys that could take a slot are in the
        // partial indexes these read.
        let sql = if fair {
            "SELECT key, head_seq FROM limit_keys \
             WHERE scope = $1 AND waiters > 0 AND holders < capacity \
             ORDER BY served_turn, head_seq LIMIT 1"
        } else {
            "SELECT key, head_seq FROM limit_keys \
             WHERE scope = $1 AND waiters > 0 AND holders < capacity \
             ORDER BY head_seq LIMIT 1"
        };
        let next: Option<(String, i64)> = sqlx::query_as(sql)
            .bind(scope)
            .fetch_optional(&mut *conn)
            .await
            .context("finding the next key to grant a slot")?;
        let Some((key, head)) = next else {
            break;
        };
        let (run, task): (Uuid, Option<Uuid>) = sqlx::query_as(
            "UPDATE limit_claims SET state = $2, granted_at = clock_timestamp() \
             WHERE seq = $1 AND state = $3 RETURNING workflow_execution_id, task_execution_id",
        )
        .bind(head)
        .bind(HOLDING)
        .bind(WAITING)
        .fetch_optional(&mut *conn)
        .await
        .context("granting a slot")?
        .ok_or_else(|| StoreError::Corrupt {
            what: "shared limit",
            detail: format!(
                "limit `{scope}` key `{key}`: its first waiter ({head}) is not waiting"
            ),
        })?;
        sqlx::query(
            "WITH s AS ( \
                 UPDATE limit_scopes SET holders = holders + 1, turn = turn + 1 \
                 WHERE scope = $1 RETURNING turn \
             ) \
             UPDATE limit_keys k SET holders = holders + 1, waiters = waiters - 1, \
                 served_turn = s.turn, \
                 head_seq = (SELECT c.seq FROM limit_claims c \
                             WHERE c.scope = $1 AND c.key = $2 AND c.state = $3 \
                             ORDER BY c.seq LIMIT 1) \
             FROM s WHERE k.scope = $1 AND k.key = $2",
        )
        .bind(scope)
        .bind(&key)
        .bind(WAITING)
        .execute(&mut *conn)
        .await
        .context("counting a slot granted")?;
        tracing::debug!(limit = scope, key = %key, workflow_execution_id = %run, "granted a shared-limit slot");
        granted.push((
            WorkflowExecutionId::from(run),
            task.map(TaskExecutionId::from),
        ));
    }
    Ok(granted)
}

/// Writes the start message of runs granted a slot while they waited
/// (pending), and wakes the relays on commit: an executor starts them.
async fn start_granted(
    conn: &mut PgConnection,
    runs: &[WorkflowExecutionId],
) -> Result<(), StoreError> {
    if runs.is_empty() {
        return Ok(());
    }
    let mut runs = runs.to_vec();
    runs.sort_by_key(|r| r.as_uuid());
    runs.dedup();
    let messages: Vec<(Envelope, Option<chrono::DateTime<chrono::Utc>>)> = runs
        .iter()
        .map(|run| {
            (
                Envelope::new(WorkflowSubmitted {
                    workflow_execution_id: *run,
                }),
                None,
            )
        })
        .collect();
    outbox::enqueue(&mut *conn, &messages, None).await?;
    outbox::notify(&mut *conn).await
}

/// A run's claim with its key's and scope's figures.
#[derive(sqlx::FromRow)]
struct Claim {
    scope: String,
    key: String,
    state: String,
    seq: i64,
    capacity: i32,
    runs_total: Option<i32>,
    holders: i32,
}

/// Where a run stands with its workflow's limit: `None` if it holds no
/// claim (no limit, not started yet, or ended). Its place in line is
/// counted (what `explain` shows, not a decision).
///
/// # Errors
/// A database error.
pub async fn facts(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<Option<LimitFacts>, StoreError> {
    let claim: Option<Claim> = sqlx::query_as(
        "SELECT c.scope, c.key, c.state, c.seq, k.capacity, s.runs_total, s.holders \
         FROM limit_claims c \
         JOIN limit_keys k ON k.scope = c.scope AND k.key = c.key \
         JOIN limit_scopes s ON s.scope = c.scope \
         WHERE c.workflow_execution_id = $1 AND c.task_execution_id IS NULL",
    )
    .bind(run.as_uuid())
    .fetch_optional(&mut *conn)
    .await
    .context("reading a run's limit")?;
    let Some(claim) = claim else {
        return Ok(None);
    };
    claim_facts(conn, claim).await.map(Some)
}

/// What is said about a claim: its place in line (counted: a read for a
/// person, not a decision) and the key's holders.
async fn claim_facts(conn: &mut PgConnection, claim: Claim) -> Result<LimitFacts, StoreError> {
    let Claim {
        scope,
        key,
        state,
        seq,
        capacity: runs,
        runs_total,
        holders: holding_total,
    } = claim;
    let position = if state == WAITING {
        let ahead: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM limit_claims \
             WHERE scope = $1 AND key = $2 AND state = $3 AND seq < $4",
        )
        .bind(&scope)
        .bind(&key)
        .bind(WAITING)
        .bind(seq)
        .fetch_one(&mut *conn)
        .await
        .context("counting the runs ahead in line")?;
        Some(ahead + 1)
    } else {
        None
    };
    let holders: Vec<Uuid> = sqlx::query_scalar(
        "SELECT workflow_execution_id FROM limit_claims \
         WHERE scope = $1 AND key = $2 AND state = $3 ORDER BY granted_at, seq",
    )
    .bind(&scope)
    .bind(&key)
    .bind(HOLDING)
    .fetch_all(&mut *conn)
    .await
    .context("reading a limit's holders")?;
    Ok(LimitFacts {
        key,
        runs,
        runs_total,
        holding_total: runs_total.map(|_| holding_total),
        position,
        holders: holders.into_iter().map(WorkflowExecutionId::from).collect(),
    })
}

/// A task to put in line for its lock (`mutex`/`semaphore`).
#[derive(Debug, Clone)]
pub struct TaskAdmission {
    /// The task (started, its executions held `pending`).
    pub task: TaskExecutionId,
    /// Its run.
    pub run: WorkflowExecutionId,
    /// The lock's scope and key (`mutex prod-db`).
    pub key: String,
    /// Holders at most.
    pub limit: i32,
}

/// Puts each task in line for its lock (once) and grants the free slots;
/// returns the tasks of `admissions` that hold their lock (dispatch
/// them). A task of another run granted meanwhile gets its run's message
/// (see [`granted_tasks`]). The caller locked the tasks' rows (it just
/// started them): task rows before scope rows.
///
/// # Errors
/// A database error.
pub async fn admit_tasks(
    conn: &mut PgConnection,
    admissions: &[TaskAdmission],
) -> Result<HashSet<TaskExecutionId>, StoreError> {
    let mut sorted: Vec<&TaskAdmission> = admissions.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut granted = Vec::new();
    let mut scopes: Vec<&str> = sorted.iter().map(|a| a.key.as_str()).collect();
    scopes.dedup();
    for scope in scopes {
        sqlx::query(
            "INSERT INTO limit_scopes (scope) VALUES ($1) \
             ON CONFLICT (scope) DO UPDATE SET fair = false WHERE limit_scopes.fair",
        )
        .bind(scope)
        .execute(&mut *conn)
        .await
        .context("locking a lock's scope")?;
        for a in sorted.iter().filter(|a| a.key == scope) {
            sqlx::query(
                "INSERT INTO limit_keys (scope, key, capacity) VALUES ($1, $1, $2) \
                 ON CONFLICT (scope, key) DO UPDATE SET \
                     capacity = GREATEST(EXCLUDED.capacity, limit_keys.holders) \
                 WHERE limit_keys.capacity <> GREATEST(EXCLUDED.capacity, limit_keys.holders)",
            )
            .bind(scope)
            .bind(a.limit)
            .execute(&mut *conn)
            .await
            .context("recording a lock")?;
            let seq: Option<i64> = sqlx::query_scalar(
                "INSERT INTO limit_claims (scope, key, workflow_execution_id, task_execution_id, state) \
                 VALUES ($1, $1, $2, $3, $4) ON CONFLICT (task_execution_id) DO NOTHING \
                 RETURNING seq",
            )
            .bind(scope)
            .bind(a.run.as_uuid())
            .bind(a.task.as_uuid())
            .bind(WAITING)
            .fetch_optional(&mut *conn)
            .await
            .context("getting a task in line")?;
            if let Some(seq) = seq {
                sqlx::query(
                    "UPDATE limit_keys SET waiters = waiters + 1, head_seq = COALESCE(head_seq, $2) \
                     WHERE scope = $1 AND key = $1",
                )
                .bind(scope)
                .bind(seq)
                .execute(&mut *conn)
                .await
                .context("counting a task in line")?;
            }
        }
        granted.extend(grant(conn, scope).await?);
    }
    let ids: Vec<Uuid> = admissions.iter().map(|a| a.task.as_uuid()).collect();
    // A task in line is marked as one whose end releases a claim
    // (`task_executions.locks`, already set from its definition when its
    // run started): whatever that said, the claim and the mark commit
    // together, so no claim is ever skipped at its task's end.
    let holding: Vec<Uuid> = sqlx::query_scalar(
        "WITH marked AS ( \
             UPDATE task_executions SET locks = true WHERE id = ANY($1) AND NOT locks \
         ) \
         SELECT task_execution_id FROM limit_claims WHERE task_execution_id = ANY($1) AND state = $2",
    )
    .bind(&ids)
    .bind(HOLDING)
    .fetch_all(&mut *conn)
    .await
    .context("reading which tasks hold their lock")?;
    let holding: HashSet<TaskExecutionId> =
        holding.into_iter().map(TaskExecutionId::from).collect();
    let others: Vec<WorkflowExecutionId> = granted
        .into_iter()
        .filter(|(_, task)| task.is_none_or(|t| !holding.contains(&t)))
        .map(|(run, _)| run)
        .collect();
    start_granted(conn, &others).await?;
    Ok(holding)
}

/// The tasks of `run` that hold their lock and have not dispatched their
/// work yet (granted while they waited): what a resumed run dispatches.
///
/// # Errors
/// A database error.
pub async fn granted_tasks(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<Vec<crate::tasks::TaskRow>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM task_executions t \
         JOIN limit_claims c ON c.task_execution_id = t.id AND c.state = $2 \
         WHERE t.workflow_execution_id = $1 AND t.status = $3 \
           AND t.items_dispatched < t.items_total \
         ORDER BY t.id FOR NO KEY UPDATE OF t",
        columns = crate::prefixed("t", crate::tasks::TASK_COLUMNS),
    )))
    .bind(run.as_uuid())
    .bind(HOLDING)
    .bind(weft_common::TaskStatus::Running.as_str())
    .fetch_all(conn)
    .await
    .context("finding tasks granted their lock")
}

/// Where a task stands with its lock: in line (its place) or holding it,
/// with the runs whose tasks hold it; `None` without a claim.
///
/// # Errors
/// A database error.
pub async fn task_facts(
    conn: &mut PgConnection,
    task: TaskExecutionId,
) -> Result<Option<LimitFacts>, StoreError> {
    let claim: Option<Claim> = sqlx::query_as(
        "SELECT c.scope, c.key, c.state, c.seq, k.capacity, s.runs_total, s.holders \
         FROM limit_claims c \
         JOIN limit_keys k ON k.scope = c.scope AND k.key = c.key \
         JOIN limit_scopes s ON s.scope = c.scope \
         WHERE c.task_execution_id = $1",
    )
    .bind(task.as_uuid())
    .fetch_optional(&mut *conn)
    .await
    .context("reading a task's lock")?;
    let Some(claim) = claim else {
        return Ok(None);
    };
    claim_facts(conn, claim).await.map(Some)
}
