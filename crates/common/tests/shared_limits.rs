//! A workflow's `limit:` (concurrency shared across runs): what
//! validation refuses, with line and column, and what it accepts.

use weft_common::{LimitOrder, Workflow};

mod support;
use support::{has, ok, problems};

/// The problems of `yaml` as `(line, column, message)`.
fn placed(yaml: &str) -> Vec<(usize, usize, String)> {
    match Workflow::parse(yaml, "t.yaml") {
        Ok(_) => panic!("expected problems in:\n{yaml}"),
        Err(d) => d
            .problems()
            .iter()
            .map(|p| (p.line, p.column, p.message.clone()))
            .collect(),
    }
}

const TASKS: &str = "tasks:\n  a:\n    action: noop\n";

#[test]
fn a_limit_reads_its_key_runs_and_order() {
    let w = ok(&format!(
        "name: x\ninput: {{ customer: null }}\nlimit: {{ key: \"{{{{ input.customer }}}}\", runs: 2, runs_total: 6, order: fair }}\n{TASKS}"
    ));
    let limit = w.limit().expect("a limit");
    assert_eq!(limit.runs(), 2);
    assert_eq!(limit.runs_total(), Some(6));
    assert_eq!(limit.order(), LimitOrder::Fair);
    assert_eq!(limit.key_template(), "{{ input.customer }}");
    let plain = ok(&format!("name: x\nlimit: {{ key: one, runs: 1 }}\n{TASKS}"));
    assert_eq!(plain.limit().map(|l| l.order()), Some(LimitOrder::Fifo));
    assert!(ok(&format!("name: x\n{TASKS}")).limit().is_none());
}

#[test]
fn a_limit_without_a_key_is_refused_where_it_is_written() {
    let yaml = format!("name: x\nlimit:\n  runs: 2\n{TASKS}");
    has(&problems(&yaml), 3, &["`limit` has no `key`", "key:"]);
}

#[test]
fn a_limit_without_runs_is_refused() {
    let yaml = format!("name: x\nlimit: {{ key: k }}\n{TASKS}");
    has(&problems(&yaml), 2, &["`limit` has no `runs`"]);
}

#[test]
fn runs_must_be_at_least_one_with_its_column() {
    let yaml = format!("name: x\nlimit: {{ key: k, runs: 0 }}\n{TASKS}");
    let p = placed(&yaml);
    assert!(
        p.iter().any(|(line, column, m)| *line == 2
            && *column == 24
            && m.contains("`limit.runs` must be at least 1, not 0")),
        "{p:#?}"
    );
    let total = format!("name: x\nlimit: {{ key: k, runs: 3, runs_total: 2 }}\n{TASKS}");
    has(
        &problems(&total),
        2,
        &["`limit.runs_total` (2) is less than `limit.runs` (3)"],
    );
    let word = format!("name: x\nlimit: {{ key: k, runs: two }}\n{TASKS}");
    has(&problems(&word), 2, &["runs"]);
}

#[test]
fn a_key_reading_an_undeclared_input_is_refused_at_the_name() {
    let yaml = format!(
        "name: x\ninput: {{ customer: null }}\nlimit: {{ key: \"{{{{ input.custmer }}}}\", runs: 2 }}\n{TASKS}"
    );
    let p = placed(&yaml);
    assert!(
        p.iter().any(|(line, column, m)| *line == 3
            && *column == 19
            && m.contains("`limit.key` uses `input.custmer`, which is not declared")),
        "{p:#?}"
    );
    has(&problems(&yaml), 3, &["did you mean `input.customer`"]);
}

#[test]
fn a_key_with_a_syntax_error_or_a_task_is_refused() {
    let broken = format!("name: x\nlimit: {{ key: \"{{{{ input. }}}}\", runs: 2 }}\n{TASKS}");
    has(&problems(&broken), 2, &["`limit.key` has a syntax error"]);
    let task = format!("name: x\nlimit: {{ key: \"{{{{ tasks.a.result }}}}\", runs: 2 }}\n{TASKS}");
    has(&problems(&task), 2, &["tasks.a"]);
}

#[test]
fn an_unknown_order_or_field_is_refused_with_a_hint() {
    let order = format!("name: x\nlimit: {{ key: k, runs: 2, order: random }}\n{TASKS}");
    has(
        &problems(&order),
        2,
        &["`limit.order` is `random`", "fifo", "fair"],
    );
    let field = format!("name: x\nlimit: {{ key: k, runs: 2, run_total: 4 }}\n{TASKS}");
    has(
        &problems(&field),
        2,
        &["run_total", "did you mean `runs_total`"],
    );
}

#[test]
fn a_task_lock_reads_its_name_or_key_and_limit() {
    let w = ok(
        "name: x\ninput: { db: main }\ntasks:\n  a: { action: noop, mutex: \"{{ input.db }}\" }\n  b: { action: noop, semaphore: { key: api, limit: 3 } }\n",
    );
    let a = w.task("a").and_then(|t| t.lock()).expect("a mutex");
    assert_eq!(
        (a.kind(), a.limit(), a.key_template()),
        ("mutex", 1, "{{ input.db }}")
    );
    let b = w.task("b").and_then(|t| t.lock()).expect("a semaphore");
    assert_eq!((b.kind(), b.limit()), ("semaphore", 3));
}

#[test]
fn task_locks_are_refused_where_they_cannot_work() {
    has(
        &problems(
            "name: x\ntasks:\n  a: { action: noop, mutex: m, semaphore: { key: k, limit: 2 } }\n",
        ),
        3,
        &["both a `mutex` and a `semaphore`"],
    );
    has(
        &problems("name: x\ntasks:\n  a: { action: noop, semaphore: { key: k } }\n"),
        3,
        &["`semaphore` has no `limit`"],
    );
    has(
        &problems("name: x\ntasks:\n  a: { action: noop, semaphore: { key: k, limit: 0 } }\n"),
        3,
        &["`semaphore.limit` must be at least 1, not 0"],
    );
    has(
        &problems("name: x\ntasks:\n  a: { action: noop, with_items: [1, 2], mutex: m }\n"),
        3,
        &["a fan-out (`with_items`) cannot take a `mutex` yet"],
    );
    has(
        &problems("name: x\ntasks:\n  a: { action: noop, mutex: \"{{ input.nope }}\" }\n"),
        3,
        &["`mutex` uses `input.nope`, which is not declared"],
    );
    has(
        &problems("name: x\nparallelism: 2\ntasks:\n  a: { action: noop, mutex: m }\n"),
        2,
        &["takes a lock across runs", "`parallelism`"],
    );
    has(
        &problems(
            "name: x\ntasks:\n  a: { action: noop }\non_exit:\n  b: { action: noop, mutex: m }\n",
        ),
        5,
        &["exit handler `b` cannot take a `mutex`"],
    );
}
