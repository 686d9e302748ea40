//! The core `Manager`: every decision a `WebSocketManager` makes, for both transports.
//!
//! It owns the registry (private: no lock guard leaves this module), the options, the
//! statistics, the ordered path to native connections, and the lifecycle. The binding and
//! the native transport call its methods and carry out what they return; none of them
//! changes the registry or orders writes itself.
//!
//! - [`dispatch`]: one client text → rate limit → parse → authorize → reply.
//! - [`broadcast`]: broadcasts, direct sends and server-side subscription changes.
//! - [`health`]: the ping/pong verdicts for both transports.
//! - [`lifecycle`]: Running → Closing → Closed, background tasks and shutdown.
//! - [`requests`]: request handlers — calls in flight, timeouts, answers.
//! - [`cluster`]: the manager's half of scale-out: what Redis delivers, local delivery
//!   while it is down, and subscribes that read the shared position first.
//!
//! History (per-channel `seq`, `epoch` and kept events) is [`crate::history`]; its lock is
//! taken before the registry's wherever both are held, so a resume's registration and
//! history read are atomic with respect to broadcasts on that channel.
//!
//! Locking: the registry sits behind one `RwLock`, never held across an `.await` or a call
//! into JavaScript.

mod broadcast;
mod cluster;
mod dispatch;
mod health;
mod lifecycle;
mod requests;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info};

pub use broadcast::{BroadcastTargets, JsChange};
pub use dispatch::{Change, Handled, PendingSubscribe};
pub use health::JsHealthWork;
pub use lifecycle::{ActiveGuard, Lifeline, State};
pub use requests::{CallOutcome, Invocation, Ticket};

use crate::fanout::gauge::QueueGauge;
use crate::fanout::outbox::{CloseReason, Outbox};
use crate::fanout::{FanOut, Job, Member, Submitted};
use crate::gate::Gatekeeper;
use crate::history::History;
use crate::options::Options;
use crate::registry::{RecordKey, Registry, RegistryCounts, Transport};
use crate::stats::Stats;

/// Close code sent to a subscriber whose outbound queue crossed its cap.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;

/// Close code for a peer that floods the server with messages.
pub const POLICY_VIOLATION: u16 = 1008;

/// Close code of a connection the server removes (`removeConnection`, a replaced record).
pub const CLOSE_NORMAL: u16 = 1000;

/// Close code of every connection at shutdown.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// A new connection id in the original module's format: `conn-<ms since epoch>-<9 base36>`.
pub fn new_connection_id() -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut rng = rand::rng();
    let suffix: String = (0..9)
        .map(|_| DIGITS[rng.random_range(0..DIGITS.len())] as char)
        .collect();
    format!("conn-{millis}-{suffix}")
}

/// Room for one native connection under `maxConnections`, given back on drop.
pub struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
}

/// What the binding must do with a JavaScript socket after a registry change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// A JavaScript socket's record left: the binding drops (and may close) its socket.
    Js(RecordKey),
    /// A native connection: the core closes it on the ordered path.
    Native,
}

/// One connection as `getConnections()` shows it.
#[derive(Debug, Clone)]
pub struct ConnectionRow {
    pub id: String,
    pub key: RecordKey,
    pub channels: Vec<String>,
    pub alive: bool,
    pub native: bool,
}

/// Gauges for `getStats()` and `metrics()`, each read in O(1).
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    pub counts: RegistryCounts,
    /// The fullest native outbox's queued bytes, rounded up by at most 1/8
    /// ([`QueueGauge`]).
    pub max_queued_bytes: usize,
    /// Jobs waiting on the ordered path to native connections.
    pub pending_broadcasts: usize,
    /// Payload bytes of the broadcasts among them (bounded by `maxPendingBroadcastBytes`).
    pub pending_broadcast_bytes: usize,
}

/// Something the JavaScript thread must carry out, decided on the runtime: an
/// authorization or a request's timeout for a JavaScript socket, a native connection's
/// handler call, or (cluster mode) an event for a channel's JavaScript sockets, whose `key`
/// is [`RecordKey::NONE`].
#[derive(Debug)]
pub struct JsDelivery {
    pub id: Arc<str>,
    pub key: RecordKey,
    pub handled: Handled,
}

