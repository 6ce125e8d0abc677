//! Validation: turns the raw spec into a [`Workflow`] or the list of every
//! problem, each pointing at the offending text with a hint.

use std::collections::BTreeSet;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Map, Value};
use serde_saphyr::{Location, Spanned};

use crate::dag::Dag;
use crate::diagnostic::Problem;
use crate::duration::parse_duration;
use crate::expr::{Evaluator, is_template, lone_expression};
use crate::inputs::{Given, InputSpec, InputType};
use crate::scan::{self, Use};
use crate::spec::{
    RETRY_FIELDS, RawInput, RawRetry, RawTask, RawWorkflow, TASK_FIELDS, Tree, WORKFLOW_FIELDS,
    WithItems,
};
use crate::state::TaskStatus;
use crate::state::Trigger;
use crate::workflow::{RetryPolicy, Task, Workflow};

/// The closest of `candidates` to `word`, if close enough to suggest.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
}

pub(crate) struct Validator<'s> {
    source: &'s str,
    evaluator: Evaluator,
    problems: Vec<Problem>,
    /// Advice that does not stop the workflow (a splice into a script).
    warnings: Vec<Problem>,
    /// Whether to look for the mistakes that would otherwise only show
    /// at run time (unknown filters, tests, functions, methods; status
    /// words). Off for definitions already stored (`Workflow::parse_stored`).
    lints: bool,
}

impl<'s> Validator<'s> {
    pub(crate) fn new(source: &'s str) -> Self {
        Self {
            source,
            evaluator: Evaluator::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
            lints: true,
        }
    }

    /// Without the run-time lints (see `lints`).
    pub(crate) fn without_lints(mut self) -> Self {
        self.lints = false;
        self
    }

    fn at(&self, location: &Location, message: impl Into<String>) -> Problem {
        let span = location.span();
        match span.byte_offset() {
            Some(offset) => {
                let len = span.byte_len().unwrap_or(1);
                Problem::at(
                    self.source,
                    usize::try_from(offset).unwrap_or(0),
                    usize::try_from(len).unwrap_or(1),
                    message,
                )
            }
            None => {
                let line = usize::try_from(location.line()).unwrap_or(0);
                let column = usize::try_from(location.column()).unwrap_or(0);
                let offset = self
                    .source
                    .split_inclusive('\n')
                    .take(line.saturating_sub(1))
                    .map(str::len)
                    .sum::<usize>()
                    + column.saturating_sub(1);
                if line == 0 {
                    Problem::nowhere(message)
                } else {
                    Problem::at(self.source, offset, 1, message)
                }
            }
        }
    }

    /// A problem at a mapping key: the last `key` written before its
    /// value's place (a block value starts on the line after its key).
    fn at_key(&self, value: &Location, key: &str, message: impl Into<String>) -> Problem {
        let found = value
            .span()
            .byte_offset()
            .and_then(|o| usize::try_from(o).ok())
            .and_then(|o| self.source.get(..o))
            .and_then(|before| before.rfind(key));
        match found {
            Some(at) => Problem::at(self.source, at, key.len(), message),
            None => self.at(value, message),
        }
    }

    fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    /// The workflow and the warnings about it, or every problem.
    pub(crate) fn run(mut self) -> Result<(Workflow, Vec<Problem>), Vec<Problem>> {
        let raw: RawWorkflow = match serde_saphyr::from_str(self.source) {
            Ok(raw) => raw,
            Err(e) => {
                let problem = self.yaml_problem(&e);
                return Err(vec![problem]);
            }
        };
        let name = match &raw.name {
            None => {
                self.push(
                    Problem::at(self.source, 0, 1, "the workflow has no `name`")
                        .hint("add `name: my-workflow` at the top"),
                );
                String::new()
            }
            Some(n) if !is_slug(&n.value) => {
                let p = self.at(
                    &n.referenced,
                    format!(
                        "workflow name `{}` may only use a-z, 0-9, `_`, `.` and `-`",
                        n.value
                    ),
                );
                self.push(p.hint("e.g. `name: nightly-etl`"));
                n.value.clone()
            }
            Some(n) => n.value.clone(),
        };
        let input_specs: IndexMap<String, InputSpec> = raw
            .input
            .as_ref()
            .map(|i| {
                i.value
                    .iter()
                    .map(|(name, declared)| (name.clone(), self.input(name, declared)))
                    .collect()
            })
            .unwrap_or_default();
        let inputs: IndexMap<String, Option<Value>> = input_specs
            .iter()
            .map(|(name, spec)| (name.clone(), spec.default().cloned()))
            .collect();
        let raw_tasks = match &raw.tasks {
            Some(tasks) if !tasks.value.is_empty() => &tasks.value,
            Some(tasks) => {
                let p = self.at(&tasks.referenced, "the workflow has no tasks");
                self.push(p.hint("add at least one task under `tasks:`"));
                return Err(self.problems);
            }
            None => {
                self.push(
                    Problem::at(self.source, 0, 1, "the workflow has no `tasks`")
                        .hint("add a `tasks:` map of task names to tasks"),
                );
                return Err(self.problems);
            }
        };
        let names: Vec<&str> = raw_tasks.keys().map(String::as_str).collect();
        let mut tasks: Vec<Task> = Vec::with_capacity(raw_tasks.len());
        for (task_name, raw_task) in raw_tasks {
            tasks.push(self.task(task_name, raw_task, &names));
        }
        // The graph and expression checks run even after problems above, on
        // what could be read, so one pass reports as much as possible.
        let dag = match Dag::build(tasks.iter().map(|t| (t.name.as_str(), t.needs.as_slice()))) {
            Ok(dag) => dag,
            Err(cycles) => {
                for cycle in cycles {
                    let first = &raw_tasks[cycle[0].as_str()];
                    let location = first
                        .value
                        .needs
                        .as_ref()
                        .map_or(first.referenced, |n| n.referenced);
                    let p = self.at(
                        &location,
                        format!(
                            "these tasks need each other in a cycle: {}",
                            cycle.join(" → ")
                        ),
                    );
                    self.push(
                        p.hint("a task can only need tasks that do not (indirectly) need it back"),
                    );
                }
                return Err(self.problems);
            }
        };
        for task in &mut tasks {
            let raw_task = &raw_tasks[task.name.as_str()];
            task.references =
                self.check_task_expressions(task, &raw_task.value, &dag, &names, &inputs);
        }
        let output = raw.output.as_ref().map(|o| o.value.value.clone());
        let output_references = match &raw.output {
            Some(o) => {
                let sites = template_strings(o);
                let scope = Scope {
                    task: None,
                    field: "output",
                    items_allowed: false,
                    fan_out: false,
                    condition: false,
                };
                self.check_sites(&sites, &scope, &|_| true, &names, &inputs)
            }
            None => BTreeSet::new(),
        };
        if !self.problems.is_empty() {
            return Err(self.problems);
        }
        let warnings = std::mem::take(&mut self.warnings);
        let order = dag.topological_order().to_vec();
        let position: std::collections::HashMap<&str, usize> = order
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        tasks.sort_by_key(|t| position.get(t.name.as_str()).copied());
        let index = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let workflow = Workflow {
            name,
            description: raw.description,
            inputs,
            input_specs,
            warnings: None,
            output,
            output_references,
            tasks,
            index,
            dag,
        };
        Ok((workflow, warnings))
    }

    fn yaml_problem(&self, e: &serde_saphyr::Error) -> Problem {
        let text = e.to_string();
        let message = text.lines().next().unwrap_or("invalid YAML").to_owned();
        let mut problem = match e.location() {
            Some(location) => self.at(&location, message.clone()),
            None => Problem::nowhere(message.clone()),
        };
        if let Some(location) = e.location()
            && let Some(better) = self.number_problem(&location)
        {
            return better;
        }
        if let Some(field) = unknown_field(&text) {
            let candidates = TASK_FIELDS
                .iter()
                .chain(WORKFLOW_FIELDS)
                .chain(RETRY_FIELDS)
                .copied();
            problem = match closest(field, candidates) {
                Some(best) => problem.hint(format!("did you mean `{best}`?")),
                None => problem.hint(format!("task fields are: {}", TASK_FIELDS.join(", "))),
            };
        }
        problem
    }

    /// A number field (`concurrency`, `retry.attempts`, `backoff`,
    /// `jitter`) whose value is not a number — a template, or a word —
    /// said in words instead of the parser's. These fields are read when
    /// the workflow is validated, before any run or input exists, so a
    /// template cannot fill them; a template with no variables suggests
    /// its value.
    fn number_problem(&self, location: &Location) -> Option<Problem> {
        let offset = usize::try_from(location.span().byte_offset()?).ok()?;
        let line_start = self.source.get(..offset)?.rfind('\n').map_or(0, |n| n + 1);
        let before = self.source.get(line_start..offset)?.trim_end();
        let before = before.strip_suffix(':')?.trim_end();
        let key_start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let key = &before[key_start..];
        let whole = matches!(key, "concurrency" | "attempts");
        if !whole && !matches!(key, "backoff" | "jitter") {
            return None;
        }
        let rest = self.source.get(offset..)?;
        let line = rest.lines().next().unwrap_or_default();
        let written = line
            .split(" #")
            .next()
            .unwrap_or_default()
            .trim()
            .trim_end_matches([',', '}'])
            .trim()
            .trim_matches(|c| c == '"' || c == '\'');
        let field = if matches!(key, "attempts" | "backoff" | "jitter") {
            format!("retry.{key}")
        } else {
            key.to_owned()
        };
        let kind = if whole { "a whole number" } else { "a number" };
        let example = if whole { "3" } else { "2.0" };
        let problem = if is_template(written) {
            let constant = lone_expression(written)
                .filter(|_| {
                    self.evaluator
                        .references(written)
                        .is_ok_and(|refs| refs.is_empty())
                })
                .and_then(|_| {
                    self.evaluator
                        .render(
                            &Value::String(written.to_owned()),
                            &crate::expr::Context::default(),
                        )
                        .ok()
                })
                .filter(Value::is_number);
            let hint = match constant {
                Some(value) => format!("write the number itself: `{key}: {value}`"),
                None => format!(
                    "write {kind} (e.g. `{key}: {example}`): it is read when the workflow is validated, before any input exists"
                ),
            };
            Problem::at(
                self.source,
                offset,
                line.len().max(1),
                format!("`{field}` cannot be a template (`{written}`); it must be {kind}"),
            )
            .hint(hint)
        } else {
            Problem::at(
                self.source,
                offset,
                line.len().max(1),
                format!("`{field}` must be {kind}, not `{written}`"),
            )
            .hint(format!("e.g. `{key}: {example}`"))
        };
        Some(problem)
    }

