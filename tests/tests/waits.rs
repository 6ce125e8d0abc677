//! Issue 16, items 3 and 4: durable waits (`wait: 2s`, `wait: {until}`),
//! signals and approvals, against the real services. What could go wrong
//! is asserted from the state: a wait ending twice or early, a successor
//! run twice, a signal applied twice or to a task that was not waiting.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use weft_common::message::{Dispatch, WaitDue};
use weft_common::wait::{Delivery, Resolution};
use weft_common::{Envelope, ExecutionId, Given, WorkflowExecutionId, WorkflowStatus};
use weft_executor::{Applied, Engine, EngineConfig};
use weft_store::PgPool;
use weft_store::waits::{self, Delivered};
use weft_tests::process::{Daemon, weft_binary};
use weft_tests::{Stack, StackOptions, violations};

const SIGNAL: &str = r#"
name: gate
tasks:
  gate:
    wait:
      signal: go
      input:
        amount: { type: integer }
        note: ""
  after:
    needs: [gate]
    action: echo
    input: { amount: "{{ tasks.gate.result.amount }}", note: "{{ tasks.gate.result.note }}" }
"#;

const APPROVAL: &str = r#"
name: release
tasks:
  approve:
    wait: { approval: true, timeout: 1h }
  deploy:
    needs: [approve]
    action: echo
    input: { by: "{{ tasks.approve.result.by }}" }
  rollback:
    needs: [approve]
    trigger: one_failed
    action: echo
    input: { why: "{{ tasks.approve.error }}" }
"#;

/// The open wait of a run's task, once its executor started it: the
/// execution and its attempt.
async fn open_wait(pool: &PgPool, run: WorkflowExecutionId, task: &str) -> (ExecutionId, i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row: Option<(uuid::Uuid, i32)> = sqlx::query_as(
            "SELECT e.id, e.attempt FROM waits w JOIN executions e ON e.id = w.execution_id \
             JOIN task_executions t ON t.id = e.task_execution_id \
             WHERE w.workflow_execution_id = $1 AND t.task_name = $2 AND w.resolution IS NULL \
               AND e.status = 'running'",
        )
        .bind(run.as_uuid())
        .bind(task)
        .fetch_optional(pool)
        .await
        .expect("read waits");
        if let Some((id, attempt)) = row {
            return (ExecutionId::from(id), attempt);
        }
        assert!(
            Instant::now() < deadline,
            "task `{task}` never started waiting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (status, result, error) of a run's task.
async fn task(
    pool: &PgPool,
    run: WorkflowExecutionId,
    name: &str,
) -> (String, Option<Value>, Option<String>) {
    sqlx::query_as(
        "SELECT status, result, error FROM task_executions WHERE workflow_execution_id = $1 AND task_name = $2",
    )
    .bind(run.as_uuid())
    .bind(name)
    .fetch_one(pool)
    .await
    .expect("task row")
}

/// How many executions of a task exist, and how many succeeded.
async fn executions(pool: &PgPool, run: WorkflowExecutionId, name: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE e.status = 'succeeded') \
         FROM executions e JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE e.workflow_execution_id = $1 AND t.task_name = $2",
    )
    .bind(run.as_uuid())
    .bind(name)
    .fetch_one(pool)
    .await
    .expect("count executions")
}

fn signal(pairs: &[(&str, &str)]) -> Delivery {
    Delivery::Signal(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Given::Text((*v).to_owned())))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_survives_an_executor_restart_and_its_successor_runs_once() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let env = [
        ("WEFT_DATABASE_URL", stack.database_url.as_str()),
        ("WEFT_AMQP_URL", stack.amqp_url.as_str()),
    ];
    let mut executor = Daemon::start("executor", &["executor"], &env).expect("executor");
    let _worker = Daemon::start("worker", &["worker"], &env).expect("worker");
    let yaml = r"
name: pause
tasks:
  pause: { wait: 2s }
  after: { needs: [pause], action: echo, input: { x: 1 } }
