//! Request handlers: which names have one, the calls in flight per connection, timeouts,
//! and the exact answer to each call.
//!
//! The handlers themselves are JavaScript functions the binding keeps; the core decides
//! everything around them. A call that must be answered gets a ticket; whichever comes
//! first — the handler's result ([`Manager::complete`]) or the timeout — answers it, and
//! the other finds the ticket gone.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Handled, JsDelivery, Manager};
use crate::protocol::{self, codes, Call, CallKind, RequestId};
use crate::registry::RecordKey;
use crate::stats::RequestResult;

/// Identifies one call that waits for an answer.
pub type Ticket = u64;

/// A handler call for the application, to run on the JavaScript thread.
#[derive(Debug)]
pub struct Invocation {
    /// `Some` when the client waits for an answer: hand the result to
    /// [`Manager::complete`] with it.
    pub ticket: Option<Ticket>,
    pub connection_id: Arc<str>,
    pub key: RecordKey,
    pub name: String,
    /// The raw JSON text of the call's `data`, for `JSON.parse`.
    pub data: Option<String>,
    /// What `authenticate` returned for the connection, as JSON text.
    pub meta: Option<Arc<str>>,
}

/// How a handler call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The result's `JSON.stringify` text (`None` for `undefined`).
    Returned(Option<String>),
    /// The handler threw or rejected, or its result cannot be serialised.
    Failed(String),
    /// The handler was removed before the call ran.
    NoHandler,
}

struct Waiting {
    connection_id: Arc<str>,
    key: RecordKey,
    req: Option<RequestId>,
    timer: CancellationToken,
}

#[derive(Default)]
pub(super) struct Requests {
    handlers: RwLock<HashSet<String>>,
    next_ticket: AtomicU64,
    waiting: Mutex<HashMap<Ticket, Waiting>>,
    in_flight: Mutex<HashMap<RecordKey, usize>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Requests {
    fn has_handler(&self, name: &str) -> bool {
        self.handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// Counts one more call in flight for `key`, unless it already has `limit`.
    fn admit(&self, key: RecordKey, limit: usize) -> bool {
        let mut in_flight = lock(&self.in_flight);
        let count = in_flight.entry(key).or_default();
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    fn release(&self, key: RecordKey) {
        let mut in_flight = lock(&self.in_flight);
        if let Some(count) = in_flight.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&key);
            }
        }
    }

    fn finish(&self, ticket: Ticket) -> Option<Waiting> {
        let waiting = lock(&self.waiting).remove(&ticket)?;
        waiting.timer.cancel();
        self.release(waiting.key);
        Some(waiting)
    }
}

impl Manager {
    /// Registers (`true`) or removes (`false`) the handler `name`.
    pub fn set_handler(&self, name: &str, registered: bool) {
        let mut handlers = self
            .requests
            .handlers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if registered {
            handlers.insert(name.to_owned());
        } else {
            handlers.remove(name);
        }
    }

    /// Calls in flight right now.
    pub fn pending_requests(&self) -> usize {
        lock(&self.requests.waiting).len()
    }

    /// A client's handler call: answered at once (no handler, too many in flight), or
    /// handed to the application as an [`Invocation`].
    pub(super) fn begin_call(self: &Arc<Self>, connection_id: &str, call: Call) -> Handled {
        let answered = call.answered();
        let Call {
            kind,
            id: req,
            name,
            data,
        } = call;
        let Some(name) = name.filter(|name| self.requests.has_handler(name)) else {
            self.stats.record_request(RequestResult::NoHandler);
            return match kind {
                // The original module's answer, byte for byte.
                CallKind::Request => Handled::Reply(protocol::no_handler(req.as_ref())),
                _ if answered => Handled::Reply(protocol::call_failed(
                    req.as_ref(),
                    "No handler for this request",
                    codes::NO_HANDLER,
                )),
                _ => {
                    warn!(conn_id = connection_id, "no handler for a send; ignored");
                    Handled::Nothing
                }
            };
        };
        let Some((key, meta)) = self
            .read()
            .get(connection_id)
            .map(|c| (c.key, c.meta.clone()))
        else {
            return Handled::Nothing;
        };
        let ticket = if answered {
            let limit = self.options.max_pending_requests_per_connection;
            if !self.requests.admit(key, limit) {
                self.stats.record_request(RequestResult::Busy);
                warn!(
                    conn_id = connection_id,
                    limit, "too many requests in flight"
                );
                return Handled::Reply(protocol::call_failed(
                    req.as_ref(),
                    "Too many requests in flight",
                    codes::BUSY,
                ));
            }
            Some(self.wait_for_answer(Arc::from(connection_id), key, req))
        } else {
            None
        };
        Handled::Invoke(Invocation {
            ticket,
            connection_id: Arc::from(connection_id),
            key,
            name,
            data,
            meta,
        })
    }

