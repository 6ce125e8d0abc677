//! Exit handlers (`on_exit:`): they run once every main task is terminal,
//! whatever the outcome — succeeded, failed, canceled (the cancellation
//! waits for them) — once per round, with the run's verdict in context;
//! a failing handler fails a run that would have succeeded.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_store::cancel::{self, Requested};
use weft_store::retry::{self, Reopened, Scope};
use weft_tests::{Stack, StackOptions};

async fn audit_clean(pool: &PgPool, id: WorkflowExecutionId) {
    let mut conn = pool.acquire().await.expect("conn");
    let violations = weft_store::audit::audit(&mut conn, Some(id), 60.0)
        .await
        .expect("audit");
    assert!(violations.is_empty(), "{violations:#?}");
}

/// (task, status, result) of every task.
async fn tasks_of(pool: &PgPool, id: WorkflowExecutionId) -> Vec<(String, String, Option<Value>)> {
    sqlx::query_as(
        "SELECT task_name, status, result FROM task_executions \
         WHERE workflow_execution_id = $1 ORDER BY task_name",
    )
    .bind(id.as_uuid())
    .fetch_all(pool)
    .await
    .expect("tasks")
}

fn task<'a>(
    tasks: &'a [(String, String, Option<Value>)],
    name: &str,
) -> &'a (String, String, Option<Value>) {
    tasks
        .iter()
        .find(|t| t.0 == name)
        .unwrap_or_else(|| panic!("no task {name} in {tasks:?}"))
}

