//! The `weft` binary when things go wrong or get interrupted: a closed
//! pipe, Ctrl-C during `--wait`, run ids given by prefix or `last`,
//! connection errors (each cause in one line, password hidden), a reused
//! idempotency key, a config file with a typo, and flags a command does
//! not use.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use weft_common::WorkflowExecutionId;
use weft_store::runs::NewRun;
use weft_tests::process::weft_binary;
use weft_tests::{Stack, StackOptions};

const DIAMOND: &str = include_str!("../../workflows/diamond.yaml");

/// One database and vhost for the file, no daemons: runs stay pending.
fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| Stack::start(StackOptions::bare()).expect("stack"))
}

/// Held by the tests that store runs, so that `last` is what the test
/// that asks for it stored last.
static STORING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn storing() -> std::sync::MutexGuard<'static, ()> {
    STORING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn weft(args: &[&str]) -> Command {
    let stack = stack();
    let mut command = Command::new(weft_binary().expect("weft binary"));
    command
        .args(args)
        .env("WEFT_DATABASE_URL", &stack.database_url)
        .env("WEFT_AMQP_URL", &stack.amqp_url)
        .env_remove("RUST_LOG")
        .env_remove("WEFT_CONFIG")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    command
}

fn run(args: &[&str]) -> Output {
    weft(args).output().expect("weft runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stores a run of the diamond workflow with the given id.
fn store_run(id: WorkflowExecutionId) {
    let stack = stack();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let pool = stack.pool().await.expect("pool");
        let input = json!({ "base": 1 });
        let new = NewRun {
            id,
            workflow_name: "diamond",
            source: DIAMOND,
            origin: "diamond.yaml",
            input: &input,
            tasks_total: 4,
            idempotency_key: None,
        };
        weft_executor::submit(&pool, None, &new)
            .await
            .expect("stored");
    });
}

/// A TCP port nothing listens on.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    listener.local_addr().expect("its address").port()
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let _storing = storing();
    for _ in 0..400 {
        store_run(WorkflowExecutionId::new());
    }
    // 400 runs as pretty JSON are far more than a pipe holds.
    let mut child = weft(&["list", "--limit", "400", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft runs");
    let mut head = [0u8; 16];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut head)
        .expect("some output");
    // The reader is gone (like `| head -c 16`).
    let out = child.wait_with_output().expect("weft ends");
    assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
    assert!(
        stderr(&out).is_empty(),
        "a closed pipe printed: {}",
        stderr(&out)
    );
}

