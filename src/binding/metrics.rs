//! `manager.metrics()`: the core's Prometheus text, handed over as a string.

use napi_derive::napi;

use super::manager::WebSocketManager;

#[napi]
impl WebSocketManager {
    /// The manager's gauges and counters in the Prometheus text exposition format 0.0.4
    /// (serve it with `Content-Type: text/plain; version=0.0.4`). Reading it costs no pass
    /// over the connections. Works after `shutdown()` too.
    #[napi(catch_unwind)]
    pub fn metrics(&self) -> String {
        crate::metrics::text(&self.shared.core)
    }
}
