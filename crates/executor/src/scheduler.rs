//! The scheduler: fires cron schedules' ticks, each exactly once.
//!
//! Every executor runs one (like the relay and the reaper); they share
//! the schedules with `FOR UPDATE SKIP LOCKED`. One claim
//! ([`Scheduler::fire_once`]) is one transaction: it locks the due
//! schedules (due by the database's `now()`, never this host's clock),
//! asks the pure plan ([`Timing::plan`]) which ticks start a run under
//! the schedule's `--catch-up`, applies `--overlap` (recording a skipped
//! tick, or cancelling the earlier run through the ordinary cancellation),
//! submits each tick's run the way `weft submit NAME` does (run row and
//! start message in the outbox, `NOTIFY` on commit) with the schedule and
//! tick on it, and moves the schedules' cursors past `now` — all committed
//! together. The work is set-based: a claim looks each version up once,
//! stores every run of its `allow` schedules in one statement and moves
//! every cursor in another, so a thousand schedules ticking in the same
//! second cost a handful of statements, not a few per schedule. A crash
//! before the commit leaves nothing; the next claim, by any executor,
//! does it all again. The run's idempotency key and the
//! unique (schedule, tick) index refuse a second run for a tick even if
//! the cursor were wrong.
//!
//! Between claims the loop sleeps until the earliest active schedule's
//! next start (read with the database's `now()`), at most `max_sleep`, or
//! until `NOTIFY weft_schedules` (a schedule created or resumed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use weft_common::schedule::{Overlap, ScheduleError, Timing, jitter, tick_text};
use weft_common::{Given, Workflow, WorkflowExecutionId};
use weft_store::registry::{self, Version, WorkflowRef};
use weft_store::runs::{self, Submitted};
use weft_store::schedules::{self, Advanced, Cursor, Schedule, SkipReason, TickRun};

use crate::error::{EngineError, db};
use crate::relay::backoff;

/// Settings of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How late a tick may start under `--catch-up none` before it counts
    /// as missed.
    pub grace: Duration,
    /// The longest sleep between two looks at the schedules.
    pub max_sleep: Duration,
    /// Schedules claimed per transaction (1,000: one claim a second
    /// keeps up with 1,000 schedules ticking together; see BENCHMARKS.md).
    pub batch: i64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(1),
            max_sleep: Duration::from_secs(1),
            batch: 1000,
        }
    }
}

/// What one claim did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fired {
    /// Schedules claimed.
    pub schedules: usize,
    /// Runs started.
    pub started: usize,
    /// Ticks skipped (overlap) or failed to start.
    pub skipped: usize,
    /// Ticks missed (catch-up).
    pub missed: usize,
}

/// Fires due schedules; see the module docs.
#[derive(Debug)]
pub struct Scheduler {
    pool: PgPool,
    config: SchedulerConfig,
    /// Parsed definitions, by id (a definition never changes).
    workflows: HashMap<Uuid, Arc<Workflow>>,
    /// Parsed `--cron`s, by expression and time zone.
    timings: HashMap<(String, String), Arc<Timing>>,
}

impl Scheduler {
    /// A scheduler on `pool`.
    #[must_use]
    pub fn new(pool: PgPool, config: SchedulerConfig) -> Self {
        Self {
            pool,
            config,
            workflows: HashMap::new(),
            timings: HashMap::new(),
        }
    }

