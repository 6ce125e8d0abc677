//! Typed inputs from the outside: `weft submit --input K=V` parses V by
//! the input's declared type, and a value that does not fit (wrong type,
//! outside `enum`, from flags or an inputs file) is refused naming the
//! input and what it takes — with nothing stored.

use std::process::{Command, Output};

use serde_json::{Value, json};
use weft_tests::process::weft_binary;
use weft_tests::{Stack, StackOptions};

const EXAMPLE: &str = "workflows/typed-inputs.yaml";

fn run(stack: &Stack, args: &[&str]) -> Output {
    Command::new(weft_binary().expect("weft binary"))
        .args(args)
        .env("WEFT_DATABASE_URL", &stack.database_url)
        .env("WEFT_AMQP_URL", &stack.amqp_url)
        .env_remove("RUST_LOG")
        .env_remove("WEFT_CONFIG")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("weft runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// How many runs the database holds, as `weft list` shows them.
fn stored_runs(stack: &Stack) -> usize {
    let out = run(stack, &["list", "--json", "--limit", "1000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    list.as_array().expect("array").len()
}

#[test]
fn values_that_do_not_fit_their_type_are_refused_and_nothing_is_stored() {
    // No daemons: a stored run would stay pending, and be listed.
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let path =
        std::env::temp_dir().join(format!("weft-typed-inputs-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, r#"{"replicas": "5", "dry_run": true}"#).expect("write");
    let inputs_file = path.display().to_string();
    for (args, says) in [
        (
            vec!["-i", "replicas=abc"],
            "input `replicas` must be an integer, not `abc`",
        ),
        (
            vec!["-i", "replicas=2.5"],
            "input `replicas` must be an integer",
        ),
        (
            vec!["-i", "dry_run=yes"],
            "input `dry_run` must be a boolean (true or false), not `yes`",
        ),
        (
            vec!["-i", "environment=qa"],
            "input `environment` must be one of \"dev\", \"staging\" or \"prod\", not `qa`",
        ),
        (
            vec!["-i", "regions=eu,us"],
            "input `regions` must be an array",
        ),
        (vec!["-i", "labels=[1]"], "input `labels` must be an object"),
        (
            vec!["-i", "canary_ratio=lots"],
            "input `canary_ratio` must be a number",
        ),
        (
            vec!["--inputs", inputs_file.as_str()],
            "input `replicas` must be an integer, not a string \"5\"",
        ),
        (
            vec!["-i", "replica=3"],
            "did you mean `replica` → `replicas`",
        ),
    ] {
        let mut argv = vec!["submit", EXAMPLE];
        argv.extend(&args);
        let out = run(&stack, &argv);
        assert_eq!(out.status.code(), Some(1), "{args:?} was accepted");
        let err = stderr(&out);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(err.contains(EXAMPLE), "the file is named: {err}");
    }
    let _ = std::fs::remove_file(&path);
    assert_eq!(stored_runs(&stack), 0, "a refused submit stored a run");

    // Values that fit are stored as their type: the version stays text.
    let out = run(
        &stack,
        &[
            "submit",
            EXAMPLE,
            "-i",
            "version=1.10",
            "-i",
            "replicas=5",
            "-i",
            "dry_run=true",
            "-i",
            "environment=prod",
            "-i",
            "canary_ratio=0.5",
            "-i",
            r#"regions=["ap-south-1"]"#,
            "-i",
            r#"labels={"team": "search"}"#,
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let submitted: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let id = submitted["id"].as_str().expect("id");
    let out = run(&stack, &["status", id, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        status["input"],
        json!({
            "version": "1.10",
            "environment": "prod",
            "replicas": 5,
            "canary_ratio": 0.5,
            "dry_run": true,
            "regions": ["ap-south-1"],
            "labels": {"team": "search"},
            "owner": "payments-oncall",
        })
    );
    assert_eq!(stored_runs(&stack), 1);
}
