//! Every validation rule: a fixture that must fail, naming the offending
//! names and the line, next to one that passes. Plus: the examples in
//! `workflows/` validate, and no input makes the parser panic.

use proptest::prelude::*;
use serde_json::json;
use weft_common::{Given, InputType, Workflow};

mod support;
use support::{has, ok, problems};

#[test]
fn yaml_syntax_errors_have_a_location() {
    let p = problems("name: x\ntasks:\n  a: [unclosed\n");
    assert_eq!(p.len(), 1);
    assert!(p[0].starts_with("3: ") || p[0].starts_with("4: "), "{p:?}");
}

#[test]
fn unknown_fields_suggest_the_near_miss() {
    has(
        &problems("name: x\ntasks:\n  a:\n    action: echo\n    neeeds: [b]\n"),
        5,
        &["neeeds", "did you mean `needs`"],
    );
    has(
        &problems("name: x\ntaskz: {}\n"),
        2,
        &["taskz", "did you mean `tasks`"],
    );
    has(
        &problems("name: x\ntasks:\n  a:\n    action: echo\n    retry: { atempts: 2 }\n"),
        5,
        &["atempts", "`attempts`"],
    );
}

#[test]
fn a_task_needs_an_action() {
    has(
        &problems("name: x\ntasks:\n  a:\n    input: {}\n"),
        4,
        &["task `a` has no `action`"],
    );
    ok("name: x\ntasks:\n  a:\n    action: noop\n");
}

#[test]
fn durations_must_have_units() {
    has(
        &problems("name: x\ntasks:\n  a:\n    action: noop\n    timeout: 30\n"),
        5,
        &["`timeout`", "no unit"],
    );
    has(
        &problems("name: x\ntasks:\n  a:\n    action: noop\n    retry: { delay: soon }\n"),
        5,
        &["retry.delay"],
    );
    ok("name: x\ntasks:\n  a:\n    action: noop\n    timeout: 1m30s\n");
}

#[test]
fn concurrency_must_be_positive_and_needs_items() {
    let yaml = "name: x\ntasks:\n  a:\n    action: noop\n    with_items: [1]\n    concurrency: 0\n";
    has(
        &problems(yaml),
        6,
        &["`concurrency` must be at least 1, not 0"],
    );
    has(
        &problems("name: x\ntasks:\n  a:\n    action: noop\n    concurrency: 2\n"),
        5,
        &["no `with_items`"],
    );
    ok("name: x\ntasks:\n  a:\n    action: noop\n    with_items: [1]\n    concurrency: 1\n");
}

#[test]
fn unknown_triggers_suggest_the_closest() {
    has(
        &problems("name: x\ntasks:\n  a:\n    action: noop\n    trigger: one_fail\n"),
        5,
        &["one_fail", "`one_failed`"],
    );
    for rule in [
        "all_success",
        "all_done",
        "one_failed",
        "all_failed",
        "one_success",
        "none_failed",
    ] {
        ok(&format!(
            "name: x\ntasks:\n  a:\n    action: noop\n    trigger: {rule}\n"
        ));
    }
}

#[test]
fn duplicate_task_names_are_refused() {
    let p = problems("name: x\ntasks:\n  a:\n    action: noop\n  a:\n    action: echo\n");
    has(&p, 5, &["duplicate"]);
}

#[test]
fn needs_must_name_tasks() {
    let yaml = "name: x\ntasks:\n  fetch:\n    action: noop\n  b:\n    needs: [fetchh]\n    action: noop\n";
    has(&problems(yaml), 6, &["`fetchh`", "did you mean `fetch`"]);
}

#[test]
fn cycles_name_every_task_on_them() {
    let yaml = "name: x\ntasks:\n  a: { action: noop, needs: [c] }\n  b: { action: noop, needs: [a] }\n  c: { action: noop, needs: [b] }\n  d: { action: noop, needs: [d] }\n";
    let p = problems(yaml);
    has(&p, 3, &["cycle", "a → b → c"]);
    has(&p, 6, &["cycle", "d"]);
}

#[test]
fn expression_syntax_errors_are_reported() {
    has(
        &problems("name: x\ntasks:\n  a:\n    action: echo\n    input: { v: \"{{ 1 + }}\" }\n"),
        5,
        &["syntax error"],
    );
    has(
        &problems("name: x\ntasks:\n  a:\n    action: echo\n    when: \"{{ (1 }}\"\n"),
        5,
        &["`when`", "syntax error"],
    );
}

#[test]
fn inputs_must_be_declared() {
    let yaml = "name: x\ninput: { size: 3 }\ntasks:\n  a:\n    action: echo\n    input: { v: \"{{ input.sise }}\" }\n";
    has(
        &problems(yaml),
        6,
        &["`input.sise`", "did you mean `input.size`"],
    );
    ok(
        "name: x\ninput: { size: 3 }\ntasks:\n  a:\n    action: echo\n    input: { v: \"{{ input.size }}\" }\n",
    );
}

