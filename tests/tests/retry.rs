//! `weft retry` off the happy path: a failed fan-out re-runs only its items
//! that did not succeed and its result holds one entry per item; handlers
//! decided in the failed round are decided again; canceled runs can be
//! retried; `--task` re-runs a task and everything downstream of it on a
//! succeeded run; the audit sees each way a retried run can be wrong.
//!
//! The test action counts how often it ran per (run, task, item) — what a
//! retry must not repeat is the action, so that is what is counted.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_store::retry::{self, Reopened, Scope};
use weft_tests::counted::{self, ran, succeeded};
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

async fn finish(stack: &Stack, pool: &PgPool, id: WorkflowExecutionId) -> weft_store::runs::RunRow {
    stack
        .wait(pool, id, Duration::from_secs(60))
        .await
        .expect("the run finishes")
}

async fn reopen(pool: &PgPool, id: WorkflowExecutionId, scope: Scope<'_>) -> Reopened {
    weft_store::transact::in_transaction(pool, async |tx| retry::reopen(tx, id, scope).await)
        .await
        .expect("retry")
}

async fn task_status(
    pool: &PgPool,
    id: WorkflowExecutionId,
    task: &str,
) -> (String, Option<Value>) {
    sqlx::query_as(
        "SELECT status, result FROM task_executions WHERE workflow_execution_id = $1 AND task_name = $2",
    )
    .bind(id.as_uuid())
    .bind(task)
    .fetch_one(pool)
    .await
    .expect("task")
}

const FAN_OUT: &str = r#"
name: partial-fan-out
tasks:
  each:
    with_items: "{{ range(10) | list }}"
    action: counted
    input: { value: "{{ item }}", fail: "{{ item in [1, 3, 5, 7] }}" }
  rollback:
    needs: [each]
    trigger: one_failed
    action: counted
    input: { value: rolled back }
  total:
    needs: [each]
    action: counted
    input: { value: "{{ tasks.each.result | sum }}" }
