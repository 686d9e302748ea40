//! One client text, for both transports: rate limit → parse → authorize → reply.
//!
//! For a native connection every reply and subscription change travels the ordered path
//! (after the broadcasts made before it), so the transport only carries out closes and
//! waits for authorizations. For a JavaScript socket the result comes back to the binding,
//! which runs on the thread that owns the socket.

use std::sync::Arc;
use std::time::Instant;

use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::{debug, warn};

use super::broadcast::member_of;
use super::{Invocation, JsDelivery, Manager, POLICY_VIOLATION};
use crate::fanout::{Job, Member};
use crate::gate::{self, ConnectionInfo};
use crate::protocol::{self, codes, Command, RequestId, Since};
use crate::rate::{Admit, TokenBucket};
use crate::registry::RecordKey;
use crate::registry::SubscribeOutcome;

/// What the caller does after one client message.
#[derive(Debug)]
pub enum Handled {
    /// Send this reply to the (JavaScript) socket.
    Reply(String),
    /// Mirror this subscription change into the JavaScript fan-out index, then send the
    /// reply, then the replayed events (a resume).
    Changed {
        reply: String,
        change: Change,
        replay: Vec<Utf8Bytes>,
    },
    /// Run an application handler (a JavaScript socket's call).
    Invoke(Invocation),
    /// Nothing to do.
    Nothing,
    /// Over the rate limit; dropped without a reply.
    Dropped,
    /// Close the connection with this code.
    Close(u16),
    /// The application's `authorizeSubscribe` decides first: run
    /// [`Manager::authorize`] and handle its result like this one.
    Authorize(PendingSubscribe),
    /// Mirror this subscription change into the JavaScript fan-out index (cluster mode: a
    /// server-side change, in order with the events in the inbox).
    Mirror(Change),
    /// Cluster mode: an event for every JavaScript subscriber of `channel` (the fan-out's
    /// `sendAll`); `targets` is who it reached on both transports, for the statistics.
    Broadcast {
        channel: Arc<str>,
        text: Utf8Bytes,
        targets: super::BroadcastTargets,
    },
}

impl Handled {
    /// The reply text, if this is a reply.
    pub fn reply(self) -> Option<String> {
        match self {
            Handled::Reply(text) | Handled::Changed { reply: text, .. } => Some(text),
            _ => None,
        }
    }
}

/// A subscription change of a JavaScript socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Subscribed(String),
    Unsubscribed(String),
}

/// A client subscribe waiting for `authorizeSubscribe`.
#[derive(Debug)]
pub struct PendingSubscribe {
    req: Option<RequestId>,
    channel: String,
    since: Option<Since>,
    connection: ConnectionInfo,
}

impl Manager {
    /// A fresh rate limiter for a new connection, or `None` when limiting is off.
    pub fn new_rate_limiter(&self) -> Option<TokenBucket> {
        let rate = self.options.max_messages_per_second;
        (rate > 0).then(|| TokenBucket::new(rate, Instant::now()))
    }

    /// Handles one inbound message of connection `id`: the rate limit first, then the
    /// message itself.
    pub fn handle_message(
        self: &Arc<Self>,
        id: &str,
        bucket: &mut Option<TokenBucket>,
        text: &str,
    ) -> Handled {
        match self.rate_check(id, bucket) {
            Handled::Nothing => self.handle_client_text(id, text),
            limited => self.route(id, limited),
        }
    }

    /// Applies the rate limit to one inbound message (or ping frame) of connection `id`;
    /// a reply it returns is not sent yet.
    pub fn rate_check(&self, id: &str, bucket: &mut Option<TokenBucket>) -> Handled {
        let Some(bucket) = bucket else {
            return Handled::Nothing;
        };
        match bucket.admit(Instant::now()) {
            Admit::Yes => Handled::Nothing,
            Admit::Refuse { first: true } => {
                warn!(conn_id = id, "message rate limit exceeded");
                Handled::Reply(protocol::error(
                    None,
                    "Too many messages; slow down",
                    codes::RATE_LIMITED,
                ))
            }
            Admit::Refuse { first: false } => Handled::Dropped,
            Admit::Close => {
                warn!(conn_id = id, "message flood; closing");
                Handled::Close(POLICY_VIOLATION)
            }
        }
    }

