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