output:
  total: "{{ tasks.total.result }}"
  results: "{{ tasks.each.result }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_fan_out_runs_only_its_failed_items_and_decides_its_handlers_again() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let id = stack
        .submit(&pool, FAN_OUT, json!({}))
        .await
        .expect("submit");
    let run = finish(stack, &pool, id).await;
    assert_eq!(run.status, WorkflowStatus::Failed);
    assert_eq!(task_status(&pool, id, "rollback").await.0, "succeeded");

    counted::fix(id);
    let reopened = reopen(&pool, id, Scope::Unfinished).await;
    assert_eq!(
        reopened,
        Reopened::Reopened {
            tasks: vec!["each".into(), "rollback".into(), "total".into()],
            round: 2
        }
    );
    let run = finish(stack, &pool, id).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);

    // Every item ran once, but the four that failed: once more.
    let each = ran(id, "each");
    for item in 0..10u32 {
        let expected = if [1, 3, 5, 7].contains(&item) { 2 } else { 1 };
        assert_eq!(
            each.get(&Some(item)),
            Some(&expected),
            "item {item}: {each:?}"
        );
    }
    // One result per item, in item order, and the sum of them.
    let output = run.output.expect("an output");
    assert_eq!(output["results"], json!((0..10).collect::<Vec<_>>()));
    assert_eq!(output["total"], json!(45));
    // The handler of the failed round is decided again: its need succeeded.
    assert_eq!(task_status(&pool, id, "rollback").await.0, "skipped");
    assert_eq!(ran(id, "rollback").get(&None), Some(&1));
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );

    // The first round stays as history: its executions are still there,
    // and the kept items of round 2 name them.
    let (round1, kept): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE e.round = 1), count(e.kept_from) FROM executions e \
         JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE t.workflow_execution_id = $1 AND t.task_name = 'each'",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("history");
    assert_eq!((round1, kept), (10, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_bounded_fan_out_keeps_its_items_and_respects_its_concurrency() {
    // With a concurrency, no new item starts once one failed: round 1
    // leaves some items never run; round 2 runs them and the failed ones,
    // three at a time, in the order of its dispatch positions.
    let yaml = FAN_OUT
        .replace("name: partial-fan-out", "name: partial-bounded-fan-out")
        .replace(
            "    action: counted\n    input: { value: \"{{ item }}\"",
            "    concurrency: 3\n    action: counted\n    input: { value: \"{{ item }}\"",
        );
    assert!(yaml.contains("concurrency: 3"));
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let id = stack.submit(&pool, &yaml, json!({})).await.expect("submit");
    assert_eq!(
        finish(stack, &pool, id).await.status,
        WorkflowStatus::Failed
    );
    let first_round = succeeded(id, "each");
    counted::fix(id);
    assert!(matches!(
        reopen(&pool, id, Scope::Unfinished).await,
        Reopened::Reopened { round: 2, .. }
    ));
    let run = finish(stack, &pool, id).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    // Every item succeeded exactly once over both rounds: none that
    // succeeded in round 1 ran again.
    let each = succeeded(id, "each");
    assert_eq!(each.len(), 10, "{each:?}");
    assert!(each.values().all(|n| *n == 1), "{each:?}");
    for (item, _) in first_round.iter().filter(|(_, n)| **n > 0) {
        assert_eq!(
            ran(id, "each").get(item),
            Some(&1),
            "item {item:?} ran again"
        );
    }
    let output = run.output.expect("an output");
    assert_eq!(output["results"], json!((0..10).collect::<Vec<_>>()));
    assert_eq!(output["total"], json!(45));
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_whose_items_all_succeeded_before_is_kept_whole() {
    // `check` fails after `each` succeeded: retrying runs `check` only.
    let yaml = r#"
name: kept-whole
tasks:
  each: { with_items: [a, b, c], action: counted, input: { value: "{{ item }}" } }
  check: { needs: [each], action: counted, input: { value: "{{ tasks.each.result | length }}", fail: true } }
"#;
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    assert_eq!(
        finish(stack, &pool, id).await.status,
        WorkflowStatus::Failed
    );
    counted::fix(id);
    let reopened = reopen(&pool, id, Scope::Unfinished).await;
    assert!(
        matches!(&reopened, Reopened::Reopened { tasks, .. } if tasks == &["check"]),
        "{reopened:?}"
    );
    assert_eq!(
        finish(stack, &pool, id).await.status,
        WorkflowStatus::Succeeded
    );
    assert_eq!(ran(id, "each").values().sum::<u32>(), 3);
    assert_eq!(task_status(&pool, id, "check").await.1, Some(json!(3)));
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_run_can_be_retried() {
    let yaml = r#"
name: canceled-then-retried
tasks:
  first: { action: counted, input: { value: 1 } }
  wait: { needs: [first], action: blocked }
  last: { needs: [wait], action: counted, input: { value: 2 } }
"#;
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, String>(
        "SELECT status FROM task_executions WHERE workflow_execution_id = $1 AND task_name = 'wait'",
    )
    .bind(id.as_uuid())
    .fetch_optional(&pool)
    .await
    .expect("status")
    .as_deref()
        != Some("running")
    {
        assert!(std::time::Instant::now() < deadline, "`wait` never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    weft_store::transact::in_transaction(&pool, async |tx| {
        weft_store::cancel::request(tx, id).await
    })
    .await
    .expect("cancel");
    assert_eq!(
        finish(stack, &pool, id).await.status,
        WorkflowStatus::Canceled
    );
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );

    counted::fix(id);
    let reopened = reopen(&pool, id, Scope::Unfinished).await;
    assert!(
        matches!(&reopened, Reopened::Reopened { tasks, round: 2 } if tasks == &["last", "wait"]),
        "{reopened:?}"
    );
    let run = finish(stack, &pool, id).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    assert_eq!(ran(id, "first").get(&None), Some(&1));
    assert_eq!(ran(id, "last").get(&None), Some(&1));
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_tasks_rerun_with_everything_downstream_on_a_succeeded_run() {
    let yaml = r#"
name: rerun-part
tasks:
  a: { action: counted, input: { value: 1 } }
  b: { needs: [a], action: counted, input: { value: 2 } }
  c: { needs: [b], action: counted, input: { value: 3 } }
  side: { needs: [a], action: counted, input: { value: 4 } }
"#;
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    assert_eq!(
        finish(stack, &pool, id).await.status,
        WorkflowStatus::Succeeded
    );
    // A plain retry of a succeeded run has nothing to do.
    assert_eq!(
        reopen(&pool, id, Scope::Unfinished).await,
        Reopened::NotRetryable(WorkflowStatus::Succeeded)
    );
    let unknown = ["nope".to_owned()];
    assert!(matches!(
        reopen(&pool, id, Scope::Tasks(&unknown)).await,
        Reopened::UnknownTasks { unknown, .. } if unknown == ["nope"]
    ));
    let b = ["b".to_owned()];
    let reopened = reopen(&pool, id, Scope::Tasks(&b)).await;
    assert!(
        matches!(&reopened, Reopened::Reopened { tasks, round: 2 } if tasks == &["b", "c"]),
        "{reopened:?}"
    );
    assert_eq!(
        finish(stack, &pool, id).await.status,
        WorkflowStatus::Succeeded
    );
    let counts: Vec<Option<&u32>> = ["a", "b", "c", "side"]
        .iter()
        .map(|t| ran(id, t).get(&None).copied())
        .map(|n| n.map(|n| if n == 1 { &1 } else { &2 }))
        .collect();
    assert_eq!(counts, [Some(&1), Some(&2), Some(&2), Some(&1)]);
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_sees_a_retried_fan_out_gone_wrong() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let fresh = || async {
        let id = stack
            .submit(&pool, FAN_OUT, json!({}))
            .await
            .expect("submit");
        assert_eq!(
            finish(stack, &pool, id).await.status,
            WorkflowStatus::Failed
        );
        counted::fix(id);
        reopen(&pool, id, Scope::Unfinished).await;
        assert_eq!(
            finish(stack, &pool, id).await.status,
            WorkflowStatus::Succeeded
        );
        assert_eq!(
            weft_tests::violations(&pool, id).await,
            Vec::<String>::new()
        );
        id
    };
    let corruptions: &[(&str, &str)] = &[
        (
            // What the old retry left: both rounds' results in one list.
            "fan_out_result_per_item",
            "UPDATE task_executions SET result = result || '[1, 3]'::jsonb \
             WHERE workflow_execution_id = $1 AND task_name = 'each'",
        ),
        (
            // An item that succeeded twice in one round.
            "one_execution_per_unit",
            "UPDATE executions e SET status = 'succeeded', round = 2 FROM task_executions t \
             WHERE t.id = e.task_execution_id AND t.workflow_execution_id = $1 AND t.task_name = 'each' \
               AND e.item_index = 1 AND e.round = 1",
        ),
        (
            // What the old retry did: an item that had succeeded ran again.
            "succeeded_items_kept",
            "UPDATE executions e SET kept_from = NULL FROM task_executions t \
             WHERE t.id = e.task_execution_id AND t.workflow_execution_id = $1 AND t.task_name = 'each' \
               AND e.item_index = 0 AND e.round = 2",
        ),
        (
            // A handler that kept its outcome from the failed round.
            "decided_after_needs_finished",
            "UPDATE task_executions SET decided_at = decided_at - interval '1 hour' \
             WHERE workflow_execution_id = $1 AND task_name = 'rollback'",
        ),
    ];
    for (check, corrupt) in corruptions {
        let id = fresh().await;
        sqlx::query(sqlx::AssertSqlSafe(*corrupt))
            .bind(id.as_uuid())
            .execute(&pool)
            .await
            .expect("corrupt");
        let found = weft_tests::violations(&pool, id).await;
        assert!(
            found.iter().any(|v| v.starts_with(check)),
            "{check} not found in {found:?}"
        );
    }
}
