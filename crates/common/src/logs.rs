//! What an attempt printed: the tail of its stdout and stderr (or a custom
//! action's log lines), kept with the execution for `weft logs`.
//!
//! A worker keeps the last [`LOG_TAIL_BYTES`] of each stream of each
//! attempt ([`Tail`]) — the end of a failing command's output is where its
//! error is — and reports them with the completion as [`AttemptLogs`],
//! apart from the action's result: a result is data other tasks read (a
//! shell result holds the *first* megabyte of stdout), logs are for
//! people. A stream cut at its start says how many bytes it lost
//! ([`StreamLog::dropped`]); the text starts at a character boundary.
//! Logs are bounded by the same `--max-result-bytes` as a result
//! ([`AttemptLogs::fit`]): with a small limit the tails get shorter.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::limits::{ResultLimit, json_size};

/// How much of each stream an attempt keeps: its last 64 KiB.
pub const LOG_TAIL_BYTES: usize = 64 * 1024;

/// The last bytes written to one stream, up to a capacity, and how many
/// were written in all.
#[derive(Debug, Clone)]
pub struct Tail {
    kept: VecDeque<u8>,
    written: u64,
    capacity: usize,
}

impl Default for Tail {
    fn default() -> Self {
        Self::new(LOG_TAIL_BYTES)
    }
}

impl Tail {
    /// An empty tail keeping at most `capacity` bytes.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            kept: VecDeque::new(),
            written: 0,
            capacity,
        }
    }

    /// Appends `bytes`, forgetting the oldest ones beyond the capacity.
    pub fn push(&mut self, bytes: &[u8]) {
        self.written = self.written.saturating_add(bytes.len() as u64);
        let bytes = &bytes[bytes.len().saturating_sub(self.capacity)..];
        let overflow = (self.kept.len() + bytes.len()).saturating_sub(self.capacity);
        self.kept.drain(..overflow);
        self.kept.extend(bytes);
    }

    /// Whether nothing was written.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// The kept bytes as text, starting at a character boundary (partial
    /// characters at the cut are dropped too), invalid UTF-8 replaced.
    #[must_use]
    pub fn to_log(&self) -> StreamLog {
        let (front, back) = self.kept.as_slices();
        let mut bytes = Vec::with_capacity(self.kept.len());
        bytes.extend_from_slice(front);
        bytes.extend_from_slice(back);
        let cut = self.written > bytes.len() as u64;
        // A cut may fall inside a character: skip its continuation bytes
        // (at most three) rather than show a replacement character.
        let skip = if cut {
            bytes
                .iter()
                .take(3)
                .take_while(|b| (**b & 0b1100_0000) == 0b1000_0000)
                .count()
        } else {
            0
        };
        let text = String::from_utf8_lossy(&bytes[skip..]).into_owned();
        StreamLog {
            dropped: self.written - (bytes.len() - skip) as u64,
            text,
        }
    }
}

/// The end of one stream as text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamLog {
    /// The last bytes written, as text.
    pub text: String,
    /// How many bytes were written before `text` and are not kept (0: the
    /// text is the whole stream).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
const fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StreamLog {
    /// Whether nothing was written to the stream.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.dropped == 0
    }

    /// Keeps the last `len` bytes of the text or fewer (cut at a character
    /// boundary), counting the rest as dropped.
    fn keep_last(&mut self, len: usize) {
        if self.text.len() <= len {
            return;
        }
        let start = self.text.ceil_char_boundary(self.text.len() - len);
        self.dropped += start as u64;
        self.text.drain(..start);
    }
}

/// What one attempt printed, and how its process exited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptLogs {
    /// The end of its standard output (a custom action's log lines).
    #[serde(default, skip_serializing_if = "StreamLog::is_empty")]
    pub stdout: StreamLog,
    /// The end of its standard error.
    #[serde(default, skip_serializing_if = "StreamLog::is_empty")]
    pub stderr: StreamLog,
    /// The exit code of its process, when it ran one that exited (`None`:
    /// none ran, or it was killed by a signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

