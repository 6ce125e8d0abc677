//! `weft executor`, `weft worker` and `weft dev`: the long-running daemons.

use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio_util::sync::CancellationToken;
use weft_common::ResultLimit;
use weft_executor::{EngineConfig, ExecutorConfig, ReaperConfig, RetentionConfig};
use weft_worker::{ActionRegistry, LogArgs, WorkerConfig, WorkerPolicy, shutdown_on_signal};

use crate::config::{AmqpArgs, ConfigArgs, DbArgs};

/// Operator endpoints.
#[derive(Debug, Clone, Args)]
pub(crate) struct OpsArgs {
    /// Serve `/metrics` (Prometheus) and `/healthz` on this address, e.g.
    /// `127.0.0.1:9464`.
    #[arg(long, env = "WEFT_METRICS_ADDR", value_name = "ADDR")]
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
}

impl OpsArgs {
    async fn start(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        match self.metrics_addr {
            Some(addr) => crate::ops::serve(addr, shutdown.clone()).await,
            None => Ok(()),
        }
    }
}

/// How big data may be, for the executor (a worker's own flag is in
/// [`weft_worker::WorkerArgs`]; `weft dev` uses that one for both).
#[derive(Debug, Clone, Args)]
pub(crate) struct LimitArgs {
    /// The largest action result, and the largest rendered task input, in
    /// bytes of JSON: over it the attempt (or, for an input, the task)
    /// fails at once, naming the size and the limit.
    #[arg(
        long,
        default_value = "4194304",
        env = "WEFT_MAX_RESULT_BYTES",
        value_name = "BYTES"
    )]
    pub(crate) max_result_bytes: ResultLimit,
}

/// Arguments of `weft executor`.
#[derive(Debug, Args)]
pub(crate) struct ExecutorArgs {
    #[command(flatten)]
    pub(crate) tuning: ExecutorTuning,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
    #[command(flatten)]
    pub(crate) ops: OpsArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) amqp: AmqpArgs,
    /// The type of the durable queues: `quorum` (replicated over a
    /// cluster's nodes) or `classic`; every executor and worker of one
    /// installation must agree.
    #[arg(
        long,
        env = "WEFT_QUEUE_TYPE",
        default_value = "quorum",
        value_name = "TYPE"
    )]
    pub(crate) queue_type: weft_bus::QueueType,
    #[command(flatten)]
    pub(crate) log: LogArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Executor settings.
#[derive(Debug, Clone, Args)]
pub(crate) struct ExecutorTuning {
    /// Messages applied concurrently.
    #[arg(long, default_value_t = 512, env = "WEFT_EXECUTOR_CONCURRENCY")]
    pub(crate) executor_concurrency: usize,
    /// Deliveries in flight from the broker.
    #[arg(long, default_value_t = 512, env = "WEFT_EXECUTOR_PREFETCH")]
    pub(crate) executor_prefetch: u16,
    /// Batches of completions (and of run starts) applied at once; while
    /// they are busy the next batch grows.
    #[arg(long, default_value_t = 2, env = "WEFT_EXECUTOR_BATCHES")]
    pub(crate) executor_batches: usize,
    /// Committed transactions whose messages may wait to be published at
    /// most; past it, the executor waits for the broker's confirms before
    /// going on (back-pressure, instead of messages piling up in memory).
    #[arg(
        long,
        default_value_t = EngineConfig::default().flush_queue,
        env = "WEFT_EXECUTOR_FLUSH_QUEUE",
        value_name = "TRANSACTIONS"
    )]
    pub(crate) executor_flush_queue: NonZeroUsize,
    /// Seconds between the reaper's looks for lost or overdue executions.
    #[arg(
        long,
        default_value_t = 5.0,
        env = "WEFT_REAPER_INTERVAL",
        value_name = "SECONDS"
    )]
    pub(crate) reaper_interval: f64,
    /// Seconds a worker may go without a heartbeat before its executions
    /// are reaped (and retried per their task's policy).
    #[arg(
        long,
        default_value_t = 30.0,
        env = "WEFT_HEARTBEAT_GRACE",
        value_name = "SECONDS"
    )]
    pub(crate) heartbeat_grace: f64,
    /// Seconds past an execution's timeout before the reaper ends it.
    #[arg(
        long,
        default_value_t = 30.0,
        env = "WEFT_DEADLINE_GRACE",
        value_name = "SECONDS"
    )]
    pub(crate) deadline_grace: f64,
    #[command(flatten)]
    pub(crate) redispatch: RedispatchArgs,
    /// Seconds a schedule's tick may start late before, under
    /// `--catch-up none`, it counts as missed (no run).
    #[arg(
        long,
        default_value_t = 1.0,
        env = "WEFT_SCHEDULE_GRACE",
        value_name = "SECONDS"
    )]
    pub(crate) schedule_grace: f64,
    /// Delete runs finished longer ago than this (e.g. `30d`), with their
    /// tasks and executions, in the background; off unless given. Same as
    /// `weft prune --older-than`, in small batches with pauses between.
    #[arg(long, env = "WEFT_RETENTION", value_name = "DURATION", value_parser = super::prune::positive_duration, allow_hyphen_values = true)]
    pub(crate) retention: Option<Duration>,
}

