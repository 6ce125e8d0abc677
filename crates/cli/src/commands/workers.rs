//! `weft workers`: the workers heard from lately — what they consume and
//! can run — and the check `validate` and `submit` make with it: does a
//! live worker of each task's pool know its action?

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use weft_common::Workflow;
use weft_store::workers::{self, WorkerRow};
use weft_store::{DbConfig, PgPool};

use crate::config::{ConfigArgs, DbArgs};
use crate::remote::RemoteArgs;

/// How long `validate` and `submit` wait for the database before leaving
/// the live-worker check out (it is advice; validation works offline).
const CHECK_WAIT: Duration = Duration::from_millis(1500);

/// How recently a worker must have been heard from to count as live.
#[derive(Debug, Clone, Args)]
pub(crate) struct GraceArgs {
    /// Seconds since its last heartbeat within which a worker is live: the
    /// executors' `--heartbeat-grace`, past which the reaper gives up on it.
    #[arg(
        long,
        default_value_t = 30.0,
        env = "WEFT_HEARTBEAT_GRACE",
        value_name = "SECONDS"
    )]
    pub(crate) heartbeat_grace: f64,
}

impl GraceArgs {
    pub(crate) fn grace(&self) -> anyhow::Result<Duration> {
        Duration::try_from_secs_f64(self.heartbeat_grace)
            .ok()
            .with_context(|| {
                format!(
                    "--heartbeat-grace must be a positive number of seconds, not {}",
                    self.heartbeat_grace
                )
            })
    }
}

/// Arguments of `weft workers`.
#[derive(Debug, Args)]
pub(crate) struct WorkersArgs {
    /// Also list workers lost (silent past the grace) within this many
    /// seconds.
    #[arg(long, default_value_t = 3600.0, value_name = "SECONDS")]
    pub(crate) lost_within: f64,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) grace: GraceArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Lists live and recently lost workers.
