//! Undecodable messages on each queue are dead-lettered with their reason,
//! and the consumers go on; a second submit with the same idempotency key
//! returns the same run, also when the submits race.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use weft_bus::{Bus, BusConfig};
use weft_common::{Workflow, WorkflowExecutionId, WorkflowStatus};
use weft_store::runs::{self, NewRun};
use weft_tests::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_are_dead_lettered_and_work_goes_on() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    // Let the daemons declare the topology first.
    let id = stack
        .submit(
            &pool,
            "name: warmup\ntasks:\n  a: { action: noop }\n",
            json!({}),
        )
        .await
        .expect("submit");
    stack
        .wait(&pool, id, Duration::from_secs(30))
        .await
        .expect("warm-up run");

    let stop = CancellationToken::new();
    let bus = Bus::connect(
        BusConfig {
            url: stack.amqp_url.clone(),
            connection_name: "garbage".into(),
            ..BusConfig::default()
        },
        stop.clone(),
    )
    .await
    .expect("bus");
    let publisher = bus.publisher().await.expect("publisher");
    publisher
        .publish_raw("", "weft.executor", b"{not json")
        .await
        .expect("publish to the executor queue");
    publisher
        .publish_raw("", "weft.tasks.default", br#"{"version": 99}"#)
        .await
        .expect("publish to a task queue");
    publisher
        .publish_raw(
            "",
            "weft.tasks.default",
            br#"{"version": 1, "type": "nope"}"#,
        )
        .await
        .expect("publish");

    weft_tests::wait_for_queue_messages(&stack.amqp_url, "weft.dead", 3, Duration::from_secs(20))
        .await
        .expect("every undecodable message reaches weft.dead");
    let id = stack
        .submit(
            &pool,
            "name: after\ntasks:\n  a: { action: echo, input: { ok: true } }\n",
            json!({}),
        )
        .await
        .expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(30))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded);
    stop.cancel();
}

async fn submit_with_key(pool: &sqlx::PgPool, yaml: &str, key: &str) -> WorkflowExecutionId {
    let workflow = Workflow::parse(yaml, "k.yaml").expect("valid");
    let input = json!({});
    let mut tx = pool.begin().await.expect("tx");
    let new = NewRun {
        id: WorkflowExecutionId::new(),
        workflow_name: workflow.name(),
        source: yaml,
        origin: "k.yaml",
        input: &input,
        tasks_total: 1,
        idempotency_key: Some(key),
    };
    let submitted = runs::submit(&mut tx, &new).await.expect("submit");
    tx.commit().await.expect("commit");
    submitted.id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_same_run_even_under_racing_submits() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let yaml = "name: keyed\ntasks:\n  a: { action: noop }\n";
    let key = format!("key-{}", uuid::Uuid::new_v4());
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            let key = key.clone();
            tokio::spawn(async move { submit_with_key(&pool, yaml, &key).await })
        })
        .collect();
    let mut ids = Vec::new();
    for r in racers {
        ids.push(r.await.expect("join"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM workflow_executions WHERE idempotency_key = $1")
            .bind(&key)
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(stored, 1);
    let submitted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE payload->>'workflow_execution_id' = $1",
    )
    .bind(ids[0].to_string())
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(submitted, 1, "one start message for one run");
}
