//! `weft status ID`, `weft watch ID` and `weft list`: reading runs.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use weft_common::{RunRef, TaskStatus, WorkflowExecutionId, WorkflowStatus};
use weft_store::PgPool;
use weft_store::inspect::runs::{RunFilter, RunListItem, RunPage};
use weft_store::inspect::status::{RunStatus, TaskState};
use weft_store::runs;

use crate::config::{ConfigArgs, DbArgs};
use crate::remote::{Client, RemoteArgs, run_path};

/// Arguments of `weft status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The run: its id, a unique prefix of it (8+ hex digits), or `last`.
    pub(crate) id: RunRef,
    /// Show every execution of this task instead: item, round, attempt,
    /// status, worker, times, error.
    #[arg(long, value_name = "NAME")]
    pub(crate) task: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Arguments of `weft watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The run: its id, a unique prefix of it (8+ hex digits), or `last`.
    pub(crate) id: RunRef,
    /// Print the final status as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// How to follow a run.
#[derive(Debug, Clone, Args)]
pub(crate) struct WaitArgs {
    /// Give up following after this many seconds (the run goes on).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) timeout: Option<u64>,
}

/// Arguments of `weft list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only runs in this status.
    #[arg(long, value_parser = parse_status)]
    pub(crate) status: Option<WorkflowStatus>,
    /// Only runs of this workflow (by name).
    #[arg(long, value_name = "NAME")]
    pub(crate) workflow: Option<String>,
    /// At most this many runs (1–1000), newest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=weft_store::inspect::runs::MAX_PAGE))]
    pub(crate) limit: i64,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Only runs submitted by a user: leave out child runs (started by a
    /// `workflow:` task of another run).
    #[arg(long)]
    pub(crate) top: bool,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

fn parse_status(s: &str) -> Result<WorkflowStatus, String> {
    s.parse().map_err(|_| {
        let names: Vec<&str> = WorkflowStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("`{s}` is not a run status (one of: {})", names.join(", "))
    })
}

/// Prints one run.
pub(crate) async fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    if let Some(client) = args.remote.client()? {
        if let Some(task) = &args.task {
            return super::attempts::show_remote(&client, &args.id, task, args.json).await;
        }
        let run: RunStatus = client.get(&run_path(&args.id), &[]).await?;
        return print_status(&run, args.json);
    }
    let pool = args.db.connect().await?;
    let id = crate::run_ref::resolve(&pool, &args.id).await?;
    if let Some(task) = &args.task {
        return super::attempts::show(&pool, id, task, args.json).await;
    }
    let run = load(&pool, id).await?;
    print_status(&run, args.json)
}

fn print_status(run: &RunStatus, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        outln!("{}", serde_json::to_string_pretty(run)?)?;
    } else {
        print_table(run)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows one run to its end.
pub(crate) async fn watch(args: &WatchArgs) -> anyhow::Result<ExitCode> {
    if let Some(client) = args.remote.client()? {
        let run: RunStatus = client.get(&run_path(&args.id), &[]).await?;
        return follow(Source::Remote(&client), run.id, args.json, &args.wait).await;
    }
    let pool = args.db.connect().await?;
    let id = crate::run_ref::resolve(&pool, &args.id).await?;
    follow(Source::Db(&pool), id, args.json, &args.wait).await
}

/// Lists runs: one page of [`weft_store::inspect::runs::page`], read
/// from the database or from the server's `GET /api/v1/runs`.
pub(crate) async fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let page: RunPage = if let Some(client) = args.remote.client()? {
        let mut query = vec![("limit", args.limit.to_string())];
        if let Some(status) = args.status {
            query.push(("status", status.to_string()));
        }
        if let Some(workflow) = &args.workflow {
            query.push(("workflow", workflow.clone()));
        }
        if args.top {
            query.push(("top", "true".to_owned()));
        }
        client.get("/api/v1/runs", &query).await?
    } else {
        let pool = args.db.connect().await?;
        let mut conn = pool.acquire().await.context("connecting")?;
        let filter = RunFilter {
            status: args.status,
            workflow: args.workflow.clone(),
            parent: None,
            top: args.top,
        };
        weft_store::inspect::runs::page(&mut conn, &filter, args.limit, None).await?
    };
    print_list(&page.items, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_list(rows: &[RunListItem], json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(rows)?)?;
        return Ok(());
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["id", "workflow", "status", "created", "finished"]);
    for r in rows {
        // A child run is marked with its parent's id prefix.
        let workflow = match r.parent {
            Some(parent) => format!(
                "↳ {} (child of {})",
                r.workflow,
                parent.to_string().get(..8).unwrap_or_default()
            ),
            None => match r.workflow_version {
                Some(version) => format!("{}@{version}", r.workflow),
                None => r.workflow.clone(),
            },
        };
        // A scheduled run names its schedule.
        let workflow = match &r.schedule {
            Some(schedule) => format!("{workflow} ⏱ {schedule}"),
            None => workflow,
        };
        table.add_row([
            r.id.to_string(),
            workflow,
            r.status.to_string(),
            r.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            r.finished_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default(),
        ]);
    }
    outln!("{table}")?;
    Ok(())
}

