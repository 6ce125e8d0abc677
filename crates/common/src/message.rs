//! The messages Weft's daemons exchange, defined once.
//!
//! Every message travels as an [`Envelope`]: a versioned JSON object whose
//! `type` field names the [`Message`] variant. A consumer that cannot decode a
//! message (bad JSON, unknown type, newer version) dead-letters it with the
//! reason; it never crashes and never requeues it forever.
//!
//! | message | exchange | routing key | consumer |
//! |---|---|---|---|
//! | [`Dispatch`] | `weft.tasks` | the pool name (`default`), or `worker:<id>` | workers of that pool, or that one worker |
//! | [`Dispatch`] of a `workflow:` task | `weft.events` | `execution.child` | executors (start the child run) |
//! | [`Dispatch`] of a `wait:` task | `weft.events` | `execution.wait` | executors (start the wait) |
//! | [`WaitDue`] (due at the wait's time) | `weft.events` | `execution.wait_due` | executors (end the wait) |
//! | [`ExecutionStarted`] | `weft.events` | `execution.started` | executors |
//! | [`ExecutionCompleted`] | `weft.events` | `execution.completed` | executors |
//! | [`ActionUnknown`] | `weft.events` | `execution.action_unknown` | executors |
//! | [`WorkerHeartbeat`] | `weft.events` | `worker.heartbeat` | executors |
//! | [`WorkflowSubmitted`] | `weft.events` | `workflow.submitted` | executors |
//! | [`WorkflowFinished`] | `weft.events` | `workflow.finished` | whoever subscribes (`weft watch`) |
//! | [`CancelExecutions`] | `weft.control` | (fanout) | every worker |

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::{ExecutionId, MessageId, TaskExecutionId, WorkflowExecutionId};
use crate::logs::AttemptLogs;
use crate::state::{ExecutionStatus, WorkflowStatus};

/// The envelope format this build writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// Exchange names and routing keys: the bus topology of design §4.
pub mod topology {
    /// Direct exchange for dispatches; routing key = worker pool name.
    pub const TASKS_EXCHANGE: &str = "weft.tasks";
    /// Topic exchange for everything executors (and watchers) consume.
    pub const EVENTS_EXCHANGE: &str = "weft.events";
    /// Fanout exchange for cancellations, one auto-delete queue per worker.
    pub const CONTROL_EXCHANGE: &str = "weft.control";
    /// Dead-letter exchange (fanout) for undecodable or rejected messages.
    pub const DEAD_EXCHANGE: &str = "weft.dead";
    /// The queue bound to [`DEAD_EXCHANGE`].
    pub const DEAD_QUEUE: &str = "weft.dead";
    /// The queue all executors share (competing consumers).
    pub const EXECUTOR_QUEUE: &str = "weft.executor";
    /// The worker pool a task runs on when it names none.
    pub const DEFAULT_POOL: &str = "default";

    /// The durable queue of a worker pool.
    #[must_use]
    pub fn task_queue(pool: &str) -> String {
        format!("{TASKS_EXCHANGE}.{pool}")
    }

    /// The private queue of one worker (exclusive, deleted with its
    /// connection): dispatches addressed to that worker alone.
    #[must_use]
    pub fn worker_queue(worker_id: &str) -> String {
        format!("weft.worker.{worker_id}")
    }

    /// The routing key (on [`TASKS_EXCHANGE`]) of one worker's private
    /// queue. The `:` cannot appear in a pool name, so no pool's queue is
    /// ever bound with it.
    #[must_use]
    pub fn worker_routing_key(worker_id: &str) -> String {
        format!("worker:{worker_id}")
    }
}

/// A versioned message with its identity and send time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version; see [`ENVELOPE_VERSION`].
    pub version: u32,
    /// Unique per logical message (a redelivery keeps it).
    pub id: MessageId,
    /// When the message was created (written to the outbox, or by a worker).
    pub sent_at: DateTime<Utc>,
    /// The payload.
    #[serde(flatten)]
    pub message: Message,
}

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not the shape of any message.
    #[error("not a Weft message: {0}")]
    Malformed(#[source] serde_json::Error),
    /// A message format this build does not understand.
    #[error("unsupported envelope version {found} (this build reads version {ENVELOPE_VERSION})")]
    UnsupportedVersion {
        /// The version the message declared.
        found: u32,
    },
}

