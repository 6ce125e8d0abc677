//! Data sizes have limits: `--max-result-bytes` bounds each action result
//! and each rendered input, and `shell` output over its cap fails unless
//! the task sets `truncate: true`. Every case must end its run at once,
//! failed with an error naming the size and the limit — never stuck,
//! never dead-lettered, never retried forever.
//!
//! The stack runs with a 3 MiB limit (not the 4 MiB default, so that the
//! errors prove the setting reached both daemons), and its workers know a
//! `blob` action returning a string of `bytes` bytes: a result of any size
//! from an input of a few bytes.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use weft_bus::BusConfig;
use weft_common::{ResultLimit, WorkflowExecutionId, WorkflowStatus};
use weft_tests::private::PrivateRabbit;
use weft_tests::{Stack, StackOptions};
use weft_worker::{ActionContext, ActionError, ActionRegistry, WorkerConfig};

// A safety net, not a measure: under the whole suite on two cores the
// 9,000-item fan-out alone may take a minute.
const TIMEOUT: Duration = Duration::from_secs(180);
const LIMIT: usize = 3 * 1024 * 1024;

fn actions() -> ActionRegistry {
    let mut actions = ActionRegistry::with_builtins();
    actions.register("blob", |ctx: ActionContext| async move {
        let bytes = ctx.input["bytes"]
            .as_u64()
            .ok_or_else(|| ActionError::bad_input("blob", "bytes", "must be a number"))?;
        Ok(Value::String(
            "b".repeat(usize::try_from(bytes).unwrap_or(0)),
        ))
    });
    actions
}

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        Stack::start(StackOptions {
            actions,
            max_result_bytes: ResultLimit::new(LIMIT).expect("a positive limit"),
            ..StackOptions::default()
        })
        .expect("the test stack starts")
    })
}

async fn run(yaml: &str, input: Value) -> (PgPool, WorkflowExecutionId, weft_store::runs::RunRow) {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let id = stack.submit(&pool, yaml, input).await.expect("submit");
    let run = stack.wait(&pool, id, TIMEOUT).await.expect("run finishes");
    (pool, id, run)
}

/// (status, result, error) of each execution of a run, by attempt and item.
async fn executions(
    pool: &PgPool,
    id: WorkflowExecutionId,
) -> Vec<(String, Option<Value>, Option<String>)> {
    sqlx::query_as(
        "SELECT status, result, error FROM executions WHERE workflow_execution_id = $1 \
         ORDER BY attempt, item_index",
    )
    .bind(id.as_uuid())
    .fetch_all(pool)
    .await
    .expect("executions")
}

