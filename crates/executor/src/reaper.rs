//! The reaper: ends executions that will never report back.
//!
//! An execution is overdue when its deadline (start + timeout + grace)
//! passed — the worker should have killed it and reported `timed_out` — or
//! when its worker stopped sending heartbeats. The reaper claims one such
//! row at a time with `FOR UPDATE SKIP LOCKED` (many executors reap side by
//! side without taking the same row) and records `timed_out` through the
//! same guarded completion a worker's report goes through, in the same
//! transaction: the task's retry policy then applies as usual. A report
//! that arrives later finds the guard flipped and is a no-op.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weft_common::ExecutionStatus;
use weft_store::executions::{self, Completion};

use crate::engine::{Applied, Engine};
use crate::error::EngineError;
use crate::relay::backoff;

/// Settings of the reaper.
#[derive(Debug, Clone)]
pub struct ReaperConfig {
    /// How often to look for overdue executions.
    pub interval: Duration,
    /// How long a worker may stay silent before its executions are reaped.
    pub heartbeat_grace: Duration,
}

impl Default for ReaperConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            heartbeat_grace: Duration::from_secs(30),
        }
    }
}

/// Reaps at most one overdue execution. Returns whether it found one.
///
/// # Errors
/// A database error.
pub async fn reap_once(engine: &Engine, config: &ReaperConfig) -> Result<bool, EngineError> {
    let mut tx = engine.begin().await?;
    let grace = i64::try_from(config.heartbeat_grace.as_millis()).unwrap_or(i64::MAX);
    let Some(overdue) = executions::claim_overdue(&mut tx, grace).await? else {
        return Ok(false);
    };
    tracing::warn!(
        execution_id = %overdue.id,
        workflow_execution_id = %overdue.workflow_execution_id,
        reason = %overdue.reason,
        "reaping an overdue execution"
    );
    let completion = Completion {
        id: overdue.id,
        attempt: overdue.attempt,
        status: ExecutionStatus::TimedOut,
        result: None,
        error: Some(&overdue.reason),
        worker_id: None,
        started_at: None,
        finished_at: None,
    };
    let applied = engine.complete(tx, &completion).await?;
    metrics::counter!("weft_reaper_reaped_total").increment(u64::from(applied == Applied::Changed));
    Ok(true)
}

/// Reaps until `shutdown`.
pub(crate) async fn run(engine: Engine, config: ReaperConfig, shutdown: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let wait = loop {
            match reap_once(&engine, &config).await {
                Ok(true) => {}
                Ok(false) => {
                    failures = 0;
                    break config.interval;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %weft_common::error_chain(&e), "reaping failed; retrying");
                    break backoff(failures).max(config.interval);
                }
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