impl AttemptLogs {
    /// Whether there is nothing to show.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.stdout.is_empty() && self.stderr.is_empty() && self.exit_code.is_none()
    }

    /// Whether the logs' JSON fits `limit`.
    #[must_use]
    pub fn fits(&self, limit: ResultLimit) -> bool {
        json_size(&serde_json::to_value(self).unwrap_or_default()) <= limit.bytes()
    }

    /// Shortens the streams, oldest bytes first and the longer stream
    /// first, until the logs' JSON fits `limit`; returns whether anything
    /// was cut. Streams within [`LOG_TAIL_BYTES`] fit the default limit
    /// many times over: this matters only with a small `--max-result-bytes`
    /// (or text that JSON escapes heavily).
    pub fn fit(&mut self, limit: ResultLimit) -> bool {
        let mut cut = false;
        loop {
            let size = json_size(&serde_json::to_value(&*self).unwrap_or_default());
            if size <= limit.bytes() {
                return cut;
            }
            let longer = if self.stdout.text.len() >= self.stderr.text.len() {
                &mut self.stdout
            } else {
                &mut self.stderr
            };
            if longer.text.is_empty() {
                // Nothing left to cut: the rest is fixed-size framing.
                return cut;
            }
            // A byte of text is 1 to 6 bytes of JSON (`\u0001`): dropping
            // a sixth of the excess never drops more than needed, and the
            // excess shrinks by at least a sixth each round.
            let over = size - limit.bytes();
            let keep = longer.text.len().saturating_sub(over.div_ceil(6));
            longer.keep_last(keep);
            cut = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(capacity: usize, chunks: &[&[u8]]) -> StreamLog {
        let mut tail = Tail::new(capacity);
        for chunk in chunks {
            tail.push(chunk);
        }
        tail.to_log()
    }

    #[test]
    fn a_short_stream_is_kept_whole() {
        let log = tail_of(16, &[b"hello ", b"world\n"]);
        assert_eq!(
            log,
            StreamLog {
                text: "hello world\n".into(),
                dropped: 0
            }
        );
        assert!(tail_of(16, &[]).is_empty());
        assert!(Tail::new(16).is_empty());
    }

    #[test]
    fn a_long_stream_keeps_its_last_bytes_and_counts_the_rest() {
        let log = tail_of(8, &[b"0123456789", b"abcdef"]);
        assert_eq!(log.text, "89abcdef");
        assert_eq!(log.dropped, 8);
        // One chunk bigger than the capacity on its own.
        let log = tail_of(4, &[&[b'x'; 100], b"end!"]);
        assert_eq!((log.text.as_str(), log.dropped), ("end!", 100));
    }

    #[test]
    fn the_cut_never_splits_a_character() {
        // "é" is two bytes: a capacity of 5 over "éééé" (8 bytes) keeps
        // the last 5 bytes, whose first is the second half of an "é".
        let log = tail_of(5, &["éééé".as_bytes()]);
        assert_eq!(log.text, "éé");
        assert_eq!(log.dropped, 4);
        // Three-byte characters, cut after their first byte.
        let log = tail_of(7, &["日本語".as_bytes()]);
        assert_eq!(log.text, "本語");
        assert_eq!(log.dropped, 3);
    }

    #[test]
    fn invalid_utf8_is_shown_not_refused() {
        let log = tail_of(16, &[b"ok \xff\xfe end"]);
        assert_eq!(log.text, "ok \u{fffd}\u{fffd} end");
    }

    #[test]
    fn empty_streams_are_left_out_of_the_json() {
        let logs = AttemptLogs {
            stdout: StreamLog {
                text: "hi\n".into(),
                dropped: 0,
            },
            ..AttemptLogs::default()
        };
        assert_eq!(
            serde_json::to_string(&logs).unwrap(),
            r#"{"stdout":{"text":"hi\n"}}"#
        );
        let back: AttemptLogs = serde_json::from_str(r#"{"stdout":{"text":"hi\n"}}"#).unwrap();
        assert_eq!(back, logs);
        assert!(AttemptLogs::default().is_empty());
    }

    #[test]
    fn logs_over_the_limit_lose_their_oldest_bytes_longer_stream_first() {
        let mut logs = AttemptLogs {
            stdout: StreamLog {
                text: format!("{}END", "o".repeat(5_000)),
                dropped: 10,
            },
            stderr: StreamLog {
                text: "short error".into(),
                dropped: 0,
            },
            exit_code: Some(2),
        };
        let limit = ResultLimit::new(1_000).unwrap();
        assert!(logs.fit(limit));
        let size = json_size(&serde_json::to_value(&logs).unwrap());
        assert!(size <= 1_000, "{size}");
        assert!(logs.stdout.text.ends_with("END"));
        assert_eq!(
            logs.stdout.dropped + logs.stdout.text.len() as u64,
            10 + 5_003
        );
        assert_eq!(logs.stderr.text, "short error");
        // Within the limit nothing changes.
        let before = logs.clone();
        assert!(!logs.fit(limit));
        assert_eq!(logs, before);
    }

    #[test]
    fn fitting_escaped_text_keeps_as_much_as_fits() {
        let mut logs = AttemptLogs {
            stdout: StreamLog {
                text: "\u{1}é".repeat(3_000),
                dropped: 0,
            },
            ..AttemptLogs::default()
        };
        assert!(logs.fit(ResultLimit::new(500).unwrap()));
        let size = json_size(&serde_json::to_value(&logs).unwrap());
        // Each "\u{1}é" is 8 bytes of JSON: within a few of the limit.
        assert!((490..=500).contains(&size), "{size}");
    }

    #[test]
    fn fitting_escaped_text_ends_and_keeps_characters_whole() {
        let mut logs = AttemptLogs {
            stdout: StreamLog {
                text: "\u{1}é".repeat(3_000),
                dropped: 0,
            },
            ..AttemptLogs::default()
        };
        assert!(logs.fit(ResultLimit::new(500).unwrap()));
        assert!(json_size(&serde_json::to_value(&logs).unwrap()) <= 500);
        // A limit smaller than the framing empties the streams and stops.
        assert!(logs.fit(ResultLimit::new(5).unwrap()));
        assert!(logs.stdout.text.is_empty());
    }
}
