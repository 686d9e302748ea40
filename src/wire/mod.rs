//! WebSocket framing (RFC 6455) for the native transport, written for fan-out:
//!
//! - [`frame`]: the server's frames. A frame is a small inline header and a shared payload,
//!   or a run of broadcasts' frames back to back in one buffer, encoded once and written to
//!   every subscriber from the same bytes (a reference count each, never a copy).
//! - [`decode`]: the client's frames, parsed straight from what a read returned. A
//!   connection keeps no buffer of its own between messages: only an incomplete frame or a
//!   fragmented message is carried over, in memory allocated for it and freed after.
//!
//! Server frames are never masked and carry no extensions; client frames must be masked.

pub mod decode;
pub mod frame;

pub use decode::{Decoder, Incoming};
pub use frame::Frame;
