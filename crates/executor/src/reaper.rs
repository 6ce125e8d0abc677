//! The reaper: ends executions that will never report back, and sends
//! again the dispatches that seem lost.
//!
//! An execution is overdue when its deadline (start + timeout + grace)
//! passed — the worker should have killed it and reported `timed_out` — or
//! when its worker stopped sending heartbeats. The reaper claims one such
//! row at a time with `FOR UPDATE SKIP LOCKED` (many executors reap side by
//! side without taking the same row) and records `timed_out` through the
//! same guarded completion a worker's report goes through, in the same
//! transaction: the task's retry policy then applies as usual. A report
//! that arrives later finds the guard flipped and is a no-op.
//!
//! Silence is judged only while this executor is caught up with
//! `weft.executor` (see [`Liveness`]): after a start, an outage or a
//! backlog, the heartbeats and reports that would prove the work alive may
//! still be waiting in the queue. A row whose reaping fails for a reason
//! retrying cannot fix is quarantined for a while ([`Quarantine`]), so it
//! is not claimed first on every pass ahead of all the others.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use weft_bus::Bus;
use weft_common::message::topology;
use weft_common::{ExecutionId, ExecutionStatus};
use weft_store::executions::Completion;

use crate::engine::{Applied, Engine};
use crate::error::EngineError;
use crate::liveness::{Handlers, Liveness};
use crate::redispatch::Redispatcher;
use crate::relay::backoff;

/// Settings of the reaper.
#[derive(Debug, Clone)]
pub struct ReaperConfig {
    /// How often to look for overdue executions.
    pub interval: Duration,
    /// How long a worker may stay silent before its executions are reaped;
    /// also how long an executor must have been caught up with
    /// `weft.executor` before it judges silence at all.
    pub heartbeat_grace: Duration,
    /// How long a queued execution may wait for a worker to take it before
    /// its dispatch is presumed lost and sent again (see `redispatch`).
    pub redispatch_after: Duration,
}

impl Default for ReaperConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            heartbeat_grace: Duration::from_secs(30),
            redispatch_after: weft_store::overdue::DEFAULT_REDISPATCH_AFTER,
        }
    }
}

/// Reaps overdue executions, one per [`Reaper::reap_once`], while its
/// executor is caught up.
#[derive(Debug)]
pub struct Reaper {
    config: ReaperConfig,
    liveness: Liveness,
    quarantine: Quarantine,
}

impl Reaper {
    /// A reaper judging by `liveness` (start from [`Liveness::new`] in a
    /// daemon: behind until observed caught up).
    #[must_use]
    pub fn new(config: ReaperConfig, liveness: Liveness) -> Self {
        Self {
            config,
            liveness,
            quarantine: Quarantine::default(),
        }
    }

    /// Records how many messages wait for this executor (see
    /// [`Liveness::observe`]).
    pub fn observe(&mut self, backlog: Option<u64>, now: Instant) {
        self.liveness.observe(backlog, now);
    }

    /// Whether silence may be judged now: caught up for the heartbeat
    /// grace.
    #[must_use]
    pub fn may_reap(&self, now: Instant) -> bool {
        self.liveness.may_reap(now, self.config.heartbeat_grace)
    }

    /// Reaps at most one overdue execution. Returns whether it found one
    /// (`false` also while not caught up: then nothing is judged). A row
    /// whose reaping fails for a reason retrying cannot fix is quarantined
    /// (logged once) and counts as found, so the caller goes on with the
    /// next.
    ///
    /// # Errors
    /// A transient database error; the row stays as it was.
    pub async fn reap_once(&mut self, engine: &Engine) -> Result<bool, EngineError> {
        let now = Instant::now();
        if !self.may_reap(now) {
            return Ok(false);
        }
        let mut tx = engine.begin().await?;
        let grace = i64::try_from(self.config.heartbeat_grace.as_millis()).unwrap_or(i64::MAX);
        let skip = self.quarantine.ids(now);
        let Some(overdue) = weft_store::overdue::claim_overdue(&mut tx, grace, &skip).await? else {
            return Ok(false);
        };
        tracing::warn!(
            execution_id = %overdue.id,
            workflow_execution_id = %overdue.workflow_execution_id,
            reason = %overdue.reason,
            "reaping an overdue execution"
        );
        // A timed-out `workflow:` task's child run is canceled with it
        // (in this transaction): nothing waits for its end any more.
        weft_store::children::cancel_children_of(&mut tx, &[overdue.id]).await?;
        let completion = Completion {
            id: overdue.id,
            run: overdue.workflow_execution_id,
            attempt: overdue.attempt,
            status: ExecutionStatus::TimedOut,
            result: None,
            error: Some(&overdue.reason),
            worker_id: None,
            started_at: None,
            finished_at: None,
            logs: None,
        };
        match engine.complete(tx, &completion).await {
            Ok(applied) => {
                metrics::counter!("weft_reaper_reaped_total")
                    .increment(u64::from(applied == Applied::Changed));
                Ok(true)
            }
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                tracing::error!(
                    execution_id = %overdue.id,
                    workflow_execution_id = %overdue.workflow_execution_id,
                    error = %weft_common::error_chain(&e),
                    quarantine = ?QUARANTINE,
                    "reaping an execution failed; passing over it for a while"
                );
                metrics::counter!("weft_reaper_quarantined_total").increment(1);
                self.quarantine.add(overdue.id, now);
                Ok(true)
            }
        }
    }
}

