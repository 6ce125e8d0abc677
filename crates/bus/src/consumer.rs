//! The consumer loop: decode, hand to a handler, settle only after the
//! handler is done; survive connection losses; stop gracefully.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use weft_common::Envelope;

use crate::connection::Bus;
use crate::error::BusError;
use crate::publisher::{PUBLISHED_AT_HEADER, Publisher};

/// How often a subscription checks that its connection is still up.
const CONNECTION_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// How long stopping a subscription waits for the broker's answer to its
/// cancel and its channel's close.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What to do with a delivery once its handler is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its effect is durable: acknowledge it.
    Ack,
    /// Not handled now (e.g. shutting down): give it back to the queue.
    Requeue,
    /// It can never be handled: publish it to `weft.dead` with this reason,
    /// then acknowledge it.
    DeadLetter(String),
}

/// A decoded message handed to a handler.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub envelope: Envelope,
    /// Whether the broker delivered it before (to this or another consumer).
    pub redelivered: bool,
    /// When this process took it off the connection (before waiting for a
    /// handler slot is not counted: a slot is taken first).
    pub received_at: DateTime<Utc>,
    /// When its publisher handed it to the broker, if it said
    /// (`x-weft-published-at`; every Weft publisher does).
    pub published_at: Option<DateTime<Utc>>,
}

/// When the publisher of `delivery` handed it to the broker.
fn published_at(delivery: &lapin::message::Delivery) -> Option<DateTime<Utc>> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(PUBLISHED_AT_HEADER)? {
        AMQPValue::LongLongInt(micros) => DateTime::from_timestamp_micros(*micros),
        _ => None,
    }
}

/// Which queue to consume.
#[derive(Debug, Clone)]
pub enum QueueKind {
    /// A durable queue that [`Bus::declare_topology`] declared.
    Durable,
    /// An exclusive, auto-delete queue (named by the broker unless
    /// [`ConsumerConfig::queue`] names it) bound to `exchange` with
    /// `routing_key`, re-created on every reconnect (a worker's
    /// `weft.control` queue and its private queue; `weft watch` on
    /// `workflow.finished`).
    Exclusive {
        /// The exchange to bind to.
        exchange: String,
        /// The binding key.
        routing_key: String,
    },
}

/// How to consume.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The queue's name; for [`QueueKind::Exclusive`], empty lets the
    /// broker name it.
    pub queue: String,
    /// What kind of queue it is.
    pub kind: QueueKind,
    /// Deliveries the broker may push before acks.
    pub prefetch: u16,
    /// Handlers running at once.
    pub concurrency: usize,
    /// The consumer tag (a prefix; made unique per subscription).
    pub consumer_tag: String,
}

/// Consumes until `shutdown`, surviving connection losses: after a loss
/// the loop reconnects with capped backoff (each attempt logged) and
/// subscribes again; deliveries whose handlers were running are redelivered
/// by the broker. Each delivery is decoded; an undecodable one is published
/// to `weft.dead` with its reason and acked, never retried. At most
/// `concurrency` handlers run at once; a delivery is acked only after its
/// handler returned [`Outcome::Ack`]. On shutdown the subscription is
/// cancelled and in-flight handlers finish and settle before this returns.
///
/// # Errors
/// Only when the consumer cannot even start (e.g. the queue does not exist).
pub async fn consume<H, F>(
    bus: &Bus,
    config: ConsumerConfig,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), BusError>