impl Envelope {
    /// Wraps `message` in a fresh envelope sent now.
    #[must_use]
    pub fn new(message: impl Into<Message>) -> Self {
        Self {
            version: ENVELOPE_VERSION,
            id: MessageId::new(),
            sent_at: Utc::now(),
            message: message.into(),
        }
    }

    /// The JSON bytes that go on the wire.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail: no maps with non-string keys.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a message body.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes are not a message this build reads.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let version: Version = serde_json::from_slice(bytes).map_err(DecodeError::Malformed)?;
        if version.version != ENVELOPE_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version.version,
            });
        }
        serde_json::from_slice(bytes).map_err(DecodeError::Malformed)
    }

    /// Where this message is published: (exchange, routing key).
    #[must_use]
    pub fn route(&self) -> (&'static str, String) {
        self.message.route()
    }
}

/// Every message Weft sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Executor → worker pool: run this.
    Dispatch(Dispatch),
    /// Worker → executors: an action began.
    ExecutionStarted(ExecutionStarted),
    /// Worker → executors: an action ended.
    ExecutionCompleted(ExecutionCompleted),
    /// Worker → executors: a dispatch named an action this worker does not
    /// know; it was not run.
    ActionUnknown(ActionUnknown),
    /// Worker → executors: still alive, running these.
    WorkerHeartbeat(WorkerHeartbeat),
    /// CLI (through the outbox) → executors: start this run.
    WorkflowSubmitted(WorkflowSubmitted),
    /// Executor → watchers: a run reached a terminal state.
    WorkflowFinished(WorkflowFinished),
    /// Executor → every worker: kill these executions if you run them.
    CancelExecutions(CancelExecutions),
    /// Executor → executors, due at a wait's time: end it if nothing did.
    WaitDue(WaitDue),
}

impl Message {
    /// Where this message is published: (exchange, routing key).
    #[must_use]
    pub fn route(&self) -> (&'static str, String) {
        use topology::{CONTROL_EXCHANGE, EVENTS_EXCHANGE, TASKS_EXCHANGE};
        match self {
            Self::Dispatch(d) if d.child => (EVENTS_EXCHANGE, "execution.child".into()),
            Self::Dispatch(d) if d.wait => (EVENTS_EXCHANGE, "execution.wait".into()),
            Self::Dispatch(d) => match &d.worker {
                Some(worker) => (TASKS_EXCHANGE, topology::worker_routing_key(worker)),
                None => (TASKS_EXCHANGE, d.queue.clone()),
            },
            Self::ExecutionStarted(_) => (EVENTS_EXCHANGE, "execution.started".into()),
            Self::ExecutionCompleted(_) => (EVENTS_EXCHANGE, "execution.completed".into()),
            Self::ActionUnknown(_) => (EVENTS_EXCHANGE, "execution.action_unknown".into()),
            Self::WorkerHeartbeat(_) => (EVENTS_EXCHANGE, "worker.heartbeat".into()),
            Self::WorkflowSubmitted(_) => (EVENTS_EXCHANGE, "workflow.submitted".into()),
            Self::WorkflowFinished(_) => (EVENTS_EXCHANGE, "workflow.finished".into()),
            Self::CancelExecutions(_) => (CONTROL_EXCHANGE, String::new()),
            Self::WaitDue(_) => (EVENTS_EXCHANGE, "execution.wait_due".into()),
        }
    }

