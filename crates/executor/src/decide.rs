//! Deciding a ready task, given the rows of the tasks it names: its
//! trigger rule, its `when`, its rendered inputs (one per item) — and from
//! those, whether it ends at once, has nothing to run, or runs these
//! executions with these dispatches. No IO: the step reads the rows and
//! writes what was decided.

use serde_json::Value;
use serde_json::value::RawValue;
use weft_common::ExitView;
use weft_common::message::Dispatch;
use weft_common::{
    Context, Evaluator, ExecutionId, ExecutionStatus, ResultLimit, Task, TaskStatus, item_label,
};
use weft_store::executions::{NewExecution, TaskStart};
use weft_store::tasks::TaskRow;

use crate::error::EngineError;
use crate::step::{Results, RunInfo};

/// How a task ends when it ends without (more) executions.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) status: TaskStatus,
    pub(crate) result: TaskResult,
    pub(crate) error: Option<String>,
}

/// The result a task ends with.
#[derive(Debug)]
pub(crate) enum TaskResult {
    /// None.
    Nothing,
    /// This value.
    Value(Value),
    /// Its items' results, assembled by the statement that finishes it
    /// (see [`ResultOf::Items`](weft_store::tasks::ResultOf::Items)).
    Items,
}

impl Outcome {
    pub(crate) fn failed(error: impl Into<String>) -> Self {
        Self {
            status: TaskStatus::Failed,
            result: TaskResult::Nothing,
            error: Some(error.into()),
        }
    }

    pub(crate) fn skipped(reason: impl Into<String>) -> Self {
        Self {
            status: TaskStatus::Skipped,
            result: TaskResult::Nothing,
            error: Some(reason.into()),
        }
    }
}

/// What deciding a ready task comes to.
pub(crate) enum Decision {
    /// It ends here, without an execution.
    Ends(Outcome),
    /// It has nothing to run: it starts and succeeds at once with `[]`.
    Empty,
    /// Every item is kept from an earlier round (see [`Kept`]): it starts
    /// with these kept executions and succeeds at once.
    AllKept(TaskStart),
    /// It runs: these executions, these dispatches.
    Runs(TaskStart, Vec<Dispatch>),
}

/// The items of a fan-out that succeeded in earlier rounds, by item index:
/// each successful execution with the input it ran with, latest first. A
/// round that keeps items (`weft retry` of a failed fan-out) keeps an item
/// whose input renders the same as one of them (the latest such) instead
/// of running it.
pub(crate) type Kept = std::collections::HashMap<i32, Vec<(ExecutionId, Value)>>;

