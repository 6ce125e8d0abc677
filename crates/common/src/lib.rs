//! # weft-common — Weft's domain, with no IO
//!
//! Everything here is pure: it compiles without tokio, sqlx or lapin, and is
//! unit-tested in isolation. Read it in this order:
//!
//! 1. [`id`] — typed identifiers (`WorkflowExecutionId`, `ExecutionId`, …).
//! 2. [`state`] — the workflow, task and execution state machines, and the
//!    [`Trigger`] rules that decide whether a ready task runs.
//! 3. [`message`] — the versioned envelopes on the bus and the topology names.

pub mod id;
pub mod message;
pub mod state;

pub use id::{ExecutionId, MessageId, TaskExecutionId, WorkflowExecutionId};
pub use message::{Envelope, Message};
pub use state::{ExecutionStatus, IllegalTransition, TaskStatus, Trigger, WorkflowStatus};
