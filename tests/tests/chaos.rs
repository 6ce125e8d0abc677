//! Chaos: 3 executors and 2 workers, as separate processes, run a few
//! hundred fan-out/fan-in workflows while the harness SIGKILLs and restarts
//! them at random moments and every `execution.completed` is delivered
//! twice. Afterwards every run succeeded, the audit is clean, no item
//! succeeded twice, and every dispatch on the wire is a committed row (and
//! every row was dispatched). Actions may run more than once here — a
//! killed worker's delivery is redelivered — so what ran is not counted;
//! `duplicates.rs` counts it where nothing crashes.
//!
//! Each of those runs holds at most 6 executions in flight
//! (`parallelism`, checked by the audit from the recorded times) and ends
//! with an exit handler, which runs once, after the join, seeing the
//! main tasks' verdict.
//!
//! Beside them run parents whose task fans out child runs (sub-workflows):
//! each item's child run is created exactly once, every child succeeds,
//! and each parent's join runs once over all its children's outputs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use weft_common::WorkflowStatus;
use weft_tests::process::Daemon;
use weft_tests::{Stack, StackOptions, duplicate_completions, spy_dispatches};

const RUNS: usize = 200;
const WORKFLOW: &str = r#"
name: chaos
parallelism: 6
tasks:
  start: { action: echo, input: { n: 8 } }
  fan:
    needs: [start]
    with_items: "{{ range(tasks.start.result.n) | list }}"
    concurrency: 4
    action: sleep
    input: { seconds: 0.1, i: "{{ item }}" }
    retry: { attempts: 10, delay: 50ms, backoff: 1.5, max_delay: 500ms }
  left: { needs: [fan], action: echo, input: { n: "{{ tasks.fan.result | length }}" }, retry: { attempts: 10, delay: 50ms } }
  right: { needs: [fan], action: noop, retry: { attempts: 10, delay: 50ms } }
  join: { needs: [left, right], action: echo, input: { n: "{{ tasks.left.result.n }}" }, retry: { attempts: 10, delay: 50ms } }
on_exit:
  report: { action: echo, input: { status: "{{ workflow.status }}", n: "{{ tasks.join.result.n }}" }, retry: { attempts: 10, delay: 50ms } }
"#;

/// Parents fanning out [`CHILDREN`] child runs each.
const PARENTS: usize = 20;
const CHILDREN: usize = 4;
const PARENT: &str = r#"
name: chaos-parent
tasks:
  fan:
    with_items: [0, 1, 2, 3]
    concurrency: 2
    workflow: chaos-child.yaml
    input: { i: "{{ item }}" }
  join: { needs: [fan], action: echo, input: { n: "{{ tasks.fan.result | length }}" }, retry: { attempts: 10, delay: 50ms } }
"#;
const CHILD: &str = r#"
name: chaos-child
input: { i: null }
output: { i: "{{ tasks.second.result.i }}" }
tasks:
  first: { action: sleep, input: { seconds: 0.1 }, retry: { attempts: 10, delay: 50ms } }
  second: { needs: [first], action: echo, input: { i: "{{ input.i }}" }, retry: { attempts: 10, delay: 50ms } }
"#;

