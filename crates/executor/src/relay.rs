//! The outbox relay: publishes committed messages, then deletes them.
//!
//! Any number of relays (one per executor) share the outbox with
//! `FOR UPDATE SKIP LOCKED`. A message is deleted only after the broker
//! confirmed it, in the same transaction that claimed it; a crash between
//! the confirm and the commit publishes it again, which every consumer
//! tolerates (guards make duplicates no-ops). The relay wakes when its own
//! engine commits, when another process `NOTIFY`s (the CLI's submit), when
//! the next delayed message (a retry) becomes due, and at least every
//! `sweep_interval` as a safety net. A row it cannot decode is parked
//! (moved to `outbox_parked`, reported by `weft audit`), never dropped.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use weft_bus::{Bus, Publisher};
use weft_common::{Envelope, Message, WorkflowExecutionId};
use weft_store::outbox;

use crate::engine::Engine;
use crate::error::{EngineError, db};

/// Settings of the relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Messages claimed per transaction.
    pub batch: i64,
    /// Longest sleep without a wake-up.
    pub sweep_interval: Duration,
    /// How long a relay leaves alone the messages an executor wrote and
    /// publishes itself right after its commit; past it, relays publish
    /// them (the executor crashed, or could not reach the broker).
    pub lease: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 500,
            sweep_interval: Duration::from_secs(1),
            lease: Duration::from_secs(10),
        }
    }
}

/// Publishes outbox messages with confirms and reports which ones the
/// broker took. Shared by the relay and the post-commit flusher.
#[derive(Debug)]
pub(crate) struct Outlet {
    bus: Bus,
    publisher: Publisher,
    /// Worker pools whose queue this outlet has declared.
    declared: HashSet<String>,
}

impl Outlet {
    pub(crate) async fn new(bus: Bus) -> Result<Self, weft_bus::BusError> {
        let publisher = bus.publisher().await?;
        Ok(Self {
            bus,
            publisher,
            declared: HashSet::new(),
        })
    }

