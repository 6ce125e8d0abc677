//! # weft-executor — the orchestrator
//!
//! An executor consumes `weft.executor` (starts, completions, heartbeats,
//! submissions), advances each run over its DAG in one PostgreSQL
//! transaction per message, and publishes what follows through the outbox.
//! Executors hold no state of their own: run as many as you like.
//!
//! Read in this order:
//! 1. [`Engine::apply`] — one message, one transaction, committed before the
//!    delivery is acked; duplicates are detected by the guards.
//! 2. `step` — deciding ready tasks (trigger, `when`, `with_items`,
//!    `concurrency`), finishing tasks, cascading, finishing the run.
//! 3. [`Relay`] — publishes committed outbox rows with confirms.
//! 4. [`Reaper::reap_once`] — ends executions whose deadline passed or
//!    whose worker went silent, applying the retry policy — only once this
//!    executor has been caught up with `weft.executor` for the heartbeat
//!    grace ([`Liveness`]); `redispatch` re-sends dispatches that seem lost.
//! 5. [`prune_once`] — deletes runs finished longer ago than the
//!    retention (off unless configured).
//! 6. [`run`] — the daemon wiring them to the bus.

mod batch;
mod catalog;
mod child;
mod complete;
mod daemon;
mod decide;
mod declined;
mod engine;
mod error;
mod flush;
mod liveness;
mod parallelism;
mod reaper;
mod redispatch;
mod relay;
mod retention;
mod run;
mod scheduler;
mod step;
mod stream;
mod submit;
mod wait;

pub use daemon::{ExecutorConfig, ExecutorError, run};
pub use engine::{Applied, Engine, EngineConfig};
pub use error::EngineError;
pub use liveness::Liveness;
pub use reaper::{Reaper, ReaperConfig};
pub use relay::{Relay, RelayConfig};
pub use retention::{RetentionConfig, prune_once};
pub use scheduler::{Fired, Scheduler, SchedulerConfig};
pub use submit::{SUBMIT_LEASE, submit};
