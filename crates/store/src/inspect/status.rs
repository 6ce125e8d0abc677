//! One run as `weft status` shows it: the run, each task with its current
//! round's figures, its parent and children, and advice about what holds
//! it. [`RunStatus`] is the `weft status --json` object and the body of
//! `GET /api/v1/runs/{id}`; the CLI's table and the web UI render it, so
//! the three never disagree.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use weft_common::explain::no_worker_hint;
use weft_common::secret::redact_sealed;
use weft_common::{TaskStatus, Workflow, WorkflowExecutionId, WorkflowStatus};

use crate::StoreError;
use crate::children::{self, ChildRun};
use crate::tasks::{self, TaskSummary};
use crate::{parallelism, runs, workers};

/// A run and its tasks, read together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunStatus {
    /// The run's id.
    pub id: WorkflowExecutionId,
    /// Its workflow's name.
    pub workflow: String,
    /// Where it stands.
    pub status: WorkflowStatus,
    /// Its resolved input.
    pub input: Value,
    /// Its rendered output (whatever the outcome).
    pub output: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When an executor started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its tasks, in the workflow's topological order.
    pub tasks: Vec<TaskState>,
    /// The run whose `workflow:` task started it.
    pub parent: Option<WorkflowExecutionId>,
    /// How deep it is nested (0: submitted by a user).
    pub depth: i32,
    /// The runs its `workflow:` tasks started.
    pub children: Vec<ChildRun>,
    /// Advice about what holds queued tasks (pools no live worker
    /// consumes, a full run-wide `parallelism`).
    pub hints: Vec<String>,
    /// The registered version it runs (`None`: submitted from a file).
    #[serde(default)]
    pub workflow_version: Option<i32>,
    /// The schedule that started it.
    #[serde(default)]
    pub schedule: Option<String>,
    /// The tick it is for (`workflow.scheduled_at`).
    #[serde(default)]
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// One task of a [`RunStatus`]: the figures of its current round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskState {
    /// The task's name.
    pub name: String,
    /// Whether it is an exit handler (`on_exit:`).
    pub exit_handler: bool,
    /// The status to show: the stored one, or `queued` / `waiting` for a
    /// running task nothing of which runs yet (see
    /// [`weft_common::explain::shown_status`]).
    pub status: String,
    /// How many items a fan-out has (`None` for a plain task, or before
    /// its items are known).
    pub items_total: Option<i32>,
    /// Items that succeeded.
    pub items_succeeded: i32,
    /// Items that failed.
    pub items_failed: i32,
    /// Attempts of its current round (0: none yet).
    pub attempts: i32,
    /// The run's round it last ran in (`None`: it never ran).
    pub round: Option<i32>,
    /// How many earlier rounds it ran in.
    pub earlier_rounds: i32,
    /// Its result.
    pub result: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// When its current round began (for a task that ran nothing: when it
    /// was decided, unless skipped).
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// What it waits for while a `wait:` task's wait is open (`waiting
    /// until …`, `waiting for signal …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

impl TaskState {
    fn of(t: &TaskSummary) -> Self {
        let task = &t.task;
        Self {
            name: task.task_name.clone(),
            exit_handler: task.exit_handler,
            status: t.shown_status().to_owned(),
            items_total: if task.with_items {
                task.items_total
            } else {
                None
            },
            items_succeeded: task.items_succeeded,
            items_failed: task.items_failed,
            attempts: t.attempts,
            round: t.round,
            earlier_rounds: t.earlier_rounds,
            result: task.result.clone(),
            error: task.error.clone(),
            started_at: t.started_at.or(if task.status == TaskStatus::Skipped {
                None
            } else {
                task.decided_at
            }),
            finished_at: task.finished_at,
            waiting: None,
        }
    }

    /// Whether the task has ended (its shown status is a terminal one).
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        self.status
            .parse::<TaskStatus>()
            .is_ok_and(TaskStatus::is_terminal)
    }

    /// Items that ended, either way.
    #[must_use]
    pub const fn items_done(&self) -> i32 {
        self.items_succeeded + self.items_failed
    }
}

