//! `weft logs ID [TASK]`: what each attempt printed, read from
//! [`weft_store::inspect::logs`]; `--follow` prints attempts as they end,
//! woken by [`RUNS_CHANNEL`], until the run ends.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use weft_common::limits::grouped;
use weft_common::logs::StreamLog;
use weft_common::{ExecutionId, ExecutionStatus, RunRef, WorkflowExecutionId};
use weft_store::inspect::attempts::AttemptFilter;
use weft_store::inspect::logs::{self, AttemptLog};
use weft_store::inspect::{RUNS_CHANNEL, runs_in_payload};
use weft_store::runs::{self, RunLock};
use weft_store::{PgListener, PgPool};

use super::attempts::{check_task, duration, item_cell};
use crate::config::{ConfigArgs, DbArgs};
use crate::remote::{Client, RemoteArgs, run_path};

/// Arguments of `weft logs`.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The run: its id, a unique prefix of it (8+ hex digits), or `last`.
    pub(crate) id: RunRef,
    /// Only this task's attempts.
    pub(crate) task: Option<String>,
    /// Only this item's attempts (its index).
    #[arg(long, value_name = "N")]
    pub(crate) item: Option<i32>,
    /// Only this attempt (counted within its round, from 1).
    #[arg(long, value_name = "N")]
    pub(crate) attempt: Option<i32>,
    /// Only this round's attempts (`weft retry` starts a new round).
    #[arg(long, value_name = "N")]
    pub(crate) round: Option<i32>,
    /// Keep printing attempts as they end, until the run ends.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// Print JSON: an array, or with `--follow` one object per line.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Prints the attempts' logs.
