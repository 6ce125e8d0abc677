//! The worker daemon: consume dispatches, run actions, report, then ack.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use chrono::Utc;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weft_bus::{Bus, BusConfig, BusError, ConsumerConfig, Delivery, Outcome, Publisher, QueueKind};
use weft_common::limits::refit_report;
use weft_common::logs::AttemptLogs;
use weft_common::message::{
    ActionUnknown, Dispatch, ExecutionCompleted, ExecutionStarted, WorkerHeartbeat, topology,
};
use weft_common::{Envelope, ExecutionId, ExecutionStatus, Message, ResultLimit};

use crate::action::{ActionContext, ActionRegistry};
use crate::logs::ActionLogs;
use crate::policy::{Allowed, PolicyError, SHELL, ShellPolicy, WorkerPolicy};

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
    /// The largest result (or failure details, or error message) a report
    /// may carry (`--max-result-bytes`). A bigger one fails the attempt
    /// instead of being published: see [`refit_report`].
    pub max_result_bytes: ResultLimit,
    /// The actions it accepts and how `shell` runs (`--actions`,
    /// `--pass-env`, `--shell-cwd-root`). The default refuses `shell`.
    pub policy: WorkerPolicy,
    /// The keys that open sealed task inputs (secret inputs, see
    /// [`weft_common::secret`]). `None`: read from `WEFT_SECRET_KEY` and
    /// `WEFT_SECRET_KEYS_OLD` when the worker starts; with no key there, a
    /// sealed dispatch fails its attempt saying so.
    pub secrets: Option<Arc<weft_common::Keyring>>,
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
            max_result_bytes: ResultLimit::DEFAULT,
            policy: WorkerPolicy::default(),
            secrets: None,
        }
    }
}

