//! Shared concurrency limits across runs: a workflow's `limit:`.
//!
//! ```yaml
//! limit: { key: "{{ input.customer }}", runs: 2, runs_total: 6, order: fair }
//! ```
//!
//! At most `runs` runs of the workflow with the same key value hold a
//! slot (are `running`, or were granted a slot and are about to start);
//! with `runs_total`, at most that many across all its key values. A run
//! that finds no slot waits `pending` in line; a slot freed by a run's end
//! goes to the next one in the same transaction (`weft_store::shared_limits`).
//! `order` says which waiting run is next when a slot may go to more than
//! one key (only with `runs_total`; see ADR 0016): `fifo`, the run that
//! has waited longest; `fair`, the key that was served longest ago
//! (round-robin between keys), then the longest-waiting run of that key.
//!
//! This module is the pure part: the validated spec ([`RunLimit`]), the
//! key a run renders ([`RunLimit::key_for`]) and what is said about a
//! run's place in line ([`LimitFacts`]).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::expr::{Context, Evaluator, WorkflowRef};
use crate::id::WorkflowExecutionId;

/// Which waiting run a freed slot goes to when several keys could take
/// it (`limit.order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LimitOrder {
    /// The run that has waited longest, whatever its key.
    #[default]
    Fifo,
    /// Round-robin between keys: the key served longest ago, then its
    /// longest-waiting run.
    Fair,
}

impl LimitOrder {
    /// Every order, for hints.
    pub const ALL: &'static [Self] = &[Self::Fifo, Self::Fair];

    /// The word written in a workflow and stored.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fifo => "fifo",
            Self::Fair => "fair",
        }
    }

    /// The order named `word`, if any.
    #[must_use]
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|o| o.as_str() == word)
    }
}

/// A workflow's validated `limit:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLimit {
    /// The key's template, as written.
    pub(crate) key: String,
    /// What the key is called when shown: `customer` for `{{
    /// input.customer }}`, else `key`.
    pub(crate) label: String,
    /// Runs per key value holding a slot at most.
    pub(crate) runs: u32,
    /// Runs across every key value holding a slot at most.
    pub(crate) runs_total: Option<u32>,
    pub(crate) order: LimitOrder,
}

impl RunLimit {
    /// The key's template, as written.
    #[must_use]
    pub fn key_template(&self) -> &str {
        &self.key
    }

    /// Slots per key value.
    #[must_use]
    pub const fn runs(&self) -> u32 {
        self.runs
    }

    /// Slots across every key value of the workflow, if capped.
    #[must_use]
    pub const fn runs_total(&self) -> Option<u32> {
        self.runs_total
    }

    /// Who goes next when several keys could take a slot.
    #[must_use]
    pub const fn order(&self) -> LimitOrder {
        self.order
    }

    /// The shown name of a key template: the input's name for a key that
    /// is exactly `{{ input.NAME }}`, else `key`.
    pub(crate) fn label_of(template: &str) -> String {
        crate::expr::lone_expression(template)
            .and_then(|e| e.strip_prefix("input."))
            .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .map_or_else(|| "key".to_owned(), str::to_owned)
    }

    /// The key a run of `workflow` with this `input` waits under, as
    /// stored and shown: `label=value` (`customer=acme`). The value is the
    /// rendered key: a string as it is, a number or boolean as written, a
    /// list or map as compact JSON.
    ///
    /// # Errors
    /// Why the key could not be rendered (an undefined name, `null`, an
    /// empty string), naming the key's template.
    pub fn key_for(
        &self,
        evaluator: &Evaluator,
        workflow: &str,
        run: WorkflowExecutionId,
        scheduled_at: Option<String>,
        input: &Map<String, Value>,
    ) -> Result<String, String> {
        let ctx = Context {
            input: input.clone(),
            tasks: std::collections::BTreeMap::new(),
            item: None,
            item_index: None,
            workflow: WorkflowRef {
                id: run.to_string(),
                name: workflow.to_owned(),
                scheduled_at,
                exit: None,
            },
        };
        let rendered = evaluator
            .render(&Value::String(self.key.clone()), &ctx)
            .map_err(|e| format!("`limit.key` ({}) could not be rendered: {e}", self.key))?;
        let value = match rendered {
            Value::Null => {
                return Err(format!(
                    "`limit.key` ({}) rendered `null`: every run needs a key to wait under",
                    self.key
                ));
            }
            Value::String(s) if s.trim().is_empty() => {
                return Err(format!(
                    "`limit.key` ({}) rendered an empty string: every run needs a key to wait under",
                    self.key
                ));
            }
            Value::String(s) => s,
            other => other.to_string(),
        };
        Ok(format!("{}={value}", self.label))
    }
}

/// A task's lock across runs: `mutex: NAME` (one holder) or `semaphore:
/// {key, limit}` (up to `limit` holders), held by the task (all its
/// attempts) from its dispatch until it is terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLock {
    /// `mutex` or `semaphore`.
    pub(crate) kind: &'static str,
    /// The name's or key's template.
    pub(crate) key: String,
    /// Holders at most (1 for a mutex).
    pub(crate) limit: u32,
}

