//! Whether a failed attempt is tried again: the one rule, pure.
//!
//! After an attempt ends `failed` or `timed_out`, [`RetryPolicy::decide`]
//! weighs, in this order: the attempts left (`retry.attempts`), the
//! condition `retry.when` (with `error`, `exit_code`, `attempt`,
//! `timed_out` and `input` in its context), and the time bound
//! `retry.max_duration` (no attempt may start past it, counted from the
//! first attempt's start). The executor calls it for every failed
//! attempt, whoever reported it (a worker, the reaper, a child run's end),
//! and carries out what it returns.

use std::time::Duration;

use serde_json::Value;

use crate::expr::{Evaluator, ExprError};
use crate::state::ExecutionStatus;
use crate::workflow::RetryPolicy;

/// What is known about an attempt that just ended.
#[derive(Debug, Clone, Copy)]
pub struct AttemptFacts<'a> {
    /// How it ended.
    pub status: ExecutionStatus,
    /// Its try number within the current round, 1-based.
    pub attempt: u32,
    /// Its error text (`None`: none reported).
    pub error: Option<&'a str>,
    /// The exit code of the process it ran (a `shell` action's), if one
    /// exited.
    pub exit_code: Option<i32>,
    /// Time since the first attempt of the same item (this round) started.
    pub elapsed: Duration,
    /// The run's input, for `retry.when`.
    pub input: &'a serde_json::Map<String, Value>,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryDecision {
    /// Try again after `delay`.
    Retry {
        /// The backoff before the next attempt.
        delay: Duration,
    },
    /// Do not try again; the attempt's failure is final.
    Stop(StopReason),
}

/// Why a failed attempt is not tried again.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// The attempt did not fail (it succeeded or was canceled): nothing
    /// to retry.
    NotRetryable,
    /// Every attempt of `retry.attempts` is spent.
    AttemptsSpent,
    /// `retry.when` is false for this failure.
    WhenFalse,
    /// `retry.when` could not be evaluated.
    WhenFailed(ExprError),
    /// The next attempt would start after `retry.max_duration`.
    MaxDuration {
        /// Time spent since the first attempt started.
        elapsed: Duration,
        /// The bound.
        max: Duration,
    },
}