/// (status, result, error) of one task.
async fn task(
    pool: &PgPool,
    id: WorkflowExecutionId,
    name: &str,
) -> (String, Option<Value>, Option<String>) {
    sqlx::query_as(
        "SELECT status, result, error FROM task_executions \
         WHERE workflow_execution_id = $1 AND task_name = $2",
    )
    .bind(id.as_uuid())
    .bind(name)
    .fetch_one(pool)
    .await
    .expect("task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_limit_fails_each_attempt_at_once_and_the_run() {
    let yaml = r#"
name: big-result
tasks:
  big:
    action: blob
    input: { bytes: 8000000 }
    retry: { attempts: 2, delay: 10ms }
"#;
    let started = Instant::now();
    let (pool, id, run) = run(yaml, json!({})).await;
    assert_eq!(run.status, WorkflowStatus::Failed, "{:?}", run.error);
    let expected = "the result is 7.6 MiB (8,000,002 bytes), over the limit of 3 MiB \
                    (3,145,728 bytes; --max-result-bytes)";
    let failed = (
        "failed".to_owned(),
        None::<Value>,
        Some(expected.to_owned()),
    );
    // Both attempts ran (the retry policy applies as to any failure), and
    // neither stored the result.
    assert_eq!(executions(&pool, id).await, vec![failed.clone(), failed]);
    assert_eq!(
        task(&pool, id, "big").await.0,
        "failed",
        "the task fails with its last attempt"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the run ended promptly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_of_an_input_over_the_limit_fails_its_task_before_dispatch() {
    let yaml = r#"
name: big-input
input: { blob: null }
tasks:
  echo:
    action: echo
    input: { data: "{{ input.blob }}" }
  each:
    with_items: [0, 1, 2]
    action: echo
    input: { data: "{{ input.blob if item == 2 else 'small' }}" }
"#;
    let blob = "e".repeat(8_000_000);
    let (pool, id, run) = run(yaml, json!({ "blob": blob })).await;
    assert_eq!(run.status, WorkflowStatus::Failed, "{:?}", run.error);
    // Nothing was dispatched: no execution of either task exists.
    assert_eq!(executions(&pool, id).await, vec![]);
    let (status, result, error) = task(&pool, id, "echo").await;
    assert_eq!((status.as_str(), result), ("failed", None));
    assert_eq!(
        error.as_deref(),
        Some(
            "the rendered input is 7.6 MiB (8,000,011 bytes), over the limit of 3 MiB \
             (3,145,728 bytes; --max-result-bytes)"
        )
    );
    let (status, _, error) = task(&pool, id, "each").await;
    assert_eq!(status, "failed");
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.starts_with("the rendered input of item 2 (2) is 7.6 MiB")),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_output_over_the_cap_fails_naming_the_cap_unless_truncate_is_set() {
    // 12-byte lines ("0123456789a\n") up to 2,000,000 bytes, so the cap
    // falls inside a line.
    let yaml = r#"
name: chatty
input: { truncate: null }
tasks:
  talk:
    action: shell
    input:
      script: "yes 0123456789a | head -c 2000000"
      truncate: "{{ input.truncate }}"
"#;
    let (pool, id, cut) = run(yaml, json!({ "truncate": false })).await;
    assert_eq!(cut.status, WorkflowStatus::Failed, "{:?}", cut.error);
    let (status, _, error) = task(&pool, id, "talk").await;
    assert_eq!(status, "failed");
    assert_eq!(
        error.as_deref(),
        Some(
            "shell: `sh` wrote more than the output cap of 1 MiB (1,048,576 bytes) per stream: \
             stdout was 2,000,000 bytes; set `truncate: true` in the task's input to keep the \
             first whole lines within the cap"
        )
    );

    let (pool, id, kept) = run(yaml, json!({ "truncate": true })).await;
    assert_eq!(kept.status, WorkflowStatus::Succeeded, "{:?}", kept.error);
    let (_, result, _) = task(&pool, id, "talk").await;
    let result = result.expect("a result");
    assert_eq!(result["truncated"], true);
    // Whole lines only: 87,381 of them fit in 1,048,576 bytes (the 87,382nd
    // would end at byte 1,048,584).
    let lines = result["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 87_381);
    assert!(lines.iter().all(|l| l == "0123456789a"));
    assert_eq!(result["stdout"].as_str().map(str::len), Some(87_381 * 12));
    assert!(
        result.get("json").is_none(),
        "json of cut output is left out"
    );
}

/// Starts a worker on the stack's vhost with its own pool and limit,
/// and waits until its pool's queue exists (a dispatch published before
/// would wait in the outbox for the relay's next try).
async fn generous_worker(
    stack: &Stack,
    pool: &str,
    limit: usize,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let config = WorkerConfig {
        bus: BusConfig {
            url: stack.amqp_url.clone(),
            connection_name: format!("test-worker-{pool}"),
            ..BusConfig::default()
        },
        queues: vec![pool.to_owned()],
        max_result_bytes: ResultLimit::new(limit).expect("a positive limit"),
        ..WorkerConfig::default()
    };
    let worker = tokio::spawn({
        let stop = stop.clone();
        async move {
            if let Err(e) = weft_worker::run(config, actions(), stop).await {
                panic!("the test's worker stopped: {e:#}");
            }
        }
    });
    // Asked over AMQP, not `rabbitmqctl`: the stack may be on a private node.
    let queue = format!("weft.tasks.{pool}");
    let bus = weft_bus::Bus::connect(stack.bus("test-probe"), stop.child_token())
        .await
        .expect("the probe connects");
    let deadline = Instant::now() + TIMEOUT;
    while bus
        .queue_stats(&queue)
        .await
        .expect("a passive declare")
        .is_none_or(|q| q.consumers == 0)
    {
        assert!(
            Instant::now() < deadline,
            "the worker never consumed {queue}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (stop, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_over_the_executors_limit_is_stored_as_a_failed_attempt() {
    // A worker with a bigger setting than the executor's, on a pool of its
    // own: it publishes a 4 MB result the executor must not store.
    let (stop, worker) = generous_worker(stack(), "generous", 64 * 1024 * 1024).await;
    let yaml = r#"
name: generous-worker
tasks:
  big: { action: blob, input: { bytes: 4000000 }, queue: generous }
"#;
    let (pool, id, run) = run(yaml, json!({})).await;
    stop.cancel();
    let _ = worker.await;
    assert_eq!(run.status, WorkflowStatus::Failed, "{:?}", run.error);
    assert_eq!(
        executions(&pool, id).await,
        vec![(
            "failed".to_owned(),
            None,
            Some(
                "the result is 3.8 MiB (4,000,002 bytes), over the limit of 3 MiB \
                 (3,145,728 bytes; --max-result-bytes)"
                    .to_owned()
            )
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_the_broker_refuses_becomes_a_failure_instead_of_a_retry_loop() {
    // A worker whose limit is above the broker's own `max_message_size`:
    // the broker refuses its report for good. Retrying it would loop
    // forever with the run stuck; the worker reports the attempt failed
    // without its result instead. A private node with a 1 MiB
    // `max_message_size` stands for any broker set below the worker
    // (RabbitMQ's default, 128 MiB, would take a report of that size —
    // slow enough on a loaded machine to make the test a lottery).
    let rabbit =
        tokio::task::block_in_place(PrivateRabbit::start).expect("a private RabbitMQ starts");
    rabbit
        .set_max_message_size(1024 * 1024)
        .expect("max_message_size set");
    let stack = Stack::start(StackOptions {
        amqp_url: Some(rabbit.url()),
        workers: 0,
        actions,
        max_result_bytes: ResultLimit::new(LIMIT).expect("a positive limit"),
        ..StackOptions::default()
    })
    .expect("a stack on the private node");
    let (stop, worker) = generous_worker(&stack, "reckless", 64 * 1024 * 1024).await;
    let yaml = r#"
name: refused-report
tasks:
  huge: { action: blob, input: { bytes: 2000000 }, queue: reckless }
"#;
    let pool = stack.pool().await.expect("pool");
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let run = stack.wait(&pool, id, TIMEOUT).await.expect("run finishes");
    stop.cancel();
    let _ = worker.await;
    assert_eq!(run.status, WorkflowStatus::Failed, "{:?}", run.error);
    let executions = executions(&pool, id).await;
    assert_eq!(executions.len(), 1, "{executions:?}");
    let (status, result, error) = &executions[0];
    assert_eq!((status.as_str(), result), ("failed", &None));
    let error = error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("the broker refused this execution's report (")
            && error.contains("PRECONDITION")
            && error.ends_with("; its result was dropped"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_fan_outs_inputs_and_result_arrive_whole_and_in_item_order() {
    // Wider than the executions one statement writes at a task's start
    // (the rest follow in the same transaction) and than the results read
    // with their row (a long list is streamed element by element): every
    // item runs once with its own input, and the successor and the run's
    // output see every result in item order.
    let n = 9_000;
    let yaml = r#"
name: wide
input: { n: null }
tasks:
  fan: { action: echo, with_items: "{{ range(input.n) | list }}", input: { i: "{{ item }}", sq: "{{ item * item }}" } }
  join:
    needs: [fan]
    action: echo
    input:
      n: "{{ tasks.fan.result | length }}"
      ordered: "{{ tasks.fan.result | map(attribute='i') | list == range(input.n) | list }}"
      last: "{{ tasks.fan.result[-1].sq }}"
output:
  join: "{{ tasks.join.result }}"
  sum: "{{ tasks.fan.result | map(attribute='i') | sum }}"
"#;
    let (pool, id, run) = run(yaml, json!({ "n": n })).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let last = (n - 1) * (n - 1);
    assert_eq!(
        run.output,
        Some(json!({
            "join": { "n": n, "ordered": true, "last": last },
            "sum": n * (n - 1) / 2,
        }))
    );
    let (runs, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT (input->>'i')::int) FROM executions \
         WHERE workflow_execution_id = $1 AND item_index IS NOT NULL \
           AND (input->>'i')::int = item_index AND (input->>'sq')::int8 = item_index::int8 * item_index",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("executions");
    assert_eq!(
        (runs, distinct),
        (n, n),
        "one execution per item, with its own input"
    );
}