where
    H: Fn(Delivery) -> F + Send + Sync + 'static,
    F: Future<Output = Outcome> + Send + 'static,
{
    let handler = Arc::new(handler);
    let dead_letters = bus.publisher().await?;
    let mut failures = 0u32;
    loop {
        match subscription(bus, &config, &handler, &dead_letters, &shutdown).await {
            Ok(()) => return Ok(()),
            Err(e) if shutdown.is_cancelled() => {
                tracing::debug!(error = %e, "consumer stopped while shutting down");
                return Ok(());
            }
            Err(e) => {
                failures += 1;
                let wait = bus.backoff(failures);
                tracing::warn!(queue = %config.queue, error = %weft_common::error_chain(&e), attempt = failures, retry_in = ?wait, "consumer lost its subscription; resubscribing");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// One subscription: returns `Ok` on shutdown, `Err` when the channel or
/// connection was lost.
async fn subscription<H, F>(
    bus: &Bus,
    config: &ConsumerConfig,
    handler: &Arc<H>,
    dead_letters: &Publisher,
    shutdown: &CancellationToken,
) -> Result<(), BusError>
where
    H: Fn(Delivery) -> F + Send + Sync + 'static,
    F: Future<Output = Outcome> + Send + 'static,
{
    let (channel, connection) = bus.channel_and_connection().await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await
        .map_err(BusError::amqp("setting the prefetch"))?;
    let queue = match &config.kind {
        QueueKind::Durable => config.queue.clone(),
        QueueKind::Exclusive {
            exchange,
            routing_key,
        } => {
            let options = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            };
            let declared = channel
                .queue_declare(
                    config.queue.as_str().into(),
                    options,
                    crate::topology::exclusive_arguments(),
                )
                .await
                .map_err(BusError::amqp("declaring an exclusive queue"))?;
            let name = declared.name().to_string();
            channel
                .queue_bind(
                    name.as_str().into(),
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(BusError::amqp(format!(
                    "binding an exclusive queue to `{exchange}`"
                )))?;
            name
        }
    };
    let tag = format!("{}-{}", config.consumer_tag, uuid::Uuid::new_v4().simple());
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(BusError::amqp(format!("consuming `{queue}`")))?;
    tracing::debug!(queue = %queue, "consuming");
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut running: JoinSet<Settled> = JoinSet::new();
    let mut acks = Acks::default();
    // The safety net for a subscription whose connection died without its
    // stream ending (seen when a cluster node was killed): the loop looks
    // at the connection's status every second and resubscribes.
    let mut watch = tokio::time::interval(CONNECTION_CHECK);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lost = loop {
        // Wait for a free handler slot before taking the next delivery, so
        // prefetched messages wait in the client, not in memory unbounded.
        let permit = tokio::select! {
            () = shutdown.cancelled() => break None,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break None,
            },
        };
        let next = tokio::select! {
            () = shutdown.cancelled() => break None,
            next = consumer.next() => next,
            _ = watch.tick() => {
                if connection.status().connected() && channel.status().connected() {
                    continue;
                }
                break Some(BusError::Setup(format!(
                    "the connection of the subscription to `{queue}` was lost"
                )));
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                drop(permit);
                acks.settled(done);
                // Whatever else finished meanwhile is acked together.
                while let Some(done) = running.try_join_next() {
                    acks.settled(done);
                }
                acks.flush().await;
                continue;
            }
        };
        let delivery = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                break Some(BusError::Amqp {
                    context: format!("receiving from `{queue}`"),
                    source: e,
                });
            }
            None => {
                break Some(BusError::Setup(format!(
                    "the subscription to `{queue}` ended"
                )));
            }
        };
        let received_at = Utc::now();
        let handler = Arc::clone(handler);
        let dead_letters = dead_letters.clone();
        acks.delivered(delivery.delivery_tag);
        running.spawn(async move {
            let _permit = permit;
            settle(delivery, received_at, handler.as_ref(), &dead_letters).await
        });
    };
    if lost.is_none() {
        // Bounded: a connection that died unnoticed never answers.
        let _ = tokio::time::timeout(
            SETTLE_TIMEOUT,
            channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()),
        )
        .await;
    }
    // Let in-flight handlers finish and settle their deliveries.
    while let Some(done) = running.join_next().await {
        acks.settled(done);
    }
    acks.flush().await;
    match lost {
        None => {
            let _ = tokio::time::timeout(
                SETTLE_TIMEOUT,
                channel.close(200, "consumer stopped".into()),
            )
            .await;
            Ok(())
        }
        Some(e) => Err(e),
    }
}

/// A delivery whose handler is done: its tag, and its acker if it is to be
/// acked (requeues and rejections were sent already).
type Settled = (u64, Option<lapin::Acker>);

/// Acks of one subscription, coalesced: deliveries whose handlers finished
/// together are acked with one `basic.ack` with `multiple` (which covers
/// every earlier delivery of the channel) as far as no earlier delivery is
/// still being handled; the ones past such a delivery are acked one by one
/// at once, so a long handler never holds back another delivery's ack.
#[derive(Default)]
struct Acks {
    /// Deliveries whose handlers run.
    running: std::collections::BTreeSet<u64>,
    /// Deliveries handled, to ack.
    ready: std::collections::BTreeMap<u64, lapin::Acker>,
}

