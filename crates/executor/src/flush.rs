//! The post-commit flusher: publishes the messages an engine transaction
//! just committed, without waiting for a relay to claim them.
//!
//! The engine writes messages that are due at once to the outbox with a
//! lease (see [`RelayConfig::lease`](crate::RelayConfig::lease)) and, after
//! its commit, hands them here. The flusher publishes everything that queued
//! up meanwhile in one pipelined batch, then hands the confirmed rows to
//! its deleter, which deletes what queued up in one statement while the
//! flusher goes on publishing. The outbox row stays the source of truth: if this process
//! dies, or the broker refuses, before the delete, a relay publishes the row
//! once its lease ran out, and consumers' guards absorb any duplicate.

use std::time::Instant;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use weft_common::Envelope;
use weft_store::outbox;

use crate::error::{EngineError, db};
use crate::relay::Outlet;

/// Messages of one committed transaction, with their outbox rows.
#[derive(Debug)]
pub(crate) struct Committed {
    pub(crate) ids: Vec<i64>,
    pub(crate) envelopes: Vec<Envelope>,
    /// Told (or dropped) once the flusher is done with these messages:
    /// published, or left to the relays (see [`Engine::commit_tracked`]).
    ///
    /// [`Engine::commit_tracked`]: crate::engine::Engine::commit_tracked
    pub(crate) flushed: Option<oneshot::Sender<()>>,
    /// When the transaction committed: the flusher records how long these
    /// messages waited for it (`weft_executor_flush_delay_seconds`).
    pub(crate) committed_at: Instant,
}

/// Messages published per batch at most.
const BATCH: usize = 2_000;

/// Published batches waiting for their rows' delete, at most.
const DELETER_QUEUE: usize = 64;

/// Publishes committed messages until `shutdown`, then what is queued.
///
/// The queue is bounded ([`EngineConfig::flush_queue`]): while this loop
/// publishes, committing tasks wait for room, so the broker's pace (its
/// confirms) sets the engine's, and memory holds at most a queue's worth
/// of messages plus the batch being published.
///
/// [`EngineConfig::flush_queue`]: crate::EngineConfig::flush_queue
pub(crate) async fn run(
    pool: PgPool,
    mut outlet: Outlet,
    mut committed: mpsc::Receiver<Committed>,
    shutdown: CancellationToken,
) {
    let mut ids: Vec<i64> = Vec::new();
    let mut envelopes: Vec<Envelope> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut commits: Vec<Instant> = Vec::new();
    let (published, to_delete) = mpsc::channel(DELETER_QUEUE);
    let deleter = tokio::spawn(delete_published(pool, to_delete));
    loop {
        let first = tokio::select! {
            biased;
            next = committed.recv() => next,
            () = shutdown.cancelled() => {
                // Publish what was committed before shutdown, then stop.
                committed.close();
                committed.recv().await
            }
        };
        let Some(mut next) = first else { break };
        loop {
            ids.append(&mut next.ids);
            envelopes.append(&mut next.envelopes);
            waiting.extend(next.flushed.take());
            commits.push(next.committed_at);
            if ids.len() >= BATCH {
                break;
            }
            match committed.try_recv() {
                Ok(more) => next = more,
                Err(_) => break,
            }
        }
        let publishing = Instant::now();
        for committed_at in commits.drain(..) {
            metrics::histogram!("weft_executor_flush_delay_seconds")
                .record(publishing.duration_since(committed_at).as_secs_f64());
        }
        flush(&mut outlet, &ids, &envelopes, &published).await;
        ids.clear();
        envelopes.clear();
        for flushed in waiting.drain(..) {
            // A stream that stopped waiting has dropped its receiver.
            let _ = flushed.send(());
        }
    }
    // Let the deleter finish what was published.
    drop(published);
    let _ = deleter.await;
}

/// Publishes, and hands what the broker took to the deleter.
async fn flush(
    outlet: &mut Outlet,
    ids: &[i64],
    envelopes: &[Envelope],
    deleter: &mpsc::Sender<Vec<i64>>,
) {
    for (ids, envelopes) in ids.chunks(BATCH).zip(envelopes.chunks(BATCH)) {
        let (published, error) = outlet.publish(ids, envelopes).await;
        if let Some(e) = error {
            tracing::warn!(
                error = %weft_common::error_chain(&e),
                unpublished = ids.len() - published.len(),
                "publishing committed messages failed; a relay publishes them when their lease ends"
            );
        }
        // A full deleter makes the flusher wait: rows never pile up.
        if !published.is_empty() && deleter.send(published).await.is_err() {
            tracing::warn!(
                "the outbox deleter stopped; relays publish the rows again after their lease"
            );
        }
    }
}

/// Deletes published rows, off the publishing path: a commit's messages
/// never wait for the statement that deletes the ones before. Whatever
/// was handed over meanwhile goes in one statement.
async fn delete_published(pool: PgPool, mut published: mpsc::Receiver<Vec<i64>>) {
    let mut ids: Vec<i64> = Vec::new();
    while let Some(mut first) = published.recv().await {
        ids.append(&mut first);
        while let Ok(mut more) = published.try_recv() {
            ids.append(&mut more);
        }
        let deleted = match pool.acquire().await {
            Ok(mut conn) => outbox::delete(&mut conn, &ids)
                .await
                .map_err(EngineError::from),
            Err(e) => Err(db("acquiring a connection")(e)),
        };
        if let Err(e) = deleted {
            // They were published; a relay publishes them again after the
            // lease, which consumers absorb as duplicates.
            tracing::warn!(error = %weft_common::error_chain(&e), count = ids.len(), "deleting published messages failed");
        }
        ids.clear();
    }
}
