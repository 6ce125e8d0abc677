//! Every validation rule: a fixture that must fail, naming the offending
//! names and the line, next to one that passes. Plus: the examples in
//! `workflows/` validate, and no input makes the parser panic.

use proptest::prelude::*;
use weft_common::Workflow;

/// Parses `yaml` expecting problems; returns them as `line: message (hint)`.
fn problems(yaml: &str) -> Vec<String> {
    match Workflow::parse(yaml, "t.yaml") {
        Ok(_) => panic!("expected problems in:\n{yaml}"),
        Err(d) => d
            .problems()
            .iter()
            .map(|p| {
                format!(
                    "{}: {} ({})",
                    p.line,
                    p.message,
                    p.hint.clone().unwrap_or_default()
                )
            })
            .collect(),
    }
}

fn has(problems: &[String], line: usize, parts: &[&str]) {
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&format!("{line}: "))
                && parts.iter().all(|part| p.contains(part))),
        "no problem on line {line} mentioning {parts:?} in {problems:#?}"
    );
}

fn ok(yaml: &str) -> Workflow {
    Workflow::parse(yaml, "t.yaml").unwrap_or_else(|d| panic!("{d}"))
}

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
            ("[a-e]", proptest::collection::vec("[a-f]", 0..3), prop_oneof![Just(""), Just("{{ tasks.a.result }}"), Just("{{ item }}"), Just("{{ input.x }}"), Just("{{ 1 + }}")]),
            1..6,
        ),
        trigger in prop_oneof![Just("all_success"), Just("one_failed"), Just("bogus")],
    ) {
        let mut yaml = String::from("name: gen\ninput: { x: 1 }\ntasks:\n");
        for (name, needs, expr) in &tasks {
            yaml.push_str(&format!("  {name}:\n    action: echo\n    needs: [{}]\n    trigger: {trigger}\n    input: {{ v: \"{expr}\" }}\n", needs.join(", ")));
        }
        if let Ok(w) = Workflow::parse(&yaml, "gen.yaml") {
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
