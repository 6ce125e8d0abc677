//! Expressions: Jinja `{{ … }}` templates evaluated by minijinja in a
//! sandbox (no IO, strict undefined, a fuel limit against runaway loops).
//!
//! A string that is exactly one `{{ expr }}` yields the expression's native
//! JSON value (number, list, object); any other string with `{{` or `{%`
//! renders to a string; strings without either are returned unchanged.
//! Objects and lists are walked and rendered leaf by leaf.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

use crate::json_view;
use crate::spec::WithItems;
use crate::state::TaskStatus;

/// Instructions one evaluation may spend before it is stopped.
const FUEL: u64 = 1_000_000;

/// What an expression can see.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The run's resolved input.
    pub input: serde_json::Map<String, Value>,
    /// The tasks this expression may reference (ancestors), by name.
    pub tasks: BTreeMap<String, TaskView>,
    /// The current item of a `with_items` task (absent otherwise).
    pub item: Option<Value>,
    /// The current item's position.
    pub item_index: Option<u32>,
    /// The run itself.
    pub workflow: WorkflowRef,
}

/// A task as expressions see it.
#[derive(Debug, Clone)]
pub struct TaskView {
    /// Its status.
    pub status: TaskStatus,
    /// Its result (`null` if it has none), shared: expressions read it in
    /// place (see `json_view`), however large a fan-out's result is. A
    /// fan-out's has one entry per item, `null` for an item that did not
    /// succeed, whatever the task's outcome.
    pub result: Arc<Value>,
    /// Why it failed (`tasks.X.error`): only for a failed task, `None`
    /// otherwise.
    pub error: Option<String>,
    /// A fan-out's items as they ended, in item order (`tasks.X.items`,
    /// each `{status, result, error}` with the result read from
    /// `result`); `None` for a plain task, or when no expression reads
    /// them.
    pub items: Option<Arc<[ItemState]>>,
}

/// How one item of a fan-out ended: its latest attempt's status and
/// error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemState {
    /// `succeeded`, `failed`, `timed_out`, `canceled`, or `pending` /
    /// `queued` / `running` for an item that never finished (its task
    /// failed or was canceled first).
    pub status: String,
    /// Its error, when it did not succeed.
    pub error: Option<String>,
}

impl TaskView {
    /// A task with this status and result, no error and no items.
    #[must_use]
    pub fn new(status: TaskStatus, result: Arc<Value>) -> Self {
        Self {
            status,
            result,
            error: None,
            items: None,
        }
    }
}

/// The run as expressions see it.
#[derive(Debug, Clone, Default)]
pub struct WorkflowRef {
    /// The run's id.
    pub id: String,
    /// The workflow's name.
    pub name: String,
    /// The tick a schedule started the run for (RFC 3339, UTC);
    /// `None` (`none` in expressions) for a run not started by a schedule.
    pub scheduled_at: Option<String>,
    /// What an exit handler sees of the run (`workflow.status`,
    /// `.failures`, `.duration`); `None` for main tasks and the output.
    pub exit: Option<crate::exit::ExitView>,
}

/// An expression that failed to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// The template text.
    pub expression: String,
    /// Why it failed.
    pub reason: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.expression, self.reason)
    }
}

impl std::error::Error for ExprError {}

/// Evaluates templates. Build one and share it; it is `Send + Sync`.
#[derive(Debug)]
pub struct Evaluator {
    env: Environment<'static>,
}

impl Default for Evaluator {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a string is a template at all.
pub(crate) fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// The inner expression of a string that is exactly one `{{ expr }}`.
pub(crate) fn lone_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%"))
        .then_some(inner.trim())
}

fn describe(err: &minijinja::Error) -> String {
    let mut text = err.detail().map_or_else(
        || err.kind().to_string(),
        |d| format!("{}: {d}", err.kind()),
    );
    if err.kind() == minijinja::ErrorKind::UndefinedError && err.detail().is_none() {
        text = "undefined value (a name, attribute or item that does not exist)".to_owned();
    }
    text
}

