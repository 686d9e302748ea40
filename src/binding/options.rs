//! `ManagerOptions` (JavaScript) → [`Options`] (core), with a clear error for bad values.

use std::time::Duration;

use napi::bindgen_prelude::Either;
use napi_derive::napi;

use crate::handshake::{AllowedHosts, AuthToken, HandshakePolicy, OriginPolicy};

use super::gate::Callback;
use crate::cluster::{ClusterOptions, DEFAULT_MAX_QUEUED_PUBLISHES};
use crate::gate::DEFAULT_DECISION_TIMEOUT;
use crate::options::{
    HistoryOptions, Options, DEFAULT_HISTORY_MAX_BYTES, DEFAULT_HISTORY_SIZE, DEFAULT_HISTORY_TTL,
    DEFAULT_MAX_BUFFERED_BYTES_PER_CONNECTION, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MESSAGES_PER_SECOND, DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_PENDING_BROADCAST_BYTES, DEFAULT_MAX_PENDING_REQUESTS_PER_CONNECTION,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION, DEFAULT_PING_INTERVAL, DEFAULT_REQUEST_TIMEOUT,
};

/// Options of `new WebSocketManager(wss, options)`. Every limit has a default; see the
/// README for the reasoning behind each.
#[napi(object, object_to_js = false)]
#[derive(Default)]
pub struct ManagerOptions {
    /// Milliseconds between health-check pings. A peer that has not answered the previous
    /// ping when the next one is due is terminated, so a silent peer is gone within two
    /// intervals. `0` disables the health check.
    /// @default 30000
    pub ping_interval_ms: Option<f64>,
    /// Largest inbound message (and frame) in bytes on native connections; larger ones
    /// close the connection with code 1009.
    /// @default 65536
    pub max_payload_bytes: Option<f64>,
    /// Most channels one client may subscribe to through the protocol; one more is
    /// answered with an error response of code `SUBSCRIPTION_LIMIT`. Subscriptions the
    /// server makes with `subscribe()` are not counted against it.
    /// @default 128
    pub max_subscriptions_per_connection: Option<f64>,
    /// Outbound bytes a connection may have queued, on both transports: a native
    /// subscriber over it, or a JavaScript socket whose `bufferedAmount` is over it when a
    /// broadcast reaches it, is disconnected with close code 4008, dropped from its channels
    /// and counted in `getStats().slowConsumerDisconnects`.
    /// @default 1048576
    pub max_buffered_bytes_per_connection: Option<f64>,
    /// Origins admitted on native connections. By default: requests without an `Origin`
    /// header, and origins whose host is `localhost`, `127.0.0.1` or `[::1]` (any port) or
    /// the request's own `Host`. A list switches to exact matches of scheme, host and port;
    /// `['*']` admits every origin. Refusals answer 403.
    /// @default undefined (loopback and same-host origins)
    pub allowed_origins: Option<Vec<String>>,
    /// Extra host names the `Host` header may name on a loopback connection (a defence
    /// against DNS rebinding); `.example.com` admits a domain and its subdomains, `['*']`
    /// turns the check off. Refusals answer 403.
    /// @default undefined (loopback names only)
    pub allowed_hosts: Option<Vec<String>>,
    /// Require a secret token on every native upgrade: `true` generates a random 256-bit
    /// token (read it from `manager.token`), a string uses that token. Clients present it
    /// as `Authorization: Bearer <token>`, as a `Sec-WebSocket-Protocol` entry
    /// `cluso-token.<token>`, or as a `token` query parameter. Refusals answer 401.
    /// @default false
    #[napi(ts_type = "boolean | string")]
    pub token: Option<Either<bool, String>>,
    /// Decides each native upgrade that passed the Origin, Host and token checks, before
    /// the `101`. Gets `{ url, headers, remoteAddress }` (header names lower-cased, as in
    /// Node's `req.headers`); returns or resolves to `true` to admit, an object to admit
    /// with that object as the connection's metadata (`meta` in `authorizeSubscribe`),
    /// anything else to refuse with 401. A throw, a rejection or no answer within
    /// `callbackTimeoutMs` refuses too.
    #[napi(
        ts_type = "(request: UpgradeRequestInfo) => boolean | object | Promise<boolean | object>"
    )]
    pub authenticate: Option<Callback>,
    /// Decides each subscribe a client sends (not the server's own `subscribe()`): gets
    /// `({ id, meta }, channel)` and returns or resolves to `true` to allow. Anything else,
    /// a throw, a rejection or a timeout answers with an error response of code `FORBIDDEN`.
    #[napi(
        ts_type = "(connection: ConnectionInfo, channel: string) => boolean | Promise<boolean>"
    )]
    pub authorize_subscribe: Option<Callback>,
    /// How long `authenticate` and `authorizeSubscribe` may take, in milliseconds.
    /// @default 5000
    pub callback_timeout_ms: Option<f64>,
    /// Native connections (established or mid-handshake) accepted at once; more are
    /// refused with 503.
    /// @default 10000
    pub max_connections: Option<f64>,
    /// Payload bytes of broadcasts waiting for the native fan-out (`pendingBroadcastBytes`
    /// in `getStats()`). `broadcast()` never waits and never delivers on the caller's
    /// thread: a broadcast that would take the queue past this bound is not
    /// delivered to native subscribers (drop-newest), counted in
    /// `getStats().droppedBroadcasts` and logged (a warning at most once a second);
    /// JavaScript sockets still get it, and with `historySize` it is kept for resuming
    /// clients. Pace a producer on `pendingBroadcasts` / `drained()` to stay under it.
    /// Direct sends and subscription changes are never refused and not counted.
    /// @default 67108864
    pub max_pending_broadcast_bytes: Option<f64>,
    /// Messages per second a client may send (bursts of twice as many). Over it, the first
    /// refused message is answered with `RATE_LIMITED`; a client that keeps flooding through
    /// a whole burst of refusals is closed with 1008. `0` disables the limit.
    /// @default 100
    pub max_messages_per_second: Option<f64>,
    /// Milliseconds a request handler (`handle()`) may take before the client is answered
    /// with code `TIMEOUT`. `0` waits for ever.
    /// @default 30000
    pub request_timeout_ms: Option<f64>,
    /// Requests one connection may have in flight; one more is answered with code `BUSY`.
    /// @default 16
    pub max_pending_requests_per_connection: Option<f64>,
    /// Events kept per channel so a client that reconnects can resume (`since`). With it
    /// on, every event carries `seq` and `epoch`. `0` turns history off and keeps the wire
    /// byte-identical to the original module's.
    /// @default 0
    pub history_size: Option<f64>,
    /// Milliseconds a kept event stays resumable.
    /// @default 300000
    pub history_ttl_ms: Option<f64>,
    /// Bytes of kept events per channel (their text; with bookkeeping a full channel takes
    /// about 1.5× that); the oldest go first.
    /// @default 1048576
    pub history_max_bytes: Option<f64>,
    /// Scale-out through Redis: every process with the same `redisUrl` and `prefix` delivers
    /// every broadcast, each channel in one order, with `seq` / `epoch` shared (history on)
    /// so a client can resume on any process. See the README, "Scaling out".
    pub cluster: Option<ClusterOption>,
}

