//! `listen()`: a TCP listener of the manager's own. Each accepted socket gets
//! [`HANDSHAKE_TIMEOUT`] to send a complete request head of at most
//! [`MAX_HEADER_BYTES`](crate::handshake::request::MAX_HEADER_BYTES).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use super::{upgrade, Endpoint, HANDSHAKE_TIMEOUT};
use crate::error::Error;
use crate::handshake::request::{parse_request, ParseStatus, RequestHead};
use crate::handshake::{is_loopback_addr, Rejection};
use crate::manager::{ConnectionSlot, Manager};

/// After an accept error (out of descriptors, typically), wait this long before the next
/// accept instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Binds `host:port` and accepts connections until the manager shuts down. Returns the
/// bound address (the real port when `port` is 0).
pub async fn listen(
    manager: Arc<Manager>,
    host: &str,
    port: u16,
    endpoint: Arc<Endpoint>,
) -> Result<SocketAddr, Error> {
    let failed = |source| Error::Listen {
        address: format!("{host}:{port}"),
        source,
    };
    let listener = TcpListener::bind((host, port)).await.map_err(failed)?;
    let address = listener.local_addr().map_err(failed)?;
    if !manager.is_running() {
        return Err(Error::ShutDown {
            what: "listen() (shut down while pending)",
        });
    }
    let guard = manager.active_guard();
    info!(%address, path = endpoint.policy.path, "listening");
    let tracker = Arc::clone(&manager);
    tracker.spawn(async move {
        let _alive = guard;
        loop {
            let accepted = tokio::select! {
                () = manager.shutdown_signal() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((mut stream, peer)) => {
                    let manager = Arc::clone(&manager);
                    let endpoint = Arc::clone(&endpoint);
                    // A socket holds its slot from accept on, so connections that never
                    // finish their handshake count against maxConnections too.
                    match manager.reserve_connection() {
                        Some(slot) => Arc::clone(&manager).spawn(async move {
                            handshake(manager, stream, slot, peer, endpoint).await
                        }),
                        None => Arc::clone(&manager).spawn(async move {
                            upgrade::refuse(&manager, &mut stream, &Rejection::server_busy()).await
                        }),
                    };
                }
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
        info!(%address, "listener stopped");
    });
    Ok(address)
}

/// Reads the request head within the deadline, then completes the upgrade.
async fn handshake(
    manager: Arc<Manager>,
    mut stream: TcpStream,
    slot: ConnectionSlot,
    peer: SocketAddr,
    endpoint: Arc<Endpoint>,
) {
    let _ = stream.set_nodelay(true);
    let local_is_loopback = stream
        .local_addr()
        .is_ok_and(|local| is_loopback_addr(&local.ip()));
    let head = tokio::select! {
        () = manager.shutdown_signal() => return,
        head = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_head(&mut stream)) => head,
    };
    match head {
        Err(_elapsed) => debug!(%peer, "handshake timed out"),
        Ok(Err(Some(rejection))) => upgrade::refuse(&manager, &mut stream, &rejection).await,
        Ok(Err(None)) => debug!(%peer, "client left during the handshake"),
        Ok(Ok((head, leftover))) => {
            let request = head.into_upgrade_request(local_is_loopback);
            let remote = peer.ip().to_string();
            upgrade::complete(manager, stream, slot, request, leftover, remote, endpoint).await;
        }
    }
}

/// Reads until a whole request head is in; returns it with the bytes after it. `Err(None)`
/// when the client left first.
async fn read_head(stream: &mut TcpStream) -> Result<(RequestHead, Vec<u8>), Option<Rejection>> {
    // Read straight into the buffer: a chunk array would live in this future's state, and
    // every handshake in flight would carry it.
    let mut buffer = Vec::with_capacity(1024);
    loop {
        if buffer.capacity() - buffer.len() < 512 {
            buffer.reserve(1024);
        }
        let read = stream.read_buf(&mut buffer).await.map_err(|_| None)?;
        if read == 0 {
            return Err(None);
        }
        match parse_request(&buffer) {
            // parse_request refuses a head that outgrows MAX_HEADER_BYTES.
            Ok(ParseStatus::Partial) => continue,
            Ok(ParseStatus::Complete { head, consumed_len }) => {
                let leftover = buffer.split_off(consumed_len);
                return Ok((head, leftover));
            }
            Err(error) => return Err(Some(error.rejection())),
        }
    }
}
