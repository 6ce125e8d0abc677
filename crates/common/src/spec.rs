//! The workflow file as written: serde types read from YAML with
//! serde-saphyr, keeping source positions (`Spanned`) for diagnostics.
//! These raw types accept anything well-formed; `validate` turns them into
//! a [`crate::Workflow`] or a list of problems.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

/// The top level of a workflow file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkflow {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) input: Option<Spanned<IndexMap<String, Value>>>,
    pub(crate) output: Option<Spanned<Value>>,
    pub(crate) tasks: Option<Spanned<IndexMap<String, Spanned<RawTask>>>>,
}

/// One task as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTask {
    pub(crate) action: Option<Spanned<String>>,
    pub(crate) description: Option<String>,
    pub(crate) input: Option<Spanned<Value>>,
    pub(crate) needs: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) with_items: Option<Spanned<Value>>,
    pub(crate) concurrency: Option<Spanned<i64>>,
    pub(crate) when: Option<Spanned<String>>,
    pub(crate) trigger: Option<Spanned<String>>,
    pub(crate) retry: Option<Spanned<RawRetry>>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) queue: Option<Spanned<String>>,
    pub(crate) allow_failure: Option<bool>,
    /// A sub-workflow: the path of its file, relative to this file.
    pub(crate) workflow: Option<Spanned<String>>,
    /// How deep runs started by `workflow:` may nest (root run = 0).
    pub(crate) max_depth: Option<Spanned<i64>>,
}

/// A retry policy as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub(crate) attempts: Option<Spanned<i64>>,
    pub(crate) delay: Option<Spanned<String>>,
    pub(crate) backoff: Option<Spanned<f64>>,
    pub(crate) max_delay: Option<Spanned<String>>,
    pub(crate) jitter: Option<Spanned<f64>>,
}

/// The fields a workflow may have, for "did you mean" hints.
pub(crate) const WORKFLOW_FIELDS: &[&str] = &["name", "description", "input", "output", "tasks"];
/// The fields a task may have.
pub(crate) const TASK_FIELDS: &[&str] = &[
    "action",
    "description",
    "input",
    "needs",
    "with_items",
    "concurrency",
    "when",
    "trigger",
    "retry",
    "timeout",
    "queue",
    "allow_failure",
    "workflow",
    "max_depth",
];
/// The fields of `retry`.
pub(crate) const RETRY_FIELDS: &[&str] = &["attempts", "delay", "backoff", "max_delay", "jitter"];

/// The items a `with_items` task runs over.
#[derive(Debug, Clone, PartialEq)]
pub enum WithItems {
    /// An expression that evaluates to a list.
    Expression(String),
    /// A literal list (its elements may contain templates).
    List(Vec<Value>),
}
