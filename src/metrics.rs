//! `metrics()`: a manager's gauges and counters in the Prometheus text exposition format
//! 0.0.4, as a pure function of a [`MetricsSnapshot`].
//!
//! Names follow the Prometheus conventions: the `cluso_ws_` prefix, bytes as the base unit,
//! `_total` on every counter. Labels take values from fixed sets only — the transport, the
//! refusal codes of [`handshake::code::ALL`](crate::handshake::code::ALL), the request
//! results of [`RequestResult::ALL`] — and every series of a set is always written (with 0),
//! so the number of series is constant. No label ever carries a channel name or anything
//! else a client chose.
//!
//! Taking the snapshot costs no pass over the connections: the registry keeps its counts and
//! the outboxes keep [`QueueGauge`](crate::fanout::gauge::QueueGauge) up to date.

use std::fmt::Write as _;

use crate::cluster::ClusterStatus;
use crate::handshake::code as refusal;
use crate::manager::{Gauges, Manager};
use crate::stats::{RequestResult, StatsSnapshot};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything one scrape shows.
#[derive(Debug, Clone, Copy)]
pub struct MetricsSnapshot {
    pub gauges: Gauges,
    pub stats: StatsSnapshot,
    /// The link to Redis, with the `cluster` option: its families are written only then.
    pub cluster: Option<ClusterStatus>,
}

impl MetricsSnapshot {
    /// Reads `manager` now; works after shutdown too (the gauges are then 0).
    pub fn of(manager: &Manager) -> Self {
        Self {
            gauges: manager.gauges(),
            stats: manager.stats().snapshot(),
            cluster: manager.cluster_status(),
        }
    }
}

/// One metric family: its `# HELP` and `# TYPE` lines, then its samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        // Writing into a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(self, value: u64) {
        let _ = writeln!(self.out, "{} {value}", self.name);
    }

    /// One sample per label value. Values come from this crate's fixed sets, which hold
    /// no character that needs escaping in a label value (`\`, `"`, newline).
    fn labelled(self, label: &str, samples: impl IntoIterator<Item = (&'static str, u64)>) {
        for (value, count) in samples {
            debug_assert!(!value.contains(['\\', '"', '\n']));
            let _ = writeln!(self.out, "{}{{{label}=\"{value}\"}} {count}", self.name);
        }
    }
}

/// The Prometheus text (format 0.0.4) of one snapshot.
pub fn render(snapshot: &MetricsSnapshot) -> String {
    let MetricsSnapshot {
        gauges,
        stats,
        cluster,
    } = snapshot;
    let counts = gauges.counts;
    let mut out = String::with_capacity(3072);
    let gauge = "gauge";
    let counter = "counter";

    Family::new(
        &mut out,
        "cluso_ws_connections",
        gauge,
        "Open connections, by transport: native (listen, attach) or js (addConnection).",
    )
    .labelled(
        "transport",
        [
            ("native", counts.native_connections as u64),
            ("js", counts.js_connections as u64),
        ],
    );
    Family::new(
        &mut out,
        "cluso_ws_channels",
        gauge,
        "Channels with at least one subscriber.",
    )
    .sample(counts.channels as u64);
    Family::new(
        &mut out,
        "cluso_ws_subscriptions",
        gauge,
        "Connection-channel subscription pairs.",
    )
    .sample(counts.subscriptions as u64);
    Family::new(
        &mut out,
        "cluso_ws_queued_bytes_max",
        gauge,
        "Bytes waiting for the fullest native connection: refused by the kernel (rounded up by at most 1/8) plus broadcasts not yet handed out.",
    )
    .sample(gauges.max_queued_bytes as u64);
    Family::new(
        &mut out,
        "cluso_ws_pending_broadcast_bytes",
        gauge,
        "Payload bytes of broadcasts waiting for the native fan-out (bounded by maxPendingBroadcastBytes).",
    )
    .sample(gauges.pending_broadcast_bytes as u64);
    Family::new(
        &mut out,
        "cluso_ws_messages_sent_total",
        counter,
        "Messages handed to sockets: one per subscriber per broadcast, plus sends and replies.",
    )
    .sample(stats.messages_sent);
    Family::new(
        &mut out,
        "cluso_ws_sent_bytes_total",
        counter,
        "Bytes of the messages handed to sockets.",
    )
    .sample(stats.bytes_sent);
    Family::new(
        &mut out,
        "cluso_ws_broadcasts_total",
        counter,
        "broadcast() calls.",
    )
    .sample(stats.broadcasts);
    Family::new(
        &mut out,
        "cluso_ws_broadcasts_dropped_total",
        counter,
        "Broadcasts not delivered to native subscribers: the fan-out queue was at maxPendingBroadcastBytes.",
    )
    .sample(stats.dropped_broadcasts);
    Family::new(
        &mut out,
        "cluso_ws_slow_consumer_disconnects_total",
        counter,
        "Subscribers disconnected (close code 4008) for crossing maxBufferedBytesPerConnection.",
    )
    .sample(stats.slow_consumer_disconnects);
    Family::new(
        &mut out,
        "cluso_ws_rejected_handshakes_total",
        counter,
        "Upgrade requests refused, by stable refusal code.",
    )
    .labelled(
        "code",
        refusal::ALL.iter().copied().zip(stats.rejected_by_code),
    );
    Family::new(
        &mut out,
        "cluso_ws_dead_peers_removed_total",
        counter,
        "Peers removed by the health check for missing a ping.",
    )
    .sample(stats.dead_peers_removed);
    Family::new(
        &mut out,
        "cluso_ws_requests_total",
        counter,
        "Request handler calls, by result.",
    )
    .labelled(
        "result",
        RequestResult::ALL
            .iter()
            .map(|result| result.label())
            .zip(stats.requests),
    );
    if let Some(cluster) = cluster {
        render_cluster(&mut out, cluster);
    }
    out
}