/// The shared state of one `WebSocketManager`.
pub struct Manager {
    registry: RwLock<Registry>,
    options: Options,
    stats: Arc<Stats>,
    lifecycle: lifecycle::Lifecycle,
    fanout: Arc<FanOut>,
    gatekeeper: OnceLock<Arc<dyn Gatekeeper>>,
    /// Native connections established or mid-handshake, against `maxConnections`.
    native_slots: Arc<Semaphore>,
    requests: requests::Requests,
    history: Mutex<History>,
    js_inbox: Mutex<Vec<JsDelivery>>,
    /// Every native outbox's queued bytes, for `queued_bytes_max`.
    queue_gauge: Arc<QueueGauge>,
    /// This manager, for tasks it starts from `&self`.
    me: std::sync::Weak<Manager>,
    /// The link to Redis (`cluster` option).
    cluster: OnceLock<crate::cluster::Engine>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("options", &self.options)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Manager {
    pub fn new(options: Options) -> Arc<Self> {
        let slots = options.max_connections.min(Semaphore::MAX_PERMITS);
        let cluster_options = options.cluster.clone();
        let fanout = Arc::new(FanOut::new(options.max_pending_broadcast_bytes));
        let manager = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            registry: RwLock::new(Registry::new()),
            history: Mutex::new(History::new(options.history)),
            options,
            stats: Arc::default(),
            lifecycle: lifecycle::Lifecycle::default(),
            fanout,
            gatekeeper: OnceLock::new(),
            native_slots: Arc::new(Semaphore::new(slots)),
            requests: requests::Requests::default(),
            js_inbox: Mutex::default(),
            queue_gauge: Arc::default(),
            cluster: OnceLock::new(),
        });
        if let Some(cluster) = cluster_options {
            manager.start_cluster(&cluster);
        }
        manager
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn read(&self) -> RwLockReadGuard<'_, Registry> {
        // The registry holds plain data that stays consistent between statements, so a
        // panic elsewhere while the lock was held does not make it unusable.
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The history lock: taken before the registry's, never after.
    fn history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands something to the JavaScript thread and wakes it.
    fn deliver_to_js(&self, delivery: JsDelivery) {
        self.js_inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(delivery);
        self.lifecycle.wake_js();
    }