#[test]
fn task_references_must_be_ancestors() {
    let base =
        "name: x\ntasks:\n  a: { action: echo }\n  b: { action: echo }\n  c:\n    needs: [a]\n";
    has(
        &problems(&format!(
            "{base}    action: echo\n    input: {{ v: \"{{{{ tasks.b.result }}}}\" }}\n"
        )),
        8,
        &["`tasks.b`", "not one of its ancestors", "needs"],
    );
    has(
        &problems(&format!(
            "{base}    action: echo\n    input: {{ v: \"{{{{ tasks.zz.result }}}}\" }}\n"
        )),
        8,
        &["`tasks.zz`", "not a task"],
    );
    has(
        &problems(&format!(
            "{base}    action: echo\n    input: {{ v: \"{{{{ tasks.a.output }}}}\" }}\n"
        )),
        8,
        &["tasks.a.output"],
    );
    // Indirect ancestors count; the workflow output may use any task.
    ok(
        "name: x\noutput: { b: \"{{ tasks.b.result }}\" }\ntasks:\n  a: { action: echo }\n  b: { action: echo, needs: [a] }\n  c: { action: echo, needs: [b], input: { v: \"{{ tasks.a.status }}\" } }\n",
    );
}

#[test]
fn item_only_exists_in_with_items_tasks() {
    has(
        &problems("name: x\ntasks:\n  a:\n    action: echo\n    input: { v: \"{{ item }}\" }\n"),
        5,
        &["`item`", "with_items"],
    );
    has(
        &problems(
            "name: x\ntasks:\n  a:\n    action: echo\n    with_items: \"{{ item_index }}\"\n",
        ),
        5,
        &["`item_index`"],
    );
    ok(
        "name: x\ntasks:\n  a:\n    action: echo\n    with_items: [1, 2]\n    input: { v: \"{{ item }}-{{ item_index }}\" }\n",
    );
}

#[test]
fn unknown_names_in_expressions_are_errors() {
    has(
        &problems(
            "name: x\ntasks:\n  a:\n    action: echo\n    input: { v: \"{{ inputs.x }}\" }\n",
        ),
        5,
        &["`inputs`", "did you mean `input`"],
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = "name: x\ntasks:\n  a:\n    action: echo\n    trigger: nope\n  b:\n    needs: [zz]\n    action: echo\n    timeout: never\n";
    assert!(problems(yaml).len() >= 3);
}

#[test]
fn the_validated_workflow_exposes_the_dag_in_order() {
    let w = ok(
        "name: x\ntasks:\n  d: { action: noop, needs: [b, c] }\n  b: { action: noop, needs: [a] }\n  c: { action: noop, needs: [a] }\n  a: { action: noop }\n",
    );
    let order: Vec<&str> = w.tasks().map(|t| t.name()).collect();
    assert_eq!(order, ["a", "b", "c", "d"]);
    assert_eq!(w.dag().roots(), ["a"]);
    assert_eq!(w.dag().successors("a"), ["b", "c"]);
}

#[test]
fn inputs_resolve_with_defaults_and_name_what_is_wrong() {
    let w = ok("name: x\ninput: { size: 3, source: null }\ntasks:\n  a: { action: noop }\n");
    let given = serde_json::json!({"source": "s3"})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let resolved = w.resolve_input(given).unwrap();
    assert_eq!(
        serde_json::Value::Object(resolved),
        serde_json::json!({"size": 3, "source": "s3"})
    );
    let err = w
        .resolve_input(
            serde_json::json!({"extra": 1})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("source") && text.contains("extra"), "{text}");
}

#[test]
fn every_example_workflow_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            Workflow::parse(&text, &path.display().to_string()).unwrap_or_else(|d| panic!("{d}"));
            assert!(
                text.starts_with("# expect: "),
                "{} must start with `# expect:`",
                path.display()
            );
            count += 1;
        }
    }
    assert!(count >= 5, "only {count} examples");
}

