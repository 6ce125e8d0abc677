//! The engine end to end: one executor and one worker against real
//! PostgreSQL and RabbitMQ, one database and vhost for this binary.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_tests::{Stack, StackOptions};
use weft_worker::{ActionContext, ActionError, ActionRegistry};

const TIMEOUT: Duration = Duration::from_secs(60);

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        Stack::start(StackOptions {
            actions,
            ..StackOptions::default()
        })
        .expect("the test stack starts")
    })
}

/// The built-ins and `nap_echo {ms, …}`: sleeps `ms` milliseconds, then
/// returns its input — an action whose result names its item and whose
/// duration the workflow picks, to make items finish out of order.
fn actions() -> ActionRegistry {
    let mut registry = ActionRegistry::with_builtins();
    registry.register("nap_echo", |ctx: ActionContext| async move {
        let ms = ctx.input["ms"].as_u64().ok_or_else(|| {
            ActionError::new(format!(
                "nap_echo: `ms` must be a whole number, not {}",
                ctx.input["ms"]
            ))
        })?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(ctx.input)
    });
    registry
}

async fn run(yaml: &str, input: Value) -> (PgPool, WorkflowExecutionId, weft_store::runs::RunRow) {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let id = stack.submit(&pool, yaml, input).await.expect("submit");
    let run = stack.wait(&pool, id, TIMEOUT).await.expect("run finishes");
    (pool, id, run)
}

/// (task name → (status, result, error)) of a run.
async fn tasks(
    pool: &PgPool,
    id: WorkflowExecutionId,
) -> std::collections::BTreeMap<String, (String, Value, Option<String>)> {
    sqlx::query_as::<_, (String, String, Option<Value>, Option<String>)>(
        "SELECT task_name, status, result, error FROM task_executions WHERE workflow_execution_id = $1",
    )
    .bind(id.as_uuid())
    .fetch_all(pool)
    .await
    .expect("tasks")
    .into_iter()
    .map(|(n, s, r, e)| (n, (s, r.unwrap_or_default(), e)))
    .collect()
}

async fn executions_of(pool: &PgPool, id: WorkflowExecutionId, task: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM executions e JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE t.workflow_execution_id = $1 AND t.task_name = $2",
    )
    .bind(id.as_uuid())
    .bind(task)
    .fetch_one(pool)
    .await
    .expect("count")
}

#[tokio::test]
async fn a_linear_chain_passes_data_along() {
    let yaml = r#"
name: chain
input:
  greeting: hello
output:
  last: "{{ tasks.c.result.text }}"
tasks:
  a:
    action: echo
    input: { text: "{{ input.greeting }}" }
  b:
    needs: [a]
    action: echo
    input: { text: "{{ tasks.a.result.text }} world" }
  c:
    needs: [b]
    action: echo
    input: { text: "{{ tasks.b.result.text | upper }}", n: "{{ 2 + 3 }}" }
"#;
    let (pool, id, run) = run(yaml, json!({})).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.output, Some(json!({"last": "HELLO WORLD"})));
    let t = tasks(&pool, id).await;
    assert_eq!(t["c"].1, json!({"text": "HELLO WORLD", "n": 5}));
}

#[tokio::test]
async fn a_diamond_joins_exactly_once() {
    let yaml = r#"
name: diamond
tasks:
  top: { action: echo, input: { v: 1 } }
  left: { needs: [top], action: echo, input: { v: "{{ tasks.top.result.v + 1 }}" } }
  right: { needs: [top], action: echo, input: { v: "{{ tasks.top.result.v + 2 }}" } }
  join:
    needs: [left, right]
    action: echo
    input: { sum: "{{ tasks.left.result.v + tasks.right.result.v }}" }
"#;
    let (pool, id, run) = run(yaml, json!({})).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    assert_eq!(tasks(&pool, id).await["join"].1, json!({"sum": 5}));
    assert_eq!(executions_of(&pool, id, "join").await, 1);
}

