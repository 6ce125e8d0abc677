//! The checks of expressions: every template string of a task (its
//! `input`, `with_items`, `when`) and of the workflow's `output` — names,
//! ancestors, `item` — and, found by a scan of the text (`crate::scan`),
//! the filters, tests, functions and methods it names and the status words
//! it compares with; each problem with a caret at the words inside the
//! string. Also the warning for a template spliced into a shell script.

use std::collections::BTreeSet;

use indexmap::IndexMap;
use serde_json::Value;
use serde_saphyr::{Location, Spanned};

use super::{Validator, closest, is_identifier};
use crate::dag::Dag;
use crate::diagnostic::Problem;
use crate::expr::{Evaluator, is_template};
use crate::scan::{self, Use};
use crate::spec::{RawTask, Tree};
use crate::state::TaskStatus;
use crate::workflow::Task;

impl Validator<'_> {
    /// Checks the workflow's `output`; returns the tasks it uses.
    pub(super) fn check_output(
        &mut self,
        output: &Spanned<Tree>,
        names: &[&str],
        inputs: &IndexMap<String, Option<Value>>,
    ) -> BTreeSet<String> {
        let sites = template_strings(output);
        let scope = Scope {
            task: None,
            field: "output",
            items_allowed: false,
            fan_out: false,
            condition: false,
            retry: false,
        };
        self.check_sites(&sites, &scope, &|_| true, names, inputs)
    }

    /// Checks the workflow's `limit.key`: it sees the run's `input` and
    /// `workflow`, no task (it is rendered before any runs).
    pub(super) fn check_limit_key(
        &mut self,
        key: &Spanned<String>,
        inputs: &IndexMap<String, Option<Value>>,
    ) {
        let scope = Scope {
            task: None,
            field: "limit.key",
            items_allowed: false,
            fan_out: false,
            condition: false,
            retry: false,
        };
        let sites = [(key.referenced, key.value.as_str())];
        self.check_sites(&sites, &scope, &|_| false, &[], inputs);
    }

    /// Checks every expression of a task; returns the tasks they use.
    pub(super) fn check_task_expressions(
        &mut self,
        task: &Task,
        raw: &RawTask,
        dag: &Dag,
        names: &[&str],
        inputs: &IndexMap<String, Option<Value>>,
    ) -> BTreeSet<String> {
        // An exit handler may read every main task: they are all terminal
        // before it starts.
        let main_names = self.main_names.clone();
        let ancestor = |other: &str| {
            (task.exit_handler && main_names.iter().any(|n| n == other))
                || task.needs.iter().any(|n| n == other)
                || dag.is_ancestor(other, &task.name)
        };
        let mut used = BTreeSet::new();
        let fan_out = task.with_items.is_some();
        let scope = |field: &'static str, items_allowed: bool, condition: bool| Scope {
            task: Some(&task.name),
            field,
            items_allowed,
            fan_out,
            condition,
            retry: false,
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
        if let Some(w) = &raw.wait
            && let crate::spec::RawWait::Spec(spec) = &w.value
            && let Some(until) = &spec.until
        {
            let sites = [(until.referenced, until.value.as_str())];
            used.extend(self.check_sites(
                &sites,
                &scope("wait.until", false, false),
                &ancestor,
                names,
                inputs,
            ));
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
        let lock = match (&raw.mutex, &raw.semaphore) {
            (Some(m), _) => Some(("mutex", m)),
            (None, Some(s)) => s.value.key.as_ref().map(|k| ("semaphore.key", k)),
            (None, None) => None,
        };
        if let Some((field, key)) = lock {
            let sites = [(key.referenced, key.value.as_str())];
            used.extend(self.check_sites(
                &sites,
                &scope(field, false, false),
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
        if let Some(w) = raw.retry.as_ref().and_then(|r| r.value.when.as_ref()) {
            // Decided after an attempt, from the attempt: no task's data.
            let sites = [(w.referenced, w.value.as_str())];
            let retry_scope = Scope {
                retry: true,
                ..scope("retry.when", false, true)
            };
            self.check_sites(&sites, &retry_scope, &|_| false, names, inputs);
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
                    "error" | "exit_code" | "attempt" | "timed_out" if scope.retry => {}
                    "tasks" | "item" | "item_index" | "workflow" if scope.retry => {
                        let p = here(
                            self,
                            root,
                            format!(
                                "{whose}: `retry.when` uses `{root}`, which it cannot see: it is decided from the attempt that failed"
                            ),
                        );
                        self.push(p.hint(RETRY_NAMES_HINT));
                    }
                    "input" => {
                        self.note_secret_read(scope.task, field, second, location);
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
                            if third == Some("items") {
                                self.items_read.insert(other.to_owned());
                            }
                            if let Some(attr) = third
                                && !TASK_ATTRIBUTES.contains(&attr)
                            {
                                let p = here(
                                    self,
                                    &format!("tasks.{other}.{attr}"),
                                    format!("{whose}: `tasks.{other}.{attr}` does not exist"),
                                );
                                self.push(p.hint(format!(
                                    "a task has `tasks.{other}.result`, `.status`, `.error` and (a with_items task) `.items`"
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
                        let exit_only = ["status", "failures", "duration"];
                        if let Some(attr) = second
                            && exit_only.contains(&attr)
                            && !self.exit_phase
                        {
                            let p = here(
                                self,
                                &format!("workflow.{attr}"),
                                format!(
                                    "{whose}: `workflow.{attr}` is only known to exit handlers"
                                ),
                            );
                            self.push(p.hint("move the task under `on_exit:`, which runs once every main task is terminal"));
                        } else if let Some(attr) = second
                            && attr != "id"
                            && attr != "name"
                            && attr != "scheduled_at"
                            && !exit_only.contains(&attr)
                        {
                            let p = here(
                                self,
                                &format!("workflow.{attr}"),
                                format!("{whose}: `workflow.{attr}` does not exist"),
                            );
                            self.push(p.hint("the run is `workflow.id`, `workflow.name` and `workflow.scheduled_at` (and, in exit handlers, `workflow.status`, `workflow.failures`, `workflow.duration`)"));
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
                        let roots: &[&str] = if scope.retry {
                            &["error", "exit_code", "attempt", "timed_out", "input"]
                        } else {
                            &["input", "tasks", "item", "item_index", "workflow"]
                        };
                        p = match closest(other, roots.iter().copied()) {
                            Some(best) => p.hint(format!("did you mean `{best}`?")),
                            None if scope.retry => p.hint(RETRY_NAMES_HINT),
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
    /// A `retry.when`: sees the failed attempt and the input, nothing else.
    retry: bool,
}

/// What a task shows expressions: `tasks.X.<attribute>`.
const TASK_ATTRIBUTES: &[&str] = &["result", "status", "error", "items"];

/// What `retry.when` can use.
const RETRY_NAMES_HINT: &str = "`retry.when` can use `error` (text), `exit_code` (a shell command's, else null), `attempt` (1-based), `timed_out` and `input`";

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