/// Why the worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// RabbitMQ is unusable.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A flag's value cannot be used.
    #[error(transparent)]
    BadFlag(#[from] crate::args::BadFlag),
    /// Its policy cannot be used (`--actions`, `--pass-env`,
    /// `--shell-cwd-root`).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A secret key cannot be used.
    #[error(transparent)]
    SecretKey(#[from] weft_common::secret::KeyError),
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
    /// The actions the policy accepts, and only those.
    registry: ActionRegistry,
    /// The actions this worker has and its policy refuses.
    refused: Vec<String>,
    shell: Arc<ShellPolicy>,
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
    mut config: WorkerConfig,
    mut registry: ActionRegistry,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let Allowed { accepted, refused } = registry.restrict(&config.policy)?;
    let shell = config.policy.shell.checked()?;
    if accepted.iter().any(|a| a == SHELL) {
        for name in &shell.pass_env {
            if std::env::var_os(name).is_none() {
                tracing::warn!(name = %name, "--pass-env names a variable this worker does not have; commands will not get it");
            }
        }
        if let Err(e) = crate::policy::hide_from_children() {
            tracing::warn!(error = %e, "cannot hide this worker's /proc files from the commands it runs; they may read its environment");
        }
    }
    if config.secrets.is_none() {
        config.secrets = crate::secrets::keyring_from_env()?;
    }
    if let Some(keys) = &config.secrets {
        tracing::info!(key_id = keys.key_id(), "secret key loaded");
    }
    // The bus outlives `shutdown` so that reports of finishing actions can
    // still be published during the grace period.
    let bus_stop = CancellationToken::new();
    let bus = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        bus = Bus::connect(config.bus.clone(), bus_stop.clone()) => bus?,
    };
    bus.declare_topology(&config.queues).await?;
    // Bound before the first heartbeat advertises this worker's actions:
    // an executor may address a dispatch to it from then on.
    bus.declare_exclusive(
        &topology::worker_queue(&config.worker_id),
        topology::TASKS_EXCHANGE,
        &topology::worker_routing_key(&config.worker_id),
    )
    .await?;
    let publisher = bus.publisher().await?;
    let grace_over = CancellationToken::new();
    let state = Arc::new(State {
        config: config.clone(),
        registry,
        refused,
        shell: Arc::new(shell),
        publisher,
        running: Mutex::new(Running::default()),
        grace_over: grace_over.clone(),
    });
    tracing::info!(worker_id = %config.worker_id, queues = ?config.queues, concurrency = config.concurrency, actions = ?state.registry.names(), refused = ?state.refused, policy = %config.policy, "worker running");

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
    // Each pool's queue, and this worker's private queue: dispatches the
    // executors address to this worker alone, because it advertises an
    // action another worker of the pool declined (see `decline`).
    let private = ConsumerConfig {
        queue: topology::worker_queue(&config.worker_id),
        kind: QueueKind::Exclusive {
            exchange: topology::TASKS_EXCHANGE.to_owned(),
            routing_key: topology::worker_routing_key(&config.worker_id),
        },
        prefetch: u16::try_from(config.concurrency).unwrap_or(u16::MAX),
        concurrency: config.concurrency,
        consumer_tag: format!("{}-private", config.worker_id),
    };
    let pools = config.queues.iter().map(|queue| ConsumerConfig {
        queue: topology::task_queue(queue),
        kind: QueueKind::Durable,
        prefetch: u16::try_from(config.concurrency).unwrap_or(u16::MAX),
        concurrency: config.concurrency,
        consumer_tag: config.worker_id.clone(),
    });
    for consumer in pools.chain(std::iter::once(private)) {
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
    Reported(Report),
    HandBack,
}

/// How an attempt ended, to report.
struct Report {
    status: ExecutionStatus,
    /// The action's result, or a failure's details.
    result: Option<serde_json::Value>,
    error: Option<String>,
    /// What the action printed.
    logs: Option<AttemptLogs>,
}

impl Report {
    /// Clears the secrets of the dispatch's input out of what is
    /// reported: the result, the error and the captured output.
    fn redact(&mut self, secrets: &weft_common::Secrets) {
        if secrets.is_empty() {
            return;
        }
        if let Some(result) = self.result.as_mut() {
            secrets.redact(result);
        }
        if let Some(error) = self.error.as_mut() {
            *error = secrets.redact_text(error).into_owned();
        }
        if let Some(logs) = self.logs.as_mut() {
            secrets.redact_logs(logs);
        }
    }

    /// An ending decided by the worker (a timeout, a cancellation), not by
    /// the action.
    const fn ended(status: ExecutionStatus, error: String) -> Self {
        Self {
            status,
            result: None,
            error: Some(error),
            logs: None,
        }
    }
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
    let received_at = (!delivery.redelivered).then_some(delivery.received_at);
    tracing::Instrument::instrument(execute(state, dispatch, received_at), span).await
}

/// Runs a dispatch and reports its end; `received_at` is when it arrived,
/// for the start delay (`None` for a redelivery, whose wait says nothing
/// about the step).
async fn execute(
    state: &State,
    dispatch: Dispatch,
    received_at: Option<chrono::DateTime<Utc>>,
) -> Outcome {
    if !state.registry.knows(&dispatch.action) {
        return decline(state, dispatch).await;
    }
    // A sealed input (it holds secrets) is opened here, right before the
    // action runs; what the attempt reports is cleared of those secrets.
    let (input, secrets) = match weft_common::secret::open_task_input(
        state.config.secrets.as_deref(),
        dispatch.input.clone(),
    ) {
        Ok(opened) => opened,
        Err(e) => {
            tracing::error!(error = %e, "the dispatch's sealed input does not open");
            let ending = Report::ended(
                ExecutionStatus::Failed,
                format!("opening the sealed input: {e}"),
            );
            return report(state, &dispatch, ending, None).await;
        }
    };
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
        let ending = Report::ended(
            ExecutionStatus::Canceled,
            "canceled before it started".into(),
        );
        return report(state, &dispatch, ending, None).await;
    }
    let started_at = Utc::now();
    if let Some(received_at) = received_at {
        metrics::histogram!("weft_worker_start_delay_seconds")
            .record(weft_bus::seconds_between(received_at, started_at));
    }
    let action = run_action(state, &dispatch, input, &control);
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
            match started {
                Published::Confirmed => {}
                // A start report is a few hundred bytes; should the broker
                // refuse it all the same, the completion still ends the
                // execution, and the start only mattered to the reaper.
                Published::Refused(e) => {
                    tracing::error!(error = %weft_common::error_chain(&e), "the broker refused the start report; going on without it");
                }
                Published::GraceOver => {
                    state.running().live.remove(&id);
                    return Outcome::Requeue;
                }
            }
            ending
        }
    };
    match ending {
        Ending::HandBack => {
            state.running().live.remove(&id);
            tracing::info!("shutdown grace over: handing the execution back to the queue");
            Outcome::Requeue
        }
        Ending::Reported(mut ending) => {
            ending.redact(&secrets);
            // Listed in the heartbeats until its report is confirmed: the
            // reaper ends an execution its live worker stops listing.
            let outcome = report(state, &dispatch, ending, Some(started_at)).await;
            state.running().live.remove(&id);
            outcome
        }
    }
}

