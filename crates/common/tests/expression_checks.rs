//! What validation checks inside expressions (carets at the expression
//! inside its string): unknown filters, tests, functions and methods with a
//! did-you-mean, status words, item and input hints, templates where a
//! number belongs, shell splices, outputs reading skipped tasks, stored
//! definitions loading without the run-time lints.

use weft_common::Workflow;

mod support;
use support::{has, ok, problems};

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
