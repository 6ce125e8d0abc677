//! Runs that explain themselves, and pools that mix workers: a task queued
//! in a pool no worker consumes shows `queued` and says how to start one;
//! `weft explain` names the rule or `when` (with its values) that skipped
//! a task, and the attempts a failed task used up; `weft workers` lists
//! the actions a worker advertises; a custom action next to a stock worker
//! of the same pool is never failed by the stock worker; an action nobody
//! knows fails naming the pool and what its workers know; `weft validate`
//! suggests the action meant.
//!
//! The stack: one executor; a stock worker (built-ins) on `default` and on
//! `mixed`; a custom worker (built-ins and `shout`) on `mixed` only.

use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use weft_common::WorkflowExecutionId;
use weft_tests::process::weft_binary;
use weft_tests::{Stack, StackOptions};
use weft_worker::{ActionContext, ActionError, ActionRegistry};

/// The pool shared by a stock worker and a custom one.
const MIXED: &str = "mixed";

fn custom_actions() -> ActionRegistry {
    let mut registry = ActionRegistry::with_builtins();
    registry.register("shout", |ctx: ActionContext| async move {
        let text = ctx.input["text"]
            .as_str()
            .ok_or_else(|| ActionError::bad_input("shout", "text", "must be a string"))?;
        Ok(json!(text.to_uppercase()))
    });
    registry
}

struct Fixture {
    stack: Stack,
    custom_worker: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let stack = Stack::start(StackOptions {
            workers: 0,
            ..StackOptions::default()
        })
        .expect("the test stack starts");
        stack.spawn_worker_on(&["default", MIXED], ActionRegistry::with_builtins);
        let (custom_worker, _) = stack.spawn_worker_on(&[MIXED], custom_actions);
        Fixture {
            stack,
            custom_worker,
        }
    })
}

fn weft(stack: &Stack, args: &[&str]) -> Output {
    Command::new(weft_binary().expect("weft binary"))
        .args(args)
        .env("WEFT_DATABASE_URL", &stack.database_url)
        .env("WEFT_AMQP_URL", &stack.amqp_url)
        .env("RUST_LOG", "error")
        .output()
        .expect("weft runs")
}