/// Runs or skips one ready task, given the rows of its run's tasks it
/// names (needs and references) and, in a round that keeps items, the
/// items it may keep.
#[expect(
    clippy::too_many_arguments,
    reason = "what a decision reads, each from a different place; kept flat to keep the merge with other branches simple"
)]
pub(crate) fn decide(
    evaluator: &Evaluator,
    limit: ResultLimit,
    run: &RunInfo,
    results: &Results,
    task: &TaskRow,
    rows: &[&TaskRow],
    kept: Option<&Kept>,
    exit_view: Option<&ExitView>,
) -> Result<Decision, EngineError> {
    if !run.dispatches_for(task.exit_handler) {
        return Ok(Decision::Ends(Outcome {
            status: TaskStatus::Canceled,
            result: TaskResult::Nothing,
            error: Some("the run was canceled".into()),
        }));
    }
    let spec = run.spec(&task.task_name)?;
    let named: Vec<&TaskRow> = rows
        .iter()
        .copied()
        .filter(|r| spec.needs().contains(&r.task_name) || spec.references().contains(&r.task_name))
        .collect();
    let needs: Vec<&TaskRow> = named
        .iter()
        .copied()
        .filter(|r| spec.needs().contains(&r.task_name))
        .collect();
    let statuses: Vec<TaskStatus> = needs.iter().map(|r| r.status).collect();
    if !spec.trigger().is_satisfied(&statuses) {
        let states = needs
            .iter()
            .map(|r| format!("{} {}", r.task_name, r.status))
            .collect::<Vec<_>>()
            .join(", ");
        return Ok(Decision::Ends(Outcome::skipped(format!(
            "trigger `{}` not met ({states})",
            spec.trigger()
        ))));
    }

    if let Some(why) = &run.secret_error {
        return Ok(Decision::Ends(Outcome::failed(format!(
            "opening the run's secret inputs: {why}"
        ))));
    }
    let mut ctx = run.context(&named, results);
    if task.exit_handler {
        ctx.workflow.exit = exit_view.cloned();
    }
    if let Some(when) = spec.when() {
        match evaluator.condition(when, &ctx) {
            Ok(true) => {}
            Ok(false) => {
                // The values that decided it are kept with the reason,
                // in the statement that skips the task (`weft explain`).
                let values = evaluator.condition_values(when, &ctx);
                let with = if values.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", values.join(", "))
                };
                let reason = format!("`when: {when}` was false{with}");
                return Ok(Decision::Ends(Outcome::skipped(
                    run.secrets.redact_text(&reason),
                )));
            }
            Err(e) => {
                let reason = format!("evaluating `when`: {e}");
                return Ok(Decision::Ends(Outcome::failed(
                    run.secrets.redact_text(&reason),
                )));
            }
        }
    }

    let inputs = match render_inputs(evaluator, limit, (run, spec), &ctx, kept) {
        Ok(inputs) => inputs,
        Err(outcome) => return Ok(Decision::Ends(outcome)),
    };
    if inputs.is_empty() {
        return Ok(Decision::Empty);
    }
    let with_items = spec.with_items().is_some();
    let total = to_i32(inputs.len());
    let kept_count = to_i32(inputs.iter().filter(|i| i.kept_from.is_some()).count());
    let to_run = total - kept_count;
    let in_flight = spec.concurrency().map_or(to_run.min(STREAM_WINDOW), |c| {
        to_run.min(to_i32(c as usize))
    });
    // Dispatch positions: in a round that kept items, the kept ones take
    // the first positions and the items to run follow in item order, so
    // the task's counter still claims a prefix (see `executions.seq`).
    let (mut next_kept, mut next_run) = (0, kept_count);
    let mut dispatches = Vec::new();
    let mut new = Vec::with_capacity(inputs.len());
    for (
        i,
        Rendered {
            input,
            kept_from,
            item_label,
        },
    ) in inputs.into_iter().enumerate()
    {
        let position = if kept_from.is_some() {
            next_kept += 1;
            next_kept - 1
        } else {
            next_run += 1;
            next_run - 1
        };
        let status = match kept_from {
            Some(_) => ExecutionStatus::Succeeded,
            None if position < kept_count + in_flight => ExecutionStatus::Queued,
            None => ExecutionStatus::Pending,
        };
        let execution = NewExecution {
            id: ExecutionId::new(),
            item_index: with_items.then(|| to_i32(i)),
            attempt: task.attempt_base + 1,
            status,
            input,
            due_at: None,
            seq: (kept_count > 0).then_some(position),
            kept_from,
            item_label,
        };
        if status == ExecutionStatus::Queued {
            dispatches.push(dispatch(
                spec,
                task,
                execution.id,
                execution.item_index,
                execution.attempt,
                value_of(&execution.input)?,
            ));
        }
        new.push(execution);
    }
    let start = TaskStart {
        task: task.id,
        run: run.id,
        round: run.round,
        items: total,
        kept: kept_count,
        dispatched: kept_count + in_flight,
        timeout_ms: spec
            .timeout()
            .map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)),
        executions: new,
    };
    if to_run == 0 {
        return Ok(Decision::AllKept(start));
    }
    Ok(Decision::Runs(start, dispatches))
}

/// Items of a fan-out without `concurrency` dispatched per transaction: the
/// transaction that starts the task dispatches the first ones, and the
/// engine dispatches the rest right after its commit, a window per
/// transaction (see `Engine::stream_items`), so the first items run while
/// the last are being dispatched, and no transaction writes or holds every
/// item's dispatch. Each finished item also claims the next one, as with a
/// `concurrency`: if that stream is cut (the executor stopped), the task
/// still ends.
pub(crate) const STREAM_WINDOW: i32 = 1_024;

/// An item's rendered input, and the earlier execution it keeps.
struct Rendered {
    /// Compact: a wide fan-out holds every item's until they are written.
    input: Box<RawValue>,
    /// In a round that keeps items (see [`Kept`]): the earlier success
    /// with the same index and input.
    kept_from: Option<ExecutionId>,
    /// The item's one-line label ([`item_label`]); `None` for a plain task.
    item_label: Option<String>,
}

