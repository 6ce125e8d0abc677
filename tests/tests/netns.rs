//! A real network fault: PostgreSQL and RabbitMQ (private servers) in a
//! hub namespace, an executor and two workers each in a namespace of its
//! own, joined by veth pairs (`weft_tests::netns`). Worker 1 takes two
//! runs' actions, then its link is cut mid-action — packets go nowhere,
//! its TCP connections see silence — for longer than the heartbeat grace,
//! and restored once the executor has given up on it.
//!
//! Afterwards: both of worker 1's attempts were reaped as `timed_out`;
//! the run whose task retries succeeded on worker 2 (attempt 2), the one
//! without retries failed; worker 1's own completions of those attempts
//! (it finished them during the cut) crossed the wire after the link came
//! back, and the executor ignored them — no attempt changed, no outcome
//! recorded twice, the failed run stayed failed — and `weft audit` is
//! clean.
//!
//! Skipped, saying why, where network namespaces cannot be made (not
//! root, no `ip`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use weft_bus::{Bus, BusConfig, ConsumerConfig, Delivery, Outcome, QueueKind};
use weft_common::message::topology;
use weft_common::{Message, WorkflowExecutionId, WorkflowStatus};
use weft_tests::cli::{Cli, ok};
use weft_tests::netns::{self, Lab};
use weft_tests::private::{PrivatePostgres, PrivateRabbit, ServerOptions};
use weft_tests::process::Daemon;
use weft_tests::{Stack, StackOptions};

/// Each action notes its end in the log, so the test knows worker 1
/// really finished what it was cut off from.
const RETRIED: &str = r#"
name: cut-off-retried
input: { log: null }
tasks:
  slow:
    action: shell
    input: { command: ["sh", "-c", 'sleep 3; echo "$2" >> "$1"', "slow", "{{ input.log }}", "retried"] }
    retry: { attempts: 2, delay: 100ms }
"#;
const ONCE: &str = r#"
name: cut-off-once
input: { log: null }
tasks:
  slow:
    action: shell
    input: { command: ["sh", "-c", 'sleep 3; echo "$2" >> "$1"', "slow", "{{ input.log }}", "once"] }
"#;

const METRICS_PORT: u16 = 9464;

/// One row per execution of a run: (attempt, status, worker).
async fn attempts(
    pool: &sqlx::PgPool,
    run: WorkflowExecutionId,
) -> Vec<(i32, String, Option<String>)> {
    sqlx::query_as(
        "SELECT attempt, status, worker_id FROM executions \
         WHERE workflow_execution_id = $1 ORDER BY attempt",
    )
    .bind(run.as_uuid())
    .fetch_all(pool)
    .await
    .expect("executions")
}

/// Polls `check` every 100 ms until it holds, at most `timeout`.
async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Records every `execution.completed` on the wire as (attempt, worker),
/// through a queue of its own bound before any run starts.
async fn spy_completions(
    stack: &Stack,
    stop: CancellationToken,
) -> Arc<Mutex<Vec<(WorkflowExecutionId, u32, String)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let bus = Bus::connect(
        BusConfig {
            url: stack.amqp_url.clone(),
            connection_name: "netns-spy".into(),
            ..BusConfig::default()
        },
        stop.clone(),
    )
    .await
    .expect("the spy's connection");
    bus.declare_topology(&[]).await.expect("topology");
    let consumer = ConsumerConfig {
        queue: String::new(),
        kind: QueueKind::Exclusive {
            exchange: topology::EVENTS_EXCHANGE.into(),
            routing_key: "execution.completed".into(),
        },
        prefetch: 64,
        concurrency: 1,
        consumer_tag: "netns-spy".into(),
    };
    let recorded = seen.clone();
    let handler = move |d: Delivery| {
        let recorded = recorded.clone();
        async move {
            if let Message::ExecutionCompleted(m) = &d.envelope.message {
                recorded.lock().expect("spy lock").push((
                    m.workflow_execution_id,
                    m.attempt,
                    m.worker_id.clone(),
                ));
            }
            Outcome::Ack
        }
    };
    tokio::spawn(async move {
        let _ = weft_bus::consume(&bus, consumer, handler, stop).await;
    });
    seen
}

