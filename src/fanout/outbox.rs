//! A native connection's write side: frames go straight into the socket, and only what the
//! kernel refused waits here, bounded in bytes.
//!
//! Whoever delivers a frame — the fan-out task, a reply, a ping — writes it at once with a
//! non-blocking `send` when nothing is waiting before it, several frames per call. What
//! the kernel does not take stays queued, in order, and the connection's task writes it
//! when the socket has room again. A reader that keeps up therefore costs one system call
//! per delivery and no wake-up of its task at all.
//!
//! Slow-consumer policy (the one place it is implemented): the cap counts only data bytes
//! the kernel refused (what `ws`' `bufferedAmount` and uWS' backpressure count). A data
//! message that finds them over the cap closes the outbox with
//! [`CloseReason::SlowConsumer`] instead of joining them — as a JavaScript socket whose
//! `bufferedAmount` is over the cap when a broadcast reaches it: at the cap it is sent.
//! What waits is dropped, the connection's task sends close code 4008 and ends the
//! connection. Checked when a message comes rather than after it is queued, the push that
//! crosses the cap is still delivered: a producer pacing on `maxQueuedBytes` at the cap
//! cuts a reader only when a later push reaches it before the producer paused, and one
//! connection holds at most the cap plus one push. The producer never waits, and every
//! other subscriber is unaffected. Control frames (ping, pong, close) and resume replays
//! bypass the cap: the first are tiny and bounded by the protocol, the second are bounded
//! by the history and asked for by the client.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::net::TcpStream;

use futures_util::task::AtomicWaker;

use super::gauge::QueueGauge;
use super::send::send_slices;
use crate::wire::Frame;

/// Why an outbox stopped accepting messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A data message found more than the cap refused by the kernel and waiting.
    SlowConsumer,
    /// The server closes the connection (removeConnection, shutdown, a protocol error).
    Server { code: u16 },
    /// The peer sent a close; the answer is queued after everything before it.
    Answered,
    /// The peer is gone or the socket failed; nothing more can be written.
    Gone,
}

impl CloseReason {
    /// Whether what is queued is abandoned rather than written first.
    pub fn is_hard(self) -> bool {
        matches!(self, CloseReason::SlowConsumer | CloseReason::Gone)
    }
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Written or queued.
    Queued,
    /// More than the cap was waiting already: the connection is being cut off, and the
    /// message is not delivered.
    OverCap,
    /// The outbox was already closed, or the socket failed; nothing was delivered.
    Closed,
}

/// What the connection's task has to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Frames wait for the socket to have room.
    Write,
    /// Closed; for a server close, everything queued (the close frame last) is written.
    Closed(CloseReason),
}

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Nothing waits any more.
    All,
    /// The socket is full again; the rest waits for room.
    Partly,
    /// The socket failed; the outbox is closed as gone.
    Failed,
}

/// Frames per system call: several waiting frames leave in one `sendmsg`.
const MAX_FRAMES_PER_WRITE: usize = 64;

/// How far a direct write got: whole frames, then bytes of the next one.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    whole: usize,
    of_next: usize,
}

/// Sends one batch of at most [`MAX_FRAMES_PER_WRITE`] frames, the first `skip` bytes of
/// the first already sent, gathered into `SLOTS` slices (a lone frame needs two, and
/// preparing the room for a whole batch costs more than the frame's own bytes).
fn send_batch<'a, const SLOTS: usize>(
    socket: &TcpStream,
    batch: impl Iterator<Item = &'a Frame>,
    mut skip: usize,
) -> io::Result<usize> {
    const NO_BYTES: &[u8] = &[];
    let mut slices = [IoSlice::new(NO_BYTES); SLOTS];
    let mut count = 0;
    for frame in batch {
        for part in frame.unsent(skip) {
            if !part.is_empty() && count < SLOTS {
                slices[count] = IoSlice::new(part);
                count += 1;
            }
        }
        skip = 0;
    }
    send_slices(socket, &slices[..count])
}

/// [`send_batch`] with room for `batch`.
fn send_frames(socket: &TcpStream, batch: &[Frame], skip: usize) -> io::Result<usize> {
    if batch.len() == 1 {
        send_batch::<2>(socket, batch.iter(), skip)
    } else {
        send_batch::<{ 2 * MAX_FRAMES_PER_WRITE }>(socket, batch.iter(), skip)
    }
}

