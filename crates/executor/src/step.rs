//! One transaction's worth of advancing a run: deciding ready tasks,
//! finishing tasks, cascading to successors, finishing the run.
//!
//! A [`Step`] borrows the open transaction and collects the messages the
//! state changes cause; the caller writes them to the outbox and commits.
//! Every state change goes through a guarded store function, so whatever a
//! step decides happens at most once even if two executors race.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use weft_common::Workflow;
use weft_common::message::{Dispatch, WorkflowFinished};
use weft_common::{
    Context, Envelope, Evaluator, ExecutionId, ExecutionStatus, Task, TaskStatus, TaskView,
    WorkflowExecutionId, WorkflowRef, WorkflowStatus,
};
use weft_store::executions::{self, ExecutionRow, NewExecution};
use weft_store::runs;
use weft_store::tasks::{self, TaskRow};

use crate::error::EngineError;

/// What a step knows about its run.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    pub(crate) id: WorkflowExecutionId,
    pub(crate) status: WorkflowStatus,
    pub(crate) input: serde_json::Map<String, Value>,
    pub(crate) workflow: Arc<Workflow>,
}

impl RunInfo {
    /// What a step needs of a stored run.
    pub(crate) fn of(run: &weft_store::runs::RunRow, workflow: Arc<Workflow>) -> Self {
        Self {
            id: run.id,
            status: run.status,
            input: run.input.as_object().cloned().unwrap_or_default(),
            workflow,
        }
    }
}

/// The state changes of one transaction and the messages they cause.
pub(crate) struct Step<'a> {
    conn: &'a mut PgConnection,
    evaluator: &'a Evaluator,
    run: RunInfo,
    ready: VecDeque<TaskRow>,
    /// Messages to write to the outbox, each with its due time.
    pub(crate) outbox: Vec<(Envelope, Option<DateTime<Utc>>)>,
}

impl std::fmt::Debug for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("run", &self.run.id)
            .field("outbox", &self.outbox.len())
            .finish_non_exhaustive()
    }
}

/// How a task ends when it ends without (more) executions.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) status: TaskStatus,
    pub(crate) result: Option<Value>,
    pub(crate) error: Option<String>,
}

impl Outcome {
    fn failed(error: impl Into<String>) -> Self {
        Self {
            status: TaskStatus::Failed,
            result: None,
            error: Some(error.into()),
        }
    }

    fn skipped(reason: impl Into<String>) -> Self {
        Self {
            status: TaskStatus::Skipped,
            result: None,
            error: Some(reason.into()),
        }
    }
}

impl<'a> Step<'a> {
    pub(crate) fn new(conn: &'a mut PgConnection, evaluator: &'a Evaluator, run: RunInfo) -> Self {
        Self {
            conn,
            evaluator,
            run,
            ready: VecDeque::new(),
            outbox: Vec::new(),
        }
    }

