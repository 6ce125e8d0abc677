//! Design §4's exchanges, queues and bindings, declared idempotently.

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

fn dead_lettered() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(DEAD_EXCHANGE.into()),
    );
    args
}

async fn durable_queue(channel: &Channel, name: &str, args: FieldTable) -> Result<(), BusError> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), options, args)
        .await
        .map_err(BusError::amqp(format!("declaring queue `{name}`")))?;
    Ok(())
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
    /// `weft.tasks.<pool>` queue per pool. Durable queues dead-letter to
    /// `weft.dead`.
    ///
    /// # Errors
    /// If the broker refuses a declaration (e.g. an existing queue with
    /// other arguments).
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
        durable_queue(&channel, DEAD_QUEUE, FieldTable::default()).await?;
        bind(&channel, DEAD_QUEUE, DEAD_EXCHANGE, "").await?;
        durable_queue(&channel, EXECUTOR_QUEUE, dead_lettered()).await?;
        for key in EXECUTOR_BINDINGS {
            bind(&channel, EXECUTOR_QUEUE, EVENTS_EXCHANGE, key).await?;
        }
        for pool in pools {
            let queue = task_queue(pool);
            durable_queue(&channel, &queue, dead_lettered()).await?;
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
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .map_err(BusError::amqp(format!("declaring queue `{queue}`")))?;
        bind(&channel, queue, exchange, routing_key).await?;
        let _ = channel.close(200, "queue declared".into()).await;
        Ok(())
    }
}
