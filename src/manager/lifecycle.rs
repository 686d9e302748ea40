//! Running → Closing → Closed, the background tasks, and what keeps the host alive.
//!
//! Shutdown is signal-then-wait: [`Manager::begin_shutdown`] delivers what was broadcast
//! before it, closes every native connection with 1001 on the ordered path and cancels the
//! token every task watches; [`Manager::closed`] then waits on the task tracker until every
//! listener, handshake and connection task has ended.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;
use tracing::info;

use super::{Manager, CLOSE_GOING_AWAY};
use crate::fanout::outbox::{CloseReason, Outbox};
use crate::registry::{RecordKey, Transport};
use crate::transport::SHUTDOWN_DRAIN;

/// Where a manager is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    /// `shutdown()` was called; tasks are ending.
    Closing,
    /// Every task has ended.
    Closed,
}

const RUNNING: u8 = 0;
const CLOSING: u8 = 1;
const CLOSED: u8 = 2;

/// Told when the number of live native resources (listeners, attachments, native
/// connections) crosses zero, so the host can keep its process alive while any exist.
pub trait Lifeline: Send + Sync {
    fn active_changed(&self, active: usize);
    /// Asks the JavaScript thread to collect what the runtime handed it.
    fn wake(&self);
}

#[derive(Default)]
pub(super) struct Lifecycle {
    state: AtomicU8,
    /// Cancelled by shutdown: every listener, handshake and native connection ends.
    token: CancellationToken,
    tasks: TaskTracker,
    active: AtomicUsize,
    lifeline: OnceLock<Arc<dyn Lifeline>>,
    fanout_started: AtomicBool,
}

impl Lifecycle {
    /// Wakes the JavaScript thread, if a host installed its lifeline.
    pub(super) fn wake_js(&self) {
        if let Some(lifeline) = self.lifeline.get() {
            lifeline.wake();
        }
    }
}

/// Counts one live native resource while it exists.
pub struct ActiveGuard {
    manager: Arc<Manager>,
}

impl ActiveGuard {
    /// The manager this guard keeps alive.
    pub fn manager(&self) -> &Arc<Manager> {
        &self.manager
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let lifecycle = &self.manager.lifecycle;
        if lifecycle.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(lifeline) = lifecycle.lifeline.get() {
                lifeline.active_changed(0);
            }
        }
    }
}

impl Manager {
    pub fn state(&self) -> State {
        match self.lifecycle.state.load(Ordering::Acquire) {
            RUNNING => State::Running,
            CLOSING => State::Closing,
            _ => State::Closed,
        }
    }

    pub fn is_running(&self) -> bool {
        self.state() == State::Running
    }

    /// Installs the host's lifeline; only the first call has an effect.
    pub fn set_lifeline(&self, lifeline: Arc<dyn Lifeline>) {
        let _ = self.lifecycle.lifeline.set(lifeline);
    }

    /// Counts a live native resource until the guard is dropped.
    pub fn active_guard(self: &Arc<Self>) -> ActiveGuard {
        if self.lifecycle.active.fetch_add(1, Ordering::AcqRel) == 0 {
            if let Some(lifeline) = self.lifecycle.lifeline.get() {
                lifeline.active_changed(1);
            }
        }
        ActiveGuard {
            manager: Arc::clone(self),
        }
    }

    /// Live native resources right now.
    pub fn active(&self) -> usize {
        self.lifecycle.active.load(Ordering::Acquire)
    }

    /// Resolves when the manager begins to shut down.
    pub fn shutdown_signal(&self) -> WaitForCancellationFuture<'_> {
        self.lifecycle.token.cancelled()
    }

    /// A token that is cancelled when the manager begins to shut down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.lifecycle.token.clone()
    }

    /// Runs `task` on the runtime as one of the manager's tasks: shutdown waits for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.lifecycle
            .tasks
            .spawn_on(task, &crate::runtime::handle());
    }

    /// Starts the task that applies the ordered path's jobs, once. It works in slices of
    /// [`FANOUT_SLICE`] and yields to the runtime between them.
    pub(super) fn ensure_fanout_task(&self) {
        if self.lifecycle.fanout_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let fanout = Arc::clone(&self.fanout);
        let stats = Arc::clone(&self.stats);
        let token = self.lifecycle.token.clone();
        // Not tracked: it holds no resource, and shutdown drains the queue itself.
        crate::runtime::handle().spawn(async move {
            loop {
                tokio::select! {
                    () = fanout.wait() => {
                        while fanout.apply_for(&stats, FANOUT_SLICE) {
                            tokio::task::yield_now().await;
                        }
                    }
                    () = token.cancelled() => break,
                }
            }
        });
    }

    /// Begins shutdown: what was broadcast before reaches native subscribers, then every
    /// native connection is closed with 1001 and every task is told to end. Returns the
    /// JavaScript sockets' keys for the binding to close, or `None` if shutdown had begun
    /// already.
    pub fn begin_shutdown(&self) -> Option<Vec<(String, RecordKey)>> {
        if self
            .lifecycle
            .state
            .compare_exchange(RUNNING, CLOSING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return None;
        }
        self.fanout.drain(&self.stats);
        let mut js = Vec::new();
        let mut native = Vec::new();
        for connection in self.write().drain() {
            match connection.transport {
                Transport::Js => js.push((connection.id.to_string(), connection.key)),
                Transport::Native(outbox) => {
                    outbox.close(CloseReason::Server {
                        code: CLOSE_GOING_AWAY,
                    });
                    native.push(Arc::downgrade(&outbox));
                }
            }
        }
        abandon_after_drain(native);
        self.lifecycle.token.cancel();
        self.lifecycle.tasks.close();
        info!("manager shutting down");
        Some(js)
    }

    /// Resolves once every task has ended after shutdown began (at once if none run).
    pub async fn closed(&self) {
        self.lifecycle.tasks.wait().await;
        self.fanout.drain(&self.stats);
        self.lifecycle.state.store(CLOSED, Ordering::Release);
    }
}

/// How long the fan-out task applies jobs before it lets the runtime run other tasks.
const FANOUT_SLICE: std::time::Duration = std::time::Duration::from_millis(2);

/// A peer that does not read cannot take its close frame: after [`SHUTDOWN_DRAIN`] its
/// connection is dropped, so shutdown ends whatever the peers do. Weak references: a
/// connection that ended keeps no socket open for this timer.
fn abandon_after_drain(outboxes: Vec<Weak<Outbox>>) {
    if outboxes.is_empty() {
        return;
    }
    crate::runtime::handle().spawn(async move {
        tokio::time::sleep(SHUTDOWN_DRAIN).await;
        for outbox in outboxes.iter().filter_map(Weak::upgrade) {
            outbox.close(CloseReason::Gone);
        }
    });
}

impl Drop for Manager {
    /// A manager nobody holds any more cannot be reached: end its background tasks.
    fn drop(&mut self) {
        self.lifecycle.token.cancel();
    }
}
