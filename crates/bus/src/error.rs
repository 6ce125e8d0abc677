//! The bus's error type.

/// What can go wrong talking to RabbitMQ.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Connecting, opening a channel or an AMQP operation failed.
    #[error("RabbitMQ error while {context}")]
    Amqp {
        /// What the bus was doing.
        context: String,
        /// The client's error.
        #[source]
        source: lapin::Error,
    },
    /// The broker could not route a mandatory message to any queue.
    #[error("no queue is bound for routing key `{routing_key}` on exchange `{exchange}`")]
    Unroutable {
        /// The exchange published to.
        exchange: String,
        /// The routing key.
        routing_key: String,
    },
    /// The broker refused the message (negative confirm).
    #[error("the broker refused a message to `{exchange}` (negative confirm)")]
    Nacked {
        /// The exchange published to.
        exchange: String,
    },
    /// Shutdown was requested while waiting.
    #[error("shutting down")]
    ShuttingDown,
    /// A test-support command failed.
    #[error("{0}")]
    Setup(String),
}

impl BusError {
    /// Whether retrying later may succeed (a dropped connection, a broker
    /// restart, a refused message).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Amqp { .. } | Self::Nacked { .. })
    }

    pub(crate) fn amqp(context: impl Into<String>) -> impl FnOnce(lapin::Error) -> Self {
        let context = context.into();
        move |source| Self::Amqp { context, source }
    }
}
