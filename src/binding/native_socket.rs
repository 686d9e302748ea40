//! `NativeSocket`: the handle `getConnections()` shows for a socket the native core owns.
//! Every method goes through the core, on the same ordered path as broadcasts.

use std::sync::{Arc, Weak};

use napi_derive::napi;

use crate::manager::Manager;
use crate::registry::RecordKey;

/// A socket owned by the native core, as `getConnections()` shows it.
#[napi]
pub struct NativeSocket {
    core: Weak<Manager>,
    id: String,
    key: RecordKey,
}

impl NativeSocket {
    pub fn new(core: &Arc<Manager>, id: String, key: RecordKey) -> Self {
        Self {
            core: Arc::downgrade(core),
            id,
            key,
        }
    }
}

#[napi]
impl NativeSocket {
    /// `1` (OPEN) while the connection is registered and open, else `3` (CLOSED).
    #[napi(getter)]
    pub fn ready_state(&self) -> u32 {
        let open = self
            .core
            .upgrade()
            .is_some_and(|core| core.native_is_open(&self.id, self.key));
        if open {
            1
        } else {
            3
        }
    }

    /// Queues a text message, after every broadcast made before this call.
    #[napi]
    pub fn send(&self, data: String) {
        if let Some(core) = self.core.upgrade() {
            core.send_native(&self.id, self.key, data);
        }
    }

    /// Sends a ping frame.
    #[napi]
    pub fn ping(&self) {
        if let Some(core) = self.core.upgrade() {
            core.ping_native(&self.id, self.key);
        }
    }

    /// Closes with a close frame (`code`, default 1000) after what is queued.
    #[napi]
    pub fn close(&self, code: Option<u32>) {
        if let Some(core) = self.core.upgrade() {
            let code = code
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(crate::manager::CLOSE_NORMAL);
            core.close_native(&self.id, self.key, Some(code));
        }
    }

    /// Drops the TCP connection at once.
    #[napi]
    pub fn terminate(&self) {
        if let Some(core) = self.core.upgrade() {
            core.close_native(&self.id, self.key, None);
        }
    }
}
