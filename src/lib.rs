//! cluso-ws: the real-time core of a Node server, as a native addon.
//!
//! The crate is laid out as separate rooms, and only `binding` knows about Node:
//!
//! - [`registry`]: connections, their channel sets and the channel → subscribers index.
//! - [`protocol`]: the client protocol (subscribe / unsubscribe / request / ping) as a pure
//!   function from one inbound text to one [`protocol::Command`], plus the exact bytes of
//!   every server response.
//! - [`envelope`]: the `toISOString()` timestamp and JavaScript-compatible string escaping.
//! - [`fanout`]: the bounded queue and task that hand broadcasts to native subscribers.
//! - [`outbox`]: a native connection's bounded outbound queue (the slow-consumer policy).
//! - [`gate`]: the application's `authenticate` / `authorizeSubscribe` decisions.
//! - [`rate`]: the per-connection inbound message rate limit.
//! - [`transport`]: native connections: `listen`, the `attach` handoff, one connection's task.
//! - [`hub`]: the shared state a manager owns (registry, options, statistics) and the
//!   fan-out entry point both transports use.
//! - [`handshake`]: HTTP upgrade validation and the security policy (Origin, Host, token).
//! - [`runtime`]: the internal tokio runtime every background task runs on.
//! - `binding` (cdylib only): the napi-rs classes `WebSocketManager` and `EventBroadcaster`;
//!   they convert JavaScript values and delegate to the core.

pub mod envelope;
pub mod fanout;
pub mod gate;
pub mod handshake;
pub mod hub;
pub mod options;
pub mod outbox;
pub mod protocol;
pub mod rate;
pub mod registry;
pub mod runtime;
pub mod stats;
pub mod transport;

mod binding;
