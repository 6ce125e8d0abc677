//! Sub-workflows: the rules that tie a child run to the parent execution
//! it carries out — how deep it may nest, what input it starts with, and
//! how its end becomes the execution's outcome. No IO: the store and the
//! executor apply them.

use serde_json::{Map, Value};

use crate::id::WorkflowExecutionId;
use crate::state::{ExecutionStatus, WorkflowStatus};
use crate::workflow::{Task, Workflow};

/// The depth of the child run `task` would start from a run at
/// `parent_depth` (a submitted run is at 0).
///
/// # Errors
/// The sentence that fails the execution when the child would be deeper
/// than the task's `max_depth`.
pub fn child_depth(parent_depth: i32, task: &Task) -> Result<i32, String> {
    let depth = parent_depth.saturating_add(1);
    let max = task
        .call()
        .map_or(crate::DEFAULT_MAX_DEPTH, |c| c.max_depth());
    if i64::from(depth) > i64::from(max) {
        return Err(format!(
            "task `{}` would start a run of `{}` nested {depth} deep, deeper than its max_depth of {max} \
             (a submitted run is at depth 0; raise `max_depth` on the task if the recursion is meant to go deeper)",
            task.name(),
            task.call().map_or("?", |c| c.path()),
        ));
    }
    Ok(depth)
}

/// The input a child run starts with: the task's rendered input, which
/// must be an object, with the child's defaults applied.
///
/// # Errors
/// The sentence that fails the execution: not an object, a required input
/// missing, an undeclared one given.
pub fn child_input(child: &Workflow, rendered: &Value) -> Result<Map<String, Value>, String> {
    let Value::Object(given) = rendered else {
        return Err(format!(
            "the input of a sub-workflow must render to an object of its inputs, not {}",
            crate::expr::kind_of(rendered)
        ));
    };
    child
        .resolve_input(given.clone())
        .map_err(|e| format!("workflow `{}`: {e}", child.name()))
}

/// What a parent execution records when its child run ended: the status
/// (`None` if `status` is not terminal), its result (the child's output
/// when it succeeded) and its error.
#[must_use]
pub fn outcome_of_child(
    child: WorkflowExecutionId,
    status: WorkflowStatus,
    output: Option<&Value>,
    error: Option<&str>,
) -> Option<(ExecutionStatus, Option<Value>, Option<String>)> {
    let why = error.unwrap_or("no error recorded");
    match status {
        WorkflowStatus::Succeeded => Some((
            ExecutionStatus::Succeeded,
            Some(output.cloned().unwrap_or(Value::Null)),
            None,
        )),
        WorkflowStatus::Failed => Some((
            ExecutionStatus::Failed,
            None,
            Some(format!("child run {child} failed: {why}")),
        )),
        WorkflowStatus::Canceled => Some((
            ExecutionStatus::Canceled,
            None,
            Some(format!("child run {child} was canceled: {why}")),
        )),
        WorkflowStatus::Pending | WorkflowStatus::Running | WorkflowStatus::Canceling => None,
    }
}

/// Whether a task's action label (see [`crate::Call::label`]) is a
/// sub-workflow's: its executions are child runs, not actions.
#[must_use]
pub fn is_child_label(action: &str) -> bool {
    action.starts_with(CHILD_LABEL_PREFIX)
}

/// What [`crate::Call::label`] starts with.
pub(crate) const CHILD_LABEL_PREFIX: &str = "workflow:";

/// The worker id a parent execution records for the child run that
/// carried it out (executions have no worker of their own).
#[must_use]
pub fn child_worker_id(child: WorkflowExecutionId) -> String {
    format!("run:{child}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parent(max_depth: Option<u32>) -> Workflow {
        let depth = max_depth.map_or(String::new(), |d| format!("\n    max_depth: {d}"));
        let yaml =
            format!("name: p\ntasks:\n  call:\n    workflow: c.yaml{depth}\n    input: {{n: 1}}\n");
        Workflow::parse(&yaml, "p.yaml").unwrap_or_else(|d| panic!("{d}"))
    }

    #[test]
    fn nesting_stops_at_max_depth_with_a_sentence_naming_the_task() {
        let w = parent(Some(2));
        let task = w.task("call").expect("task");
        assert_eq!(child_depth(0, task), Ok(1));
        assert_eq!(child_depth(1, task), Ok(2));
        let err = child_depth(2, task).unwrap_err();
        assert!(
            err.contains("task `call`")
                && err.contains("nested 3 deep")
                && err.contains("max_depth of 2"),
            "{err}"
        );
        let default = parent(None);
        let task = default.task("call").expect("task");
        assert_eq!(child_depth(9, task), Ok(10));
        assert!(child_depth(10, task).is_err());
    }

    #[test]
    fn the_child_input_gets_defaults_and_refuses_what_does_not_fit() {
        let child = Workflow::parse(
            "name: c\ninput:\n  n: null\n  m: 2\ntasks:\n  a:\n    action: echo\n",
            "c.yaml",
        )
        .unwrap_or_else(|d| panic!("{d}"));
        let input = child_input(&child, &json!({"n": 1})).expect("fits");
        assert_eq!(Value::Object(input), json!({"n": 1, "m": 2}));
        let missing = child_input(&child, &json!({})).unwrap_err();
        assert!(
            missing.contains("missing required input(s): n"),
            "{missing}"
        );
        let not_object = child_input(&child, &json!([1])).unwrap_err();
        assert!(
            not_object.contains("not a list")
                || not_object.contains("not an array")
                || not_object.contains("not"),
            "{not_object}"
        );
    }

    #[test]
    fn a_child_run_end_is_the_executions_outcome() {
        let id = WorkflowExecutionId::new();
        assert_eq!(
            outcome_of_child(id, WorkflowStatus::Succeeded, Some(&json!({"x": 1})), None),
            Some((ExecutionStatus::Succeeded, Some(json!({"x": 1})), None))
        );
        assert_eq!(
            outcome_of_child(id, WorkflowStatus::Succeeded, None, None),
            Some((ExecutionStatus::Succeeded, Some(Value::Null), None))
        );
        let (status, result, error) = outcome_of_child(
            id,
            WorkflowStatus::Failed,
            None,
            Some("task `a` failed: boom"),
        )
        .expect("terminal");
        assert_eq!((status, result), (ExecutionStatus::Failed, None));
        assert!(error.is_some_and(|e| e.contains(&id.to_string()) && e.contains("boom")));
        assert_eq!(
            outcome_of_child(id, WorkflowStatus::Canceled, None, None).map(|o| o.0),
            Some(ExecutionStatus::Canceled)
        );
        assert_eq!(
            outcome_of_child(id, WorkflowStatus::Canceling, None, None),
            None
        );
    }
}
