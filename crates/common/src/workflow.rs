//! The validated workflow: built only by [`Workflow::parse`], which runs
//! the checks in `validate` and reports every problem at once.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::dag::Dag;
use crate::diagnostic::Diagnostics;
use crate::inputs::{Given, InputSpec, Refusal};
use crate::spec::WithItems;
use crate::state::Trigger;
use crate::validate::Validator;
use crate::wait::Wait;

/// A workflow that passed validation.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) inputs: IndexMap<String, Option<Value>>,
    /// The declarations of `inputs`, same keys and order.
    pub(crate) input_specs: IndexMap<String, InputSpec>,
    /// Advice found by validation that does not make it invalid.
    pub(crate) warnings: Option<Diagnostics>,
    pub(crate) output: Option<Value>,
    pub(crate) output_references: BTreeSet<String>,
    /// Fan-outs whose `tasks.X.items` an expression reads.
    pub(crate) items_read: BTreeSet<String>,
    pub(crate) tasks: Vec<Task>,
    /// Task name → position in `tasks`.
    pub(crate) index: std::collections::HashMap<String, usize>,
    pub(crate) dag: Dag,
    /// At most this many executions of a run in flight at once
    /// (`parallelism:`; `None` = no run-wide limit).
    pub(crate) parallelism: Option<u32>,
    /// The concurrency limit its runs share (`limit:`).
    pub(crate) limit: Option<crate::shared_limit::RunLimit>,
    /// The tasks whose `input` or `with_items` reads a secret input.
    pub(crate) secret_readers: BTreeSet<String>,
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
    /// Whether it is an exit handler (`on_exit:`), run once every main
    /// task is terminal.
    pub(crate) exit_handler: bool,
    /// What it waits for instead of running an action (`wait:`).
    pub(crate) wait: Option<Wait>,
    /// Its `mutex` or `semaphore`, shared across runs.
    pub(crate) lock: Option<crate::shared_limit::TaskLock>,
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
    /// `retry.when`: a condition deciding after each failed attempt
    /// whether to try again (see [`RetryPolicy::decide`]).
    pub when: Option<String>,
    /// `retry.max_duration`: no attempt starts later than this after the
    /// first attempt of the same item started.
    pub max_duration: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 1,
            delay: Duration::from_secs(1),
            backoff: 2.0,
            max_delay: None,
            jitter: 0.0,
            when: None,
            max_duration: None,
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

