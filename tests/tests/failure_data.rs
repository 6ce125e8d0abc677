//! Data from failures: a failed fan-out keeps one result per item (`null`
//! where an item did not succeed) and tells how each item ended
//! (`tasks.X.items`, in item order); `tasks.X.error` is a failed task's
//! error; the run's output is rendered for failed and canceled runs too,
//! a part that cannot be rendered left `null` with its reason in the run's
//! error. The test action counts how often it ran per item — what a retry
//! repeats is the action, so that is what is counted.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_tests::counted::{self, ran};
use weft_tests::{Stack, StackOptions};

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        Stack::start(StackOptions {
            actions: counted::registry,
            ..StackOptions::default()
        })
        .expect("the test stack starts")
    })
}

async fn finish(pool: &PgPool, id: WorkflowExecutionId) -> weft_store::runs::RunRow {
    stack()
        .wait(pool, id, Duration::from_secs(60))
        .await
        .expect("the run finishes")
}

async fn task(pool: &PgPool, id: WorkflowExecutionId, name: &str) -> (String, Option<Value>) {
    sqlx::query_as(
        "SELECT status, result FROM task_executions WHERE workflow_execution_id = $1 AND task_name = $2",
    )
    .bind(id.as_uuid())
    .bind(name)
    .fetch_one(pool)
    .await
    .expect("task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fan_out_keeps_its_items_and_the_failed_run_reports_them() {
    let yaml = r#"
name: partial
tasks:
  each:
    with_items: "{{ range(6) | list }}"
    concurrency: 2
    action: counted
    input: { value: "{{ item }}", fail: "{{ item in [1, 3] }}" }
    retry: { attempts: 2, delay: 50ms }
  handle:
    needs: [each]
    trigger: one_failed
    action: counted
    input:
      value:
        error: "{{ tasks.each.error }}"
        failed: "{{ tasks.each.items | selectattr('status', 'equalto', 'failed') | list | length }}"
        partial: "{{ tasks.each.result }}"
  never:
    needs: [each]
    action: counted
    input: { value: 1 }
output:
  results: "{{ tasks.each.result }}"
  statuses: "{{ tasks.each.items | map(attribute='status') | list }}"
  errors: "{{ tasks.each.items | map(attribute='error') | list }}"
  first: "{{ tasks.each.items[0].result }}"
  handled: "{{ tasks.handle.result.failed }}"
  handle_error: "{{ tasks.handle.error }}"
  never: "{{ tasks.never.result }}"
  never_value: "{{ tasks.never.result.value }}"
"#;
    let pool = stack().pool().await.expect("pool");
    let id = stack()
        .submit(&pool, yaml, json!({}))
        .await
        .expect("submit");
    let run = finish(&pool, id).await;
    assert_eq!(run.status, WorkflowStatus::Failed);

    // Each failing item ran twice (its retry), each other item once; with
    // `concurrency: 2`, the items after the first failure never started.
    let each = ran(id, "each");
    assert_eq!(each.get(&Some(1)), Some(&2), "{each:?}");
    assert_eq!(each.get(&Some(0)), Some(&1), "{each:?}");
    assert!(each.values().all(|n| *n <= 2), "{each:?}");
    let output = run.output.expect("a failed run has an output");
    let results = output["results"].as_array().expect("a list").clone();
    assert_eq!(results.len(), 6, "one entry per item: {output}");
    assert_eq!(results[0], json!(0));
    assert_eq!(results[1], Value::Null);
    assert_eq!(results[3], Value::Null);
    let statuses = output["statuses"].as_array().expect("a list").clone();
    assert_eq!(statuses.len(), 6, "{output}");
    assert_eq!(statuses[0], json!("succeeded"));
    assert_eq!(statuses[1], json!("failed"));
    // Every item in order: those that ran say how they ended; those that
    // never started after the failure say so.
    for (i, status) in statuses.iter().enumerate() {
        let ran_it = each.contains_key(&Some(u32::try_from(i).expect("index")));
        let status = status.as_str().expect("a status");
        if ran_it {
            assert!(
                ["succeeded", "failed"].contains(&status),
                "item {i}: {status}"
            );
            assert_eq!(results[i] == Value::Null, status == "failed", "item {i}");
        } else {
            assert!(
                ["canceled", "pending"].contains(&status),
                "item {i}: {status}"
            );
        }
    }
    assert_eq!(output["errors"][0], Value::Null);
    assert!(
        output["errors"][1]
            .as_str()
            .is_some_and(|e| e.contains("cannot take 1")),
        "{output}"
    );
    assert_eq!(output["first"], json!(0));
    assert_eq!(
        output["handle_error"],
        Value::Null,
        "a succeeded task has no error"
    );
    assert!(
        output["handled"].as_u64().is_some_and(|n| n >= 1),
        "{output}"
    );
    // A skipped task's result reads `null`; an attribute of it cannot be
    // read: that part is `null`, and the run's error says why.
    assert_eq!(output["never"], Value::Null);
    assert_eq!(output["never_value"], Value::Null);
    let error = run.error.unwrap_or_default();
    assert!(
        error.starts_with("task `each` failed") && error.contains("item 1"),
        "{error}"
    );
    assert!(
        error.contains("output `never_value` is null") && error.contains("task `never` (skipped)"),
        "{error}"
    );
    // The handler saw the fan-out's error and its partial result.
    let (status, handled) = task(&pool, id, "handle").await;
    assert_eq!(status, "succeeded");
    let handled = handled.expect("a result");
    assert!(
        handled["error"]
            .as_str()
            .is_some_and(|e| e.contains("items failed") && e.contains("cannot take 1")),
        "{handled}"
    );
    assert_eq!(handled["partial"], output["results"]);
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );

    // The audit sees a failed fan-out whose result lost an item's entry
    // (what storing only the succeeded items' results would leave).
    sqlx::query(
        "UPDATE task_executions SET result = result - 1 \
         WHERE workflow_execution_id = $1 AND task_name = 'each'",
    )
    .bind(id.as_uuid())
    .execute(&pool)
    .await
    .expect("corrupt");
    let found = weft_tests::violations(&pool, id).await;
    assert!(
        found
            .iter()
            .any(|v| v.starts_with("fan_out_result_per_item")
                && v.contains("failed with 5 result entries for 6 items")),
        "{found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_run_renders_its_output() {
    let yaml = r#"
name: canceled-output
tasks:
  first: { action: counted, input: { value: 7 } }
  wait: { needs: [first], action: blocked }
  fan:
    needs: [first]
    with_items: [1, 2, 3]
    action: counted
    input: { value: "{{ item }}" }
  last: { needs: [wait], action: counted, input: { value: 2 } }
output:
  first: "{{ tasks.first.result }}"
  fan: "{{ tasks.fan.result }}"
  wait: "{{ tasks.wait.status }}"
  last: "{{ tasks.last.result.value }}"
"#;
    let pool = stack().pool().await.expect("pool");
    let id = stack()
        .submit(&pool, yaml, json!({}))
        .await
        .expect("submit");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let statuses: Vec<(String, String)> = sqlx::query_as(
            "SELECT task_name, status FROM task_executions WHERE workflow_execution_id = $1",
        )
        .bind(id.as_uuid())
        .fetch_all(&pool)
        .await
        .expect("tasks");
        let of = |name: &str| {
            statuses
                .iter()
                .find(|(t, _)| t == name)
                .map(|(_, s)| s.as_str())
        };
        if of("wait") == Some("running") && of("fan") == Some("succeeded") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "`wait` never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    weft_store::transact::in_transaction(&pool, async |tx| {
        weft_store::cancel::request(tx, id).await
    })
    .await
    .expect("cancel");
    let run = finish(&pool, id).await;
    assert_eq!(run.status, WorkflowStatus::Canceled);
    assert_eq!(
        run.output,
        Some(json!({ "first": 7, "fan": [1, 2, 3], "wait": "canceled", "last": null }))
    );
    let error = run.error.unwrap_or_default();
    assert!(
        error.starts_with("canceled by request")
            && error.contains("output `last` is null")
            && error.contains("task `last` (canceled)"),
        "{error}"
    );
    assert_eq!(ran(id, "last").len(), 0);
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failure_data_example_reports_which_file_failed() {
    let pool = stack().pool().await.expect("pool");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/failure-data.yaml");
    let id = weft_tests::submit_file(&pool, &path, json!({}))
        .await
        .expect("submit");
    let run = finish(&pool, id).await;
    assert_eq!(run.status, WorkflowStatus::Failed, "{:?}", run.error);
    let output = run.output.expect("an output");
    assert_eq!(output["converted"], json!(["a.json", "b.json", "d.json"]));
    assert_eq!(
        output["statuses"],
        json!(["succeeded", "succeeded", "failed", "succeeded"])
    );
    let failed = output["failed"].as_array().expect("a list");
    assert_eq!(failed.len(), 1, "{output}");
    assert!(
        failed[0]
            .as_str()
            .is_some_and(|e| e.contains("cannot parse broken.csv")),
        "{output}"
    );
    assert!(
        output["error"]
            .as_str()
            .is_some_and(|e| e.contains("1 of 4 items failed") && e.contains("broken.csv")),
        "{output}"
    );
    assert_eq!(task(&pool, id, "notify").await.0, "succeeded");
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );
}
