//! The client protocol: one inbound text message in, one [`Command`] out, and the exact
//! bytes of every server response.
//!
//! Client → server messages are `WSMessage { id?, type, channel?, handler?, data? }` JSON
//! texts. Responses keep the original module's shape and key order
//! (`{"type":"response","id":…,"data":{…}}`, `id` only when the request had one); errors
//! caused by limits add a stable machine-readable `code` next to `error`.

mod fields;

use std::sync::LazyLock;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::envelope::push_json_string;
use crate::options::MAX_CHANNEL_NAME_BYTES;
use fields::TopLevel;

/// A request's `id`, already written as `JSON.stringify(JSON.parse(text).id)` writes it,
/// ready to be echoed in the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    fn from_raw(raw: &RawValue) -> Self {
        let text = raw.get();
        let mut out = String::with_capacity(text.len());
        match serde_json::from_str::<Value>(text) {
            Ok(value) => push_js_value(&mut out, &value),
            // A number beyond f64 is ±Infinity to JSON.parse, which JSON.stringify writes
            // as null.
            Err(_) if text.parse::<f64>().is_ok_and(f64::is_infinite) => out.push_str("null"),
            // Text serde_json cannot hold (an unpaired surrogate escape, nesting beyond its
            // limit) is echoed as the client wrote it.
            Err(_) => out.push_str(text),
        }
        RequestId(out)
    }

    /// The id as JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
impl RequestId {
    pub fn parse(json: &str) -> Option<Self> {
        serde_json::from_str::<&RawValue>(json)
            .ok()
            .map(Self::from_raw)
    }
}

/// What one client message asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Subscribe {
        id: Option<RequestId>,
        channel: String,
    },
    Unsubscribe {
        id: Option<RequestId>,
        channel: String,
    },
    /// A request; no handler mechanism exists yet, so it is answered with an error.
    Request { id: Option<RequestId> },
    /// Application-level keep-alive for browsers, which cannot send ping frames.
    Ping { id: Option<RequestId> },
    /// subscribe / unsubscribe with a missing or falsy `channel`: the original answered
    /// nothing, and so do we.
    MissingChannel,
    /// subscribe / unsubscribe with a channel that is not an acceptable name.
    InvalidChannel {
        id: Option<RequestId>,
        problem: ChannelProblem,
    },
    /// A JSON value whose `type` is none of the above (or absent): nothing is answered.
    Unknown { kind: Option<String> },
    /// Not JSON, or JSON `null`: answered with the parse error response.
    Malformed,
}

/// Why a channel name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelProblem {
    NotAString,
    /// A string with an unpaired UTF-16 surrogate escape (`"\ud800"`).
    NotUnicode,
    TooLong,
    BadCharacter,
}

/// The `TooLong` message, naming the limit from its one definition.
static TOO_LONG: LazyLock<String> =
    LazyLock::new(|| format!("Channel name is longer than {MAX_CHANNEL_NAME_BYTES} bytes"));

impl ChannelProblem {
    pub fn message(self) -> &'static str {
        match self {
            ChannelProblem::NotAString => "Channel must be a string",
            ChannelProblem::NotUnicode => "Channel name must be well-formed Unicode",
            ChannelProblem::TooLong => TOO_LONG.as_str(),
            ChannelProblem::BadCharacter => "Channel name may not contain control characters",
        }
    }
}

/// Stable codes of the error responses, listed in the README.
pub mod codes {
    pub const INVALID_CHANNEL: &str = "INVALID_CHANNEL";
    pub const SUBSCRIPTION_LIMIT: &str = "SUBSCRIPTION_LIMIT";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
}

