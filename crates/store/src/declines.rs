//! Dispatches declined by a worker that does not know their action.
//!
//! A pool may mix workers with different actions (a custom worker next to
//! a stock one): a dispatch taken by a worker that does not know its action
//! is not run, and not failed, but declined. The execution stays `queued`
//! at the same attempt; the executor hands the dispatch to a live worker of
//! the pool that knows the action and has not declined it, through that
//! worker's private queue — or, when there is none, fails the attempt
//! naming the pool and the actions its workers know. Each worker declines
//! an execution at most once (`executions.declined_by`), so a decline can
//! never loop.

use std::time::Duration;

use sqlx::PgConnection;
use weft_common::message::Dispatch;
use weft_common::{ExecutionStatus, WorkflowStatus};

use crate::error::{Context, StoreError};
use crate::runs::{self, RunLock};
use crate::workers;

/// What to do with a declined dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declined {
    /// Send it to this live worker of the pool, which advertises the
    /// action (its re-send is recorded: `redispatched_at`, `redispatches`).
    HandTo(String),
    /// No live worker of the pool knows the action: fail the attempt
    /// with this error.
    Fail(String),
    /// Nothing to do: the execution is no longer queued at this attempt
    /// (another copy of its dispatch started it, the run is being
    /// canceled), or this worker's decline was recorded already.
    Duplicate,
}

/// Records that `worker` declined `dispatch` (guarded: the execution is
/// still `queued` at the dispatch's attempt, and `worker` had not declined
/// it), locking the run `FOR KEY SHARE` first as any dispatching
/// transaction does, and says what to do next. `known` is what the
/// declining worker knows and `refused` what its policy refuses (both may
/// be newer than its last heartbeat).
///
/// # Errors
/// A database error.
pub async fn decline(
    conn: &mut PgConnection,
    dispatch: &Dispatch,
    worker: &str,
    known: &[String],
    refused: &[String],
    grace: Duration,
) -> Result<Declined, StoreError> {
    let run = runs::status(conn, dispatch.workflow_execution_id, RunLock::Dispatch).await?;
    if run != WorkflowStatus::Running {
        return Ok(Declined::Duplicate);
    }
    let declined_by: Option<Vec<String>> = sqlx::query_scalar(
        "UPDATE executions SET declined_by = array_append(coalesce(declined_by, '{}'), $3) \
         WHERE id = $1 AND attempt = $2 AND status = $4 \
           AND NOT ($3 = ANY(coalesce(declined_by, '{}'))) \
         RETURNING declined_by",
    )
    .bind(dispatch.execution_id.as_uuid())
    .bind(i32::try_from(dispatch.attempt).unwrap_or(i32::MAX))
    .bind(worker)
    .bind(ExecutionStatus::Queued.as_str())
    .fetch_optional(&mut *conn)
    .await
    .context("recording a declined dispatch")?;
    let Some(declined_by) = declined_by else {
        return Ok(Declined::Duplicate);
    };
    let pool = std::slice::from_ref(&dispatch.queue);
    let live = workers::live_in_pools(conn, pool, grace).await?;
    let target = live
        .iter()
        .filter(|w| w.actions.contains(&dispatch.action) && !declined_by.contains(&w.id))
        // The least loaded first: running per slot.
        .min_by(|a, b| load(a).total_cmp(&load(b)).then_with(|| a.id.cmp(&b.id)));
    if let Some(target) = target {
        crate::overdue::redispatched(conn, &[dispatch.execution_id]).await?;
        return Ok(Declined::HandTo(target.id.clone()));
    }
    let mut actions: Vec<String> = live
        .iter()
        .flat_map(|w| w.actions.iter().cloned())
        .chain(known.iter().cloned())
        .collect();
    actions.sort();
    actions.dedup();
    let is_refused = refused.contains(&dispatch.action)
        || live.iter().any(|w| w.refused.contains(&dispatch.action));
    Ok(Declined::Fail(if is_refused {
        weft_common::policy::refused_by_policy(&dispatch.queue, &dispatch.action, &actions)
    } else {
        nobody_knows(&dispatch.queue, &dispatch.action, &actions)
    }))
}

fn load(w: &workers::WorkerRow) -> f64 {
    f64::from(w.running) / f64::from(w.concurrency.max(1))
}

/// The error of an attempt whose action no live worker of its pool knows.
fn nobody_knows(pool: &str, action: &str, known: &[String]) -> String {
    format!(
        "unknown action `{action}`: no live worker of pool `{pool}` knows it (its workers know: {})",
        if known.is_empty() {
            "nothing advertised".to_owned()
        } else {
            known.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_error_names_the_pool_and_what_its_workers_know() {
        assert_eq!(
            super::nobody_knows("gpu", "resise", &["echo".into(), "resize".into()]),
            "unknown action `resise`: no live worker of pool `gpu` knows it (its workers know: echo, resize)"
        );
    }
}
