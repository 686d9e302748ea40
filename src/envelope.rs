//! Text the server writes the way JavaScript writes it: the `toISOString()` timestamp of
//! every event, and JSON string literals as `JSON.stringify` escapes them.

use std::time::SystemTime;

/// Formats a time exactly like JavaScript's `Date.prototype.toISOString()`:
/// UTC, millisecond precision, `Z` suffix (e.g. `2024-12-09T15:30:45.123Z`).
pub fn iso_timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// The current time as [`iso_timestamp`] formats it.
pub fn now_iso() -> String {
    iso_timestamp(SystemTime::now())
}

/// Appends `value` as a JSON string literal, escaped as `JSON.stringify` escapes it.
///
/// serde_json and V8 agree on every escape for valid Unicode text: `\"`, `\\`, the short
/// forms `\b \f \n \r \t`, and lowercase `\u00XX` for the other control characters.
pub fn push_json_string(out: &mut String, value: &str) {
    // Writing into a String cannot fail, and a &str is always serialisable.
    let quoted = serde_json::to_string(value).unwrap_or_else(|_| String::from("\"\""));
    out.push_str(&quoted);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamp_matches_to_iso_string() {
        let at = UNIX_EPOCH + Duration::from_millis(1_733_758_245_123);
        assert_eq!(iso_timestamp(at), "2024-12-09T15:30:45.123Z");
    }

    #[test]
    fn timestamp_keeps_zero_milliseconds() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(iso_timestamp(at), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn timestamp_truncates_sub_millisecond_time() {
        let at = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_999_999_999);
        assert_eq!(iso_timestamp(at), "2023-11-14T22:13:20.999Z");
    }

    #[test]
    fn strings_are_escaped_like_json_stringify() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\n\u{1}\u{7f}é");
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001\u{7f}é\"");
    }
}