impl TaskLock {
    /// `mutex` or `semaphore`.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        self.kind
    }

    /// Holders at most (1 for a mutex).
    #[must_use]
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// The name's or key's template.
    #[must_use]
    pub fn key_template(&self) -> &str {
        &self.key
    }

    /// The scope and the key a task holding this lock claims under, from
    /// the rendered name: every run's tasks naming the same lock share it,
    /// whatever their workflow.
    ///
    /// # Errors
    /// Why the name could not be rendered (undefined, `null`, empty).
    pub fn claim_for(
        &self,
        evaluator: &Evaluator,
        ctx: &Context,
    ) -> Result<(String, String), String> {
        let rendered = evaluator
            .render(&Value::String(self.key.clone()), ctx)
            .map_err(|e| format!("`{}` ({}) could not be rendered: {e}", self.kind, self.key))?;
        let value = match rendered {
            Value::Null => return Err(format!("`{}` ({}) rendered `null`", self.kind, self.key)),
            Value::String(s) if s.trim().is_empty() => {
                return Err(format!(
                    "`{}` ({}) rendered an empty string",
                    self.kind, self.key
                ));
            }
            Value::String(s) => s,
            other => other.to_string(),
        };
        let key = format!("{} {value}", self.kind);
        Ok((key.clone(), key))
    }
}

/// Where a run stands with its workflow's `limit`: holding a slot, or in
/// line for one; read by `weft_store::shared_limits::facts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitFacts {
    /// The key it waits under or holds (`customer=acme`).
    pub key: String,
    /// Slots of the key.
    pub runs: i32,
    /// Slots across the workflow's keys, if capped.
    pub runs_total: Option<i32>,
    /// Runs of the workflow holding a slot, if capped.
    pub holding_total: Option<i32>,
    /// Its place in line (1 = next), or `None` while it holds a slot.
    pub position: Option<i64>,
    /// The runs holding the key's slots (the run itself included when
    /// it holds one).
    pub holders: Vec<WorkflowExecutionId>,
}

impl LimitFacts {
    /// One sentence: `3rd in line for limit customer=acme (2 running:
    /// <ids>)`, or `holds a slot of limit customer=acme (1 of 2 in use)`.
    #[must_use]
    pub fn sentence(&self) -> String {
        let holders = self
            .holders
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let Some(position) = self.position else {
            return format!(
                "holds a slot of limit {} ({} of {} in use)",
                self.key,
                self.holders.len(),
                self.runs
            );
        };
        let mut line = format!("{} in line for limit {} (", ordinal(position), self.key);
        if self.holders.is_empty() {
            line.push_str("none running");
        } else {
            let _ = write!(line, "{} running: {holders}", self.holders.len());
        }
        if let (Some(total), Some(holding)) = (self.runs_total, self.holding_total) {
            let _ = write!(line, "; {holding} of {total} slots of the workflow in use");
        }
        line.push(')');
        line
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, … `11th`, `12th`, `13th`, `21st`.
#[must_use]
pub fn ordinal(n: i64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(key: &str) -> RunLimit {
        RunLimit {
            key: key.to_owned(),
            label: RunLimit::label_of(key),
            runs: 2,
            runs_total: None,
            order: LimitOrder::Fifo,
        }
    }

    fn input(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn ordinals_read_as_english() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }

    #[test]
    fn a_key_is_named_for_the_input_it_reads() {
        let id = WorkflowExecutionId::new();
        let e = Evaluator::new();
        let k = limit("{{ input.customer }}");
        let key = k.key_for(
            &e,
            "wf",
            id,
            None,
            &input(serde_json::json!({"customer": "acme"})),
        );
        assert_eq!(key.as_deref(), Ok("customer=acme"));
        let key = k.key_for(
            &e,
            "wf",
            id,
            None,
            &input(serde_json::json!({"customer": 7})),
        );
        assert_eq!(key.as_deref(), Ok("customer=7"));
        let mixed = limit("{{ input.region }}-{{ input.customer }}");
        let key = mixed.key_for(
            &e,
            "wf",
            id,
            None,
            &input(serde_json::json!({"customer": "acme", "region": "eu"})),
        );
        assert_eq!(key.as_deref(), Ok("key=eu-acme"));
        assert_eq!(
            limit("global")
                .key_for(&e, "wf", id, None, &Map::new())
                .as_deref(),
            Ok("key=global")
        );
    }

    #[test]
    fn a_key_that_renders_nothing_is_an_error_naming_the_key() {
        let id = WorkflowExecutionId::new();
        let e = Evaluator::new();
        let k = limit("{{ input.customer }}");
        let null = k.key_for(
            &e,
            "wf",
            id,
            None,
            &input(serde_json::json!({"customer": null})),
        );
        assert!(null.unwrap_err().contains("rendered `null`"));
        let empty = k.key_for(
            &e,
            "wf",
            id,
            None,
            &input(serde_json::json!({"customer": " "})),
        );
        assert!(empty.unwrap_err().contains("empty string"));
        let missing = k.key_for(&e, "wf", id, None, &Map::new());
        assert!(missing.unwrap_err().contains("{{ input.customer }}"));
    }

    #[test]
    fn the_sentence_says_the_place_in_line_and_who_holds_the_slots() {
        let a = WorkflowExecutionId::new();
        let b = WorkflowExecutionId::new();
        let facts = LimitFacts {
            key: "customer=acme".into(),
            runs: 2,
            runs_total: None,
            holding_total: None,
            position: Some(3),
            holders: vec![a, b],
        };
        assert_eq!(
            facts.sentence(),
            format!("3rd in line for limit customer=acme (2 running: {a}, {b})")
        );
        let holding = LimitFacts {
            position: None,
            ..facts.clone()
        };
        assert_eq!(
            holding.sentence(),
            "holds a slot of limit customer=acme (2 of 2 in use)"
        );
        let capped = LimitFacts {
            runs_total: Some(6),
            holding_total: Some(6),
            holders: vec![],
            position: Some(1),
            ..facts
        };
        assert_eq!(
            capped.sentence(),
            "1st in line for limit customer=acme (none running; 6 of 6 slots of the workflow in use)"
        );
    }
}
