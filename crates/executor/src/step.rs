//! One transaction's worth of advancing runs: deciding ready tasks,
//! finishing tasks, cascading to successors, finishing runs.
//!
//! A [`Step`] borrows the open transaction and collects the messages the
//! state changes cause; the caller writes them to the outbox and commits.
//! It advances any number of runs at once, set-based: the tasks that end
//! are made terminal in one statement per cascade round (whatever their
//! runs), the tasks decided to run start in one statement, the runs that
//! are done finish in one more. Every state change goes through a guarded
//! store function, so whatever a step decides happens at most once even if
//! two executors race.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use weft_common::exit::MainTask;
use weft_common::message::Dispatch;
use weft_common::{
    Envelope, Evaluator, ExecutionId, ExecutionStatus, ExitView, ResultLimit, TaskExecutionId,
    TaskStatus, WorkflowExecutionId, WorkflowStatus,
};
use weft_store::executions::{self, ExecutionRow, NewExecution, TaskStart};
use weft_store::runs::{self, Ending};
use weft_store::shared_limits;
use weft_store::tasks::{self, Finish, Finished, ResultOf, TaskRow};

use crate::decide::{self, Decision, Outcome, TaskResult, dispatch};
use crate::error::EngineError;

pub(crate) use crate::run::{Results, RunInfo};

/// The state changes of one transaction and the messages they cause.
pub(crate) struct Step<'a> {
    conn: &'a mut PgConnection,
    evaluator: &'a Evaluator,
    /// The largest rendered input a task may dispatch.
    limit: ResultLimit,
    runs: HashMap<WorkflowExecutionId, RunInfo>,
    /// Tasks whose needs are all terminal, to decide.
    ready: Vec<TaskRow>,
    /// Tasks that end, to make terminal together.
    ending: Vec<(TaskExecutionId, Outcome)>,
    /// Tasks decided to run, to start together, with their dispatches.
    starting: Vec<(TaskStart, Vec<Dispatch>)>,
    /// Those of them whose items are streamed once they started.
    streamed: HashSet<TaskExecutionId>,
    /// Runs whose every task is terminal.
    done: Vec<WorkflowExecutionId>,
    /// Runs with a `parallelism`, each with it: their slots are filled at
    /// the end of [`Step::settle`] (see [`crate::parallelism`]).
    limited: BTreeMap<WorkflowExecutionId, u32>,
    /// Tasks decided to run that take a lock across runs (`mutex`,
    /// `semaphore`), held until it is theirs: (task, lock key, holders at
    /// most). They get in line at the end of [`Step::settle`].
    locking: Vec<(TaskRow, String, i32)>,
    /// Tasks this step made terminal, as they are now (locked by this
    /// transaction): a successor decided in the same step reads them from
    /// here instead of from the database.
    ended: HashMap<WorkflowExecutionId, HashMap<String, TaskRow>>,
    /// How long relays leave this step's messages alone (see
    /// [`outbox::enqueue`](weft_store::outbox::enqueue)).
    lease: Option<Duration>,
    /// The messages to send once the transaction commits.
    pub(crate) out: Outgoing,
}

/// The messages a transaction sends once it commits.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    /// To write to the outbox with the commit, each with its due time
    /// (`None`: at once).
    pub(crate) queued: Vec<(Envelope, Option<DateTime<Utc>>)>,
    /// Written to the outbox already by the statement that caused them,
    /// due at once: (outbox row, message).
    pub(crate) written: Vec<(i64, Envelope)>,
    /// Fan-outs without `concurrency` started with items left to dispatch
    /// (see [`decide::STREAM_WINDOW`]).
    pub(crate) streams: Vec<(WorkflowExecutionId, TaskExecutionId)>,
}

impl Outgoing {
    /// Adds another transaction part's messages.
    pub(crate) fn append(&mut self, mut other: Self) {
        self.queued.append(&mut other.queued);
        self.written.append(&mut other.written);
        self.streams.append(&mut other.streams);
    }
}

impl std::fmt::Debug for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("runs", &self.runs.len())
            .field("queued", &self.out.queued.len())
            .field("written", &self.out.written.len())
            .finish_non_exhaustive()
    }
}

