//! The worker daemon: consume dispatches, run actions, report, then ack.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weft_bus::{Bus, BusConfig, BusError, ConsumerConfig, Delivery, Outcome, Publisher, QueueKind};
use weft_common::message::{
    Dispatch, ExecutionCompleted, ExecutionStarted, WorkerHeartbeat, topology,
};
use weft_common::{Envelope, ExecutionId, ExecutionStatus, Message};

use crate::action::{ActionContext, ActionRegistry};

/// Everything a worker needs to run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// RabbitMQ.
    pub bus: BusConfig,
    /// Worker pools to consume.
    pub queues: Vec<String>,
    /// Actions run at once; also the prefetch of each pool's queue.
    pub concurrency: usize,
    /// Stable name of this worker process.
    pub worker_id: String,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// On shutdown, how long running actions may take to finish before they
    /// are cancelled and handed back to the queue.
    pub shutdown_grace: Duration,
    /// How long an action may run before its start is reported. An action
    /// that finishes sooner reports only its completion (which carries its
    /// start time), saving a message and a transaction per short task; the
    /// reaper only needs the start of actions that run long.
    pub start_report_delay: Duration,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl Default for WorkerConfig {
    fn default() -> Self {
        let random = &uuid::Uuid::new_v4().simple().to_string()[..6];
        Self {
            bus: BusConfig::default(),
            queues: vec![topology::DEFAULT_POOL.to_owned()],
            concurrency: 8,
            worker_id: format!("{}-{}-{random}", hostname(), std::process::id()),
            heartbeat_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            start_report_delay: Duration::from_millis(50),
        }
    }
}

/// Why the worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// RabbitMQ is unusable.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Executions running here, with the token that cancels each.
#[derive(Debug, Default)]
struct Running {
    live: HashMap<ExecutionId, CancellationToken>,
    /// Recently cancelled ids, so a dispatch that arrives after its
    /// cancellation is not run at all.
    cancelled: HashSet<ExecutionId>,
    cancelled_order: VecDeque<ExecutionId>,
}

const REMEMBERED_CANCELLATIONS: usize = 10_000;

#[derive(Debug)]
struct State {
    config: WorkerConfig,
    registry: ActionRegistry,
    publisher: Publisher,
    running: Mutex<Running>,
    /// Fires when shutdown was requested and the grace period is over.
    grace_over: CancellationToken,
}

impl State {
    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs a worker until `shutdown` fires, then stops taking work, lets
/// running actions finish within `shutdown_grace` (reporting them), and
/// hands the rest back to their queue.
///
/// # Errors
/// Only for conditions retrying cannot fix.
pub async fn run(
    config: WorkerConfig,
    registry: ActionRegistry,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    // The bus outlives `shutdown` so that reports of finishing actions can
    // still be published during the grace period.
    let bus_stop = CancellationToken::new();
    let bus = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        bus = Bus::connect(config.bus.clone(), bus_stop.clone()) => bus?,
    };
    bus.declare_topology(&config.queues).await?;
    let publisher = bus.publisher().await?;
    let grace_over = CancellationToken::new();
    let state = Arc::new(State {
        config: config.clone(),
        registry,
        publisher,
        running: Mutex::new(Running::default()),
        grace_over: grace_over.clone(),
    });
    tracing::info!(worker_id = %config.worker_id, queues = ?config.queues, concurrency = config.concurrency, actions = ?state.registry.names(), "worker running");