proptest! {
    // 2,000 cases by default; `PROPTEST_CASES=200000` for a long run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    /// Arbitrary text never panics the parser.
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = Workflow::parse(&text, "fuzz.yaml");
    }

    /// Workflow-shaped YAML with random names, needs and expressions never
    /// panics, and when it is accepted its order respects every need.
    #[test]
    fn generated_workflows_never_panic(
        tasks in proptest::collection::vec(
            ("[a-e]", proptest::collection::vec("[a-f]", 0..3), prop_oneof![
                Just(""), Just("{{ tasks.a.result }}"), Just("{{ item }}"), Just("{{ input.x }}"), Just("{{ 1 + }}"),
                Just("{{ input.x | lenght }}"), Just("{{ input.x is od }}"), Just("{{ input.x.split(',') }}"),
                Just("{{ rnage(3) }}"), Just("{{ tasks.a.status == 'succeded' }}"), Just("{{ tasks.b.status in ['failed', 'x'] }}"),
                Just("{{ input.y-z }}"), Just("{% filter uper %}a{% endfilter %}"), Just("{{ 'a|b(' ~ input.x }}"), Just("{{ ((( }}"),
                Just("{{ tasks.a.error }}"), Just("{{ tasks.b.items | map(attribute='status') | list }}"), Just("{{ tasks.c.items[0].error }}"),
                Just("{{ tasks.a.errors }}"), Just("{{ exit_code }}"),
            ]),
            1..6,
        ),
        trigger in prop_oneof![Just("all_success"), Just("one_failed"), Just("bogus")],
        declared in prop_oneof![
            Just("x: 1"), Just("x: { type: integer, default: 1 }"), Just("x: { type: int, default: a }"),
            Just("x: { enum: [1, b], default: 2 }"), Just("x: { type: array }"), Just("x: { default: null, description: [] }"),
        ],
        extra in prop_oneof![
            Just(""), Just("    retry: { attempts: \"{{ 3 }}\" }\n"), Just("    timeout: \"{{ input.x }}\"\n"),
            Just("    with_items: [1]\n    concurrency: \"{{ x }}\"\n"),
            Just("    retry: { attempts: 3, when: \"{{ exit_code == 75 or timed_out }}\" }\n"),
            Just("    retry: { when: \"{{ tasks.a.result }}\", max_duration: 1m }\n"),
            Just("    retry: { when: \"attempt < 2 and 'x' in error\" }\n"),
            Just("    retry: { max_duration: \"{{ 3 }}\", when: \"{{ exitcode }}\" }\n"),
        ],
        action in prop_oneof![Just("echo"), Just("shell")],
        limit in prop_oneof![
            Just(""), Just("parallelism: 2\n"), Just("parallelism: 0\n"), Just("parallelism: \"{{ 2 }}\"\n"),
            Just("parallelism: 1.5\n"),
        ],
    ) {
        let mut yaml = format!("name: gen\n{limit}input: {{ {declared}, y-z: 2 }}\ntasks:\n");
        for (name, needs, expr) in &tasks {
            yaml.push_str(&format!("  {name}:\n    action: {action}\n    needs: [{}]\n    trigger: {trigger}\n    input: {{ v: \"{expr}\", script: \"{expr}\" }}\n{extra}", needs.join(", ")));
        }
        let parsed = Workflow::parse(&yaml, "gen.yaml");
        // Every problem points into the file.
        if let Err(d) = &parsed {
            for p in d.problems() {
                prop_assert!(p.line >= 1 && p.line <= yaml.lines().count() + 1, "{p:?}");
                let (offset, len) = p.span.unwrap_or_default();
                prop_assert!(offset + len <= yaml.len(), "{p:?}");
            }
        }
        if let Ok(w) = parsed {
            let order: Vec<&str> = w.tasks().map(|t| t.name()).collect();
            for t in w.tasks() {
                for need in t.needs() {
                    let (a, b) = (order.iter().position(|n| n == need), order.iter().position(|n| *n == t.name()));
                    prop_assert!(a < b);
                }
            }
        }
    }

    /// Bundles of workflow files calling each other at random — themselves
    /// included, files that do not exist, inputs that do or do not fit —
    /// never panic; when accepted, every call links to a file that exists
    /// and every literal input it gives is declared by the child, and
    /// every input the child requires is given.
    #[test]
    fn generated_bundles_never_panic_and_link_only_what_fits(
        files in proptest::collection::vec(
            (
                proptest::collection::vec(("[a-c]", prop_oneof![Just("null"), Just("1")]), 0..3),
                proptest::collection::vec(("[0-4]", proptest::collection::vec("[a-d]", 0..3), 1u32..4), 0..3),
            ),
            1..4,
        ),
    ) {
        use std::collections::HashMap;
        use std::path::{Path, PathBuf};
        let mut sources: HashMap<PathBuf, String> = HashMap::new();
        for (i, (inputs, calls)) in files.iter().enumerate() {
            let mut yaml = format!("name: f{i}\n");
            if !inputs.is_empty() {
                yaml.push_str("input:\n");
                for (name, default) in inputs {
                    yaml.push_str(&format!("  {name}: {default}\n"));
                }
            }
            yaml.push_str("tasks:\n  work:\n    action: noop\n");
            for (j, (target, given, depth)) in calls.iter().enumerate() {
                let input: Vec<String> = given.iter().map(|k| format!("{k}: 1")).collect();
                yaml.push_str(&format!(
                    "  call{j}:\n    workflow: f{target}.yaml\n    max_depth: {depth}\n    input: {{ {} }}\n",
                    input.join(", ")
                ));
            }
            sources.insert(PathBuf::from(format!("f{i}.yaml")), yaml);
        }
        let root = PathBuf::from("f0.yaml");
        let read = |path: &Path| {
            let key = PathBuf::from(path.file_name().unwrap_or_default());
            sources.get(&key).map(|s| (key, s.clone())).ok_or_else(|| "no such file".to_owned())
        };
        if let Ok(bundle) = weft_common::Bundle::load(root.clone(), "f0.yaml", sources[&root].clone(), read) {
            for file in bundle.files() {
                for (task, child) in &file.calls {
                    let child = &bundle.files()[*child].workflow;
                    let task = file.workflow.task(task).expect("a linked task exists");
                    let given = task.input().as_object().expect("a literal map");
                    for key in given.keys() {
                        prop_assert!(child.inputs().contains_key(key));
                    }
                    for (name, default) in child.inputs() {
                        prop_assert!(default.is_some() || given.contains_key(name));
                    }
                }
            }
        }
    }
}

