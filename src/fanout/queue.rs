//! The ordered path to native connections: one bounded queue of jobs — broadcasts, direct
//! sends, subscription changes, closes — applied in the order they were made.
//!
//! `broadcast()` runs on Node's JavaScript thread. For native subscribers it only appends a
//! job — the channel name and one immutable, reference-counted buffer — in constant time
//! whatever the subscriber count. A runtime task applies the jobs in order and pushes the
//! shared buffer into each subscriber's bounded outbox (a reference count per subscriber,
//! never a copy); each connection's writer then batches what it got.
//!
//! The delivery index (channel → native outboxes) belongs to this queue and changes only
//! through jobs, so a subscription change or a send takes effect exactly between the
//! broadcasts made before it and those made after it: order holds by construction, and
//! nobody has to flush anything. The registry stays the truth for the API
//! (`getSubscribers()` sees a change at once); this index is the truth for delivery.
//!
//! The queue is bounded. When a producer outruns the task and finds [`MAX_PENDING_JOBS`]
//! waiting, it applies the oldest job itself — one job, never more, so a `broadcast()` on
//! Node's thread costs at most one delivery — and queues its own. If the task is delivering
//! at that moment, the producer does not wait for it: the queue may grow to
//! [`HARD_MAX_PENDING_JOBS`], and only there does a producer wait its turn. So the broadcast
//! never waits on a socket, never drops a message, and memory stays bounded; a producer
//! paces itself on `pendingBroadcasts` (see the README).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::delivery::{apply, deliver, DeliveryIndex};
use super::outbox::{CloseReason, Outbox};
use crate::registry::RecordKey;
use crate::stats::Stats;

/// Jobs waiting for the fan-out task. At 200 bytes a broadcast, a full queue is under
/// 1 MiB of distinct payloads plus their bookkeeping; beyond it producers help deliver.
pub const MAX_PENDING_JOBS: usize = 4096;

/// Where a producer that found the queue full and the task busy waits for its turn.
pub const HARD_MAX_PENDING_JOBS: usize = 2 * MAX_PENDING_JOBS;

/// Broadcasts for the same channel delivered together: enough to amortise a subscriber's
/// lock and wake-up, few enough that one run does not hold the delivery turn for long.
const MAX_RUN: usize = 64;

/// Outbox pushes one run may make: a run of broadcasts to a channel with many subscribers
/// is shortened so the delivery turn is never held for long (a few hundred microseconds).
const MAX_PUSHES_PER_RUN: usize = 4096;

/// A native connection as the delivery index knows it.
#[derive(Debug, Clone)]
pub struct Member {
    pub key: RecordKey,
    pub id: Arc<str>,
    pub outbox: Arc<Outbox>,
}

/// One step on the ordered path.
#[derive(Debug)]
pub enum Job {
    /// An event for every native subscriber of `channel`.
    Broadcast { channel: Arc<str>, text: Utf8Bytes },
    /// One message for one connection, after every earlier job.
    Send { member: Member, text: Utf8Bytes },
    /// Adds `member` to `channel` after sending `reply`, then `replay` (the events a
    /// resuming client missed).
    Subscribe {
        channel: Arc<str>,
        member: Member,
        reply: Option<Utf8Bytes>,
        replay: Vec<Utf8Bytes>,
    },
    /// Removes `member` from `channel`, then sends `after` (a reply), if any.
    Unsubscribe {
        channel: Arc<str>,
        member: Member,
        after: Option<Utf8Bytes>,
    },
    /// The connection is gone: drop it from every channel.
    Forget { key: RecordKey },
    /// Closes a connection's outbox after every earlier job.
    Close { member: Member, reason: CloseReason },
}

/// The job queue and the delivery turn.
#[derive(Debug, Default)]
pub struct FanOut {
    jobs: Mutex<VecDeque<Job>>,
    /// Held while taking jobs off the queue and applying them, so they take effect in
    /// queue order whoever applies them. It guards the delivery index.
    turn: Mutex<DeliveryIndex>,
    wake: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere leaves it consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FanOut {
    /// Queues a job. When the queue is full, first applies the oldest job on this thread —
    /// one, unless the task holds the turn — so a producer never does more than one job's
    /// delivery per call until the queue reaches its hard bound.
    pub fn submit(&self, job: Job, stats: &Stats) {
        {
            let mut jobs = lock(&self.jobs);
            if jobs.len() < MAX_PENDING_JOBS {
                jobs.push_back(job);
                drop(jobs);
                self.wake.notify_one();
                return;
            }
        }
        let mut index = match self.turn.try_lock() {
            Ok(index) => index,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                let mut jobs = lock(&self.jobs);
                if jobs.len() < HARD_MAX_PENDING_JOBS {
                    jobs.push_back(job);
                    drop(jobs);
                    self.wake.notify_one();
                    return;
                }
                drop(jobs);
                lock(&self.turn)
            }
        };
        self.apply_next(&mut index, stats, 1);
        lock(&self.jobs).push_back(job);
        drop(index);
        self.wake.notify_one();
    }