    let tracker = TaskTracker::new();
    let background = CancellationToken::new();
    tracker.spawn(heartbeats(Arc::clone(&state), background.clone()));
    {
        let state = Arc::clone(&state);
        let bus = bus.clone();
        let stop = background.clone();
        tracker.spawn(async move {
            let control = ConsumerConfig {
                queue: String::new(),
                kind: QueueKind::Exclusive {
                    exchange: topology::CONTROL_EXCHANGE.to_owned(),
                    routing_key: String::new(),
                },
                prefetch: 32,
                concurrency: 1,
                consumer_tag: format!("{}-control", state.config.worker_id),
            };
            let handler = move |d: Delivery| {
                let state = Arc::clone(&state);
                async move { control_message(&state, &d) }
            };
            if let Err(e) = weft_bus::consume(&bus, control, handler, stop).await {
                tracing::error!(error = %e, "the cancellation consumer stopped");
            }
        });
    }
    {
        let grace_over = grace_over.clone();
        let shutdown = shutdown.clone();
        let grace = config.shutdown_grace;
        let done = background.clone();
        tracker.spawn(async move {
            shutdown.cancelled().await;
            // Ends early once every consumer has finished its work.
            tokio::select! {
                () = tokio::time::sleep(grace) => grace_over.cancel(),
                () = done.cancelled() => {}
            }
        });
    }
    let mut consumers = Vec::new();
    for queue in &config.queues {
        let consumer = ConsumerConfig {
            queue: topology::task_queue(queue),
            kind: QueueKind::Durable,
            prefetch: u16::try_from(config.concurrency).unwrap_or(u16::MAX),
            concurrency: config.concurrency,
            consumer_tag: config.worker_id.clone(),
        };
        let state = Arc::clone(&state);
        let handler = move |d: Delivery| {
            let state = Arc::clone(&state);
            async move { dispatch_message(&state, d).await }
        };
        let bus = bus.clone();
        let shutdown = shutdown.clone();
        consumers.push(tokio::spawn(async move {
            weft_bus::consume(&bus, consumer, handler, shutdown).await
        }));
    }
    let mut result = Ok(());
    for consumer in consumers {
        match consumer.await {
            Ok(Err(e)) => result = Err(e.into()),
            Ok(Ok(())) => {}
            Err(e) => tracing::error!(error = %e, "a consumer task panicked"),
        }
    }
    background.cancel();
    tracker.close();
    tracker.wait().await;
    bus_stop.cancel();
    tracing::info!("worker stopped");
    result
}

fn control_message(state: &State, delivery: &Delivery) -> Outcome {
    let Message::CancelExecutions(cancel) = &delivery.envelope.message else {
        return Outcome::Ack;
    };
    let mut running = state.running();
    for id in &cancel.execution_ids {
        if let Some(token) = running.live.get(id) {
            tracing::info!(execution_id = %id, "cancelling a running action");
            token.cancel();
        }
        if running.cancelled.insert(*id) {
            running.cancelled_order.push_back(*id);
        }
    }
    while running.cancelled_order.len() > REMEMBERED_CANCELLATIONS {
        if let Some(old) = running.cancelled_order.pop_front() {
            running.cancelled.remove(&old);
        }
    }
    Outcome::Ack
}

/// How an action ended.
enum Ending {
    Reported(ExecutionStatus, Option<serde_json::Value>, Option<String>),
    HandBack,
}

async fn dispatch_message(state: &State, delivery: Delivery) -> Outcome {
    let Message::Dispatch(dispatch) = delivery.envelope.message else {
        return Outcome::DeadLetter(format!(
            "a `{}` message on a task queue; only dispatches belong here",
            delivery.envelope.message.kind()
        ));
    };
    let span = tracing::info_span!(
        "dispatch",
        workflow_execution_id = %dispatch.workflow_execution_id,
        task = %dispatch.task_name,
        execution_id = %dispatch.execution_id,
        attempt = dispatch.attempt,
        item_index = ?dispatch.item_index,
    );
    tracing::Instrument::instrument(execute(state, dispatch), span).await
}

async fn execute(state: &State, dispatch: Dispatch) -> Outcome {
    let id = dispatch.execution_id;
    let control = CancellationToken::new();
    let already_cancelled = {
        let mut running = state.running();
        let cancelled = running.cancelled.contains(&id);
        if !cancelled {
            running.live.insert(id, control.clone());
        }
        cancelled
    };
    if already_cancelled {
        tracing::info!("dispatch of a cancelled execution; not running it");
        let error = Some("canceled before it started".to_owned());
        return report(
            state,
            &dispatch,
            ExecutionStatus::Canceled,
            None,
            error,
            None,
        )
        .await;
    }
    let started_at = Utc::now();
    let action = run_action(state, &dispatch, &control);
    tokio::pin!(action);
    // A short action reports only its completion. One still running after
    // the delay reports its start (for the reaper) while it goes on; the
    // completion is published after that report was confirmed.
    let delay = tokio::time::sleep(state.config.start_report_delay);
    let ending = tokio::select! {
        biased;
        ending = &mut action => ending,
        () = delay => {
            let started = Envelope::new(ExecutionStarted {
                execution_id: id,
                workflow_execution_id: dispatch.workflow_execution_id,
                attempt: dispatch.attempt,
                worker_id: state.config.worker_id.clone(),
                started_at,
            });
            let (started, ending) =
                tokio::join!(publish_until_confirmed(state, &started), &mut action);
            if !started {
                state.running().live.remove(&id);
                return Outcome::Requeue;
            }
            ending
        }
    };
    state.running().live.remove(&id);
    match ending {
        Ending::HandBack => {
            tracing::info!("shutdown grace over: handing the execution back to the queue");
            Outcome::Requeue
        }
        Ending::Reported(status, result, error) => {
            report(state, &dispatch, status, result, error, Some(started_at)).await
        }
    }
}

