//! The checks of declarations read before any expression: each declared
//! input (type, default, `enum`, description), and number fields that
//! are not numbers (a template, a word), said in words instead of the
//! YAML parser's.

use serde_json::Value;
use serde_saphyr::{Location, Spanned};

use super::{Validator, closest};
use crate::diagnostic::Problem;
use crate::expr::{is_template, lone_expression};
use crate::inputs::{Given, InputSpec, InputType};
use crate::spec::RawInput;

impl Validator<'_> {
    /// A number field (`parallelism`, `concurrency`, `retry.attempts`,
    /// `backoff`, `jitter`) whose value is not a number — a template, or a word —
    /// said in words instead of the parser's. These fields are read when
    /// the workflow is validated, before any run or input exists, so a
    /// template cannot fill them; a template with no variables suggests
    /// its value.
    pub(super) fn number_problem(&self, location: &Location) -> Option<Problem> {
        let offset = usize::try_from(location.span().byte_offset()?).ok()?;
        let line_start = self.source.get(..offset)?.rfind('\n').map_or(0, |n| n + 1);
        let before = self.source.get(line_start..offset)?.trim_end();
        let before = before.strip_suffix(':')?.trim_end();
        let key_start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let key = &before[key_start..];
        let whole = matches!(
            key,
            "concurrency" | "attempts" | "parallelism" | "runs" | "runs_total"
        );
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
    /// each checked against the type where it is written. Only a
    /// workflow's inputs (`of_workflow`), not a signal's fields, may be
    /// `secret`, and a secret has no `default` or `enum`: they would be
    /// written in plain text in the workflow.
    pub(super) fn input(
        &mut self,
        name: &str,
        declared: &Spanned<RawInput>,
        of_workflow: bool,
    ) -> InputSpec {
        let raw = match &declared.value {
            RawInput::Short(default) => {
                return InputSpec {
                    kind: InputType::of(default),
                    default: (!default.is_null()).then(|| default.clone()),
                    allowed: None,
                    description: None,
                    secret: false,
                };
            }
            RawInput::Long(raw) => raw,
        };
        let mut spec = InputSpec::untyped(None);
        if let Some(secret) = &raw.secret {
            match &secret.value {
                Value::Bool(flag) => spec.secret = *flag,
                other => {
                    let p = self.at(
                        &secret.referenced,
                        format!(
                            "input `{name}`: `secret` must be true or false, not {}",
                            crate::expr::kind_of(other)
                        ),
                    );
                    self.push(p.hint("e.g. `secret: true`"));
                }
            }
            if spec.secret && !of_workflow {
                let p = self.at(
                    &secret.referenced,
                    format!("field `{name}`: a signal's fields cannot be secret"),
                );
                self.push(
                    p.hint("declare the secret as a workflow input (`input:` at the top) instead"),
                );
                spec.secret = false;
            }
            let written = |field: &Option<Spanned<Value>>| {
                field
                    .as_ref()
                    .filter(|f| !f.value.is_null())
                    .map(|f| f.referenced)
            };
            if spec.secret {
                for (field, at) in [
                    ("default", written(&raw.default)),
                    ("enum", written(&raw.allowed)),
                ] {
                    if let Some(at) = at {
                        let p = self.at(
                            &at,
                            format!("input `{name}`: a secret input cannot have `{field}`: it would be stored in plain text in the workflow"),
                        );
                        self.push(p.hint(format!("remove `{field}`, and give the value when the run is submitted (`--input {name}=…`)")));
                    }
                }
            }
        }
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
}