/// Checks a client-chosen channel name: non-empty (empty is handled as missing), at most
/// [`MAX_CHANNEL_NAME_BYTES`] bytes of UTF-8, and no control characters (U+0000–U+001F,
/// U+007F–U+009F), so names are safe to log. Any other Unicode text is a valid name, as it
/// was in the original module.
pub fn check_channel_name(name: &str) -> Result<(), ChannelProblem> {
    if name.len() > MAX_CHANNEL_NAME_BYTES {
        return Err(ChannelProblem::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(ChannelProblem::BadCharacter);
    }
    Ok(())
}

/// JavaScript truthiness of a JSON value, as `if (message.channel)` saw it.
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Parses one client text message.
pub fn parse(text: &str) -> Command {
    let (kind, id, channel) = match fields::read(text) {
        None => return Command::Malformed,
        Some(TopLevel::Object { kind, id, channel }) => (kind, id, channel),
        // `JSON.parse('null').type` threw in the original; any other non-object has no
        // `type` and fell through to the unknown-type branch.
        Some(TopLevel::Null) => return Command::Malformed,
        Some(TopLevel::Other) => return Command::Unknown { kind: None },
    };
    let id = id.map(RequestId::from_raw);
    let kind = match kind.map(|raw| serde_json::from_str::<Value>(raw.get())) {
        Some(Ok(Value::String(kind))) => kind,
        other => {
            return Command::Unknown {
                kind: other.and_then(Result::ok).map(|v| v.to_string()),
            }
        }
    };
    match kind.as_str() {
        "subscribe" | "unsubscribe" => {
            let channel = match channel_name(channel) {
                Ok(channel) => channel,
                Err(None) => return Command::MissingChannel,
                Err(Some(problem)) => return Command::InvalidChannel { id, problem },
            };
            if kind == "subscribe" {
                Command::Subscribe { id, channel }
            } else {
                Command::Unsubscribe { id, channel }
            }
        }
        "request" => Command::Request { id },
        "ping" => Command::Ping { id },
        _ => Command::Unknown { kind: Some(kind) },
    }
}

/// The channel of a subscribe / unsubscribe: `Err(None)` when missing or falsy (the
/// original ignored those), `Err(Some(_))` when unacceptable.
fn channel_name(raw: Option<&RawValue>) -> Result<String, Option<ChannelProblem>> {
    let raw = raw.ok_or(None)?;
    let channel = match serde_json::from_str::<Value>(raw.get()) {
        Ok(value) if !is_truthy(&value) => return Err(None),
        Ok(Value::String(channel)) => channel,
        Ok(_) => return Err(Some(ChannelProblem::NotAString)),
        Err(_) if raw.get().starts_with('"') => return Err(Some(ChannelProblem::NotUnicode)),
        Err(_) => return Err(Some(ChannelProblem::NotAString)),
    };
    check_channel_name(&channel).map_err(Some)?;
    Ok(channel)
}

/// Writes a JSON value as `JSON.stringify` would write what `JSON.parse` made of it:
/// numbers are JavaScript doubles printed the JavaScript way (`1e+21`, `5e-7`).
fn push_js_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() => {
                let mut buffer = ryu_js::Buffer::new();
                out.push_str(buffer.format_finite(f));
            }
            _ => out.push_str("null"),
        },
        Value::String(s) => push_json_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                push_js_value(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            // JavaScript objects list array-index keys first, ascending, then the others in
            // insertion order.
            let mut ordered: Vec<(&String, &Value)> = members.iter().collect();
            ordered.sort_by_key(|(key, _)| array_index(key).map_or(u64::MAX, u64::from));
            out.push('{');
            for (index, (key, item)) in ordered.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                push_json_string(out, key);
                out.push(':');
                push_js_value(out, item);
            }
            out.push('}');
        }
    }
}

/// `key` as an array index (a canonical decimal below 2^32 − 1), as JavaScript orders
/// such keys first.
fn array_index(key: &str) -> Option<u32> {
    let index: u32 = key.parse().ok()?;
    (index != u32::MAX && index.to_string() == key).then_some(index)
}

