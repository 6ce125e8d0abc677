//! Sub-workflows (`workflow:` tasks): every item's child run is created
//! once and reports back once, also when its dispatch is delivered twice
//! at the same instant; the task's result is the children's outputs in
//! item order; cancelling the parent cancels its children (and theirs);
//! recursion stops at `max_depth` with a sentence that says so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use weft_common::{Envelope, Message, WorkflowExecutionId, WorkflowStatus};
use weft_executor::{Applied, Engine, EngineConfig};
use weft_tests::{Stack, StackOptions};

/// Writes `files` (name, YAML) into a fresh folder and returns it.
fn folder(files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-subworkflows-{}", Uuid::now_v7()));
    for (name, yaml) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
        std::fs::write(path, yaml).expect("write");
    }
    dir
}

/// Child runs of `parent`: (id, status, parent execution, depth).
async fn children_of(pool: &PgPool, parent: WorkflowExecutionId) -> Vec<(Uuid, String, Uuid, i32)> {
    sqlx::query_as(
        "SELECT id, status, parent_execution_id, depth FROM workflow_executions \
         WHERE parent_run_id = $1 ORDER BY created_at",
    )
    .bind(parent.as_uuid())
    .fetch_all(pool)
    .await
    .expect("children")
}

async fn audit_clean(pool: &PgPool, id: WorkflowExecutionId) {
    let mut conn = pool.acquire().await.expect("conn");
    let violations = weft_store::audit::audit(&mut conn, Some(id), 60.0)
        .await
        .expect("audit");
    assert!(violations.is_empty(), "{violations:#?}");
}

const CHILD: &str = "name: child
input:
  n: null
output:
  n: \"{{ input.n }}\"
  doubled: \"{{ tasks.double.result.v }}\"