pub(crate) async fn run(args: &LogsArgs) -> anyhow::Result<ExitCode> {
    if let Some(client) = args.remote.client()? {
        return run_remote(&client, args).await;
    }
    let pool = args.db.connect().await?;
    let id = crate::run_ref::resolve(&pool, &args.id).await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    let problem = match &args.task {
        Some(task) => check_task(&mut conn, id, task).await?.err(),
        None => runs::get(&mut conn, id)
            .await?
            .is_none()
            .then(|| format!("no run with id {}", id)),
    };
    if let Some(problem) = problem {
        eprintln!("error: {problem}");
        return Ok(ExitCode::FAILURE);
    }
    drop(conn);
    let filter = AttemptFilter {
        task: args.task.as_deref(),
        item: args.item,
        attempt: args.attempt,
        round: args.round,
        ended: args.follow,
    };
    if args.follow {
        follow(&pool, id, &filter, args.json).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut conn = pool.acquire().await.context("connecting")?;
    let attempts = logs::logs(&mut conn, id, &filter, &[]).await?;
    print_all(&attempts, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_all(attempts: &[AttemptLog], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(attempts)?)?;
    } else if attempts.is_empty() {
        writeln!(out, "no attempts match")?;
    } else {
        for attempt in attempts {
            out.write_all(block(attempt).as_bytes())?;
        }
    }
    Ok(())
}

/// How long a remote follower waits for the run's events before it asks
/// the server again anyway.
const REMOTE_INTERVAL: Duration = Duration::from_millis(500);

/// [`run`] through a `weft server`: `GET /api/v1/runs/{run}/logs`; with
/// `--follow`, asked again whenever the run's event stream says it
/// changed, or every [`REMOTE_INTERVAL`] (the run's status first, as in
/// direct mode), printing each attempt once it ended.
async fn run_remote(client: &Client, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(task) = &args.task {
        query.push(("task", task.clone()));
    }
    for (name, value) in [
        ("item", args.item),
        ("attempt", args.attempt),
        ("round", args.round),
    ] {
        if let Some(value) = value {
            query.push((name, value.to_string()));
        }
    }
    if !args.follow {
        let attempts = remote_logs(client, &format!("{}/logs", run_path(&args.id)), &query).await?;
        print_all(&attempts, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let run: weft_store::inspect::status::RunStatus = client.get(&run_path(&args.id), &[]).await?;
    let run = run.id;
    let mut shown: HashSet<ExecutionId> = HashSet::new();
    let mut events = Some(client.wake_on_events(&format!("/api/v1/runs/{run}/events")));
    loop {
        let read_at = tokio::time::Instant::now();
        let status: weft_store::inspect::status::RunStatus =
            client.get(&format!("/api/v1/runs/{run}"), &[]).await?;
        let attempts = remote_logs(client, &format!("/api/v1/runs/{run}/logs"), &query).await?;
        let mut out = std::io::stdout().lock();
        let ended: Vec<&AttemptLog> = attempts
            .iter()
            .filter(|a| a.attempt.status.is_terminal() && !shown.contains(&a.attempt.execution_id))
            .collect();
        for attempt in ended {
            if args.json {
                writeln!(out, "{}", serde_json::to_string(attempt)?)?;
            } else {
                out.write_all(block(attempt).as_bytes())?;
            }
            shown.insert(attempt.attempt.execution_id);
        }
        out.flush()?;
        drop(out);
        if status.status.is_terminal() {
            if !args.json {
                outln!("run {run} {}", status.status)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        match events.as_mut() {
            Some(rx) => {
                if let Ok(None) = tokio::time::timeout(REMOTE_INTERVAL, rx.recv()).await {
                    events = None;
                }
            }
            None => tokio::time::sleep(REMOTE_INTERVAL).await,
        }
        tokio::time::sleep_until(read_at + MIN_READ_INTERVAL).await;
    }
}

/// Attempts asked for in one request of a remote read: the server answers
/// at most 1,000 (`weft_server::api::detail::MAX_LOGS`), and each attempt
/// may carry 128 KiB of output.
const REMOTE_PAGE: usize = 200;

/// Every attempt of `GET path?query` that matches, asked for a page of
/// [`REMOTE_PAGE`] at a time until a shorter page (the server refuses an
/// unpaged read past 1,000 attempts). The order is the server's (task,
/// item, attempt), so a page read while the run moves may miss an
/// attempt that a later read (`--follow`) or the run's end brings.
async fn remote_logs(
    client: &Client,
    path: &str,
    query: &[(&str, String)],
) -> anyhow::Result<Vec<AttemptLog>> {
    let mut all: Vec<AttemptLog> = Vec::new();
    loop {
        let mut paged = query.to_vec();
        paged.push(("limit", REMOTE_PAGE.to_string()));
        paged.push(("offset", all.len().to_string()));
        let page: Vec<AttemptLog> = client.get(path, &paged).await?;
        let last = page.len() < REMOTE_PAGE;
        all.extend(page);
        if last {
            return Ok(all);
        }
    }
}

/// How long a follower waits for a notification before it looks again
/// anyway (one may be lost while its connection is down).
const RECHECK: Duration = Duration::from_secs(2);

/// The shortest time between two reads: a busy run's notifications (one
/// per completion batch) are taken together.
const MIN_READ_INTERVAL: Duration = Duration::from_millis(200);

/// Prints the run's ended attempts, then each one that ends after, until
/// the run ends. The run's status is read before its attempts each time,
/// so the read that finds it ended also has every attempt it ended with.
async fn follow(
    pool: &PgPool,
    run: WorkflowExecutionId,
    filter: &AttemptFilter<'_>,
    json: bool,
) -> anyhow::Result<()> {
    let mut listener = listen(pool).await;
    let mut shown: Vec<ExecutionId> = Vec::new();
    loop {
        let read_at = tokio::time::Instant::now();
        let mut conn = pool.acquire().await.context("connecting")?;
        let status = runs::status(&mut conn, run, RunLock::None).await?;
        let ended = logs::logs(&mut conn, run, filter, &shown).await?;
        drop(conn);
        let mut out = std::io::stdout().lock();
        for attempt in &ended {
            if json {
                writeln!(out, "{}", serde_json::to_string(attempt)?)?;
            } else {
                out.write_all(block(attempt).as_bytes())?;
            }
            shown.push(attempt.attempt.execution_id);
        }
        out.flush()?;
        drop(out);
        if status.is_terminal() {
            if !json {
                outln!("run {run} {status}")?;
            }
            return Ok(());
        }
        wait_for_news(&mut listener, run).await;
        tokio::time::sleep_until(read_at + MIN_READ_INTERVAL).await;
    }
}

/// A listener on [`RUNS_CHANNEL`] and the channel of finished runs; `None`
/// if it cannot connect (the follower then re-reads every [`RECHECK`]).
async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.ok()?;
    listener
        .listen_all([RUNS_CHANNEL, runs::FINISHED_CHANNEL])
        .await
        .ok()?;
    Some(listener)
}

/// Waits until a notification concerns `run`, or [`RECHECK`] passed.
async fn wait_for_news(listener: &mut Option<PgListener>, run: WorkflowExecutionId) {
    let Some(l) = listener.as_mut() else {
        tokio::time::sleep(RECHECK).await;
        return;
    };
    let id = run.to_string();
    let deadline = tokio::time::Instant::now() + RECHECK;
    loop {
        match tokio::time::timeout_at(deadline, l.recv()).await {
            Err(_) => return,
            Ok(Err(_)) => {
                // The listener reconnects on its next `recv`; what it
                // missed meanwhile is read now.
                return;
            }
            Ok(Ok(notification)) => {
                let payload = notification.payload();
                let concerns = match runs_in_payload(payload) {
                    None => true,
                    Some(runs) => runs.contains(&id.as_str()),
                };
                if concerns {
                    return;
                }
            }
        }
    }
}

/// One attempt's block: a header naming the task, item, round, attempt,
/// status, exit code, worker and duration, then each stream that has
/// output, the error, and a failure's details.
fn block(log: &AttemptLog) -> String {
    let a = &log.attempt;
    let mut header = format!("==> {}", a.task);
    let item = item_cell(a.item_index, a.item.as_deref());
    if !item.is_empty() {
        let _ = write!(header, " · item {item}");
    }
    let _ = write!(
        header,
        " · round {} attempt {} · {}",
        a.round, a.attempt, a.status
    );
    if let Some(code) = log.logs.as_ref().and_then(|l| l.exit_code) {
        let _ = write!(header, " (exit code {code})");
    }
    if let Some(worker) = &a.worker {
        let _ = write!(header, " · worker {worker}");
    }
    if let Some(ms) = a.duration_ms {
        let _ = write!(header, " · {}", duration(ms));
    }
    let mut out = format!("{header}\n");
    if a.kept_from.is_some() {
        out.push_str("(kept from an earlier round: nothing ran)\n\n");
        return out;
    }
    let mut shown = false;
    if let Some(logs) = &log.logs {
        for (name, stream) in [("stdout", &logs.stdout), ("stderr", &logs.stderr)] {
            if !stream.is_empty() {
                stream_section(&mut out, name, stream);
                shown = true;
            }
        }
    }
    if let Some(details) = &log.details {
        let text = serde_json::to_string_pretty(details).unwrap_or_default();
        let _ = writeln!(out, "--- details ---\n{text}");
        shown = true;
    }
    if let Some(error) = &a.error {
        let _ = writeln!(out, "--- error ---\n{error}");
        shown = true;
    }
    if !shown {
        out.push_str(match a.status {
            ExecutionStatus::Pending | ExecutionStatus::Queued => "(not started)\n",
            ExecutionStatus::Running => "(running: its output is reported when it ends)\n",
            _ => "(no output)\n",
        });
    }
    out.push('\n');
    out
}

fn stream_section(out: &mut String, name: &str, stream: &StreamLog) {
    if stream.dropped > 0 {
        let _ = writeln!(
            out,
            "--- {name} (the last {} bytes; {} bytes before them dropped) ---",
            grouped(stream.text.len()),
            grouped(usize::try_from(stream.dropped).unwrap_or(usize::MAX))
        );
    } else {
        let _ = writeln!(out, "--- {name} ---");
    }
    out.push_str(&stream.text);
    if !stream.text.ends_with('\n') {
        out.push('\n');
    }
}
