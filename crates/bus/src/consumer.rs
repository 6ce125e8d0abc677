//! The consumer loop: decode, hand to a handler, settle only after the
//! handler is done; survive connection losses; stop gracefully.

use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use weft_common::Envelope;

use crate::connection::Bus;
use crate::error::BusError;
use crate::publisher::Publisher;

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
}

/// Which queue to consume.
#[derive(Debug, Clone)]
pub enum QueueKind {
    /// A durable queue that [`Bus::declare_topology`] declared.
    Durable,
    /// A server-named, exclusive, auto-delete queue bound to `exchange`
    /// with `routing_key`, re-created on every reconnect (a worker's
    /// `weft.control` queue; `weft watch` on `workflow.finished`).
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
    /// The queue's name (ignored for [`QueueKind::Exclusive`]).
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
    let channel = bus.channel().await?;
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
                .queue_declare("".into(), options, FieldTable::default())
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
    let mut running: JoinSet<()> = JoinSet::new();
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
            Some(_) = running.join_next(), if !running.is_empty() => { drop(permit); continue; }
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
        let handler = Arc::clone(handler);
        let dead_letters = dead_letters.clone();
        running.spawn(async move {
            let _permit = permit;
            settle(delivery, handler.as_ref(), &dead_letters).await;
        });
    };
    if lost.is_none() {
        let _ = channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
    }
    // Let in-flight handlers finish and settle their deliveries.
    while running.join_next().await.is_some() {}
    match lost {
        None => {
            let _ = channel.close(200, "consumer stopped".into()).await;
            Ok(())
        }
        Some(e) => Err(e),
    }
}

/// Decodes, runs the handler, and acks / requeues / dead-letters.
async fn settle<H, F>(delivery: lapin::message::Delivery, handler: &H, dead_letters: &Publisher)
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
            handler(Delivery {
                envelope,
                redelivered: delivery.redelivered,
            })
            .instrument(span)
            .await
        }
        Err(e) => {
            tracing::warn!(exchange = %exchange, routing_key = %routing_key, error = %e, "undecodable message; dead-lettering it");
            Outcome::DeadLetter(e.to_string())
        }
    };
    let label = match &outcome {
        Outcome::Ack => "ack",
        Outcome::Requeue => "requeue",
        Outcome::DeadLetter(_) => "dead_letter",
    };
    metrics::counter!("weft_bus_deliveries_total", "outcome" => label).increment(1);
    let settled = match outcome {
        Outcome::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
        Outcome::Requeue => {
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
        }
        Outcome::DeadLetter(reason) => match dead_letters
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
        },
    };
    match settled {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(routing_key = %routing_key, "delivery was already settled or its channel closed; the broker will redeliver it")
        }
        Err(e) => {
            tracing::warn!(routing_key = %routing_key, error = %e, "settling a delivery failed; the broker will redeliver it")
        }
    }
}
