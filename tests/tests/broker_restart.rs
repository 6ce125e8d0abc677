//! RabbitMQ restarted mid-run: daemons pause, reconnect, and the run
//! completes. Its own binary, because it stops the broker for everyone.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use weft_common::WorkflowStatus;
use weft_tests::{Stack, StackOptions, wait_for_items};

fn rabbitmqctl(args: &[&str]) {
    let status = Command::new("rabbitmqctl")
        .args(args)
        .status()
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_pauses_work_and_loses_nothing() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let yaml = r#"
name: across-restart
tasks:
  each:
    with_items: "{{ range(20) | list }}"
    concurrency: 2
    action: sleep
    input: { seconds: 0.1 }
  join: { needs: [each], action: echo, input: { n: "{{ tasks.each.result | length }}" } }
"#;
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    // Let a few items finish, then restart the broker under the run.
    // Let a few items finish first.
    wait_for_items(&pool, id, "each", 3, Duration::from_secs(30))
        .await
        .expect("progress");
    rabbitmqctl(&["stop_app"]);
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    let run = stack
        .wait(&pool, id, Duration::from_secs(120))
        .await
        .expect("finishes after the restart");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let result: serde_json::Value = sqlx::query_scalar(
        "SELECT result FROM task_executions WHERE workflow_execution_id = $1 AND task_name = 'join'",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("join");
    assert_eq!(result, json!({"n": 20}));
}
