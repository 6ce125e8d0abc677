//! The executor daemon: consumer loop + outbox relay (and the reaper, the
//! scheduler, retention), until shutdown.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weft_bus::{Bus, BusConfig, ConsumerConfig, Delivery, Outcome, QueueKind};
use weft_common::Message;
use weft_common::message::topology;
use weft_common::message::{ExecutionCompleted, WorkflowSubmitted};
use weft_store::{ConnectCause, DbConfig, StoreError};

use crate::batch::Batcher;
use crate::engine::{Applied, Engine, EngineConfig};
use crate::error::EngineError;
use crate::liveness::{Handlers, Liveness};
use crate::reaper::{Reaper, ReaperConfig};
use crate::relay::{Outlet, Relay, RelayConfig, backoff};
use crate::retention::RetentionConfig;
use crate::scheduler::{Scheduler, SchedulerConfig};

/// Everything an executor needs to run.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// PostgreSQL.
    pub db: DbConfig,
    /// RabbitMQ.
    pub bus: BusConfig,
    /// Deliveries the broker may push before acks (per executor).
    pub prefetch: u16,
    /// Messages applied concurrently.
    pub concurrency: usize,
    /// Batches of each kind (completions, run starts) applied at once. On
    /// a database with few cores, more batches at once only makes each
    /// smaller (a statement per batch costs about the same whatever its
    /// size): while they are all busy, the next batch grows.
    pub batches: usize,
    /// The engine's settings.
    pub engine: EngineConfig,
    /// The relay's settings.
    pub relay: RelayConfig,
    /// The reaper's settings.
    pub reaper: ReaperConfig,
    /// How long finished runs are kept; `None` (the default) keeps them
    /// forever (`weft prune` deletes them on demand).
    pub retention: Option<RetentionConfig>,
    /// Worker pools whose queues to declare at start.
    pub pools: Vec<String>,
    /// The scheduler's settings (cron schedules).
    pub scheduler: SchedulerConfig,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            db: DbConfig::default(),
            bus: BusConfig::default(),
            prefetch: 512,
            concurrency: 512,
            batches: 2,
            engine: EngineConfig::default(),
            relay: RelayConfig::default(),
            reaper: ReaperConfig::default(),
            retention: None,
            pools: vec![topology::DEFAULT_POOL.to_owned()],
            scheduler: SchedulerConfig::default(),
        }
    }
}

/// Why the executor could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The database is unusable (e.g. not migrated).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// RabbitMQ is unusable.
    #[error(transparent)]
    Bus(#[from] weft_bus::BusError),
}

