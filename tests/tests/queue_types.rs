//! Queue types: durable queues are quorum queues unless `--queue-type
//! classic` says otherwise, exclusive ones stay classic, a poison message
//! stops at the delivery limit in `weft.dead`, and a queue that exists with
//! the other type is a clear error naming it — the daemon exits with it
//! instead of crashing its channel again and again.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use weft_bus::{
    Bus, BusConfig, BusError, ConsumerConfig, DELIVERY_LIMIT, Delivery, Outcome, QueueKind,
    QueueType,
};
use weft_common::Envelope;
use weft_common::message::{WorkerHeartbeat, topology};
use weft_tests::{Stack, StackOptions};

fn config(url: &str, queue_type: QueueType) -> BusConfig {
    BusConfig {
        url: url.to_owned(),
        connection_name: "queue-types".into(),
        queue_type,
        ..BusConfig::default()
    }
}

/// `rabbitmqctl list_queues name type` of a vhost, by name.
fn queue_types(amqp_url: &str) -> std::collections::BTreeMap<String, String> {
    let vhost = amqp_url.rsplit('/').next().unwrap_or_default();
    let out = Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "-p", vhost, "name", "type"])
        .output()
        .expect("rabbitmqctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(name, _)| *name != "name")
        .map(|(n, t)| (n.to_owned(), t.trim().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_queues_are_quorum_exclusive_ones_classic_and_poison_stops_at_the_limit() {
    let (url, _guard) = weft_bus::testing::fresh_vhost().await.expect("vhost");
    let stop = CancellationToken::new();
    let bus = Bus::connect(config(&url, QueueType::default()), stop.clone())
        .await
        .expect("bus");
    bus.declare_topology(&["poison".to_owned()])
        .await
        .expect("topology");
    bus.declare_exclusive(
        "weft.worker.probe",
        topology::TASKS_EXCHANGE,
        "worker:probe",
    )
    .await
    .expect("exclusive");
    // Declared again, idempotently, as every daemon does on start.
    bus.declare_topology(&["poison".to_owned()])
        .await
        .expect("topology again");
    let types = queue_types(&url);
    for queue in [
        topology::DEAD_QUEUE,
        topology::EXECUTOR_QUEUE,
        &topology::task_queue("poison"),
    ] {
        assert_eq!(
            types.get(queue).map(String::as_str),
            Some("quorum"),
            "{queue}: {types:?}"
        );
    }
    assert_eq!(
        types.get("weft.worker.probe").map(String::as_str),
        Some("classic"),
        "an exclusive queue: {types:?}"
    );

    // A message that is always handed back (as one that kills its
    // consumer would be) is delivered DELIVERY_LIMIT times, then parked.
    let publisher = bus.publisher().await.expect("publisher");
    let beat = Envelope::new(WorkerHeartbeat {
        worker_id: "poison".into(),
        at: chrono::Utc::now(),
        ..WorkerHeartbeat::default()
    });
    let queue = topology::task_queue("poison");
    publisher
        .publish_raw("", &queue, &beat.to_bytes())
        .await
        .expect("publish");
    let deliveries = Arc::new(AtomicUsize::new(0));
    let consumer_stop = CancellationToken::new();
    let consumer = tokio::spawn({
        let bus = bus.clone();
        let deliveries = deliveries.clone();
        let stop = consumer_stop.clone();
        async move {
            let handler = move |_: Delivery| {
                deliveries.fetch_add(1, Ordering::Relaxed);
                async { Outcome::Requeue }
            };
            let config = ConsumerConfig {
                queue,
                kind: QueueKind::Durable,
                prefetch: 1,
                concurrency: 1,
                consumer_tag: "poison".into(),
            };
            weft_bus::consume(&bus, config, handler, stop).await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dead = bus
            .queue_ready(topology::DEAD_QUEUE)
            .await
            .expect("stats")
            .unwrap_or(0);
        if dead == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the poison message was not dead-lettered within 60 s ({} deliveries)",
            deliveries.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer_stop.cancel();
    consumer.await.expect("join").expect("consumer");
    let limit = usize::try_from(DELIVERY_LIMIT).expect("limit");
    // The first delivery and DELIVERY_LIMIT redeliveries.
    assert_eq!(deliveries.load(Ordering::Relaxed), limit + 1, "deliveries");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_the_other_type_is_named_with_both_types() {
    let (url, _guard) = weft_bus::testing::fresh_vhost().await.expect("vhost");
    let stop = CancellationToken::new();
    let classic = Bus::connect(config(&url, QueueType::Classic), stop.clone())
        .await
        .expect("bus");
    classic
        .declare_topology(&["default".to_owned()])
        .await
        .expect("classic topology");
    let quorum = Bus::connect(config(&url, QueueType::Quorum), stop.clone())
        .await
        .expect("bus");
    let err = quorum
        .declare_topology(&["default".to_owned()])
        .await
        .expect_err("a quorum declaration over classic queues");
    let BusError::QueueTypeMismatch {
        queue,
        existing,
        wanted,
    } = &err
    else {
        panic!("not a type mismatch: {err:?}");
    };
    assert_eq!(
        (queue.as_str(), existing.as_str(), wanted.as_str()),
        (topology::DEAD_QUEUE, "classic", "quorum")
    );
    // The bus is still usable: the refusal closed a channel, not the
    // connection, and the classic declaration still passes.
    classic
        .declare_topology(&["default".to_owned()])
        .await
        .expect("classic topology again");

    // The other way round: quorum queues exist, a classic daemon starts.
    let (url, _guard2) = weft_bus::testing::fresh_vhost().await.expect("vhost");
    let quorum = Bus::connect(config(&url, QueueType::Quorum), stop.clone())
        .await
        .expect("bus");
    quorum
        .declare_topology(&["default".to_owned()])
        .await
        .expect("quorum topology");
    let classic = Bus::connect(config(&url, QueueType::Classic), stop.clone())
        .await
        .expect("bus");
    let err = classic
        .declare_topology(&["default".to_owned()])
        .await
        .expect_err("a classic declaration over quorum queues");
    assert!(
        matches!(&err, BusError::QueueTypeMismatch { existing, wanted, .. } if existing == "quorum" && wanted == "classic"),
        "{err:?}"
    );
    stop.cancel();
}

/// Runs `weft ARGS` until it exits (at most 60 s); its status and stderr.
fn run_to_exit(stack: &Stack, args: &[&str], queue_type: &str) -> (bool, String) {
    let mut child = Command::new(weft_tests::process::weft_binary().expect("weft"))
        .args(args)
        .env("WEFT_DATABASE_URL", &stack.database_url)
        .env("WEFT_AMQP_URL", &stack.amqp_url)
        .env("WEFT_QUEUE_TYPE", queue_type)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "`weft {}` did not exit within 60 s over queues of the other type: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_over_classic_queues_exits_with_the_migration_path() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let stop = CancellationToken::new();
    let classic = Bus::connect(config(&stack.amqp_url, QueueType::Classic), stop.clone())
        .await
        .expect("bus");
    classic
        .declare_topology(&["default".to_owned()])
        .await
        .expect("classic topology");
    stop.cancel();
    let stack = Arc::new(stack);
    for args in [&["executor"][..], &["worker"][..]] {
        let (ok, stderr) = tokio::task::spawn_blocking({
            let stack = stack.clone();
            move || run_to_exit(&stack, args, "quorum")
        })
        .await
        .expect("join");
        assert!(
            !ok,
            "`weft {args:?}` succeeded over classic queues: {stderr}"
        );
        for part in [
            "queue `weft.dead` already exists as a classic queue, but this process declares it as a quorum queue",
            "--queue-type classic",
            "rabbitmqctl delete_queue weft.dead",
            "docs/operations.md",
        ] {
            assert!(
                stderr.contains(part),
                "`weft {args:?}`: {part:?} not in: {stderr}"
            );
        }
        assert_eq!(
            stderr.matches("already exists as a classic queue").count(),
            1,
            "one error, not a loop: {stderr}"
        );
    }
}
