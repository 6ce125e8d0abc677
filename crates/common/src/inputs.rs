//! Declared inputs: a type, a default, the allowed values and a
//! description per input, and the one place that decides whether a given
//! value fits a declaration ([`InputSpec::accept`]). `weft submit
//! --input K=V` gives text ([`Given::Text`], parsed by the declared type),
//! an inputs file or an API gives JSON ([`Given::Json`], checked against
//! it); both go through [`crate::Workflow::resolve_given`], so every front
//! end refuses the same values with the same words, before anything is
//! stored.

use std::fmt;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::explain::abbreviate;
use crate::workflow::InputError;

/// Values given for declared inputs (a run's, a signal's payload): each
/// given value parsed or checked by its declaration ([`InputSpec::accept`]),
/// then the defaults of those not given. A name given twice keeps its
/// last value. [`crate::Workflow::resolve_given`] and
/// [`crate::wait::Wait::resolve`] both come here, so a run's inputs and a
/// signal's fields refuse the same values with the same words.
///
/// # Errors
/// [`InputError`] naming every value that does not fit, every missing
/// required input and every undeclared given one; nothing is returned
/// unless all of them are fine.
pub fn resolve(
    specs: &IndexMap<String, InputSpec>,
    given: impl IntoIterator<Item = (String, Given)>,
) -> Result<Map<String, Value>, InputError> {
    let mut given: IndexMap<String, Given> = given.into_iter().collect();
    let undeclared: Vec<String> = given
        .keys()
        .filter(|k| !specs.contains_key(*k))
        .cloned()
        .collect();
    let mut missing = Vec::new();
    let mut refused = Vec::new();
    let mut resolved = Map::new();
    for (name, spec) in specs {
        match (given.shift_remove(name), spec.default()) {
            (Some(value), _) => match spec.accept(value) {
                Ok(value) => {
                    resolved.insert(name.clone(), value);
                }
                Err(refusal) => refused.push((name.clone(), refusal)),
            },
            (None, Some(default)) => {
                resolved.insert(name.clone(), default.clone());
            }
            (None, None) => missing.push(name.clone()),
        }
    }
    if missing.is_empty() && undeclared.is_empty() && refused.is_empty() {
        Ok(resolved)
    } else {
        Err(InputError {
            missing,
            undeclared,
            declared: specs.keys().cloned().collect(),
            refused,
        })
    }
}

/// The type of a declared input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    /// Any text; `--input v=1.10` stays the string `"1.10"`.
    String,
    /// A whole number (`3`; `3.0` is taken as `3`).
    Integer,
    /// Any finite number, whole or not.
    Number,
    /// `true` or `false`, nothing else.
    Boolean,
    /// A JSON list.
    Array,
    /// A JSON object.
    Object,
}

impl InputType {
    /// Every type, in the order the docs list them.
    pub const ALL: [Self; 6] = [
        Self::String,
        Self::Integer,
        Self::Number,
        Self::Boolean,
        Self::Array,
        Self::Object,
    ];

    /// The name written in a workflow (`type: integer`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Array => "array",
            Self::Object => "object",
        }
    }

    /// The type named `name`, if it is one.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// "an integer", "a string", … for messages.
    #[must_use]
    pub fn article(self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Integer => "an integer",
            Self::Number => "a number",
            Self::Boolean => "a boolean (true or false)",
            Self::Array => "an array (a JSON list)",
            Self::Object => "an object (a JSON object)",
        }
    }

    /// The type a short-form default implies (`null`: none, any type).
    #[must_use]
    pub fn of(value: &Value) -> Option<Self> {
        match value {
            Value::Null => None,
            Value::Bool(_) => Some(Self::Boolean),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(Self::Integer),
            Value::Number(_) => Some(Self::Number),
            Value::String(_) => Some(Self::String),
            Value::Array(_) => Some(Self::Array),
            Value::Object(_) => Some(Self::Object),
        }
    }

    /// `value` as this type (an integral `3.0` becomes `3`), or `None` if
    /// it is not of this type.
    #[must_use]
    pub fn fit(self, value: Value) -> Option<Value> {
        match (self, value) {
            (Self::String, v @ Value::String(_))
            | (Self::Boolean, v @ Value::Bool(_))
            | (Self::Array, v @ Value::Array(_))
            | (Self::Object, v @ Value::Object(_)) => Some(v),
            (Self::Number, Value::Number(n)) => Some(Value::Number(n)),
            (Self::Integer, Value::Number(n)) => {
                if n.is_i64() || n.is_u64() {
                    Some(Value::Number(n))
                } else {
                    whole(n.as_f64()?).map(Value::from)
                }
            }
            _ => None,
        }
    }

    /// Command-line text as this type: a string is the text as written;
    /// numbers and booleans are parsed (booleans only from `true` and
    /// `false`); arrays and objects are JSON.
    fn parse_text(self, raw: &str) -> Option<Value> {
        let text = raw.trim();
        match self {
            Self::String => Some(Value::String(raw.to_owned())),
            Self::Boolean => match text {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            Self::Integer => match text.parse::<i64>() {
                Ok(n) => Some(Value::from(n)),
                Err(_) => text.parse::<f64>().ok().and_then(whole).map(Value::from),
            },
            Self::Number => match text.parse::<i64>() {
                Ok(n) => Some(Value::from(n)),
                Err(_) => text
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number),
            },
            Self::Array | Self::Object => serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| self.fit(v)),
        }
    }
}

