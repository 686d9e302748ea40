//! `WebSocketManager`: the drop-in class (SPEC A.1), a handle over a core [`Hub`].
//!
//! Every method converts its arguments, delegates to the hub, and talks to JavaScript
//! sockets through [`js_socket`]. Methods take `&self`: a socket's `send` may call back
//! into the manager, so all state is behind short-lived interior borrows.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{Function, FunctionCallContext, JavaScriptClassExt, Unknown};
use napi::{Env, JsValue, Status};
use napi_derive::napi;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::{debug, error, info, warn};

use super::error::{self, ErrorKind};
use super::gate::JsGate;
use super::js::{Js, Raw};
use super::js_fanout::Fanned;
use super::js_socket::{self, JsSockets, Sent};
use super::json::Stringify;
use super::lifetime::{KeepAlive, Waker};
use super::native::{Attachment, NativeSocket};
use super::options::ManagerOptions;
use crate::envelope;
use crate::handshake::HandshakePolicy;
use crate::hub::{Change, Handled, Hub};
use crate::outbox::CloseReason;
use crate::protocol;
use crate::registry::{RecordKey, SubscribeOutcome, Transport};
use crate::runtime;

/// JavaScript-thread state shared by the manager and the listeners it installs on sockets.
/// Listeners hold it weakly: a socket never keeps a discarded manager alive.
pub(super) struct Shared {
    pub(super) hub: Arc<Hub>,
    sockets: JsSockets,
    stringify: Stringify,
    /// Set by the runtime's timer when a tick for JavaScript sockets is due; ticks that
    /// come while one is pending (a blocked event loop) collapse into it.
    health_due: Arc<AtomicBool>,
    /// Wakes this thread from the runtime; set once, right after construction.
    waker: RefCell<Option<Arc<Waker>>>,
    keep_alive: KeepAlive,
    /// Origin, Host and token rules for every listener and attachment; each sets its path.
    pub(super) policy: HandshakePolicy,
    pub(super) attachments: RefCell<Vec<Attachment>>,
    /// The manager's own JavaScript object while it listens or is attached, so a server
    /// nobody references is not collected (and torn down) by the garbage collector.
    pub(super) pinned: RefCell<Option<super::js::JsRef>>,
    /// The application's `authenticate` / `authorizeSubscribe`, when it set either.
    gate: Option<Arc<JsGate>>,
}

/// Manages WebSocket connections, their channel subscriptions, and broadcasting.
///
/// Drop-in for the original TypeScript `WebSocketManager`: accepts any WebSocket-like
/// object (`ws` package sockets or mocks) through `addConnection` / `handleConnection`.
#[napi]
pub struct WebSocketManager {
    pub(super) shared: Rc<Shared>,
    health_task: RefCell<Option<JoinHandle<()>>>,
}

/// Counters and gauges of a manager, as returned by `getStats()`.
#[napi(object)]
pub struct ManagerStats {
    /// Open connections of both transports.
    pub connections: f64,
    /// Connections whose socket is a JavaScript object (`addConnection`).
    pub js_connections: f64,
    /// Connections whose socket is owned by the native core (`listen`, `attach`).
    pub native_connections: f64,
    /// Channels with at least one subscriber.
    pub channels: f64,
    /// Connection–channel pairs.
    pub subscriptions: f64,
    /// `broadcast()` calls.
    pub broadcasts: f64,
    /// Messages handed to sockets (one per subscriber per broadcast, plus replies).
    pub messages_sent: f64,
    /// Bytes of those messages.
    pub bytes_sent: f64,
    /// Sends that failed: socket not open, or `send` threw.
    pub send_failures: f64,
    /// Subscribers disconnected for crossing `maxBufferedBytesPerConnection`.
    pub slow_consumer_disconnects: f64,
    /// Upgrade requests refused.
    pub rejected_handshakes: f64,
    /// Peers removed by the health check.
    pub dead_peers_removed: f64,
    /// The most bytes any one native connection has queued right now. A producer can pace
    /// itself on it: keep it well under `maxBufferedBytesPerConnection`. Computing it takes a
    /// pass over the native connections, so poll it per burst of broadcasts, not per call.
    pub max_queued_bytes: f64,
    /// Broadcasts waiting for the fan-out task.
    pub pending_broadcasts: f64,
}

