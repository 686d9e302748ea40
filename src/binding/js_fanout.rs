//! Broadcasting to JavaScript sockets without crossing into JavaScript per subscriber.
//!
//! A call from Rust into JavaScript costs far more than a JIT-compiled loop iteration, so
//! the per-subscriber loop for JavaScript sockets runs in JavaScript (`lib/fanout.js`). The
//! binding keeps that module's channel → sockets index in step with the registry (on every
//! subscription change of a JavaScript socket, all of which happen on this thread) and
//! calls it once per broadcast. The envelope is built there too, with the original
//! module's own `JSON.stringify` call, so its bytes are the original's by construction.
//! The loop also applies `maxBufferedBytesPerConnection`: a socket whose `bufferedAmount`
//! is over it is closed with 4008 there and handed back as cut.
//!
//! A socket's event listeners are made there too (`track`): plain JavaScript closures that
//! call the manager's one set of native hooks with the socket's record key. A native
//! function per socket and event cost about 2 KB of V8 heap and 1 KB of native memory per
//! socket, more than the original module spent on a whole connection.

use napi::bindgen_prelude::{FunctionCallContext, Unknown};
use napi::{Env, JsValue};
use tracing::warn;

use super::helpers;
use super::js::{Called, Js, JsRef, Raw};
use crate::registry::RecordKey;

/// How a broadcast to the JavaScript subscribers of a channel went.
#[derive(Debug, Default)]
pub struct Fanned {
    /// Subscribers not sent to: not open, or `send` threw.
    pub failed: u64,
    /// Record keys (as numbers) of the subscribers cut as slow consumers: already closed
    /// with 4008 and dropped from the fan-out index.
    pub cut: Vec<u64>,
}

/// The fan-out's functions, held for the life of the manager.
pub struct JsFanOut {
    glue: JsRef,
    envelope: JsRef,
    add: JsRef,
    remove: JsRef,
    forget: JsRef,
    clear: JsRef,
    send_all: JsRef,
    track: JsRef,
}

/// The arguments `(id, error)` of the module's error callbacks: the connection id (when it
/// is a string) and a description of the error.
pub(super) fn id_and_error(ctx: &FunctionCallContext) -> (Option<String>, String) {
    let js = Js::new(ctx.env);
    let id = ctx.get::<Unknown>(0).ok().and_then(|v| js.string(v.raw()));
    let reason = ctx
        .get::<Unknown>(1)
        .map(|e| js.describe(e.raw()))
        .unwrap_or_default();
    (id, reason)
}

fn key_value(js: Js, key: RecordKey) -> Raw {
    // Record keys count up from 1 and stay far below 2^53.
    js.create_double(key.as_u64() as f64)
}

impl JsFanOut {
    /// `max_buffered_bytes`: a socket whose `bufferedAmount` exceeds it when a broadcast
    /// reaches it is cut as a slow consumer. `hooks`: the object `{ pong, close, error,
    /// message }` of functions that the listeners installed by [`JsFanOut::track`] call.
    pub fn new(env: &Env, max_buffered_bytes: usize, hooks: Raw) -> napi::Result<Self> {
        let js = Js::new(env);
        let on_send_error = env.create_function_from_closure::<(), (), _>(
            "clusoSendError",
            |ctx: FunctionCallContext| {
                let (id, reason) = id_and_error(&ctx);
                warn!(conn_id = id.as_deref(), reason, "broadcast send failed");
                Ok(())
            },
        )?;
        let factory = helpers::create_js_fan_out(env)?;
        let options = js.create_object()?;
        js.set(
            options,
            c"maxBufferedBytes",
            js.create_double(max_buffered_bytes as f64),
        )?;
        js.set(options, c"hooks", hooks)?;
        let glue = match js.call(js.undefined(), factory, &[on_send_error.raw(), options]) {
            Called::Returned(glue) => glue,
            Called::Threw(thrown) => return Err(js.rethrow(thrown)),
        };
        let method = |name: &std::ffi::CStr| -> napi::Result<JsRef> {
            let function = js
                .get(glue, name)
                .map_err(|_| napi::Error::from_reason("the fan-out module is incomplete"))?;
            js.create_reference(function)
        };
        Ok(Self {
            envelope: method(c"envelope")?,
            add: method(c"add")?,
            remove: method(c"remove")?,
            forget: method(c"forget")?,
            clear: method(c"clear")?,
            send_all: method(c"sendAll")?,
            track: method(c"track")?,
            glue: js.create_reference(glue)?,
        })
    }