    /// Handles one text message from connection `id` (the rate limit already passed).
    pub fn handle_client_text(self: &Arc<Self>, id: &str, text: &str) -> Handled {
        let handled = match protocol::parse(text) {
            Command::Subscribe {
                id: req,
                channel,
                since,
            } => self.begin_subscribe(id, req, channel, since),
            Command::InvalidSince { id: req } => {
                warn!(conn_id = id, "invalid since");
                Handled::Reply(protocol::error(
                    req.as_ref(),
                    "since must be an object with a non-empty string epoch and an integer seq >= 0",
                    codes::INVALID_SINCE,
                ))
            }
            Command::Unsubscribe { id: req, channel } => self.client_unsubscribe(id, req, channel),
            Command::Call(call) => self.begin_call(id, call),
            Command::Ping { id: req } => Handled::Reply(protocol::pong(req.as_ref())),
            Command::MissingChannel => Handled::Nothing,
            Command::InvalidChannel { id: req, problem } => {
                warn!(conn_id = id, ?problem, "invalid channel name");
                Handled::Reply(protocol::error(
                    req.as_ref(),
                    problem.message(),
                    codes::INVALID_CHANNEL,
                ))
            }
            Command::Unknown { kind } => {
                warn!(conn_id = id, kind = kind.as_deref(), "unknown message type");
                Handled::Nothing
            }
            Command::Malformed => {
                warn!(conn_id = id, "failed to parse message");
                Handled::Reply(protocol::parse_error())
            }
        };
        self.route(id, handled)
    }

    /// Sends a native connection's reply on the ordered path; a JavaScript socket's goes
    /// back to the binding.
    fn route(&self, id: &str, handled: Handled) -> Handled {
        match handled {
            Handled::Reply(reply) => match self.current_native_member(id) {
                Some(member) => {
                    self.submit(Job::Send {
                        member,
                        text: Utf8Bytes::from(reply),
                    });
                    Handled::Nothing
                }
                None => Handled::Reply(reply),
            },
            Handled::Invoke(invocation) if self.current_native_member(id).is_some() => {
                self.forward(invocation);
                Handled::Nothing
            }
            other => other,
        }
    }

    fn current_native_member(&self, id: &str) -> Option<Member> {
        self.read().get(id).and_then(member_of)
    }

    fn client_unsubscribe(&self, id: &str, req: Option<RequestId>, channel: String) -> Handled {
        let member = {
            let mut registry = self.write();
            if !registry.unsubscribe_if_known(id, &channel) {
                return Handled::Nothing;
            }
            registry.get(id).and_then(member_of)
        };
        debug!(conn_id = id, channel, "unsubscribed");
        let reply = protocol::unsubscribed(req.as_ref(), &channel);
        match member {
            Some(member) => {
                self.submit(Job::Unsubscribe {
                    channel: Arc::from(channel),
                    member,
                    after: Some(Utf8Bytes::from(reply)),
                });
                Handled::Nothing
            }
            None => self.js_in_order(
                id,
                Handled::Changed {
                    reply,
                    change: Change::Unsubscribed(channel),
                    replay: Vec::new(),
                },
            ),
        }
    }

    /// A client subscribe: answered at once, or handed to the application's
    /// `authorizeSubscribe` first when it set one and the subscription would be new.
    fn begin_subscribe(
        &self,
        id: &str,
        req: Option<RequestId>,
        channel: String,
        since: Option<Since>,
    ) -> Handled {
        let limit = self.options.max_subscriptions_per_connection;
        let state = self.read().get(id).map(|c| {
            (
                c.channels.contains(channel.as_str()),
                c.channels.client_len() >= limit,
                c.meta.clone(),
            )
        });
        match state {
            None => Handled::Nothing,
            // Already subscribed: answered with where the channel stands; a resume (a
            // client that saw a gap) gets the missed events again.
            Some((true, _, _)) => self.finish_subscribe(id, req, &channel, since, true),
            Some((false, true, _)) => {
                warn!(conn_id = id, channel, limit, "subscription limit reached");
                Handled::Reply(limit_reached(req.as_ref(), limit))
            }
            Some((false, false, meta)) => {
                let checked = self
                    .gatekeeper
                    .get()
                    .is_some_and(|gate| gate.authorizes_subscriptions());
                if !checked {
                    return self.finish_subscribe(id, req, &channel, since, true);
                }
                Handled::Authorize(PendingSubscribe {
                    req,
                    channel,
                    since,
                    connection: ConnectionInfo {
                        id: Arc::from(id),
                        meta,
                    },
                })
            }
        }
    }

    /// Asks the application whether a pending subscribe may go ahead (refused when it does
    /// not answer within the decision timeout), then completes it. The one continuation
    /// both transports use.
    pub async fn authorize(&self, pending: PendingSubscribe) -> Handled {
        let PendingSubscribe {
            req,
            channel,
            since,
            connection,
        } = pending;
        let id = Arc::clone(&connection.id);
        let decision = self
            .gatekeeper()
            .and_then(|gate| gate.authorize_subscribe(connection, channel.clone()));
        let allowed = match decision {
            Some(decision) => gate::decide(decision, self.options.decision_timeout, false).await,
            None => true,
        };
        self.finish_subscribe(&id, req, &channel, since, allowed)
    }

