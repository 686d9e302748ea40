//! The JavaScript-socket transport on the JavaScript thread: registering a socket, its
//! event listeners, carrying out what the core decided for a client message, and the
//! health check's pings and terminations.
//!
//! A socket's listeners are JavaScript closures (`lib/fanout.js`) that call the manager's
//! [`socket_hooks`]; those hold [`Shared`] weakly: a socket never keeps a discarded
//! manager alive.

use std::cell::{OnceCell, RefCell};
use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::{FunctionCallContext, Unknown};
use napi::{Env, JsValue};
use tracing::{error, warn};

use super::error::{self, ErrorKind};
use super::js::{Js, Raw};
use super::js_socket::{self, JsSockets, Sent};
use super::json::Stringify;
use super::lifetime::{KeepAlive, Waker};
use crate::handshake::HandshakePolicy;
use crate::manager::{Change, Handled, Manager};
use crate::registry::RecordKey;

/// JavaScript-thread state shared by the manager and the listeners it installs on sockets.
pub(super) struct Shared {
    pub(super) core: Arc<Manager>,
    pub(super) sockets: JsSockets,
    pub(super) stringify: Stringify,
    /// Set by the runtime's timer when a tick for JavaScript sockets is due; ticks that
    /// come while one is pending (a blocked event loop) collapse into it.
    pub(super) health_due: Arc<AtomicBool>,
    /// The application's request handlers.
    pub(super) handlers: super::requests::Handlers,
    /// Wakes this thread from the runtime.
    pub(super) waker: RefCell<Option<Arc<Waker>>>,
    pub(super) keep_alive: KeepAlive,
    /// Origin, Host and token rules for every listener and attachment; each sets its path.
    pub(super) policy: HandshakePolicy,
    pub(super) attachments: RefCell<Vec<super::native_transport::Attachment>>,
    /// The manager's own JavaScript object while it listens or is attached, so a server
    /// nobody references is not collected (and torn down) by the garbage collector.
    pub(super) pinned: RefCell<Option<super::js::JsRef>>,
    /// Methods that already logged that they were called after shutdown.
    pub(super) warned_after_shutdown: RefCell<HashSet<&'static str>>,
    /// `shutdown()`'s promise, returned again by later calls.
    pub(super) shutdown_promise: RefCell<Option<super::js::JsRef>>,
    /// Shuts the core down if the environment ends first (a terminated worker).
    pub(super) teardown: RefCell<Option<super::lifetime::EnvTeardown>>,
}

/// The manager's handlers of its JavaScript sockets' events, the object `{ pong, close,
/// error, message }` that the listeners installed by `track` (`lib/fanout.js`) call with the
/// socket's record key (`error` with its id). One set per manager, whatever the number of
/// sockets. `shared` is filled in once the manager's state exists; the hooks hold it weakly,
/// so a socket never keeps a discarded manager alive, and do nothing without it.
pub(super) fn socket_hooks(env: &Env, shared: &Rc<OnceCell<Weak<Shared>>>) -> napi::Result<Raw> {
    fn record_key(ctx: &FunctionCallContext) -> RecordKey {
        let js = Js::new(ctx.env);
        ctx.get::<Unknown>(0)
            .ok()
            .and_then(|key| js.number(key.raw()))
            .filter(|key| key.is_finite() && *key >= 1.0)
            .map_or(RecordKey::NONE, |key| RecordKey::from_u64(key as u64))
    }
    fn live(shared: &OnceCell<Weak<Shared>>) -> Option<Rc<Shared>> {
        shared.get().and_then(Weak::upgrade)
    }
    let js = Js::new(env);
    let hooks = js.create_object()?;

    let on_pong = {
        let shared = Rc::clone(shared);
        env.create_function_from_closure::<(), (), _>("clusoPong", move |ctx| {
            guarded("pong", || {
                if let Some(shared) = live(&shared) {
                    shared.on_pong(record_key(&ctx));
                }
            });
            Ok(())
        })?
    };
    js.set(hooks, c"pong", on_pong.raw())?;

    let on_close = {
        let shared = Rc::clone(shared);
        env.create_function_from_closure::<(), (), _>("clusoClose", move |ctx| {
            guarded("close", || {
                if let Some(shared) = live(&shared) {
                    shared.on_close(Js::new(ctx.env), record_key(&ctx));
                }
            });
            Ok(())
        })?
    };
    js.set(hooks, c"close", on_close.raw())?;

    let on_error = env.create_function_from_closure::<(), (), _>("clusoError", |ctx| {
        guarded("error", || {
            let (id, reason) = super::js_fanout::id_and_error(&ctx);
            warn!(conn_id = id.as_deref(), reason, "socket error");
        });
        Ok(())
    })?;
    js.set(hooks, c"error", on_error.raw())?;

    let on_message = {
        let shared = Rc::clone(shared);
        env.create_function_from_closure::<(), (), _>("clusoMessage", move |ctx| {
            guarded("message", || {
                let Some(shared) = live(&shared) else {
                    return;
                };
                let js = Js::new(ctx.env);
                let data = ctx
                    .get::<Unknown>(1)
                    .map_or_else(|_| js.undefined(), |d| d.raw());
                shared.on_message(ctx.env, record_key(&ctx), data);
            });
            Ok(())
        })?
    };
    js.set(hooks, c"message", on_message.raw())?;
    Ok(hooks)
}

