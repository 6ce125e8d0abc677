//! # weft-store — Weft's state in PostgreSQL
//!
//! The database is the single source of truth; every state change is a
//! guarded conditional `UPDATE … WHERE status = ANY(<legal sources>)` whose
//! legal sources come from `weft_common::state`, so zero rows means "someone
//! else already did it" and the caller does nothing. Counters decremented in
//! the row decide fan-in and item completion; unique indexes are the last
//! line of defence against a second dispatch.
//!
//! Every query function takes `&mut PgConnection`, so the same code serves a
//! pooled connection or a transaction; the caller owns the transaction and
//! commits. Read in this order:
//!
//! 1. [`db`] — connect, create, migrate, refuse an unmigrated database.
//! 2. [`runs`] — submit, start, count finished tasks, finish.
//! 3. [`tasks`] — the per-task row: fan-in and item counters.
//! 4. [`executions`] — one row per item × attempt; start/complete guards.
//! 5. [`outbox`] — messages written with the state, relayed after commit.
//! 6. [`workers`] — heartbeats, live workers; [`overdue`] — executions the
//!    reaper and the redispatcher take over; [`declines`] — dispatches a
//!    worker did not know the action of.
//! 7. [`retry`], [`cancel`], [`audit`] — operators' commands;
//!    [`transact`] runs them again when a deadlock aborts them.
//! 8. [`prune`] — deleting finished runs past their retention.
//! 9. [`inspect`] — what the CLI (and later the HTTP API and UI) shows
//!    about a run, as serialisable facts: attempt history, logs, and why
//!    each task is where it is.
//! 10. [`children`] — sub-workflows: the child run that carries out a
//!     `workflow:` task's execution, started and reported exactly once.
//! 11. [`attempts`] — what expressions and the retry rule read of a
//!     task's attempts: how a fan-out's items ended, when an item's first
//!     attempt started.
//! 12. [`parallelism`] — run-wide slots (`parallelism:`): the lock, the
//!     count of a run's executions in flight, the tasks that wait.
//! 13. [`tokens`] — the API's bearer tokens (digests only).
//! 14. [`waits`] — durable waits (`wait:` tasks): the due-time rows, and
//!     signals and approvals delivered exactly once.
//! 15. [`registry`] — workflows registered by name and version;
//!     [`schedules`] — cron schedules, claimed by the executors, one run
//!     per tick.
//! 16. [`shared_limits`] — concurrency limits shared across runs
//!     (`limit:`): runs in line per key, slots granted and released with
//!     the runs' starts and ends.

/// The SQL predicate over a `task_executions` row aliased `t` that says
/// whether its executions take its run's `parallelism` slots: see
/// [`parallelism::COUNTED`]. A macro so that `audit`'s constant queries
/// can splice it in with `concat!`.
macro_rules! counted_tasks {
    () => {
        "NOT t.exit_handler"
    };
}

pub mod attempts;
pub mod audit;
pub mod cancel;
pub mod children;
pub mod db;
pub mod declines;
mod error;
pub mod executions;
pub mod exit;
pub mod inspect;
pub mod outbox;
pub mod output;
pub mod overdue;
pub mod parallelism;
pub mod prune;
pub mod registry;
pub mod retry;
pub mod runs;
pub mod schedules;
pub mod shared_limits;
pub mod tasks;
pub mod tokens;
pub mod transact;
pub mod waits;
pub mod workers;

pub use db::{DbConfig, MIGRATOR, connect, migrate};
pub use error::{ConnectCause, StoreError};
pub use sqlx::pool::PoolConnection;
pub use sqlx::postgres::PgListener;
pub use sqlx::{PgConnection, PgPool, Postgres, Transaction};

/// `columns` (a comma-separated list) qualified with a table alias.
pub(crate) fn prefixed(alias: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
