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
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) amqp: AmqpArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Explains one run.
pub(crate) async fn run(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
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
    let width = explanation
        .tasks
        .iter()
        .map(|t| t.task.len())
        .max()
        .unwrap_or(0);
    let status_width = explanation
        .tasks
        .iter()
        .map(|t| t.status.len())
        .max()
        .unwrap_or(0);
    for line in &explanation.tasks {
        outln!(
            "  {:width$}  {:status_width$}  {}",
            line.task,
            line.status,
            line.why
        )?;
    }
    let grace = args.grace.grace()?;
    follow_children(&mut db, &children, args.task.as_deref(), grace, 1).await?;
    Ok(ExitCode::SUCCESS)
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
    let mut shown: Vec<&weft_store::children::ChildRun> = children
        .iter()
        .filter(|c| task.is_none_or(|t| t == c.task_name))
        .collect();
    if shown.is_empty() || level > CHILD_LEVELS {
        return Ok(());
    }
    let total = shown.len();
    shown.sort_by_key(|c| c.status == weft_common::WorkflowStatus::Succeeded);
    shown.truncate(CHILDREN_SHOWN);
    let indent = "  ".repeat(level);
    for child in &shown {
        let Some(facts) =
            weft_store::inspect::explain::run_facts(&mut *db, child.id, grace).await?
        else {
            continue;
        };
        let explanation = facts.explain();
        let item = child
            .item_index
            .map_or(String::new(), |i| format!(" item {i}"));
        outln!(
            "{indent}↳ task `{}`{item} attempt {} — child run {} ({}): {}",
            child.task_name,
            child.attempt,
            child.id,
            child.workflow_name,
            explanation.run
        )?;
        for line in &explanation.tasks {
            outln!("{indent}    {}  {}  {}", line.task, line.status, line.why)?;
        }
        let grandchildren = weft_store::children::children(&mut *db, child.id).await?;
        Box::pin(follow_children(db, &grandchildren, None, grace, level + 1)).await?;
    }
    if total > shown.len() {
        outln!(
            "{indent}↳ … and {} more child run(s): `weft status` lists them all",
            total - shown.len()
        )?;
    }
    Ok(())
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
