//! Bounded history: deleting runs that finished long ago, with everything
//! beneath them.
//!
//! Only a finished run goes — its status terminal per
//! [`WorkflowStatus::is_terminal`], its `finished_at` before the cutoff —
//! and its task executions and executions go with it through the
//! `ON DELETE CASCADE` of their foreign keys. A pending, running or
//! canceling run stays whatever its age. Outbox rows are not touched: they
//! are messages still due (a `workflow.finished` of a run that finished a
//! moment before the cutoff, say), and they reference no row.
//!
//! Deletion goes in batches, one statement each ([`prune_batch`]): with no
//! transaction around it a batch commits on its own, so a long prune
//! neither holds locks on all of history nor loses what it did when
//! interrupted. Each batch selects its runs `FOR UPDATE SKIP LOCKED`:
//! concurrent prunes (several executors' retention loops, an operator's
//! `weft prune`) take different runs, and a run that `weft retry` is
//! re-opening at that moment (its row locked by the retry's `UPDATE`) is
//! skipped rather than waited for. The `DELETE` re-checks status and age in
//! the same statement, so a run re-opened after it was counted (a
//! dry run, or a selection that lost the race) stays.
//!
//! `workflow_definitions` rows are kept, even when no run refers to them
//! any more: a submit inserts its definition `ON CONFLICT DO NOTHING` in
//! the statement that stores the run, so deleting the definition between
//! that conflict and the run's foreign key check would fail the submit. A
//! definition is one row per distinct workflow source, not per run, so
//! keeping them does not let history grow without bound.

use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use weft_common::WorkflowStatus;

use crate::error::{Context, StoreError};

/// Runs deleted per statement unless the caller says otherwise: large
/// enough that a batch's round trip is noise, small enough (with ~100
/// executions a run, ~50,000 rows) that one batch holds its locks and
/// bloats the WAL for well under a second.
pub const DEFAULT_BATCH: NonZeroU32 = NonZeroU32::new(500).expect("500 is not zero");

/// What a prune deleted, or with a dry run would delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Runs that finished before this instant (the database's clock) were
    /// eligible.
    pub cutoff: DateTime<Utc>,
    /// Runs (`workflow_executions`).
    pub runs: u64,
    /// Their tasks (`task_executions`).
    pub tasks: u64,
    /// Their executions (every item × attempt).
    pub executions: u64,
}

impl Pruned {
    /// Nothing yet, against `cutoff`.
    #[must_use]
    pub const fn none(cutoff: DateTime<Utc>) -> Self {
        Self {
            cutoff,
            runs: 0,
            tasks: 0,
            executions: 0,
        }
    }

    /// Adds a batch's counts to these.
    pub const fn add(&mut self, batch: &Self) {
        self.runs += batch.runs;
        self.tasks += batch.tasks;
        self.executions += batch.executions;
    }
}

/// The names of the terminal run states, as bound into the queries: the
/// one rule of what "finished" means lives in `weft_common::state`.
fn finished_states() -> Vec<&'static str> {
    WorkflowStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str())
        .collect()
}

/// The instant `older_than` before now, by the database's clock (the one
/// `finished_at` was written with), so a client with a skewed clock prunes
/// what it meant to.
///
/// # Errors
/// A database error, also when `older_than` reaches before year 4713 BC.
pub async fn cutoff(
    conn: &mut PgConnection,
    older_than: Duration,
) -> Result<DateTime<Utc>, StoreError> {
    sqlx::query_scalar("SELECT now() - make_interval(secs => $1)")
        .bind(older_than.as_secs_f64())
        .fetch_one(conn)
        .await
        .context("computing the prune cutoff")
}

