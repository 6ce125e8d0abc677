//! Many schedules ticking at once on one executor: how late each tick's
//! run starts (issue 16's target: 1,000 schedules of `@every 1s`, p99
//! lateness ≤ 200 ms).
//!
//! ```text
//! cargo bench -p weft-tests --bench schedules [-- [--json] [--schedules N] [--seconds S]]
//! ```
//!
//! A fresh database and vhost, one executor and one worker in this
//! process. A registered one-task workflow (`noop`) and N schedules of
//! `@every 1s` on it (the CLI's defaults: overlap `allow`, catch-up
//! `latest`, no jitter), all created before their first tick, so every
//! second N ticks come due at the same instant — the worst case for a
//! scheduler. After S seconds they are paused, the runs left to finish,
//! and each tick's run is read back from the database:
//! - **claimed**: the run's `created_at` − its tick (the start of the
//!   claiming transaction, by the database's clock: when the scheduler
//!   woke and took the tick);
//! - **fired**: when the run's commit reached this process (its `NOTIFY
//!   weft_runs`, sent with the commit, received here on a `LISTEN`) − its
//!   tick; one machine, one clock. The run exists from then on: this is
//!   the figure the target is read on;
//! - **started**: the run's `started_at` − its tick (an executor's relay
//!   took its start message and began it — as the start of its own
//!   transaction, which then starts up to 500 runs).
//!
//! Every tick a schedule's cursor passed must have exactly one run, or be
//! counted missed or skipped by the schedule; the bench fails otherwise.
//!
//! `cargo test --benches` runs it in a quick mode (20 schedules, 3 s) as
//! a check that it works, never of its speed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use weft_common::Bundle;
use weft_common::schedule::{CatchUp, Overlap, Timing};
use weft_store::registry;
use weft_store::schedules::{self, NewSchedule};
use weft_tests::report::Report;
use weft_tests::{Stack, StackOptions};

const WORKFLOW: &str = "name: bench-tick\ntasks:\n  tick: { action: noop }\n";

/// A flag's value (`--name N`), or `default`.
fn flag(args: &[String], name: &str, default: u64) -> anyhow::Result<u64> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} needs a number"))?
            .parse()
            .with_context(|| format!("{name} needs a whole number")),
    }
}

/// Registers the workflow and creates `n` schedules of `@every 1s`, whose
/// first tick is at least two seconds away (the set-up stays out of the
/// window); returns the first tick.
async fn create(pool: &PgPool, n: u64) -> anyhow::Result<DateTime<Utc>> {
    let bundle = Bundle::load(
        PathBuf::from("bench-tick.yaml"),
        "bench-tick.yaml",
        WORKFLOW.to_owned(),
        |p| Err(format!("{} is not readable here", p.display())),
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    registry::apply(pool, &bundle, "bench").await?;
    let timing = Timing::parse("@every 1s", Some("UTC"))?;
    let mut tx = pool.begin().await?;
    let now = schedules::db_now(&mut tx).await?;
    let first = timing
        .next_after(now + chrono::Duration::seconds(2))
        .context("@every 1s has a next tick")?;
    let input = json!({});
    for i in 0..n {
        let name = format!("every-second-{i:04}");
        let new = NewSchedule {
            id: Uuid::now_v7(),
            name: &name,
            workflow_name: "bench-tick",
            workflow_version: None,
            cron: "@every 1s",
            timezone: "UTC",
            input: &input,
            overlap: Overlap::Allow,
            catch_up: CatchUp::Latest,
            jitter_ms: 0,
        };
        schedules::create(&mut tx, &new, first, first).await?;
    }
    tx.commit().await?;
    Ok(first)
}

/// A scheduled run: its id, its tick, and how late it was claimed and
/// started (ms; `None` for a run not started).
struct Late {
    id: Uuid,
    tick: DateTime<Utc>,
    claimed: f64,
    started: Option<f64>,
}

/// Every scheduled run.
async fn lateness(pool: &PgPool) -> anyhow::Result<Vec<Late>> {
    let rows: Vec<(Uuid, DateTime<Utc>, f64, Option<f64>)> = sqlx::query_as(
        "SELECT id, scheduled_at, \
                extract(epoch FROM created_at - scheduled_at)::float8 * 1000, \
                extract(epoch FROM started_at - scheduled_at)::float8 * 1000 \
         FROM workflow_executions WHERE schedule_id IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, tick, claimed, started)| Late {
            id,
            tick,
            claimed,
            started,
        })
        .collect())
}

