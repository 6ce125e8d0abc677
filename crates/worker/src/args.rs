//! The worker's command line: the flags and environment variables of
//! `weft worker`, for a worker binary of your own.
//!
//! `weft worker` flattens [`WorkerArgs`] into its own command, so a custom
//! worker built on [`run_from_env`] takes exactly the same flags and
//! environment (`--queue`/`WEFT_WORKER_QUEUES`, `--concurrency`,
//! `--amqp-url`/`WEFT_AMQP_URL`, …) and logs by the same `RUST_LOG`.

use std::collections::BTreeSet;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};
use tokio_util::sync::CancellationToken;
use weft_bus::{BusConfig, QueueType};
use weft_common::ResultLimit;

use crate::action::ActionRegistry;
use crate::daemon::{WorkerConfig, WorkerError, run};
use crate::policy::{ShellPolicy, WorkerPolicy};

/// RabbitMQ on this machine, as RabbitMQ installs itself (`guest` works
/// only over loopback).
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// What a worker is told on its command line (or in its environment).
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// RabbitMQ URL; its password is never printed.
    #[arg(
        long,
        env = "WEFT_AMQP_URL",
        hide_env_values = true,
        default_value = DEFAULT_AMQP_URL,
        value_name = "URL"
    )]
    pub amqp_url: String,
    /// The type of the durable queues: `quorum` (replicated over a
    /// cluster's nodes) or `classic`; every executor and worker of one
    /// installation must agree.
    #[arg(
        long,
        env = "WEFT_QUEUE_TYPE",
        default_value = "quorum",
        value_name = "TYPE"
    )]
    pub queue_type: QueueType,
    /// A PEM file of CA certificates trusted for `amqps://` besides the
    /// system's (a private CA).
    #[arg(long, env = "WEFT_AMQP_CA_FILE", value_name = "FILE")]
    pub amqp_ca_file: Option<std::path::PathBuf>,
    /// Worker pools to consume (repeatable, or comma-separated).
    #[arg(
        long = "queue",
        short = 'q',
        default_value = "default",
        env = "WEFT_WORKER_QUEUES",
        value_delimiter = ',',
        value_name = "POOL"
    )]
    pub queues: Vec<String>,
    /// Actions run at once (also the prefetch of each pool's queue).
    #[arg(long, default_value_t = 8, env = "WEFT_WORKER_CONCURRENCY")]
    pub concurrency: usize,
    /// Seconds between heartbeats.
    #[arg(
        long,
        default_value_t = 5.0,
        env = "WEFT_HEARTBEAT_INTERVAL",
        value_name = "SECONDS"
    )]
    pub heartbeat_interval: f64,
    /// Seconds an action may run before its start is reported; a shorter
    /// action reports only its completion. 0 reports every start.
    #[arg(
        long,
        default_value_t = 0.05,
        env = "WEFT_START_REPORT_DELAY",
        value_name = "SECONDS"
    )]
    pub start_report_delay: f64,
    /// The largest action result, and the largest rendered task input, in
    /// bytes of JSON: over it the attempt (or, for an input, the task)
    /// fails at once, naming the size and the limit.
    #[arg(
        long,
        default_value = "4194304",
        env = "WEFT_MAX_RESULT_BYTES",
        value_name = "BYTES"
    )]
    pub max_result_bytes: ResultLimit,
    /// The actions this worker accepts (comma-separated or repeated):
    /// built-in and custom. Without it, every action it has but `shell`,
    /// which runs programs and so runs only where listed.
    #[arg(
        long = "actions",
        env = "WEFT_WORKER_ACTIONS",
        value_delimiter = ',',
        value_name = "ACTION"
    )]
    pub actions: Option<Vec<String>>,
    /// Environment variables of the worker that `shell` commands also get
    /// (comma-separated or repeated), beside PATH, HOME, LANG and the
    /// task's `env`; nothing else of the worker's environment reaches them.
    #[arg(
        long = "pass-env",
        env = "WEFT_SHELL_PASS_ENV",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub pass_env: Vec<String>,
    /// A directory under which a `shell` task's `cwd` may point. Without
    /// it `cwd` is refused, and every command runs in a fresh directory of
    /// its own, removed when it ends.
    #[arg(long, env = "WEFT_SHELL_CWD_ROOT", value_name = "DIR")]
    pub shell_cwd_root: Option<PathBuf>,
}

