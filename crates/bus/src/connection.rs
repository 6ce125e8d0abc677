//! The supervised connection: one AMQP connection per [`Bus`], replaced
//! with capped exponential backoff whenever it is lost. A bus given
//! several URLs (the nodes of a cluster) tries them in turn, starting
//! after the one it lost.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use crate::topology::QueueType;

/// How long one URL may take to accept a connection before the next is
/// tried: a host that drops packets must not hold up the fail-over.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach RabbitMQ.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// `amqp://user:password@host:port/vhost`, or several such URLs
    /// separated by commas (the nodes of one cluster): connecting and
    /// reconnecting try them in turn (see [`parse_urls`]).
    pub url: String,
    /// Shown in the management UI and `rabbitmqctl list_connections`.
    pub connection_name: String,
    /// First delay before reconnecting.
    pub reconnect_min: Duration,
    /// Longest delay between reconnection attempts.
    pub reconnect_max: Duration,
    /// The type of the durable queues this bus declares.
    pub queue_type: QueueType,
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
            queue_type: QueueType::default(),
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
    /// The URLs, parsed once (each with its redacted text).
    urls: Vec<Url>,
    /// Which of `urls` the current (or last) connection went to.
    current: AtomicUsize,
}

/// One of a bus's URLs, parsed.
#[derive(Debug, Clone)]
pub struct Url {
    /// As given, without its password: what logs and errors show.
    shown: String,
    uri: AMQPUri,
}

impl Url {
    /// The URL as given, its password replaced by `***`.
    #[must_use]
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// Splits `urls` at commas and parses each: several URLs name the nodes of
/// one cluster. Blanks around the commas are ignored; an empty entry, or
/// one that does not parse, is refused with its position (a comma inside a
/// password must be written `%2C`). The passwords never appear in errors.
///
/// # Errors
/// [`BusError::BadUrl`] naming the URL that is wrong and why.
pub fn parse_urls(urls: &str) -> Result<Vec<Url>, BusError> {
    let entries: Vec<&str> = urls.split(',').map(str::trim).collect();
    let count = entries.len();
    let position = |i: usize| {
        if count == 1 {
            String::new()
        } else {
            format!(" (URL {} of {count})", i + 1)
        }
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            if entry.is_empty() {
                return Err(BusError::BadUrl {
                    url: redact_url(urls),
                    detail: format!("it is empty{}", position(i)),
                });
            }
            let shown = redact_url(entry);
            let uri = entry
                .parse::<AMQPUri>()
                .map_err(|detail| BusError::BadUrl {
                    url: shown.clone(),
                    detail: format!("{detail}{}", position(i)),
                })?;
            Ok(Url { shown, uri })
        })
        .collect()
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

/// One attempt to connect to one URL, bounded by [`CONNECT_TIMEOUT`]; a
/// failure is named with the URL (password hidden) and its cause.
async fn open_one(
    url: &Url,
    connection_name: &str,
    ca_file: Option<&Path>,
) -> Result<Connection, BusError> {
    let tls = tls_config(ca_file)?;
    let properties =
        ConnectionProperties::default().with_connection_name(connection_name.to_owned().into());
    let runtime =
        lapin::runtime::default_runtime().map_err(BusError::amqp("starting the client"))?;
    let connecting = Connection::connect_uri_with_config(url.uri.clone(), properties, tls, runtime);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(BusError::Connect {
            url: url.shown.clone(),
            cause: connect_cause(&e),
        }),
        Err(_) => Err(BusError::Connect {
            url: url.shown.clone(),
            cause: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        }),
    }
}

/// One round of attempts: each URL once, in turn, from `first`. Returns
/// the connection and which URL it went to. With one URL its error is that
/// URL's; with several, one error names every URL's cause.
async fn open(
    urls: &[Url],
    first: usize,
    connection_name: &str,
    ca_file: Option<&Path>,
) -> Result<(Connection, usize), BusError> {
    let mut failures = Vec::new();
    for step in 0..urls.len() {
        let i = (first + step) % urls.len();
        match open_one(&urls[i], connection_name, ca_file).await {
            Ok(conn) => return Ok((conn, i)),
            Err(e) if urls.len() == 1 => return Err(e),
            // The same file for every node: no other URL can do better.
            Err(e @ BusError::BadCaFile { .. }) => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "trying the next RabbitMQ URL");
                let cause = match e {
                    BusError::Connect { cause, .. } => cause,
                    other => other.to_string(),
                };
                failures.push((urls[i].shown.clone(), cause));
            }
        }
    }
    Err(BusError::ConnectAll { failures })
}

impl Bus {
    /// Connects, retrying with capped backoff (each failure logged) until
    /// connected or `shutdown` fires. Afterwards the connection is replaced
    /// transparently whenever it is lost: a broker restart pauses work, it
    /// does not end it.
    ///
    /// # Errors
    /// [`BusError::ShuttingDown`] if `shutdown` fired first;
    /// [`BusError::BadUrl`] if a URL does not parse (retrying cannot fix
    /// it).
    pub async fn connect(config: BusConfig, shutdown: CancellationToken) -> Result<Self, BusError> {
        let urls = parse_urls(&config.url)?;
        let bus = Self::with(config, urls, shutdown, None);
        bus.connection().await?;
        Ok(bus)
    }

