//! PostgreSQL restarted mid-run: executors retry transient failures,
//! reconnect, and the run completes with nothing lost or duplicated. The
//! stack runs on a private PostgreSQL server, so the restart cuts only this
//! test's connections.

use std::time::Duration;

use serde_json::json;
use weft_common::WorkflowStatus;
use weft_tests::private::PrivatePostgres;
use weft_tests::{Stack, StackOptions, wait_for_items};

const ITEMS: i64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_pauses_work_and_loses_nothing() {
    let postgres =
        tokio::task::block_in_place(PrivatePostgres::start).expect("a private PostgreSQL starts");
    let stack = Stack::start(StackOptions {
        database_url: Some(postgres.url()),
        ..StackOptions::default()
    })
    .expect("stack");
    let pool = stack.pool().await.expect("pool");
    // Each action appends its item to a file: what ran, counted outside
    // the database, so a redone action shows even where the tables could
    // not (one `executions` row per attempt is all a unique index allows).
    let ran = std::env::temp_dir().join(format!("weft-pg-restart-{}", uuid::Uuid::new_v4()));
    let yaml = r#"
name: across-db-restart
input: { ran: null }
tasks:
  each:
    with_items: "{{ range(30) | list }}"
    concurrency: 3
    action: shell
    input: { command: ["sh", "-c", 'sleep 0.1; echo "$1" >> "$2"', "each", "{{ item }}", "{{ input.ran }}"] }
  join: { needs: [each], action: echo, input: { n: "{{ tasks.each.result | length }}" } }
"#;
    let id = stack
        .submit(&pool, yaml, json!({ "ran": ran.display().to_string() }))
        .await
        .expect("submit");
    // Let a few items finish first.
    wait_for_items(&pool, id, "each", 3, Duration::from_secs(30))
        .await
        .expect("progress");
    pool.close().await;
    tokio::task::block_in_place(|| postgres.restart()).expect("the private PostgreSQL restarts");
    // A fresh pool: the old connections died with the server, which
    // answers again once `restart` returned.
    let pool = stack.pool().await.expect("pool after the restart");
    let run = stack
        .wait(&pool, id, Duration::from_secs(120))
        .await
        .expect("the run finishes after the restart");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);

    // The restart came mid-run: items finished after the server's new start
    // (or the test restarted an idle server and proved nothing).
    let after_restart: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM executions WHERE workflow_execution_id = $1 \
         AND finished_at > pg_postmaster_start_time()",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("count");
    assert!(
        after_restart > 0,
        "every item had finished before the restart"
    );
    let result: serde_json::Value = sqlx::query_scalar(
        "SELECT result FROM task_executions WHERE workflow_execution_id = $1 AND task_name = 'join'",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("join");
    assert_eq!(result, json!({"n": ITEMS}));
    // Workers never lost the broker: each action ran exactly once.
    let mut runs = std::fs::read_to_string(&ran)
        .expect("the actions' record")
        .lines()
        .map(|l| l.parse::<i64>().expect("an item"))
        .collect::<Vec<_>>();
    runs.sort_unstable();
    assert_eq!(runs, (0..ITEMS).collect::<Vec<_>>(), "actions run per item");
    let mut conn = pool.acquire().await.expect("conn");
    let violations = weft_store::audit::audit(&mut conn, Some(id), 60.0)
        .await
        .expect("audit");
    assert!(violations.is_empty(), "{violations:#?}");
    let _ = std::fs::remove_file(ran);
}
