//! Cancellation under load: twenty wide fan-outs canceled at once while
//! their items keep completing. A cancel locks a run, then its tasks, then
//! its executions; a completion locks executions, then tasks, then the
//! run — the two orders deadlock, PostgreSQL aborts one side, and each
//! side must run its transaction again (the command through
//! `transact::in_transaction`, the executor as a transient error) without
//! leaving a run `canceling` or dispatching anything after it ended.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_store::DbConfig;
use weft_store::cancel::{self, Requested};
use weft_store::transact::in_transaction;
use weft_tests::{Stack, StackOptions};

const RUNS: usize = 20;
const ITEMS: i32 = 300;

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        Stack::start(StackOptions {
            executors: 2,
            workers: 2,
            // Room for every minute-long nap at once (30 a run) and
            // the short ones next to them.
            worker_concurrency: 400,
            ..StackOptions::default()
        })
        .expect("the test stack starts")
    })
}

/// A fan-out of [`ITEMS`] naps, `concurrency` at once (or all of them
/// streamed, without one), and a task after it that must never be decided
/// once the run is canceled. Most naps last 10–50 ms, so completions keep
/// arriving while the runs are canceled; every tenth lasts a minute, so a
/// run is still busy when its cancel comes (those are killed by it, and
/// their reports race the other runs' cancels too).
fn fan_out(concurrency: Option<u32>) -> String {
    let concurrency = concurrency.map_or_else(String::new, |c| format!("\n    concurrency: {c}"));
    format!(
        r#"
name: storm
tasks:
  naps:
    with_items: "{{{{ range({ITEMS}) | list }}}}"{concurrency}
    action: sleep
    input: {{ seconds: "{{{{ 60 if item % 10 == 9 else 0.01 + (item % 5) * 0.01 }}}}" }}
  after:
    needs: [naps]
    action: echo
    input: {{ done: true }}
"#
    )
}

/// How many of a run's executions have each status.
async fn statuses(pool: &PgPool, id: WorkflowExecutionId) -> HashMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT status, count(*) FROM executions WHERE workflow_execution_id = $1 GROUP BY status",
    )
    .bind(id.as_uuid())
    .fetch_all(pool)
    .await
    .expect("counting executions")
    .into_iter()
    .collect()
}

/// Waits until every run has, at the same moment, some items finished and
/// some running, and none has ended.
async fn wait_until_busy(pool: &PgPool, ids: &[WorkflowExecutionId], timeout: Duration) {
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let runs: Vec<(uuid::Uuid, String, i64, i64)> = sqlx::query_as(
            "SELECT r.id, r.status, \
                    count(e.id) FILTER (WHERE e.status = 'succeeded'), \
                    count(e.id) FILTER (WHERE e.status = 'running') \
             FROM workflow_executions r LEFT JOIN executions e ON e.workflow_execution_id = r.id \
             WHERE r.id = ANY($1) GROUP BY r.id",
        )
        .bind(&uuids)
        .fetch_all(pool)
        .await
        .expect("watching the runs");
        let ended: Vec<_> = runs
            .iter()
            .filter(|r| !["pending", "running"].contains(&r.1.as_str()))
            .collect();
        assert!(
            ended.is_empty(),
            "runs ended before their cancel: {ended:?}"
        );
        if runs.len() == ids.len() && runs.iter().all(|r| r.2 > 0 && r.3 > 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the runs were never all busy at once (id, status, succeeded, running): {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_busy_fan_outs_canceled_at_once_all_end_canceled() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let mut ids = Vec::with_capacity(RUNS);
    for n in 0..RUNS {
        // Half bounded (their completions dispatch the next items), half
        // streamed (a window per transaction, racing the completions).
        let concurrency = (n % 2 == 0).then_some(50);
        let id = stack
            .submit(&pool, &fan_out(concurrency), json!({}))
            .await
            .expect("submit");
        ids.push(id);
    }
    wait_until_busy(&pool, &ids, Duration::from_secs(120)).await;

    // Every cancellation at once, each on a connection of its own, as
    // twenty terminals would, while the items keep completing.
    let commands = weft_store::connect(&DbConfig {
        url: stack.database_url.clone(),
        max_connections: u32::try_from(RUNS).expect("a few runs"),
        ..DbConfig::default()
    })
    .await
    .expect("the commands' pool");
    let cancels = ids.iter().map(|&id| {
        let pool = &commands;
        async move { in_transaction(pool, async |tx| cancel::request(tx, id).await).await }
    });
    let requested = futures_util::future::join_all(cancels).await;
    for (id, requested) in ids.iter().zip(requested) {
        let requested = requested.expect("cancel");
        assert!(
            matches!(requested, Requested::Accepted { .. }),
            "run {id}: {requested:?}"
        );
    }

    // Every run ends canceled, soon: none stays `canceling` (the minute-long
    // naps are killed, not waited for).
    let deadline = Instant::now() + Duration::from_secs(30);
    for &id in &ids {
        let left = deadline.saturating_duration_since(Instant::now());
        let run = match stack.wait(&pool, id, left).await {
            Ok(run) => run,
            Err(e) => panic!(
                "run {id} did not end: {e:#}; its executions: {:?}",
                statuses(&pool, id).await
            ),
        };
        assert_eq!(
            run.status,
            WorkflowStatus::Canceled,
            "run {id}: {:?}",
            run.error
        );
    }

    for &id in &ids {
        // Nothing of a canceled run is left to run, nor was anything
        // dispatched after it ended: a dispatch committed after the run's
        // end would be an execution queued later than it finished.
        let counts = statuses(&pool, id).await;
        for open in ["pending", "queued", "running"] {
            assert_eq!(
                counts.get(open),
                None,
                "run {id} is canceled but has {open} executions: {counts:?}"
            );
        }
        let late: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM executions e JOIN workflow_executions r ON r.id = e.workflow_execution_id \
             WHERE r.id = $1 AND e.queued_at > r.finished_at",
        )
        .bind(id.as_uuid())
        .fetch_one(&pool)
        .await
        .expect("late dispatches");
        assert_eq!(
            late, 0,
            "run {id}: {late} executions dispatched after it ended"
        );
        // The task after the fan-out never started.
        let after: String = sqlx::query_scalar(
            "SELECT status FROM task_executions WHERE workflow_execution_id = $1 AND task_name = 'after'",
        )
        .bind(id.as_uuid())
        .fetch_one(&pool)
        .await
        .expect("the task after");
        assert_eq!(after, "canceled", "run {id}");
    }

    let mut conn = pool.acquire().await.expect("conn");
    for &id in &ids {
        let violations = weft_store::audit::audit(&mut conn, Some(id), 60.0)
            .await
            .expect("audit");
        assert!(violations.is_empty(), "run {id}: {violations:#?}");
    }
}
