//! # weft-worker — run actions for Weft
//!
//! A worker consumes dispatches from its pools' queues (`weft.tasks.<pool>`),
//! runs each action, publishes `execution.started` and
//! `execution.completed` with publisher confirms, and only then acks the
//! dispatch. It never touches the database. Actions therefore run at least
//! once: a worker lost mid-action has its dispatch redelivered, and the
//! executor's guards keep the state transitions exactly-once.
//!
//! ## Your own worker binary
//!
//! ```no_run
//! use serde_json::json;
//! use tokio_util::sync::CancellationToken;
//! use weft_worker::{ActionContext, ActionError, ActionRegistry, WorkerConfig};
//!
//! # async fn example() -> Result<(), weft_worker::WorkerError> {
//! let mut actions = ActionRegistry::with_builtins();
//! actions.register("uppercase", |ctx: ActionContext| async move {
//!     let text = ctx.input["text"].as_str().ok_or_else(|| ActionError::bad_input("uppercase", "text", "must be a string"))?;
//!     Ok(json!({ "text": text.to_uppercase() }))
//! });
//! let shutdown = CancellationToken::new(); // cancel it on SIGTERM
//! weft_worker::run(WorkerConfig::default(), actions, shutdown).await
//! # }
//! ```
//!
//! A workflow then uses `action: uppercase`. `crates/worker/examples/custom_worker.rs`
//! is a complete binary.

mod action;
mod actions;
mod daemon;
mod logs;

pub use action::{ActionContext, ActionError, ActionRegistry, ActionResult};
pub use daemon::{WorkerConfig, WorkerError, run};
pub use logs::ActionLogs;
