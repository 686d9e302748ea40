//! A native connection's outbound queue: bounded in bytes, drained in batches.
//!
//! Slow-consumer policy (the one place it is implemented): data messages are admitted while
//! the queued bytes stay within the connection's cap. The message that would cross the cap
//! is not queued; instead the outbox closes with [`CloseReason::SlowConsumer`], the writer
//! sends close code 4008 and ends the connection. The producer (a broadcast) never waits and
//! never grows a queue past the cap, and every other subscriber is unaffected. Control
//! messages (ping, pong, close) bypass the cap: they are tiny, bounded in number by the
//! protocol, and dropping them would break the connection's health and shutdown.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use super::gauge::QueueGauge;

/// Why an outbox stopped accepting messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The queue would have crossed its byte cap.
    SlowConsumer,
    /// The server closes the connection (removeConnection, shutdown, a protocol error).
    Server { code: u16 },
    /// The peer is gone or the socket failed; nothing more can be written.
    Gone,
}

impl CloseReason {
    /// Whether pending writes are abandoned rather than finished.
    pub fn is_hard(self) -> bool {
        matches!(self, CloseReason::SlowConsumer | CloseReason::Gone)
    }
}

/// What happened to a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// This push crossed the cap: the outbox is now closed as a slow consumer.
    OverCap,
    /// The outbox was already closed; the message was dropped.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Message>,
    data_bytes: usize,
    closed: Option<CloseReason>,
}

/// The bounded queue between producers (broadcasts, protocol replies) and a connection's
/// writer task.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    wake_writer: Notify,
    /// Wakes a writer stuck on a peer that stopped reading once the connection must end.
    hard_close: Notify,
    cap_bytes: usize,
    /// Told of every change of `data_bytes`, for the manager's `queued_bytes_max`.
    gauge: Option<Arc<QueueGauge>>,
}

impl Outbox {
    pub fn new(cap_bytes: usize) -> Self {
        Self::counted_in(cap_bytes, None)
    }

    /// An outbox whose queued bytes count in `gauge`.
    pub fn with_gauge(cap_bytes: usize, gauge: Arc<QueueGauge>) -> Self {
        Self::counted_in(cap_bytes, Some(gauge))
    }

