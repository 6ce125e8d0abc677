//! One module per subcommand; [`run`] dispatches to them.

pub(crate) mod attempts;
pub(crate) mod audit;
pub(crate) mod cancel;
pub(crate) mod daemons;
pub(crate) mod explain;
pub(crate) mod graph;
pub(crate) mod logs;
pub(crate) mod migrate;
pub(crate) mod prune;
pub(crate) mod retry;
pub(crate) mod schedule;
pub(crate) mod server;
pub(crate) mod signal;
pub(crate) mod status;
pub(crate) mod submit;
pub(crate) mod token;
pub(crate) mod validate;
pub(crate) mod workers;
pub(crate) mod workflow;

use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::{Cli, Command};

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Graph(args) => graph::run(&args),
        command => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(run_async(command))
        }
    }
}

async fn run_async(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Migrate(args) => migrate::run(&args).await,
        Command::Submit(args) => submit::run(&args).await,
        Command::Status(args) => status::status(&args).await,
        Command::Watch(args) => status::watch(&args).await,
        Command::List(args) => status::list(&args).await,
        Command::Explain(args) => explain::run(&args).await,
        Command::Workers(args) => workers::run(&args).await,
        Command::Logs(args) => logs::run(&args).await,
        Command::Audit(args) => audit::run(&args).await,
        Command::Retry(args) => retry::run(&args).await,
        Command::Cancel(args) => cancel::run(&args).await,
        Command::Signal(args) => signal::signal(&args).await,
        Command::Approve(args) => signal::approval(&args, true).await,
        Command::Reject(args) => signal::approval(&args, false).await,
        Command::Prune(args) => prune::run(&args).await,
        Command::Executor(args) => daemons::executor(&args).await,
        Command::Worker(args) => daemons::worker(&args).await,
        Command::Dev(args) => daemons::dev(&args).await,
        Command::Server(args) => server::run(&args).await,
        Command::Token(args) => token::run(&args).await,
        Command::Workflow(args) => workflow::run(&args).await,
        Command::Schedule(args) => schedule::run(&args).await,
        Command::Validate(_) | Command::Graph(_) => unreachable!("handled without a runtime"),
    }
}
