//! The workflow file as written: serde types read from YAML with
//! serde-saphyr, keeping source positions (`Spanned`) for diagnostics.
//! These raw types accept anything well-formed; `validate` turns them into
//! a [`crate::Workflow`] or a list of problems.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::{Location, Spanned};

/// The top level of a workflow file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkflow {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) input: Option<Spanned<IndexMap<String, Spanned<RawInput>>>>,
    pub(crate) output: Option<Spanned<Tree>>,
    pub(crate) tasks: Option<Spanned<IndexMap<String, Spanned<RawTask>>>>,
    /// At most this many executions of a run in flight at once.
    pub(crate) parallelism: Option<Spanned<i64>>,
    /// Exit handlers: tasks run once every task of `tasks` is terminal,
    /// whatever the run's outcome.
    pub(crate) on_exit: Option<Spanned<IndexMap<String, Spanned<RawTask>>>>,
    /// A concurrency limit shared by the workflow's runs
    /// (`crate::shared_limit`).
    pub(crate) limit: Option<Spanned<RawLimit>>,
}

/// A workflow's `limit:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimit {
    pub(crate) key: Option<Spanned<String>>,
    pub(crate) runs: Option<Spanned<i64>>,
    pub(crate) runs_total: Option<Spanned<i64>>,
    pub(crate) order: Option<Spanned<String>>,
}

/// One task as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTask {
    pub(crate) action: Option<Spanned<String>>,
    pub(crate) description: Option<String>,
    pub(crate) input: Option<Spanned<Tree>>,
    pub(crate) needs: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) with_items: Option<Spanned<Tree>>,
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
    /// A durable wait instead of an action: a duration, a time, a signal
    /// or an approval.
    pub(crate) wait: Option<Spanned<RawWait>>,
    /// One task at a time, across every run, per rendered name.
    pub(crate) mutex: Option<Spanned<String>>,
    /// At most `limit` tasks at a time, across every run, per rendered key.
    pub(crate) semaphore: Option<Spanned<RawSemaphore>>,
}

/// A task's `semaphore` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSemaphore {
    pub(crate) key: Option<Spanned<String>>,
    pub(crate) limit: Option<Spanned<i64>>,
}

/// `wait:` as written: a duration (`wait: 2s`) or a mapping of
/// [`WAIT_FIELDS`].
#[derive(Debug)]
pub(crate) enum RawWait {
    For(String),
    Spec(Box<RawWaitSpec>),
    /// Anything else (a number, a list): reported by validation.
    Other(&'static str),
}

/// The mapping form of `wait:`; each field keeps its place.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWaitSpec {
    pub(crate) until: Option<Spanned<String>>,
    pub(crate) signal: Option<Spanned<String>>,
    pub(crate) approval: Option<Spanned<bool>>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) input: Option<Spanned<IndexMap<String, Spanned<RawInput>>>>,
}

impl<'de> Deserialize<'de> for RawWait {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawWaitVisitor)
    }
}

/// Reads `wait:` once: text is a duration, a mapping the long form (read
/// through the document's own deserializer, so its fields keep places).
struct RawWaitVisitor;

