//! The manager's half of scale-out (see [`crate::cluster`]).
//!
//! In cluster mode `broadcast()` only queues the event for Redis; this process delivers it
//! when it comes back from pub/sub, like every other process: numbered into the local
//! history mirror, then to native subscribers on the ordered path and to JavaScript sockets
//! through the inbox — all under the history lock, as a subscribe's registration is, so a
//! subscribe's position and replay meet live delivery without a gap or a duplicate.
//!
//! A subscribe on a channel whose shared position this process does not know yet, or a
//! resume whose gap is not in the mirror, first reads Redis (on the subscription's own
//! connection) and completes when the read returns. While Redis is down, broadcasts are
//! delivered here only, numbered under a local epoch.

use std::sync::Arc;
use std::time::Instant;

use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::warn;

use super::{Handled, JsDelivery, Manager};
use crate::cluster::{ClusterOptions, ClusterStatus, Engine, Incoming, Sink};
use crate::protocol::{RequestId, Since};
use crate::registry::RecordKey;

impl Manager {
    /// Starts the link to Redis; a URL that does not open leaves the manager local (the
    /// binding checked it already).
    pub(super) fn start_cluster(self: &Arc<Self>, options: &ClusterOptions) {
        let sink: std::sync::Weak<dyn Sink> = Arc::downgrade(self) as std::sync::Weak<dyn Sink>;
        match Engine::start(options, self.options.history, sink, self.shutdown_token()) {
            Ok(engine) => {
                let _ = self.cluster.set(engine);
            }
            Err(error) => warn!(error, "cluster: not started"),
        }
    }

    /// Whether broadcasts go through Redis.
    pub fn cluster_enabled(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// The link's state and counters (`cluso_ws_cluster_up`), `None` without `cluster`.
    pub fn cluster_status(&self) -> Option<ClusterStatus> {
        self.cluster.get().map(Engine::status)
    }

    /// Cluster mode `broadcast()`: counts it and queues `envelope` (the event's JSON object)
    /// for Redis. Returns `false` when the queue was full and it was dropped (counted).
    pub fn cluster_publish(&self, channel: &str, envelope: String) -> bool {
        self.stats.record_broadcast();
        match self.cluster.get() {
            Some(engine) => engine.publish(channel, envelope),
            None => false,
        }
    }

    /// Delivers `text` to this process's subscribers of `channel`; the caller holds the
    /// history lock.
    fn fan_out_locked(&self, channel: &str, text: Utf8Bytes) {
        let mut targets = self.broadcast_targets(channel);
        if targets.native > 0 && !self.publish(channel, text.clone()) {
            // Refused by a full fan-out queue (counted in `droppedBroadcasts`): the
            // native subscribers do not get it, the JavaScript sockets still do.
            targets.native = 0;
        }
        if targets.js > 0 {
            self.deliver_to_js(JsDelivery {
                id: Arc::from(""),
                key: RecordKey::NONE,
                handled: Handled::Broadcast {
                    channel: Arc::from(channel),
                    text,
                    targets,
                },
            });
        } else if targets.native > 0 {
            self.record_delivery(channel, targets, 0, 0, text.len() as u64);
        }
    }

    /// Cluster mode: a JavaScript socket's subscription change (and its reply) joins the
    /// inbox, where the events for JavaScript sockets are, so the fan-out index changes in
    /// the same order as on the ordered path; otherwise `handled` goes back to the caller.
    pub(super) fn js_in_order(&self, id: &str, handled: Handled) -> Handled {
        if self.cluster.get().is_none() {
            return handled;
        }
        match self.lookup(id) {
            Some((key, false)) => {
                self.deliver_to_js(JsDelivery {
                    id: Arc::from(id),
                    key,
                    handled,
                });
                Handled::Nothing
            }
            _ => handled,
        }
    }

    /// A subscribe that must read Redis first: started here, completed by
    /// [`Manager::complete_subscribe`] when the read returns. Returns whether it did.
    pub(super) fn subscribe_through_cluster(
        &self,
        id: &str,
        req: &Option<RequestId>,
        channel: &str,
        since: &Option<Since>,
    ) -> bool {
        let Some(engine) = self.cluster.get() else {
            return false;
        };
        if !self.history_enabled() || !engine.is_up() {
            return false;
        }
        if self
            .history()
            .serves_locally(channel, since.as_ref(), Instant::now())
        {
            return false;
        }
        let Some(manager) = self.me.upgrade() else {
            return false;
        };
        let (id, req, channel, since) = (
            Arc::<str>::from(id),
            req.clone(),
            channel.to_owned(),
            since.clone(),
        );
        self.spawn(async move {
            let Some(engine) = manager.cluster.get() else {
                return;
            };
            let from = since.as_ref().map(|s| s.seq.saturating_add(1));
            let fetched = engine.fetch(&channel, from).await;
            let handled = manager.complete_subscribe(&id, req, &channel, since, fetched.as_ref());
            if matches!(handled, Handled::Nothing) {
                return;
            }
            if let Some((key, _)) = manager.lookup(&id) {
                manager.deliver_to_js(JsDelivery { id, key, handled });
            }
        });
        true
    }
}

impl Sink for Manager {
    fn deliver(&self, incoming: Incoming) {
        let Incoming {
            channel,
            numbered,
            text,
        } = incoming;
        let mut history = self.history();
        if let (Some((seq, epoch)), true) = (&numbered, history.enabled()) {
            if !history.record_shared(&channel, *seq, epoch, text.clone(), Instant::now()) {
                return;
            }
        }
        self.fan_out_locked(&channel, text);
        drop(history);
    }

    fn connected(&self) {
        self.history().reconnected();
    }

    fn deliver_local(&self, channel: &str, envelope: &str) {
        let mut history = self.history();
        let text = if history.enabled() {
            history.record_local(channel, envelope, Instant::now())
        } else {
            Utf8Bytes::from(envelope.to_owned())
        };
        self.fan_out_locked(channel, text);
        drop(history);
    }
}
