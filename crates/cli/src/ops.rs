//! The operator endpoints of a daemon: `GET /metrics` (Prometheus text
//! format, every `weft_*` counter and histogram) and `GET /healthz`.
//!
//! Latencies (`*_seconds`) are histograms with fixed buckets, from 100 µs
//! to 10 s, so that they can be summed across daemons and compared
//! between two scrapes (a summary's rolling quantiles could not).

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio_util::sync::CancellationToken;

/// The upper bounds of the latency histograms' buckets, in seconds: fine
/// below 5 ms, where a step's hops are.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_2, 0.000_3, 0.000_4, 0.000_5, 0.000_75, 0.001, 0.001_25, 0.001_5, 0.002,
    0.002_5, 0.003, 0.004, 0.005, 0.007_5, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the Prometheus recorder and serves `/metrics` and `/healthz` on
/// `addr` until `shutdown`. Returns once the listener is bound, so a bad
/// address fails the daemon's start with a clear error.
pub(crate) async fn serve(addr: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .context("configuring the latency buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/healthz", get(|| std::future::ready("ok\n")));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint to {addr}"))?;
    tracing::info!(%addr, "serving /metrics and /healthz");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(())
}
