//! Decisions the host application makes about native connections: whether an upgrade may
//! proceed (`authenticate`) and whether a client may subscribe to a channel
//! (`authorizeSubscribe`). The core asks through the [`Gatekeeper`] trait and bounds the
//! wait; the binding implements it with the application's JavaScript callbacks.
//!
//! Every failure refuses: a callback that throws, rejects, answers something other than
//! `true` or an object, or does not answer within the deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The upgrade request as an `authenticate` callback sees it.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub url: String,
    /// Lower-cased names, repeated headers combined as Node combines them.
    pub headers: Vec<(String, String)>,
    pub remote_address: String,
}

/// A connection as an `authorizeSubscribe` callback sees it.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub id: Arc<str>,
    /// What `authenticate` returned when it returned an object, as JSON text.
    pub meta: Option<Arc<str>>,
}

/// The answer to an `authenticate` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Admit; `meta` is the JSON text of the object the callback returned, if any.
    Allow {
        meta: Option<String>,
    },
    Deny,
}

pub type Decision<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The application's checks. A method returns `None` when the application set no such
/// check (then everything is admitted).
pub trait Gatekeeper: Send + Sync {
    fn authenticate(&self, request: AuthRequest) -> Option<Decision<AuthVerdict>>;
    fn authorize_subscribe(
        &self,
        connection: ConnectionInfo,
        channel: String,
    ) -> Option<Decision<bool>>;
    /// Whether subscriptions are checked at all (so the core knows to ask).
    fn authorizes_subscriptions(&self) -> bool;
}

/// How long a callback may take before the request is refused. Long enough for a token
/// lookup in a database, short enough that a hung callback does not pile up handshakes.
pub const DEFAULT_DECISION_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits for a decision, refusing when it does not come in time.
pub async fn decide<T>(decision: Decision<T>, timeout: Duration, refused: T) -> T {
    tokio::time::timeout(timeout, decision)
        .await
        .unwrap_or(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_late_decision_is_a_refusal() {
        let slow: Decision<bool> = Box::pin(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            true
        });
        assert!(!decide(slow, Duration::from_secs(5), false).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timely_decision_stands() {
        let quick: Decision<bool> = Box::pin(async { true });
        assert!(decide(quick, Duration::from_secs(5), false).await);
    }
}
