//! The native transport: WebSocket connections owned by the runtime.
//!
//! - [`listener`]: `listen()` — a TCP listener of its own; reads and validates the upgrade
//!   request in Rust.
//! - [`handoff`]: `attach()` — Node's HTTP server parsed the request; Rust takes over the
//!   socket's file descriptor and finishes the upgrade.
//! - [`upgrade`]: what both share once a request head is known: the handshake checks, the
//!   `101` or the refusal, and the start of the connection.
//! - [`connection`]: one connection's life: registration, reader, the writes the kernel
//!   refused, close. Framing is [`crate::wire`]'s.

pub mod connection;
#[cfg(unix)]
pub mod handoff;
pub mod listener;
pub mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use crate::handshake::HandshakePolicy;

/// An incomplete handshake is dropped after this long (slowloris): a real client sends its
/// whole request head in one packet, milliseconds after connecting.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After the server sends a close frame, how long it waits for the peer's before dropping
/// the TCP connection.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long `shutdown()` lets a connection write what it has queued and close cleanly.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// Where native connections are accepted and what they are told.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub policy: HandshakePolicy,
    /// Sent in the welcome message; omitted when `None`.
    pub cwd: Option<Arc<str>>,
}