/// Runs a listener body, keeping a panic inside the addon.
pub(super) fn guarded(what: &str, body: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        error!(
            listener = what,
            "internal error in a socket listener (contained)"
        );
    }
}

impl Shared {
    /// Whether `method` may act: after shutdown it logs once and does nothing, as the
    /// original module's methods did.
    pub(super) fn running(&self, method: &'static str) -> bool {
        if self.core.is_running() {
            return true;
        }
        if self.warned_after_shutdown.borrow_mut().insert(method) {
            warn!(method, "WebSocketManager is shut down; call ignored");
        }
        false
    }

    /// Sends `text` to the JavaScript socket of `key`; logs why not.
    pub(super) fn send_text(&self, js: Js, key: RecordKey, text: &str) -> napi::Result<bool> {
        let Some(ws) = self.sockets.ws(js, key) else {
            return Ok(false);
        };
        let raw = js.create_string(text)?;
        Ok(match js_socket::send(js, ws, raw) {
            Sent::Ok => {
                self.core.stats().record_sent(1, text.len() as u64);
                true
            }
            Sent::NotOpen => {
                warn!(conn_id = self.sockets.id(key).as_deref(), "socket not open");
                false
            }
            Sent::Failed(reason) => {
                warn!(
                    conn_id = self.sockets.id(key).as_deref(),
                    reason, "send failed"
                );
                self.core.stats().record_send_failures(1);
                false
            }
        })
    }

    /// Drops the records of the JavaScript sockets a broadcast cut as slow consumers
    /// (`cut`: their record keys, already closed with 4008 by the fan-out loop); returns
    /// how many.
    pub(super) fn drop_slow_consumers(&self, cut: &[u64]) -> u64 {
        if cut.is_empty() {
            return 0;
        }
        let registered = self.sockets.take_cut(cut);
        self.core.slow_consumers_cut(&registered, cut.len());
        cut.len() as u64
    }

    /// Mirrors a subscription change into the JavaScript fan-out index.
    pub(super) fn apply_change(&self, js: Js, key: RecordKey, change: &Change) {
        let changed = match change {
            Change::Subscribed(channel) => self.sockets.subscribed(js, key, channel),
            Change::Unsubscribed(channel) => self.sockets.unsubscribed(js, key, channel),
        };
        if let Err(error) = changed {
            warn!(%error, "fan-out index not updated");
        }
    }

    /// Registers `ws` under `id` and installs its `pong` / `close` / `error` listeners and,
    /// with `protocol` (`handleConnection`), its `message` listener, which answers the
    /// client protocol.
    pub(super) fn register(
        self: &Rc<Self>,
        env: &Env,
        ws: Raw,
        id: &str,
        protocol: bool,
    ) -> napi::Result<RecordKey> {
        let js = Js::new(env);
        let has_on = js.is_object(ws)
            && js
                .get(ws, super::js::names::ON)
                .is_ok_and(|on| js.type_of(on) == napi::sys::ValueType::napi_function);
        if !has_on {
            return Err(error::throw(
                env,
                ErrorKind::TypeError,
                "ws must be a WebSocket-like object with on(), send() and readyState",
                error::codes::INVALID_SOCKET,
            ));
        }
        let reference = js.create_reference(ws)?;
        let (key, id, replaced) = self.core.add_js_connection(id);
        if let Some(old) = replaced {
            drop(self.sockets.take(js, old));
        }
        self.sockets.insert(key, Arc::clone(&id), reference);
        let installed = self.sockets.fanout().track(js, ws, key, &id, protocol);
        if installed.is_err() {
            self.core.connection_closed(&id, key);
            drop(self.sockets.take(js, key));
        }
        installed.map(|()| key)
    }

    /// A socket answered a ping.
    fn on_pong(&self, key: RecordKey) {
        if let Some(id) = self.sockets.id(key) {
            self.core.mark_alive(&id, key);
        }
    }

    /// A socket closed: its record leaves, unless it was already forgotten or replaced.
    fn on_close(&self, js: Js, key: RecordKey) {
        if let Some(id) = self.sockets.id(key) {
            self.core.connection_closed(&id, key);
            drop(self.sockets.take(js, key));
        }
    }

