//! The validated workflow: built only by [`Workflow::parse`], which runs
//! the checks in `validate` and reports every problem at once.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::dag::Dag;
use crate::diagnostic::Diagnostics;
use crate::spec::WithItems;
use crate::state::Trigger;
use crate::validate::Validator;

/// A workflow that passed validation.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) inputs: IndexMap<String, Option<Value>>,
    pub(crate) output: Option<Value>,
    pub(crate) output_references: BTreeSet<String>,
    pub(crate) tasks: Vec<Task>,
    /// Task name → position in `tasks`.
    pub(crate) index: std::collections::HashMap<String, usize>,
    pub(crate) dag: Dag,
}

/// One task of a validated workflow.
#[derive(Debug, Clone)]
pub struct Task {
    pub(crate) name: String,
    pub(crate) action: String,
    pub(crate) description: Option<String>,
    pub(crate) input: Value,
    pub(crate) needs: Vec<String>,
    pub(crate) with_items: Option<WithItems>,
    pub(crate) concurrency: Option<u32>,
    pub(crate) when: Option<String>,
    pub(crate) trigger: Trigger,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeout: Option<Duration>,
    pub(crate) queue: String,
    pub(crate) allow_failure: bool,
    pub(crate) references: BTreeSet<String>,
    /// The sub-workflow it starts instead of running an action.
    pub(crate) call: Option<Call>,
}

/// How deep runs started by `workflow:` tasks may nest when the task does
/// not say (`max_depth`): the root run is depth 0, its children 1, …
pub const DEFAULT_MAX_DEPTH: u32 = 10;

/// A task's sub-workflow: `workflow: PATH` (and `max_depth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub(crate) path: String,
    pub(crate) max_depth: u32,
    /// Byte span of the path in the source, for diagnostics.
    pub(crate) path_span: (usize, usize),
    /// Byte span of the task's `input:`, when it has one.
    pub(crate) input_span: Option<(usize, usize)>,
}

impl Call {
    /// The file, as written: relative to the file of the calling workflow.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The deepest a run this task starts may be (root run = 0).
    #[must_use]
    pub fn max_depth(&self) -> u32 {
        self.max_depth
    }

    /// What a sub-workflow task shows where a task shows its action.
    #[must_use]
    pub fn label(&self) -> String {
        format!("{}{}", crate::child::CHILD_LABEL_PREFIX, self.path)
    }
}

/// How often and how patiently a task is tried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total tries, the first included (1 = no retry).
    pub attempts: u32,
    /// Delay before the first retry.
    pub delay: Duration,
    /// Factor applied to the delay for each further retry.
    pub backoff: f64,
    /// Upper bound of the delay.
    pub max_delay: Option<Duration>,
    /// Random spread of each delay, as a fraction (0.1 = ±10 %).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 1,
            delay: Duration::from_secs(1),
            backoff: 2.0,
            max_delay: None,
            jitter: 0.0,
        }
    }
}

impl RetryPolicy {
    /// The delay before try number `attempt` (2 = the first retry), given a
    /// uniform sample in [0, 1) for the jitter.
    #[must_use]
    pub fn delay_before(&self, attempt: u32, unit_random: f64) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(2)).unwrap_or(i32::MAX);
        let mut seconds = self.delay.as_secs_f64() * self.backoff.powi(exponent);
        if let Some(max) = self.max_delay {
            seconds = seconds.min(max.as_secs_f64());
        }
        let spread = self.jitter * (2.0 * unit_random.clamp(0.0, 1.0) - 1.0);
        Duration::try_from_secs_f64((seconds * (1.0 + spread)).max(0.0)).unwrap_or(Duration::MAX)
    }
}

