//! Retry conditions: `retry.when` sees the failed attempt's `exit_code`
//! (reported by the worker with the completion), `error`, `attempt` and
//! `timed_out`, and stops the retries when false; a `when` that cannot be
//! evaluated fails the task without a retry, saying why; `max_duration`
//! stops new attempts once the time is spent. What is counted is what ran:
//! the attempts (executions) each task had.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_tests::{Stack, StackOptions};

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| Stack::start(StackOptions::default()).expect("the test stack starts"))
}

async fn finish(pool: &PgPool, id: WorkflowExecutionId) -> weft_store::runs::RunRow {
    stack()
        .wait(pool, id, Duration::from_secs(60))
        .await
        .expect("the run finishes")
}

/// The attempts a task had, in order: (status, exit code, error).
async fn attempts(
    pool: &PgPool,
    id: WorkflowExecutionId,
    task: &str,
) -> Vec<(String, Option<i32>, Option<String>)> {
    sqlx::query_as(
        "SELECT e.status, (e.logs->>'exit_code')::int, e.error FROM executions e \
         JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE t.workflow_execution_id = $1 AND t.task_name = $2 ORDER BY e.attempt",
    )
    .bind(id.as_uuid())
    .bind(task)
    .fetch_all(pool)
    .await
    .expect("attempts")
}

async fn task_error(pool: &PgPool, id: WorkflowExecutionId, task: &str) -> String {
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT error FROM task_executions WHERE workflow_execution_id = $1 AND task_name = $2",
    )
    .bind(id.as_uuid())
    .bind(task)
    .fetch_one(pool)
    .await
    .expect("task")
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_retries_a_temporary_failure_and_not_a_bad_configuration() {
    let pool = stack().pool().await.expect("pool");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/retry-when.yaml");
    let id = weft_tests::submit_file(&pool, &path, json!({}))
        .await
        .expect("submit");
    let run = finish(&pool, id).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);

    // Exit 75 twice, retried: three attempts, the exit codes reported.
    let fetch = attempts(&pool, id, "fetch").await;
    let codes: Vec<Option<i32>> = fetch.iter().map(|(_, code, _)| *code).collect();
    assert_eq!(codes, [Some(75), Some(75), Some(0)], "{fetch:?}");
    // Exit 3 is not in `when`'s list: one attempt of five.
    let deploy = attempts(&pool, id, "deploy").await;
    assert_eq!(deploy.len(), 1, "{deploy:?}");
    assert_eq!(deploy[0].1, Some(3));
    let output = run.output.expect("an output");
    assert_eq!(output["fetched"], json!(["fetched on try 3"]));
    assert_eq!(output["deploy"], json!("failed"));
    let why = output["why"].as_str().unwrap_or_default();
    assert!(
        why.contains("invalid configuration") && why.contains("not retried: `retry.when` is false"),
        "{why}"
    );
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_sees_the_attempt_and_the_error() {
    let yaml = r#"
name: when-attempt
tasks:
  flaky:
    with_items: [a, b]
    action: fail
    input: { message: "down: {{ item }}" }
    retry:
      attempts: 9
      delay: 10ms
      when: "{{ attempt < 3 and 'down' in error and not timed_out }}"
"#;
    let pool = stack().pool().await.expect("pool");
    let id = stack()
        .submit(&pool, yaml, json!({}))
        .await
        .expect("submit");
    let run = finish(&pool, id).await;
    assert_eq!(run.status, WorkflowStatus::Failed);
    // Per item: attempts 1 and 2 are retried, the third is not.
    let flaky = attempts(&pool, id, "flaky").await;
    assert_eq!(flaky.len(), 6, "{flaky:?}");
    assert!(
        task_error(&pool, id, "flaky")
            .await
            .contains("not retried: `retry.when` is false")
    );
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_when_that_cannot_be_evaluated_fails_the_task_without_a_retry() {
    let yaml = r#"
name: when-broken
tasks:
  once:
    action: fail
    input: { message: "not json" }
    retry: { attempts: 5, delay: 10ms, when: "{{ (error | fromjson).retry }}" }
"#;
    let pool = stack().pool().await.expect("pool");
    let id = stack()
        .submit(&pool, yaml, json!({}))
        .await
        .expect("submit");
    let run = finish(&pool, id).await;
    assert_eq!(run.status, WorkflowStatus::Failed);
    assert_eq!(attempts(&pool, id, "once").await.len(), 1);
    let error = task_error(&pool, id, "once").await;
    assert!(
        error.contains("not json")
            && error.contains("`retry.when` could not be evaluated")
            && error.contains("not JSON"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_stops_new_attempts() {
    // No `attempts`: with `max_duration`, tries until the time is spent.
    let yaml = r#"
name: max-duration
tasks:
  slow:
    action: shell
    input: { command: [sh, -c, "sleep 0.2; exit 1"] }
    retry: { max_duration: 2s, delay: 300ms, backoff: 1.0 }
"#;
    let pool = stack().pool().await.expect("pool");
    let started = std::time::Instant::now();
    let id = stack()
        .submit(&pool, yaml, json!({}))
        .await
        .expect("submit");
    let run = finish(&pool, id).await;
    assert_eq!(run.status, WorkflowStatus::Failed);
    // Each try takes ≥ 0.5 s with its delay: at most 4 start within 2 s.
    let slow = attempts(&pool, id, "slow").await;
    assert!((2..=4).contains(&slow.len()), "{slow:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let error = task_error(&pool, id, "slow").await;
    assert!(error.contains("past retry.max_duration 2.0s"), "{error}");
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );
}
