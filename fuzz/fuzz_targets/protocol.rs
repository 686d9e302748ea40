//! Fuzzes the client protocol: arbitrary bytes, decoded as text the way the transports decode
//! a binary frame (lossy UTF-8), through the parser (`protocol::parse`) and through the state
//! machine every transport shares (`Manager::handle_client_text`), on a manager with two
//! registered connections, a small subscription limit, history on and one request handler
//! (whose calls are answered at once, with the call's own data as the result). The same text split on newlines is also fed as
//! a sequence of messages, so subscribe / unsubscribe / limit interleavings are explored.
//!
//! Asserts no panic, and:
//! - every reply is valid JSON (checked by an independent iterative validator that, like
//!   `JSON.parse`, accepts lone surrogate escapes and any depth) and has the response shape;
//! - the parser only acts on valid JSON, and refuses valid JSON only where `JSON.parse`
//!   would have thrown — i.e. for `null` (lone-surrogate escapes excepted, see below);
//! - an accepted channel is a non-empty name that passes `check_channel_name`;
//! - the registry stays consistent: no connection holds more than the limit, every channel
//!   a connection holds lists it as a subscriber, the counts add up.
#![no_main]

use std::sync::Arc;

use cluso_ws::manager::{CallOutcome, Handled, Manager};
use cluso_ws::options::{HistoryOptions, Options};
use cluso_ws::protocol::{self, Call, Command};
use libfuzzer_sys::fuzz_target;

/// Small, so the limit is reached within one input.
const SUBSCRIPTION_LIMIT: usize = 4;
const CONNECTIONS: [&str; 2] = ["conn-a", "conn-b"];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_parse(&text);

    let hub = Manager::new(Options {
        max_subscriptions_per_connection: SUBSCRIPTION_LIMIT,
        max_messages_per_second: 0,
        request_timeout: None,
        history: HistoryOptions {
            size: 8,
            ..HistoryOptions::default()
        },
        ..Options::default()
    });
    for id in CONNECTIONS {
        hub.add_js_connection(id);
    }
    hub.set_handler("h", true);
    // The whole input as one message, to each connection and to an unknown one.
    for id in CONNECTIONS.iter().copied().chain(["ghost"]) {
        check_handled(&hub, id, &text);
    }
    // Then each line as a message of its own, alternating connections.
    for (n, line) in text.split('\n').enumerate() {
        check_parse(line);
        check_handled(&hub, CONNECTIONS[n % 2], line);
    }
    check_registry(&hub);
});

fn check_parse(text: &str) {
    let command = protocol::parse(text);
    let valid = is_valid_json(text);
    match &command {
        Command::Malformed => {
            // JSON.parse throws on invalid JSON, and `null` has no `.type`: only those two get
            // the parse error. (Writing this oracle turned up two refusals of valid JSON — a
            // top-level key with a lone surrogate escape, `{"\ud800":1}`, and a top-level
            // `1e400` — fixed in 9b967be; seeds 18 and 19 keep them covered, and
            // hostile-traffic.spec.ts pins them end to end.)
            let trimmed = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
            assert!(!valid || trimmed == "null", "valid JSON refused as malformed: {text:?}");
        }
        other => {
            assert!(valid, "acted on invalid JSON ({other:?}): {text:?}");
            match other {
                Command::Subscribe { id, channel, .. } | Command::Unsubscribe { id, channel } => {
                    assert!(!channel.is_empty());
                    assert!(protocol::check_channel_name(channel).is_ok(), "{channel:?}");
                    if let Some(id) = id {
                        assert!(is_valid_json(id.as_json()), "id {:?}", id.as_json());
                    }
                }
                Command::Call(Call { id: Some(id), .. })
                | Command::Ping { id: Some(id) }
                | Command::InvalidSince { id: Some(id) }
                | Command::InvalidChannel { id: Some(id), .. } => {
                    assert!(is_valid_json(id.as_json()), "id {:?}", id.as_json());
                }
                _ => {}
            }
        }
    }
}

