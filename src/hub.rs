//! The state one manager owns — registry, options, statistics — and the operations both
//! transports share: answering a client message, delivering a broadcast to native
//! subscribers, and the health check.
//!
//! Locking: the registry sits behind one `RwLock`. No lock is ever held across an `.await`
//! or across a call into JavaScript; callers copy what they need out and let go.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tracing::{debug, warn};

use crate::fanout::{FanOut, Job};
use crate::gate::{ConnectionInfo, Gatekeeper};
use crate::options::Options;
use crate::outbox::{CloseReason, Outbox, Push};
use crate::protocol::RequestId;
use crate::protocol::{self, codes, Command};
use crate::rate::{Admit, TokenBucket};
use crate::registry::{HealthVerdict, Registry, SubscribeOutcome, Transport};
use crate::stats::Stats;

/// Close code sent to a subscriber whose outbound queue crossed its cap.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;

/// Told when the number of live native resources (listeners, attachments, native
/// connections) crosses zero, so the host can keep its process alive while any exist.
pub trait Lifeline: Send + Sync {
    fn active_changed(&self, active: usize);
}

/// Counts one live native resource while it exists.
pub struct ActiveGuard {
    hub: Arc<Hub>,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let now = self.hub.active.fetch_sub(1, Ordering::AcqRel) - 1;
        if now == 0 {
            if let Some(lifeline) = self.hub.lifeline.get() {
                lifeline.active_changed(0);
            }
        }
    }
}

/// Shared state of one `WebSocketManager`.
pub struct Hub {
    registry: RwLock<Registry>,
    options: Options,
    stats: Stats,
    shut_down: AtomicBool,
    /// Cancelled by `shutdown()`: every listener, handshake and native connection ends.
    shutdown: CancellationToken,
    active: AtomicUsize,
    lifeline: OnceLock<Arc<dyn Lifeline>>,
    fanout: FanOut,
    fanout_started: AtomicBool,
    gatekeeper: OnceLock<Arc<dyn Gatekeeper>>,
    /// Native connections established or mid-handshake, against `maxConnections`.
    native_slots: AtomicUsize,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("options", &self.options)
            .field("shut_down", &self.is_shut_down())
            .finish_non_exhaustive()
    }
}

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

/// Close code for a peer that floods the server with messages.
pub const POLICY_VIOLATION: u16 = 1008;

/// What to do after one client message.
pub enum Handled {
    /// Send this reply to the client.
    Reply(String),
    /// Send this reply; the connection's subscriptions changed.
    Changed { reply: String, change: Change },
    /// Nothing to send.
    Nothing,
    /// Over the rate limit; dropped without a reply.
    Dropped,
    /// Close the connection with this code.
    Close(u16),
    /// Ask the application (`authorizeSubscribe`) first; then call
    /// [`Hub::finish_subscribe`].
    Authorize {
        req: Option<RequestId>,
        channel: String,
        connection: ConnectionInfo,
    },
}

impl std::fmt::Debug for Handled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handled::Reply(text) => f.debug_tuple("Reply").field(text).finish(),
            Handled::Changed { reply, change } => f
                .debug_struct("Changed")
                .field("reply", reply)
                .field("change", change)
                .finish(),
            Handled::Nothing => f.write_str("Nothing"),
            Handled::Dropped => f.write_str("Dropped"),
            Handled::Close(code) => f.debug_tuple("Close").field(code).finish(),
            Handled::Authorize { channel, .. } => f
                .debug_struct("Authorize")
                .field("channel", channel)
                .finish(),
        }
    }
}

impl Handled {
    /// The reply text, if this is a reply.
    pub fn reply(self) -> Option<String> {
        match self {
            Handled::Reply(text) | Handled::Changed { reply: text, .. } => Some(text),
            _ => None,
        }
    }
}

/// A subscription change made by a client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Subscribed(String),
    Unsubscribed(String),
}

