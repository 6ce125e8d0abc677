//! PostgreSQL restarted mid-run: executors retry transient failures,
//! reconnect, and the run completes with nothing lost or duplicated. Its own
//! binary, because it restarts the server for everyone.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use weft_common::WorkflowStatus;
use weft_tests::{Stack, StackOptions, wait_for_items};

fn restart_postgres() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .max()
        .expect("a version");
    let status = Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            "restart",
            "-m",
            "fast",
        ])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "restarting PostgreSQL failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_pauses_work_and_loses_nothing() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let yaml = r#"
name: across-db-restart
tasks:
  each:
    with_items: "{{ range(30) | list }}"
    concurrency: 3
    action: sleep
    input: { seconds: 0.1 }
  join: { needs: [each], action: echo, input: { n: "{{ tasks.each.result | length }}" } }
"#;
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    // Let a few items finish first.
    wait_for_items(&pool, id, "each", 3, Duration::from_secs(30))
        .await
        .expect("progress");
    pool.close().await;
    restart_postgres();
    // A fresh pool: the old connections died with the server.
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        if let Ok(pool) = stack.pool().await
            && let Ok(run) = stack.wait(&pool, id, Duration::from_secs(5)).await
        {
            break run;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not finish after the restart"
        );
    };
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let pool = stack.pool().await.expect("pool");
    let result: serde_json::Value = sqlx::query_scalar(
        "SELECT result FROM task_executions WHERE workflow_execution_id = $1 AND task_name = 'join'",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("join");
    assert_eq!(result, json!({"n": 30}));
    let mut conn = pool.acquire().await.expect("conn");
    let violations = weft_store::audit::audit(&mut conn, Some(id), 60.0)
        .await
        .expect("audit");
    assert!(violations.is_empty(), "{violations:#?}");
}