/// The exit status after Ctrl-C (128 + SIGINT), as shells report it.
const INTERRUPTED: u8 = 130;

/// Follows a run until it is terminal, showing progress on a terminal;
/// exit 0 if it succeeded, 1 otherwise. Ctrl-C stops following, not the
/// run: it says how to pick it up again and exits 130.
pub(crate) async fn follow(
    source: Source<'_>,
    id: WorkflowExecutionId,
    json: bool,
    wait: &WaitArgs,
) -> anyhow::Result<ExitCode> {
    tokio::select! {
        followed = follow_to_end(source, id, json, wait) => followed,
        _ = tokio::signal::ctrl_c() => {
            crate::telemetry::hide_progress();
            eprintln!("\nthe run goes on: follow it with `weft watch {id}`");
            Ok(ExitCode::from(INTERRUPTED))
        }
    }
}

/// Where a followed run is read from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    /// The database, woken by its notifications.
    Db(&'a PgPool),
    /// A `weft server`, read at the same backing-off interval.
    Remote(&'a Client),
}

impl Source<'_> {
    async fn load(&self, id: WorkflowExecutionId) -> anyhow::Result<RunStatus> {
        match self {
            Self::Db(pool) => load(pool, id).await,
            Self::Remote(client) => Ok(client.get(&format!("/api/v1/runs/{id}"), &[]).await?),
        }
    }
}

async fn follow_to_end(
    source: Source<'_>,
    id: WorkflowExecutionId,
    json: bool,
    wait: &WaitArgs,
) -> anyhow::Result<ExitCode> {
    let interactive = std::io::stderr().is_terminal() && !json;
    let bar = if interactive {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} tasks, {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        crate::telemetry::show_progress(&bar);
        Some(bar)
    } else {
        None
    };
    let deadline = wait
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    // Woken at once when a run finishes; polling stays as the safety net
    // (and for progress).
    let mut listener = match source {
        Source::Db(pool) => match weft_store::PgListener::connect_with(pool).await {
            Ok(mut l) => l.listen(runs::FINISHED_CHANNEL).await.ok().map(|()| l),
            Err(_) => None,
        },
        Source::Remote(_) => None,
    };
    // Through a server: woken by the run's event stream instead.
    let mut events = match source {
        Source::Remote(client) => Some(client.wake_on_events(&format!("/api/v1/runs/{id}/events"))),
        Source::Db(_) => None,
    };
    let mut interval = Duration::from_millis(20);
    loop {
        let snapshot = source.load(id).await?;
        if let Some(bar) = &bar {
            bar.set_length(snapshot.tasks.len() as u64);
            bar.set_position(snapshot.tasks.iter().filter(|t| t.is_terminal()).count() as u64);
            bar.set_message(progress_message(&snapshot));
        }
        if snapshot.status.is_terminal() {
            if let Some(bar) = bar {
                crate::telemetry::hide_progress();
                bar.finish_and_clear();
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&snapshot)?)?;
            } else {
                outln!("{id} {}", snapshot.status)?;
                if let Some(output) = &snapshot.output {
                    outln!("{}", serde_json::to_string_pretty(output)?)?;
                }
                if let Some(error) = &snapshot.error {
                    eprintln!("error: {error}");
                }
            }
            return Ok(if snapshot.status == WorkflowStatus::Succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            if let Some(bar) = bar {
                crate::telemetry::hide_progress();
                bar.abandon();
            }
            eprintln!(
                "still {} after the --timeout; the run goes on ({id})",
                snapshot.status
            );
            return Ok(ExitCode::from(2));
        }
        let stream_ended = match (listener.as_mut(), events.as_mut()) {
            (Some(l), _) => {
                let woke = tokio::time::timeout(interval, l.recv()).await;
                if matches!(woke, Ok(Err(_))) {
                    listener = None;
                }
                false
            }
            (None, Some(events)) => {
                matches!(
                    tokio::time::timeout(interval, events.recv()).await,
                    Ok(None)
                )
            }
            (None, None) => {
                tokio::time::sleep(interval).await;
                false
            }
        };
        if stream_ended {
            // Poll from now on.
            events = None;
        }
        interval = (interval * 2).min(Duration::from_millis(250));
    }
}