/// Writes `frames` into the socket as far as it takes them now, up to
/// [`MAX_FRAMES_PER_WRITE`] frames per call.
fn write_frames(socket: &TcpStream, frames: &[Frame]) -> io::Result<Sent> {
    let mut sent = Sent::default();
    while sent.whole < frames.len() {
        let batch = &frames[sent.whole..frames.len().min(sent.whole + MAX_FRAMES_PER_WRITE)];
        let mut written = match send_frames(socket, batch, sent.of_next) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => written,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(sent),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        for frame in batch {
            let left = frame.len() - sent.of_next;
            if written < left {
                sent.of_next += written;
                return Ok(sent);
            }
            written -= left;
            sent.whole += 1;
            sent.of_next = 0;
        }
    }
    Ok(sent)
}

#[derive(Debug)]
struct Waiting {
    frame: Frame,
    /// Counted against the cap.
    capped: bool,
}

#[derive(Debug, Default)]
struct Unsent {
    frames: VecDeque<Waiting>,
    /// Bytes of the first frame already written.
    written_of_first: usize,
    /// Unwritten bytes of capped frames.
    capped_bytes: usize,
}

impl Unsent {
    /// Writes as much as the socket takes now. `Ok` whether or not everything left.
    fn write_to(&mut self, socket: &TcpStream) -> io::Result<()> {
        while !self.frames.is_empty() {
            let batch = self
                .frames
                .iter()
                .take(MAX_FRAMES_PER_WRITE)
                .map(|waiting| &waiting.frame);
            match send_batch::<{ 2 * MAX_FRAMES_PER_WRITE }>(socket, batch, self.written_of_first) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.advance(written),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(first) = self.frames.front() else {
                return;
            };
            let left = first.frame.len() - self.written_of_first;
            let taken = left.min(written);
            if first.capped {
                self.capped_bytes -= taken;
            }
            written -= taken;
            if taken == left {
                self.frames.pop_front();
                self.written_of_first = 0;
            } else {
                self.written_of_first += taken;
            }
        }
        if self.frames.is_empty() {
            // An idle connection keeps no buffer.
            self.frames = VecDeque::new();
        }
    }

    /// Drops every frame not yet begun (a partly written one must end, or the stream
    /// would be corrupt).
    fn abandon(&mut self) {
        let keep = usize::from(self.written_of_first > 0);
        self.frames.truncate(keep);
        self.capped_bytes = self.frames.front().map_or(0, |first| {
            usize::from(first.capped) * (first.frame.len() - self.written_of_first)
        });
    }
}

#[derive(Debug, Default)]
struct State {
    /// Absent until the connection starts (and in unit tests): frames then only queue.
    socket: Option<Arc<TcpStream>>,
    unsent: Unsent,
    closed: Option<CloseReason>,
}

/// A native connection's write side (see the module documentation).
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Set when the connection's task has news (frames refused where none waited, a
    /// close); the task's waker, polled rather than a future of its own, keeps an idle
    /// connection small.
    news: AtomicBool,
    task: AtomicWaker,
    cap_bytes: usize,
    gauge: Option<Arc<QueueGauge>>,
}

impl Outbox {
    /// An outbox without a socket, whose frames only queue (tests, and before a socket).
    pub fn new(cap_bytes: usize) -> Self {
        Self::build(cap_bytes, None, None)
    }

    /// An outbox counted in `gauge`, writing to `socket`.
    pub fn on_socket(cap_bytes: usize, gauge: Arc<QueueGauge>, socket: Arc<TcpStream>) -> Self {
        Self::build(cap_bytes, Some(gauge), Some(socket))
    }

    /// An outbox counted in `gauge`, without a socket.
    pub fn with_gauge(cap_bytes: usize, gauge: Arc<QueueGauge>) -> Self {
        Self::build(cap_bytes, Some(gauge), None)
    }

