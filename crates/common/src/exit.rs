//! Exit handlers (`on_exit:`): what they see of the run they follow.
//!
//! Exit handlers start once every main task is terminal, whatever the
//! run's outcome, and read `workflow.status` (the main tasks' verdict),
//! `workflow.failures` and `workflow.duration`. [`verdict`] is the one
//! place that verdict is decided from the main tasks; [`ExitView::of`]
//! builds what the expressions see.

use serde::Serialize;

use crate::state::{TaskStatus, WorkflowStatus};

/// A main task, as far as the verdict goes.
#[derive(Debug, Clone, Copy)]
pub struct MainTask<'a> {
    /// The task's name.
    pub name: &'a str,
    /// Its (terminal) status.
    pub status: TaskStatus,
    /// Whether its failure still lets the run succeed.
    pub allow_failure: bool,
    /// Why it failed (the error of its last failed or timed-out attempt).
    pub error: Option<&'a str>,
}

/// One entry of `workflow.failures`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The task that failed.
    pub task: String,
    /// Its error text.
    pub error: String,
}

/// What exit handlers see of the run (`workflow.status`, `.failures`,
/// `.duration`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExitView {
    /// `succeeded`, `failed` or `canceled`: the main tasks' verdict.
    pub status: WorkflowStatus,
    /// Every main task that failed (`allow_failure` ones too), in the
    /// order given.
    pub failures: Vec<Failure>,
    /// Seconds since the run started.
    pub duration: f64,
}

/// The main tasks' verdict, once all are terminal: `canceled` if the run
/// was asked to cancel, `failed` if a task failed without `allow_failure`
/// or was canceled, else `succeeded`. The run's own status follows it,
/// except that a failing exit handler fails a run that would have
/// succeeded (and a canceling run ends `canceled` whatever happens).
#[must_use]
pub fn verdict(canceling: bool, tasks: &[MainTask<'_>]) -> WorkflowStatus {
    if canceling {
        WorkflowStatus::Canceled
    } else if tasks.iter().any(|t| {
        (t.status == TaskStatus::Failed && !t.allow_failure) || t.status == TaskStatus::Canceled
    }) {
        WorkflowStatus::Failed
    } else {
        WorkflowStatus::Succeeded
    }
}

impl ExitView {
    /// What exit handlers see, from the main tasks (all terminal), whether
    /// the run is canceling, and how long it has run.
    #[must_use]
    pub fn of(canceling: bool, tasks: &[MainTask<'_>], duration: f64) -> Self {
        Self {
            status: verdict(canceling, tasks),
            failures: tasks
                .iter()
                .filter(|t| t.status == TaskStatus::Failed)
                .map(|t| Failure {
                    task: t.name.to_owned(),
                    error: t.error.unwrap_or("no error recorded").to_owned(),
                })
                .collect(),
            duration,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(name: &str, status: TaskStatus, allow_failure: bool) -> MainTask<'_> {
        MainTask {
            name,
            status,
            allow_failure,
            error: (status == TaskStatus::Failed).then_some("boom"),
        }
    }

    #[test]
    fn the_verdict_is_the_main_tasks_outcome() {
        let ok = [
            task("a", TaskStatus::Succeeded, false),
            task("b", TaskStatus::Skipped, false),
        ];
        assert_eq!(verdict(false, &ok), WorkflowStatus::Succeeded);
        let allowed = [task("a", TaskStatus::Failed, true)];
        assert_eq!(verdict(false, &allowed), WorkflowStatus::Succeeded);
        let failed = [
            task("a", TaskStatus::Succeeded, false),
            task("b", TaskStatus::Failed, false),
        ];
        assert_eq!(verdict(false, &failed), WorkflowStatus::Failed);
        let canceled_task = [task("a", TaskStatus::Canceled, false)];
        assert_eq!(verdict(false, &canceled_task), WorkflowStatus::Failed);
        assert_eq!(verdict(true, &ok), WorkflowStatus::Canceled);
    }

    #[test]
    fn failures_list_every_failed_main_task_with_its_error() {
        let tasks = [
            task("a", TaskStatus::Failed, true),
            task("b", TaskStatus::Succeeded, false),
            task("c", TaskStatus::Failed, false),
        ];
        let view = ExitView::of(false, &tasks, 2.5);
        assert_eq!(view.status, WorkflowStatus::Failed);
        let names: Vec<&str> = view.failures.iter().map(|f| f.task.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(view.failures[0].error, "boom");
        assert!((view.duration - 2.5).abs() < f64::EPSILON);
    }
}
