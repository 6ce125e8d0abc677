//! Secret inputs (`secret: true`): what validation accepts, where it warns
//! (a secret flowing into a result or the output) and what it refuses, and
//! how a run's input is sealed for storage.

use serde_json::{Map, json};
use weft_common::secret::{Keyring, SecretError, open_input, sealed_token};
use weft_common::{Given, Workflow};

mod support;
use support::{has, ok, problems};

fn warnings(w: &Workflow) -> Vec<String> {
    w.warnings()
        .map(|d| {
            d.problems()
                .iter()
                .map(|p| format!("{}: {}", p.line, p.message))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_secret_input_is_declared_in_the_long_form() {
    let w = ok(
        "name: x\ninput:\n  token: { type: string, secret: true }\n  user: { type: string }\ntasks:\n  login: { action: shell, input: { command: [login, \"{{ input.user }}\", \"{{ input.token }}\"] } }\n  other: { action: noop, input: { who: \"{{ input.user }}\" } }\n",
    );
    assert!(w.has_secrets());
    assert!(w.input_specs()["token"].secret());
    assert!(!w.input_specs()["user"].secret());
    assert!(w.reads_secret("login"));
    assert!(!w.reads_secret("other"));
    assert!(warnings(&w).is_empty(), "{:?}", warnings(&w));
    // Reading the whole input reads the secrets too.
    let w = ok(
        "name: x\ninput:\n  token: { secret: true }\ntasks:\n  all: { action: noop, input: { everything: \"{{ input }}\" } }\n",
    );
    assert!(w.reads_secret("all"));
}

#[test]
fn a_secret_flowing_into_a_result_or_the_output_is_warned_about() {
    let w = ok(
        "name: x\ninput:\n  token: { type: string, secret: true }\ntasks:\n  show: { action: echo, input: { t: \"{{ input.token }}\" } }\noutput: { leaked: \"{{ input.token }}\" }\n",
    );
    let found = warnings(&w);
    assert!(
        found.iter().any(|w| w.starts_with("5: ")
            && w.contains("task `show`")
            && w.contains("secret input `token`")
            && w.contains("`echo` returns its input")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|w| w.starts_with("6: ") && w.contains("`output` reads secret input `token`")),
        "{found:#?}"
    );
    assert!(w.warnings().unwrap().is_warning());
}

#[test]
fn a_secret_with_a_default_or_enum_or_in_a_key_is_refused() {
    let p = problems(
        "name: x\ninput:\n  token: { secret: true, default: abc }\ntasks:\n  a: { action: noop }\n",
    );
    has(
        &p,
        3,
        &["input `token`", "cannot have `default`", "plain text"],
    );
    let p = problems(
        "name: x\ninput:\n  token: { secret: true, enum: [a, b] }\ntasks:\n  a: { action: noop }\n",
    );
    has(&p, 3, &["input `token`", "cannot have `enum`"]);
    let p = problems(
        "name: x\ninput:\n  token: { secret: yes please }\ntasks:\n  a: { action: noop }\n",
    );
    has(&p, 3, &["`secret` must be true or false"]);
    let p = problems(
        "name: x\ninput:\n  db: { secret: true }\ntasks:\n  a:\n    action: noop\n    mutex: \"m-{{ input.db }}\"\n",
    );
    has(
        &p,
        7,
        &["task `a`", "`mutex` cannot read secret input `db`"],
    );
    let p = problems(
        "name: x\ninput:\n  db: { secret: true }\nlimit:\n  key: \"{{ input.db }}\"\n  runs: 1\ntasks:\n  a: { action: noop }\n",
    );
    has(&p, 5, &["`limit.key` cannot read secret input `db`"]);
    let p = problems(
        "name: x\ntasks:\n  pay:\n    wait:\n      signal: paid\n      input: { card: { type: string, secret: true } }\n",
    );
    has(
        &p,
        6,
        &["field `card`", "a signal's fields cannot be secret"],
    );
    let p = problems(
        "name: x\ninput:\n  t: { secret: true }\ntasks:\n  w: { wait: { until: \"{{ input.t }}\" } }\n",
    );
    has(&p, 5, &["`wait.until` cannot read secret input `t`"]);
}

#[test]
fn submitting_seals_secret_inputs_and_needs_a_key() {
    let w = ok(
        "name: x\ninput:\n  token: { type: string, secret: true }\n  user: admin\ntasks:\n  a: { action: noop }\n",
    );
    let input = w
        .resolve_given([("token".to_owned(), Given::Text("s3cret-value".into()))])
        .unwrap();
    assert_eq!(
        w.seal_input(None, input.clone()),
        Err(SecretError::MissingKey)
    );
    let ring = Keyring::from_settings(Some(&Keyring::generate_key()), None)
        .unwrap()
        .unwrap();
    let sealed = w.seal_input(Some(&ring), input).unwrap();
    assert_eq!(sealed["user"], json!("admin"));
    assert!(sealed_token(&sealed["token"]).is_some());
    assert!(
        !serde_json::to_string(&sealed)
            .unwrap()
            .contains("s3cret-value")
    );
    let (opened, secrets) = open_input(Some(&ring), &sealed).unwrap();
    assert_eq!(opened["token"], json!("s3cret-value"));
    assert_eq!(secrets.texts(), ["s3cret-value"]);
    // A workflow without secrets needs no key.
    let plain = ok("name: x\ninput: { user: admin }\ntasks:\n  a: { action: noop }\n");
    let input: Map<_, _> = plain.resolve_given([]).unwrap();
    assert_eq!(plain.seal_input(None, input.clone()), Ok(input));
}
