//! The command line, as clap types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Weft — workflow DAGs, dispatched exactly once.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Log format for daemons (`text` or `json`); `RUST_LOG` sets the level.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "WEFT_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check workflow files and report every problem with its location.
    Validate(crate::commands::validate::ValidateArgs),
    /// Draw a workflow's DAG (text, Graphviz dot, or Mermaid).
    Graph(crate::commands::graph::GraphArgs),
    /// Validate a workflow, store a run durably and start it.
    Submit(crate::commands::submit::SubmitArgs),
    /// Show one run and its tasks.
    Status(crate::commands::status::StatusArgs),
    /// Follow one run to its end.
    Watch(crate::commands::status::WatchArgs),
    /// List runs, newest first.
    List(crate::commands::status::ListArgs),
    /// Show what each attempt printed (stdout, stderr), failed ones included.
    Logs(crate::commands::logs::LogsArgs),
    /// Check the exactly-once invariants on the live database.
    Audit(crate::commands::audit::AuditArgs),
    /// Run again what did not succeed (or `--task NAME`) and everything downstream of it, keeping the rest.
    Retry(crate::commands::retry::RetryArgs),
    /// Cancel a run: no new dispatches, running actions are killed.
    Cancel(crate::commands::cancel::CancelArgs),
    /// Delete finished runs older than a duration, with their tasks and executions.
    Prune(crate::commands::prune::PruneArgs),
    /// Create the database if needed and apply the schema.
    Migrate(crate::commands::migrate::MigrateArgs),
    /// Run an executor: advance runs, relay the outbox.
    Executor(crate::commands::daemons::ExecutorArgs),
    /// Run a worker: execute actions from worker pool queues.
    Worker(crate::commands::daemons::WorkerArgs),
    /// Migrate, then run an executor and a worker in one process.
    Dev(crate::commands::daemons::DevArgs),
}

impl Command {
    /// Whether this command is a long-running daemon (logs on by default).
    pub(crate) fn is_daemon(&self) -> bool {
        matches!(self, Self::Executor(_) | Self::Worker(_) | Self::Dev(_))
    }
}

/// A path given on the command line.
pub(crate) type FilePath = PathBuf;