/// Runs a listener body, keeping a panic inside the addon.
fn guarded(what: &str, body: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        error!(
            listener = what,
            "internal error in a socket listener (contained)"
        );
    }
}

impl Shared {
    /// Sends `text` to the JavaScript socket of `key`; logs why not.
    fn send_text(&self, js: Js, key: RecordKey, text: &str) -> napi::Result<bool> {
        let Some(ws) = self.sockets.ws(js, key) else {
            return Ok(false);
        };
        let raw = js.create_string(text)?;
        Ok(match js_socket::send(js, ws, raw) {
            Sent::Ok => {
                self.hub.stats().record_sent(1, text.len() as u64);
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
                self.hub.stats().record_send_failures(1);
                false
            }
        })
    }

    /// The record of `id` leaves the registry because its socket closed.
    fn on_close(&self, js: Js, id: &str, key: RecordKey) {
        if self.hub.write().remove_record(id, key).is_some() {
            info!(conn_id = id, "connection closed");
        }
        drop(self.sockets.take(js, key));
    }

    /// Drops the records of the JavaScript sockets a broadcast cut as slow consumers
    /// (`cut`: their record keys, already closed with 4008 by the fan-out) and counts them;
    /// returns how many were cut.
    fn drop_slow_consumers(&self, cut: &[u64]) -> u64 {
        for (key, id) in self.sockets.take_cut(cut) {
            self.hub.write().remove_record(&id, key);
            warn!(conn_id = &*id, "slow consumer disconnected");
        }
        for _ in cut {
            self.hub.stats().record_slow_consumer();
        }
        cut.len() as u64
    }

    /// A subscription change the server makes: after every queued broadcast, in the
    /// registry, and — for a JavaScript socket, when `apply` changed something — in the
    /// JavaScript fan-out index.
    fn change_subscription(
        &self,
        env: &Env,
        id: &str,
        change: Change,
        apply: impl FnOnce(&mut crate::registry::Registry, &str, &str) -> bool,
    ) {
        self.hub.flush_fanout();
        let channel = match &change {
            Change::Subscribed(channel) | Change::Unsubscribed(channel) => channel.as_str(),
        };
        let js_key = {
            let mut registry = self.hub.write();
            let changed = apply(&mut registry, id, channel);
            registry
                .get(id)
                .filter(|c| changed && !c.transport.is_native())
                .map(|c| c.key)
        };
        if let Some(key) = js_key {
            self.apply_change(Js::new(env), key, &change);
        }
    }

    /// Mirrors a client's subscription change into the JavaScript fan-out index.
    fn apply_change(&self, js: Js, key: RecordKey, change: &Change) {
        let changed = match change {
            Change::Subscribed(channel) => self.sockets.subscribed(js, key, channel),
            Change::Unsubscribed(channel) => self.sockets.unsubscribed(js, key, channel),
        };
        if let Err(error) = changed {
            warn!(%error, "fan-out index not updated");
        }
    }

