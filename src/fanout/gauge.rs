//! How many bytes the fullest outbox of a manager holds, readable in O(1).
//!
//! Each outbox reports every change of its queued data bytes here, and the gauge counts the
//! outboxes per size bucket: exact below 16 bytes, then eight buckets per power of two. The
//! largest non-empty bucket gives the answer, rounded *up* past its upper edge — at most 1/8
//! (12.5 %) above the true maximum, never below it, and exactly 0 when every outbox is
//! empty. Past, not to: a bucket ends one byte below a power of two (or an eighth between
//! two), so a producer pacing at such a threshold — the default 1 MiB cap — reads the
//! threshold while the fullest outbox is still up to 1/16 below it. Reading scans a fixed
//! number of buckets ([`BUCKETS`]), never the connections, so `getStats()` and `metrics()`
//! cost the same with ten connections or a hundred thousand.
//!
//! Writers pay one or two relaxed atomic additions when an outbox moves to another bucket
//! (a push that grows it past a bucket edge, a writer draining it to zero); a push that
//! stays within its bucket pays nothing.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Sizes below this are their own bucket.
const EXACT: usize = 16;
/// Buckets per power of two above [`EXACT`] (a power of two itself).
const PER_OCTAVE: usize = 8;
const SUB_BITS: u32 = PER_OCTAVE.trailing_zeros();
/// log2 of [`EXACT`]: the first octave with sub-buckets.
const FIRST_OCTAVE: u32 = EXACT.trailing_zeros();
/// Every possible `usize` has a bucket.
pub const BUCKETS: usize = EXACT + (usize::BITS - FIRST_OCTAVE) as usize * PER_OCTAVE;

/// Outboxes counted by queued data bytes, shared by every outbox of one manager.
#[derive(Debug)]
pub struct QueueGauge {
    /// `outboxes[i]`: outboxes whose queued bytes fall in bucket `i` (bucket 0, empty
    /// outboxes, is never counted).
    outboxes: [AtomicUsize; BUCKETS],
}

impl Default for QueueGauge {
    fn default() -> Self {
        Self {
            outboxes: std::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }
}

/// The bucket of an outbox holding `bytes`.
fn bucket(bytes: usize) -> usize {
    if bytes < EXACT {
        return bytes;
    }
    let octave = usize::BITS - 1 - bytes.leading_zeros();
    let sub = (bytes >> (octave - SUB_BITS)) & (PER_OCTAVE - 1);
    EXACT + (octave - FIRST_OCTAVE) as usize * PER_OCTAVE + sub
}

/// The largest size that falls in bucket `index`.
fn upper_edge(index: usize) -> usize {
    if index < EXACT {
        return index;
    }
    let octave = ((index - EXACT) / PER_OCTAVE) as u32 + FIRST_OCTAVE;
    let sub = ((index - EXACT) % PER_OCTAVE) as u128;
    let edge = ((PER_OCTAVE as u128 + sub + 1) << (octave - SUB_BITS)) - 1;
    usize::try_from(edge).unwrap_or(usize::MAX)
}

impl QueueGauge {
    /// An outbox went from `old` to `new` queued bytes. Called under the outbox's own lock,
    /// so the changes of one outbox arrive in order.
    pub fn moved(&self, old: usize, new: usize) {
        let (from, to) = (bucket(old), bucket(new));
        if from == to {
            return;
        }
        // Counted in the new bucket before leaving the old one: a concurrent reader may see
        // the outbox twice (the larger answer), never nowhere.
        if to != 0 {
            self.outboxes[to].fetch_add(1, Ordering::Relaxed);
        }
        if from != 0 {
            self.outboxes[from].fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The queued bytes of the fullest outbox, rounded up to the first size past its bucket
    /// (exact below 16 bytes); 0 when every outbox is empty.
    pub fn max(&self) -> usize {
        self.outboxes
            .iter()
            .rposition(|count| count.load(Ordering::Relaxed) != 0)
            .map_or(0, reading)
    }
}

/// What [`QueueGauge::max`] reports for bucket `index`: its size below [`EXACT`], else the
/// first size past the bucket.
fn reading(index: usize) -> usize {
    let edge = upper_edge(index);
    if index < EXACT {
        edge
    } else {
        edge.saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_below_sixteen_and_within_an_eighth_above() {
        for bytes in 0..EXACT {
            assert_eq!(upper_edge(bucket(bytes)), bytes);
        }
        let mut samples: Vec<usize> = (16..5000).collect();
        samples.extend((0..usize::BITS).map(|shift| 1usize << shift));
        samples.extend((0..usize::BITS).map(|shift| (1usize << shift) - 1));
        samples.extend([usize::MAX, usize::MAX - 1, 1 << 20, (1 << 20) + 1]);
        for bytes in samples {
            let index = bucket(bytes);
            assert!(index < BUCKETS, "{bytes} -> {index}");
            let edge = upper_edge(index);
            assert!(edge >= bytes, "{bytes} rounds down to {edge}");
            assert!(
                (edge - bytes) as f64 <= bytes as f64 / 8.0,
                "{bytes} rounds up to {edge}"
            );
            if let Some(next) = edge.checked_add(1) {
                assert_eq!(bucket(next), index + 1, "{bytes}: edge {edge}");
            }
            let read = reading(index);
            if bytes < EXACT {
                assert_eq!(read, bytes);
            } else {
                assert!(read > bytes || bytes == usize::MAX, "{bytes} reads {read}");
            }
            assert!(
                (read - bytes) as f64 <= bytes as f64 / 8.0,
                "{bytes} reads {read}"
            );
        }
    }

    #[test]
    fn a_power_of_two_threshold_is_read_a_sixteenth_before_it_is_reached() {
        const CAP: usize = 1 << 20;
        let gauge = QueueGauge::default();
        gauge.moved(0, CAP - CAP / 16 - 1);
        assert!(gauge.max() < CAP, "{}", gauge.max());
        gauge.moved(CAP - CAP / 16 - 1, CAP - CAP / 16);
        assert_eq!(gauge.max(), CAP);
        gauge.moved(CAP - CAP / 16, CAP - 1);
        assert_eq!(gauge.max(), CAP);
        gauge.moved(CAP - 1, CAP);
        assert!(gauge.max() > CAP);
    }

    #[test]
    fn buckets_are_ordered_by_size() {
        let mut previous = 0;
        for bytes in 0..70_000 {
            let index = bucket(bytes);
            assert!(index >= previous);
            previous = index;
        }
    }

    #[test]
    fn the_maximum_follows_the_fullest_outbox_up_and_down() {
        let gauge = QueueGauge::default();
        assert_eq!(gauge.max(), 0);
        gauge.moved(0, 10);
        gauge.moved(0, 3);
        assert_eq!(gauge.max(), 10);
        gauge.moved(10, 1000);
        assert!((1000..=1000 + 1000 / 8).contains(&gauge.max()));
        gauge.moved(1000, 1001);
        gauge.moved(1001, 0);
        assert_eq!(gauge.max(), 3);
        gauge.moved(3, 0);
        assert_eq!(gauge.max(), 0);
    }
}
