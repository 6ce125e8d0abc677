//! Exit handlers (`on_exit:`): what validation accepts and refuses, each
//! refusal naming the offender and its line.

use weft_common::Workflow;

mod support;
use support::{has, ok, problems};

#[test]
fn exit_handlers_read_any_main_task_and_the_run_verdict() {
    let w = ok(
        "name: x\ntasks:\n  a: {action: noop}\n  b: {action: noop, needs: [a]}\non_exit:\n  \
         clean: {action: echo, input: {a: '{{ tasks.b.status }}', s: '{{ workflow.status }}', \
         f: '{{ workflow.failures }}', d: '{{ workflow.duration }}'}}\n  \
         tell: {action: echo, needs: [clean], input: {c: '{{ tasks.clean.result }}'}}\n",
    );
    assert_eq!(w.exit_handler_count(), 2);
    let clean = w.task("clean").expect("clean");
    assert!(clean.is_exit_handler());
    assert!(clean.references().contains("b"));
    assert!(!w.task("a").expect("a").is_exit_handler());
}

#[test]
fn an_exit_handler_named_like_a_main_task_is_refused_on_its_line() {
    let p = problems("name: x\ntasks:\n  a: {action: noop}\non_exit:\n  a: {action: noop}\n");
    has(&p, 5, &["exit handler `a`", "main task"]);
}

#[test]
fn an_exit_handler_may_not_need_a_main_task() {
    let p = problems(
        "name: x\ntasks:\n  build: {action: noop}\non_exit:\n  clean:\n    action: noop\n    needs: [build]\n",
    );
    has(&p, 7, &["exit handler `clean`", "`build`", "main task"]);
}

#[test]
fn an_exit_handler_needs_only_exit_handlers_that_exist() {
    let p = problems(
        "name: x\ntasks:\n  a: {action: noop}\non_exit:\n  clean: {action: noop}\n  tell:\n    action: noop\n    needs: [cleen]\n",
    );
    has(&p, 8, &["`cleen`", "not a task", "did you mean `clean`"]);
}

#[test]
fn exit_handlers_in_a_cycle_are_refused() {
    let p = problems(
        "name: x\ntasks:\n  a: {action: noop}\non_exit:\n  c1:\n    action: noop\n    needs: [c2]\n  c2:\n    action: noop\n    needs: [c1]\n",
    );
    assert!(p.iter().any(|m| m.contains("cycle")), "{p:#?}");
}

#[test]
fn main_tasks_may_not_read_the_run_verdict() {
    let p = problems(
        "name: x\ntasks:\n  a:\n    action: echo\n    input: {s: '{{ workflow.status }}'}\n",
    );
    has(
        &p,
        5,
        &[
            "task `a`",
            "`workflow.status`",
            "only known to exit handlers",
        ],
    );
}

#[test]
fn main_tasks_may_not_read_exit_handlers() {
    let p = problems(
        "name: x\ntasks:\n  a:\n    action: echo\n    input: {s: '{{ tasks.clean.status }}'}\non_exit:\n  clean: {action: noop}\n",
    );
    has(&p, 5, &["task `a`", "clean"]);
}

#[test]
fn an_empty_on_exit_is_refused() {
    let p = problems("name: x\ntasks:\n  a: {action: noop}\non_exit: {}\n");
    has(&p, 4, &["`on_exit` has no tasks"]);
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
        ..ProptestConfig::default()
    })]

    /// Workflows with random main tasks and exit handlers — names that may
    /// clash, needs across the two, expressions reading either and the
    /// run's verdict — never panic, every problem points into the file,
    /// and an accepted one keeps the phases apart: no exit handler needs a
    /// main task or shares its name, no main task reads an exit handler.
    #[test]
    fn generated_exit_handlers_never_panic_and_stay_apart(
        main in proptest::collection::vec(("[a-c]", proptest::collection::vec("[a-f]", 0..2)), 1..4),
        exits in proptest::collection::vec(("[b-f]", proptest::collection::vec("[a-f]", 0..2), prop_oneof![
            Just(""), Just("{{ workflow.status }}"), Just("{{ workflow.failures | length }}"),
            Just("{{ tasks.a.result }}"), Just("{{ tasks.e.status }}"), Just("{{ workflow.duration > 1 }}"),
            Just("{{ workflow.bogus }}"),
        ]), 0..4),
        main_expr in prop_oneof![Just(""), Just("{{ workflow.status }}"), Just("{{ tasks.d.status }}")],
        empty in any::<bool>(),
    ) {
        let mut yaml = String::from("name: gen\ntasks:\n");
        for (name, needs) in &main {
            yaml.push_str(&format!("  {name}:\n    action: echo\n    needs: [{}]\n    input: {{ v: \"{main_expr}\" }}\n", needs.join(", ")));
        }
        if exits.is_empty() && empty {
            yaml.push_str("on_exit: {}\n");
        } else if !exits.is_empty() {
            yaml.push_str("on_exit:\n");
            for (name, needs, expr) in &exits {
                yaml.push_str(&format!("  {name}:\n    action: echo\n    needs: [{}]\n    trigger: all_done\n    input: {{ v: \"{expr}\" }}\n", needs.join(", ")));
            }
        }
        let parsed = Workflow::parse(&yaml, "gen.yaml");
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
                    let needed = w.task(need).expect("a need is a task");
                    prop_assert_eq!(needed.is_exit_handler(), t.is_exit_handler(), "{} needs {}", t.name(), need);
                    let (a, b) = (order.iter().position(|n| n == need), order.iter().position(|n| *n == t.name()));
                    prop_assert!(a < b);
                }
                if !t.is_exit_handler() {
                    for read in t.references() {
                        prop_assert!(!w.task(read).expect("a reference is a task").is_exit_handler());
                    }
                }
            }
        }
    }
}
