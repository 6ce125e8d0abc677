//! Short, one-line renderings of values for people: an item's value next
//! to its index in `weft status --task`, `weft logs` and item errors.
//!
//! An item may be anything a `with_items` list holds — a number, a file
//! name, an object of a kilobyte — so it is shown as its compact JSON
//! (which keeps `1` and `"1"` apart and escapes newlines, so it stays on
//! one line), cut to [`ITEM_LABEL_CHARS`] characters with a trailing `…`.
//! The JSON is written only as far as the label needs: labelling every
//! item of a wide fan-out over big objects costs no more than over small
//! ones.

use std::io;

use serde_json::Value;

/// The longest item label, in characters, the `…` included.
pub const ITEM_LABEL_CHARS: usize = 40;

/// `text` on one line and at most `max_chars` characters: line breaks and
/// tabs become spaces, other control characters are dropped, and a text
/// that is longer is cut to `max_chars - 1` characters followed by `…`.
/// `max_chars` of 0 gives an empty string.
#[must_use]
pub fn abbreviate(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut chars = text
        .chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .peekable();
    let mut count = 0;
    while let Some(c) = chars.next() {
        if count + 1 == max_chars && chars.peek().is_some() {
            out.push('…');
            return out;
        }
        if count == max_chars {
            break;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// An item's value as a label: its compact JSON, abbreviated to
/// [`ITEM_LABEL_CHARS`] characters (see the module docs).
#[must_use]
pub fn item_label(item: &Value) -> String {
    abbreviate(
        &json_prefix(item, ITEM_LABEL_CHARS * 4 + 4),
        ITEM_LABEL_CHARS,
    )
}

/// The start of `value`'s compact JSON, at least `max_bytes` of it when it
/// is that long (a little more, never cut inside a character), without
/// writing the rest.
fn json_prefix(value: &Value, max_bytes: usize) -> String {
    /// Takes bytes until it has enough, then refuses the rest, which stops
    /// the serialiser.
    struct Prefix {
        bytes: Vec<u8>,
        max: usize,
    }
    impl io::Write for Prefix {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.bytes.len() >= self.max {
                return Err(io::Error::other("enough"));
            }
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut prefix = Prefix {
        bytes: Vec::new(),
        max: max_bytes,
    };
    // An error only means "enough": what was written is what we want.
    let _ = serde_json::to_writer(&mut prefix, value);
    // The serialiser writes whole characters per call, but keep the
    // conversion total all the same.
    String::from_utf8_lossy(&prefix.bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_text_is_kept_as_it_is() {
        assert_eq!(abbreviate("a.csv", 40), "a.csv");
        assert_eq!(abbreviate("", 40), "");
        // Exactly at the limit: no ellipsis.
        assert_eq!(abbreviate("abcd", 4), "abcd");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis_within_the_limit() {
        assert_eq!(abbreviate("abcde", 4), "abc…");
        assert_eq!(abbreviate("abcde", 4).chars().count(), 4);
        assert_eq!(abbreviate("abcde", 1), "…");
        assert_eq!(abbreviate("abcde", 0), "");
    }

    #[test]
    fn characters_count_not_bytes() {
        let label = abbreviate(&"é".repeat(50), 10);
        assert_eq!(label, format!("{}…", "é".repeat(9)));
        assert_eq!(abbreviate("日本語", 3), "日本語");
    }

    #[test]
    fn the_result_is_one_line() {
        assert_eq!(abbreviate("a\nb\r\n\tc\u{7}d", 40), "a b   cd");
    }

    #[test]
    fn items_are_labelled_by_their_compact_json() {
        assert_eq!(item_label(&json!("a.csv")), "\"a.csv\"");
        assert_eq!(item_label(&json!(3)), "3");
        assert_eq!(item_label(&json!(null)), "null");
        assert_eq!(
            item_label(&json!({"id": 7, "tags": ["x"]})),
            r#"{"id":7,"tags":["x"]}"#
        );
        // A string with a newline stays on one line: JSON escapes it.
        assert_eq!(item_label(&json!("a\nb")), r#""a\nb""#);
    }

    #[test]
    fn a_big_item_is_cut_to_the_label_length() {
        let big = json!({"payload": "x".repeat(1_000_000)});
        let label = item_label(&big);
        assert_eq!(label.chars().count(), ITEM_LABEL_CHARS);
        assert!(label.starts_with(r#"{"payload":"xxx"#), "{label}");
        assert!(label.ends_with('…'), "{label}");
    }

    #[test]
    fn a_label_of_wide_characters_is_cut_by_characters() {
        let label = item_label(&json!("é".repeat(200)));
        assert_eq!(label.chars().count(), ITEM_LABEL_CHARS);
        assert!(label.ends_with('…'));
    }
}
