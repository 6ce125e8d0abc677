//! The `weft` binary from the outside, as a user drives it: `weft dev`,
//! `submit --wait --json`, `status --json`, `list --json`, `audit`,
//! `cancel`, and the errors a user sees.

use weft_tests::cli::Cli;
use weft_tests::process::Daemon;
use weft_tests::{Stack, StackOptions};

#[test]
fn a_user_session_with_the_cli() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let cli = Cli::new(&stack);
    let env = [
        ("WEFT_DATABASE_URL", stack.database_url.as_str()),
        ("WEFT_AMQP_URL", stack.amqp_url.as_str()),
    ];
    let _dev = Daemon::start("dev", &["dev"], &env).expect("weft dev");

    // submit --wait --json: the final status object, exit 0.
    let (status, out) = cli.json(&[
        "submit",
        "workflows/diamond.yaml",
        "--input",
        "base=3",
        "--wait",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["output"], serde_json::json!({"answer": 15}));
    let tasks = status["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 4);
    for key in [
        "name",
        "status",
        "items_total",
        "items_succeeded",
        "items_failed",
        "attempts",
        "result",
        "error",
        "started_at",
        "finished_at",
    ] {
        assert!(
            tasks[0].get(key).is_some(),
            "task JSON lacks `{key}`: {}",
            tasks[0]
        );
    }
    for key in [
        "id",
        "workflow",
        "status",
        "input",
        "output",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "tasks",
    ] {
        assert!(status.get(key).is_some(), "status JSON lacks `{key}`");
    }
    let id = status["id"].as_str().expect("id").to_owned();

    // status --json of the same run; list --json shows it.
    let (again, _) = cli.json(&["status", &id, "--json"]);
    assert_eq!(again["status"], "succeeded");
    let (list, _) = cli.json(&["list", "--json", "--limit", "5"]);
    assert!(
        list.as_array()
            .expect("array")
            .iter()
            .any(|r| r["id"] == id.as_str())
    );

    // A fan-out with items: items_total and item order in the result.
    let (etl, out) = cli.json(&[
        "submit",
        "workflows/etl.yaml",
        "--input",
        "batch_size=5",
        "--wait",
        "--json",
    ]);
    assert!(out.status.success());
    let process = etl["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["name"] == "process")
        .cloned()
        .expect("process");
    assert_eq!(process["items_total"], 5);
    let records: Vec<i64> = process["result"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["record"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(records, [1, 2, 3, 4, 5]);

    // A failing run: --wait exits 1.
    let out = cli.run(&["submit", "workflows/scatter-gather.yaml", "--wait"]);
    assert_eq!(out.status.code(), Some(1));

    // A missing required input: non-zero, the input named, nothing stored.
    let dir = std::env::temp_dir().join(format!("weft-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let needs_input = dir.join("needs.yaml");
    std::fs::write(&needs_input, "name: needs\ninput: { source: null }\ntasks:\n  a: { action: echo, input: { s: \"{{ input.source }}\" } }\n").expect("write");
    let out = cli.run(&["submit", needs_input.to_str().expect("path")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("source"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (all, _) = cli.json(&["list", "--json", "--limit", "100"]);
    assert!(
        all.as_array()
            .expect("array")
            .iter()
            .all(|r| r["workflow"] != "needs")
    );

    // An invalid workflow: diagnostics with the line, exit 1.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad\ntasks:\n  a:\n    action: echo\n    neeeds: [b]\n",
    )
    .expect("write");
    let out = cli.run(&["validate", bad.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:5:5") && stderr.contains("did you mean `needs`"),
        "{stderr}"
    );

    // Cancelling a finished run is a clear no-op; the audit is clean.
    let out = cli.run(&["cancel", &id]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already finished"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = cli.run(&["audit"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Idempotent submit through the CLI.
    let (first, _) = cli.json(&[
        "submit",
        "workflows/diamond.yaml",
        "--idempotency-key",
        "k1",
        "--json",
    ]);
    let (second, _) = cli.json(&[
        "submit",
        "workflows/diamond.yaml",
        "--idempotency-key",
        "k1",
        "--json",
    ]);
    assert_eq!(first["id"], second["id"]);
    assert_eq!(second["created"], false);
    let out = cli.run(&[
        "watch",
        first["id"].as_str().expect("id"),
        "--timeout",
        "60",
    ]);
    assert!(out.status.success());
    let _ = std::fs::remove_dir_all(dir);
}
