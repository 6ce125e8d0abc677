//! Design §4's exchanges, queues and bindings, declared idempotently.
//!
//! Durable queues are quorum queues unless the bus is told otherwise
//! ([`QueueType`]): replicated over a cluster's nodes, they survive the
//! loss of a minority of them. Exclusive queues (a worker's private and
//! control queues, `weft watch`'s) are always classic: they live and die
//! with one connection, and quorum queues cannot be exclusive.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use weft_common::message::topology::{
    CONTROL_EXCHANGE, DEAD_EXCHANGE, DEAD_QUEUE, EVENTS_EXCHANGE, EXECUTOR_QUEUE, TASKS_EXCHANGE,
    task_queue,
};

use crate::connection::Bus;
use crate::error::BusError;

/// Routing keys of `weft.events` that executors consume.
const EXECUTOR_BINDINGS: &[&str] = &["execution.*", "worker.*", "workflow.submitted"];

/// How often a quorum queue delivers a message that is never acked (the
/// consumer's connection died with it, or it was handed back) before it
/// dead-letters it to `weft.dead` (`x-delivery-limit`): a message that
/// kills every consumer it reaches stops there instead of looping. Weft
/// hands a message back only on shutdown, so a healthy message comes
/// nowhere near it. Classic queues count nothing (see ADR 0017).
pub const DELIVERY_LIMIT: i64 = 20;

/// The type of the durable queues a bus declares (`--queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Replicated (Raft) over the cluster's nodes; poison messages are
    /// dead-lettered after [`DELIVERY_LIMIT`] deliveries.
    #[default]
    Quorum,
    /// One node's queue, as Weft declared them before quorum queues (no
    /// `x-queue-type` argument, so existing classic queues match).
    Classic,
}

impl QueueType {
    /// Its name, as `--queue-type` and RabbitMQ spell it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Quorum => "quorum",
            Self::Classic => "classic",
        }
    }

    /// The arguments of a durable queue of this type; `dead_lettered`
    /// adds the dead-letter exchange (and, for quorum queues, the
    /// delivery limit that sends poison messages there).
    #[must_use]
    pub fn arguments(self, dead_lettered: bool) -> FieldTable {
        let mut args = FieldTable::default();
        if dead_lettered {
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(DEAD_EXCHANGE.into()),
            );
        }
        if self == Self::Quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString(self.as_str().into()),
            );
            if dead_lettered {
                args.insert(
                    "x-delivery-limit".into(),
                    AMQPValue::LongLongInt(DELIVERY_LIMIT),
                );
            }
        }
        args
    }
}

/// The arguments of an exclusive queue: classic, said explicitly so that a
/// vhost whose default queue type is quorum does not make it one (quorum
/// queues cannot be exclusive).
pub(crate) fn exclusive_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(QueueType::Classic.as_str().into()),
    );
    args
}

impl std::fmt::Display for QueueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for QueueType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "quorum" => Ok(Self::Quorum),
            "classic" => Ok(Self::Classic),
            _ => Err(format!(
                "unknown queue type `{s}`: expected `quorum` or `classic`"
            )),
        }
    }
}

/// The type an existing queue has, from the broker's refusal of a
/// declaration with another one: "PRECONDITION_FAILED - inequivalent arg
/// 'x-queue-type' for queue 'q' in vhost '/': received the value 'quorum'
/// of type 'longstr' but current is none" (a queue declared without the
/// argument is classic). `None` for any other refusal.
fn existing_type(error: &lapin::Error) -> Option<String> {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    let lapin::ErrorKind::ProtocolError(e) = error.kind() else {
        return None;
    };
    if !matches!(
        e.kind(),
        AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
    ) {
        return None;
    }
    existing_type_in(e.get_message().as_str())
}

fn existing_type_in(message: &str) -> Option<String> {
    if !message.contains("inequivalent arg 'x-queue-type'") {
        return None;
    }
    let current = message.rsplit_once("but current is ")?.1;
    Some(match current.split('\'').nth(1) {
        Some(value) if current.starts_with("the value") => value.to_owned(),
        _ => QueueType::Classic.as_str().to_owned(),
    })
}

async fn durable_queue(
    channel: &Channel,
    name: &str,
    queue_type: QueueType,
    dead_lettered: bool,
) -> Result<(), BusError> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(name.into(), options, queue_type.arguments(dead_lettered))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => match existing_type(&e) {
            Some(existing) => Err(BusError::QueueTypeMismatch {
                queue: name.to_owned(),
                existing,
                wanted: queue_type.as_str().to_owned(),
            }),
            None => Err(BusError::Amqp {
                context: format!("declaring queue `{name}`"),
                source: e,
            }),
        },
    }
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), BusError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(BusError::amqp(format!(
            "binding `{queue}` to `{exchange}` with `{key}`"
        )))
}

