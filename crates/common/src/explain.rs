//! Why a run and each of its tasks are where they are, as sentences.
//!
//! The facts ([`RunFacts`], [`TaskFacts`], [`PoolFacts`]) are read from the
//! state by one query layer (`weft_store::inspect::explain`) and, for the
//! pools' queues, from RabbitMQ; this module only turns them into one line
//! per task and one for the run. No guessing: every sentence restates
//! facts that were read, so `weft explain` is exact — and the same facts
//! serialise as they are for `--json` (and later the HTTP API).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::id::WorkflowExecutionId;
use crate::state::{ExecutionStatus, TaskStatus, Trigger, WorkflowStatus};

/// A run, its tasks and the pools they run on, as read at `now`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunFacts {
    /// The run.
    pub id: WorkflowExecutionId,
    /// Its workflow's name.
    pub workflow: String,
    /// Its status.
    pub status: WorkflowStatus,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When an executor started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it became terminal.
    pub finished_at: Option<DateTime<Utc>>,
    /// The database's clock when the facts were read.
    pub now: DateTime<Utc>,
    /// Its workflow's `parallelism` (`None`: no run-wide limit).
    pub parallelism: Option<u32>,
    /// Its executions in flight (queued or running) that take run-wide
    /// slots.
    pub in_flight: i64,
    /// Where it stands with its workflow's `limit:` (in line, or holding
    /// a slot); `None` without a claim (no limit, or it ended).
    #[serde(default)]
    pub limit: Option<crate::shared_limit::LimitFacts>,
    /// Its tasks, in the workflow's order.
    pub tasks: Vec<TaskFacts>,
    /// The pools its tasks run on.
    pub pools: Vec<PoolFacts>,
}

/// One task of a run: its row, its spec and what its executions of the
/// current round add up to.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskFacts {
    /// The task's name.
    pub name: String,
    /// Its stored status.
    pub status: TaskStatus,
    /// What `weft status` shows (see [`shown_status`]).
    pub shown_status: &'static str,
    /// Its action.
    pub action: String,
    /// Its worker pool.
    pub pool: String,
    /// Its trigger rule.
    pub trigger: Trigger,
    /// Its `when`, if any.
    pub when: Option<String>,
    /// The tasks it needs, with their statuses.
    pub needs: Vec<NeedFacts>,
    /// Whether it fans out.
    pub with_items: bool,
    /// Items in flight at most.
    pub concurrency: Option<i32>,
    /// Items in all, once known.
    pub items_total: Option<i32>,
    /// Items that succeeded.
    pub items_succeeded: i32,
    /// Items that failed for good.
    pub items_failed: i32,
    /// Executions (this round) a worker runs.
    pub running: i64,
    /// Executions (this round) dispatched and due, not yet taken by a worker.
    pub queued: i64,
    /// Executions (this round) waiting for a slot: the task's
    /// `concurrency`, or the run's `parallelism`.
    pub pending: i64,
    /// Executions (this round) whose retry's backoff has not ended.
    pub retrying: i64,
    /// When the next retry is due.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// The workers running it (at most a few).
    pub workers: Vec<String>,
    /// Tries per item allowed by its retry policy.
    pub max_attempts: u32,
    /// Its latest failed try of this round, if any.
    pub last_failure: Option<FailureFacts>,
    /// Why it failed, or why it was skipped (the stored reason).
    pub error: Option<String>,
    /// When it was decided (ran or skipped).
    pub decided_at: Option<DateTime<Utc>>,
    /// When it became terminal.
    pub finished_at: Option<DateTime<Utc>>,
    /// Whether it is an exit handler (`on_exit:`).
    #[serde(default)]
    pub exit_handler: bool,
    /// Its latest wait, for a `wait:` task whose wait started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<crate::wait::WaitFacts>,
    /// Where it stands with its lock across runs (`mutex`, `semaphore`):
    /// in line, or holding it; `None` without one (or once it ended).
    #[serde(default)]
    pub lock: Option<crate::shared_limit::LimitFacts>,
}

/// A task needed by another, and its status.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NeedFacts {
    /// The needed task.
    pub name: String,
    /// Its status (as shown: `queued` included).
    pub status: String,
}

/// A failed try.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailureFacts {
    /// The item's position, for a fan-out.
    pub item_index: Option<i32>,
    /// The item's rendered input, abbreviated (see [`abbreviate`]).
    pub input: String,
    /// The try within the current round (1 = the first).
    pub attempt: i32,
    /// How it ended (`failed`, `timed_out`).
    pub status: ExecutionStatus,
    /// Its error.
    pub error: Option<String>,
}