fn weft_json(stack: &Stack, args: &[&str]) -> Value {
    let out = weft(stack, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `why` of one task in `weft explain ID TASK --json`.
fn why(stack: &Stack, id: WorkflowExecutionId, task: &str) -> String {
    let explained = weft_json(stack, &["explain", &id.to_string(), task, "--json"]);
    explained["explanation"]["tasks"][0]["why"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits (at most 30 s) until both workers of [`MIXED`] are live in the
/// workers table: their heartbeats arrived.
async fn mixed_pool_ready(pool: &PgPool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut conn = pool.acquire().await.expect("conn");
        let live = weft_store::workers::live_in_pools(
            &mut conn,
            &[MIXED.to_owned()],
            weft_store::workers::DEFAULT_HEARTBEAT_GRACE,
        )
        .await
        .expect("workers");
        if live.len() == 2 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the workers of `{MIXED}` did not report within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_task_in_a_pool_nobody_consumes_is_queued_and_says_how_to_start_a_worker() {
    let f = fixture();
    let pool = f.stack.pool().await.expect("pool");
    let yaml = "name: gpu\ntasks:\n  train:\n    action: echo\n    queue: gpu\n";
    let id = f
        .stack
        .submit(&pool, yaml, json!({}))
        .await
        .expect("submit");
    let hint = "no worker consumes pool `gpu`: start `weft worker --queue gpu`";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = weft_json(&f.stack, &["status", &id.to_string(), "--json"]);
        if status["tasks"][0]["status"] == "queued" {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task never showed `queued`: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["status"], "running");
    assert_eq!(status["hints"], json!([hint]), "{status}");
    let text = stdout(&weft(&f.stack, &["status", &id.to_string()]));
    assert!(text.contains("queued") && text.contains(hint), "{text}");

    let explained = stdout(&weft(&f.stack, &["explain", &id.to_string()]));
    assert!(
        explained.contains("waiting on `train` (queued in pool `gpu`)"),
        "{explained}"
    );
    assert!(
        explained.contains(
            "1 dispatched, waiting in pool `gpu` (queue depth 1, 0 consumers, no live worker): "
        ) && explained.contains(hint),
        "{explained}"
    );
    let out = weft(&f.stack, &["cancel", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn skipped_and_failed_tasks_say_what_decided_it() {
    let f = fixture();
    let pool = f.stack.pool().await.expect("pool");
    let yaml = r#"
name: decided
tasks:
  count:
    action: echo
    input: { n: 2 }
  big:
    needs: [count]
    when: "{{ tasks.count.result.n > 3 }}"
    action: echo
  flaky:
    action: fail
    input: { message: boom }
    retry: { attempts: 2, delay: 10ms }
  after:
    needs: [flaky]
    action: echo
"#;
    let id = f
        .stack
        .submit(&pool, yaml, json!({}))
        .await
        .expect("submit");
    let run = f
        .stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("the run ends");
    assert_eq!(run.status.as_str(), "failed");

    assert_eq!(
        why(&f.stack, id, "big"),
        "skipped: `when: {{ tasks.count.result.n > 3 }}` was false with tasks.count.result.n = 2"
    );
    assert_eq!(
        why(&f.stack, id, "after"),
        "skipped: trigger `all_success` not met (flaky failed)"
    );
    assert_eq!(
        why(&f.stack, id, "flaky"),
        "failed: attempt 2 of 2, retries exhausted: boom"
    );
    let explained = stdout(&weft(&f.stack, &["explain", &id.to_string()]));
    assert!(
        explained.starts_with(&format!("run {id} (decided): failed at ")),
        "{explained}"
    );
}

#[tokio::test]
async fn workers_lists_what_each_live_worker_consumes_and_knows() {
    let f = fixture();
    let pool = f.stack.pool().await.expect("pool");
    mixed_pool_ready(&pool).await;
    let workers = weft_json(&f.stack, &["workers", "--json"]);
    let custom = workers
        .as_array()
        .expect("a list")
        .iter()
        .find(|w| w["id"] == f.custom_worker.as_str())
        .unwrap_or_else(|| panic!("the custom worker is not listed: {workers}"));
    assert_eq!(custom["live"], true);
    assert_eq!(custom["queues"], json!([MIXED]));
    assert_eq!(
        custom["actions"],
        json!(["echo", "fail", "noop", "shell", "shout", "sleep"])
    );
    assert_eq!(custom["pid"], std::process::id());
    assert_eq!(custom["concurrency"], 8);
}

#[tokio::test]
async fn a_custom_action_next_to_a_stock_worker_of_its_pool_always_succeeds() {
    let f = fixture();
    let pool = f.stack.pool().await.expect("pool");
    mixed_pool_ready(&pool).await;
    let yaml = format!(
        r#"
name: mixed
tasks:
  loud:
    with_items: "{{{{ range(40) | list }}}}"
    action: shout
    queue: {MIXED}
    input: {{ text: "item {{{{ item }}}}" }}
"#
    );
    let id = f
        .stack
        .submit(&pool, &yaml, json!({}))
        .await
        .expect("submit");
    let run = f
        .stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("the run ends");
    let (result, declined): (Value, i64) = sqlx::query_as(
        "SELECT t.result, (SELECT count(*) FROM executions e \
                           WHERE e.task_execution_id = t.id AND e.declined_by IS NOT NULL) \
         FROM task_executions t WHERE t.workflow_execution_id = $1",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("task");
    assert_eq!(run.status.as_str(), "succeeded", "{:?}", run.error);
    let expected: Vec<String> = (0..40).map(|i| format!("ITEM {i}")).collect();
    assert_eq!(result, json!(expected));
    // The stock worker took some of them (it consumes the pool too) and
    // handed each back instead of failing it.
    assert!(declined > 0, "no dispatch reached the stock worker");
    let attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM executions WHERE workflow_execution_id = $1")
            .bind(id.as_uuid())
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(attempts, 40, "a declined dispatch must not cost an attempt");
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn an_action_no_worker_knows_fails_naming_the_pool_and_the_known_actions() {
    let f = fixture();
    let pool = f.stack.pool().await.expect("pool");
    mixed_pool_ready(&pool).await;
    let yaml = format!("name: typo\ntasks:\n  t:\n    action: shuot\n    queue: {MIXED}\n");
    let id = f
        .stack
        .submit(&pool, &yaml, json!({}))
        .await
        .expect("submit");
    let run = f
        .stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("the run ends");
    assert_eq!(run.status.as_str(), "failed");
    assert_eq!(
        why(&f.stack, id, "t"),
        "failed: attempt 1 of 1, retries exhausted: unknown action `shuot`: no live worker of pool \
         `mixed` knows it (its workers know: echo, fail, noop, shell, shout, sleep)"
    );
    assert_eq!(
        weft_tests::violations(&pool, id).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn validate_warns_about_an_action_no_live_worker_knows_and_suggests_one() {
    let f = fixture();
    let pool = f.stack.pool().await.expect("pool");
    mixed_pool_ready(&pool).await;
    let dir = std::env::temp_dir().join(format!("weft-explain-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("typo.yaml");
    std::fs::write(
        &file,
        "name: typo\ntasks:\n  t:\n    action: shel\n    input: { command: [\"true\"] }\n",
    )
    .expect("write");
    let out = weft(&f.stack, &["validate", file.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "a warning must not fail validate: {stderr}"
    );
    assert!(
        stderr.starts_with("warning: ")
            && stderr.contains(
                "typo.yaml: task `t`: no live worker of pool `default` knows action `shel` — did you mean `shell`?"
            ),
        "{stderr}"
    );
    // Offline: no database, no warning, still valid.
    let offline = Command::new(weft_binary().expect("weft binary"))
        .args(["validate", file.to_str().expect("utf-8 path")])
        .env(
            "WEFT_DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/nowhere",
        )
        .env("RUST_LOG", "error")
        .output()
        .expect("weft runs");
    assert!(offline.status.success());
    assert_eq!(String::from_utf8_lossy(&offline.stderr), "");
    let _ = std::fs::remove_dir_all(&dir);
}