#[test]
fn runs_are_named_by_unique_prefix_or_last_and_an_ambiguous_prefix_lists_them() {
    let _storing = storing();
    let twins = [
        "abcdef01-2345-7000-8000-000000000001",
        "abcdef01-2345-7000-8000-000000000002",
    ];
    for id in twins {
        store_run(id.parse().expect("an id"));
    }
    let out = run(&["status", "abcdef01-2345", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("ambiguous"), "{err}");
    for id in twins {
        assert!(err.contains(id), "the candidates are listed: {err}");
    }

    let out = run(&["status", "abcdef01234570008000000000000002", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["id"], twins[1]);

    let newest = WorkflowExecutionId::new();
    store_run(newest);
    let out = run(&["status", "last", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["id"], newest.to_string(), "`last` is the newest run");
    let out = run(&["cancel", &newest.to_string()[..13]]);
    assert!(
        stdout(&out).contains(&newest.to_string()),
        "{}",
        stderr(&out)
    );

    let out = run(&["status", "0000000f"]);
    assert!(
        stderr(&out).contains("no run id starts with `0000000f`"),
        "{}",
        stderr(&out)
    );
    let out = run(&["status", "abc"]);
    assert!(stderr(&out).contains("at least 8"), "{}", stderr(&out));

    let out = run(&["list", "--workflow", "no-such-workflow", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(listed, json!([]));
    let out = run(&["list", "--workflow", "diamond", "--json", "--limit", "1"]);
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(listed[0]["workflow"], "diamond");
}

/// The one error line of a one-shot command given `url`.
fn database_error(url: &str) -> String {
    let out = run(&["status", "last", "--database-url", url]);
    assert_eq!(out.status.code(), Some(1), "{url}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn each_postgres_connection_error_says_its_cause_in_one_line() {
    let port = free_port();
    let err = database_error(&format!("postgres://postgres:secret@127.0.0.1:{port}/weft"));
    assert_eq!(
        err.trim(),
        format!(
            "error: cannot connect to PostgreSQL at postgres://postgres:***@127.0.0.1:{port}/weft: connection refused"
        )
    );
    let err = database_error("postgres://no_such_role_weft@127.0.0.1:5432/weft");
    assert!(
        err.contains("authentication failed") && err.contains("no_such_role_weft"),
        "{err}"
    );
    assert!(!err.contains("weft migrate"), "{err}");
    let err = database_error("postgres://postgres@127.0.0.1:5432/weft_no_such_db");
    assert!(
        err.contains("database `weft_no_such_db` does not exist; run `weft migrate` to create it, or check the URL"),
        "{err}"
    );
    let err = database_error("postgres//postgres:secret@127.0.0.1/weft");
    assert!(
        err.contains("is not valid") && !err.contains("secret"),
        "{err}"
    );
}

#[test]
fn rabbitmq_errors_are_one_line_per_attempt_and_bad_urls_are_refused() {
    let _storing = storing();
    let stack = stack();
    let wrong = stack
        .amqp_url
        .replacen("guest:guest", "guest:wrongsecret", 1);
    assert_ne!(
        wrong, stack.amqp_url,
        "the test URL carries guest's password"
    );
    let mut worker = weft(&["worker", "--amqp-url", &wrong])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("weft worker");
    let mut lines = BufReader::new(worker.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match lines.next() {
            Some(Ok(line)) => seen.push(line),
            _ => break,
        }
    }
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for line in &seen {
        assert!(
            line.contains("cannot connect to RabbitMQ at amqp://guest:***@")
                && line.contains("authentication failed"),
            "{line}"
        );
        assert!(
            !line.contains("wrongsecret") && !line.contains('\u{1b}'),
            "{line}"
        );
    }
    let refused = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let out = weft(&["worker", "--amqp-url", "amqp//guest:guest@nowhere"])
        .output()
        .expect("weft worker");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the RabbitMQ URL `amqp//guest:***@nowhere` is not valid"),
        "{}",
        stderr(&out)
    );

    // submit talks to PostgreSQL only: with RabbitMQ unreachable from
    // where it runs, the run is stored and nothing is said of RabbitMQ.
    let out = weft(&["submit", "workflows/diamond.yaml"])
        .env("WEFT_AMQP_URL", &refused)
        .output()
        .expect("weft submit");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        !err.contains("RabbitMQ") && !err.contains("amqp://"),
        "submit needs no RabbitMQ: {err}"
    );
    let id = stdout(&out).trim().to_owned();
    let out = run(&["status", &id, "--json"]);
    assert!(out.status.success(), "the run is stored: {}", stderr(&out));
}

#[test]
fn reusing_an_idempotency_key_with_other_inputs_is_refused_naming_the_run() {
    let _storing = storing();
    let submit = |base: &str| {
        run(&[
            "submit",
            "workflows/diamond.yaml",
            "-i",
            &format!("base={base}"),
            "--idempotency-key",
            "cli-errors-key",
            "--json",
        ])
    };
    let first = submit("3");
    assert!(first.status.success(), "{}", stderr(&first));
    let first: Value = serde_json::from_slice(&first.stdout).expect("JSON");
    let again: Value = serde_json::from_slice(&submit("3").stdout).expect("JSON");
    assert_eq!(
        (&again["id"], &again["created"]),
        (&first["id"], &json!(false))
    );
    let other = submit("4");
    assert_eq!(other.status.code(), Some(1));
    let err = stderr(&other);
    assert!(
        err.contains("idempotency key `cli-errors-key` already names run")
            && err.contains(first["id"].as_str().expect("id"))
            && err.contains("other inputs"),
        "{err}"
    );
}

#[test]
fn ctrl_c_during_wait_leaves_the_run_going_and_says_how_to_follow_it() {
    let _storing = storing();
    // No executor: the run stays pending, the wait goes on until Ctrl-C.
    let mut child = weft(&["submit", "workflows/diamond.yaml", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft submit");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut id = String::new();
    out.read_line(&mut id).expect("the id comes first");
    let id = id.trim().to_owned();
    assert!(id.parse::<WorkflowExecutionId>().is_ok(), "{id}");
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let done = child.wait_with_output().expect("weft ends");
    assert_eq!(done.status.code(), Some(130));
    assert!(
        stderr(&done).contains(&format!(
            "the run goes on: follow it with `weft watch {id}`"
        )),
        "{}",
        stderr(&done)
    );
}

#[test]
fn a_config_file_with_a_typo_is_refused_with_a_hint() {
    let path = std::env::temp_dir().join(format!("weft-cli-errors-{}.yaml", std::process::id()));
    std::fs::write(&path, "databse_url: postgres://x@127.0.0.1/weft\n").expect("config");
    let out = run(&["list", "--config", &path.display().to_string()]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown setting `databse_url` (did you mean `database_url`?)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_shows_only_the_flags_a_command_uses() {
    let status = stdout(&run(&["status", "--help"]));
    assert!(status.contains("--database-url"), "{status}");
    assert!(
        !status.contains("--amqp-url") && !status.contains("--log-format"),
        "{status}"
    );
    let worker = stdout(&run(&["worker", "--help"]));
    assert!(
        worker.contains("--amqp-url") && worker.contains("--log-format"),
        "{worker}"
    );
    assert!(!worker.contains("--database-url"), "{worker}");
}