/// `cluster` of the manager's options.
#[napi(object, object_to_js = false)]
pub struct ClusterOption {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS) or
    /// `redis+unix:///path`. One that does not parse throws `ERR_CLUSO_INVALID_OPTION`;
    /// one that cannot be reached means local delivery and retries, logged.
    pub redis_url: String,
    /// Prefix of every key and pub/sub channel in Redis.
    /// @default 'cluso-ws'
    pub prefix: Option<String>,
    /// Broadcasts waiting for Redis at most; more are dropped and counted
    /// (`getStats().clusterDropped`).
    /// @default 10000
    pub max_queued_publishes: Option<f64>,
}

/// Options converted for the core: the manager's limits, its handshake policy and the
/// application's callbacks.
pub struct ParsedOptions {
    pub core: Options,
    pub policy: HandshakePolicy,
    pub authenticate: Option<Callback>,
    pub authorize_subscribe: Option<Callback>,
}

/// A whole number in `min..=max`, or a RangeError naming the option.
fn whole(name: &str, value: Option<f64>, default: usize, min: usize) -> Result<usize, String> {
    let Some(value) = value else {
        return Ok(default);
    };
    const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;
    if !(value.is_finite()
        && value.fract() == 0.0
        && value >= min as f64
        && value <= MAX_SAFE_INTEGER)
    {
        return Err(format!(
            "options.{name} must be a whole number >= {min} (got {value})"
        ));
    }
    Ok(value as usize)
}

