//! `weft cancel ID`: stop a run.

use std::process::ExitCode;

use clap::Args;
use weft_common::RunRef;
use weft_store::cancel;

use crate::config::{ConfigArgs, DbArgs};
use crate::remote::{RemoteArgs, run_path};

/// Arguments of `weft cancel`.
#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// The run: its id, a unique prefix of it (8+ hex digits), or `last`.
    pub(crate) id: RunRef,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Requests cancellation: no new dispatches, running actions are killed,
/// the run ends `canceled` once nothing of it runs.
pub(crate) async fn run(args: &CancelArgs) -> anyhow::Result<ExitCode> {
    if let Some(client) = args.remote.client()? {
        let path = format!("{}/cancel", run_path(&args.id));
        let (_, outcome): (_, cancel::Canceled) =
            client.post(&path, &serde_json::json!({})).await?;
        outln!("{}", outcome.message)?;
        return Ok(ExitCode::SUCCESS);
    }
    let pool = args.db.connect().await?;
    let id = crate::run_ref::resolve(&pool, &args.id).await?;
    let requested =
        weft_store::transact::in_transaction(&pool, async |tx| cancel::request(tx, id).await)
            .await?;
    let Some(outcome) = requested.outcome(id) else {
        eprintln!("error: no run with id {id}");
        return Ok(ExitCode::FAILURE);
    };
    outln!("{}", outcome.message)?;
    Ok(ExitCode::SUCCESS)
}