    /// Whether a queue must receive this message. Dispatches to a pool and
    /// the executors' events must (an unroutable one is retried until its
    /// queue exists); `workflow.finished` is for whoever listens and
    /// cancellations for whichever workers run, so an unroutable one has
    /// simply reached nobody who needed it. A dispatch addressed to one
    /// worker whose private queue is gone (the worker stopped) would wait
    /// forever for a queue that never comes back: it is dropped, its
    /// execution stays `queued`, and the redispatcher sends it to its pool
    /// again after `--redispatch-after`.
    #[must_use]
    pub const fn must_be_routed(&self) -> bool {
        match self {
            Self::WorkflowFinished(_) | Self::CancelExecutions(_) => false,
            Self::Dispatch(d) => d.worker.is_none(),
            _ => true,
        }
    }

    /// A short name for logs and metrics.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Dispatch(_) => "dispatch",
            Self::ExecutionStarted(_) => "execution_started",
            Self::ExecutionCompleted(_) => "execution_completed",
            Self::ActionUnknown(_) => "action_unknown",
            Self::WorkerHeartbeat(_) => "worker_heartbeat",
            Self::WorkflowSubmitted(_) => "workflow_submitted",
            Self::WorkflowFinished(_) => "workflow_finished",
            Self::CancelExecutions(_) => "cancel_executions",
            Self::WaitDue(_) => "wait_due",
        }
    }
}

/// Run one execution of an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispatch {
    /// The unit being run; echoed in every report about it.
    pub execution_id: ExecutionId,
    /// The run it belongs to.
    pub workflow_execution_id: WorkflowExecutionId,
    /// The task of the run it belongs to.
    pub task_execution_id: TaskExecutionId,
    /// The task's name in the workflow.
    pub task_name: String,
    /// The item's position for a `with_items` task, `None` otherwise.
    pub item_index: Option<u32>,
    /// 1 for the first try, 2 for the first retry, …
    pub attempt: u32,
    /// The action to run (`echo`, `shell`, a custom name).
    pub action: String,
    /// The rendered input, ready to use.
    pub input: Value,
    /// The per-attempt limit in milliseconds; the worker kills the action past it.
    pub timeout_ms: Option<u64>,
    /// The worker pool.
    pub queue: String,
    /// Set when the dispatch is addressed to one worker of the pool (one
    /// that advertises the action, after another declined it): it is
    /// routed to that worker's private queue instead of the pool's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// The task starts a sub-workflow (`workflow:`): the dispatch goes to
    /// the executors (`execution.child`), which start the child run,
    /// instead of to a worker pool.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub child: bool,
    /// The task waits (`wait:`): the dispatch goes to the executors
    /// (`execution.wait`), which record the wait and its due time,
    /// instead of to a worker pool.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait: bool,
}

/// A worker received a dispatch for an action it does not know, and did not
/// run it. The executor hands the dispatch to a live worker of the pool that
/// knows the action, or fails the attempt when none does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionUnknown {
    /// The dispatch, exactly as received.
    pub dispatch: Dispatch,
    /// The worker that declined it.
    pub worker_id: String,
    /// The actions that worker knows, for the error should nobody know it.
    pub known: Vec<String>,
    /// The actions that worker has but its policy refuses (`--actions`;
    /// empty from older workers), so the error can say it is refused
    /// rather than unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// A worker began running an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionStarted {
    /// The unit that started.
    pub execution_id: ExecutionId,
    /// The run it belongs to.
    pub workflow_execution_id: WorkflowExecutionId,
    /// Which attempt.
    pub attempt: u32,
    /// Who runs it.
    pub worker_id: String,
    /// When the action began.
    pub started_at: DateTime<Utc>,
}

/// A worker finished running an execution, one way or another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionCompleted {
    /// The unit that ended.
    pub execution_id: ExecutionId,
    /// The run it belongs to.
    pub workflow_execution_id: WorkflowExecutionId,
    /// Which attempt.
    pub attempt: u32,
    /// `succeeded`, `failed`, `timed_out` or `canceled`.
    pub status: ExecutionStatus,
    /// The action's result when it succeeded.
    pub result: Option<Value>,
    /// What went wrong otherwise.
    pub error: Option<String>,
    /// Who ran it.
    pub worker_id: String,
    /// When the action began, if it did.
    pub started_at: Option<DateTime<Utc>>,
    /// When the action ended.
    pub finished_at: DateTime<Utc>,
    /// What the attempt printed (the tails of its streams), whatever its
    /// ending; absent when it printed nothing, and from older workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<AttemptLogs>,
}