    fn on_message(self: Rc<Self>, env: &Env, id: &str, key: RecordKey, data: Raw) {
        let js = Js::new(env);
        let text = js_socket::message_text(js, data);
        let limited = self
            .sockets
            .rate_check(key, |bucket| self.hub.rate_check(id, bucket))
            .unwrap_or(Handled::Nothing);
        let handled = match limited {
            Handled::Nothing => self.hub.handle_client_text(id, &text),
            limited => limited,
        };
        match handled {
            Handled::Reply(reply) => self.reply(js, id, key, &reply),
            Handled::Changed { reply, change } => {
                self.apply_change(js, key, &change);
                self.reply(js, id, key, &reply);
            }
            Handled::Nothing | Handled::Dropped => {}
            Handled::Close(code) => {
                if let Some(ws) = self.sockets.ws(js, key) {
                    if let Err(reason) = js_socket::close_with(js, ws, code) {
                        warn!(conn_id = id, reason, "close failed");
                    }
                }
            }
            Handled::Authorize {
                req,
                channel,
                connection,
            } => {
                let Some(gate) = self.gate.clone() else {
                    return;
                };
                let shared = Rc::downgrade(&self);
                let id: Arc<str> = Arc::from(id);
                let asked = channel.clone();
                gate.ask_authorize(env, &connection, &asked, move |allowed| {
                    let Some(shared) = shared.upgrade() else {
                        return;
                    };
                    let handled = shared.hub.finish_subscribe(&id, req, &channel, allowed);
                    if let Handled::Changed { change, .. } = &handled {
                        shared.apply_change(js, key, change);
                    }
                    if let Some(reply) = handled.reply() {
                        shared.reply(js, &id, key, &reply);
                    }
                });
            }
        }
    }

    fn reply(&self, js: Js, id: &str, key: RecordKey, reply: &str) {
        if let Err(error) = self.send_text(js, key, reply) {
            warn!(conn_id = id, %error, "reply not sent");
        }
    }

    /// Runs on the JavaScript thread whenever a runtime task wakes it.
    fn on_wake(&self, env: &Env) {
        self.run_health_work(Js::new(env));
        self.reconcile_keep_alive(env);
    }

    /// Holds the process open exactly while native resources are live.
    pub(super) fn reconcile_keep_alive(&self, env: &Env) {
        if let Err(error) = self.keep_alive.hold(env, self.hub.active() > 0) {
            warn!(%error, "cannot change the keep-alive timer");
        }
    }

    /// Runs a due health-check tick for the JavaScript sockets.
    fn run_health_work(&self, js: Js) {
        if !self.health_due.swap(false, Ordering::AcqRel) {
            return;
        }
        let work = self.hub.health_tick_js();
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
                warn!(
                    conn_id = &*live.id,
                    reason, "ping failed; removing connection"
                );
                self.hub.write().remove_record(&live.id, live.key);
                if let Some(ws) = self.sockets.take(js, live.key) {
                    let _ = js_socket::terminate(js, ws.value(js));
                }
            }
        }
    }
}

impl WebSocketManager {
    fn open(&self, env: &Env) -> napi::Result<&Shared> {
        if self.shared.hub.is_shut_down() {
            return Err(error::shut_down(env));
        }
        Ok(&self.shared)
    }

    /// Registers `ws` under `id` and installs its `pong` / `close` / `error` listeners.
    fn register(&self, env: &Env, ws: Raw, id: &str) -> napi::Result<RecordKey> {
        let js = Js::new(env);
        let shared = self.open(env)?;
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
        let (key, replaced) = shared.hub.write().add(id, Transport::Js);
        if let Some(old) = replaced {
            match old.transport {
                Transport::Js => drop(shared.sockets.take(js, old.key)),
                Transport::Native(outbox) => outbox.close(CloseReason::Server { code: 1000 }),
            }
        }
        shared.sockets.insert(key, Arc::from(id), reference);

        let installed = self.install_listeners(env, ws, id, key);
        if installed.is_err() {
            shared.hub.write().remove_record(id, key);
            drop(shared.sockets.take(js, key));
        }
        installed?;
        debug!(conn_id = id, "connection added");
        Ok(key)
    }

