//! `workers`: the workers seen on the bus, from their heartbeats.

use sqlx::PgConnection;
use weft_common::message::WorkerHeartbeat;

use crate::error::{Context, StoreError};

/// Records a heartbeat (creating the worker on its first).
///
/// # Errors
/// A database error.
pub async fn heartbeat(conn: &mut PgConnection, hb: &WorkerHeartbeat) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO workers (id, hostname, queues, running, last_heartbeat) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET hostname = EXCLUDED.hostname, queues = EXCLUDED.queues, \
             running = EXCLUDED.running, \
             last_heartbeat = GREATEST(workers.last_heartbeat, EXCLUDED.last_heartbeat)",
    )
    .bind(&hb.worker_id)
    .bind(&hb.hostname)
    .bind(&hb.queues)
    .bind(i32::try_from(hb.running.len()).unwrap_or(i32::MAX))
    .bind(hb.at)
    .execute(conn)
    .await
    .context("recording a heartbeat")?;
    Ok(())
}
