//! The supervised connection: one AMQP connection per [`Bus`], replaced
//! with capped exponential backoff whenever it is lost.

use std::sync::Arc;
use std::time::Duration;

use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::error::BusError;

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

fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => url.to_owned(),
    }
}

/// One attempt to connect.
async fn open(config: &BusConfig) -> lapin::Result<Connection> {
    let properties =
        ConnectionProperties::default().with_connection_name(config.connection_name.clone().into());
    Connection::connect(&config.url, properties).await
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
        let conn = open(&config).await.map_err(BusError::amqp(format!(
            "connecting to {}",
            redact(&config.url)
        )))?;
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
        let mut delay = config.reconnect_min;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let connecting = open(config);
            let result = tokio::select! {
                () = self.inner.shutdown.cancelled() => return Err(BusError::ShuttingDown),
                r = connecting => r,
            };
            match result {
                Ok(conn) => {
                    if attempt > 1 {
                        tracing::info!(url = %redact(&config.url), attempt, "connected to RabbitMQ again");
                    }
                    let conn = Arc::new(conn);
                    *slot = Some(Arc::clone(&conn));
                    return Ok(conn);
                }
                Err(e) => {
                    tracing::warn!(url = %redact(&config.url), attempt, retry_in = ?delay, error = %e, "RabbitMQ unavailable");
                    tokio::select! {
                        () = self.inner.shutdown.cancelled() => return Err(BusError::ShuttingDown),
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(config.reconnect_max);
                }
            }
        }
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