/// Room for one native connection under `maxConnections`, given back on drop.
pub struct ConnectionSlot {
    hub: Arc<Hub>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.hub.native_slots.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The result of one health-check tick for the sockets the runtime cannot reach itself.
#[derive(Debug, Default)]
pub struct JsHealthWork {
    /// Removed from the registry: terminate their sockets.
    pub dead: Vec<HealthVerdict>,
    /// Still registered: ping them.
    pub to_ping: Vec<HealthVerdict>,
}

impl Hub {
    pub fn new(options: Options) -> Arc<Self> {
        Arc::new(Self {
            registry: RwLock::new(Registry::new()),
            options,
            stats: Stats::default(),
            shut_down: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            active: AtomicUsize::new(0),
            lifeline: OnceLock::new(),
            fanout: FanOut::default(),
            fanout_started: AtomicBool::new(false),
            gatekeeper: OnceLock::new(),
            native_slots: AtomicUsize::new(0),
        })
    }

    /// Installs the host's lifeline; only the first call has an effect.
    pub fn set_lifeline(&self, lifeline: Arc<dyn Lifeline>) {
        let _ = self.lifeline.set(lifeline);
    }

    /// Counts a live native resource until the guard is dropped.
    pub fn active_guard(self: &Arc<Self>) -> ActiveGuard {
        let now = self.active.fetch_add(1, Ordering::AcqRel) + 1;
        if now == 1 {
            if let Some(lifeline) = self.lifeline.get() {
                lifeline.active_changed(1);
            }
        }
        ActiveGuard {
            hub: Arc::clone(self),
        }
    }

