//! Coalesced acks: handlers that finish out of order, some slowly, some
//! asking for a requeue, and still every delivery ends acked exactly when
//! its handler said so — nothing is left for the broker to redeliver once
//! the consumer stops.

use std::collections::HashMap;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weft_bus::{Bus, BusConfig, ConsumerConfig, Delivery, Outcome, QueueKind};
use weft_common::message::{WorkerHeartbeat, topology};
use weft_common::{Envelope, MessageId};

const MESSAGES: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_is_settled_once_its_handler_is_done() {
    let (url, _guard) = weft_bus::testing::fresh_vhost().await.expect("vhost");
    let amqp_url = url.clone();
    let stop = CancellationToken::new();
    let bus = Bus::connect(
        BusConfig {
            url,
            connection_name: "acks".into(),
            ..BusConfig::default()
        },
        stop.clone(),
    )
    .await
    .expect("bus");
    let pool = topology::DEFAULT_POOL.to_owned();
    bus.declare_topology(std::slice::from_ref(&pool))
        .await
        .expect("topology");
    let queue = topology::task_queue(&pool);
    let publisher = bus.publisher().await.expect("publisher");
    for i in 0..MESSAGES {
        let beat = Envelope::new(WorkerHeartbeat {
            worker_id: format!("w{i}"),
            queues: Vec::new(),
            running: Vec::new(),
            hostname: String::new(),
            at: chrono::Utc::now(),
            ..WorkerHeartbeat::default()
        });
        publisher
            .publish_raw("", &queue, &beat.to_bytes())
            .await
            .expect("publish");
    }

    // Every 7th message is slow (later deliveries finish first), every
    // 13th is requeued once; the consumer stops once each was acked.
    let seen: Arc<Mutex<HashMap<MessageId, usize>>> = Arc::default();
    let acked = Arc::new(AtomicUsize::new(0));
    let consumer_stop = CancellationToken::new();
    let handler = {
        let seen = Arc::clone(&seen);
        let acked = Arc::clone(&acked);
        let consumer_stop = consumer_stop.clone();
        move |delivery: Delivery| {
            let seen = Arc::clone(&seen);
            let acked = Arc::clone(&acked);
            let consumer_stop = consumer_stop.clone();
            async move {
                let id = delivery.envelope.id;
                let n = {
                    let mut seen = seen.lock().expect("lock");
                    let n = seen.entry(id).or_default();
                    *n += 1;
                    *n
                };
                let index = match &delivery.envelope.message {
                    weft_common::Message::WorkerHeartbeat(b) => {
                        b.worker_id[1..].parse::<usize>().expect("index")
                    }
                    other => panic!("unexpected message {other:?}"),
                };
                if index % 7 == 0 {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                if index % 13 == 0 && n == 1 {
                    return Outcome::Requeue;
                }
                if acked.fetch_add(1, Ordering::SeqCst) + 1 == MESSAGES {
                    consumer_stop.cancel();
                }
                Outcome::Ack
            }
        }
    };
    let config = ConsumerConfig {
        queue: queue.clone(),
        kind: QueueKind::Durable,
        prefetch: 64,
        concurrency: 32,
        consumer_tag: "acks".into(),
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        weft_bus::consume(&bus, config, handler, consumer_stop),
    )
    .await
    .expect("the consumer saw every message within a minute")
    .expect("consume");

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), MESSAGES, "every message was handled");
    let requeued = seen.values().filter(|n| **n > 1).count();
    assert!(
        requeued >= MESSAGES / 13,
        "requeued ones came back: {requeued}"
    );
    // The consumer stopped and closed its channel: anything it had not
    // acked would be back in the queue now.
    let left = weft_tests::queue_messages(&amqp_url, &queue)
        .await
        .expect("the queue is there");
    assert_eq!(left, 0, "deliveries left unacked");
    stop.cancel();
}
