//! The fan-out engine: hands one serialised broadcast to every native subscriber of its
//! channel, off the caller's thread.
//!
//! `broadcast()` runs on Node's JavaScript thread. For native subscribers it only appends a
//! job — the channel name and one immutable, reference-counted buffer — to a queue, in
//! constant time whatever the subscriber count. A task on the runtime takes the jobs in
//! order and pushes the shared buffer into each subscriber's bounded outbox (a reference
//! count per subscriber, never a copy); each connection's writer then batches what it got.
//!
//! The queue is bounded ([`MAX_PENDING_JOBS`]). When a producer outruns the fan-out task
//! and finds it full, the producer delivers queued jobs itself, in order, until there is
//! room again: the broadcast never waits on a socket, never drops a message, and the queue
//! never grows past its bound. Order per subscriber is kept because only the holder of the
//! delivery turn takes jobs off the queue.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tracing::warn;

use crate::outbox::Push;
use crate::registry::Registry;
use crate::stats::Stats;

/// Broadcasts waiting for the fan-out task. At 200 bytes each, a full queue is under 1 MiB
/// of distinct payloads plus their bookkeeping; beyond it producers help deliver.
pub const MAX_PENDING_JOBS: usize = 4096;

/// Jobs for the same channel delivered together: enough to amortise a subscriber's lock
/// and wake-up, few enough that a run does not hold the registry's read lock for long.
const MAX_RUN: usize = 64;

/// One broadcast to deliver.
#[derive(Debug)]
pub struct Job {
    pub channel: Arc<str>,
    pub text: Utf8Bytes,
}

/// The job queue and the delivery turn.
#[derive(Debug, Default)]
pub struct FanOut {
    jobs: Mutex<VecDeque<Job>>,
    /// Held while taking a job off the queue and delivering it, so jobs reach every
    /// subscriber in queue order whoever delivers them.
    turn: Mutex<()>,
    wake: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere leaves it consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FanOut {
    /// Queues a job; when the queue is full, first delivers queued jobs on this thread.
    pub fn submit(&self, job: Job, registry: &std::sync::RwLock<Registry>, stats: &Stats) {
        {
            let mut jobs = lock(&self.jobs);
            if jobs.len() < MAX_PENDING_JOBS {
                jobs.push_back(job);
                drop(jobs);
                self.wake.notify_one();
                return;
            }
        }
        let turn = lock(&self.turn);
        while lock(&self.jobs).len() >= MAX_PENDING_JOBS / 2 {
            if self.deliver_next(&turn, registry, stats) == 0 {
                break;
            }
        }
        lock(&self.jobs).push_back(job);
        drop(turn);
        self.wake.notify_one();
    }

    /// Takes the run of consecutive jobs for one channel at the head of the queue (at
    /// most [`MAX_RUN`]) and delivers it; returns how many jobs that was.
    fn deliver_next(
        &self,
        _turn: &MutexGuard<'_, ()>,
        registry: &std::sync::RwLock<Registry>,
        stats: &Stats,
    ) -> usize {
        let run: Vec<Job> = {
            let mut jobs = lock(&self.jobs);
            let Some(channel) = jobs.front().map(|job| Arc::clone(&job.channel)) else {
                return 0;
            };
            let length = jobs
                .iter()
                .take(MAX_RUN)
                .take_while(|job| job.channel == channel)
                .count();
            jobs.drain(..length).collect()
        };
        let registry = registry.read().unwrap_or_else(|p| p.into_inner());
        deliver(&registry, &run, stats);
        run.len()
    }

    /// Delivers queued jobs until the queue is empty; returns how many.
    pub fn drain(&self, registry: &std::sync::RwLock<Registry>, stats: &Stats) -> usize {
        let mut delivered = 0;
        loop {
            let turn = lock(&self.turn);
            match self.deliver_next(&turn, registry, stats) {
                0 => return delivered,
                count => delivered += count,
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

/// Pushes a run of jobs for one channel into the outbox of every native subscriber of that
/// channel: one lock and one wake-up per subscriber for the whole run.
fn deliver(registry: &Registry, run: &[Job], stats: &Stats) {
    let Some(first) = run.first() else {
        return;
    };
    let bytes: usize = run.iter().map(|job| job.text.len()).sum();
    for subscriber in registry.native_subscribers(&first.channel) {
        let crate::registry::Transport::Native(outbox) = &subscriber.transport else {
            continue;
        };
        let messages = run.iter().map(|job| Message::Text(job.text.clone()));
        if outbox.push_all(messages, bytes) == Push::OverCap {
            stats.record_slow_consumer();
            warn!(conn_id = &*subscriber.id, "slow consumer disconnected");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Outbox;
    use crate::registry::Transport;
    use std::sync::RwLock;

    fn job(text: &'static str) -> Job {
        Job {
            channel: Arc::from("files"),
            text: Utf8Bytes::from_static(text),
        }
    }

    fn registry_with_subscriber(outbox: &Arc<Outbox>) -> RwLock<Registry> {
        let mut registry = Registry::new();
        registry.add("n", Transport::Native(Arc::clone(outbox)));
        registry.subscribe("n", "files", None);
        RwLock::new(registry)
    }

    #[test]
    fn submitted_jobs_wait_for_the_task() {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let registry = registry_with_subscriber(&outbox);
        let fanout = FanOut::default();
        fanout.submit(job("a"), &registry, &Stats::default());
        assert_eq!(fanout.pending(), 1);
        assert_eq!(outbox.queued_bytes(), 0);
        assert_eq!(fanout.drain(&registry, &Stats::default()), 1);
        assert_eq!(outbox.queued_bytes(), 1);
    }

    #[test]
    fn a_full_queue_makes_the_producer_deliver_in_order_without_loss() {
        let outbox = Arc::new(Outbox::new(1 << 30));
        let registry = registry_with_subscriber(&outbox);
        let fanout = FanOut::default();
        let stats = Stats::default();
        let total = MAX_PENDING_JOBS * 3;
        for index in 0..total {
            let text = Utf8Bytes::from(index.to_string());
            let job = Job {
                channel: Arc::from("files"),
                text,
            };
            fanout.submit(job, &registry, &stats);
            assert!(fanout.pending() <= MAX_PENDING_JOBS);
        }
        fanout.drain(&registry, &stats);
        let mut batch = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread().build();
        let Ok(rt) = rt else { return };
        rt.block_on(outbox.next_batch(&mut batch));
        let received: Vec<usize> = batch
            .iter()
            .filter_map(|m| m.to_text().ok().and_then(|t| t.parse().ok()))
            .collect();
        assert_eq!(received, (0..total).collect::<Vec<_>>());
    }
}
