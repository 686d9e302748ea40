//! The server → client event envelope and its timestamp.
//!
//! The original module built `{ type: 'event', channel, data, timestamp }` and passed it to
//! `JSON.stringify`. The envelope is assembled here from the already-serialised `data`, so
//! the bytes are identical to the original's: key order `type, channel, data, timestamp`,
//! and no `data` key at all when `data` serialised to nothing (`undefined`, a function).

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

/// Builds the event envelope text.
///
/// `data_json` is the output of `JSON.stringify(data)`, or `None` when it returned
/// `undefined` (then the `data` key is absent, as in the original).
pub fn event_envelope(channel: &str, data_json: Option<&str>, timestamp: &str) -> String {
    let mut out =
        String::with_capacity(48 + channel.len() + data_json.map_or(0, str::len) + timestamp.len());
    out.push_str(r#"{"type":"event","channel":"#);
    push_json_string(&mut out, channel);
    if let Some(data) = data_json {
        out.push_str(r#","data":"#);
        out.push_str(data);
    }
    out.push_str(r#","timestamp":""#);
    out.push_str(timestamp);
    out.push_str(r#""}"#);
    out
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
    fn envelope_keeps_the_original_key_order() {
        let text = event_envelope(
            "files",
            Some(r#"{"file":"a.ts"}"#),
            "2024-12-09T15:30:45.123Z",
        );
        assert_eq!(
            text,
            r#"{"type":"event","channel":"files","data":{"file":"a.ts"},"timestamp":"2024-12-09T15:30:45.123Z"}"#
        );
    }

    #[test]
    fn envelope_omits_data_that_serialised_to_nothing() {
        let text = event_envelope("git", None, "2024-12-09T15:30:45.123Z");
        assert_eq!(
            text,
            r#"{"type":"event","channel":"git","timestamp":"2024-12-09T15:30:45.123Z"}"#
        );
    }

    #[test]
    fn channel_is_escaped_like_json_stringify() {
        let text = event_envelope("a\"b\\c\n\u{1}\u{7f}é", Some("1"), "t");
        assert_eq!(
            text,
            "{\"type\":\"event\",\"channel\":\"a\\\"b\\\\c\\n\\u0001\u{7f}é\",\"data\":1,\"timestamp\":\"t\"}"
        );
    }
}