    /// What the runtime decided for JavaScript sockets since the last call.
    pub fn take_js_deliveries(&self) -> Vec<JsDelivery> {
        std::mem::take(&mut *self.js_inbox.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Installs the application's checks; only the first call has an effect.
    pub fn set_gatekeeper(&self, gatekeeper: Arc<dyn Gatekeeper>) {
        let _ = self.gatekeeper.set(gatekeeper);
    }

    pub fn gatekeeper(&self) -> Option<&Arc<dyn Gatekeeper>> {
        self.gatekeeper.get()
    }

    /// Reserves room for one more native connection under `maxConnections`.
    pub fn reserve_connection(&self) -> Option<ConnectionSlot> {
        let permit = Arc::clone(&self.native_slots).try_acquire_owned().ok()?;
        Some(ConnectionSlot { _permit: permit })
    }

    /// Registers a JavaScript socket under `id`, replacing any record with that id. Returns
    /// the new record's key, its id as the registry keeps it (one allocation for every
    /// holder), and the key of a replaced JavaScript record, whose socket the binding
    /// forgets (a replaced native connection is closed here).
    pub fn add_js_connection(&self, id: &str) -> (RecordKey, Arc<str>, Option<RecordKey>) {
        let (key, shared_id, replaced) = {
            let mut registry = self.write();
            let (key, replaced) = registry.add(id, Transport::Js);
            let shared_id = registry
                .get(id)
                .map_or_else(|| Arc::from(id), |c| Arc::clone(&c.id));
            (key, shared_id, replaced)
        };
        let replaced_js = replaced.and_then(|old| self.retire(&old.id, old.key, old.transport));
        debug!(conn_id = id, "connection added");
        (key, shared_id, replaced_js)
    }

    /// Registers a native connection with what `authenticate` returned.
    pub fn add_native_connection(
        &self,
        id: &str,
        outbox: &Arc<Outbox>,
        meta: Option<String>,
    ) -> RecordKey {
        let (key, replaced) = {
            let mut registry = self.write();
            let added = registry.add(id, Transport::Native(Arc::clone(outbox)));
            registry.set_meta(id, added.0, meta.map(Arc::from));
            added
        };
        if let Some(old) = replaced {
            self.retire(&old.id, old.key, old.transport);
        }
        info!(conn_id = id, "native connection established");
        key
    }

    /// Closes a record that left the registry; returns its key when it was a JavaScript
    /// socket, for the binding to forget.
    fn retire(&self, id: &str, key: RecordKey, transport: Transport) -> Option<RecordKey> {
        match transport {
            Transport::Js => Some(key),
            Transport::Native(outbox) => {
                self.submit(Job::Close {
                    member: Member {
                        key,
                        id: Arc::from(id),
                        outbox,
                    },
                    reason: CloseReason::Server { code: CLOSE_NORMAL },
                });
                None
            }
        }
    }

    /// `removeConnection(id)`: forgets the record; a native connection is closed after
    /// every broadcast made before this call.
    pub fn remove_connection(&self, id: &str) -> Option<Removed> {
        let connection = self.write().remove(id)?;
        info!(conn_id = id, "connection removed");
        Some(
            match self.retire(&connection.id, connection.key, connection.transport) {
                Some(key) => Removed::Js(key),
                None => Removed::Native,
            },
        )
    }

    /// A record whose socket closed leaves the registry (if it is still the record under
    /// its id). Returns whether it did.
    pub fn connection_closed(&self, id: &str, key: RecordKey) -> bool {
        let removed = self.write().remove_record(id, key);
        if let Some(connection) = &removed {
            if connection.transport.is_native() {
                self.submit(Job::Forget { key });
            }
            info!(conn_id = id, "connection closed");
        }
        removed.is_some()
    }

    /// A pong (or any sign of life) from a connection.
    pub fn mark_alive(&self, id: &str, key: RecordKey) {
        self.write().mark_alive(id, key);
    }

    /// Ids of the connections subscribed to `channel`, oldest first.
    pub fn subscriber_ids(&self, channel: &str) -> Vec<String> {
        self.read()
            .subscribers(channel)
            .into_iter()
            .map(|s| s.id.to_string())
            .collect()
    }

    /// The channels of a connection in subscription order.
    pub fn channels_of(&self, id: &str) -> Vec<String> {
        self.read()
            .channels_of(id)
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    /// Every connection, in registration order.
    pub fn connection_rows(&self) -> Vec<ConnectionRow> {
        self.read()
            .connections()
            .into_iter()
            .map(|c| ConnectionRow {
                id: c.id.to_string(),
                key: c.key,
                channels: c.channels.iter().map(|ch| ch.to_string()).collect(),
                alive: c.alive,
                native: c.transport.is_native(),
            })
            .collect()
    }

    /// The key and transport of the record under `id`.
    pub fn lookup(&self, id: &str) -> Option<(RecordKey, bool)> {
        self.read()
            .get(id)
            .map(|c| (c.key, c.transport.is_native()))
    }

    /// Whether the record `key` under `id` is a native connection that can still be
    /// written to.
    pub fn native_is_open(&self, id: &str, key: RecordKey) -> bool {
        self.native_member(id, key)
            .is_some_and(|m| m.outbox.closed().is_none())
    }

    fn native_member(&self, id: &str, key: RecordKey) -> Option<Member> {
        self.read()
            .get(id)
            .filter(|c| c.key == key)
            .and_then(broadcast::member_of)
    }

    /// Gauges for `getStats()` and `metrics()`: no pass over the connections.
    pub fn gauges(&self) -> Gauges {
        let (pending_broadcasts, pending_broadcast_bytes) = self.fanout.backlog();
        // Read before the outboxes, where a run goes next: a run that moves meanwhile is
        // counted twice, never missed.
        let backlog = self.fanout.backlog_on_the_wire();
        Gauges {
            counts: self.read().counts(),
            // What waits for the fan-out task, or is being written, will land in
            // subscribers' outboxes: a producer pacing on this value (as on `ws`'
            // bufferedAmount) slows down whether the readers or the fan-out are behind.
            max_queued_bytes: backlog + self.queue_gauge.max(),
            pending_broadcasts,
            pending_broadcast_bytes,
        }
    }

    /// A new native connection's outbox on `socket`, counted in this manager's gauges.
    pub fn new_outbox(&self, socket: Arc<tokio::net::TcpStream>) -> Arc<Outbox> {
        Arc::new(Outbox::on_socket(
            self.options.max_buffered_bytes_per_connection,
            Arc::clone(&self.queue_gauge),
            socket,
        ))
    }

    /// Queues a job on the ordered path to native connections; never waits and never
    /// applies one. Only a broadcast can be refused ([`Submitted::Dropped`]): the queue
    /// holds `maxPendingBroadcastBytes` of them.
    fn submit(&self, job: Job) -> Submitted {
        self.ensure_fanout_task();
        self.fanout.submit(job, &self.stats)
    }

    /// Resolves once every job queued on the ordered path before the call has reached its
    /// outboxes — at once when nothing is waiting — or when the manager shuts down (which
    /// delivers what was queued before it, or lets it go with the connections).
    pub async fn drained(&self) {
        if !self.is_running() {
            return;
        }
        tokio::select! {
            () = self.fanout.drained() => {}
            () = self.shutdown_signal() => {}
        }
    }

    /// Whether nothing waits on the ordered path (so [`Manager::drained`] would resolve at
    /// once).
    pub fn fanout_idle(&self) -> bool {
        !self.is_running() || self.fanout.is_idle()
    }
}

#[cfg(test)]
mod tests;
