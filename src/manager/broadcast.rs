//! Broadcasts, direct sends and the server's own subscription changes.
//!
//! A broadcast is serialised once by the caller (the binding, with the original module's
//! own `JSON.stringify`), then published here: one job on the ordered path for every
//! native subscriber, whatever their number; the JavaScript sockets' half is the binding's
//! loop. The statistics of the whole broadcast are counted here.

use std::sync::Arc;

use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::{debug, warn};

use super::{Change, Manager};
use crate::fanout::{Job, Member, Submitted};
use crate::registry::{RecordKey, SubscribeOutcome, Transport};

/// How many subscribers of each transport one broadcast reaches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BroadcastTargets {
    pub js: usize,
    pub native: usize,
}

/// A subscription change the binding mirrors into its JavaScript fan-out index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsChange {
    pub key: RecordKey,
    pub change: Change,
}

impl Manager {
    /// Subscribers of `channel` by transport, right now.
    pub fn broadcast_targets(&self, channel: &str) -> BroadcastTargets {
        let registry = self.read();
        let native = registry.native_subscriber_count(channel);
        BroadcastTargets {
            js: registry.subscriber_count(channel) - native,
            native,
        }
    }

    /// Hands one serialised event to the native subscribers of `channel`, after every
    /// earlier job on the ordered path. Returns `false` when the fan-out queue refused it
    /// (full: `maxPendingBroadcastBytes`), counted in `droppedBroadcasts`.
    pub fn publish(&self, channel: &str, text: Utf8Bytes) -> bool {
        self.submit(Job::Broadcast {
            channel: Arc::from(channel),
            text,
        }) == Submitted::Queued
    }

    /// Whether events are numbered and kept (`historySize` > 0).
    pub fn history_enabled(&self) -> bool {
        self.options.history.enabled()
    }

    /// Numbers one event of `channel` and keeps it (history on), then hands it to the
    /// native subscribers on the ordered path — under the history lock, so a resume never
    /// falls between the numbering and the delivery. Returns the numbered text, and
    /// whether the native subscribers get it: `false` when the fan-out queue refused it
    /// (counted in `droppedBroadcasts`; the event stays in the history, so a client that
    /// notices the gap in `seq` resumes over it).
    pub fn publish_sequenced(&self, channel: &str, envelope: String) -> (Utf8Bytes, bool) {
        let mut history = self.history();
        let text = history.record(channel, envelope, std::time::Instant::now());
        // Read under the history lock, which a resuming subscribe registers under: a
        // native subscriber registered before this point is counted here.
        let native = self.read().native_subscriber_count(channel) > 0;
        let queued = !native
            || self.submit(Job::Broadcast {
                channel: Arc::from(channel),
                text: text.clone(),
            }) == Submitted::Queued;
        drop(history);
        (text, queued)
    }

    /// Counts one broadcast of `bytes` bytes to `targets`, of which `failed` JavaScript
    /// sends failed and `cut` JavaScript sockets were cut as slow consumers; logs the
    /// original module's `N success, M failed` line.
    pub fn record_broadcast(
        &self,
        channel: &str,
        targets: BroadcastTargets,
        failed: u64,
        cut: u64,
        bytes: u64,
    ) {
        // A socket's send may subscribe more sockets mid-loop: never below zero.
        self.stats.record_broadcast();
        self.record_delivery(channel, targets, failed, cut, bytes);
    }

    /// Counts what one event reached and logs the original module's line (cluster mode
    /// counts `broadcast()` calls when they are made, and deliveries when they arrive).
    pub fn record_delivery(
        &self,
        channel: &str,
        targets: BroadcastTargets,
        failed: u64,
        cut: u64,
        bytes: u64,
    ) {
        let reached = (targets.js + targets.native) as u64;
        let sent = reached.saturating_sub(failed + cut);
        self.stats.record_sent(sent, sent * bytes);
        self.stats.record_send_failures(failed);
        if failed > 0 {
            warn!(channel, "broadcast: {sent} success, {failed} failed");
        } else {
            debug!(channel, "broadcast: {sent} success, {failed} failed");
        }
    }

