//! From a known request head to a running connection: the handshake checks, then the
//! `101 Switching Protocols` or the refusal, then [`connection::serve`].

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, warn};

use super::{connection, websocket_config, Endpoint};
use crate::handshake::UpgradeRequest;
use crate::handshake::{check_upgrade, rejection_response, switching_protocols, Rejection};
use crate::hub::Hub;

/// Answers an upgrade request on `stream`. `leftover` holds bytes the client sent after
/// the request head (a first frame in the same packet); they are not lost.
pub async fn complete<S>(
    hub: Arc<Hub>,
    mut stream: S,
    request: UpgradeRequest,
    leftover: Vec<u8>,
    endpoint: Arc<Endpoint>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let verdict = if hub.is_shut_down() {
        Err(Rejection::shutting_down())
    } else {
        check_upgrade(&request, &endpoint.policy)
    };
    let accepted = match verdict {
        Ok(accepted) => accepted,
        Err(rejection) => {
            refuse(&hub, &mut stream, &rejection).await;
            return;
        }
    };
    if let Err(error) = stream.write_all(&switching_protocols(&accepted)).await {
        debug!(%error, "client left during the handshake");
        return;
    }
    let config = websocket_config(hub.options());
    let socket =
        WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(config)).await;
    connection::serve(hub, socket, endpoint.cwd.clone()).await;
}

/// Writes an HTTP refusal and closes.
pub async fn refuse<S>(hub: &Hub, stream: &mut S, rejection: &Rejection)
where
    S: AsyncWrite + Unpin,
{
    hub.stats().record_rejected_handshake();
    warn!(
        status = rejection.status,
        code = rejection.code,
        "handshake refused"
    );
    let _ = stream.write_all(&rejection_response(rejection)).await;
    let _ = stream.shutdown().await;
}
