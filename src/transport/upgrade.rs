//! From a known request head to a running connection: the handshake checks, then the
//! `101 Switching Protocols` or the refusal, then [`connection::serve`].

use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::{connection, Endpoint};
use crate::gate::{self, AuthRequest, AuthVerdict};
use crate::handshake::request::headers_to_lowercase_map;
use crate::handshake::{check_upgrade, rejection_response, switching_protocols};
use crate::handshake::{Accepted, Rejection, UpgradeRequest};
use crate::manager::{ConnectionSlot, Manager};

/// Answers an upgrade request on `stream`. `leftover` holds bytes the client sent after
/// the request head (a first frame in the same packet); they are not lost.
pub async fn complete(
    manager: Arc<Manager>,
    mut stream: TcpStream,
    slot: ConnectionSlot,
    request: UpgradeRequest,
    leftover: Vec<u8>,
    remote_address: String,
    endpoint: Arc<Endpoint>,
) {
    let admitted = admit(&manager, &request, remote_address, &endpoint).await;
    let (accepted, meta) = match admitted {
        Ok(admitted) => admitted,
        Err(rejection) => {
            refuse(&manager, &mut stream, &rejection).await;
            return;
        }
    };
    if let Err(error) = stream.write_all(&switching_protocols(&accepted)).await {
        debug!(%error, "client left during the handshake");
        return;
    }
    let admission = connection::Admission {
        slot,
        cwd: endpoint.cwd.clone(),
        meta,
    };
    // A task of its own: the handshake's buffers and state end with this one, so an idle
    // connection costs only what serving it needs.
    Arc::clone(&manager).spawn(connection::serve(manager, stream, leftover, admission));
}

/// Every check before the `101`, cheapest first: shutdown, the handshake itself (method,
/// path, headers, Host, Origin, token), then the application's `authenticate`. (The
/// connection limit was applied when the socket arrived.)
async fn admit(
    manager: &Arc<Manager>,
    request: &UpgradeRequest,
    remote_address: String,
    endpoint: &Endpoint,
) -> Result<(Accepted, Option<String>), Rejection> {
    if !manager.is_running() {
        return Err(Rejection::shutting_down());
    }
    let accepted = check_upgrade(request, &endpoint.policy)?;
    let Some(decision) = manager.gatekeeper().and_then(|gate| {
        gate.authenticate(AuthRequest {
            url: request.url.clone(),
            headers: headers_to_lowercase_map(&request.headers),
            remote_address,
        })
    }) else {
        return Ok((accepted, None));
    };
    let timeout = manager.options().decision_timeout;
    let verdict = tokio::select! {
        verdict = gate::decide(decision, timeout, AuthVerdict::Deny) => verdict,
        () = manager.shutdown_signal() => return Err(Rejection::shutting_down()),
    };
    match verdict {
        AuthVerdict::Allow { meta } => Ok((accepted, meta)),
        AuthVerdict::Deny => Err(Rejection::unauthorized()),
    }
}

/// Writes an HTTP refusal and closes.
pub async fn refuse<S>(manager: &Manager, stream: &mut S, rejection: &Rejection)
where
    S: AsyncWrite + Unpin,
{
    manager.stats().record_rejected_handshake(rejection.code);
    warn!(
        status = rejection.status,
        code = rejection.code,
        "handshake refused"
    );
    let _ = stream.write_all(&rejection_response(rejection)).await;
    let _ = stream.shutdown().await;
}
