//! Durable waits, signals and approvals (`wait:`), as pure rules.
//!
//! A `wait:` task runs no action. Its execution is dispatched to the
//! executors (`execution.wait`), which record a **due-time row** (`waits`)
//! and write a message due at that time to the outbox (`wait.due`): no
//! process sleeps and no worker slot is held, so the wait survives any
//! restart ([ADR 0015](../../../docs/decisions/0015-durable-waits-and-signals.md)).
//! This module decides everything about a wait that needs no IO:
//! - when it ends ([`Wait::due`]: a duration from its start, a rendered
//!   RFC 3339 time, a signal's `timeout`);
//! - what its end is: the time came ([`Wait::elapsed`]), a signal or an
//!   approval was delivered ([`Wait::resolve`], which checks a signal's
//!   payload against the declared fields with the code that checks a
//!   run's inputs, [`crate::inputs::resolve`]), or none came in time;
//! - the sentences `status` and `explain` show ([`WaitFacts`]).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::inputs::{Given, InputSpec};
use crate::state::ExecutionStatus;

/// What a wait task's action is shown as (it runs none).
pub const WAIT_LABEL: &str = "wait";

/// The key of a `wait: {until: …}` task's rendered input holding the time.
pub const UNTIL_KEY: &str = "until";

/// A task's `wait:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    pub(crate) kind: WaitKind,
    /// How long a signal or an approval may take (`None`: forever).
    pub(crate) timeout: Option<Duration>,
}

/// What a wait waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitKind {
    /// `wait: 2s`: this long after the wait starts.
    For(Duration),
    /// `wait: {until: "{{ … }}"}`: the RFC 3339 time its template renders
    /// to (the task's input under [`UNTIL_KEY`]).
    Until,
    /// `wait: {signal: NAME, input: {…}}`: a payload delivered by `weft
    /// signal`, checked against these fields.
    Signal {
        /// The signal's name, for people.
        name: String,
        /// The payload's declared fields, as a workflow's inputs.
        fields: IndexMap<String, InputSpec>,
    },
    /// `wait: {approval: true}`: `weft approve` or `weft reject`.
    Approval,
}

/// How a wait is stored (`waits.mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WaitMode {
    /// A duration or a time: ends by itself.
    Timer,
    /// A signal with a payload.
    Signal,
    /// An approval.
    Approval,
}

impl WaitMode {
    /// Every mode, as stored.
    pub const ALL: &'static [Self] = &[Self::Timer, Self::Signal, Self::Approval];

    /// The name stored in `waits.mode`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timer => "timer",
            Self::Signal => "signal",
            Self::Approval => "approval",
        }
    }

    /// The mode named `s`.
    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|m| m.as_str() == s)
    }
}

/// How a wait ended (`waits.resolution`): set once, by a guarded update,
/// by whichever of the time, a signal or a timeout comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// A timer's time came.
    Elapsed,
    /// A signal was delivered.
    Signaled,
    /// An approval was given.
    Approved,
    /// An approval was refused.
    Rejected,
    /// No signal or approval came before the timeout.
    TimedOut,
}

impl Resolution {
    /// Every resolution, as stored.
    pub const ALL: &'static [Self] = &[
        Self::Elapsed,
        Self::Signaled,
        Self::Approved,
        Self::Rejected,
        Self::TimedOut,
    ];

    /// The name stored in `waits.resolution`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Elapsed => "elapsed",
            Self::Signaled => "signaled",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::TimedOut => "timed_out",
        }
    }

    /// The resolution named `s`.
    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|m| m.as_str() == s)
    }

    /// Whether something delivered from outside (a signal, an approval
    /// or a rejection) ended the wait, rather than the clock.
    #[must_use]
    pub const fn is_delivered(self) -> bool {
        matches!(self, Self::Signaled | Self::Approved | Self::Rejected)
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What someone delivers to a waiting task.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// `weft signal RUN TASK --input K=V…`: a payload.
    Signal(Vec<(String, Given)>),
    /// `weft approve RUN TASK`.
    Approve {
        /// Who approved.
        by: String,
        /// Why, if said.
        comment: Option<String>,
    },
    /// `weft reject RUN TASK`.
    Reject {
        /// Who rejected.
        by: String,
        /// Why, if said.
        comment: Option<String>,
    },
}