/// Reads one run; `None` if there is no run with that id.
///
/// # Errors
/// A database error.
pub async fn load(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
) -> Result<Option<RunStatus>, StoreError> {
    let Some(run) = runs::get(conn, id).await? else {
        return Ok(None);
    };
    let mut summaries = tasks::summaries(conn, id).await?;
    // Tasks in the workflow's topological order when it parses.
    let (source, origin) = runs::definition(conn, run.definition_id).await?;
    let mut hints = Vec::new();
    if let Ok(workflow) = Workflow::parse_stored(&source, &origin) {
        let order: Vec<&str> = workflow.tasks().map(|t| t.name()).collect();
        summaries.sort_by_key(|t| {
            order
                .iter()
                .position(|n| *n == t.task.task_name)
                .unwrap_or(usize::MAX)
        });
        hints = unserved_pools(conn, &workflow, &summaries).await?;
        if let Some(hint) = run_wide_slots(conn, id, &workflow, &summaries).await? {
            hints.push(hint);
        }
    }
    let mut tasks: Vec<TaskState> = summaries.iter().map(TaskState::of).collect();
    // Secret inputs are stored sealed: shown as `***`, here once for
    // every front end (CLI, JSON, API, UI).
    for task in &mut tasks {
        if let Some(result) = task.result.as_mut() {
            redact_sealed(result);
        }
    }
    for (task, wait) in crate::waits::facts(conn, id).await? {
        if wait.resolution.is_none()
            && let Some(t) = tasks
                .iter_mut()
                .find(|t| t.name == task && t.status == TaskStatus::Running.as_str())
        {
            t.waiting = Some(wait.sentence());
        }
    }
    // Its place in line for a shared limit (`limit:`), or the slot it holds.
    if let Some(limit) = crate::shared_limits::facts(conn, id).await? {
        let line = limit.sentence();
        hints.push(if limit.position.is_some() {
            format!("pending: {line}")
        } else {
            line
        });
    }
    let children = children::children(conn, id).await?;
    let parent = children::parent_of(conn, id).await?;
    let origin = crate::registry::run_origin(conn, id).await?;
    Ok(Some(RunStatus {
        id: run.id,
        workflow: run.workflow_name,
        status: run.status,
        input: {
            let mut input = run.input;
            redact_sealed(&mut input);
            input
        },
        output: run.output.map(|mut output| {
            redact_sealed(&mut output);
            output
        }),
        error: run.error,
        created_at: run.created_at,
        started_at: run.started_at,
        finished_at: run.finished_at,
        tasks,
        parent: parent.map(|(id, _)| id),
        depth: parent.map_or(0, |(_, depth)| depth),
        children,
        hints,
        workflow_version: origin.workflow_version,
        schedule: origin.schedule_name,
        scheduled_at: origin.scheduled_at,
    }))
}

/// "no worker consumes pool `gpu`: …" for each pool of a queued task that
/// no live worker consumes (live: within the reaper's default grace).
async fn unserved_pools(
    conn: &mut PgConnection,
    workflow: &Workflow,
    tasks: &[TaskSummary],
) -> Result<Vec<String>, StoreError> {
    let mut pools: Vec<String> = tasks
        .iter()
        .filter(|t| t.shown_status() == "queued")
        .filter_map(|t| workflow.task(&t.task.task_name))
        .map(|spec| spec.queue().to_owned())
        .collect();
    pools.sort();
    pools.dedup();
    if pools.is_empty() {
        return Ok(Vec::new());
    }
    let live = workers::live_in_pools(conn, &pools, workers::DEFAULT_HEARTBEAT_GRACE).await?;
    Ok(pools
        .iter()
        .filter(|p| !live.iter().any(|w| w.queues.contains(p)))
        .map(|p| no_worker_hint(p))
        .collect())
}

/// "tasks `a`, `b` wait for a run-wide slot: …" when tasks of a running
/// run are held by its full `parallelism`.
async fn run_wide_slots(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
    workflow: &Workflow,
    tasks: &[TaskSummary],
) -> Result<Option<String>, StoreError> {
    let Some(limit) = workflow.parallelism() else {
        return Ok(None);
    };
    let held: Vec<String> = tasks
        .iter()
        .filter(|t| t.shown_status() == "waiting" && t.task.status == TaskStatus::Running)
        .map(|t| format!("`{}`", t.task.task_name))
        .collect();
    if held.is_empty() {
        return Ok(None);
    }
    let in_flight = parallelism::in_flight(conn, id).await?;
    Ok(Some(format!(
        "{} wait{} for a run-wide slot: {in_flight} of the run's executions are in flight, its `parallelism` is {limit}",
        held.join(", "),
        if held.len() == 1 { "s" } else { "" }
    )))
}