    /// Takes the next job — or the run of consecutive broadcasts for one channel at the
    /// head of the queue, at most `max_run` and [`MAX_PUSHES_PER_RUN`] pushes — and applies
    /// it; returns how many jobs.
    fn apply_next(&self, index: &mut DeliveryIndex, stats: &Stats, max_run: usize) -> usize {
        let run: Vec<Job> = {
            let mut jobs = lock(&self.jobs);
            let length = match jobs.front() {
                None => return 0,
                Some(Job::Broadcast { channel, .. }) => {
                    let channel = Arc::clone(channel);
                    let subscribers = index.channels.get(&channel).map_or(0, IndexMap::len);
                    let max_run = max_run.min(MAX_PUSHES_PER_RUN / subscribers.max(1)).max(1);
                    jobs.iter()
                        .take(max_run)
                        .take_while(
                            |job| matches!(job, Job::Broadcast { channel: c, .. } if *c == channel),
                        )
                        .count()
                }
                Some(_) => 1,
            };
            jobs.drain(..length).collect()
        };
        let count = run.len();
        let mut broadcasts = Vec::new();
        for job in run {
            match job {
                Job::Broadcast { channel, text } => broadcasts.push((channel, text)),
                other => apply(index, other, stats),
            }
        }
        deliver(index, &broadcasts, stats);
        count
    }

    /// Applies queued jobs until the queue is empty; returns how many.
    pub fn drain(&self, stats: &Stats) -> usize {
        let mut applied = 0;
        loop {
            let mut index = lock(&self.turn);
            match self.apply_next(&mut index, stats, MAX_RUN) {
                0 => return applied,
                count => applied += count,
            }
        }
    }

    /// Waits until a job may be waiting.
    pub async fn wait(&self) {
        let notified = self.wake.notified();
        if !lock(&self.jobs).is_empty() {
            return;
        }
        notified.await;
    }

