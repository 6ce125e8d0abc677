//! `weft explain ID [TASK]`: why a run and each of its tasks are where they
//! are, one line each, from the state itself.
//!
//! The facts come from `weft_store::inspect::explain` (and, for the pools'
//! queues, from RabbitMQ when it answers within a moment); the sentences
//! from `weft_common::explain`. `--json` prints both, facts as read.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use weft_common::RunRef;
use weft_common::explain::RunFacts;
use weft_common::message::topology;

use super::workers::GraceArgs;
use crate::config::{AmqpArgs, ConfigArgs, DbArgs};
use crate::remote::{Client, RemoteArgs, run_path};

/// How long explain waits for RabbitMQ's queue figures before leaving them out.
const BUS_WAIT: Duration = Duration::from_secs(2);

/// Arguments of `weft explain`.
#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// The run: its id, a unique prefix of it (8+ hex digits) or `last`.
    pub(crate) id: RunRef,
    /// Only this task.
    pub(crate) task: Option<String>,
    /// Print the facts and the sentences as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) grace: GraceArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) amqp: AmqpArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Explains one run.
pub(crate) async fn run(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    if let Some(client) = args.remote.client()? {
        return run_remote(&client, args).await;
    }
    let bus = tokio::spawn(weft_bus::Bus::try_connect(args.amqp.config("weft-explain")));
    let pool = args.db.connect().await?;
    let id = crate::run_ref::resolve(&pool, &args.id).await?;
    let mut db = pool.acquire().await.context("connecting")?;
    let facts = weft_store::inspect::explain::run_facts(&mut db, id, args.grace.grace()?).await?;
    let Some(mut facts) = facts else {
        eprintln!("error: no run with id {id}");
        return Ok(ExitCode::FAILURE);
    };
    if let Some(task) = &args.task {
        if !facts.tasks.iter().any(|t| &t.name == task) {
            let names: Vec<&str> = facts.tasks.iter().map(|t| t.name.as_str()).collect();
            eprintln!(
                "error: run {id} has no task `{task}` (its tasks: {})",
                names.join(", ")
            );
            return Ok(ExitCode::FAILURE);
        }
        facts.tasks.retain(|t| &t.name == task);
    }
    if facts.status.dispatches() {
        queue_figures(&mut facts, bus).await;
    } else {
        bus.abort();
    }
    let explanation = facts.explain();
    let children = weft_store::children::children(&mut db, id).await?;
    if args.json {
        let out = weft_store::inspect::explain::Report::new(facts, children);
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.task.is_none() {
        outln!("run {} ({}): {}", facts.id, facts.workflow, explanation.run)?;
    }
    print_lines(&explanation.lines())?;
    let grace = args.grace.grace()?;
    follow_children(&mut db, &children, args.task.as_deref(), grace, 1).await?;
    Ok(ExitCode::SUCCESS)
}

/// One aligned line per task: name, status, why.
fn print_lines(lines: &[(&str, &str, &str)]) -> std::io::Result<()> {
    let width = lines.iter().map(|l| l.0.len()).max().unwrap_or(0);
    let status_width = lines.iter().map(|l| l.1.len()).max().unwrap_or(0);
    for (task, status, why) in lines {
        outln!("  {task:width$}  {status:status_width$}  {why}")?;
    }
    Ok(())
}

/// What the CLI reads of `GET /api/v1/runs/{run}/explain` to print it.
#[derive(Debug, serde::Deserialize)]
struct RemoteReport {
    facts: RemoteFacts,
    explanation: RemoteExplanation,
    children: Vec<weft_store::children::ChildRun>,
}

#[derive(Debug, serde::Deserialize)]
struct RemoteFacts {
    id: weft_common::WorkflowExecutionId,
    workflow: String,
}

#[derive(Debug, serde::Deserialize)]
struct RemoteExplanation {
    run: String,
    tasks: Vec<RemoteLine>,
}

#[derive(Debug, serde::Deserialize)]
struct RemoteLine {
    task: String,
    status: String,
    why: String,
}

impl RemoteExplanation {
    fn lines(&self) -> Vec<(&str, &str, &str)> {
        self.tasks
            .iter()
            .map(|t| (t.task.as_str(), t.status.as_str(), t.why.as_str()))
            .collect()
    }
}

/// [`run`] through a `weft server` (which reads no queue figures: it does
/// not talk to RabbitMQ), child runs included.
async fn run_remote(client: &Client, args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let path = format!("{}/explain", run_path(&args.id));
    let mut raw: serde_json::Value = client.get(&path, &[]).await?;
    let mut report: RemoteReport = serde_json::from_value(raw.clone())?;
    if let Some(task) = &args.task {
        if !report.explanation.tasks.iter().any(|t| &t.task == task) {
            let names: Vec<&str> = report
                .explanation
                .tasks
                .iter()
                .map(|t| t.task.as_str())
                .collect();
            eprintln!(
                "error: run {} has no task `{task}` (its tasks: {})",
                report.facts.id,
                names.join(", ")
            );
            return Ok(ExitCode::FAILURE);
        }
        report.explanation.tasks.retain(|t| &t.task == task);
        for (list, key) in [("facts", "name"), ("explanation", "task")] {
            if let Some(tasks) = raw
                .get_mut(list)
                .and_then(|l| l.get_mut("tasks"))
                .and_then(serde_json::Value::as_array_mut)
            {
                tasks.retain(|t| t.get(key).and_then(serde_json::Value::as_str) == Some(task));
            }
        }
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&raw)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.task.is_none() {
        outln!(
            "run {} ({}): {}",
            report.facts.id,
            report.facts.workflow,
            report.explanation.run
        )?;
    }
    print_lines(&report.explanation.lines())?;
    follow_children_remote(client, &report.children, args.task.as_deref(), 1).await?;
    Ok(ExitCode::SUCCESS)
}

/// [`follow_children`] through a `weft server`.
async fn follow_children_remote(
    client: &Client,
    children: &[weft_store::children::ChildRun],
    task: Option<&str>,
    level: usize,
) -> anyhow::Result<()> {
    let Some((shown, total)) = children_to_show(children, task, level) else {
        return Ok(());
    };
    for child in &shown {
        let report: RemoteReport = client
            .get(&format!("/api/v1/runs/{}/explain", child.id), &[])
            .await?;
        print_child(
            level,
            child,
            &report.explanation.run,
            &report.explanation.lines(),
        )?;
        Box::pin(follow_children_remote(
            client,
            &report.children,
            None,
            level + 1,
        ))
        .await?;
    }
    print_left_out(level, total, shown.len())
}

/// The child runs to explain under a run `level` deep: those of `task`
/// (all when `None`), those not succeeded first, at most
/// [`CHILDREN_SHOWN`]; and how many there are. `None` when there are
/// none, or past [`CHILD_LEVELS`].
fn children_to_show<'a>(
    children: &'a [weft_store::children::ChildRun],
    task: Option<&str>,
    level: usize,
) -> Option<(Vec<&'a weft_store::children::ChildRun>, usize)> {
    let mut shown: Vec<&weft_store::children::ChildRun> = children
        .iter()
        .filter(|c| task.is_none_or(|t| t == c.task_name))
        .collect();
    if shown.is_empty() || level > CHILD_LEVELS {
        return None;
    }
    let total = shown.len();
    shown.sort_by_key(|c| c.status == weft_common::WorkflowStatus::Succeeded);
    shown.truncate(CHILDREN_SHOWN);
    Some((shown, total))
}