/// `{"type":"response"[,"id":…],"data":` — the shared head of every response.
fn response_head(id: Option<&RequestId>) -> String {
    let mut out = String::with_capacity(96);
    out.push_str(r#"{"type":"response""#);
    if let Some(id) = id {
        out.push_str(r#","id":"#);
        out.push_str(id.as_json());
    }
    out.push_str(r#","data":"#);
    out
}

/// The welcome message sent to every new connection. `cwd` is omitted when the app passed
/// none (`JSON.stringify` drops `undefined`).
pub fn welcome(connection_id: &str, cwd: Option<&str>) -> String {
    let mut out = response_head(None);
    out.push_str(r#"{"status":"connected","connectionId":"#);
    push_json_string(&mut out, connection_id);
    if let Some(cwd) = cwd {
        out.push_str(r#","cwd":"#);
        push_json_string(&mut out, cwd);
    }
    out.push_str("}}");
    out
}

fn status_response(id: Option<&RequestId>, status: &str, channel: &str) -> String {
    let mut out = response_head(id);
    out.push_str(r#"{"status":""#);
    out.push_str(status);
    out.push_str(r#"","channel":"#);
    push_json_string(&mut out, channel);
    out.push_str("}}");
    out
}

pub fn subscribed(id: Option<&RequestId>, channel: &str) -> String {
    status_response(id, "subscribed", channel)
}

pub fn unsubscribed(id: Option<&RequestId>, channel: &str) -> String {
    status_response(id, "unsubscribed", channel)
}

/// The original's answer to a request; kept byte for byte (no `code`), since clients may
/// compare the text.
pub fn no_handler(id: Option<&RequestId>) -> String {
    let mut out = response_head(id);
    out.push_str(r#"{"error":"No handler for request type"}}"#);
    out
}

/// The original's answer to text that is not JSON, byte for byte.
pub fn parse_error() -> String {
    let mut out = response_head(None);
    out.push_str(r#"{"error":"Failed to parse message"}}"#);
    out
}

/// An error response with a stable `code`.
pub fn error(id: Option<&RequestId>, message: &str, code: &str) -> String {
    let mut out = response_head(id);
    out.push_str(r#"{"error":"#);
    push_json_string(&mut out, message);
    out.push_str(r#","code":"#);
    push_json_string(&mut out, code);
    out.push_str("}}");
    out
}

/// The answer to an application-level `{"type":"ping"}`.
pub fn pong(id: Option<&RequestId>) -> String {
    let mut out = String::from(r#"{"type":"pong""#);
    if let Some(id) = id {
        out.push_str(r#","id":"#);
        out.push_str(id.as_json());
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_with_id_is_parsed() {
        assert_eq!(
            parse(r#"{"type":"subscribe","channel":"files","id":"7"}"#),
            Command::Subscribe {
                id: RequestId::parse(r#""7""#),
                channel: "files".into()
            }
        );
    }

    #[test]
    fn missing_or_falsy_channel_is_ignored() {
        for text in [
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","channel":""}"#,
            r#"{"type":"unsubscribe","channel":null}"#,
            r#"{"type":"subscribe","channel":0}"#,
            r#"{"type":"subscribe","channel":false}"#,
        ] {
            assert_eq!(parse(text), Command::MissingChannel, "{text}");
        }
    }

    #[test]
    fn non_string_channel_is_refused() {
        assert_eq!(
            parse(r#"{"type":"subscribe","channel":5,"id":1}"#),
            Command::InvalidChannel {
                id: RequestId::parse(r#"1"#),
                problem: ChannelProblem::NotAString
            }
        );
        assert!(matches!(
            parse(r#"{"type":"subscribe","channel":{"a":1}}"#),
            Command::InvalidChannel { .. }
        ));
    }

    #[test]
    fn channel_names_are_checked_at_the_boundary() {
        assert_eq!(check_channel_name(&"a".repeat(128)), Ok(()));
        assert_eq!(
            check_channel_name(&"a".repeat(129)),
            Err(ChannelProblem::TooLong)
        );
        assert_eq!(
            check_channel_name("a\nb"),
            Err(ChannelProblem::BadCharacter)
        );
        assert_eq!(
            check_channel_name("a\u{85}b"),
            Err(ChannelProblem::BadCharacter)
        );
        assert_eq!(check_channel_name("füles \"q\""), Ok(()));
        assert_eq!(check_channel_name("user:42/files@main#x"), Ok(()));
    }

    #[test]
    fn null_and_garbage_are_malformed() {
        assert_eq!(parse("null"), Command::Malformed);
        assert_eq!(parse("{oops"), Command::Malformed);
        assert_eq!(parse(""), Command::Malformed);
    }

    #[test]
    fn values_without_a_known_type_are_unknown() {
        assert_eq!(parse("5"), Command::Unknown { kind: None });
        assert_eq!(parse("[1,2]"), Command::Unknown { kind: None });
        assert_eq!(parse(r#"{"channel":"x"}"#), Command::Unknown { kind: None });
        assert_eq!(
            parse(r#"{"type":"event"}"#),
            Command::Unknown {
                kind: Some("event".into())
            }
        );
        assert_eq!(
            parse(r#"{"type":7}"#),
            Command::Unknown {
                kind: Some("7".into())
            }
        );
    }

    #[test]
    fn proto_keys_are_plain_data() {
        assert_eq!(
            parse(r#"{"__proto__":{"type":"subscribe"},"type":"request","id":"1"}"#),
            Command::Request {
                id: RequestId::parse(r#""1""#)
            }
        );
    }

    #[test]
    fn responses_match_the_original_bytes() {
        assert_eq!(
            welcome("conn-1-abc", Some("/tmp")),
            r#"{"type":"response","data":{"status":"connected","connectionId":"conn-1-abc","cwd":"/tmp"}}"#
        );
        assert_eq!(
            welcome("conn-1-abc", None),
            r#"{"type":"response","data":{"status":"connected","connectionId":"conn-1-abc"}}"#
        );
        assert_eq!(
            subscribed(RequestId::parse(r#""7""#).as_ref(), "files"),
            r#"{"type":"response","id":"7","data":{"status":"subscribed","channel":"files"}}"#
        );
        assert_eq!(
            unsubscribed(None, "files"),
            r#"{"type":"response","data":{"status":"unsubscribed","channel":"files"}}"#
        );
        assert_eq!(
            no_handler(RequestId::parse(r#""9""#).as_ref()),
            r#"{"type":"response","id":"9","data":{"error":"No handler for request type"}}"#
        );
        assert_eq!(
            parse_error(),
            r#"{"type":"response","data":{"error":"Failed to parse message"}}"#
        );
        assert_eq!(
            error(
                RequestId::parse(r#"3"#).as_ref(),
                "Too many",
                "SUBSCRIPTION_LIMIT"
            ),
            r#"{"type":"response","id":3,"data":{"error":"Too many","code":"SUBSCRIPTION_LIMIT"}}"#
        );
        assert_eq!(pong(None), r#"{"type":"pong"}"#);
    }

    #[test]
    fn ids_are_echoed_as_javascript_would_print_them() {
        let id = parse(r#"{"type":"request","id":1.0}"#);
        let Command::Request { id } = id else {
            panic!("not a request")
        };
        assert_eq!(
            no_handler(id.as_ref()),
            r#"{"type":"response","id":1,"data":{"error":"No handler for request type"}}"#
        );
        let big = RequestId::parse("1e21");
        assert!(no_handler(big.as_ref()).contains(r#""id":1e+21"#));
        let null = RequestId::parse("null");
        assert!(no_handler(null.as_ref()).contains(r#""id":null"#));
        let nested = RequestId::parse(r#"{"b":1,"a":[true,"x"],"2":0,"10":1,"01":2}"#);
        assert!(no_handler(nested.as_ref())
            .contains(r#""id":{"2":0,"10":1,"b":1,"a":[true,"x"],"01":2}"#));
        let infinite = RequestId::parse("1e400");
        assert!(no_handler(infinite.as_ref()).contains(r#""id":null"#));
    }
}
