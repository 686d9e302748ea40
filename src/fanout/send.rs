//! One non-blocking send of gathered slices into a connection's socket.
//!
//! On Linux this is `send` / `sendmsg` with `MSG_DONTWAIT | MSG_NOSIGNAL` rather than
//! `writev`: a broadcast to 10 000 subscribers is 10 000 of these calls, and `writev` takes
//! the file layer's path first (`vfs_writev`, the file-position lock) before it reaches the
//! socket — in a profile of the 2 broadcasts/s scenario that path was ~8 % of the server's
//! CPU, which the socket calls skip (uWebSockets.js uses `send` the same way).
//!
//! The call goes through tokio's `try_io`, so a refusal (`WouldBlock`) clears the socket's
//! write readiness and the connection's task then waits for room as it would after a
//! `try_write_vectored`.

use std::io::{self, IoSlice};

#[cfg(target_os = "linux")]
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Sends as much of `slices` as the kernel takes now; `WouldBlock` when it takes nothing.
#[cfg(target_os = "linux")]
pub(super) fn send_slices(socket: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    socket.try_io(Interest::WRITABLE, || send_now(socket, slices))
}

/// Elsewhere: `writev` (or its equivalent) through tokio.
#[cfg(not(target_os = "linux"))]
pub(super) fn send_slices(socket: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    socket.try_write_vectored(slices)
}

#[cfg(target_os = "linux")]
fn send_now(socket: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;

    // No SIGPIPE for a peer that is gone (the error is reported instead), and never block
    // even if the descriptor were switched to blocking mode.
    const FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    let fd = socket.as_raw_fd();
    let sent = match slices {
        [] => return Ok(0),
        [only] => {
            // SAFETY: `only` borrows `only.len()` initialised bytes that live for the call,
            // which only reads them; `fd` is the socket `socket` owns, open while it is
            // borrowed here.
            unsafe { libc::send(fd, only.as_ptr().cast(), only.len(), FLAGS) }
        }
        _ => {
            // SAFETY: an all-zero `msghdr` is valid (no name, no control data, no flags).
            let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
            // `IoSlice` is guaranteed ABI-compatible with `iovec` on Unix, so the slice is
            // an array of `iovec`s; the kernel only reads it and the bytes it points to.
            message.msg_iov = slices.as_ptr().cast_mut().cast();
            message.msg_iovlen = slices.len() as _;
            // SAFETY: `message` points at `slices`, whose buffers are borrowed and
            // initialised for the duration of the call; `fd` is the socket `socket` owns,
            // open while it is borrowed here.
            unsafe { libc::sendmsg(fd, &message, FLAGS) }
        }
    };
    // A negative count is an error, reported in errno.
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}