tasks:
  first:
    action: echo
    input: { v: \"{{ input.n }}\" }
  double:
    needs: [first]
    action: echo
    input: { v: \"{{ tasks.first.result.v * 2 }}\" }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_item_runs_one_child_and_the_result_is_their_outputs_in_order() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let parent = "name: parent
tasks:
  each:
    with_items: [1, 2, 3, 4, 5, 6, 7]
    concurrency: 3
    workflow: lib/child.yaml
    input: { n: \"{{ item }}\" }
  sum:
    needs: [each]
    action: echo
    input: { total: \"{{ tasks.each.result | map(attribute='doubled') | sum }}\" }
";
    let dir = folder(&[("parent.yaml", parent), ("lib/child.yaml", CHILD)]);
    let id = weft_tests::submit_file(&pool, &dir.join("parent.yaml"), json!({}))
        .await
        .expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let (result,): (Value,) = sqlx::query_as(
        "SELECT result FROM task_executions WHERE workflow_execution_id = $1 AND task_name = 'each'",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("result");
    let expected: Vec<Value> = (1..=7).map(|n| json!({"n": n, "doubled": n * 2})).collect();
    assert_eq!(result, Value::Array(expected));
    let (total,): (Value,) = sqlx::query_as(
        "SELECT result FROM task_executions WHERE workflow_execution_id = $1 AND task_name = 'sum'",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("sum");
    assert_eq!(total, json!({"total": 56}));
    // One child per item, each carrying out a different execution, at
    // depth 1, each succeeded — and each child's own tasks ran once.
    let children = children_of(&pool, id).await;
    assert_eq!(children.len(), 7, "{children:?}");
    let executions: std::collections::HashSet<Uuid> = children.iter().map(|c| c.2).collect();
    assert_eq!(executions.len(), 7);
    assert!(
        children.iter().all(|c| c.1 == "succeeded" && c.3 == 1),
        "{children:?}"
    );
    for (child, ..) in &children {
        let (ran,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM executions WHERE workflow_execution_id = $1 AND status = 'succeeded'",
        )
        .bind(child)
        .fetch_one(&pool)
        .await
        .expect("count");
        assert_eq!(ran, 2, "child {child}");
        audit_clean(&pool, WorkflowExecutionId::from(*child)).await;
    }
    audit_clean(&pool, id).await;
}

/// The same child dispatch applied twice at the same instant, and once more
/// after: one child run, one `Changed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_dispatch_delivered_twice_starts_one_child() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let parent = "name: parent\ntasks:\n  call:\n    workflow: child.yaml\n    input: { n: 4 }\n";
    let dir = folder(&[("parent.yaml", parent), ("child.yaml", CHILD)]);
    let id = weft_tests::submit_file(&pool, &dir.join("parent.yaml"), json!({}))
        .await
        .expect("submit");
    let engine = Engine::new(pool.clone(), EngineConfig::default());
    let applied = engine
        .apply(&Envelope::new(weft_common::message::WorkflowSubmitted {
            workflow_execution_id: id,
        }))
        .await
        .expect("start");
    assert_eq!(applied, Applied::Changed);
    // The task's dispatch, as the relay would publish it.
    let payloads: Vec<(Value,)> = sqlx::query_as("SELECT payload FROM outbox ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("outbox");
    let dispatch = payloads
        .into_iter()
        .filter_map(|(p,)| serde_json::from_value::<Envelope>(p).ok())
        .find(|e| matches!(&e.message, Message::Dispatch(d) if d.child))
        .expect("the child dispatch is in the outbox");
    assert_eq!(dispatch.route().1, "execution.child");
    let (a, b) = tokio::join!(engine.apply(&dispatch), engine.apply(&dispatch));
    let mut outcomes = [a.expect("first"), b.expect("second")];
    outcomes.sort_by_key(|a| a.as_str());
    assert_eq!(outcomes, [Applied::Changed, Applied::Duplicate]);
    assert_eq!(
        engine.apply(&dispatch).await.expect("third"),
        Applied::Duplicate
    );
    let children = children_of(&pool, id).await;
    assert_eq!(children.len(), 1, "{children:?}");
    let (status,): (String,) = sqlx::query_as("SELECT status FROM executions WHERE id = $1")
        .bind(children[0].2)
        .fetch_one(&pool)
        .await
        .expect("execution");
    assert_eq!(status, "running");
    audit_clean(&pool, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_the_parent_cancels_its_children_and_theirs() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let parent = "name: parent\ntasks:\n  call:\n    workflow: middle.yaml\n";
    let middle = "name: middle\ntasks:\n  call:\n    workflow: leaf.yaml\n";
    let leaf = "name: leaf\ntasks:\n  wait:\n    action: sleep\n    input: { seconds: 60 }\n";
    let dir = folder(&[
        ("parent.yaml", parent),
        ("middle.yaml", middle),
        ("leaf.yaml", leaf),
    ]);
    let id = weft_tests::submit_file(&pool, &dir.join("parent.yaml"), json!({}))
        .await
        .expect("submit");
    // Wait for the grandchild's sleep to run.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let grandchild = loop {
        let found: Option<(Uuid,)> = sqlx::query_as(
            "SELECT g.id FROM workflow_executions g \
             JOIN workflow_executions m ON m.id = g.parent_run_id \
             JOIN executions e ON e.workflow_execution_id = g.id \
             WHERE m.parent_run_id = $1 AND e.status = 'running'",
        )
        .bind(id.as_uuid())
        .fetch_optional(&pool)
        .await
        .expect("poll");
        if let Some((g,)) = found {
            break g;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the grandchild never ran"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut tx = pool.begin().await.expect("tx");
    let requested = weft_store::cancel::request(&mut tx, id)
        .await
        .expect("cancel");
    tx.commit().await.expect("commit");
    assert!(
        matches!(requested, weft_store::cancel::Requested::Accepted { .. }),
        "{requested:?}"
    );
    let run = stack
        .wait(&pool, id, Duration::from_secs(30))
        .await
        .expect("the parent ends");
    assert_eq!(run.status, WorkflowStatus::Canceled, "{:?}", run.error);
    let middle_runs = children_of(&pool, id).await;
    assert_eq!(middle_runs.len(), 1);
    assert_eq!(middle_runs[0].1, "canceled");
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM workflow_executions WHERE id = $1")
            .bind(grandchild)
            .fetch_one(&pool)
            .await
            .expect("grandchild");
    assert_eq!(status, "canceled");
    audit_clean(&pool, id).await;
    audit_clean(&pool, WorkflowExecutionId::from(middle_runs[0].0)).await;
    audit_clean(&pool, WorkflowExecutionId::from(grandchild)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursion_deeper_than_max_depth_fails_the_task_saying_so() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let forever = "name: forever\ntasks:\n  again:\n    workflow: forever.yaml\n    max_depth: 2\n";
    let dir = folder(&[("forever.yaml", forever)]);
    let id = weft_tests::submit_file(&pool, &dir.join("forever.yaml"), json!({}))
        .await
        .expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(30))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Failed);
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("max_depth of 2") && error.contains("nested 3 deep"),
        "{error}"
    );
    // Depth 1 and depth 2 were started; depth 3 never was.
    let depths: Vec<(i32, String)> = sqlx::query_as(
        "SELECT depth, status FROM workflow_executions WHERE depth > 0 ORDER BY depth",
    )
    .fetch_all(&pool)
    .await
    .expect("depths");
    assert_eq!(
        depths,
        vec![(1, "failed".to_owned()), (2, "failed".to_owned())]
    );
    audit_clean(&pool, id).await;
}

#[test]
fn the_examples_resolve_their_sub_workflows() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    let fan_out = weft_tests::load_bundle(&dir.join("fan-out-children.yaml")).expect("valid");
    assert_eq!(fan_out.files().len(), 2);
    let flip = weft_tests::load_bundle(&dir.join("coin-flip.yaml")).expect("valid");
    assert_eq!(flip.files().len(), 1, "a recursive workflow is stored once");
}

/// A parent with one child started but not run (no daemons: the test
/// applies the messages), for corrupting.
async fn parent_with_a_pending_child(stack: &Stack) -> (PgPool, WorkflowExecutionId, Uuid, Uuid) {
    let pool = stack.pool().await.expect("pool");
    let parent = "name: parent\ntasks:\n  call:\n    workflow: child.yaml\n    input: { n: 4 }\n";
    let dir = folder(&[("parent.yaml", parent), ("child.yaml", CHILD)]);
    let id = weft_tests::submit_file(&pool, &dir.join("parent.yaml"), json!({}))
        .await
        .expect("submit");
    let engine = Engine::new(pool.clone(), EngineConfig::default());
    engine
        .apply(&Envelope::new(weft_common::message::WorkflowSubmitted {
            workflow_execution_id: id,
        }))
        .await
        .expect("start");
    let (payload,): (Value,) =
        sqlx::query_as("SELECT payload FROM outbox WHERE routing_key = 'execution.child'")
            .fetch_one(&pool)
            .await
            .expect("the child dispatch");
    let dispatch: Envelope = serde_json::from_value(payload).expect("an envelope");
    assert_eq!(
        engine.apply(&dispatch).await.expect("child"),
        Applied::Changed
    );
    let children = children_of(&pool, id).await;
    (pool, id, children[0].0, children[0].2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_finds_a_broken_parent_and_child() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let (pool, id, child, execution) = parent_with_a_pending_child(&stack).await;
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );

    // The parent execution ended while its child still runs: an orphan.
    sqlx::query("UPDATE executions SET status = 'failed', finished_at = now() WHERE id = $1")
        .bind(execution)
        .execute(&pool)
        .await
        .expect("corrupt");
    let found = weft_tests::violations(&pool, id).await;
    assert!(
        found
            .iter()
            .any(|v| v.starts_with("child_run_has_a_waiting_parent")
                && v.contains(&child.to_string())),
        "{found:?}"
    );
    sqlx::query("UPDATE executions SET status = 'running', finished_at = NULL WHERE id = $1")
        .bind(execution)
        .execute(&pool)
        .await
        .expect("mend");

    // The child ended an hour ago, but its end never reached the parent.
    sqlx::query(
        "UPDATE workflow_executions SET status = 'succeeded', finished_at = now() - interval '1 hour' \
         WHERE id = $1",
    )
    .bind(child)
    .execute(&pool)
    .await
    .expect("corrupt");
    let found = weft_tests::violations(&pool, id).await;
    assert!(
        found.iter().any(|v| v.starts_with("child_run_end_reported")
            && v.contains(&child.to_string())
            && v.contains("still running")),
        "{found:?}"
    );
    sqlx::query(
        "UPDATE workflow_executions SET status = 'pending', finished_at = NULL WHERE id = $1",
    )
    .bind(child)
    .execute(&pool)
    .await
    .expect("mend");

    // A child one level too deep.
    sqlx::query("UPDATE workflow_executions SET depth = 2 WHERE id = $1")
        .bind(child)
        .execute(&pool)
        .await
        .expect("corrupt");
    let found = weft_tests::violations(&pool, id).await;
    assert!(
        found
            .iter()
            .any(|v| v.starts_with("child_run_lineage") && v.contains("depth 2")),
        "{found:?}"
    );

    // The execution runs, but nothing carries it out.
    sqlx::query("DELETE FROM workflow_executions WHERE id = $1")
        .bind(child)
        .execute(&pool)
        .await
        .expect("corrupt");
    let found = weft_tests::violations(&pool, id).await;
    assert!(
        found
            .iter()
            .any(|v| v.starts_with("running_execution_has_a_runner") && v.contains("task `call`")),
        "{found:?}"
    );
}

/// `timeout` bounds the child run as a whole: the reaper times the
/// execution out and cancels its child; the retry starts a new child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_child_is_canceled_and_the_retry_starts_a_new_one() {
    use weft_tests::process::Daemon;
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let env = [
        ("WEFT_DATABASE_URL", stack.database_url.as_str()),
        ("WEFT_AMQP_URL", stack.amqp_url.as_str()),
        ("WEFT_REAPER_INTERVAL", "0.3"),
        ("WEFT_HEARTBEAT_GRACE", "2"),
        ("WEFT_HEARTBEAT_INTERVAL", "0.5"),
    ];
    let _executor = Daemon::start("executor", &["executor"], &env).expect("executor");
    let _worker = Daemon::start("worker", &["worker"], &env).expect("worker");
    let parent = "name: parent\ntasks:\n  call:\n    workflow: slow.yaml\n    timeout: 2s\n    retry: { attempts: 2, delay: 100ms }\n";
    let slow = "name: slow\ntasks:\n  wait:\n    action: sleep\n    input: { seconds: 60 }\n";
    let dir = folder(&[("parent.yaml", parent), ("slow.yaml", slow)]);
    let id = weft_tests::submit_file(&pool, &dir.join("parent.yaml"), json!({}))
        .await
        .expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Failed, "{:?}", run.error);
    let attempts: Vec<(i32, String)> = sqlx::query_as(
        "SELECT attempt, status FROM executions WHERE workflow_execution_id = $1 ORDER BY attempt",
    )
    .bind(id.as_uuid())
    .fetch_all(&pool)
    .await
    .expect("attempts");
    assert_eq!(
        attempts,
        vec![(1, "timed_out".to_owned()), (2, "timed_out".to_owned())]
    );
    // One child per attempt, each canceled (its sleep killed), none left
    // running.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let children = children_of(&pool, id).await;
        assert_eq!(children.len(), 2, "{children:?}");
        if children.iter().all(|c| c.1 == "canceled") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{children:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    audit_clean(&pool, id).await;
}