#[tokio::test]
async fn with_items_respects_concurrency_and_keeps_item_order() {
    let yaml = r#"
name: fan
tasks:
  make: { action: echo, input: { xs: "{{ range(50) | list }}" } }
  each:
    needs: [make]
    with_items: "{{ tasks.make.result.xs }}"
    concurrency: 3
    action: nap_echo
    input: { ms: "{{ 60 if item % 3 == 0 else 10 }}", i: "{{ item }}", idx: "{{ item_index }}" }
"#;
    let (pool, id, run) = run(yaml, json!({})).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let each = &tasks(&pool, id).await["each"].1;
    let results = each.as_array().expect("a list");
    assert_eq!(results.len(), 50);
    // Results come back in item order, whatever order items finished in:
    // the k-th result is the k-th item's.
    for (k, result) in results.iter().enumerate() {
        assert_eq!(
            (&result["i"], &result["idx"]),
            (&json!(k), &json!(k)),
            "result {k} is another item's: {each}"
        );
    }
    // And they did finish out of order (every third item naps longer), or
    // the check above proves nothing.
    let finished: Vec<i32> = sqlx::query_scalar(
        "SELECT e.item_index FROM executions e JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE t.workflow_execution_id = $1 AND t.task_name = 'each' ORDER BY e.finished_at, e.item_index",
    )
    .bind(id.as_uuid())
    .fetch_all(&pool)
    .await
    .expect("finish order");
    assert!(
        finished.windows(2).any(|w| w[0] > w[1]),
        "items finished in item order: {finished:?}"
    );
    // Never more than 3 in flight: the widest overlap of the intervals the
    // worker reported, measured from the table.
    let intervals: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT e.queued_at, e.finished_at FROM executions e JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE t.workflow_execution_id = $1 AND t.task_name = 'each'",
    )
    .bind(id.as_uuid())
    .fetch_all(&pool)
    .await
    .expect("intervals");
    assert_eq!(intervals.len(), 50);
    let mut events: Vec<(chrono::DateTime<chrono::Utc>, i32)> = intervals
        .iter()
        .flat_map(|(s, f)| [(*s, 1), (*f, -1)])
        .collect();
    events.sort_by_key(|(t, d)| (*t, *d));
    let (mut now, mut max) = (0, 0);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    assert!(max <= 3, "{max} items were in flight at once");
    assert!(
        max >= 2,
        "items never overlapped ({max}): concurrency unused"
    );
}

#[tokio::test]
async fn a_wide_fan_out_joins_exactly_once() {
    let yaml = r#"
name: wide
tasks:
  each:
    with_items: "{{ range(500) | list }}"
    action: noop
  join:
    needs: [each]
    action: echo
    input: { n: "{{ tasks.each.result | length }}" }
"#;
    let (pool, id, run) = run(yaml, json!({})).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    assert_eq!(tasks(&pool, id).await["join"].1, json!({"n": 500}));
    assert_eq!(executions_of(&pool, id, "join").await, 1);
    assert_eq!(executions_of(&pool, id, "each").await, 500);
}

#[tokio::test]
async fn failures_route_through_triggers_and_skips_propagate() {
    let yaml = r#"
name: routing
tasks:
  work: { action: fail, input: { message: "disk full" } }
  after: { needs: [work], action: noop }
  after_after: { needs: [after], action: noop }
  tolerant: { needs: [after], trigger: none_failed, action: noop }
  on_failure: { needs: [work], trigger: one_failed, action: echo, input: { why: "{{ tasks.work.status }}" } }
  cleanup: { needs: [work], trigger: all_done, action: noop }
  only_success: { needs: [work], trigger: one_success, action: noop }
"#;
    let (pool, id, run) = run(yaml, json!({})).await;
    assert_eq!(run.status, WorkflowStatus::Failed);
    assert!(
        run.error
            .as_deref()
            .unwrap_or_default()
            .contains("disk full"),
        "{:?}",
        run.error
    );
    let t = tasks(&pool, id).await;
    let status = |n: &str| t[n].0.as_str();
    assert_eq!(status("work"), "failed");
    assert_eq!(status("after"), "skipped");
    assert_eq!(status("after_after"), "skipped");
    assert_eq!(
        status("tolerant"),
        "succeeded",
        "none_failed runs past a skip"
    );
    assert_eq!(status("on_failure"), "succeeded");
    assert_eq!(t["on_failure"].1, json!({"why": "failed"}));
    assert_eq!(status("cleanup"), "succeeded");
    assert_eq!(status("only_success"), "skipped");
}

#[tokio::test]
async fn allow_failure_lets_the_run_succeed() {
    let yaml = r#"
name: tolerated
tasks:
  flaky: { action: fail, input: { message: nope }, allow_failure: true }
  handler: { needs: [flaky], trigger: one_failed, action: noop }
"#;
    let (_, _, run) = run(yaml, json!({})).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
}