/// The `cluster` option's families: the link to Redis and its publish queue.
fn render_cluster(out: &mut String, cluster: &ClusterStatus) {
    Family::new(
        out,
        "cluso_ws_cluster_up",
        "gauge",
        "1 while connected to Redis and subscribed; 0 while broadcasts reach this process only.",
    )
    .sample(u64::from(cluster.up));
    Family::new(
        out,
        "cluso_ws_cluster_queued",
        "gauge",
        "Broadcasts waiting for Redis.",
    )
    .sample(cluster.queued as u64);
    Family::new(
        out,
        "cluso_ws_cluster_dropped_total",
        "counter",
        "Broadcasts dropped: the queue for Redis was full, or the event was over 16 MiB.",
    )
    .sample(cluster.dropped);
    Family::new(
        out,
        "cluso_ws_cluster_local_only_total",
        "counter",
        "Broadcasts delivered to this process only because Redis was down.",
    )
    .sample(cluster.local);
}

/// [`render`] of `manager` now.
pub fn text(manager: &Manager) -> String {
    render(&MetricsSnapshot::of(manager))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryCounts;

    fn snapshot() -> MetricsSnapshot {
        let mut stats = StatsSnapshot {
            broadcasts: 1,
            messages_sent: 3,
            bytes_sent: 282,
            send_failures: 9,
            slow_consumer_disconnects: 4,
            rejected_handshakes: 3,
            dead_peers_removed: 5,
            dropped_broadcasts: 6,
            ..StatsSnapshot::default()
        };
        stats.rejected_by_code[refusal::ALL
            .iter()
            .position(|c| *c == refusal::ORIGIN_FORBIDDEN)
            .unwrap_or(0)] = 2;
        stats.rejected_by_code[refusal::ALL
            .iter()
            .position(|c| *c == refusal::SERVER_BUSY)
            .unwrap_or(0)] = 1;
        stats.requests[RequestResult::Ok as usize] = 7;
        stats.requests[RequestResult::Timeout as usize] = 1;
        MetricsSnapshot {
            gauges: Gauges {
                counts: RegistryCounts {
                    js_connections: 1,
                    native_connections: 2,
                    channels: 1,
                    subscriptions: 3,
                },
                max_queued_bytes: 94,
                pending_broadcasts: 2,
                pending_broadcast_bytes: 412,
            },
            stats,
            cluster: None,
        }
    }

    const EXPECTED: &str = "\
# HELP cluso_ws_connections Open connections, by transport: native (listen, attach) or js (addConnection).
# TYPE cluso_ws_connections gauge
cluso_ws_connections{transport=\"native\"} 2
cluso_ws_connections{transport=\"js\"} 1
# HELP cluso_ws_channels Channels with at least one subscriber.
# TYPE cluso_ws_channels gauge
cluso_ws_channels 1
# HELP cluso_ws_subscriptions Connection-channel subscription pairs.
# TYPE cluso_ws_subscriptions gauge
cluso_ws_subscriptions 3
# HELP cluso_ws_queued_bytes_max Bytes waiting for the fullest native connection: refused by the kernel (rounded up by at most 1/8) plus broadcasts not yet handed out.
# TYPE cluso_ws_queued_bytes_max gauge
cluso_ws_queued_bytes_max 94
# HELP cluso_ws_pending_broadcast_bytes Payload bytes of broadcasts waiting for the native fan-out (bounded by maxPendingBroadcastBytes).
# TYPE cluso_ws_pending_broadcast_bytes gauge
cluso_ws_pending_broadcast_bytes 412
# HELP cluso_ws_messages_sent_total Messages handed to sockets: one per subscriber per broadcast, plus sends and replies.
# TYPE cluso_ws_messages_sent_total counter
cluso_ws_messages_sent_total 3
# HELP cluso_ws_sent_bytes_total Bytes of the messages handed to sockets.
# TYPE cluso_ws_sent_bytes_total counter
cluso_ws_sent_bytes_total 282
# HELP cluso_ws_broadcasts_total broadcast() calls.
# TYPE cluso_ws_broadcasts_total counter
cluso_ws_broadcasts_total 1
# HELP cluso_ws_broadcasts_dropped_total Broadcasts not delivered to native subscribers: the fan-out queue was at maxPendingBroadcastBytes.
# TYPE cluso_ws_broadcasts_dropped_total counter
cluso_ws_broadcasts_dropped_total 6
# HELP cluso_ws_slow_consumer_disconnects_total Subscribers disconnected (close code 4008) for crossing maxBufferedBytesPerConnection.
# TYPE cluso_ws_slow_consumer_disconnects_total counter
cluso_ws_slow_consumer_disconnects_total 4
# HELP cluso_ws_rejected_handshakes_total Upgrade requests refused, by stable refusal code.
# TYPE cluso_ws_rejected_handshakes_total counter
cluso_ws_rejected_handshakes_total{code=\"BAD_REQUEST\"} 0
cluso_ws_rejected_handshakes_total{code=\"HEADERS_TOO_LARGE\"} 0
cluso_ws_rejected_handshakes_total{code=\"BAD_METHOD\"} 0
cluso_ws_rejected_handshakes_total{code=\"NOT_FOUND\"} 0
cluso_ws_rejected_handshakes_total{code=\"BAD_UPGRADE\"} 0
cluso_ws_rejected_handshakes_total{code=\"BAD_KEY\"} 0
cluso_ws_rejected_handshakes_total{code=\"BAD_VERSION\"} 0
cluso_ws_rejected_handshakes_total{code=\"UNSUPPORTED_VERSION\"} 0
cluso_ws_rejected_handshakes_total{code=\"BAD_PROTOCOL\"} 0
cluso_ws_rejected_handshakes_total{code=\"HOST_FORBIDDEN\"} 0
cluso_ws_rejected_handshakes_total{code=\"ORIGIN_FORBIDDEN\"} 2
cluso_ws_rejected_handshakes_total{code=\"UNAUTHORIZED\"} 0
cluso_ws_rejected_handshakes_total{code=\"SERVER_BUSY\"} 1
cluso_ws_rejected_handshakes_total{code=\"SHUTTING_DOWN\"} 0
# HELP cluso_ws_dead_peers_removed_total Peers removed by the health check for missing a ping.
# TYPE cluso_ws_dead_peers_removed_total counter
cluso_ws_dead_peers_removed_total 5
# HELP cluso_ws_requests_total Request handler calls, by result.
# TYPE cluso_ws_requests_total counter
cluso_ws_requests_total{result=\"ok\"} 7
cluso_ws_requests_total{result=\"error\"} 0
cluso_ws_requests_total{result=\"timeout\"} 1
cluso_ws_requests_total{result=\"busy\"} 0
cluso_ws_requests_total{result=\"no_handler\"} 0
";

    #[test]
    fn renders_the_exposition_format_byte_for_byte() {
        assert_eq!(render(&snapshot()), EXPECTED);
    }

    #[test]
    fn every_family_has_help_and_type_and_the_series_are_fixed() {
        let text = render(&MetricsSnapshot {
            gauges: Gauges {
                counts: RegistryCounts::default(),
                max_queued_bytes: 0,
                pending_broadcasts: 0,
                pending_broadcast_bytes: 0,
            },
            stats: StatsSnapshot::default(),
            cluster: None,
        });
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        // 2 transports + 4 gauges + 5 counters + refusal codes + dead peers + results.
        assert_eq!(
            samples.len(),
            2 + 4 + 5 + refusal::ALL.len() + 1 + RequestResult::ALL.len()
        );
        assert!(samples.iter().all(|l| l.ends_with(" 0")));
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        assert_eq!(families.len(), 13);
        for family in families {
            let (name, kind) = family.split_once(' ').unwrap_or_default();
            assert_eq!(name.ends_with("_total"), kind == "counter", "{name}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn a_fresh_manager_renders_zeros() {
        let manager = Manager::new(crate::options::Options::default());
        assert!(text(&manager).contains("cluso_ws_connections{transport=\"native\"} 0\n"));
    }

    #[test]
    fn the_cluster_families_appear_with_the_cluster_option_only() {
        let mut with = snapshot();
        with.cluster = Some(ClusterStatus {
            up: true,
            published: 10,
            dropped: 2,
            local: 3,
            queued: 1,
        });
        let text = render(&with);
        assert!(text.starts_with(EXPECTED), "the rest is unchanged");
        assert_eq!(
            &text[EXPECTED.len()..],
            "# HELP cluso_ws_cluster_up 1 while connected to Redis and subscribed; 0 while \
             broadcasts reach this process only.\n\
             # TYPE cluso_ws_cluster_up gauge\n\
             cluso_ws_cluster_up 1\n\
             # HELP cluso_ws_cluster_queued Broadcasts waiting for Redis.\n\
             # TYPE cluso_ws_cluster_queued gauge\n\
             cluso_ws_cluster_queued 1\n\
             # HELP cluso_ws_cluster_dropped_total Broadcasts dropped: the queue for Redis was \
             full, or the event was over 16 MiB.\n\
             # TYPE cluso_ws_cluster_dropped_total counter\n\
             cluso_ws_cluster_dropped_total 2\n\
             # HELP cluso_ws_cluster_local_only_total Broadcasts delivered to this process only \
             because Redis was down.\n\
             # TYPE cluso_ws_cluster_local_only_total counter\n\
             cluso_ws_cluster_local_only_total 3\n"
        );
    }
}