/// A worker is alive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerHeartbeat {
    /// Stable for the life of the worker process.
    pub worker_id: String,
    /// The pools it consumes.
    pub queues: Vec<String>,
    /// The executions it is running right now.
    pub running: Vec<ExecutionId>,
    /// Its host name, for operators.
    pub hostname: String,
    /// When the heartbeat was sent.
    pub at: DateTime<Utc>,
    /// Its process id (0 from workers older than this field).
    #[serde(default)]
    pub pid: u32,
    /// The actions it can run, sorted (empty from older workers: unknown).
    #[serde(default)]
    pub actions: Vec<String>,
    /// The actions it has but its policy refuses (`weft worker
    /// --actions`; `shell` unless listed), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    /// Actions it runs at once at most (0 from older workers: unknown).
    #[serde(default)]
    pub concurrency: u32,
    /// Its build's version (empty from older workers). Not `version`: the
    /// envelope's own `version` shares the object.
    #[serde(default)]
    pub build_version: String,
}

/// A run was stored and should be started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowSubmitted {
    /// The stored run.
    pub workflow_execution_id: WorkflowExecutionId,
}

/// A run reached a terminal state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowFinished {
    /// The run.
    pub workflow_execution_id: WorkflowExecutionId,
    /// Its workflow's name.
    pub workflow: String,
    /// `succeeded`, `failed` or `canceled`.
    pub status: WorkflowStatus,
}

/// Kill these executions wherever they run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelExecutions {
    /// The run being canceled.
    pub workflow_execution_id: WorkflowExecutionId,
    /// The executions to stop.
    pub execution_ids: Vec<ExecutionId>,
}

/// A wait's due time came (a timer's time, a signal's timeout): written
/// to the outbox due then by the executor that started the wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitDue {
    /// The waiting execution.
    pub execution_id: ExecutionId,
    /// The run it belongs to.
    pub workflow_execution_id: WorkflowExecutionId,
    /// The task's name in the workflow.
    pub task_name: String,
    /// Which attempt.
    pub attempt: u32,
}

macro_rules! into_message {
    ($($variant:ident),+) => {
        $(impl From<$variant> for Message {
            fn from(m: $variant) -> Self {
                Self::$variant(m)
            }
        })+
    };
}
into_message!(
    Dispatch,
    ExecutionStarted,
    ExecutionCompleted,
    ActionUnknown,
    WorkerHeartbeat,
    WorkflowSubmitted,
    WorkflowFinished,
    CancelExecutions,
    WaitDue
);

#[cfg(test)]
mod tests {
    use super::*;

    fn completed() -> Envelope {
        Envelope::new(ExecutionCompleted {
            execution_id: ExecutionId::new(),
            workflow_execution_id: WorkflowExecutionId::new(),
            attempt: 1,
            status: ExecutionStatus::Succeeded,
            result: Some(serde_json::json!({"x": 1})),
            error: None,
            worker_id: "w1".into(),
            started_at: None,
            finished_at: Utc::now(),
            logs: None,
        })
    }

    #[test]
    fn envelopes_round_trip() {
        let env = completed();
        let back = Envelope::from_bytes(&env.to_bytes()).ok();
        assert_eq!(back, Some(env));
    }

    #[test]
    fn logs_travel_with_a_completion_and_may_be_absent() {
        let mut env = completed();
        let value: Value = serde_json::from_slice(&env.to_bytes()).unwrap_or_default();
        assert!(value.get("logs").is_none(), "{value}");
        let Message::ExecutionCompleted(c) = &mut env.message else {
            unreachable!("completed() builds a completion")
        };
        c.logs = Some(AttemptLogs {
            exit_code: Some(3),
            ..AttemptLogs::default()
        });
        let back = Envelope::from_bytes(&env.to_bytes()).ok();
        assert_eq!(back, Some(env));
    }