    fn with(
        config: BusConfig,
        urls: Vec<Url>,
        shutdown: CancellationToken,
        connection: Option<(Connection, usize)>,
    ) -> Self {
        let current = connection.as_ref().map_or(0, |(_, i)| *i);
        Self {
            inner: Arc::new(Inner {
                config,
                shutdown,
                connection: Mutex::new(connection.map(|(c, _)| Arc::new(c))),
                urls,
                current: AtomicUsize::new(current),
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
        let urls = parse_urls(&config.url)?;
        let (conn, i) = open(&urls, 0, &config.connection_name, config.ca_file.as_deref()).await?;
        if urls.len() > 1 {
            tracing::info!(url = %urls[i].shown, "connected to RabbitMQ");
        }
        Ok(Self::with(
            config,
            urls,
            CancellationToken::new(),
            Some((conn, i)),
        ))
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

    /// The current connection, reconnecting first if it was lost: from the
    /// URL after the one lost (the first one at the start), each in turn,
    /// with capped backoff between rounds.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>, BusError> {
        let mut slot = self.inner.connection.lock().await;
        let lost = match slot.as_ref() {
            Some(conn) if conn.status().connected() => return Ok(Arc::clone(conn)),
            Some(_) => true,
            None => false,
        };
        let config = &self.inner.config;
        let urls = &self.inner.urls;
        let mut first = self.inner.current.load(Ordering::Relaxed);
        if lost {
            first = (first + 1) % urls.len();
        }
        let mut attempt = 0u32;
        let connecting = (|| {
            attempt += 1;
            open(urls, first, &config.connection_name, config.ca_file.as_deref())
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
        let (conn, i) = tokio::select! {
            () = self.inner.shutdown.cancelled() => return Err(BusError::ShuttingDown),
            conn = connecting => conn?,
        };
        self.inner.current.store(i, Ordering::Relaxed);
        let url = &urls[i].shown;
        if attempt > 1 || lost {
            tracing::info!(%url, attempt, "connected to RabbitMQ again");
        } else if urls.len() > 1 {
            tracing::info!(%url, "connected to RabbitMQ");
        }
        let conn = Arc::new(conn);
        *slot = Some(Arc::clone(&conn));
        Ok(conn)
    }

    /// A new channel on the current connection.
    pub(crate) async fn channel(&self) -> Result<Channel, BusError> {
        Ok(self.channel_and_connection().await?.0)
    }

    /// A new channel, and the connection it is on (whose status tells
    /// when the channel is gone with it).
    pub(crate) async fn channel_and_connection(
        &self,
    ) -> Result<(Channel, Arc<Connection>), BusError> {
        let conn = self.connection().await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(BusError::amqp("opening a channel"))?;
        Ok((channel, conn))
    }

    /// The backoff to wait after the `failures`-th consecutive failure.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let config = &self.inner.config;
        let factor = 1u32 << failures.saturating_sub(1).min(10);
        (config.reconnect_min * factor).min(config.reconnect_max)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_urls;
    use crate::BusError;

    fn shown(urls: &str) -> Vec<String> {
        parse_urls(urls)
            .unwrap()
            .iter()
            .map(|u| u.shown().to_owned())
            .collect()
    }

    #[test]
    fn one_url_is_one_url() {
        assert_eq!(
            shown("amqp://guest:guest@127.0.0.1:5672/%2f"),
            ["amqp://guest:***@127.0.0.1:5672/%2f"]
        );
    }

    #[test]
    fn commas_separate_the_nodes_of_a_cluster() {
        assert_eq!(
            shown("amqp://u:p@a:5672/%2f, amqp://u:p@b:5673/%2f ,amqp://u:p@c/v"),
            [
                "amqp://u:***@a:5672/%2f",
                "amqp://u:***@b:5673/%2f",
                "amqp://u:***@c/v"
            ]
        );
    }

    #[test]
    fn a_bad_or_empty_entry_is_named_without_passwords() {
        let err = parse_urls("amqp://u:secret@a/%2f,,amqp://u:secret@c/%2f").unwrap_err();
        assert!(matches!(err, BusError::BadUrl { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("URL 2 of 3") && text.contains("empty"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
        let err = parse_urls("amqp://u:secret@a/%2f,http://u:secret@b/").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`http://u:***@b/`") && text.contains("URL 2 of 2"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
        let err = parse_urls("amqp://u:secret@a:port/%2f")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("of 1") && !err.contains("secret"), "{err}");
    }

    #[test]
    fn when_every_url_fails_each_cause_is_named() {
        let err = BusError::ConnectAll {
            failures: vec![
                ("amqp://u:***@a/%2f".into(), "connection refused".into()),
                ("amqp://u:***@b/%2f".into(), "no answer within 10s".into()),
            ],
        };
        assert_eq!(
            err.to_string(),
            "cannot connect to RabbitMQ at any of its 2 URLs: amqp://u:***@a/%2f: connection refused; \
             amqp://u:***@b/%2f: no answer within 10s"
        );
        assert!(err.is_transient());
    }
}
