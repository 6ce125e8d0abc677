//! Cron schedules: their rows, the executors' claim, and the record of
//! ticks that started no run.
//!
//! Exactly one run per tick, whatever the number of executors, their
//! crashes and their clocks:
//! - [`claim_due`] locks the due schedules `FOR UPDATE SKIP LOCKED` — "due"
//!   by the database's `now()`, which it returns for the caller to plan
//!   with, so no executor's clock is ever read;
//! - in the same transaction the caller submits each fired tick's run
//!   (its idempotency key and the unique (schedule, tick) index make a
//!   second run for a tick impossible; [`start_ticks`] stores a whole
//!   claim's runs in one statement) and moves the cursors past `now`
//!   ([`advance`]); a crash before the commit leaves the schedule due for
//!   the next claim, and nothing of it happened.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::message::WorkflowSubmitted;
use weft_common::schedule::{CatchUp, Overlap, tick_text};
use weft_common::{Envelope, WorkflowExecutionId, WorkflowStatus};

use crate::error::{Context, StoreError};
use crate::outbox;
use crate::registry::Version;
use crate::runs::Submitted;

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Schedule {
    /// Its id (runs keep it after the schedule is deleted).
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// The registered workflow it runs.
    pub workflow_name: String,
    /// The version it runs; `None`: the newest at each tick.
    pub workflow_version: Option<i32>,
    /// The cron expression as given.
    pub cron: String,
    /// The IANA time zone it is read in.
    pub timezone: String,
    /// The inputs given at create.
    pub input: Value,
    /// `allow`, `skip` or `cancel_previous`.
    pub overlap: String,
    /// `none`, `latest` or `all`.
    pub catch_up: String,
    /// The jitter window, in milliseconds.
    pub jitter_ms: i64,
    /// When it was paused; `None` while active.
    pub paused_at: Option<DateTime<Utc>>,
    /// The next tick.
    pub next_tick: DateTime<Utc>,
    /// When the next tick starts (its tick plus its jitter).
    pub next_fire_at: DateTime<Utc>,
    /// The newest tick that started a run.
    pub last_tick: Option<DateTime<Utc>>,
    /// That run.
    pub last_run_id: Option<Uuid>,
    /// Runs it started.
    pub runs_started: i64,
    /// Ticks skipped (`--overlap skip`) or failed to start.
    pub ticks_skipped: i64,
    /// Ticks missed after an outage (`--catch-up`).
    pub ticks_missed: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed (created, paused, resumed, fired).
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, workflow_name, workflow_version, cron, timezone, input, overlap, catch_up, \
     jitter_ms, paused_at, next_tick, next_fire_at, last_tick, last_run_id, runs_started, ticks_skipped, \
     ticks_missed, created_at, updated_at";

impl Schedule {
    /// Its overlap policy.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a value the CHECK constraint should have refused.
    pub fn overlap(&self) -> Result<Overlap, StoreError> {
        self.overlap.parse().map_err(|detail| StoreError::Corrupt {
            what: "schedule",
            detail,
        })
    }

    /// Its catch-up policy.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a value the CHECK constraint should have refused.
    pub fn catch_up(&self) -> Result<CatchUp, StoreError> {
        self.catch_up.parse().map_err(|detail| StoreError::Corrupt {
            what: "schedule",
            detail,
        })
    }

    /// The workflow it runs, as `name` or `name@version`.
    #[must_use]
    pub fn workflow(&self) -> String {
        match self.workflow_version {
            Some(v) => format!("{}@{v}", self.workflow_name),
            None => self.workflow_name.clone(),
        }
    }
}

/// What [`create`] stores.
#[derive(Debug, Clone)]
pub struct NewSchedule<'a> {
    /// Its id (its ticks' jitter derives from it).
    pub id: Uuid,
    /// The schedule's name.
    pub name: &'a str,
    /// The registered workflow.
    pub workflow_name: &'a str,
    /// Its pinned version, if any.
    pub workflow_version: Option<i32>,
    /// The cron expression (already parsed by the caller).
    pub cron: &'a str,
    /// The IANA time zone.
    pub timezone: &'a str,
    /// The given inputs, typed.
    pub input: &'a Value,
    /// The overlap policy.
    pub overlap: Overlap,
    /// The catch-up policy.
    pub catch_up: CatchUp,
    /// The jitter window.
    pub jitter_ms: i64,
}