/// How long a queued execution may wait to be taken: the executors'
/// redispatch delay and `weft audit`'s threshold, one flag for both.
#[derive(Debug, Clone, Args)]
pub(crate) struct RedispatchArgs {
    /// Seconds a queued execution may wait for a worker to take it before
    /// its dispatch is presumed lost and sent again (same execution id and
    /// attempt), if its pool's queue is empty.
    #[arg(
        long = "redispatch-after",
        default_value_t = weft_store::overdue::DEFAULT_REDISPATCH_AFTER.as_secs_f64(),
        env = "WEFT_REDISPATCH_AFTER",
        value_name = "SECONDS"
    )]
    pub(crate) redispatch_after: f64,
}

impl RedispatchArgs {
    /// The delay, refused unless a positive number of seconds.
    pub(crate) fn after(&self) -> anyhow::Result<Duration> {
        seconds("--redispatch-after", self.redispatch_after)
    }
}

/// Arguments of `weft worker`: [`weft_worker::WorkerArgs`], which a
/// custom worker binary takes as well (`weft_worker::run_from_env`).
#[derive(Debug, Args)]
pub(crate) struct WorkerDaemonArgs {
    #[command(flatten)]
    pub(crate) worker: weft_worker::WorkerArgs,
    #[command(flatten)]
    pub(crate) ops: OpsArgs,
    #[command(flatten)]
    pub(crate) log: LogArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Arguments of `weft dev`: the executor's and the worker's, with one
/// RabbitMQ URL and one result limit for both (the worker's flags).
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    #[command(flatten)]
    pub(crate) executor: ExecutorTuning,
    #[command(flatten)]
    pub(crate) worker: weft_worker::WorkerArgs,
    /// Where the web UI and the API listen: without tokens (`weft server
    /// --dev`), so on a loopback address only. A port already taken is a
    /// warning: the engine runs on without them.
    #[arg(
        long,
        env = "WEFT_SERVER_ADDR",
        default_value = super::server::DEFAULT_SERVER_ADDR,
        value_name = "ADDR"
    )]
    pub(crate) server_addr: std::net::SocketAddr,
    #[command(flatten)]
    pub(crate) ops: OpsArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) log: LogArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

fn executor_config(
    db: &DbArgs,
    bus: weft_bus::BusConfig,
    tuning: &ExecutorTuning,
    max_result_bytes: ResultLimit,
) -> anyhow::Result<ExecutorConfig> {
    Ok(ExecutorConfig {
        db: db.config(),
        bus,
        prefetch: tuning.executor_prefetch,
        concurrency: tuning.executor_concurrency.max(1),
        batches: tuning.executor_batches.max(1),
        engine: EngineConfig {
            deadline_grace: seconds("--deadline-grace", tuning.deadline_grace)?,
            max_result_bytes,
            flush_queue: tuning.executor_flush_queue,
            heartbeat_grace: seconds("--heartbeat-grace", tuning.heartbeat_grace)?,
            secrets: weft_worker::keyring_from_env()?,
            ..EngineConfig::default()
        },
        reaper: ReaperConfig {
            interval: seconds("--reaper-interval", tuning.reaper_interval)?,
            heartbeat_grace: seconds("--heartbeat-grace", tuning.heartbeat_grace)?,
            redispatch_after: tuning.redispatch.after()?,
        },
        retention: tuning.retention.map(RetentionConfig::keeping),
        scheduler: weft_executor::SchedulerConfig {
            grace: seconds("--schedule-grace", tuning.schedule_grace)?,
            ..weft_executor::SchedulerConfig::default()
        },
        ..ExecutorConfig::default()
    })
}

/// A positive number of seconds as a duration, or an error naming the flag.
fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} must be a positive number of seconds, not {value}"))
}