#[tokio::test]
async fn when_false_skips_the_task() {
    let yaml = r#"
name: conditional
input: { mode: fast }
tasks:
  check: { action: echo, input: { mode: "{{ input.mode }}" } }
  slow_path: { needs: [check], when: "{{ tasks.check.result.mode == 'slow' }}", action: noop }
  fast_path: { needs: [check], when: "{{ tasks.check.result.mode == 'fast' }}", action: noop }
  report: { needs: [slow_path, fast_path], trigger: none_failed, action: noop }
"#;
    let (pool, id, run) = run(yaml, json!({})).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let t = tasks(&pool, id).await;
    assert_eq!(t["slow_path"].0, "skipped");
    assert_eq!(t["fast_path"].0, "succeeded");
    assert_eq!(t["report"].0, "succeeded");
    assert_eq!(executions_of(&pool, id, "slow_path").await, 0);
}

#[tokio::test]
async fn a_retry_succeeds_on_the_third_attempt() {
    let dir = std::env::temp_dir().join(format!("weft-retry-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let counter = dir.join("count");
    let yaml = r#"
name: retrying
input: { counter: null }
tasks:
  flaky:
    action: shell
    input:
      command: ["sh", "-c", 'n=$(cat "$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$1"; [ "$n" -ge 3 ]', "flaky", "{{ input.counter }}"]
    retry: { attempts: 3, delay: 10ms, backoff: 2.0 }
"#;
    let (pool, id, run) = run(yaml, json!({ "counter": counter.display().to_string() })).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    assert_eq!(executions_of(&pool, id, "flaky").await, 3);
    let statuses: Vec<String> = sqlx::query_scalar(
        "SELECT status FROM executions WHERE workflow_execution_id = $1 ORDER BY attempt",
    )
    .bind(id.as_uuid())
    .fetch_all(&pool)
    .await
    .expect("statuses");
    assert_eq!(statuses, ["failed", "failed", "succeeded"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_timeout_kills_the_attempt_and_fails_the_task() {
    let yaml = r#"
name: slow
tasks:
  nap: { action: sleep, input: { seconds: 30 }, timeout: 200ms }
"#;
    let started = std::time::Instant::now();
    let (pool, id, run) = run(yaml, json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the timeout did not cut the sleep short"
    );
    assert_eq!(run.status, WorkflowStatus::Failed);
    let status: String =
        sqlx::query_scalar("SELECT status FROM executions WHERE workflow_execution_id = $1")
            .bind(id.as_uuid())
            .fetch_one(&pool)
            .await
            .expect("status");
    assert_eq!(status, "timed_out");
}

#[tokio::test]
async fn a_missing_required_input_is_refused_and_nothing_is_stored() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let yaml = "name: needs-input\ninput: { source: null }\ntasks:\n  a: { action: echo, input: { s: \"{{ input.source }}\" } }\n";
    let err = stack
        .submit(&pool, yaml, json!({}))
        .await
        .expect_err("missing input refused");
    assert!(err.to_string().contains("source"), "{err}");
    let after: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM workflow_executions WHERE workflow_name = 'needs-input'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(after, 0, "a refused submit stored its run");
}

#[tokio::test]
async fn an_empty_item_list_completes_at_once() {
    let yaml = r#"
name: empty
tasks:
  each: { with_items: [], action: noop }
  after: { needs: [each], action: echo, input: { got: "{{ tasks.each.result }}" } }
"#;
    let (pool, id, run) = run(yaml, json!({})).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    assert_eq!(tasks(&pool, id).await["after"].1, json!({"got": []}));
}

#[tokio::test]
async fn a_failed_item_fails_the_task_and_starts_no_new_items() {
    let yaml = r#"
name: item-fails
tasks:
  each:
    with_items: [1, 2, 3, 4, 5, 6]
    concurrency: 1
    action: shell
    input: { command: ["test", "{{ item }}", "-ne", "2"] }
"#;
    let (pool, id, run) = run(yaml, json!({})).await;
    assert_eq!(run.status, WorkflowStatus::Failed);
    let t = tasks(&pool, id).await;
    assert!(
        t["each"]
            .2
            .as_deref()
            .unwrap_or_default()
            .contains("item 1"),
        "{:?}",
        t["each"]
    );
    let ran: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM executions WHERE workflow_execution_id = $1 AND status <> 'canceled'",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(ran, 2, "items after the failed one must not start");
}