/// The database's clock: every schedule decision is made by it.
///
/// # Errors
/// A database error.
pub async fn db_now(conn: &mut PgConnection) -> Result<DateTime<Utc>, StoreError> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(conn)
        .await
        .context("reading the database's clock")
}

/// Stores a new schedule whose first tick is `next_tick` (starting at
/// `next_fire_at`), and wakes the executors' schedulers.
///
/// # Errors
/// A database error; [`StoreError::Refused`] if the name is taken.
pub async fn create(
    conn: &mut PgConnection,
    new: &NewSchedule<'_>,
    next_tick: DateTime<Utc>,
    next_fire_at: DateTime<Utc>,
) -> Result<Schedule, StoreError> {
    let created: Result<Schedule, StoreError> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO schedules (id, name, workflow_name, workflow_version, cron, timezone, input, overlap, \
                                catch_up, jitter_ms, next_tick, next_fire_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {COLUMNS}"
    )))
    .bind(new.id)
    .bind(new.name)
    .bind(new.workflow_name)
    .bind(new.workflow_version)
    .bind(new.cron)
    .bind(new.timezone)
    .bind(new.input)
    .bind(new.overlap.as_str())
    .bind(new.catch_up.as_str())
    .bind(new.jitter_ms)
    .bind(next_tick)
    .bind(next_fire_at)
    .fetch_one(&mut *conn)
    .await
    .context("creating a schedule");
    match created {
        Err(StoreError::Duplicate { .. }) => Err(StoreError::Refused(format!(
            "a schedule named `{}` already exists: `weft schedule delete {}` first, or choose another name",
            new.name, new.name
        ))),
        other => {
            notify(conn).await?;
            other
        }
    }
}

/// The channel that wakes the executors' schedulers when a schedule is
/// created or resumed (a hint: they also look every second).
pub const CHANNEL: &str = "weft_schedules";

async fn notify(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(conn)
        .await
        .context("waking the schedulers")?;
    Ok(())
}

/// Every schedule, by name.
///
/// # Errors
/// A database error.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<Schedule>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM schedules ORDER BY name"
    )))
    .fetch_all(conn)
    .await
    .context("listing schedules")
}

/// One schedule by name.
///
/// # Errors
/// A database error.
pub async fn get(conn: &mut PgConnection, name: &str) -> Result<Option<Schedule>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM schedules WHERE name = $1"
    )))
    .bind(name)
    .fetch_optional(conn)
    .await
    .context("reading a schedule")
}

/// Every schedule's name (for "did you mean").
///
/// # Errors
/// A database error.
pub async fn names(conn: &mut PgConnection) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar("SELECT name FROM schedules ORDER BY name")
        .fetch_all(conn)
        .await
        .context("listing schedule names")
}

/// Pauses a schedule: no tick fires until it is resumed. `false` if there
/// is no such schedule or it was already paused.
///
/// # Errors
/// A database error.
pub async fn pause(conn: &mut PgConnection, name: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE schedules SET paused_at = now(), updated_at = now() WHERE name = $1 AND paused_at IS NULL",
    )
    .bind(name)
    .execute(conn)
    .await
    .context("pausing a schedule")?;
    Ok(done.rows_affected() == 1)
}

/// Resumes a paused schedule from `next_tick` (the first tick after the
/// database's now: ticks that came while it was paused are not owed).
/// `false` if it was not paused (or not found).
///
/// # Errors
/// A database error.
pub async fn resume(
    conn: &mut PgConnection,
    id: Uuid,
    next_tick: DateTime<Utc>,
    next_fire_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE schedules SET paused_at = NULL, next_tick = $2, next_fire_at = $3, updated_at = now() \
         WHERE id = $1 AND paused_at IS NOT NULL",
    )
    .bind(id)
    .bind(next_tick)
    .bind(next_fire_at)
    .execute(&mut *conn)
    .await
    .context("resuming a schedule")?;
    if done.rows_affected() == 1 {
        notify(conn).await?;
    }
    Ok(done.rows_affected() == 1)
}

