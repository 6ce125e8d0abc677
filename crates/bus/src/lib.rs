//! # weft-bus — Weft's RabbitMQ layer
//!
//! 1. [`Bus::connect`] — a supervised connection that replaces itself with
//!    capped backoff whenever it is lost.
//! 2. [`Bus::declare_topology`] — the exchanges and queues of design §4,
//!    durable ones quorum queues unless told otherwise ([`QueueType`]).
//! 3. [`Publisher`] — persistent, mandatory, publisher-confirmed messages;
//!    [`Publisher::publish_many`] pipelines the confirms.
//! 4. [`consume`] — the consumer loop: ack only after the handler's effect
//!    is durable, dead-letter what cannot be decoded, resubscribe after a
//!    connection loss, finish in-flight work on shutdown.

mod connection;
mod consumer;
mod error;
mod inspect;
mod publisher;
#[cfg(feature = "testing")]
pub mod testing;
mod topology;

pub use connection::{Bus, BusConfig, Url, parse_urls};
pub use consumer::{ConsumerConfig, Delivery, Outcome, QueueKind, consume, seconds_between};
pub use error::BusError;
pub use inspect::QueueStats;
pub use publisher::Publisher;
pub use topology::{DELIVERY_LIMIT, QueueType};
