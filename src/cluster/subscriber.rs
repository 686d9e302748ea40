//! The one connection to Redis: connect, `PSUBSCRIBE <prefix>:p:*`, hand each push to the
//! sink as it is read, and when the connection is lost, reconnect with backoff and
//! subscribe again — by itself, for as long as the manager runs.
//!
//! redis-rs's `ConnectionManager` reconnects and resubscribes too, but it forwards pushes
//! through a task of its own, after the replies read with them: a history read could then
//! return before the events published ahead of it were delivered. A multiplexed
//! connection calls the push sender inline, in the order it reads, which is the guarantee
//! a resume needs; this loop adds the reconnection.

use std::sync::Arc;

use rand::Rng;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, RedisError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::engine::{Inner, Live};
use super::{script, CONNECT_TIMEOUT, MAX_BACKOFF, MIN_BACKOFF, RESPONSE_TIMEOUT};

/// Runs until `token` is cancelled.
pub(super) async fn run(inner: Arc<Inner>, token: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    // Warned once per outage; later failed attempts are debug lines.
    let mut warned = false;
    loop {
        let lost = token.child_token();
        // Before the new connection's first push: everything delivered from here on came
        // over it.
        if let Some(sink) = inner.sink.upgrade() {
            sink.connected();
        }
        match connect(&inner, lost.clone()).await {
            Ok(connection) => {
                backoff = MIN_BACKOFF;
                inner.set_live(Some(Live {
                    connection,
                    lost: lost.clone(),
                }));
                info!("cluster: connected to Redis and subscribed");
                lost.cancelled().await;
                inner.set_live(None);
                if token.is_cancelled() {
                    return;
                }
                warn!(
                    "cluster: Redis connection lost; broadcasts reach this process only until it \
                     returns (reconnecting with backoff)"
                );
                warned = true;
            }
            Err(error) => {
                if std::mem::replace(&mut warned, true) {
                    debug!(%error, "cluster: Redis still unreachable");
                } else {
                    warn!(
                        %error,
                        "cluster: Redis unreachable; broadcasts reach this process only \
                         (retrying with backoff)"
                    );
                }
            }
        }
        let wait = rand::rng().random_range(backoff / 2..=backoff);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = token.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect(
    inner: &Arc<Inner>,
    lost: CancellationToken,
) -> Result<MultiplexedConnection, RedisError> {
    let names = inner.names.clone();
    let sink = inner.sink.clone();
    let on_lost = lost.clone();
    let on_push = move |push: PushInfo| -> Result<(), std::convert::Infallible> {
        match push.kind {
            PushKind::PMessage => match script::parse_push(&names, &push.data) {
                Some(incoming) => {
                    if let Some(sink) = sink.upgrade() {
                        sink.deliver(incoming);
                    }
                }
                None => debug!("cluster: ignored a malformed message from Redis"),
            },
            PushKind::Disconnection => on_lost.cancel(),
            _ => {}
        }
        Ok(())
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_push_sender(on_push);
    let mut connection = inner
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    connection.psubscribe(inner.names.pattern()).await?;
    let _: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(script::PUBLISH)
        .query_async(&mut connection)
        .await?;
    if lost.is_cancelled() {
        return Err(RedisError::from((
            redis::ErrorKind::Io,
            "connection lost while subscribing",
        )));
    }
    Ok(connection)
}