    pub fn pending(&self) -> usize {
        lock(&self.jobs).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::CLOSE_NORMAL;

    fn member(key: u64, outbox: &Arc<Outbox>) -> Member {
        Member {
            key: RecordKey::for_tests(key),
            id: Arc::from(format!("n{key}")),
            outbox: Arc::clone(outbox),
        }
    }

    fn broadcast(text: &str) -> Job {
        Job::Broadcast {
            channel: Arc::from("files"),
            text: Utf8Bytes::from(text.to_owned()),
        }
    }

    fn subscribe(member: Member) -> Job {
        Job::Subscribe {
            channel: Arc::from("files"),
            member,
            reply: None,
            replay: Vec::new(),
        }
    }

    #[test]
    fn submitted_jobs_wait_for_the_task() {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let fanout = FanOut::default();
        let stats = Stats::default();
        fanout.submit(subscribe(member(1, &outbox)), &stats);
        fanout.submit(broadcast("a"), &stats);
        assert_eq!(fanout.pending(), 2);
        assert_eq!(outbox.queued_bytes(), 0);
        assert_eq!(fanout.drain(&stats), 2);
        assert_eq!(crate::fanout::outbox::queued_texts_now(&outbox), ["a"]);
    }

    #[test]
    fn a_subscription_takes_effect_between_earlier_and_later_broadcasts() {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let fanout = FanOut::default();
        let stats = Stats::default();
        fanout.submit(broadcast("before"), &stats);
        fanout.submit(subscribe(member(1, &outbox)), &stats);
        fanout.submit(broadcast("after"), &stats);
        fanout.submit(
            Job::Unsubscribe {
                channel: Arc::from("files"),
                member: member(1, &outbox),
                after: Some(Utf8Bytes::from_static("bye")),
            },
            &stats,
        );
        fanout.submit(broadcast("gone"), &stats);
        fanout.drain(&stats);
        assert_eq!(
            crate::fanout::outbox::queued_texts_now(&outbox),
            ["after", "bye"]
        );
    }

    #[test]
    fn a_send_and_a_close_follow_earlier_broadcasts() {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let fanout = FanOut::default();
        let stats = Stats::default();
        fanout.submit(subscribe(member(1, &outbox)), &stats);
        fanout.submit(broadcast("event"), &stats);
        fanout.submit(
            Job::Send {
                member: member(1, &outbox),
                text: Utf8Bytes::from_static("direct"),
            },
            &stats,
        );
        fanout.submit(
            Job::Close {
                member: member(1, &outbox),
                reason: CloseReason::Server { code: CLOSE_NORMAL },
            },
            &stats,
        );
        fanout.submit(broadcast("late"), &stats);
        fanout.drain(&stats);
        assert_eq!(
            outbox.closed(),
            Some(CloseReason::Server { code: CLOSE_NORMAL })
        );
        assert_eq!(
            crate::fanout::outbox::queued_texts_now(&outbox),
            ["event", "direct"]
        );
        assert_eq!(stats.snapshot().messages_sent, 1);
    }

    #[test]
    fn a_forgotten_connection_leaves_every_channel() {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let fanout = FanOut::default();
        let stats = Stats::default();
        fanout.submit(subscribe(member(7, &outbox)), &stats);
        fanout.submit(
            Job::Forget {
                key: RecordKey::for_tests(7),
            },
            &stats,
        );
        fanout.drain(&stats);
        assert!(lock(&fanout.turn).channels.is_empty());
        assert!(lock(&fanout.turn).memberships.is_empty());
    }

    #[test]
    fn a_producer_that_finds_the_queue_full_delivers_one_job_and_never_waits_for_the_task() {
        let outbox = Arc::new(Outbox::new(1 << 30));
        let fanout = FanOut::default();
        let stats = Stats::default();
        fanout.submit(subscribe(member(1, &outbox)), &stats);
        fanout.drain(&stats);
        for n in 0..MAX_PENDING_JOBS {
            fanout.submit(broadcast(&n.to_string()), &stats);
        }
        fanout.submit(broadcast("one more"), &stats);
        assert_eq!(fanout.pending(), MAX_PENDING_JOBS);
        assert_eq!(crate::fanout::outbox::queued_texts_now(&outbox), ["0"]);
        // While the task holds the turn, a producer queues beyond the soft bound instead
        // of waiting, up to the hard one.
        let held = lock(&fanout.turn);
        fanout.submit(broadcast("while busy"), &stats);
        assert_eq!(fanout.pending(), MAX_PENDING_JOBS + 1);
        drop(held);
    }

    #[test]
    fn a_full_queue_makes_the_producer_deliver_in_order_without_loss() {
        let outbox = Arc::new(Outbox::new(1 << 30));
        let fanout = FanOut::default();
        let stats = Stats::default();
        fanout.submit(subscribe(member(1, &outbox)), &stats);
        let total = MAX_PENDING_JOBS * 3;
        for index in 0..total {
            fanout.submit(broadcast(&index.to_string()), &stats);
            assert!(fanout.pending() <= HARD_MAX_PENDING_JOBS);
        }
        fanout.drain(&stats);
        let received: Vec<usize> = crate::fanout::outbox::queued_texts_now(&outbox)
            .iter()
            .filter_map(|t| t.parse().ok())
            .collect();
        assert_eq!(received, (0..total).collect::<Vec<_>>());
    }

    #[test]
    fn a_broadcast_to_thousands_of_subscribers_reaches_each_once_in_order() {
        let fanout = FanOut::default();
        let stats = Stats::default();
        let outboxes: Vec<Arc<Outbox>> = (0..3 * 1024)
            .map(|_| Arc::new(Outbox::new(1 << 20)))
            .collect();
        for (key, outbox) in outboxes.iter().enumerate() {
            fanout.submit(subscribe(member(key as u64 + 1, outbox)), &stats);
        }
        for text in ["a", "b", "c"] {
            fanout.submit(broadcast(text), &stats);
        }
        fanout.drain(&stats);
        for outbox in &outboxes {
            assert_eq!(
                crate::fanout::outbox::queued_texts_now(outbox),
                ["a", "b", "c"]
            );
        }
    }
}