impl Delivery {
    /// What the delivery is, for messages (`a signal`, `an approval`, …).
    #[must_use]
    pub const fn what(&self) -> &'static str {
        match self {
            Self::Signal(_) => "a signal",
            Self::Approve { .. } => "an approval",
            Self::Reject { .. } => "a rejection",
        }
    }
}

/// How an execution of a wait task ends: the completion recorded for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// How the wait ended.
    pub resolution: Resolution,
    /// The execution's status.
    pub status: ExecutionStatus,
    /// The task's result when it succeeded.
    pub result: Option<Value>,
    /// What went wrong otherwise.
    pub error: Option<String>,
}

impl Wait {
    /// What it waits for.
    #[must_use]
    pub fn kind(&self) -> &WaitKind {
        &self.kind
    }

    /// How long a signal or approval may take.
    #[must_use]
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// How it is stored.
    #[must_use]
    pub const fn mode(&self) -> WaitMode {
        match self.kind {
            WaitKind::For(_) | WaitKind::Until => WaitMode::Timer,
            WaitKind::Signal { .. } => WaitMode::Signal,
            WaitKind::Approval => WaitMode::Approval,
        }
    }

    /// The signal's name (`None` for timers; `approval` for approvals).
    #[must_use]
    pub fn signal_name(&self) -> Option<&str> {
        match &self.kind {
            WaitKind::Signal { name, .. } => Some(name),
            WaitKind::Approval => Some("approval"),
            WaitKind::For(_) | WaitKind::Until => None,
        }
    }

    /// When a wait that starts at `now` with the rendered `input` ends by
    /// itself: a timer's time, a signal's timeout (`None`: it waits for a
    /// signal as long as it takes).
    ///
    /// # Errors
    /// The sentence that fails the attempt: `until` did not render to an
    /// RFC 3339 time.
    pub fn due(&self, now: DateTime<Utc>, input: &Value) -> Result<Option<DateTime<Utc>>, String> {
        let after = |d: Duration| {
            chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        };
        match &self.kind {
            WaitKind::For(d) => Ok(Some(after(*d))),
            WaitKind::Until => parse_until(input.get(UNTIL_KEY)).map(Some),
            WaitKind::Signal { .. } | WaitKind::Approval => Ok(self.timeout.map(after)),
        }
    }

    /// The end of a wait whose due time (see [`Wait::due`]) came with
    /// nothing delivered: a timer succeeds, with the time as its result;
    /// a signal or an approval times out (the retry policy applies).
    #[must_use]
    pub fn elapsed(&self, due: DateTime<Utc>) -> Ending {
        match &self.kind {
            WaitKind::For(_) | WaitKind::Until => Ending {
                resolution: Resolution::Elapsed,
                status: ExecutionStatus::Succeeded,
                result: Some(json!({ UNTIL_KEY: rfc3339(due) })),
                error: None,
            },
            WaitKind::Signal { name, .. } => Ending {
                resolution: Resolution::TimedOut,
                status: ExecutionStatus::TimedOut,
                result: None,
                error: Some(format!(
                    "timed out: no signal `{name}` came within {}",
                    shown(self.timeout)
                )),
            },
            WaitKind::Approval => Ending {
                resolution: Resolution::TimedOut,
                status: ExecutionStatus::TimedOut,
                result: None,
                error: Some(format!(
                    "timed out: no approval came within {}",
                    shown(self.timeout)
                )),
            },
        }
    }

