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

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::warn;

use super::delivery::{apply, deliver, DeliveryIndex};
use super::outbox::{CloseReason, Outbox};
use crate::options::DEFAULT_MAX_PENDING_BROADCAST_BYTES;
use crate::registry::RecordKey;
use crate::stats::Stats;

/// Least time between two warnings about refused broadcasts: a producer refused in a
/// tight loop logs one line a second, with the count since the previous line.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// Broadcasts for the same channel delivered together: enough to amortise a subscriber's
/// lock and wake-up, few enough that one run does not hold the delivery turn for long.
const MAX_RUN: usize = 64;

/// Frames one run may hand out: [`MAX_RUN`] broadcasts to up to 16 384 subscribers. Producers
/// never wait for the turn, so this bounds only how long one pass holds it; the longer the
/// run, the more frames each subscriber gets per system call (at 10 000 subscribers, a bound of
/// 4 096 frames gave runs of one broadcast and one system call per delivered message).
const MAX_PUSHES_PER_RUN: usize = MAX_RUN * 16 * 1024;

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
    /// Frame-header bytes the broadcasts in `jobs` will add on the wire: with
    /// `broadcast_bytes`, what they will weigh in a subscriber's outbox.
    broadcast_heads: usize,
    /// A run taken off `jobs` is being applied. Set when the run is taken, cleared when
    /// the applier comes back for the next one: [`FanOut::drain`] always does, under the
    /// turn, before it returns.
    applying: bool,
    /// Wire bytes of the broadcasts in the run being applied: still waiting for their
    /// subscribers' outboxes, so still in the backlog a producer paces on.
    applying_bytes: usize,
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

/// The header a broadcast job's frame will carry on the wire.
fn broadcast_head(job: &Job) -> usize {
    match job {
        Job::Broadcast { text, .. } => crate::wire::Frame::header_len(text.len()),
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
            queue.broadcast_heads += broadcast_head(&job);
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
            let heads: usize = run.iter().map(broadcast_head).sum();
            queue.broadcast_bytes = queue.broadcast_bytes.saturating_sub(bytes);
            queue.broadcast_heads = queue.broadcast_heads.saturating_sub(heads);
            queue.applying = true;
            queue.applying_bytes = bytes + heads;
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
        if !broadcasts.is_empty() {
            lock(&self.queue).applying_bytes = 0;
        }
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

    /// Applies queued jobs for about `budget` (at least one run); returns `false` once the
    /// queue is empty (and `drained()` is told), `true` when the budget ran out first.
    /// The fan-out task yields to the runtime between calls, so a long backlog never holds
    /// a worker thread: connection tasks woken on that thread (to write what their socket
    /// refused) run between runs instead of after the whole backlog.
    pub fn apply_for(&self, stats: &Stats, budget: std::time::Duration) -> bool {
        let started = Instant::now();
        loop {
            let mut index = lock(&self.turn);
            if self.apply_next(&mut index, stats, MAX_RUN) == 0 {
                return false;
            }
            drop(index);
            if started.elapsed() >= budget {
                // Perhaps none remain: the next call finds out, and tells `drained()`.
                return true;
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

    /// Wire bytes (payload and frame headers) of the broadcasts waiting, and of those taken
    /// off the queue and being written: what they will add to a subscriber's outbox, in the
    /// unit its cap counts. Read together, so a run moving between them is not missed.
    pub fn backlog_on_the_wire(&self) -> usize {
        let queue = lock(&self.queue);
        queue.broadcast_bytes + queue.broadcast_heads + queue.applying_bytes
    }

    pub fn pending(&self) -> usize {
        self.backlog().0
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
