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
//! Producers never deliver and never wait. `submit` takes the queue's lock for one push
//! and returns, so a call on Node's thread costs the same however many subscribers a
//! channel has and however long the queue is. Only the runtime's fan-out task (and
//! shutdown, and tests, through [`FanOut::drain`]) applies jobs.
//!
//! What bounds the queue is the payload of the broadcasts in it (`maxPendingBroadcastBytes`).
//! A broadcast that would take it past the bound is refused — drop-newest, counted: it is
//! not queued, [`Stats`] counts it in `droppedBroadcasts`, and a warning (with the number of
//! refusals since the previous one) is logged at most once a second. Every other job —
//! sends, subscription changes, forgets, closes — always queues and is not counted: losing
//! one would break a connection's order or leak an index entry, and they are bounded by the
//! connections (a client's replies by its rate limit) — except the application's own
//! `send()` calls, which it paces as it paces broadcasts. A producer paces itself on
//! `pendingBroadcasts` / `pendingBroadcastBytes` and [`FanOut::drained`] (see the README,
//! "Pacing a producer").

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tracing::warn;

use super::outbox::{CloseReason, Outbox, Push};
use crate::options::DEFAULT_MAX_PENDING_BROADCAST_BYTES;
use crate::registry::RecordKey;
use crate::stats::Stats;

/// Least time between two warnings about refused broadcasts: a producer refused in a
/// tight loop logs one line a second, with the count since the previous line.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(1);

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

/// Channel → native subscribers, in subscription order.
#[derive(Debug, Default)]
struct DeliveryIndex {
    channels: HashMap<Arc<str>, IndexMap<RecordKey, Member>>,
    memberships: HashMap<RecordKey, Vec<Arc<str>>>,
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

/// Whether [`FanOut::submit`] queued a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Queued,
    /// A broadcast refused: it would have taken the queued broadcast payload past the
    /// bound. Counted in `droppedBroadcasts`.
    Dropped,
}

/// The jobs waiting, and what is known about them without a pass over them.
#[derive(Debug, Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Payload bytes of the broadcasts in `jobs`: what the bound applies to.
    broadcast_bytes: usize,
    /// A run taken off `jobs` is being applied. Set when the run is taken, cleared when
    /// the applier comes back for the next one: [`FanOut::drain`] always does, under the
    /// turn, before it returns.
    applying: bool,
    /// How many times an applier found nothing waiting and nothing being applied: every
    /// job queued before such a moment has reached its outboxes. [`FanOut::drained`] waits
    /// for it to move.
    idle_epoch: u64,
    drops: DropLog,
}

impl Queue {
    fn is_idle(&self) -> bool {
        self.jobs.is_empty() && !self.applying
    }
}

/// Refused broadcasts not yet reported in a warning.
#[derive(Debug, Default)]
struct DropLog {
    last_warning: Option<Instant>,
    unreported: u64,
}

impl DropLog {
    /// Notes one refusal at `now`; returns the count to report when a warning is due (at
    /// most once per [`DROP_WARNING_INTERVAL`]).
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        let due = self
            .last_warning
            .is_none_or(|at| now.saturating_duration_since(at) >= DROP_WARNING_INTERVAL);
        if !due {
            return None;
        }
        self.last_warning = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

/// The job queue and the delivery turn.
#[derive(Debug)]
pub struct FanOut {
    queue: Mutex<Queue>,
    /// Held while taking jobs off the queue and applying them, so they take effect in
    /// queue order whoever applies them. It guards the delivery index.
    turn: Mutex<DeliveryIndex>,
    /// Payload bytes of queued broadcasts at most (`maxPendingBroadcastBytes`).
    max_broadcast_bytes: usize,
    /// Told when a job is queued: the fan-out task waits on it.
    wake: Notify,
    /// Told when an applier found the queue idle ([`Queue::idle_epoch`] moved).
    idle: Notify,
}

impl Default for FanOut {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PENDING_BROADCAST_BYTES)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere leaves it consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a broadcast job counts against the bound: its payload.
fn broadcast_bytes(job: &Job) -> usize {
    match job {
        Job::Broadcast { text, .. } => text.len(),
        _ => 0,
    }
}

impl FanOut {
    /// A queue that holds at most `max_broadcast_bytes` of broadcast payload.
    pub fn new(max_broadcast_bytes: usize) -> Self {
        Self {
            queue: Mutex::default(),
            turn: Mutex::default(),
            max_broadcast_bytes,
            wake: Notify::new(),
            idle: Notify::new(),
        }
    }

