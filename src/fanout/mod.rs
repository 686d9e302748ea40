//! Delivery to native connections: the ordered job queue every write to a native
//! connection travels ([`queue`]), each connection's bounded outbox ([`outbox`]), and the
//! O(1) gauge of the fullest outbox ([`gauge`]).

pub mod gauge;
pub mod outbox;
pub mod queue;

pub use queue::{FanOut, Job, Member, Submitted};