/// One rendered input per item (one for a plain task), or the outcome
/// that fails the task. Each item's input is checked against the limit,
/// matched against the items `kept`, labelled, and made compact as it is
/// rendered,
/// so no more than one item's tree is held at a time.
fn render_inputs(
    evaluator: &Evaluator,
    limit: ResultLimit,
    (run, spec): (&RunInfo, &Task),
    ctx: &Context,
    kept: Option<&Kept>,
) -> Result<Vec<Rendered>, Outcome> {
    let secrets = &run.secrets;
    let Some(with_items) = spec.with_items() else {
        let input = evaluator.render(spec.input(), ctx).map_err(|e| {
            Outcome::failed(secrets.redact_text(&format!("rendering the input: {e}")))
        })?;
        let input = seal_if_secret(run, spec, input)?;
        return Ok(vec![compact(limit, None, &input, None, None)?]);
    };
    let items = evaluator.items(with_items, ctx).map_err(|e| {
        Outcome::failed(secrets.redact_text(&format!("evaluating `with_items`: {e}")))
    })?;
    let labels: Vec<Option<String>> = items
        .iter()
        .map(|item| Some(secrets.redact_text(&item_label(item)).into_owned()))
        .collect();
    // The context is converted for the evaluator once, not once per item:
    // an item list read from an upstream result is as big as the context.
    evaluator
        .render_items(spec.input(), ctx, items)
        .zip(labels)
        .enumerate()
        .map(|(i, (input, label))| {
            let input = input.map_err(|(i, e)| {
                Outcome::failed(secrets.redact_text(&format!(
                    "rendering the input of item {i}{}: {e}",
                    labelled(label.as_deref())
                )))
            })?;
            let input = seal_if_secret(run, spec, input)?;
            // A kept item: same index, same rendered input as an item that
            // succeeded in an earlier round.
            let kept_from = kept
                .and_then(|k| k.get(&to_i32(i)))
                .and_then(|earlier| earlier.iter().find(|(_, ran_with)| *ran_with == input))
                .map(|(id, _)| *id);
            compact(limit, Some(i), &input, kept_from, label)
        })
        .collect()
}

/// A rendered input as it is stored and dispatched: sealed whole, with the
/// run's secrets, when the task reads a secret input or a secret shows up
/// in it (from an upstream result that carried one); as it is otherwise.
/// Sealing needs the key: without one, the task fails rather than store
/// the plaintext. (One key seals one value the same way, so an item is
/// still kept from an earlier round sealed with the same key.)
fn seal_if_secret(run: &RunInfo, spec: &Task, input: Value) -> Result<Value, Outcome> {
    if !run.workflow.reads_secret(spec.name()) && !run.secrets.found_in(&input) {
        return Ok(input);
    }
    let keyring = run.keyring.as_deref().ok_or_else(|| {
        Outcome::failed(format!(
            "sealing the input: {}",
            weft_common::SecretError::MissingKey
        ))
    })?;
    Ok(weft_common::secret::seal_task_input(
        keyring,
        &input,
        &run.secrets,
    ))
}

/// ` ("b.csv")`: an item's label to follow its index in a message, or
/// nothing.
fn labelled(label: Option<&str>) -> String {
    label.map_or_else(String::new, |label| format!(" ({label})"))
}

/// An input as compact JSON, or the outcome that fails a task whose
/// rendered `input` is over the limit (`--max-result-bytes`), naming the
/// item: checked before anything is dispatched, so an input the broker or
/// a worker could not take never leaves, and the task fails at once
/// instead of its run sticking.
fn compact(
    limit: ResultLimit,
    item: Option<usize>,
    input: &Value,
    kept_from: Option<ExecutionId>,
    item_label: Option<String>,
) -> Result<Rendered, Outcome> {
    let input = serde_json::value::to_raw_value(input)
        .map_err(|e| Outcome::failed(format!("encoding the rendered input: {e}")))?;
    let size = input.get().len();
    let checked = match item {
        Some(i) => limit.check_size(
            format_args!(
                "the rendered input of item {i}{}",
                labelled(item_label.as_deref())
            ),
            size,
        ),
        None => limit.check_size("the rendered input", size),
    };
    checked.map_err(|too_large| Outcome::failed(too_large.to_string()))?;
    Ok(Rendered {
        input,
        kept_from,
        item_label,
    })
}

/// The value of an input made compact by [`compact`], for its dispatch.
fn value_of(input: &RawValue) -> Result<Value, EngineError> {
    serde_json::from_str(input.get()).map_err(|e| {
        EngineError::Inconsistent(format!("a rendered input does not decode again: {e}"))
    })
}

pub(crate) fn dispatch(
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
        worker: None,
        child: spec.call().is_some(),
        wait: spec.wait().is_some(),
    }
}

pub(crate) fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
