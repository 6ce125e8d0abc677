//! The command line, as clap types. Each command flattens the flag groups
//! it needs (`config::DbArgs`, `config::AmqpArgs`, `weft_worker::LogArgs`,
//! …) and nothing else, so its `--help` lists only flags it uses.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use weft_worker::LogFormat;

use crate::config::ConfigArgs;

/// Weft — workflow DAGs, dispatched exactly once.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
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
    /// Say why a run and each of its tasks are where they are.
    Explain(crate::commands::explain::ExplainArgs),
    /// List live and recently lost workers: pools, actions, load.
    Workers(crate::commands::workers::WorkersArgs),
    /// Show what each attempt printed (stdout, stderr), failed ones included.
    Logs(crate::commands::logs::LogsArgs),
    /// Check the exactly-once invariants on the live database.
    Audit(crate::commands::audit::AuditArgs),
    /// Run again what did not succeed (or `--task NAME`) and everything downstream of it, keeping the rest.
    Retry(crate::commands::retry::RetryArgs),
    /// Cancel a run: no new dispatches, running actions are killed.
    Cancel(crate::commands::cancel::CancelArgs),
    /// Deliver a signal (and its payload) to a task that waits for it.
    Signal(crate::commands::signal::SignalArgs),
    /// Approve a task that waits for an approval.
    Approve(crate::commands::signal::ApprovalArgs),
    /// Reject a task that waits for an approval: it fails.
    Reject(crate::commands::signal::ApprovalArgs),
    /// Delete finished runs older than a duration, with their tasks and executions.
    Prune(crate::commands::prune::PruneArgs),
    /// Create the database if needed and apply the schema.
    Migrate(crate::commands::migrate::MigrateArgs),
    /// Run an executor: advance runs, relay the outbox.
    Executor(crate::commands::daemons::ExecutorArgs),
    /// Run a worker: execute actions from worker pool queues.
    Worker(crate::commands::daemons::WorkerDaemonArgs),
    /// Migrate, then run an executor, a worker and the web UI/API (no tokens, loopback) in one process.
    Dev(crate::commands::daemons::DevArgs),
    /// Serve the HTTP API and the web UI.
    Server(crate::commands::server::ServerArgs),
    /// Create, list and revoke the server's API tokens.
    Token(crate::commands::token::TokenArgs),
    /// Register workflows by name and version: apply, list, show, rm.
    Workflow(crate::commands::workflow::WorkflowArgs),
    /// Run registered workflows on cron schedules: create, list, show, pause, resume, delete.
    Schedule(crate::commands::schedule::ScheduleArgs),
}

impl Command {
    /// How a daemon logs; `None` for one-shot commands (warnings only, so
    /// their output stays clean for scripts).
    pub(crate) fn log_format(&self) -> Option<LogFormat> {
        match self {
            Self::Executor(a) => Some(a.log.log_format),
            Self::Worker(a) => Some(a.log.log_format),
            Self::Dev(a) => Some(a.log.log_format),
            Self::Server(a) => Some(a.log.log_format),
            _ => None,
        }
    }

    /// The `--config` flag, on the commands that have settings.
    pub(crate) fn config_args(&self) -> Option<&ConfigArgs> {
        match self {
            Self::Graph(_) => None,
            Self::Validate(a) => Some(&a.config),
            Self::Submit(a) => Some(&a.config),
            Self::Explain(a) => Some(&a.config),
            Self::Workers(a) => Some(&a.config),
            Self::Logs(a) => Some(&a.config),
            Self::Status(a) => Some(&a.config),
            Self::Watch(a) => Some(&a.config),
            Self::List(a) => Some(&a.config),
            Self::Audit(a) => Some(&a.config),
            Self::Retry(a) => Some(&a.config),
            Self::Cancel(a) => Some(&a.config),
            Self::Signal(a) => Some(&a.config),
            Self::Approve(a) | Self::Reject(a) => Some(&a.config),
            Self::Prune(a) => Some(&a.config),
            Self::Migrate(a) => Some(&a.config),
            Self::Executor(a) => Some(&a.config),
            Self::Worker(a) => Some(&a.config),
            Self::Dev(a) => Some(&a.config),
            Self::Server(a) => Some(&a.config),
            Self::Token(a) => Some(a.config()),
            Self::Workflow(a) => Some(a.config()),
            Self::Schedule(a) => Some(a.config()),
        }
    }
}

/// A path given on the command line.
pub(crate) type FilePath = PathBuf;

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Each command shows only the flags it uses.
    #[test]
    fn commands_show_only_the_flags_they_use() {
        let cli = Cli::command();
        let flags = |name: &str| -> Vec<String> {
            cli.find_subcommand(name)
                .unwrap_or_else(|| panic!("no command {name}"))
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned))
                .collect()
        };
        for read_only in [
            "status", "watch", "list", "cancel", "retry", "audit", "prune", "submit", "logs",
            "workers", "validate",
        ] {
            let flags = flags(read_only);
            assert!(flags.iter().any(|f| f == "database-url"), "{read_only}");
            for absent in ["amqp-url", "log-format", "metrics-addr"] {
                assert!(
                    !flags.iter().any(|f| f == absent),
                    "{read_only} has --{absent}"
                );
            }
        }
        let worker = flags("worker");
        assert!(worker.iter().any(|f| f == "amqp-url") && worker.iter().any(|f| f == "log-format"));
        assert!(!worker.iter().any(|f| f == "database-url"), "{worker:?}");
        assert!(!flags("submit").iter().any(|f| f == "log-format"));
        for daemon in ["executor", "dev"] {
            let flags = flags(daemon);
            for present in ["database-url", "amqp-url", "log-format", "config"] {
                assert!(
                    flags.iter().any(|f| f == present),
                    "{daemon} lacks --{present}"
                );
            }
        }
        // The commands that can talk to a server, and those that never do
        // (they ignore WEFT_SERVER_URL: see remote.rs).
        for remote in [
            "submit", "status", "list", "watch", "logs", "explain", "cancel", "retry", "validate",
            "workers", "signal", "approve", "reject",
        ] {
            let flags = flags(remote);
            assert!(
                flags.iter().any(|f| f == "server") && flags.iter().any(|f| f == "token"),
                "{remote} lacks --server/--token"
            );
        }
        for direct in [
            "migrate", "audit", "prune", "executor", "worker", "dev", "server", "graph",
        ] {
            assert!(
                !flags(direct).iter().any(|f| f == "server" || f == "token"),
                "{direct} has --server"
            );
        }
        // `validate` reads the live workers (a warning, skipped offline);
        // `graph` needs nothing; `explain` also asks RabbitMQ for queue depths.
        assert!(!flags("graph").iter().any(|f| f == "database-url"));
        assert!(flags("explain").iter().any(|f| f == "amqp-url"));
    }
}