#[test]
fn item_is_not_visible_in_when_which_is_decided_once_per_task() {
    let yaml = "name: x\ntasks:\n  a:\n    action: echo\n    with_items: [1, 2]\n    when: \"{{ item > 1 }}\"\n";
    has(&problems(yaml), 6, &["`item`", "once for the whole task"]);
}

#[test]
fn typed_inputs_are_read_in_both_forms() {
    let w = ok(concat!(
        "name: x\ninput:\n",
        "  n: 10\n",
        "  ratio: 0.5\n",
        "  source: null\n",
        "  version:\n    type: string\n    default: \"1.10\"\n    description: the release\n",
        "  env: { type: string, enum: [dev, prod], default: dev }\n",
        "  level: { enum: [1, 2, 3] }\n",
        "  tags: { type: array, default: [] }\n",
        "  config: { retries: 3 }\n",
        "tasks:\n  a: { action: noop }\n",
    ));
    let specs = w.input_specs();
    let kind = |n: &str| specs[n].kind().map(InputType::as_str);
    assert_eq!(kind("n"), Some("integer"));
    assert_eq!(kind("ratio"), Some("number"));
    assert_eq!(kind("source"), None);
    assert!(specs["source"].required());
    assert_eq!(kind("version"), Some("string"));
    assert_eq!(specs["version"].default(), Some(&json!("1.10")));
    assert_eq!(specs["version"].description(), Some("the release"));
    assert_eq!(kind("env"), Some("string"));
    assert_eq!(
        specs["env"].allowed(),
        Some(&[json!("dev"), json!("prod")][..])
    );
    // The type of an untyped enum is its values' type; no default: required.
    assert_eq!(kind("level"), Some("integer"));
    assert!(specs["level"].required());
    assert_eq!(kind("tags"), Some("array"));
    // A mapping with other keys is an object default, as before.
    assert_eq!(kind("config"), Some("object"));
    assert_eq!(specs["config"].default(), Some(&json!({"retries": 3})));
    // `inputs()` still maps each name to its default.
    assert_eq!(w.inputs()["n"], Some(json!(10)));
    assert_eq!(w.inputs()["source"], None);
}

#[test]
fn a_default_that_does_not_fit_its_type_is_refused_on_its_line() {
    let p = problems(
        "name: x\ninput:\n  n:\n    type: integer\n    default: abc\ntasks:\n  a: { action: noop }\n",
    );
    has(&p, 5, &["input `n`", "`default` must be an integer", "abc"]);
    let p = problems(
        "name: x\ninput:\n  version: { type: string, default: 1.10 }\ntasks:\n  a: { action: noop }\n",
    );
    has(&p, 3, &["input `version`", "a string", "quote it"]);
    let p = problems(
        "name: x\ninput:\n  env:\n    enum: [dev, prod]\n    default: qa\ntasks:\n  a: { action: noop }\n",
    );
    has(&p, 5, &["input `env`", "one of \"dev\" or \"prod\"", "qa"]);
    let p = problems(
        "name: x\ninput:\n  flag: { type: boolean, default: \"yes\" }\ntasks:\n  a: { action: noop }\n",
    );
    has(&p, 3, &["input `flag`", "a boolean"]);
}

#[test]
fn input_declarations_are_checked() {
    let p = problems("name: x\ninput:\n  n:\n    type: int\ntasks:\n  a: { action: noop }\n");
    has(
        &p,
        4,
        &["input `n`", "unknown type `int`", "did you mean `integer`"],
    );
    let p = problems(
        "name: x\ninput:\n  n: { type: integer, enum: [1, two] }\ntasks:\n  a: { action: noop }\n",
    );
    has(&p, 3, &["input `n`", "\"two\"", "an integer"]);
    let p = problems("name: x\ninput:\n  n: { enum: [] }\ntasks:\n  a: { action: noop }\n");
    has(&p, 3, &["input `n`", "non-empty list"]);
    let p = problems(
        "name: x\ninput:\n  n: { type: string, description: 3 }\ntasks:\n  a: { action: noop }\n",
    );
    has(&p, 3, &["input `n`", "`description` must be text"]);
}

