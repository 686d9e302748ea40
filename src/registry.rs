//! The connection registry and the channel → subscribers index.
//!
//! Each connection keeps its own ordered channel set (what `getChannels` returns) and each
//! channel keeps its subscribers ordered by connection age, so `broadcast` touches only the
//! channel's subscribers, never every connection, and `getSubscribers` lists them in the
//! order the original module's `Map` iteration did.
//!
//! The registry is plain data: it does no I/O. Both transports register here — JavaScript
//! sockets (the binding keeps the JS object, keyed by [`RecordKey`]) and native sockets
//! (the registry keeps the connection's [`Outbox`]) — so one lookup serves both.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::fanout::outbox::Outbox;

mod channel_set;

pub use channel_set::ChannelSet;

/// The application-visible connection id (`conn-…` or whatever `addConnection` was given).
pub type ConnectionId = Arc<str>;

/// Identifies one registered record. Never reused, so a stale event from a socket that was
/// replaced under the same id cannot touch its successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(u64);

impl RecordKey {
    /// Never a record's key (they start at 1): for work that concerns no one record.
    pub const NONE: RecordKey = RecordKey(0);

    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The key [`RecordKey::as_u64`] gave (a key handed to JavaScript and back). A number
    /// that was never a key names no record.
    pub fn from_u64(key: u64) -> Self {
        Self(key)
    }

    #[cfg(test)]
    pub(crate) fn for_tests(key: u64) -> Self {
        Self(key)
    }
}

/// Who carries a connection's bytes.
#[derive(Debug, Clone)]
pub enum Transport {
    /// A JavaScript WebSocket-like object, held by the binding under the record's key.
    Js,
    /// A socket owned by the runtime; messages go through its bounded outbox.
    Native(Arc<Outbox>),
}

impl Transport {
    pub fn is_native(&self) -> bool {
        matches!(self, Transport::Native(_))
    }
}

/// One registered connection.
#[derive(Debug)]
pub struct Connection {
    pub id: ConnectionId,
    pub key: RecordKey,
    /// Position in iteration order: kept when a record is replaced under the same id, as a
    /// JavaScript `Map.set` on an existing key keeps its position.
    order: u64,
    /// Its channels in subscription order, each marked with whether the client itself
    /// subscribed to it through the protocol: what `maxSubscriptionsPerConnection` limits
    /// (the server's own `subscribe()` calls are not counted against it). Changed only by
    /// the registry, which keeps the channel index in step.
    pub channels: ChannelSet,
    /// Answered the last health-check ping (or has not been pinged yet).
    pub alive: bool,
    pub transport: Transport,
    /// What `authenticate` returned for it, as JSON text.
    pub meta: Option<Arc<str>>,
}

/// A channel's view of one subscriber: enough to deliver without a second lookup.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub id: ConnectionId,
    pub key: RecordKey,
    pub transport: Transport,
}

/// What [`Registry::subscribe`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeOutcome {
    Added,
    AlreadySubscribed,
    UnknownConnection,
    /// The connection already has `limit` channels; nothing changed.
    LimitReached,
}

/// What the health check decided for one connection.
#[derive(Debug, Clone)]
pub struct HealthVerdict {
    pub id: ConnectionId,
    pub key: RecordKey,
    pub transport: Transport,
}

/// Connections and subscriptions, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryCounts {
    pub js_connections: usize,
    pub native_connections: usize,
    pub channels: usize,
    pub subscriptions: usize,
}

/// One channel's subscribers, split by transport so a broadcast finds the JavaScript ones
/// (sent on the caller's thread) and the native ones (handed to the fan-out task) without
/// scanning the other kind. Both are keyed by connection order.
#[derive(Debug, Default)]
struct Channel {
    js: BTreeMap<u64, Subscriber>,
    native: BTreeMap<u64, Subscriber>,
}

impl Channel {
    fn side(&mut self, native: bool) -> &mut BTreeMap<u64, Subscriber> {
        if native {
            &mut self.native
        } else {
            &mut self.js
        }
    }

    fn is_empty(&self) -> bool {
        self.js.is_empty() && self.native.is_empty()
    }

