//! Applying jobs: the delivery index (channel → native subscribers) and the writes into
//! subscribers' outboxes. A broadcast is encoded once per run and written to every
//! subscriber from the same bytes; to many subscribers, by several threads at once.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use smallvec::SmallVec;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::warn;

use super::outbox::Push;
use super::queue::{Job, Member};
use crate::registry::RecordKey;
use crate::stats::Stats;
use crate::wire::Frame;

/// Channel → native subscribers, in subscription order.
#[derive(Debug, Default)]
pub(super) struct DeliveryIndex {
    pub(super) channels: HashMap<Arc<str>, IndexMap<RecordKey, Member>>,
    /// Each connection's channels, for forgetting it; inline up to one channel, so a
    /// connection on one channel costs no allocation of its own here.
    pub(super) memberships: HashMap<RecordKey, SmallVec<[Arc<str>; 1]>>,
}

impl DeliveryIndex {
    fn add(&mut self, channel: Arc<str>, member: Member) {
        let key = member.key;
        let subscribers = self.channels.entry(Arc::clone(&channel)).or_default();
        if subscribers.insert(key, member).is_none() {
            self.memberships.entry(key).or_default().push(channel);
        }
    }

    fn remove(&mut self, channel: &str, key: RecordKey) {
        if let Some(subscribers) = self.channels.get_mut(channel) {
            if subscribers.shift_remove(&key).is_some() && subscribers.is_empty() {
                self.channels.remove(channel);
            }
        }
        if let Some(channels) = self.memberships.get_mut(&key) {
            channels.retain(|c| &**c != channel);
            if channels.is_empty() {
                self.memberships.remove(&key);
            }
        }
    }

    fn forget(&mut self, key: RecordKey) {
        for channel in self.memberships.remove(&key).unwrap_or_default() {
            if let Some(subscribers) = self.channels.get_mut(&channel) {
                if subscribers.shift_remove(&key).is_some() && subscribers.is_empty() {
                    self.channels.remove(&channel);
                }
            }
        }
    }
}

/// Pushes data messages into a member's outbox, all or none, counting them.
fn push_counted(member: &Member, messages: &[Utf8Bytes], stats: &Stats) -> Push {
    let bytes: usize = messages.iter().map(|text| text.len()).sum();
    let frames: Vec<Frame> = messages.iter().cloned().map(Frame::text).collect();
    let pushed = member.outbox.push_all(&frames);
    match pushed {
        Push::Queued => stats.record_sent(messages.len() as u64, bytes as u64),
        Push::OverCap => {
            stats.record_slow_consumer();
            warn!(conn_id = &*member.id, "slow consumer disconnected");
        }
        Push::Closed => {}
    }
    pushed
}

pub(super) fn apply(index: &mut DeliveryIndex, job: Job, stats: &Stats) {
    match job {
        Job::Broadcast { channel, text } => deliver(index, &[(channel, text)], stats),
        Job::Send { member, text } => {
            push_counted(&member, &[text], stats);
        }
        Job::Subscribe {
            channel,
            member,
            reply,
            replay,
        } => {
            if let Some(reply) = reply {
                push_counted(&member, &[reply], stats);
            }
            if !replay.is_empty() {
                let count = replay.len() as u64;
                let bytes: usize = replay.iter().map(|text| text.len()).sum();
                let frames: Vec<Frame> = replay.into_iter().map(Frame::text).collect();
                if member.outbox.push_replay(&frames) == Push::Queued {
                    stats.record_sent(count, bytes as u64);
                }
            }
            if member.outbox.closed().is_none() {
                index.add(channel, member);
            }
        }
        Job::Unsubscribe {
            channel,
            member,
            after,
        } => {
            index.remove(&channel, member.key);
            if let Some(reply) = after {
                push_counted(&member, &[reply], stats);
            }
        }
        Job::Forget { key } => index.forget(key),
        Job::Close { member, reason } => {
            index.forget(member.key);
            member.outbox.close(reason);
        }
    }
}

/// Pushes a run of broadcasts for one channel into the outbox of every native subscriber
/// of that channel: one lock and one wake-up per subscriber for the whole run.
pub(super) fn deliver(index: &DeliveryIndex, run: &[(Arc<str>, Utf8Bytes)], stats: &Stats) {
    let Some((channel, _)) = run.first() else {
        return;
    };
    let Some(subscribers) = index.channels.get(channel) else {
        return;
    };
    // Encoded once, the whole run in one buffer: every subscriber gets the same bytes in a
    // single slice, and one that refuses them keeps one entry for the run.
    let frames = [Frame::texts_in_one(
        run.iter().map(|(_, text)| text.as_bytes()),
    )];
    let members = subscribers.as_slice();
    let threads = fanout_threads()
        .min(members.len() / MIN_MEMBERS_PER_THREAD)
        .max(1);
    if threads == 1 {
        push_to(members.values(), &frames, stats);
        return;
    }
    // Each subscriber is in exactly one part and the run ends when every part is written,
    // so per-connection order holds as on one thread.
    let chunk = members.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut start = chunk;
        while start < members.len() {
            let part = &members[start..members.len().min(start + chunk)];
            let frames = &frames;
            scope.spawn(move || push_to(part.values(), frames, stats));
            start += chunk;
        }
        push_to(members[..chunk].values(), &frames, stats);
    });
}

/// Below this many subscribers per thread, a broadcast is written by one thread: starting
/// another costs tens of microseconds, a thousand writes about a millisecond.
const MIN_MEMBERS_PER_THREAD: usize = 1024;

/// At most this many threads write one broadcast.
const MAX_FANOUT_THREADS: usize = 8;

/// Threads that write a broadcast to many subscribers: the cores this process may run on
/// (its affinity and cgroup quota count), at most [`MAX_FANOUT_THREADS`].
/// `CLUSO_WS_FANOUT_THREADS` overrides it (benchmarks compare 1 and 2 on the same cores).
fn fanout_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::var("CLUSO_WS_FANOUT_THREADS")
            .ok()
            .and_then(|threads| threads.parse().ok())
            .unwrap_or(cores)
            .clamp(1, MAX_FANOUT_THREADS)
    })
}

fn push_to<'a>(members: impl Iterator<Item = &'a Member>, frames: &[Frame], stats: &Stats) {
    for (count, member) in members.enumerate() {
        if member.outbox.push_all(frames) == Push::OverCap {
            stats.record_slow_consumer();
            warn!(conn_id = &*member.id, "slow consumer disconnected");
        }
        if count % 64 == 63 {
            crate::runtime::offer_core_when_due();
        }
    }
}