    fn call(&self, js: Js, function: &JsRef, args: &[Raw]) -> Result<Raw, Raw> {
        match js.call(self.glue.value(js), function.value(js), args) {
            Called::Returned(value) => Ok(value),
            Called::Threw(thrown) => Err(thrown),
        }
    }

    /// The bookkeeping calls cannot throw; a failure would mean a broken environment, so
    /// it is logged rather than surfaced.
    fn call_quietly(&self, js: Js, function: &JsRef, args: &[Raw]) {
        if let Err(thrown) = self.call(js, function, args) {
            warn!(error = js.describe(thrown), "fan-out index update failed");
        }
    }

    /// `JSON.stringify({ type: 'event', channel, data, timestamp })`; rethrows what it
    /// throws (a cycle, a BigInt).
    pub fn envelope(&self, js: Js, channel: Raw, data: Raw, timestamp: Raw) -> napi::Result<Raw> {
        self.call(js, &self.envelope, &[channel, data, timestamp])
            .map_err(|thrown| js.rethrow(thrown))
    }

    /// Installs the listeners of a socket: `pong`, `close`, `error` and, with `protocol`,
    /// `message`. Rethrows what the socket's `on()` throws.
    pub fn track(
        &self,
        js: Js,
        ws: Raw,
        key: RecordKey,
        id: &str,
        protocol: bool,
    ) -> napi::Result<()> {
        let args = [
            ws,
            key_value(js, key),
            js.create_string(id)?,
            js.bool(protocol),
        ];
        self.call(js, &self.track, &args)
            .map(drop)
            .map_err(|thrown| js.rethrow(thrown))
    }

    pub fn add(
        &self,
        js: Js,
        channel: &str,
        key: RecordKey,
        ws: Raw,
        id: &str,
    ) -> napi::Result<()> {
        let args = [
            js.create_string(channel)?,
            key_value(js, key),
            ws,
            js.create_string(id)?,
        ];
        self.call_quietly(js, &self.add, &args);
        Ok(())
    }

    pub fn remove(&self, js: Js, channel: &str, key: RecordKey) -> napi::Result<()> {
        let args = [js.create_string(channel)?, key_value(js, key)];
        self.call_quietly(js, &self.remove, &args);
        Ok(())
    }

    /// Drops a socket from every channel.
    pub fn forget(&self, js: Js, key: RecordKey) {
        self.call_quietly(js, &self.forget, &[key_value(js, key)]);
    }

    pub fn clear(&self, js: Js) {
        self.call_quietly(js, &self.clear, &[]);
    }

    /// Sends `text` to every JavaScript subscriber of `channel`: how many failed, and which
    /// were cut as slow consumers.
    pub fn send_all(&self, js: Js, channel: Raw, text: Raw) -> Fanned {
        match self.call(js, &self.send_all, &[channel, text]) {
            Ok(result) => fanned(js, result),
            Err(thrown) => {
                warn!(
                    error = js.describe(thrown),
                    "broadcast to JavaScript sockets failed"
                );
                Fanned::default()
            }
        }
    }
}

/// Reads what `sendAll` returned: a number of failures, or `{ failed, cut: [keys] }`.
fn fanned(js: Js, result: Raw) -> Fanned {
    let count = |value: Raw| js.number(value).map_or(0, |n| n as u64);
    if let Some(failed) = js.number(result) {
        return Fanned {
            failed: failed as u64,
            cut: Vec::new(),
        };
    }
    let failed = js.get(result, c"failed").map_or(0, count);
    let cut = js
        .get(result, c"cut")
        .ok()
        .and_then(|cut| js.array_items(cut))
        .unwrap_or_default()
        .into_iter()
        .map(count)
        .collect();
    Fanned { failed, cut }
}