    #[test]
    fn envelope_names_its_type_and_version() {
        let value: Value = serde_json::from_slice(&completed().to_bytes()).unwrap_or_default();
        assert_eq!(value["type"], "execution_completed");
        assert_eq!(value["version"], 1);
        assert_eq!(value["status"], "succeeded");
    }

    #[test]
    fn garbage_and_future_versions_are_rejected_with_a_reason() {
        assert!(matches!(
            Envelope::from_bytes(b"not json"),
            Err(DecodeError::Malformed(_))
        ));
        let future = br#"{"version": 9, "type": "dispatch"}"#;
        let err = Envelope::from_bytes(future).unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
        let unknown = br#"{"version": 1, "id": "0190a0a0-0000-7000-8000-000000000000", "sent_at": "2026-01-01T00:00:00Z", "type": "nope"}"#;
        assert!(matches!(
            Envelope::from_bytes(unknown),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn routes_follow_the_topology() {
        assert_eq!(
            completed().route(),
            ("weft.events", "execution.completed".to_owned())
        );
        assert_eq!(topology::task_queue("gpu"), "weft.tasks.gpu");
    }

    #[test]
    fn a_dispatch_to_one_worker_goes_to_its_private_queue_and_may_be_dropped() {
        let mut d = Dispatch {
            execution_id: ExecutionId::new(),
            workflow_execution_id: WorkflowExecutionId::new(),
            task_execution_id: crate::TaskExecutionId::new(),
            task_name: "t".into(),
            item_index: None,
            attempt: 1,
            action: "resize".into(),
            input: Value::Null,
            timeout_ms: None,
            queue: "gpu".into(),
            worker: None,
            child: false,
            wait: false,
        };
        let to_pool = Message::Dispatch(d.clone());
        assert_eq!(to_pool.route(), ("weft.tasks", "gpu".to_owned()));
        assert!(to_pool.must_be_routed());
        d.worker = Some("h-1-ab".into());
        let to_worker = Message::Dispatch(d);
        assert_eq!(
            to_worker.route(),
            ("weft.tasks", "worker:h-1-ab".to_owned())
        );
        assert!(!to_worker.must_be_routed());
        let Message::Dispatch(mut d) = to_worker else {
            unreachable!("built as a dispatch")
        };
        d.worker = None;
        d.child = true;
        let to_child = Message::Dispatch(d);
        assert_eq!(
            to_child.route(),
            ("weft.events", "execution.child".to_owned())
        );
        assert!(to_child.must_be_routed());
        let Message::Dispatch(mut d) = to_child else {
            unreachable!("built as a dispatch")
        };
        d.child = false;
        d.wait = true;
        let to_wait = Message::Dispatch(d);
        assert_eq!(
            to_wait.route(),
            ("weft.events", "execution.wait".to_owned())
        );
        assert!(to_wait.must_be_routed());
    }

    #[test]
    fn heartbeats_of_older_workers_still_decode() {
        let old = br#"{"version": 1, "id": "0190a0a0-0000-7000-8000-000000000000", "sent_at": "2026-01-01T00:00:00Z",
            "type": "worker_heartbeat", "worker_id": "w", "queues": ["default"], "running": [],
            "hostname": "h", "at": "2026-01-01T00:00:00Z"}"#;
        let Ok(Envelope {
            message: Message::WorkerHeartbeat(hb),
            ..
        }) = Envelope::from_bytes(old)
        else {
            panic!("an old heartbeat no longer decodes");
        };
        assert!(hb.actions.is_empty() && hb.pid == 0 && hb.build_version.is_empty());
        let new = Envelope::new(WorkerHeartbeat {
            worker_id: "w".into(),
            actions: vec!["echo".into()],
            pid: 7,
            concurrency: 8,
            build_version: "0.1.0".into(),
            ..WorkerHeartbeat::default()
        });
        assert_eq!(Envelope::from_bytes(&new.to_bytes()).ok(), Some(new));
    }
}