/// The executor's count of `execution.completed` messages it applied
/// without a change (a duplicate or a stale attempt), from its `/metrics`.
async fn ignored_completions(executor: std::net::Ipv4Addr) -> f64 {
    let Ok(response) = reqwest::get(format!("http://{executor}:{METRICS_PORT}/metrics")).await
    else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("weft_executor_messages_total") && l.contains("completed"))
        .filter(|l| !l.contains("applied=\"changed\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_mid_action_is_reaped_retried_and_its_late_completions_ignored() {
    if let Some(reason) = netns::unavailable() {
        eprintln!("skipping the network-namespace test: {reason}");
        return;
    }
    // Declared in this order, dropped in the reverse one: daemons, then
    // servers (stopped inside the hub), then namespaces.
    let mut lab = Lab::new().expect("the hub namespace");
    let exec_host = lab.host("exec").expect("the executor's namespace");
    let w1_host = lab.host("w1").expect("worker 1's namespace");
    let w2_host = lab.host("w2").expect("worker 2's namespace");
    let hub = ServerOptions {
        tls: None,
        netns: Some((lab.hub_netns().to_owned(), lab.hub_addr())),
    };
    let pg = PrivatePostgres::start_with(hub.clone()).expect("PostgreSQL in the hub");
    let rabbit = PrivateRabbit::start_with(hub).expect("RabbitMQ in the hub");
    let stack = Stack::start(StackOptions {
        database_url: Some(pg.url()),
        amqp_url: Some(rabbit.url()),
        ..StackOptions::bare()
    })
    .expect("a stack in the hub");
    let pool = stack.pool().await.expect("pool");
    let stop = CancellationToken::new();
    let completions = spy_completions(&stack, stop.clone()).await;

    let env = stack.fast_liveness_env();
    let metrics = format!("{}:{METRICS_PORT}", exec_host.addr);
    let _executor = Daemon::start_in(
        Some(&exec_host.netns),
        "executor",
        &["executor", "--metrics-addr", &metrics],
        &env,
    )
    .expect("executor");
    // Two slots: worker 1 holds both runs' dispatches unacked, so the
    // broker gives it nothing more while it is cut off.
    let _w1 = Daemon::start_in(
        Some(&w1_host.netns),
        "worker-1",
        // The actions here are `shell`, which a worker runs only when listed.
        &["worker", "--concurrency", "2", "--actions", "shell"],
        &env,
    )
    .expect("worker 1");

    let log = std::env::temp_dir().join(format!("weft-netns-{}.log", uuid::Uuid::new_v4()));
    let input = json!({ "log": log.display().to_string() });
    let retried = stack
        .submit(&pool, RETRIED, input.clone())
        .await
        .expect("submit");
    let once = stack.submit(&pool, ONCE, input).await.expect("submit");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let w1_id = loop {
        let a = attempts(&pool, retried).await;
        let b = attempts(&pool, once).await;
        if let (Some((1, sa, Some(wa))), Some((1, sb, wb))) = (a.first(), b.first())
            && sa == "running"
            && sb == "running"
        {
            assert_eq!(Some(wa), wb.as_ref(), "one worker runs both");
            break wa.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both actions running on worker 1: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _w2 = Daemon::start_in(
        Some(&w2_host.netns),
        "worker-2",
        &["worker", "--actions", "shell"],
        &env,
    )
    .expect("worker 2");

    // The cut lasts until the executor gave up on worker 1 (after the
    // heartbeat grace, 3 s) and worker 2 runs the retry.
    lab.cut(&w1_host).expect("cutting worker 1 off");
    until(
        "worker 1's attempts reaped and the retry running elsewhere",
        Duration::from_secs(90),
        || {
            let pool = pool.clone();
            let w1_id = w1_id.clone();
            async move {
                let a = attempts(&pool, retried).await;
                let b = attempts(&pool, once).await;
                let reaped = |rows: &[(i32, String, Option<String>)]| {
                    rows.first().is_some_and(|(_, s, _)| s == "timed_out")
                };
                let retry_elsewhere = a.get(1).is_some_and(|(attempt, s, w)| {
                    *attempt == 2
                        && (s == "running" || s == "succeeded")
                        && w.as_deref() != Some(w1_id.as_str())
                });
                reaped(&a) && reaped(&b) && retry_elsewhere
            }
        },
    )
    .await;
    lab.restore(&w1_host).expect("restoring worker 1's link");

    let run = stack
        .wait(&pool, retried, Duration::from_secs(90))
        .await
        .expect("the retried run ends");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let run = stack
        .wait(&pool, once, Duration::from_secs(90))
        .await
        .expect("the other run ends");
    assert_eq!(run.status, WorkflowStatus::Failed, "{:?}", run.error);

    // Worker 1 finished both actions while cut off; its completions cross
    // the wire once the link is back, and the executor takes them without
    // a change.
    until(
        "worker 1's late completions on the wire",
        Duration::from_secs(120),
        || {
            let seen = completions.lock().expect("spy lock").clone();
            let w1_id = w1_id.clone();
            async move {
                [retried, once].iter().all(|run| {
                    seen.iter()
                        .any(|(r, attempt, w)| r == run && *attempt == 1 && *w == w1_id)
                })
            }
        },
    )
    .await;
    let executor_addr = exec_host.addr;
    until(
        "the executor ignored worker 1's late completions",
        Duration::from_secs(60),
        move || async move { ignored_completions(executor_addr).await >= 2.0 },
    )
    .await;
    let lines = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        lines.lines().filter(|l| *l == "once").count(),
        1,
        "worker 1 finished the run without retries: {lines}"
    );
    assert_eq!(
        lines.lines().filter(|l| *l == "retried").count(),
        2,
        "worker 1 and worker 2 each finished an attempt: {lines}"
    );

    // Nothing changed after the reaping: each attempt has one outcome.
    let w1 = Some(w1_id.clone());
    let a = attempts(&pool, retried).await;
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[0], (1, "timed_out".to_owned(), w1.clone()), "{a:?}");
    assert_eq!((a[1].0, a[1].1.as_str()), (2, "succeeded"), "{a:?}");
    assert_ne!(a[1].2, w1, "the retry ran on worker 2: {a:?}");
    let b = attempts(&pool, once).await;
    assert_eq!(b, vec![(1, "timed_out".to_owned(), w1)], "{b:?}");
    let run = stack.wait(&pool, once, Duration::from_secs(1)).await;
    assert_eq!(
        run.expect("the run").status,
        WorkflowStatus::Failed,
        "a late success does not revive a failed run"
    );
    for id in [retried, once] {
        assert!(
            weft_tests::violations(&pool, id).await.is_empty(),
            "audit of {id}"
        );
    }
    ok(&Cli::new(&stack).run(&["audit"]));

    stop.cancel();
    let _ = std::fs::remove_file(&log);
    pool.close().await;
}