    /// One declared input: its type (declared, else implied by the
    /// default, else by the allowed values), default and allowed values,
    /// each checked against the type where it is written.
    fn input(&mut self, name: &str, declared: &Spanned<RawInput>) -> InputSpec {
        let raw = match &declared.value {
            RawInput::Short(default) => {
                return InputSpec {
                    kind: InputType::of(default),
                    default: (!default.is_null()).then(|| default.clone()),
                    allowed: None,
                    description: None,
                };
            }
            RawInput::Long(raw) => raw,
        };
        let mut spec = InputSpec::untyped(None);
        if let Some(kind) = &raw.kind {
            let names: Vec<&str> = InputType::ALL.iter().map(|t| t.as_str()).collect();
            match kind.value.as_str().and_then(InputType::from_name) {
                Some(t) => spec.kind = Some(t),
                None => {
                    let written = match &kind.value {
                        Value::String(s) => format!("`{s}`"),
                        other => crate::expr::kind_of(other).to_owned(),
                    };
                    let alias = match kind.value.as_str() {
                        Some("int" | "long") => Some("integer"),
                        Some("float" | "double" | "decimal") => Some("number"),
                        Some("bool") => Some("boolean"),
                        Some("str" | "text") => Some("string"),
                        Some("list") => Some("array"),
                        Some("map" | "dict") => Some("object"),
                        _ => None,
                    };
                    let best = alias.or_else(|| {
                        kind.value
                            .as_str()
                            .and_then(|k| closest(k, names.iter().copied()))
                    });
                    let p = self.at(
                        &kind.referenced,
                        format!("input `{name}`: unknown type {written}"),
                    );
                    self.push(match best {
                        Some(best) => p.hint(format!(
                            "did you mean `{best}`? (one of: {})",
                            names.join(", ")
                        )),
                        None => p.hint(format!("one of: {}", names.join(", "))),
                    });
                }
            }
        }
        if let Some(d) = &raw.description {
            match &d.value {
                Value::String(text) => spec.description = Some(text.clone()),
                other => {
                    let p = self.at(
                        &d.referenced,
                        format!(
                            "input `{name}`: `description` must be text, not {}",
                            crate::expr::kind_of(other)
                        ),
                    );
                    self.push(p);
                }
            }
        }
        if let Some(allowed) = &raw.allowed {
            match &allowed.value {
                Value::Array(values) if !values.is_empty() => {
                    let kind = spec.kind.or_else(|| {
                        let first = InputType::of(&values[0]);
                        values
                            .iter()
                            .all(|v| InputType::of(v) == first)
                            .then_some(first)
                            .flatten()
                    });
                    let mut fitted = Vec::with_capacity(values.len());
                    for value in values {
                        match kind.map_or(Some(value.clone()), |k| k.fit(value.clone())) {
                            Some(v) => fitted.push(v),
                            None => {
                                let p = self.at(
                                    &allowed.referenced,
                                    format!(
                                        "input `{name}`: `enum` value {} is not {}",
                                        crate::explain::abbreviate(value, 40),
                                        kind.map_or("", InputType::article)
                                    ),
                                );
                                self.push(
                                    p.hint("every allowed value must be of the input's `type`"),
                                );
                            }
                        }
                    }
                    spec.kind = kind;
                    spec.allowed = Some(fitted);
                }
                other => {
                    let p = self.at(
                        &allowed.referenced,
                        format!(
                            "input `{name}`: `enum` must be a non-empty list of the allowed values, not {}",
                            if other.is_array() { "an empty list" } else { crate::expr::kind_of(other) }
                        ),
                    );
                    self.push(p.hint("e.g. `enum: [dev, staging, prod]`"));
                }
            }
        }
        if let Some(d) = raw.default.as_ref().filter(|d| !d.value.is_null()) {
            if spec.kind.is_none() && raw.kind.is_none() {
                spec.kind = InputType::of(&d.value);
            }
            let as_json = Given::Json(d.value.clone());
            let checked = InputSpec {
                default: None,
                ..spec.clone()
            }
            .accept(as_json);
            match checked {
                Ok(value) => spec.default = Some(value),
                Err(refusal) => {
                    let p = self.at(
                        &d.referenced,
                        format!(
                            "input `{name}`: the `default` must be {}, not {}",
                            refusal.expected, refusal.given
                        ),
                    );
                    let hint = match (spec.kind, &d.value) {
                        (Some(InputType::String), v) if !v.is_string() => {
                            format!("quote it to make it text: `default: \"{v}\"`")
                        }
                        _ => "change the default, or the declared `type`/`enum`".to_owned(),
                    };
                    self.push(p.hint(hint));
                }
            }
        }
        spec
    }