impl fmt::Display for InputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A float that is a whole number within `i64`, as one.
fn whole(f: f64) -> Option<i64> {
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    (f.is_finite() && f.fract() == 0.0 && f.abs() < i64::MAX as f64).then_some(f as i64)
}

/// Whether two allowed/given values are the same (numbers by value, so
/// `1` and `1.0` are).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A value given for an input, as the front end received it.
#[derive(Debug, Clone, PartialEq)]
pub enum Given {
    /// Text from the command line (`--input K=V`), parsed by the type.
    Text(String),
    /// A JSON value (an inputs file, an API body), checked against it.
    Json(Value),
}

/// One declared input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub(crate) kind: Option<InputType>,
    pub(crate) default: Option<Value>,
    pub(crate) allowed: Option<Vec<Value>>,
    pub(crate) description: Option<String>,
    /// Declared `secret: true`: stored sealed, shown as `"***"` (see
    /// [`crate::secret`]).
    pub(crate) secret: bool,
}

impl InputSpec {
    /// An input of any type with this default (`None`: required).
    #[must_use]
    pub fn untyped(default: Option<Value>) -> Self {
        Self {
            kind: None,
            default,
            allowed: None,
            description: None,
            secret: false,
        }
    }

    /// Its type: declared, or implied by the default or the allowed
    /// values (`None`: any).
    #[must_use]
    pub fn kind(&self) -> Option<InputType> {
        self.kind
    }

    /// Its default (`None`: the input is required).
    #[must_use]
    pub fn default(&self) -> Option<&Value> {
        self.default.as_ref()
    }

    /// The values it may take (`enum:`), if restricted.
    #[must_use]
    pub fn allowed(&self) -> Option<&[Value]> {
        self.allowed.as_deref()
    }

    /// Its description.
    #[must_use]
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Whether it is secret (`secret: true`): its value is stored sealed
    /// and shown as `"***"`.
    #[must_use]
    pub fn secret(&self) -> bool {
        self.secret
    }

    /// Whether a run must be given it.
    #[must_use]
    pub fn required(&self) -> bool {
        self.default.is_none()
    }

    /// The value `given` stands for, if it fits this declaration.
    ///
    /// Text is parsed by the type (untyped: as JSON when it parses, else
    /// as the text itself); JSON must already be of the type. Then it must
    /// be one of the allowed values, if any.
    ///
    /// # Errors
    /// [`Refusal`] saying what was expected and what was given.
    pub fn accept(&self, given: Given) -> Result<Value, Refusal> {
        let shown = match &given {
            Given::Text(t) => format!("`{}`", crate::abbrev::abbreviate(t, 60)),
            Given::Json(v) => format!("{} {}", crate::expr::kind_of(v), abbreviate(v, 60)),
        };
        let value = match (self.kind, given) {
            (None, Given::Text(t)) => serde_json::from_str(&t).unwrap_or(Value::String(t)),
            (None, Given::Json(v)) => v,
            (Some(kind), Given::Text(t)) => kind.parse_text(&t).ok_or_else(|| Refusal {
                expected: kind.article().to_owned(),
                given: shown.clone(),
            })?,
            (Some(kind), Given::Json(v)) => kind.fit(v).ok_or_else(|| Refusal {
                expected: kind.article().to_owned(),
                given: shown.clone(),
            })?,
        };
        // An allowed value is taken as written in the workflow (`1.0`
        // given for an allowed `1` is `1`).
        match &self.allowed {
            Some(allowed) => allowed
                .iter()
                .find(|a| same(a, &value))
                .cloned()
                .ok_or_else(|| Refusal {
                    expected: format!("one of {}", list(allowed)),
                    given: shown,
                }),
            None => Ok(value),
        }
    }
}

