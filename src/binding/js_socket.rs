//! The JavaScript-socket transport: WebSocket-like objects (the `ws` package's WebSocket,
//! or any EventEmitter-style mock with `send` and `readyState`, and optionally `ping`,
//! `close`, `terminate`) that the app hands to `addConnection` / `handleConnection`.
//!
//! The registry records these connections as [`Transport::Js`](crate::registry::Transport);
//! the objects themselves live here, keyed by record, because they may only be touched on
//! the JavaScript thread.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::CStr;

use napi::Env;

use super::js::{names, Called, Js, JsRef, Raw};
use super::js_fanout::JsFanOut;
use crate::rate::TokenBucket;
use crate::registry::{ConnectionId, RecordKey};

/// `WebSocket.OPEN`.
const OPEN: f64 = 1.0;

struct JsSocket {
    ws: JsRef,
    id: ConnectionId,
    /// Inbound message rate of a socket adopted with `handleConnection`.
    bucket: Option<TokenBucket>,
}

/// How one send to a JavaScript socket ended.
pub enum Sent {
    Ok,
    NotOpen,
    Failed(String),
}

/// The JavaScript sockets of one manager, and the JavaScript-side index of their
/// subscriptions that broadcasts loop over. Every change to a JavaScript socket's record or
/// subscriptions passes through here, which keeps the two in step.
pub struct JsSockets {
    sockets: RefCell<HashMap<RecordKey, JsSocket>>,
    fanout: JsFanOut,
}

impl JsSockets {
    /// `max_buffered_bytes`: the slow-consumer cap broadcasts apply; `hooks`: what the
    /// sockets' listeners call (see [`JsFanOut`]).
    pub fn new(env: &Env, max_buffered_bytes: usize, hooks: Raw) -> napi::Result<Self> {
        Ok(Self {
            sockets: RefCell::default(),
            fanout: JsFanOut::new(env, max_buffered_bytes, hooks)?,
        })
    }

    pub fn fanout(&self) -> &JsFanOut {
        &self.fanout
    }

    /// A socket joined `channel`.
    pub fn subscribed(&self, js: Js, key: RecordKey, channel: &str) -> napi::Result<()> {
        let socket = {
            let sockets = self.sockets.borrow();
            sockets.get(&key).map(|s| (s.ws.value(js), s.id.clone()))
        };
        match socket {
            Some((ws, id)) => self.fanout.add(js, channel, key, ws, &id),
            None => Ok(()),
        }
    }

    /// A socket left `channel`.
    pub fn unsubscribed(&self, js: Js, key: RecordKey, channel: &str) -> napi::Result<()> {
        self.fanout.remove(js, channel, key)
    }

    pub fn insert(&self, key: RecordKey, id: ConnectionId, ws: JsRef) {
        let socket = JsSocket {
            ws,
            id,
            bucket: None,
        };
        self.sockets.borrow_mut().insert(key, socket);
    }

    /// Gives the socket of `key` a rate limiter (or none).
    pub fn set_rate_limiter(&self, key: RecordKey, bucket: Option<TokenBucket>) {
        if let Some(socket) = self.sockets.borrow_mut().get_mut(&key) {
            socket.bucket = bucket;
        }
    }

    /// Runs `check` on the socket's id and rate limiter; `None` for a socket no longer held.
    pub fn rate_check<R>(
        &self,
        key: RecordKey,
        check: impl FnOnce(&ConnectionId, &mut Option<TokenBucket>) -> R,
    ) -> Option<R> {
        self.sockets
            .borrow_mut()
            .get_mut(&key)
            .map(|socket| check(&socket.id, &mut socket.bucket))
    }

    /// Forgets a socket and its subscriptions, handing back its object (still referenced
    /// until dropped).
    pub fn take(&self, js: Js, key: RecordKey) -> Option<JsRef> {
        let socket = self.sockets.borrow_mut().remove(&key)?;
        self.fanout.forget(js, key);
        Some(socket.ws)
    }