async fn run_action(
    state: &State,
    dispatch: &Dispatch,
    input: Value,
    control: &CancellationToken,
) -> Ending {
    let action_cancel = CancellationToken::new();
    let logs = ActionLogs::new();
    let ctx = ActionContext {
        input,
        execution_id: dispatch.execution_id,
        workflow_execution_id: dispatch.workflow_execution_id,
        task_name: dispatch.task_name.clone(),
        item_index: dispatch.item_index,
        attempt: dispatch.attempt,
        cancel: action_cancel.clone(),
        logs: logs.clone(),
        shell: Arc::clone(&state.shell),
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
            let (status, result, error) = match result {
                Ok(value) => (ExecutionStatus::Succeeded, Some(value), None),
                Err(e) => (ExecutionStatus::Failed, e.details, Some(e.message)),
            };
            return Ending::Reported(Report { status, result, error, logs: logs.snapshot() });
        }
        () = timeout => {
            stop("timeout");
            let ms = dispatch.timeout_ms.unwrap_or_default();
            Report::ended(ExecutionStatus::TimedOut, format!("timed out after {}", human_ms(ms)))
        }
        () = control.cancelled() => {
            stop("cancelled");
            Report::ended(ExecutionStatus::Canceled, "canceled".into())
        }
        () = state.grace_over.cancelled() => {
            stop("shutdown");
            return Ending::HandBack;
        }
    };
    // Give the action a moment to clean up (kill its child) after its token
    // fired; what it printed up to then is reported with the ending.
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut action).await;
    Ending::Reported(Report {
        logs: logs.snapshot(),
        ..ending
    })
}

/// Hands back a dispatch whose action this worker does not know, instead
/// of failing it: another worker of the pool may know it. The executors
/// send it to one that advertises the action, or fail the attempt when no
/// live worker of the pool knows it. The dispatch is acked once the
/// report is confirmed — never requeued, so it cannot come back here.
async fn decline(state: &State, dispatch: Dispatch) -> Outcome {
    tracing::info!(action = %dispatch.action, "an action this worker does not run (unknown here, or refused by its policy): handing the dispatch back to the executors");
    let report = Envelope::new(ActionUnknown {
        dispatch,
        worker_id: state.config.worker_id.clone(),
        known: state
            .registry
            .names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        refused: state.refused.clone(),
    });
    match publish_until_confirmed(state, &report).await {
        Published::Confirmed => Outcome::Ack,
        Published::GraceOver => Outcome::Requeue,
        // A dispatch small enough to arrive makes a report small enough
        // to leave; should the broker refuse it all the same, the
        // dispatch goes to the dead letters, where an operator sees it.
        Published::Refused(e) => Outcome::DeadLetter(format!(
            "an action this worker does not run, and the broker refused the report: {}",
            weft_common::error_chain(&e)
        )),
    }
}

fn human_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Reports how an execution ended, then says what to do with its dispatch.
///
/// The report is first bounded by [`refit_report`], so an oversized result
/// fails the attempt here rather than becoming a message the broker
/// refuses. Should the broker refuse the report all the same (its own
/// `max_message_size` below ours), it is not retried — the same message
/// would be refused forever while the run waited — but replaced by a
/// report of the same ending without its result, carrying the reason:
/// the execution ends, its task's retry policy applies, the run moves on.
/// Its logs are cut to the same limit ([`AttemptLogs::fit`]) and left out
/// of that fallback.
async fn report(
    state: &State,
    dispatch: &Dispatch,
    ending: Report,
    started_at: Option<chrono::DateTime<Utc>>,
) -> Outcome {
    let Report {
        status,
        result,
        error,
        mut logs,
    } = ending;
    if let Some(logs) = logs.as_mut()
        && logs.fit(state.config.max_result_bytes)
    {
        tracing::warn!(
            "the attempt's logs are over the result limit: their oldest bytes are dropped"
        );
    }
    let (status, result, error) = match refit_report(
        state.config.max_result_bytes,
        status,
        result.as_ref(),
        error.as_deref(),
    ) {
        None => (status, result, error),
        Some(refit) => {
            tracing::warn!(error = ?refit.error, "the report is over the result limit");
            let result = if refit.drop_result { None } else { result };
            (refit.status, result, refit.error)
        }
    };
    let completed = completion(state, dispatch, status, result, error, started_at, logs);
    let refused = match publish_until_confirmed(state, &completed).await {
        Published::Confirmed => {
            tracing::debug!(status = %status, "execution reported");
            return Outcome::Ack;
        }
        Published::GraceOver => return Outcome::Requeue,
        Published::Refused(e) => e,
    };
    let reason = weft_common::error_chain(&refused);
    tracing::error!(error = %reason, "the broker refused the report; reporting the execution failed without its result");
    let (status, error) = refused_report(status, reason, completed_error(&completed));
    drop(completed);
    let fallback = completion(state, dispatch, status, None, Some(error), started_at, None);
    match publish_until_confirmed(state, &fallback).await {
        Published::Confirmed => Outcome::Ack,
        Published::GraceOver => Outcome::Requeue,
        // Nothing smaller can be said: dead-letter the dispatch (the
        // reaper ends the execution once its deadline passes) rather
        // than run the action again and again.
        Published::Refused(e) => Outcome::DeadLetter(format!(
            "the broker refused even the short failure report of this execution: {}",
            weft_common::error_chain(&e)
        )),
    }
}

