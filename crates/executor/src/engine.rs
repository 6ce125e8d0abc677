//! Applying one message to the database: the executor's unit of work.
//!
//! [`Engine::apply`] handles one envelope in one transaction and reports
//! whether it changed anything. It is what the consumer loop calls for each
//! delivery, and what tests call directly to advance a run step by step.
//! The transaction commits before the function returns; the delivery may be
//! acked afterwards. A redelivered or duplicated message finds its guard
//! already flipped and returns [`Applied::Duplicate`].

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::Instrument as _;
use weft_common::message::{ExecutionCompleted, ExecutionStarted, WorkflowSubmitted};
use weft_common::{Envelope, Evaluator, Message, ResultLimit, WorkflowExecutionId, WorkflowStatus};
use weft_store::executions;
use weft_store::tasks::{self, NewTask};
use weft_store::{outbox, runs, shared_limits, workers};

use crate::catalog::Catalog;
use crate::complete::{bounded, completion_of};
use crate::error::{EngineError, db};
use crate::flush::Committed;
use crate::parallelism::Unlimited;
use crate::step::{Outgoing, RunInfo, Step};

/// What applying a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// State changed (and messages may have been enqueued).
    Changed,
    /// The message was already applied: a redelivery or a duplicate.
    Duplicate,
    /// Nothing to do for this executor (e.g. a message for watchers).
    Ignored,
}

impl Applied {
    /// A label for metrics and logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
        }
    }
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long past an execution's timeout (or, without one, past its
    /// start) the reaper waits for news before declaring it lost.
    pub deadline_grace: Duration,
    /// How many parsed workflow definitions to keep.
    pub catalog_capacity: usize,
    /// The largest rendered task input, and the largest action result
    /// stored (`--max-result-bytes`): a task whose input is bigger fails
    /// before anything is dispatched; a completion whose result is bigger
    /// is stored as a failed attempt without it (see `bounded`).
    pub max_result_bytes: ResultLimit,
    /// Committed transactions whose messages may wait for the flusher at
    /// most (`--flush-queue`). A commit that finds the queue full waits
    /// for room after its commit, so a flusher that the broker slows down
    /// slows the engine down too (handlers, batches and item streams),
    /// instead of piling messages up in memory; its rows are in the outbox
    /// already, so nothing is lost if the process dies meanwhile.
    pub flush_queue: NonZeroUsize,
    /// How recently a worker must have sent a heartbeat to count as live
    /// (the reaper's `--heartbeat-grace`): a declined dispatch is handed
    /// only to a live worker.
    pub heartbeat_grace: Duration,
    /// The keys that open runs' secret inputs and seal the task inputs
    /// rendered from them (`WEFT_SECRET_KEY`); without one, a run with
    /// secret inputs fails its tasks saying so.
    pub secrets: Option<Arc<weft_common::Keyring>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            deadline_grace: Duration::from_secs(30),
            catalog_capacity: 1024,
            max_result_bytes: ResultLimit::DEFAULT,
            flush_queue: DEFAULT_FLUSH_QUEUE,
            heartbeat_grace: weft_store::workers::DEFAULT_HEARTBEAT_GRACE,
            secrets: None,
        }
    }
}

/// The default [`EngineConfig::flush_queue`]: a flush publishes up to
/// 2,000 messages, what a few dozen transactions of a busy executor
/// commit, and only a handful of tasks commit at once (the batchers, the
/// item streams, the handlers of other messages); 64 keeps the flusher fed
/// without letting a stream run far ahead of its confirms.
const DEFAULT_FLUSH_QUEUE: NonZeroUsize = NonZeroUsize::new(64).unwrap();

/// Advances runs, one message at a time. Cheap to clone; share one per
/// process.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

/// How many runs [`Unlimited`] remembers before it starts over.
const UNLIMITED_CAPACITY: usize = 100_000;