async fn run_action(state: &State, dispatch: &Dispatch, control: &CancellationToken) -> Ending {
    let action_cancel = CancellationToken::new();
    let ctx = ActionContext {
        input: dispatch.input.clone(),
        execution_id: dispatch.execution_id,
        workflow_execution_id: dispatch.workflow_execution_id,
        task_name: dispatch.task_name.clone(),
        item_index: dispatch.item_index,
        attempt: dispatch.attempt,
        cancel: action_cancel.clone(),
    };
    let action = state.registry.run(&dispatch.action, ctx);
    tokio::pin!(action);
    let timeout = async {
        match dispatch.timeout_ms {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => std::future::pending().await,
        }
    };
    let stop = |why: &'static str| {
        action_cancel.cancel();
        tracing::info!(reason = why, "stopping the action");
    };
    let ending = tokio::select! {
        result = &mut action => {
            return match result {
                Ok(value) => Ending::Reported(ExecutionStatus::Succeeded, Some(value), None),
                Err(e) => Ending::Reported(ExecutionStatus::Failed, e.details, Some(e.message)),
            };
        }
        () = timeout => {
            stop("timeout");
            let ms = dispatch.timeout_ms.unwrap_or_default();
            Ending::Reported(ExecutionStatus::TimedOut, None, Some(format!("timed out after {}", human_ms(ms))))
        }
        () = control.cancelled() => {
            stop("cancelled");
            Ending::Reported(ExecutionStatus::Canceled, None, Some("canceled".into()))
        }
        () = state.grace_over.cancelled() => {
            stop("shutdown");
            Ending::HandBack
        }
    };
    // Give the action a moment to clean up (kill its child) after its token fired.
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut action).await;
    ending
}

fn human_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

async fn report(
    state: &State,
    dispatch: &Dispatch,
    status: ExecutionStatus,
    result: Option<serde_json::Value>,
    error: Option<String>,
    started_at: Option<chrono::DateTime<Utc>>,
) -> Outcome {
    let completed = Envelope::new(ExecutionCompleted {
        execution_id: dispatch.execution_id,
        workflow_execution_id: dispatch.workflow_execution_id,
        attempt: dispatch.attempt,
        status,
        result,
        error,
        worker_id: state.config.worker_id.clone(),
        started_at,
        finished_at: Utc::now(),
    });
    if publish_until_confirmed(state, &completed).await {
        tracing::debug!(status = %status, "execution reported");
        Outcome::Ack
    } else {
        Outcome::Requeue
    }
}

/// Publishes with confirms, retrying with capped backoff while the broker
/// is unavailable. `false` only if the grace period after shutdown ended
/// first (the dispatch then goes back to the queue).
async fn publish_until_confirmed(state: &State, envelope: &Envelope) -> bool {
    let mut failures = 0u32;
    loop {
        match state.publisher.publish(envelope).await {
            Ok(()) => return true,
            Err(e) => {
                failures += 1;
                let wait = Duration::from_millis(100 * u64::from(1u32 << failures.min(6)))
                    .min(Duration::from_secs(5));
                tracing::warn!(error = %weft_common::error_chain(&e), attempt = failures, retry_in = ?wait, kind = envelope.message.kind(), "publishing a report failed; retrying");
                tokio::select! {
                    () = state.grace_over.cancelled() => return false,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

async fn heartbeats(state: Arc<State>, stop: CancellationToken) {
    let hostname = hostname();
    let mut tick = tokio::time::interval(state.config.heartbeat_interval);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let running: Vec<ExecutionId> = state.running().live.keys().copied().collect();
        let beat = Envelope::new(WorkerHeartbeat {
            worker_id: state.config.worker_id.clone(),
            queues: state.config.queues.clone(),
            running,
            hostname: hostname.clone(),
            at: Utc::now(),
        });
        if let Err(e) = state.publisher.publish(&beat).await {
            tracing::debug!(error = %e, "heartbeat not published");
        }
    }
}
