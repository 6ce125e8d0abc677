//! The supervised connection: one AMQP connection per [`Bus`], replaced
//! with capped exponential backoff whenever it is lost.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use lapin::tcp::OwnedTLSConfig;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use rustls_pki_types::pem::PemObject as _;
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
    /// A PEM file of CA certificates trusted for `amqps://` besides the
    /// system's roots (a private CA); `None` trusts the system's only.
    pub ca_file: Option<PathBuf>,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            connection_name: "weft".to_owned(),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            ca_file: None,
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

/// The TLS settings of an `amqps://` connection: the system's roots, plus
/// the certificates of `ca_file`. The file is read and parsed here, at
/// each attempt, so a missing or garbled file is named (the TLS layer
/// would skip what it cannot parse, and then say only that the broker's
/// certificate has an unknown issuer).
fn tls_config(ca_file: Option<&Path>) -> Result<OwnedTLSConfig, BusError> {
    let Some(path) = ca_file else {
        return Ok(OwnedTLSConfig::default());
    };
    let bad = |detail: String| BusError::BadCaFile {
        path: path.to_owned(),
        detail,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let certificates = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certificates.is_empty() {
        return Err(bad(
            "no certificate in it (expected `-----BEGIN CERTIFICATE-----` blocks)".to_owned(),
        ));
    }
    Ok(OwnedTLSConfig {
        identity: None,
        cert_chain: Some(pem),
    })
}

/// One attempt to connect. A URL that does not parse, or a CA file that
/// cannot be read, is refused before any attempt (retrying cannot fix
/// it); a failed attempt is named with the URL (password hidden) and its
/// cause in one line.
async fn open(config: &BusConfig) -> Result<Connection, BusError> {
    let url = redact_url(&config.url);
    let uri = config
        .url
        .parse::<AMQPUri>()
        .map_err(|detail| BusError::BadUrl {
            url: url.clone(),
            detail,
        })?;
    let tls = tls_config(config.ca_file.as_deref())?;
    let properties =
        ConnectionProperties::default().with_connection_name(config.connection_name.clone().into());
    let runtime =
        lapin::runtime::default_runtime().map_err(BusError::amqp("starting the client"))?;
    Connection::connect_uri_with_config(uri, properties, tls, runtime)
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
        // A bad URL or CA file stays bad: only a failed attempt is retried.
        .when(|e| !matches!(e, BusError::BadUrl { .. } | BusError::BadCaFile { .. }))
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
