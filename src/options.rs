//! Every limit of a manager: a named default with its reason, in one place.
//!
//! The binding fills [`Options`] from the JavaScript options object; the core never reads
//! JavaScript. The README lists each option with the default given here.

use std::time::Duration;

/// How often the health check pings every connection. A peer that has not answered the
/// previous ping by the next tick is terminated, so a silent peer is gone within two
/// intervals (the original module's behaviour).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Largest inbound message (and frame). Client messages are small JSON commands; 64 KiB
/// leaves room for request payloads while keeping a hostile peer from making the server
/// buffer megabytes per connection.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Largest number of channels one client may subscribe to through the protocol. The six
/// built-in channels plus custom ones fit many times over; the cap bounds the subscription
/// index a single client can grow.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 128;

/// Outbound bytes a native connection may have queued before it is disconnected as a slow
/// consumer. 1 MiB is thousands of typical events: a healthy reader never gets near it,
/// and 10 000 stuck readers still cost at most 10 GiB only in the worst case the operator
/// chose by raising it.
pub const DEFAULT_MAX_BUFFERED_BYTES_PER_CONNECTION: usize = 1024 * 1024;

/// Native connections (established or mid-handshake) one manager accepts; more are refused
/// with 503. Each costs a descriptor and a few KiB; 10 000 fits a default `ulimit -n` of
/// 1 048 576 and stays far from memory trouble, while capping what a flood can take.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Client messages per second per connection (bursts of twice as many). A UI sends a
/// handful of subscribe / request messages per second; 100 is generous for it and keeps a
/// flooding peer from monopolising the core.
pub const DEFAULT_MAX_MESSAGES_PER_SECOND: u32 = 100;

/// How long a request handler may take before the client is answered `TIMEOUT`: the Cluso
/// web client gives up after 30 s, so an answer later than that reaches nobody.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests one connection may have in flight; one more is answered `BUSY`. A UI awaits a
/// few at a time; 16 bounds what one client can make the application work on at once.
pub const DEFAULT_MAX_PENDING_REQUESTS_PER_CONNECTION: usize = 16;

/// Events kept per channel for resuming clients. Off by default, so the drop-in wire stays
/// byte-identical to the original's (no `seq` / `epoch` on events).
pub const DEFAULT_HISTORY_SIZE: usize = 0;

/// How long a kept event stays resumable: long enough for a laptop lid or a server
/// restart behind a load balancer, short enough that a forgotten channel frees its memory.
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(300);

/// Bytes of kept events per channel: with the size limit, what bounds history memory
/// whatever the traffic (a few thousand typical events).
pub const DEFAULT_HISTORY_MAX_BYTES: usize = 1024 * 1024;

/// Payload bytes of broadcasts waiting on the ordered path to native connections
/// (`maxPendingBroadcastBytes`). It bounds the memory of a producer that ignores the
/// backpressure signal: past it a broadcast is not queued for native subscribers, and is
/// counted in `droppedBroadcasts`. 64 MiB holds some 300 000 typical 200-byte events or a
/// burst of large ones — far more than a paced producer ever queues — while keeping a
/// runaway loop from growing the heap without bound.
pub const DEFAULT_MAX_PENDING_BROADCAST_BYTES: usize = 64 * 1024 * 1024;

/// Longest channel name a client may use, in UTF-8 bytes.
pub const MAX_CHANNEL_NAME_BYTES: usize = 128;

/// The limits and timers of one manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `None` disables the health check.
    pub ping_interval: Option<Duration>,
    pub max_payload_bytes: usize,
    pub max_subscriptions_per_connection: usize,
    pub max_buffered_bytes_per_connection: usize,
    pub max_connections: usize,
    /// Payload bytes of broadcasts the ordered path may hold; see
    /// [`DEFAULT_MAX_PENDING_BROADCAST_BYTES`].
    pub max_pending_broadcast_bytes: usize,
    /// `0` disables rate limiting.
    pub max_messages_per_second: u32,
    /// How long `authenticate` / `authorizeSubscribe` may take before the request is refused.
    pub decision_timeout: Duration,
    /// `None`: handlers may take as long as they like.
    pub request_timeout: Option<Duration>,
    pub max_pending_requests_per_connection: usize,
    pub history: HistoryOptions,
    /// Scale-out through Redis (`cluster`); `None` keeps every broadcast in this process.
    pub cluster: Option<crate::cluster::ClusterOptions>,
}

/// What each channel keeps for resuming clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryOptions {
    /// Events kept per channel; `0` turns history (and `seq` / `epoch`) off.
    pub size: usize,
    pub ttl: Duration,
    pub max_bytes: usize,
}

impl HistoryOptions {
    pub fn enabled(&self) -> bool {
        self.size > 0
    }
}

impl Default for HistoryOptions {
    fn default() -> Self {
        Self {
            size: DEFAULT_HISTORY_SIZE,
            ttl: DEFAULT_HISTORY_TTL,
            max_bytes: DEFAULT_HISTORY_MAX_BYTES,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ping_interval: Some(DEFAULT_PING_INTERVAL),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_subscriptions_per_connection: DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
            max_buffered_bytes_per_connection: DEFAULT_MAX_BUFFERED_BYTES_PER_CONNECTION,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending_broadcast_bytes: DEFAULT_MAX_PENDING_BROADCAST_BYTES,
            max_messages_per_second: DEFAULT_MAX_MESSAGES_PER_SECOND,
            decision_timeout: crate::gate::DEFAULT_DECISION_TIMEOUT,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            max_pending_requests_per_connection: DEFAULT_MAX_PENDING_REQUESTS_PER_CONNECTION,
            history: HistoryOptions::default(),
            cluster: None,
        }
    }
}