";
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let (execution, _) = open_wait(&pool, id, "pause").await;
    // The executor that started the wait dies during it; another starts.
    executor.kill();
    let _successor = Daemon::start("executor-2", &["executor"], &env).expect("executor");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("the run ends");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let (started, due, resolved, resolution): (
        DateTime<Utc>,
        DateTime<Utc>,
        DateTime<Utc>,
        String,
    ) = sqlx::query_as(
        "SELECT e.started_at, w.due_at, w.resolved_at, w.resolution \
             FROM waits w JOIN executions e ON e.id = w.execution_id WHERE w.execution_id = $1",
    )
    .bind(execution.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("the wait");
    assert_eq!(resolution, "elapsed");
    assert_eq!(due - started, chrono::Duration::seconds(2));
    assert!(
        resolved >= due,
        "ended at {resolved}, before its time {due}"
    );
    let (status, result, _) = task(&pool, id, "pause").await;
    assert_eq!(status, "succeeded");
    assert_eq!(
        result,
        Some(json!({ "until": weft_common::wait::rfc3339(due) }))
    );
    assert_eq!(executions(&pool, id, "pause").await, (1, 1));
    assert_eq!(
        executions(&pool, id, "after").await,
        (1, 1),
        "the successor ran once"
    );
    assert_eq!(violations(&pool, id).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_holds_no_worker_slot_and_a_cancel_ends_it_at_once() {
    let stack = Stack::start(StackOptions {
        worker_concurrency: 1,
        ..StackOptions::default()
    })
    .expect("stack");
    let pool = stack.pool().await.expect("pool");
    let yaml = r#"
name: slot
tasks:
  pause: { wait: 1h }
  work: { action: sleep, input: { seconds: 0.2 } }
  more: { needs: [work], action: echo, input: { done: true } }
"#;
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let (execution, attempt) = open_wait(&pool, id, "pause").await;
    // Its dispatch delivered again starts no second wait and no second
    // due message.
    let engine = Engine::new(pool.clone(), EngineConfig::default());
    let task_execution: uuid::Uuid =
        sqlx::query_scalar("SELECT task_execution_id FROM executions WHERE id = $1")
            .bind(execution.as_uuid())
            .fetch_one(&pool)
            .await
            .expect("task");
    let again = Envelope::new(Dispatch {
        execution_id: execution,
        workflow_execution_id: id,
        task_execution_id: task_execution.into(),
        task_name: "pause".into(),
        item_index: None,
        attempt: u32::try_from(attempt).expect("attempt"),
        action: weft_common::wait::WAIT_LABEL.into(),
        input: json!({}),
        timeout_ms: None,
        queue: "default".into(),
        worker: None,
        child: false,
        wait: true,
    });
    assert_eq!(
        engine.apply(&again).await.expect("apply"),
        Applied::Duplicate
    );
    let due_messages: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE payload->>'type' = 'wait_due' \
           AND payload->>'execution_id' = $1",
    )
    .bind(execution.to_string())
    .fetch_one(&pool)
    .await
    .expect("outbox");
    assert_eq!(due_messages, 1);
    // The only worker slot runs `work` and then `more` while `pause` waits.
    let deadline = Instant::now() + Duration::from_secs(30);
    while task(&pool, id, "more").await.0 != "succeeded" {
        assert!(
            Instant::now() < deadline,
            "the worker never ran the other tasks"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut conn = pool.acquire().await.expect("conn");
    let facts = weft_store::inspect::explain::run_facts(&mut conn, id, Duration::from_secs(30))
        .await
        .expect("explain")
        .expect("the run");
    let line = facts
        .explain()
        .tasks
        .into_iter()
        .find(|t| t.task == "pause")
        .expect("pause")
        .why;
    assert!(line.starts_with("waiting until "), "{line}");
    drop(conn);
    // A cancellation ends the wait at once: nothing runs on a worker.
    let requested = weft_store::cancel::request_committed(&pool, id)
        .await
        .expect("cancel");
    assert_eq!(
        requested.outcome(id).expect("found").outcome,
        "canceled",
        "{requested:?}"
    );
    let run = stack
        .wait(&pool, id, Duration::from_secs(5))
        .await
        .expect("ended");
    assert_eq!(run.status, WorkflowStatus::Canceled);
    assert_eq!(task(&pool, id, "pause").await.0, "canceled");
    // Its time, coming late, changes nothing and is counted a duplicate.
    let late = Envelope::new(WaitDue {
        execution_id: execution,
        workflow_execution_id: id,
        task_name: "pause".into(),
        attempt: u32::try_from(attempt).expect("attempt"),
    });
    assert_eq!(
        engine.apply(&late).await.expect("apply"),
        Applied::Duplicate
    );
    // And so does a signal.
    let refused = waits::deliver_committed(&pool, id, "pause", &signal(&[]))
        .await
        .expect("deliver");
    assert!(matches!(refused, Delivered::Refused(_)), "{refused:?}");
    assert_eq!(violations(&pool, id).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_sent_many_times_at_once_is_applied_once_and_a_bad_payload_keeps_it_waiting() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let id = stack
        .submit(&pool, SIGNAL, json!({}))
        .await
        .expect("submit");
    let (execution, _) = open_wait(&pool, id, "gate").await;
    // A payload that does not fit is refused naming the field; the task
    // keeps waiting.
    let bad = waits::deliver_committed(&pool, id, "gate", &signal(&[("amount", "lots")]))
        .await
        .expect("deliver");
    let Delivered::Refused(refusal) = bad else {
        panic!("a bad payload was taken: {bad:?}");
    };
    assert_eq!(refusal.reason, "invalid");
    assert!(
        refusal
            .message
            .contains("input `amount` must be an integer"),
        "{}",
        refusal.message
    );
    let missing = waits::deliver_committed(&pool, id, "gate", &signal(&[("note", "x")]))
        .await
        .expect("deliver");
    assert!(
        matches!(&missing, Delivered::Refused(r) if r.message.contains("amount")),
        "{missing:?}"
    );
    assert_eq!(open_wait(&pool, id, "gate").await.0, execution);
    // Eight deliveries at once: exactly one is taken.
    let sends = (0..8).map(|i| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let amount = (40 + i).to_string();
            waits::deliver_committed(
                &pool,
                id,
                "gate",
                &signal(&[("amount", &amount), ("note", "hi")]),
            )
            .await
            .expect("deliver")
        })
    });
    let answers = futures_util::future::join_all(sends).await;
    let accepted: Vec<Value> = answers
        .iter()
        .filter_map(|a| match a.as_ref().expect("joined") {
            Delivered::Accepted { result, .. } => result.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(accepted.len(), 1, "{answers:?}");
    for answer in &answers {
        if let Delivered::Refused(r) = answer.as_ref().expect("joined") {
            assert!(
                ["already_delivered", "not_waiting"].contains(&r.reason),
                "{r:?}"
            );
        }
    }
    let run = stack
        .wait(&pool, id, Duration::from_secs(30))
        .await
        .expect("ended");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let (_, result, _) = task(&pool, id, "gate").await;
    assert_eq!(result.as_ref(), Some(&accepted[0]));
    let (_, after, _) = task(&pool, id, "after").await;
    assert_eq!(
        after,
        Some(json!({ "amount": accepted[0]["amount"], "note": "hi" }))
    );
    assert_eq!(executions(&pool, id, "gate").await, (1, 1));
    assert_eq!(executions(&pool, id, "after").await, (1, 1));
    // Once more, after the end: refused naming the task's state.
    let late = waits::deliver_committed(&pool, id, "gate", &signal(&[("amount", "1")]))
        .await
        .expect("deliver");
    assert!(
        matches!(&late, Delivered::Refused(r) if r.message.contains("succeeded")),
        "{late:?}"
    );
    assert_eq!(violations(&pool, id).await, Vec::<String>::new());
}

struct Cli<'a> {
    stack: &'a Stack,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(weft_binary().expect("weft binary"))
            .args(args)
            .env("WEFT_DATABASE_URL", &self.stack.database_url)
            .env("RUST_LOG", "error")
            .env_remove("WEFT_SERVER_URL")
            .output()
            .expect("weft runs")
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_fails_the_task_and_routes_to_its_one_failed_handler() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let cli = Cli { stack: &stack };
    let id = stack
        .submit(&pool, APPROVAL, json!({}))
        .await
        .expect("submit");
    open_wait(&pool, id, "approve").await;
    let run = id.to_string();
    // `weft signal` is the wrong tool for an approval: refused, still waiting.
    let out = cli.run(&["signal", &run, "approve", "--input", "approved=true"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("use `weft approve` or `weft reject`"),
        "{}",
        text(&out)
    );
    let out = cli.run(&[
        "reject",
        &run,
        "approve",
        "--by",
        "alice",
        "--comment",
        "not today",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("rejected"), "{}", text(&out));
    let ended = stack
        .wait(&pool, id, Duration::from_secs(30))
        .await
        .expect("ended");
    assert_eq!(ended.status, WorkflowStatus::Failed);
    let (status, _, error) = task(&pool, id, "approve").await;
    assert_eq!(status, "failed");
    assert_eq!(error.as_deref(), Some("rejected by alice: not today"));
    assert_eq!(task(&pool, id, "deploy").await.0, "skipped");
    let (status, result, _) = task(&pool, id, "rollback").await;
    assert_eq!(status, "succeeded");
    assert_eq!(
        result,
        Some(json!({ "why": "rejected by alice: not today" }))
    );
    // Approving the finished task is refused naming its state.
    let out = cli.run(&["approve", &run, "approve", "--by", "bob"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("is failed"), "{}", text(&out));
    assert_eq!(violations(&pool, id).await, Vec::<String>::new());

    // An approval: the result names who gave it.
    let id = stack
        .submit(&pool, APPROVAL, json!({}))
        .await
        .expect("submit");
    open_wait(&pool, id, "approve").await;
    let out = cli.run(&[
        "approve",
        &id.to_string(),
        "approve",
        "--by",
        "carol",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["resolution"], "approved");
    let ended = stack
        .wait(&pool, id, Duration::from_secs(30))
        .await
        .expect("ended");
    assert_eq!(ended.status, WorkflowStatus::Succeeded, "{:?}", ended.error);
    assert_eq!(
        task(&pool, id, "approve").await.1,
        Some(json!({ "approved": true, "by": "carol", "comment": null }))
    );
    assert_eq!(
        task(&pool, id, "deploy").await.1,
        Some(json!({ "by": "carol" }))
    );
    assert_eq!(task(&pool, id, "rollback").await.0, "skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_timeout_fails_the_task_after_its_retries() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let yaml = r"
name: timeout
tasks:
  gate:
    wait: { signal: go, timeout: 1s }
    retry: { attempts: 2, delay: 100ms }
";
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(30))
        .await
        .expect("ended");
    assert_eq!(run.status, WorkflowStatus::Failed);
    let (status, _, error) = task(&pool, id, "gate").await;
    assert_eq!(status, "failed");
    let error = error.unwrap_or_default();
    assert!(error.contains("no signal `go` came within 1s"), "{error}");
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
    let late = waits::deliver_committed(&pool, id, "gate", &signal(&[]))
        .await
        .expect("deliver");
    let Delivered::Refused(refusal) = late else {
        panic!("a signal to a finished task was taken: {late:?}");
    };
    assert_eq!(refusal.reason, "not_waiting");
    assert!(refusal.message.contains("is failed"), "{}", refusal.message);
    assert_eq!(violations(&pool, id).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_in_the_past_completes_at_once_in_the_future_then_and_a_bad_time_fails_the_task() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let yaml = r#"
name: until
input: { at: null }
tasks:
  at: { wait: { until: "{{ input.at }}" } }
"#;
    // Submits the workflow waiting until `at`, and waits for its end.
    let run_until = async |at: String| {
        let id = stack
            .submit(&pool, yaml, json!({ "at": at }))
            .await
            .expect("submit");
        let run = stack
            .wait(&pool, id, Duration::from_secs(30))
            .await
            .expect("ended");
        (id, run)
    };
    let (id, run) = run_until("2000-01-01T00:00:00Z".into()).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    assert_eq!(
        task(&pool, id, "at").await.1,
        Some(json!({ "until": "2000-01-01T00:00:00.000Z" }))
    );
    let resolution: String =
        sqlx::query_scalar("SELECT resolution FROM waits WHERE workflow_execution_id = $1")
            .bind(id.as_uuid())
            .fetch_one(&pool)
            .await
            .expect("the wait");
    assert_eq!(resolution, Resolution::Elapsed.as_str());
    assert_eq!(violations(&pool, id).await, Vec::<String>::new());

    // Two seconds ahead, by the database's clock: it ends then, not before.
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&pool)
        .await
        .expect("the database's clock");
    let at = now + chrono::Duration::seconds(2);
    let (id, run) = run_until(at.to_rfc3339()).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let finished: DateTime<Utc> = sqlx::query_scalar(
        "SELECT finished_at FROM task_executions WHERE workflow_execution_id = $1 AND task_name = 'at'",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("the task's end");
    assert!(
        finished >= at,
        "the wait for {at} ended early, at {finished}"
    );
    assert_eq!(violations(&pool, id).await, Vec::<String>::new());

    let (id, run) = run_until("tomorrow".into()).await;
    assert_eq!(run.status, WorkflowStatus::Failed);
    let error = task(&pool, id, "at").await.2.unwrap_or_default();
    assert!(
        error.contains("\"tomorrow\"") && error.contains("RFC 3339"),
        "{error}"
    );
    assert_eq!(violations(&pool, id).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_finds_waits_ended_wrongly() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let corruptions: &[(&str, &str)] = &[
        (
            "wait_ended_as_resolved",
            "UPDATE waits SET resolution = 'timed_out' WHERE workflow_execution_id = $1",
        ),
        (
            "signal_taken_while_waiting",
            "UPDATE waits SET resolved_at = resolved_at - interval '1 hour' WHERE workflow_execution_id = $1",
        ),
        (
            "waits_end_on_time",
            "WITH e AS (UPDATE executions SET status = 'running', finished_at = NULL \
                        WHERE id IN (SELECT execution_id FROM waits WHERE workflow_execution_id = $1) \
                        RETURNING id) \
             UPDATE waits SET resolution = NULL, resolved_at = NULL, due_at = now() - interval '1 hour' \
             WHERE workflow_execution_id = $1",
        ),
    ];
    for (check, corruption) in corruptions {
        let id = stack
            .submit(&pool, SIGNAL, json!({}))
            .await
            .expect("submit");
        open_wait(&pool, id, "gate").await;
        let delivered = waits::deliver_committed(&pool, id, "gate", &signal(&[("amount", "1")]))
            .await
            .expect("deliver");
        assert!(
            matches!(delivered, Delivered::Accepted { .. }),
            "{delivered:?}"
        );
        let run = stack
            .wait(&pool, id, Duration::from_secs(30))
            .await
            .expect("ends");
        assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
        assert_eq!(violations(&pool, id).await, Vec::<String>::new());
        sqlx::query(sqlx::AssertSqlSafe(*corruption))
            .bind(id.as_uuid())
            .execute(&pool)
            .await
            .expect(check);
        let found = violations(&pool, id).await;
        assert!(
            found.iter().any(|v| v.starts_with(&format!("{check}:"))),
            "{check}: {found:#?}"
        );
    }
}
