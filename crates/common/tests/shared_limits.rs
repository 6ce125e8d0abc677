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