/// Prints a child run's explanation (`run`, and one line per task) under
/// its parent's, indented `level` deep.
fn print_child(
    level: usize,
    child: &weft_store::children::ChildRun,
    run: &str,
    lines: &[(&str, &str, &str)],
) -> std::io::Result<()> {
    let indent = "  ".repeat(level);
    let item = child
        .item_index
        .map_or(String::new(), |i| format!(" item {i}"));
    outln!(
        "{indent}↳ task `{}`{item} attempt {} — child run {} ({}): {run}",
        child.task_name,
        child.attempt,
        child.id,
        child.workflow_name,
    )?;
    for (task, status, why) in lines {
        outln!("{indent}    {task}  {status}  {why}")?;
    }
    Ok(())
}

/// Says how many of `total` child runs `level` deep were not explained.
fn print_left_out(level: usize, total: usize, shown: usize) -> anyhow::Result<()> {
    if total > shown {
        let indent = "  ".repeat(level);
        outln!(
            "{indent}↳ … and {} more child run(s): `weft status` lists them all",
            total - shown
        )?;
    }
    Ok(())
}

/// Child runs explained under their parent at most this deep.
const CHILD_LEVELS: usize = 5;
/// Child runs explained per run at most (those not succeeded first).
const CHILDREN_SHOWN: usize = 10;

/// Explains the child runs (sub-workflows) of a run under it, indented:
/// those that did not succeed, then the others, at most
/// [`CHILDREN_SHOWN`] per run and [`CHILD_LEVELS`] deep; the rest are
/// counted.
async fn follow_children(
    db: &mut weft_store::PgConnection,
    children: &[weft_store::children::ChildRun],
    task: Option<&str>,
    grace: Duration,
    level: usize,
) -> anyhow::Result<()> {
    let Some((shown, total)) = children_to_show(children, task, level) else {
        return Ok(());
    };
    for child in &shown {
        let Some(facts) =
            weft_store::inspect::explain::run_facts(&mut *db, child.id, grace).await?
        else {
            continue;
        };
        let explanation = facts.explain();
        print_child(level, child, &explanation.run, &explanation.lines())?;
        let grandchildren = weft_store::children::children(&mut *db, child.id).await?;
        Box::pin(follow_children(db, &grandchildren, None, grace, level + 1)).await?;
    }
    print_left_out(level, total, shown.len())
}

/// Adds each pool's queue depth and consumer count, when RabbitMQ answers
/// within [`BUS_WAIT`]; leaves them out otherwise (the sentences then rest
/// on the workers' heartbeats alone).
async fn queue_figures(
    facts: &mut RunFacts,
    bus: tokio::task::JoinHandle<Result<weft_bus::Bus, weft_bus::BusError>>,
) {
    let Ok(Ok(Ok(bus))) = tokio::time::timeout(BUS_WAIT, bus).await else {
        tracing::debug!("no RabbitMQ within {BUS_WAIT:?}: queue figures left out");
        return;
    };
    for pool in &mut facts.pools {
        match bus.queue_stats(&topology::task_queue(&pool.name)).await {
            Ok(Some(stats)) => {
                pool.ready = Some(stats.ready);
                pool.consumers = Some(stats.consumers);
            }
            // No queue yet: nothing was ever dispatched to it, nobody consumes it.
            Ok(None) => {
                pool.ready = Some(0);
                pool.consumers = Some(0);
            }
            Err(e) => tracing::debug!(error = %e, pool = %pool.name, "queue figures unavailable"),
        }
    }
    bus.close().await;
}
