use super::*;
use serde_json::json;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap_or_default()
}

fn task(name: &str, status: TaskStatus) -> TaskFacts {
    TaskFacts {
        exit_handler: false,
        lock: None,
        name: name.into(),
        status,
        shown_status: status.as_str(),
        action: "echo".into(),
        pool: "default".into(),
        trigger: Trigger::AllSuccess,
        when: None,
        needs: Vec::new(),
        with_items: false,
        concurrency: None,
        items_total: Some(1),
        items_succeeded: 0,
        items_failed: 0,
        running: 0,
        queued: 0,
        pending: 0,
        retrying: 0,
        next_retry_at: None,
        workers: Vec::new(),
        max_attempts: 1,
        last_failure: None,
        error: None,
        decided_at: None,
        finished_at: None,
        wait: None,
    }
}

#[test]
fn a_running_wait_says_until_when() {
    let mut t = task("pause", TaskStatus::Running);
    t.action = crate::wait::WAIT_LABEL.into();
    t.running = 1;
    t.wait = Some(crate::wait::WaitFacts {
        mode: crate::wait::WaitMode::Timer,
        signal: None,
        due_at: Some(at("2026-01-01T00:00:02Z")),
        resolution: None,
    });
    let facts = run(WorkflowStatus::Running, vec![t], Vec::new());
    assert_eq!(
        facts.explain().tasks[0].why,
        "waiting until 2026-01-01T00:00:02.000Z"
    );
}

fn run(status: WorkflowStatus, tasks: Vec<TaskFacts>, pools: Vec<PoolFacts>) -> RunFacts {
    RunFacts {
        id: WorkflowExecutionId::new(),
        workflow: "w".into(),
        status,
        error: None,
        created_at: at("2026-01-01T00:00:00Z"),
        started_at: None,
        finished_at: None,
        now: at("2026-01-01T00:01:00Z"),
        parallelism: None,
        in_flight: 0,
        limit: None,
        tasks,
        pools,
    }
}

fn pool(name: &str, workers: &[&str], actions: &[&str]) -> PoolFacts {
    PoolFacts {
        name: name.into(),
        live_workers: workers.iter().map(|w| (*w).to_owned()).collect(),
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        ready: Some(1),
        consumers: Some(u32::try_from(workers.len()).unwrap_or(0)),
    }
}

#[test]
fn a_task_queued_in_a_pool_nobody_consumes_says_how_to_start_one() {
    let mut gpu = task("train", TaskStatus::Running);
    gpu.pool = "gpu".into();
    gpu.queued = 1;
    gpu.shown_status = shown_status(gpu.status, gpu.running, gpu.queued, gpu.pending);
    assert_eq!(gpu.shown_status, "queued");
    let facts = run(
        WorkflowStatus::Running,
        vec![gpu],
        vec![pool("gpu", &[], &[])],
    );
    let e = facts.explain();
    assert_eq!(
        e.tasks[0].why,
        "1 dispatched, waiting in pool `gpu` (queue depth 1, 0 consumers, no live worker): \
         no worker consumes pool `gpu`: start `weft worker --queue gpu`"
    );
    assert_eq!(e.run, "running: waiting on `train` (queued in pool `gpu`)");
}

#[test]
fn a_queued_action_no_live_worker_knows_is_named_with_what_they_know() {
    let mut t = task("t", TaskStatus::Running);
    t.action = "resize".into();
    t.queued = 2;
    let facts = run(
        WorkflowStatus::Running,
        vec![t],
        vec![pool("default", &["w1"], &["echo", "shell"])],
    );
    let why = &facts.explain().tasks[0].why;
    assert!(
        why.ends_with(
            "no live worker of pool `default` knows action `resize` (they know: echo, shell)"
        ),
        "{why}"
    );
}

#[test]
fn a_sub_workflow_task_counts_child_runs_not_workers() {
    let mut t = task("process", TaskStatus::Running);
    t.action = "workflow:children/region.yaml".into();
    t.with_items = true;
    t.items_total = Some(5);
    t.running = 2;
    t.queued = 1;
    let facts = run(WorkflowStatus::Running, vec![t], Vec::new());
    let why = &facts.explain().tasks[0].why;
    assert!(
        why.contains("2 child runs running")
            && why.contains("1 child run dispatched, waiting for an executor to start it")
            && !why.contains("no worker consumes"),
        "{why}"
    );
}

#[test]
fn a_waiting_task_names_its_open_needs_and_their_states() {
    let mut t = task("c", TaskStatus::Waiting);
    t.needs = vec![
        NeedFacts {
            name: "a".into(),
            status: "succeeded".into(),
        },
        NeedFacts {
            name: "b".into(),
            status: "queued".into(),
        },
    ];
    let facts = run(WorkflowStatus::Running, vec![t], Vec::new());
    assert_eq!(
        facts.explain().tasks[0].why,
        "waiting on needs: `b` (queued)"
    );
}