    /// The open connection, for the caller's own queries.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        self.conn
    }

    /// Decides a task whose needs are all terminal, then everything that
    /// cascades from it.
    pub(crate) async fn decide(&mut self, task: TaskRow) -> Result<(), EngineError> {
        self.ready.push_back(task);
        self.drain().await
    }

    async fn drain(&mut self) -> Result<(), EngineError> {
        while let Some(task) = self.ready.pop_front() {
            if let Some(outcome) = self.decide_one(&task).await? {
                self.finish_one(&task, outcome).await?;
            }
        }
        Ok(())
    }

    /// Runs or skips one ready task. `Some(outcome)` when the task ends here
    /// (skipped, failed to render, empty item list) without any execution.
    async fn decide_one(&mut self, task: &TaskRow) -> Result<Option<Outcome>, EngineError> {
        if !self.run.status.dispatches() {
            return Ok(Some(Outcome {
                status: TaskStatus::Canceled,
                result: None,
                error: Some("the run was canceled".into()),
            }));
        }
        let workflow = Arc::clone(&self.run.workflow);
        let spec = spec_of(&workflow, self.run.id, &task.task_name)?;
        let mut names: BTreeSet<&str> = spec.needs().iter().map(String::as_str).collect();
        names.extend(spec.references().iter().map(String::as_str));
        let rows = if names.is_empty() {
            Vec::new()
        } else {
            let names: Vec<&str> = names.into_iter().collect();
            tasks::by_names(self.conn, self.run.id, &names).await?
        };

        let needs: Vec<TaskStatus> = rows
            .iter()
            .filter(|r| spec.needs().contains(&r.task_name))
            .map(|r| r.status)
            .collect();
        if !spec.trigger().is_satisfied(&needs) {
            let states = rows
                .iter()
                .filter(|r| spec.needs().contains(&r.task_name))
                .map(|r| format!("{} {}", r.task_name, r.status))
                .collect::<Vec<_>>()
                .join(", ");
            return Ok(Some(Outcome::skipped(format!(
                "trigger `{}` not met ({states})",
                spec.trigger()
            ))));
        }

        let mut ctx = self.context(&rows);
        if let Some(when) = spec.when() {
            match self.evaluator.condition(when, &ctx) {
                Ok(true) => {}
                Ok(false) => {
                    return Ok(Some(Outcome::skipped(format!("`when: {when}` was false"))));
                }
                Err(e) => return Ok(Some(Outcome::failed(format!("evaluating `when`: {e}")))),
            }
        }

        let inputs = match self.render_inputs(spec, &mut ctx) {
            Ok(inputs) => inputs,
            Err(outcome) => return Ok(Some(outcome)),
        };
        if inputs.is_empty() {
            // Nothing to run: the task starts and succeeds at once with `[]`.
            if !tasks::start(self.conn, task.id, 0, 0).await? {
                return Ok(None);
            }
            return Ok(Some(Outcome {
                status: TaskStatus::Succeeded,
                result: Some(Value::Array(Vec::new())),
                error: None,
            }));
        }
        let total = to_i32(inputs.len());
        let in_flight = spec
            .concurrency()
            .map_or(total, |c| total.min(to_i32(c as usize)));
        let with_items = spec.with_items().is_some();
        let new: Vec<NewExecution> = inputs
            .into_iter()
            .enumerate()
            .map(|(i, input)| NewExecution {
                id: ExecutionId::new(),
                item_index: with_items.then(|| to_i32(i)),
                attempt: task.attempt_base + 1,
                status: if to_i32(i) < in_flight {
                    ExecutionStatus::Queued
                } else {
                    ExecutionStatus::Pending
                },
                input,
                due_at: None,
            })
            .collect();
        let timeout_ms = spec
            .timeout()
            .map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
        let started = executions::start_task(
            self.conn,
            self.run.id,
            task.id,
            (total, in_flight),
            timeout_ms,
            &new,
        )
        .await?;
        if !started {
            return Ok(None);
        }
        for e in new.iter().filter(|e| e.status == ExecutionStatus::Queued) {
            let dispatch = dispatch(spec, task, e.id, e.item_index, e.attempt, e.input.clone());
            self.outbox.push((Envelope::new(dispatch), None));
        }
        Ok(None)
    }

    /// One rendered input per item (one for a plain task), or the outcome
    /// that fails the task.
    fn render_inputs(&self, spec: &Task, ctx: &mut Context) -> Result<Vec<Value>, Outcome> {
        let Some(with_items) = spec.with_items() else {
            return self
                .evaluator
                .render(spec.input(), ctx)
                .map(|input| vec![input])
                .map_err(|e| Outcome::failed(format!("rendering the input: {e}")));
        };
        let items = self
            .evaluator
            .items(with_items, ctx)
            .map_err(|e| Outcome::failed(format!("evaluating `with_items`: {e}")))?;
        let mut inputs = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            ctx.item = Some(item);
            ctx.item_index = Some(u32::try_from(i).unwrap_or(u32::MAX));
            let input = self
                .evaluator
                .render(spec.input(), ctx)
                .map_err(|e| Outcome::failed(format!("rendering the input of item {i}: {e}")))?;
            inputs.push(input);
        }
        Ok(inputs)
    }

    fn context(&self, rows: &[TaskRow]) -> Context {
        let tasks: BTreeMap<String, TaskView> = rows
            .iter()
            .map(|r| {
                (
                    r.task_name.clone(),
                    TaskView {
                        status: r.status,
                        result: r.result.clone().unwrap_or_default(),
                    },
                )
            })
            .collect();
        Context {
            input: self.run.input.clone(),
            tasks,
            item: None,
            item_index: None,
            workflow: WorkflowRef {
                id: self.run.id.to_string(),
                name: self.run.workflow.name().to_owned(),
            },
        }
    }

    /// Dispatches up to `count` next items of a with_items task: one per
    /// slot its finished items freed.
    pub(crate) async fn dispatch_next_items(
        &mut self,
        task: &TaskRow,
        count: i32,
    ) -> Result<(), EngineError> {
        if !self.run.status.dispatches() {
            return Ok(());
        }
        let claimed = tasks::claim_next_items(self.conn, task.id, count).await?;
        if claimed.is_empty() {
            return Ok(());
        }
        let attempt = task.attempt_base + 1;
        let wanted = claimed.len();
        let mut queued =
            executions::queue_items(self.conn, task.id, claimed.clone(), attempt).await?;
        queued.sort_by_key(|e| e.item_index);
        if queued.len() != wanted {
            return Err(EngineError::Inconsistent(format!(
                "items {claimed:?} of task `{}` in run {} were claimed but only {} were pending",
                task.task_name,
                self.run.id,
                queued.len()
            )));
        }
        let workflow = Arc::clone(&self.run.workflow);
        let spec = spec_of(&workflow, self.run.id, &task.task_name)?;
        for execution in queued {
            let dispatch = dispatch(
                spec,
                task,
                execution.id,
                execution.item_index,
                attempt,
                execution.input,
            );
            self.outbox.push((Envelope::new(dispatch), None));
        }
        Ok(())
    }

    /// Schedules the next attempt of a failed execution, due after the
    /// task's backoff.
    pub(crate) async fn retry(
        &mut self,
        task: &TaskRow,
        failed: &ExecutionRow,
    ) -> Result<(), EngineError> {
        let workflow = Arc::clone(&self.run.workflow);
        let spec = spec_of(&workflow, self.run.id, &task.task_name)?;
        let next = failed.attempt + 1;
        // The policy counts tries of this round only.
        let try_number = u32::try_from(next - task.attempt_base).unwrap_or(u32::MAX);
        let delay = spec.retry().delay_before(try_number, rand_unit());
        let due = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        let id = ExecutionId::new();
        let new = NewExecution {
            id,
            item_index: failed.item_index,
            attempt: next,
            status: ExecutionStatus::Queued,
            input: failed.input.clone(),
            due_at: Some(due),
        };
        executions::create_many(
            self.conn,
            self.run.id,
            task.id,
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
        self.outbox.push((Envelope::new(dispatch), Some(due)));
        Ok(())
    }

    /// Makes a task terminal (guarded), counts it as a finished need of its
    /// successors, decides those that became ready, and finishes the run
    /// when this was its last task.
    pub(crate) async fn finish_task(
        &mut self,
        task: &TaskRow,
        outcome: Outcome,
    ) -> Result<(), EngineError> {
        self.finish_one(task, outcome).await?;
        self.drain().await
    }

    async fn finish_one(&mut self, task: &TaskRow, outcome: Outcome) -> Result<(), EngineError> {
        let workflow = Arc::clone(&self.run.workflow);
        let successors = workflow.dag().successors(&task.task_name);
        let Some(finished) = tasks::finish(
            self.conn,
            task,
            outcome.status,
            outcome.result.as_ref(),
            outcome.error.as_deref(),
            &successors,
        )
        .await?
        else {
            return Ok(());
        };
        tracing::debug!(task = %finished.task.task_name, status = %finished.task.status, "task finished");
        self.ready.extend(finished.ready);
        if finished.tasks_remaining == 0 {
            self.finish_run().await?;
        }
        Ok(())
    }

    /// Decides the run's outcome once every task is terminal. A run being
    /// canceled ends `canceled`: the outcome from its tasks cannot leave
    /// `canceling`, and then the run's status says so.
    async fn finish_run(&mut self) -> Result<(), EngineError> {
        let rows = tasks::for_run(self.conn, self.run.id).await?;
        let (mut to, output, error) = if let Some(failed) = rows.iter().find(|t| {
            (t.status == TaskStatus::Failed && !t.allow_failure) || t.status == TaskStatus::Canceled
        }) {
            let why = failed.error.as_deref().unwrap_or("no error recorded");
            (
                WorkflowStatus::Failed,
                None,
                Some(format!(
                    "task `{}` {}: {why}",
                    failed.task_name, failed.status
                )),
            )
        } else {
            match self.render_output(&rows) {
                Ok(output) => (WorkflowStatus::Succeeded, output, None),
                Err(e) => (
                    WorkflowStatus::Failed,
                    None,
                    Some(format!("rendering the output: {e}")),
                ),
            }
        };
        let mut changed = runs::transition(
            self.conn,
            self.run.id,
            to,
            output.as_ref(),
            error.as_deref(),
        )
        .await?;
        if !changed
            && runs::status(self.conn, self.run.id, false).await? == WorkflowStatus::Canceling
        {
            to = WorkflowStatus::Canceled;
            changed = runs::transition(self.conn, self.run.id, to, None, None).await?;
        }
        if changed {
            self.run.status = to;
            tracing::info!(status = %to, "run finished");
            let finished = WorkflowFinished {
                workflow_execution_id: self.run.id,
                workflow: self.run.workflow.name().to_owned(),
                status: to,
            };
            self.outbox.push((Envelope::new(finished), None));
        }
        Ok(())
    }

    fn render_output(&self, rows: &[TaskRow]) -> Result<Option<Value>, weft_common::ExprError> {
        let Some(template) = self.run.workflow.output() else {
            return Ok(None);
        };
        let ctx = self.context(rows);
        self.evaluator.render(template, &ctx).map(Some)
    }
}

fn dispatch(
    spec: &Task,
    task: &TaskRow,
    execution_id: ExecutionId,
    item_index: Option<i32>,
    attempt: i32,
    input: Value,
) -> Dispatch {
    Dispatch {
        execution_id,
        workflow_execution_id: task.workflow_execution_id,
        task_execution_id: task.id,
        task_name: task.task_name.clone(),
        item_index: item_index.and_then(|i| u32::try_from(i).ok()),
        attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
        action: spec.action().to_owned(),
        input,
        timeout_ms: spec
            .timeout()
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        queue: spec.queue().to_owned(),
    }
}

fn spec_of<'w>(
    workflow: &'w Workflow,
    run: WorkflowExecutionId,
    name: &str,
) -> Result<&'w Task, EngineError> {
    workflow.task(name).ok_or_else(|| {
        EngineError::Inconsistent(format!(
            "run {run} has a task `{name}` its workflow does not define"
        ))
    })
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A uniform sample in [0, 1) for retry jitter, taken from the random bits of
/// a fresh UUIDv4 rather than adding a random-number crate.
fn rand_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64 >> 11;
    bits as f64 / (1u64 << 53) as f64
}