    fn build(
        cap_bytes: usize,
        gauge: Option<Arc<QueueGauge>>,
        socket: Option<Arc<TcpStream>>,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                socket,
                ..State::default()
            }),
            news: AtomicBool::new(false),
            task: AtomicWaker::new(),
            cap_bytes,
            gauge,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data: a panic elsewhere leaves it consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `change` on the queue and reports a change of its capped bytes to the gauge.
    fn counted<R>(&self, state: &mut State, change: impl FnOnce(&mut State) -> R) -> R {
        let before = state.unsent.capped_bytes;
        let result = change(state);
        if let Some(gauge) = &self.gauge {
            gauge.moved(before, state.unsent.capped_bytes);
        }
        result
    }

    /// Writes what is queued as far as the socket takes it; a failed socket closes the
    /// outbox as [`CloseReason::Gone`]. Returns whether it failed.
    fn write_locked(&self, state: &mut State) -> bool {
        let Some(socket) = state.socket.as_ref() else {
            return false;
        };
        let socket = Arc::clone(socket);
        match self.counted(state, |state| state.unsent.write_to(&socket)) {
            Ok(()) => false,
            Err(_) => {
                self.close_gone(state);
                true
            }
        }
    }

    /// One data message, counted against the cap.
    pub fn push(&self, frame: Frame) -> Push {
        self.push_frames(std::slice::from_ref(&frame), true)
    }

    /// Data messages, all or none (only a closed outbox refuses), counted against the cap.
    pub fn push_all(&self, frames: &[Frame]) -> Push {
        self.push_frames(frames, true)
    }

    /// A resume replay: written in order with everything else but not counted against the
    /// cap — it is bounded by the history and the client asked for it.
    pub fn push_replay(&self, frames: &[Frame]) -> Push {
        self.push_frames(frames, false)
    }

    /// A control frame (ping, pong): never refused for size.
    pub fn push_control(&self, frame: Frame) -> Push {
        self.push_frames(std::slice::from_ref(&frame), false)
    }

    fn push_frames(&self, frames: &[Frame], capped: bool) -> Push {
        let mut state = self.lock();
        if state.closed.is_some() {
            return Push::Closed;
        }
        if capped && state.unsent.capped_bytes > self.cap_bytes {
            self.cut_slow_consumer(&mut state);
            drop(state);
            self.tell_task();
            return Push::OverCap;
        }
        let idle = state.unsent.frames.is_empty();
        // Nothing waits: write straight from the caller's frames, and queue (clone) only
        // what the kernel refused. Behind frames already waiting a write would only fail;
        // the task, told when the first of them was refused, writes them all when the
        // socket has room.
        let mut sent = Sent::default();
        if idle {
            if let Some(socket) = state.socket.as_deref() {
                match write_frames(socket, frames) {
                    Ok(progress) => sent = progress,
                    Err(_) => {
                        self.close_gone(&mut state);
                        drop(state);
                        self.tell_task();
                        return Push::Closed;
                    }
                }
            }
        }
        if sent.whole == frames.len() {
            return Push::Queued;
        }
        self.counted(&mut state, |state| {
            let rest = &frames[sent.whole..];
            for frame in rest {
                if capped {
                    state.unsent.capped_bytes += frame.len();
                }
                state.unsent.frames.push_back(Waiting {
                    frame: frame.clone(),
                    capped,
                });
            }
            if capped {
                state.unsent.capped_bytes -= sent.of_next;
            }
            state.unsent.written_of_first += sent.of_next;
        });
        drop(state);
        // The task wakes only for news: frames now wait where none did.
        if idle {
            self.tell_task();
        }
        Push::Queued
    }

    /// The socket failed: nothing more can be written.
    fn close_gone(&self, state: &mut State) {
        state.closed = Some(CloseReason::Gone);
        self.counted(state, |state| state.unsent.abandon());
        state.socket = None;
    }

    /// Cuts off a connection that a message found over the cap: what waits is dropped.
    fn cut_slow_consumer(&self, state: &mut State) {
        state.closed = Some(CloseReason::SlowConsumer);
        self.counted(state, |state| state.unsent.abandon());
    }

    /// Stops accepting messages. A server close queues its close frame after everything
    /// already queued; a hard close abandons what waits. The first reason stays, except
    /// that [`CloseReason::Gone`] ends a graceful close whose frames can no longer leave.
    pub fn close(&self, reason: CloseReason) {
        let frame = match reason {
            CloseReason::Server { code } => Some(Frame::close(code, "")),
            CloseReason::Answered => Some(Frame::close_empty()),
            CloseReason::SlowConsumer | CloseReason::Gone => None,
        };
        self.close_with(reason, frame);
    }

    /// Answers the client's close with `frame` (its code echoed), after everything already
    /// queued — unless a close of our own is already on its way.
    pub fn answer_close(&self, frame: Frame) {
        self.close_with(CloseReason::Answered, Some(frame));
    }

    fn close_with(&self, reason: CloseReason, frame: Option<Frame>) {
        {
            let mut state = self.lock();
            match state.closed {
                None => {}
                Some(current) if !current.is_hard() && reason == CloseReason::Gone => {}
                Some(_) => return,
            }
            state.closed = Some(reason);
            match frame {
                Some(frame) => {
                    let idle = state.unsent.frames.is_empty();
                    state.unsent.frames.push_back(Waiting {
                        frame,
                        capped: false,
                    });
                    if idle {
                        self.write_locked(&mut state);
                    }
                }
                None => {
                    self.counted(&mut state, |state| state.unsent.abandon());
                    if reason == CloseReason::Gone {
                        // Nothing more will be written: the connection's task holds the
                        // last reference, and the socket closes when that task ends.
                        state.socket = None;
                    }
                }
            }
        }
        self.tell_task();
    }

    /// After a slow-consumer cut: queues the 4008 close frame behind what remains of a
    /// partly written frame, for one last try.
    pub fn queue_farewell(&self, frame: Frame) {
        let mut state = self.lock();
        state.unsent.frames.push_back(Waiting {
            frame,
            capped: false,
        });
    }

    /// Why the outbox closed, if it did.
    pub fn closed(&self) -> Option<CloseReason> {
        self.lock().closed
    }

    /// Data bytes the kernel refused, waiting here.
    pub fn queued_bytes(&self) -> usize {
        self.lock().unsent.capped_bytes
    }

    fn tell_task(&self) {
        self.news.store(true, Ordering::Release);
        self.task.wake();
    }

    /// Ready once there is news for the connection's task since it last took it.
    pub fn poll_news(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.task.register(cx.waker());
        match self.news.swap(false, Ordering::AcqRel) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }

    /// What the connection's task has to do now, if anything.
    pub fn work(&self) -> Option<Work> {
        let state = self.lock();
        match state.closed {
            Some(reason @ (CloseReason::SlowConsumer | CloseReason::Gone)) => {
                Some(Work::Closed(reason))
            }
            _ if !state.unsent.frames.is_empty() => Some(Work::Write),
            Some(reason) => Some(Work::Closed(reason)),
            None => None,
        }
    }

    /// Waits until the connection's task has something to do.
    pub async fn next_work(&self) -> Work {
        loop {
            if let Some(work) = self.work() {
                return work;
            }
            std::future::poll_fn(|cx| self.poll_news(cx)).await;
        }
    }

    /// Writes what waits as far as the socket takes it.
    pub fn flush(&self) -> Flushed {
        let mut state = self.lock();
        if self.write_locked(&mut state) {
            Flushed::Failed
        } else if state.unsent.frames.is_empty() {
            Flushed::All
        } else {
            Flushed::Partly
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if let Some(gauge) = &self.gauge {
            let state = self
                .state
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            gauge.moved(state.unsent.capped_bytes, 0);
        }
    }
}

/// The payloads of the text frames waiting in an outbox without a socket, taken out.
#[cfg(test)]
pub(crate) fn queued_texts_now(outbox: &Outbox) -> Vec<String> {
    let mut state = outbox.lock();
    let frames = std::mem::take(&mut state.unsent.frames);
    outbox.counted(&mut state, |state| state.unsent.capped_bytes = 0);
    frames
        .into_iter()
        .flat_map(|waiting| waiting.frame.messages())
        .filter(|(opcode, _)| *opcode == 0x1)
        .map(|(_, text)| String::from_utf8_lossy(&text).into_owned())
        .collect()
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