    fn install_listeners(&self, env: &Env, ws: Raw, id: &str, key: RecordKey) -> napi::Result<()> {
        let js = Js::new(env);
        let on_pong = {
            let shared = Rc::downgrade(&self.shared);
            let id: Arc<str> = Arc::from(id);
            env.create_function_from_closure::<(), (), _>("onPong", move |_ctx| {
                guarded("pong", || {
                    if let Some(shared) = shared.upgrade() {
                        shared.hub.write().mark_alive(&id, key);
                    }
                });
                Ok(())
            })?
        };
        js_socket::listen(js, ws, "pong", on_pong.raw())?;

        let on_close = {
            let shared = Rc::downgrade(&self.shared);
            let id: Arc<str> = Arc::from(id);
            env.create_function_from_closure::<(), (), _>("onClose", move |ctx| {
                guarded("close", || {
                    if let Some(shared) = shared.upgrade() {
                        shared.on_close(Js::new(ctx.env), &id, key);
                    }
                });
                Ok(())
            })?
        };
        js_socket::listen(js, ws, "close", on_close.raw())?;

        let on_error = {
            let id: Arc<str> = Arc::from(id);
            env.create_function_from_closure::<(), (), _>("onError", move |ctx| {
                guarded("error", || {
                    let js = Js::new(ctx.env);
                    let reason = ctx
                        .get::<Unknown>(0)
                        .map(|e| js.describe(e.raw()))
                        .unwrap_or_default();
                    warn!(conn_id = &*id, reason, "socket error");
                });
                Ok(())
            })?
        };
        js_socket::listen(js, ws, "error", on_error.raw())
    }

    fn install_message_listener(
        &self,
        env: &Env,
        ws: Raw,
        id: &str,
        key: RecordKey,
    ) -> napi::Result<()> {
        let shared = Rc::downgrade(&self.shared);
        let id: Arc<str> = Arc::from(id);
        let on_message = env.create_function_from_closure::<(), (), _>(
            "onMessage",
            move |ctx: FunctionCallContext| {
                guarded("message", || {
                    let Some(shared) = shared.upgrade() else {
                        return;
                    };
                    let js = Js::new(ctx.env);
                    let data = ctx
                        .get::<Unknown>(0)
                        .map_or_else(|_| js.undefined(), |d| d.raw());
                    shared.on_message(ctx.env, &id, key, data);
                });
                Ok(())
            },
        )?;
        js_socket::listen(Js::new(env), ws, "message", on_message.raw())
    }

    /// Creates the waker through which runtime tasks reach this thread.
    fn install_waker(&self, env: &Env) -> napi::Result<Arc<Waker>> {
        let shared = Rc::downgrade(&self.shared);
        let on_wake: Function<(), ()> =
            env.create_function_from_closure("clusoWake", move |ctx: FunctionCallContext| {
                guarded("wake", || {
                    if let Some(shared) = shared.upgrade() {
                        shared.on_wake(ctx.env);
                    }
                });
                Ok(())
            })?;
        let waker = Arc::new(Waker::new(on_wake)?);
        *self.shared.waker.borrow_mut() = Some(Arc::clone(&waker));
        self.shared.hub.set_lifeline(waker.clone());
        Ok(waker)
    }

    /// Ticks the health check on the runtime: native peers are handled there; for
    /// JavaScript sockets the tick is handed to this thread through the waker.
    fn start_health_check(&self, waker: Arc<Waker>, interval: Duration) {
        let hub = Arc::clone(&self.shared.hub);
        let due = Arc::clone(&self.shared.health_due);
        let task = runtime::handle().spawn(async move {
            let start = tokio::time::Instant::now() + interval;
            let mut ticks = tokio::time::interval_at(start, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                hub.health_tick_native();
                if !due.swap(true, Ordering::AcqRel) {
                    waker.wake();
                }
            }
        });
        *self.health_task.borrow_mut() = Some(task);
    }
}

