//! The outbox lease (ADR 0004): messages an executor publishes itself right
//! after its commit are invisible to relays until their lease ends, then
//! relays publish them — what happens when that executor crashed first.
//! And the outbox is vacuumed once many of its rows were deleted.

use std::time::Duration;

use weft_common::message::WorkflowFinished;
use weft_common::{Envelope, WorkflowExecutionId, WorkflowStatus};
use weft_store::outbox;
use weft_tests::{Stack, StackOptions};

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
    let mut tx = pool.begin().await.expect("begin");
    let ids = outbox::enqueue(
        &mut tx,
        &[(leased.clone(), None), (finished(), Some(later))],
        Some(Duration::from_millis(300)),
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
    assert_eq!(unleased.len(), 1);

    // Once the lease ended, a relay takes the leased one too; the delayed
    // one still waits.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut seen = claim(pool.clone()).await;
    seen.sort();
    let mut expected = vec![now.id, leased.id];
    expected.sort();
    assert_eq!(seen, expected);

    // The writer's delete by id removes exactly what it published.
    let mut conn = pool.acquire().await.expect("conn");
    outbox::delete(&mut conn, &ids).await.expect("delete");
    assert_eq!(claim(pool.clone()).await, vec![now.id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_vacuums_the_outbox_after_relaying_a_large_backlog() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let backlog: Vec<(Envelope, Option<chrono::DateTime<chrono::Utc>>)> =
        (0..10_500).map(|_| (finished(), None)).collect();
    let mut tx = pool.begin().await.expect("begin");
    outbox::enqueue(&mut tx, &backlog, None)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");

    let stop = tokio_util::sync::CancellationToken::new();
    let bus = weft_bus::Bus::connect(
        weft_bus::BusConfig {
            url: stack.amqp_url.clone(),
            connection_name: "vacuum".into(),
            ..weft_bus::BusConfig::default()
        },
        stop.clone(),
    )
    .await
    .expect("bus");
    bus.declare_topology(&[]).await.expect("topology");
    let relay = weft_executor::Relay::new(pool.clone(), bus, weft_executor::RelayConfig::default())
        .await
        .expect("relay");
    let engine = weft_executor::Engine::new(pool.clone(), weft_executor::EngineConfig::default());
    let running = tokio::spawn(relay.run(engine, stop.clone()));

    // Every message leaves, and then the relay's own vacuum (not
    // autovacuum: it counts apart) runs on the outbox.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (left, vacuums): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM outbox), \
                    (SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'outbox')",
        )
        .fetch_one(&pool)
        .await
        .expect("outbox state");
        if left == 0 && vacuums > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} messages left, {vacuums} vacuums of the outbox"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    running.await.expect("relay stopped");
}
