//! The Lua scripts, the names of keys and channels, and parsing of what Redis sends back.
//!
//! Everything read from Redis is treated as untrusted input: sizes are checked, numbers and
//! epochs are parsed strictly, and anything malformed is dropped (and logged), never a
//! panic.

use redis::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{Fetched, Incoming, MAX_MESSAGE_BYTES};

/// One publish, atomically (Centrifugo's `broker_history_add_stream.lua`):
///
/// `KEYS[1]` meta hash, `KEYS[2]` stream; `ARGV[1]` pub/sub channel, `ARGV[2]` the event
/// (a JSON object ending in `}`), `ARGV[3]` an epoch to use if the channel has none,
/// `ARGV[4]` history size (`0`: no history), `ARGV[5]` stream TTL in ms, `ARGV[6]` meta TTL
/// in ms. Publishes `n:<event>` without history, `s:<seq>:<epoch>:<numbered event>` with it.
pub const PUBLISH: &str = r#"
if ARGV[4] == '0' then
  redis.call('publish', ARGV[1], 'n:' .. ARGV[2])
  return 0
end
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[3]
  redis.call('hset', KEYS[1], 'e', epoch)
  redis.call('hdel', KEYS[1], 's')
end
local seq = redis.call('hincrby', KEYS[1], 's', 1)
if seq == 1 then
  redis.call('del', KEYS[2])
end
local seqtext = string.format('%d', seq)
local text = string.sub(ARGV[2], 1, -2) .. ',"seq":' .. seqtext .. ',"epoch":"' .. epoch .. '"}'
redis.call('xadd', KEYS[2], 'MAXLEN', '~', ARGV[4], seqtext .. '-0', 'd', text)
redis.call('pexpire', KEYS[2], ARGV[5])
redis.call('pexpire', KEYS[1], ARGV[6])
redis.call('publish', ARGV[1], 's:' .. seqtext .. ':' .. epoch .. ':' .. text)
return seq
"#;

/// A subscribe's read: the channel's epoch (created if absent) and top `seq`, and for a
/// resume the kept events from `ARGV[2]` on.
///
/// `KEYS[1]` meta hash, `KEYS[2]` stream; `ARGV[1]` an epoch to use if the channel has
/// none, `ARGV[2]` first `seq` wanted (empty: none), `ARGV[3]` most entries, `ARGV[4]` meta
/// TTL in ms.
pub const READ: &str = r#"
if redis.call('hsetnx', KEYS[1], 'e', ARGV[1]) == 1 then
  redis.call('hdel', KEYS[1], 's')
  redis.call('pexpire', KEYS[1], ARGV[4])
end
local epoch = redis.call('hget', KEYS[1], 'e')
local seq = redis.call('hget', KEYS[1], 's') or '0'
local events = {}
if ARGV[2] ~= '' then
  events = redis.call('xrange', KEYS[2], ARGV[2], '+', 'COUNT', ARGV[3])
end
return {epoch, seq, events}
"#;

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The pub/sub channel of `channel`.
    pub fn publish_channel(&self, channel: &str) -> String {
        format!("{}:p:{channel}", self.prefix)
    }

    /// The pattern every process subscribes to.
    pub fn pattern(&self) -> String {
        format!("{}:p:*", self.prefix)
    }

    pub fn meta(&self, channel: &str) -> String {
        format!("{}:m:{channel}", self.prefix)
    }

    pub fn stream(&self, channel: &str) -> String {
        format!("{}:s:{channel}", self.prefix)
    }

    /// The channel name inside a pub/sub channel of this prefix.
    fn channel_of<'a>(&self, redis_channel: &'a [u8]) -> Option<&'a [u8]> {
        redis_channel
            .strip_prefix(self.prefix.as_bytes())?
            .strip_prefix(b":p:")
    }
}