/// When each run's first `NOTIFY weft_runs` (its submit's, sent with the
/// commit) arrived, until `stop`.
async fn listen(
    mut listener: sqlx::postgres::PgListener,
    stop: CancellationToken,
) -> anyhow::Result<HashMap<Uuid, DateTime<Utc>>> {
    let mut heard = HashMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(heard),
            notification = listener.recv() => {
                let at = Utc::now();
                if let Ok(id) = notification?.payload().parse::<Uuid>() {
                    heard.entry(id).or_insert(at);
                }
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = !args.iter().any(|a| a == "--bench");
    let json = args.iter().any(|a| a == "--json");
    let n = flag(&args, "--schedules", if quick { 20 } else { 1_000 })?;
    let seconds = flag(&args, "--seconds", if quick { 3 } else { 30 })?;
    let stack = Stack::start(StackOptions {
        worker_concurrency: 64,
        ..StackOptions::default()
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut report = Report::new(json);
    runtime.block_on(async {
        let pool = stack.pool().await?;
        let first = create(&pool, n).await?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
        listener.listen(weft_store::inspect::RUNS_CHANNEL).await?;
        let stop = CancellationToken::new();
        let heard = tokio::spawn(listen(listener, stop.clone()));
        let window = Duration::from_secs(seconds);
        let until = first + chrono::Duration::from_std(window)?;
        loop {
            let now = schedules::db_now(&mut *pool.acquire().await?).await?;
            if now >= until {
                break;
            }
            tokio::time::sleep((until - now).to_std()?.min(Duration::from_millis(500))).await;
        }
        sqlx::query("UPDATE schedules SET paused_at = now()")
            .execute(&pool)
            .await?;
        // Let the last runs start and finish.
        for _ in 0..600 {
            let open: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM workflow_executions \
                 WHERE status NOT IN ('succeeded', 'failed', 'canceled')",
            )
            .fetch_one(&pool)
            .await?;
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.cancel();
        let heard = heard.await??;
        let rows = lateness(&pool).await?;
        let (missed, skipped): (i64, i64) = sqlx::query_as(
            "SELECT coalesce(sum(ticks_missed), 0)::int8, coalesce(sum(ticks_skipped), 0)::int8 \
             FROM schedules",
        )
        .fetch_one(&pool)
        .await?;
        // Each schedule's cursor is at its first tick not claimed: every
        // tick before it came due and must have one run, or be counted
        // missed or skipped.
        let due: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(extract(epoch FROM next_tick - $1)), 0)::int8 FROM schedules",
        )
        .bind(first)
        .fetch_one(&pool)
        .await?;
        let runs = i64::try_from(rows.len())?;
        let per_tick: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c FROM workflow_executions \
             WHERE schedule_id IS NOT NULL GROUP BY schedule_id, scheduled_at) t",
        )
        .fetch_one(&pool)
        .await?;
        ensure!(per_tick <= 1, "a tick started {per_tick} runs");
        ensure!(
            runs + missed + skipped == due,
            "{due} ticks came due but {runs} runs started, {missed} were missed and {skipped} skipped"
        );
        let claimed: Vec<f64> = rows.iter().map(|r| r.claimed).collect();
        let fired: Vec<f64> = rows
            .iter()
            .filter_map(|r| {
                heard
                    .get(&r.id)
                    .map(|at| (*at - r.tick).as_seconds_f64() * 1000.0)
            })
            .collect();
        ensure!(
            fired.len() == rows.len(),
            "{} runs' commits were not heard",
            rows.len() - fired.len()
        );
        let started: Vec<f64> = rows.iter().filter_map(|r| r.started).collect();
        ensure!(
            started.len() == rows.len(),
            "{} runs never started",
            rows.len() - started.len()
        );
        let scenario = format!("{n} schedules @every 1s, {seconds} s");
        report.add(&scenario, "runs", runs as f64, "runs");
        report.add(&scenario, "missed", missed as f64, "ticks");
        report.add(&scenario, "skipped", skipped as f64, "ticks");
        let which = [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0)];
        report.percentiles(&format!("{scenario}: claimed late"), &claimed, &which);
        report.percentiles(&format!("{scenario}: fired late"), &fired, &which);
        report.percentiles(&format!("{scenario}: started late"), &started, &which);
        anyhow::Ok(())
    })?;
    report.finish();
    Ok(())
}
