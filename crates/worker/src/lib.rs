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
//! Register your actions next to the built-ins and hand them to
//! [`run_from_env`]: it reads the same flags and environment as
//! `weft worker` ([`WorkerArgs`]: `--queue`, `--concurrency`,
//! `--amqp-url`, … and `RUST_LOG`) and stops on SIGINT or SIGTERM.
//!
//! ```no_run
//! use serde_json::json;
//! use weft_worker::{ActionContext, ActionError, ActionRegistry};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), weft_worker::WorkerError> {
//!     let mut actions = ActionRegistry::with_builtins();
//!     actions.register("uppercase", |ctx: ActionContext| async move {
//!         let text = ctx.input["text"].as_str().ok_or_else(|| {
//!             ActionError::bad_input("uppercase", "text", "must be a string")
//!         })?;
//!         Ok(json!({ "text": text.to_uppercase() }))
//!     });
//!     weft_worker::run_from_env(actions).await
//! }
//! ```
//!
//! Start it on a pool of its own (`--queue text`) and give the tasks that
//! use the action `queue: text`: a stock `weft worker` on `default` does
//! not know it. [`run`] takes a [`WorkerConfig`] instead, for a program
//! that reads its settings its own way. `crates/worker/examples/custom_worker.rs`
//! is a complete binary.

mod action;
mod actions;
mod args;
mod daemon;
mod logs;
mod policy;
mod secrets;

pub use action::{ActionContext, ActionError, ActionRegistry, ActionResult};
pub use args::{
    BadFlag, DAEMON_LOG_FILTER, DEFAULT_AMQP_URL, LogArgs, LogFormat, WorkerArgs, init_tracing,
    run_from_env, shutdown_on_signal,
};
pub use daemon::{WorkerConfig, WorkerError, run};
pub use logs::ActionLogs;
pub use policy::{Allowed, BASE_ENV, PolicyError, SHELL, ShellPolicy, WorkerPolicy};
pub use secrets::keyring_from_env;