/// Inputs given at submit that do not fit the workflow's declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// Required inputs (declared with `null`) that were not given.
    pub missing: Vec<String>,
    /// Given inputs the workflow does not declare.
    pub undeclared: Vec<String>,
    /// The declared inputs, for the message.
    pub declared: Vec<String>,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            let flags: Vec<String> = self
                .missing
                .iter()
                .map(|m| format!("--input {m}=VALUE"))
                .collect();
            parts.push(format!(
                "missing required input(s): {} (give them with {})",
                self.missing.join(", "),
                flags.join(" ")
            ));
        }
        if !self.undeclared.is_empty() {
            parts.push(format!(
                "undeclared input(s): {} (this workflow declares: {})",
                self.undeclared.join(", "),
                if self.declared.is_empty() {
                    "none".to_owned()
                } else {
                    self.declared.join(", ")
                }
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for InputError {}

impl Workflow {
    /// Parses and validates a workflow; `origin` names the file in messages.
    ///
    /// # Errors
    /// [`Diagnostics`] listing every problem found.
    pub fn parse(source: &str, origin: &str) -> Result<Self, Diagnostics> {
        Validator::new(source)
            .run()
            .map_err(|problems| Diagnostics::new(origin, source, problems))
    }

    /// The workflow's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its description.
    #[must_use]
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Declared inputs with their defaults (`None` = required).
    #[must_use]
    pub fn inputs(&self) -> &IndexMap<String, Option<Value>> {
        &self.inputs
    }

    /// Applies defaults to the given inputs.
    ///
    /// # Errors
    /// [`InputError`] naming every missing required input and every
    /// undeclared given one.
    pub fn resolve_input(
        &self,
        mut given: Map<String, Value>,
    ) -> Result<Map<String, Value>, InputError> {
        let undeclared: Vec<String> = given
            .keys()
            .filter(|k| !self.inputs.contains_key(*k))
            .cloned()
            .collect();
        let mut missing = Vec::new();
        let mut resolved = Map::new();
        for (name, default) in &self.inputs {
            match (given.remove(name), default) {
                (Some(value), _) => {
                    resolved.insert(name.clone(), value);
                }
                (None, Some(default)) => {
                    resolved.insert(name.clone(), default.clone());
                }
                (None, None) => missing.push(name.clone()),
            }
        }
        if missing.is_empty() && undeclared.is_empty() {
            Ok(resolved)
        } else {
            Err(InputError {
                missing,
                undeclared,
                declared: self.inputs.keys().cloned().collect(),
            })
        }
    }

    /// The `output:` template, if any.
    #[must_use]
    pub fn output(&self) -> Option<&Value> {
        self.output.as_ref()
    }

    /// Names of the tasks the output template uses.
    #[must_use]
    pub fn output_references(&self) -> &BTreeSet<String> {
        &self.output_references
    }

    /// One task by name.
    #[must_use]
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.index.get(name).map(|&i| &self.tasks[i])
    }

    /// Every task, in a topological order (each after the tasks it needs).
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter()
    }

    /// The task graph.
    #[must_use]
    pub fn dag(&self) -> &Dag {
        &self.dag
    }
}

impl Task {
    /// Its name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The action workers run.
    #[must_use]
    pub fn action(&self) -> &str {
        &self.action
    }
    /// Its description.
    #[must_use]
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// The input template (`{}` when absent).
    #[must_use]
    pub fn input(&self) -> &Value {
        &self.input
    }
    /// The tasks it needs.
    #[must_use]
    pub fn needs(&self) -> &[String] {
        &self.needs
    }
    /// What it fans out over, if it does.
    #[must_use]
    pub fn with_items(&self) -> Option<&WithItems> {
        self.with_items.as_ref()
    }
    /// Items in flight at most (`None` = unbounded).
    #[must_use]
    pub fn concurrency(&self) -> Option<u32> {
        self.concurrency
    }
    /// Its `when` condition.
    #[must_use]
    pub fn when(&self) -> Option<&str> {
        self.when.as_deref()
    }
    /// Its trigger rule.
    #[must_use]
    pub fn trigger(&self) -> Trigger {
        self.trigger
    }
    /// Its retry policy.
    #[must_use]
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }
    /// The per-attempt timeout.
    #[must_use]
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    /// The worker pool it runs on.
    #[must_use]
    pub fn queue(&self) -> &str {
        &self.queue
    }
    /// Whether its failure still lets the run succeed.
    #[must_use]
    pub fn allow_failure(&self) -> bool {
        self.allow_failure
    }
    /// Names of the tasks its expressions use.
    #[must_use]
    pub fn references(&self) -> &BTreeSet<String> {
        &self.references
    }
    /// The sub-workflow it starts (`workflow:`), if it starts one instead
    /// of running an action; [`Task::action`] is then its label.
    #[must_use]
    pub fn call(&self) -> Option<&Call> {
        self.call.as_ref()
    }
}
