//! Validation: turns the raw spec into a [`Workflow`] or the list of every
//! problem, each pointing at the offending text with a hint.

use std::collections::BTreeSet;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Map, Value};
use serde_saphyr::{Location, Spanned};

mod calls;
mod declarations;
mod expressions;
mod limits;
mod secrets;
mod waits;

use crate::dag::Dag;
use crate::diagnostic::Problem;
use crate::duration::parse_duration;
use crate::expr::{Evaluator, is_template, lone_expression};
use crate::inputs::InputSpec;
use crate::spec::{
    LIMIT_FIELDS, RETRY_FIELDS, RawRetry, RawTask, RawWait, RawWorkflow, TASK_FIELDS, WAIT_FIELDS,
    WORKFLOW_FIELDS, WithItems,
};
use crate::state::Trigger;
use crate::wait::{UNTIL_KEY, WAIT_LABEL};
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
    /// Fan-outs whose `tasks.X.items` an expression reads.
    items_read: BTreeSet<String>,
    /// Whether the tasks being read are exit handlers (`on_exit:`).
    exit_phase: bool,
    /// The names of the main tasks (`tasks:`), which exit handlers may
    /// read but not need.
    main_names: Vec<String>,
    /// The inputs declared `secret: true`.
    secret_inputs: BTreeSet<String>,
    /// Where expressions read them (see [`secrets`]).
    secret_reads: Vec<secrets::SecretRead>,
}

