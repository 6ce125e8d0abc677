//! Re-sending dispatches that seem lost, so no lost message hangs a run.
//!
//! A dispatch can be lost after the outbox published it: its queue purged,
//! a broker node lost without replicated queues, the message dead-lettered.
//! Its execution then stays `queued` and its run waits forever. A queued
//! execution not taken by a worker within `--redispatch-after` (counted
//! from its dispatch's last write to the outbox, or from the end of its
//! retry backoff) has the same dispatch — same execution id, same attempt,
//! same input — written to the outbox again, in the transaction that
//! records the redispatch (`redispatched_at`, `redispatches`). Should the
//! first message turn up after all, both run; the guarded start and
//! completion keep the execution's outcome single.
//!
//! A run's start message (`workflow.submitted`) lost the same way leaves
//! the run `pending`: a run still pending `--redispatch-after` after it was
//! stored (or its start last re-sent) has its start sent again; starting
//! a run is guarded, so it starts once.
//!
//! A deep queue is not re-sent: a dispatch is re-sent only while its
//! pool's queue has no message ready (a passive declaration tells). A
//! message still waiting in the queue is not lost — or if it is, it is
//! re-sent once the queue has drained. So a backlog behind slow or absent
//! workers costs no duplicates, and a pool without workers gets at most one
//! copy waiting. `pending` executions (waiting for a concurrency slot) were
//! never dispatched and are left alone. Like reaping, re-sending happens
//! only while the executor is caught up with `weft.executor` (a start
//! report still in the backlog would make a taken dispatch look lost).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use weft_bus::Bus;
use weft_common::Envelope;
use weft_common::message::topology;
use weft_store::overdue::{self, Stale};
use weft_store::tasks;

use crate::decide::dispatch;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::reaper::{QUARANTINE, Quarantine};
use crate::step::Outgoing;

/// Stale executions claimed per transaction.
const BATCH: i64 = 100;

/// The most stale executions looked at in one pass (those in deep queues
/// are looked at and left).
const MAX_PER_PASS: usize = 10_000;

/// Re-sends lost dispatches; see the module docs.
#[derive(Debug)]
pub(crate) struct Redispatcher {
    after: Duration,
    quarantine: Quarantine,
}

impl Redispatcher {
    pub(crate) fn new(after: Duration) -> Self {
        Self {
            after,
            quarantine: Quarantine::default(),
        }
    }

    /// One pass: claims the queued executions waiting longer than `after`
    /// in batches and re-sends those whose pool's queue is empty. Returns
    /// how many it re-sent.
    pub(crate) async fn redispatch_once(
        &mut self,
        engine: &Engine,
        bus: &Bus,
    ) -> Result<usize, EngineError> {
        let after_ms = i64::try_from(self.after.as_millis()).unwrap_or(i64::MAX);
        // Runs whose start message was lost: sent again, through the outbox.
        let mut tx = engine.begin().await?;
        let restarted = overdue::resubmit_stale_runs(&mut tx, after_ms, BATCH).await?;
        tx.commit()
            .await
            .map_err(crate::error::db("committing re-sent starts"))?;
        for run in &restarted {
            tracing::warn!(workflow_execution_id = %run, "no executor started this run in time: re-sending its start");
        }
        let mut looked = self.quarantine.ids(Instant::now());
        // Whether each pool's queue was empty, asked once per pass.
        let mut empty: HashMap<String, bool> = HashMap::new();
        let mut sent = 0;
        loop {
            let mut tx = engine.begin().await?;
            let stale = overdue::claim_stale_queued(&mut tx, after_ms, &looked, BATCH).await?;
            if stale.is_empty() {
                break;
            }
            let mut out = Outgoing::default();
            let mut ids = Vec::new();
            for row in &stale {
                looked.push(row.execution.id);
                let envelope = match self.dispatch_of(engine, &mut tx, row).await {
                    Ok(envelope) => envelope,
                    Err(e) if e.is_transient() => return Err(e),
                    Err(e) => {
                        tracing::error!(
                            execution_id = %row.execution.id,
                            workflow_execution_id = %row.execution.workflow_execution_id,
                            error = %weft_common::error_chain(&e),
                            quarantine = ?QUARANTINE,
                            "cannot rebuild a lost dispatch; passing over it for a while"
                        );
                        self.quarantine.add(row.execution.id, Instant::now());
                        continue;
                    }
                };
                let weft_common::Message::Dispatch(d) = &envelope.message else {
                    continue;
                };
                let pool_empty = match empty.get(&d.queue) {
                    Some(known) => *known,
                    None => {
                        let ready = bus.queue_ready(&topology::task_queue(&d.queue)).await?;
                        let known = ready.unwrap_or(0) == 0;
                        empty.insert(d.queue.clone(), known);
                        known
                    }
                };
                if !pool_empty {
                    continue;
                }
                tracing::warn!(
                    execution_id = %row.execution.id,
                    workflow_execution_id = %row.execution.workflow_execution_id,
                    attempt = row.execution.attempt,
                    pool = %d.queue,
                    waiting_since = %row.waiting_since,
                    "no worker took this execution and its pool's queue is empty: re-sending its dispatch"
                );
                ids.push(row.execution.id);
                out.queued.push((envelope, None));
            }
            let recorded = overdue::redispatched(&mut tx, &ids).await?;
            // Each row is locked by this transaction: all are still queued.
            out.queued
                .retain(|(e, _)| matches!(&e.message, weft_common::Message::Dispatch(d) if recorded.contains(&d.execution_id)));
            sent += out.queued.len();
            engine.commit_messages(tx, out).await?;
            if stale.len() < usize::try_from(BATCH).unwrap_or(usize::MAX)
                || looked.len() >= MAX_PER_PASS
            {
                break;
            }
        }
        if sent > 0 {
            metrics::counter!("weft_executor_redispatched_total").increment(sent as u64);
        }
        Ok(sent + restarted.len())
    }

    /// The execution's dispatch as first sent: action, pool and timeout
    /// from its task's spec, input and attempt from the row.
    async fn dispatch_of(
        &self,
        engine: &Engine,
        conn: &mut sqlx::PgConnection,
        row: &Stale,
    ) -> Result<Envelope, EngineError> {
        let workflow = engine.inner.catalog.get(conn, row.definition_id).await?;
        let task = tasks::get(conn, row.execution.task_execution_id).await?;
        let spec = workflow.task(&task.task_name).ok_or_else(|| {
            EngineError::Inconsistent(format!(
                "task `{}` is not in the workflow of run {}",
                task.task_name, row.execution.workflow_execution_id
            ))
        })?;
        Ok(Envelope::new(dispatch(
            spec,
            &task,
            row.execution.id,
            row.execution.item_index,
            row.execution.attempt,
            row.execution.input.clone(),
        )))
    }
}
