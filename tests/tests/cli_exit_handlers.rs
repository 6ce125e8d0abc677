//! Exit handlers through the `weft` binary: `graph` marks them, `submit
//! --wait` runs the deploy example to its failure with the handlers run,
//! `status` marks them (text and JSON) and `explain` says what they are.

use std::process::{Command, Output};

use serde_json::Value;
use weft_tests::process::{Daemon, weft_binary};
use weft_tests::{Stack, StackOptions};

fn run(stack: &Stack, args: &[&str]) -> Output {
    Command::new(weft_binary().expect("weft binary"))
        .args(args)
        .env("WEFT_DATABASE_URL", &stack.database_url)
        .env("WEFT_AMQP_URL", &stack.amqp_url)
        .env("RUST_LOG", "error")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("weft runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn graph_status_and_explain_mark_exit_handlers() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let env = [
        ("WEFT_DATABASE_URL", stack.database_url.as_str()),
        ("WEFT_AMQP_URL", stack.amqp_url.as_str()),
    ];
    let _dev = Daemon::start("dev", &["dev"], &env).expect("weft dev");
    let example = "workflows/deploy-on-exit.yaml";

    let out = run(&stack, &["graph", example]);
    let graph = stdout(&out);
    assert!(out.status.success(), "{graph}");
    assert_eq!(graph.matches("on_exit").count(), 2, "{graph}");

    // The run fails (its deploy did), after its handlers ran.
    let out = run(&stack, &["submit", example, "--wait", "--json"]);
    let json = stdout(&out);
    assert!(!out.status.success(), "the run should fail: {json}");
    let status: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(status["status"], "failed", "{status:#}");
    let id = status["id"].as_str().expect("id").to_owned();
    let handlers: Vec<(&str, bool)> = status["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default(),
                t["exit_handler"] == true,
            )
        })
        .collect();
    let marked: Vec<&str> = handlers
        .iter()
        .filter(|(_, h)| *h)
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(marked, ["cleanup", "notify"], "{status:#}");
    assert_eq!(handlers.len(), 5, "{status:#}");

    let text = stdout(&run(&stack, &["status", &id]));
    assert!(
        text.contains("cleanup (on_exit)") && text.contains("notify (on_exit)"),
        "{text}"
    );
    assert!(!text.contains("deploy (on_exit)"), "{text}");

    let out = run(&stack, &["explain", &id, "notify"]);
    let explained = stdout(&out);
    assert!(out.status.success(), "{explained}");
    assert!(explained.contains("exit handler — "), "{explained}");
}