/// A pseudo-random number below `n` (no RNG crate needed for a test).
fn random_below(n: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % n as u128) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_daemons_and_duplicating_messages_loses_and_duplicates_nothing() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let env = stack.fast_liveness_env();
    let mut daemons: Vec<Daemon> = Vec::new();
    for i in 0..3 {
        daemons
            .push(Daemon::start(&format!("executor-{i}"), &["executor"], &env).expect("executor"));
    }
    for i in 0..2 {
        daemons.push(
            Daemon::start(
                &format!("worker-{i}"),
                &["worker", "--concurrency", "8"],
                &env,
            )
            .expect("worker"),
        );
    }
    let stop = CancellationToken::new();
    let duplicated = Arc::new(AtomicUsize::new(0));
    let duplicator = duplicate_completions(&stack, duplicated.clone(), stop.clone())
        .await
        .expect("duplicator");
    let (spy, wire) = spy_dispatches(&stack, "default", stop.clone())
        .await
        .expect("spy");

    let mut ids = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        ids.push(
            stack
                .submit(&pool, WORKFLOW, json!({}))
                .await
                .expect("submit"),
        );
    }
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    let dir = std::env::temp_dir().join(format!("weft-chaos-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("chaos-parent.yaml"), PARENT).expect("write");
    std::fs::write(dir.join("chaos-child.yaml"), CHILD).expect("write");
    let mut parents = Vec::with_capacity(PARENTS);
    for _ in 0..PARENTS {
        parents.push(
            weft_tests::submit_file(&pool, &dir.join("chaos-parent.yaml"), json!({}))
                .await
                .expect("submit a parent"),
        );
    }

    // Kill a random daemon every 150–600 ms while runs are in flight, then
    // restart it after up to 400 ms.
    let started = Instant::now();
    let mut kills = 0;
    let mut executor_kills = 0;
    while started.elapsed() < Duration::from_secs(40) {
        let unfinished: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM workflow_executions WHERE id = ANY($1) AND status NOT IN ('succeeded', 'failed', 'canceled')",
        )
        .bind(&uuids)
        .fetch_one(&pool)
        .await
        .expect("count");
        if unfinished < (RUNS / 10) as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150 + random_below(450) as u64)).await;
        let victim = random_below(daemons.len());
        daemons[victim].kill();
        kills += 1;
        if daemons[victim].name.starts_with("executor") {
            executor_kills += 1;
        }
        tokio::time::sleep(Duration::from_millis(random_below(400) as u64)).await;
        daemons[victim].restart().expect("restart");
    }

    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for id in &ids {
        let run = stack
            .wait(&pool, *id, Duration::from_secs(180))
            .await
            .expect("every run finishes");
        *outcomes.entry(run.status.to_string()).or_default() += 1;
        assert_eq!(
            run.status,
            WorkflowStatus::Succeeded,
            "run {id}: {:?}",
            run.error
        );
    }
    // The exit handler succeeded once per run (a second success is a
    // second decision or a retried success), after the main tasks, seeing
    // their verdict and the join's result.
    let reports: Vec<(uuid::Uuid, serde_json::Value)> = sqlx::query_as(
        "SELECT t.workflow_execution_id, e.result FROM executions e \
         JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE t.workflow_execution_id = ANY($1) AND t.task_name = 'report' AND e.status = 'succeeded'",
    )
    .bind(&uuids)
    .fetch_all(&pool)
    .await
    .expect("reports");
    assert_eq!(reports.len(), RUNS, "exit handlers that succeeded");
    for (run, result) in &reports {
        assert_eq!(
            result,
            &json!({ "status": "succeeded", "n": 8 }),
            "run {run}"
        );
    }
    // Every parent succeeded; each item started exactly one child run (a
    // second would mean a second execution of the item: a child lost or
    // reaped), every child succeeded, and each join ran once over all.
    for id in &parents {
        let run = stack
            .wait(&pool, *id, Duration::from_secs(180))
            .await
            .expect("every parent finishes");
        assert_eq!(
            run.status,
            WorkflowStatus::Succeeded,
            "parent {id}: {:?}",
            run.error
        );
        let children: Vec<(String,)> =
            sqlx::query_as("SELECT status FROM workflow_executions WHERE parent_run_id = $1")
                .bind(id.as_uuid())
                .fetch_all(&pool)
                .await
                .expect("children");
        assert_eq!(children.len(), CHILDREN, "parent {id}: {children:?}");
        assert!(
            children.iter().all(|(s,)| s == "succeeded"),
            "parent {id}: {children:?}"
        );
        let joins: Vec<(serde_json::Value,)> = sqlx::query_as(
            "SELECT e.result FROM executions e JOIN task_executions t ON t.id = e.task_execution_id \
             WHERE t.workflow_execution_id = $1 AND t.task_name = 'join' AND e.status = 'succeeded'",
        )
        .bind(id.as_uuid())
        .fetch_all(&pool)
        .await
        .expect("joins");
        assert_eq!(joins, vec![(json!({ "n": CHILDREN }),)], "parent {id}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    stop.cancel();
    let _ = duplicator.await;
    let _ = spy.await;

    let mut conn = pool.acquire().await.expect("conn");
    let violations = weft_store::audit::audit(&mut conn, None, 60.0)
        .await
        .expect("audit");
    // Every dispatch on the wire is a committed row (a message published
    // for a transaction that then rolled back would run an action no row
    // knows of), and every row was dispatched. The same execution may be on
    // the wire more than once: a flusher killed between its publish and its
    // delete leaves the row to a relay, which publishes it again.
    // The executions a worker pool runs: every execution of this stack's
    // database but those of the parents' `workflow:` task, which the
    // executors carry out by starting a child run (and which are never on
    // a pool's queue).
    let rows: std::collections::BTreeSet<uuid::Uuid> = sqlx::query_scalar(
        "SELECT e.id FROM executions e \
         WHERE NOT EXISTS (SELECT 1 FROM workflow_executions c WHERE c.parent_execution_id = e.id)",
    )
    .fetch_all(&pool)
    .await
    .expect("executions")
    .into_iter()
    .collect();
    let wire = wire.lock().expect("lock").clone();
    let dispatched: std::collections::BTreeSet<uuid::Uuid> =
        wire.iter().map(|d| d.execution_id.as_uuid()).collect();
    let ghosts: Vec<_> = dispatched.difference(&rows).collect();
    assert!(ghosts.is_empty(), "dispatched without a row: {ghosts:?}");
    let undispatched: Vec<_> = rows.difference(&dispatched).collect();
    assert!(
        undispatched.is_empty(),
        "rows never dispatched: {undispatched:?}"
    );
    // Two successes of one item are two rows (two attempts) that no unique
    // index forbids: an item retried although it had succeeded.
    let succeeded_twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM executions WHERE workflow_execution_id = ANY($1) AND status = 'succeeded' \
         GROUP BY task_execution_id, item_index HAVING count(*) > 1) d",
    )
    .bind(&uuids)
    .fetch_one(&pool)
    .await
    .expect("count");
    let reaped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM executions WHERE workflow_execution_id = ANY($1) AND status = 'timed_out'",
    )
    .bind(&uuids)
    .fetch_one(&pool)
    .await
    .expect("count");
    println!(
        "chaos: runs={RUNS} outcomes={outcomes:?} kills={kills} (executors {executor_kills}, workers {}) duplicates_injected={} reaped={reaped} dispatches_on_wire={} (executions {}) violations={}",
        kills - executor_kills,
        duplicated.load(Ordering::Relaxed),
        wire.len(),
        rows.len(),
        violations.len()
    );
    assert!(violations.is_empty(), "{violations:#?}");
    assert_eq!(succeeded_twice, 0, "items that succeeded twice");
    assert!(kills > 0, "the chaos loop killed nothing");
    assert!(
        duplicated.load(Ordering::Relaxed) > 0,
        "no completion was duplicated"
    );
}
