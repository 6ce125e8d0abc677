//! The retention loop: deletes runs finished longer ago than `--retention`,
//! in the background, without hogging the database.
//!
//! Off unless configured. Each pass fixes a cutoff and deletes batch after
//! batch through [`weft_store::prune::prune_batch`] (one statement each,
//! committed on its own), pausing between batches at least as long as the
//! last one took: however much history is due, the loop keeps one
//! connection busy at most half of the time, and no batch holds its locks
//! or its share of the disk for long. Every executor may run it: batches take their runs
//! `FOR UPDATE SKIP LOCKED`, so loops side by side share the work instead of
//! racing for it, and a run `weft retry` is re-opening is skipped.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use weft_store::prune::{self, Pruned};

use crate::error::{EngineError, db};
use crate::relay::backoff;

/// Settings of the retention loop.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Runs finished longer ago than this are deleted.
    pub keep: Duration,
    /// How often a pass looks for runs past `keep` (a pass with nothing to
    /// delete is one indexed query).
    pub interval: Duration,
    /// Runs deleted per statement.
    pub batch: NonZeroU32,
    /// The shortest pause between two batches of one pass.
    pub pause: Duration,
}

impl RetentionConfig {
    /// Keeps runs for `keep`, with the default pacing.
    #[must_use]
    pub const fn keeping(keep: Duration) -> Self {
        Self {
            keep,
            interval: Duration::from_secs(60),
            batch: prune::DEFAULT_BATCH,
            pause: Duration::from_millis(100),
        }
    }
}

/// One pass: deletes every run finished before now − `keep`, batch by batch
/// with a pause between, and returns what it deleted. Returns early, between
/// batches, when `shutdown` fires; what was deleted stays deleted.
///
/// # Errors
/// A database error (batches committed before it stay deleted).
pub async fn prune_once(
    pool: &PgPool,
    config: &RetentionConfig,
    shutdown: &CancellationToken,
) -> Result<Pruned, EngineError> {
    let acquire = || async {
        pool.acquire()
            .await
            .map_err(db("acquiring a connection to prune history"))
    };
    let cutoff = prune::cutoff(&mut *acquire().await?, config.keep).await?;
    let mut total = Pruned::none(cutoff);
    loop {
        let began = Instant::now();
        // A connection per batch: between batches it is back in the pool,
        // where the engine may need it more.
        let batch = prune::prune_batch(&mut *acquire().await?, cutoff, config.batch).await?;
        total.add(&batch);
        metrics::counter!("weft_retention_pruned_runs_total").increment(batch.runs);
        if batch.runs < u64::from(config.batch.get()) {
            return Ok(total);
        }
        let pause = began.elapsed().max(config.pause);
        tokio::select! {
            () = shutdown.cancelled() => return Ok(total),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Prunes every `interval` until `shutdown`; a failed pass is logged and
/// the next one tries again (a restarting PostgreSQL pauses it, nothing
/// more).
pub(crate) async fn run(pool: PgPool, config: RetentionConfig, shutdown: CancellationToken) {
    tracing::info!(keep = ?config.keep, "retention on: runs finished longer ago are deleted");
    let mut failures = 0u32;
    loop {
        let wait = match prune_once(&pool, &config, &shutdown).await {
            Ok(pruned) => {
                failures = 0;
                if pruned.runs > 0 {
                    tracing::info!(
                        runs = pruned.runs,
                        tasks = pruned.tasks,
                        executions = pruned.executions,
                        cutoff = %pruned.cutoff,
                        "pruned finished runs past retention"
                    );
                }
                config.interval
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %weft_common::error_chain(&e), "pruning history failed; retrying");
                backoff(failures).max(config.interval)
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