/// A worker pool and who serves it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolFacts {
    /// The pool's name.
    pub name: String,
    /// Live workers consuming it (heartbeat within the grace).
    pub live_workers: Vec<String>,
    /// The actions those workers advertise (empty: none advertised, e.g.
    /// workers older than the advertisement).
    pub actions: Vec<String>,
    /// Messages ready in its queue, when RabbitMQ was asked.
    pub ready: Option<u32>,
    /// Consumers of its queue, when RabbitMQ was asked.
    pub consumers: Option<u32>,
}

/// One line per task and one for the run.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Explanation {
    /// Why the run is where it is.
    pub run: String,
    /// (task name, why), in the workflow's order.
    pub tasks: Vec<TaskLine>,
}

/// Why one task is where it is.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskLine {
    /// The task's name.
    pub task: String,
    /// Its status as shown.
    pub status: &'static str,
    /// The sentence.
    pub why: String,
}

impl Explanation {
    /// Each task's (name, status, why), in the workflow's order.
    #[must_use]
    pub fn lines(&self) -> Vec<(&str, &str, &str)> {
        self.tasks
            .iter()
            .map(|t| (t.task.as_str(), t.status, t.why.as_str()))
            .collect()
    }
}

/// The status `weft status` shows for a task: `queued` when it is running
/// but nothing of it runs on a worker yet and something waits in a queue;
/// `waiting` when it is running but nothing of it is even dispatched and
/// executions wait for a slot (`pending`) — the run's `parallelism` is
/// full (a task's own `concurrency` always leaves one of its items in
/// flight).
#[must_use]
pub fn shown_status(status: TaskStatus, running: i64, queued: i64, pending: i64) -> &'static str {
    match (status, running, queued) {
        (TaskStatus::Running, 0, q) if q > 0 => "queued",
        (TaskStatus::Running, 0, 0) if pending > 0 => "waiting",
        _ => status.as_str(),
    }
}

/// The advice for a pool no live worker consumes.
#[must_use]
pub fn no_worker_hint(pool: &str) -> String {
    format!("no worker consumes pool `{pool}`: start `weft worker --queue {pool}`")
}

/// A JSON value as compact text of at most `max` characters (an ellipsis
/// marks a cut).
#[must_use]
pub fn abbreviate(value: &Value, max: usize) -> String {
    let text = match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    crate::abbrev::abbreviate(&text, max)
}

impl RunFacts {
    /// The sentences.
    #[must_use]
    pub fn explain(&self) -> Explanation {
        Explanation {
            run: self.run_line(),
            tasks: self
                .tasks
                .iter()
                .map(|t| TaskLine {
                    task: t.name.clone(),
                    status: t.shown_status,
                    why: self.task_line(t),
                })
                .collect(),
        }
    }

    fn pool(&self, name: &str) -> Option<&PoolFacts> {
        self.pools.iter().find(|p| p.name == name)
    }

    fn run_line(&self) -> String {
        let at =
            |t: Option<DateTime<Utc>>| t.map_or_else(String::new, |t| format!(" at {}", time(t)));
        match self.status {
            WorkflowStatus::Pending => match &self.limit {
                Some(limit) if limit.position.is_some() => {
                    format!("pending: {}", limit.sentence())
                }
                Some(limit) => format!(
                    "pending since {}: granted a slot (it {}); an executor starts it next",
                    time(self.created_at),
                    limit.sentence()
                ),
                None => format!(
                    "pending since {}: no executor has started it yet (is `weft executor` running?)",
                    time(self.created_at)
                ),
            },
            WorkflowStatus::Running => {
                let active: Vec<String> = self
                    .tasks
                    .iter()
                    .filter(|t| t.status == TaskStatus::Running)
                    .map(|t| {
                        let mut s = format!("`{}` ({}", t.name, t.shown_status);
                        if t.shown_status == "queued" {
                            let _ = write!(s, " in pool `{}`", t.pool);
                        }
                        s.push(')');
                        s
                    })
                    .collect();
                let waiting = self
                    .tasks
                    .iter()
                    .filter(|t| t.status == TaskStatus::Waiting)
                    .count();
                let mut line = if active.is_empty() {
                    "running: no task is dispatched".to_owned()
                } else {
                    format!("running: waiting on {}", active.join(", "))
                };
                if let Some(limit) = self.parallelism {
                    let _ = write!(
                        line,
                        "; {} of {limit} run-wide slots (`parallelism`) in use",
                        self.in_flight
                    );
                }
                if let Some(limit) = &self.limit {
                    let _ = write!(line, "; {}", limit.sentence());
                }
                match waiting {
                    0 => {}
                    1 => line.push_str("; 1 task waits for its needs"),
                    n => {
                        let _ = write!(line, "; {n} tasks wait for their needs");
                    }
                }
                line
            }
            WorkflowStatus::Canceling => {
                let running: i64 = self.tasks.iter().map(|t| t.running).sum();
                format!(
                    "canceling: waiting for {running} running action{} to stop",
                    plural(usize::try_from(running).unwrap_or(0))
                )
            }
            WorkflowStatus::Succeeded => format!("succeeded{}", at(self.finished_at)),
            WorkflowStatus::Failed => format!(
                "failed{}: {}",
                at(self.finished_at),
                self.error.as_deref().unwrap_or("a task failed")
            ),
            WorkflowStatus::Canceled => format!("canceled{} (`weft cancel`)", at(self.finished_at)),
        }
    }