#[test]
fn given_inputs_are_parsed_by_type_and_refused_naming_input_and_type() {
    let w = ok(concat!(
        "name: x\ninput:\n",
        "  n: 10\n",
        "  version: { type: string, default: \"1.0\" }\n",
        "  force: false\n",
        "  env: { enum: [dev, prod], default: dev }\n",
        "  size: null\n",
        "tasks:\n  a: { action: noop }\n",
    ));
    let text = |pairs: &[(&str, &str)]| {
        w.resolve_given(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Given::Text((*v).to_owned()))),
        )
    };
    let resolved = text(&[
        ("version", "1.10"),
        ("n", "3"),
        ("force", "true"),
        ("size", "big"),
    ])
    .unwrap();
    assert_eq!(
        serde_json::Value::Object(resolved),
        json!({"n": 3, "version": "1.10", "force": true, "env": "dev", "size": "big"})
    );
    let err = text(&[("n", "abc"), ("force", "yes"), ("env", "qa"), ("size", "1")]).unwrap_err();
    let message = err.to_string();
    for part in [
        "input `n` must be an integer, not `abc`",
        "input `force` must be a boolean (true or false), not `yes`",
        "input `env` must be one of \"dev\" or \"prod\", not `qa`",
    ] {
        assert!(message.contains(part), "{part} not in {message}");
    }
    // JSON values (an inputs file, an API) are checked, not converted.
    let err = w
        .resolve_input(
            json!({"size": 1, "n": "3", "force": "true"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
        .unwrap_err();
    assert_eq!(err.refused.len(), 2, "{err}");
    assert!(
        err.to_string()
            .contains("input `n` must be an integer, not a string \"3\""),
        "{err}"
    );
    // An undeclared name gets the closest declared one.
    let err = text(&[("sise", "1")]).unwrap_err();
    assert!(err.to_string().contains("`sise` → `size`"), "{err}");
}

/// Parses `yaml` expecting problems; returns them as `line:column: message (hint)`.
fn placed(yaml: &str) -> Vec<String> {
    match Workflow::parse(yaml, "t.yaml") {
        Ok(_) => panic!("expected problems in:\n{yaml}"),
        Err(d) => d
            .problems()
            .iter()
            .map(|p| {
                format!(
                    "{}:{}: {} ({})",
                    p.line,
                    p.column,
                    p.message,
                    p.hint.clone().unwrap_or_default()
                )
            })
            .collect(),
    }
}

/// The (line, column) of the first `needle` in `yaml`, 1-based.
fn position(yaml: &str, needle: &str) -> (usize, usize) {
    let at = yaml.find(needle).expect("needle in yaml");
    let before = &yaml[..at];
    (
        before.matches('\n').count() + 1,
        at - before.rfind('\n').map_or(0, |n| n + 1) + 1,
    )
}

fn has_at(problems: &[String], (line, column): (usize, usize), parts: &[&str]) {
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&format!("{line}:{column}: "))
                && parts.iter().all(|part| p.contains(part))),
        "no problem at {line}:{column} mentioning {parts:?} in {problems:#?}"
    );
}

#[test]
fn unknown_filters_tests_and_functions_are_found_with_did_you_mean() {
    let yaml = "name: x\ninput: { xs: [1] }\ntasks:\n  a:\n    action: echo\n    input:\n      n: \"{{ input.xs | lenght }}\"\n      odd: \"{{ 3 is od }}\"\n      r: \"{{ rnage(3) | list }}\"\n      up: \"{{ upper('x') }}\"\n";
    let p = placed(yaml);
    has_at(
        &p,
        position(yaml, "lenght"),
        &["filter `lenght`", "did you mean `length`"],
    );
    has_at(
        &p,
        position(yaml, "od }}"),
        &["test `is od`", "did you mean `is odd`"],
    );
    has_at(
        &p,
        position(yaml, "rnage"),
        &["`rnage(…)`", "did you mean `range(…)`"],
    );
    has_at(
        &p,
        position(yaml, "upper("),
        &["`upper(…)`", "is a filter: write `value | upper`"],
    );
    // Called names are not also reported as undefined variables.
    assert_eq!(p.len(), 4, "{p:#?}");
    // Our own filter and the real names pass.
    ok(
        "name: x\ninput: { s: '[1]' }\ntasks:\n  a:\n    action: echo\n    input: { v: \"{{ (input.s | fromjson | length) is odd }}\", r: \"{{ range(2) | list }}\" }\n",
    );
}

#[test]
fn method_calls_are_refused_pointing_to_the_filter() {
    let yaml = "name: x\ninput: { s: 'a b' }\ntasks:\n  a:\n    action: echo\n    input: { v: \"{{ input.s.split(' ') }}\" }\n";
    let p = placed(yaml);
    has_at(
        &p,
        position(yaml, "split"),
        &["method `.split(…)`", "use the filter: `… | split(…)`"],
    );
    let yaml = "name: x\ninput: { s: 'a b' }\ntasks:\n  a:\n    action: echo\n    when: \"input.s.startswith('a')\"\n";
    has(
        &problems(yaml),
        6,
        &["method `.startswith(…)`", "startingwith"],
    );
    ok(
        "name: x\ntasks:\n  a:\n    action: echo\n    with_items: [1, 2]\n    input: { v: \"{% for x in [1] %}{{ loop.cycle('a', 'b') }}{% endfor %}\" }\n",
    );
}

#[test]
fn a_status_compared_with_a_non_status_is_refused() {
    let yaml = "name: x\ntasks:\n  a: { action: noop }\n  b:\n    needs: [a]\n    trigger: all_done\n    action: noop\n    when: \"{{ tasks.a.status == 'succeded' }}\"\n";
    let p = placed(yaml);
    has_at(
        &p,
        position(yaml, "succeded"),
        &["'succeded'", "not a status", "did you mean 'succeeded'"],
    );
    let yaml = "name: x\ntasks:\n  a: { action: noop }\n  b:\n    needs: [a]\n    trigger: all_done\n    action: noop\n    when: tasks.a.status in ['failed', 'timedout']\n";
    has(&problems(yaml), 8, &["'timedout'", "not a status"]);
    ok(
        "name: x\ntasks:\n  a: { action: noop }\n  b:\n    needs: [a]\n    trigger: all_done\n    action: noop\n    when: \"{{ tasks.a.status != 'failed' and 'skipped' != tasks.a.status }}\"\n",
    );
}

