//! How big one piece of data may be: an action's result, a rendered task
//! input.
//!
//! PostgreSQL caps one `jsonb` value at 255 MB and RabbitMQ refuses a
//! message over its `max_message_size`; long before either, a value of
//! tens of megabytes held by an executor for every item of a fan-out is
//! what hurts. So one setting, `--max-result-bytes` ([`ResultLimit`]),
//! bounds each action result (checked by the worker before it publishes,
//! and again by the executor before it stores, in case a worker runs with
//! a bigger setting) and each rendered input (checked by the executor
//! before anything is dispatched). Over it, the attempt or the task fails
//! at once with a [`TooLarge`] error naming the size and the limit: never
//! a message the broker refuses, never a row PostgreSQL refuses, never a
//! retry loop.
//!
//! A value's size is the length of its compact JSON text, which is what
//! travels inside the message and what `jsonb` is built from.

use std::fmt;
use std::io;

use serde_json::Value;

use crate::state::ExecutionStatus;

/// The limit on one result or rendered input, in bytes of compact JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultLimit(usize);

impl ResultLimit {
    /// 4 MiB: well under the broker's and the database's own limits, and
    /// far above what a task result that other tasks read should be.
    pub const DEFAULT: Self = Self(4 * 1024 * 1024);

    /// A limit of `bytes`.
    ///
    /// # Errors
    /// If `bytes` is 0: no result, not even `null`, would fit.
    pub fn new(bytes: usize) -> Result<Self, ZeroLimit> {
        if bytes == 0 {
            Err(ZeroLimit)
        } else {
            Ok(Self(bytes))
        }
    }

    /// The limit in bytes.
    #[must_use]
    pub const fn bytes(self) -> usize {
        self.0
    }

    /// `Ok` with the size of `value` if it fits; otherwise an error naming
    /// `what` (e.g. "the result", "the input of item 3"), its size and the
    /// limit.
    ///
    /// # Errors
    /// [`TooLarge`] if `value`'s compact JSON is longer than the limit.
    /// `what` is only formatted when the value does not fit: checking
    /// every item of a wide fan-out costs no allocation.
    pub fn check(self, what: impl fmt::Display, value: &Value) -> Result<usize, TooLarge> {
        self.check_size(what, json_size(value))
    }

    /// Checks a size already known (the length of a value's compact JSON).
    ///
    /// # Errors
    /// [`TooLarge`] if `size` is over the limit.
    pub fn check_size(self, what: impl fmt::Display, size: usize) -> Result<usize, TooLarge> {
        if size > self.0 {
            Err(TooLarge {
                what: what.to_string(),
                size,
                limit: self.0,
            })
        } else {
            Ok(size)
        }
    }
}

/// `--max-result-bytes`: a whole number of bytes, at least 1.
impl std::str::FromStr for ResultLimit {
    type Err = BadLimit;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = text.trim().parse::<usize>().map_err(|_| {
            BadLimit(format!(
                "must be a whole number of bytes, e.g. 4194304 for 4 MiB, not `{text}`"
            ))
        })?;
        Self::new(bytes).map_err(|e| BadLimit(e.to_string()))
    }
}

/// A result limit that is not a positive whole number of bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadLimit(String);

impl Default for ResultLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for ResultLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} bytes)", human_bytes(self.0), grouped(self.0))
    }
}

/// A limit of 0 bytes was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the result limit must be at least 1 byte, not 0")]
pub struct ZeroLimit;

/// A value over the [`ResultLimit`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} is {} ({} bytes), over the limit of {} ({} bytes; --max-result-bytes)",
    human_bytes(*size), grouped(*size), human_bytes(*limit), grouped(*limit)
)]
pub struct TooLarge {
    /// What was measured, as the message's subject ("the result").
    pub what: String,
    /// Its size in bytes of compact JSON.
    pub size: usize,
    /// The limit it is over.
    pub limit: usize,
}

/// How a completion report changes to fit the limit; see [`refit_report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refit {
    /// The status it ends with: a success whose result is dropped is a
    /// failure; any other ending stays what it was.
    pub status: ExecutionStatus,
    /// Whether its result (a success's value, a failure's details) is
    /// dropped.
    pub drop_result: bool,
    /// Its error, saying what was dropped or cut.
    pub error: Option<String>,
}

/// What must change in a completion report — `status`, with an action's
/// `result` (or a failure's details) and `error` — for it to fit `limit`;
/// `None` if it fits as it is. The one rule for both sides: the worker
/// applies it before publishing, the executor again before storing (a
/// worker may run with a bigger setting than the executor).
///
/// - A success whose result is over the limit becomes a failure whose
///   error is the [`TooLarge`] message.
/// - Any other ending keeps its status and error; details over the limit
///   are dropped and the error says so.
/// - An error message over the limit is cut at a character boundary.
///
/// Such a failure is an ordinary one: the task's retry policy applies, and
/// each retry fails the same way in the time its action takes. There is no
/// "do not retry" mark: the message format has none, and a result's size
/// may well change between tries (a query over live data).
#[must_use]
pub fn refit_report(
    limit: ResultLimit,
    status: ExecutionStatus,
    result: Option<&Value>,
    error: Option<&str>,
) -> Option<Refit> {
    let succeeded = status == ExecutionStatus::Succeeded;
    let what = if succeeded {
        "the result"
    } else {
        "the failed attempt's result"
    };
    let too_large = result.and_then(|v| limit.check(what, v).err());
    let long_error = error.is_some_and(|e| e.len() > limit.bytes());
    if too_large.is_none() && !long_error {
        return None;
    }
    let error = error.map(|e| cut_message(limit, e));
    Some(match too_large {
        None => Refit {
            status,
            drop_result: false,
            error,
        },
        Some(too_large) if succeeded => Refit {
            status: ExecutionStatus::Failed,
            drop_result: true,
            error: Some(too_large.to_string()),
        },
        Some(too_large) => Refit {
            status,
            drop_result: true,
            error: Some(match error {
                Some(e) => format!("{e} ({too_large}: dropped)"),
                None => format!("{too_large}: dropped"),
            }),
        },
    })
}