    fn task_line(&self, t: &TaskFacts) -> String {
        let line = self.task_status_line(t);
        if t.exit_handler {
            format!("exit handler — {line}")
        } else {
            line
        }
    }

    fn task_status_line(&self, t: &TaskFacts) -> String {
        if let Some(lock) = &t.lock
            && lock.position.is_some()
        {
            return format!("waiting for its lock: {}", lock.sentence());
        }
        match t.status {
            TaskStatus::Waiting if t.exit_handler && t.needs.is_empty() => {
                "waiting for every main task to be terminal, then it runs whatever the outcome"
                    .to_owned()
            }
            TaskStatus::Waiting => waiting_line(t),
            TaskStatus::Skipped => format!(
                "skipped: {}",
                t.error
                    .as_deref()
                    .unwrap_or("its trigger rule or `when` said so")
            ),
            TaskStatus::Succeeded => match (t.with_items, t.items_total) {
                (true, Some(n)) => format!("succeeded: {n} item{} done", plural(n)),
                _ => "succeeded".to_owned(),
            },
            TaskStatus::Failed => failed_line(t),
            TaskStatus::Canceled => format!(
                "canceled by the cancellation of the run{}",
                t.finished_at
                    .map_or_else(String::new, |f| format!(" at {}", time(f)))
            ),
            TaskStatus::Running => self.running_line(t),
        }
    }

    fn running_line(&self, t: &TaskFacts) -> String {
        let mut parts = Vec::new();
        if t.with_items
            && let Some(total) = t.items_total
        {
            parts.push(format!(
                "{}/{total} items done ({} failed)",
                t.items_succeeded + t.items_failed,
                t.items_failed
            ));
        }
        // A `workflow:` task's executions are child runs, not actions.
        let child = crate::child::is_child_label(&t.action);
        let waits = t.action == crate::wait::WAIT_LABEL;
        if let Some(w) = t.wait.as_ref().filter(|_| t.running > 0) {
            parts.push(w.sentence());
        } else if child && t.running > 0 {
            parts.push(format!(
                "{} child run{} running (`weft status` lists them)",
                t.running,
                plural(t.running)
            ));
        } else if t.running > 0 {
            let mut s = format!("{} running", t.running);
            if !t.workers.is_empty() {
                let _ = write!(s, " on {}", t.workers.join(", "));
            }
            parts.push(s);
        }
        if waits && t.queued > 0 {
            parts.push("its wait is dispatched, waiting for an executor to start it".to_owned());
        } else if child && t.queued > 0 {
            parts.push(format!(
                "{} child run{} dispatched, waiting for an executor to start {}",
                t.queued,
                plural(t.queued),
                if t.queued == 1 { "it" } else { "them" }
            ));
        } else if t.queued > 0 {
            parts.push(self.queued_part(t));
        }
        if let Some(limit) = t.concurrency
            && t.pending > 0
            && t.running + t.queued + t.retrying >= i64::from(limit)
        {
            parts.push(format!(
                "concurrency window full ({} in flight / limit {limit}), {} item{} wait for a slot",
                t.running + t.queued + t.retrying,
                t.pending,
                plural(usize::try_from(t.pending).unwrap_or(0))
            ));
        }
        let window_full = t
            .concurrency
            .is_some_and(|limit| t.running + t.queued + t.retrying >= i64::from(limit));
        if let Some(limit) = self.parallelism
            && t.pending > 0
            && !window_full
        {
            let waiting = if t.with_items {
                format!(
                    "{} item{} wait",
                    t.pending,
                    plural(usize::try_from(t.pending).unwrap_or(0))
                )
            } else {
                "it waits".to_owned()
            };
            parts.push(format!(
                "{waiting} for a run-wide slot (parallelism {limit}, {} in flight in the run)",
                self.in_flight
            ));
        }
        if t.retrying > 0 {
            let mut s = format!(
                "retry scheduled at {}",
                t.next_retry_at.map_or_else(|| "?".to_owned(), time)
            );
            if let Some(f) = &t.last_failure {
                let _ = write!(
                    s,
                    " (attempt {}{} next; last error{}: {})",
                    f.attempt + 1,
                    of_attempts(t.max_attempts),
                    item_of(f),
                    f.error.as_deref().unwrap_or(f.status.as_str())
                );
            }
            parts.push(s);
        }
        if parts.is_empty() {
            parts.push("its executions are being recorded".to_owned());
        }
        parts.join("; ")
    }