impl<'de> serde::de::Visitor<'de> for RawWaitVisitor {
    type Value = RawWait;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a duration or `{until | signal | approval, timeout, input}`")
    }

    fn visit_str<E>(self, v: &str) -> Result<RawWait, E> {
        Ok(RawWait::For(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawWait, E> {
        Ok(RawWait::For(v))
    }
    fn visit_bool<E>(self, _: bool) -> Result<RawWait, E> {
        Ok(RawWait::Other("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<RawWait, E> {
        Ok(RawWait::Other("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<RawWait, E> {
        Ok(RawWait::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<RawWait, E> {
        Ok(RawWait::Other("a number"))
    }
    fn visit_unit<E>(self) -> Result<RawWait, E> {
        Ok(RawWait::Other("null"))
    }
    fn visit_none<E>(self) -> Result<RawWait, E> {
        Ok(RawWait::Other("null"))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawWait, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(RawWait::Other("a list"))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawWait, A::Error> {
        RawWaitSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            .map(|spec| RawWait::Spec(Box::new(spec)))
    }
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
    /// Whether to try again after a failed attempt: a condition.
    pub(crate) when: Option<Spanned<String>>,
    /// The most time a task's attempts may take, first start to now.
    pub(crate) max_duration: Option<Spanned<String>>,
}

/// A value as written, with the place of every string in it: a problem in
/// a template points at that string (and into it), not at the field that
/// holds the tree.
#[derive(Debug)]
pub(crate) struct Tree {
    pub(crate) value: Value,
    /// The strings below the top, in document order, each where written.
    strings: Vec<(Location, String)>,
}

impl Tree {
    /// Every string of a tree read at `root`, with its place.
    pub(crate) fn strings(root: &Spanned<Tree>) -> Vec<(Location, &str)> {
        match &root.value.value {
            Value::String(s) => vec![(root.referenced, s.as_str())],
            _ => root
                .value
                .strings
                .iter()
                .map(|(l, s)| (*l, s.as_str()))
                .collect(),
        }
    }

    fn leaf(value: Value) -> Self {
        Self {
            value,
            strings: Vec::new(),
        }
    }

    /// Adds a child's strings (the child itself, if it is one).
    fn adopt(&mut self, child: Spanned<Tree>) -> Value {
        match child.value.value {
            Value::String(s) => {
                self.strings.push((child.referenced, s.clone()));
                Value::String(s)
            }
            other => {
                self.strings.extend(child.value.strings);
                other
            }
        }
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> serde::de::Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Tree, E> {
        Ok(Tree::leaf(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
        Ok(Tree::leaf(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Tree, E> {
        Ok(Tree::leaf(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Tree, E> {
        Ok(Tree::leaf(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::leaf(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Tree, E> {
        Ok(Tree::leaf(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::leaf(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Tree, E> {
        Ok(Tree::leaf(Value::Null))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        Tree::deserialize(d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut tree = Tree::leaf(Value::Null);
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Tree>>()? {
            items.push(tree.adopt(item));
        }
        tree.value = Value::Array(items);
        Ok(tree)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut tree = Tree::leaf(Value::Null);
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<Spanned<Tree>>()?;
            let value = tree.adopt(value);
            object.insert(key, value);
        }
        tree.value = Value::Object(object);
        Ok(tree)
    }
}

/// One declared input as written: `name: default` (short form) or
/// `name: {type, default, enum, description, secret}` (long form). A mapping is
/// the long form when it is not empty and every key is one of
/// [`INPUT_FIELDS`]; any other mapping is an object default.
#[derive(Debug)]
pub(crate) enum RawInput {
    Short(Value),
    Long(Box<RawInputSpec>),
}

/// The long form of a declared input; each field keeps its place.
#[derive(Debug, Default)]
pub(crate) struct RawInputSpec {
    pub(crate) kind: Option<Spanned<Value>>,
    pub(crate) default: Option<Spanned<Value>>,
    pub(crate) allowed: Option<Spanned<Value>>,
    pub(crate) description: Option<Spanned<Value>>,
    pub(crate) secret: Option<Spanned<Value>>,
}

/// The fields of an input's long form.
pub(crate) const INPUT_FIELDS: &[&str] = &["type", "default", "enum", "description", "secret"];

impl<'de> Deserialize<'de> for RawInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawInputVisitor)
    }
}

/// Reads an input's value once, deciding short or long form from a
/// mapping's keys, so the long form's fields keep their own places.
struct RawInputVisitor;

impl<'de> serde::de::Visitor<'de> for RawInputVisitor {
    type Value = RawInput;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a default value or `{type, default, enum, description, secret}`")
    }

    fn visit_bool<E>(self, v: bool) -> Result<RawInput, E> {
        Ok(RawInput::Short(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawInput, E> {
        Ok(RawInput::Short(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawInput, E> {
        Ok(RawInput::Short(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawInput, E> {
        Ok(RawInput::Short(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawInput, E> {
        Ok(RawInput::Short(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<RawInput, E> {
        Ok(RawInput::Short(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<RawInput, E> {
        Ok(RawInput::Short(Value::Null))
    }
    fn visit_none<E>(self) -> Result<RawInput, E> {
        Ok(RawInput::Short(Value::Null))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<RawInput, D::Error> {
        Value::deserialize(d).map(RawInput::Short)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawInput, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(RawInput::Short(Value::Array(items)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawInput, A::Error> {
        let mut entries: Vec<(String, Spanned<Value>)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            entries.push((key, map.next_value::<Spanned<Value>>()?));
        }
        let long = !entries.is_empty()
            && entries
                .iter()
                .all(|(k, _)| INPUT_FIELDS.contains(&k.as_str()));
        if !long {
            return Ok(RawInput::Short(Value::Object(
                entries.into_iter().map(|(k, v)| (k, v.value)).collect(),
            )));
        }
        let mut spec = RawInputSpec::default();
        for (key, value) in entries {
            let slot = match key.as_str() {
                "type" => &mut spec.kind,
                "default" => &mut spec.default,
                "enum" => &mut spec.allowed,
                "secret" => &mut spec.secret,
                _ => &mut spec.description,
            };
            *slot = Some(value);
        }
        Ok(RawInput::Long(Box::new(spec)))
    }
}

/// The fields a workflow may have, for "did you mean" hints.
pub(crate) const WORKFLOW_FIELDS: &[&str] = &[
    "name",
    "description",
    "input",
    "output",
    "tasks",
    "parallelism",
    "on_exit",
    "limit",
];
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
    "wait",
    "mutex",
    "semaphore",
];
/// The fields of `wait:`'s mapping form.
pub(crate) const WAIT_FIELDS: &[&str] = &["until", "signal", "approval", "timeout", "input"];
/// The fields of `retry`.
pub(crate) const RETRY_FIELDS: &[&str] = &[
    "attempts",
    "delay",
    "backoff",
    "max_delay",
    "jitter",
    "when",
    "max_duration",
];
/// The fields of a workflow's `limit`.
pub(crate) const LIMIT_FIELDS: &[&str] = &["key", "runs", "runs_total", "order"];

/// The items a `with_items` task runs over.
#[derive(Debug, Clone, PartialEq)]
pub enum WithItems {
    /// An expression that evaluates to a list.
    Expression(String),
    /// A literal list (its elements may contain templates).
    List(Vec<Value>),
}