    fn task(&mut self, name: &str, raw: &Spanned<RawTask>, names: &[&str]) -> Task {
        let t = &raw.value;
        if !is_identifier(name) {
            let p = self.at_key(
                &raw.referenced,
                name,
                format!("task name `{name}` must be an identifier (letters, digits, `_`)"),
            );
            self.push(p.hint("expressions refer to it as `tasks.<name>`, so it cannot contain `-`, `.` or spaces"));
        }
        let action = match &t.action {
            Some(a) if !a.value.trim().is_empty() => a.value.clone(),
            Some(a) => {
                let p = self.at(
                    &a.referenced,
                    format!("task `{name}` has an empty `action`"),
                );
                self.push(p);
                String::new()
            }
            None => {
                let p = self.at(&raw.referenced, format!("task `{name}` has no `action`"));
                self.push(
                    p.hint("add e.g. `action: echo` (built-ins: noop, echo, sleep, fail, shell)"),
                );
                String::new()
            }
        };
        let mut needs = Vec::new();
        if let Some(raw_needs) = &t.needs {
            for need in &raw_needs.value {
                if needs.contains(&need.value) {
                    let p = self.at(
                        &need.referenced,
                        format!("task `{name}` lists `{}` twice in `needs`", need.value),
                    );
                    self.push(p);
                } else if !names.contains(&need.value.as_str()) {
                    let mut p = self.at(
                        &need.referenced,
                        format!("task `{name}` needs `{}`, which is not a task", need.value),
                    );
                    if let Some(best) = closest(&need.value, names.iter().copied()) {
                        p = p.hint(format!("did you mean `{best}`?"));
                    } else {
                        p = p.hint(format!("the tasks are: {}", names.join(", ")));
                    }
                    self.push(p);
                } else {
                    needs.push(need.value.clone());
                }
            }
        }
        let with_items = match &t.with_items {
            None => None,
            Some(w) => match &w.value.value {
                Value::String(s) if lone_expression(s).is_some() => {
                    Some(WithItems::Expression(s.clone()))
                }
                Value::Array(items) => Some(WithItems::List(items.clone())),
                other => {
                    let p = self.at(&w.referenced, format!("task `{name}`: `with_items` must be a list or one `{{{{ expression }}}}`, not {}", crate::expr::kind_of(other)));
                    self.push(p.hint("e.g. `with_items: \"{{ tasks.fetch.result.lines }}\"` or `with_items: [1, 2, 3]`"));
                    None
                }
            },
        };
        let concurrency = match &t.concurrency {
            None => None,
            Some(c) if c.value < 1 => {
                let p = self.at(
                    &c.referenced,
                    format!(
                        "task `{name}`: `concurrency` must be at least 1, not {}",
                        c.value
                    ),
                );
                self.push(p.hint("omit `concurrency` for no limit"));
                None
            }
            Some(c) if t.with_items.is_none() => {
                let p = self.at(
                    &c.referenced,
                    format!("task `{name}` sets `concurrency` but has no `with_items`"),
                );
                self.push(p.hint(
                    "`concurrency` limits how many items of a `with_items` task run at once",
                ));
                None
            }
            Some(c) => Some(u32::try_from(c.value).unwrap_or(u32::MAX)),
        };
        let trigger = match &t.trigger {
            None => Trigger::default(),
            Some(tr) => match Trigger::ALL.iter().find(|x| x.as_str() == tr.value) {
                Some(x) => *x,
                None => {
                    let all: Vec<&str> = Trigger::ALL.iter().map(|x| x.as_str()).collect();
                    let mut p = self.at(
                        &tr.referenced,
                        format!("task `{name}`: unknown trigger `{}`", tr.value),
                    );
                    p = match closest(&tr.value, all.iter().copied()) {
                        Some(best) => p.hint(format!(
                            "did you mean `{best}`? (one of: {})",
                            all.join(", ")
                        )),
                        None => p.hint(format!("one of: {}", all.join(", "))),
                    };
                    self.push(p);
                    Trigger::default()
                }
            },
        };
        let timeout = t
            .timeout
            .as_ref()
            .and_then(|d| self.duration(name, "timeout", d));
        if timeout == Some(Duration::ZERO) {
            let p = self.at(
                &t.timeout.as_ref().map_or(raw.referenced, |d| d.referenced),
                format!("task `{name}`: `timeout` must be longer than 0"),
            );
            self.push(p);
        }
        let retry = t
            .retry
            .as_ref()
            .map_or_else(RetryPolicy::default, |r| self.retry(name, r));
        let queue = match &t.queue {
            None => crate::message::topology::DEFAULT_POOL.to_owned(),
            Some(q) if is_slug(&q.value) => q.value.clone(),
            Some(q) => {
                let p = self.at(
                    &q.referenced,
                    format!(
                        "task `{name}`: queue `{}` may only use a-z, 0-9, `_`, `.` and `-`",
                        q.value
                    ),
                );
                self.push(p);
                String::new()
            }
        };
        let when = t.when.as_ref().map(|w| w.value.clone());
        Task {
            name: name.to_owned(),
            action,
            description: t.description.clone(),
            input: t
                .input
                .as_ref()
                .map_or_else(|| Value::Object(Map::new()), |i| i.value.value.clone()),
            needs,
            with_items,
            concurrency,
            when,
            trigger,
            retry,
            timeout,
            queue,
            allow_failure: t.allow_failure.unwrap_or(false),
            references: BTreeSet::new(),
        }
    }