    fn queued_part(&self, t: &TaskFacts) -> String {
        let pool = self.pool(&t.pool);
        let mut s = format!("{} dispatched, waiting in pool `{}`", t.queued, t.pool);
        let mut figures = Vec::new();
        if let Some(ready) = pool.and_then(|p| p.ready) {
            figures.push(format!("queue depth {ready}"));
        }
        if let Some(consumers) = pool.and_then(|p| p.consumers) {
            figures.push(format!("{consumers} consumer{}", plural(consumers)));
        }
        let live = pool.map_or(&[][..], |p| &p.live_workers[..]);
        figures.push(if live.is_empty() {
            "no live worker".to_owned()
        } else {
            format!("live workers: {}", live.join(", "))
        });
        let _ = write!(s, " ({})", figures.join(", "));
        if live.is_empty() {
            let _ = write!(s, ": {}", no_worker_hint(&t.pool));
        } else if let Some(p) = pool
            && !p.actions.is_empty()
            && !p.actions.contains(&t.action)
        {
            let _ = write!(
                s,
                ": no live worker of pool `{}` knows action `{}` (they know: {})",
                t.pool,
                t.action,
                p.actions.join(", ")
            );
        }
        s
    }
}

fn waiting_line(t: &TaskFacts) -> String {
    let open: Vec<String> = t
        .needs
        .iter()
        .filter(|n| !is_terminal_name(&n.status))
        .map(|n| format!("`{}` ({})", n.name, n.status))
        .collect();
    if open.is_empty() {
        "ready: every need is done; an executor decides it next".to_owned()
    } else {
        format!("waiting on needs: {}", open.join(", "))
    }
}

fn failed_line(t: &TaskFacts) -> String {
    let Some(f) = &t.last_failure else {
        return format!(
            "failed before anything was dispatched: {}",
            t.error.as_deref().unwrap_or("no reason recorded")
        );
    };
    let exhausted = if f.status.is_retryable()
        && f.attempt >= i32::try_from(t.max_attempts).unwrap_or(i32::MAX)
    {
        format!(
            "attempt {}{}, retries exhausted",
            f.attempt,
            of_attempts(t.max_attempts)
        )
    } else if f.status.is_retryable() {
        format!("attempt {}{}", f.attempt, of_attempts(t.max_attempts))
    } else {
        format!("attempt {} ended `{}`, not retried", f.attempt, f.status)
    };
    let mut line = format!(
        "failed{}: {exhausted}: {}",
        item_of(f),
        f.error.as_deref().unwrap_or(f.status.as_str())
    );
    if t.with_items && t.items_failed > 1 {
        let _ = write!(line, " ({} items failed)", t.items_failed);
    }
    line
}

fn item_of(f: &FailureFacts) -> String {
    f.item_index
        .map_or_else(String::new, |i| format!(" on item {i} (input {})", f.input))
}

fn is_terminal_name(status: &str) -> bool {
    status
        .parse::<TaskStatus>()
        .is_ok_and(TaskStatus::is_terminal)
}

fn plural<N: TryInto<i64>>(n: N) -> &'static str {
    if n.try_into().ok() == Some(1) {
        ""
    } else {
        "s"
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
}

/// " of 3" for a bounded number of attempts; nothing when only
/// `retry.max_duration` bounds them (`attempts` unset: `u32::MAX`).
fn of_attempts(max: u32) -> String {
    if max == u32::MAX {
        " (bounded by retry.max_duration)".to_owned()
    } else {
        format!(" of {max}")
    }
}

#[cfg(test)]
mod tests;
