//! # weft-server — `weft server`
//!
//! Weft's HTTP API under `/api/v1` (described by an OpenAPI 3.1 document at
//! `/api/v1/openapi.json`), its bearer tokens and roles, server-sent events
//! of runs, and the web UI at `/`. It reads and writes through
//! `weft_store`'s query layer — the one the CLI uses, so the CLI, the API
//! and the UI never disagree — and holds no state of its own: run as many
//! as you like behind a load balancer.
//!
//! - [`api`] — the routes and the OpenAPI document.
//! - [`auth`] — bearer tokens and roles.
//! - [`events`] — the shared `LISTEN` connection and run feeds behind the
//!   server-sent event streams.
//! - [`problem`] — errors as `application/problem+json`.
//! - [`ui`] — the web UI's embedded files.

pub mod api;
pub mod auth;
pub mod events;
pub mod problem;
pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use weft_store::PgPool;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub pool: PgPool,
    /// Serve without tokens (loopback only): every caller is admin.
    pub dev: bool,
    /// The shared followers of runs, for the event streams.
    pub events: Arc<events::Events>,
    /// The key that seals the secret inputs of submitted runs
    /// (`WEFT_SECRET_KEY`); without one, a run with secret inputs is
    /// refused.
    pub secrets: Option<Arc<weft_common::Keyring>>,
}

impl AppState {
    /// The state of a server on `pool`; its event feeds stop with
    /// `shutdown`. Call within a Tokio runtime.
    #[must_use]
    pub fn new(pool: PgPool, dev: bool, shutdown: CancellationToken) -> Self {
        Self {
            events: events::Events::start(pool.clone(), shutdown),
            pool,
            dev,
            secrets: None,
        }
    }

    /// The same, sealing secret inputs with `secrets`.
    #[must_use]
    pub fn with_secrets(self, secrets: Option<Arc<weft_common::Keyring>>) -> Self {
        Self { secrets, ..self }
    }
}

/// How the server listens and what it accepts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Serve without tokens. Refused unless `addr` is a loopback address.
    pub dev: bool,
    /// The largest request body accepted, in bytes (413 past it).
    pub max_body: usize,
    /// How long a request may take before it is answered 408 (server-sent
    /// event streams are exempt: they last as long as the client wants).
    pub request_timeout: Duration,
    /// The key that seals secret inputs of submitted runs.
    pub secrets: Option<Arc<weft_common::Keyring>>,
}

/// The default largest request body: 10 MiB.
pub const DEFAULT_MAX_BODY: usize = 10 * 1024 * 1024;

/// The default request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl ServerConfig {
    /// Defaults, listening on `addr`.
    #[must_use]
    pub const fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            dev: false,
            max_body: DEFAULT_MAX_BODY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            secrets: None,
        }
    }
}

/// Why the server could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `--dev` on an address other hosts can reach.
    #[error("--dev serves without tokens and so only on a loopback address, not {0}")]
    DevNotLoopback(SocketAddr),
    /// Binding or serving failed.
    #[error("serving HTTP on {addr}: {source}")]
    Io {
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The whole application: API, health, UI. Every request's body is
/// bounded by `config.max_body` (413), every request but the event
/// streams' by `config.request_timeout` (408).
pub fn router(state: AppState, config: &ServerConfig) -> Router {
    let (api, _openapi) = api::routes(config);
    Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .merge(ui::routes())
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body))
        .with_state(state)
}

/// Serves until `shutdown` is canceled; returns the address actually
/// bound (port 0 picks a free one) through `bound` once listening.
///
/// # Errors
/// [`ServeError`].
pub async fn serve(
    pool: PgPool,
    config: ServerConfig,
    shutdown: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), ServeError> {
    if config.dev && !config.addr.ip().is_loopback() {
        return Err(ServeError::DevNotLoopback(config.addr));
    }
    let io = |source| ServeError::Io {
        addr: config.addr,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(io)?;
    let local = listener.local_addr().map_err(io)?;
    if let Some(bound) = bound {
        let _ = bound.send(local);
    }
    tracing::info!(addr = %local, dev = config.dev, "serving the API and the web UI");
    let state =
        AppState::new(pool, config.dev, shutdown.clone()).with_secrets(config.secrets.clone());
    let app = router(state, &config);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(io)
}

/// `GET /healthz`: the process serves (no token needed).
async fn healthz() -> &'static str {
    "ok"
}
