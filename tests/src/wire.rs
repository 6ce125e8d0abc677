//! The wire, seen and disturbed from outside: completions delivered twice,
//! dispatches recorded as they pass, queue depths.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use weft_common::WorkflowExecutionId;

use crate::Stack;

/// Re-publishes every `execution.completed` straight into the executors'
/// queue, so each completion is applied twice (possibly by two executors at
/// once), counting the copies in `copies`. Returns once the duplicator's
/// queue is bound; runs until `stop`.
///
/// # Errors
/// If RabbitMQ is unreachable.
pub async fn duplicate_completions(
    stack: &Stack,
    copies: Arc<std::sync::atomic::AtomicUsize>,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use std::sync::atomic::Ordering;
    use weft_bus::{Bus, ConsumerConfig, Delivery, Outcome, QueueKind};
    use weft_common::message::{ExecutionCompleted, topology};
    use weft_common::{Envelope, ExecutionId, ExecutionStatus, Message};

    let bus = Bus::connect(stack.bus("duplicator"), stop.clone()).await?;
    let publisher = bus.publisher().await?;
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let consumer = ConsumerConfig {
        queue: String::new(),
        kind: QueueKind::Exclusive {
            exchange: topology::EVENTS_EXCHANGE.into(),
            routing_key: "execution.completed".into(),
        },
        prefetch: 256,
        concurrency: 16,
        consumer_tag: "duplicator".into(),
    };
    let handle = tokio::spawn({
        let publisher = publisher.clone();
        let seen = seen.clone();
        async move {
            let handler = move |d: Delivery| {
                let publisher = publisher.clone();
                let copies = copies.clone();
                let seen = seen.clone();
                async move {
                    seen.fetch_add(1, Ordering::Relaxed);
                    if matches!(d.envelope.message, Message::ExecutionCompleted(_)) {
                        let bytes = d.envelope.to_bytes();
                        if publisher
                            .publish_raw("", topology::EXECUTOR_QUEUE, &bytes)
                            .await
                            .is_err()
                        {
                            return Outcome::Requeue;
                        }
                        copies.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Ack
                }
            };
            if let Err(e) = weft_bus::consume(&bus, consumer, handler, stop).await {
                tracing::error!(error = %e, "duplicator stopped");
            }
        }
    });
    // Readiness: publish probes (completions of an execution that does not
    // exist — executors ack them as duplicates) until the duplicator sees one.
    let probe = Envelope::new(ExecutionCompleted {
        execution_id: ExecutionId::new(),
        workflow_execution_id: WorkflowExecutionId::new(),
        attempt: 1,
        status: ExecutionStatus::Succeeded,
        result: None,
        error: None,
        worker_id: "probe".into(),
        started_at: None,
        finished_at: chrono::Utc::now(),
        logs: None,
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.load(Ordering::Relaxed) == 0 {
        if tokio::time::Instant::now() > deadline {
            bail!("the duplicator's queue was not bound within 10 s");
        }
        let _ = publisher.publish(&probe).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(handle)
}

/// Waits (at most `timeout`) until a queue holds at least `n` messages, as
/// [`queue_messages`] counts them; returns the count. Each probe spawns
/// `rabbitmqctl` (an Erlang VM, ~0.3 s of CPU), so probes are 500 ms apart.
///
/// # Errors
/// On timeout, with the count reached.
pub async fn wait_for_queue_messages(
    amqp_url: &str,
    queue: &str,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<usize> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let count = queue_messages(amqp_url, queue).await.unwrap_or(0);
        if count >= n {
            return Ok(count);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("queue {queue} holds {count} messages, not {n}, after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Messages ready in a queue of the vhost an AMQP URL names, from a
/// passive declaration over AMQP — exact for quorum queues too, whose
/// counts in `rabbitmqctl list_queues` are statistics emitted every few
/// seconds. Messages delivered and not yet acked are not counted: ask once
/// the consumers are gone. `None` if the broker cannot be reached or the
/// queue does not exist.
pub async fn queue_messages(amqp_url: &str, queue: &str) -> Option<usize> {
    use weft_bus::{Bus, BusConfig};
    let bus = Bus::try_connect(BusConfig {
        url: amqp_url.to_owned(),
        connection_name: "queue-probe".into(),
        ..BusConfig::default()
    })
    .await
    .ok()?;
    let ready = bus.queue_ready(queue).await.ok().flatten();
    bus.close().await;
    ready.and_then(|n| usize::try_from(n).ok())
}

/// The dispatches a [`spy_dispatches`] saw on the wire, in arrival order.
pub type WireDispatches = Arc<std::sync::Mutex<Vec<weft_common::message::Dispatch>>>;

/// Binds a queue of its own to the tasks exchange for `pool`, so it gets a
/// copy of every dispatch published to that worker pool, and records them
/// (with their payloads, not just a count): what crossed the wire, which
/// the tables cannot tell — a message published twice, or published for a
/// row whose transaction rolled back. Returns once the queue is bound;
/// runs until `stop`.
///
/// Its readiness probes are dispatches of `noop` for a run that does not
/// exist: a worker runs them and the executors ignore their reports. They
/// are not recorded.
///
/// # Errors
/// If RabbitMQ is unreachable.
pub async fn spy_dispatches(
    stack: &Stack,
    pool: &str,
    stop: CancellationToken,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, WireDispatches)> {
    use weft_bus::{Bus, ConsumerConfig, Delivery, Outcome, QueueKind};
    use weft_common::message::{Dispatch, topology};
    use weft_common::{Envelope, ExecutionId, Message, TaskExecutionId};

    let bus = Bus::connect(stack.bus("dispatch-spy"), stop.clone()).await?;
    // The exchange must exist to bind to; executors may not have declared
    // it yet. Declaring is idempotent.
    bus.declare_topology(&[pool.to_owned()]).await?;
    let publisher = bus.publisher().await?;
    let probe_run = WorkflowExecutionId::new();
    let seen: WireDispatches = Arc::default();
    let probed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let consumer = ConsumerConfig {
        queue: String::new(),
        kind: QueueKind::Exclusive {
            exchange: topology::TASKS_EXCHANGE.into(),
            routing_key: pool.to_owned(),
        },
        prefetch: 256,
        concurrency: 16,
        consumer_tag: "dispatch-spy".into(),
    };
    let handle = tokio::spawn({
        let seen = seen.clone();
        let probed = probed.clone();
        async move {
            let handler = move |d: Delivery| {
                let seen = seen.clone();
                let probed = probed.clone();
                async move {
                    if let Message::Dispatch(dispatch) = d.envelope.message {
                        if dispatch.workflow_execution_id == probe_run {
                            probed.store(true, std::sync::atomic::Ordering::Relaxed);
                        } else {
                            seen.lock().expect("the spy's lock").push(dispatch);
                        }
                    }
                    Outcome::Ack
                }
            };
            if let Err(e) = weft_bus::consume(&bus, consumer, handler, stop).await {
                tracing::error!(error = %e, "dispatch spy stopped");
            }
        }
    });
    let probe = Envelope::new(Dispatch {
        execution_id: ExecutionId::new(),
        workflow_execution_id: probe_run,
        task_execution_id: TaskExecutionId::new(),
        task_name: "probe".into(),
        item_index: None,
        attempt: 1,
        action: "noop".into(),
        input: Value::Null,
        timeout_ms: None,
        queue: pool.to_owned(),
        worker: None,
        child: false,
        wait: false,
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !probed.load(std::sync::atomic::Ordering::Relaxed) {
        if tokio::time::Instant::now() > deadline {
            bail!("the dispatch spy's queue was not bound within 10 s");
        }
        let _ = publisher.publish(&probe).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((handle, seen))
}

/// The bodies a [`spy_events`] saw on the wire, in arrival order.
pub type WireBodies = Arc<std::sync::Mutex<Vec<String>>>;

/// Binds a queue of its own to the events exchange for every routing key
/// (`#`) and records the body of every message — starts, completions with
/// their results and logs, runs finished with their outputs — as it
/// crossed the wire. Returns once the queue is bound: a probe
/// `execution.completed` of an execution that does not exist (executors
/// ack it as a duplicate) came back. Runs until `stop`; the probe is not
/// recorded.
///
/// # Errors
/// If RabbitMQ is unreachable.
pub async fn spy_events(
    stack: &Stack,
    stop: CancellationToken,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, WireBodies)> {
    use weft_bus::{Bus, ConsumerConfig, Delivery, Outcome, QueueKind};
    use weft_common::message::{ExecutionCompleted, topology};
    use weft_common::{Envelope, ExecutionId, ExecutionStatus, Message};

    let bus = Bus::connect(stack.bus("event-spy"), stop.clone()).await?;
    bus.declare_topology(&[topology::DEFAULT_POOL.to_owned()])
        .await?;
    let publisher = bus.publisher().await?;
    let probe_run = WorkflowExecutionId::new();
    let seen: WireBodies = Arc::default();
    let probed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let consumer = ConsumerConfig {
        queue: String::new(),
        kind: QueueKind::Exclusive {
            exchange: topology::EVENTS_EXCHANGE.into(),
            routing_key: "#".into(),
        },
        prefetch: 256,
        concurrency: 16,
        consumer_tag: "event-spy".into(),
    };
    let handle = tokio::spawn({
        let seen = seen.clone();
        let probed = probed.clone();
        async move {
            let handler = move |d: Delivery| {
                let seen = seen.clone();
                let probed = probed.clone();
                async move {
                    let probe = matches!(&d.envelope.message,
                        Message::ExecutionCompleted(c) if c.workflow_execution_id == probe_run);
                    if probe {
                        probed.store(true, std::sync::atomic::Ordering::Relaxed);
                    } else {
                        let body = String::from_utf8_lossy(&d.envelope.to_bytes()).into_owned();
                        seen.lock().expect("the spy's lock").push(body);
                    }
                    Outcome::Ack
                }
            };
            if let Err(e) = weft_bus::consume(&bus, consumer, handler, stop).await {
                tracing::error!(error = %e, "event spy stopped");
            }
        }
    });
    let probe = Envelope::new(ExecutionCompleted {
        execution_id: ExecutionId::new(),
        workflow_execution_id: probe_run,
        attempt: 1,
        status: ExecutionStatus::Succeeded,
        result: None,
        error: None,
        worker_id: "probe".into(),
        started_at: None,
        finished_at: chrono::Utc::now(),
        logs: None,
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !probed.load(std::sync::atomic::Ordering::Relaxed) {
        if tokio::time::Instant::now() > deadline {
            bail!("the event spy's queue was not bound within 10 s");
        }
        let _ = publisher.publish(&probe).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((handle, seen))
}

/// What a [`spy`] saw on the wire, in arrival order.
pub type WireMessages = Arc<std::sync::Mutex<Vec<weft_common::Envelope>>>;

/// Binds an exclusive queue of its own to `exchange` with `routing_key`
/// on the broker at `amqp_url` (one URL: the queue lives and dies with the
/// spy's connection, so give it a node that stays up) and records every
/// message routed there, with its id: a message published twice is seen
/// twice with one id, two messages about one thing have two. The queue is
/// bound when this returns; the spy runs until `stop`.
///
/// # Errors
/// If RabbitMQ is unreachable.
pub async fn spy(
    amqp_url: &str,
    exchange: &str,
    routing_key: &str,
    stop: CancellationToken,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, WireMessages)> {
    use weft_bus::{Bus, BusConfig, ConsumerConfig, Delivery, Outcome, QueueKind};

    let bus = Bus::connect(
        BusConfig {
            url: amqp_url.to_owned(),
            connection_name: "wire-spy".into(),
            ..BusConfig::default()
        },
        stop.clone(),
    )
    .await?;
    let queue = format!("weft.spy.{}", uuid::Uuid::new_v4().simple());
    bus.declare_exclusive(&queue, exchange, routing_key).await?;
    let seen: WireMessages = Arc::default();
    let consumer = ConsumerConfig {
        queue,
        kind: QueueKind::Exclusive {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
        },
        prefetch: 256,
        concurrency: 16,
        consumer_tag: "wire-spy".into(),
    };
    let handle = tokio::spawn({
        let seen = seen.clone();
        async move {
            let handler = move |d: Delivery| {
                seen.lock().expect("the spy's lock").push(d.envelope);
                async { Outcome::Ack }
            };
            if let Err(e) = weft_bus::consume(&bus, consumer, handler, stop).await {
                tracing::error!(error = %e, "wire spy stopped");
            }
        }
    });
    Ok((handle, seen))
}
