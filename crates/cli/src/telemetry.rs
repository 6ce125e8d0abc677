//! Builds the tracing subscriber from `RUST_LOG`, with a sensible default.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::cli::LogFormat;

/// Installs the global subscriber. Daemons log `info` by default; one-shot
/// commands only warnings, so their output stays clean for scripts (lapin
/// none: a one-shot command's use of RabbitMQ is optional, and it reports
/// what matters itself).
pub(crate) fn init(format: LogFormat, daemon: bool) {
    let default = if daemon {
        "info,sqlx=warn,lapin=warn"
    } else {
        "warn,sqlx=warn,lapin=off"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .init(),
    }
}
