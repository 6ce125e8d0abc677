//! `workers`: the workers seen on the bus, from their heartbeats.

use sqlx::PgConnection;
use weft_common::message::WorkerHeartbeat;

use crate::error::{Context, StoreError};

/// Records a heartbeat (creating the worker on its first), stamped with the
/// database's clock as it arrives — not the worker's `at`.
///
/// Why arrival: the reaper judges silence against the database's `now()`,
/// so a worker whose clock runs behind (or a heartbeat that waited in
/// `weft.executor` while every executor was down) would otherwise look
/// silent although it is alive. The reaper on its side reaps nothing until
/// its executor has been caught up with `weft.executor` for the heartbeat
/// grace (see `weft_executor`'s liveness), so a heartbeat that arrives late
/// because it queued behind a backlog is still in time.
///
/// # Errors
/// A database error.
pub async fn heartbeat(conn: &mut PgConnection, hb: &WorkerHeartbeat) -> Result<(), StoreError> {
    // The executions it lists are vouched for (`seen_at`): one it stops
    // listing while it goes on sending heartbeats is reaped (see
    // `overdue::claim_overdue`). One locked by a completion being
    // recorded is skipped, not waited for: it is ending anyway, and a wait
    // could deadlock with a batch that locks executions in another order.
    let running: Vec<uuid::Uuid> = hb.running.iter().map(|id| id.as_uuid()).collect();
    sqlx::query(
        "WITH seen AS ( \
             UPDATE executions SET seen_at = clock_timestamp() \
             WHERE id IN (SELECT id FROM executions \
                          WHERE id = ANY($5) AND status = 'running' AND worker_id = $1 \
                          FOR UPDATE SKIP LOCKED) \
         ) \
         INSERT INTO workers (id, hostname, queues, running, last_heartbeat) \
         VALUES ($1, $2, $3, $4, clock_timestamp()) \
         ON CONFLICT (id) DO UPDATE SET hostname = EXCLUDED.hostname, queues = EXCLUDED.queues, \
             running = EXCLUDED.running, \
             last_heartbeat = GREATEST(workers.last_heartbeat, EXCLUDED.last_heartbeat)",
    )
    .bind(&hb.worker_id)
    .bind(&hb.hostname)
    .bind(&hb.queues)
    .bind(i32::try_from(hb.running.len()).unwrap_or(i32::MAX))
    .bind(&running)
    .execute(conn)
    .await
    .context("recording a heartbeat")?;
    Ok(())
}
