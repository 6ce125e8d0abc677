//! The CLI's remote mode from the outside: `weft … --server URL --token T`
//! against a real `weft server` process prints what the same command
//! prints against the database (JSON and tables), and says clearly what is
//! wrong with a bad token, a token of too low a role, or a server that is
//! not there.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_tests::cli::{Cli, Server, free_port, stderr, stdout};
use weft_tests::process::{Daemon, weft_binary};
use weft_tests::{Stack, StackOptions};

/// Asserts that `args` prints the same (stdout, stderr and exit status)
/// against the database and through the server.
fn same(cli: &Cli<'_>, server: &Server, token: &str, args: &[&str]) {
    let direct = cli.run(args);
    let remote = cli.remote(server, token, args);
    assert_eq!(
        stdout(&direct),
        stdout(&remote),
        "{args:?}: stdout differs (remote stderr: {})",
        stderr(&remote)
    );
    assert_eq!(stderr(&direct), stderr(&remote), "{args:?}: stderr differs");
    assert_eq!(direct.status.code(), remote.status.code(), "{args:?}");
}

/// Like [`same`] for JSON output, leaving out the fields that change from
/// one read to the next (a clock read when answering).
fn same_json(cli: &Cli<'_>, server: &Server, token: &str, args: &[&str], volatile: &[&str]) {
    let parse = |out: &Output| -> Value {
        let mut value: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no JSON ({e}): {} {}",
                stdout(out),
                stderr(out)
            )
        });
        strip(&mut value, volatile);
        value
    };
    let direct = parse(&cli.run(args));
    let remote = parse(&cli.remote(server, token, args));
    assert_eq!(direct, remote, "{args:?}");
}

fn strip(value: &mut Value, keys: &[&str]) {
    match value {
        Value::Object(map) => {
            for key in keys {
                map.remove(*key);
            }
            map.values_mut().for_each(|v| strip(v, keys));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip(v, keys)),
        _ => {}
    }
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-cli-remote-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("temp file");
    path
}

