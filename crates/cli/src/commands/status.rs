//! `weft status ID`, `weft watch ID` and `weft list`: reading runs.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use weft_common::explain::no_worker_hint;
use weft_common::{RunRef, TaskStatus, Workflow, WorkflowExecutionId, WorkflowStatus};
use weft_store::PgPool;
use weft_store::runs::{self, RunRow};
use weft_store::tasks::{self, TaskSummary};
use weft_store::workers;

use crate::config::{ConfigArgs, DbArgs};

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
    /// At most this many runs, newest first.
    #[arg(long, default_value_t = 20)]
    pub(crate) limit: i64,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Only runs submitted by a user: leave out child runs (started by a
    /// `workflow:` task of another run).
    #[arg(long)]
    pub(crate) top: bool,
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
    let pool = args.db.connect().await?;
    let id = crate::run_ref::resolve(&pool, &args.id).await?;
    if let Some(task) = &args.task {
        return super::attempts::show(&pool, id, task, args.json).await;
    }
    let snapshot = Snapshot::load(&pool, id)
        .await?
        .with_context(|| format!("no run with id {id}"))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&snapshot.to_json())?)?;
    } else {
        snapshot.print_table()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows one run to its end.
pub(crate) async fn watch(args: &WatchArgs) -> anyhow::Result<ExitCode> {
    let pool = args.db.connect().await?;
    let id = crate::run_ref::resolve(&pool, &args.id).await?;
    follow(&pool, id, args.json, &args.wait).await
}

/// Lists runs.
pub(crate) async fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let pool = args.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    let rows = weft_store::children::list(
        &mut conn,
        args.status,
        args.workflow.as_deref(),
        args.limit,
        args.top,
    )
    .await?;
    if args.json {
        let items: Vec<Value> = rows
            .iter()
            .map(|(r, parent)| {
                json!({
                    "id": r.id, "workflow": r.workflow_name, "status": r.status,
                    "created_at": r.created_at, "finished_at": r.finished_at,
                    "parent": parent,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&items)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["id", "workflow", "status", "created", "finished"]);
    for (r, parent) in &rows {
        // A child run is marked with its parent's id prefix.
        let workflow = match parent {
            Some(parent) => format!(
                "↳ {} (child of {})",
                r.workflow_name,
                parent.to_string().get(..8).unwrap_or_default()
            ),
            None => r.workflow_name.clone(),
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
    Ok(ExitCode::SUCCESS)
}

/// The exit status after Ctrl-C (128 + SIGINT), as shells report it.
const INTERRUPTED: u8 = 130;

/// Follows a run until it is terminal, showing progress on a terminal;
/// exit 0 if it succeeded, 1 otherwise. Ctrl-C stops following, not the
/// run: it says how to pick it up again and exits 130.
pub(crate) async fn follow(
    pool: &PgPool,
    id: WorkflowExecutionId,
    json: bool,
    wait: &WaitArgs,
) -> anyhow::Result<ExitCode> {
    tokio::select! {
        followed = follow_to_end(pool, id, json, wait) => followed,
        _ = tokio::signal::ctrl_c() => {
            crate::telemetry::hide_progress();
            eprintln!("\nthe run goes on: follow it with `weft watch {id}`");
            Ok(ExitCode::from(INTERRUPTED))
        }
    }
}

async fn follow_to_end(
    pool: &PgPool,
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
    let mut listener = match weft_store::PgListener::connect_with(pool).await {
        Ok(mut l) => l.listen(runs::FINISHED_CHANNEL).await.ok().map(|()| l),
        Err(_) => None,
    };
    let mut interval = Duration::from_millis(20);
    loop {
        let snapshot = Snapshot::load(pool, id)
            .await?
            .with_context(|| format!("no run with id {id}"))?;
        if let Some(bar) = &bar {
            bar.set_length(snapshot.tasks.len() as u64);
            bar.set_position(
                snapshot
                    .tasks
                    .iter()
                    .filter(|t| t.task.status.is_terminal())
                    .count() as u64,
            );
            bar.set_message(snapshot.progress_message());
        }
        if snapshot.run.status.is_terminal() {
            if let Some(bar) = bar {
                crate::telemetry::hide_progress();
                bar.finish_and_clear();
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&snapshot.to_json())?)?;
            } else {
                outln!("{id} {}", snapshot.run.status)?;
                if let Some(output) = &snapshot.run.output {
                    outln!("{}", serde_json::to_string_pretty(output)?)?;
                }
                if let Some(error) = &snapshot.run.error {
                    eprintln!("error: {error}");
                }
            }
            return Ok(if snapshot.run.status == WorkflowStatus::Succeeded {
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
                snapshot.run.status
            );
            return Ok(ExitCode::from(2));
        }
        match listener.as_mut() {
            Some(l) => {
                let woke = tokio::time::timeout(interval, l.recv()).await;
                if matches!(woke, Ok(Err(_))) {
                    listener = None;
                }
            }
            None => tokio::time::sleep(interval).await,
        }
        interval = (interval * 2).min(Duration::from_millis(250));
    }
}

/// A run and its tasks, read together.
#[derive(Debug)]
struct Snapshot {
    run: RunRow,
    /// The run that started this one, and how deep it is nested.
    parent: Option<(WorkflowExecutionId, i32)>,
    /// The runs its `workflow:` tasks started.
    children: Vec<weft_store::children::ChildRun>,
    tasks: Vec<TaskSummary>,
    /// Advice about queued tasks: pools no live worker consumes.
    hints: Vec<String>,
}

impl Snapshot {
    async fn load(pool: &PgPool, id: WorkflowExecutionId) -> anyhow::Result<Option<Self>> {
        let mut conn = pool.acquire().await.context("connecting")?;
        let Some(run) = runs::get(&mut conn, id).await? else {
            return Ok(None);
        };
        let mut tasks = tasks::summaries(&mut conn, id).await?;
        // Show tasks in the workflow's topological order when it parses.
        let (source, origin) = runs::definition(&mut conn, run.definition_id).await?;
        let mut hints = Vec::new();
        if let Ok(workflow) = Workflow::parse_stored(&source, &origin) {
            let order: Vec<&str> = workflow.tasks().map(|t| t.name()).collect();
            tasks.sort_by_key(|t| {
                order
                    .iter()
                    .position(|n| *n == t.task.task_name)
                    .unwrap_or(usize::MAX)
            });
            hints = unserved_pools(&mut conn, &workflow, &tasks).await?;
            if let Some(hint) = run_wide_slots(&mut conn, id, &workflow, &tasks).await? {
                hints.push(hint);
            }
        }
        let children = weft_store::children::children(&mut conn, id).await?;
        let parent = weft_store::children::parent_of(&mut conn, id).await?;
        Ok(Some(Self {
            run,
            parent,
            children,
            tasks,
            hints,
        }))
    }

    fn progress_message(&self) -> String {
        let running: Vec<String> = self
            .tasks
            .iter()
            .filter(|t| t.task.status == TaskStatus::Running)
            .map(|t| match (t.task.with_items, t.task.items_total) {
                (true, Some(total)) => {
                    format!("{} {}/{}", t.task.task_name, t.task.items_done(), total)
                }
                _ => t.task.task_name.clone(),
            })
            .collect();
        format!("{} {}", self.run.status, running.join(", "))
    }

    fn to_json(&self) -> Value {
        let r = &self.run;
        let tasks: Vec<Value> = self
            .tasks
            .iter()
            .map(|t| {
                let task = &t.task;
                json!({
                    "name": task.task_name,
                    "exit_handler": task.exit_handler,
                    "status": t.shown_status(),
                    "items_total": if task.with_items { task.items_total.map(Value::from) } else { None },
                    "items_succeeded": task.items_succeeded,
                    "items_failed": task.items_failed,
                    "attempts": t.attempts,
                    "round": t.round,
                    "earlier_rounds": t.earlier_rounds,
                    "result": task.result,
                    "error": task.error,
                    "started_at": t.started_at.or(if task.status == TaskStatus::Skipped { None } else { task.decided_at }),
                    "finished_at": task.finished_at,
                })
            })
            .collect();
        json!({
            "id": r.id,
            "workflow": r.workflow_name,
            "status": r.status,
            "input": r.input,
            "output": r.output,
            "error": r.error,
            "created_at": r.created_at,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
            "tasks": tasks,
            "parent": self.parent.map(|(id, _)| id),
            "depth": self.parent.map_or(0, |(_, depth)| depth),
            "children": self.children,
            "hints": self.hints,
        })
    }

    fn print_table(&self) -> std::io::Result<()> {
        let r = &self.run;
        outln!("run       {}", r.id)?;
        outln!("workflow  {}", r.workflow_name)?;
        outln!("status    {}", r.status)?;
        if let Some((parent, depth)) = self.parent {
            outln!("parent    {parent}  (a child run, depth {depth})")?;
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
        for t in &self.tasks {
            let task = &t.task;
            let items = match (task.with_items, task.items_total) {
                (true, Some(total)) => format!(
                    "{}/{} ({} failed)",
                    task.items_succeeded, total, task.items_failed
                ),
                (true, None) => "—".to_owned(),
                (false, _) => String::new(),
            };
            let detail = task
                .error
                .clone()
                .or_else(|| task.result.as_ref().map(|v| truncate(&v.to_string(), 60)))
                .unwrap_or_default();
            // Exit handlers (`on_exit:`) are marked: they run after the rest.
            let name = if task.exit_handler {
                format!("{} (on_exit)", task.task_name)
            } else {
                task.task_name.clone()
            };
            table.add_row([
                name,
                t.shown_status().to_owned(),
                items,
                attempts_cell(t),
                detail,
            ]);
        }
        outln!("{table}")?;
        if !self.children.is_empty() {
            let mut children = Table::new();
            children.load_preset(UTF8_FULL_CONDENSED).set_header([
                "child run",
                "workflow",
                "status",
                "task",
                "item",
                "attempt",
            ]);
            for c in &self.children {
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
        for hint in &self.hints {
            outln!("note: {hint}")?;
        }
        Ok(())
    }
}

/// "no worker consumes pool `gpu`: …" for each pool of a queued task that
/// no live worker consumes (live: within the reaper's default grace).
async fn unserved_pools(
    conn: &mut weft_store::PgConnection,
    workflow: &Workflow,
    tasks: &[TaskSummary],
) -> anyhow::Result<Vec<String>> {
    let mut pools: Vec<String> = tasks
        .iter()
        .filter(|t| t.shown_status() == "queued")
        .filter_map(|t| workflow.task(&t.task.task_name))
        .map(|spec| spec.queue().to_owned())
        .collect();
    pools.sort();
    pools.dedup();
    if pools.is_empty() {
        return Ok(Vec::new());
    }
    let live = workers::live_in_pools(conn, &pools, workers::DEFAULT_HEARTBEAT_GRACE).await?;
    Ok(pools
        .iter()
        .filter(|p| !live.iter().any(|w| w.queues.contains(p)))
        .map(|p| no_worker_hint(p))
        .collect())
}

/// "tasks `a`, `b` wait for a run-wide slot: …" when tasks of a running
/// run are held by its full `parallelism`.
async fn run_wide_slots(
    conn: &mut weft_store::PgConnection,
    id: WorkflowExecutionId,
    workflow: &Workflow,
    tasks: &[TaskSummary],
) -> anyhow::Result<Option<String>> {
    let Some(limit) = workflow.parallelism() else {
        return Ok(None);
    };
    let held: Vec<String> = tasks
        .iter()
        .filter(|t| {
            t.shown_status() == "waiting" && t.task.status == weft_common::TaskStatus::Running
        })
        .map(|t| format!("`{}`", t.task.task_name))
        .collect();
    if held.is_empty() {
        return Ok(None);
    }
    let in_flight = weft_store::parallelism::in_flight(conn, id).await?;
    Ok(Some(format!(
        "{} wait{} for a run-wide slot: {in_flight} of the run's executions are in flight, its `parallelism` is {limit}",
        held.join(", "),
        if held.len() == 1 { "s" } else { "" }
    )))
}

/// The attempts of a task's current round, and which round that is when
/// it ran in earlier ones too: `2 · round 2 (1 earlier)`.
fn attempts_cell(t: &TaskSummary) -> String {
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