    /// A client message on a socket adopted with `handleConnection`.
    fn on_message(self: &Rc<Self>, env: &Env, key: RecordKey, data: Raw) {
        let js = Js::new(env);
        let text = js_socket::message_text(js, data);
        let core = &self.core;
        let checked = self.sockets.rate_check(key, |id, bucket| {
            (Arc::clone(id), core.handle_message(id, bucket, &text))
        });
        if let Some((id, handled)) = checked {
            self.carry_out(env, &id, key, handled);
        }
    }

    /// Does what the core decided for one message of a JavaScript socket (or, for a
    /// handler call, of any connection).
    fn carry_out(self: &Rc<Self>, env: &Env, id: &Arc<str>, key: RecordKey, handled: Handled) {
        let js = Js::new(env);
        match handled {
            Handled::Reply(reply) => self.reply(js, id, key, &reply),
            Handled::Changed {
                reply,
                change,
                replay,
            } => {
                self.apply_change(js, key, &change);
                self.reply(js, id, key, &reply);
                for event in replay {
                    self.reply(js, id, key, &event);
                }
            }
            Handled::Invoke(invocation) => self.run_invocation(env, invocation),
            Handled::Nothing | Handled::Dropped => {}
            Handled::Close(code) => {
                if let Some(ws) = self.sockets.ws(js, key) {
                    if let Err(reason) = js_socket::close_with(js, ws, code) {
                        warn!(conn_id = &**id, reason, "close failed");
                    }
                }
            }
            Handled::Mirror(change) => self.apply_change(js, key, &change),
            Handled::Broadcast {
                channel,
                text,
                targets,
            } => self.fan_out(js, &channel, &text, targets),
            Handled::Authorize(pending) => {
                // The decision is the core's, on the runtime; its result comes back to
                // this thread through the waker, keyed by record — no JavaScript value is
                // held while it is pending.
                self.core.authorize_for_js(Arc::clone(id), key, pending);
            }
        }
    }

    /// Cluster mode: an event that came back from Redis, to this channel's JavaScript
    /// sockets (the fan-out's `sendAll`, as a local broadcast does).
    fn fan_out(
        &self,
        js: Js,
        channel: &str,
        text: &str,
        targets: crate::manager::BroadcastTargets,
    ) {
        let (Ok(key), Ok(raw)) = (js.create_string(channel), js.create_string(text)) else {
            warn!(channel, "cluster event not delivered to JavaScript sockets");
            return;
        };
        let fanned = self.sockets.fanout().send_all(js, key, raw);
        let cut = self.drop_slow_consumers(&fanned.cut);
        self.core
            .record_delivery(channel, targets, fanned.failed, cut, text.len() as u64);
    }

    fn reply(&self, js: Js, id: &str, key: RecordKey, reply: &str) {
        if let Err(error) = self.send_text(js, key, reply) {
            warn!(conn_id = id, %error, "reply not sent");
        }
    }

    /// Runs on the JavaScript thread whenever a runtime task wakes it.
    pub(super) fn on_wake(self: &Rc<Self>, env: &Env) {
        for delivery in self.core.take_js_deliveries() {
            self.carry_out(env, &delivery.id, delivery.key, delivery.handled);
        }
        self.run_health_work(Js::new(env));
        self.reconcile_keep_alive(env);
    }

    /// Holds the process open exactly while native resources are live.
    pub(super) fn reconcile_keep_alive(&self, env: &Env) {
        if let Err(error) = self.keep_alive.hold(env, self.core.active() > 0) {
            warn!(%error, "cannot change the keep-alive timer");
        }
    }

    /// Runs a due health-check tick for the JavaScript sockets.
    fn run_health_work(&self, js: Js) {
        if !self.health_due.swap(false, Ordering::AcqRel) {
            return;
        }
        let work = self.core.health_tick_js();
        for dead in work.dead {
            if let Some(ws) = self.sockets.take(js, dead.key) {
                if let Err(reason) = js_socket::terminate(js, ws.value(js)) {
                    warn!(conn_id = &*dead.id, reason, "terminate failed");
                }
            }
        }
        for live in work.to_ping {
            let Some(ws) = self.sockets.ws(js, live.key) else {
                continue;
            };
            if let Err(reason) = js_socket::ping(js, ws) {
                warn!(conn_id = &*live.id, reason, "ping failed");
                self.core.ping_failed(&live.id, live.key);
                if let Some(ws) = self.sockets.take(js, live.key) {
                    let _ = js_socket::terminate(js, ws.value(js));
                }
            }
        }
    }

    /// Closes a JavaScript socket the manager no longer keeps, if it is open.
    pub(super) fn close_socket(&self, js: Js, id: &str, key: RecordKey) {
        if let Some(ws) = self.sockets.take(js, key) {
            let ws = ws.value(js);
            if js_socket::is_open(js, ws) {
                if let Err(reason) = js_socket::close(js, ws) {
                    warn!(conn_id = id, reason, "close failed");
                }
            }
        }
    }
}