impl<'s> Validator<'s> {
    pub(crate) fn new(source: &'s str) -> Self {
        Self {
            source,
            evaluator: Evaluator::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
            lints: true,
            items_read: BTreeSet::new(),
            exit_phase: false,
            main_names: Vec::new(),
            secret_inputs: BTreeSet::new(),
            secret_reads: Vec::new(),
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
        let parallelism = self.parallelism(raw.parallelism.as_ref());
        let input_specs: IndexMap<String, InputSpec> = raw
            .input
            .as_ref()
            .map(|i| {
                i.value
                    .iter()
                    .map(|(name, declared)| (name.clone(), self.input(name, declared, true)))
                    .collect()
            })
            .unwrap_or_default();
        self.secret_inputs = input_specs
            .iter()
            .filter(|(_, spec)| spec.secret())
            .map(|(name, _)| name.clone())
            .collect();
        let inputs: IndexMap<String, Option<Value>> = input_specs
            .iter()
            .map(|(name, spec)| (name.clone(), spec.default().cloned()))
            .collect();
        let limit = self.limit(raw.limit.as_ref(), &inputs);
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
        self.main_names = names.iter().map(|n| (*n).to_owned()).collect();
        let raw_exits = self.exit_handlers(raw.on_exit.as_ref(), &names);
        let exit_names: Vec<&str> = raw_exits.keys().map(String::as_str).collect();
        self.exit_phase = true;
        for (task_name, raw_task) in raw_exits {
            if names.contains(&task_name.as_str()) {
                continue;
            }
            tasks.push(self.task(task_name, raw_task, &exit_names));
        }
        self.exit_phase = false;
        // Every task, main and exit handlers: what exit handlers and the
        // output may read.
        let all_names: Vec<&str> = names.iter().chain(&exit_names).copied().collect();
        let raw_of = |name: &str| raw_tasks.get(name).or_else(|| raw_exits.get(name));
        // The graph and expression checks run even after problems above, on
        // what could be read, so one pass reports as much as possible.
        let dag = match Dag::build(tasks.iter().map(|t| (t.name.as_str(), t.needs.as_slice()))) {
            Ok(dag) => dag,
            Err(cycles) => {
                for cycle in cycles {
                    let Some(first) = raw_of(cycle[0].as_str()) else {
                        continue;
                    };
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
            let Some(raw_task) = raw_of(task.name.as_str()) else {
                continue;
            };
            self.exit_phase = task.exit_handler;
            let visible = if task.exit_handler {
                &all_names
            } else {
                &names
            };
            task.references =
                self.check_task_expressions(task, &raw_task.value, &dag, visible, &inputs);
        }
        self.exit_phase = false;
        if parallelism.is_some()
            && let Some(task) = tasks.iter().find(|t| t.lock.is_some())
            && let Some(n) = &raw.parallelism
        {
            let p = self.at(
                &n.referenced,
                format!("task `{}` takes a lock across runs, which a workflow with `parallelism` cannot have yet", task.name),
            );
            self.push(p.hint("remove `parallelism`, or the task's `mutex`/`semaphore`"));
        }
        let output = raw.output.as_ref().map(|o| o.value.value.clone());
        let output_references = match &raw.output {
            Some(o) => self.check_output(o, &all_names, &inputs),
            None => BTreeSet::new(),
        };
        let secret_readers = self.check_secret_reads(&tasks);
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
            items_read: std::mem::take(&mut self.items_read),
            tasks,
            index,
            dag,
            parallelism,
            limit,
            secret_readers,
        };
        Ok((workflow, warnings))
    }

    /// The workflow's `parallelism`: a whole number of at least 1 (a
    /// template or a word is reported by [`Validator::number_problem`]
    /// when the file is read).
    fn parallelism(&mut self, written: Option<&Spanned<i64>>) -> Option<u32> {
        let n = written?;
        let problem = if n.value < 1 {
            format!(
                "`parallelism` must be at least 1, not {}: it is how many executions of a run may be in flight at once",
                n.value
            )
        } else {
            // Stored as a PostgreSQL `integer`.
            match i32::try_from(n.value) {
                Ok(limit) => return u32::try_from(limit).ok(),
                Err(_) => format!(
                    "`parallelism` must be at most {}, not {}",
                    i32::MAX,
                    n.value
                ),
            }
        };
        let p = self.at(&n.referenced, problem);
        self.push(p.hint("omit `parallelism` for no run-wide limit"));
        None
    }

    /// The exit handlers as written (`on_exit:`), after refusing an empty
    /// map and names taken by main tasks (each on its key's line).
    fn exit_handlers<'r>(
        &mut self,
        on_exit: Option<&'r Spanned<IndexMap<String, Spanned<RawTask>>>>,
        main: &[&str],
    ) -> &'r IndexMap<String, Spanned<RawTask>> {
        static NONE: std::sync::OnceLock<IndexMap<String, Spanned<RawTask>>> =
            std::sync::OnceLock::new();
        let Some(on_exit) = on_exit else {
            return NONE.get_or_init(IndexMap::new);
        };
        if on_exit.value.is_empty() {
            let p = self.at(&on_exit.referenced, "the workflow's `on_exit` has no tasks");
            self.push(p.hint(
                "add exit handlers under `on_exit:` (same syntax as `tasks:`), or remove it",
            ));
        }
        for (name, raw) in &on_exit.value {
            if main.contains(&name.as_str()) {
                let p = self.at_key(
                    &raw.referenced,
                    name,
                    format!("exit handler `{name}` has the name of a main task"),
                );
                self.push(p.hint(
                    "tasks and exit handlers share one namespace (`tasks.<name>`): rename one of them",
                ));
            }
        }
        &on_exit.value
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
        // The two limits, each written where the other belongs.
        match unknown_field(&text) {
            Some("parallelism") => {
                return problem.hint(
                    "`parallelism` limits a whole run: write it at the top of the workflow, next to `tasks:`; a task limits its own items with `concurrency`",
                );
            }
            Some("concurrency") if text.contains("expected one of name,") => {
                return problem.hint(
                    "`concurrency` limits one task's items: write it in a task; a whole run is limited with `parallelism: N` at the top",
                );
            }
            _ => {}
        }
        if let Some(field) = unknown_field(&text) {
            let candidates = TASK_FIELDS
                .iter()
                .chain(WORKFLOW_FIELDS)
                .chain(RETRY_FIELDS)
                .chain(WAIT_FIELDS)
                .chain(LIMIT_FIELDS)
                .copied();
            problem = match closest(field, candidates) {
                Some(best) => problem.hint(format!("did you mean `{best}`?")),
                None => problem.hint(format!("task fields are: {}", TASK_FIELDS.join(", "))),
            };
        }
        problem
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
        let call = self.call(name, raw);
        let wait = self.wait(name, raw);
        let action = match (&t.action, &call) {
            _ if t.wait.is_some() => WAIT_LABEL.to_owned(),
            (Some(a), Some(_)) => {
                let p = self.at(
                    &a.referenced,
                    format!("task `{name}` has both an `action` and a `workflow`"),
                );
                self.push(p.hint(
                    "a task either runs an action or starts a sub-workflow: remove one of them",
                ));
                String::new()
            }
            (None, Some(call)) => call.label(),
            (Some(a), None) if !a.value.trim().is_empty() => a.value.clone(),
            (Some(a), None) => {
                let p = self.at(
                    &a.referenced,
                    format!("task `{name}` has an empty `action`"),
                );
                self.push(p);
                String::new()
            }
            (None, None) => {
                let p = self.at(&raw.referenced, format!("task `{name}` has no `action`"));
                self.push(
                    p.hint("add e.g. `action: echo` (built-ins: noop, echo, sleep, fail, shell), or `workflow: other.yaml` to start a sub-workflow, or `wait: 30s` to wait"),
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
                } else if self.exit_phase && self.main_names.contains(&need.value) {
                    let p = self.at(
                        &need.referenced,
                        format!(
                            "exit handler `{name}` needs `{}`, a main task: `needs` in `on_exit` may only name other exit handlers",
                            need.value
                        ),
                    );
                    self.push(p.hint(format!(
                        "exit handlers start once every main task is terminal anyway; read its outcome as `tasks.{}.status`",
                        need.value
                    )));
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
        let lock = self.task_lock(name, raw);
        Task {
            name: name.to_owned(),
            action,
            description: t.description.clone(),
            input: match until_template(t) {
                Some(until) => serde_json::json!({ UNTIL_KEY: until }),
                None => t
                    .input
                    .as_ref()
                    .map_or_else(|| Value::Object(Map::new()), |i| i.value.value.clone()),
            },
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
            call,
            exit_handler: self.exit_phase,
            wait,
            lock,
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
        if let Some(d) = &raw.max_duration {
            policy.max_duration = self.duration(task, "retry.max_duration", d);
            if policy.max_duration == Some(Duration::ZERO) {
                let p = self.at(
                    &d.referenced,
                    format!("task `{task}`: `retry.max_duration` must be longer than 0"),
                );
                self.push(p);
            }
            // Argo's `maxDuration` without a `limit`: tries until the time
            // is spent.
            if raw.attempts.is_none() {
                policy.attempts = u32::MAX;
            }
        }
        if let Some(w) = &raw.when {
            // Its expression is checked with the task's other expressions.
            policy.when = Some(w.value.clone());
            if raw.attempts.is_none() && raw.max_duration.is_none() {
                let p = self.at(
                    &w.referenced,
                    format!("task `{task}`: `retry.when` without `retry.attempts` or `retry.max_duration` would never retry (attempts default to 1)"),
                );
                self.push(
                    p.hint("bound the retries: `attempts: 5` (total tries) or `max_duration: 10m`"),
                );
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
}

/// The `until` template of a `wait: {until: …}` task, which becomes its
/// input ([`UNTIL_KEY`]) so that it is rendered as any input is.
fn until_template(t: &RawTask) -> Option<String> {
    match &t.wait.as_ref()?.value {
        RawWait::Spec(spec) => spec.until.as_ref().map(|u| u.value.clone()),
        _ => None,
    }
}

/// The field named by a serde "unknown field `x`" message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.split("unknown field `").nth(1)?;
    rest.split('`').next()
}