/// Runs an executor until `shutdown` fires: connects (retrying while the
/// services come up), declares the bus topology, then consumes
/// `weft.executor` and relays the outbox. Returns after in-flight messages
/// were applied and acked.
///
/// # Errors
/// Only for conditions retrying cannot fix, such as an unmigrated database.
pub async fn run(config: ExecutorConfig, shutdown: CancellationToken) -> Result<(), ExecutorError> {
    let Some(pool) = connect_db(&config.db, &shutdown).await? else {
        return Ok(());
    };
    let bus = match Bus::connect(config.bus.clone(), shutdown.clone()).await {
        Ok(bus) => bus,
        Err(_) if shutdown.is_cancelled() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    bus.declare_topology(&config.pools).await?;
    let engine = Engine::new(pool.clone(), config.engine.clone());
    let relay = Relay::new(pool.clone(), bus.clone(), config.relay.clone()).await?;
    let outlet = Outlet::new(bus.clone()).await?;

    let tracker = TaskTracker::new();
    if let Some(retention) = config.retention.clone() {
        tracker.spawn(crate::retention::run(
            pool.clone(),
            retention,
            shutdown.clone(),
        ));
    }
    // Cron schedules: every executor fires them, sharing the due ones.
    tracker.spawn(Scheduler::new(pool.clone(), config.scheduler.clone()).run(shutdown.clone()));
    // The flusher stops after the consumer (so it publishes what the last
    // handlers committed): it has its own token, cancelled below.
    let flusher_stop = CancellationToken::new();
    if let Some(committed) = engine.attach_flusher(config.relay.lease) {
        tracker.spawn(crate::flush::run(
            pool,
            outlet,
            committed,
            flusher_stop.clone(),
        ));
    }
    tracker.spawn(relay.run(engine.clone(), shutdown.clone()));
    // The handlers tell the reaper how much they are applying; it judges
    // silence only once this executor has been caught up for a grace.
    let handlers = Handlers::default();
    tracker.spawn(crate::reaper::run(
        engine.clone(),
        bus.clone(),
        Reaper::new(
            config.reaper.clone(),
            Liveness::new(u64::from(config.prefetch)),
        ),
        handlers.clone(),
        shutdown.clone(),
    ));
    let consumer = ConsumerConfig {
        queue: topology::EXECUTOR_QUEUE.to_owned(),
        kind: QueueKind::Durable,
        prefetch: config.prefetch,
        concurrency: config.concurrency,
        consumer_tag: format!("weft-executor-{}", std::process::id()),
    };
    let handler_shutdown = shutdown.clone();
    let batchers = Batchers {
        completions: Batcher::start(engine.clone(), config.batches, shutdown.clone()),
        starts: Batcher::start(engine.clone(), config.batches, shutdown.clone()),
    };
    let handler = move |delivery: Delivery| {
        handle(
            engine.clone(),
            batchers.clone(),
            handlers.clone(),
            delivery,
            handler_shutdown.clone(),
        )
    };
    tracing::info!("executor running");
    let consumed = weft_bus::consume(&bus, consumer, handler, shutdown.clone()).await;
    shutdown.cancel();
    flusher_stop.cancel();
    tracker.close();
    tracker.wait().await;
    tracing::info!("executor stopped");
    consumed.map_err(Into::into)
}

/// Records the executor's hops of a step for a message that changed
/// state (a duplicate moved nothing along): from the worker's end of the
/// attempt to this delivery (`weft_executor_report_delay_seconds`, a
/// completion only) and from the delivery to its transaction's commit
/// (`weft_executor_apply_seconds`, every kind). With the flusher's
/// commit-to-publish, the bus's transit and the worker's start delay they
/// make up a chain step; see BENCHMARKS.md, "Where a step's time goes".
fn record_hops(delivery: &Delivery, applied: Applied) {
    if applied != Applied::Changed {
        return;
    }
    let kind = delivery.envelope.message.kind();
    let now = chrono::Utc::now();
    if let Message::ExecutionCompleted(m) = &delivery.envelope.message
        && !delivery.redelivered
    {
        metrics::histogram!("weft_executor_report_delay_seconds").record(
            weft_bus::seconds_between(m.finished_at, delivery.received_at),
        );
    }
    metrics::histogram!("weft_executor_apply_seconds", "kind" => kind)
        .record(weft_bus::seconds_between(delivery.received_at, now));
}

/// Where handlers hand the messages applied in batches.
#[derive(Debug, Clone)]
struct Batchers {
    completions: Batcher<ExecutionCompleted>,
    starts: Batcher<WorkflowSubmitted>,
}

/// Applies one delivery, retrying transient failures until they pass or
/// the executor shuts down (then the delivery goes back to the queue).
async fn handle(
    engine: Engine,
    batchers: Batchers,
    handlers: Handlers,
    delivery: Delivery,
    shutdown: CancellationToken,
) -> Outcome {
    let _applying = handlers.applying();
    let kind = delivery.envelope.message.kind();
    let mut failures = 0u32;
    loop {
        let applied = match &delivery.envelope.message {
            Message::ExecutionCompleted(m) => batchers.completions.apply(m.clone()).await,
            Message::WorkflowSubmitted(m) => batchers.starts.apply(m.clone()).await,
            _ => engine.apply(&delivery.envelope).await,
        };
        match applied {
            Ok(applied) => {
                if applied == Applied::Duplicate {
                    tracing::debug!(
                        kind,
                        redelivered = delivery.redelivered,
                        "duplicate message ignored"
                    );
                }
                metrics::counter!("weft_executor_messages_total", "kind" => kind, "applied" => applied.as_str())
                    .increment(1);
                record_hops(&delivery, applied);
                return Outcome::Ack;
            }
            Err(EngineError::Store(StoreError::Duplicate { what, constraint })) => {
                // A unique index refused a second row: someone already did it.
                tracing::warn!(
                    kind,
                    what,
                    constraint,
                    "unique index refused a duplicate; message ignored"
                );
                metrics::counter!("weft_executor_messages_total", "kind" => kind, "applied" => "duplicate")
                    .increment(1);
                return Outcome::Ack;
            }
            Err(e) if e.is_transient() => {
                // Messages wait behind this one: not caught up.
                handlers.stalled();
                failures = failures.saturating_add(1);
                let wait = backoff(failures);
                tracing::warn!(kind, error = %weft_common::error_chain(&e), retry_in = ?wait, "transient failure; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Outcome::Requeue,
                    () = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => {
                tracing::error!(kind, error = %weft_common::error_chain(&e), "message cannot be applied; dead-lettering it");
                return Outcome::DeadLetter(weft_common::error_chain(&e));
            }
        }
    }
}

/// Connects to PostgreSQL, retrying (one log line per attempt, capped
/// backoff) while it is unreachable or refuses the login — an operator may
/// be fixing either. `None` if shutdown fired first.
///
/// # Errors
/// What retrying cannot fix: a bad URL, a missing database, a schema
/// older than this build.
async fn connect_db(
    config: &DbConfig,
    shutdown: &CancellationToken,
) -> Result<Option<sqlx::PgPool>, StoreError> {
    let retryable = |e: &StoreError| {
        e.is_transient()
            || matches!(
                e,
                StoreError::Connect {
                    cause: ConnectCause::AuthFailed(_),
                    ..
                } | StoreError::Database { .. }
            )
    };
    let connecting = (|| weft_store::connect(config))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(5))
                .without_max_times(),
        )
        .when(retryable)
        .notify(|e, retry_in| {
            tracing::warn!(retry_in = %format_args!("{:.1}s", retry_in.as_secs_f64()), "{}; retrying", weft_common::error_chain(e));
        });
    tokio::select! {
        () = shutdown.cancelled() => Ok(None),
        pool = connecting => pool.map(Some),
    }
}
