//! Secret inputs end to end (`secret: true`): a run submitted by `weft
//! submit` with `WEFT_SECRET_KEY`, run by a real executor and worker. The
//! action receives the plaintext; the plaintext is nowhere in the
//! database (every row of every table) nor in any message on the wire;
//! `weft status --json`, `weft logs` and the API show `***`. A submit
//! without a key stores nothing; a worker with another key fails the
//! attempt saying which key it lacks; `weft validate` warns where a
//! secret flows into a result or the output.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use weft_common::secret::sealed_token;
use weft_common::{Keyring, WorkflowExecutionId, WorkflowStatus};
use weft_tests::process::weft_binary;
use weft_tests::server::TestServer;
use weft_tests::{Stack, StackOptions, spy_dispatches, spy_events};
use weft_worker::{ActionContext, ActionRegistry};

const SECRET: &str = "hunter2-correct-horse-battery";
const API_SECRET: &str = "api-given-secret-4711";

/// The inputs `login` received, as the action saw them.
static RECEIVED: Mutex<Vec<Value>> = Mutex::new(Vec::new());

/// The built-ins and `login`: records its input, prints the token (a
/// careless action) and returns it in its result.
fn actions() -> ActionRegistry {
    let mut registry = ActionRegistry::with_builtins();
    registry.register("login", |ctx: ActionContext| async move {
        RECEIVED.lock().expect("lock").push(ctx.input.clone());
        let token = ctx.input["token"].as_str().unwrap_or_default().to_owned();
        ctx.logs
            .line(format!("logging in as {} with {token}", ctx.input["user"]));
        Ok(json!({ "user": ctx.input["user"], "token_used": token }))
    });
    registry
}

const WORKFLOW: &str = r#"
name: secrets
input:
  user: { type: string }
  token: { type: string, secret: true, description: the API token }
tasks:
  login:
    action: login
    input: { user: "{{ input.user }}", token: "{{ input.token }}", header: "Bearer {{ input.token }}" }
  after:
    needs: [login]
    action: echo
    input: { logged_in: "{{ tasks.login.result.user }}" }
output:
  user: "{{ input.user }}"
  token: "{{ input.token }}"
"#;

/// The same, its `login` on the pool `elsewhere`.
const ELSEWHERE: &str = r#"
name: secrets-elsewhere
input:
  token: { type: string, secret: true }
tasks:
  login: { action: login, queue: elsewhere, input: { user: x, token: "{{ input.token }}" } }
"#;

