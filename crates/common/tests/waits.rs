//! `wait:` tasks: what validation accepts and refuses, each refusal naming
//! the offender and its line.

use std::time::Duration;

use weft_common::wait::{WAIT_LABEL, WaitKind, WaitMode};

mod support;
use support::{has, ok, problems};

#[test]
fn every_form_of_wait_is_read() {
    let w = ok(r#"
name: x
input: { at: null }
tasks:
  pause: { wait: 1m30s }
  until: { wait: { until: "{{ input.at }}" } }
  pay:
    wait:
      signal: payment-received
      timeout: 2d
      input:
        amount: { type: integer }
        note: ""
  ok:
    needs: [pause, until, pay]
    wait: { approval: true, timeout: 1h }
    retry: { attempts: 2 }
  after: { needs: [ok], action: echo, input: { a: "{{ tasks.pay.result.amount }}" } }
"#);
    let pause = w.task("pause").expect("pause");
    assert_eq!(pause.action(), WAIT_LABEL);
    assert_eq!(
        pause.wait().map(|w| w.kind().clone()),
        Some(WaitKind::For(Duration::from_secs(90)))
    );
    let until = w.task("until").expect("until");
    assert_eq!(until.wait().map(|w| w.mode()), Some(WaitMode::Timer));
    assert_eq!(until.input()["until"], "{{ input.at }}");
    let pay = w.task("pay").and_then(|t| t.wait()).expect("pay waits");
    assert_eq!(pay.timeout(), Some(Duration::from_secs(2 * 86_400)));
    let WaitKind::Signal { name, fields } = pay.kind() else {
        panic!("not a signal: {pay:?}");
    };
    assert_eq!(name, "payment-received");
    assert!(fields["amount"].required() && !fields["note"].required());
    let ok_task = w.task("ok").expect("ok");
    assert_eq!(ok_task.wait().map(|w| w.mode()), Some(WaitMode::Approval));
    assert_eq!(ok_task.retry().attempts, 2);
}

#[test]
fn a_wait_with_an_action_a_pool_or_items_is_refused_on_their_lines() {
    let p = problems(
        "name: x\ntasks:\n  a:\n    wait: 5s\n    action: echo\n    queue: gpu\n    with_items: [1]\n    timeout: 1s\n    input: {x: 1}\n",
    );
    has(&p, 5, &["task `a` has both `wait` and `action`"]);
    has(&p, 6, &["`wait` and `queue`", "no worker pool"]);
    has(&p, 7, &["`wait` and `with_items`"]);
    has(&p, 8, &["`wait` and `timeout`", "wait.timeout"]);
    has(&p, 9, &["`wait` and `input`", "wait.input"]);
}

#[test]
fn a_bad_wait_says_what_a_wait_looks_like() {
    let p = problems("name: x\ntasks:\n  a:\n    wait: soon\n");
    has(&p, 4, &["task `a`: bad `wait`", "durations look like"]);
    let p = problems("name: x\ntasks:\n  a:\n    wait: 5\n");
    has(&p, 4, &["must be a duration or a mapping, not a number"]);
    let p = problems("name: x\ntasks:\n  a:\n    wait: {}\n");
    assert!(
        p.iter()
            .any(|m| m.contains("one of `until`, `signal` or `approval`")),
        "{p:#?}"
    );
    let p = problems("name: x\ntasks:\n  a:\n    wait: {signal: go, approval: true}\n");
    has(&p, 4, &["`signal` and `approval`", "one thing"]);
    let p =
        problems("name: x\ntasks:\n  a:\n    wait: {until: '2026-01-01T00:00:00Z', timeout: 1h}\n");
    has(&p, 4, &["`wait.timeout` limits a signal or an approval"]);
    let p = problems("name: x\ntasks:\n  a:\n    wait: {approval: true, input: {x: 1}}\n");
    has(&p, 4, &["`wait.input`", "no signal"]);
    let p = problems("name: x\ntasks:\n  a:\n    wait: {signal: 'Go Now'}\n");
    has(&p, 4, &["signal name `Go Now`"]);
    let p = problems("name: x\ntasks:\n  a:\n    wait: {signal: go, timeot: 1h}\n");
    has(&p, 4, &["timeot", "did you mean `timeout`"]);
}

#[test]
fn until_is_checked_as_any_template() {
    let p = problems(
        "name: x\ntasks:\n  a:\n    wait: {until: '{{ tasks.b.result }}'}\n  b: {action: noop}\n",
    );
    has(&p, 4, &["`b`"]);
    let p = problems("name: x\ntasks:\n  a:\n    wait: {until: '{{ input.nope }}'}\n");
    has(&p, 4, &["nope"]);
}