    fn duration(&mut self, task: &str, field: &str, d: &Spanned<String>) -> Option<Duration> {
        if is_template(&d.value) {
            let p = self.at(
                &d.referenced,
                format!(
                    "task `{task}`: `{field}` cannot be a template (`{}`); it must be a duration",
                    d.value
                ),
            );
            self.push(p.hint(format!("write the duration itself, e.g. `{}: 30s`: it is read when the workflow is validated, before any input exists", field.rsplit('.').next().unwrap_or(field))));
            return None;
        }
        match parse_duration(&d.value) {
            Ok(duration) => Some(duration),
            Err(why) => {
                let p = self.at(
                    &d.referenced,
                    format!("task `{task}`: bad `{field}`: {why}"),
                );
                self.push(p.hint("durations look like `500ms`, `30s`, `5m`, `1h` or `1m30s`"));
                None
            }
        }
    }

    fn retry(&mut self, task: &str, r: &Spanned<RawRetry>) -> RetryPolicy {
        let mut policy = RetryPolicy::default();
        let raw = &r.value;
        if let Some(a) = &raw.attempts {
            if a.value < 1 {
                let p = self.at(&a.referenced, format!("task `{task}`: `retry.attempts` counts every try including the first, so it must be at least 1, not {}", a.value));
                self.push(p);
            } else {
                policy.attempts = u32::try_from(a.value).unwrap_or(u32::MAX);
            }
        }
        if let Some(d) = &raw.delay
            && let Some(delay) = self.duration(task, "retry.delay", d)
        {
            policy.delay = delay;
        }
        if let Some(d) = &raw.max_delay {
            policy.max_delay = self.duration(task, "retry.max_delay", d);
        }
        if let Some(b) = &raw.backoff {
            if b.value < 1.0 || !b.value.is_finite() {
                let p = self.at(
                    &b.referenced,
                    format!(
                        "task `{task}`: `retry.backoff` must be 1.0 or more, not {}",
                        b.value
                    ),
                );
                self.push(p.hint("1.0 keeps the delay constant; 2.0 doubles it for each retry"));
            } else {
                policy.backoff = b.value;
            }
        }
        if let Some(j) = &raw.jitter {
            if !(0.0..=1.0).contains(&j.value) {
                let p = self.at(
                    &j.referenced,
                    format!(
                        "task `{task}`: `retry.jitter` must be between 0 and 1, not {}",
                        j.value
                    ),
                );
                self.push(p);
            } else {
                policy.jitter = j.value;
            }
        }
        policy
    }

