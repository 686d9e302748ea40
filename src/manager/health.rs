//! The health check's verdicts for both transports: a peer that did not answer the
//! previous ping is removed, every other one is pinged.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::Manager;
use crate::fanout::outbox::CloseReason;
use crate::fanout::Job;
use crate::registry::{HealthVerdict, RecordKey, Transport};

/// The result of one health-check tick for the sockets the runtime cannot reach itself.
#[derive(Debug, Default)]
pub struct JsHealthWork {
    /// Removed from the registry: terminate their sockets.
    pub dead: Vec<HealthVerdict>,
    /// Still registered: ping them.
    pub to_ping: Vec<HealthVerdict>,
}

impl Manager {
    /// One tick for native connections, on the runtime: peers that missed the previous
    /// ping are dropped, the others pinged.
    pub fn health_tick_native(&self) {
        let (dead, to_ping) = self.write().health_tick(true);
        for verdict in dead {
            warn!(conn_id = &*verdict.id, "dead connection removed");
            self.stats.record_dead_peer();
            if let Transport::Native(outbox) = &verdict.transport {
                outbox.close(CloseReason::Gone);
            }
            self.submit(Job::Forget { key: verdict.key });
        }
        for verdict in to_ping {
            if let Transport::Native(outbox) = &verdict.transport {
                outbox.push_control(crate::wire::Frame::ping());
            }
        }
    }

    /// One tick for JavaScript sockets. It runs on the JavaScript thread, so a blocked
    /// event loop delays the tick instead of condemning peers whose pongs wait behind it.
    /// The caller terminates the dead and pings the rest.
    pub fn health_tick_js(&self) -> JsHealthWork {
        let (dead, to_ping) = self.write().health_tick(false);
        for verdict in &dead {
            warn!(conn_id = &*verdict.id, "dead connection removed");
            self.stats.record_dead_peer();
        }
        JsHealthWork { dead, to_ping }
    }

    /// A JavaScript socket whose `ping()` threw is treated as dead: its record goes.
    pub fn ping_failed(&self, id: &str, key: RecordKey) {
        if self.write().remove_record(id, key).is_some() {
            warn!(conn_id = id, "ping failed; connection removed");
        }
    }
}

impl Manager {
    /// Ticks the health check every `interval` until shutdown: native peers are handled on
    /// the runtime; `js_due` is told when a tick for JavaScript sockets is due.
    pub fn start_health_check(
        self: &Arc<Self>,
        interval: Duration,
        js_due: impl Fn() + Send + 'static,
    ) {
        // Weak: a manager nobody holds any more is dropped, which ends this task too.
        let manager = Arc::downgrade(self);
        let token = self.shutdown_token();
        self.spawn(async move {
            let start = tokio::time::Instant::now() + interval;
            let mut ticks = tokio::time::interval_at(start, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = token.cancelled() => return,
                }
                let Some(manager) = manager.upgrade() else {
                    return;
                };
                manager.health_tick_native();
                js_due();
            }
        });
    }
}