#[test]
fn carets_point_at_the_expression_inside_the_string_and_each_problem_is_reported_once() {
    let yaml = "name: x\ninput: { size: 3 }\ntasks:\n  a:\n    action: echo\n    input:\n      first: plain\n      second: \"size is {{ input.sise }}\"\n      third: [\"{{ input.sise + 1 }}\"]\n";
    let p = placed(yaml);
    has_at(
        &p,
        position(yaml, "input.sise }}"),
        &["`input.sise`", "did you mean `input.size`"],
    );
    has_at(&p, position(yaml, "input.sise + 1"), &["`input.sise`"]);
    assert_eq!(p.len(), 2, "one problem per place: {p:#?}");
    // Two paths of one name in one string make one problem.
    let yaml = "name: x\ntasks:\n  a:\n    action: echo\n    input: { v: \"{{ tasks.zz.result }} {{ tasks.zz.status }}\" }\n";
    let p = placed(yaml);
    assert_eq!(p.len(), 1, "{p:#?}");
}

#[test]
fn the_item_hint_fits_the_task() {
    // A with_items task: `when` is evaluated once for the task.
    let yaml = "name: x\ntasks:\n  a:\n    action: echo\n    with_items: [1, 2]\n    when: \"{{ item > 1 }}\"\n";
    let p = problems(yaml);
    has(
        &p,
        6,
        &[
            "`item`",
            "evaluated once for the whole task",
            "filter the list",
        ],
    );
    assert!(p.iter().all(|m| !m.contains("add `with_items:`")), "{p:#?}");
    // A task without with_items: add it.
    let yaml = "name: x\ntasks:\n  a:\n    action: echo\n    input: { v: \"{{ item }}\" }\n";
    has(&problems(yaml), 5, &["`item`", "add `with_items:`"]);
    // The workflow output: read the fan-out's result.
    let yaml = "name: x\noutput: { v: \"{{ item }}\" }\ntasks:\n  a: { action: echo }\n";
    has(&problems(yaml), 2, &["`item`", "tasks.<name>.result"]);
}

#[test]
fn an_input_name_that_is_not_an_identifier_gets_the_subscript_hint() {
    let yaml = "name: x\ninput: { should-print: true }\ntasks:\n  a:\n    action: echo\n    input: { v: \"{{ input.should-print }}\" }\n";
    let p = placed(yaml);
    has_at(
        &p,
        position(yaml, "input.should-print }}"),
        &[
            "`should-print` is not an identifier",
            "input['should-print']",
        ],
    );
    assert_eq!(p.len(), 1, "not also `print` undefined: {p:#?}");
    ok(
        "name: x\ninput: { should-print: true }\ntasks:\n  a:\n    action: echo\n    input: { v: \"{{ input['should-print'] }}\" }\n",
    );
}

#[test]
fn a_task_name_that_is_not_an_identifier_is_reported_on_its_key() {
    let yaml = "name: x\ntasks:\n  fetch-data:\n    action: echo\n";
    let p = placed(yaml);
    has_at(&p, (3, 3), &["`fetch-data`", "identifier"]);
}

#[test]
fn a_shell_script_that_splices_a_template_gets_a_warning() {
    let yaml = "name: x\ninput: { name: world }\ntasks:\n  a:\n    action: shell\n    input:\n      script: |\n        echo hello\n        echo {{ input.name }}\n";
    let w = ok(yaml);
    let warnings = w.warnings().expect("a warning");
    assert!(warnings.is_warning());
    let p = &warnings.problems()[0];
    assert_eq!((p.line, p.column), position(yaml, "{{ input.name }}"));
    assert!(p.message.contains("splices `{{ input.name }}`"), "{p:?}");
    assert!(
        p.hint.as_deref().unwrap_or_default().contains("env:"),
        "{p:?}"
    );
    // Argv passing is not a splice.
    let w = ok(
        "name: x\ninput: { name: world }\ntasks:\n  a:\n    action: shell\n    input: { command: [echo, \"{{ input.name }}\"], script: null }\n",
    );
    assert!(w.warnings().is_none());
}

#[test]
fn numbers_and_durations_written_as_templates_are_refused_with_a_hint() {
    for (field, yaml) in [
        (
            "attempts",
            "name: x\ntasks:\n  a:\n    action: noop\n    retry: { attempts: \"{{ 3 }}\" }\n",
        ),
        (
            "attempts",
            "name: x\ntasks:\n  a:\n    action: noop\n    retry:\n      attempts: \"{{ input.n }}\"\n",
        ),
        (
            "concurrency",
            "name: x\ntasks:\n  a:\n    action: noop\n    with_items: [1]\n    concurrency: \"{{ 2 }}\"\n",
        ),
        (
            "backoff",
            "name: x\ntasks:\n  a:\n    action: noop\n    retry: { backoff: \"{{ 2.0 }}\" }\n",
        ),
        (
            "timeout",
            "name: x\ntasks:\n  a:\n    action: noop\n    timeout: \"{{ input.t }}\"\n",
        ),
        (
            "delay",
            "name: x\ntasks:\n  a:\n    action: noop\n    retry: { delay: \"{{ '1s' }}\" }\n",
        ),
    ] {
        let p = placed(yaml);
        assert!(
            p.iter()
                .any(|m| m.contains(field) && m.contains("template") && m.contains("write")),
            "{field}: {p:#?}"
        );
    }
    // A constant template suggests its value; a word is named.
    let p = placed(
        "name: x\ntasks:\n  a:\n    action: noop\n    retry: { attempts: \"{{ 1 + 2 }}\" }\n",
    );
    assert!(p[0].contains("`attempts: 3`"), "{p:#?}");
    let p = placed("name: x\ntasks:\n  a:\n    action: noop\n    retry: { attempts: three }\n");
    assert!(
        p[0].starts_with("5:")
            && p[0].contains("`retry.attempts` must be a whole number, not `three`"),
        "{p:#?}"
    );
}

