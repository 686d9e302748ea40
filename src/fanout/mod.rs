//! Delivery to native connections: the ordered job queue every write to a native
//! connection travels ([`queue`]), applying its jobs (`delivery`: the channel index and
//! the writes, on several threads for a broadcast to many), each connection's write side
//! — direct writes, and a bounded queue of what the kernel refused ([`outbox`]) — and the
//! O(1) gauge of the fullest outbox ([`gauge`]).

mod delivery;
pub mod gauge;
pub mod outbox;
pub mod queue;
mod send;

pub use queue::{FanOut, Job, Member, Submitted};
