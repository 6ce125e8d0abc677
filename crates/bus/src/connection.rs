//! The supervised connection: one AMQP connection per [`Bus`], replaced
//! with capped exponential backoff whenever it is lost.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use weft_common::redact_url;

use crate::error::{BusError, connect_cause};

/// How to reach RabbitMQ.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// `amqp://user:password@host:port/vhost`.
    pub url: String,
    /// Shown in the management UI and `rabbitmqctl list_connections`.
    pub connection_name: String,
    /// First delay before reconnecting.
    pub reconnect_min: Duration,
    /// Longest delay between reconnection attempts.
    pub reconnect_max: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            connection_name: "weft".to_owned(),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
        }
    }
}

/// A cheap handle to a supervised connection; clone it freely.
#[derive(Debug, Clone)]
pub struct Bus {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: BusConfig,
    pub(crate) shutdown: CancellationToken,
    connection: Mutex<Option<Arc<Connection>>>,
}

/// One attempt to connect. A URL that does not parse is refused before
/// any attempt (retrying cannot fix it); a failed attempt is named with
/// the URL (password hidden) and its cause in one line.
async fn open(config: &BusConfig) -> Result<Connection, BusError> {
    let url = redact_url(&config.url);
    let uri = config
        .url
        .parse::<AMQPUri>()
        .map_err(|detail| BusError::BadUrl {
            url: url.clone(),
            detail,
        })?;
    let properties =
        ConnectionProperties::default().with_connection_name(config.connection_name.clone().into());
    Connection::connect_uri(uri, properties)
        .await
        .map_err(|e| BusError::Connect {
            url,
            cause: connect_cause(&e),
        })
}

impl Bus {
    /// Connects, retrying with capped backoff (each failure logged) until
    /// connected or `shutdown` fires. Afterwards the connection is replaced
    /// transparently whenever it is lost: a broker restart pauses work, it
    /// does not end it.
    ///
    /// # Errors
    /// [`BusError::ShuttingDown`] if `shutdown` fired first.
    pub async fn connect(config: BusConfig, shutdown: CancellationToken) -> Result<Self, BusError> {
        let bus = Self::with(config, shutdown, None);
        bus.connection().await?;
        Ok(bus)
    }

    fn with(
        config: BusConfig,
        shutdown: CancellationToken,
        connection: Option<Connection>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                shutdown,
                connection: Mutex::new(connection.map(Arc::new)),
            }),
        }
    }

    /// Connects once, without retrying: for short-lived clients (the CLI's
    /// submit) that have another way to reach the executors while RabbitMQ
    /// is away. Once connected, it reconnects like any other bus.
    ///
    /// # Errors
    /// If RabbitMQ cannot be reached or refuses the connection.
    pub async fn try_connect(config: BusConfig) -> Result<Self, BusError> {
        let conn = open(&config).await?;
        Ok(Self::with(config, CancellationToken::new(), Some(conn)))
    }

    /// Closes the connection politely (the broker logs no lost client).
    pub async fn close(&self) {
        let conn = self.inner.connection.lock().await.take();
        if let Some(conn) = conn
            && let Err(e) = conn.close(200, "bye".into()).await
        {
            tracing::debug!(error = %e, "closing the RabbitMQ connection");
        }
    }

    /// The current connection, reconnecting first if it was lost.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>, BusError> {
        let mut slot = self.inner.connection.lock().await;
        if let Some(conn) = slot.as_ref()
            && conn.status().connected()
        {
            return Ok(Arc::clone(conn));
        }
        let config = &self.inner.config;
        let url = redact_url(&config.url);
        let mut attempt = 0u32;
        let connecting = (|| {
            attempt += 1;
            open(config)
        })
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(config.reconnect_min)
                .with_max_delay(config.reconnect_max)
                .without_max_times(),
        )
        // A bad URL stays bad: only a failed attempt is retried.
        .when(|e| !matches!(e, BusError::BadUrl { .. }))
        .notify(|e, retry_in| {
            tracing::warn!(retry_in = %format_args!("{:.1}s", retry_in.as_secs_f64()), "{e}; retrying");
        });
        let conn = tokio::select! {
            () = self.inner.shutdown.cancelled() => return Err(BusError::ShuttingDown),
            conn = connecting => conn?,
        };
        if attempt > 1 {
            tracing::info!(%url, attempt, "connected to RabbitMQ again");
        }
        let conn = Arc::new(conn);
        *slot = Some(Arc::clone(&conn));
        Ok(conn)
    }

    /// A new channel on the current connection.
    pub(crate) async fn channel(&self) -> Result<Channel, BusError> {
        let conn = self.connection().await?;
        conn.create_channel()
            .await
            .map_err(BusError::amqp("opening a channel"))
    }

    /// The backoff to wait after the `failures`-th consecutive failure.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let config = &self.inner.config;
        let factor = 1u32 << failures.saturating_sub(1).min(10);
        (config.reconnect_min * factor).min(config.reconnect_max)
    }
}
