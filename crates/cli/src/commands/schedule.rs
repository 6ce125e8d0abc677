//! `weft schedule create|list|show|pause|resume|delete`: cron schedules of
//! registered workflows. The executors fire them (each tick exactly once,
//! see `weft_executor::Scheduler`); these commands only change their rows.
//! Against the database directly.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Map, Value, json};
use uuid::Uuid;
use weft_common::schedule::{CatchUp, Overlap, Timing, jitter, tick_text};
use weft_common::{Given, Workflow};
use weft_store::StoreError;
use weft_store::schedules::{self, NewSchedule, Schedule};

use super::workflow::{did_you_mean, resolve};
use crate::config::{ConfigArgs, DbArgs};

/// Arguments of `weft schedule`.
#[derive(Debug, Args)]
pub(crate) struct ScheduleArgs {
    #[command(subcommand)]
    pub(crate) action: ScheduleCommand,
}

/// What `weft schedule` does.
#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Run a registered workflow on a cron schedule.
    Create(CreateArgs),
    /// List schedules with their next tick.
    List(Common),
    /// Show a schedule: its next tick, its recent runs and skipped ticks.
    Show(NamedArgs),
    /// Stop firing a schedule's ticks until it is resumed.
    Pause(NamedArgs),
    /// Fire a paused schedule's ticks again, from the next one (ticks that
    /// came while it was paused are not run).
    Resume(NamedArgs),
    /// Delete a schedule (the runs it started are kept).
    Delete(NamedArgs),
}

/// The flags every `weft schedule` subcommand has.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Arguments of `weft schedule create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The schedule's name (`[a-z0-9_.-]+`).
    pub(crate) name: String,
    /// The registered workflow to run: NAME (its newest version at each
    /// tick) or NAME@VERSION.
    #[arg(long, value_name = "NAME[@VERSION]")]
    pub(crate) workflow: String,
    /// When: 5 fields (minute hour day-of-month month day-of-week), 6 with
    /// seconds first, `@hourly`/`@daily`/…, or `@every 10s`.
    #[arg(long, value_name = "EXPR")]
    pub(crate) cron: String,
    /// The IANA time zone the cron expression is read in.
    #[arg(long, default_value = "UTC", value_name = "TZ")]
    pub(crate) timezone: String,
    /// An input value, KEY=VALUE, read by the input's declared type (as
    /// `weft submit --input`).
    #[arg(long = "input", short = 'i', value_name = "KEY=VALUE")]
    pub(crate) inputs: Vec<String>,
    /// What a tick does while a run of an earlier tick still runs.
    #[arg(long, default_value = "allow", value_parser = parse_overlap, value_name = "allow|skip|cancel_previous")]
    pub(crate) overlap: Overlap,
    /// Which missed ticks run after an outage: none, the newest one, or
    /// all (the newest 1,000 at most).
    #[arg(long, default_value = "latest", value_parser = parse_catch_up, value_name = "none|latest|all")]
    pub(crate) catch_up: CatchUp,
    /// Start each tick's run up to this much later (a fixed offset per
    /// tick, spread over the window).
    #[arg(long, value_parser = parse_jitter, value_name = "DURATION")]
    pub(crate) jitter: Option<Duration>,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// Arguments of the subcommands that name one schedule.
#[derive(Debug, Args)]
pub(crate) struct NamedArgs {
    /// The schedule's name.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) common: Common,
}

fn parse_overlap(text: &str) -> Result<Overlap, String> {
    text.parse()
}

fn parse_catch_up(text: &str) -> Result<CatchUp, String> {
    text.parse()
}

fn parse_jitter(text: &str) -> Result<Duration, String> {
    weft_common::parse_duration(text)
}

impl ScheduleArgs {
    fn common(&self) -> &Common {
        match &self.action {
            ScheduleCommand::Create(a) => &a.common,
            ScheduleCommand::List(a) => a,
            ScheduleCommand::Show(a)
            | ScheduleCommand::Pause(a)
            | ScheduleCommand::Resume(a)
            | ScheduleCommand::Delete(a) => &a.common,
        }
    }

    /// The `--config` flag of the subcommand.
    pub(crate) fn config(&self) -> &ConfigArgs {
        &self.common().config
    }

    /// The database flags of the subcommand.
    pub(crate) fn db_mut(&mut self) -> &mut DbArgs {
        match &mut self.action {
            ScheduleCommand::Create(a) => &mut a.common.db,
            ScheduleCommand::List(a) => &mut a.db,
            ScheduleCommand::Show(a)
            | ScheduleCommand::Pause(a)
            | ScheduleCommand::Resume(a)
            | ScheduleCommand::Delete(a) => &mut a.common.db,
        }
    }
}

