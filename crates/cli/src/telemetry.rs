//! Builds the tracing subscriber from `RUST_LOG`, with a sensible default.
//!
//! Logs go to stderr, coloured only when stderr is a terminal: a log file
//! or a pipe gets plain text. While `--wait` draws its progress bar, a
//! log line is written with the bar cleared and redrawn after it, so the
//! two never interleave.

use std::io::{IsTerminal as _, Write};
use std::sync::{Mutex, PoisonError};

use indicatif::ProgressBar;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::{self, MakeWriter};
use tracing_subscriber::prelude::*;
use weft_worker::{DAEMON_LOG_FILTER, LogFormat};

/// One-shot commands log only warnings, so their output stays clean for
/// scripts; lapin not at all: a one-shot command's use of RabbitMQ is
/// optional, and it reports what matters itself.
const COMMAND_LOG_FILTER: &str = "warn,sqlx=warn,lapin=off";

/// The progress bar on screen, if any: log lines suspend it.
static PROGRESS: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Installs the global subscriber: a daemon's (`log_format` given) logs
/// `info` by default; a one-shot command's only warnings.
pub(crate) fn init(log_format: Option<LogFormat>) {
    let Some(format) = log_format else {
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(COMMAND_LOG_FILTER));
        let layer = fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(AroundProgress);
        tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .init();
        return;
    };
    // Only fails if a subscriber exists already, which nothing installs.
    let _ = weft_worker::init_tracing(format, DAEMON_LOG_FILTER);
}

/// Routes log lines around `bar` until [`hide_progress`].
pub(crate) fn show_progress(bar: &ProgressBar) {
    *PROGRESS.lock().unwrap_or_else(PoisonError::into_inner) = Some(bar.clone());
}

/// The bar is gone: log lines go straight to stderr again.
pub(crate) fn hide_progress() {
    *PROGRESS.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

/// Writes to stderr, clearing the progress bar (if one is shown) for the
/// time of the write. The formatter writes each event in one call.
#[derive(Debug, Clone, Copy)]
struct AroundProgress;

impl<'a> MakeWriter<'a> for AroundProgress {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl Write for AroundProgress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = PROGRESS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
