//! Looking at a queue without touching its messages.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use crate::connection::Bus;
use crate::error::BusError;

/// What a passive declaration tells about a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages ready to be delivered (not counting unacked ones).
    pub ready: u32,
    /// Consumers subscribed to it.
    pub consumers: u32,
}

impl Bus {
    /// How many messages wait in a queue, ready to be delivered (not
    /// counting those delivered and not yet acked), from a passive
    /// declaration: it creates nothing and changes nothing. `None` when the
    /// queue does not exist. A channel of its own per call, since the
    /// broker closes the channel of a passive declaration that fails.
    ///
    /// # Errors
    /// If RabbitMQ cannot be reached.
    pub async fn queue_ready(&self, queue: &str) -> Result<Option<u32>, BusError> {
        Ok(self.queue_stats(queue).await?.map(|s| s.ready))
    }

    /// [`Bus::queue_ready`] with the queue's consumer count.
    ///
    /// # Errors
    /// If RabbitMQ cannot be reached.
    pub async fn queue_stats(&self, queue: &str) -> Result<Option<QueueStats>, BusError> {
        let channel = self.channel().await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await;
        match declared {
            Ok(q) => {
                let stats = QueueStats {
                    ready: q.message_count(),
                    consumers: q.consumer_count(),
                };
                let _ = channel.close(200, "queue inspected".into()).await;
                Ok(Some(stats))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(BusError::Amqp {
                context: format!("inspecting queue `{queue}`"),
                source: e,
            }),
        }
    }
}

/// Whether the broker answered 404 NOT_FOUND.
fn is_not_found(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(e) if matches!(e.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
    )
}
