//! Run-wide parallelism (`parallelism: N`): the executor's side.
//!
//! A task of a limited run that is decided to run starts with every
//! execution `pending` ([`hold`]): nothing of a limited run is dispatched
//! when it is decided, by a finished item claiming the next one, or by a
//! stream. Instead every [`Step`](crate::step::Step) that touched a
//! limited run ends by filling its free slots ([`fill`]): under the run's
//! lock it counts what is in flight and dispatches up to `N` minus that,
//! in the workflow's task order, then item order, each task within its
//! own `concurrency`. A retry takes the slot its failed attempt frees, in
//! the same transaction (so it holds it through its backoff). See
//! `weft_store::parallelism` and ADR 0012.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use sqlx::PgConnection;
use weft_common::message::Dispatch;
use weft_common::{Envelope, ExecutionStatus, WorkflowExecutionId};
use weft_store::executions::{self, TaskStart};
use weft_store::{parallelism, tasks};

use crate::decide::{STREAM_WINDOW, dispatch};
use crate::error::EngineError;
use crate::step::{Outgoing, RunInfo};

/// Runs this executor knows have no `parallelism`, so a completion of
/// theirs need not ask the database whether to lock their row first (one
/// round trip fewer per step). A run's `parallelism` comes from its
/// definition and is recorded by the transaction that starts it, before
/// any of its executions exists; so a run is noted here when this
/// executor starts it without one, or when a recorded completion of it
/// (proof that it started) found none — and it never changes after. The
/// set is bounded by starting over when it grows past its capacity.
#[derive(Debug)]
pub(crate) struct Unlimited {
    runs: Mutex<HashSet<WorkflowExecutionId>>,
    capacity: usize,
}

impl Unlimited {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            runs: Mutex::new(HashSet::new()),
            capacity: capacity.max(1),
        }
    }

    /// Those of `runs` not known to be unlimited: the ones to look up.
    pub(crate) fn unknown(&self, runs: &[WorkflowExecutionId]) -> Vec<WorkflowExecutionId> {
        let known = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.iter()
            .filter(|r| !known.contains(r))
            .copied()
            .collect()
    }

    /// Notes `runs` as having no `parallelism`.
    pub(crate) fn note(&self, runs: impl IntoIterator<Item = WorkflowExecutionId>) {
        let mut known = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        for run in runs {
            if known.len() >= self.capacity {
                known.clear();
            }
            known.insert(run);
        }
    }
}

/// Makes a task decided to run in a limited run wait for slots: the
/// executions it would dispatch now are created `pending` instead and
/// none is dispatched (its kept items, from an earlier round, stay as
/// they are); [`fill`] dispatches them.
pub(crate) fn hold(start: &mut TaskStart, dispatches: &mut Vec<Dispatch>) {
    for execution in &mut start.executions {
        if execution.status == ExecutionStatus::Queued {
            execution.status = ExecutionStatus::Pending;
        }
    }
    start.dispatched = start.kept;
    dispatches.clear();
}

/// Dispatches as many waiting executions of a limited run as it has free
/// slots (at most [`STREAM_WINDOW`] per transaction: the completions of
/// those dispatch the rest), in the workflow's task order then item
/// order, each task within its `concurrency`. Locks the run row first (see
/// [`parallelism::free_slots`]). Returns how many it dispatched.
pub(crate) async fn fill(
    conn: &mut PgConnection,
    run: &RunInfo,
    limit: u32,
    out: &mut Outgoing,
) -> Result<usize, EngineError> {
    let limit = i32::try_from(limit).unwrap_or(i32::MAX);
    let free = parallelism::free_slots(conn, run.id, limit).await?;
    if free <= 0 {
        return Ok(0);
    }
    let mut waiting = parallelism::waiting(conn, run.id).await?;
    waiting.sort_by_key(|t| run.workflow.position(&t.task_name));
    let mut free = free.min(STREAM_WINDOW);
    let mut sent = 0;
    for task in waiting {
        if free <= 0 {
            break;
        }
        let spec = run.spec(&task.task_name)?;
        let in_flight = task.items_dispatched - task.items_done();
        let room = task
            .concurrency
            .map_or(i32::MAX, |c| c.saturating_sub(in_flight));
        let wanted = free.min(room);
        if wanted <= 0 {
            continue;
        }
        let claimed = tasks::claim_next_items(conn, task.id, wanted).await?;
        if claimed.is_empty() {
            continue;
        }
        let attempt = task.attempt_base + 1;
        let count = claimed.len();
        let mut queued = if task.with_items {
            let by_seq = task.items_kept > 0;
            executions::queue_items(conn, task.id, claimed.clone(), attempt, by_seq).await?
        } else {
            parallelism::queue_plain(conn, task.id, attempt)
                .await?
                .into_iter()
                .collect()
        };
        if queued.len() != count {
            return Err(EngineError::Inconsistent(format!(
                "items {claimed:?} of task `{}` in run {} were claimed for run-wide slots but only {} were pending",
                task.task_name,
                run.id,
                queued.len()
            )));
        }
        queued.sort_by_key(|e| e.item_index);
        for execution in queued {
            let dispatch = dispatch(
                spec,
                &task,
                execution.id,
                execution.item_index,
                attempt,
                execution.input,
            );
            out.queued.push((Envelope::new(dispatch), None));
        }
        free -= i32::try_from(count).unwrap_or(i32::MAX);
        sent += count;
    }
    if sent > 0 {
        tracing::debug!(workflow_execution_id = %run.id, dispatched = sent, "filled run-wide slots");
    }
    Ok(sent)
}

#[cfg(test)]
mod unlimited_tests {
    use super::Unlimited;
    use weft_common::WorkflowExecutionId;

    #[test]
    fn only_noted_runs_are_known_and_the_set_starts_over_when_full() {
        let unlimited = Unlimited::new(2);
        let (a, b, c) = (
            WorkflowExecutionId::new(),
            WorkflowExecutionId::new(),
            WorkflowExecutionId::new(),
        );
        assert_eq!(unlimited.unknown(&[a, b]), vec![a, b]);
        unlimited.note([a, b]);
        assert!(unlimited.unknown(&[a, b]).is_empty());
        assert_eq!(unlimited.unknown(&[a, c]), vec![c]);
        // Full: starts over, forgetting (never inventing) what it knew.
        unlimited.note([c]);
        assert_eq!(unlimited.unknown(&[a, b, c]), vec![a, b]);
    }
}
