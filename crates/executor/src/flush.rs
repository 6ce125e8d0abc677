//! The post-commit flusher: publishes the messages an engine transaction
//! just committed, without waiting for a relay to claim them.
//!
//! The engine writes messages that are due at once to the outbox with a
//! lease (see [`RelayConfig::lease`](crate::RelayConfig::lease)) and, after
//! its commit, hands them here. The flusher publishes everything that queued
//! up meanwhile in one pipelined batch, then deletes the confirmed rows in
//! one statement. The outbox row stays the source of truth: if this process
//! dies, or the broker refuses, before the delete, a relay publishes the row
//! once its lease ran out, and consumers' guards absorb any duplicate.

use sqlx::PgPool;
use tokio::sync::mpsc;
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
}

/// Messages published per batch at most.
const BATCH: usize = 2_000;

/// Publishes committed messages until `shutdown`, then what is queued.
pub(crate) async fn run(
    pool: PgPool,
    mut outlet: Outlet,
    mut committed: mpsc::UnboundedReceiver<Committed>,
    shutdown: CancellationToken,
) {
    let mut ids: Vec<i64> = Vec::new();
    let mut envelopes: Vec<Envelope> = Vec::new();
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
        let Some(first) = first else { return };
        ids.extend(first.ids);
        envelopes.extend(first.envelopes);
        while ids.len() < BATCH {
            match committed.try_recv() {
                Ok(more) => {
                    ids.extend(more.ids);
                    envelopes.extend(more.envelopes);
                }
                Err(_) => break,
            }
        }
        flush(&pool, &mut outlet, &ids, &envelopes).await;
        ids.clear();
        envelopes.clear();
    }
}

async fn flush(pool: &PgPool, outlet: &mut Outlet, ids: &[i64], envelopes: &[Envelope]) {
    for (ids, envelopes) in ids.chunks(BATCH).zip(envelopes.chunks(BATCH)) {
        let (published, error) = outlet.publish(ids, envelopes).await;
        if let Some(e) = error {
            tracing::warn!(
                error = %weft_common::error_chain(&e),
                unpublished = ids.len() - published.len(),
                "publishing committed messages failed; a relay publishes them when their lease ends"
            );
        }
        if published.is_empty() {
            continue;
        }
        let deleted = match pool.acquire().await {
            Ok(mut conn) => outbox::delete(&mut conn, &published)
                .await
                .map_err(EngineError::from),
            Err(e) => Err(db("acquiring a connection")(e)),
        };
        if let Err(e) = deleted {
            // They were published; a relay publishes them again after the
            // lease, which consumers absorb as duplicates.
            tracing::warn!(error = %weft_common::error_chain(&e), count = published.len(), "deleting published messages failed");
        }
    }
}