    /// [`Manager::authorize`] for a JavaScript socket: decided on the runtime, carried out
    /// on the JavaScript thread through its inbox.
    pub fn authorize_for_js(
        self: &Arc<Self>,
        id: Arc<str>,
        key: RecordKey,
        pending: PendingSubscribe,
    ) {
        let manager = Arc::clone(self);
        let token = self.shutdown_token();
        self.spawn(async move {
            // Shutdown does not wait for an application that is slow to decide.
            let handled = tokio::select! {
                handled = manager.authorize(pending) => handled,
                () = token.cancelled() => return,
            };
            manager.deliver_to_js(JsDelivery { id, key, handled });
        });
    }

    /// The reply to a subscribe, with the channel's position when it keeps history; a
    /// resume (`since`) is answered with `recovered` even where no history is kept.
    fn subscribed_reply(
        &self,
        req: Option<&RequestId>,
        channel: &str,
        position: Option<&crate::history::Position>,
        recovered: Option<bool>,
    ) -> String {
        match (position, recovered) {
            (None, None) => protocol::subscribed(req, channel),
            (position, recovered) => protocol::subscribed_at(
                req,
                channel,
                position.map(|p| &*p.epoch),
                position.map_or(0, |p| p.seq),
                recovered,
            ),
        }
    }

    /// Completes a subscribe once its authorization is known: registers it and, on a
    /// channel with history, answers with the channel's position and replays what a
    /// resuming client missed — all under the history lock, so no broadcast on the channel
    /// falls between the history read and the registration.
    fn finish_subscribe(
        &self,
        id: &str,
        req: Option<RequestId>,
        channel: &str,
        since: Option<Since>,
        allowed: bool,
    ) -> Handled {
        if !allowed {
            warn!(
                conn_id = id,
                channel, "subscription refused by authorizeSubscribe"
            );
            return self.route(
                id,
                Handled::Reply(protocol::error(
                    req.as_ref(),
                    "Not allowed to subscribe to this channel",
                    codes::FORBIDDEN,
                )),
            );
        }
        if self.subscribe_through_cluster(id, &req, channel, &since) {
            return Handled::Nothing;
        }
        self.complete_subscribe(id, req, channel, since, None)
    }

    /// Registers a subscribe and answers it — with the channel's position and what a
    /// resuming client missed when it keeps history (in cluster mode reconciled with
    /// `fetched`, a read of Redis) — all under the history lock, so no broadcast on the
    /// channel falls between the history read and the registration.
    pub(super) fn complete_subscribe(
        &self,
        id: &str,
        req: Option<RequestId>,
        channel: &str,
        since: Option<Since>,
        fetched: Option<&crate::cluster::Fetched>,
    ) -> Handled {
        let limit = self.options.max_subscriptions_per_connection;
        let mut history = self.history();
        let (outcome, member) = {
            let mut registry = self.write();
            let outcome = registry.subscribe(id, channel, Some(limit));
            let member = registry.get(id).and_then(member_of);
            (outcome, member)
        };
        let resume = history.enabled().then(|| match fetched {
            Some(fetched) => history.reconcile(channel, fetched, since.as_ref(), Instant::now()),
            None => history.resume(channel, since.as_ref(), Instant::now()),
        });
        let position = resume.as_ref().map(|r| &r.position);
        let recovered = since
            .as_ref()
            .map(|_| resume.as_ref().is_some_and(|r| r.replay.is_some()));
        let reply = match outcome {
            SubscribeOutcome::Added | SubscribeOutcome::AlreadySubscribed => {
                self.subscribed_reply(req.as_ref(), channel, position, recovered)
            }
            SubscribeOutcome::LimitReached => {
                drop(history);
                return self.route(id, Handled::Reply(limit_reached(req.as_ref(), limit)));
            }
            SubscribeOutcome::UnknownConnection => return Handled::Nothing,
        };
        let replay = resume.and_then(|r| r.replay).unwrap_or_default();
        debug!(conn_id = id, channel, replayed = replay.len(), "subscribed");
        // A repeated subscribe goes the same way: adding to either index is idempotent.
        match member {
            Some(member) => {
                self.submit(Job::Subscribe {
                    channel: Arc::from(channel),
                    member,
                    reply: Some(Utf8Bytes::from(reply)),
                    replay,
                });
                Handled::Nothing
            }
            None => self.js_in_order(
                id,
                Handled::Changed {
                    reply,
                    change: Change::Subscribed(channel.to_owned()),
                    replay,
                },
            ),
        }
    }
}

fn limit_reached(req: Option<&RequestId>, limit: usize) -> String {
    protocol::error(
        req,
        &format!("Subscription limit of {limit} channels reached"),
        codes::SUBSCRIPTION_LIMIT,
    )
}
