//! `weft retry ID [--task NAME]...`: run part of a finished run again.

use std::process::ExitCode;

use clap::Args;
use weft_common::RunRef;
use weft_store::retry::{self, Scope};

use super::status::{self, WaitArgs};
use crate::config::{ConfigArgs, DbArgs};
use crate::remote::{RemoteArgs, run_path};

/// Arguments of `weft retry`.
#[derive(Debug, Args)]
pub(crate) struct RetryArgs {
    /// The run: its id, a unique prefix of it (8+ hex digits), or `last`.
    pub(crate) id: RunRef,
    /// Re-run this task and everything downstream of it, on any finished
    /// run (repeatable). Without it: the tasks that did not succeed, of a
    /// failed or canceled run.
    #[arg(long = "task", value_name = "NAME")]
    pub(crate) tasks: Vec<String>,
    /// Follow the run to the end; exit 0 if it succeeded, 1 otherwise.
    #[arg(long)]
    pub(crate) wait: bool,
    /// With --wait, print the final status as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) wait_args: WaitArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Re-opens the run as a new round: the tasks that did not succeed (or
/// the named ones) and everything downstream of them run again; the rest
/// keep their outcomes, and a failed fan-out keeps its succeeded items.
pub(crate) async fn run(args: &RetryArgs) -> anyhow::Result<ExitCode> {
    if let Some(client) = args.remote.client()? {
        let path = format!("{}/retry", run_path(&args.id));
        let body = serde_json::json!({ "tasks": args.tasks });
        let (_, retried): (_, retry::Retried) = client.post(&path, &body).await?;
        eprintln!("{}", retried.message);
        let id = retried.id;
        if args.wait {
            return status::follow(
                status::Source::Remote(&client),
                id,
                args.json,
                &args.wait_args,
            )
            .await;
        }
        outln!("{id}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let pool = args.db.connect().await?;
    let id = crate::run_ref::resolve(&pool, &args.id).await?;
    let scope = if args.tasks.is_empty() {
        Scope::Unfinished
    } else {
        Scope::Tasks(&args.tasks)
    };
    let reopened =
        weft_store::transact::in_transaction(&pool, async |tx| retry::reopen(tx, id, scope).await)
            .await?;
    match reopened.outcome(id) {
        Ok(retried) => eprintln!("{}", retried.message),
        Err(why) => {
            let why = why.unwrap_or_else(|| format!("no run with id {id}"));
            eprintln!("error: {why}");
            return Ok(ExitCode::FAILURE);
        }
    }
    if args.wait {
        return status::follow(status::Source::Db(&pool), id, args.json, &args.wait_args).await;
    }
    outln!("{id}")?;
    Ok(ExitCode::SUCCESS)
}
