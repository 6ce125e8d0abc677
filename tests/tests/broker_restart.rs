//! RabbitMQ restarted mid-run: daemons pause, reconnect, and the run
//! completes with nothing lost. The stack runs on a private RabbitMQ node,
//! so the restart cuts only this test's connections.

use std::time::Duration;

use serde_json::json;
use weft_common::WorkflowStatus;
use weft_tests::private::PrivateRabbit;
use weft_tests::{Stack, StackOptions, wait_for_items};

const ITEMS: usize = 20;
const CONCURRENCY: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_pauses_work_and_loses_nothing() {
    let mut rabbit =
        tokio::task::block_in_place(PrivateRabbit::start).expect("a private RabbitMQ starts");
    let stack = Stack::start(StackOptions {
        amqp_url: Some(rabbit.url()),
        ..StackOptions::default()
    })
    .expect("stack");
    let pool = stack.pool().await.expect("pool");
    // Each action appends its item to a file: what ran, counted outside
    // the broker and the database.
    let ran = std::env::temp_dir().join(format!("weft-broker-restart-{}", uuid::Uuid::new_v4()));
    // Items from the fourth on wait for a gate opened after the restart:
    // however long the broker takes to stop, the run cannot end before it,
    // and the items after those in flight are dispatched through the
    // restarted broker.
    let gate = ran.with_extension("gate");
    let yaml = r#"
name: across-restart
input: { ran: null, gate: null }
tasks:
  each:
    with_items: "{{ range(20) | list }}"
    concurrency: 2
    action: shell
    input:
      command:
        - sh
        - -c
        - 'sleep 0.1; [ "$1" -lt 3 ] || while [ ! -e "$3" ]; do sleep 0.05; done; echo "$1" >> "$2"'
        - each
        - "{{ item }}"
        - "{{ input.ran }}"
        - "{{ input.gate }}"
  join: { needs: [each], action: echo, input: { n: "{{ tasks.each.result | length }}" } }
"#;
    let input = json!({ "ran": ran.display().to_string(), "gate": gate.display().to_string() });
    let id = stack.submit(&pool, yaml, input).await.expect("submit");
    // Let a few items finish, then restart the broker under the run.
    wait_for_items(&pool, id, "each", 3, Duration::from_secs(30))
        .await
        .expect("progress");
    tokio::task::block_in_place(|| {
        rabbit.stop_app()?;
        rabbit.start_app()
    })
    .expect("the private RabbitMQ restarts");
    let restarted = chrono::Utc::now();
    std::fs::write(&gate, "").expect("the gate opens");
    let run = stack
        .wait(&pool, id, Duration::from_secs(120))
        .await
        .expect("finishes after the restart");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);

    // The restart came mid-run: items were dispatched through the restarted
    // broker (or the test restarted an idle one and proved nothing).
    let after_restart: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM executions WHERE workflow_execution_id = $1 AND queued_at > $2",
    )
    .bind(id.as_uuid())
    .bind(restarted)
    .fetch_one(&pool)
    .await
    .expect("count");
    assert!(
        after_restart > 0,
        "no item was dispatched after the restart"
    );
    let result: serde_json::Value = sqlx::query_scalar(
        "SELECT result FROM task_executions WHERE workflow_execution_id = $1 AND task_name = 'join'",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("join");
    assert_eq!(result, json!({"n": ITEMS}));
    // One success per item: a second attempt (another row, which no unique
    // index forbids) would mean an item was decided twice.
    let succeeded: Vec<i32> = sqlx::query_scalar(
        "SELECT item_index FROM executions WHERE workflow_execution_id = $1 \
         AND status = 'succeeded' AND item_index IS NOT NULL ORDER BY item_index",
    )
    .bind(id.as_uuid())
    .fetch_all(&pool)
    .await
    .expect("items");
    assert_eq!(
        succeeded,
        (0..i32::try_from(ITEMS).expect("few")).collect::<Vec<_>>()
    );
    // Every item's action ran; across a lost connection actions run at
    // least once, but only what was in flight at the stop may run again:
    // each of the ≤ CONCURRENCY dispatches outstanding then, once by the
    // broker's redelivery of its unacked delivery or once by a relay
    // re-publishing it if its publish was not confirmed.
    let mut runs = std::fs::read_to_string(&ran)
        .expect("the actions' record")
        .lines()
        .map(|l| l.parse::<usize>().expect("an item"))
        .collect::<Vec<_>>();
    runs.sort_unstable();
    let total = runs.len();
    runs.dedup();
    assert_eq!(runs, (0..ITEMS).collect::<Vec<_>>(), "every item ran");
    assert!(
        total <= ITEMS + 2 * CONCURRENCY,
        "{total} actions ran for {ITEMS} items: more than what was in flight ran again"
    );
    let mut conn = pool.acquire().await.expect("conn");
    let violations = weft_store::audit::audit(&mut conn, Some(id), 60.0)
        .await
        .expect("audit");
    assert!(violations.is_empty(), "{violations:#?}");
    let _ = std::fs::remove_file(ran);
    let _ = std::fs::remove_file(gate);
}