#[test]
fn remote_commands_print_what_direct_ones_print() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let cli = Cli::new(&stack);
    let env = [
        ("WEFT_DATABASE_URL", stack.database_url.as_str()),
        ("WEFT_AMQP_URL", stack.amqp_url.as_str()),
    ];
    let _dev = Daemon::start("dev", &["dev"], &env).expect("weft dev");
    let server = Server::start(&stack, false);
    let operator = cli.token("operator");
    let viewer = cli.token("viewer");

    // submit --wait --json through the server: the final status, exit 0,
    // and the id first on stderr — as in direct mode.
    let submitted = cli.remote(
        &server,
        &operator,
        &[
            "submit",
            "workflows/diamond.yaml",
            "--input",
            "base=3",
            "--wait",
            "--json",
        ],
    );
    assert!(submitted.status.success(), "{}", stderr(&submitted));
    let status: Value = serde_json::from_slice(&submitted.stdout).expect("status JSON");
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["output"], serde_json::json!({"answer": 15}));
    let diamond = status["id"].as_str().expect("an id").to_owned();
    assert_eq!(stderr(&submitted).lines().last(), Some(diamond.as_str()));

    // A run with a failed task and logs, submitted without --wait.
    let out = cli.remote(
        &server,
        &operator,
        &["submit", "workflows/failure-handling.yaml", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let submission: Value = serde_json::from_slice(&out.stdout).expect("submission JSON");
    assert_eq!(submission["workflow"], "failure-handling");
    assert_eq!(submission["created"], true);
    let failing = submission["id"].as_str().expect("an id").to_owned();
    // watch follows it to its end over HTTP, exactly as direct mode does.
    same(&cli, &server, &viewer, &["watch", &failing, "--json"]);
    same(&cli, &server, &viewer, &["watch", &failing]);

    // Reading: the same text and the same JSON.
    // A prefix long enough to be unique (ids made in one second share
    // their first 8 digits).
    let prefix: String = failing.replace('-', "")[..20].to_owned();
    for run in [diamond.as_str(), failing.as_str(), "last", &prefix] {
        same(&cli, &server, &viewer, &["status", run]);
        same(&cli, &server, &viewer, &["status", run, "--json"]);
        same(&cli, &server, &viewer, &["logs", run]);
        same(&cli, &server, &viewer, &["logs", run, "--json"]);
        same(&cli, &server, &viewer, &["explain", run]);
        same_json(
            &cli,
            &server,
            &viewer,
            &["explain", run, "--json"],
            &["now"],
        );
    }
    same(
        &cli,
        &server,
        &viewer,
        &["status", &failing, "--task", "deploy"],
    );
    same(
        &cli,
        &server,
        &viewer,
        &["status", &failing, "--task", "deploy", "--json"],
    );
    same(&cli, &server, &viewer, &["logs", &failing, "deploy"]);
    same(
        &cli,
        &server,
        &viewer,
        &["logs", &failing, "deploy", "--json"],
    );
    same(&cli, &server, &viewer, &["logs", &failing, "--follow"]);
    same(&cli, &server, &viewer, &["explain", &failing, "notify"]);
    same(&cli, &server, &viewer, &["list"]);
    same(&cli, &server, &viewer, &["list", "--json"]);
    same(
        &cli,
        &server,
        &viewer,
        &["list", "--workflow", "diamond", "--json"],
    );
    same(
        &cli,
        &server,
        &viewer,
        &["list", "--status", "succeeded", "--limit", "1"],
    );
    same_json(
        &cli,
        &server,
        &viewer,
        &["workers", "--json"],
        &["silent_for_s", "last_heartbeat", "running"],
    );

    // Errors a command reports read the same too: an unknown task, an
    // unknown run.
    same(
        &cli,
        &server,
        &viewer,
        &["status", &failing, "--task", "nope"],
    );
    same(&cli, &server, &viewer, &["explain", &failing, "nope"]);
    same(
        &cli,
        &server,
        &viewer,
        &["status", "00000000-0000-7000-8000-000000000000"],
    );

    // An ambiguous prefix is refused alike, listing the candidates (ids
    // made within about a minute share their first 8 digits: usually
    // these do); so is a prefix no run has.
    same(&cli, &server, &viewer, &["status", &diamond[..8]]);
    same(&cli, &server, &viewer, &["status", "ffffffff"]);

    // Steering: cancel of a finished run says so, as direct mode does.
    same(&cli, &server, &operator, &["cancel", &diamond]);
    // Retry of a run that succeeded is refused with the same sentence.
    same(&cli, &server, &operator, &["retry", &diamond]);

    // Retry of a failed run re-opens it; --wait follows it over HTTP.
    let fails = temp_file(
        "fails.yaml",
        "name: fails\ntasks:\n  boom:\n    action: fail\n    input: { message: \"no luck\" }\n",
    );
    let fails = fails.to_str().expect("a UTF-8 path");
    let out = cli.remote(&server, &operator, &["submit", fails, "--wait"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let failed = stdout(&out).lines().next().expect("the id").to_owned();
    let out = cli.remote(&server, &operator, &["retry", &failed, "--wait", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("re-opened as round 2; running again: boom"),
        "{}",
        stderr(&out)
    );
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(status["status"], "failed");
    same(
        &cli,
        &server,
        &viewer,
        &["status", &failed, "--task", "boom"],
    );

    // validate: a valid file and an invalid one.
    same(
        &cli,
        &server,
        &viewer,
        &["validate", "workflows/diamond.yaml"],
    );
    let bad = temp_file(
        "bad.yaml",
        "name: bad\ntasks:\n  a:\n    action: echo\n    neeeds: [b]\n",
    );
    let bad = bad.to_str().expect("a UTF-8 path");
    same(&cli, &server, &viewer, &["validate", bad]);
    same(&cli, &server, &operator, &["submit", bad]);

    // The server reads no files: a workflow with `workflow:` tasks is
    // refused before anything is sent, saying what to do instead.
    let out = cli.remote(
        &server,
        &operator,
        &["submit", "workflows/fan-out-children.yaml"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "task `process` starts a sub-workflow from a file, and the server reads no files"
        ),
        "{}",
        stderr(&out)
    );

    // A viewer may not submit: 403, said plainly, exit 1.
    let out = cli.remote(&server, &viewer, &["submit", "workflows/diamond.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error: this needs a token with the operator role or higher"),
        "{}",
        stderr(&out)
    );
    let out = cli.remote(&server, &viewer, &["cancel", &diamond]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("operator role"), "{}", stderr(&out));
}

#[test]
fn bad_tokens_and_missing_servers_are_clear_errors() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let cli = Cli::new(&stack);
    let server = Server::start(&stack, false);

    // A wrong token: 401, explained, non-zero exit, nothing on stdout.
    let out = cli.remote(&server, "weft_0000", &["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "error: the server at {} refused the token (unknown, revoked or expired): set WEFT_TOKEN (or --token) to a valid one from `weft token create`",
            server.url
        )
    );
    // No token at all: say which variable to set.
    let out = cli.run(&["status", "last", "--server", &server.url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("needs a token: set WEFT_TOKEN"),
        "{}",
        stderr(&out)
    );
    // The environment works as the flags do.
    let viewer = cli.token("viewer");
    let out = Command::new(weft_binary().expect("weft binary"))
        .args(["list", "--json"])
        .env("WEFT_SERVER_URL", &server.url)
        .env("WEFT_TOKEN", &viewer)
        .env("WEFT_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .expect("weft runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "[]");

    // No server there: one line naming the URL.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    for args in [
        vec!["list"],
        vec!["status", "last"],
        vec!["submit", "workflows/diamond.yaml", "--input", "base=1"],
        vec!["validate", "workflows/diamond.yaml"],
    ] {
        let mut all = args.clone();
        all.extend(["--server", &nowhere, "--token", &viewer]);
        let out = cli.run(&all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!(
                "error: cannot reach the Weft server at {nowhere} ("
            )),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    // Not a URL at all.
    let out = cli.run(&["list", "--server", "127.0.0.1:8080"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not an http:// URL"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dev_mode_serves_without_tokens_and_only_on_loopback() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let cli = Cli::new(&stack);
    let server = Server::start(&stack, true);
    let out = cli.run(&["list", "--json", "--server", &server.url]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli.run(&["server", "--dev", "--addr", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("only on a loopback address"),
        "{}",
        stderr(&out)
    );
}

/// `weft dev` serves the UI and the API too, without tokens, and says
/// where (on stdout) and that it asks for no token (on stderr, loudly).
#[test]
fn weft_dev_prints_the_ui_address_and_serves_the_api() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;

    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let cli = Cli::new(&stack);
    let mut dev = Command::new(weft_binary().expect("weft binary"))
        .args(["dev", "--server-addr", "127.0.0.1:0"])
        .env("WEFT_DATABASE_URL", &stack.database_url)
        .env("WEFT_AMQP_URL", &stack.amqp_url)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft dev starts");
    let mut lines = BufReader::new(dev.stdout.take().expect("stdout")).lines();
    let first = lines
        .next()
        .and_then(Result::ok)
        .expect("weft dev prints where its UI is");
    let url = first
        .strip_prefix("web UI")
        .map(str::trim)
        .and_then(|u| u.strip_suffix('/'))
        .unwrap_or_else(|| panic!("not the UI's address: {first}"))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let out = cli.run(&[
        "submit",
        "workflows/diamond.yaml",
        "--input",
        "base=3",
        "--wait",
        "--json",
        "--server",
        &url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(status["status"], "succeeded");
    let _ = Command::new("kill")
        .args(["-TERM", &dev.id().to_string()])
        .status();
    let ended = dev.wait_with_output().expect("weft dev ends");
    assert!(ended.status.success(), "weft dev stops cleanly on SIGTERM");
    let err = String::from_utf8_lossy(&ended.stderr);
    assert!(
        err.contains("DEV MODE") && err.contains("NO TOKEN"),
        "{err}"
    );
}

/// The server answers at most 1,000 attempts' logs a request: remote
/// `weft logs` pages through a run past that and prints every attempt, as
/// direct mode does.
#[test]
fn remote_logs_of_a_run_past_a_page_print_every_attempt() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let cli = Cli::new(&stack);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // One finished run: a plain task, and a 1,500-item fan-out whose every
    // 100th item failed twice first: 1,531 attempts, each with logs.
    let run = runtime.block_on(async {
        let pool = stack.pool().await.expect("pool");
        weft_tests::fill::fan_out_runs(&pool, 1, 1_500)
            .await
            .expect("fill");
        weft_tests::fill::fan_out_run_id(&pool, 1)
            .await
            .expect("id")
    });
    let run = run.to_string();
    let server = Server::start(&stack, false);
    let viewer = cli.token("viewer");
    let json = cli.remote(&server, &viewer, &["logs", &run, "--json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let attempts: Vec<Value> = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(attempts.len(), 1 + 1_500 + 2 * 15);
    same(&cli, &server, &viewer, &["logs", &run, "--json"]);
    same(&cli, &server, &viewer, &["logs", &run, "fan"]);
}

/// Polls `weft status RUN --json` until task `task` waits (its `waiting`
/// is set).
fn until_waiting(cli: &Cli<'_>, run: &str, task: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: Value =
            serde_json::from_str(&cli.ok(&["status", run, "--json"])).expect("json");
        let waiting = status["tasks"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["name"] == task))
            .and_then(|t| t["waiting"].as_str())
            .map(str::to_owned);
        if let Some(waiting) = waiting {
            assert!(waiting.starts_with("waiting for"), "{waiting}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "task `{task}` never waited: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn signals_and_approvals_go_through_the_server() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let cli = Cli::new(&stack);
    let server = Server::start(&stack, false);
    let operator = cli.token("operator");
    let viewer = cli.token("viewer");
    let file = temp_file(
        "gate.yaml",
        "name: gate\ntasks:\n  gate:\n    wait:\n      signal: go\n      input: { amount: { type: integer } }\n  ok:\n    needs: [gate]\n    wait: { approval: true }\n",
    );
    let id = cli
        .ok(&["submit", &file.display().to_string()])
        .trim()
        .to_owned();
    until_waiting(&cli, &id, "gate");
    // A viewer may not signal.
    let out = cli.remote(
        &server,
        &viewer,
        &["signal", &id, "gate", "--input", "amount=5"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("operator"), "{}", stderr(&out));
    // A payload that does not fit is refused naming the field, as in direct mode.
    let out = cli.remote(
        &server,
        &operator,
        &["signal", &id, "gate", "--input", "amount=lots"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("input `amount` must be an integer"),
        "{}",
        stderr(&out)
    );
    let out = cli.remote(
        &server,
        &operator,
        &["signal", &id, "gate", "--input", "amount=5", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(answer["resolution"], "signaled");
    assert_eq!(answer["result"], serde_json::json!({ "amount": 5 }));
    // The same signal again is refused.
    let out = cli.remote(
        &server,
        &operator,
        &["signal", &id, "gate", "--input", "amount=6"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    until_waiting(&cli, &id, "ok");
    let out = cli.remote(&server, &operator, &["approve", &id, "ok", "--by", "dana"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("approved"), "{}", stdout(&out));
    let out = cli.run(&["watch", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_str(&cli.ok(&["status", &id, "--json"])).expect("json");
    let ok = status["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == "ok"))
        .cloned()
        .expect("ok");
    assert_eq!(
        ok["result"],
        serde_json::json!({ "approved": true, "by": "dana", "comment": null })
    );
}