/// Deletes a schedule (its runs keep its name and id). `false` if there
/// was none. It waits for a claim holding the row, so no tick of it
/// fires after this returns.
///
/// # Errors
/// A database error.
pub async fn delete(conn: &mut PgConnection, name: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM schedules WHERE name = $1")
        .bind(name)
        .execute(conn)
        .await
        .context("deleting a schedule")?;
    Ok(done.rows_affected() == 1)
}

/// Locks up to `limit` due schedules (active, `next_fire_at <= now()`),
/// earliest first, skipping those another executor holds; returns them
/// with the database's `now()`, to plan with.
///
/// # Errors
/// A database error.
pub async fn claim_due(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<(Vec<Schedule>, DateTime<Utc>), StoreError> {
    let now = db_now(&mut *conn).await?;
    let due = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM schedules \
         WHERE paused_at IS NULL AND next_fire_at <= $1 \
         ORDER BY next_fire_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    )))
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
    .context("claiming due schedules")?;
    Ok((due, now))
}

/// What a claim did with one schedule, for [`advance`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Advanced {
    /// The newest tick that started a run, and the run.
    pub last: Option<(DateTime<Utc>, WorkflowExecutionId)>,
    /// Runs started.
    pub started: i64,
    /// Ticks skipped or failed.
    pub skipped: i64,
    /// Ticks missed.
    pub missed: i64,
}

/// Where a claim leaves one schedule, for [`advance`]: its cursor and
/// what the claim did with it.
#[derive(Debug, Clone, Copy)]
pub struct Cursor {
    /// The schedule.
    pub id: Uuid,
    /// Its next tick.
    pub next_tick: DateTime<Utc>,
    /// When that tick starts (the tick and its jitter).
    pub next_fire_at: DateTime<Utc>,
    /// What the claim did.
    pub done: Advanced,
}

/// Moves claimed schedules' cursors and counts what the claim did with
/// each, in one statement. Call it in the claiming transaction.
///
/// # Errors
/// A database error.
pub async fn advance(conn: &mut PgConnection, cursors: &[Cursor]) -> Result<(), StoreError> {
    if cursors.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = cursors.iter().map(|c| c.id).collect();
    let next_ticks: Vec<DateTime<Utc>> = cursors.iter().map(|c| c.next_tick).collect();
    let fire_at: Vec<DateTime<Utc>> = cursors.iter().map(|c| c.next_fire_at).collect();
    let last_ticks: Vec<Option<DateTime<Utc>>> = cursors
        .iter()
        .map(|c| c.done.last.map(|(tick, _)| tick))
        .collect();
    let last_runs: Vec<Option<Uuid>> = cursors
        .iter()
        .map(|c| c.done.last.map(|(_, run)| run.as_uuid()))
        .collect();
    let started: Vec<i64> = cursors.iter().map(|c| c.done.started).collect();
    let skipped: Vec<i64> = cursors.iter().map(|c| c.done.skipped).collect();
    let missed: Vec<i64> = cursors.iter().map(|c| c.done.missed).collect();
    sqlx::query(
        "UPDATE schedules s SET next_tick = u.next_tick, next_fire_at = u.next_fire_at, \
             last_tick = coalesce(u.last_tick, s.last_tick), \
             last_run_id = coalesce(u.last_run, s.last_run_id), \
             runs_started = s.runs_started + u.started, \
             ticks_skipped = s.ticks_skipped + u.skipped, \
             ticks_missed = s.ticks_missed + u.missed, updated_at = now() \
         FROM UNNEST($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], \
                     $5::uuid[], $6::int8[], $7::int8[], $8::int8[]) \
              AS u(id, next_tick, next_fire_at, last_tick, last_run, started, skipped, missed) \
         WHERE s.id = u.id",
    )
    .bind(&ids)
    .bind(&next_ticks)
    .bind(&fire_at)
    .bind(&last_ticks)
    .bind(&last_runs)
    .bind(&started)
    .bind(&skipped)
    .bind(&missed)
    .execute(conn)
    .await
    .context("advancing schedules")?;
    Ok(())
}