    /// JavaScript sockets over `maxBufferedBytesPerConnection` were closed with 4008 by the
    /// fan-out loop: the records still registered go, and every cut is counted (a socket
    /// whose `close()` emitted `'close'` at once has left already).
    pub fn slow_consumers_cut(&self, registered: &[(RecordKey, Arc<str>)], cut: usize) {
        for (key, id) in registered {
            self.write().remove_record(id, *key);
            warn!(conn_id = &**id, "slow consumer disconnected");
        }
        for _ in 0..cut {
            self.stats.record_slow_consumer();
        }
    }

    /// Queues `text` for the native connection `key` under `id`, after every earlier
    /// broadcast. Returns whether the connection is still there to take it.
    pub fn send_native(&self, id: &str, key: RecordKey, text: String) -> bool {
        let Some(member) = self.native_member(id, key) else {
            return false;
        };
        self.submit(Job::Send {
            member,
            text: Utf8Bytes::from(text),
        });
        true
    }

    /// Closes the native connection `key` under `id` with `code` (after what was queued
    /// before), or at once without a close frame (`code` = `None`). Returns whether the
    /// connection was still registered.
    pub fn close_native(&self, id: &str, key: RecordKey, code: Option<u16>) -> bool {
        let Some(member) = self.native_member(id, key) else {
            return false;
        };
        match code {
            Some(code) => {
                self.submit(Job::Close {
                    member,
                    reason: crate::fanout::outbox::CloseReason::Server { code },
                });
            }
            None => member
                .outbox
                .close(crate::fanout::outbox::CloseReason::Gone),
        }
        true
    }

    /// Sends a ping frame to the native connection `key` under `id`.
    pub fn ping_native(&self, id: &str, key: RecordKey) {
        if let Some(member) = self.native_member(id, key) {
            member.outbox.push_control(crate::wire::Frame::ping());
        }
    }

    /// The server's `subscribe(id, channel)`: not limited by `maxSubscriptionsPerConnection`.
    /// A JavaScript socket's change comes back for the binding's index.
    pub fn subscribe(&self, id: &str, channel: &str) -> Option<JsChange> {
        self.server_change(id, Change::Subscribed(channel.to_owned()))
    }

    /// The server's `unsubscribe(id, channel)`.
    pub fn unsubscribe(&self, id: &str, channel: &str) -> Option<JsChange> {
        self.server_change(id, Change::Unsubscribed(channel.to_owned()))
    }

    /// Applies a subscription change in the registry now, and for a native connection on
    /// the ordered path; returns a JavaScript socket's change for the binding.
    fn server_change(&self, id: &str, change: Change) -> Option<JsChange> {
        let (key, member) = {
            let mut registry = self.write();
            let changed = match &change {
                Change::Subscribed(channel) => {
                    registry.subscribe(id, channel, None) == SubscribeOutcome::Added
                }
                Change::Unsubscribed(channel) => registry.unsubscribe(id, channel),
            };
            if !changed {
                return None;
            }
            let connection = registry.get(id)?;
            (connection.key, member_of(connection))
        };
        let Some(member) = member else {
            return match self.js_in_order(id, super::Handled::Mirror(change)) {
                super::Handled::Mirror(change) => Some(JsChange { key, change }),
                _ => None,
            };
        };
        self.submit(match change {
            Change::Subscribed(channel) => Job::Subscribe {
                channel: Arc::from(channel),
                member,
                reply: None,
                replay: Vec::new(),
            },
            Change::Unsubscribed(channel) => Job::Unsubscribe {
                channel: Arc::from(channel),
                member,
                after: None,
            },
        });
        None
    }
}

/// The ordered path's view of a native connection.
pub(super) fn member_of(connection: &crate::registry::Connection) -> Option<Member> {
    match &connection.transport {
        Transport::Native(outbox) => Some(Member {
            key: connection.key,
            id: Arc::clone(&connection.id),
            outbox: Arc::clone(outbox),
        }),
        Transport::Js => None,
    }
}