    /// What a delivery to this wait makes of it, or why it is refused
    /// (the task then keeps waiting). A signal's payload is checked
    /// field by field against the declared ones (defaults applied); an
    /// approval's result is `{approved, by, comment}`; a rejection fails
    /// the attempt, naming who rejected it and why.
    ///
    /// # Errors
    /// The sentence refusing the delivery.
    pub fn resolve(&self, task: &str, delivery: Delivery) -> Result<Ending, String> {
        match (&self.kind, delivery) {
            (WaitKind::Signal { name, fields }, Delivery::Signal(given)) => {
                let payload = crate::inputs::resolve(fields, given).map_err(|e| {
                    format!("signal `{name}` refused for task `{task}` (it keeps waiting): {e}")
                })?;
                Ok(Ending {
                    resolution: Resolution::Signaled,
                    status: ExecutionStatus::Succeeded,
                    result: Some(Value::Object(payload)),
                    error: None,
                })
            }
            (WaitKind::Approval, Delivery::Approve { by, comment }) => Ok(Ending {
                resolution: Resolution::Approved,
                status: ExecutionStatus::Succeeded,
                result: Some(json!({ "approved": true, "by": by, "comment": comment })),
                error: None,
            }),
            (WaitKind::Approval, Delivery::Reject { by, comment }) => Ok(Ending {
                resolution: Resolution::Rejected,
                status: ExecutionStatus::Failed,
                result: None,
                error: Some(match comment {
                    Some(c) => format!("rejected by {by}: {c}"),
                    None => format!("rejected by {by}"),
                }),
            }),
            (WaitKind::Approval, d @ Delivery::Signal(_)) => Err(format!(
                "task `{task}` waits for an approval, not {}: use `weft approve` or `weft reject`",
                d.what()
            )),
            (WaitKind::Signal { name, .. }, d) => Err(format!(
                "task `{task}` waits for signal `{name}`, not {}: use `weft signal`",
                d.what()
            )),
            (WaitKind::For(_) | WaitKind::Until, d) => Err(format!(
                "task `{task}` waits for a time, not {}: it ends by itself",
                d.what()
            )),
        }
    }
}

/// `until` as rendered: an RFC 3339 time.
fn parse_until(value: Option<&Value>) -> Result<DateTime<Utc>, String> {
    let hint = "an RFC 3339 time such as `2026-12-01T12:00:00Z`";
    match value {
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                format!(
                    "`wait.until` rendered to {:?}, which is not {hint} ({e})",
                    crate::abbrev::abbreviate(s, 60)
                )
            }),
        Some(other) => Err(format!(
            "`wait.until` rendered to {} {}, not {hint}",
            crate::expr::kind_of(other),
            crate::explain::abbreviate(other, 60)
        )),
        None => Err("`wait.until` rendered to nothing".to_owned()),
    }
}

/// A time as shown and stored in results: RFC 3339, UTC, milliseconds.
#[must_use]
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn shown(timeout: Option<Duration>) -> String {
    timeout.map_or_else(|| "its timeout".to_owned(), |d| format!("{d:?}"))
}

/// A wait as read from the state, for `status` and `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WaitFacts {
    /// What it waits for.
    pub mode: WaitMode,
    /// The signal's name (`approval` for approvals).
    pub signal: Option<String>,
    /// When it ends by itself (a timer's time, a signal's timeout).
    pub due_at: Option<DateTime<Utc>>,
    /// How it ended, once it did.
    pub resolution: Option<Resolution>,
}