    /// Files a call that waits for its answer and starts its timeout.
    fn wait_for_answer(
        self: &Arc<Self>,
        connection_id: Arc<str>,
        key: RecordKey,
        req: Option<RequestId>,
    ) -> Ticket {
        let ticket = self.requests.next_ticket.fetch_add(1, Ordering::Relaxed);
        let timer = self.shutdown_token().child_token();
        let waiting = Waiting {
            connection_id,
            key,
            req,
            timer: timer.clone(),
        };
        lock(&self.requests.waiting).insert(ticket, waiting);
        if let Some(timeout) = self.options.request_timeout {
            let manager = Arc::downgrade(self);
            self.spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(timeout) => {}
                    () = timer.cancelled() => return,
                }
                if let Some(manager) = manager.upgrade() {
                    manager.time_out(ticket);
                }
            });
        }
        ticket
    }

    fn time_out(&self, ticket: Ticket) {
        let Some(waiting) = self.requests.finish(ticket) else {
            return;
        };
        self.stats.record_request(RequestResult::Timeout);
        warn!(conn_id = &*waiting.connection_id, "request timed out");
        let reply =
            protocol::call_failed(waiting.req.as_ref(), "Request timed out", codes::TIMEOUT);
        if let Some(reply) = self.answer(&waiting, reply) {
            self.deliver_to_js(JsDelivery {
                id: waiting.connection_id,
                key: waiting.key,
                handled: Handled::Reply(reply),
            });
        }
    }

    /// Answers the call `ticket` with the handler's outcome. A native connection's answer
    /// is sent here; a JavaScript socket's comes back for the binding to send. `None` when
    /// the call was answered already (it timed out) or needs nothing sent.
    pub fn complete(&self, ticket: Ticket, outcome: CallOutcome) -> Option<String> {
        let waiting = self.requests.finish(ticket)?;
        let req = waiting.req.as_ref();
        let (reply, result) = match outcome {
            CallOutcome::Returned(data) => (
                protocol::call_result(req, data.as_deref()),
                RequestResult::Ok,
            ),
            CallOutcome::Failed(message) => (
                protocol::call_failed(req, &message, codes::HANDLER_ERROR),
                RequestResult::Error,
            ),
            CallOutcome::NoHandler => (
                protocol::call_failed(req, "No handler for this request", codes::NO_HANDLER),
                RequestResult::NoHandler,
            ),
        };
        self.stats.record_request(result);
        self.answer(&waiting, reply)
    }

    /// Sends `reply` to a native connection on the ordered path; returns it for a
    /// JavaScript socket.
    fn answer(&self, waiting: &Waiting, reply: String) -> Option<String> {
        if let Some(member) = self.native_member(&waiting.connection_id, waiting.key) {
            self.submit(crate::fanout::Job::Send {
                member,
                text: reply.into(),
            });
            return None;
        }
        Some(reply)
    }

    /// Hands a native connection's invocation to the thread that runs the handlers.
    pub(super) fn forward(&self, invocation: Invocation) {
        self.deliver_to_js(JsDelivery {
            id: Arc::clone(&invocation.connection_id),
            key: invocation.key,
            handled: Handled::Invoke(invocation),
        });
    }
}