#[napi]
impl WebSocketManager {
    /// Creates a manager. `wss` is stored for compatibility and may be anything (unit tests
    /// pass a bare EventEmitter or nothing); the health check starts at once.
    #[napi(
        constructor,
        catch_unwind,
        ts_args_type = "wss?: unknown, options?: ManagerOptions"
    )]
    pub fn new(
        env: Env,
        wss: Option<Unknown>,
        options: Option<ManagerOptions>,
    ) -> napi::Result<Self> {
        let _ = wss;
        let options = options.unwrap_or_default().parse().map_err(|message| {
            error::throw(
                &env,
                ErrorKind::RangeError,
                &message,
                error::codes::INVALID_OPTION,
            )
        })?;
        let ping_interval = options.core.ping_interval;
        let max_buffered_bytes = options.core.max_buffered_bytes_per_connection;
        let gate = match (options.authenticate, options.authorize_subscribe) {
            (None, None) => None,
            (authenticate, authorize) => {
                let timeout = options.core.decision_timeout;
                Some(Arc::new(JsGate::new(
                    &env,
                    authenticate,
                    authorize,
                    timeout,
                )?))
            }
        };
        let shared = Rc::new(Shared {
            hub: Hub::new(options.core),
            sockets: JsSockets::new(&env, max_buffered_bytes)?,
            stringify: Stringify::capture(Js::new(&env))?,
            health_due: Arc::default(),
            waker: RefCell::new(None),
            keep_alive: KeepAlive::default(),
            policy: options.policy,
            attachments: RefCell::default(),
            pinned: RefCell::default(),
            gate: gate.clone(),
        });
        if let Some(gate) = gate {
            shared.hub.set_gatekeeper(gate);
        }
        let manager = Self {
            shared,
            health_task: RefCell::new(None),
        };
        let waker = manager.install_waker(&env)?;
        if let Some(interval) = ping_interval {
            manager.start_health_check(waker, interval);
        }
        Ok(manager)
    }

    /// Registers a WebSocket-like object under `id` (replacing any record with that id) and
    /// listens for its `pong`, `close` and `error` events.
    #[napi(catch_unwind, ts_args_type = "ws: WebSocketLike, id: string")]
    pub fn add_connection(&self, env: Env, ws: Unknown, id: String) -> napi::Result<()> {
        self.register(&env, ws.raw(), &id).map(drop)
    }

    /// Forgets a connection and its subscriptions, closing its socket if it is open.
    /// Unknown ids are ignored.
    #[napi(catch_unwind)]
    pub fn remove_connection(&self, env: Env, id: String) -> napi::Result<()> {
        let shared = self.open(&env)?;
        shared.hub.flush_fanout();
        let Some(connection) = shared.hub.write().remove(&id) else {
            return Ok(());
        };
        match connection.transport {
            Transport::Js => {
                let js = Js::new(&env);
                if let Some(ws) = shared.sockets.take(js, connection.key) {
                    let ws = ws.value(js);
                    if js_socket::is_open(js, ws) {
                        if let Err(reason) = js_socket::close(js, ws) {
                            warn!(conn_id = &*id, reason, "close failed");
                        }
                    }
                }
            }
            Transport::Native(outbox) => outbox.close(CloseReason::Server { code: 1000 }),
        }
        info!(conn_id = &*id, "connection removed");
        Ok(())
    }

    /// Subscribes a connection to a channel. Unknown ids are ignored; subscribing twice is
    /// harmless.
    #[napi(catch_unwind)]
    pub fn subscribe(&self, env: Env, id: String, channel: String) -> napi::Result<()> {
        self.open(&env)?.change_subscription(
            &env,
            &id,
            Change::Subscribed(channel),
            |registry, id, ch| registry.subscribe(id, ch, None) == SubscribeOutcome::Added,
        );
        Ok(())
    }

    /// Unsubscribes a connection from a channel. Unknown ids are ignored.
    #[napi(catch_unwind)]
    pub fn unsubscribe(&self, env: Env, id: String, channel: String) -> napi::Result<()> {
        self.open(&env)?.change_subscription(
            &env,
            &id,
            Change::Unsubscribed(channel),
            |registry, id, ch| registry.unsubscribe(id, ch),
        );
        Ok(())
    }

    /// Sends one event `{"type":"event","channel","data","timestamp"}` to every open
    /// subscriber of `channel`. Failed sends are counted and logged, never thrown; a `data`
    /// that `JSON.stringify` rejects (a cycle, a BigInt) throws its TypeError.
    #[napi(catch_unwind, ts_args_type = "channel: string, data: unknown")]
    pub fn broadcast(&self, env: Env, channel: Unknown, data: Unknown) -> napi::Result<()> {
        let shared = self.open(&env)?;
        let js = Js::new(&env);
        let Some(name) = js.string(channel.raw()) else {
            return Err(error::throw(
                &env,
                ErrorKind::TypeError,
                "channel must be a string",
                error::codes::INVALID_CHANNEL,
            ));
        };
        let hub = &shared.hub;
        let (js_subscribers, native_subscribers) = hub.subscriber_counts(&name);
        let timestamp = js.create_string(&envelope::now_iso())?;
        let text = shared
            .sockets
            .fanout()
            .envelope(js, channel.raw(), data.raw(), timestamp)?;
        hub.stats().record_broadcast();
        let bytes = js.utf8_len(text) as u64;
        if native_subscribers > 0 {
            let owned = js.string(text).unwrap_or_default();
            hub.publish(&name, Utf8Bytes::from(owned));
        }
        let fanned = if js_subscribers > 0 {
            // The index is keyed by the registry's name for the channel (a JavaScript
            // string with unpaired surrogates differs from it), so look it up by that.
            let key = js.create_string(&name)?;
            shared.sockets.fanout().send_all(js, key, text)
        } else {
            Fanned::default()
        };
        let failed = fanned.failed;
        let cut = shared.drop_slow_consumers(&fanned.cut);
        // A send callback may subscribe more sockets mid-loop: never below zero.
        let sent = ((js_subscribers + native_subscribers) as u64).saturating_sub(failed + cut);
        hub.stats().record_sent(sent, sent * bytes);
        hub.stats().record_send_failures(failed);
        if failed > 0 {
            warn!(channel = name, "broadcast: {sent} success, {failed} failed");
        } else {
            debug!(channel = name, "broadcast: {sent} success, {failed} failed");
        }
        Ok(())
    }

    /// Sends `JSON.stringify(data)` to one connection if it is open; otherwise logs a
    /// warning. Never throws for an unknown id or a closed socket.
    #[napi(catch_unwind, ts_args_type = "id: string, data: unknown")]
    pub fn send(&self, env: Env, id: String, data: Unknown) -> napi::Result<()> {
        let shared = self.open(&env)?;
        let js = Js::new(&env);
        let Some((key, transport)) = shared
            .hub
            .read()
            .get(&id)
            .map(|c| (c.key, c.transport.clone()))
        else {
            warn!(conn_id = &*id, "cannot send: connection not found");
            return Ok(());
        };
        let stringify = |js: Js| {
            shared
                .stringify
                .value(js, data.raw())
                .map_err(|thrown| js.rethrow(thrown))
        };
        match transport {
            Transport::Js => {
                let Some(ws) = shared.sockets.ws(js, key) else {
                    return Ok(());
                };
                if !js_socket::is_open(js, ws) {
                    warn!(conn_id = &*id, "cannot send: socket not open");
                    return Ok(());
                }
                let text = stringify(js)?;
                let payload = match &text {
                    Some(text) => js.create_string(text)?,
                    None => js.undefined(),
                };
                match js_socket::send(js, ws, payload) {
                    Sent::Ok => {
                        let bytes = text.as_ref().map_or(0, |t| t.len() as u64);
                        shared.hub.stats().record_sent(1, bytes);
                    }
                    Sent::NotOpen => warn!(conn_id = &*id, "cannot send: socket not open"),
                    Sent::Failed(reason) => {
                        shared.hub.stats().record_send_failures(1);
                        warn!(conn_id = &*id, reason, "send failed");
                    }
                }
            }
            Transport::Native(outbox) => match stringify(js)? {
                Some(text) => {
                    shared.hub.send_native(&id, &outbox, text);
                }
                None => warn!(conn_id = &*id, "cannot send: data serialises to nothing"),
            },
        }
        Ok(())
    }

    /// A copy of the connection records: `Map<id, { ws, id, channels: Set, isAlive }>`.
    /// Changing the copy does not change the manager.
    #[napi(catch_unwind, ts_return_type = "Map<string, WSConnection>")]
    pub fn get_connections(&self, env: Env) -> napi::Result<Unknown<'_>> {
        let shared = self.open(&env)?;
        let js = Js::new(&env);
        let rows: Vec<(RecordKey, String, Vec<String>, bool, bool)> = shared
            .hub
            .read()
            .connections()
            .into_iter()
            .map(|c| {
                let channels = c.channels.iter().map(|ch| ch.to_string()).collect();
                let native = c.transport.is_native();
                (c.key, c.id.to_string(), channels, c.alive, native)
            })
            .collect();
        let global = js.global();
        let map_class = js
            .get(global, c"Map")
            .map_err(|_| napi::Error::from_reason("no Map"))?;
        let set_class = js
            .get(global, c"Set")
            .map_err(|_| napi::Error::from_reason("no Set"))?;
        let map = construct(js, map_class, &[])?;
        for (key, id, channels, alive, native) in rows {
            let record = js.create_object()?;
            let ws = if native {
                let socket = NativeSocket::new(&shared.hub, id.clone(), key);
                socket.into_instance(&env)?.raw()
            } else {
                shared.sockets.ws(js, key).unwrap_or_else(|| js.undefined())
            };
            js.set(record, c"ws", ws)?;
            let raw_id = js.create_string(&id)?;
            js.set(record, c"id", raw_id)?;
            let names = channels
                .iter()
                .map(|c| js.create_string(c))
                .collect::<napi::Result<Vec<_>>>()?;
            let set = construct(js, set_class, &[js.create_array(&names)?])?;
            js.set(record, c"channels", set)?;
            js.set(record, c"isAlive", js.bool(alive))?;
            if let Some(super::js::Called::Threw(thrown)) =
                js.call_method(map, c"set", &[raw_id, record])
            {
                return Err(js.rethrow(thrown));
            }
        }
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), map) })
    }

    /// Ids of the connections subscribed to `channel`, oldest first (`[]` when none).
    #[napi(catch_unwind)]
    pub fn get_subscribers(&self, env: Env, channel: String) -> napi::Result<Vec<String>> {
        Ok(self
            .open(&env)?
            .hub
            .read()
            .subscribers(&channel)
            .into_iter()
            .map(|s| s.id.to_string())
            .collect())
    }

    /// Channels of a connection in subscription order (`[]` for an unknown id).
    #[napi(catch_unwind)]
    pub fn get_channels(&self, env: Env, id: String) -> napi::Result<Vec<String>> {
        Ok(self
            .open(&env)?
            .hub
            .read()
            .channels_of(&id)
            .iter()
            .map(|c| c.to_string())
            .collect())
    }

    /// Adopts a freshly connected socket: generates its id (`conn-<ms>-<random>`),
    /// registers it, sends the welcome message, and answers its protocol messages.
    #[napi(catch_unwind, ts_args_type = "ws: WebSocketLike, cwd?: string")]
    pub fn handle_connection(
        &self,
        env: Env,
        ws: Unknown,
        cwd: Option<String>,
    ) -> napi::Result<()> {
        let id = crate::hub::new_connection_id();
        let key = self.register(&env, ws.raw(), &id)?;
        self.shared
            .sockets
            .set_rate_limiter(key, self.shared.hub.new_rate_limiter());
        self.install_message_listener(&env, ws.raw(), &id, key)?;
        info!(conn_id = &*id, "connection established");
        let welcome = protocol::welcome(&id, cwd.as_deref());
        self.shared.send_text(Js::new(&env), key, &welcome)?;
        Ok(())
    }

    /// Counters and gauges; see `ManagerStats`. Works after `shutdown()` too.
    #[napi(catch_unwind)]
    pub fn get_stats(&self) -> ManagerStats {
        let hub = &self.shared.hub;
        let (counts, max_queued_bytes) = {
            let registry = hub.read();
            (registry.counts(), registry.max_queued_bytes())
        };
        let stats = hub.stats().snapshot();
        ManagerStats {
            connections: (counts.js_connections + counts.native_connections) as f64,
            js_connections: counts.js_connections as f64,
            native_connections: counts.native_connections as f64,
            channels: counts.channels as f64,
            subscriptions: counts.subscriptions as f64,
            broadcasts: stats.broadcasts as f64,
            messages_sent: stats.messages_sent as f64,
            bytes_sent: stats.bytes_sent as f64,
            send_failures: stats.send_failures as f64,
            slow_consumer_disconnects: stats.slow_consumer_disconnects as f64,
            rejected_handshakes: stats.rejected_handshakes as f64,
            dead_peers_removed: stats.dead_peers_removed as f64,
            max_queued_bytes: max_queued_bytes as f64,
            pending_broadcasts: hub.pending_broadcasts() as f64,
        }
    }

    /// Stops the health check, closes every open connection and forgets all records.
    /// Idempotent; every other method except `getStats()` throws afterwards
    /// (`ERR_CLUSO_SHUT_DOWN`).
    #[napi(catch_unwind)]
    pub fn shutdown(&self, env: Env) -> napi::Result<()> {
        // Broadcasts made before shutdown() still reach native subscribers, ahead of 1001.
        self.shared.hub.flush_fanout();
        if !self.shared.hub.begin_shutdown() {
            return Ok(());
        }
        self.stop_health_check();
        let js = Js::new(&env);
        for attachment in self.shared.attachments.take() {
            attachment.detach(js);
        }
        drop(self.shared.pinned.take());
        let connections = self.shared.hub.write().drain();
        for connection in connections {
            match connection.transport {
                Transport::Js => {
                    if let Some(ws) = self.shared.sockets.take(js, connection.key) {
                        let ws = ws.value(js);
                        if js_socket::is_open(js, ws) {
                            if let Err(reason) = js_socket::close(js, ws) {
                                warn!(conn_id = &*connection.id, reason, "close failed");
                            }
                        }
                    }
                }
                Transport::Native(outbox) => outbox.close(CloseReason::Server { code: 1001 }),
            }
        }
        drop(self.shared.sockets.take_all(js));
        info!("manager shut down");
        Ok(())
    }
}

impl WebSocketManager {
    fn stop_health_check(&self) {
        if let Some(task) = self.health_task.borrow_mut().take() {
            task.abort();
        }
    }
}

impl Drop for WebSocketManager {
    /// A collected manager has no listener or attachment (those pin it), so nothing can
    /// reach it any more: stop its background tasks.
    fn drop(&mut self) {
        self.stop_health_check();
        self.shared.hub.begin_shutdown();
    }
}

/// `new constructor(...args)`.
fn construct(js: Js, constructor: Raw, args: &[Raw]) -> napi::Result<Raw> {
    let mut instance = std::ptr::null_mut();
    let status = unsafe {
        napi::sys::napi_new_instance(
            js.raw_env(),
            constructor,
            args.len(),
            args.as_ptr(),
            &mut instance,
        )
    };
    if status != napi::sys::Status::napi_ok {
        return Err(napi::Error::new(Status::GenericFailure, "cannot construct"));
    }
    Ok(instance)
}