/// Counts the runs finished before `cutoff` and their rows, deleting
/// nothing: what [`prune`] would delete now. A plain read without locks.
///
/// # Errors
/// A database error.
pub async fn count(conn: &mut PgConnection, cutoff: DateTime<Utc>) -> Result<Pruned, StoreError> {
    let (runs, tasks, executions): (i64, i64, i64) = sqlx::query_as(
        "WITH r AS ( \
             SELECT id FROM workflow_executions WHERE status = ANY($1) AND finished_at < $2 \
         ) \
         SELECT (SELECT count(*) FROM r), \
                (SELECT count(*) FROM task_executions t JOIN r ON r.id = t.workflow_execution_id), \
                (SELECT count(*) FROM executions e JOIN r ON r.id = e.workflow_execution_id)",
    )
    .bind(finished_states())
    .bind(cutoff)
    .fetch_one(conn)
    .await
    .context("counting finished runs to prune")?;
    Ok(counted(cutoff, runs, tasks, executions))
}

/// Deletes at most `batch` runs finished before `cutoff` (oldest first) with
/// their tasks and executions, in one statement; returns what it deleted.
/// Fewer than `batch` runs means none was left to take (or the rest were
/// locked by another prune or a retry).
///
/// Runs locked by someone else are skipped, never waited for; the delete
/// re-checks each run's status and age in the same statement, so a run
/// re-opened by `weft retry` after it was selected is not deleted. Without
/// a transaction around it the batch commits on its own.
///
/// # Errors
/// A database error.
pub async fn prune_batch(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
    batch: NonZeroU32,
) -> Result<Pruned, StoreError> {
    // The counts of task executions and executions read the statement's
    // snapshot, taken before the cascade deletes them: they count exactly
    // the rows that go with the deleted runs.
    let (runs, tasks, executions): (i64, i64, i64) = sqlx::query_as(
        "WITH v AS ( \
             SELECT id FROM workflow_executions \
             WHERE status = ANY($1) AND finished_at < $2 \
             ORDER BY finished_at LIMIT $3 \
             FOR UPDATE SKIP LOCKED \
         ), d AS ( \
             DELETE FROM workflow_executions w USING v \
             WHERE w.id = v.id AND w.status = ANY($1) AND w.finished_at < $2 \
             RETURNING w.id \
         ) \
         SELECT (SELECT count(*) FROM d), \
                (SELECT count(*) FROM task_executions t JOIN d ON d.id = t.workflow_execution_id), \
                (SELECT count(*) FROM executions e JOIN d ON d.id = e.workflow_execution_id)",
    )
    .bind(finished_states())
    .bind(cutoff)
    .bind(i64::from(batch.get()))
    .fetch_one(conn)
    .await
    .context("deleting finished runs")?;
    Ok(counted(cutoff, runs, tasks, executions))
}

/// Deletes every run that finished more than `older_than` ago, with its
/// tasks and executions, `batch` runs per statement until none is left;
/// with `dry_run`, only counts them. The cutoff is fixed once at the start,
/// so runs finishing meanwhile do not keep it going. Without a transaction
/// around it each batch commits on its own: interrupted, it has deleted
/// whole batches and nothing else.
///
/// # Errors
/// A database error; batches committed before it stay deleted.
#[tracing::instrument(skip_all, fields(older_than = ?older_than, dry_run), err)]
pub async fn prune(
    conn: &mut PgConnection,
    older_than: Duration,
    batch: NonZeroU32,
    dry_run: bool,
) -> Result<Pruned, StoreError> {
    let cutoff = cutoff(&mut *conn, older_than).await?;
    if dry_run {
        return count(&mut *conn, cutoff).await;
    }
    let mut total = Pruned::none(cutoff);
    loop {
        let pruned = prune_batch(&mut *conn, cutoff, batch).await?;
        total.add(&pruned);
        tracing::debug!(
            runs = pruned.runs,
            executions = pruned.executions,
            "pruned a batch"
        );
        if pruned.runs < u64::from(batch.get()) {
            return Ok(total);
        }
    }
}

fn counted(cutoff: DateTime<Utc>, runs: i64, tasks: i64, executions: i64) -> Pruned {
    // `count(*)` is never negative.
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Pruned {
        cutoff,
        runs: n(runs),
        tasks: n(tasks),
        executions: n(executions),
    }
}
