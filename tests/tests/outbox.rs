//! The outbox lease (ADR 0004): messages an executor publishes itself right
//! after its commit are invisible to relays until their lease ends, then
//! relays publish them — what happens when that executor crashed first.

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
