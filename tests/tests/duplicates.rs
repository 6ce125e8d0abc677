//! Two executors apply the same runs while every `execution.completed` is
//! delivered twice: no task execution, execution or dispatch is duplicated
//! and every run succeeds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use weft_common::WorkflowStatus;
use weft_tests::{Stack, StackOptions, duplicate_completions};

const WORKFLOW: &str = r#"
name: dup
tasks:
  start: { action: echo, input: { n: 3 } }
  fan:
    needs: [start]
    with_items: "{{ range(tasks.start.result.n * 4) | list }}"
    concurrency: 5
    action: echo
    input: { i: "{{ item }}" }
  left: { needs: [fan], action: noop }
  right: { needs: [fan], action: noop }
  join: { needs: [left, right], action: echo, input: { n: "{{ tasks.fan.result | length }}" } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_completions_with_two_executors_change_nothing() {
    let stack = Stack::start(StackOptions {
        executors: 2,
        ..StackOptions::default()
    })
    .expect("stack");
    let pool = stack.pool().await.expect("pool");

    let stop = CancellationToken::new();
    let duplicated = Arc::new(AtomicUsize::new(0));
    let duplicator = duplicate_completions(&stack, duplicated.clone(), stop.clone())
        .await
        .expect("duplicator");

    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(
            stack
                .submit(&pool, WORKFLOW, json!({}))
                .await
                .expect("submit"),
        );
    }
    for id in &ids {
        let run = stack
            .wait(&pool, *id, Duration::from_secs(120))
            .await
            .expect("finishes");
        assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    }
    stop.cancel();
    let _ = duplicator.await;
    assert!(
        duplicated.load(Ordering::Relaxed) > 0,
        "no completion was duplicated"
    );

    let uuids: Vec<uuid::Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    let tasks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM task_executions WHERE workflow_execution_id = ANY($1)",
    )
    .bind(&uuids)
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(tasks, 20 * 5, "one task execution per (run, task)");
    let executions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM executions WHERE workflow_execution_id = ANY($1)")
            .bind(&uuids)
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(
        executions,
        20 * (1 + 12 + 3),
        "one execution per item, no retries"
    );
    let results: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT result FROM task_executions WHERE workflow_execution_id = ANY($1) AND task_name = 'join'",
    )
    .bind(&uuids)
    .fetch_all(&pool)
    .await
    .expect("results");
    assert!(
        results.iter().all(|r| *r == json!({"n": 12})),
        "{results:?}"
    );
}