    /// Publishes the messages (pipelined confirms); returns the outbox ids
    /// of those that are done with (confirmed, or unroutable but nobody has
    /// to receive them) and the first error, if any.
    pub(crate) async fn publish(
        &mut self,
        ids: &[i64],
        envelopes: &[Envelope],
    ) -> (Vec<i64>, Option<weft_bus::BusError>) {
        self.declare_pools(envelopes).await;
        let results = self.publisher.publish_many(envelopes).await;
        let mut published = Vec::with_capacity(ids.len());
        let mut first_error = None;
        for ((id, envelope), result) in ids.iter().zip(envelopes).zip(results) {
            match result {
                Ok(()) => published.push(*id),
                // Nobody listens for it right now, and nobody has to.
                Err(weft_bus::BusError::Unroutable { .. })
                    if !envelope.message.must_be_routed() =>
                {
                    published.push(*id);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        metrics::counter!("weft_outbox_published_total").increment(published.len() as u64);
        (published, first_error)
    }

    /// Declares the queue of every worker pool a dispatch goes to, once per
    /// outlet, so a dispatch to a pool no worker has started yet waits in
    /// its queue instead of being unroutable.
    async fn declare_pools(&mut self, envelopes: &[Envelope]) {
        let mut new: Vec<String> = Vec::new();
        for envelope in envelopes {
            if let Message::Dispatch(d) = &envelope.message
                && !self.declared.contains(&d.queue)
                && !new.contains(&d.queue)
            {
                new.push(d.queue.clone());
            }
        }
        if new.is_empty() {
            return;
        }
        match self.bus.declare_topology(&new).await {
            Ok(()) => self.declared.extend(new),
            Err(e) => tracing::warn!(error = %e, "declaring worker pool queues failed; will retry"),
        }
    }
}

/// Claimed `workflow.submitted` messages, to apply in process.
#[derive(Debug, Default)]
pub(crate) struct Starts {
    /// Their outbox rows.
    pub(crate) ids: Vec<i64>,
    /// The runs they start.
    pub(crate) runs: Vec<WorkflowExecutionId>,
}

/// Moves the run starts out of claimed messages; the rest is published.
fn take_starts(ids: &mut Vec<i64>, envelopes: &mut Vec<Envelope>) -> Starts {
    let mut starts = Starts::default();
    let mut kept = 0;
    for i in 0..ids.len() {
        if let Message::WorkflowSubmitted(m) = &envelopes[i].message {
            starts.ids.push(ids[i]);
            starts.runs.push(m.workflow_execution_id);
        } else {
            ids.swap(kept, i);
            envelopes.swap(kept, i);
            kept += 1;
        }
    }
    ids.truncate(kept);
    envelopes.truncate(kept);
    starts
}

/// Publishes outbox messages until `shutdown`.
#[derive(Debug)]
pub struct Relay {
    pool: PgPool,
    outlet: Outlet,
    config: RelayConfig,
    /// The engine that starts the runs this relay claims, in the claiming
    /// transaction, instead of publishing their start to some executor
    /// (see [`Relay::starting_runs`]).
    engine: Option<Engine>,
    /// Set after starting runs in process failed: the next claim publishes
    /// their starts instead, so a start that cannot be applied reaches the
    /// consumers' handling (retries, dead letters) rather than blocking
    /// this relay.
    publish_starts: bool,
}

impl Relay {
    /// A relay publishing through `bus`.
    ///
    /// # Errors
    /// If no publisher channel can be opened.
    pub async fn new(
        pool: PgPool,
        bus: Bus,
        config: RelayConfig,
    ) -> Result<Self, weft_bus::BusError> {
        Ok(Self {
            pool,
            outlet: Outlet::new(bus).await?,
            config,
            engine: None,
            publish_starts: false,
        })
    }

    /// Makes this relay start the runs whose `workflow.submitted` it claims
    /// (a `weft submit`'s, a `weft retry`'s) with `engine`, in the claiming
    /// transaction, which deletes their rows with the same commit: a run
    /// submitted without a broker connection starts without a broker round
    /// trip (publish, confirm, delivery) between its commit and its start.
    /// Exactly once all the same: the start is the guarded transition any
    /// executor applies, and the row goes only with the start's commit.
    #[must_use]
    pub fn starting_runs(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Claims one batch of due messages, publishes it with confirms and
    /// deletes what the broker confirmed. Returns how many were published.
    ///
    /// # Errors
    /// A database or broker error; unpublished messages stay in the outbox.
    pub async fn relay_once(&mut self) -> Result<usize, EngineError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("beginning a relay transaction"))?;
        let rows = outbox::claim(&mut tx, self.config.batch).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        tracing::debug!(count = rows.len(), "relaying outbox messages");
        let mut ids = Vec::with_capacity(rows.len());
        let mut envelopes = Vec::with_capacity(rows.len());
        let mut undecodable = Vec::new();
        for row in &rows {
            match row.envelope() {
                Ok(envelope) => {
                    ids.push(row.id);
                    envelopes.push(envelope);
                }
                Err(e) => {
                    // One bad row must not block the outbox, and must not
                    // vanish either: it may be a run's only start or a
                    // task's only dispatch. Parked, `weft audit` shows it.
                    tracing::error!(outbox_id = row.id, error = %e, "parking an undecodable outbox row");
                    undecodable.push((row.id, weft_common::error_chain(&e)));
                }
            }
        }
        if !undecodable.is_empty() {
            outbox::park(&mut tx, &undecodable).await?;
            metrics::counter!("weft_outbox_parked_total").increment(undecodable.len() as u64);
        }
        let starts = match &self.engine {
            Some(_) if !std::mem::take(&mut self.publish_starts) => {
                take_starts(&mut ids, &mut envelopes)
            }
            _ => Starts::default(),
        };
        let (published, first_error) = self.outlet.publish(&ids, &envelopes).await;
        outbox::delete(&mut tx, &published).await?;
        let relayed = published.len() + starts.ids.len();
        match (&self.engine, starts.runs.is_empty()) {
            (Some(engine), false) => match engine.start_claimed(&mut tx, &starts).await {
                Ok(outgoing) => engine.commit(tx, outgoing).await?,
                Err(e) => {
                    // Nothing of this claim is committed (published
                    // messages go out again, which consumers absorb as
                    // duplicates); the next claim publishes the starts.
                    drop(tx);
                    self.publish_starts = true;
                    return Err(e);
                }
            },
            _ => tx
                .commit()
                .await
                .map_err(db("committing a relay transaction"))?,
        }
        match first_error {
            Some(e) => Err(EngineError::Bus(e)),
            None => Ok(relayed),
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, engine: Engine, shutdown: CancellationToken) {
        self.engine.get_or_insert_with(|| engine.clone());
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(mut l) => match l.listen(outbox::CHANNEL).await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; relying on the periodic sweep");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "no LISTEN connection; relying on the periodic sweep");
                None
            }
        };
        let mut failures = 0u32;
        loop {
            // Drain everything that is due.
            let mut wait = self.config.sweep_interval;
            loop {
                match self.relay_once().await {
                    Ok(n) if n as i64 >= self.config.batch => {}
                    Ok(_) => {
                        failures = 0;
                        break;
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        wait = backoff(failures);
                        tracing::warn!(error = %weft_common::error_chain(&e), retry_in = ?wait, "relaying the outbox failed");
                        break;
                    }
                }
            }
            if failures == 0 {
                wait = self
                    .until_next_due()
                    .await
                    .unwrap_or(wait)
                    .min(self.config.sweep_interval);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = engine.outbox_written() => {}
                notified = recv(&mut listener) => {
                    if let Err(e) = notified {
                        tracing::debug!(error = %e, "LISTEN connection interrupted; it reconnects on next use");
                        tokio::time::sleep(wait).await;
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn until_next_due(&self) -> Option<Duration> {
        let mut conn = self.pool.acquire().await.ok()?;
        let due = outbox::next_due(&mut conn).await.ok()??;
        let delta = due - chrono::Utc::now();
        Some(delta.to_std().unwrap_or(Duration::ZERO))
    }
}

async fn recv(listener: &mut Option<PgListener>) -> Result<(), sqlx::Error> {
    match listener {
        Some(l) => l.recv().await.map(drop),
        None => std::future::pending().await,
    }
}

/// Capped exponential backoff: 100 ms, 200 ms, … up to 5 s.
pub(crate) fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    Duration::from_millis(100 * (1 << exp)).min(Duration::from_secs(5))
}
