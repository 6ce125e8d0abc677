//! Test actions that count themselves: what a retry must not repeat (and
//! what a failed fan-out must keep) is the action, so that is what tests
//! count, per (run, task, item), in this process.
//!
//! - `counted` returns its input's `value`, or fails with `cannot take
//!   <value>` when its input says `fail: true` and the run is not
//!   [`fix`]ed yet;
//! - `blocked` waits until its run is [`fix`]ed, or is canceled.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use weft_common::WorkflowExecutionId;
use weft_worker::{ActionContext, ActionError, ActionRegistry};

/// Runs of `counted` by (run, task, item): (runs, successes).
type Runs = HashMap<(WorkflowExecutionId, String, Option<u32>), (u32, u32)>;

fn runs() -> &'static Mutex<Runs> {
    static RUNS: OnceLock<Mutex<Runs>> = OnceLock::new();
    RUNS.get_or_init(Mutex::default)
}

fn fixed() -> &'static Mutex<HashSet<WorkflowExecutionId>> {
    static FIXED: OnceLock<Mutex<HashSet<WorkflowExecutionId>>> = OnceLock::new();
    FIXED.get_or_init(Mutex::default)
}

fn is_fixed(run: WorkflowExecutionId) -> bool {
    fixed().lock().expect("lock").contains(&run)
}

/// The built-in actions with `counted` and `blocked`.
#[must_use]
pub fn registry() -> ActionRegistry {
    let mut registry = ActionRegistry::with_builtins();
    registry
        .register("counted", counted)
        .register("blocked", blocked);
    registry
}

/// Fixes the cause of `run`'s failures: `counted` no longer fails for it
/// and its `blocked` actions return.
pub fn fix(run: WorkflowExecutionId) {
    fixed().lock().expect("lock").insert(run);
}

async fn counted(ctx: ActionContext) -> Result<Value, ActionError> {
    let value = ctx.input.get("value").cloned().unwrap_or(Value::Null);
    let fails = ctx.input.get("fail").and_then(Value::as_bool) == Some(true)
        && !is_fixed(ctx.workflow_execution_id);
    let mut runs = runs().lock().expect("lock");
    let counts = runs
        .entry((
            ctx.workflow_execution_id,
            ctx.task_name.clone(),
            ctx.item_index,
        ))
        .or_default();
    counts.0 += 1;
    if fails {
        return Err(ActionError::new(format!("cannot take {value}")));
    }
    counts.1 += 1;
    Ok(value)
}

async fn blocked(ctx: ActionContext) -> Result<Value, ActionError> {
    while !is_fixed(ctx.workflow_execution_id) {
        tokio::select! {
            () = ctx.cancel.cancelled() => return Err(ActionError::new("interrupted")),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    Ok(Value::Null)
}

/// How often `counted` ran for each item of `task` in `run`, by item.
#[must_use]
pub fn ran(run: WorkflowExecutionId, task: &str) -> HashMap<Option<u32>, u32> {
    counts(run, task, |(runs, _)| runs)
}

/// How often `counted` succeeded for each item of `task` in `run`.
#[must_use]
pub fn succeeded(run: WorkflowExecutionId, task: &str) -> HashMap<Option<u32>, u32> {
    counts(run, task, |(_, successes)| successes)
}

fn counts(
    run: WorkflowExecutionId,
    task: &str,
    pick: fn((u32, u32)) -> u32,
) -> HashMap<Option<u32>, u32> {
    runs()
        .lock()
        .expect("lock")
        .iter()
        .filter(|((r, t, _), _)| *r == run && t == task)
        .map(|((_, _, item), n)| (*item, pick(*n)))
        .collect()
}
