//! Recording completions and advancing their runs: a retry, the next
//! items, or the end of a task and what cascades from it — for one report
//! or a batch of them, set-based where it can be.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use sqlx::PgConnection;
use weft_common::limits::refit_report;
use weft_common::message::ExecutionCompleted;
use weft_common::{
    AttemptFacts, ExecutionStatus, ResultLimit, RetryDecision, TaskExecutionId, TaskStatus,
    WorkflowExecutionId, WorkflowStatus,
};
use weft_store::executions::{self, Completed, Completion};
use weft_store::tasks::{self, ItemsDone};
use weft_store::{attempts, cancel};

use crate::decide::{Outcome, TaskResult};
use crate::engine::{Applied, Engine};
use crate::error::EngineError;
use crate::step::{Outgoing, RunInfo, Step, rand_unit};

impl Engine {
    /// Records a completion (guarded) and advances the run: a retry, the
    /// next item, or the end of the task and what cascades from it. Commits
    /// `tx`.
    pub(crate) async fn complete(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        completion: &Completion<'_>,
    ) -> Result<Applied, EngineError> {
        let (applied, messages) = self
            .complete_in(&mut tx, std::slice::from_ref(completion))
            .await?;
        self.commit(tx, messages).await?;
        Ok(applied.first().copied().unwrap_or(Applied::Duplicate))
    }

