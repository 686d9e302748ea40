//! Delivery to native connections: the ordered job queue every write to a native
//! connection travels ([`queue`]), and each connection's bounded outbox ([`outbox`]).

pub mod outbox;
pub mod queue;

pub use queue::{FanOut, Job, Member};
