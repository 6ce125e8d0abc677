//! [`ActionLogs`]: where an action writes what it prints, for `weft logs`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use weft_common::logs::{AttemptLogs, Tail};

/// What an attempt prints, kept by the worker and reported with the
/// attempt's completion — whether it succeeded, failed, timed out or was
/// canceled — so `weft logs` can show it. Each stream keeps its last
/// 64 KiB ([`weft_common::logs::LOG_TAIL_BYTES`]); older output is
/// counted, not kept.
///
/// The built-in `shell` action writes its child's stdout and stderr here
/// as they are read. A custom action writes log lines:
///
/// ```
/// # use weft_worker::ActionContext;
/// # fn example(ctx: &ActionContext) {
/// ctx.logs.line(format!("fetched {} rows", 42));
/// ctx.logs.stderr(b"retrying after a timeout\n");
/// # }
/// ```
///
/// Clones share the same buffers. Writing never blocks on IO and never
/// fails.
#[derive(Debug, Clone, Default)]
pub struct ActionLogs(Arc<Mutex<Streams>>);

#[derive(Debug, Default)]
struct Streams {
    stdout: Tail,
    stderr: Tail,
    exit_code: Option<i32>,
}

impl ActionLogs {
    /// Empty logs.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn streams(&self) -> MutexGuard<'_, Streams> {
        // A writer that panicked mid-push leaves whole bytes behind: the
        // buffers stay usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends bytes to the standard output stream.
    pub fn stdout(&self, bytes: &[u8]) {
        self.streams().stdout.push(bytes);
    }

    /// Appends bytes to the standard error stream.
    pub fn stderr(&self, bytes: &[u8]) {
        self.streams().stderr.push(bytes);
    }

    /// Appends one line (a newline is added) to the standard output
    /// stream: a custom action's log line.
    pub fn line(&self, line: impl AsRef<str>) {
        let mut streams = self.streams();
        streams.stdout.push(line.as_ref().as_bytes());
        streams.stdout.push(b"\n");
    }

    /// Records the exit code of the process the action ran.
    pub fn exit_code(&self, code: i32) {
        self.streams().exit_code = Some(code);
    }

    /// What was written so far; `None` if nothing was.
    #[must_use]
    pub fn snapshot(&self) -> Option<AttemptLogs> {
        let streams = self.streams();
        let logs = AttemptLogs {
            stdout: streams.stdout.to_log(),
            stderr: streams.stderr.to_log(),
            exit_code: streams.exit_code,
        };
        (!logs.is_empty()).then_some(logs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_streams_are_kept_apart_and_shared_by_clones() {
        let logs = ActionLogs::new();
        assert_eq!(logs.snapshot(), None);
        let writer = logs.clone();
        writer.line("one");
        writer.stdout(b"two\n");
        writer.stderr(b"oops\n");
        writer.exit_code(3);
        let seen = logs.snapshot().unwrap();
        assert_eq!(seen.stdout.text, "one\ntwo\n");
        assert_eq!(seen.stderr.text, "oops\n");
        assert_eq!(seen.exit_code, Some(3));
    }
}