/// Runs `weft schedule …`.
pub(crate) async fn run(args: &ScheduleArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        ScheduleCommand::Create(a) => create(a).await,
        ScheduleCommand::List(a) => list(a).await,
        ScheduleCommand::Show(a) => show(a).await,
        ScheduleCommand::Pause(a) => pause(a).await,
        ScheduleCommand::Resume(a) => resume(a).await,
        ScheduleCommand::Delete(a) => delete(a).await,
    }
}

async fn create(args: &CreateArgs) -> anyhow::Result<ExitCode> {
    let valid_name = !args.name.is_empty()
        && args
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if !valid_name {
        eprintln!(
            "error: schedule name `{}` may only use a-z, 0-9, `_`, `.` and `-`",
            args.name
        );
        return Ok(ExitCode::FAILURE);
    }
    let timing = match Timing::parse(&args.cron, Some(&args.timezone)) {
        Ok(timing) => timing,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let jitter_ms = match args.jitter.map(|j| i64::try_from(j.as_millis())) {
        None => 0,
        Some(Ok(ms)) => ms,
        Some(Err(_)) => {
            eprintln!("error: --jitter is too long");
            return Ok(ExitCode::FAILURE);
        }
    };
    let pool = args.common.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    let Some(version) = resolve(&mut conn, &args.workflow, "--workflow").await? else {
        return Ok(ExitCode::FAILURE);
    };
    let (source, origin) = weft_store::runs::definition(&mut conn, version.definition_id).await?;
    let workflow = Workflow::parse_stored(&source, &origin).map_err(|e| {
        anyhow::anyhow!(
            "workflow `{}@{}` no longer parses: {e}",
            version.name,
            version.version
        )
    })?;
    let mut given: Vec<(String, Given)> = Vec::new();
    for pair in &args.inputs {
        let (key, value) = super::submit::parse_pair(pair)?;
        given.push((key, Given::Text(value)));
    }
    let keys: Vec<String> = given.iter().map(|(k, _)| k.clone()).collect();
    let resolved = match workflow.resolve_given(given) {
        Ok(resolved) => resolved,
        Err(e) => {
            eprintln!(
                "error: --input: {e} (workflow `{}@{}`)",
                version.name, version.version
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    // A schedule's inputs are stored with it as given, in plain text.
    if let Some(name) = keys
        .iter()
        .find(|k| workflow.input_specs().get(*k).is_some_and(|s| s.secret()))
    {
        eprintln!(
            "error: --input {name}: input `{name}` is secret, and a schedule keeps its inputs in plain text: schedules cannot give secret inputs yet (workflow `{}@{}`)",
            version.name, version.version
        );
        return Ok(ExitCode::FAILURE);
    }
    // Only what was given is kept: defaults come from the version each
    // tick runs.
    let input: Map<String, Value> = resolved
        .into_iter()
        .filter(|(k, _)| keys.contains(k))
        .collect();
    let input = Value::Object(input);
    let id = Uuid::now_v7();
    let now = schedules::db_now(&mut conn).await?;
    let Some(next_tick) = timing.next_after(now) else {
        eprintln!("error: --cron `{}` matches no date after now", args.cron);
        return Ok(ExitCode::FAILURE);
    };
    let new = NewSchedule {
        id,
        name: &args.name,
        workflow_name: &version.name,
        // Pinned only when given as NAME@VERSION.
        workflow_version: weft_store::registry::WorkflowRef::parse(&args.workflow)
            .and_then(|r| r.version),
        cron: args.cron.trim(),
        timezone: timing.timezone().name(),
        input: &input,
        overlap: args.overlap,
        catch_up: args.catch_up,
        jitter_ms,
    };
    let start = fire_at(id, next_tick, jitter_ms);
    let schedule = match schedules::create(&mut conn, &new, next_tick, start).await {
        Ok(schedule) => schedule,
        Err(StoreError::Refused(why)) => {
            eprintln!("error: {why}");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    if args.common.json {
        outln!("{}", serde_json::to_string_pretty(&schedule)?)?;
    } else {
        outln!(
            "schedule `{}` created: runs {} on `{}` ({}); next tick {}",
            schedule.name,
            schedule.workflow(),
            schedule.cron,
            schedule.timezone,
            tick_text(schedule.next_tick)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// When a tick starts: the tick plus its jitter.
fn fire_at(id: Uuid, tick: DateTime<Utc>, jitter_ms: i64) -> DateTime<Utc> {
    let window = Duration::from_millis(u64::try_from(jitter_ms).unwrap_or(0));
    tick + chrono::Duration::from_std(jitter(id, tick, window)).unwrap_or_default()
}

async fn list(args: &Common) -> anyhow::Result<ExitCode> {
    let pool = args.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    let rows = schedules::list(&mut conn).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        outln!(
            "no schedules (create one with `weft schedule create NAME --workflow WF --cron EXPR`)"
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "name",
        "workflow",
        "cron",
        "state",
        "next tick",
        "last tick",
        "runs",
        "skipped",
    ]);
    for s in &rows {
        table.add_row([
            s.name.clone(),
            s.workflow(),
            format!("{} ({})", s.cron, s.timezone),
            state(s).to_owned(),
            if s.paused_at.is_some() {
                "-".to_owned()
            } else {
                tick_text(s.next_tick)
            },
            s.last_tick.map(tick_text).unwrap_or_default(),
            s.runs_started.to_string(),
            (s.ticks_skipped + s.ticks_missed).to_string(),
        ]);
    }
    outln!("{table}")?;
    Ok(ExitCode::SUCCESS)
}

fn state(s: &Schedule) -> &'static str {
    if s.paused_at.is_some() {
        "paused"
    } else {
        "active"
    }
}

/// Reads a schedule by name, or prints that there is none (with a "did
/// you mean") and returns `None`.
async fn find(conn: &mut weft_store::PgConnection, name: &str) -> anyhow::Result<Option<Schedule>> {
    if let Some(schedule) = schedules::get(conn, name).await? {
        return Ok(Some(schedule));
    }
    let names = schedules::names(conn).await?;
    let hint = did_you_mean(name, &names)
        .replace("weft workflow list", "weft schedule list")
        .replace(
            "register one with `weft workflow apply FILE`",
            "create one with `weft schedule create`",
        );
    eprintln!("error: no schedule named `{name}`{hint}");
    Ok(None)
}

async fn show(args: &NamedArgs) -> anyhow::Result<ExitCode> {
    let pool = args.common.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    let Some(s) = find(&mut conn, &args.name).await? else {
        return Ok(ExitCode::FAILURE);
    };
    let runs = schedules::runs(&mut conn, s.id, 10).await?;
    let skips = schedules::skips(&mut conn, s.id, 10).await?;
    if args.common.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "schedule": s,
                "runs": runs,
                "skipped": skips,
            }))?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("schedule  {} ({})", s.name, state(&s))?;
    outln!("workflow  {}", s.workflow())?;
    outln!("cron      {} ({})", s.cron, s.timezone)?;
    if !s.input.as_object().is_none_or(Map::is_empty) {
        outln!("input     {}", s.input)?;
    }
    outln!(
        "policy    overlap {}, catch-up {}{}",
        s.overlap,
        s.catch_up,
        if s.jitter_ms > 0 {
            format!(", jitter {} ms", s.jitter_ms)
        } else {
            String::new()
        }
    )?;
    if s.paused_at.is_none() {
        outln!("next      {}", tick_text(s.next_tick))?;
    }
    outln!(
        "counts    {} runs started, {} ticks skipped, {} missed",
        s.runs_started,
        s.ticks_skipped,
        s.ticks_missed
    )?;
    if !runs.is_empty() {
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_header(["tick", "run", "version", "status"]);
        for r in &runs {
            table.add_row([
                tick_text(r.scheduled_at),
                r.id.to_string(),
                r.workflow_version
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                r.status.to_string(),
            ]);
        }
        outln!("recent runs:\n{table}")?;
    }
    if !skips.is_empty() {
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_header(["tick", "skipped", "why"]);
        for k in &skips {
            table.add_row([tick_text(k.tick), k.reason.clone(), k.detail.clone()]);
        }
        outln!("ticks without a run:\n{table}")?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn pause(args: &NamedArgs) -> anyhow::Result<ExitCode> {
    let pool = args.common.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    let Some(s) = find(&mut conn, &args.name).await? else {
        return Ok(ExitCode::FAILURE);
    };
    if schedules::pause(&mut conn, &s.name).await? {
        outln!("schedule `{}` paused", s.name)?;
    } else {
        outln!("schedule `{}` was already paused", s.name)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn resume(args: &NamedArgs) -> anyhow::Result<ExitCode> {
    let pool = args.common.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    let Some(s) = find(&mut conn, &args.name).await? else {
        return Ok(ExitCode::FAILURE);
    };
    if s.paused_at.is_none() {
        outln!("schedule `{}` is not paused", s.name)?;
        return Ok(ExitCode::SUCCESS);
    }
    let timing = Timing::parse(&s.cron, Some(&s.timezone))
        .map_err(|e| anyhow::anyhow!("schedule `{}`: {e}", s.name))?;
    let now = schedules::db_now(&mut conn).await?;
    let next = timing
        .next_after(now)
        .with_context(|| format!("schedule `{}` matches no date after now", s.name))?;
    if schedules::resume(&mut conn, s.id, next, fire_at(s.id, next, s.jitter_ms)).await? {
        outln!(
            "schedule `{}` resumed; next tick {}",
            s.name,
            tick_text(next)
        )?;
    } else {
        outln!("schedule `{}` is not paused", s.name)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(args: &NamedArgs) -> anyhow::Result<ExitCode> {
    let pool = args.common.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    if schedules::delete(&mut conn, &args.name).await? {
        outln!(
            "schedule `{}` deleted; the runs it started are kept",
            args.name
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    find(&mut conn, &args.name).await?;
    Ok(ExitCode::FAILURE)
}