/// One tick's run, for [`start_ticks`].
#[derive(Debug, Clone)]
pub struct TickRun {
    /// The id to give the run.
    pub id: WorkflowExecutionId,
    /// The schedule.
    pub schedule_id: Uuid,
    /// Its name (kept on the run after the schedule is deleted).
    pub schedule_name: String,
    /// The tick.
    pub tick: DateTime<Utc>,
    /// The registered version it runs.
    pub version: Arc<Version>,
    /// The resolved input.
    pub input: Value,
    /// Number of tasks of the version's workflow.
    pub tasks_total: i32,
}

/// The idempotency key of a tick's run.
#[must_use]
pub fn tick_key(schedule: Uuid, tick: DateTime<Utc>) -> String {
    format!("weft-schedule:{schedule}:{}", tick_text(tick))
}

/// Stores the runs of `ticks` — each with its version, schedule and tick,
/// and its start message — in one statement, waking the relays on
/// commit: what `weft submit NAME` does for one run, for a whole claim.
/// Returns, in the order given, the run that has each tick: a new one,
/// or (only if a cursor was moved back by hand) the one it already had,
/// which the tick's idempotency key and the unique (schedule, tick) index
/// keep single.
///
/// # Errors
/// A database error; [`StoreError::Corrupt`] if a tick was refused and
/// no run has it.
pub async fn start_ticks(
    conn: &mut PgConnection,
    ticks: &[TickRun],
) -> Result<Vec<Submitted>, StoreError> {
    if ticks.is_empty() {
        return Ok(Vec::new());
    }
    let mut payloads = Vec::with_capacity(ticks.len());
    // Every start message has the same route (a run's start goes to the
    // executors' queue, whichever run it is).
    let mut route = ("", String::new());
    for tick in ticks {
        let message = Envelope::new(WorkflowSubmitted {
            workflow_execution_id: tick.id,
        });
        let (exchange, key, payload) = outbox::encode(&message)?;
        route = (exchange, key);
        payloads.push(payload);
    }
    let ids: Vec<Uuid> = ticks.iter().map(|t| t.id.as_uuid()).collect();
    let definitions: Vec<Uuid> = ticks.iter().map(|t| t.version.definition_id).collect();
    let names: Vec<&str> = ticks.iter().map(|t| t.version.name.as_str()).collect();
    let inputs: Vec<&Value> = ticks.iter().map(|t| &t.input).collect();
    let keys: Vec<String> = ticks
        .iter()
        .map(|t| tick_key(t.schedule_id, t.tick))
        .collect();
    let totals: Vec<i32> = ticks.iter().map(|t| t.tasks_total).collect();
    let links: Vec<Option<&Value>> = ticks.iter().map(|t| t.version.links.as_ref()).collect();
    let versions: Vec<i32> = ticks.iter().map(|t| t.version.version).collect();
    let schedules: Vec<Uuid> = ticks.iter().map(|t| t.schedule_id).collect();
    let schedule_names: Vec<&str> = ticks.iter().map(|t| t.schedule_name.as_str()).collect();
    let at: Vec<DateTime<Utc>> = ticks.iter().map(|t| t.tick).collect();
    // `ON CONFLICT DO NOTHING` without a target covers both the
    // idempotency key and the (schedule, tick) index.
    let created: Vec<Uuid> = sqlx::query_scalar(
        "WITH t AS ( \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::text[], \
                                  $6::int4[], $7::jsonb[], $8::int4[], $9::uuid[], $10::text[], \
                                  $11::timestamptz[], $12::text[]) \
                 AS t(id, definition_id, workflow_name, input, idempotency_key, tasks_total, \
                      links, workflow_version, schedule_id, schedule_name, scheduled_at, payload) \
         ), r AS ( \
             INSERT INTO workflow_executions \
                 (id, definition_id, workflow_name, input, idempotency_key, tasks_total, \
                  tasks_remaining, links, workflow_version, schedule_id, schedule_name, scheduled_at) \
             SELECT id, definition_id, workflow_name, input, idempotency_key, tasks_total, \
                    tasks_total, links, workflow_version, schedule_id, schedule_name, scheduled_at \
             FROM t \
             ON CONFLICT DO NOTHING \
             RETURNING id \
         ), o AS ( \
             INSERT INTO outbox (exchange, routing_key, payload) \
             SELECT $13, $14, t.payload::jsonb FROM t JOIN r USING (id) \
             RETURNING id \
         ), n AS ( \
             SELECT pg_notify($15, '') WHERE EXISTS (SELECT 1 FROM r) \
         ), seen AS ( \
             SELECT pg_notify($16, r.id::text) FROM r \
         ) \
         SELECT r.id FROM r \
         WHERE (SELECT count(*) FROM o) >= 0 AND (SELECT count(*) FROM n) >= 0 \
           AND (SELECT count(*) FROM seen) >= 0",
    )
    .bind(&ids)
    .bind(&definitions)
    .bind(&names)
    .bind(&inputs)
    .bind(&keys)
    .bind(&totals)
    .bind(&links)
    .bind(&versions)
    .bind(&schedules)
    .bind(&schedule_names)
    .bind(&at)
    .bind(&payloads)
    .bind(route.0)
    .bind(&route.1)
    .bind(outbox::CHANNEL)
    .bind(crate::inspect::RUNS_CHANNEL)
    .fetch_all(&mut *conn)
    .await
    .context("starting schedules' runs")?;
    let created: HashSet<Uuid> = created.into_iter().collect();
    if created.len() == ticks.len() {
        return Ok(ticks.iter().map(|t| Submitted::Created(t.id)).collect());
    }
    // A tick that already had its run: read which.
    let refused: Vec<&TickRun> = ticks
        .iter()
        .filter(|t| !created.contains(&t.id.as_uuid()))
        .collect();
    let existing: Vec<(Uuid, DateTime<Utc>, Uuid)> = sqlx::query_as(
        "SELECT schedule_id, scheduled_at, id FROM workflow_executions \
         WHERE (schedule_id, scheduled_at) IN (SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[]))",
    )
    .bind(refused.iter().map(|t| t.schedule_id).collect::<Vec<_>>())
    .bind(refused.iter().map(|t| t.tick).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await
    .context("reading the runs ticks already had")?;
    let existing: HashMap<(Uuid, DateTime<Utc>), Uuid> = existing
        .into_iter()
        .map(|(schedule, tick, run)| ((schedule, tick), run))
        .collect();
    ticks
        .iter()
        .map(|t| {
            if created.contains(&t.id.as_uuid()) {
                return Ok(Submitted::Created(t.id));
            }
            existing
                .get(&(t.schedule_id, t.tick))
                .map(|run| Submitted::Existing(WorkflowExecutionId::from(*run)))
                .ok_or_else(|| StoreError::Corrupt {
                    what: "schedule tick",
                    detail: format!(
                        "the run of schedule {}'s tick {} was refused, and no run has that tick",
                        t.schedule_id,
                        tick_text(t.tick)
                    ),
                })
        })
        .collect()
}

/// Pauses a claimed schedule that cannot tick (its cron no longer parses,
/// or it matches no future date), recording why at `tick`.
///
/// # Errors
/// A database error.
pub async fn pause_broken(
    conn: &mut PgConnection,
    id: Uuid,
    tick: DateTime<Utc>,
    why: &str,
) -> Result<(), StoreError> {
    record_skip(&mut *conn, id, tick, SkipReason::Failed, why).await?;
    sqlx::query("UPDATE schedules SET paused_at = now(), updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await
        .context("pausing a broken schedule")?;
    Ok(())
}

/// Why a tick started no run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// An earlier run still ran (`--overlap skip`).
    Overlap,
    /// It came due while no executor ran (`--catch-up`).
    Missed,
    /// Its run could not be started.
    Failed,
}

impl SkipReason {
    /// The stored word.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Overlap => "overlap",
            Self::Missed => "missed",
            Self::Failed => "failed",
        }
    }
}