#[derive(Debug)]
pub(crate) struct Inner {
    pool: PgPool,
    pub(crate) catalog: Catalog,
    /// Runs known to have no `parallelism` (see [`Unlimited`]).
    pub(crate) unlimited: Unlimited,
    pub(crate) evaluator: Evaluator,
    pub(crate) config: EngineConfig,
    pub(crate) outbox_written: Notify,
    /// Where committed messages go to be published at once, when this
    /// engine runs with a flusher (the daemon); see `flush`.
    flusher: OnceLock<(mpsc::Sender<Committed>, Duration)>,
}

impl Engine {
    /// An engine over a migrated database.
    #[must_use]
    pub fn new(pool: PgPool, config: EngineConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                catalog: Catalog::new(config.catalog_capacity),
                unlimited: Unlimited::new(UNLIMITED_CAPACITY),
                evaluator: Evaluator::new(),
                config,
                outbox_written: Notify::new(),
                flusher: OnceLock::new(),
            }),
        }
    }

    /// The database pool.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// A transaction of the engine. Its statements look rows up by key,
    /// several at once for a batch (keys unnested and joined to a table),
    /// so two planner settings hold for its duration (set in the same
    /// round trip as `BEGIN`):
    /// - sequential scans are disabled: on a fresh database whose
    ///   statistics lag behind a burst of inserts, the planner would rather
    ///   scan such a table whole (it still believes it tiny) than use its
    ///   primary key, and a scan per statement costs more than a batch saves;
    /// - prepared statements use their generic plan at once: a custom plan
    ///   knows an unnested array's length and looks cheaper, so without
    ///   this every execution of a batch statement is planned again
    ///   (~0.5 ms each, more than executing it).
    pub(crate) async fn begin(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, EngineError> {
        self.inner
            .pool
            .begin_with(
                "BEGIN; SET LOCAL enable_seqscan = off; \
                 SET LOCAL plan_cache_mode = force_generic_plan",
            )
            .await
            .map_err(db("beginning a transaction"))
    }

    async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, EngineError> {
        self.inner
            .pool
            .acquire()
            .await
            .map_err(db("acquiring a connection"))
    }

    /// Hands the messages of every later commit to the returned receiver,
    /// to be published at once (see `flush`); relays leave them alone for
    /// `lease`. At most [`EngineConfig::flush_queue`] commits wait in it;
    /// the next one waits for room. `None` if a flusher is attached
    /// already.
    pub(crate) fn attach_flusher(&self, lease: Duration) -> Option<mpsc::Receiver<Committed>> {
        let (tx, rx) = mpsc::channel(self.inner.config.flush_queue.get());
        self.inner.flusher.set((tx, lease)).ok()?;
        Some(rx)
    }

    /// Resolves after a transaction of this engine wrote to the outbox.
    pub(crate) async fn outbox_written(&self) {
        self.inner.outbox_written.notified().await;
    }

    /// Applies one message in one transaction, committed before returning.
    ///
    /// # Errors
    /// [`EngineError`]; when [`EngineError::is_transient`] the message should
    /// be applied again later (nothing was committed).
    pub async fn apply(&self, envelope: &Envelope) -> Result<Applied, EngineError> {
        match &envelope.message {
            Message::WorkflowSubmitted(m) => self.start_run(m.workflow_execution_id).await,
            Message::ExecutionStarted(m) => self.execution_started(m).await,
            Message::ExecutionCompleted(m) => self.execution_completed(m).await,
            Message::ActionUnknown(m) => self.action_unknown(m).await,
            Message::WorkerHeartbeat(hb) => {
                let mut conn = self.acquire().await?;
                workers::heartbeat(&mut conn, hb).await?;
                Ok(Applied::Changed)
            }
            Message::Dispatch(d) if d.child => self.start_child(d).await,
            Message::Dispatch(d) if d.wait => self.start_wait(d).await,
            Message::WaitDue(m) => self.wait_due(m).await,
            Message::WorkflowFinished(_) | Message::Dispatch(_) | Message::CancelExecutions(_) => {
                Ok(Applied::Ignored)
            }
        }
    }

    /// `pending → running`: creates every task row and decides the roots.
    #[tracing::instrument(skip_all, fields(workflow_execution_id = %id), err)]
    async fn start_run(&self, id: WorkflowExecutionId) -> Result<Applied, EngineError> {
        let mut tx = self.begin().await?;
        let (applied, messages) = self.start_in(&mut tx, &[id]).await?;
        self.commit(tx, messages).await?;
        Ok(applied.first().copied().unwrap_or(Applied::Duplicate))
    }

    /// Starts the runs of claimed `workflow.submitted` outbox rows in the
    /// relay's claiming transaction and deletes the rows in it, so that
    /// they go with the start's commit ([`crate::Relay::starting_runs`]).
    pub(crate) async fn start_claimed(
        &self,
        tx: &mut PgConnection,
        starts: &crate::relay::Starts,
    ) -> Result<Outgoing, EngineError> {
        let (_, outgoing) = self.start_in(tx, &starts.runs).await?;
        outbox::delete(tx, &starts.ids).await?;
        Ok(outgoing)
    }

    /// Starts runs inside an open transaction, set-based: one statement
    /// moves them all to `running`, one creates all their tasks, and one
    /// [`Step`] decides every root. A run that was not pending is resumed
    /// instead (see [`Engine::resume_in`]). Returns one [`Applied`] per id
    /// (an id listed twice is a duplicate the second time) and the messages
    /// to write to the outbox with the commit.
    async fn start_in(
        &self,
        tx: &mut PgConnection,
        ids: &[WorkflowExecutionId],
    ) -> Result<(Vec<Applied>, Outgoing), EngineError> {
        let (startable, in_line) = self.admit(tx, ids).await?;
        let mut started = Vec::new();
        for run in runs::start_many(tx, &startable).await? {
            match self.inner.catalog.get(tx, run.definition_id).await {
                Ok(workflow) => started.push(RunInfo::of(
                    &run,
                    workflow,
                    self.inner.config.secrets.as_ref(),
                )),
                Err(EngineError::InvalidDefinition { detail, .. }) => {
                    // The run can never start; fail it rather than loop.
                    // Its message goes to the relays (woken below).
                    let ending = runs::Ending {
                        id: run.id,
                        workflow: &run.workflow_name,
                        to: WorkflowStatus::Failed,
                        output: None,
                        error: Some(&detail),
                    };
                    runs::end_many(tx, &[ending], None).await?;
                    self.inner.outbox_written.notify_one();
                }
                Err(e) => return Err(e),
            }
        }
        // Their `parallelism`, kept on the run for audits and `status`.
        let limited: Vec<(WorkflowExecutionId, i32)> = started
            .iter()
            .filter_map(|run| {
                let limit = run.workflow.parallelism()?;
                Some((run.id, i32::try_from(limit).unwrap_or(i32::MAX)))
            })
            .collect();
        weft_store::parallelism::record(tx, &limited).await?;
        self.inner.unlimited.note(
            started
                .iter()
                .filter(|run| run.workflow.parallelism().is_none())
                .map(|run| run.id),
        );
        let new: Vec<(WorkflowExecutionId, Vec<NewTask<'_>>)> = started
            .iter()
            .map(|run| (run.id, new_tasks(&run.workflow)))
            .collect();
        let mut created = tasks::create_all(tx, &new).await?;
        drop(new);
        // Runs with exit handlers count their main tasks apart (ADR 0011).
        let with_exit_handlers: Vec<(WorkflowExecutionId, i32)> = started
            .iter()
            .filter_map(|run| {
                let exits = run.workflow.exit_handler_count();
                (exits > 0).then(|| {
                    let main = run.workflow.tasks().count() - exits;
                    (run.id, i32::try_from(main).unwrap_or(i32::MAX))
                })
            })
            .collect();
        weft_store::exit::count_main(tx, &with_exit_handlers).await?;
        created.sort_by(|a, b| {
            (a.workflow_execution_id.as_uuid(), &a.task_name)
                .cmp(&(b.workflow_execution_id.as_uuid(), &b.task_name))
        });
        let mut fresh: HashSet<WorkflowExecutionId> = HashSet::with_capacity(started.len());
        let mut outgoing = {
            let mut step = self.step(tx);
            for run in started {
                tracing::info!(workflow_execution_id = %run.id, workflow = %run.workflow.name(), "run started");
                fresh.insert(run.id);
                step.add_run(run);
            }
            // The roots: tasks that need nothing (exit handlers wait for
            // the main tasks).
            for task in created
                .into_iter()
                .filter(|t| t.needs.is_empty() && !t.exit_handler)
            {
                step.decide(task);
            }
            step.settle().await?;
            std::mem::take(&mut step.out)
        };
        let mut applied = Vec::with_capacity(ids.len());
        for id in ids {
            if fresh.remove(id) || in_line.contains(id) {
                applied.push(Applied::Changed);
            } else {
                let (one, more) = self.resume_in(tx, *id).await?;
                applied.push(one);
                outgoing.append(more);
            }
        }
        Ok((applied, outgoing))
    }

    /// Which of `ids` may start now: the pending ones without a shared
    /// limit (or whose definition no longer parses: the start fails them),
    /// and those of a limited workflow that hold a slot of their key once
    /// they got in line ([`shared_limits::admit`]). Also returns the runs
    /// that got in line and wait (they stay `pending`; the end of a
    /// holder grants them a slot and writes their start message). A run
    /// whose key cannot be rendered fails, saying why. Locks the pending
    /// runs' rows first (see [`runs::lock_pending`]).
    async fn admit(
        &self,
        tx: &mut PgConnection,
        ids: &[WorkflowExecutionId],
    ) -> Result<(Vec<WorkflowExecutionId>, HashSet<WorkflowExecutionId>), EngineError> {
        let pending = runs::lock_pending(tx, ids).await?;
        let mut startable = Vec::with_capacity(pending.len());
        let mut keyed: Vec<(WorkflowExecutionId, Arc<weft_common::Workflow>, String)> = Vec::new();
        for run in &pending {
            let workflow = match self.inner.catalog.get(tx, run.definition_id).await {
                Ok(workflow) => workflow,
                Err(EngineError::InvalidDefinition { .. }) => {
                    startable.push(run.id);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(limit) = workflow.limit() else {
                startable.push(run.id);
                continue;
            };
            let input = run.input.as_object().cloned().unwrap_or_default();
            match limit.key_for(
                &self.inner.evaluator,
                workflow.name(),
                run.id,
                run.scheduled_at.map(weft_common::schedule::tick_text),
                &input,
            ) {
                Ok(key) => keyed.push((run.id, Arc::clone(&workflow), key)),
                Err(why) => {
                    tracing::warn!(workflow_execution_id = %run.id, error = %why, "run failed: its limit key");
                    let ending = runs::Ending {
                        id: run.id,
                        workflow: &run.workflow_name,
                        to: WorkflowStatus::Failed,
                        output: None,
                        error: Some(&why),
                    };
                    runs::end_many(tx, &[ending], None).await?;
                    self.inner.outbox_written.notify_one();
                }
            }
        }
        if keyed.is_empty() {
            return Ok((startable, HashSet::new()));
        }
        let admissions: Vec<shared_limits::Admission<'_>> = keyed
            .iter()
            .filter_map(|(id, workflow, key)| {
                let limit = workflow.limit()?;
                Some(shared_limits::Admission {
                    run: *id,
                    scope: workflow.name(),
                    key,
                    runs: i32::try_from(limit.runs()).unwrap_or(i32::MAX),
                    runs_total: limit
                        .runs_total()
                        .map(|t| i32::try_from(t).unwrap_or(i32::MAX)),
                    fair: limit.order() == weft_common::LimitOrder::Fair,
                })
            })
            .collect();
        let holding = shared_limits::admit(tx, &admissions).await?;
        // Granted runs not of this batch got a start message: relays wake.
        self.inner.outbox_written.notify_one();
        let mut in_line = HashSet::new();
        for (id, _, _) in &keyed {
            if holding.contains(id) {
                startable.push(*id);
            } else {
                tracing::info!(workflow_execution_id = %id, "run waits for a slot of its limit");
                in_line.insert(*id);
            }
        }
        startable.sort_by_key(|id| id.as_uuid());
        Ok((startable, in_line))
    }

    /// A run that is already running: decides the tasks that wait with every
    /// need terminal — there are some only right after `weft retry`
    /// re-opened the run; for a duplicated submission there are none.
    async fn resume_in(
        &self,
        tx: &mut PgConnection,
        id: WorkflowExecutionId,
    ) -> Result<(Applied, Outgoing), EngineError> {
        let Some(run) = runs::get(tx, id).await? else {
            return Err(EngineError::Inconsistent(format!(
                "run {id} was submitted but does not exist"
            )));
        };
        // What this decides commits before a cancellation of the run can
        // (see `runs::RunLock`).
        // A canceling run is resumed for its exit handlers, released by
        // the cancellation (`weft_store::exit::end_main_phase`).
        let status = runs::status(tx, id, runs::RunLock::Dispatch).await?;
        if !matches!(status, WorkflowStatus::Running | WorkflowStatus::Canceling) {
            return Ok((Applied::Duplicate, Outgoing::default()));
        }
        let undecided = tasks::undecided(tx, id).await?;
        // Tasks granted their lock across runs while they waited: the
        // message that resumes the run was written by the grant.
        // (A workflow with `parallelism` has no such locks: validation.)
        let granted = if status == WorkflowStatus::Running {
            shared_limits::granted_tasks(tx, id).await?
        } else {
            Vec::new()
        };
        if undecided.is_empty() && granted.is_empty() {
            return Ok((Applied::Duplicate, Outgoing::default()));
        }
        // A limited run's row before its tasks' (see `parallelism::lock`).
        weft_store::parallelism::lock(tx, &[id]).await?;
        let workflow = self.inner.catalog.get(tx, run.definition_id).await?;
        let mut step = self.step(tx);
        step.add_run(RunInfo::of(
            &run,
            workflow,
            self.inner.config.secrets.as_ref(),
        ));
        for task in &granted {
            step.dispatch_held(task).await?;
        }
        for task in undecided {
            if status == WorkflowStatus::Canceling && !task.exit_handler {
                continue;
            }
            step.decide(task);
        }
        step.settle().await?;
        tracing::info!(workflow_execution_id = %id, round = run.run_attempt, "run resumed");
        Ok((Applied::Changed, std::mem::take(&mut step.out)))
    }

    #[tracing::instrument(skip_all, fields(execution_id = %m.execution_id, attempt = m.attempt), err)]
    async fn execution_started(&self, m: &ExecutionStarted) -> Result<Applied, EngineError> {
        let mut conn = self.acquire().await?;
        let grace = i64::try_from(self.inner.config.deadline_grace.as_millis()).unwrap_or(i64::MAX);
        let attempt = i32::try_from(m.attempt).unwrap_or(i32::MAX);
        if executions::started(
            &mut conn,
            m.execution_id,
            attempt,
            &m.worker_id,
            m.started_at,
            grace,
        )
        .await?
        {
            Ok(Applied::Changed)
        } else {
            Ok(Applied::Duplicate)
        }
    }

    #[tracing::instrument(
        skip_all,
        fields(workflow_execution_id = %m.workflow_execution_id, execution_id = %m.execution_id, attempt = m.attempt, status = %m.status),
        err
    )]
    async fn execution_completed(&self, m: &ExecutionCompleted) -> Result<Applied, EngineError> {
        let m = bounded(m, self.inner.config.max_result_bytes);
        let completion = completion_of(&m)?;
        let tx = self.begin().await?;
        self.complete(tx, &completion).await
    }

    /// Starts several runs in one transaction (see [`Engine::apply_batch`]).
    pub async fn apply_starts(
        &self,
        messages: &[&WorkflowSubmitted],
    ) -> Vec<Result<Applied, EngineError>> {
        self.apply_batch(Batch::Starts(messages)).await
    }

    /// Applies several completions in one transaction (see
    /// [`Engine::apply_batch`]): a counter row shared by their items (a wide
    /// fan-out) is updated once.
    pub async fn apply_completions(
        &self,
        messages: &[&ExecutionCompleted],
    ) -> Vec<Result<Applied, EngineError>> {
        self.apply_batch(Batch::Completions(messages)).await
    }

    /// Applies a batch in one transaction: one commit for all, each message
    /// through the same guards as alone. If any of them fails, nothing is
    /// committed and each is applied in a transaction of its own, so one
    /// bad message never holds back the others. One result per message.
    async fn apply_batch(&self, batch: Batch<'_>) -> Vec<Result<Applied, EngineError>> {
        if batch.len() > 1 {
            match self.apply_together(batch).await {
                Ok(applied) => return applied.into_iter().map(Ok).collect(),
                Err(e) => {
                    tracing::debug!(error = %weft_common::error_chain(&e), count = batch.len(), kind = batch.kind(), "a batch failed; applying its messages one by one");
                }
            }
        }
        let mut results = Vec::with_capacity(batch.len());
        match batch {
            Batch::Starts(messages) => {
                for m in messages {
                    results.push(self.start_run(m.workflow_execution_id).await);
                }
            }
            Batch::Completions(messages) => {
                for m in messages {
                    results.push(self.execution_completed(m).await);
                }
            }
        }
        results
    }

    async fn apply_together(&self, batch: Batch<'_>) -> Result<Vec<Applied>, EngineError> {
        let mut tx = self.begin().await?;
        let (applied, outgoing) = match batch {
            Batch::Starts(messages) => {
                let ids: Vec<WorkflowExecutionId> =
                    messages.iter().map(|m| m.workflow_execution_id).collect();
                self.start_in(&mut tx, &ids).await?
            }
            Batch::Completions(messages) => {
                let limit = self.inner.config.max_result_bytes;
                let messages: Vec<_> = messages.iter().map(|m| bounded(m, limit)).collect();
                let completions = messages
                    .iter()
                    .map(|m| completion_of(m))
                    .collect::<Result<Vec<_>, _>>()?;
                self.complete_in(&mut tx, &completions).await?
            }
        };
        self.commit(tx, outgoing).await?;
        Ok(applied)
    }

    /// A step of this engine in `tx`.
    pub(crate) fn step<'a>(&'a self, tx: &'a mut PgConnection) -> Step<'a> {
        Step::new(
            tx,
            &self.inner.evaluator,
            self.inner.config.max_result_bytes,
            self.lease(),
        )
    }

    /// How long relays leave the messages of this engine's commits alone:
    /// `Some` when a flusher publishes them right after the commit.
    pub(crate) fn lease(&self) -> Option<Duration> {
        self.inner.flusher.get().map(|(_, lease)| *lease)
    }

    /// Writes the step's remaining messages to the outbox, commits, hands
    /// every message due at once to the flusher (or wakes the relay), and
    /// streams the items of the fan-outs it started.
    pub(crate) async fn commit(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Postgres>,
        mut outgoing: Outgoing,
    ) -> Result<(), EngineError> {
        let streams = std::mem::take(&mut outgoing.streams);
        self.commit_messages(tx, outgoing).await?;
        for (run, task) in streams {
            let span = tracing::info_span!("stream_items", workflow_execution_id = %run, task_execution_id = %task);
            tokio::spawn(self.clone().stream_items(run, task).instrument(span));
        }
        Ok(())
    }

    /// [`Engine::commit`] without starting streams: a stream's own windows
    /// start none, and it must not spawn itself again.
    pub(crate) async fn commit_messages(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Postgres>,
        outgoing: Outgoing,
    ) -> Result<(), EngineError> {
        self.commit_and_hand_over(tx, outgoing, None).await
    }

    /// [`Engine::commit_messages`], and a receiver that resolves (with a
    /// value or an error, alike) once the flusher is done with these
    /// messages: published with confirms, or left to the relays because
    /// publishing failed or the flusher stopped. Without a flusher (the
    /// relays publish from the outbox) it resolves at once. An item stream
    /// waits on it so that it never commits far ahead of what the broker
    /// confirmed.
    pub(crate) async fn commit_tracked(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Postgres>,
        outgoing: Outgoing,
    ) -> Result<oneshot::Receiver<()>, EngineError> {
        let (flushed, done) = oneshot::channel();
        self.commit_and_hand_over(tx, outgoing, Some(flushed))
            .await?;
        Ok(done)
    }

    /// Writes the messages to the outbox, commits, then hands those due at
    /// once to the flusher, waiting for room in its queue (never dropping
    /// them: the committed rows are theirs to publish), or wakes the relay.
    async fn commit_and_hand_over(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        outgoing: Outgoing,
        flushed: Option<oneshot::Sender<()>>,
    ) -> Result<(), EngineError> {
        let Outgoing {
            queued, written, ..
        } = outgoing;
        let ids = outbox::enqueue(&mut tx, &queued, self.lease()).await?;
        tx.commit().await.map_err(db("committing"))?;
        let committed_at = std::time::Instant::now();
        let delayed = ids.len() < queued.len();
        let anything = !queued.is_empty() || !written.is_empty();
        match self.inner.flusher.get() {
            Some((sender, _)) => {
                let (mut all_ids, mut envelopes): (Vec<i64>, Vec<Envelope>) =
                    written.into_iter().unzip();
                all_ids.extend(ids);
                envelopes.extend(
                    queued
                        .into_iter()
                        .filter(|(_, due)| due.is_none())
                        .map(|(envelope, _)| envelope),
                );
                // Nothing to publish: `flushed` is dropped, which resolves
                // its receiver at once.
                if !all_ids.is_empty() {
                    let committed = Committed {
                        ids: all_ids,
                        envelopes,
                        flushed,
                        committed_at,
                    };
                    // After the commit, holding no connection: a full
                    // queue makes this task wait, not the database.
                    if sender.send(committed).await.is_err() {
                        // The flusher stopped (shutting down): relays
                        // publish them when the lease ends.
                        tracing::debug!("flusher gone; leaving committed messages to the relay");
                    }
                }
            }
            None => {
                if anything {
                    self.inner.outbox_written.notify_one();
                }
            }
        }
        if delayed {
            self.inner.outbox_written.notify_one();
        }
        Ok(())
    }
}

/// The task rows to create when a run of `workflow` starts.
fn new_tasks(workflow: &weft_common::Workflow) -> Vec<NewTask<'_>> {
    workflow
        .tasks()
        .map(|t| NewTask {
            name: t.name(),
            needs: t.needs(),
            successors: workflow.dag().successors(t.name()),
            with_items: t.with_items().is_some(),
            allow_failure: t.allow_failure(),
            concurrency: t
                .concurrency()
                .map(|c| i32::try_from(c).unwrap_or(i32::MAX)),
            exit_handler: t.is_exit_handler(),
            locks: t.lock().is_some(),
        })
        .collect()
}

/// Messages the engine applies several to a transaction.
#[derive(Debug, Clone, Copy)]
enum Batch<'m> {
    Starts(&'m [&'m WorkflowSubmitted]),
    Completions(&'m [&'m ExecutionCompleted]),
}

impl Batch<'_> {
    const fn len(self) -> usize {
        match self {
            Self::Starts(m) => m.len(),
            Self::Completions(m) => m.len(),
        }
    }

    const fn kind(self) -> &'static str {
        match self {
            Self::Starts(_) => "workflow.submitted",
            Self::Completions(_) => "execution.completed",
        }
    }
}
