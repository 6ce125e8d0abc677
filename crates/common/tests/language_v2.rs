//! Language v2's run-wide limit, retry conditions and failure data: what
//! validation accepts and refuses (each refusal naming the offender and
//! its line), and how the output of a run that went wrong is rendered.

use serde_json::json;

mod support;
use support::{has, ok, problems};

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