    /// [`Engine::complete`] for several completions inside an open
    /// transaction, set-based where it can be: one statement records them
    /// all, one counts the finished items of every fan-out (or failed
    /// task) they belong to (a wide fan-out's counter row is updated once),
    /// then each run is planned in run order (so concurrent batches lock
    /// runs in the same order) and one [`Step`] carries the plans out. A
    /// plain task whose execution succeeded was finished by the recording
    /// statement itself; the step only cascades from it. Returns one
    /// [`Applied`] per completion and the messages to write to the outbox
    /// with the commit.
    pub(crate) async fn complete_in(
        &self,
        tx: &mut PgConnection,
        completions: &[Completion<'_>],
    ) -> Result<(Vec<Applied>, Outgoing), EngineError> {
        // Limited runs (`parallelism`) are locked first: their slots are
        // filled at the end, under this lock (see `crate::parallelism`).
        // Runs known to have none are not looked up.
        let runs: Vec<WorkflowExecutionId> = completions.iter().map(|c| c.run).collect();
        let unknown = self.inner.unlimited.unknown(&runs);
        let limited: HashSet<WorkflowExecutionId> = weft_store::parallelism::lock(tx, &unknown)
            .await?
            .into_iter()
            .collect();
        let recorded = executions::complete_many(tx, completions).await?;
        // A recorded completion proves its run started, so its
        // `parallelism` (none, if the lock found none) is final.
        self.inner.unlimited.note(
            completions
                .iter()
                .zip(&recorded.completions)
                .filter(|(c, r)| r.is_some() && !limited.contains(&c.run))
                .map(|(c, _)| c.run),
        );
        let applied = recorded
            .completions
            .iter()
            .map(|r| {
                if r.is_some() {
                    Applied::Changed
                } else {
                    Applied::Duplicate
                }
            })
            .collect();
        let mut runs: BTreeMap<WorkflowExecutionId, RunPlan<'_>> = BTreeMap::new();
        let mut items: BTreeMap<TaskExecutionId, Items<'_>> = BTreeMap::new();
        for (completion, completed) in completions.iter().zip(&recorded.completions) {
            let Some(completed) = completed else { continue };
            let execution = &completed.execution;
            let plan = runs
                .entry(execution.workflow_execution_id)
                .or_insert_with(|| RunPlan::new(completed));
            if completed.task_finished {
                // A plain task's one execution succeeded: the statement
                // finished the task; the step cascades from it.
                plan.finished = true;
                continue;
            }
            let exit_handler = match completed.run_status {
                WorkflowStatus::Running => false,
                WorkflowStatus::Canceling => {
                    plan.settle = true;
                    // Exit handlers run to the end in a canceling run.
                    let workflow = self.inner.catalog.get(tx, completed.definition_id).await?;
                    if !workflow
                        .task(&completed.task_name)
                        .is_some_and(weft_common::Task::is_exit_handler)
                    {
                        continue;
                    }
                    true
                }
                // A late report for a finished (or not yet started) run:
                // the execution's guard flipped, nothing else follows.
                _ => continue,
            };
            let workflow = self.inner.catalog.get(tx, completed.definition_id).await?;
            let spec = workflow.task(&completed.task_name).ok_or_else(|| {
                EngineError::Inconsistent(format!(
                    "task `{}` is not in the workflow of run {}",
                    completed.task_name, execution.workflow_execution_id
                ))
            })?;
            plan.exit_handlers |= exit_handler;
            if completion.status.is_retryable() {
                match self.retry_decision(tx, spec, completed, completion).await? {
                    RetryDecision::Retry { delay } => {
                        plan.retries.push((execution, delay));
                        continue;
                    }
                    RetryDecision::Stop(reason) => {
                        if let Some(note) = reason.note() {
                            tracing::info!(execution_id = %execution.id, task = %completed.task_name, %note, "not retried");
                            attempts::note_error(tx, execution.id, &note).await?;
                        }
                    }
                }
            }
            let task = execution.task_execution_id;
            let entry = items.entry(task).or_insert_with(|| Items {
                done: ItemsDone {
                    task,
                    succeeded: 0,
                    failed: 0,
                },
                last: execution,
                with_items: spec.with_items().is_some(),
            });
            if completion.status == ExecutionStatus::Succeeded {
                entry.done.succeeded += 1;
            } else {
                entry.done.failed += 1;
            }
            entry.last = execution;
            if !plan.tasks.contains(&task) {
                plan.tasks.push(task);
            }
        }
        let done: Vec<ItemsDone> = items.values().map(|i| i.done).collect();
        let mut counted: HashMap<TaskExecutionId, tasks::TaskRow> =
            tasks::items_finished(tx, &done)
                .await?
                .into_iter()
                .map(|t| (t.id, t))
                .collect();

        let mut step = self.step(tx);
        step.absorb(recorded.finished);
        for (run_id, plan) in runs {
            if plan.settle {
                // Settling writes its own outbox rows for the relay.
                cancel::settle(step.conn(), run_id, &plan.first.workflow_name).await?;
                self.inner.outbox_written.notify_one();
            }
            // A limited run's finished executions freed slots: its step
            // fills them, whatever else it does.
            if plan.retries.is_empty()
                && !plan.finished
                && plan.tasks.iter().all(|t| !counted.contains_key(t))
                && !(limited.contains(&run_id) && plan.first.run_status == WorkflowStatus::Running)
            {
                continue;
            }
            let workflow = self
                .inner
                .catalog
                .get(step.conn(), plan.first.definition_id)
                .await?;
            step.add_run(RunInfo::new(
                run_id,
                (plan.first.run_status, plan.first.run_round),
                &plan.first.run_input,
                workflow,
                plan.first
                    .run_scheduled_at
                    .map(weft_common::schedule::tick_text),
                self.inner.config.secrets.as_ref(),
            ));
            for (failed, delay) in plan.retries {
                let task = tasks::get(step.conn(), failed.task_execution_id).await?;
                step.retry(&task, failed, delay).await?;
            }
            for task in plan.tasks {
                let (Some(counted), Some(entry)) = (counted.remove(&task), items.get(&task)) else {
                    continue;
                };
                if counted.all_items_done() {
                    let outcome = self
                        .task_outcome(&mut step, &counted, entry.last, entry.with_items)
                        .await?;
                    step.finish_task(&counted, outcome);
                } else if entry.done.succeeded > 0 {
                    step.dispatch_next_items(&counted, entry.done.succeeded)
                        .await?;
                }
            }
        }
        step.settle().await?;
        Ok((applied, std::mem::take(&mut step.out)))
    }

    /// Whether a failed attempt is tried again: the task's
    /// [`RetryPolicy::decide`](weft_common::RetryPolicy::decide), given the
    /// attempt's error, exit code, try number (in this round) and — only
    /// when `retry.max_duration` is set — the time since the item's first
    /// attempt started.
    async fn retry_decision(
        &self,
        tx: &mut PgConnection,
        spec: &weft_common::Task,
        completed: &Completed,
        completion: &Completion<'_>,
    ) -> Result<RetryDecision, EngineError> {
        let execution = &completed.execution;
        let policy = spec.retry();
        let elapsed = match policy.max_duration {
            None => Duration::ZERO,
            Some(_) => {
                let first = attempts::first_started(
                    tx,
                    execution.task_execution_id,
                    execution.item_index,
                    completed.attempt_base,
                )
                .await?;
                first
                    .and_then(|first| (chrono::Utc::now() - first).to_std().ok())
                    .unwrap_or(Duration::ZERO)
            }
        };
        let input = completed.run_input.as_object().cloned().unwrap_or_default();
        let facts = AttemptFacts {
            status: completion.status,
            attempt: u32::try_from(execution.attempt - completed.attempt_base).unwrap_or(u32::MAX),
            error: completion.error,
            exit_code: completion.logs.and_then(|logs| logs.exit_code),
            elapsed,
            input: &input,
        };
        Ok(policy.decide(&self.inner.evaluator, &facts, rand_unit()))
    }

    /// How a task whose items are all done ends.
    async fn task_outcome(
        &self,
        step: &mut Step<'_>,
        task: &tasks::TaskRow,
        last: &executions::ExecutionRow,
        with_items: bool,
    ) -> Result<Outcome, EngineError> {
        if task.items_failed > 0 {
            executions::cancel_pending(step.conn(), task.id).await?;
            let first = executions::first_failure(step.conn(), task.id, task.attempt_base).await?;
            let error = match (with_items, first) {
                (true, Some(first)) => format!(
                    "{} of {} items failed; item {}: {}",
                    task.items_failed,
                    task.items_total.unwrap_or_default(),
                    item_name(first.item_index, first.item_label.as_deref()),
                    first.error
                ),
                (_, Some(first)) => first.error,
                (_, None) => "failed".to_owned(),
            };
            // A failed fan-out keeps what its items produced: one entry
            // per item, `null` for those that did not succeed.
            return Ok(Outcome {
                status: TaskStatus::Failed,
                result: if with_items {
                    TaskResult::Items
                } else {
                    TaskResult::Nothing
                },
                error: Some(error),
            });
        }
        let result = if with_items {
            TaskResult::Items
        } else {
            TaskResult::Value(last.result.clone().unwrap_or_default())
        };
        Ok(Outcome {
            status: TaskStatus::Succeeded,
            result,
            error: None,
        })
    }
}

/// What a batch of completions does to one run.
struct RunPlan<'c> {
    /// One of its recorded completions: the run's status, input, workflow.
    first: &'c Completed,
    /// It is canceling: settle it once its completions are recorded.
    settle: bool,
    /// It is canceling and some of its completions are of exit handlers,
    /// which go on as in a running run.
    exit_handlers: bool,
    /// Executions that failed and are tried again, each after its delay.
    retries: Vec<(&'c executions::ExecutionRow, Duration)>,
    /// Some of its tasks were finished with their succeeded execution.
    finished: bool,
    /// Tasks with finished items, in the order they were reported.
    tasks: Vec<TaskExecutionId>,
}

impl<'c> RunPlan<'c> {
    fn new(first: &'c Completed) -> Self {
        Self {
            first,
            settle: false,
            exit_handlers: false,
            retries: Vec::new(),
            finished: false,
            tasks: Vec::new(),
        }
    }
}

/// The finished items of one task in a batch of completions.
struct Items<'c> {
    done: ItemsDone,
    /// The last of them.
    last: &'c executions::ExecutionRow,
    with_items: bool,
}

