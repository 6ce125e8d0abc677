//! # weft-common — Weft's domain, with no IO
//!
//! Everything here is pure: it compiles without tokio, sqlx or lapin, and is
//! unit-tested in isolation. Read it in this order:
//!
//! 1. [`Workflow::parse`] — YAML in, a validated [`Workflow`] (or every
//!    problem as [`Diagnostics`] with file, line, column and a hint) out.
//!    Its declared inputs are [`InputSpec`]s; [`Workflow::resolve_given`]
//!    is the one place given values are parsed, checked and defaulted.
//! 2. [`Dag`] — roots, successors, needs, topological order, ancestors.
//! 3. [`Evaluator`] — `{{ … }}` expressions against a [`Context`].
//! 4. [`state`] — the workflow, task and execution state machines, and the
//!    [`Trigger`] rules that decide whether a ready task runs.
//!    [`RetryPolicy::decide`] — whether a failed attempt is tried again
//!    (`retry.attempts`, `retry.when`, `retry.max_duration`).
//! 5. [`message`] — the versioned envelopes on the bus and the topology names.
//! 6. [`id`] — typed identifiers.
//! 7. [`limits`] — how big a result or a rendered input may be; [`logs`] —
//!    the tail of an attempt's output kept for `weft logs`.
//! 8. [`explain`] — why a run and its tasks are where they are, as
//!    sentences; [`abbrev`] — one-line labels of values (an item next to
//!    its index).
//! 9. [`Bundle`] — a workflow and the sub-workflows (`workflow:` tasks)
//!    it reaches, read once each and checked against each other; [`child`]
//!    — the rules tying a child run to the parent execution it carries out.
//! 10. [`exit`] — exit handlers (`on_exit:`): the main tasks' verdict and
//!     what the handlers see of the run ([`ExitView`]).
//! 11. [`auth`] — API tokens and the roles that say what they may do.
//! 12. [`graph`] — a workflow's DAG as nodes and edges (the API's and the
//!     web UI's).
//! 13. [`wait`] — durable waits, signals and approvals (`wait:`): when a
//!     wait ends and what a delivered signal makes of it.
//! 14. [`secret`] — secret inputs: sealed at rest with a [`Keyring`],
//!     opened only for the dispatch that needs them, redacted as `***`.

pub mod abbrev;
pub mod auth;
mod bundle;
pub mod child;
mod dag;
mod diagnostic;
mod duration;
pub mod exit;
pub mod explain;
mod expr;
pub mod graph;
pub mod id;
pub mod inputs;
mod json_view;
pub mod limits;
pub mod logs;
pub mod message;
pub mod policy;
mod redact;
mod report;
mod retry;
pub mod run_ref;
mod scan;
pub mod schedule;
pub mod secret;
pub mod shared_limit;
mod spec;
pub mod state;
mod tls;
mod validate;
pub mod wait;
mod workflow;

pub use abbrev::item_label;
pub use bundle::{Bundle, BundleFile, REGISTERED_PREFIX};
pub use dag::Dag;
pub use diagnostic::{Diagnostics, Problem};
pub use duration::parse_duration;
pub use exit::ExitView;
pub use expr::{Context, Evaluator, ExprError, ItemState, TaskView, WorkflowRef, kind_of};
pub use id::{ExecutionId, MessageId, TaskExecutionId, WorkflowExecutionId};
pub use inputs::{Given, InputSpec, InputType};
pub use limits::{ResultLimit, TooLarge};
pub use logs::AttemptLogs;
pub use message::{Envelope, Message};
pub use redact::redact_url;
pub use report::error_chain;
pub use retry::{AttemptFacts, RetryDecision, StopReason};
pub use run_ref::RunRef;
pub use secret::{Keyring, SecretError, Secrets};
pub use shared_limit::{LimitFacts, LimitOrder, RunLimit, TaskLock};
pub use spec::WithItems;
pub use state::{ExecutionStatus, IllegalTransition, TaskStatus, Trigger, WorkflowStatus};
pub use tls::tls_cause;
pub use workflow::{
    Call, DEFAULT_MAX_DEPTH, InputError, RenderedOutput, RetryPolicy, Task, Workflow,
};
