//! The client protocol: one inbound text message in, one [`Command`] out, and the exact
//! bytes of every server response.
//!
//! Client → server messages are `WSMessage { id?, type, channel?, handler?, data? }` JSON
//! texts. Responses keep the original module's shape and key order
//! (`{"type":"response","id":…,"data":{…}}`, `id` only when the request had one); errors
//! caused by limits add a stable machine-readable `code` next to `error`.

mod fields;
mod responses;
mod since;

use std::sync::LazyLock;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::envelope::push_json_string;
use crate::options::MAX_CHANNEL_NAME_BYTES;
use fields::{Members, TopLevel};
pub use responses::*;
pub use since::Since;

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
        /// Where the client left off, to resume from.
        since: Option<Since>,
    },
    /// A subscribe whose `since` is not `{ epoch: non-empty string, seq: integer >= 0 }`.
    InvalidSince { id: Option<RequestId> },
    Unsubscribe {
        id: Option<RequestId>,
        channel: String,
    },
    /// A call of an application handler: `invoke` (the Cluso web client), `request` (the
    /// original's `WSMessage.handler`) or `send` (no answer).
    Call(Call),
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

/// How a handler call was made, which decides how it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `{"type":"invoke","id","channel","data"}`: answered when it has an id.
    Invoke,
    /// `{"type":"request","id","handler","data"}`: always answered, the original's way.
    Request,
    /// `{"type":"send","channel","data"}`: never answered.
    Send,
}

/// One handler call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub kind: CallKind,
    pub id: Option<RequestId>,
    /// The handler's name; `None` when missing or not a string.
    pub name: Option<String>,
    /// The raw JSON text of `data`, for `JSON.parse` on the JavaScript thread.
    pub data: Option<String>,
}

impl Call {
    /// Whether the caller waits for an answer.
    pub fn answered(&self) -> bool {
        match self.kind {
            CallKind::Request => true,
            CallKind::Invoke => self.id.is_some(),
            CallKind::Send => false,
        }
    }
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
    pub const INVALID_SINCE: &str = "INVALID_SINCE";
    pub const HANDLER_ERROR: &str = "HANDLER_ERROR";
    pub const NO_HANDLER: &str = "NO_HANDLER";
    pub const TIMEOUT: &str = "TIMEOUT";
    pub const BUSY: &str = "BUSY";
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
    let members = match fields::read(text) {
        None => return Command::Malformed,
        Some(TopLevel::Object(members)) => members,
        // `JSON.parse('null').type` threw in the original; any other non-object has no
        // `type` and fell through to the unknown-type branch.
        Some(TopLevel::Null) => return Command::Malformed,
        Some(TopLevel::Other) => return Command::Unknown { kind: None },
    };
    let id = members.id.map(RequestId::from_raw);
    let kind = match members
        .kind
        .map(|raw| serde_json::from_str::<Value>(raw.get()))
    {
        Some(Ok(Value::String(kind))) => kind,
        other => {
            return Command::Unknown {
                kind: other.and_then(Result::ok).map(|v| v.to_string()),
            }
        }
    };
    match kind.as_str() {
        "subscribe" | "unsubscribe" => subscription(&kind, id, &members),
        "invoke" => call(CallKind::Invoke, id, members.channel, members.data),
        "request" => call(CallKind::Request, id, members.handler, members.data),
        "send" => call(CallKind::Send, id, members.channel, members.data),
        "ping" => Command::Ping { id },
        _ => Command::Unknown { kind: Some(kind) },
    }
}

fn subscription(kind: &str, id: Option<RequestId>, members: &Members<'_>) -> Command {
    let channel = match channel_name(members.channel) {
        Ok(channel) => channel,
        Err(None) => return Command::MissingChannel,
        Err(Some(problem)) => return Command::InvalidChannel { id, problem },
    };
    if kind == "unsubscribe" {
        return Command::Unsubscribe { id, channel };
    }
    let since = match members.since.map(Since::parse) {
        None => None,
        Some(Some(since)) => Some(since),
        Some(None) => return Command::InvalidSince { id },
    };
    Command::Subscribe { id, channel, since }
}

fn call(
    kind: CallKind,
    id: Option<RequestId>,
    name: Option<&RawValue>,
    data: Option<&RawValue>,
) -> Command {
    let name = name.and_then(|raw| match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::String(name)) if !name.is_empty() => Some(name),
        _ => None,
    });
    Command::Call(Call {
        kind,
        id,
        name,
        data: data.map(|raw| raw.get().to_owned()),
    })
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

#[cfg(test)]
mod tests;
