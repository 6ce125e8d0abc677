//! Issue 12, holes 2 and 3: an executor outage never kills healthy work,
//! and a lost dispatch never hangs a run. Executors and workers run as
//! processes (to stop them, and to give them short graces through the
//! environment); each test has its own stack.

use std::time::{Duration, Instant};

use serde_json::json;
use weft_bus::{Bus, BusConfig};
use weft_common::WorkflowStatus;
use weft_common::message::topology;
use weft_store::audit::{self, Thresholds};
use weft_tests::process::Daemon;
use weft_tests::{Stack, StackOptions};

/// The stack's services, and short intervals for the daemons.
fn env(stack: &Stack, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("WEFT_DATABASE_URL", stack.database_url.clone()),
        ("WEFT_AMQP_URL", stack.amqp_url.clone()),
        ("WEFT_HEARTBEAT_INTERVAL", "0.3".into()),
        // The workflows here run `shell`, which a worker runs only when listed.
        ("WEFT_WORKER_ACTIONS", "echo,fail,noop,shell,sleep".into()),
        ("WEFT_REAPER_INTERVAL", "0.3".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

fn start(name: &str, args: &[&str], env: &[(&'static str, String)]) -> Daemon {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Daemon::start(name, args, &env).expect(name)
}

async fn bus(stack: &Stack) -> Bus {
    Bus::try_connect(BusConfig {
        url: stack.amqp_url.clone(),
        connection_name: "liveness-test".into(),
        ..BusConfig::default()
    })
    .await
    .expect("RabbitMQ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_outage_longer_than_the_heartbeat_grace_kills_no_healthy_work() {
    const GRACE: Duration = Duration::from_secs(3);
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let env = env(&stack, &[("WEFT_HEARTBEAT_GRACE", "3")]);
    let mut executor = start("executor", &["executor"], &env);
    let _worker = start("worker", &["worker"], &env);
    let log = std::env::temp_dir().join(format!("weft-liveness-{}.log", uuid::Uuid::new_v4()));
    // Each action notes that it ran, then outlives the outage and the
    // grace after it by several reaper intervals.
    let yaml = r#"
name: outage
input: { log: null }
tasks:
  a: { action: shell, input: { command: ["sh", "-c", 'echo a >> "$1"; sleep 14', "a", "{{ input.log }}"] } }
  b: { action: shell, input: { command: ["sh", "-c", 'echo b >> "$1"; sleep 14', "b", "{{ input.log }}"] } }
"#;
    let id = stack
        .submit(&pool, yaml, json!({ "log": log.display().to_string() }))
        .await
        .expect("submit");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM executions WHERE workflow_execution_id = $1 AND status = 'running'",
        )
        .bind(id.as_uuid())
        .fetch_one(&pool)
        .await
        .expect("count");
        if running == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the actions never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every executor gone for twice the grace while the actions run: the
    // worker's heartbeats pile up in weft.executor.
    executor.kill();
    tokio::time::sleep(GRACE * 2 + Duration::from_millis(500)).await;
    executor.restart().expect("executor restarts");

    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let executions: Vec<(String, i32, String)> = sqlx::query_as(
        "SELECT t.task_name, e.attempt, e.status FROM executions e \
         JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE e.workflow_execution_id = $1 ORDER BY t.task_name, e.attempt",
    )
    .bind(id.as_uuid())
    .fetch_all(&pool)
    .await
    .expect("executions");
    assert_eq!(
        executions,
        [
            ("a".into(), 1, "succeeded".into()),
            ("b".into(), 1, "succeeded".into())
        ],
        "nothing was reaped"
    );
    let mut ran: Vec<String> = std::fs::read_to_string(&log)
        .expect("the actions' log")
        .lines()
        .map(str::to_owned)
        .collect();
    ran.sort();
    assert_eq!(ran, ["a", "b"], "each action ran once");
    let _ = std::fs::remove_file(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_dispatch_is_sent_again_once_its_queue_is_empty_and_the_run_succeeds() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let env = env(
        &stack,
        &[
            ("WEFT_HEARTBEAT_GRACE", "1"),
            ("WEFT_REDISPATCH_AFTER", "2"),
        ],
    );
    let _executor = start("executor", &["executor"], &env);
    let yaml = r#"
name: lost
tasks:
  only: { action: echo, input: { v: 1 }, queue: lost }
"#;
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let queue = topology::task_queue("lost");
    let bus = bus(&stack).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while bus.queue_ready(&queue).await.expect("count") != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the dispatch never reached its queue"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No worker serves the pool: the dispatch waits past the redispatch
    // delay, but its queue is not empty, so it is not sent again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let redispatches = |pool: sqlx::PgPool| async move {
        let n: i32 = sqlx::query_scalar(
            "SELECT redispatches FROM executions WHERE workflow_execution_id = $1",
        )
        .bind(id.as_uuid())
        .fetch_one(&pool)
        .await
        .expect("redispatches");
        n
    };
    assert_eq!(
        redispatches(pool.clone()).await,
        0,
        "a waiting dispatch is not lost"
    );
    assert_eq!(bus.queue_ready(&queue).await.expect("count"), Some(1));

    // Lose it: the queue is purged.
    let vhost = stack.amqp_url.rsplit('/').next().unwrap_or_default();
    let purged = std::process::Command::new("rabbitmqctl")
        .args(["-q", "purge_queue", "-p", vhost, &queue])
        .status()
        .expect("rabbitmqctl");
    // Not read back as empty: the redispatcher may send it again as soon
    // as the queue is empty, before a read here.
    assert!(purged.success(), "purging {queue}");

    // It is sent again; a worker of the pool takes it.
    let _worker = start("worker", &["worker", "--queue", "lost"], &env);
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let executions: Vec<(i32, String, i32)> = sqlx::query_as(
        "SELECT attempt, status, redispatches FROM executions WHERE workflow_execution_id = $1",
    )
    .bind(id.as_uuid())
    .fetch_all(&pool)
    .await
    .expect("executions");
    assert_eq!(executions.len(), 1, "{executions:?}");
    assert_eq!(
        (executions[0].0, executions[0].1.as_str()),
        (1, "succeeded")
    );
    assert!(executions[0].2 >= 1, "{executions:?}");
    let mut conn = pool.acquire().await.expect("conn");
    let violations = audit::audit_with(
        &mut conn,
        Some(id),
        Thresholds {
            outbox_secs: 60.0,
            queued_secs: 2.0,
        },
    )
    .await
    .expect("audit");
    assert!(violations.is_empty(), "{violations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_reports_a_queued_execution_no_worker_took_in_time() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let yaml = "name: stale\ntasks:\n  a: { action: noop }\n";
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(30))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    // By hand: the execution is back to queued, its dispatch written 10
    // minutes ago and never taken.
    sqlx::query(
        "UPDATE executions SET status = 'queued', started_at = NULL, finished_at = NULL, \
             queued_at = now() - interval '10 minutes' \
         WHERE workflow_execution_id = $1",
    )
    .bind(id.as_uuid())
    .execute(&pool)
    .await
    .expect("corrupt");
    let mut conn = pool.acquire().await.expect("conn");
    let checks = |found: Vec<audit::Violation>| -> Vec<String> {
        found.into_iter().map(|v| v.check).collect()
    };
    let found = checks(
        audit::audit_with(
            &mut conn,
            Some(id),
            Thresholds {
                outbox_secs: 60.0,
                queued_secs: 300.0,
            },
        )
        .await
        .expect("audit"),
    );
    assert!(
        found.iter().any(|c| c == "queued_executions_taken"),
        "{found:?}"
    );
    // Within the threshold, it is not reported.
    let found = checks(
        audit::audit_with(
            &mut conn,
            Some(id),
            Thresholds {
                outbox_secs: 60.0,
                queued_secs: 3600.0,
            },
        )
        .await
        .expect("audit"),
    );
    assert!(
        !found.iter().any(|c| c == "queued_executions_taken"),
        "{found:?}"
    );
    assert!(audit::checks().contains(&"queued_executions_taken"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_outbox_row_is_parked_and_reported_never_deleted() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let run = uuid::Uuid::new_v4();
    // An envelope of a message type this build does not know.
    let row: i64 = sqlx::query_scalar(
        "INSERT INTO outbox (exchange, routing_key, payload) \
         VALUES ('weft.events', 'workflow.submitted', \
                 jsonb_build_object('version', 1, 'id', gen_random_uuid(), 'sent_at', now(), \
                                    'type', 'no_such_message', 'workflow_execution_id', $1::uuid)) \
         RETURNING id",
    )
    .bind(run)
    .fetch_one(&pool)
    .await
    .expect("insert");
    let bus = bus(&stack).await;
    bus.declare_topology(&[]).await.expect("topology");
    let mut relay =
        weft_executor::Relay::new(pool.clone(), bus, weft_executor::RelayConfig::default())
            .await
            .expect("relay");
    assert_eq!(
        relay.relay_once().await.expect("relay"),
        0,
        "nothing publishable"
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(left, 0, "the outbox keeps only publishable rows");
    let parked: (i64, String, serde_json::Value) =
        sqlx::query_as("SELECT id, reason, payload FROM outbox_parked")
            .fetch_one(&pool)
            .await
            .expect("the row is parked");
    assert_eq!(parked.0, row);
    assert!(parked.1.contains("no_such_message"), "{}", parked.1);
    assert_eq!(parked.2["type"], "no_such_message", "kept as written");
    let mut conn = pool.acquire().await.expect("conn");
    let found = audit::audit(&mut conn, Some(run.into()), 60.0)
        .await
        .expect("audit");
    assert!(
        found
            .iter()
            .any(|v| v.check == "outbox_nothing_parked" && v.workflow_execution_id == run),
        "{found:?}"
    );
}

#[test]
fn a_redispatch_delay_that_is_not_a_positive_number_is_refused_by_name() {
    let weft = weft_tests::process::weft_binary().expect("the weft binary");
    for command in [&["executor"][..], &["dev"], &["audit"]] {
        let out = std::process::Command::new(&weft)
            .args(command)
            .args(["--redispatch-after", "0"])
            // Nothing listens there: the flag must be refused before any
            // connection is tried.
            .env("WEFT_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .env("WEFT_AMQP_URL", "amqp://nobody:x@127.0.0.1:1/%2f")
            .output()
            .expect("weft runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command:?}: {stderr}");
        assert!(
            stderr.contains("--redispatch-after must be a positive number of seconds, not 0"),
            "{command:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_execution_its_live_worker_stopped_listing_is_reaped() {
    // Its completion was lost (a purged `weft.executor`, a dead-lettered
    // report): the worker is alive and goes on heartbeating, but no longer
    // lists the execution. Driven by hand on the store: no daemon.
    use weft_common::message::{ExecutionStarted, WorkerHeartbeat};
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let engine = weft_executor::Engine::new(pool.clone(), weft_executor::EngineConfig::default());
    let yaml = "name: forgotten\ntasks:\n  t: { action: noop }\n";
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let start = weft_common::message::WorkflowSubmitted {
        workflow_execution_id: id,
    };
    engine.apply_starts(&[&start]).await;
    let execution: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM executions WHERE workflow_execution_id = $1")
            .bind(id.as_uuid())
            .fetch_one(&pool)
            .await
            .expect("the execution");
    let started = weft_common::Envelope::new(ExecutionStarted {
        execution_id: execution.into(),
        workflow_execution_id: id,
        attempt: 1,
        worker_id: "w1".into(),
        started_at: chrono::Utc::now(),
    });
    engine.apply(&started).await.expect("started");
    let heartbeat = |running: Vec<weft_common::ExecutionId>| {
        weft_common::Envelope::new(WorkerHeartbeat {
            worker_id: "w1".into(),
            queues: vec!["default".into()],
            running,
            hostname: "here".into(),
            at: chrono::Utc::now(),
            ..WorkerHeartbeat::default()
        })
    };
    let grace_ms = 1_000;
    let overdue = || async {
        let mut conn = pool.acquire().await.expect("conn");
        weft_store::overdue::claim_overdue(&mut conn, grace_ms, &[])
            .await
            .expect("claim")
    };
    // Listed by a live worker: not overdue, however long it runs.
    sqlx::query("UPDATE executions SET seen_at = seen_at - interval '1 hour' WHERE id = $1")
        .bind(execution)
        .execute(&pool)
        .await
        .expect("age it");
    engine
        .apply(&heartbeat(vec![execution.into()]))
        .await
        .expect("heartbeat");
    assert!(overdue().await.is_none(), "a listed execution is alive");
    // No longer listed, while the worker goes on heartbeating past the grace.
    sqlx::query("UPDATE executions SET seen_at = seen_at - interval '1 hour' WHERE id = $1")
        .bind(execution)
        .execute(&pool)
        .await
        .expect("age it");
    engine.apply(&heartbeat(vec![])).await.expect("heartbeat");
    let found = overdue().await.expect("the forgotten execution is overdue");
    assert_eq!(found.id.as_uuid(), execution);
    assert!(
        found.reason.contains("no longer runs it"),
        "{}",
        found.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_start_message_was_lost_is_started_after_all() {
    // The run is stored, its `workflow.submitted` lost before any executor
    // saw it (its outbox row deleted: as if published into a purged queue).
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let yaml = "name: lost-start\ntasks:\n  only: { action: echo, input: { v: 1 } }\n";
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let deleted =
        sqlx::query("DELETE FROM outbox WHERE (payload->>'workflow_execution_id')::uuid = $1")
            .bind(id.as_uuid())
            .execute(&pool)
            .await
            .expect("lose the start")
            .rows_affected();
    assert_eq!(deleted, 1, "the start message was in the outbox");
    let env = env(
        &stack,
        &[
            ("WEFT_HEARTBEAT_GRACE", "1"),
            ("WEFT_REDISPATCH_AFTER", "2"),
        ],
    );
    let _executor = start("executor", &["executor"], &env);
    let _worker = start("worker", &["worker"], &env);
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("the run finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let resubmitted: bool = sqlx::query_scalar(
        "SELECT resubmitted_at IS NOT NULL FROM workflow_executions WHERE id = $1",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("run");
    assert!(resubmitted, "its start was sent again");
    let mut conn = pool.acquire().await.expect("conn");
    assert!(
        audit::audit(&mut conn, Some(id), 60.0)
            .await
            .expect("audit")
            .is_empty()
    );
}