fn weft(stack: &Stack, args: &[&str], key: Option<&str>) -> Output {
    let mut command = Command::new(weft_binary().expect("weft binary"));
    command
        .args(args)
        .env("WEFT_DATABASE_URL", &stack.database_url)
        .env("WEFT_AMQP_URL", &stack.amqp_url)
        .env_remove("RUST_LOG")
        .env_remove("WEFT_CONFIG")
        .env_remove("WEFT_SERVER_URL")
        .env_remove("WEFT_SECRET_KEYS_OLD");
    match key {
        Some(key) => command.env("WEFT_SECRET_KEY", key),
        None => command.env_remove("WEFT_SECRET_KEY"),
    };
    command.output().expect("weft runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn file(name: &str, yaml: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("weft-{name}-{}.yaml", uuid::Uuid::new_v4()));
    std::fs::write(&path, yaml).expect("write the workflow");
    path
}

fn submit(stack: &Stack, path: &str, inputs: &[&str], key: Option<&str>) -> Output {
    let mut args = vec!["submit", path, "--json"];
    for input in inputs {
        args.extend(["--input", input]);
    }
    weft(stack, &args, key)
}

fn submitted_id(out: &Output) -> WorkflowExecutionId {
    assert!(out.status.success(), "submit failed: {}", text(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    answer["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no id in {answer}"))
}

/// Every row of every table of the database that contains `needle`, as
/// `table: row`.
async fn rows_containing(pool: &PgPool, needle: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(pool)
    .await
    .expect("tables");
    assert!(tables.iter().any(|t| t == "executions"), "{tables:?}");
    let mut found = Vec::new();
    for table in tables {
        // The table names come from the catalogue, not from input.
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM \"{table}\" t WHERE strpos(t::text, $1) > 0"
        )))
        .bind(needle)
        .fetch_all(pool)
        .await
        .expect("scan");
        found.extend(rows.into_iter().map(|row| format!("{table}: {row}")));
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_the_action_and_nothing_else() {
    let key = Keyring::generate_key();
    let keyring = Arc::new(Keyring::from_settings(Some(&key), None).unwrap().unwrap());
    let stack = Stack::start(StackOptions {
        actions,
        secrets: Some(Arc::clone(&keyring)),
        ..StackOptions::default()
    })
    .expect("stack");
    let pool = stack.pool().await.expect("pool");
    let stop = CancellationToken::new();
    let (dispatch_spy, dispatches) = spy_dispatches(&stack, "default", stop.clone())
        .await
        .expect("dispatch spy");
    let (event_spy, events) = spy_events(&stack, stop.clone()).await.expect("event spy");
    let path = file("secrets", WORKFLOW);
    let path = path.to_str().expect("utf-8 path");
    let token_input = format!("token={SECRET}");
    let inputs = ["user=admin", token_input.as_str()];

    // `weft validate` warns where the secret flows into the output.
    let out = weft(&stack, &["validate", path], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        said.contains("`output` reads secret input `token`"),
        "{said}"
    );

    // Without a key, nothing is stored.
    let out = submit(&stack, path, &inputs, None);
    assert!(!out.status.success(), "a submit without a key succeeded");
    assert!(
        text(&out.stderr).contains("WEFT_SECRET_KEY"),
        "{}",
        text(&out.stderr)
    );
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM workflow_executions")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(runs, 0, "a run was stored without a key");

    // With the key: the run succeeds, and the action got the plaintext.
    let id = submitted_id(&submit(&stack, path, &inputs, Some(&key)));
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("the run ends");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    // (The tests of this file share `RECEIVED`: each has its own user.)
    let received: Vec<Value> = RECEIVED
        .lock()
        .expect("lock")
        .iter()
        .filter(|i| i["user"] == json!("admin"))
        .cloned()
        .collect();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["token"], json!(SECRET));
    assert_eq!(received[0]["header"], json!(format!("Bearer {SECRET}")));

    // Nowhere in the database: runs, tasks, executions (inputs, results,
    // logs), outbox, … every row of every table.
    let leaks = rows_containing(&pool, SECRET).await;
    assert!(leaks.is_empty(), "the plaintext is stored: {leaks:#?}");
    // The scan does see what is stored in plain text: the other input.
    assert!(!rows_containing(&pool, "\"admin\"").await.is_empty());
    // What is stored is sealed with the key's id.
    let stored: Value = sqlx::query_scalar("SELECT input FROM workflow_executions WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_one(&pool)
        .await
        .expect("the run's input");
    let sealed = sealed_token(&stored["token"]).expect("the token is sealed");
    assert!(sealed.contains(keyring.key_id()), "{sealed}");
    assert_eq!(stored["user"], json!("admin"));

    // Nowhere on the wire: the dispatch carries the input sealed, and no
    // event (completions with results and logs, the run's end with its
    // output) carries the plaintext.
    let login = dispatches
        .lock()
        .expect("lock")
        .iter()
        .find(|d| d.workflow_execution_id == id && d.task_name == "login")
        .cloned()
        .expect("login's dispatch was seen");
    assert!(sealed_token(&login.input).is_some(), "{}", login.input);
    for dispatch in dispatches.lock().expect("lock").iter() {
        let body = serde_json::to_string(dispatch).expect("JSON");
        assert!(
            !body.contains(SECRET),
            "a dispatch carries the plaintext: {body}"
        );
    }
    let events = events.lock().expect("lock").clone();
    assert!(
        events
            .iter()
            .any(|e| e.contains("workflow_finished") && e.contains(&id.to_string())),
        "the run's end was not seen: {events:#?}"
    );
    for event in &events {
        assert!(
            !event.contains(SECRET),
            "an event carries the plaintext: {event}"
        );
    }

    // Shown as `***`: status --json, logs, the API.
    let out = weft(&stack, &["status", &id.to_string(), "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains(SECRET));
    let status: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["input"]["token"], json!("***"), "{status}");
    assert_eq!(status["input"]["user"], json!("admin"));
    assert_eq!(status["output"], json!({"user": "admin", "token": "***"}));
    let login_task = status["tasks"]
        .as_array()
        .and_then(|tasks| tasks.iter().find(|t| t["name"] == "login"))
        .unwrap_or_else(|| panic!("no task login in {status}"));
    assert_eq!(
        login_task["result"]["token_used"],
        json!("***"),
        "{login_task}"
    );
    let run_id = id.to_string();
    for args in [
        vec!["status", run_id.as_str()],
        vec!["list", "--json"],
        vec!["explain", run_id.as_str(), "--json"],
        vec!["explain", run_id.as_str(), "login"],
        vec!["audit", run_id.as_str(), "--json"],
    ] {
        let out = weft(&stack, &args, None);
        assert!(out.status.success(), "weft {args:?}: {}", text(&out.stderr));
        let said = text(&out.stdout) + &text(&out.stderr);
        assert!(
            !said.contains(SECRET),
            "weft {args:?} shows the plaintext: {said}"
        );
    }
    let out = weft(&stack, &["logs", &id.to_string(), "login"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let logs = text(&out.stdout);
    assert!(logs.contains("with ***"), "{logs}");
    assert!(!logs.contains(SECRET), "{logs}");
    let server = TestServer::with(&pool, |c| {
        c.dev = true;
        c.secrets = Some(Arc::clone(&keyring));
    })
    .await
    .expect("server");
    let http = reqwest::Client::new();
    let shown = http
        .get(server.url(&format!("/api/v1/runs/{id}")))
        .send()
        .await
        .expect("GET the run")
        .text()
        .await
        .expect("body");
    assert!(!shown.contains(SECRET), "{shown}");
    let shown: Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(shown["input"]["token"], json!("***"), "{shown}");

    // Submitted over the API: sealed by the server's key, or refused by
    // a server without one.
    let body = json!({ "workflow": WORKFLOW, "inputs": { "user": "api", "token": API_SECRET } });
    let answer = http
        .post(server.url("/api/v1/runs"))
        .json(&body)
        .send()
        .await
        .expect("POST a run");
    assert_eq!(answer.status(), reqwest::StatusCode::CREATED);
    let answer: Value = answer.json().await.expect("JSON");
    let api_run: WorkflowExecutionId = answer["id"].as_str().unwrap().parse().unwrap();
    let run = stack
        .wait(&pool, api_run, Duration::from_secs(60))
        .await
        .expect("the API's run ends");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    assert!(
        RECEIVED
            .lock()
            .expect("lock")
            .iter()
            .any(|i| i["token"] == json!(API_SECRET))
    );
    let leaks = rows_containing(&pool, API_SECRET).await;
    assert!(
        leaks.is_empty(),
        "the API's plaintext is stored: {leaks:#?}"
    );
    let keyless = TestServer::with(&pool, |c| c.dev = true)
        .await
        .expect("server");
    let refused = http
        .post(keyless.url("/api/v1/runs"))
        .json(&body)
        .send()
        .await
        .expect("POST a run");
    assert_eq!(refused.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    let why = refused.text().await.expect("body");
    assert!(why.contains("WEFT_SECRET_KEY"), "{why}");

    stop.cancel();
    let _ = dispatch_spy.await;
    let _ = event_spy.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_another_key_fails_the_attempt_naming_the_key() {
    let key = Keyring::generate_key();
    let keyring = Arc::new(Keyring::from_settings(Some(&key), None).unwrap().unwrap());
    let stack = Stack::start(StackOptions {
        workers: 0,
        actions,
        secrets: Some(Arc::clone(&keyring)),
        ..StackOptions::default()
    })
    .expect("stack");
    let other = Arc::new(
        Keyring::from_settings(Some(&Keyring::generate_key()), None)
            .unwrap()
            .unwrap(),
    );
    let other_id = other.key_id().to_owned();
    let _worker = stack.spawn_worker_with(&["elsewhere"], actions, move |c| {
        c.secrets = Some(other);
    });
    let pool = stack.pool().await.expect("pool");
    let path = file("secrets-elsewhere", ELSEWHERE);
    let id = submitted_id(&submit(
        &stack,
        path.to_str().unwrap(),
        &["token=never-opened-secret"],
        Some(&key),
    ));
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("the run ends");
    assert_eq!(run.status, WorkflowStatus::Failed);
    let error = run.error.unwrap_or_default();
    assert!(error.contains("opening the sealed input"), "{error}");
    assert!(error.contains(keyring.key_id()), "{error}");
    assert!(error.contains(&other_id), "{error}");
    assert!(error.contains("WEFT_SECRET_KEYS_OLD"), "{error}");
    assert!(
        rows_containing(&pool, "never-opened-secret")
            .await
            .is_empty()
    );

    // A registered version: submitting it seals too; a schedule cannot
    // give the secret (it keeps its inputs in plain text).
    let out = weft(&stack, &["workflow", "apply", path.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = weft(
        &stack,
        &[
            "submit",
            "secrets-elsewhere",
            "--json",
            "--input",
            "token=registered-secret",
        ],
        Some(&key),
    );
    submitted_id(&out);
    let out = weft(
        &stack,
        &[
            "submit",
            "secrets-elsewhere",
            "--input",
            "token=registered-secret-2",
        ],
        None,
    );
    assert!(
        !out.status.success(),
        "a registered submit without a key succeeded"
    );
    assert!(
        text(&out.stderr).contains("WEFT_SECRET_KEY"),
        "{}",
        text(&out.stderr)
    );
    let out = weft(
        &stack,
        &[
            "schedule",
            "create",
            "nightly",
            "--workflow",
            "secrets-elsewhere",
            "--cron",
            "0 3 * * *",
            "--input",
            "token=scheduled-secret",
        ],
        Some(&key),
    );
    assert!(!out.status.success(), "a schedule took a secret");
    assert!(
        text(&out.stderr).contains("input `token` is secret"),
        "{}",
        text(&out.stderr)
    );
    for plaintext in ["registered-secret", "scheduled-secret"] {
        let leaks = rows_containing(&pool, plaintext).await;
        assert!(leaks.is_empty(), "{plaintext} is stored: {leaks:#?}");
    }
}

const FAILING: &str = r#"
name: secrets-failing
input:
  token: { type: string, secret: true }
tasks:
  login: { action: login, input: { user: rotated, token: "{{ input.token }}" } }
  boom: { needs: [login], action: fail, input: { message: "cannot deploy with {{ input.token }}" } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_old_runs_still_run_and_a_failure_names_no_secret() {
    const ROTATED: &str = "sealed-before-the-rotation";
    // The run is submitted with key A; the executor and the worker have
    // since moved to key B, keeping A among the old keys.
    let old_key = Keyring::generate_key();
    let new_key = Keyring::generate_key();
    let rotated = Arc::new(
        Keyring::from_settings(Some(&new_key), Some(&old_key))
            .unwrap()
            .unwrap(),
    );
    let stack = Stack::start(StackOptions {
        actions,
        secrets: Some(Arc::clone(&rotated)),
        ..StackOptions::default()
    })
    .expect("stack");
    let pool = stack.pool().await.expect("pool");
    let path = file("secrets-failing", FAILING);
    let token = format!("token={ROTATED}");
    let id = submitted_id(&submit(
        &stack,
        path.to_str().unwrap(),
        &[token.as_str()],
        Some(&old_key),
    ));
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("the run ends");
    // `login` ran with the plaintext; `boom` failed, its error redacted.
    assert!(
        RECEIVED
            .lock()
            .expect("lock")
            .iter()
            .any(|i| i["token"] == json!(ROTATED)),
        "login did not run with the secret"
    );
    assert_eq!(run.status, WorkflowStatus::Failed);
    let error = run.error.unwrap_or_default();
    assert!(error.contains("cannot deploy with ***"), "{error}");
    // The task inputs were sealed with the new key, the run's with the old.
    let sealed: Vec<Value> =
        sqlx::query_scalar("SELECT e.input FROM executions e WHERE e.workflow_execution_id = $1")
            .bind(id.as_uuid())
            .fetch_all(&pool)
            .await
            .expect("executions");
    assert_eq!(sealed.len(), 2);
    for input in &sealed {
        let token = sealed_token(input).expect("a sealed task input");
        assert!(token.contains(rotated.key_id()), "{token}");
    }
    let leaks = rows_containing(&pool, ROTATED).await;
    assert!(leaks.is_empty(), "the plaintext is stored: {leaks:#?}");
}