impl Acks {
    fn delivered(&mut self, tag: u64) {
        self.running.insert(tag);
    }

    fn settled(&mut self, done: Result<Settled, tokio::task::JoinError>) {
        match done {
            Ok((tag, acker)) => {
                self.running.remove(&tag);
                if let Some(acker) = acker {
                    self.ready.insert(tag, acker);
                }
            }
            // A handler panicked: its delivery stays unacked and the
            // broker redelivers it when the channel closes.
            Err(e) => tracing::error!(error = %e, "a delivery's handler panicked"),
        }
    }

    async fn flush(&mut self) {
        let oldest_running = self.running.first().copied().unwrap_or(u64::MAX);
        let later = self.ready.split_off(&oldest_running);
        let mut acked = 0usize;
        if let Some((_, last)) = self.ready.pop_last() {
            // Every delivery up to `last` was handled: one ack for all.
            acked = self.ready.len() + 1;
            report(
                last.ack(BasicAckOptions { multiple: true }).await,
                "acking deliveries",
            );
        }
        self.ready = later;
        for (_, acker) in std::mem::take(&mut self.ready) {
            acked += 1;
            report(
                acker.ack(BasicAckOptions::default()).await,
                "acking a delivery",
            );
        }
        if acked > 0 {
            metrics::counter!("weft_bus_deliveries_total", "outcome" => "ack")
                .increment(acked as u64);
        }
    }
}

fn report(settled: Result<bool, lapin::Error>, what: &str) {
    match settled {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(
                what,
                "delivery was already settled or its channel closed; the broker will redeliver it"
            );
        }
        Err(e) => {
            tracing::warn!(what, error = %e, "settling failed; the broker will redeliver");
        }
    }
}

/// `to - from` in seconds, for a latency histogram (negative when the
/// clocks disagree, which the histogram shows rather than hides).
#[must_use]
pub fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).as_seconds_f64()
}

/// Decodes, runs the handler, and requeues / dead-letters, or hands the
/// acker back to be acked with the others that finished together.
async fn settle<H, F>(
    delivery: lapin::message::Delivery,
    received_at: DateTime<Utc>,
    handler: &H,
    dead_letters: &Publisher,
) -> Settled
where
    H: Fn(Delivery) -> F + Send + Sync + 'static,
    F: Future<Output = Outcome> + Send + 'static,
{
    let exchange = delivery.exchange.to_string();
    let routing_key = delivery.routing_key.to_string();
    let outcome = match Envelope::from_bytes(&delivery.data) {
        Ok(envelope) => {
            let span = tracing::info_span!(
                "message",
                kind = envelope.message.kind(),
                message_id = %envelope.id,
                redelivered = delivery.redelivered,
            );
            let published_at = published_at(&delivery);
            if let Some(published) = published_at
                && !delivery.redelivered
            {
                metrics::histogram!("weft_bus_transit_seconds", "kind" => envelope.message.kind())
                    .record(seconds_between(published, received_at));
            }
            handler(Delivery {
                envelope,
                redelivered: delivery.redelivered,
                received_at,
                published_at,
            })
            .instrument(span)
            .await
        }
        Err(e) => {
            tracing::warn!(exchange = %exchange, routing_key = %routing_key, error = %e, "undecodable message; dead-lettering it");
            Outcome::DeadLetter(e.to_string())
        }
    };
    let tag = delivery.delivery_tag;
    let settled = match outcome {
        Outcome::Ack => return (tag, Some(delivery.acker)),
        Outcome::Requeue => {
            metrics::counter!("weft_bus_deliveries_total", "outcome" => "requeue").increment(1);
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
        }
        Outcome::DeadLetter(reason) => {
            metrics::counter!("weft_bus_deliveries_total", "outcome" => "dead_letter").increment(1);
            match dead_letters
                .dead_letter(&delivery.data, &reason, &exchange, &routing_key)
                .await
            {
                Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
                Err(e) => {
                    // Could not park it: let the broker dead-letter it (the
                    // queue's DLX) without our reason rather than loop.
                    tracing::warn!(error = %e, "publishing to weft.dead failed; rejecting to the queue's dead-letter exchange");
                    delivery
                        .acker
                        .nack(BasicNackOptions {
                            requeue: false,
                            ..BasicNackOptions::default()
                        })
                        .await
                }
            }
        }
    };
    report(settled, "settling a delivery");
    (tag, None)
}
