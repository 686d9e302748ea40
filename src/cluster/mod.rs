//! Scale-out through Redis: many processes, one order per channel.
//!
//! Centrifugo's design (`broker_history_add_stream.lua`): every broadcast runs one Lua
//! script that numbers it (`HINCRBY` on the channel's meta hash, whose epoch it creates if
//! absent), appends it to the channel's stream (`XADD … MAXLEN ~ historySize`) and
//! `PUBLISH`es the numbered text. Every process — the publisher too — delivers what comes
//! back from pub/sub, so each channel has one order everywhere and pub/sub order equals
//! `seq` order.
//!
//! - [`script`]: the Lua scripts, key names, and parsing of what Redis sends back (which is
//!   untrusted input: size limits, no panics).
//! - [`engine`]: the bounded publish queue, the publish task, reads for a resume, and the
//!   up / down state.
//! - [`subscriber`]: the one connection (RESP3): connect, `PSUBSCRIBE`, deliver pushes,
//!   reconnect with backoff and subscribe again.
//!
//! Reads for a resume travel the same connection as the subscription, and the connection
//! hands each push to the [`Sink`] synchronously while it reads, so when a read's reply
//! arrives every message published before the read has been delivered: a resume's
//! history read and live delivery meet without a gap or a duplicate.

pub mod engine;
pub mod script;
pub mod subscriber;

use std::time::Duration;

use redis::IntoConnectionInfo;
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub use engine::{ClusterStatus, Engine};

/// The default key and channel prefix in Redis.
pub const DEFAULT_PREFIX: &str = "cluso-ws";

/// Broadcasts waiting for Redis; beyond it a broadcast is dropped and counted.
pub const DEFAULT_MAX_QUEUED_PUBLISHES: usize = 10_000;

/// Bytes of broadcasts waiting for Redis; beyond it a broadcast is dropped and counted.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// The largest event sent to or accepted from Redis.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Longest prefix.
const MAX_PREFIX_BYTES: usize = 64;

/// How long a command may take before the connection counts as lost (a `DEBUG SLEEP 1`
/// is slow, not down).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// First and longest wait between connection attempts.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// `cluster: { redisUrl, prefix }`, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    redis_url: String,
    pub prefix: String,
    pub max_queued_publishes: usize,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("ClusterOptions")
            .field("prefix", &self.prefix)
            .field("max_queued_publishes", &self.max_queued_publishes)
            .finish_non_exhaustive()
    }
}

impl ClusterOptions {
    /// Checks the URL (`redis://`, `rediss://`, `redis+unix://`) and the prefix.
    pub fn new(
        redis_url: &str,
        prefix: Option<&str>,
        max_queued_publishes: usize,
    ) -> Result<Self, String> {
        if let Err(error) = redis_url.into_connection_info() {
            // The parser's message may quote the URL, password included: not repeated.
            let _ = error;
            return Err("options.cluster.redisUrl is not a valid Redis URL".to_owned());
        }
        let prefix = prefix.unwrap_or(DEFAULT_PREFIX);
        let bad = prefix.is_empty()
            || prefix.len() > MAX_PREFIX_BYTES
            || prefix
                .chars()
                .any(|c| c.is_control() || matches!(c, '*' | '?' | '[' | ']' | '\\' | '{' | '}'));
        if bad {
            return Err(format!(
                "options.cluster.prefix must be 1-{MAX_PREFIX_BYTES} bytes without control \
                 characters or any of * ? [ ] \\ {{ }}"
            ));
        }
        if max_queued_publishes == 0 {
            return Err("options.cluster.maxQueuedPublishes must be >= 1".to_owned());
        }
        Ok(Self {
            redis_url: redis_url.to_owned(),
            prefix: prefix.to_owned(),
            max_queued_publishes,
        })
    }

    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }
}

/// One event as it came back from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub channel: String,
    /// `(seq, epoch)` when history is on.
    pub numbered: Option<(u64, String)>,
    /// The text subscribers get (numbered when history is on).
    pub text: Utf8Bytes,
}

/// What a subscribe read from Redis: the channel's shared position and, for a resume, the
/// kept events after `since` (ascending `seq`, at most `historySize + 1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub epoch: String,
    pub top: u64,
    pub events: Vec<(u64, Utf8Bytes)>,
}

/// Where the engine delivers: implemented by the manager.
pub trait Sink: Send + Sync {
    /// An event that came back from Redis pub/sub.
    fn deliver(&self, incoming: Incoming);
    /// A broadcast that could not go through Redis (down): delivered to this process only.
    fn deliver_local(&self, channel: &str, envelope: &str);
    /// A new connection is subscribed: what was delivered before it may have gaps.
    fn connected(&self);
}