    /// Forgets the sockets a broadcast cut as slow consumers (the fan-out has already closed
    /// them and dropped them from its index), handing back the key and id of each one still
    /// held. `cut` holds record keys as [`RecordKey::as_u64`] gives them.
    pub fn take_cut(&self, cut: &[u64]) -> Vec<(RecordKey, ConnectionId)> {
        let cut: HashSet<u64> = cut.iter().copied().collect();
        let mut sockets = self.sockets.borrow_mut();
        let keys: Vec<RecordKey> = sockets
            .keys()
            .copied()
            .filter(|key| cut.contains(&key.as_u64()))
            .collect();
        keys.into_iter()
            .filter_map(|key| sockets.remove(&key).map(|socket| (key, socket.id)))
            .collect()
    }

    /// Forgets every socket.
    pub fn take_all(&self, js: Js) -> Vec<JsRef> {
        self.fanout.clear(js);
        self.sockets
            .borrow_mut()
            .drain()
            .map(|(_, socket)| socket.ws)
            .collect()
    }

    /// The socket object of a record. The borrow ends before any JavaScript runs, so a
    /// socket method that calls back into the manager cannot collide with it.
    pub fn ws(&self, js: Js, key: RecordKey) -> Option<Raw> {
        self.sockets
            .borrow()
            .get(&key)
            .map(|socket| socket.ws.value(js))
    }

    pub fn id(&self, key: RecordKey) -> Option<ConnectionId> {
        self.sockets
            .borrow()
            .get(&key)
            .map(|socket| socket.id.clone())
    }
}

pub fn is_open(js: Js, ws: Raw) -> bool {
    js.get(ws, names::READY_STATE)
        .ok()
        .and_then(|state| js.number(state))
        == Some(OPEN)
}

/// `ws.send(text)` if the socket is open.
pub fn send(js: Js, ws: Raw, text: Raw) -> Sent {
    if !is_open(js, ws) {
        return Sent::NotOpen;
    }
    match js.call_method(ws, names::SEND, &[text]) {
        Some(Called::Returned(_)) => Sent::Ok,
        Some(Called::Threw(error)) => Sent::Failed(js.describe(error)),
        None => Sent::Failed(String::from("socket has no send() method")),
    }
}

/// Calls an optional method; `Err` with a description when it throws.
fn call_optional(js: Js, ws: Raw, method: &CStr) -> Result<bool, String> {
    match js.call_method(ws, method, &[]) {
        Some(Called::Returned(_)) => Ok(true),
        Some(Called::Threw(error)) => Err(js.describe(error)),
        None => Ok(false),
    }
}

/// `ws.close()`.
pub fn close(js: Js, ws: Raw) -> Result<(), String> {
    call_optional(js, ws, names::CLOSE).map(drop)
}

/// `ws.close(code)`.
pub fn close_with(js: Js, ws: Raw, code: u16) -> Result<(), String> {
    let code = js.create_double(f64::from(code));
    match js.call_method(ws, names::CLOSE, &[code]) {
        Some(Called::Threw(error)) => Err(js.describe(error)),
        _ => Ok(()),
    }
}

/// Ends a dead peer without a closing handshake: `terminate()` where the socket has it,
/// else `close()`.
pub fn terminate(js: Js, ws: Raw) -> Result<(), String> {
    if call_optional(js, ws, names::TERMINATE)? {
        return Ok(());
    }
    close(js, ws)
}

/// `ws.ping()`. A socket without `ping` fails like one whose `ping` throws, as in the
/// original (`ws.ping is not a function`).
pub fn ping(js: Js, ws: Raw) -> Result<(), String> {
    match call_optional(js, ws, names::PING)? {
        true => Ok(()),
        false => Err(String::from("socket has no ping() method")),
    }
}

/// The text of a `'message'` payload: a string, a Buffer (or any typed array), an
/// ArrayBuffer, or an array of Buffers (fragments), decoded as UTF-8 the way
/// `Buffer.toString()` decodes (invalid sequences become U+FFFD).
pub fn message_text(js: Js, data: Raw) -> String {
    if let Some(text) = js.string(data) {
        return text;
    }
    if let Some(bytes) = js.bytes(data) {
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    if let Some(parts) = js.array_items(data) {
        let mut bytes = Vec::new();
        for part in parts {
            match js.bytes(part) {
                Some(part) => bytes.extend_from_slice(&part),
                None => bytes.extend_from_slice(js.describe(part).as_bytes()),
            }
        }
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    js.describe(data)
}