#[test]
fn an_output_that_fails_names_the_skipped_tasks_it_reads() {
    let w = ok(
        "name: x\noutput: { v: \"{{ tasks.b.result.n }}\" }\ntasks:\n  a: { action: noop }\n  b: { action: echo, needs: [a], when: 'false' }\n",
    );
    let error = weft_common::ExprError {
        expression: "{{ tasks.b.result.n }}".into(),
        reason: "undefined value".into(),
    };
    let status = |name: &str| match name {
        "b" => Some(weft_common::TaskStatus::Skipped),
        _ => Some(weft_common::TaskStatus::Succeeded),
    };
    let why = w.output_failure(&error, status);
    assert!(
        why.contains("undefined value") && why.contains("task `b`, which was skipped"),
        "{why}"
    );
    let why = w.output_failure(&error, |_| Some(weft_common::TaskStatus::Succeeded));
    assert!(!why.contains("skipped"), "{why}");
}

#[test]
fn a_stored_definition_loads_without_the_run_time_lints() {
    // Stored by an earlier version: its typo fails the run when rendered,
    // as it always did, instead of making the run unloadable.
    let yaml = "name: x\ntasks:\n  a:\n    action: echo\n    input: { v: \"{{ [1] | lenght }}\", s: \"{{ 'a'.upper() }}\" }\n";
    assert!(Workflow::parse(yaml, "t.yaml").is_err());
    assert!(Workflow::parse_stored(yaml, "t.yaml").is_ok());
    // What the engine relies on is still checked.
    assert!(
        Workflow::parse_stored(
            "name: x\ntasks:\n  a: { action: echo, needs: [b] }\n",
            "t.yaml"
        )
        .is_err()
    );
}

#[test]
fn an_input_read_by_subscript_must_be_declared_too() {
    let yaml = "name: x\ninput: { should-print: true }\ntasks:\n  a:\n    action: echo\n    input: { v: \"{{ input['should-prnt'] }}\" }\n";
    let p = placed(yaml);
    has_at(
        &p,
        position(yaml, "should-prnt"),
        &[
            "`input['should-prnt']`",
            "not declared",
            "did you mean `input['should-print']`",
        ],
    );
}

#[test]
fn parallelism_is_a_whole_number_of_at_least_one_for_the_whole_workflow() {
    let with = |line: &str| format!("name: x\n{line}\ntasks:\n  a: {{ action: noop }}\n");
    has(
        &problems(&with("parallelism: 0")),
        2,
        &[
            "`parallelism` must be at least 1, not 0",
            "omit `parallelism`",
        ],
    );
    has(
        &problems(&with("parallelism: -3")),
        2,
        &["`parallelism` must be at least 1, not -3"],
    );
    has(
        &problems(&with("parallelism: 2.5")),
        2,
        &["`parallelism` must be a whole number, not `2.5`"],
    );
    has(
        &problems(&with("parallelism: lots")),
        2,
        &["`parallelism` must be a whole number, not `lots`"],
    );
    has(
        &problems(&with("parallelism: \"{{ input.n }}\"")),
        2,
        &[
            "`parallelism` cannot be a template",
            "before any input exists",
        ],
    );
    has(
        &problems(&with("parallelism: \"{{ 4 }}\"")),
        2,
        &["`parallelism` cannot be a template", "`parallelism: 4`"],
    );
    has(
        &problems(&with("parallelism: 3000000000")),
        2,
        &["`parallelism` must be at most 2147483647"],
    );
    // Each limit written where the other belongs.
    has(
        &problems("name: x\ntasks:\n  a:\n    action: noop\n    parallelism: 2\n"),
        5,
        &["parallelism", "at the top of the workflow", "`concurrency`"],
    );
    has(
        &problems(&with("concurrency: 2")),
        2,
        &["concurrency", "write it in a task", "`parallelism: N`"],
    );
    assert_eq!(ok(&with("parallelism: 4")).parallelism(), Some(4));
    assert_eq!(ok(&with("")).parallelism(), None);
}