pub(crate) async fn run(args: &WorkersArgs) -> anyhow::Result<ExitCode> {
    let lost_within = Duration::try_from_secs_f64(args.lost_within)
        .ok()
        .with_context(|| {
            format!(
                "--lost-within must be 0 or more seconds, not {}",
                args.lost_within
            )
        })?;
    let grace = args.grace.grace()?;
    let rows: Vec<WorkerRow> = if let Some(client) = args.remote.client()? {
        let query = [
            ("heartbeat_grace", grace.as_secs_f64().to_string()),
            ("lost_within", lost_within.as_secs_f64().to_string()),
        ];
        client.get("/api/v1/workers", &query).await?
    } else {
        let pool = args.db.connect().await?;
        let mut conn = pool.acquire().await.context("connecting")?;
        workers::list(&mut conn, grace, lost_within).await?
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        outln!("no worker heard from (start one with `weft worker`)")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "worker",
        "state",
        "host",
        "pid",
        "pools",
        "actions",
        "running",
        "version",
        "last heartbeat",
    ]);
    for w in &rows {
        table.add_row([
            w.id.clone(),
            if w.live { "live" } else { "lost" }.to_owned(),
            w.hostname.clone(),
            if w.pid > 0 {
                w.pid.to_string()
            } else {
                "?".to_owned()
            },
            w.queues.join(", "),
            match (w.actions.is_empty(), w.refused.is_empty()) {
                (true, _) => "?".to_owned(),
                (false, true) => w.actions.join(", "),
                (false, false) => {
                    format!(
                        "{} (refuses {})",
                        w.actions.join(", "),
                        w.refused.join(", ")
                    )
                }
            },
            if w.concurrency > 0 {
                format!("{}/{}", w.running, w.concurrency)
            } else {
                w.running.to_string()
            },
            w.version.clone(),
            format!("{:.0}s ago", w.silent_for_s),
        ]);
    }
    outln!("{table}")?;
    outln!(
        "live: last heartbeat within {}s (--heartbeat-grace, as the reaper uses)",
        args.grace.heartbeat_grace
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Warnings about tasks whose action no live worker of their pool knows,
/// with a "did you mean" against the actions live workers advertise and
/// the built-ins. `None` when the database cannot be reached within a
/// moment (or is not migrated): the check is advice, never a failure.
pub(crate) async fn unknown_actions(
    db: &DbConfig,
    workflow: &Workflow,
    grace: Duration,
) -> Option<Vec<String>> {
    let db = DbConfig {
        max_connections: 1,
        acquire_timeout: CHECK_WAIT,
        ..db.clone()
    };
    let checked = tokio::time::timeout(CHECK_WAIT, async {
        let pool = weft_store::connect(&db).await.ok()?;
        unknown_actions_in(&pool, workflow, grace).await
    })
    .await;
    let checked = checked.ok().flatten();
    if checked.is_none() {
        tracing::debug!("no database within {CHECK_WAIT:?}: live workers not checked");
    }
    checked
}

/// [`unknown_actions`] through a `weft server` (`GET /api/v1/workers`);
/// `None` if it does not answer.
pub(crate) async fn unknown_actions_remote(
    client: &crate::remote::Client,
    workflow: &Workflow,
    grace: Duration,
) -> Option<Vec<String>> {
    let query = [
        ("heartbeat_grace", grace.as_secs_f64().to_string()),
        ("lost_within", "0".to_owned()),
    ];
    let rows: Vec<WorkerRow> = client.get("/api/v1/workers", &query).await.ok()?;
    let live: Vec<WorkerRow> = rows.into_iter().filter(|w| w.live).collect();
    Some(warnings(workflow, &live))
}

/// [`unknown_actions`] on an open pool (`submit` has one).
pub(crate) async fn unknown_actions_in(
    pool: &PgPool,
    workflow: &Workflow,
    grace: Duration,
) -> Option<Vec<String>> {
    let pools: Vec<String> = workflow
        .tasks()
        .filter(|t| t.call().is_none())
        .map(|t| t.queue().to_owned())
        .collect();
    let mut conn = pool.acquire().await.ok()?;
    let live = workers::live_in_pools(&mut conn, &pools, grace)
        .await
        .ok()?;
    Some(warnings(workflow, &live))
}

/// The warnings for `workflow`, given the live workers of its pools.
fn warnings(workflow: &Workflow, live: &[WorkerRow]) -> Vec<String> {
    let builtins = weft_worker::ActionRegistry::with_builtins();
    let mut known: Vec<&str> = builtins.names();
    known.extend(
        live.iter()
            .flat_map(|w| w.actions.iter().map(String::as_str)),
    );
    known.sort_unstable();
    known.dedup();
    let mut out = Vec::new();
    // A `workflow:` task runs no action: the executors start its child.
    for task in workflow.tasks().filter(|t| t.call().is_none()) {
        let pool = task.queue();
        let serving: Vec<&WorkerRow> = live
            .iter()
            .filter(|w| w.queues.iter().any(|q| q == pool))
            .collect();
        let action = task.action();
        // Workers older than the advertisement say nothing: not a warning.
        if serving
            .iter()
            .any(|w| w.actions.is_empty() || w.actions.iter().any(|a| a == action))
        {
            continue;
        }
        if serving
            .iter()
            .any(|w| w.refused.iter().any(|a| a == action))
        {
            let mut accepted: Vec<String> = serving
                .iter()
                .flat_map(|w| w.actions.iter().cloned())
                .collect();
            accepted.sort();
            accepted.dedup();
            out.push(format!(
                "task `{}`: {}",
                task.name(),
                weft_common::policy::refused_by_policy(pool, action, &accepted)
            ));
            continue;
        }
        let hint = did_you_mean(action, &known)
            .map(|m| format!(" — did you mean `{m}`?"))
            .unwrap_or_default();
        out.push(if serving.is_empty() {
            format!(
                "task `{}`: no live worker consumes pool `{pool}` (start `weft worker --queue {pool}`){hint}",
                task.name()
            )
        } else {
            format!(
                "task `{}`: no live worker of pool `{pool}` knows action `{action}`{hint}",
                task.name()
            )
        });
    }
    out
}

/// The closest known action to `action`, if close enough and not itself.
fn did_you_mean<'a>(action: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .filter(|k| **k != action)
        .map(|k| (strsim::jaro_winkler(action, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(pools: &[&str], actions: &[&str]) -> WorkerRow {
        WorkerRow {
            id: "w1".into(),
            hostname: "h".into(),
            pid: 1,
            queues: pools.iter().map(|p| (*p).to_owned()).collect(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            refused: Vec::new(),
            concurrency: 8,
            running: 0,
            version: "0".into(),
            first_seen: chrono::Utc::now(),
            last_heartbeat: chrono::Utc::now(),
            silent_for_s: 0.0,
            live: true,
        }
    }

    fn workflow(action: &str, queue: &str) -> Workflow {
        let yaml = format!("name: w\ntasks:\n  a:\n    action: {action}\n    queue: {queue}\n");
        Workflow::parse(&yaml, "w.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_misspelt_action_gets_a_did_you_mean() {
        let w = warnings(
            &workflow("shel", "default"),
            &[worker(&["default"], &["echo", "shell"])],
        );
        assert_eq!(
            w,
            [
                "task `a`: no live worker of pool `default` knows action `shel` — did you mean `shell`?"
            ]
        );
    }

    #[test]
    fn a_pool_without_workers_says_how_to_start_one_and_a_known_action_is_quiet() {
        let w = warnings(&workflow("echo", "gpu"), &[worker(&["default"], &["echo"])]);
        assert_eq!(
            w,
            ["task `a`: no live worker consumes pool `gpu` (start `weft worker --queue gpu`)"]
        );
        assert!(
            warnings(
                &workflow("echo", "default"),
                &[worker(&["default"], &["echo"])]
            )
            .is_empty()
        );
        // A worker that advertises nothing (older build) is given the benefit of the doubt.
        assert!(warnings(&workflow("resize", "default"), &[worker(&["default"], &[])]).is_empty());
    }

    #[test]
    fn an_action_refused_by_policy_is_named_so_with_the_flag() {
        let mut stock = worker(&["default"], &["echo", "noop"]);
        stock.refused = vec!["shell".into()];
        assert_eq!(
            warnings(&workflow("shell", "default"), &[stock]),
            [format!(
                "task `a`: {}",
                weft_common::policy::refused_by_policy(
                    "default",
                    "shell",
                    &["echo".into(), "noop".into()]
                )
            )]
        );
    }
}