/// `message`, cut at a character boundary if it is longer than the limit.
fn cut_message(limit: ResultLimit, message: &str) -> String {
    if message.len() <= limit.bytes() {
        return message.to_owned();
    }
    let end = message.floor_char_boundary(limit.bytes());
    format!(
        "{}… (cut: the message is {}, over the limit of {}; --max-result-bytes)",
        &message[..end],
        human_bytes(message.len()),
        human_bytes(limit.bytes())
    )
}

/// The length of `value`'s compact JSON text, counted without building it.
#[must_use]
pub fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` cannot fail (its keys are strings) and `Count`
    // never refuses bytes.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// `bytes` in binary units, one decimal, without a trailing `.0`:
/// `512 bytes`, `1 KiB`, `8.4 MiB`.
#[must_use]
pub fn human_bytes(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    #[allow(clippy::cast_precision_loss)] // one decimal is all we show
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

/// `n` with thousands separators: `8,812,345`.
#[must_use]
pub fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_error_names_the_size_and_the_limit_in_both_forms() {
        let err = TooLarge {
            what: "the result".into(),
            size: 8_812_345,
            limit: 4_194_304,
        };
        assert_eq!(
            err.to_string(),
            "the result is 8.4 MiB (8,812,345 bytes), over the limit of 4 MiB \
             (4,194,304 bytes; --max-result-bytes)"
        );
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1023), "1023 bytes");
        assert_eq!(human_bytes(1024), "1 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(4 * 1024 * 1024), "4 MiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3 GiB");
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(4_194_304), "4,194,304");
        assert_eq!(grouped(123_456_789_012), "123,456,789,012");
    }

    #[test]
    fn the_size_is_the_compact_json_that_travels() {
        let value = json!({"a": [1, "x\"y"], "b": null});
        assert_eq!(
            json_size(&value),
            serde_json::to_string(&value).unwrap().len()
        );
        // Escapes count: a newline is two bytes of JSON.
        assert_eq!(json_size(&json!("a\nb")), 6);
    }

    #[test]
    fn check_lets_the_limit_itself_through_and_refuses_one_byte_more() {
        let limit = ResultLimit::new(7).unwrap();
        assert_eq!(limit.check("the result", &json!("abcde")), Ok(7));
        let err = limit.check("the result", &json!("abcdef")).unwrap_err();
        assert_eq!((err.size, err.limit), (8, 7));
        assert!(
            err.to_string().starts_with("the result is 8 bytes"),
            "{err}"
        );
    }

    fn limit(bytes: usize) -> ResultLimit {
        ResultLimit::new(bytes).unwrap()
    }

    #[test]
    fn a_result_over_the_limit_fails_the_report_naming_both_sizes() {
        let big = json!("x".repeat(98));
        let refit = refit_report(limit(64), ExecutionStatus::Succeeded, Some(&big), None);
        assert_eq!(
            refit,
            Some(Refit {
                status: ExecutionStatus::Failed,
                drop_result: true,
                error: Some(
                    "the result is 100 bytes (100 bytes), over the limit of 64 bytes \
                     (64 bytes; --max-result-bytes)"
                        .into()
                ),
            })
        );
        // At the limit it goes through untouched.
        let fits = json!("x".repeat(62));
        assert_eq!(
            refit_report(limit(64), ExecutionStatus::Succeeded, Some(&fits), None),
            None
        );
    }

    #[test]
    fn a_failure_keeps_its_status_and_error_and_loses_oversized_details() {
        let details = json!({"stdout": "y".repeat(200)});
        let refit = refit_report(
            limit(64),
            ExecutionStatus::Canceled,
            Some(&details),
            Some("canceled"),
        )
        .unwrap();
        assert_eq!(
            (refit.status, refit.drop_result),
            (ExecutionStatus::Canceled, true)
        );
        assert_eq!(
            refit.error.as_deref(),
            Some(
                "canceled (the failed attempt's result is 213 bytes (213 bytes), over the limit \
                 of 64 bytes (64 bytes; --max-result-bytes): dropped)"
            )
        );
    }

    #[test]
    fn an_error_message_over_the_limit_is_cut_at_a_character() {
        let long = "é".repeat(2000);
        let refit = refit_report(limit(2048), ExecutionStatus::Failed, None, Some(&long)).unwrap();
        assert_eq!(
            (refit.status, refit.drop_result),
            (ExecutionStatus::Failed, false)
        );
        let cut = refit.error.unwrap();
        assert!(cut.starts_with(&"é".repeat(1024)), "{cut}");
        assert!(!cut.starts_with(&"é".repeat(1025)), "{cut}");
        assert!(
            cut.ends_with(
                "… (cut: the message is 3.9 KiB, over the limit of 2 KiB; --max-result-bytes)"
            ),
            "{cut}"
        );
        assert_eq!(
            refit_report(limit(2048), ExecutionStatus::Failed, None, Some("short")),
            None
        );
    }

    #[test]
    fn a_zero_limit_is_refused() {
        assert_eq!(ResultLimit::new(0), Err(ZeroLimit));
        assert_eq!(ResultLimit::default().bytes(), 4_194_304);
        assert_eq!(ResultLimit::DEFAULT.to_string(), "4 MiB (4,194,304 bytes)");
    }
}
