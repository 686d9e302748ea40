//! cluso-ws: the real-time core of a Node server, as a native addon.
//!
//! The crate is laid out as separate rooms, and only `binding` knows about Node:
//!
//! - [`manager`]: the core `Manager` — every decision of a `WebSocketManager` for both
//!   transports: dispatch of client messages, broadcasts, health verdicts, lifecycle and
//!   shutdown. It owns the registry; nothing else changes it.
//! - [`cluster`]: scale-out through Redis — one Lua script per broadcast numbers, keeps
//!   and publishes it; every process delivers what comes back, in one order per channel.
//! - [`history`]: per-channel `seq` / `epoch` and the kept events a resuming client gets.
//! - [`registry`]: connections, their channel sets and the channel → subscribers index.
//! - [`fanout`]: the ordered path to native connections (one job queue for broadcasts,
//!   sends, subscription changes and closes) and each connection's outbox: direct writes,
//!   and a bounded queue of what the kernel refused.
//! - [`protocol`]: the client protocol as a pure function from one inbound text to one
//!   [`protocol::Command`], plus the exact bytes of every server response.
//! - [`envelope`]: the `toISOString()` timestamp and JavaScript-compatible string escaping.
//! - [`gate`]: the application's `authenticate` / `authorizeSubscribe` decisions.
//! - [`rate`]: the per-connection inbound message rate limit.
//! - [`handshake`]: HTTP upgrade validation and the security policy (Origin, Host, token).
//! - [`transport`]: native connections: `listen`, the `attach` handoff, one connection's task.
//! - [`wire`]: WebSocket framing — server frames encoded once and shared, client frames
//!   decoded without a per-connection buffer.
//! - [`options`], [`stats`], [`error`]: limits with their defaults, counters, core errors.
//! - [`metrics`]: the gauges and counters as Prometheus text, a pure function of a snapshot.
//! - [`runtime`]: the internal tokio runtime every background task runs on.
//! - `binding` (cdylib only): the napi-rs classes `WebSocketManager`, `EventBroadcaster`
//!   and `NativeSocket`; they convert JavaScript values and delegate to the core.

pub mod cluster;
pub mod envelope;
pub mod error;
pub mod fanout;
pub mod gate;
pub mod handshake;
pub mod history;
pub mod manager;
pub mod metrics;
pub mod options;
pub mod protocol;
pub mod rate;
pub mod registry;
pub mod runtime;
pub mod stats;
pub mod transport;
pub mod wire;

mod binding;