/// A flag whose value cannot be used, named with why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} must be {expected}, not {value}")]
pub struct BadFlag {
    /// The flag, e.g. `--heartbeat-interval`.
    pub flag: &'static str,
    /// What it must be.
    pub expected: &'static str,
    /// What it was.
    pub value: String,
}

impl WorkerArgs {
    /// The worker's settings, with `connection_name` shown for it in
    /// RabbitMQ's management UI.
    ///
    /// # Errors
    /// A duration flag that is negative, not finite, or (for the heartbeat
    /// interval) zero.
    pub fn config(&self, connection_name: &str) -> Result<WorkerConfig, BadFlag> {
        Ok(WorkerConfig {
            bus: BusConfig {
                url: self.amqp_url.clone(),
                connection_name: connection_name.to_owned(),
                queue_type: self.queue_type,
                ca_file: self.amqp_ca_file.clone(),
                ..BusConfig::default()
            },
            queues: self.queues.clone(),
            concurrency: self.concurrency.max(1),
            heartbeat_interval: seconds(
                "--heartbeat-interval",
                self.heartbeat_interval,
                Positive::Required,
            )?,
            start_report_delay: seconds(
                "--start-report-delay",
                self.start_report_delay,
                Positive::OrZero,
            )?,
            max_result_bytes: self.max_result_bytes,
            policy: WorkerPolicy {
                actions: self.actions.as_deref().map(action_list).transpose()?,
                shell: ShellPolicy {
                    pass_env: self.pass_env.iter().map(|n| n.trim().to_owned()).collect(),
                    cwd_root: self.shell_cwd_root.clone(),
                },
            },
            ..WorkerConfig::default()
        })
    }
}

/// `--actions`' names, trimmed; an empty list would make a worker that
/// takes every dispatch only to hand it back.
fn action_list(names: &[String]) -> Result<BTreeSet<String>, BadFlag> {
    let names: BTreeSet<String> = names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Err(BadFlag {
            flag: "--actions",
            expected: "one action name or more",
            value: "an empty list".to_owned(),
        });
    }
    Ok(names)
}

/// Whether a duration flag may be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Positive {
    Required,
    OrZero,
}

/// `value` seconds as a duration, or an error naming the flag.
fn seconds(flag: &'static str, value: f64, positive: Positive) -> Result<Duration, BadFlag> {
    let expected = match positive {
        Positive::Required => "a positive number of seconds",
        Positive::OrZero => "0 or a positive number of seconds",
    };
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| positive == Positive::OrZero || !d.is_zero())
        .ok_or_else(|| BadFlag {
            flag,
            expected,
            value: value.to_string(),
        })
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured only on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// The log filter of a daemon when `RUST_LOG` is unset. lapin is off: it
/// logs every connection failure again at `error` (and "backoff attempts
/// exhausted" after any failed first connection, which is no such thing);
/// the bus reports each failure it sees once, with its cause.
pub const DAEMON_LOG_FILTER: &str = "info,sqlx=warn,lapin=off";

/// Installs a global tracing subscriber writing to stderr: the filter from
/// `RUST_LOG` (else `default_filter`), ANSI colours only when stderr is a
/// terminal (so a log file or a pipe gets plain text).
///
/// # Errors
/// If a global subscriber is already installed.
pub fn init_tracing(
    format: LogFormat,
    default_filter: &str,
) -> Result<(), tracing_subscriber::util::TryInitError> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, fmt};

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    }
}

