//! `ManagerOptions` (JavaScript) → [`Options`] (core), with a clear error for bad values.

use std::time::Duration;

use napi::bindgen_prelude::Either;
use napi_derive::napi;

use crate::handshake::{AllowedHosts, AuthToken, HandshakePolicy, OriginPolicy};

use crate::options::{
    Options, DEFAULT_MAX_BUFFERED_BYTES_PER_CONNECTION, DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
};

/// Options of `new WebSocketManager(wss, options)`. Every limit has a default; see the
/// README for the reasoning behind each.
#[napi(object)]
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
    /// Outbound bytes a native connection may have queued; a subscriber over it is
    /// disconnected with close code 4008 and counted in `getStats().slowConsumerDisconnects`.
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
}

/// Options converted for the core: the manager's limits and its handshake policy.
pub struct ParsedOptions {
    pub core: Options,
    pub policy: HandshakePolicy,
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
    /// The core options and handshake policy, or the message of the first bad value.
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
        })
    }

    fn limits(&self) -> Result<Options, String> {
        let ping_ms = whole("pingIntervalMs", self.ping_interval_ms, 30_000, 0)?;
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
        })
    }
}
