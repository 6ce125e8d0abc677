//! Two executors apply the same runs while every `execution.completed` is
//! delivered twice: no task execution, execution or dispatch is duplicated
//! and every run succeeds.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use weft_bus::{Bus, BusConfig, ConsumerConfig, Delivery, Outcome, QueueKind};
use weft_common::message::topology;
use weft_common::{Message, WorkflowStatus};
use weft_tests::{Stack, StackOptions};

const WORKFLOW: &str = r#"
name: dup
tasks:
  start: { action: echo, input: { n: 3 } }
  fan:
    needs: [start]
    with_items: "{{ range(tasks.start.result.n * 4) | list }}"
    concurrency: 5
    action: echo
    input: { i: "{{ item }}" }
  left: { needs: [fan], action: noop }
  right: { needs: [fan], action: noop }
  join: { needs: [left, right], action: echo, input: { n: "{{ tasks.fan.result | length }}" } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_completions_with_two_executors_change_nothing() {
    let stack = Stack::start(StackOptions {
        executors: 2,
        ..StackOptions::default()
    })
    .expect("stack");
    let pool = stack.pool().await.expect("pool");

    // Re-publish every completion straight into the executors' queue, so
    // each one is applied twice, possibly by different executors at once.
    let stop = CancellationToken::new();
    let bus = Bus::connect(
        BusConfig {
            url: stack.amqp_url.clone(),
            connection_name: "duplicator".into(),
            ..BusConfig::default()
        },
        stop.clone(),
    )
    .await
    .expect("bus");
    let publisher = bus.publisher().await.expect("publisher");
    let duplicated = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = duplicated.clone();
    let consumer = ConsumerConfig {
        queue: String::new(),
        kind: QueueKind::Exclusive {
            exchange: topology::EVENTS_EXCHANGE.into(),
            routing_key: "execution.completed".into(),
        },
        prefetch: 64,
        concurrency: 8,
        consumer_tag: "duplicator".into(),
    };
    let consuming = tokio::spawn({
        let bus = bus.clone();
        let stop = stop.clone();
        async move {
            weft_bus::consume(
                &bus,
                consumer,
                move |d: Delivery| {
                    let publisher = publisher.clone();
                    let counter = counter.clone();
                    async move {
                        if matches!(d.envelope.message, Message::ExecutionCompleted(_)) {
                            let bytes = d.envelope.to_bytes();
                            if publisher
                                .publish_raw("", topology::EXECUTOR_QUEUE, &bytes)
                                .await
                                .is_err()
                            {
                                return Outcome::Requeue;
                            }
                            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Outcome::Ack
                    }
                },
                stop,
            )
            .await
        }
    });
    // Give the exclusive queue time to be bound before the first completion.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(
            stack
                .submit(&pool, WORKFLOW, json!({}))
                .await
                .expect("submit"),
        );
    }
    for id in &ids {
        let run = stack
            .wait(&pool, *id, Duration::from_secs(120))
            .await
            .expect("finishes");
        assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    }
    stop.cancel();
    let _ = consuming.await;
    assert!(
        duplicated.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "no completion was duplicated"
    );

    let uuids: Vec<uuid::Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    let tasks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM task_executions WHERE workflow_execution_id = ANY($1)",
    )
    .bind(&uuids)
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(tasks, 20 * 5, "one task execution per (run, task)");
    let executions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM executions WHERE workflow_execution_id = ANY($1)")
            .bind(&uuids)
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(
        executions,
        20 * (1 + 12 + 3),
        "one execution per item, no retries"
    );
    let results: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT result FROM task_executions WHERE workflow_execution_id = ANY($1) AND task_name = 'join'",
    )
    .bind(&uuids)
    .fetch_all(&pool)
    .await
    .expect("results");
    assert!(
        results.iter().all(|r| *r == json!({"n": 12})),
        "{results:?}"
    );
}