/// Reads one run for showing.
async fn load(pool: &PgPool, id: WorkflowExecutionId) -> anyhow::Result<RunStatus> {
    let mut conn = pool.acquire().await.context("connecting")?;
    weft_store::inspect::status::load(&mut conn, id)
        .await?
        .with_context(|| format!("no run with id {id}"))
}

/// "running fan 3/10, b" — the running tasks, for the progress bar.
fn progress_message(run: &RunStatus) -> String {
    let running: Vec<String> = run
        .tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Running.as_str())
        .map(|t| match t.items_total {
            Some(total) => format!("{} {}/{}", t.name, t.items_done(), total),
            None => t.name.clone(),
        })
        .collect();
    format!("{} {}", run.status, running.join(", "))
}

/// Prints a run as `weft status` shows it.
pub(crate) fn print_table(r: &RunStatus) -> std::io::Result<()> {
    outln!("run       {}", r.id)?;
    match r.workflow_version {
        Some(version) => outln!("workflow  {}@{version}", r.workflow)?,
        None => outln!("workflow  {}", r.workflow)?,
    }
    outln!("status    {}", r.status)?;
    if let (Some(schedule), Some(tick)) = (&r.schedule, r.scheduled_at) {
        outln!(
            "schedule  {schedule}  (tick {})",
            weft_common::schedule::tick_text(tick)
        )?;
    }
    if let Some(parent) = r.parent {
        outln!("parent    {parent}  (a child run, depth {})", r.depth)?;
    }
    outln!("created   {}", r.created_at.format("%Y-%m-%d %H:%M:%S%.3f"))?;
    if let Some(f) = r.finished_at {
        outln!(
            "finished  {}  ({} ms)",
            f.format("%Y-%m-%d %H:%M:%S%.3f"),
            (f - r.created_at).num_milliseconds()
        )?;
    }
    if let Some(e) = &r.error {
        outln!("error     {e}")?;
    }
    if let Some(o) = &r.output {
        outln!("output    {o}")?;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "task",
        "status",
        "items",
        "attempts",
        "result / error",
    ]);
    for t in &r.tasks {
        let items = match t.items_total {
            Some(total) => format!(
                "{}/{} ({} failed)",
                t.items_succeeded, total, t.items_failed
            ),
            None => String::new(),
        };
        let detail = t
            .waiting
            .clone()
            .or_else(|| t.error.clone())
            .or_else(|| t.result.as_ref().map(|v| truncate(&v.to_string(), 60)))
            .unwrap_or_default();
        // Exit handlers (`on_exit:`) are marked: they run after the rest.
        let name = if t.exit_handler {
            format!("{} (on_exit)", t.name)
        } else {
            t.name.clone()
        };
        table.add_row([name, t.status.clone(), items, attempts_cell(t), detail]);
    }
    outln!("{table}")?;
    if !r.children.is_empty() {
        let mut children = Table::new();
        children.load_preset(UTF8_FULL_CONDENSED).set_header([
            "child run",
            "workflow",
            "status",
            "task",
            "item",
            "attempt",
        ]);
        for c in &r.children {
            children.add_row([
                c.id.to_string(),
                c.workflow_name.clone(),
                c.status.to_string(),
                c.task_name.clone(),
                c.item_index.map(|i| i.to_string()).unwrap_or_default(),
                c.attempt.to_string(),
            ]);
        }
        outln!("{children}")?;
    }
    for hint in &r.hints {
        outln!("note: {hint}")?;
    }
    Ok(())
}

/// The attempts of a task's current round, and which round that is when
/// it ran in earlier ones too: `2 · round 2 (1 earlier)`.
fn attempts_cell(t: &TaskState) -> String {
    match (t.round, t.earlier_rounds) {
        (Some(round), earlier) if earlier > 0 => {
            format!("{} · round {round} ({earlier} earlier)", t.attempts)
        }
        _ => t.attempts.to_string(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