/// How long a row whose handling failed for good is passed over.
pub(crate) const QUARANTINE: Duration = Duration::from_secs(600);

/// The most rows passed over at once (the oldest entry makes room).
const QUARANTINE_CAPACITY: usize = 1_024;

/// Executions whose reaping (or redispatch) failed for a reason retrying
/// cannot fix, passed over for [`QUARANTINE`] each: long enough not to
/// spend every pass on them, short enough that a fix (a deploy, a repaired
/// row) is picked up without a restart.
#[derive(Debug, Default)]
pub(crate) struct Quarantine {
    since: HashMap<ExecutionId, Instant>,
}

impl Quarantine {
    pub(crate) fn add(&mut self, id: ExecutionId, now: Instant) {
        self.prune(now);
        if self.since.len() >= QUARANTINE_CAPACITY
            && let Some(oldest) = self
                .since
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(id, _)| *id)
        {
            self.since.remove(&oldest);
        }
        self.since.insert(id, now);
    }

    /// The executions passed over at `now`.
    pub(crate) fn ids(&mut self, now: Instant) -> Vec<ExecutionId> {
        self.prune(now);
        self.since.keys().copied().collect()
    }

    fn prune(&mut self, now: Instant) {
        self.since
            .retain(|_, since| now.saturating_duration_since(*since) < QUARANTINE);
    }
}

/// Observes the backlog, reaps and re-sends lost dispatches every
/// `interval`, until `shutdown`.
pub(crate) async fn run(
    engine: Engine,
    bus: Bus,
    mut reaper: Reaper,
    handlers: Handlers,
    shutdown: CancellationToken,
) {
    let mut redispatcher = Redispatcher::new(reaper.config.redispatch_after);
    let interval = reaper.config.interval;
    let mut failures = 0u32;
    loop {
        let ready = tokio::select! {
            () = shutdown.cancelled() => return,
            ready = bus.queue_ready(topology::EXECUTOR_QUEUE) => ready.unwrap_or_else(|e| {
                tracing::debug!(error = %weft_common::error_chain(&e), "cannot count weft.executor; judging no silence");
                None
            }),
        };
        reaper.observe(handlers.backlog(ready), Instant::now());
        let wait = loop {
            match reaper.reap_once(&engine).await {
                Ok(true) => {}
                Ok(false) => {
                    failures = 0;
                    break interval;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %weft_common::error_chain(&e), "reaping failed; retrying");
                    break backoff(failures).max(interval);
                }
            }
        };
        // Re-sending waits for the same gate: a start report still in the
        // backlog would otherwise look like a dispatch never taken.
        if failures == 0
            && reaper.may_reap(Instant::now())
            && let Err(e) = redispatcher.redispatch_once(&engine, &bus).await
        {
            tracing::warn!(error = %weft_common::error_chain(&e), "re-sending lost dispatches failed; retrying");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarantined_row_is_passed_over_until_its_time_is_up() {
        let t0 = Instant::now();
        let mut quarantine = Quarantine::default();
        let bad = ExecutionId::new();
        quarantine.add(bad, t0);
        assert_eq!(quarantine.ids(t0 + Duration::from_secs(1)), [bad]);
        assert!(quarantine.ids(t0 + QUARANTINE).is_empty());
    }

    #[test]
    fn a_full_quarantine_lets_its_oldest_row_go() {
        let t0 = Instant::now();
        let mut quarantine = Quarantine::default();
        let first = ExecutionId::new();
        quarantine.add(first, t0);
        for i in 1..QUARANTINE_CAPACITY {
            quarantine.add(ExecutionId::new(), t0 + Duration::from_millis(i as u64));
        }
        let now = t0 + Duration::from_secs(2);
        quarantine.add(ExecutionId::new(), now);
        let ids = quarantine.ids(now);
        assert_eq!(ids.len(), QUARANTINE_CAPACITY);
        assert!(!ids.contains(&first));
    }
}
