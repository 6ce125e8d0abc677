//! The state machines of Weft, as pure data.
//!
//! Each status enum knows its legal transitions. The store turns
//! [`WorkflowStatus::sources_of`] (and friends) into the `WHERE status = ANY(…)`
//! guard of its conditional `UPDATE`s, so the rules live here once and the SQL
//! cannot drift from them. Terminal states are absorbing: no transition leaves
//! them, which is what makes a late or duplicated message harmless. The one
//! exception is deliberate and not a message: `weft retry` re-opens a failed
//! run (and its failed or skipped tasks) as a new attempt, under its own guard.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A transition that the state machine forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal {machine} transition from `{from}` to `{to}`")]
pub struct IllegalTransition {
    /// Which state machine (`workflow`, `task`, `execution`).
    pub machine: &'static str,
    /// The current state.
    pub from: &'static str,
    /// The requested state.
    pub to: &'static str,
}

/// A status string that names no state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {machine} status `{value}`")]
pub struct UnknownStatus {
    /// Which state machine (`workflow`, `task`, `execution`).
    pub machine: &'static str,
    /// The string that was read.
    pub value: String,
}

macro_rules! status_enum {
    (
        $(#[$doc:meta])*
        $name:ident, $machine:literal {
            $( $(#[$vdoc:meta])* $variant:ident = $text:literal => [$($from:ident),*] ),+ $(,)?
        }
        terminal: [$($terminal:ident),*]
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )+
        }

        impl $name {
            /// Every state, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The name stored in the database and shown to users.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// The states from which `target` may be entered.
            #[must_use]
            pub const fn sources_of(target: Self) -> &'static [Self] {
                match target {
                    $(Self::$variant => &[$(Self::$from),*],)+
                }
            }

            /// Whether no transition leaves this state.
            #[must_use]
            pub const fn is_terminal(self) -> bool {
                matches!(self, $(Self::$terminal)|*)
            }

            /// The next state if `self → next` is legal.
            ///
            /// # Errors
            /// [`IllegalTransition`] naming both states otherwise.
            pub fn transition(self, next: Self) -> Result<Self, IllegalTransition> {
                if Self::sources_of(next).contains(&self) {
                    Ok(next)
                } else {
                    Err(IllegalTransition { machine: $machine, from: self.as_str(), to: next.as_str() })
                }
            }

            /// The names of the states from which `target` may be entered, as
            /// the store binds them into a guard.
            #[must_use]
            pub fn source_names(target: Self) -> Vec<&'static str> {
                Self::sources_of(target).iter().map(|s| s.as_str()).collect()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownStatus;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(UnknownStatus { machine: $machine, value: other.to_owned() }),
                }
            }
        }
    };
}

status_enum! {
    /// The status of one workflow execution (a run).
    WorkflowStatus, "workflow" {
        /// Accepted and stored; the executor has not started it yet.
        Pending = "pending" => [],
        /// Its root tasks have been dispatched.
        Running = "running" => [Pending],
        /// Every task is terminal and none failed (or failures were allowed).
        Succeeded = "succeeded" => [Running],
        /// Every task is terminal and one failed, or the run could not start.
        Failed = "failed" => [Pending, Running],
        /// Cancellation requested: nothing new is dispatched.
        Canceling = "canceling" => [Pending, Running],
        /// Cancellation finished: no work of the run is still running.
        Canceled = "canceled" => [Canceling],
    }
    terminal: [Succeeded, Failed, Canceled]
}

status_enum! {
    /// The status of one task of a run (`task_executions`).
    TaskStatus, "task" {
        /// Not every task it needs is terminal yet.
        Waiting = "waiting" => [],
        /// Dispatched: at least one execution exists.
        Running = "running" => [Waiting],
        /// Every item succeeded.
        Succeeded = "succeeded" => [Running],
        /// An item failed after its retries, or its input could not be rendered.
        Failed = "failed" => [Waiting, Running],
        /// Its trigger rule or `when` said not to run it.
        Skipped = "skipped" => [Waiting],
        /// The run was canceled before the task finished.
        Canceled = "canceled" => [Waiting, Running],
    }
    terminal: [Succeeded, Failed, Skipped, Canceled]
}

status_enum! {
    /// The status of one dispatched unit: a task item × attempt (`executions`).
    ExecutionStatus, "execution" {
        /// Created, waiting for a slot (its task's `concurrency`, its run's
        /// `parallelism`); not yet dispatched.
        Pending = "pending" => [],
        /// Its dispatch is in the outbox or on the task queue.
        Queued = "queued" => [Pending],
        /// A worker reported it started.
        Running = "running" => [Queued],
        /// The action returned a result.
        Succeeded = "succeeded" => [Queued, Running],
        /// The action returned an error.
        Failed = "failed" => [Queued, Running],
        /// Its timeout passed, or its worker stopped heartbeating.
        TimedOut = "timed_out" => [Queued, Running],
        /// The run was canceled, or the task no longer needs it.
        Canceled = "canceled" => [Pending, Queued, Running],
    }
    terminal: [Succeeded, Failed, TimedOut, Canceled]
}