#[test]
fn failures_say_which_attempt_on_which_item_and_whether_retries_are_exhausted() {
    let mut t = task("p", TaskStatus::Failed);
    t.with_items = true;
    t.max_attempts = 3;
    t.items_failed = 2;
    t.last_failure = Some(FailureFacts {
        item_index: Some(4),
        input: abbreviate(&json!({"record": "x".repeat(100)}), 20),
        attempt: 3,
        status: ExecutionStatus::Failed,
        error: Some("boom".into()),
    });
    let facts = run(WorkflowStatus::Failed, vec![t], Vec::new());
    assert_eq!(
        facts.explain().tasks[0].why,
        "failed on item 4 (input {\"record\":\"xxxxxxxx…): attempt 3 of 3, retries exhausted: boom (2 items failed)"
    );
}

#[test]
fn a_full_concurrency_window_and_a_scheduled_retry_are_told() {
    let mut t = task("p", TaskStatus::Running);
    t.with_items = true;
    t.items_total = Some(10);
    t.concurrency = Some(2);
    t.running = 1;
    t.retrying = 1;
    t.pending = 7;
    t.workers = vec!["w1".into()];
    t.max_attempts = 3;
    t.next_retry_at = Some(at("2026-01-01T00:02:00Z"));
    t.last_failure = Some(FailureFacts {
        item_index: Some(1),
        input: "2".into(),
        attempt: 1,
        status: ExecutionStatus::Failed,
        error: Some("flaky".into()),
    });
    let facts = run(WorkflowStatus::Running, vec![t], Vec::new());
    assert_eq!(
        facts.explain().tasks[0].why,
        "0/10 items done (0 failed); 1 running on w1; \
         concurrency window full (2 in flight / limit 2), 7 items wait for a slot; \
         retry scheduled at 2026-01-01 00:02:00.000 UTC (attempt 2 of 3 next; last error on item 1 (input 2): flaky)"
    );
}

#[test]
fn skips_and_cancellations_restate_the_stored_reason() {
    let mut s = task("s", TaskStatus::Skipped);
    s.error = Some("trigger `all_success` not met (a failed)".into());
    let mut c = task("c", TaskStatus::Canceled);
    c.finished_at = Some(at("2026-01-01T00:00:30Z"));
    let facts = run(WorkflowStatus::Canceled, vec![s, c], Vec::new());
    let e = facts.explain();
    assert_eq!(
        e.tasks[0].why,
        "skipped: trigger `all_success` not met (a failed)"
    );
    assert_eq!(
        e.tasks[1].why,
        "canceled by the cancellation of the run at 2026-01-01 00:00:30.000 UTC"
    );
}

#[test]
fn an_exit_handler_says_it_waits_for_the_main_tasks() {
    let mut t = task("clean", TaskStatus::Waiting);
    t.exit_handler = true;
    let facts = run(WorkflowStatus::Running, vec![t], Vec::new());
    let why = &facts.explain().tasks[0].why;
    assert!(
        why.starts_with("exit handler — waiting for every main task"),
        "{why}"
    );
}

#[test]
fn abbreviation_cuts_on_characters_and_marks_the_cut() {
    assert_eq!(abbreviate(&json!("héllo wörld"), 6), "\"héll…");
    assert_eq!(abbreviate(&json!([1, 2]), 10), "[1,2]");
}

#[test]
fn a_task_held_by_the_run_wide_limit_is_shown_waiting_and_said_why() {
    let mut fan = task("fan", TaskStatus::Running);
    fan.with_items = true;
    fan.items_total = Some(10);
    fan.pending = 10;
    fan.shown_status = shown_status(fan.status, fan.running, fan.queued, fan.pending);
    assert_eq!(fan.shown_status, "waiting");
    let mut plain = task("plain", TaskStatus::Running);
    plain.running = 2;
    plain.shown_status = shown_status(plain.status, plain.running, plain.queued, 0);
    let mut facts = run(WorkflowStatus::Running, vec![fan, plain], Vec::new());
    facts.parallelism = Some(2);
    facts.in_flight = 2;
    let e = facts.explain();
    assert_eq!(
        e.tasks[0].why,
        "0/10 items done (0 failed); 10 items wait for a run-wide slot (parallelism 2, 2 in flight in the run)"
    );
    assert_eq!(
        e.run,
        "running: waiting on `fan` (waiting), `plain` (running); 2 of 2 run-wide slots (`parallelism`) in use"
    );
}
