//! `workers`: the workers seen on the bus, from their heartbeats — what
//! each consumes and advertises, and whether it is live.
//!
//! **Live** means: its last heartbeat arrived within the heartbeat grace
//! (the executor's `--heartbeat-grace`, 30 s by default) — the same rule
//! by which the reaper gives up on a silent worker's executions.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
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
         INSERT INTO workers (id, hostname, queues, running, last_heartbeat, pid, actions, concurrency, version, refused) \
         VALUES ($1, $2, $3, $4, clock_timestamp(), $6, $7, $8, $9, $10) \
         ON CONFLICT (id) DO UPDATE SET hostname = EXCLUDED.hostname, queues = EXCLUDED.queues, \
             running = EXCLUDED.running, pid = EXCLUDED.pid, actions = EXCLUDED.actions, \
             refused = EXCLUDED.refused, \
             concurrency = EXCLUDED.concurrency, version = EXCLUDED.version, \
             last_heartbeat = GREATEST(workers.last_heartbeat, EXCLUDED.last_heartbeat)",
    )
    .bind(&hb.worker_id)
    .bind(&hb.hostname)
    .bind(&hb.queues)
    .bind(i32::try_from(hb.running.len()).unwrap_or(i32::MAX))
    .bind(&running)
    .bind(i32::try_from(hb.pid).unwrap_or(i32::MAX))
    .bind(&hb.actions)
    .bind(i32::try_from(hb.concurrency).unwrap_or(i32::MAX))
    .bind(&hb.build_version)
    .bind(&hb.refused)
    .execute(conn)
    .await
    .context("recording a heartbeat")?;
    Ok(())
}

/// The reaper's default heartbeat grace (`--heartbeat-grace`): a worker
/// heard from within it is live.
pub const DEFAULT_HEARTBEAT_GRACE: Duration = Duration::from_secs(30);

/// A worker as last seen.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerRow {
    /// Its id (`host-pid-random` unless configured).
    pub id: String,
    /// Its host.
    pub hostname: String,
    /// Its process id (0: not advertised).
    pub pid: i32,
    /// The pools it consumes.
    pub queues: Vec<String>,
    /// The actions it can run (empty: not advertised).
    pub actions: Vec<String>,
    /// The actions it has but its policy refuses (`weft worker
    /// --actions`; `shell` unless listed).
    #[serde(default)]
    pub refused: Vec<String>,
    /// Actions it runs at once at most (0: not advertised).
    pub concurrency: i32,
    /// Executions it ran at its last heartbeat.
    pub running: i32,
    /// Its build's version (empty: not advertised).
    pub version: String,
    /// When it was first heard from.
    pub first_seen: DateTime<Utc>,
    /// When its last heartbeat arrived (the database's clock).
    pub last_heartbeat: DateTime<Utc>,
    /// Seconds since its last heartbeat.
    pub silent_for_s: f64,
    /// Whether it is live: last heartbeat within the grace.
    pub live: bool,
}

const WORKER_COLUMNS: &str = "id, hostname, pid, queues, actions, refused, concurrency, running, version, first_seen, \
     last_heartbeat, extract(epoch FROM clock_timestamp() - last_heartbeat)::float8 AS silent_for_s, \
     last_heartbeat > clock_timestamp() - make_interval(secs => $1) AS live";

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Live workers, and those lost (silent past `grace`) within `lost_within`
/// — live first, then by id.
///
/// # Errors
/// A database error.
pub async fn list(
    conn: &mut PgConnection,
    grace: Duration,
    lost_within: Duration,
) -> Result<Vec<WorkerRow>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {WORKER_COLUMNS} FROM workers \
         WHERE last_heartbeat > clock_timestamp() - make_interval(secs => $1 + $2) \
         ORDER BY live DESC, id"
    )))
    .bind(seconds(grace))
    .bind(seconds(lost_within))
    .fetch_all(conn)
    .await
    .context("listing workers")
}

/// The live workers consuming any of `pools`, by id.
///
/// # Errors
/// A database error.
pub async fn live_in_pools(
    conn: &mut PgConnection,
    pools: &[String],
    grace: Duration,
) -> Result<Vec<WorkerRow>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {WORKER_COLUMNS} FROM workers \
         WHERE last_heartbeat > clock_timestamp() - make_interval(secs => $1) AND queues && $2 \
         ORDER BY id"
    )))
    .bind(seconds(grace))
    .bind(pools)
    .fetch_all(conn)
    .await
    .context("finding the live workers of pools")
}