    /// Live native resources right now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Resolves when the manager shuts down.
    pub fn shutdown_signal(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Registry> {
        // The registry holds plain data that stays consistent between statements, so a
        // panic elsewhere while the lock was held does not make it unusable.
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Marks the hub as shut down and signals every native task; returns `false` if it
    /// already was.
    pub fn begin_shutdown(&self) -> bool {
        let first = !self.shut_down.swap(true, Ordering::AcqRel);
        self.shutdown.cancel();
        first
    }

    /// Handles one text message from connection `id`.
    pub fn handle_client_text(&self, id: &str, text: &str) -> Handled {
        match protocol::parse(text) {
            Command::Subscribe { id: req, channel } => self.begin_subscribe(id, req, channel),
            Command::Unsubscribe { id: req, channel } => {
                if !self.write().unsubscribe_if_known(id, &channel) {
                    return Handled::Nothing;
                }
                debug!(conn_id = id, channel, "unsubscribed");
                Handled::Changed {
                    reply: protocol::unsubscribed(req.as_ref(), &channel),
                    change: Change::Unsubscribed(channel),
                }
            }
            Command::Request { id: req } => Handled::Reply(protocol::no_handler(req.as_ref())),
            Command::Ping { id: req } => Handled::Reply(protocol::pong(req.as_ref())),
            Command::MissingChannel => Handled::Nothing,
            Command::InvalidChannel { id: req, problem } => {
                warn!(conn_id = id, ?problem, "invalid channel name");
                Handled::Reply(protocol::error(
                    req.as_ref(),
                    problem.message(),
                    codes::INVALID_CHANNEL,
                ))
            }
            Command::Unknown { kind } => {
                warn!(conn_id = id, kind = kind.as_deref(), "unknown message type");
                Handled::Nothing
            }
            Command::Malformed => {
                warn!(conn_id = id, "failed to parse message");
                Handled::Reply(protocol::parse_error())
            }
        }
    }

    /// A client subscribe: answered at once, or handed to the application's
    /// `authorizeSubscribe` first when it set one and the subscription would be new.
    fn begin_subscribe(&self, id: &str, req: Option<RequestId>, channel: String) -> Handled {
        let limit = self.options.max_subscriptions_per_connection;
        let state = self.read().get(id).map(|c| {
            (
                c.channels.contains(channel.as_str()),
                c.client_channels.len() >= limit,
                c.meta.clone(),
            )
        });
        match state {
            None => Handled::Nothing,
            Some((true, _, _)) => Handled::Reply(protocol::subscribed(req.as_ref(), &channel)),
            Some((false, true, _)) => {
                warn!(conn_id = id, channel, limit, "subscription limit reached");
                Handled::Reply(protocol::error(
                    req.as_ref(),
                    &format!("Subscription limit of {limit} channels reached"),
                    codes::SUBSCRIPTION_LIMIT,
                ))
            }
            Some((false, false, meta)) => {
                if !self
                    .gatekeeper
                    .get()
                    .is_some_and(|gate| gate.authorizes_subscriptions())
                {
                    return self.finish_subscribe(id, req, &channel, true);
                }
                Handled::Authorize {
                    req,
                    channel,
                    connection: ConnectionInfo {
                        id: Arc::from(id),
                        meta,
                    },
                }
            }
        }
    }

    /// Completes a subscribe once its authorization is known.
    pub fn finish_subscribe(
        &self,
        id: &str,
        req: Option<RequestId>,
        channel: &str,
        allowed: bool,
    ) -> Handled {
        if !allowed {
            warn!(
                conn_id = id,
                channel, "subscription refused by authorizeSubscribe"
            );
            return Handled::Reply(protocol::error(
                req.as_ref(),
                "Not allowed to subscribe to this channel",
                codes::FORBIDDEN,
            ));
        }
        let limit = self.options.max_subscriptions_per_connection;
        match self.write().subscribe(id, channel, Some(limit)) {
            SubscribeOutcome::Added => {
                debug!(conn_id = id, channel, "subscribed");
                Handled::Changed {
                    reply: protocol::subscribed(req.as_ref(), channel),
                    change: Change::Subscribed(channel.to_owned()),
                }
            }
            SubscribeOutcome::AlreadySubscribed => {
                Handled::Reply(protocol::subscribed(req.as_ref(), channel))
            }
            SubscribeOutcome::LimitReached => Handled::Reply(protocol::error(
                req.as_ref(),
                &format!("Subscription limit of {limit} channels reached"),
                codes::SUBSCRIPTION_LIMIT,
            )),
            SubscribeOutcome::UnknownConnection => Handled::Nothing,
        }
    }

    /// Applies the rate limit to one inbound message of connection `id`.
    pub fn rate_check(&self, id: &str, bucket: &mut Option<TokenBucket>) -> Handled {
        let Some(bucket) = bucket else {
            return Handled::Nothing;
        };
        match bucket.admit(std::time::Instant::now()) {
            Admit::Yes => Handled::Nothing,
            Admit::Refuse { first: true } => {
                warn!(conn_id = id, "message rate limit exceeded");
                Handled::Reply(protocol::error(
                    None,
                    "Too many messages; slow down",
                    codes::RATE_LIMITED,
                ))
            }
            Admit::Refuse { first: false } => Handled::Dropped,
            Admit::Close => {
                warn!(conn_id = id, "message flood; closing");
                Handled::Close(POLICY_VIOLATION)
            }
        }
    }

    /// A fresh rate limiter for a new connection, or `None` when limiting is off.
    pub fn new_rate_limiter(&self) -> Option<TokenBucket> {
        let rate = self.options.max_messages_per_second;
        (rate > 0).then(|| TokenBucket::new(rate, std::time::Instant::now()))
    }

    /// Installs the application's checks; only the first call has an effect.
    pub fn set_gatekeeper(&self, gatekeeper: Arc<dyn Gatekeeper>) {
        let _ = self.gatekeeper.set(gatekeeper);
    }

    pub fn gatekeeper(&self) -> Option<&Arc<dyn Gatekeeper>> {
        self.gatekeeper.get()
    }

    /// Reserves room for one more native connection under `maxConnections`.
    pub fn reserve_connection(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let taken = self.native_slots.fetch_add(1, Ordering::AcqRel);
        if taken >= self.options.max_connections {
            self.native_slots.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectionSlot {
            hub: Arc::clone(self),
        })
    }

    /// Subscribers of `channel` by transport: (JavaScript sockets, native).
    pub fn subscriber_counts(&self, channel: &str) -> (usize, usize) {
        let registry = self.read();
        let native = registry.native_subscriber_count(channel);
        (registry.subscriber_count(channel) - native, native)
    }

    /// Publishes one serialised broadcast to the native subscribers of `channel` through
    /// the fan-out task, so this costs the same whatever their number.
    pub fn publish(self: &Arc<Self>, channel: &str, text: Utf8Bytes) {
        self.start_fanout();
        let job = Job {
            channel: Arc::from(channel),
            text,
        };
        self.fanout.submit(job, &self.registry, &self.stats);
    }

    /// Delivers every queued broadcast now, on this thread. Called before an operation
    /// that must be ordered after earlier broadcasts — a direct send, a subscription
    /// change, a removal — so native connections see them in the order the app made them.
    pub fn flush_fanout(&self) -> usize {
        self.fanout.drain(&self.registry, &self.stats)
    }

    /// Queues `text` for one native connection, after every earlier broadcast, counting
    /// it as sent or as a slow consumer.
    pub fn send_native(&self, id: &str, outbox: &Outbox, text: String) -> Push {
        self.flush_fanout();
        let bytes = text.len() as u64;
        let pushed = outbox.push(Message::text(text));
        self.account(id, pushed, bytes);
        pushed
    }

    /// Counts the outcome of one push into a native outbox.
    pub fn account(&self, id: &str, pushed: Push, bytes: u64) {
        match pushed {
            Push::Queued => self.stats.record_sent(1, bytes),
            Push::OverCap => {
                self.stats.record_slow_consumer();
                warn!(conn_id = id, "slow consumer disconnected");
            }
            Push::Closed => {}
        }
    }

    /// Broadcasts queued for the fan-out task.
    pub fn pending_broadcasts(&self) -> usize {
        self.fanout.pending()
    }

    fn start_fanout(self: &Arc<Self>) {
        if self.fanout_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let hub = Arc::clone(self);
        crate::runtime::handle().spawn(async move {
            loop {
                tokio::select! {
                    () = hub.fanout.wait() => { hub.flush_fanout(); }
                    () = hub.shutdown_signal() => break,
                }
            }
            hub.flush_fanout();
        });
    }

    /// One health-check tick for native connections, on the runtime: peers that missed
    /// the previous ping are terminated, the others pinged.
    pub fn health_tick_native(&self) {
        let (dead, to_ping) = self.write().health_tick(true);
        for verdict in dead {
            warn!(conn_id = &*verdict.id, "dead connection removed");
            self.stats.record_dead_peer();
            if let Transport::Native(outbox) = &verdict.transport {
                outbox.close(CloseReason::Gone);
            }
        }
        for verdict in to_ping {
            if let Transport::Native(outbox) = &verdict.transport {
                outbox.push_control(Message::Ping(Default::default()));
            }
        }
    }

    /// One health-check tick for JavaScript sockets. It runs on the JavaScript thread, so
    /// a blocked event loop delays the tick instead of condemning peers whose pongs are
    /// waiting behind it. The caller terminates the dead and pings the rest.
    pub fn health_tick_js(&self) -> JsHealthWork {
        let (dead, to_ping) = self.write().health_tick(false);
        for verdict in &dead {
            warn!(conn_id = &*verdict.id, "dead connection removed");
            self.stats.record_dead_peer();
        }
        JsHealthWork { dead, to_ping }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Outbox;

    fn hub_with(ids: &[&str]) -> Arc<Hub> {
        let hub = Hub::new(Options::default());
        for id in ids {
            hub.write().add(id, Transport::Js);
        }
        hub
    }

    #[test]
    fn subscribe_message_subscribes_and_answers() {
        let hub = hub_with(&["a"]);
        let reply =
            hub.handle_client_text("a", r#"{"type":"subscribe","channel":"files","id":"7"}"#);
        assert_eq!(
            reply.reply().as_deref(),
            Some(
                r#"{"type":"response","id":"7","data":{"status":"subscribed","channel":"files"}}"#
            )
        );
        assert_eq!(hub.read().subscriber_count("files"), 1);
    }

    #[test]
    fn subscription_limit_answers_with_a_code_and_keeps_the_connection() {
        let hub = Hub::new(Options {
            max_subscriptions_per_connection: 1,
            ..Options::default()
        });
        hub.write().add("a", Transport::Js);
        hub.handle_client_text("a", r#"{"type":"subscribe","channel":"one"}"#);
        let reply = hub
            .handle_client_text("a", r#"{"type":"subscribe","channel":"two","id":2}"#)
            .reply()
            .unwrap_or_default();
        assert!(reply.contains(r#""code":"SUBSCRIPTION_LIMIT""#), "{reply}");
        assert!(reply.contains(r#""id":2"#));
        assert!(hub.read().contains("a"));
        assert_eq!(hub.read().channels_of("a").len(), 1);
    }

    struct RefuseAll;

    impl Gatekeeper for RefuseAll {
        fn authenticate(
            &self,
            _: crate::gate::AuthRequest,
        ) -> Option<crate::gate::Decision<crate::gate::AuthVerdict>> {
            None
        }
        fn authorize_subscribe(
            &self,
            _: ConnectionInfo,
            _: String,
        ) -> Option<crate::gate::Decision<bool>> {
            Some(Box::pin(async { false }))
        }
        fn authorizes_subscriptions(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_checked_subscribe_waits_for_authorization_and_a_refusal_is_forbidden() {
        let hub = hub_with(&["a"]);
        hub.set_gatekeeper(Arc::new(RefuseAll));
        let handled = hub.handle_client_text("a", r#"{"type":"subscribe","channel":"x","id":1}"#);
        let Handled::Authorize {
            req,
            channel,
            connection,
        } = handled
        else {
            panic!("expected an authorization step, got {handled:?}");
        };
        assert_eq!(&*connection.id, "a");
        let reply = hub
            .finish_subscribe("a", req, &channel, false)
            .reply()
            .unwrap_or_default();
        assert!(reply.contains(r#""code":"FORBIDDEN""#), "{reply}");
        assert!(hub.read().channels_of("a").is_empty());
    }

    #[test]
    fn the_rate_limit_answers_once_then_drops_then_closes() {
        let hub = Hub::new(Options {
            max_messages_per_second: 1,
            ..Options::default()
        });
        let mut bucket = hub.new_rate_limiter();
        assert!(matches!(hub.rate_check("a", &mut bucket), Handled::Nothing));
        assert!(matches!(hub.rate_check("a", &mut bucket), Handled::Nothing));
        let Handled::Reply(reply) = hub.rate_check("a", &mut bucket) else {
            panic!("expected a RATE_LIMITED reply");
        };
        assert!(reply.contains("RATE_LIMITED"));
        assert!(matches!(hub.rate_check("a", &mut bucket), Handled::Dropped));
        assert!(matches!(
            hub.rate_check("a", &mut bucket),
            Handled::Close(1008)
        ));
    }

    #[test]
    fn connection_slots_stop_at_the_limit_and_come_back() {
        let hub = Hub::new(Options {
            max_connections: 1,
            ..Options::default()
        });
        let slot = hub.reserve_connection();
        assert!(slot.is_some());
        assert!(hub.reserve_connection().is_none());
        drop(slot);
        assert!(hub.reserve_connection().is_some());
    }

    #[test]
    fn messages_from_a_removed_connection_change_nothing() {
        let hub = hub_with(&[]);
        assert!(matches!(
            hub.handle_client_text("gone", r#"{"type":"subscribe","channel":"files"}"#),
            Handled::Nothing
        ));
        assert_eq!(hub.read().counts().channels, 0);
    }

    #[test]
    fn publish_reaches_native_subscribers_through_the_fanout() {
        let hub = hub_with(&["js"]);
        let outbox = Arc::new(Outbox::new(1024));
        hub.write()
            .add("native", Transport::Native(Arc::clone(&outbox)));
        hub.write().subscribe("js", "files", None);
        hub.write().subscribe("native", "files", None);
        assert_eq!(hub.subscriber_counts("files"), (1, 1));
        hub.publish("files", Utf8Bytes::from_static("hello"));
        hub.flush_fanout();
        assert_eq!(outbox.queued_bytes(), 5);
    }

    #[test]
    fn publish_counts_a_slow_consumer_once() {
        let hub = hub_with(&[]);
        let outbox = Arc::new(Outbox::new(8));
        hub.write()
            .add("slow", Transport::Native(Arc::clone(&outbox)));
        hub.write().subscribe("slow", "files", None);
        let text = Utf8Bytes::from_static("12345");
        for _ in 0..3 {
            hub.publish("files", text.clone());
        }
        hub.flush_fanout();
        assert_eq!(hub.stats().snapshot().slow_consumer_disconnects, 1);
        assert_eq!(outbox.closed(), Some(CloseReason::SlowConsumer));
    }

    #[test]
    fn health_ticks_split_by_transport() {
        let hub = hub_with(&["js"]);
        let outbox = Arc::new(Outbox::new(1024));
        hub.write()
            .add("native", Transport::Native(Arc::clone(&outbox)));
        hub.health_tick_native();
        hub.health_tick_native();
        assert_eq!(outbox.closed(), Some(CloseReason::Gone));
        assert!(hub.read().contains("js"));
        let first = hub.health_tick_js();
        assert_eq!(first.to_ping.len(), 1);
        assert!(first.dead.is_empty());
        let second = hub.health_tick_js();
        assert_eq!(second.dead.len(), 1);
        assert_eq!(hub.stats().snapshot().dead_peers_removed, 2);
    }
}