/// `a, b or c`, each value as JSON.
pub(crate) fn list(values: &[Value]) -> String {
    let shown: Vec<String> = values.iter().map(|v| abbreviate(v, 40)).collect();
    match shown.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Why a given value does not fit its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the input takes: "an integer", "one of \"dev\" or \"prod\"".
    pub expected: String,
    /// What was given, abbreviated.
    pub given: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn typed(kind: InputType) -> InputSpec {
        InputSpec {
            kind: Some(kind),
            ..InputSpec::untyped(None)
        }
    }

    fn text(spec: &InputSpec, raw: &str) -> Result<Value, Refusal> {
        spec.accept(Given::Text(raw.to_owned()))
    }

    #[test]
    fn text_is_parsed_by_the_declared_type() {
        assert_eq!(text(&typed(InputType::String), "1.10"), Ok(json!("1.10")));
        assert_eq!(text(&typed(InputType::String), "true"), Ok(json!("true")));
        assert_eq!(text(&typed(InputType::Integer), "42"), Ok(json!(42)));
        assert_eq!(text(&typed(InputType::Integer), "-7"), Ok(json!(-7)));
        assert_eq!(text(&typed(InputType::Integer), "3.0"), Ok(json!(3)));
        assert_eq!(text(&typed(InputType::Number), "1.10"), Ok(json!(1.1)));
        assert_eq!(text(&typed(InputType::Number), "5"), Ok(json!(5)));
        assert_eq!(text(&typed(InputType::Boolean), "false"), Ok(json!(false)));
        assert_eq!(
            text(&typed(InputType::Array), "[1, \"a\"]"),
            Ok(json!([1, "a"]))
        );
        assert_eq!(
            text(&typed(InputType::Object), "{\"a\": 1}"),
            Ok(json!({"a": 1}))
        );
    }

    #[test]
    fn text_of_the_wrong_type_is_refused_naming_the_type_and_the_text() {
        for (kind, raw) in [
            (InputType::Integer, "abc"),
            (InputType::Integer, "2.5"),
            (InputType::Integer, ""),
            (InputType::Number, "NaN"),
            (InputType::Number, "inf"),
            (InputType::Number, "1,5"),
            (InputType::Boolean, "yes"),
            (InputType::Boolean, "1"),
            (InputType::Boolean, "True"),
            (InputType::Array, "{\"a\": 1}"),
            (InputType::Array, "a,b"),
            (InputType::Object, "[1]"),
        ] {
            let refusal = text(&typed(kind), raw).expect_err(raw);
            assert_eq!(refusal.expected, kind.article(), "{raw}");
            assert!(refusal.given.contains(raw), "{refusal:?}");
        }
    }

    #[test]
    fn json_must_already_be_of_the_type() {
        let int = typed(InputType::Integer);
        assert_eq!(int.accept(Given::Json(json!(4))), Ok(json!(4)));
        assert_eq!(int.accept(Given::Json(json!(4.0))), Ok(json!(4)));
        assert!(int.accept(Given::Json(json!("4"))).is_err());
        assert!(int.accept(Given::Json(json!(4.5))).is_err());
        assert!(
            typed(InputType::Boolean)
                .accept(Given::Json(json!("true")))
                .is_err()
        );
        assert!(
            typed(InputType::String)
                .accept(Given::Json(json!(1)))
                .is_err()
        );
        assert!(
            typed(InputType::Number)
                .accept(Given::Json(json!(null)))
                .is_err()
        );
        let refusal = typed(InputType::Array)
            .accept(Given::Json(json!({"a": 1})))
            .unwrap_err();
        assert!(refusal.given.contains("an object"), "{refusal:?}");
    }

    #[test]
    fn untyped_inputs_read_text_as_json_first() {
        let any = InputSpec::untyped(None);
        assert_eq!(text(&any, "10"), Ok(json!(10)));
        assert_eq!(text(&any, "hello"), Ok(json!("hello")));
        assert_eq!(any.accept(Given::Json(json!([1]))), Ok(json!([1])));
    }

    #[test]
    fn values_outside_enum_are_refused_listing_the_allowed_ones() {
        let env = InputSpec {
            kind: Some(InputType::String),
            allowed: Some(vec![json!("dev"), json!("prod")]),
            ..InputSpec::untyped(None)
        };
        assert_eq!(text(&env, "prod"), Ok(json!("prod")));
        let refusal = text(&env, "qa").unwrap_err();
        assert_eq!(refusal.expected, "one of \"dev\" or \"prod\"");
        let level = InputSpec {
            kind: Some(InputType::Number),
            allowed: Some(vec![json!(1), json!(2.5)]),
            ..InputSpec::untyped(None)
        };
        assert_eq!(text(&level, "1.0"), Ok(json!(1)));
        assert_eq!(level.accept(Given::Json(json!(2.5))), Ok(json!(2.5)));
        assert!(text(&level, "3").is_err());
    }

    #[test]
    fn a_short_form_default_implies_the_type() {
        assert_eq!(InputType::of(&json!(10)), Some(InputType::Integer));
        assert_eq!(InputType::of(&json!(1.5)), Some(InputType::Number));
        assert_eq!(InputType::of(&json!("x")), Some(InputType::String));
        assert_eq!(InputType::of(&json!(false)), Some(InputType::Boolean));
        assert_eq!(InputType::of(&json!([])), Some(InputType::Array));
        assert_eq!(InputType::of(&json!({})), Some(InputType::Object));
        assert_eq!(InputType::of(&json!(null)), None);
    }
}
