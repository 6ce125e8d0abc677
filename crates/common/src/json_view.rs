//! JSON values as expressions see them, converted on access.
//!
//! An expression's context holds tasks' results, and a fan-out's result
//! holds every item's result: converting it whole into minijinja's values
//! for each evaluation copies it (a 100,000-item fan-out of 1 KiB results
//! is ~100 MB each time) although `{{ tasks.fan.result | length }}` reads
//! nothing but its length. A [`view`] shares the document instead: lists
//! and objects are minijinja objects that point into it, and only the
//! scalars an expression actually reads are converted.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value as Jinja};
use serde_json::Value;

use crate::expr::ItemState;

/// The value of `document` as expressions see it.
pub(crate) fn view(document: Arc<Value>) -> Jinja {
    node(&document, Vec::new())
}

/// One step down a document.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// A list or an object inside a shared document: the document and the
/// path to it.
#[derive(Debug)]
struct Node {
    document: Arc<Value>,
    path: Vec<Step>,
}

/// `null`, for a path that leads nowhere (it cannot: paths are made by
/// walking the document, which never changes).
static NULL: Value = Value::Null;

impl Node {
    fn value(&self) -> &Value {
        let mut value = &*self.document;
        for step in &self.path {
            value = match (step, value) {
                (Step::Key(key), Value::Object(map)) => map.get(key).unwrap_or(&NULL),
                (Step::Index(i), Value::Array(items)) => items.get(*i).unwrap_or(&NULL),
                _ => &NULL,
            };
        }
        value
    }

    fn child(&self, step: Step) -> Jinja {
        let mut path = self.path.clone();
        path.push(step);
        node(&self.document, path)
    }
}

/// The minijinja value of the node at `path` in `document`: scalars
/// converted, lists and objects shared.
fn node(document: &Arc<Value>, path: Vec<Step>) -> Jinja {
    let shared = Node {
        document: Arc::clone(document),
        path,
    };
    match shared.value() {
        Value::Null => Jinja::from(()),
        Value::Bool(b) => Jinja::from(*b),
        Value::Number(n) => n
            .as_i64()
            .map(Jinja::from)
            .or_else(|| n.as_u64().map(Jinja::from))
            .unwrap_or_else(|| Jinja::from(n.as_f64().unwrap_or(f64::NAN))),
        Value::String(s) => Jinja::from(s.as_str()),
        Value::Array(_) | Value::Object(_) => Jinja::from_object(shared),
    }
}

impl Object for Node {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.value() {
            Value::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &Jinja) -> Option<Jinja> {
        match self.value() {
            Value::Array(items) => {
                let i = usize::try_from(key.as_i64()?).ok()?;
                (i < items.len()).then(|| self.child(Step::Index(i)))
            }
            Value::Object(map) => {
                let key = key.as_str()?;
                map.contains_key(key)
                    .then(|| self.child(Step::Key(key.to_owned())))
            }
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.value() {
            Value::Array(items) => Enumerator::Seq(items.len()),
            Value::Object(map) => {
                Enumerator::Values(map.keys().map(|k| Jinja::from(k.as_str())).collect())
            }
            _ => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        match self.value() {
            Value::Array(items) => Some(items.len()),
            Value::Object(map) => Some(map.len()),
            _ => Some(0),
        }
    }
}

/// A fan-out's items as expressions see them (`tasks.X.items`): a list
/// of `{status, result, error}` in item order, each `result` read in place
/// from the task's shared result (its entry at the item's index), so the
/// items add one small record per item, never a copy of the results.
pub(crate) fn items(states: Arc<[ItemState]>, result: Arc<Value>) -> Jinja {
    Jinja::from_object(Items { states, result })
}

#[derive(Debug)]
struct Items {
    states: Arc<[ItemState]>,
    result: Arc<Value>,
}

impl Object for Items {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Jinja) -> Option<Jinja> {
        let i = usize::try_from(key.as_i64()?).ok()?;
        let state = self.states.get(i)?;
        Some(minijinja::context! {
            status => state.status.as_str(),
            result => node(&self.result, vec![Step::Index(i)]),
            error => state.error.as_deref(),
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.states.len())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.states.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::value::Serde;
    use serde_json::json;

    /// Renders `template` with `doc` shared by a view and converted whole:
    /// both must read the same.
    fn both(template: &str, document: &Value) -> (String, String) {
        let env = minijinja::Environment::new();
        let render = |doc: Jinja| {
            env.render_str(template, minijinja::context! { doc => doc })
                .unwrap_or_else(|e| format!("error: {}", e.kind()))
        };
        (
            render(view(Arc::new(document.clone()))),
            render(Jinja::from(Serde(document))),
        )
    }

    #[test]
    fn a_view_reads_like_the_converted_document() {
        let doc =
            json!({"xs": [1, 2, 3], "name": "n", "nested": {"ok": true, "f": 1.5}, "none": null});
        for template in [
            "{{ doc.xs | length }}",
            "{{ doc.xs | sum }}",
            "{{ doc.xs[1] }}",
            "{{ doc.xs[-1] }}",
            "{{ doc.nested.ok }}-{{ doc.nested.f }}",
            "{{ doc['name'] }}",
            "{{ doc.none is none }}",
            "{{ doc.xs | tojson }}",
            "{{ doc | tojson }}",
            "{{ 2 in doc.xs }}",
            "{{ 'name' in doc }}",
            "{{ doc.xs == [1, 2, 3] }}",
            "{% for x in doc.xs %}{{ x }}{% endfor %}",
            "{% for k in doc | sort %}{{ k }},{% endfor %}",
            "{{ doc | length }}",
            "{{ doc.nope is undefined }}",
            "{{ doc.xs[5] is undefined }}",
            "{{ doc.xs | map('string') | join(',') }}",
        ] {
            let (shared, converted) = both(template, &doc);
            assert_eq!(shared, converted, "{template}");
        }
    }
}