/// Runs an executor until SIGINT/SIGTERM.
pub(crate) async fn executor(args: &ExecutorArgs) -> anyhow::Result<ExitCode> {
    let config = executor_config(
        &args.db,
        weft_bus::BusConfig {
            queue_type: args.queue_type,
            ..args.amqp.config("weft-executor")
        },
        &args.tuning,
        args.limits.max_result_bytes,
    )?;
    let shutdown = shutdown_on_signal();
    args.ops.start(&shutdown).await?;
    weft_executor::run(config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a worker until SIGINT/SIGTERM.
pub(crate) async fn worker(args: &WorkerDaemonArgs) -> anyhow::Result<ExitCode> {
    let config = args.worker.config("weft-worker")?;
    let shutdown = shutdown_on_signal();
    args.ops.start(&shutdown).await?;
    weft_worker::run(config, ActionRegistry::with_builtins(), shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Migrates, then runs an executor, a worker and the server (`--dev`: no
/// tokens, loopback only) in this process.
pub(crate) async fn dev(args: &DevArgs) -> anyhow::Result<ExitCode> {
    // Bad flags are refused before anything is touched.
    let mut worker_config: WorkerConfig = args.worker.config("weft-dev")?;
    let actions = ActionRegistry::with_builtins();
    // One machine, one user trying things: every built-in runs, `shell`
    // included, unless `--actions` says otherwise.
    if args.worker.actions.is_none() {
        worker_config.policy.actions = WorkerPolicy::every_action_of(&actions).actions;
    }
    super::server::check_dev_addr(args.server_addr)?;
    let executor_config = executor_config(
        &args.db,
        worker_config.bus.clone(),
        &args.executor,
        args.worker.max_result_bytes,
    )?;
    weft_store::migrate(&executor_config.db)
        .await?
        .close()
        .await;
    tracing::info!(database = %executor_config.db.redacted_url(), "database migrated; starting an executor, a worker and the server");
    let shutdown = shutdown_on_signal();
    args.ops.start(&shutdown).await?;
    super::server::start_dev(args.db.connect().await?, args.server_addr, &shutdown).await?;
    let executor = weft_executor::run(executor_config, shutdown.clone());
    let worker = weft_worker::run(worker_config, actions, shutdown.clone());
    let (executed, worked) = tokio::join!(
        async {
            let r = executor.await;
            shutdown.cancel();
            r
        },
        async {
            let r = worker.await;
            shutdown.cancel();
            r
        }
    );
    executed?;
    worked?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Cli, String> {
        Cli::try_parse_from(args).map_err(|e| e.to_string())
    }

    #[test]
    fn max_result_bytes_reaches_every_daemon_and_defaults_to_4_mib() {
        let limit = |cli: Cli| match cli.command {
            Command::Worker(a) => a.worker.max_result_bytes.bytes(),
            Command::Executor(a) => a.limits.max_result_bytes.bytes(),
            Command::Dev(a) => a.worker.max_result_bytes.bytes(),
            _ => unreachable!("a daemon was parsed"),
        };
        assert_eq!(limit(parse(&["weft", "worker"]).unwrap()), 4_194_304);
        for daemon in ["worker", "executor", "dev"] {
            let cli = parse(&["weft", daemon, "--max-result-bytes", "65536"]).unwrap();
            assert_eq!(limit(cli), 65_536, "{daemon}");
        }
    }

    #[test]
    fn a_bad_max_result_bytes_is_refused_naming_the_flag_and_why() {
        let err = parse(&["weft", "worker", "--max-result-bytes", "0"]).unwrap_err();
        assert!(
            err.contains("--max-result-bytes")
                && err.contains("the result limit must be at least 1 byte, not 0"),
            "{err}"
        );
        let err = parse(&["weft", "dev", "--max-result-bytes", "4MB"]).unwrap_err();
        assert!(
            err.contains("must be a whole number of bytes, e.g. 4194304 for 4 MiB, not `4MB`"),
            "{err}"
        );
    }

    #[test]
    fn the_flush_queue_reaches_the_engine_and_zero_is_refused() {
        let queue = |args: &[&str]| match parse(args).unwrap().command {
            Command::Executor(a) => a.tuning.executor_flush_queue.get(),
            Command::Dev(a) => a.executor.executor_flush_queue.get(),
            _ => unreachable!("a daemon was parsed"),
        };
        assert_eq!(queue(&["weft", "executor"]), 64);
        assert_eq!(queue(&["weft", "dev", "--executor-flush-queue", "8"]), 8);
        let err = parse(&["weft", "executor", "--executor-flush-queue", "0"]).unwrap_err();
        assert!(err.contains("--executor-flush-queue"), "{err}");
    }
}