    /// One claim: locks the due schedules, starts their ticks' runs and
    /// moves their cursors, in one transaction. The runs of schedules that
    /// allow overlap are stored together, in one statement; a schedule
    /// that skips or cancels on overlap looks at its live runs tick by
    /// tick, so it also sees the runs of this claim.
    ///
    /// # Errors
    /// A database error; nothing of the claim is committed.
    pub async fn fire_once(&mut self) -> Result<Fired, EngineError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("beginning a schedule claim"))?;
        let (due, now) = schedules::claim_due(&mut tx, self.config.batch).await?;
        let mut claim = Claim::default();
        for schedule in &due {
            self.fire_schedule(&mut tx, schedule, now, &mut claim)
                .await?;
        }
        let started = schedules::start_ticks(&mut tx, &claim.batch).await?;
        for ((tick, owner), submitted) in claim.batch.iter().zip(&claim.owners).zip(started) {
            note_started(
                &mut claim.cursors[*owner].done,
                &tick.schedule_name,
                tick.tick,
                submitted,
            );
        }
        schedules::advance(&mut tx, &claim.cursors).await?;
        tx.commit()
            .await
            .map_err(db("committing a schedule claim"))?;
        let mut fired = Fired {
            schedules: due.len(),
            ..Fired::default()
        };
        for cursor in &claim.cursors {
            fired.started += usize::try_from(cursor.done.started).unwrap_or(0);
            fired.skipped += usize::try_from(cursor.done.skipped).unwrap_or(0);
            fired.missed += usize::try_from(cursor.done.missed).unwrap_or(0);
        }
        if fired.started > 0 {
            metrics::counter!("weft_schedule_runs_started_total").increment(fired.started as u64);
        }
        Ok(fired)
    }

    /// Plans one claimed schedule: records what it missed, starts (or
    /// queues in `claim`'s batch) the runs of its ticks, and leaves its
    /// cursor in `claim`.
    async fn fire_schedule(
        &mut self,
        conn: &mut PgConnection,
        schedule: &Schedule,
        now: DateTime<Utc>,
        claim: &mut Claim,
    ) -> Result<(), EngineError> {
        let timing = match self.timing(schedule) {
            Ok(timing) => timing,
            Err(e) => {
                tracing::error!(schedule = %schedule.name, error = %e, "a stored schedule no longer parses; pausing it");
                schedules::pause_broken(conn, schedule.id, schedule.next_tick, &e.to_string())
                    .await?;
                return Ok(());
            }
        };
        let (catch_up, overlap) = (schedule.catch_up()?, schedule.overlap()?);
        let Some(plan) = timing.plan(schedule.next_tick, now, catch_up, self.config.grace) else {
            schedules::pause_broken(
                conn,
                schedule.id,
                schedule.next_tick,
                "the cron expression matches no later date: paused",
            )
            .await?;
            return Ok(());
        };
        let mut done = Advanced::default();
        if let (Some(oldest), Some(newest)) = (plan.missed_from, plan.missed_to) {
            // One row per claim, at the newest missed tick.
            let detail = format!(
                "{}{} tick{} from {} came due while no executor ran (catch-up {catch_up}): no run",
                if plan.missed_more { "more than " } else { "" },
                plan.missed,
                if plan.missed == 1 { "" } else { "s" },
                tick_text(oldest),
            );
            let at = newest;
            schedules::record_skip(conn, schedule.id, at, SkipReason::Missed, &detail).await?;
            done.missed = i64::try_from(plan.missed).unwrap_or(i64::MAX);
            tracing::warn!(schedule = %schedule.name, missed = plan.missed, %catch_up, "schedule missed ticks");
        }
        let owner = claim.cursors.len();
        for tick in &plan.fire {
            let Some(run) = self.tick_run(conn, schedule, *tick, claim).await? else {
                done.skipped += 1;
                continue;
            };
            if overlap == Overlap::Allow {
                claim.batch.push(run);
                claim.owners.push(owner);
            } else if self.overlaps(conn, schedule, overlap, *tick).await? {
                done.skipped += 1;
            } else {
                let started = schedules::start_ticks(conn, std::slice::from_ref(&run)).await?;
                for submitted in started {
                    note_started(&mut done, &schedule.name, *tick, submitted);
                }
            }
        }
        let start = plan.next_tick
            + chrono::Duration::from_std(jitter(
                schedule.id,
                plan.next_tick,
                jitter_window(schedule),
            ))
            .unwrap_or_default();
        claim.cursors.push(Cursor {
            id: schedule.id,
            next_tick: plan.next_tick,
            next_fire_at: start,
            done,
        });
        Ok(())
    }

    /// Applies `--overlap skip|cancel_previous` before a tick's run:
    /// `true` if the tick is skipped (recorded), after cancelling the
    /// earlier runs under `cancel_previous`.
    async fn overlaps(
        &mut self,
        conn: &mut PgConnection,
        schedule: &Schedule,
        overlap: Overlap,
        tick: DateTime<Utc>,
    ) -> Result<bool, EngineError> {
        let live = schedules::live_runs(&mut *conn, schedule.id).await?;
        match (overlap, live.first()) {
            (Overlap::Skip, Some((run, status))) => {
                let detail = format!("run {run} of an earlier tick is still {status}");
                schedules::record_skip(conn, schedule.id, tick, SkipReason::Overlap, &detail)
                    .await?;
                tracing::info!(schedule = %schedule.name, tick = %tick_text(tick), %run, "tick skipped: an earlier run is still going");
                Ok(true)
            }
            (Overlap::CancelPrevious, Some(_)) => {
                for (run, _) in live {
                    weft_store::cancel::request(&mut *conn, run).await?;
                    tracing::info!(schedule = %schedule.name, %run, "canceled the previous run of the schedule");
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// The run a tick starts, or `None` when it cannot start one (the
    /// workflow was removed, its inputs no longer fit): recorded as a
    /// failed tick.
    async fn tick_run(
        &mut self,
        conn: &mut PgConnection,
        schedule: &Schedule,
        tick: DateTime<Utc>,
        claim: &mut Claim,
    ) -> Result<Option<TickRun>, EngineError> {
        let reference = WorkflowRef {
            name: schedule.workflow_name.clone(),
            version: schedule.workflow_version,
        };
        let key = (reference.name.clone(), reference.version);
        let version = match claim.versions.get(&key) {
            Some(version) => version.clone(),
            None => {
                let version = registry::get(&mut *conn, &reference).await?.map(Arc::new);
                claim.versions.insert(key, version.clone());
                version
            }
        };
        let Some(version) = version else {
            let detail = format!("workflow `{reference}` is not registered (removed?): no run");
            return failed(conn, schedule, tick, detail).await;
        };
        let workflow = match self.workflow(&mut *conn, version.definition_id).await {
            Ok(workflow) => workflow,
            Err(detail) => return failed(conn, schedule, tick, detail).await,
        };
        let given = match &schedule.input {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| (k.clone(), Given::Json(v.clone())))
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        let input = match workflow.resolve_given(given) {
            Ok(input) => Value::Object(input),
            Err(e) => {
                let detail = format!(
                    "the schedule's inputs do not fit `{}@{}`: {e}",
                    version.name, version.version
                );
                return failed(conn, schedule, tick, detail).await;
            }
        };
        Ok(Some(TickRun {
            id: WorkflowExecutionId::new(),
            schedule_id: schedule.id,
            schedule_name: schedule.name.clone(),
            tick,
            tasks_total: i32::try_from(workflow.tasks().count()).unwrap_or(i32::MAX),
            version,
            input,
        }))
    }

    /// A schedule's parsed `--cron`, parsed once per expression and zone.
    fn timing(&mut self, schedule: &Schedule) -> Result<Arc<Timing>, ScheduleError> {
        let key = (schedule.cron.clone(), schedule.timezone.clone());
        if let Some(timing) = self.timings.get(&key) {
            return Ok(Arc::clone(timing));
        }
        let timing = Arc::new(Timing::parse(&schedule.cron, Some(&schedule.timezone))?);
        if self.timings.len() >= 1024 {
            self.timings.clear();
        }
        self.timings.insert(key, Arc::clone(&timing));
        Ok(timing)
    }

    async fn workflow(
        &mut self,
        conn: &mut PgConnection,
        id: Uuid,
    ) -> Result<Arc<Workflow>, String> {
        if let Some(workflow) = self.workflows.get(&id) {
            return Ok(Arc::clone(workflow));
        }
        let (source, origin) = runs::definition(conn, id)
            .await
            .map_err(|e| weft_common::error_chain(&e))?;
        let workflow = Workflow::parse_stored(&source, &origin)
            .map_err(|e| format!("the registered definition no longer parses: {e}"))?;
        if self.workflows.len() >= 1024 {
            self.workflows.clear();
        }
        let workflow = Arc::new(workflow);
        self.workflows.insert(id, Arc::clone(&workflow));
        Ok(workflow)
    }

    /// How long to sleep: until the earliest active schedule starts, by
    /// the database's clock, at most `max_sleep`.
    async fn until_next(&self) -> Duration {
        let Ok(mut conn) = self.pool.acquire().await else {
            return self.config.max_sleep;
        };
        match schedules::next_fire(&mut conn).await {
            Ok(Some((next, now))) => (next - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.config.max_sleep),
            _ => self.config.max_sleep,
        }
    }

    /// Fires schedules until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&self.pool).await {
            Ok(mut l) => match l.listen(schedules::CHANNEL).await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; the scheduler looks every second");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "no LISTEN connection; the scheduler looks every second");
                None
            }
        };
        let mut failures = 0u32;
        loop {
            let wait = loop {
                match self.fire_once().await {
                    // A full batch: more may be due.
                    Ok(fired) if fired.schedules as i64 >= self.config.batch => {}
                    Ok(_) => {
                        failures = 0;
                        break self.until_next().await;
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        let wait = backoff(failures);
                        tracing::warn!(error = %weft_common::error_chain(&e), retry_in = ?wait, "firing schedules failed");
                        break wait;
                    }
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                notified = recv(&mut listener) => {
                    if notified.is_err() {
                        tokio::time::sleep(wait).await;
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Records a tick whose run could not be started (the cursor moves on).
async fn failed(
    conn: &mut PgConnection,
    schedule: &Schedule,
    tick: DateTime<Utc>,
    detail: String,
) -> Result<Option<TickRun>, EngineError> {
    tracing::warn!(schedule = %schedule.name, tick = %tick_text(tick), "{detail}");
    schedules::record_skip(conn, schedule.id, tick, SkipReason::Failed, &detail).await?;
    Ok(None)
}

/// What one claim gathers: the versions it looked up, the runs of
/// `allow` schedules' ticks (stored together at the end), which cursor
/// each belongs to, and every claimed schedule's cursor.
#[derive(Default)]
struct Claim {
    versions: HashMap<(String, Option<i32>), Option<Arc<Version>>>,
    batch: Vec<TickRun>,
    owners: Vec<usize>,
    cursors: Vec<Cursor>,
}

/// Counts a tick's run in its schedule's claim.
fn note_started(done: &mut Advanced, schedule: &str, tick: DateTime<Utc>, submitted: Submitted) {
    if let Submitted::Existing(run) = submitted {
        // Only if the cursor was moved back by hand: the tick has its run.
        tracing::warn!(%schedule, tick = %tick_text(tick), %run, "tick already had its run");
    } else {
        tracing::info!(%schedule, tick = %tick_text(tick), run = %submitted.id(), "scheduled run started");
    }
    done.started += 1;
    done.last = Some((tick, submitted.id()));
}

async fn recv(listener: &mut Option<sqlx::postgres::PgListener>) -> Result<(), sqlx::Error> {
    match listener {
        Some(l) => l.recv().await.map(drop),
        None => std::future::pending().await,
    }
}

/// The schedule's `--jitter`.
fn jitter_window(schedule: &Schedule) -> Duration {
    Duration::from_millis(u64::try_from(schedule.jitter_ms).unwrap_or(0))
}