    /// Checks every expression of a task; returns the tasks they use.
    fn check_task_expressions(
        &mut self,
        task: &Task,
        raw: &RawTask,
        dag: &Dag,
        names: &[&str],
        inputs: &IndexMap<String, Option<Value>>,
    ) -> BTreeSet<String> {
        let ancestor = |other: &str| {
            task.needs.iter().any(|n| n == other) || dag.is_ancestor(other, &task.name)
        };
        let mut used = BTreeSet::new();
        let fan_out = task.with_items.is_some();
        let scope = |field: &'static str, items_allowed: bool, condition: bool| Scope {
            task: Some(&task.name),
            field,
            items_allowed,
            fan_out,
            condition,
        };
        if let Some(i) = &raw.input {
            let sites = template_strings(i);
            used.extend(self.check_sites(
                &sites,
                &scope("input", fan_out, false),
                &ancestor,
                names,
                inputs,
            ));
            if task.action == "shell" {
                self.warn_script_splices(task, i);
            }
        }
        if let Some(w) = &raw.with_items {
            let sites = template_strings(w);
            used.extend(self.check_sites(
                &sites,
                &scope("with_items", false, false),
                &ancestor,
                names,
                inputs,
            ));
        }
        if let Some(w) = &raw.when {
            let sites = [(w.referenced, w.value.as_str())];
            used.extend(self.check_sites(
                &sites,
                &scope("when", false, true),
                &ancestor,
                names,
                inputs,
            ));
        }
        used
    }

    /// A `script:` of a `shell` task that splices a template into the
    /// shell text gets a warning: the value becomes shell code.
    fn warn_script_splices(&mut self, task: &Task, input: &Spanned<Tree>) {
        let Some(script) = input.value.value.get("script").and_then(Value::as_str) else {
            return;
        };
        if !is_template(script) {
            return;
        }
        let Some((location, _)) = Tree::strings(input).into_iter().find(|(_, s)| *s == script)
        else {
            return;
        };
        let start = script.find("{{").or_else(|| script.find("{%")).unwrap_or(0);
        let end = script[start..]
            .find("}}")
            .or_else(|| script[start..].find("%}"))
            .map_or(script.len(), |e| start + e + 2);
        let fragment = &script[start..end];
        let p = self.at_fragment(
            location,
            script,
            start,
            fragment,
            format!(
                "task `{}`: `script` splices `{fragment}` into shell text: a value with spaces, quotes or `;` changes the command",
                task.name
            ),
        );
        self.warnings.push(p.hint(
            "pass values as arguments instead — `command: [sh, -c, 'echo \"$1\"', sh, \"{{ input.name }}\"]` — or through `env:` and read \"$NAME\" in the script",
        ));
    }

    /// A problem at `fragment`, found in the source near a string's place
    /// (its `occurrence`-th appearance, counting those before `offset` in
    /// the string); at the string itself when it cannot be found (escapes,
    /// folded text).
    fn at_fragment(
        &self,
        location: Location,
        text: &str,
        offset: usize,
        fragment: &str,
        message: impl Into<String>,
    ) -> Problem {
        let message = message.into();
        let base = location
            .span()
            .byte_offset()
            .and_then(|o| usize::try_from(o).ok());
        if let Some(base) = base
            && !fragment.is_empty()
            && base <= self.source.len()
        {
            let before = text
                .get(..offset.min(text.len()))
                .map_or(0, |t| t.matches(fragment).count());
            let mut window_end = (base + text.len() * 2 + 64).min(self.source.len());
            while !self.source.is_char_boundary(window_end) {
                window_end -= 1;
            }
            if let Some(window) = self.source.get(base..window_end)
                && let Some((at, _)) = window.match_indices(fragment).nth(before)
            {
                return Problem::at(self.source, base + at, fragment.len(), message);
            }
        }
        self.at(&location, message)
    }

    fn check_sites(
        &mut self,
        sites: &[(Location, &str)],
        scope: &Scope<'_>,
        visible: &dyn Fn(&str) -> bool,
        names: &[&str],
        inputs: &IndexMap<String, Option<Value>>,
    ) -> BTreeSet<String> {
        let mut used = BTreeSet::new();
        let whose = scope
            .task
            .map_or_else(|| "the workflow".to_owned(), |t| format!("task `{t}`"));
        let field = scope.field;
        for &(location, text) in sites {
            let vars = if scope.condition {
                self.evaluator.condition_references(text)
            } else {
                self.evaluator.references(text)
            };
            let vars = match vars {
                Ok(vars) => vars,
                Err(why) => {
                    let p = self.at(
                        &location,
                        format!("{whose}: `{field}` has a syntax error: {why}"),
                    );
                    self.push(p.hint("expressions use Jinja syntax: `{{ tasks.fetch.result }}`"));
                    continue;
                }
            };
            // A bare `when` is an expression without braces: scan it as one.
            let (scanned, shift) = if scope.condition && !is_template(text) {
                (format!("{{{{ {text} }}}}"), 3)
            } else {
                (text.to_owned(), 0)
            };
            let called = if self.lints {
                self.check_calls((location, text), (&scanned, shift), &whose, field, inputs)
            } else {
                BTreeSet::new()
            };
            // A non-identifier input read with a dot (`input.should-print`)
            // is `input.should` minus `print`: say that once, and not the
            // two undefined names it makes.
            let mut skip: BTreeSet<String> = BTreeSet::new();
            for name in inputs.keys().filter(|n| !is_identifier(n)) {
                let dotted = format!("input.{name}");
                if let Some(at) = text.find(&dotted) {
                    let p = self.at_fragment(
                        location,
                        text,
                        at,
                        &dotted,
                        format!("{whose}: `{field}` reads `{dotted}`, but `{name}` is not an identifier, so this is not the input `{name}`"),
                    );
                    self.push(p.hint(format!("write `input['{name}']`")));
                    let mut parts = name.split(|c: char| !c.is_ascii_alphanumeric() && c != '_');
                    if let Some(first) = parts.next() {
                        skip.insert(format!("input.{first}"));
                    }
                    skip.extend(parts.filter(|p| !p.is_empty()).map(str::to_owned));
                }
            }
            for var in vars {
                let mut parts = var.split('.');
                let root = parts.next().unwrap_or_default();
                let second = parts.next();
                let third = parts.next();
                if skip.contains(root)
                    || second.is_some_and(|s| skip.contains(&format!("{root}.{s}")))
                    || called.contains(root)
                {
                    continue;
                }
                let here = |this: &Self, fragment: &str, message: String| {
                    this.at_fragment(location, text, 0, fragment, message)
                };
                match root {
                    "input" => {
                        if let Some(name) = second
                            && !inputs.contains_key(name)
                        {
                            let declared: Vec<&str> = inputs.keys().map(String::as_str).collect();
                            let mut p = here(
                                self,
                                &format!("input.{name}"),
                                format!(
                                    "{whose}: `{field}` uses `input.{name}`, which is not declared under `input:`"
                                ),
                            );
                            p = match closest(name, declared.iter().copied()) {
                                Some(best) if is_identifier(best) => p.hint(format!("did you mean `input.{best}`? Otherwise declare it: `input: {{ {name}: null }}`")),
                                Some(best) => p.hint(format!("did you mean `input['{best}']`? Otherwise declare it: `input: {{ {name}: null }}`")),
                                None => p.hint(format!("declare it at the top: `input: {{ {name}: null }}` (null = required)")),
                            };
                            self.push(p);
                        }
                    }
                    "tasks" => {
                        let Some(other) = second else { continue };
                        if !names.contains(&other) {
                            let mut p = here(
                                self,
                                &format!("tasks.{other}"),
                                format!(
                                    "{whose}: `{field}` uses `tasks.{other}`, which is not a task"
                                ),
                            );
                            if let Some(best) = closest(other, names.iter().copied()) {
                                p = p.hint(format!("did you mean `tasks.{best}`?"));
                            }
                            self.push(p);
                        } else if !visible(other) {
                            let p = here(
                                self,
                                &format!("tasks.{other}"),
                                format!(
                                    "{whose}: `{field}` uses `tasks.{other}`, but `{other}` is not one of its ancestors, so its result would not exist yet"
                                ),
                            );
                            self.push(p.hint(format!("add `{other}` to this task's `needs` (directly or through a task it needs)")));
                        } else {
                            used.insert(other.to_owned());
                            if let Some(attr) = third
                                && attr != "result"
                                && attr != "status"
                            {
                                let p = here(
                                    self,
                                    &format!("tasks.{other}.{attr}"),
                                    format!("{whose}: `tasks.{other}.{attr}` does not exist"),
                                );
                                self.push(p.hint(format!(
                                    "a task has `tasks.{other}.result` and `tasks.{other}.status`"
                                )));
                            }
                        }
                    }
                    "item" | "item_index" if !scope.items_allowed => {
                        let (message, hint) = match (scope.task, scope.fan_out) {
                            (None, _) => (
                                format!("the workflow's `{field}` uses `{root}`, which only exists in the `input` of a `with_items` task"),
                                "the output is rendered once for the run: read a fan-out's results with `tasks.<name>.result`, a list in item order".to_owned(),
                            ),
                            (Some(_), true) => (
                                format!("{whose}: `{field}` uses `{root}`, but `{field}` is evaluated once for the whole task, before any item"),
                                if field == "when" {
                                    "to run only some items, filter the list instead: `with_items: \"{{ xs | select('odd') }}\"` or `{{ xs | selectattr('enabled') }}`".to_owned()
                                } else {
                                    "`item` and `item_index` exist only in the task's `input`".to_owned()
                                },
                            ),
                            (Some(_), false) => (
                                format!("{whose}: `{field}` uses `{root}`, which only exists in the `input` of a `with_items` task"),
                                "add `with_items:` to the task, or remove the reference".to_owned(),
                            ),
                        };
                        let p = here(self, root, message);
                        self.push(p.hint(hint));
                    }
                    "item" | "item_index" => {}
                    "workflow" => {
                        if let Some(attr) = second
                            && attr != "id"
                            && attr != "name"
                        {
                            let p = here(
                                self,
                                &format!("workflow.{attr}"),
                                format!("{whose}: `workflow.{attr}` does not exist"),
                            );
                            self.push(p.hint("the run is `workflow.id` and `workflow.name`"));
                        }
                    }
                    "range" | "dict" | "namespace" | "debug" | "true" | "false" | "none"
                    | "loop" => {}
                    other => {
                        let mut p = here(
                            self,
                            other,
                            format!("{whose}: `{field}` uses `{other}`, which is not defined"),
                        );
                        let roots = ["input", "tasks", "item", "item_index", "workflow"];
                        p = match closest(other, roots.iter().copied()) {
                            Some(best) => p.hint(format!("did you mean `{best}`?")),
                            None => p.hint(
                                "expressions can use input, tasks, item, item_index and workflow",
                            ),
                        };
                        self.push(p);
                    }
                }
            }
        }
        used
    }

    /// Filters, tests, functions and methods a template names that this
    /// build does not have, and status comparisons with a word that is
    /// not a status — found before anything runs, each with a "did you
    /// mean". Returns the names called as functions (their undefined-name
    /// problem is this one).
    fn check_calls(
        &mut self,
        (location, text): (Location, &str),
        (scanned, shift): (&str, usize),
        whose: &str,
        field: &str,
        inputs: &IndexMap<String, Option<Value>>,
    ) -> BTreeSet<String> {
        let macros = scan::macros(scanned);
        let mut called = BTreeSet::new();
        for found in scan::scan(scanned) {
            let problem = match found {
                Use::Filter(name, at) if !self.evaluator.knows_filter(name) => {
                    let known = self.known(FILTERS, |e, n| e.knows_filter(n));
                    let hint = match closest(name, known.iter().copied()) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => format!("filters: {}", known.join(", ")),
                    };
                    Some((
                        at,
                        name,
                        format!(
                            "{whose}: `{field}` uses the filter `{name}`, which does not exist"
                        ),
                        hint,
                    ))
                }
                Use::Test(name, at) if !self.evaluator.knows_test(name) => {
                    let known = self.known(TESTS, |e, n| e.knows_test(n));
                    let hint = match closest(name, known.iter().copied()) {
                        Some(best) => format!("did you mean `is {best}`?"),
                        None => format!("tests: {}", known.join(", ")),
                    };
                    Some((
                        at,
                        name,
                        format!(
                            "{whose}: `{field}` uses the test `is {name}`, which does not exist"
                        ),
                        hint,
                    ))
                }
                Use::Function(name, at)
                    if !self.evaluator.knows_function(name)
                        && !macros.contains(&name)
                        && !["loop", "caller", "super", "self", "varargs", "kwargs"]
                            .contains(&name) =>
                {
                    called.insert(name.to_owned());
                    let hint = if self.evaluator.knows_filter(name) {
                        format!("`{name}` is a filter: write `value | {name}`")
                    } else {
                        match closest(name, FUNCTIONS.iter().copied()) {
                            Some(best) => format!("did you mean `{best}(…)`?"),
                            None => format!(
                                "the functions are {}; the rest are filters (`value | length`)",
                                FUNCTIONS.join(", ")
                            ),
                        }
                    };
                    Some((
                        at,
                        name,
                        format!("{whose}: `{field}` calls `{name}(…)`, which is not a function"),
                        hint,
                    ))
                }
                Use::Method { receiver, name, at } if receiver != "loop" => {
                    let hint = if self.evaluator.knows_filter(name) {
                        format!("use the filter: `… | {name}(…)`")
                    } else {
                        let filters = self.known(FILTERS, |e, n| e.knows_filter(n));
                        let tests = self.known(TESTS, |e, n| e.knows_test(n));
                        let filter = closest(name, filters.iter().copied());
                        let test = closest(name, tests.iter().copied());
                        let score =
                            |c: Option<&str>| c.map_or(0.0, |c| strsim::jaro_winkler(name, c));
                        match (filter, test) {
                            (_, Some(best)) if score(test) > score(filter) => {
                                format!("did you mean the test `… is {best}(…)`?")
                            }
                            (Some(best), _) => format!("did you mean the filter `… | {best}`?"),
                            _ => "write it with filters: `value | upper`, `value | split(',')`"
                                .to_owned(),
                        }
                    };
                    Some((
                        at,
                        name,
                        format!(
                            "{whose}: `{field}` calls the method `.{name}(…)`, but values have no methods here"
                        ),
                        hint,
                    ))
                }
                Use::InputSubscript(name, at) if !inputs.contains_key(name) => {
                    let declared: Vec<&str> = inputs.keys().map(String::as_str).collect();
                    let hint = match closest(name, declared.iter().copied()) {
                        Some(best) => format!(
                            "did you mean `input['{best}']`? Otherwise declare it: `input: {{ '{name}': null }}`"
                        ),
                        None => format!(
                            "declare it at the top: `input: {{ '{name}': null }}` (null = required)"
                        ),
                    };
                    Some((
                        at,
                        name,
                        format!(
                            "{whose}: `{field}` uses `input['{name}']`, which is not declared under `input:`"
                        ),
                        hint,
                    ))
                }
                Use::StatusCompare { task, literal, at }
                    if !TaskStatus::ALL.iter().any(|s| s.as_str() == literal) =>
                {
                    let statuses: Vec<&str> = TaskStatus::ALL
                        .iter()
                        .filter(|s| s.is_terminal())
                        .map(|s| s.as_str())
                        .collect();
                    let hint = match closest(literal, statuses.iter().copied()) {
                        Some(best) => format!(
                            "did you mean '{best}'? (a needed task is one of: {})",
                            statuses.join(", ")
                        ),
                        None => format!("a needed task is one of: {}", statuses.join(", ")),
                    };
                    Some((
                        at,
                        literal,
                        format!(
                            "{whose}: `{field}` compares `tasks.{task}.status` with '{literal}', which is not a status, so the comparison never holds"
                        ),
                        hint,
                    ))
                }
                _ => None,
            };
            if let Some((at, fragment, message, hint)) = problem {
                let offset = at.saturating_sub(shift);
                let p = self.at_fragment(location, text, offset, fragment, message);
                self.push(p.hint(hint));
            }
        }
        called
    }

    /// The names of `candidates` this build knows, for "did you mean".
    fn known(
        &self,
        candidates: &'static [&'static str],
        knows: fn(&Evaluator, &str) -> bool,
    ) -> Vec<&'static str> {
        candidates
            .iter()
            .copied()
            .filter(|n| knows(&self.evaluator, n))
            .collect()
    }
}

/// Where a list of template strings sits, for its messages.
struct Scope<'a> {
    task: Option<&'a str>,
    field: &'static str,
    /// `item` and `item_index` exist here (a with_items task's `input`).
    items_allowed: bool,
    /// The task has `with_items`.
    fan_out: bool,
    /// A `when`: one expression, braces optional.
    condition: bool,
}

/// Filters minijinja's built-ins have, and ours (`fromjson`): the
/// candidates of "did you mean" (each checked against the build).
const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "fromjson",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
    "zip",
];
/// Tests (`x is odd`).
const TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "equalto",
    "escaped",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "greaterthan",
    "gt",
    "in",
    "int",
    "integer",
    "iterable",
    "le",
    "lessthan",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];
/// Global functions.
const FUNCTIONS: &[&str] = &["range", "dict", "namespace", "debug"];

/// The template strings of a tree, each with its place.
fn template_strings(tree: &Spanned<Tree>) -> Vec<(Location, &str)> {
    Tree::strings(tree)
        .into_iter()
        .filter(|(_, s)| is_template(s))
        .collect()
}

/// The field named by a serde "unknown field `x`" message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.split("unknown field `").nth(1)?;
    rest.split('`').next()
}
