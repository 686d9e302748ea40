//! `ManagerOptions` (JavaScript) → [`Options`] (core), with a clear error for bad values.

use std::time::Duration;

use napi_derive::napi;

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
    /// The core options, or the message of the first bad value.
    pub fn into_core(self) -> Result<Options, String> {
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
