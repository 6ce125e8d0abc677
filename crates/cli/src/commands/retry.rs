//! `weft retry ID`: run the failed part of a failed run again.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use weft_common::WorkflowExecutionId;
use weft_store::retry::{self, Reopened};

use super::status::{self, WaitArgs};
use crate::config::ConnArgs;

/// Arguments of `weft retry`.
#[derive(Debug, Args)]
pub(crate) struct RetryArgs {
    /// The failed run's id.
    pub(crate) id: WorkflowExecutionId,
    /// Follow the run to the end; exit 0 if it succeeded, 1 otherwise.
    #[arg(long)]
    pub(crate) wait: bool,
    /// With --wait, print the final status as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) wait_args: WaitArgs,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
}

/// Re-opens the run: failed, skipped and canceled tasks run again; succeeded
/// tasks keep their results.
pub(crate) async fn run(args: &RetryArgs) -> anyhow::Result<ExitCode> {
    let pool = weft_store::connect(&args.conn.resolve("weft-retry")?.db).await?;
    let mut tx = pool
        .begin()
        .await
        .context("beginning the retry transaction")?;
    let reopened = retry::reopen(&mut tx, args.id).await?;
    tx.commit().await.context("committing the retry")?;
    let id = args.id;
    match reopened {
        Reopened::Reopened { tasks, round } => {
            eprintln!(
                "{id} re-opened as round {round}; running again: {}",
                tasks.join(", ")
            );
        }
        Reopened::NotFailed(status) => {
            eprintln!("error: {id} is {status}; only a failed run can be retried");
            return Ok(ExitCode::FAILURE);
        }
        Reopened::NotFound => {
            eprintln!("error: no run with id {id}");
            return Ok(ExitCode::FAILURE);
        }
    }
    if args.wait {
        return status::follow(&pool, id, args.json, &args.wait_args).await;
    }
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}