fn completion(
    state: &State,
    dispatch: &Dispatch,
    status: ExecutionStatus,
    result: Option<Value>,
    error: Option<String>,
    started_at: Option<chrono::DateTime<Utc>>,
    logs: Option<AttemptLogs>,
) -> Envelope {
    Envelope::new(ExecutionCompleted {
        execution_id: dispatch.execution_id,
        workflow_execution_id: dispatch.workflow_execution_id,
        attempt: dispatch.attempt,
        status,
        result,
        error,
        worker_id: state.config.worker_id.clone(),
        started_at,
        finished_at: Utc::now(),
        logs,
    })
}

fn completed_error(envelope: &Envelope) -> Option<&str> {
    match &envelope.message {
        Message::ExecutionCompleted(c) => c.error.as_deref(),
        _ => None,
    }
}

/// The status and error of the report that replaces one the broker
/// refused: a success becomes a failure (its result is gone); any other
/// ending stays, so a cancellation is not retried. The original error is
/// kept, shortened, after the reason.
fn refused_report(
    status: ExecutionStatus,
    reason: String,
    original: Option<&str>,
) -> (ExecutionStatus, String) {
    let status = if status == ExecutionStatus::Succeeded {
        ExecutionStatus::Failed
    } else {
        status
    };
    let mut error =
        format!("the broker refused this execution's report ({reason}); its result was dropped");
    if let Some(original) = original {
        let end = original.floor_char_boundary(1_000);
        let more = if end < original.len() { "…" } else { "" };
        error.push_str(&format!("; the action's error: {}{more}", &original[..end]));
    }
    (status, error)
}

/// How publishing a report ended.
enum Published {
    Confirmed,
    /// The broker refused this very message ([`BusError::is_refused_message`]):
    /// sending it again would fail the same way.
    Refused(BusError),
    /// The grace period after shutdown ended first (the dispatch then goes
    /// back to the queue).
    GraceOver,
}

/// Publishes with confirms, retrying any error but a refusal of the
/// message itself — a lost connection, a broker restart, a negative
/// confirm — with capped exponential backoff (100 ms doubling to 5 s),
/// for as long as it takes or until the grace period after shutdown
/// ends. A try under way is never cut short: its confirm may be on its
/// way.
async fn publish_until_confirmed(state: &State, envelope: &Envelope) -> Published {
    let backoff = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .without_max_times();
    let grace_over = state.grace_over.clone();
    let mut failures = 0u32;
    let published = (|| state.publisher.publish(envelope))
        .retry(backoff)
        .sleep(move |wait| {
            let grace_over = grace_over.clone();
            async move {
                tokio::select! {
                    () = grace_over.cancelled() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        })
        .when(|e: &BusError| !e.is_refused_message() && !state.grace_over.is_cancelled())
        .notify(|e: &BusError, wait| {
            failures += 1;
            tracing::warn!(error = %weft_common::error_chain(e), attempt = failures, retry_in = ?wait, kind = envelope.message.kind(), "publishing a report failed; retrying");
        })
        .await;
    match published {
        Ok(()) => Published::Confirmed,
        Err(e) if e.is_refused_message() => Published::Refused(e),
        Err(_) => Published::GraceOver,
    }
}

async fn heartbeats(state: Arc<State>, stop: CancellationToken) {
    let hostname = hostname();
    let actions: Vec<String> = state
        .registry
        .names()
        .into_iter()
        .map(str::to_owned)
        .collect();
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
            pid: std::process::id(),
            actions: actions.clone(),
            refused: state.refused.clone(),
            concurrency: u32::try_from(state.config.concurrency).unwrap_or(u32::MAX),
            build_version: env!("CARGO_PKG_VERSION").to_owned(),
        });
        if let Err(e) = state.publisher.publish(&beat).await {
            tracing::debug!(error = %e, "heartbeat not published");
        }
    }
}

#[cfg(test)]
mod tests;