impl Evaluator {
    /// A sandboxed evaluator with strict undefined and a fuel limit.
    #[must_use]
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.add_filter(
            "fromjson",
            |s: String| -> Result<minijinja::Value, minijinja::Error> {
                serde_json::from_str::<Value>(&s)
                    .map(|v| minijinja::Value::from(Serde(v)))
                    .map_err(|e| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            format!("not JSON: {e}"),
                        )
                    })
            },
        );
        Self { env }
    }

    /// The context as minijinja sees it: JSON documents (the input, tasks'
    /// results) are shared, not converted (see `json_view`).
    fn ctx_value(ctx: &Context) -> minijinja::Value {
        let tasks: BTreeMap<String, minijinja::Value> = ctx
            .tasks
            .iter()
            .map(|(name, task)| {
                let error = match task.status {
                    TaskStatus::Failed => task.error.as_deref(),
                    _ => None,
                };
                let items = task.items.as_ref().map_or_else(
                    || minijinja::Value::from(()),
                    |items| json_view::items(Arc::clone(items), Arc::clone(&task.result)),
                );
                let view = minijinja::context! {
                    status => task.status.as_str(),
                    result => json_view::view(Arc::clone(&task.result)),
                    error => error,
                    items => items,
                };
                (name.clone(), view)
            })
            .collect();
        let mut values: BTreeMap<String, minijinja::Value> = BTreeMap::new();
        values.insert(
            "input".into(),
            json_view::view(Arc::new(Value::Object(ctx.input.clone()))),
        );
        values.insert("tasks".into(), minijinja::Value::from_object(tasks));
        let workflow = match &ctx.workflow.exit {
            None => {
                minijinja::context! {
                    id => ctx.workflow.id.as_str(),
                    name => ctx.workflow.name.as_str(),
                    scheduled_at => ctx.workflow.scheduled_at.as_deref(),
                }
            }
            Some(exit) => minijinja::context! {
                id => ctx.workflow.id.as_str(),
                name => ctx.workflow.name.as_str(),
                scheduled_at => ctx.workflow.scheduled_at.as_deref(),
                status => exit.status.as_str(),
                failures => minijinja::Value::from(Serde(&serde_json::to_value(&exit.failures).unwrap_or_default())),
                duration => exit.duration,
            },
        };
        values.insert("workflow".into(), workflow);
        if let Some(item) = &ctx.item {
            values.insert("item".into(), minijinja::Value::from(Serde(item)));
        }
        if let Some(index) = ctx.item_index {
            values.insert("item_index".into(), minijinja::Value::from(index));
        }
        minijinja::Value::from_object(values)
    }

    fn eval_str(&self, s: &str, ctx: &minijinja::Value) -> Result<Value, ExprError> {
        let fail = |e: minijinja::Error| ExprError {
            expression: s.to_owned(),
            reason: describe(&e),
        };
        if let Some(expr) = lone_expression(s) {
            let compiled = self.env.compile_expression(expr).map_err(fail)?;
            let value = compiled.eval(ctx.clone()).map_err(fail)?;
            if value.is_undefined() {
                return Err(ExprError {
                    expression: s.to_owned(),
                    reason: "undefined value".into(),
                });
            }
            serde_json::to_value(&value).map_err(|e| ExprError {
                expression: s.to_owned(),
                reason: format!("not representable as JSON: {e}"),
            })
        } else {
            self.env
                .render_str(s, ctx.clone())
                .map(Value::String)
                .map_err(fail)
        }
    }

    fn walk(&self, template: &Value, ctx: &minijinja::Value) -> Result<Value, ExprError> {
        match template {
            Value::String(s) if is_template(s) => self.eval_str(s, ctx),
            Value::Array(items) => items
                .iter()
                .map(|v| self.walk(v, ctx))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| self.walk(v, ctx).map(|v| (k.clone(), v)))
                .collect::<Result<_, _>>()
                .map(Value::Object),
            other => Ok(other.clone()),
        }
    }

    /// Renders a template tree against `ctx`.
    ///
    /// # Errors
    /// The first expression that fails, with the reason.
    pub fn render(&self, template: &Value, ctx: &Context) -> Result<Value, ExprError> {
        self.walk(template, &Self::ctx_value(ctx))
    }

    /// Renders a template tree once per item, with `item` and `item_index`
    /// set, lazily: each item's input is rendered as the iterator reaches
    /// it, so a caller that stores them compactly never holds every
    /// rendered tree of a wide fan-out at once. The context is converted
    /// once, not once per item.
    ///
    /// # Errors
    /// Each failing item yields its index and the error.
    pub fn render_items<'a>(
        &'a self,
        template: &'a Value,
        ctx: &Context,
        items: Vec<Value>,
    ) -> impl ExactSizeIterator<Item = Result<Value, (usize, ExprError)>> + 'a {
        let base = Self::ctx_value(ctx);
        let constant = !contains_template(template);
        items.into_iter().enumerate().map(move |(i, item)| {
            if constant {
                return Ok(template.clone());
            }
            let per_item = minijinja::context! {
                item => Serde(item),
                item_index => i,
                ..base.clone()
            };
            self.walk(template, &per_item).map_err(|e| (i, e))
        })
    }

    /// Evaluates a `when` condition with Jinja truthiness.
    ///
    /// # Errors
    /// If the expression fails.
    pub fn condition(&self, when: &str, ctx: &Context) -> Result<bool, ExprError> {
        self.truthy(when, Self::ctx_value(ctx))
    }

    /// Evaluates a condition, with or without braces, in `ctx`.
    fn truthy(&self, when: &str, ctx: minijinja::Value) -> Result<bool, ExprError> {
        let fail = |e: minijinja::Error| ExprError {
            expression: when.to_owned(),
            reason: describe(&e),
        };
        let expr = lone_expression(when).unwrap_or(when);
        let compiled = self.env.compile_expression(expr).map_err(fail)?;
        let value = compiled.eval(ctx).map_err(fail)?;
        Ok(value.is_true())
    }

    /// Evaluates a `retry.when` condition (with or without braces) with
    /// Jinja truthiness, against what is known of the attempt that failed:
    /// `error` (text, `null` if none), `exit_code` (`null` unless a process
    /// exited), `attempt` (1-based), `timed_out` and the run's `input`.
    ///
    /// # Errors
    /// If the expression fails.
    pub fn retry_condition(
        &self,
        when: &str,
        facts: &crate::retry::AttemptFacts<'_>,
    ) -> Result<bool, ExprError> {
        let ctx = minijinja::context! {
            error => facts.error,
            exit_code => facts.exit_code,
            attempt => facts.attempt,
            timed_out => facts.status == crate::state::ExecutionStatus::TimedOut,
            input => json_view::view(Arc::new(Value::Object(facts.input.clone()))),
        };
        self.truthy(when, ctx)
    }

    /// Renders a template tree leaf by leaf, never failing: a template
    /// string that fails to evaluate becomes `null`, and its place
    /// (`a.b[2]`) and error are returned beside the value — a run's output,
    /// rendered whatever the run's outcome.
    #[must_use]
    pub fn render_partial(
        &self,
        template: &Value,
        ctx: &Context,
    ) -> (Value, Vec<(String, ExprError)>) {
        let ctx = Self::ctx_value(ctx);
        let mut failures = Vec::new();
        let value = self.walk_partial(template, &ctx, String::new(), &mut failures);
        (value, failures)
    }

    fn walk_partial(
        &self,
        template: &Value,
        ctx: &minijinja::Value,
        path: String,
        failures: &mut Vec<(String, ExprError)>,
    ) -> Value {
        match template {
            Value::String(s) if is_template(s) => self.eval_str(s, ctx).unwrap_or_else(|e| {
                failures.push((path, e));
                Value::Null
            }),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.walk_partial(v, ctx, format!("{path}[{i}]"), failures))
                    .collect(),
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let at = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        (k.clone(), self.walk_partial(v, ctx, at, failures))
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// What the variables of a `when` were worth, as `path = value`
    /// (values abbreviated), for the reason a task was skipped: the values
    /// that decided it, kept with the decision. A path that does not
    /// evaluate (it cannot, once the condition did) is left out.
    #[must_use]
    pub fn condition_values(&self, when: &str, ctx: &Context) -> Vec<String> {
        let Ok(paths) = self.condition_references(when) else {
            return Vec::new();
        };
        let ctx = Self::ctx_value(ctx);
        paths
            .into_iter()
            .filter_map(|path| {
                let value = self
                    .env
                    .compile_expression(&path)
                    .ok()?
                    .eval(ctx.clone())
                    .ok()?;
                let json = serde_json::to_value(&value).ok()?;
                Some(format!(
                    "{path} = {}",
                    crate::explain::abbreviate(&json, 60)
                ))
            })
            .collect()
    }

    /// The items of a `with_items`: the literal list, or the expression's
    /// value, which must be a list.
    ///
    /// # Errors
    /// If the expression fails or is not a list (naming what it is).
    pub fn items(&self, with_items: &WithItems, ctx: &Context) -> Result<Vec<Value>, ExprError> {
        match with_items {
            WithItems::List(items) => {
                let ctx = Self::ctx_value(ctx);
                items.iter().map(|v| self.walk(v, &ctx)).collect()
            }
            WithItems::Expression(text) => match self.render(&Value::String(text.clone()), ctx)? {
                Value::Array(items) => Ok(items),
                other => Err(ExprError {
                    expression: text.clone(),
                    reason: format!("with_items must be a list, but this is {}", kind_of(&other)),
                }),
            },
        }
    }

    /// The variables a template uses, as dotted paths (`tasks.a.result`),
    /// or the syntax error.
    pub(crate) fn references(&self, text: &str) -> Result<BTreeSet<String>, String> {
        let vars = match lone_expression(text) {
            Some(expr) => self
                .env
                .compile_expression(expr)
                .map(|e| e.undeclared_variables(true)),
            None => self
                .env
                .template_from_str(text)
                .map(|t| t.undeclared_variables(true)),
        };
        vars.map(|v| v.into_iter().collect())
            .map_err(|e| describe(&e))
    }

    /// Whether `name` is a filter this build has.
    pub(crate) fn knows_filter(&self, name: &str) -> bool {
        self.lacks(
            &format!("none | {name}"),
            minijinja::ErrorKind::UnknownFilter,
        )
    }

    /// Whether `name` is a test this build has.
    pub(crate) fn knows_test(&self, name: &str) -> bool {
        self.lacks(
            &format!("none is {name}"),
            minijinja::ErrorKind::UnknownTest,
        )
    }

    /// Whether `name` is a global function (`range`, `dict`, …).
    pub(crate) fn knows_function(&self, name: &str) -> bool {
        self.env.globals().any(|(global, _)| global == name)
    }

    /// Whether evaluating `probe` fails with anything but `kind` (a
    /// known name may still refuse `none`).
    fn lacks(&self, probe: &str, kind: minijinja::ErrorKind) -> bool {
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if !probe
            .rsplit(' ')
            .next()
            .is_some_and(|n| !n.is_empty() && n.chars().all(valid))
        {
            return false;
        }
        match self.env.compile_expression(probe) {
            Ok(expr) => expr.eval(()).err().is_none_or(|e| e.kind() != kind),
            Err(_) => false,
        }
    }

    /// Checks the syntax of a `when` expression (which may be written with
    /// or without braces) and returns its variables.
    pub(crate) fn condition_references(&self, text: &str) -> Result<BTreeSet<String>, String> {
        let expr = lone_expression(text).unwrap_or(text);
        self.env
            .compile_expression(expr)
            .map(|e| e.undeclared_variables(true).into_iter().collect())
            .map_err(|e| describe(&e))
    }
}