#[test]
fn retry_when_sees_the_attempt_and_the_input_only() {
    let base = "name: x\ninput: { codes: [75] }\ntasks:\n  a: { action: echo }\n  b:\n    needs: [a]\n    action: shell\n    input: { command: [\"true\"] }\n";
    ok(&format!(
        "{base}    retry: {{ attempts: 3, when: \"{{{{ exit_code in input.codes or timed_out or (attempt < 2 and 'busy' in error) }}}}\" }}\n"
    ));
    // Braces are optional, as for `when`.
    ok(&format!(
        "{base}    retry: {{ attempts: 3, when: \"exit_code == 75\" }}\n"
    ));
    has(
        &problems(&format!(
            "{base}    retry: {{ attempts: 3, when: \"{{{{ tasks.a.result }}}}\" }}\n"
        )),
        9,
        &["`retry.when` uses `tasks`", "exit_code"],
    );
    has(
        &problems(&format!(
            "{base}    retry: {{ attempts: 3, when: \"{{{{ exitcode == 1 }}}}\" }}\n"
        )),
        9,
        &["`exitcode`", "did you mean `exit_code`"],
    );
    has(
        &problems(&format!(
            "{base}    retry: {{ attempts: 3, when: \"{{{{ item }}}}\" }}\n"
        )),
        9,
        &["`retry.when` uses `item`"],
    );
    // Outside `retry.when`, the attempt's names do not exist.
    has(
        &problems(&format!("{base}    when: \"{{{{ exit_code == 1 }}}}\"\n")),
        9,
        &["`exit_code`", "not defined"],
    );
    has(
        &problems(&format!(
            "{base}    retry: {{ when: \"{{{{ timed_out }}}}\" }}\n"
        )),
        9,
        &[
            "task `b`",
            "`retry.when` without `retry.attempts` or `retry.max_duration`",
        ],
    );
    has(
        &problems(&format!(
            "{base}    retry: {{ attempts: 2, max_duration: 10 }}\n"
        )),
        9,
        &["task `b`", "retry.max_duration"],
    );
    has(
        &problems(&format!(
            "{base}    retry: {{ attempts: 2, max_duration: 0s }}\n"
        )),
        9,
        &["`retry.max_duration` must be longer than 0"],
    );
    let w = ok(&format!("{base}    retry: {{ max_duration: 5m }}\n"));
    let retry = w.task("b").map(|t| t.retry().clone()).unwrap_or_default();
    assert_eq!(
        retry.attempts,
        u32::MAX,
        "max_duration alone tries until the time is spent"
    );
    assert_eq!(
        retry.max_duration,
        Some(std::time::Duration::from_secs(300))
    );
}

#[test]
fn tasks_show_their_error_and_a_fan_outs_items() {
    let w = ok(
        "name: x\noutput: { failed: \"{{ tasks.a.items | selectattr('status', 'ne', 'succeeded') | list }}\" }\ntasks:\n  a: { action: echo, with_items: [1, 2] }\n  b: { action: echo, needs: [a], trigger: all_done, input: { why: \"{{ tasks.a.error }}\", first: \"{{ tasks.a.items[0].result }}\" } }\n",
    );
    assert!(w.reads_items("a"));
    assert!(!w.reads_items("b"));
    has(
        &problems(
            "name: x\ntasks:\n  a: { action: echo }\n  b: { action: echo, needs: [a], input: { v: \"{{ tasks.a.errors }}\" } }\n",
        ),
        4,
        &["`tasks.a.errors` does not exist", "`.error`", "`.items`"],
    );
    // Still only ancestors.
    has(
        &problems(
            "name: x\ntasks:\n  a: { action: echo }\n  b: { action: echo, input: { v: \"{{ tasks.a.error }}\" } }\n",
        ),
        4,
        &["`tasks.a`", "not one of its ancestors"],
    );
}

#[test]
fn the_output_is_rendered_part_by_part_whatever_the_outcome() {
    use std::sync::Arc;
    use weft_common::{Context, Evaluator, TaskStatus, TaskView};
    let w = ok(
        "name: x\noutput: { a: \"{{ tasks.a.result }}\", v: \"{{ tasks.b.result.n }}\", typo: \"{{ tasks.a.result.nope }}\" }\ntasks:\n  a: { action: echo }\n  b: { action: echo, needs: [a], when: 'false' }\n",
    );
    let mut ctx = Context::default();
    ctx.tasks.insert(
        "a".into(),
        TaskView::new(TaskStatus::Succeeded, Arc::new(json!({"k": 1}))),
    );
    ctx.tasks.insert(
        "b".into(),
        TaskView::new(TaskStatus::Skipped, Arc::new(serde_json::Value::Null)),
    );
    let status = |name: &str| ctx.tasks.get(name).map(|t| t.status);
    let rendered = w
        .render_output(&Evaluator::new(), &ctx, status)
        .expect("an output");
    assert_eq!(
        rendered.value,
        json!({"a": {"k": 1}, "v": null, "typo": null})
    );
    // The skipped task's part is no mistake; the typo is.
    assert!(rendered.broken);
    assert_eq!(rendered.problems.len(), 2, "{:?}", rendered.problems);
    assert!(
        rendered
            .problems
            .iter()
            .any(|p| p.contains("output `v` is null") && p.contains("task `b` (skipped)")),
        "{:?}",
        rendered.problems
    );
    assert!(
        rendered
            .problems
            .iter()
            .any(|p| p.starts_with("rendering the output: output `typo` is null")),
        "{:?}",
        rendered.problems
    );
}
