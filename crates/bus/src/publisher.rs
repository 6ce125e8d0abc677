//! Publishing with publisher confirms.

use std::sync::Arc;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation};
use tokio::sync::Mutex;
use weft_common::Envelope;

use crate::connection::Bus;
use crate::error::BusError;

/// A confirm-mode channel that reopens itself after a connection loss.
/// Clone it freely; clones share the channel.
#[derive(Debug, Clone)]
pub struct Publisher {
    bus: Bus,
    channel: Arc<Mutex<Option<Channel>>>,
}

/// One message to publish.
struct Outgoing<'a> {
    exchange: &'a str,
    routing_key: &'a str,
    body: &'a [u8],
    properties: BasicProperties,
    /// Whether the broker must return it when no queue takes it.
    mandatory: bool,
}

/// The header that carries when a message was handed to the broker, in
/// microseconds since the Unix epoch: consumers measure its transit with
/// it (`weft_bus_transit_seconds`). A message published again (a relay
/// after a lost confirm) carries its new time.
pub(crate) const PUBLISHED_AT_HEADER: &str = "x-weft-published-at";

/// Headers with [`PUBLISHED_AT_HEADER`] set to now.
fn published_now() -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(
        PUBLISHED_AT_HEADER.into(),
        AMQPValue::LongLongInt(chrono::Utc::now().timestamp_micros()),
    );
    headers
}

fn properties(message_id: Option<String>, headers: Option<FieldTable>) -> BasicProperties {
    let mut p = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into());
    if let Some(id) = message_id {
        p = p.with_message_id(id.into());
    }
    if let Some(h) = headers {
        p = p.with_headers(h);
    }
    p
}

impl Bus {
    /// A publisher on this bus.
    ///
    /// # Errors
    /// If no channel can be opened.
    pub async fn publisher(&self) -> Result<Publisher, BusError> {
        let publisher = Publisher {
            bus: self.clone(),
            channel: Arc::new(Mutex::new(None)),
        };
        publisher.channel().await?;
        Ok(publisher)
    }
}

impl Publisher {
    async fn channel(&self) -> Result<Channel, BusError> {
        let mut slot = self.channel.lock().await;
        if let Some(channel) = slot.as_ref()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        let channel = self.bus.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(BusError::amqp("enabling publisher confirms"))?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    async fn forget_channel(&self) {
        *self.channel.lock().await = None;
    }

    /// Publishes all messages, then awaits all confirms. One result each.
    async fn send(&self, messages: Vec<Outgoing<'_>>) -> Vec<Result<(), BusError>> {
        let channel = match self.channel().await {
            Ok(c) => c,
            Err(e) => {
                let text = e.to_string();
                return messages
                    .iter()
                    .map(|m| {
                        Err(BusError::Setup(format!(
                            "cannot publish to `{}`: {text}",
                            m.exchange
                        )))
                    })
                    .collect();
            }
        };
        let mut pending = Vec::with_capacity(messages.len());
        for m in &messages {
            let options = BasicPublishOptions {
                mandatory: m.mandatory,
                ..BasicPublishOptions::default()
            };
            let sent = channel
                .basic_publish(
                    m.exchange.into(),
                    m.routing_key.into(),
                    options,
                    m.body,
                    m.properties.clone(),
                )
                .await;
            pending.push(sent);
        }
        let mut results = Vec::with_capacity(messages.len());
        let mut broken = false;
        for (m, sent) in messages.iter().zip(pending) {
            let confirmed = match sent {
                Ok(confirm) => confirm.await,
                Err(e) => Err(e),
            };
            results.push(match confirmed {
                Ok(Confirmation::Ack(None)) => Ok(()),
                Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_))) => {
                    Err(BusError::Unroutable {
                        exchange: m.exchange.to_owned(),
                        routing_key: m.routing_key.to_owned(),
                    })
                }
                Ok(Confirmation::Nack(None)) => Err(BusError::Nacked {
                    exchange: m.exchange.to_owned(),
                }),
                Ok(Confirmation::NotRequested) => Ok(()),
                Err(source) => {
                    broken = true;
                    Err(BusError::Amqp {
                        context: format!("publishing to `{}`", m.exchange),
                        source,
                    })
                }
            });
        }
        if broken {
            self.forget_channel().await;
        }
        results
    }

    /// Publishes one envelope (persistent; mandatory unless it is a message
    /// nobody has to receive, see `Message::must_be_routed`) and waits for
    /// the broker's confirm.
    ///
    /// # Errors
    /// [`BusError::Unroutable`] if no queue is bound for it; a transient
    /// error if the connection failed (the message may or may not have
    /// reached the broker: publish again).
    pub async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        self.publish_many(std::slice::from_ref(envelope))
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Publishes every envelope, then awaits every confirm (pipelined).
    /// One result per envelope, in order.
    pub async fn publish_many(&self, envelopes: &[Envelope]) -> Vec<Result<(), BusError>> {
        let bodies: Vec<(String, Vec<u8>, String)> = envelopes
            .iter()
            .map(|e| {
                let (exchange, key) = e.route();
                (exchange.to_owned(), e.to_bytes(), key)
            })
            .collect();
        let messages = bodies
            .iter()
            .zip(envelopes)
            .map(|((exchange, body, key), e)| Outgoing {
                exchange,
                routing_key: key,
                body,
                properties: properties(Some(e.id.to_string()), Some(published_now())),
                mandatory: e.message.must_be_routed(),
            })
            .collect();
        self.send(messages).await
    }

    /// Publishes raw bytes (confirmed, mandatory); for tools and tests.
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    pub async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
    ) -> Result<(), BusError> {
        let m = Outgoing {
            exchange,
            routing_key,
            body,
            properties: properties(None, None),
            mandatory: true,
        };
        self.send(vec![m]).await.pop().unwrap_or(Ok(()))
    }

    /// Publishes a message that could not be handled to `weft.dead`, with
    /// the reason and where it came from in its headers.
    pub(crate) async fn dead_letter(
        &self,
        body: &[u8],
        reason: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), BusError> {
        let mut headers = FieldTable::default();
        headers.insert("x-weft-reason".into(), AMQPValue::LongString(reason.into()));
        headers.insert(
            "x-weft-exchange".into(),
            AMQPValue::LongString(exchange.into()),
        );
        headers.insert(
            "x-weft-routing-key".into(),
            AMQPValue::LongString(routing_key.into()),
        );
        let dead = weft_common::message::topology::DEAD_EXCHANGE;
        let m = Outgoing {
            exchange: dead,
            routing_key: "",
            body,
            properties: properties(None, Some(headers)),
            mandatory: true,
        };
        self.send(vec![m]).await.pop().unwrap_or(Ok(()))
    }
}
