//! Reads the members of a client message the protocol acts on — `type`, `id`, `channel`,
//! `handler`, `data`, `since` — the way `JSON.parse` would see them, without building the
//! rest.
//!
//! The whole text is still validated as JSON, but every other member is skipped, not
//! materialised: a `data` nested hundreds of levels deep (which `JSON.parse` accepts) is
//! walked on a heap-grown stack (`serde_stacker`), and costs no allocation. Duplicate keys
//! keep the last value, as in JavaScript.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The top level of a client message.
#[derive(Debug, Default)]
pub enum TopLevel<'a> {
    /// An object, with the raw text of the members that matter.
    Object(Members<'a>),
    /// JSON `null`.
    Null,
    /// Any other JSON value (number, string, boolean, array).
    #[default]
    Other,
}

/// The raw text of the members that matter; absent members are `None`.
#[derive(Debug, Default)]
pub struct Members<'a> {
    pub kind: Option<&'a RawValue>,
    pub id: Option<&'a RawValue>,
    pub channel: Option<&'a RawValue>,
    pub handler: Option<&'a RawValue>,
    pub data: Option<&'a RawValue>,
    pub since: Option<&'a RawValue>,
}

/// A member name, read as bytes: JSON.parse accepts any string as a key, unpaired
/// surrogate escapes included, and serde_json only decodes those into bytes.
enum Key {
    Type,
    Id,
    Channel,
    Handler,
    Data,
    Since,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_bytes<E: serde::de::Error>(self, name: &[u8]) -> Result<Key, E> {
                Ok(match name {
                    b"type" => Key::Type,
                    b"id" => Key::Id,
                    b"channel" => Key::Channel,
                    b"handler" => Key::Handler,
                    b"data" => Key::Data,
                    b"since" => Key::Since,
                    _ => Key::Other,
                })
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Key, E> {
                self.visit_bytes(name.as_bytes())
            }
        }
        deserializer.deserialize_bytes(KeyVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Members::default();
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::Type => &mut members.kind,
                Key::Id => &mut members.id,
                Key::Channel => &mut members.channel,
                Key::Handler => &mut members.handler,
                Key::Data => &mut members.data,
                Key::Since => &mut members.since,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(TopLevel::Object(members))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(TopLevel::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(TopLevel::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(TopLevel::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(TopLevel::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(TopLevel::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(TopLevel::Other)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(TopLevel::Other)
    }
}

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor)
    }
}

/// Parses `text` as one JSON value; `None` when it is not JSON.
pub fn read(text: &str) -> Option<TopLevel<'_>> {
    if has_raw_control_in_string(text) {
        return None;
    }
    let mut json = serde_json::Deserializer::from_str(text);
    json.disable_recursion_limit();
    match TopLevel::deserialize(serde_stacker::Deserializer::new(&mut json)) {
        Ok(top) => json.end().ok().map(|()| top),
        // serde_json refuses a number beyond f64; JSON.parse reads it as ±Infinity.
        Err(_) if is_json_number(text.trim_matches(is_json_whitespace)) => Some(TopLevel::Other),
        Err(_) => None,
    }
}

/// Whether a string literal in `text` holds a raw control character (U+0000–U+001F), which
/// JSON forbids. serde_json checks this everywhere except in the member names this module
/// reads as bytes (to accept unpaired surrogate escapes), so it is checked here once.
fn has_raw_control_in_string(text: &str) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for byte in text.bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            } else if byte < 0x20 {
                return true;
            }
        } else if byte == b'"' {
            in_string = true;
        }
    }
    false
}

fn is_json_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Whether `text` is a JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn is_json_number(text: &str) -> bool {
    let bytes = text.strip_prefix('-').unwrap_or(text).as_bytes();
    let digits = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let integer = digits(0);
    if integer == 0 || (integer > 1 && bytes[0] == b'0') {
        return false;
    }
    let mut at = integer;
    if bytes.get(at) == Some(&b'.') {
        let fraction = digits(at + 1);
        if fraction == 0 {
            return false;
        }
        at += 1 + fraction;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exponent = digits(at);
        if exponent == 0 {
            return false;
        }
        at += exponent;
    }
    at == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(value: Option<&RawValue>) -> Option<&str> {
        value.map(RawValue::get)
    }

    #[test]
    fn picks_the_members_that_matter_and_skips_the_rest() {
        let Some(TopLevel::Object(members)) = read(
            r#"{"data":{"x":[1,2,{"y":null}]},"type":"subscribe","channel":"files","id":7,"z":[1],"since":{"seq":1},"handler":"h"}"#,
        ) else {
            panic!("not an object");
        };
        assert_eq!(raw(members.kind), Some(r#""subscribe""#));
        assert_eq!(raw(members.id), Some("7"));
        assert_eq!(raw(members.channel), Some(r#""files""#));
        assert_eq!(raw(members.data), Some(r#"{"x":[1,2,{"y":null}]}"#));
        assert_eq!(raw(members.since), Some(r#"{"seq":1}"#));
        assert_eq!(raw(members.handler), Some(r#""h""#));
    }

    #[test]
    fn numbers_beyond_a_double_are_json_as_for_json_parse() {
        assert!(matches!(read("1e400"), Some(TopLevel::Other)));
        assert!(matches!(read(" -1.5E+999 "), Some(TopLevel::Other)));
        for not_json in ["+1", "01", "1.", ".5", "1e", "inf", "NaN", "1e400x"] {
            assert!(read(not_json).is_none(), "{not_json}");
        }
    }

    #[test]
    fn raw_control_characters_in_strings_are_refused_even_in_member_names() {
        assert!(read("{\"ty\u{1}pe\":\"request\"}").is_none());
        assert!(read("{\"a\tb\":1}").is_none());
        assert!(read("{\"a\\u0001b\":1,\"x\":\"\\\"\"}\n").is_some());
    }

    #[test]
    fn the_last_duplicate_wins() {
        let Some(TopLevel::Object(members)) = read(r#"{"type":"a","type":"b"}"#) else {
            panic!("not an object");
        };
        assert_eq!(raw(members.kind), Some(r#""b""#));
    }

    #[test]
    fn deep_nesting_in_skipped_members_is_accepted() {
        let depth = 50_000;
        let text = format!(
            r#"{{"type":"request","data":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(matches!(read(&text), Some(TopLevel::Object(_))));
    }

    #[test]
    fn non_objects_and_garbage_are_told_apart() {
        assert!(matches!(read("null"), Some(TopLevel::Null)));
        assert!(matches!(read(" [1,[2]] "), Some(TopLevel::Other)));
        assert!(matches!(read("\"x\""), Some(TopLevel::Other)));
        assert!(read("{").is_none());
        assert!(read("{} x").is_none());
        assert!(read("").is_none());
    }

    #[test]
    fn out_of_range_numbers_and_lone_surrogates_in_skipped_members_are_accepted() {
        assert!(read(r#"{"data":1e400,"x":"\ud800"}"#).is_some());
        let Some(TopLevel::Object(members)) = read(r#"{"\ud800":1,"type":"request"}"#) else {
            panic!("a key with an unpaired surrogate escape must be accepted");
        };
        assert_eq!(raw(members.kind), Some(r#""request""#));
    }
}
