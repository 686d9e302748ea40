//! `attach()`: Node's HTTP server has parsed an upgrade request; Rust takes the socket.
//!
//! The binding passes the socket's file descriptor, the request, and the bytes Node read
//! past the request head. The descriptor is duplicated here (close-on-exec, so it never
//! leaks into child processes) before Node destroys its own handle; libuv closes its copy
//! without a `shutdown()`, so the connection lives on in the duplicate.

use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::Arc;

use tokio::net::TcpStream;

use super::{upgrade, Endpoint};
use crate::handshake::{Rejection, UpgradeRequest};
use crate::manager::Manager;

/// Takes over a connected TCP socket whose upgrade request Node already read.
///
/// Returns once the descriptor is duplicated; the handshake runs on the runtime. The caller
/// may close its own descriptor as soon as this returns.
pub fn adopt(
    manager: Arc<Manager>,
    fd: RawFd,
    request: UpgradeRequest,
    leftover: Vec<u8>,
    remote_address: String,
    endpoint: Arc<Endpoint>,
) -> io::Result<()> {
    // SAFETY: `F_DUPFD_CLOEXEC` takes an integer argument and no pointer, so the call has no
    // memory precondition, and it does not touch `fd` itself. The caller (the attach glue)
    // passes the upgrade socket's descriptor and keeps it open until this returns, so the
    // number cannot have been closed and reused for another file; a bad descriptor gives -1.
    let duplicate = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if duplicate < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `duplicate` is open (checked above) and was created just now by this function,
    // so nothing else owns or will close it: the `TcpStream` becomes its sole owner and
    // closes it once, on drop.
    let socket = unsafe { std::net::TcpStream::from_raw_fd(duplicate) };
    socket.set_nonblocking(true)?;
    let _ = socket.set_nodelay(true);
    // Registering with the reactor must happen inside the runtime: this function runs on
    // the JavaScript thread.
    let guard = manager.active_guard();
    let slot = manager.reserve_connection();
    Arc::clone(&manager).spawn(async move {
        let _alive = guard;
        let mut stream = match TcpStream::from_std(socket) {
            Ok(stream) => stream,
            Err(error) => return tracing::warn!(%error, "cannot adopt the upgraded socket"),
        };
        match slot {
            Some(slot) => {
                upgrade::complete(
                    manager,
                    stream,
                    slot,
                    request,
                    leftover,
                    remote_address,
                    endpoint,
                )
                .await
            }
            None => upgrade::refuse(&manager, &mut stream, &Rejection::server_busy()).await,
        }
    });
    Ok(())
}
