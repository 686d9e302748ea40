//! `WebSocketManager`: the drop-in class (SPEC A.1), a handle over the core
//! [`Manager`](crate::manager::Manager).
//!
//! Every method converts its arguments and delegates to the core; JavaScript sockets are
//! reached through [`js_transport`](super::js_transport). Methods take `&self`: a socket's
//! `send` may call back into the manager, so all state is behind short-lived borrows.
//! After `shutdown()` every method logs once and does nothing, as the original's did.

use std::cell::{OnceCell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use napi::bindgen_prelude::{Function, FunctionCallContext, JavaScriptClassExt, Object, Unknown};
use napi::{Env, JsValue};
use napi_derive::napi;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::{info, warn};

use super::error::{self, ErrorKind};
use super::gate::JsGate;
use super::js::Js;
use super::js_fanout::Fanned;
use super::js_socket::{self, JsSockets, Sent};
use super::js_transport::{guarded, socket_hooks, Shared};
use super::json::Stringify;
use super::lifetime::{EnvTeardown, KeepAlive, Waker};
use super::native_socket::NativeSocket;
use super::options::ManagerOptions;
use crate::envelope;
use crate::manager::{Manager, Removed};
use crate::protocol;

/// Manages WebSocket connections, their channel subscriptions, and broadcasting.
///
/// Drop-in for the original TypeScript `WebSocketManager`: accepts any WebSocket-like
/// object (`ws` package sockets or mocks) through `addConnection` / `handleConnection`.
#[napi]
pub struct WebSocketManager {
    pub(super) shared: Rc<Shared>,
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
    /// The most bytes any one native connection has queued right now, rounded up by at most
    /// 1/8 (exact below 16 bytes, and exactly 0 when nothing is queued). A producer can pace
    /// itself on it: keep it well under `maxBufferedBytesPerConnection`. Kept up to date by
    /// the outboxes, so reading it costs no pass over the connections.
    pub max_queued_bytes: f64,
    /// Jobs waiting for the native fan-out task: broadcasts, and the sends and
    /// subscription changes ordered with them. A producer paces itself on it (see
    /// `drained()`).
    pub pending_broadcasts: f64,
    /// Payload bytes of the broadcasts waiting for the native fan-out task; at
    /// `maxPendingBroadcastBytes` a broadcast is not delivered to native subscribers.
    pub pending_broadcast_bytes: f64,
    /// Broadcasts not delivered to native subscribers because the fan-out queue was at
    /// `maxPendingBroadcastBytes` (drop-newest). JavaScript sockets got them, and with
    /// `historySize` they stay resumable.
    pub dropped_broadcasts: f64,
    /// With `cluster`: whether the manager is connected to Redis and subscribed (while it
    /// is not, broadcasts reach this process only). Absent without `cluster`.
    pub cluster_up: Option<bool>,
    /// With `cluster`: broadcasts dropped because the queue for Redis was full (a slow
    /// Redis) or the event was over 16 MiB.
    pub cluster_dropped: Option<f64>,
    /// With `cluster`: broadcasts waiting for Redis.
    pub cluster_queued: Option<f64>,
    /// With `cluster`: broadcasts delivered to this process only because Redis was down.
    pub cluster_local_only: Option<f64>,
}

impl WebSocketManager {
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
        self.shared.core.set_lifeline(waker.clone());
        Ok(waker)
    }

    /// Closes every JavaScript socket the core let go at shutdown, removes the attach
    /// hooks, and unpins the manager.
    fn release_js_resources(&self, js: Js, sockets: Vec<(String, crate::registry::RecordKey)>) {
        for attachment in self.shared.attachments.take() {
            attachment.detach(js);
        }
        drop(self.shared.pinned.take());
        for (id, key) in sockets {
            self.shared.close_socket(js, &id, key);
        }
        drop(self.shared.sockets.take_all(js));
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
        let slot: Rc<OnceCell<Weak<Shared>>> = Rc::default();
        let hooks = socket_hooks(&env, &slot)?;
        let shared = Rc::new(Shared {
            core: Manager::new(options.core),
            sockets: JsSockets::new(&env, max_buffered_bytes, hooks)?,
            stringify: Stringify::capture(Js::new(&env))?,
            health_due: Arc::default(),
            waker: RefCell::new(None),
            keep_alive: KeepAlive::default(),
            policy: options.policy,
            attachments: RefCell::default(),
            pinned: RefCell::default(),
            handlers: Default::default(),
            warned_after_shutdown: RefCell::default(),
            shutdown_promise: RefCell::default(),
            teardown: RefCell::default(),
        });
        let _ = slot.set(Rc::downgrade(&shared));
        if let Some(gate) = gate {
            shared.core.set_gatekeeper(gate);
        }
        let manager = Self { shared };
        let waker = manager.install_waker(&env)?;
        let teardown = EnvTeardown::register(&env, &manager.shared.core, Arc::clone(&waker))?;
        *manager.shared.teardown.borrow_mut() = Some(teardown);
        if let Some(interval) = ping_interval {
            let due = Arc::clone(&manager.shared.health_due);
            manager.shared.core.start_health_check(interval, move || {
                if !due.swap(true, Ordering::AcqRel) {
                    waker.wake();
                }
            });
        }
        Ok(manager)
    }

    /// Registers a WebSocket-like object under `id` (replacing any record with that id) and
    /// listens for its `pong`, `close` and `error` events.
    #[napi(catch_unwind, ts_args_type = "ws: WebSocketLike, id: string")]
    pub fn add_connection(&self, env: Env, ws: Unknown, id: String) -> napi::Result<()> {
        if !self.shared.running("addConnection") {
            return Ok(());
        }
        self.shared.register(&env, ws.raw(), &id, false).map(drop)
    }

    /// Forgets a connection and its subscriptions, closing its socket if it is open.
    /// Unknown ids are ignored.
    #[napi(catch_unwind)]
    pub fn remove_connection(&self, env: Env, id: String) -> napi::Result<()> {
        if !self.shared.running("removeConnection") {
            return Ok(());
        }
        if let Some(Removed::Js(key)) = self.shared.core.remove_connection(&id) {
            self.shared.close_socket(Js::new(&env), &id, key);
        }
        Ok(())
    }

    /// Subscribes a connection to a channel. Unknown ids are ignored; subscribing twice is
    /// harmless.
    #[napi(catch_unwind)]
    pub fn subscribe(&self, env: Env, id: String, channel: String) -> napi::Result<()> {
        if !self.shared.running("subscribe") {
            return Ok(());
        }
        if let Some(change) = self.shared.core.subscribe(&id, &channel) {
            self.shared
                .apply_change(Js::new(&env), change.key, &change.change);
        }
        Ok(())
    }

    /// Unsubscribes a connection from a channel. Unknown ids are ignored.
    #[napi(catch_unwind)]
    pub fn unsubscribe(&self, env: Env, id: String, channel: String) -> napi::Result<()> {
        if !self.shared.running("unsubscribe") {
            return Ok(());
        }
        if let Some(change) = self.shared.core.unsubscribe(&id, &channel) {
            self.shared
                .apply_change(Js::new(&env), change.key, &change.change);
        }
        Ok(())
    }

    /// Sends one event `{"type":"event","channel","data","timestamp"}` to every open
    /// subscriber of `channel`. Failed sends are counted and logged, never thrown; a `data`
    /// that `JSON.stringify` rejects (a cycle, a BigInt) throws its TypeError.
    #[napi(catch_unwind, ts_args_type = "channel: string, data: unknown")]
    pub fn broadcast(&self, env: Env, channel: Unknown, data: Unknown) -> napi::Result<()> {
        let shared = &self.shared;
        if !shared.running("broadcast") {
            return Ok(());
        }
        let js = Js::new(&env);
        let Some(name) = js.string(channel.raw()) else {
            return Err(error::throw(
                &env,
                ErrorKind::TypeError,
                "channel must be a string",
                error::codes::INVALID_CHANNEL,
            ));
        };
        let core = &shared.core;
        if core.cluster_enabled() {
            // Through Redis: this process delivers it when it comes back, like every other.
            let timestamp = js.create_string(&envelope::now_iso())?;
            let text =
                shared
                    .sockets
                    .fanout()
                    .envelope(js, channel.raw(), data.raw(), timestamp)?;
            core.cluster_publish(&name, js.string(text).unwrap_or_default());
            return Ok(());
        }
        let targets = core.broadcast_targets(&name);
        let timestamp = js.create_string(&envelope::now_iso())?;
        let text = shared
            .sockets
            .fanout()
            .envelope(js, channel.raw(), data.raw(), timestamp)?;
        let (text, bytes, queued) = if core.history_enabled() {
            // Numbered and kept in the core; the JavaScript sockets get the same text.
            let envelope = js.string(text).unwrap_or_default();
            let (sequenced, queued) = core.publish_sequenced(&name, envelope);
            let text = if targets.js > 0 {
                js.create_string(&sequenced)?
            } else {
                text
            };
            (text, sequenced.len() as u64, queued)
        } else {
            let bytes = js.utf8_len(text) as u64;
            let queued = targets.native == 0 || {
                let owned = js.string(text).unwrap_or_default();
                core.publish(&name, Utf8Bytes::from(owned))
            };
            (text, bytes, queued)
        };
        // Refused by a full fan-out queue (counted in `droppedBroadcasts`): the native
        // subscribers do not get it and are not counted as sent to.
        let targets = if queued {
            targets
        } else {
            crate::manager::BroadcastTargets {
                native: 0,
                ..targets
            }
        };
        let fanned = if targets.js > 0 {
            // The index is keyed by the registry's name for the channel (a JavaScript
            // string with unpaired surrogates differs from it), so look it up by that.
            let key = js.create_string(&name)?;
            shared.sockets.fanout().send_all(js, key, text)
        } else {
            Fanned::default()
        };
        let cut = shared.drop_slow_consumers(&fanned.cut);
        core.record_broadcast(&name, targets, fanned.failed, cut, bytes);
        Ok(())
    }

    /// Sends `JSON.stringify(data)` to one connection if it is open; otherwise logs a
    /// warning. Never throws for an unknown id or a closed socket.
    #[napi(catch_unwind, ts_args_type = "id: string, data: unknown")]
    pub fn send(&self, env: Env, id: String, data: Unknown) -> napi::Result<()> {
        let shared = &self.shared;
        if !shared.running("send") {
            return Ok(());
        }
        let js = Js::new(&env);
        let Some((key, native)) = shared.core.lookup(&id) else {
            warn!(conn_id = &*id, "cannot send: connection not found");
            return Ok(());
        };
        let stringify = |js: Js| {
            shared
                .stringify
                .value(js, data.raw())
                .map_err(|thrown| js.rethrow(thrown))
        };
        if native {
            match stringify(js)? {
                Some(text) => {
                    shared.core.send_native(&id, key, text);
                }
                None => warn!(conn_id = &*id, "cannot send: data serialises to nothing"),
            }
            return Ok(());
        }
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
                shared.core.stats().record_sent(1, bytes);
            }
            Sent::NotOpen => warn!(conn_id = &*id, "cannot send: socket not open"),
            Sent::Failed(reason) => {
                shared.core.stats().record_send_failures(1);
                warn!(conn_id = &*id, reason, "send failed");
            }
        }
        Ok(())
    }

    /// A copy of the connection records: `Map<id, { ws, id, channels: Set, isAlive }>`.
    /// Changing the copy does not change the manager.
    #[napi(catch_unwind, ts_return_type = "Map<string, WSConnection>")]
    pub fn get_connections(&self, env: Env) -> napi::Result<Unknown<'_>> {
        let shared = &self.shared;
        let js = Js::new(&env);
        let rows = if shared.running("getConnections") {
            shared.core.connection_rows()
        } else {
            Vec::new()
        };
        let global = js.global();
        let map_class = js
            .get(global, c"Map")
            .map_err(|_| napi::Error::from_reason("no Map"))?;
        let set_class = js
            .get(global, c"Set")
            .map_err(|_| napi::Error::from_reason("no Set"))?;
        let map = js.construct(map_class, &[])?;
        for row in rows {
            let record = js.create_object()?;
            let ws = if row.native {
                let socket = NativeSocket::new(&shared.core, row.id.clone(), row.key);
                socket.into_instance(&env)?.raw()
            } else {
                shared
                    .sockets
                    .ws(js, row.key)
                    .unwrap_or_else(|| js.undefined())
            };
            js.set(record, c"ws", ws)?;
            let raw_id = js.create_string(&row.id)?;
            js.set(record, c"id", raw_id)?;
            let names = row
                .channels
                .iter()
                .map(|c| js.create_string(c))
                .collect::<napi::Result<Vec<_>>>()?;
            let set = js.construct(set_class, &[js.create_array(&names)?])?;
            js.set(record, c"channels", set)?;
            js.set(record, c"isAlive", js.bool(row.alive))?;
            if let Some(super::js::Called::Threw(thrown)) =
                js.call_method(map, c"set", &[raw_id, record])
            {
                return Err(js.rethrow(thrown));
            }
        }
        Ok(js.unknown(map))
    }

    /// Ids of the connections subscribed to `channel`, oldest first (`[]` when none).
    #[napi(catch_unwind)]
    pub fn get_subscribers(&self, channel: String) -> Vec<String> {
        if !self.shared.running("getSubscribers") {
            return Vec::new();
        }
        self.shared.core.subscriber_ids(&channel)
    }

    /// Channels of a connection in subscription order (`[]` for an unknown id).
    #[napi(catch_unwind)]
    pub fn get_channels(&self, id: String) -> Vec<String> {
        if !self.shared.running("getChannels") {
            return Vec::new();
        }
        self.shared.core.channels_of(&id)
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
        let shared = &self.shared;
        if !shared.running("handleConnection") {
            return Ok(());
        }
        let id = crate::manager::new_connection_id();
        let key = shared.register(&env, ws.raw(), &id, true)?;
        shared
            .sockets
            .set_rate_limiter(key, shared.core.new_rate_limiter());
        info!(conn_id = &*id, "connection established");
        let welcome = protocol::welcome(&id, cwd.as_deref());
        shared.send_text(Js::new(&env), key, &welcome)?;
        Ok(())
    }

    /// Counters and gauges; see `ManagerStats`. Works after `shutdown()` too.
    #[napi(catch_unwind)]
    pub fn get_stats(&self) -> ManagerStats {
        let gauges = self.shared.core.gauges();
        let counts = gauges.counts;
        let stats = self.shared.core.stats().snapshot();
        let cluster = self.shared.core.cluster_status();
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
            max_queued_bytes: gauges.max_queued_bytes as f64,
            pending_broadcasts: gauges.pending_broadcasts as f64,
            pending_broadcast_bytes: gauges.pending_broadcast_bytes as f64,
            dropped_broadcasts: stats.dropped_broadcasts as f64,
            cluster_up: cluster.map(|c| c.up),
            cluster_dropped: cluster.map(|c| c.dropped as f64),
            cluster_queued: cluster.map(|c| c.queued as f64),
            cluster_local_only: cluster.map(|c| c.local as f64),
        }
    }

    /// Resolves once every broadcast (and send, and subscription change) made before the
    /// call has been handed to its native connections' outboxes: at once when nothing is
    /// waiting, and after `shutdown()`. The backpressure signal for a producer:
    /// `if (m.getStats().pendingBroadcasts > 1000) await m.drained()`. Woken by the fan-out
    /// task itself, never by a timer.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn drained<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        let core = &self.shared.core;
        if core.fanout_idle() {
            let done = napi::bindgen_prelude::PromiseRaw::resolve(env, ())?;
            return Ok(Js::new(env).object(done.raw()));
        }
        let (deferred, promise) = env.create_deferred::<(), _>()?;
        let core = Arc::clone(core);
        crate::runtime::handle().spawn(async move {
            core.drained().await;
            deferred.resolve(|_| Ok(()));
        });
        Ok(promise)
    }

    /// Stops the health check, closes every connection (native ones with 1001, after what
    /// was broadcast before) and forgets all records. Returns a promise that resolves once
    /// every native connection has closed, every listener has released its port and every
    /// attach hook is removed; calling it again returns the same promise. Afterwards every
    /// other method logs a warning once and does nothing (`listen()` and `attach()` throw
    /// with `ERR_CLUSO_SHUT_DOWN`).
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn shutdown<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        let js = Js::new(env);
        if let Some(promise) = self.shared.shutdown_promise.borrow().as_ref() {
            return Ok(js.object(promise.value(js)));
        }
        let sockets = self.shared.core.begin_shutdown().unwrap_or_default();
        self.release_js_resources(js, sockets);
        let (deferred, promise) = env.create_deferred::<(), _>()?;
        *self.shared.shutdown_promise.borrow_mut() = Some(js.create_reference(promise.raw())?);
        let core = Arc::clone(&self.shared.core);
        crate::runtime::handle().spawn(async move {
            core.closed().await;
            info!("manager shut down");
            deferred.resolve(|_| Ok(()));
        });
        self.shared.reconcile_keep_alive(env);
        Ok(promise)
    }
}

impl Drop for WebSocketManager {
    /// A collected manager has no listener or attachment (those pin it), so nothing can
    /// reach it any more: stop its background tasks.
    fn drop(&mut self) {
        let _ = self.shared.core.begin_shutdown();
    }
}