/// How many skipped ticks are kept per schedule.
pub const SKIPS_KEPT: i64 = 100;

/// Records a tick that started no run, keeping the newest [`SKIPS_KEPT`].
///
/// # Errors
/// A database error.
pub async fn record_skip(
    conn: &mut PgConnection,
    id: Uuid,
    tick: DateTime<Utc>,
    reason: SkipReason,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "WITH i AS ( \
             INSERT INTO schedule_skips (schedule_id, tick, reason, detail) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (schedule_id, tick) DO NOTHING \
         ) \
         DELETE FROM schedule_skips WHERE schedule_id = $1 AND tick < ( \
             SELECT tick FROM schedule_skips WHERE schedule_id = $1 ORDER BY tick DESC OFFSET $5 - 1 LIMIT 1)",
    )
    .bind(id)
    .bind(tick)
    .bind(reason.as_str())
    .bind(detail)
    .bind(SKIPS_KEPT)
    .execute(conn)
    .await
    .context("recording a skipped tick")?;
    Ok(())
}

/// A tick that started no run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Skip {
    /// The tick.
    pub tick: DateTime<Utc>,
    /// `overlap`, `missed` or `failed`.
    pub reason: String,
    /// What happened, in words.
    pub detail: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// A schedule's newest skipped ticks, newest first.