impl WorkflowStatus {
    /// Whether the run is still accepting new dispatches.
    #[must_use]
    pub const fn dispatches(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

impl ExecutionStatus {
    /// Whether this outcome is worth another attempt under a retry policy.
    #[must_use]
    pub const fn is_retryable(self) -> bool {
        matches!(self, Self::Failed | Self::TimedOut)
    }
}

/// When a task whose needs are all terminal runs (design §2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Every need succeeded (the default).
    #[default]
    AllSuccess,
    /// Every need is terminal, whatever its outcome.
    AllDone,
    /// At least one need failed.
    OneFailed,
    /// Every need failed.
    AllFailed,
    /// At least one need succeeded.
    OneSuccess,
    /// No need failed (skipped needs are fine).
    NoneFailed,
}

impl Trigger {
    /// Every rule, for "did you mean" hints and documentation.
    pub const ALL: &'static [Self] = &[
        Self::AllSuccess,
        Self::AllDone,
        Self::OneFailed,
        Self::AllFailed,
        Self::OneSuccess,
        Self::NoneFailed,
    ];

    /// The spelling used in YAML.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AllSuccess => "all_success",
            Self::AllDone => "all_done",
            Self::OneFailed => "one_failed",
            Self::AllFailed => "all_failed",
            Self::OneSuccess => "one_success",
            Self::NoneFailed => "none_failed",
        }
    }

    /// Whether a task with this rule runs, given the (terminal) statuses of
    /// the tasks it needs. A task with no needs always runs.
    ///
    /// A canceled need counts as neither a success nor a failure.
    #[must_use]
    pub fn is_satisfied(self, needs: &[TaskStatus]) -> bool {
        if needs.is_empty() {
            return true;
        }
        let failed = |s: &&TaskStatus| **s == TaskStatus::Failed;
        let succeeded = |s: &&TaskStatus| **s == TaskStatus::Succeeded;
        match self {
            Self::AllSuccess => needs.iter().all(|s| succeeded(&s)),
            Self::AllDone => needs.iter().all(|s| s.is_terminal()),
            Self::OneFailed => needs.iter().any(|s| failed(&s)),
            Self::AllFailed => needs.iter().all(|s| failed(&s)),
            Self::OneSuccess => needs.iter().any(|s| succeeded(&s)),
            Self::NoneFailed => !needs.iter().any(|s| failed(&s)),
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::{Failed, Skipped, Succeeded};

    #[test]
    fn terminal_states_are_absorbing() {
        for &from in WorkflowStatus::ALL.iter().filter(|s| s.is_terminal()) {
            for &to in WorkflowStatus::ALL {
                assert!(from.transition(to).is_err(), "{from} -> {to}");
            }
        }
        for &from in TaskStatus::ALL.iter().filter(|s| s.is_terminal()) {
            for &to in TaskStatus::ALL {
                assert!(from.transition(to).is_err(), "{from} -> {to}");
            }
        }
        for &from in ExecutionStatus::ALL.iter().filter(|s| s.is_terminal()) {
            for &to in ExecutionStatus::ALL {
                assert!(from.transition(to).is_err(), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn illegal_transition_names_both_states() {
        let err = ExecutionStatus::Succeeded
            .transition(ExecutionStatus::Running)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "illegal execution transition from `succeeded` to `running`"
        );
    }

    #[test]
    fn status_names_round_trip() {
        for s in ExecutionStatus::ALL {
            assert_eq!(s.as_str().parse::<ExecutionStatus>(), Ok(*s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::json!(s.as_str()))
            );
        }
        assert!("done".parse::<TaskStatus>().is_err());
    }

    #[test]
    fn trigger_rules_follow_the_table() {
        let all_ok = [Succeeded, Succeeded];
        let mixed = [Succeeded, Failed];
        let all_bad = [Failed, Failed];
        let skipped = [Succeeded, Skipped];
        let cases = [
            (Trigger::AllSuccess, [true, false, false, false]),
            (Trigger::AllDone, [true, true, true, true]),
            (Trigger::OneFailed, [false, true, true, false]),
            (Trigger::AllFailed, [false, false, true, false]),
            (Trigger::OneSuccess, [true, true, false, true]),
            (Trigger::NoneFailed, [true, false, false, true]),
        ];
        for (rule, expected) in cases {
            let got = [&all_ok[..], &mixed, &all_bad, &skipped].map(|n| rule.is_satisfied(n));
            assert_eq!(got, expected, "{rule}");
        }
        assert!(Trigger::AllFailed.is_satisfied(&[]));
    }
}