    fn len(&self) -> usize {
        self.js.len() + self.native.len()
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    next_key: u64,
    connections: HashMap<ConnectionId, Connection>,
    channels: HashMap<Arc<str>, Channel>,
    subscriptions: usize,
    /// Native records among `connections`, kept as they come and go so [`Registry::counts`]
    /// is O(1).
    native_connections: usize,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a connection with no channels, alive. An existing record under the same id
    /// is replaced (its subscriptions are dropped) and returned.
    pub fn add(&mut self, id: &str, transport: Transport) -> (RecordKey, Option<Connection>) {
        self.next_key += 1;
        let key = RecordKey(self.next_key);
        let replaced = self.remove(id);
        let order = replaced.as_ref().map_or(key.0, |old| old.order);
        let id: ConnectionId = Arc::from(id);
        let connection = Connection {
            id: Arc::clone(&id),
            key,
            order,
            channels: ChannelSet::default(),
            alive: true,
            transport,
            meta: None,
        };
        if connection.transport.is_native() {
            self.native_connections += 1;
        }
        self.connections.insert(id, connection);
        (key, replaced)
    }

    /// Forgets a connection and its subscriptions.
    pub fn remove(&mut self, id: &str) -> Option<Connection> {
        let connection = self.connections.remove(id)?;
        let native = connection.transport.is_native();
        if native {
            self.native_connections -= 1;
        }
        for channel in connection.channels.iter() {
            self.detach_subscriber(channel, connection.order, native);
        }
        Some(connection)
    }

    /// Forgets a connection only if `key` still names its current record.
    pub fn remove_record(&mut self, id: &str, key: RecordKey) -> Option<Connection> {
        if self.connections.get(id)?.key != key {
            return None;
        }
        self.remove(id)
    }

    pub fn get(&self, id: &str) -> Option<&Connection> {
        self.connections.get(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.connections.contains_key(id)
    }

    /// Adds `channel` to a connection. `limit` is given for a client's own subscribe and
    /// caps how many channels the client itself may add; `None` is the server's own,
    /// uncapped and uncounted.
    pub fn subscribe(&mut self, id: &str, channel: &str, limit: Option<usize>) -> SubscribeOutcome {
        let Some(connection) = self.connections.get_mut(id) else {
            return SubscribeOutcome::UnknownConnection;
        };
        if connection.channels.contains(channel) {
            return SubscribeOutcome::AlreadySubscribed;
        }
        if limit.is_some_and(|limit| connection.channels.client_len() >= limit) {
            return SubscribeOutcome::LimitReached;
        }
        let channel: Arc<str> = self
            .channels
            .get_key_value(channel)
            .map_or_else(|| Arc::from(channel), |(name, _)| Arc::clone(name));
        connection
            .channels
            .insert(Arc::clone(&channel), limit.is_some());
        let subscriber = Subscriber {
            id: Arc::clone(&connection.id),
            key: connection.key,
            transport: connection.transport.clone(),
        };
        let native = subscriber.transport.is_native();
        self.channels
            .entry(channel)
            .or_default()
            .side(native)
            .insert(connection.order, subscriber);
        self.subscriptions += 1;
        SubscribeOutcome::Added
    }

    /// Records what `authenticate` said about a connection.
    pub fn set_meta(&mut self, id: &str, key: RecordKey, meta: Option<Arc<str>>) {
        if let Some(connection) = self.connections.get_mut(id).filter(|c| c.key == key) {
            connection.meta = meta;
        }
    }

    /// Like [`Registry::unsubscribe`], but `true` whenever the connection exists, as the
    /// protocol answers an unsubscribe from a known connection either way.
    pub fn unsubscribe_if_known(&mut self, id: &str, channel: &str) -> bool {
        if !self.connections.contains_key(id) {
            return false;
        }
        self.unsubscribe(id, channel);
        true
    }

    /// Removes `channel` from a connection; `false` when it was not subscribed or unknown.
    pub fn unsubscribe(&mut self, id: &str, channel: &str) -> bool {
        let Some(connection) = self.connections.get_mut(id) else {
            return false;
        };
        if !connection.channels.remove(channel) {
            return false;
        }
        let (order, native) = (connection.order, connection.transport.is_native());
        self.detach_subscriber(channel, order, native);
        true
    }

    fn detach_subscriber(&mut self, channel: &str, order: u64, native: bool) {
        if let Some(subscribers) = self.channels.get_mut(channel) {
            if subscribers.side(native).remove(&order).is_some() {
                self.subscriptions -= 1;
            }
            if subscribers.is_empty() {
                self.channels.remove(channel);
            }
        }
    }

    /// The subscribers of `channel` of both transports, oldest connection first.
    pub fn subscribers(&self, channel: &str) -> Vec<&Subscriber> {
        let Some(subscribers) = self.channels.get(channel) else {
            return Vec::new();
        };
        let mut all: Vec<(&u64, &Subscriber)> = subscribers
            .js
            .iter()
            .chain(subscribers.native.iter())
            .collect();
        all.sort_unstable_by_key(|(order, _)| **order);
        all.into_iter().map(|(_, subscriber)| subscriber).collect()
    }

    pub fn native_subscriber_count(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |c| c.native.len())
    }

    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, Channel::len)
    }

    /// The channels of a connection in subscription order (empty for an unknown id).
    pub fn channels_of(&self, id: &str) -> Vec<Arc<str>> {
        self.connections
            .get(id)
            .map(|connection| connection.channels.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every connection, in the order a JavaScript `Map` would iterate them.
    pub fn connections(&self) -> Vec<&Connection> {
        let mut all: Vec<&Connection> = self.connections.values().collect();
        all.sort_unstable_by_key(|connection| connection.order);
        all
    }

    /// Marks a connection as having answered a ping.
    pub fn mark_alive(&mut self, id: &str, key: RecordKey) {
        if let Some(connection) = self.connections.get_mut(id) {
            if connection.key == key {
                connection.alive = true;
            }
        }
    }

    /// One health-check tick over the connections of one transport (`native` or not):
    /// every one that did not answer the previous ping is removed and returned as dead;
    /// every other one is marked unanswered and returned to be pinged.
    pub fn health_tick(&mut self, native: bool) -> (Vec<HealthVerdict>, Vec<HealthVerdict>) {
        let mut dead = Vec::new();
        let mut to_ping = Vec::new();
        let connections = self
            .connections
            .values_mut()
            .filter(|connection| connection.transport.is_native() == native);
        for connection in connections {
            let verdict = HealthVerdict {
                id: Arc::clone(&connection.id),
                key: connection.key,
                transport: connection.transport.clone(),
            };
            if connection.alive {
                connection.alive = false;
                to_ping.push(verdict);
            } else {
                dead.push(verdict);
            }
        }
        for verdict in &dead {
            self.remove(&verdict.id);
        }
        (dead, to_ping)
    }

    /// Forgets every connection, returning them.
    pub fn drain(&mut self) -> Vec<Connection> {
        self.channels.clear();
        self.subscriptions = 0;
        self.native_connections = 0;
        let mut all: Vec<Connection> = self.connections.drain().map(|(_, c)| c).collect();
        all.sort_unstable_by_key(|connection| connection.order);
        all
    }

    /// O(1): every count is kept as records and subscriptions come and go.
    pub fn counts(&self) -> RegistryCounts {
        RegistryCounts {
            js_connections: self.connections.len() - self.native_connections,
            native_connections: self.native_connections,
            channels: self.channels.len(),
            subscriptions: self.subscriptions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(registry: &Registry, channel: &str) -> Vec<String> {
        registry
            .subscribers(channel)
            .into_iter()
            .map(|s| s.id.to_string())
            .collect()
    }

    #[test]
    fn subscribers_are_listed_in_connection_order_not_subscription_order() {
        let mut registry = Registry::new();
        registry.add("a", Transport::Js);
        registry.add("b", Transport::Js);
        registry.subscribe("b", "files", None);
        registry.subscribe("a", "files", None);
        assert_eq!(ids(&registry, "files"), ["a", "b"]);
    }

    #[test]
    fn subscribing_twice_is_idempotent() {
        let mut registry = Registry::new();
        registry.add("a", Transport::Js);
        assert_eq!(
            registry.subscribe("a", "files", None),
            SubscribeOutcome::Added
        );
        assert_eq!(
            registry.subscribe("a", "files", None),
            SubscribeOutcome::AlreadySubscribed
        );
        assert_eq!(registry.counts().subscriptions, 1);
    }

    #[test]
    fn unknown_connection_is_reported_not_created() {
        let mut registry = Registry::new();
        assert_eq!(
            registry.subscribe("ghost", "files", None),
            SubscribeOutcome::UnknownConnection
        );
        assert!(!registry.unsubscribe("ghost", "files"));
        assert_eq!(registry.counts(), RegistryCounts::default());
    }

    #[test]
    fn limit_refuses_one_more_channel_and_keeps_the_rest() {
        let mut registry = Registry::new();
        registry.add("a", Transport::Js);
        assert_eq!(
            registry.subscribe("a", "one", Some(2)),
            SubscribeOutcome::Added
        );
        assert_eq!(
            registry.subscribe("a", "two", Some(2)),
            SubscribeOutcome::Added
        );
        assert_eq!(
            registry.subscribe("a", "three", Some(2)),
            SubscribeOutcome::LimitReached
        );
        assert_eq!(
            registry.subscribe("a", "one", Some(2)),
            SubscribeOutcome::AlreadySubscribed
        );
        assert_eq!(registry.channels_of("a").len(), 2);
    }

    #[test]
    fn the_servers_own_subscriptions_do_not_count_against_the_client_limit() {
        let mut registry = Registry::new();
        registry.add("a", Transport::Js);
        registry.subscribe("a", "server-1", None);
        registry.subscribe("a", "server-2", None);
        assert_eq!(
            registry.subscribe("a", "mine", Some(1)),
            SubscribeOutcome::Added
        );
        assert_eq!(
            registry.subscribe("a", "more", Some(1)),
            SubscribeOutcome::LimitReached
        );
        registry.unsubscribe("a", "mine");
        assert_eq!(
            registry.subscribe("a", "more", Some(1)),
            SubscribeOutcome::Added
        );
    }

    #[test]
    fn empty_channels_leave_the_index() {
        let mut registry = Registry::new();
        registry.add("a", Transport::Js);
        registry.subscribe("a", "files", None);
        assert!(registry.unsubscribe("a", "files"));
        assert_eq!(registry.counts().channels, 0);
        assert_eq!(registry.subscriber_count("files"), 0);
    }

    #[test]
    fn replacing_a_record_drops_its_subscriptions_and_keeps_its_position() {
        let mut registry = Registry::new();
        let (old_key, _) = registry.add("a", Transport::Js);
        registry.add("b", Transport::Js);
        registry.subscribe("a", "files", None);
        let (new_key, replaced) = registry.add("a", Transport::Js);
        assert_eq!(replaced.map(|c| c.key), Some(old_key));
        assert_ne!(old_key, new_key);
        assert!(registry.channels_of("a").is_empty());
        assert_eq!(registry.subscriber_count("files"), 0);
        let order: Vec<_> = registry
            .connections()
            .iter()
            .map(|c| c.id.to_string())
            .collect();
        assert_eq!(order, ["a", "b"]);
    }

    #[test]
    fn stale_record_key_cannot_remove_a_successor() {
        let mut registry = Registry::new();
        let (old_key, _) = registry.add("a", Transport::Js);
        let (new_key, _) = registry.add("a", Transport::Js);
        assert!(registry.remove_record("a", old_key).is_none());
        assert!(registry.contains("a"));
        assert!(registry.remove_record("a", new_key).is_some());
    }

    #[test]
    fn health_tick_removes_peers_that_missed_the_previous_ping() {
        let mut registry = Registry::new();
        let (key_a, _) = registry.add("a", Transport::Js);
        registry.add("b", Transport::Js);
        registry.subscribe("b", "files", None);

        let (dead, pinged) = registry.health_tick(false);
        assert!(dead.is_empty());
        assert_eq!(pinged.len(), 2);

        registry.mark_alive("a", key_a);
        let (dead, pinged) = registry.health_tick(false);
        assert_eq!(dead.iter().map(|d| &*d.id).collect::<Vec<_>>(), ["b"]);
        assert_eq!(pinged.iter().map(|d| &*d.id).collect::<Vec<_>>(), ["a"]);
        assert!(!registry.contains("b"));
        assert_eq!(registry.counts().subscriptions, 0);
    }

    #[test]
    fn native_connections_are_counted_as_they_come_and_go() {
        let native = || Transport::Native(Arc::new(Outbox::new(16)));
        let mut registry = Registry::new();
        registry.add("n1", native());
        registry.add("n2", native());
        registry.add("j1", Transport::Js);
        let counts = registry.counts();
        assert_eq!((counts.native_connections, counts.js_connections), (2, 1));
        // Replaced under the same id by the other transport, each way.
        registry.add("n1", Transport::Js);
        registry.add("j1", native());
        let counts = registry.counts();
        assert_eq!((counts.native_connections, counts.js_connections), (2, 1));
        registry.health_tick(true);
        let (dead, _) = registry.health_tick(true);
        assert_eq!(dead.len(), 2);
        assert_eq!(registry.counts().native_connections, 0);
        registry.add("n3", native());
        registry.remove("n3");
        registry.add("n4", native());
        assert_eq!(registry.counts().native_connections, 1);
        registry.drain();
        assert_eq!(registry.counts(), RegistryCounts::default());
    }

    #[test]
    fn drain_forgets_everything() {
        let mut registry = Registry::new();
        registry.add("a", Transport::Js);
        registry.subscribe("a", "files", None);
        assert_eq!(registry.drain().len(), 1);
        assert_eq!(registry.counts(), RegistryCounts::default());
    }
}