/// Per round: how many executions each exit handler had, and whether any
/// was created before the round's last main execution finished.
async fn exit_executions(pool: &PgPool, id: WorkflowExecutionId) -> Vec<(i32, String, i64, bool)> {
    sqlx::query_as(
        "SELECT x.round, t.task_name, count(*), \
                bool_or(x.created_at < (SELECT max(m.finished_at) FROM executions m \
                                        JOIN task_executions mt ON mt.id = m.task_execution_id \
                                        WHERE m.workflow_execution_id = $1 AND NOT mt.exit_handler \
                                          AND m.round = x.round)) \
         FROM executions x JOIN task_executions t ON t.id = x.task_execution_id \
         WHERE x.workflow_execution_id = $1 AND t.exit_handler \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(id.as_uuid())
    .fetch_all(pool)
    .await
    .expect("exit executions")
}

const GOOD: &str = "name: good
tasks:
  a: {action: echo, input: {v: 1}}
  b: {action: sleep, needs: [a], input: {seconds: 0.3}}
  c: {action: echo, needs: [a], input: {v: 3}}
on_exit:
  clean:
    action: echo
    input: {status: '{{ workflow.status }}', failures: '{{ workflow.failures }}', b: '{{ tasks.b.status }}', d: '{{ workflow.duration }}'}
  tell:
    needs: [clean]
    action: echo
    input: {clean: '{{ tasks.clean.result.status }}'}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_run_runs_its_handlers_once_after_every_main_task_with_two_executors() {
    let stack = Stack::start(StackOptions {
        executors: 2,
        ..StackOptions::default()
    })
    .expect("stack");
    let pool = stack.pool().await.expect("pool");
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(stack.submit(&pool, GOOD, json!({})).await.expect("submit"));
    }
    for id in ids {
        let run = stack
            .wait(&pool, id, Duration::from_secs(60))
            .await
            .expect("ends");
        assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
        let tasks = tasks_of(&pool, id).await;
        let clean = task(&tasks, "clean").2.clone().expect("clean's result");
        assert_eq!(clean["status"], "succeeded");
        assert_eq!(clean["failures"], json!([]));
        assert_eq!(clean["b"], "succeeded");
        assert!(clean["d"].as_f64().expect("a duration") >= 0.3, "{clean}");
        assert_eq!(
            task(&tasks, "tell").2.clone().expect("tell")["clean"],
            "succeeded"
        );
        let runs = exit_executions(&pool, id).await;
        assert_eq!(
            runs,
            vec![
                (1, "clean".to_owned(), 1, false),
                (1, "tell".to_owned(), 1, false)
            ]
        );
        audit_clean(&pool, id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_runs_its_handlers_and_they_read_the_failures() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/deploy-on-exit.yaml");
    let id = weft_tests::submit_file(&pool, &path, json!({}))
        .await
        .expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("ends");
    assert_eq!(run.status, WorkflowStatus::Failed);
    assert!(
        run.error.as_deref().unwrap_or_default().contains("deploy"),
        "{:?}",
        run.error
    );
    let tasks = tasks_of(&pool, id).await;
    assert_eq!(task(&tasks, "smoke_test").1, "skipped");
    assert_eq!(task(&tasks, "cleanup").1, "succeeded");
    let notify = task(&tasks, "notify").2.clone().expect("notify's result");
    assert_eq!(notify["status"], "failed");
    assert_eq!(notify["failed"], json!(["deploy"]));
    let errors = notify["errors"].to_string();
    assert!(errors.contains("deploy target unreachable"), "{errors}");
    audit_clean(&pool, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_fails_a_run_that_would_have_succeeded() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let yaml = "name: x
tasks:
  a: {action: echo, input: {v: 1}}
on_exit:
  broken: {action: fail, input: {message: cleanup exploded}}
  after:
    needs: [broken]
    trigger: all_done
    action: echo
    input: {broken: '{{ tasks.broken.status }}'}
";
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("ends");
    assert_eq!(run.status, WorkflowStatus::Failed);
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("broken") && error.contains("cleanup exploded"),
        "{error}"
    );
    let tasks = tasks_of(&pool, id).await;
    assert_eq!(task(&tasks, "a").1, "succeeded");
    assert_eq!(
        task(&tasks, "after").2.clone().expect("after")["broken"],
        "failed"
    );
    audit_clean(&pool, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_waits_for_the_handlers_and_a_second_cancel_does_not_kill_them() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let yaml = "name: x
tasks:
  long: {action: sleep, input: {seconds: 60}}
  next: {action: echo, needs: [long]}
on_exit:
  clean:
    action: sleep
    input: {seconds: 1.5}
  tell:
    needs: [clean]
    action: echo
    input: {status: '{{ workflow.status }}', long: '{{ tasks.long.status }}'}
";
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    weft_tests::wait_for_execution(&pool, id, 1, "running", Duration::from_secs(30))
        .await
        .expect("long runs");
    let mut tx = pool.begin().await.expect("tx");
    let requested = cancel::request(&mut tx, id).await.expect("cancel");
    tx.commit().await.expect("commit");
    assert!(
        matches!(requested, Requested::Accepted { .. }),
        "{requested:?}"
    );
    // The handler starts once the main task was killed; a second cancel
    // while it runs changes nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let running: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM executions x JOIN task_executions t ON t.id = x.task_execution_id \
             WHERE x.workflow_execution_id = $1 AND t.task_name = 'clean' AND x.status = 'running')",
        )
        .bind(id.as_uuid())
        .fetch_one(&pool)
        .await
        .expect("clean");
        if running {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "clean never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut conn = pool.acquire().await.expect("conn");
    assert_eq!(
        cancel::request(&mut conn, id).await.expect("cancel again"),
        Requested::AlreadyCanceling
    );
    drop(conn);
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("ends");
    assert_eq!(run.status, WorkflowStatus::Canceled);
    let tasks = tasks_of(&pool, id).await;
    assert_eq!(task(&tasks, "clean").1, "succeeded");
    assert_eq!(task(&tasks, "next").1, "canceled");
    let tell = task(&tasks, "tell").2.clone().expect("tell");
    assert_eq!(tell["status"], "canceled");
    assert_eq!(tell["long"], "canceled");
    audit_clean(&pool, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_round_runs_the_handlers_again_after_its_main_tasks() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let yaml = "name: x
tasks:
  a: {action: echo, input: {v: 1}}
  flaky: {action: fail, needs: [a], input: {message: nope}}
on_exit:
  clean: {action: echo, input: {status: '{{ workflow.status }}'}}
  tell: {action: echo, needs: [clean]}
";
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("ends");
    assert_eq!(run.status, WorkflowStatus::Failed);
    let mut tx = pool.begin().await.expect("tx");
    let reopened = retry::reopen(&mut tx, id, Scope::Unfinished)
        .await
        .expect("retry");
    tx.commit().await.expect("commit");
    let Reopened::Reopened { tasks, round } = reopened else {
        panic!("{reopened:?}");
    };
    assert_eq!(round, 2);
    assert_eq!(tasks, ["clean", "flaky", "tell"]);
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("ends");
    assert_eq!(run.status, WorkflowStatus::Failed);
    let runs = exit_executions(&pool, id).await;
    assert_eq!(
        runs,
        vec![
            (1, "clean".to_owned(), 1, false),
            (1, "tell".to_owned(), 1, false),
            (2, "clean".to_owned(), 1, false),
            (2, "tell".to_owned(), 1, false),
        ]
    );
    audit_clean(&pool, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_finds_exit_handlers_run_early_and_a_wrong_main_counter() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let corruptions: &[(&str, &str)] = &[
        (
            "exit_handlers_run_once_after_main",
            "UPDATE task_executions SET decided_at = decided_at - interval '1 hour' \
             WHERE workflow_execution_id = $1 AND task_name = 'clean'",
        ),
        (
            "main_remaining_counter",
            "UPDATE workflow_executions SET main_remaining = 1 WHERE id = $1",
        ),
    ];
    for (check, corruption) in corruptions {
        let id = stack.submit(&pool, GOOD, json!({})).await.expect("submit");
        let run = stack
            .wait(&pool, id, Duration::from_secs(60))
            .await
            .expect("ends");
        assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
        audit_clean(&pool, id).await;
        sqlx::query(sqlx::AssertSqlSafe(*corruption))
            .bind(id.as_uuid())
            .execute(&pool)
            .await
            .expect(check);
        let mut conn = pool.acquire().await.expect("conn");
        let found = weft_store::audit::audit(&mut conn, Some(id), 60.0)
            .await
            .expect("audit");
        assert!(
            found.iter().any(|v| v.check == *check),
            "{check}: {found:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_runs_its_exit_handlers_before_it_reports_to_its_parent() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let dir = std::env::temp_dir().join(format!("weft-exit-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("child.yaml"),
        "name: child
output: {cleaned: '{{ tasks.clean.result.v }}'}
tasks:
  work: {action: echo, input: {v: 1}}
on_exit:
  clean: {action: echo, input: {v: 7}}
",
    )
    .expect("child");
    std::fs::write(
        dir.join("parent.yaml"),
        "name: parent
tasks:
  call: {workflow: child.yaml}
  after: {action: echo, needs: [call], input: {got: '{{ tasks.call.result }}'}}
",
    )
    .expect("parent");
    let id = weft_tests::submit_file(&pool, &dir.join("parent.yaml"), json!({}))
        .await
        .expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("ends");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    // The child's output reads its exit handler's result, and the parent
    // task's result is that output: the handler ran before the child
    // reported.
    let tasks = tasks_of(&pool, id).await;
    assert_eq!(
        task(&tasks, "after").2.clone().expect("after")["got"],
        json!({"cleaned": 7})
    );
    let (child_end, clean_end): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "SELECT c.finished_at, t.finished_at FROM workflow_executions c \
             JOIN task_executions t ON t.workflow_execution_id = c.id AND t.task_name = 'clean' \
             WHERE c.parent_run_id = $1",
        )
        .bind(id.as_uuid())
        .fetch_one(&pool)
        .await
        .expect("child");
    assert!(clean_end <= child_end, "{clean_end} after {child_end}");
    audit_clean(&pool, id).await;
}