/// A run's output as rendered at its end ([`Workflow::render_output`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedOutput {
    /// The output, `null` where a part could not be rendered.
    pub value: Value,
    /// Why each `null` part could not be rendered, for the run's error.
    pub problems: Vec<String>,
    /// Whether a part failed for a reason other than reading a task that
    /// did not succeed (a mistake in the template): that fails a run that
    /// would have succeeded.
    pub broken: bool,
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
    /// Given inputs whose value does not fit the declaration, by name.
    pub refused: Vec<(String, Refusal)>,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (name, refusal) in &self.refused {
            parts.push(format!(
                "input `{name}` must be {}, not {}",
                refusal.expected, refusal.given
            ));
        }
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
            let near: Vec<String> = self
                .undeclared
                .iter()
                .filter_map(|u| {
                    crate::validate::closest(u, self.declared.iter().map(String::as_str))
                        .map(|best| format!("`{u}` → `{best}`"))
                })
                .collect();
            parts.push(format!(
                "undeclared input(s): {} (this workflow declares: {}){}",
                self.undeclared.join(", "),
                if self.declared.is_empty() {
                    "none".to_owned()
                } else {
                    self.declared.join(", ")
                },
                if near.is_empty() {
                    String::new()
                } else {
                    format!("; did you mean {}?", near.join(", "))
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
        Self::parse_with(Validator::new(source), source, origin)
    }

    /// Parses a definition that was validated when it was stored (a run's
    /// workflow, read back by an executor or for `status`/`explain`),
    /// leaving out the checks that only move a run-time failure to
    /// validation time (unknown filters, tests, functions and methods,
    /// comparisons with a word that is not a status): a run stored by an
    /// earlier version, without those checks, still loads and runs as it
    /// would have. Everything the engine relies on is checked as in
    /// [`Workflow::parse`].
    ///
    /// # Errors
    /// [`Diagnostics`] listing every problem found.
    pub fn parse_stored(source: &str, origin: &str) -> Result<Self, Diagnostics> {
        Self::parse_with(Validator::new(source).without_lints(), source, origin)
    }

    fn parse_with(
        validator: Validator<'_>,
        source: &str,
        origin: &str,
    ) -> Result<Self, Diagnostics> {
        let (mut workflow, warnings) = validator
            .run()
            .map_err(|problems| Diagnostics::new(origin, source, problems))?;
        if !warnings.is_empty() {
            workflow.warnings = Some(Diagnostics::warnings(origin, source, warnings));
        }
        Ok(workflow)
    }

    /// Advice about a valid workflow (a template spliced into a shell
    /// script), with places and hints like problems; `None` when there is
    /// none. Front ends show it; it stops nothing.
    #[must_use]
    pub fn warnings(&self) -> Option<&Diagnostics> {
        self.warnings.as_ref()
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

    /// At most how many executions of a run may be in flight (queued or
    /// running) at once, its items and retries included (`parallelism:`;
    /// `None` = no run-wide limit). See [`Task::counts_toward_parallelism`].
    #[must_use]
    pub fn parallelism(&self) -> Option<u32> {
        self.parallelism
    }

    /// The concurrency limit its runs share (`limit:`), if any.
    #[must_use]
    pub fn limit(&self) -> Option<&crate::shared_limit::RunLimit> {
        self.limit.as_ref()
    }

    /// Where a task stands in the order run-wide slots are handed out
    /// (`parallelism`): the workflow's task order (topological, ties as
    /// written), then item index.
    #[must_use]
    pub fn position(&self, task: &str) -> Option<usize> {
        self.index.get(task).copied()
    }

    /// Declared inputs with their defaults (`None` = required).
    #[must_use]
    pub fn inputs(&self) -> &IndexMap<String, Option<Value>> {
        &self.inputs
    }

    /// The declarations of the inputs (type, default, allowed values,
    /// description), in the order written.
    #[must_use]
    pub fn input_specs(&self) -> &IndexMap<String, InputSpec> {
        &self.input_specs
    }

    /// Whether an input is declared `secret: true`.
    #[must_use]
    pub fn has_secrets(&self) -> bool {
        self.input_specs.values().any(InputSpec::secret)
    }

    /// Whether a task's `input` or `with_items` reads a secret input: its
    /// rendered input is then sealed ([`crate::secret::seal_task_input`]).
    #[must_use]
    pub fn reads_secret(&self, task: &str) -> bool {
        self.secret_readers.contains(task)
    }

    /// A run's resolved input as it is stored: the value of each secret
    /// input sealed with the keyring's current key (see [`crate::secret`]).
    /// A value already sealed stays as it is.
    ///
    /// # Errors
    /// [`crate::secret::SecretError::MissingKey`] when a secret input has a
    /// value and there is no keyring: nothing is sealed, so nothing may be
    /// stored.
    pub fn seal_input(
        &self,
        keyring: Option<&crate::secret::Keyring>,
        mut input: Map<String, Value>,
    ) -> Result<Map<String, Value>, crate::secret::SecretError> {
        for (name, spec) in &self.input_specs {
            if !spec.secret() {
                continue;
            }
            let Some(value) = input.get_mut(name) else {
                continue;
            };
            if crate::secret::sealed_token(value).is_some() {
                continue;
            }
            let keyring = keyring.ok_or(crate::secret::SecretError::MissingKey)?;
            *value = keyring.seal_value(value);
        }
        Ok(input)
    }

    /// Checks JSON inputs against their declarations and applies defaults
    /// (see [`Workflow::resolve_given`]).
    ///
    /// # Errors
    /// [`InputError`] naming every refused, missing and undeclared input.
    pub fn resolve_input(
        &self,
        given: Map<String, Value>,
    ) -> Result<Map<String, Value>, InputError> {
        self.resolve_given(given.into_iter().map(|(k, v)| (k, Given::Json(v))))
    }

    /// The run's input from what was given: each given value parsed or
    /// checked by its input's declaration ([`InputSpec::accept`]), then
    /// the defaults of the inputs not given. A name given twice keeps its
    /// last value. Every front end (CLI flags, an inputs file, an API)
    /// resolves inputs here, so they refuse the same values.
    ///
    /// # Errors
    /// [`InputError`] naming every value that does not fit its input,
    /// every missing required input and every undeclared given one;
    /// nothing is returned unless all of them are fine.
    pub fn resolve_given(
        &self,
        given: impl IntoIterator<Item = (String, Given)>,
    ) -> Result<Map<String, Value>, InputError> {
        crate::inputs::resolve(&self.input_specs, given)
    }

    /// The `output:` template, if any.
    #[must_use]
    pub fn output(&self) -> Option<&Value> {
        self.output.as_ref()
    }

    /// Why the output could not be rendered, in one sentence: the
    /// evaluator's reason, and — when the output reads tasks that were
    /// skipped (their result is `null`, so `tasks.X.result.field` is
    /// undefined) — which ones, since that is the usual cause.
    #[must_use]
    pub fn output_failure(
        &self,
        error: &crate::ExprError,
        status_of: impl Fn(&str) -> Option<crate::TaskStatus>,
    ) -> String {
        let skipped: Vec<String> = self
            .output_references
            .iter()
            .filter(|t| status_of(t) == Some(crate::TaskStatus::Skipped))
            .map(|t| format!("`{t}`"))
            .collect();
        match skipped.as_slice() {
            [] => format!("rendering the output: {error}"),
            [one] => format!(
                "rendering the output: {error} — the output reads task {one}, which was skipped, so it has no result"
            ),
            many => format!(
                "rendering the output: {error} — the output reads tasks {}, which were skipped, so they have no result",
                many.join(", ")
            ),
        }
    }

    /// Renders the run's `output:` whatever the run's outcome, so a failed
    /// or canceled run reports what happened too. A part (a template
    /// string) that cannot be rendered becomes `null` and its reason is
    /// returned; the part **breaks** the output (and fails a run that would
    /// have succeeded) unless it reads a task that did not succeed — a
    /// skipped, failed or canceled task has no data to read, which is not
    /// a mistake of the template. `status_of` gives each task's status.
    #[must_use]
    pub fn render_output(
        &self,
        evaluator: &crate::Evaluator,
        ctx: &crate::Context,
        status_of: impl Fn(&str) -> Option<crate::TaskStatus>,
    ) -> Option<RenderedOutput> {
        let template = self.output.as_ref()?;
        let (value, failures) = evaluator.render_partial(template, ctx);
        let mut rendered = RenderedOutput {
            value,
            problems: Vec::new(),
            broken: false,
        };
        for (path, error) in failures {
            let unsucceeded: Vec<String> = evaluator
                .references(&error.expression)
                .unwrap_or_default()
                .iter()
                .filter_map(|var| {
                    let mut parts = var.split('.');
                    (parts.next() == Some("tasks")).then_some(())?;
                    let task = parts.next()?;
                    let status = status_of(task)?;
                    (status != crate::TaskStatus::Succeeded)
                        .then(|| format!("task `{task}` ({status})"))
                })
                .collect::<BTreeSet<String>>()
                .into_iter()
                .collect();
            let part = if path.is_empty() {
                "the output".to_owned()
            } else {
                format!("output `{path}`")
            };
            if unsucceeded.is_empty() {
                rendered.broken = true;
                rendered
                    .problems
                    .push(format!("rendering the output: {part} is null: {error}"));
            } else {
                rendered.problems.push(format!(
                    "{part} is null: {error} — it reads {}, which has no result",
                    unsucceeded.join(", ")
                ));
            }
        }
        Some(rendered)
    }

    /// Names of the tasks the output template uses.
    #[must_use]
    pub fn output_references(&self) -> &BTreeSet<String> {
        &self.output_references
    }

    /// Whether an expression (a task's or the output) reads
    /// `tasks.<task>.items`: only then are a fan-out's item states read.
    #[must_use]
    pub fn reads_items(&self, task: &str) -> bool {
        self.items_read.contains(task)
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

    /// The task graph (exit handlers included: they need only each
    /// other, and wait for the main tasks through the run's
    /// `main_remaining` counter, not through edges).
    #[must_use]
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// How many exit handlers (`on_exit:`) it has.
    #[must_use]
    pub fn exit_handler_count(&self) -> usize {
        self.tasks.iter().filter(|t| t.exit_handler).count()
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

    /// Its `mutex` or `semaphore`, shared across runs, if any.
    #[must_use]
    pub fn lock(&self) -> Option<&crate::shared_limit::TaskLock> {
        self.lock.as_ref()
    }

    /// Whether this task's executions take the run's `parallelism` slots:
    /// every main task's do; exit handlers (`on_exit`), which must run
    /// whatever holds the slots, do not. The one place that says so in
    /// Rust, as `weft_store::parallelism::COUNTED` is in SQL.
    #[must_use]
    pub fn counts_toward_parallelism(&self) -> bool {
        !self.exit_handler
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
    /// Whether it is an exit handler (`on_exit:`): it starts once every
    /// main task is terminal, whatever the run's outcome, and its context
    /// has `workflow.status`, `workflow.failures` and `workflow.duration`.
    #[must_use]
    pub fn is_exit_handler(&self) -> bool {
        self.exit_handler
    }
    /// What it waits for (`wait:`), if it waits instead of running an
    /// action; [`Task::action`] is then `wait`.
    #[must_use]
    pub fn wait(&self) -> Option<&Wait> {
        self.wait.as_ref()
    }
}