impl WaitFacts {
    /// What the task is doing, e.g. `waiting until 2026-12-01T12:00:00.000Z`
    /// or `waiting for signal \`go\` (\`weft signal\`), until …`.
    #[must_use]
    pub fn sentence(&self) -> String {
        let until = self
            .due_at
            .map(|t| format!("until {}", rfc3339(t)))
            .unwrap_or_default();
        match (self.mode, self.resolution) {
            (_, Some(r)) => format!("its wait ended ({r}); the result is being recorded"),
            (WaitMode::Timer, None) => format!("waiting {until}"),
            (WaitMode::Signal, None) => {
                let name = self.signal.as_deref().unwrap_or("?");
                let mut s = format!("waiting for signal `{name}` (`weft signal RUN TASK`)");
                if self.due_at.is_some() {
                    s.push_str(", at most ");
                    s.push_str(&until);
                }
                s
            }
            (WaitMode::Approval, None) => {
                let mut s = "waiting for an approval (`weft approve` or `weft reject`)".to_owned();
                if self.due_at.is_some() {
                    s.push_str(", at most ");
                    s.push_str(&until);
                }
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::InputType;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn signal() -> Wait {
        let mut fields = IndexMap::new();
        fields.insert(
            "amount".to_owned(),
            InputSpec {
                kind: Some(InputType::Integer),
                default: None,
                allowed: None,
                description: None,
                secret: false,
            },
        );
        fields.insert(
            "note".to_owned(),
            InputSpec::untyped(Some(Value::String(String::new()))),
        );
        Wait {
            kind: WaitKind::Signal {
                name: "go".into(),
                fields,
            },
            timeout: Some(Duration::from_secs(60)),
        }
    }

    #[test]
    fn a_duration_is_due_that_long_after_the_start() {
        let now = at("2026-01-01T00:00:00Z");
        let wait = Wait {
            kind: WaitKind::For(Duration::from_secs(90)),
            timeout: None,
        };
        assert_eq!(
            wait.due(now, &json!({})),
            Ok(Some(at("2026-01-01T00:01:30Z")))
        );
        let ending = wait.elapsed(at("2026-01-01T00:01:30Z"));
        assert_eq!(ending.status, ExecutionStatus::Succeeded);
        assert_eq!(
            ending.result,
            Some(json!({"until": "2026-01-01T00:01:30.000Z"}))
        );
    }

    #[test]
    fn until_must_render_to_an_rfc3339_time() {
        let now = at("2026-01-01T00:00:00Z");
        let wait = Wait {
            kind: WaitKind::Until,
            timeout: None,
        };
        assert_eq!(
            wait.due(now, &json!({"until": "2025-06-01T10:00:00+02:00"})),
            Ok(Some(at("2025-06-01T08:00:00Z")))
        );
        let err = wait.due(now, &json!({"until": "tomorrow"})).unwrap_err();
        assert!(
            err.contains("\"tomorrow\"") && err.contains("RFC 3339"),
            "{err}"
        );
        let err = wait.due(now, &json!({"until": 5})).unwrap_err();
        assert!(err.contains("a number 5"), "{err}");
    }

    #[test]
    fn a_signal_payload_is_checked_against_its_fields() {
        let wait = signal();
        let ending = wait
            .resolve(
                "pay",
                Delivery::Signal(vec![("amount".into(), Given::Text("12".into()))]),
            )
            .unwrap();
        assert_eq!(ending.status, ExecutionStatus::Succeeded);
        assert_eq!(ending.result, Some(json!({"amount": 12, "note": ""})));
        let refused = wait
            .resolve(
                "pay",
                Delivery::Signal(vec![("amount".into(), Given::Text("lots".into()))]),
            )
            .unwrap_err();
        assert!(
            refused.contains("input `amount` must be an integer")
                && refused.contains("keeps waiting"),
            "{refused}"
        );
        let missing = wait.resolve("pay", Delivery::Signal(vec![])).unwrap_err();
        assert!(missing.contains("amount"), "{missing}");
        let wrong = wait
            .resolve(
                "pay",
                Delivery::Approve {
                    by: "al".into(),
                    comment: None,
                },
            )
            .unwrap_err();
        assert!(wrong.contains("use `weft signal`"), "{wrong}");
    }

    #[test]
    fn a_timeout_times_the_attempt_out() {
        let ending = signal().elapsed(at("2026-01-01T00:00:00Z"));
        assert_eq!(ending.status, ExecutionStatus::TimedOut);
        assert_eq!(ending.resolution, Resolution::TimedOut);
        assert!(ending.error.unwrap().contains("no signal `go`"));
    }

    #[test]
    fn approvals_succeed_and_rejections_fail_naming_who() {
        let wait = Wait {
            kind: WaitKind::Approval,
            timeout: None,
        };
        let ok = wait
            .resolve(
                "deploy",
                Delivery::Approve {
                    by: "al".into(),
                    comment: Some("fine".into()),
                },
            )
            .unwrap();
        assert_eq!(
            ok.result,
            Some(json!({"approved": true, "by": "al", "comment": "fine"}))
        );
        let no = wait
            .resolve(
                "deploy",
                Delivery::Reject {
                    by: "bo".into(),
                    comment: Some("not today".into()),
                },
            )
            .unwrap();
        assert_eq!(no.status, ExecutionStatus::Failed);
        assert_eq!(no.error.as_deref(), Some("rejected by bo: not today"));
        assert_eq!(wait.due(Utc::now(), &json!({})), Ok(None));
    }

    #[test]
    fn facts_read_as_sentences() {
        let facts = WaitFacts {
            mode: WaitMode::Timer,
            signal: None,
            due_at: Some(at("2026-01-01T00:00:00Z")),
            resolution: None,
        };
        assert_eq!(facts.sentence(), "waiting until 2026-01-01T00:00:00.000Z");
        let facts = WaitFacts {
            mode: WaitMode::Signal,
            signal: Some("go".into()),
            due_at: None,
            resolution: None,
        };
        assert!(facts.sentence().starts_with("waiting for signal `go`"));
    }
}