    /// Queues a job and returns: it never applies one and never waits for the task (the
    /// queue's lock is held for a push or for taking a run off, never while delivering).
    /// A broadcast that would take the queued broadcast payload past the bound is refused
    /// (drop-newest), counted in `stats` and reported in a warning at most once a second;
    /// every other job always queues.
    pub fn submit(&self, job: Job, stats: &Stats) -> Submitted {
        let mut queue = lock(&self.queue);
        if let Job::Broadcast { .. } = job {
            let bytes = queue.broadcast_bytes.saturating_add(broadcast_bytes(&job));
            if bytes > self.max_broadcast_bytes {
                let report = queue.drops.note(Instant::now());
                drop(queue);
                stats.record_dropped_broadcast();
                if let Some(dropped) = report {
                    warn!(
                        dropped,
                        max_pending_broadcast_bytes = self.max_broadcast_bytes,
                        "fan-out queue full: broadcasts not delivered to native subscribers \
                         (drop-newest; pace the producer on pendingBroadcasts or drained())"
                    );
                }
                return Submitted::Dropped;
            }
            queue.broadcast_bytes = bytes;
        }
        queue.jobs.push_back(job);
        drop(queue);
        self.wake.notify_one();
        Submitted::Queued
    }

    /// Takes the next job — or the run of consecutive broadcasts for one channel at the
    /// head of the queue, at most `max_run` and [`MAX_PUSHES_PER_RUN`] pushes — and applies
    /// it; returns how many jobs. Called under the turn only.
    fn apply_next(&self, index: &mut DeliveryIndex, stats: &Stats, max_run: usize) -> usize {
        let run: Vec<Job> = {
            let mut queue = lock(&self.queue);
            // The previous run of this applier, if any, has been applied.
            queue.applying = false;
            let length = match queue.jobs.front() {
                None => {
                    queue.idle_epoch += 1;
                    drop(queue);
                    self.idle.notify_waiters();
                    return 0;
                }
                Some(Job::Broadcast { channel, .. }) => {
                    let channel = Arc::clone(channel);
                    let subscribers = index.channels.get(&channel).map_or(0, IndexMap::len);
                    let max_run = max_run.min(MAX_PUSHES_PER_RUN / subscribers.max(1)).max(1);
                    queue
                        .jobs
                        .iter()
                        .take(max_run)
                        .take_while(
                            |job| matches!(job, Job::Broadcast { channel: c, .. } if *c == channel),
                        )
                        .count()
                }
                Some(_) => 1,
            };
            let run: Vec<Job> = queue.jobs.drain(..length).collect();
            let bytes: usize = run.iter().map(broadcast_bytes).sum();
            queue.broadcast_bytes = queue.broadcast_bytes.saturating_sub(bytes);
            queue.applying = true;
            run
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
        if !lock(&self.queue).jobs.is_empty() {
            return;
        }
        notified.await;
    }

    /// Whether no job is waiting or being applied.
    pub fn is_idle(&self) -> bool {
        lock(&self.queue).is_idle()
    }

    /// Resolves once every job queued before the call has been applied (at once when
    /// none is waiting or being applied). Woken by the applier that finds the queue empty,
    /// never by polling.
    pub async fn drained(&self) {
        let target = {
            let queue = lock(&self.queue);
            if queue.is_idle() {
                return;
            }
            queue.idle_epoch + 1
        };
        loop {
            // Registered before the check: a `notify_waiters` after it wakes this one.
            let notified = self.idle.notified();
            if lock(&self.queue).idle_epoch >= target {
                return;
            }
            notified.await;
        }
    }

    /// Jobs waiting (`pendingBroadcasts`) and the payload bytes of the broadcasts among
    /// them (`pendingBroadcastBytes`).
    pub fn backlog(&self) -> (usize, usize) {
        let queue = lock(&self.queue);
        (queue.jobs.len(), queue.broadcast_bytes)
    }

    pub fn pending(&self) -> usize {
        self.backlog().0
    }
}

/// Pushes data messages into a member's outbox, all or none, counting them.
fn push_counted(member: &Member, messages: &[Utf8Bytes], stats: &Stats) -> Push {
    let bytes: usize = messages.iter().map(|text| text.len()).sum();
    let pushed = member
        .outbox
        .push_all(messages.iter().cloned().map(Message::Text), bytes);
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

fn apply(index: &mut DeliveryIndex, job: Job, stats: &Stats) {
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
                if member
                    .outbox
                    .push_replay(replay.into_iter().map(Message::Text))
                    == Push::Queued
                {
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
fn deliver(index: &DeliveryIndex, run: &[(Arc<str>, Utf8Bytes)], stats: &Stats) {
    let Some((channel, _)) = run.first() else {
        return;
    };
    let Some(subscribers) = index.channels.get(channel) else {
        return;
    };
    let bytes: usize = run.iter().map(|(_, text)| text.len()).sum();
    for member in subscribers.values() {
        let messages = run.iter().map(|(_, text)| Message::Text(text.clone()));
        if member.outbox.push_all(messages, bytes) == Push::OverCap {
            stats.record_slow_consumer();
            warn!(conn_id = &*member.id, "slow consumer disconnected");
        }
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
        assert_eq!(outbox.queued_bytes(), 1);
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

    fn queued(fanout: &FanOut, job: Job, stats: &Stats) {
        assert_eq!(fanout.submit(job, stats), Submitted::Queued);
    }

    #[test]
    fn a_broadcast_exactly_at_the_byte_bound_is_queued_and_one_byte_over_is_dropped_and_counted() {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let fanout = FanOut::new(10);
        let stats = Stats::default();
        queued(&fanout, subscribe(member(1, &outbox)), &stats);
        queued(&fanout, broadcast("abcd"), &stats);
        queued(&fanout, broadcast("efghij"), &stats);
        assert_eq!(fanout.backlog(), (3, 10), "exactly at the bound");
        assert_eq!(fanout.submit(broadcast("k"), &stats), Submitted::Dropped);
        assert_eq!(fanout.backlog(), (3, 10), "the refused one is not queued");
        assert_eq!(stats.snapshot().dropped_broadcasts, 1);

        fanout.drain(&stats);
        assert_eq!(fanout.backlog(), (0, 0));
        assert_eq!(
            crate::fanout::outbox::queued_texts_now(&outbox),
            ["abcd", "efghij"]
        );
        // Applied broadcasts free their room: a whole bound's worth fits again, one byte
        // more does not.
        queued(&fanout, broadcast("0123456789"), &stats);
        assert_eq!(fanout.submit(broadcast("x"), &stats), Submitted::Dropped);
        assert_eq!(fanout.backlog(), (1, 10));
        assert_eq!(stats.snapshot().dropped_broadcasts, 2);
    }

    #[test]
    fn a_broadcast_larger_than_the_whole_bound_is_dropped_even_when_the_queue_is_empty() {
        let fanout = FanOut::new(3);
        let stats = Stats::default();
        assert_eq!(fanout.submit(broadcast("four"), &stats), Submitted::Dropped);
        assert_eq!(fanout.backlog(), (0, 0));
        assert_eq!(stats.snapshot().dropped_broadcasts, 1);
        assert!(fanout.is_idle());
    }

    #[test]
    fn every_job_but_a_broadcast_queues_past_the_bound_and_is_not_counted_in_it() {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let fanout = FanOut::new(1);
        let stats = Stats::default();
        queued(&fanout, subscribe(member(1, &outbox)), &stats);
        queued(&fanout, broadcast("a"), &stats);
        assert_eq!(fanout.submit(broadcast("b"), &stats), Submitted::Dropped);
        queued(
            &fanout,
            Job::Send {
                member: member(1, &outbox),
                text: Utf8Bytes::from("a send far larger than the bound".to_owned()),
            },
            &stats,
        );
        queued(
            &fanout,
            Job::Unsubscribe {
                channel: Arc::from("files"),
                member: member(1, &outbox),
                after: Some(Utf8Bytes::from_static("bye")),
            },
            &stats,
        );
        queued(&fanout, subscribe(member(1, &outbox)), &stats);
        queued(
            &fanout,
            Job::Forget {
                key: RecordKey::for_tests(1),
            },
            &stats,
        );
        queued(
            &fanout,
            Job::Close {
                member: member(1, &outbox),
                reason: CloseReason::Server { code: CLOSE_NORMAL },
            },
            &stats,
        );
        assert_eq!(fanout.backlog(), (7, 1));
        assert_eq!(stats.snapshot().dropped_broadcasts, 1);
        assert_eq!(fanout.drain(&stats), 7);
        assert_eq!(
            crate::fanout::outbox::queued_texts_now(&outbox),
            ["a", "a send far larger than the bound", "bye"]
        );
        assert_eq!(
            outbox.closed(),
            Some(CloseReason::Server { code: CLOSE_NORMAL })
        );
    }

    #[test]
    fn a_producer_never_applies_a_job_nor_waits_for_the_turn() {
        let outbox = Arc::new(Outbox::new(1 << 30));
        let fanout = FanOut::default();
        let stats = Stats::default();
        queued(&fanout, subscribe(member(1, &outbox)), &stats);
        fanout.drain(&stats);
        // The fan-out task is mid-delivery: it holds the turn. A producer that took the
        // turn itself would deadlock here.
        let held = lock(&fanout.turn);
        let total = 3 * 4096;
        for n in 0..total {
            queued(&fanout, broadcast(&n.to_string()), &stats);
        }
        assert_eq!(fanout.pending(), total);
        assert_eq!(
            outbox.queued_bytes(),
            0,
            "nothing delivered by the producer"
        );
        drop(held);
        assert_eq!(fanout.drain(&stats), total);
        let received: Vec<usize> = crate::fanout::outbox::queued_texts_now(&outbox)
            .iter()
            .filter_map(|t| t.parse().ok())
            .collect();
        assert_eq!(received, (0..total).collect::<Vec<_>>());
        assert_eq!(stats.snapshot().dropped_broadcasts, 0);
    }

    #[test]
    fn drained_resolves_at_once_when_idle_and_otherwise_once_earlier_jobs_are_applied() {
        use futures_util::FutureExt;

        let outbox = Arc::new(Outbox::new(1 << 20));
        let fanout = FanOut::default();
        let stats = Stats::default();
        assert_eq!(fanout.drained().now_or_never(), Some(()), "idle: at once");
        queued(&fanout, subscribe(member(1, &outbox)), &stats);
        queued(&fanout, broadcast("a"), &stats);
        let mut waiting = Box::pin(fanout.drained());
        assert!(waiting.as_mut().now_or_never().is_none());
        // A job queued after the call is applied in the same drain: it does not hold the
        // waiter back once the queue is empty.
        queued(&fanout, broadcast("b"), &stats);
        assert!(waiting.as_mut().now_or_never().is_none());
        fanout.drain(&stats);
        assert_eq!(waiting.now_or_never(), Some(()));
        assert_eq!(crate::fanout::outbox::queued_texts_now(&outbox), ["a", "b"]);
        assert!(fanout.is_idle());
    }

    #[tokio::test]
    async fn drained_is_woken_by_the_applier_on_another_thread() {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let fanout = Arc::new(FanOut::default());
        let stats = Arc::new(Stats::default());
        queued(&fanout, subscribe(member(1, &outbox)), &stats);
        for n in 0..1000 {
            queued(&fanout, broadcast(&n.to_string()), &stats);
        }
        let waiter = {
            let fanout = Arc::clone(&fanout);
            tokio::spawn(async move { fanout.drained().await })
        };
        let applier = {
            let (fanout, stats) = (Arc::clone(&fanout), Arc::clone(&stats));
            std::thread::spawn(move || fanout.drain(&stats))
        };
        let applied = applier.join().unwrap_or_default();
        assert_eq!(applied, 1001);
        let woken = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(woken.is_ok(), "drained() was not woken");
        assert!(outbox.queued_bytes() > 0);
    }

    #[test]
    fn refusals_are_reported_at_most_once_a_second_with_the_count_since_the_last_report() {
        let mut log = DropLog::default();
        let start = Instant::now();
        assert_eq!(
            log.note(start),
            Some(1),
            "the first refusal is reported at once"
        );
        assert_eq!(log.note(start + Duration::from_millis(10)), None);
        assert_eq!(log.note(start + Duration::from_millis(999)), None);
        assert_eq!(log.note(start + Duration::from_secs(1)), Some(3));
        assert_eq!(log.note(start + Duration::from_millis(1500)), None);
        assert_eq!(log.note(start + Duration::from_secs(5)), Some(2));
    }
}
