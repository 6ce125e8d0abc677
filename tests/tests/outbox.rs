//! The outbox lease (ADR 0004): messages an executor publishes itself right
//! after its commit are invisible to relays until their lease ends, then
//! relays publish them — what happens when that executor crashed first.

use std::time::{Duration, Instant};

use serde_json::json;
use weft_common::message::{WorkflowFinished, topology};
use weft_common::{Envelope, WorkflowExecutionId, WorkflowStatus};
use weft_store::outbox;
use weft_store::runs;
use weft_tests::{Stack, StackOptions, submit_via};

fn finished() -> Envelope {
    Envelope::new(WorkflowFinished {
        workflow_execution_id: WorkflowExecutionId::new(),
        workflow: "lease".into(),
        status: WorkflowStatus::Succeeded,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_messages_reach_relays_only_when_their_lease_ends() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let now = finished();
    let leased = finished();
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    // Long enough that the first look below comes well before it ends, on
    // any machine; the wait for its end polls, it does not guess.
    let lease = Duration::from_secs(3);
    // Before the transaction: the lease runs from its start (`now()`).
    let leased_at = Instant::now();
    let mut tx = pool.begin().await.expect("begin");
    let ids = outbox::enqueue(
        &mut tx,
        &[(leased.clone(), None), (finished(), Some(later))],
        Some(lease),
    )
    .await
    .expect("enqueue leased");
    // Only the message due at once comes back for the writer to publish.
    assert_eq!(ids.len(), 1, "one message is due at once");
    let unleased = outbox::enqueue(&mut tx, &[(now.clone(), None)], None)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");

    let claim = |pool: sqlx::PgPool| async move {
        let mut tx = pool.begin().await.expect("begin");
        let rows = outbox::claim(&mut tx, 100).await.expect("claim");
        tx.rollback().await.expect("rollback");
        rows.iter()
            .map(|r| r.envelope().expect("envelope").id)
            .collect::<Vec<_>>()
    };
    // A relay sees the unleased message only.
    assert_eq!(claim(pool.clone()).await, vec![now.id]);
    assert!(
        leased_at.elapsed() < lease,
        "too slow to look within the lease"
    );
    assert_eq!(unleased.len(), 1);

    // A relay takes the leased one too, once — and only once — the lease
    // ended; the delayed one still waits.
    let deadline = Instant::now() + lease + Duration::from_secs(30);
    let mut seen = loop {
        let seen = claim(pool.clone()).await;
        if seen.len() > 1 {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "the leased message never reached a relay: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        leased_at.elapsed() >= lease,
        "a relay took a leased message {:?} into its {lease:?} lease",
        leased_at.elapsed()
    );
    seen.sort();
    let mut expected = vec![now.id, leased.id];
    expected.sort();
    assert_eq!(seen, expected);

    // The writer's delete by id removes exactly what it published.
    let mut conn = pool.acquire().await.expect("conn");
    outbox::delete(&mut conn, &ids).await.expect("delete");
    assert_eq!(claim(pool.clone()).await, vec![now.id]);
}

const NOOP: &str = "name: handoff\ntasks:\n  a: { action: noop }\n";

/// `weft submit`'s path: the submitter publishes its run's start right
/// after the commit and deletes the row; when the broker refuses the
/// message, the row's lease ends at once, so a relay publishes it now
/// rather than when the lease would have ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_publishes_its_runs_start_or_hands_it_to_relays_at_once() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let publisher = stack.publisher().await.expect("publisher");
    let due = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox WHERE not_before <= now()")
            .fetch_one(&pool)
            .await
            .expect("count due")
    };
    let rows = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
            .fetch_one(&pool)
            .await
            .expect("count")
    };

    // No executor ever declared Weft's exchanges on this vhost: the broker
    // refuses the message, and the run's start is due for relays at once.
    let refused = submit_via(&pool, Some(&publisher), NOOP, "t.yaml", json!({}))
        .await
        .expect("a submit succeeds without the broker");
    assert_eq!(rows(pool.clone()).await, 1, "the refused start stays");
    assert_eq!(due(pool.clone()).await, 1, "and is due at once");
    let mut conn = pool.acquire().await.expect("conn");
    let run = runs::get(&mut conn, refused)
        .await
        .expect("get")
        .expect("run");
    assert_eq!(
        run.status,
        WorkflowStatus::Pending,
        "nothing started it yet"
    );
    drop(conn);

    // With the topology in place the submitter publishes the start itself:
    // its row is gone and the message waits in the executors' queue.
    let bus = weft_bus::Bus::try_connect(weft_bus::BusConfig {
        url: stack.amqp_url.clone(),
        ..weft_bus::BusConfig::default()
    })
    .await
    .expect("bus");
    bus.declare_topology(&[]).await.expect("topology");
    bus.close().await;
    submit_via(&pool, Some(&publisher), NOOP, "t.yaml", json!({}))
        .await
        .expect("submit");
    assert_eq!(
        rows(pool.clone()).await,
        1,
        "only the refused start is left"
    );
    assert_eq!(
        weft_tests::queue_messages(&stack.amqp_url, topology::EXECUTOR_QUEUE).await,
        Some(1),
        "the published start waits for an executor"
    );
}