///
/// # Errors
/// A database error.
pub async fn skips(conn: &mut PgConnection, id: Uuid, limit: i64) -> Result<Vec<Skip>, StoreError> {
    sqlx::query_as(
        "SELECT tick, reason, detail, created_at FROM schedule_skips WHERE schedule_id = $1 \
         ORDER BY tick DESC LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await
    .context("reading a schedule's skipped ticks")
}

/// A run a schedule started.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ScheduledRun {
    /// The run.
    #[sqlx(try_from = "Uuid")]
    pub id: WorkflowExecutionId,
    /// Its tick.
    pub scheduled_at: DateTime<Utc>,
    /// Where it stands.
    #[sqlx(try_from = "String")]
    pub status: WorkflowStatus,
    /// The registered version it runs.
    pub workflow_version: Option<i32>,
}

/// A schedule's newest runs, newest tick first.
///
/// # Errors
/// A database error.
pub async fn runs(
    conn: &mut PgConnection,
    id: Uuid,
    limit: i64,
) -> Result<Vec<ScheduledRun>, StoreError> {
    sqlx::query_as(
        "SELECT id, scheduled_at, status, workflow_version FROM workflow_executions \
         WHERE schedule_id = $1 ORDER BY scheduled_at DESC LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await
    .context("reading a schedule's runs")
}

/// A schedule's runs that are still going (pending, running, canceling),
/// oldest tick first.
///
/// # Errors
/// A database error.
pub async fn live_runs(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Vec<(WorkflowExecutionId, WorkflowStatus)>, StoreError> {
    let live: Vec<&str> = WorkflowStatus::ALL
        .iter()
        .filter(|s| !s.is_terminal())
        .map(|s| s.as_str())
        .collect();
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, status FROM workflow_executions \
         WHERE schedule_id = $1 AND status = ANY($2) ORDER BY scheduled_at",
    )
    .bind(id)
    .bind(&live)
    .fetch_all(conn)
    .await
    .context("reading a schedule's live runs")?;
    rows.into_iter()
        .map(|(id, status)| {
            let status = WorkflowStatus::try_from(status).map_err(|e| StoreError::Corrupt {
                what: "run",
                detail: e.to_string(),
            })?;
            Ok((WorkflowExecutionId::from(id), status))
        })
        .collect()
}

/// When the earliest active schedule starts its next tick, and the
/// database's now; `None` when no schedule is active.
///
/// # Errors
/// A database error.
pub async fn next_fire(
    conn: &mut PgConnection,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, StoreError> {
    let row: (Option<DateTime<Utc>>, DateTime<Utc>) = sqlx::query_as(
        "SELECT (SELECT min(next_fire_at) FROM schedules WHERE paused_at IS NULL), now()",
    )
    .fetch_one(conn)
    .await
    .context("reading the next schedule's time")?;
    Ok(row.0.map(|next| (next, row.1)))
}
