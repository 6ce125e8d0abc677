//! A run whose `output` reads a task that was skipped: that part of the
//! output is `null` (a skipped task has no data, which is no mistake of the
//! template), the run still succeeds, and its error says which task was
//! skipped — not only "undefined value". A mistake in the template itself
//! still fails the run, with the other parts rendered.

use std::time::Duration;

use serde_json::json;
use weft_tests::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_reading_a_skipped_task_names_it() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let yaml = r#"
name: output-skipped
input: { deploy: false }
output:
  version: "{{ tasks.deploy.result.version }}"
tasks:
  build:
    action: echo
    input: { version: "1.2" }
  deploy:
    needs: [build]
    when: "{{ input.deploy }}"
    action: echo
    input: { version: "{{ tasks.build.result.version }}" }
"#;
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status.as_str(), "succeeded", "{:?}", run.error);
    assert_eq!(run.output, Some(json!({ "version": null })));
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("output `version` is null") && error.contains("task `deploy` (skipped)"),
        "{error}"
    );
    // Given the input, the same workflow succeeds with the version.
    let id = stack
        .submit(&pool, yaml, json!({ "deploy": true }))
        .await
        .expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status.as_str(), "succeeded", "{:?}", run.error);
    assert_eq!(run.output, Some(json!({ "version": "1.2" })));
    assert_eq!(run.error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_output_fails_the_run_and_keeps_the_other_parts() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let yaml = r#"
name: output-broken
output:
  version: "{{ tasks.build.result.version }}"
  missing: "{{ tasks.build.result.nope }}"
tasks:
  build:
    action: echo
    input: { version: "1.2" }
"#;
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status.as_str(), "failed");
    assert_eq!(
        run.output,
        Some(json!({ "version": "1.2", "missing": null }))
    );
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("rendering the output: output `missing` is null"),
        "{error}"
    );
}
