//! How a user names a run: its id, a unique prefix of it, or `last`.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::WorkflowExecutionId;

/// The fewest hex digits a prefix may have: 8 digits tell 4 billion ids
/// apart, so a prefix this long is almost always unique; a shorter one
/// would often match several runs.
pub const MIN_PREFIX: usize = 8;

/// A run as given on a command line or in a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunRef {
    /// A whole id.
    Id(WorkflowExecutionId),
    /// The start of an id: lowercase hex digits without dashes, at least
    /// [`MIN_PREFIX`] and fewer than 32 of them.
    Prefix(String),
    /// The newest run.
    Last,
}

impl RunRef {
    /// The smallest and largest ids starting with a prefix of hex digits
    /// (an id's 32 digits compare in the same order as the UUIDs do), so
    /// the database finds them by a range scan of its primary key.
    #[must_use]
    pub fn prefix_range(prefix: &str) -> (Uuid, Uuid) {
        let bound = |fill: char| {
            let digits: String = prefix
                .chars()
                .chain(std::iter::repeat(fill))
                .take(32)
                .collect();
            Uuid::parse_str(&digits).unwrap_or(Uuid::nil())
        };
        (bound('0'), bound('f'))
    }
}

/// Why a text names no run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a run id: give the id, at least {MIN_PREFIX} of its first hex digits, or `last` (the newest run)"
)]
pub struct BadRunRef(String);

impl FromStr for RunRef {
    type Err = BadRunRef;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("last") {
            return Ok(Self::Last);
        }
        if let Ok(id) = Uuid::parse_str(trimmed) {
            return Ok(Self::Id(id.into()));
        }
        let digits: String = trimmed.chars().filter(|c| *c != '-').collect();
        let is_prefix = (MIN_PREFIX..32).contains(&digits.len())
            && digits.chars().all(|c| c.is_ascii_hexdigit());
        if is_prefix {
            Ok(Self::Prefix(digits.to_ascii_lowercase()))
        } else {
            Err(BadRunRef(text.to_owned()))
        }
    }
}

impl fmt::Display for RunRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => id.fmt(f),
            Self::Prefix(prefix) => write!(f, "{prefix}…"),
            Self::Last => f.write_str("last"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_prefixes_and_last_parse_and_the_rest_is_refused() {
        let id = "0195f3a2-7c4e-7d21-9a0b-1c2d3e4f5a6b";
        assert!(matches!(id.parse(), Ok(RunRef::Id(_))));
        assert_eq!("LAST".parse(), Ok(RunRef::Last));
        assert_eq!(
            "0195F3A2-7c".parse(),
            Ok(RunRef::Prefix("0195f3a27c".to_owned()))
        );
        for bad in ["0195f3a", "0195f3ag", "latest", ""] {
            let err = bad.parse::<RunRef>().unwrap_err().to_string();
            assert!(err.contains("at least 8"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_prefix_range_holds_exactly_the_ids_that_start_with_it() {
        let (low, high) = RunRef::prefix_range("0195f3a27c");
        assert_eq!(low.to_string(), "0195f3a2-7c00-0000-0000-000000000000");
        assert_eq!(high.to_string(), "0195f3a2-7cff-ffff-ffff-ffffffffffff");
    }
}