    fn counted_in(cap_bytes: usize, gauge: Option<Arc<QueueGauge>>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            wake_writer: Notify::new(),
            hard_close: Notify::new(),
            cap_bytes,
            gauge,
        }
    }

    /// Sets the queued data bytes, telling the gauge.
    fn set_data_bytes(&self, state: &mut State, bytes: usize) {
        if let Some(gauge) = &self.gauge {
            gauge.moved(state.data_bytes, bytes);
        }
        state.data_bytes = bytes;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep using it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a data message (text or binary) under the byte cap.
    pub fn push(&self, message: Message) -> Push {
        let size = message.len();
        self.push_all(std::iter::once(message), size)
    }

    /// Queues several data messages of `bytes` bytes in all, atomically: all of them, or —
    /// when they would cross the cap — none, closing as a slow consumer.
    pub fn push_all(&self, messages: impl Iterator<Item = Message>, bytes: usize) -> Push {
        let outcome = {
            let mut state = self.lock();
            if state.closed.is_some() {
                return Push::Closed;
            }
            if state.data_bytes + bytes > self.cap_bytes {
                state.closed = Some(CloseReason::SlowConsumer);
                self.hard_close.notify_waiters();
                Push::OverCap
            } else {
                let queued = state.data_bytes + bytes;
                self.set_data_bytes(&mut state, queued);
                state.queue.extend(messages);
                Push::Queued
            }
        };
        self.wake_writer.notify_one();
        outcome
    }

    /// Queues the events a resuming client missed, outside the byte cap: they are buffers
    /// history already holds (a reference each, no copy), bounded by `historyMaxBytes`, and
    /// a replay larger than the cap must still reach a client that reads — a client cut as
    /// a slow consumer comes back exactly when it missed more than the cap. Live messages
    /// after it are capped as usual, so a client that stops reading is still cut.
    pub fn push_replay(&self, messages: impl Iterator<Item = Message>) -> Push {
        {
            let mut state = self.lock();
            if state.closed.is_some() {
                return Push::Closed;
            }
            state.queue.extend(messages);
        }
        self.wake_writer.notify_one();
        Push::Queued
    }

    /// Queues a control message; never refused for size, only once the outbox is closed.
    pub fn push_control(&self, message: Message) -> Push {
        {
            let mut state = self.lock();
            if state.closed.is_some() {
                return Push::Closed;
            }
            state.queue.push_back(message);
        }
        self.wake_writer.notify_one();
        Push::Queued
    }

    /// Stops accepting messages. The first reason given wins; what is already queued is
    /// still handed to the writer, which then closes the connection.
    pub fn close(&self, reason: CloseReason) {
        {
            let mut state = self.lock();
            if state.closed.is_none() {
                state.closed = Some(reason);
            }
        }
        self.wake_writer.notify_one();
        if reason.is_hard() {
            self.hard_close.notify_waiters();
        }
    }

    /// Resolves once the connection must end without finishing its writes: a slow
    /// consumer, or a peer that is gone.
    pub async fn hard_closed(&self) {
        loop {
            // Registered before the check, so a close in between still wakes it.
            let notified = self.hard_close.notified();
            if self.closed().is_some_and(CloseReason::is_hard) {
                return;
            }
            notified.await;
        }
    }

    pub fn closed(&self) -> Option<CloseReason> {
        self.lock().closed
    }

    /// Data bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.lock().data_bytes
    }

    /// Waits until there is something to write or the outbox is closed, then moves every
    /// queued message into `batch`. Returns the close reason once the outbox is closed and
    /// everything before the close has been handed over — except for a slow consumer, whose
    /// queue is discarded at once.
    pub async fn next_batch(&self, batch: &mut Vec<Message>) -> Option<CloseReason> {
        loop {
            let notified = self.wake_writer.notified();
            {
                let mut state = self.lock();
                if state.closed == Some(CloseReason::SlowConsumer) {
                    // The peer is not reading: what is queued would only wait behind it.
                    state.queue.clear();
                    self.set_data_bytes(&mut state, 0);
                    return state.closed;
                }
                if !state.queue.is_empty() {
                    batch.extend(state.queue.drain(..));
                    self.set_data_bytes(&mut state, 0);
                    return None;
                }
                if let Some(reason) = state.closed {
                    return Some(reason);
                }
            }
            notified.await;
        }
    }
}

impl Drop for Outbox {
    /// What an outbox still held when its connection ended no longer counts.
    fn drop(&mut self) {
        if let Some(gauge) = &self.gauge {
            let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
            gauge.moved(state.data_bytes, 0);
        }
    }
}

/// Everything queued in `outbox` as text, for tests outside a runtime.
#[cfg(test)]
pub(crate) fn queued_texts_now(outbox: &Outbox) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(queued_texts(outbox))
}

