//! Sub-workflows through the `weft` binary: `validate` reports a call's
//! input that does not fit the child at its line; `submit --wait` runs the
//! fan-out example with its children; `list` marks the children and
//! `--top` hides them; `status` lists them; `explain` follows into them.

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

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_checks_a_calls_input_against_the_child_at_its_line() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let dir = std::env::temp_dir().join(format!(
        "weft-cli-sub-{}",
        weft_common::WorkflowExecutionId::new()
    ));
    std::fs::create_dir_all(dir.join("lib")).expect("mkdir");
    std::fs::write(
        dir.join("lib/child.yaml"),
        "name: child\ninput:\n  region: null\ntasks:\n  a:\n    action: echo\n",
    )
    .expect("write");
    let parent = dir.join("parent.yaml");
    std::fs::write(
        &parent,
        "name: parent\ntasks:\n  call:\n    workflow: lib/child.yaml\n    input: { regoin: eu }\n  gone:\n    workflow: nope.yaml\n",
    )
    .expect("write");
    let out = run(&stack, &["validate", parent.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("parent.yaml:5:12")
            && stderr.contains("gives input `regoin`")
            && stderr.contains("did you mean `region`?")
            && stderr.contains("does not give input `region`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("parent.yaml:7:15") && stderr.contains("cannot read workflow `nope.yaml`"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn children_are_listed_marked_and_explained() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let env = [
        ("WEFT_DATABASE_URL", stack.database_url.as_str()),
        ("WEFT_AMQP_URL", stack.amqp_url.as_str()),
    ];
    let _dev = Daemon::start("dev", &["dev"], &env).expect("weft dev");
    let out = run(&stack, &["validate", "workflows/fan-out-children.yaml"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("process-region: started by a `workflow:` task"),
        "{stdout}"
    );

    let out = run(
        &stack,
        &[
            "submit",
            "workflows/fan-out-children.yaml",
            "--wait",
            "--json",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let status: Value = serde_json::from_str(&stdout).expect("json");
    let id = status["id"].as_str().expect("id").to_owned();
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["output"]["regions"], 5);
    assert_eq!(status["output"]["summary"]["rows"], 15);

    let out = run(&stack, &["list", "--json", "--limit", "100"]);
    let all: Value = serde_json::from_slice(&out.stdout).expect("json");
    let children: Vec<&Value> = all
        .as_array()
        .expect("array")
        .iter()
        .filter(|r| r["parent"] == id.as_str())
        .collect();
    assert_eq!(children.len(), 5, "{all}");
    let out = run(&stack, &["list", "--json", "--top"]);
    let top: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(top.as_array().expect("array").len(), 1, "{top}");
    let out = run(&stack, &["list"]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("↳ process-region (child of"), "{stdout}");

    let out = run(&stack, &["status", &id]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("child run") && stdout.matches("process-region").count() >= 5,
        "{stdout}"
    );
    let child = children[0]["id"].as_str().expect("child id");
    let out = run(&stack, &["status", child]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains(&format!("parent    {id}")), "{stdout}");

    let out = run(&stack, &["explain", &id]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("↳ task `process` item") && stdout.contains("child run"),
        "{stdout}"
    );
}