impl Bus {
    /// Idempotently declares the exchanges (`weft.tasks` direct,
    /// `weft.events` topic, `weft.control` fanout, `weft.dead` fanout), the
    /// durable `weft.dead` and `weft.executor` queues, and one durable
    /// `weft.tasks.<pool>` queue per pool, all of the bus's
    /// [`QueueType`]. Durable queues but `weft.dead` dead-letter to
    /// `weft.dead` (quorum queues also after [`DELIVERY_LIMIT`]
    /// deliveries).
    ///
    /// # Errors
    /// [`BusError::QueueTypeMismatch`] if a queue exists with the other
    /// type; another error if the broker refuses a declaration (e.g. an
    /// existing queue with other arguments).
    pub async fn declare_topology(&self, pools: &[String]) -> Result<(), BusError> {
        let channel = self.channel().await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for (name, kind) in [
            (TASKS_EXCHANGE, ExchangeKind::Direct),
            (EVENTS_EXCHANGE, ExchangeKind::Topic),
            (CONTROL_EXCHANGE, ExchangeKind::Fanout),
            (DEAD_EXCHANGE, ExchangeKind::Fanout),
        ] {
            channel
                .exchange_declare(name.into(), kind, durable, FieldTable::default())
                .await
                .map_err(BusError::amqp(format!("declaring exchange `{name}`")))?;
        }
        let queue_type = self.inner.config.queue_type;
        durable_queue(&channel, DEAD_QUEUE, queue_type, false).await?;
        bind(&channel, DEAD_QUEUE, DEAD_EXCHANGE, "").await?;
        durable_queue(&channel, EXECUTOR_QUEUE, queue_type, true).await?;
        for key in EXECUTOR_BINDINGS {
            bind(&channel, EXECUTOR_QUEUE, EVENTS_EXCHANGE, key).await?;
        }
        for pool in pools {
            let queue = task_queue(pool);
            durable_queue(&channel, &queue, queue_type, true).await?;
            bind(&channel, &queue, TASKS_EXCHANGE, pool).await?;
        }
        let _ = channel.close(200, "topology declared".into()).await;
        Ok(())
    }
}

impl Bus {
    /// Declares an exclusive, auto-delete queue named `queue` on this
    /// connection and binds it to `exchange` with `routing_key` — before
    /// anyone is told it exists (a worker's private queue is declared before
    /// its first heartbeat advertises it). [`consume`](crate::consume) with
    /// [`QueueKind::Exclusive`](crate::QueueKind::Exclusive) and the same
    /// name declares it again, idempotently, and after every reconnect.
    ///
    /// # Errors
    /// If the broker refuses the declaration or the binding.
    pub async fn declare_exclusive(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), BusError> {
        let channel = self.channel().await?;
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.into(), options, exclusive_arguments())
            .await
            .map_err(BusError::amqp(format!("declaring queue `{queue}`")))?;
        bind(&channel, queue, exchange, routing_key).await?;
        let _ = channel.close(200, "queue declared".into()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_existing_type_is_read_from_the_refusal() {
        let none = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'weft.executor' \
                    in vhost '/': received the value 'quorum' of type 'longstr' but current is none";
        assert_eq!(existing_type_in(none).as_deref(), Some("classic"));
        let quorum = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'weft.executor' \
                      in vhost '/': received the value 'classic' of type 'longstr' but current is the value 'quorum' of type 'longstr'";
        assert_eq!(existing_type_in(quorum).as_deref(), Some("quorum"));
        let other = "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'q'";
        assert_eq!(existing_type_in(other), None);
    }

    #[test]
    fn queue_types_parse_and_say_what_is_expected() {
        assert_eq!("quorum".parse(), Ok(QueueType::Quorum));
        assert_eq!(" Classic ".parse(), Ok(QueueType::Classic));
        assert_eq!(
            "stream".parse::<QueueType>(),
            Err("unknown queue type `stream`: expected `quorum` or `classic`".to_owned())
        );
        assert_eq!(QueueType::default(), QueueType::Quorum);
    }

    #[test]
    fn quorum_queues_carry_their_type_and_delivery_limit_and_classic_ones_neither() {
        let quorum = QueueType::Quorum.arguments(true);
        let quorum = quorum.inner();
        assert_eq!(
            quorum.get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(
            quorum.get("x-delivery-limit"),
            Some(&AMQPValue::LongLongInt(DELIVERY_LIMIT))
        );
        let classic = QueueType::Classic.arguments(true);
        let classic = classic.inner();
        assert!(classic.contains_key("x-dead-letter-exchange"));
        assert!(!classic.contains_key("x-queue-type") && !classic.contains_key("x-delivery-limit"));
        assert!(
            !QueueType::Quorum
                .arguments(false)
                .inner()
                .contains_key("x-delivery-limit")
        );
    }
}
