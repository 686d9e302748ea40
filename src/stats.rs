//! Counters a manager keeps for `getStats()`. Relaxed atomics: each counter is monotonic
//! and read as a snapshot, so no ordering between them is promised.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::handshake::code as refusal;

/// Monotonic counters, shared by the JavaScript thread and the runtime's tasks.
#[derive(Debug, Default)]
pub struct Stats {
    broadcasts: AtomicU64,
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    send_failures: AtomicU64,
    slow_consumer_disconnects: AtomicU64,
    rejected_handshakes: AtomicU64,
    /// Refusals by code, in the order of [`refusal::ALL`].
    rejected_by_code: [AtomicU64; refusal::ALL.len()],
    dead_peers_removed: AtomicU64,
    dropped_broadcasts: AtomicU64,
    requests: [AtomicU64; RequestResult::ALL.len()],
}

/// How one handler call ended, for `cluso_ws_requests_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestResult {
    Ok,
    Error,
    Timeout,
    Busy,
    NoHandler,
}

impl RequestResult {
    pub const ALL: [RequestResult; 5] = [
        RequestResult::Ok,
        RequestResult::Error,
        RequestResult::Timeout,
        RequestResult::Busy,
        RequestResult::NoHandler,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RequestResult::Ok => "ok",
            RequestResult::Error => "error",
            RequestResult::Timeout => "timeout",
            RequestResult::Busy => "busy",
            RequestResult::NoHandler => "no_handler",
        }
    }
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub broadcasts: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub send_failures: u64,
    pub slow_consumer_disconnects: u64,
    pub rejected_handshakes: u64,
    /// Refusals by code, in the order of [`refusal::ALL`](crate::handshake::code::ALL).
    pub rejected_by_code: [u64; refusal::ALL.len()],
    pub dead_peers_removed: u64,
    /// Broadcasts not queued for native subscribers because the fan-out queue was at
    /// `maxPendingBroadcastBytes`.
    pub dropped_broadcasts: u64,
    /// Handler calls by result, in the order of [`RequestResult::ALL`].
    pub requests: [u64; RequestResult::ALL.len()],
}

impl Stats {
    pub fn record_broadcast(&self) {
        self.broadcasts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_sent(&self, messages: u64, bytes: u64) {
        self.messages_sent.fetch_add(messages, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn record_send_failures(&self, count: u64) {
        self.send_failures.fetch_add(count, Ordering::Relaxed);
    }

    pub fn record_slow_consumer(&self) {
        self.slow_consumer_disconnects
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one refused handshake under its stable `code` (one of
    /// [`handshake::code`](crate::handshake::code); any other string counts in the total
    /// only).
    pub fn record_rejected_handshake(&self, code: &str) {
        self.rejected_handshakes.fetch_add(1, Ordering::Relaxed);
        if let Some(index) = refusal::ALL.iter().position(|known| *known == code) {
            self.rejected_by_code[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_dead_peer(&self) {
        self.dead_peers_removed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_dropped_broadcast(&self) {
        self.dropped_broadcasts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_request(&self, result: RequestResult) {
        self.requests[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            broadcasts: self.broadcasts.load(Ordering::Relaxed),
            messages_sent: self.messages_sent.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            send_failures: self.send_failures.load(Ordering::Relaxed),
            slow_consumer_disconnects: self.slow_consumer_disconnects.load(Ordering::Relaxed),
            rejected_handshakes: self.rejected_handshakes.load(Ordering::Relaxed),
            rejected_by_code: std::array::from_fn(|i| {
                self.rejected_by_code[i].load(Ordering::Relaxed)
            }),
            dead_peers_removed: self.dead_peers_removed.load(Ordering::Relaxed),
            dropped_broadcasts: self.dropped_broadcasts.load(Ordering::Relaxed),
            requests: std::array::from_fn(|i| self.requests[i].load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_code_and_in_total() {
        let stats = Stats::default();
        stats.record_rejected_handshake(refusal::ORIGIN_FORBIDDEN);
        stats.record_rejected_handshake(refusal::ORIGIN_FORBIDDEN);
        stats.record_rejected_handshake(refusal::SERVER_BUSY);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.rejected_handshakes, 3);
        let by_code: Vec<(&str, u64)> = refusal::ALL
            .iter()
            .copied()
            .zip(snapshot.rejected_by_code)
            .filter(|(_, count)| *count > 0)
            .collect();
        assert_eq!(
            by_code,
            [(refusal::ORIGIN_FORBIDDEN, 2), (refusal::SERVER_BUSY, 1)]
        );
    }

    #[test]
    fn every_refusal_code_is_listed_once() {
        let mut codes = refusal::ALL.to_vec();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), refusal::ALL.len());
        for rejection in [
            crate::handshake::Rejection::unauthorized(),
            crate::handshake::Rejection::server_busy(),
            crate::handshake::Rejection::shutting_down(),
        ] {
            assert!(refusal::ALL.contains(&rejection.code));
        }
    }
}
