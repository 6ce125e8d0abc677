//! The executor's error type.

use uuid::Uuid;
use weft_store::StoreError;

/// What can stop the executor from applying a message.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// PostgreSQL failed; see [`EngineError::is_transient`].
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored definition no longer parses (e.g. written by a newer version).
    #[error("workflow definition {id} is not valid for this executor: {detail}")]
    InvalidDefinition {
        /// The definition.
        id: Uuid,
        /// The diagnostics.
        detail: String,
    },
    /// RabbitMQ failed.
    #[error(transparent)]
    Bus(#[from] weft_bus::BusError),
    /// The message refers to something the database does not hold.
    #[error("{0}")]
    Inconsistent(String),
    /// The executor is stopping; the message goes back to the queue.
    #[error("the executor is shutting down")]
    ShuttingDown,
}

impl EngineError {
    /// Whether applying the same message again later may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(e) => e.is_transient(),
            Self::Bus(e) => e.is_transient(),
            Self::ShuttingDown => true,
            Self::InvalidDefinition { .. } | Self::Inconsistent(_) => false,
        }
    }
}

/// Wraps a raw sqlx error (from `begin`/`commit`/`acquire`) with context.
pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> EngineError {
    move |source| EngineError::Store(StoreError::Database { context, source })
}