/// Everything queued in `outbox` as text, for tests.
#[cfg(test)]
pub(crate) async fn queued_texts(outbox: &Outbox) -> Vec<String> {
    let mut batch = Vec::new();
    outbox.next_batch(&mut batch).await;
    batch
        .iter()
        .filter_map(|m| m.to_text().ok().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::{CLOSE_GOING_AWAY, CLOSE_NORMAL};

    fn text(len: usize) -> Message {
        Message::text("x".repeat(len))
    }

    #[test]
    fn admits_messages_up_to_the_cap_exactly() {
        let outbox = Outbox::new(10);
        assert_eq!(outbox.push(text(6)), Push::Queued);
        assert_eq!(outbox.push(text(4)), Push::Queued);
        assert_eq!(outbox.queued_bytes(), 10);
        assert_eq!(outbox.closed(), None);
    }

    #[test]
    fn the_message_crossing_the_cap_closes_as_slow_consumer() {
        let outbox = Outbox::new(10);
        outbox.push(text(6));
        assert_eq!(outbox.push(text(5)), Push::OverCap);
        assert_eq!(outbox.closed(), Some(CloseReason::SlowConsumer));
        assert_eq!(outbox.push(text(1)), Push::Closed);
        assert_eq!(outbox.queued_bytes(), 6);
    }

    #[test]
    fn a_replay_bypasses_the_cap_but_live_messages_after_it_do_not() {
        let outbox = Outbox::new(10);
        let replay = (0..5).map(|_| text(8));
        assert_eq!(outbox.push_replay(replay), Push::Queued);
        assert_eq!(
            outbox.queued_bytes(),
            0,
            "the replay is history's, not the cap's"
        );
        assert_eq!(outbox.push(text(10)), Push::Queued);
        assert_eq!(outbox.push(text(1)), Push::OverCap);
        assert_eq!(outbox.push_replay(std::iter::once(text(1))), Push::Closed);
    }

    #[test]
    fn control_messages_bypass_the_cap() {
        let outbox = Outbox::new(4);
        outbox.push(text(4));
        assert_eq!(
            outbox.push_control(Message::Ping(Vec::new().into())),
            Push::Queued
        );
        assert_eq!(outbox.closed(), None);
    }

    #[tokio::test]
    async fn writer_gets_everything_queued_in_one_batch_then_the_close() {
        let outbox = Outbox::new(100);
        outbox.push(text(1));
        outbox.push(text(2));
        outbox.close(CloseReason::Server {
            code: CLOSE_GOING_AWAY,
        });
        let mut batch = Vec::new();
        assert_eq!(outbox.next_batch(&mut batch).await, None);
        assert_eq!(batch.len(), 2);
        assert_eq!(outbox.queued_bytes(), 0);
        batch.clear();
        assert_eq!(
            outbox.next_batch(&mut batch).await,
            Some(CloseReason::Server {
                code: CLOSE_GOING_AWAY
            })
        );
    }

    // Paused time: the runtime advances the clock only once every task is idle, so the
    // timeout below elapses exactly when nothing can wake `hard_closed()` any more, at once.
    #[tokio::test(start_paused = true)]
    async fn hard_close_wakes_a_stuck_writer_but_a_server_close_does_not() {
        let outbox = std::sync::Arc::new(Outbox::new(4));
        let waiter = {
            let outbox = std::sync::Arc::clone(&outbox);
            tokio::spawn(async move { outbox.hard_closed().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        outbox.push(text(5));
        assert!(waiter.await.is_ok());
        let graceful = Outbox::new(4);
        graceful.close(CloseReason::Server { code: CLOSE_NORMAL });
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(20), graceful.hard_closed());
        assert!(pending.await.is_err());
    }

    #[tokio::test]
    async fn the_gauge_sees_pushes_drains_cuts_and_drops() {
        let gauge = Arc::new(QueueGauge::default());
        let outbox = Outbox::with_gauge(10, Arc::clone(&gauge));
        outbox.push(text(6));
        assert_eq!(gauge.max(), 6);
        outbox.push_control(Message::Ping(Vec::new().into()));
        assert_eq!(gauge.max(), 6, "control frames are not data bytes");
        let mut batch = Vec::new();
        outbox.next_batch(&mut batch).await;
        assert_eq!(gauge.max(), 0);

        outbox.push(text(9));
        let other = Outbox::with_gauge(100, Arc::clone(&gauge));
        other.push(text(3));
        assert_eq!(gauge.max(), 9);
        assert_eq!(outbox.push(text(5)), Push::OverCap);
        outbox.next_batch(&mut batch).await;
        assert_eq!(
            gauge.max(),
            3,
            "a slow consumer's discarded queue no longer counts"
        );
        drop(other);
        assert_eq!(gauge.max(), 0);
    }

    #[tokio::test]
    async fn writer_wakes_when_a_message_arrives_later() {
        let outbox = std::sync::Arc::new(Outbox::new(100));
        let writer = {
            let outbox = std::sync::Arc::clone(&outbox);
            tokio::spawn(async move {
                let mut batch = Vec::new();
                outbox.next_batch(&mut batch).await;
                batch.len()
            })
        };
        tokio::task::yield_now().await;
        outbox.push(text(3));
        assert_eq!(writer.await.ok(), Some(1));
    }
}