impl StopReason {
    /// What to add to the attempt's error, so the task's error says why it
    /// was not retried (`None`: nothing worth saying — no retry policy, or
    /// its attempts spent, which the attempt numbers show).
    #[must_use]
    pub fn note(&self) -> Option<String> {
        match self {
            Self::NotRetryable | Self::AttemptsSpent => None,
            Self::WhenFalse => Some("not retried: `retry.when` is false".to_owned()),
            Self::WhenFailed(e) => Some(format!(
                "not retried: `retry.when` could not be evaluated: {e}"
            )),
            Self::MaxDuration { elapsed, max } => Some(format!(
                "not retried: the next attempt would start {} after the first, past retry.max_duration {}",
                seconds(*elapsed),
                seconds(*max)
            )),
        }
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl RetryPolicy {
    /// Decides whether the attempt described by `facts` is tried again;
    /// `unit_random` is a uniform sample in [0, 1) for the jitter.
    ///
    /// The attempts come first (a spent policy evaluates nothing), then
    /// `when` (a `when` that fails to evaluate stops the retries: a
    /// condition that cannot be read must not retry forever, nor hide the
    /// attempt's own error), then `max_duration` against the time the next
    /// attempt would start (now + its backoff). A running attempt is never
    /// cut by `max_duration`: its `timeout` bounds it.
    #[must_use]
    pub fn decide(
        &self,
        evaluator: &Evaluator,
        facts: &AttemptFacts<'_>,
        unit_random: f64,
    ) -> RetryDecision {
        if !facts.status.is_retryable() {
            return RetryDecision::Stop(StopReason::NotRetryable);
        }
        if facts.attempt >= self.attempts {
            return RetryDecision::Stop(StopReason::AttemptsSpent);
        }
        if let Some(when) = &self.when {
            match evaluator.retry_condition(when, facts) {
                Ok(true) => {}
                Ok(false) => return RetryDecision::Stop(StopReason::WhenFalse),
                Err(e) => return RetryDecision::Stop(StopReason::WhenFailed(e)),
            }
        }
        let delay = self.delay_before(facts.attempt.saturating_add(1), unit_random);
        if let Some(max) = self.max_duration {
            let starts = facts.elapsed.saturating_add(delay);
            if starts > max {
                return RetryDecision::Stop(StopReason::MaxDuration {
                    elapsed: facts.elapsed,
                    max,
                });
            }
        }
        RetryDecision::Retry { delay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts<'a>(
        input: &'a serde_json::Map<String, Value>,
        attempt: u32,
        exit_code: Option<i32>,
    ) -> AttemptFacts<'a> {
        AttemptFacts {
            status: ExecutionStatus::Failed,
            attempt,
            error: Some("shell: `deploy` exited with 3"),
            exit_code,
            elapsed: Duration::from_secs(1),
            input,
        }
    }

    fn policy(when: Option<&str>) -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            delay: Duration::from_secs(2),
            when: when.map(str::to_owned),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn attempts_bound_the_tries() {
        let e = Evaluator::new();
        let input = serde_json::Map::new();
        let p = policy(None);
        assert_eq!(
            p.decide(&e, &facts(&input, 1, None), 0.5),
            RetryDecision::Retry {
                delay: Duration::from_secs(2)
            }
        );
        assert_eq!(
            p.decide(&e, &facts(&input, 3, None), 0.5),
            RetryDecision::Stop(StopReason::AttemptsSpent)
        );
        let succeeded = AttemptFacts {
            status: ExecutionStatus::Succeeded,
            ..facts(&input, 1, None)
        };
        assert_eq!(
            p.decide(&e, &succeeded, 0.5),
            RetryDecision::Stop(StopReason::NotRetryable)
        );
    }

    #[test]
    fn when_sees_the_exit_code_error_attempt_and_timeout() {
        let e = Evaluator::new();
        let input = json!({"retryable": [1, 75]})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let p = policy(Some("{{ exit_code in input.retryable }}"));
        assert!(matches!(
            p.decide(&e, &facts(&input, 1, Some(75)), 0.5),
            RetryDecision::Retry { .. }
        ));
        assert_eq!(
            p.decide(&e, &facts(&input, 1, Some(3)), 0.5),
            RetryDecision::Stop(StopReason::WhenFalse)
        );
        let p = policy(Some("timed_out or ('exited' in error and attempt < 2)"));
        assert!(matches!(
            p.decide(&e, &facts(&input, 1, None), 0.5),
            RetryDecision::Retry { .. }
        ));
        assert_eq!(
            p.decide(&e, &facts(&input, 2, None), 0.5),
            RetryDecision::Stop(StopReason::WhenFalse)
        );
        let timed_out = AttemptFacts {
            status: ExecutionStatus::TimedOut,
            ..facts(&input, 2, None)
        };
        assert!(matches!(
            p.decide(&e, &timed_out, 0.5),
            RetryDecision::Retry { .. }
        ));
        // No exit code (not a process): `null`, which compares false.
        let p = policy(Some("{{ exit_code == 1 }}"));
        assert_eq!(
            p.decide(&e, &facts(&input, 1, None), 0.5),
            RetryDecision::Stop(StopReason::WhenFalse)
        );
    }

    #[test]
    fn a_when_that_fails_stops_with_the_reason() {
        let e = Evaluator::new();
        let input = serde_json::Map::new();
        let p = policy(Some("{{ input.missing > 1 }}"));
        let RetryDecision::Stop(reason @ StopReason::WhenFailed(_)) =
            p.decide(&e, &facts(&input, 1, None), 0.5)
        else {
            panic!("expected a failed when");
        };
        let note = reason.note().unwrap_or_default();
        assert!(
            note.contains("retry.when") && note.contains("input.missing"),
            "{note}"
        );
    }

    #[test]
    fn max_duration_stops_an_attempt_that_would_start_past_it() {
        let e = Evaluator::new();
        let input = serde_json::Map::new();
        let p = RetryPolicy {
            max_duration: Some(Duration::from_secs(10)),
            ..policy(None)
        };
        // 1 s spent + 2 s backoff: within 10 s.
        assert!(matches!(
            p.decide(&e, &facts(&input, 1, None), 0.5),
            RetryDecision::Retry { .. }
        ));
        // 9 s spent + 2 s backoff: past it.
        let late = AttemptFacts {
            elapsed: Duration::from_secs(9),
            ..facts(&input, 1, None)
        };
        let decision = p.decide(&e, &late, 0.5);
        assert_eq!(
            decision,
            RetryDecision::Stop(StopReason::MaxDuration {
                elapsed: Duration::from_secs(9),
                max: Duration::from_secs(10)
            })
        );
        let RetryDecision::Stop(reason) = decision else {
            return;
        };
        assert!(
            reason
                .note()
                .unwrap_or_default()
                .contains("max_duration 10.0s"),
            "{reason:?}"
        );
    }
}
