//! The bus's error type.

/// What can go wrong talking to RabbitMQ.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// RabbitMQ could not be reached, or refused the connection: one line
    /// with the URL (password hidden) and the cause.
    #[error("cannot connect to RabbitMQ at {url}: {cause}")]
    Connect {
        /// The URL, without password.
        url: String,
        /// Why, as a user can act on it.
        cause: String,
    },
    /// Several URLs were given and none of them could be reached: each
    /// URL (password hidden) with its cause.
    #[error("cannot connect to RabbitMQ at any of its {} URLs: {}", .failures.len(), each_cause(.failures))]
    ConnectAll {
        /// Each URL, without password, and why it failed.
        failures: Vec<(String, String)>,
    },
    /// A durable queue exists with another type than this process
    /// declares: RabbitMQ refuses to change a queue's type.
    #[error(
        "queue `{queue}` already exists as a {existing} queue, but this process declares it as a {wanted} queue \
         (--queue-type / WEFT_QUEUE_TYPE / `queue_type` in the config file); RabbitMQ cannot change a queue's type. \
         Either run every executor and worker with `--queue-type {existing}`, or migrate the queue: stop the daemons, \
         let it drain, delete it (`rabbitmqctl delete_queue {queue}`) and start them with `--queue-type {wanted}` \
         (docs/operations.md, \"RabbitMQ cluster and queue types\")"
    )]
    QueueTypeMismatch {
        /// The queue.
        queue: String,
        /// The type it has.
        existing: String,
        /// The type this process declares.
        wanted: String,
    },
    /// The RabbitMQ URL does not parse.
    #[error("the RabbitMQ URL `{url}` is not valid: {detail}")]
    BadUrl {
        /// The URL as given, without password.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The CA file given for `amqps://` cannot be read or holds no
    /// certificate.
    #[error("the RabbitMQ CA file {} cannot be used: {detail}", path.display())]
    BadCaFile {
        /// The file, as given.
        path: std::path::PathBuf,
        /// What is wrong with it.
        detail: String,
    },
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
        matches!(
            self,
            Self::Amqp { .. }
                | Self::Nacked { .. }
                | Self::Connect { .. }
                | Self::ConnectAll { .. }
        ) && !self.is_refused_message()
    }

    /// Whether the broker refused the published message itself, for good:
    /// larger than its `max_message_size` (RabbitMQ closes the channel with
    /// 406 PRECONDITION_FAILED) or its content too large (311). Publishing
    /// the same message again fails the same way, so a publisher must not
    /// retry it; a dropped connection or a negative confirm may pass later.
    #[must_use]
    pub fn is_refused_message(&self) -> bool {
        use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
        let Self::Amqp { source, .. } = self else {
            return false;
        };
        matches!(
            source.kind(),
            lapin::ErrorKind::ProtocolError(e) if matches!(
                e.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED | AMQPSoftError::CONTENTTOOLARGE)
            )
        )
    }

    pub(crate) fn amqp(context: impl Into<String>) -> impl FnOnce(lapin::Error) -> Self {
        let context = context.into();
        move |source| Self::Amqp { context, source }
    }
}

/// `url: cause; url: cause`.
fn each_cause(failures: &[(String, String)]) -> String {
    failures
        .iter()
        .map(|(url, cause)| format!("{url}: {cause}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a connection attempt failed, in words a user can act on: the
/// broker's own reason for a refused login or an unknown vhost, without
/// lapin's wrapping ("protocol error: AMQP soft error: …").
pub(crate) fn connect_cause(error: &lapin::Error) -> String {
    use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
    match error.kind() {
        lapin::ErrorKind::IOError(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused".to_owned()
        }
        lapin::ErrorKind::IOError(e) => weft_common::tls_cause(&e.to_string(), TRUST),
        lapin::ErrorKind::ProtocolError(e) => {
            let message = e.get_message().as_str();
            // "ACCESS_REFUSED - Login was refused …": the part after the code.
            let reason = message.split_once(" - ").map_or(message, |(_, r)| r);
            match e.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
                | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
                    if reason.contains("vhost") =>
                {
                    reason.to_owned()
                }
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => {
                    "authentication failed: the broker refused the login (wrong user name or password?)"
                        .to_owned()
                }
                _ => reason.to_owned(),
            }
        }
        _ => weft_common::tls_cause(&error.to_string(), TRUST),
    }
}

/// How to trust a private CA for RabbitMQ.
const TRUST: &str =
    "give its certificate with `--amqp-ca-file FILE` (`WEFT_AMQP_CA_FILE`, `amqp_ca_file`)";

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPHardError, AMQPSoftError};

    fn closed_with(kind: AMQPErrorKind) -> BusError {
        let source = lapin::ErrorKind::ProtocolError(AMQPError::new(kind, "closed".into())).into();
        BusError::Amqp {
            context: "publishing to `weft.events`".into(),
            source,
        }
    }

    #[test]
    fn a_refused_message_is_not_transient_and_a_lost_connection_is() {
        let too_big = closed_with(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED));
        assert!(too_big.is_refused_message() && !too_big.is_transient());
        let lost = closed_with(AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED));
        assert!(!lost.is_refused_message() && lost.is_transient());
        let nacked = BusError::Nacked {
            exchange: "weft.events".into(),
        };
        assert!(!nacked.is_refused_message() && nacked.is_transient());
    }
}