fn contains_template(v: &Value) -> bool {
    match v {
        Value::String(s) => is_template(s),
        Value::Array(items) => items.iter().any(contains_template),
        Value::Object(map) => map.values().any(contains_template),
        _ => false,
    }
}

/// "a number", "a list", … for messages.
#[must_use]
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        let mut tasks = BTreeMap::new();
        tasks.insert(
            "fetch".to_owned(),
            TaskView::new(
                TaskStatus::Succeeded,
                Arc::new(json!({"lines": ["a", "b"], "n": 2})),
            ),
        );
        Context {
            input: json!({"size": 10, "name": "x"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            tasks,
            item: None,
            item_index: None,
            workflow: WorkflowRef {
                id: "run-1".into(),
                name: "etl".into(),
                scheduled_at: Some("2026-12-01T10:00:00Z".into()),
                exit: None,
            },
        }
    }

    #[test]
    fn a_lone_expression_keeps_its_json_type() {
        let e = Evaluator::new();
        assert_eq!(e.render(&json!("{{ input.size }}"), &ctx()), Ok(json!(10)));
        assert_eq!(
            e.render(&json!("{{ tasks.fetch.result.lines }}"), &ctx()),
            Ok(json!(["a", "b"]))
        );
        assert_eq!(
            e.render(&json!(" {{ input.size * 2 }} "), &ctx()),
            Ok(json!(20))
        );
        assert_eq!(
            e.render(&json!("{{ {'a': 1} }}"), &ctx()),
            Ok(json!({"a": 1}))
        );
    }

    #[test]
    fn mixed_text_renders_to_a_string_and_trees_are_walked() {
        let e = Evaluator::new();
        let t = json!({"msg": "size={{ input.size }}", "list": ["{{ workflow.name }}", 3], "plain": "no braces"});
        assert_eq!(
            e.render(&t, &ctx()),
            Ok(json!({"msg": "size=10", "list": ["etl", 3], "plain": "no braces"}))
        );
    }

    #[test]
    fn undefined_names_are_errors_not_empty_strings() {
        let e = Evaluator::new();
        let err = e.render(&json!("{{ input.missing }}"), &ctx()).unwrap_err();
        assert!(err.to_string().contains("input.missing"), "{err}");
        assert!(
            e.render(&json!("x{{ tasks.nope.result }}"), &ctx())
                .is_err()
        );
    }

    #[test]
    fn items_must_be_a_list() {
        let e = Evaluator::new();
        let items = e.items(
            &WithItems::Expression("{{ tasks.fetch.result.lines }}".into()),
            &ctx(),
        );
        assert_eq!(items, Ok(vec![json!("a"), json!("b")]));
        let err = e
            .items(&WithItems::Expression("{{ input.size }}".into()), &ctx())
            .unwrap_err();
        assert!(err.reason.contains("a number"), "{err}");
    }

    #[test]
    fn per_item_rendering_sees_item_and_index() {
        let e = Evaluator::new();
        let template = json!({"v": "{{ item }}-{{ item_index }}", "n": "{{ input.size }}"});
        let out: Result<Vec<Value>, _> = e
            .render_items(&template, &ctx(), vec![json!("a"), json!("b")])
            .collect();
        assert_eq!(
            out,
            Ok(vec![
                json!({"v": "a-0", "n": 10}),
                json!({"v": "b-1", "n": 10})
            ])
        );
    }

    #[test]
    fn conditions_use_truthiness() {
        let e = Evaluator::new();
        assert_eq!(e.condition("{{ input.size > 5 }}", &ctx()), Ok(true));
        assert_eq!(
            e.condition("tasks.fetch.result.lines | length == 0", &ctx()),
            Ok(false)
        );
    }

    #[test]
    fn runaway_loops_run_out_of_fuel() {
        let e = Evaluator::new();
        let t = json!(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
        );
        assert!(e.render(&t, &ctx()).is_err());
    }

    #[test]
    fn a_conditions_values_are_named_with_their_paths() {
        let e = Evaluator::new();
        let values = e.condition_values("{{ input.size > 3 and input.name == 'x' }}", &ctx());
        assert_eq!(
            values,
            vec!["input.name = \"x\"", "input.size = 10"],
            "{values:?}"
        );
    }

    #[test]
    fn a_failed_fan_out_shows_its_error_partial_result_and_items() {
        let e = Evaluator::new();
        let mut c = ctx();
        let states: Arc<[ItemState]> = vec![
            ItemState {
                status: "succeeded".into(),
                error: None,
            },
            ItemState {
                status: "failed".into(),
                error: Some("boom".into()),
            },
            ItemState {
                status: "canceled".into(),
                error: None,
            },
        ]
        .into();
        c.tasks.insert(
            "fan".into(),
            TaskView {
                error: Some("1 of 3 items failed; item 1: boom".into()),
                items: Some(states),
                ..TaskView::new(TaskStatus::Failed, Arc::new(json!([{"v": 1}, null, null])))
            },
        );
        let out = e.render(
            &json!({
                "error": "{{ tasks.fan.error }}",
                "ok": "{{ tasks.fan.result | reject('none') | list }}",
                "statuses": "{{ tasks.fan.items | map(attribute='status') | list }}",
                "first": "{{ tasks.fan.items[0].result.v }}",
                "errors": "{{ tasks.fan.items | selectattr('error') | map(attribute='error') | list }}",
                "n": "{{ tasks.fan.items | length }}",
                "none": "{{ tasks.fetch.error }}",
                "plain_items": "{{ tasks.fetch.items }}",
            }),
            &c,
        );
        assert_eq!(
            out,
            Ok(json!({
                "error": "1 of 3 items failed; item 1: boom",
                "ok": [{"v": 1}],
                "statuses": ["succeeded", "failed", "canceled"],
                "first": 1,
                "errors": ["boom"],
                "n": 3,
                "none": null,
                "plain_items": null,
            }))
        );
        // Only a failed task shows its error (a skipped one's is why it
        // was skipped).
        c.tasks.insert(
            "skipped".into(),
            TaskView {
                error: Some("trigger all_success not met".into()),
                ..TaskView::new(TaskStatus::Skipped, Arc::new(Value::Null))
            },
        );
        assert_eq!(
            e.render(
                &json!("{{ [tasks.skipped.error, tasks.skipped.result] }}"),
                &c
            ),
            Ok(json!([null, null]))
        );
    }

    #[test]
    fn a_partial_render_leaves_what_fails_null_and_says_where() {
        let e = Evaluator::new();
        let (value, failures) = e.render_partial(
            &json!({"ok": "{{ input.size }}", "bad": ["x", "{{ input.nope.deeper }}"]}),
            &ctx(),
        );
        assert_eq!(value, json!({"ok": 10, "bad": ["x", null]}));
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0, "bad[1]");
    }

    #[test]
    fn references_are_dotted_paths() {
        let e = Evaluator::new();
        let refs = e
            .references("{{ tasks.fetch.result.lines | length }} and {{ input.size }}")
            .unwrap_or_default();
        assert!(refs.contains("tasks.fetch.result.lines"), "{refs:?}");
        assert!(refs.contains("input.size"), "{refs:?}");
        assert!(e.references("{{ oops(").is_err());
    }
}