/// `m`, or — when its result (or error) is over the limit, from a worker
/// running with a bigger `--max-result-bytes` — the failed attempt it
/// stands for, without the result: storing it would put a value of any
/// size in a `jsonb` column (PostgreSQL refuses one over 255 MB, and the
/// run would stick) and in the memory of whoever reads the task. The rule
/// is the worker's own, [`refit_report`]; its logs are cut to the limit
/// the worker's way too ([`AttemptLogs::fit`](weft_common::AttemptLogs::fit)).
pub(crate) fn bounded(m: &ExecutionCompleted, limit: ResultLimit) -> Cow<'_, ExecutionCompleted> {
    let refit = refit_report(limit, m.status, m.result.as_ref(), m.error.as_deref());
    let logs_fit = m.logs.as_ref().is_none_or(|logs| logs.fits(limit));
    if refit.is_none() && logs_fit {
        return Cow::Borrowed(m);
    }
    let mut bounded = m.clone();
    if let Some(refit) = refit {
        tracing::warn!(execution_id = %m.execution_id, worker_id = %m.worker_id, error = ?refit.error, "a completion over the result limit");
        bounded.status = refit.status;
        if refit.drop_result {
            bounded.result = None;
        }
        bounded.error = refit.error;
    }
    if let (false, Some(logs)) = (logs_fit, bounded.logs.as_mut()) {
        tracing::warn!(execution_id = %m.execution_id, worker_id = %m.worker_id, "a completion's logs over the result limit: their oldest bytes are dropped");
        logs.fit(limit);
    }
    Cow::Owned(bounded)
}

/// An item as errors name it: its index, and its value when known —
/// `3 ("b.csv")`.
fn item_name(index: i32, label: Option<&str>) -> String {
    match label {
        Some(label) => format!("{index} ({label})"),
        None => index.to_string(),
    }
}

/// The store's view of a completion report.
pub(crate) fn completion_of(m: &ExecutionCompleted) -> Result<Completion<'_>, EngineError> {
    if !m.status.is_terminal() {
        return Err(EngineError::Inconsistent(format!(
            "a completion of execution {} carries the non-terminal status `{}`",
            m.execution_id, m.status
        )));
    }
    Ok(Completion {
        id: m.execution_id,
        run: m.workflow_execution_id,
        attempt: i32::try_from(m.attempt).unwrap_or(i32::MAX),
        status: m.status,
        result: m.result.as_ref(),
        error: m.error.as_deref(),
        worker_id: Some(&m.worker_id),
        started_at: m.started_at,
        finished_at: Some(m.finished_at),
        logs: m.logs.as_ref(),
    })
}