fn check_handled(hub: &Arc<Manager>, id: &str, text: &str) {
    match hub.handle_client_text(id, text) {
        Handled::Nothing => {}
        // No gatekeeper and no rate limiter here: nothing asks, drops or closes.
        other @ (Handled::Dropped | Handled::Close(_) | Handled::Authorize(_)) => {
            panic!("unexpected {other:?} for {text:?}")
        }
        // A call of the one handler: answer it with its own data, as a handler would.
        Handled::Invoke(call) => {
            assert_eq!(call.name, "h");
            if let Some(data) = &call.data {
                assert!(is_valid_json(data), "data is not JSON: {data:?}");
            }
            if let Some(ticket) = call.ticket {
                let reply = hub
                    .complete(ticket, CallOutcome::Returned(call.data.clone()))
                    .expect("a JavaScript socket's answer comes back");
                assert!(is_valid_json(&reply), "answer is not JSON: {reply:?}");
                assert!(reply.starts_with(r#"{"type":"response""#), "{reply:?}");
            }
        }
        // A reply (with or without a subscription change).
        other => {
            let reply = other.reply().expect("a reply");
            assert!(is_valid_json(&reply), "reply is not JSON: {reply:?} (to {text:?})");
            assert!(
                reply.starts_with(r#"{"type":"response","#) || reply.starts_with(r#"{"type":"pong""#),
                "unexpected reply shape: {reply:?}"
            );
        }
    }
}

fn check_registry(hub: &Manager) {
    let mut subscriptions = 0;
    for id in CONNECTIONS {
        let channels = hub.channels_of(id);
        assert!(channels.len() <= SUBSCRIPTION_LIMIT, "{id} holds {}", channels.len());
        for channel in &channels {
            assert!(protocol::check_channel_name(channel).is_ok());
            assert!(
                hub.subscriber_ids(channel).iter().any(|s| s == id),
                "{id} holds {channel:?} but is not its subscriber"
            );
        }
        subscriptions += channels.len();
    }
    assert_eq!(hub.pending_requests(), 0, "every call was answered");
    let counts = hub.gauges().counts;
    assert_eq!(counts.subscriptions, subscriptions);
    assert_eq!(counts.js_connections, CONNECTIONS.len());
}

/// An RFC 8259 validator, iterative (no depth limit), written independently of the parser
/// under test. Like `JSON.parse`, it accepts any `\uXXXX` escape, paired or not.
fn is_valid_json(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    // What the enclosing containers expect next.
    #[derive(Clone, Copy, PartialEq)]
    enum Frame {
        Array,
        Object,
    }
    let mut stack: Vec<Frame> = Vec::new();
    let ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
            *i += 1;
        }
    };
    // Parses one value start; containers push a frame and return.
    'value: loop {
        ws(&mut i);
        if i >= b.len() {
            return false;
        }
        match b[i] {
            b'{' => {
                i += 1;
                ws(&mut i);
                if i < b.len() && b[i] == b'}' {
                    i += 1;
                } else {
                    if !string(b, &mut i) {
                        return false;
                    }
                    ws(&mut i);
                    if i >= b.len() || b[i] != b':' {
                        return false;
                    }
                    i += 1;
                    stack.push(Frame::Object);
                    continue 'value;
                }
            }
            b'[' => {
                i += 1;
                ws(&mut i);
                if i < b.len() && b[i] == b']' {
                    i += 1;
                } else {
                    stack.push(Frame::Array);
                    continue 'value;
                }
            }
            b'"' => {
                if !string(b, &mut i) {
                    return false;
                }
            }
            b't' if b[i..].starts_with(b"true") => i += 4,
            b'f' if b[i..].starts_with(b"false") => i += 5,
            b'n' if b[i..].starts_with(b"null") => i += 4,
            b'-' | b'0'..=b'9' => {
                if !number(b, &mut i) {
                    return false;
                }
            }
            _ => return false,
        }
        // A value ended: close containers or move to the next member.
        loop {
            ws(&mut i);
            match stack.last().copied() {
                None => return i == b.len(),
                Some(frame) => {
                    if i >= b.len() {
                        return false;
                    }
                    match (frame, b[i]) {
                        (_, b',') => {
                            i += 1;
                            if frame == Frame::Object {
                                ws(&mut i);
                                if !string(b, &mut i) {
                                    return false;
                                }
                                ws(&mut i);
                                if i >= b.len() || b[i] != b':' {
                                    return false;
                                }
                                i += 1;
                            }
                            continue 'value;
                        }
                        (Frame::Array, b']') | (Frame::Object, b'}') => {
                            i += 1;
                            stack.pop();
                        }
                        _ => return false,
                    }
                }
            }
        }
    }
}

fn string(b: &[u8], i: &mut usize) -> bool {
    if *i >= b.len() || b[*i] != b'"' {
        return false;
    }
    *i += 1;
    while *i < b.len() {
        match b[*i] {
            b'"' => {
                *i += 1;
                return true;
            }
            b'\\' => {
                *i += 1;
                match b.get(*i) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => *i += 1,
                    Some(b'u') => {
                        if b.len() < *i + 5 || !b[*i + 1..*i + 5].iter().all(u8::is_ascii_hexdigit) {
                            return false;
                        }
                        *i += 5;
                    }
                    _ => return false,
                }
            }
            0x00..=0x1f => return false,
            _ => *i += 1,
        }
    }
    false
}

fn number(b: &[u8], i: &mut usize) -> bool {
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if b[*i] == b'-' {
        *i += 1;
    }
    match b.get(*i) {
        Some(b'0') => *i += 1,
        Some(b'1'..=b'9') => {
            digits(i);
        }
        _ => return false,
    }
    if b.get(*i) == Some(&b'.') {
        *i += 1;
        if !digits(i) {
            return false;
        }
    }
    if matches!(b.get(*i), Some(b'e' | b'E')) {
        *i += 1;
        if matches!(b.get(*i), Some(b'+' | b'-')) {
            *i += 1;
        }
        if !digits(i) {
            return false;
        }
    }
    true
}