/// `weft submit`'s start never crosses the broker: the relay that claims
/// the run's `workflow.submitted` row starts the run in the claiming
/// transaction and deletes the row with it. Two relays racing over forty
/// such rows start each run once, publish no start to the executors'
/// queue (where nobody consumes here, so anything published would stay),
/// and dispatch each run's one task once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_start_submitted_runs_themselves_each_once() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let bus = weft_bus::Bus::try_connect(weft_bus::BusConfig {
        url: stack.amqp_url.clone(),
        ..weft_bus::BusConfig::default()
    })
    .await
    .expect("bus");
    bus.declare_topology(&[topology::DEFAULT_POOL.to_owned()])
        .await
        .expect("topology");
    let mut ids = Vec::new();
    for _ in 0..40 {
        // No publisher: the start is left to the relays, due at once.
        ids.push(
            submit_via(&pool, None, NOOP, "t.yaml", json!({}))
                .await
                .expect("submit"),
        );
    }
    let engine = weft_executor::Engine::new(pool.clone(), weft_executor::EngineConfig::default());
    let relay = |batch: i64| {
        let (pool, bus, engine) = (pool.clone(), bus.clone(), engine.clone());
        async move {
            let config = weft_executor::RelayConfig {
                batch,
                ..weft_executor::RelayConfig::default()
            };
            let mut relay = weft_executor::Relay::new(pool, bus, config)
                .await
                .expect("relay")
                .starting_runs(engine);
            let mut relayed = 0;
            loop {
                match relay.relay_once().await.expect("relay") {
                    0 => return relayed,
                    n => relayed += n,
                }
            }
        }
    };
    let (a, b) = tokio::join!(relay(7), relay(5));
    // Without a flusher the runs' dispatches go to the outbox too, and
    // the relays publish them: 40 starts applied and 40 dispatches
    // published, each by one relay.
    assert_eq!(a + b, 80, "each row claimed by one relay: {a} + {b}");

    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(left, 0, "every start row went with its start's commit");
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    let running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM workflow_executions WHERE id = ANY($1) AND status = 'running'",
    )
    .bind(&uuids)
    .fetch_one(&pool)
    .await
    .expect("count running");
    assert_eq!(running, 40, "every run started");
    // Nothing consumes here: what was published stays in its queue.
    assert_eq!(
        weft_tests::queue_messages(&stack.amqp_url, topology::EXECUTOR_QUEUE).await,
        Some(0),
        "no run's start went through the broker"
    );
    assert_eq!(
        weft_tests::queue_messages(
            &stack.amqp_url,
            &topology::task_queue(topology::DEFAULT_POOL)
        )
        .await,
        Some(40),
        "one dispatch per run, once"
    );
    bus.close().await;
}