/// Dispatches written to the outbox by the statement that starts their
/// tasks, at most. A wider fan-out's go to the outbox with the commit, after
/// its executions are stored and dropped: its executions and its encoded
/// messages are never all held at once.
const WRITTEN_WITH_START: usize = 4_096;

impl<'a> Step<'a> {
    pub(crate) fn new(
        conn: &'a mut PgConnection,
        evaluator: &'a Evaluator,
        limit: ResultLimit,
        lease: Option<Duration>,
    ) -> Self {
        Self {
            conn,
            evaluator,
            limit,
            runs: HashMap::new(),
            ready: Vec::new(),
            ending: Vec::new(),
            starting: Vec::new(),
            streamed: HashSet::new(),
            done: Vec::new(),
            limited: BTreeMap::new(),
            locking: Vec::new(),
            ended: HashMap::new(),
            lease,
            out: Outgoing::default(),
        }
    }

    /// Makes a run known to the step: every task handed to it must be of a
    /// run added first.
    pub(crate) fn add_run(&mut self, run: RunInfo) {
        if let (Some(limit), true) = (run.workflow.parallelism(), run.status.dispatches()) {
            self.limited.insert(run.id, limit);
        }
        self.runs.insert(run.id, run);
    }

    /// The open connection, for the caller's own queries.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        self.conn
    }

    /// Decides a task whose needs are all terminal (at [`Step::settle`]).
    pub(crate) fn decide(&mut self, task: TaskRow) {
        self.ready.push(task);
    }

    /// Makes a task terminal (at [`Step::settle`]), counts it as a finished
    /// need of its successors, decides those that become ready, and finishes
    /// the run when this was its last task.
    pub(crate) fn finish_task(&mut self, task: &TaskRow, outcome: Outcome) {
        self.ending.push((task.id, outcome));
    }

    /// Takes in tasks a statement of the caller made terminal (see
    /// [`tasks::finish`]): the step decides the successors that became
    /// ready and finishes the runs that are done.
    pub(crate) fn absorb(&mut self, finished: Finished) {
        for task in finished.tasks {
            tracing::debug!(workflow_execution_id = %task.workflow_execution_id, task = %task.task_name, status = %task.status, "task finished");
            self.ended
                .entry(task.workflow_execution_id)
                .or_default()
                .insert(task.task_name.clone(), task);
        }
        self.ready.extend(finished.ready);
        self.done.extend(finished.runs_done);
    }

    /// Carries out what was handed to the step, round by round: decide the
    /// ready tasks; make those that end terminal (one statement), which
    /// makes further tasks ready; until nothing cascades. Then start the
    /// tasks decided to run (one statement), fill the free run-wide slots
    /// of limited runs and finish the runs that are done.
    pub(crate) async fn settle(&mut self) -> Result<(), EngineError> {
        loop {
            self.decide_ready().await?;
            if self.ending.is_empty() {
                break;
            }
            self.end_tasks().await?;
        }
        self.start_tasks().await?;
        self.take_locks().await?;
        self.fill_slots().await?;
        self.finish_runs().await
    }

    /// Puts the tasks this step started that take a lock across runs in
    /// line for it (after their rows and executions exist, so a lock
    /// granted now dispatches them at once) and dispatches those that hold
    /// it; the others wait, holding no worker slot, until the end of a
    /// holder grants it to them (see `weft_store::shared_limits`).
    async fn take_locks(&mut self) -> Result<(), EngineError> {
        if self.locking.is_empty() {
            return Ok(());
        }
        let locking = std::mem::take(&mut self.locking);
        let admissions: Vec<shared_limits::TaskAdmission> = locking
            .iter()
            .map(|(task, key, limit)| shared_limits::TaskAdmission {
                task: task.id,
                run: task.workflow_execution_id,
                key: key.clone(),
                limit: *limit,
            })
            .collect();
        let holding = shared_limits::admit_tasks(self.conn, &admissions).await?;
        for (task, key, _) in &locking {
            if holding.contains(&task.id) {
                self.dispatch_held(task).await?;
            } else {
                tracing::info!(workflow_execution_id = %task.workflow_execution_id, task = %task.task_name, lock = %key, "task waits for its lock");
            }
        }
        Ok(())
    }

    /// Dispatches a plain task held for its lock, now that it holds it
    /// (its one execution, `pending → queued`, claimed through the task's
    /// counter so a second call dispatches nothing).
    pub(crate) async fn dispatch_held(&mut self, task: &TaskRow) -> Result<(), EngineError> {
        let run = run_of(&self.runs, task.workflow_execution_id)?;
        if !run.dispatches_for(task.exit_handler) {
            return Ok(());
        }
        let claimed = tasks::claim_next_items(self.conn, task.id, 1).await?;
        if claimed.is_empty() {
            return Ok(());
        }
        let attempt = task.attempt_base + 1;
        let execution = weft_store::parallelism::queue_plain(self.conn, task.id, attempt)
            .await?
            .ok_or_else(|| {
                EngineError::Inconsistent(format!(
                    "task `{}` of run {} holds its lock but has no pending execution",
                    task.task_name, task.workflow_execution_id
                ))
            })?;
        let spec = run.spec(&task.task_name)?;
        let message = dispatch(spec, task, execution.id, None, attempt, execution.input);
        self.out.queued.push((Envelope::new(message), None));
        Ok(())
    }

    /// Dispatches what waits for run-wide slots in every limited run of
    /// the step, in run id order (the order their rows are locked in).
    async fn fill_slots(&mut self) -> Result<(), EngineError> {
        for (id, limit) in &self.limited {
            let run = run_of(&self.runs, *id)?;
            if run.status.dispatches() {
                crate::parallelism::fill(self.conn, run, *limit, &mut self.out).await?;
            }
        }
        Ok(())
    }

    /// Whether `task`'s executions wait for the run-wide slots of its
    /// (limited) run, to be dispatched by [`Step::fill_slots`].
    fn held(&self, run: &RunInfo, task: &str) -> Result<bool, EngineError> {
        Ok(self.limited.contains_key(&run.id) && run.spec(task)?.counts_toward_parallelism())
    }

    /// Decides every ready task, reading the tasks they refer to in one
    /// statement.
    async fn decide_ready(&mut self) -> Result<(), EngineError> {
        if self.ready.is_empty() {
            return Ok(());
        }
        let ready = std::mem::take(&mut self.ready);
        let exit_views = self.exit_views(&ready).await?;
        // The tasks they name, each with whether its result is wanted (an
        // expression refers to it) or only its status (a need).
        let mut wanted: BTreeMap<(WorkflowExecutionId, &str), bool> = BTreeMap::new();
        for task in &ready {
            let run = run_of(&self.runs, task.workflow_execution_id)?;
            if !run.dispatches_for(task.exit_handler) {
                continue;
            }
            let spec = run.spec(&task.task_name)?;
            for name in spec.needs() {
                wanted.entry((run.id, name.as_str())).or_insert(false);
            }
            for name in spec.references() {
                wanted.insert((run.id, name.as_str()), true);
            }
        }
        // A task this step ended is read from here — but a fan-out's
        // result, which the statement that ended it does not return.
        let ended = |((run, name), result): (&(WorkflowExecutionId, &str), &bool)| {
            self.ended
                .get(run)
                .and_then(|tasks| tasks.get(*name))
                .filter(|row| !(*result && row.with_items))
        };
        let missing: Vec<tasks::ByName<'_>> = wanted
            .iter()
            .filter(|key| ended(*key).is_none())
            .map(|((run, name), result)| (*run, *name, *result))
            .collect();
        let mut rows = tasks::by_names(self.conn, &missing).await?;
        // The results read are moved out of their rows, to be shared.
        let results = Results::take(self.conn, &self.runs, &mut rows).await?;
        let mut by_run: HashMap<WorkflowExecutionId, Vec<&TaskRow>> = HashMap::new();
        for row in wanted.iter().filter_map(ended).chain(&rows) {
            by_run
                .entry(row.workflow_execution_id)
                .or_default()
                .push(row);
        }
        // Only in a round of `weft retry` that keeps a fan-out's items.
        let keeping: Vec<(TaskExecutionId, i32)> = ready
            .iter()
            .filter(|t| t.keep_items)
            .map(|t| (t.id, t.attempt_base))
            .collect();
        let mut kept: HashMap<TaskExecutionId, decide::Kept> = HashMap::new();
        for item in executions::keepable(self.conn, &keeping).await? {
            kept.entry(item.task_execution_id)
                .or_default()
                .entry(item.item_index)
                .or_default()
                .push((item.id, item.input));
        }
        let mut decisions = Vec::with_capacity(ready.len());
        for task in ready {
            let run = run_of(&self.runs, task.workflow_execution_id)?;
            let rows = by_run.get(&run.id).map_or(&[][..], Vec::as_slice);
            let decision = decide::decide(
                self.evaluator,
                self.limit,
                run,
                &results,
                &task,
                rows,
                kept.get(&task.id),
                exit_views.get(&run.id),
            )?;
            // A lock across runs is named from what the task sees.
            let lock = run.spec(&task.task_name)?.lock().map(|lock| {
                let ctx = run.context(rows, &results);
                let claim = lock.claim_for(self.evaluator, &ctx);
                (claim, i32::try_from(lock.limit()).unwrap_or(i32::MAX))
            });
            decisions.push((task, decision, lock));
        }
        for (task, decision, lock) in decisions {
            match decision {
                Decision::Ends(outcome) => self.ending.push((task.id, outcome)),
                Decision::Empty => {
                    if tasks::start(self.conn, task.id, 0, 0).await? {
                        let outcome = Outcome {
                            status: TaskStatus::Succeeded,
                            result: TaskResult::Value(Value::Array(Vec::new())),
                            error: None,
                        };
                        self.ending.push((task.id, outcome));
                    }
                }
                Decision::AllKept(start) => {
                    let started = executions::start_tasks(
                        self.conn,
                        std::slice::from_ref(&start),
                        &[],
                        self.lease,
                    )
                    .await?;
                    if started.tasks.contains(&task.id) {
                        let outcome = Outcome {
                            status: TaskStatus::Succeeded,
                            result: TaskResult::Items,
                            error: None,
                        };
                        self.ending.push((task.id, outcome));
                    }
                }
                Decision::Runs(mut start, mut dispatches) => {
                    let run = run_of(&self.runs, task.workflow_execution_id)?;
                    if let Some((claim, limit)) = lock {
                        match claim {
                            Ok((key, _)) => {
                                crate::parallelism::hold(&mut start, &mut dispatches);
                                self.locking.push((task.clone(), key, limit));
                            }
                            Err(why) => {
                                let outcome = Outcome {
                                    status: TaskStatus::Failed,
                                    result: TaskResult::Nothing,
                                    error: Some(why),
                                };
                                self.ending.push((task.id, outcome));
                                continue;
                            }
                        }
                    } else if self.held(run, &task.task_name)? {
                        crate::parallelism::hold(&mut start, &mut dispatches);
                    } else if task.concurrency.is_none() && start.dispatched < start.items {
                        self.streamed.insert(task.id);
                    }
                    self.starting.push((start, dispatches));
                }
            }
        }
        Ok(())
    }

    /// What the exit handlers among `ready` see of their runs
    /// (`workflow.status`, `.failures`, `.duration`), by run: read only for
    /// runs with an exit handler to decide.
    async fn exit_views(
        &mut self,
        ready: &[TaskRow],
    ) -> Result<HashMap<WorkflowExecutionId, ExitView>, EngineError> {
        let mut runs: Vec<WorkflowExecutionId> = ready
            .iter()
            .filter(|t| t.exit_handler)
            .map(|t| t.workflow_execution_id)
            .collect();
        if runs.is_empty() {
            return Ok(HashMap::new());
        }
        runs.sort_by_key(|r| r.as_uuid());
        runs.dedup();
        let rows = weft_store::exit::main_tasks(self.conn, &runs).await?;
        let mut views = HashMap::with_capacity(runs.len());
        for run in runs {
            let of_run: Vec<&weft_store::exit::MainTask> = rows
                .iter()
                .filter(|r| r.workflow_execution_id == run)
                .collect();
            let main: Vec<MainTask<'_>> = of_run
                .iter()
                .map(|r| MainTask {
                    name: &r.task_name,
                    status: r.status,
                    allow_failure: r.allow_failure,
                    error: r.error.as_deref(),
                })
                .collect();
            let canceling = of_run.first().is_some_and(|r| r.canceling);
            let duration = of_run.first().map_or(0.0, |r| r.duration);
            views.insert(run, ExitView::of(canceling, &main, duration));
        }
        Ok(views)
    }

    /// Dispatches up to `count` next items of a with_items task: one per
    /// slot its finished items freed.
    pub(crate) async fn dispatch_next_items(
        &mut self,
        task: &TaskRow,
        count: i32,
    ) -> Result<(), EngineError> {
        let run = run_of(&self.runs, task.workflow_execution_id)?;
        // A limited run's next items are dispatched by `fill_slots`.
        if !run.dispatches_for(task.exit_handler) || self.held(run, &task.task_name)? {
            return Ok(());
        }
        let claimed = tasks::claim_next_items(self.conn, task.id, count).await?;
        if claimed.is_empty() {
            return Ok(());
        }
        let attempt = task.attempt_base + 1;
        let wanted = claimed.len();
        let by_seq = task.items_kept > 0;
        let mut queued =
            executions::queue_items(self.conn, task.id, claimed.clone(), attempt, by_seq).await?;
        queued.sort_by_key(|e| e.item_index);
        if queued.len() != wanted {
            return Err(EngineError::Inconsistent(format!(
                "items {claimed:?} of task `{}` in run {} were claimed but only {} were pending",
                task.task_name,
                run.id,
                queued.len()
            )));
        }
        let spec = run.spec(&task.task_name)?;
        for execution in queued {
            let dispatch = dispatch(
                spec,
                task,
                execution.id,
                execution.item_index,
                attempt,
                execution.input,
            );
            self.out.queued.push((Envelope::new(dispatch), None));
        }
        Ok(())
    }

    /// Schedules the next attempt of a failed execution, due after `delay`
    /// (the backoff [`RetryPolicy::decide`](weft_common::RetryPolicy::decide)
    /// chose).
    pub(crate) async fn retry(
        &mut self,
        task: &TaskRow,
        failed: &ExecutionRow,
        delay: Duration,
    ) -> Result<(), EngineError> {
        let run = run_of(&self.runs, task.workflow_execution_id)?;
        let spec = run.spec(&task.task_name)?;
        let next = failed.attempt + 1;
        let due = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        let id = ExecutionId::new();
        let new = NewExecution {
            id,
            item_index: failed.item_index,
            attempt: next,
            status: ExecutionStatus::Queued,
            input: serde_json::value::to_raw_value(&failed.input).map_err(|e| {
                EngineError::Inconsistent(format!("a stored input does not encode again: {e}"))
            })?,
            due_at: Some(due),
            seq: failed.seq,
            kept_from: None,
            item_label: failed.item_label.clone(),
        };
        executions::create_many(
            self.conn,
            run.id,
            task.id,
            failed.round,
            failed.timeout_ms,
            std::slice::from_ref(&new),
        )
        .await?;
        let dispatch = dispatch(
            spec,
            task,
            id,
            failed.item_index,
            next,
            failed.input.clone(),
        );
        self.out.queued.push((Envelope::new(dispatch), Some(due)));
        Ok(())
    }

    /// Makes the ending tasks terminal (guarded) in one statement; their
    /// successors that became ready wait to be decided, and runs left
    /// without an unfinished task to be finished.
    async fn end_tasks(&mut self) -> Result<(), EngineError> {
        let ending = std::mem::take(&mut self.ending);
        let finishes: Vec<Finish<'_>> = ending
            .iter()
            .map(|(task, outcome)| Finish {
                task: *task,
                to: outcome.status,
                result: match &outcome.result {
                    TaskResult::Nothing => ResultOf::Nothing,
                    TaskResult::Value(value) => ResultOf::Value(value),
                    TaskResult::Items => ResultOf::Items,
                },
                error: outcome.error.as_deref(),
            })
            .collect();
        let finished = tasks::finish(self.conn, &finishes).await?;
        self.absorb(finished);
        Ok(())
    }

    /// Starts the tasks decided to run (guarded) in one statement, and
    /// sends the dispatches of those it started.
    async fn start_tasks(&mut self) -> Result<(), EngineError> {
        if self.starting.is_empty() {
            return Ok(());
        }
        let mut starting = std::mem::take(&mut self.starting);
        // One lock order for every transaction.
        starting.sort_by_key(|(start, _)| start.task.as_uuid());
        let (starts, dispatches): (Vec<TaskStart>, Vec<Vec<Dispatch>>) =
            starting.into_iter().unzip();
        if dispatches.iter().map(Vec::len).sum::<usize>() > WRITTEN_WITH_START {
            let started: HashSet<TaskExecutionId> =
                executions::start_tasks(self.conn, &starts, &[], self.lease)
                    .await?
                    .tasks
                    .into_iter()
                    .collect();
            self.stream(&starts, |task| started.contains(&task));
            drop(starts);
            for dispatches in dispatches {
                if dispatches
                    .first()
                    .is_some_and(|d| started.contains(&d.task_execution_id))
                {
                    self.out
                        .queued
                        .extend(dispatches.into_iter().map(|d| (Envelope::new(d), None)));
                }
            }
            return Ok(());
        }
        // In start order (a fan-out's items in item order): the flusher
        // publishes them in this order.
        let envelopes: Vec<(TaskExecutionId, Envelope)> = starts
            .iter()
            .zip(dispatches)
            .flat_map(|(start, dispatches)| {
                dispatches
                    .into_iter()
                    .map(move |d| (start.task, Envelope::new(d)))
            })
            .collect();
        let messages: Vec<(TaskExecutionId, &Envelope)> = envelopes
            .iter()
            .map(|(task, envelope)| (*task, envelope))
            .collect();
        let started = executions::start_tasks(self.conn, &starts, &messages, self.lease).await?;
        self.stream(&starts, |task| started.tasks.contains(&task));
        for ((_, envelope), row) in envelopes.into_iter().zip(started.written) {
            if let Some(row) = row {
                self.out.written.push((row, envelope));
            }
        }
        Ok(())
    }

    /// Hands the streamed fan-outs among `starts` that did start to the
    /// caller, to dispatch their other items once committed.
    fn stream(&mut self, starts: &[TaskStart], started: impl Fn(TaskExecutionId) -> bool) {
        for start in starts {
            if self.streamed.remove(&start.task) && started(start.task) {
                self.out.streams.push((start.run, start.task));
            }
        }
    }

    /// Decides the outcome of each run whose every task is terminal and
    /// finishes them in one statement. A run being canceled ends
    /// `canceled`: the outcome from its tasks cannot leave `canceling`, and
    /// then the run's status says so.
    async fn finish_runs(&mut self) -> Result<(), EngineError> {
        if self.done.is_empty() {
            return Ok(());
        }
        let done = std::mem::take(&mut self.done);
        // Results only for runs that render an output.
        let wanted = done
            .iter()
            .map(|id| Ok((*id, run_of(&self.runs, *id)?.workflow.output().is_some())))
            .collect::<Result<Vec<_>, EngineError>>()?;
        let mut rows = tasks::for_runs(self.conn, &wanted).await?;
        let results = Results::take(self.conn, &self.runs, &mut rows).await?;
        let mut by_run: HashMap<WorkflowExecutionId, Vec<&TaskRow>> = HashMap::new();
        for row in &rows {
            by_run
                .entry(row.workflow_execution_id)
                .or_default()
                .push(row);
        }
        let mut outcomes = Vec::with_capacity(done.len());
        for id in &done {
            let run = run_of(&self.runs, *id)?;
            let tasks = by_run.get(id).map_or(&[][..], Vec::as_slice);
            let (to, output, error) = self.run_outcome(run, tasks, &results);
            outcomes.push((run, to, output, error));
        }
        drop(results);
        let endings: Vec<Ending<'_>> = outcomes
            .iter()
            .map(|(run, to, output, error)| Ending {
                id: run.id,
                workflow: run.workflow.name(),
                to: *to,
                output: output.as_ref(),
                error: error.as_deref(),
            })
            .collect();
        let mut ended = runs::end_many(self.conn, &endings, self.lease).await?;
        // A run whose tasks are all terminal but that is `canceling` cannot
        // take the outcome of its tasks: it ends canceled.
        let moved: HashSet<WorkflowExecutionId> = ended.iter().map(|e| e.id).collect();
        let mut canceling = Vec::new();
        for ending in endings.iter().filter(|e| !moved.contains(&e.id)) {
            if runs::status(self.conn, ending.id, runs::RunLock::None).await?
                == WorkflowStatus::Canceling
            {
                // The output rendered for it stays: a canceled run reports
                // what it did too.
                canceling.push(Ending {
                    to: WorkflowStatus::Canceled,
                    error: Some("canceled by request"),
                    ..*ending
                });
            }
        }
        ended.extend(runs::end_many(self.conn, &canceling, self.lease).await?);
        drop(endings);
        drop(outcomes);
        for run in ended {
            if let Some(info) = self.runs.get_mut(&run.id) {
                info.status = run.to;
            }
            tracing::info!(workflow_execution_id = %run.id, status = %run.to, "run finished");
            self.out.written.push((run.outbox_id, run.message));
            // A child run's end, reported to its parent execution.
            if let Some((row, completion)) = run.parent {
                self.out.written.push((row, completion));
            }
        }
        Ok(())
    }

    /// How a run whose every task is terminal ends: its status, output and
    /// error. The output is rendered whatever the outcome
    /// ([`Workflow::render_output`]): a part that cannot be rendered is
    /// `null` and its reason joins the run's error; a part broken by the
    /// template itself (not by a task without data) fails a run that would
    /// have succeeded.
    fn run_outcome(
        &self,
        run: &RunInfo,
        tasks: &[&TaskRow],
        results: &Results,
    ) -> (WorkflowStatus, Option<Value>, Option<String>) {
        let status_of = |name: &str| tasks.iter().find(|t| t.task_name == name).map(|t| t.status);
        let rendered =
            run.workflow
                .render_output(self.evaluator, &run.context(tasks, results), status_of);
        // A secret the output reads is shown as `***` (validation warns).
        let (output, notes, broken) = match rendered {
            Some(mut r) => {
                run.secrets.redact(&mut r.value);
                let notes = run.secrets.redact_text(&r.problems.join("; ")).into_owned();
                (Some(r.value), notes, r.broken)
            }
            None => (None, String::new(), false),
        };
        let with_notes = |error: String| {
            if notes.is_empty() {
                error
            } else if error.is_empty() {
                notes.clone()
            } else {
                format!("{error}; {notes}")
            }
        };
        // The main tasks' failure first: a failing exit handler fails only
        // a run they would have let succeed (ADR 0011).
        let mut main_first = tasks
            .iter()
            .filter(|t| !t.exit_handler)
            .chain(tasks.iter().filter(|t| t.exit_handler));
        if let Some(failed) = main_first.find(|t| {
            (t.status == TaskStatus::Failed && !t.allow_failure) || t.status == TaskStatus::Canceled
        }) {
            let why = failed.error.as_deref().unwrap_or("no error recorded");
            let error = format!("task `{}` {}: {why}", failed.task_name, failed.status);
            return (WorkflowStatus::Failed, output, Some(with_notes(error)));
        }
        let error = (!notes.is_empty()).then(|| with_notes(String::new()));
        let status = if broken {
            WorkflowStatus::Failed
        } else {
            WorkflowStatus::Succeeded
        };
        (status, output, error)
    }
}

fn run_of(
    runs: &HashMap<WorkflowExecutionId, RunInfo>,
    id: WorkflowExecutionId,
) -> Result<&RunInfo, EngineError> {
    runs.get(&id).ok_or_else(|| {
        EngineError::Inconsistent(format!(
            "a step was handed a task of run {id} it does not know"
        ))
    })
}

/// A uniform sample in [0, 1) for retry jitter (`delay_before` maps it
/// onto ±`jitter`).
pub(crate) fn rand_unit() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests;
