//! `weft server`: the HTTP API and the web UI ([`weft_server`]), until
//! SIGINT/SIGTERM. `weft dev` starts one too, in `--dev` mode.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio_util::sync::CancellationToken;
use weft_server::{DEFAULT_MAX_BODY, ServerConfig};
use weft_store::PgPool;
use weft_worker::{LogArgs, shutdown_on_signal};

use crate::config::{ConfigArgs, DbArgs};

/// Where `weft server` (and `weft dev`'s server) listens by default.
pub(crate) const DEFAULT_SERVER_ADDR: &str = "127.0.0.1:8080";

/// Arguments of `weft server`.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Where to listen (`0.0.0.0:8080` for every interface; port 0 picks a
    /// free one, printed).
    #[arg(long, env = "WEFT_SERVER_ADDR", default_value = DEFAULT_SERVER_ADDR, value_name = "ADDR")]
    pub(crate) addr: SocketAddr,
    /// Serve without tokens: every request acts as admin. Only on a
    /// loopback address; for development (`weft dev` uses it).
    #[arg(long)]
    pub(crate) dev: bool,
    /// The largest request body accepted, in bytes (413 past it).
    #[arg(long, default_value_t = DEFAULT_MAX_BODY, value_name = "BYTES", value_parser = positive_bytes)]
    pub(crate) max_body: usize,
    /// Seconds a request may take before it is answered 408 (event streams
    /// are exempt).
    #[arg(
        long,
        default_value_t = weft_server::DEFAULT_REQUEST_TIMEOUT.as_secs_f64(),
        value_name = "SECS"
    )]
    pub(crate) request_timeout: f64,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) log: LogArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

fn positive_bytes(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("the body limit must be at least 1 byte, not 0".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "must be a whole number of bytes, e.g. 10485760 for 10 MiB, not `{text}`"
        )),
    }
}

impl ServerArgs {
    /// The server's settings; refuses a timeout that is not a positive
    /// number of seconds.
    fn server_config(&self) -> anyhow::Result<ServerConfig> {
        let request_timeout = Duration::try_from_secs_f64(self.request_timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| {
                format!(
                    "--request-timeout must be a positive number of seconds, not {}",
                    self.request_timeout
                )
            })?;
        Ok(ServerConfig {
            dev: self.dev,
            max_body: self.max_body,
            request_timeout,
            secrets: weft_worker::keyring_from_env()?,
            ..ServerConfig::new(self.addr)
        })
    }
}

/// Serves the API and the UI until SIGINT/SIGTERM.
pub(crate) async fn run(args: &ServerArgs) -> anyhow::Result<ExitCode> {
    let config = args.server_config()?;
    let pool = args.db.connect().await?;
    let shutdown = shutdown_on_signal();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let served = tokio::spawn(weft_server::serve(
        pool,
        config.clone(),
        shutdown.clone(),
        Some(bound_tx),
    ));
    if let Ok(addr) = bound_rx.await {
        announce(addr, config.dev)?;
    }
    served.await.context("the server task failed")??;
    Ok(ExitCode::SUCCESS)
}

/// Starts a server in the background for `weft dev`: `--dev` mode (no
/// tokens) on `addr`, which must be a loopback address. Returns once it
/// listens, having said where (loudly: it asks for no token). A port
/// already taken is a warning, not a failure: the engine serves without
/// the API (a second `weft dev`, say).
pub(crate) async fn start_dev(
    pool: PgPool,
    addr: SocketAddr,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let config = ServerConfig {
        dev: true,
        secrets: weft_worker::keyring_from_env()?,
        ..ServerConfig::new(addr)
    };
    check_dev_addr(addr)?;
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let served = tokio::spawn(weft_server::serve(
        pool,
        config,
        shutdown.clone(),
        Some(bound_tx),
    ));
    match bound_rx.await {
        Ok(addr) => announce(addr, true)?,
        Err(_) => {
            let why = match served.await {
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(())) => "it stopped".to_owned(),
                Err(e) => e.to_string(),
            };
            eprintln!(
                "warning: no web UI or API: {why}; the executor and worker run on (pass --server-addr 127.0.0.1:PORT for another port)"
            );
        }
    }
    Ok(())
}

/// Refuses a `weft dev` server address other hosts could reach.
pub(crate) fn check_dev_addr(addr: SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        anyhow::bail!(
            "--server-addr {addr}: `weft dev` serves without tokens and so only on a loopback address (127.0.0.1:PORT); use `weft server` with tokens for other hosts"
        );
    }
    Ok(())
}

/// Says where the UI and the API are (stdout), and shouts about `--dev`
/// (stderr, so it shows however stdout is redirected).
fn announce(addr: SocketAddr, dev: bool) -> std::io::Result<()> {
    let base = format!("http://{addr}");
    if dev {
        eprintln!(
            "\n!!! DEV MODE: the API at {base} asks for NO TOKEN — every request acts as admin.\n!!! Loopback only; never expose this port. For other hosts run `weft server` with tokens.\n"
        );
    }
    outln!("web UI   {base}/")?;
    outln!("API      {base}/api/v1  (OpenAPI: {base}/api/v1/openapi.json)")?;
    if dev {
        outln!("CLI      export WEFT_SERVER_URL={base}")?;
    } else {
        outln!(
            "CLI      export WEFT_SERVER_URL={base} WEFT_TOKEN=…  (a token from `weft token create --role viewer|operator|admin`)"
        )?;
    }
    Ok(())
}