/// How a daemon logs (the daemons of `weft`, and custom workers).
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format (`text` or `json`); `RUST_LOG` sets the level.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "WEFT_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// The command line of a custom worker binary: `weft worker`'s flags.
#[derive(Debug, Parser)]
#[command(version, about = "A Weft worker with custom actions", long_about = None)]
struct CustomWorker {
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    log: LogArgs,
}

/// Runs a worker with `actions` as `weft worker` would: reads the same
/// flags and environment (see [`WorkerArgs`]), logs to stderr by
/// `RUST_LOG`, and stops on SIGINT or SIGTERM (finishing running actions
/// within the shutdown grace, handing the rest back to their queue).
///
/// Exits the process with a usage message when the flags are wrong (or
/// asked for `--help`), as any command-line program does.
///
/// # Errors
/// A flag whose value cannot be used, or a condition retrying cannot fix
/// (see [`run`]).
pub async fn run_from_env(actions: ActionRegistry) -> Result<(), WorkerError> {
    let cli = CustomWorker::parse();
    // Ignored when the program installed its own subscriber first.
    let _ = init_tracing(cli.log.log_format, DAEMON_LOG_FILTER);
    let name = std::env::args()
        .next()
        .and_then(|path| {
            std::path::Path::new(&path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "weft-worker".to_owned());
    let config = cli.worker.config(&name)?;
    run(config, actions, shutdown_on_signal()).await
}

/// A token cancelled on the first SIGINT or SIGTERM.
#[must_use]
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; finishing in-flight work");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser as _;

    use super::CustomWorker;

    fn parse(args: &[&str]) -> Result<CustomWorker, String> {
        CustomWorker::try_parse_from(args).map_err(|e| e.to_string())
    }

    #[test]
    fn pools_repeat_or_split_on_commas_and_reach_the_config() {
        let cli = parse(&["w", "-q", "gpu", "--queue", "a,b", "--concurrency", "3"]).unwrap();
        let config = cli.worker.config("w").unwrap();
        assert_eq!(config.queues, ["gpu", "a", "b"]);
        assert_eq!(config.concurrency, 3);
        assert_eq!(config.bus.connection_name, "w");
        assert_eq!(config.policy, crate::WorkerPolicy::default());
    }

    #[test]
    fn the_policy_flags_reach_the_config() {
        let cli = parse(&[
            "w",
            "--actions",
            "echo, shell",
            "--actions=noop",
            "--pass-env",
            "AWS_PROFILE,KUBECONFIG",
            "--shell-cwd-root",
            "/srv/jobs",
        ])
        .unwrap();
        let policy = cli.worker.config("w").unwrap().policy;
        assert_eq!(
            policy.actions.unwrap().into_iter().collect::<Vec<_>>(),
            ["echo", "noop", "shell"]
        );
        assert_eq!(policy.shell.pass_env, ["AWS_PROFILE", "KUBECONFIG"]);
        assert_eq!(policy.shell.cwd_root.unwrap(), PathBuf::from("/srv/jobs"));
        let cli = parse(&["w", "--actions", " , "]).unwrap();
        assert_eq!(
            cli.worker.config("w").unwrap_err().to_string(),
            "--actions must be one action name or more, not an empty list"
        );
    }

    #[test]
    fn bad_durations_and_limits_are_refused_naming_the_flag() {
        let cli = parse(&["w", "--heartbeat-interval", "0"]).unwrap();
        let err = cli.worker.config("w").unwrap_err().to_string();
        assert_eq!(
            err,
            "--heartbeat-interval must be a positive number of seconds, not 0"
        );
        let cli = parse(&["w", "--start-report-delay=-1"]).unwrap();
        assert!(cli.worker.config("w").is_err());
        let err = parse(&["w", "--max-result-bytes", "4MB"]).unwrap_err();
        assert!(
            err.contains("--max-result-bytes") && err.contains("`4MB`"),
            "{err}"
        );
    }
}