impl ManagerOptions {
    /// The core options, handshake policy and callbacks, or the message of the first bad
    /// value.
    pub fn parse(self) -> Result<ParsedOptions, String> {
        let origins = match &self.allowed_origins {
            None => OriginPolicy::default(),
            Some(list) => OriginPolicy::from_allowed(list).map_err(|e| e.to_string())?,
        };
        if origins == OriginPolicy::Any {
            tracing::warn!("allowedOrigins ['*']: any web page can connect to this server");
        }
        let allowed_hosts = match &self.allowed_hosts {
            None => AllowedHosts::default(),
            Some(list) => AllowedHosts::new(list).map_err(|e| e.to_string())?,
        };
        let token = match &self.token {
            None | Some(Either::A(false)) => None,
            Some(Either::A(true)) => Some(AuthToken::generate()),
            Some(Either::B(token)) => {
                Some(AuthToken::new(token.as_str()).map_err(|e| format!("options.token: {e}"))?)
            }
        };
        let policy = HandshakePolicy {
            origins,
            allowed_hosts,
            token,
            ..HandshakePolicy::default()
        };
        Ok(ParsedOptions {
            core: self.limits()?,
            policy,
            authenticate: self.authenticate,
            authorize_subscribe: self.authorize_subscribe,
        })
    }

    fn limits(&self) -> Result<Options, String> {
        let ping_ms = whole(
            "pingIntervalMs",
            self.ping_interval_ms,
            DEFAULT_PING_INTERVAL.as_millis() as usize,
            0,
        )?;
        Ok(Options {
            ping_interval: (ping_ms > 0).then(|| Duration::from_millis(ping_ms as u64)),
            max_payload_bytes: whole(
                "maxPayloadBytes",
                self.max_payload_bytes,
                DEFAULT_MAX_PAYLOAD_BYTES,
                1,
            )?,
            max_subscriptions_per_connection: whole(
                "maxSubscriptionsPerConnection",
                self.max_subscriptions_per_connection,
                DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
                0,
            )?,
            max_buffered_bytes_per_connection: whole(
                "maxBufferedBytesPerConnection",
                self.max_buffered_bytes_per_connection,
                DEFAULT_MAX_BUFFERED_BYTES_PER_CONNECTION,
                1,
            )?,
            max_connections: whole(
                "maxConnections",
                self.max_connections,
                DEFAULT_MAX_CONNECTIONS,
                1,
            )?,
            max_pending_broadcast_bytes: whole(
                "maxPendingBroadcastBytes",
                self.max_pending_broadcast_bytes,
                DEFAULT_MAX_PENDING_BROADCAST_BYTES,
                1,
            )?,
            max_messages_per_second: u32::try_from(whole(
                "maxMessagesPerSecond",
                self.max_messages_per_second,
                DEFAULT_MAX_MESSAGES_PER_SECOND as usize,
                0,
            )?)
            .map_err(|_| "options.maxMessagesPerSecond is too large".to_owned())?,
            decision_timeout: Duration::from_millis(whole(
                "callbackTimeoutMs",
                self.callback_timeout_ms,
                DEFAULT_DECISION_TIMEOUT.as_millis() as usize,
                1,
            )? as u64),
            request_timeout: {
                let ms = whole(
                    "requestTimeoutMs",
                    self.request_timeout_ms,
                    DEFAULT_REQUEST_TIMEOUT.as_millis() as usize,
                    0,
                )?;
                (ms > 0).then(|| Duration::from_millis(ms as u64))
            },
            max_pending_requests_per_connection: whole(
                "maxPendingRequestsPerConnection",
                self.max_pending_requests_per_connection,
                DEFAULT_MAX_PENDING_REQUESTS_PER_CONNECTION,
                1,
            )?,
            history: HistoryOptions {
                size: whole("historySize", self.history_size, DEFAULT_HISTORY_SIZE, 0)?,
                ttl: Duration::from_millis(whole(
                    "historyTtlMs",
                    self.history_ttl_ms,
                    DEFAULT_HISTORY_TTL.as_millis() as usize,
                    1,
                )? as u64),
                max_bytes: whole(
                    "historyMaxBytes",
                    self.history_max_bytes,
                    DEFAULT_HISTORY_MAX_BYTES,
                    1,
                )?,
            },
            cluster: match &self.cluster {
                None => None,
                Some(cluster) => Some(ClusterOptions::new(
                    &cluster.redis_url,
                    cluster.prefix.as_deref(),
                    whole(
                        "cluster.maxQueuedPublishes",
                        cluster.max_queued_publishes,
                        DEFAULT_MAX_QUEUED_PUBLISHES,
                        1,
                    )?,
                )?),
            },
        })
    }
}