/// An epoch read from Redis: what this crate writes is 8 base-36 characters; anything of
/// 1-32 ASCII letters and digits is accepted (it goes into JSON unescaped).
pub fn valid_epoch(epoch: &str) -> bool {
    (1..=32).contains(&epoch.len()) && epoch.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn bulk(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

fn array(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

/// A `PMESSAGE` push (`[pattern, channel, message]`) of this prefix, or `None` when it is
/// not one or is malformed.
pub fn parse_push(names: &Names, data: &[Value]) -> Option<Incoming> {
    let [_pattern, channel, message] = data else {
        return None;
    };
    let channel = std::str::from_utf8(names.channel_of(bulk(channel)?)?).ok()?;
    let message = bulk(message)?;
    if message.len() > MAX_MESSAGE_BYTES + 128 {
        return None;
    }
    let message = std::str::from_utf8(message).ok()?;
    let (numbered, text) = if let Some(text) = message.strip_prefix("n:") {
        (None, text)
    } else {
        let rest = message.strip_prefix("s:")?;
        let (seq, rest) = rest.split_once(':')?;
        let (epoch, text) = rest.split_once(':')?;
        let seq = parse_seq(seq)?;
        if !valid_epoch(epoch) {
            return None;
        }
        (Some((seq, epoch.to_owned())), text)
    };
    if !(text.starts_with('{') && text.ends_with('}')) {
        return None;
    }
    Some(Incoming {
        channel: channel.to_owned(),
        numbered,
        text: Utf8Bytes::from(text.to_owned()),
    })
}

/// A `seq` as Redis writes it: decimal digits, at least 1, no sign.
fn parse_seq(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The reply of [`READ`], or `None` when it is malformed. At most `max_events` entries and
/// `max_bytes` bytes of events are accepted: more means the reply is not ours.
pub fn parse_read(value: &Value, max_events: usize, max_bytes: usize) -> Option<Fetched> {
    let [epoch, seq, events] = array(value)? else {
        return None;
    };
    let epoch = std::str::from_utf8(bulk(epoch)?).ok()?;
    if !valid_epoch(epoch) {
        return None;
    }
    let top = match seq {
        Value::Int(n) => u64::try_from(*n).ok()?,
        other => parse_seq(std::str::from_utf8(bulk(other)?).ok()?)?,
    };
    let events = array(events)?;
    if events.len() > max_events {
        return None;
    }
    let mut parsed = Vec::with_capacity(events.len());
    let mut bytes = 0usize;
    for entry in events {
        let [id, fields] = array(entry)? else {
            return None;
        };
        let id = std::str::from_utf8(bulk(id)?).ok()?;
        let seq = parse_seq(id.split_once('-').map_or(id, |(ms, _)| ms))?;
        let fields = array(fields)?;
        let text = fields
            .chunks(2)
            .find(|pair| pair.first().and_then(bulk) == Some(b"d"))
            .and_then(|pair| pair.get(1))
            .and_then(bulk)?;
        bytes = bytes.checked_add(text.len())?;
        if bytes > max_bytes {
            return None;
        }
        let text = std::str::from_utf8(text).ok()?;
        parsed.push((seq, Utf8Bytes::from(text.to_owned())));
    }
    Some(Fetched {
        epoch: epoch.to_owned(),
        top,
        events: parsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bs(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn parses_numbered_and_plain_pushes_of_this_prefix_only() {
        let names = Names::new("cw");
        let numbered = parse_push(
            &names,
            &[bs("cw:p:*"), bs("cw:p:files"), bs("s:12:abc:{\"a\":1}")],
        );
        assert_eq!(
            numbered,
            Some(Incoming {
                channel: "files".into(),
                numbered: Some((12, "abc".into())),
                text: Utf8Bytes::from_static("{\"a\":1}"),
            })
        );
        let plain = parse_push(&names, &[bs("cw:p:*"), bs("cw:p:a:b"), bs("n:{}")]);
        assert_eq!(plain.map(|p| p.channel), Some("a:b".to_owned()));
        for bad in [
            "s:-1:abc:{}",
            "s:1:a\"b:{}",
            "s:1::{}",
            "s:99999999999999999999999:abc:{}",
            "x:{}",
            "n:not json",
            "s:1:abc",
        ] {
            assert_eq!(
                parse_push(&names, &[bs("cw:p:*"), bs("cw:p:files"), bs(bad)]),
                None,
                "{bad}"
            );
        }
        assert_eq!(
            parse_push(&names, &[bs("x"), bs("other:p:files"), bs("n:{}")]),
            None
        );
        assert_eq!(parse_push(&names, &[bs("x")]), None);
        assert_eq!(
            parse_push(&names, &[bs("x"), Value::Int(1), bs("n:{}")]),
            None
        );
    }

    #[test]
    fn parses_a_read_within_its_limits() {
        let entry = |id: &str, text: &str| {
            Value::Array(vec![bs(id), Value::Array(vec![bs("d"), bs(text)])])
        };
        let reply = Value::Array(vec![
            bs("abc"),
            bs("7"),
            Value::Array(vec![entry("6-0", "{6}"), entry("7-0", "{7}")]),
        ]);
        let fetched = parse_read(&reply, 10, 100);
        assert_eq!(
            fetched.map(|f| (f.epoch, f.top, f.events.len())),
            Some(("abc".into(), 7, 2))
        );
        assert_eq!(parse_read(&reply, 1, 100), None, "too many entries");
        assert_eq!(parse_read(&reply, 10, 5), None, "too many bytes");
        let no_seq = Value::Array(vec![bs("abc"), bs("x"), Value::Array(vec![])]);
        assert_eq!(parse_read(&no_seq, 10, 100), None);
        assert_eq!(parse_read(&Value::Nil, 10, 100), None);
    }
}
