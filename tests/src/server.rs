//! `weft server` in process, for the API's tests: [`TestServer::start`]
//! serves on a free loopback port of the calling test's runtime until
//! dropped; [`token`] makes a bearer token of a role, as `weft token
//! create` does.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use weft_common::auth::Role;
use weft_server::ServerConfig;

/// A server running on the caller's runtime; stops when dropped.
#[derive(Debug)]
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
}

impl TestServer {
    /// Serves `pool` with the defaults (tokens required).
    ///
    /// # Errors
    /// If it cannot bind.
    pub async fn start(pool: &PgPool) -> anyhow::Result<Self> {
        Self::with(pool, |_| {}).await
    }

    /// Serves `pool` with a configuration `tune` adjusts.
    ///
    /// # Errors
    /// If it cannot bind.
    pub async fn with(pool: &PgPool, tune: impl FnOnce(&mut ServerConfig)) -> anyhow::Result<Self> {
        let mut config = ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
        tune(&mut config);
        let shutdown = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stop = shutdown.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            if let Err(e) = weft_server::serve(pool, config, stop, Some(tx)).await {
                tracing::error!(error = %e, "test server stopped");
            }
        });
        let addr = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .context("the server did not start within 10 s")?
            .context("the server stopped before listening")?;
        Ok(Self {
            base: format!("http://{addr}"),
            addr,
            shutdown,
        })
    }

    /// The URL of `path` (which starts with `/`).
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A new token of `role` (named after it), expiring at `expires_at`;
/// returns its secret and id.
///
/// # Errors
/// A database error.
pub async fn token_expiring(
    pool: &PgPool,
    role: Role,
    expires_at: Option<DateTime<Utc>>,
) -> anyhow::Result<(String, uuid::Uuid)> {
    let secret = weft_common::auth::generate_token();
    let mut conn = pool.acquire().await?;
    let info = weft_store::tokens::create(
        &mut conn,
        &secret,
        &format!("test-{role}"),
        role,
        expires_at,
    )
    .await?;
    Ok((secret, info.id))
}

/// A new token of `role`; returns its secret.
///
/// # Errors
/// A database error.
pub async fn token(pool: &PgPool, role: Role) -> anyhow::Result<String> {
    Ok(token_expiring(pool, role, None).await?.0)
}

/// One server-sent event: its `event:` name and its `data:` (JSON, or a
/// string when it is not JSON).
pub type Event = (String, serde_json::Value);

/// Reads a server-sent event stream until its `end` event, or until the
/// server closes it; returns the events (keep-alive comments left out).
///
/// # Errors
/// No `end` within `limit` (naming the events seen), or the stream failed.
pub async fn read_events(
    mut response: reqwest::Response,
    limit: Duration,
) -> anyhow::Result<Vec<Event>> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let Ok(chunk) = tokio::time::timeout_at(deadline, response.chunk()).await else {
            anyhow::bail!("no `end` within {limit:?}; got {events:?}");
        };
        let Some(chunk) = chunk.context("reading the stream")? else {
            return Ok(events);
        };
        buffer.push_str(std::str::from_utf8(&chunk).context("the stream is not UTF-8")?);
        while let Some(at) = buffer.find("\n\n") {
            let block: String = buffer.drain(..at + 2).collect();
            let mut kind = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(k) = line.strip_prefix("event:") {
                    kind = k.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if kind.is_empty() {
                continue; // a keep-alive comment
            }
            let value = serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data));
            let end = kind == "end";
            events.push((kind, value));
            if end {
                return Ok(events);
            }
        }
    }
}
