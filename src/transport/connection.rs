//! One native connection, from the `101` to the closed socket.
//!
//! The connection is a single task running a reader and a writer side by side:
//! - the reader answers protocol messages (through the outbox, like every other write),
//!   records pongs, and turns protocol violations into the close code RFC 6455 asks for;
//! - the writer drains everything the outbox holds, encodes it into one buffer and writes
//!   it with one flush, so a burst of broadcasts costs few system calls.
//!
//! Whichever side ends first decides how the other one ends; the registry record goes when
//! the task does.

use std::io;
use std::sync::Arc;

use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::{CLOSE_GRACE, SHUTDOWN_DRAIN};
use crate::fanout::outbox::{CloseReason, Flushed, Outbox, Work};
use crate::manager::{new_connection_id, ConnectionSlot, Handled, Manager};
use crate::protocol;
use crate::rate::TokenBucket;
use crate::registry::RecordKey;
use crate::wire::decode::Violation;
use crate::wire::{Decoder, Frame, Incoming};

/// Bytes one read takes from the socket, into a buffer on the stack of the call: a
/// connection holds no read buffer while it waits.
const READ_CHUNK_BYTES: usize = 4096;

/// Close codes the server sends (RFC 6455 §7.4.1 and the application range).
pub mod close_code {
    pub const NORMAL: u16 = crate::manager::CLOSE_NORMAL;
    pub const GOING_AWAY: u16 = crate::manager::CLOSE_GOING_AWAY;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = crate::manager::POLICY_VIOLATION;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const SLOW_CONSUMER: u16 = crate::manager::CLOSE_SLOW_CONSUMER;
}

/// How the reader side ended.
enum ReadEnd {
    /// The socket ended, or the exchange after our close is over.
    Closed,
    /// The peer sent a close; the answer is queued.
    PeerClosed,
    /// The peer broke the protocol; close with this code.
    Violation(u16),
}

/// Which side ended a connection first.
enum Ended {
    Reader(ReadEnd),
    Writer(WriteEnd),
    Shutdown,
}

/// How the writer side ended.
enum WriteEnd {
    /// Its close frame (ours, or the answer to the peer's) is written.
    SentClose,
    /// Nothing more can or should be written.
    Abandoned,
}

/// What a connection brings from its handshake.
pub struct Admission {
    pub slot: ConnectionSlot,
    pub cwd: Option<Arc<str>>,
    /// What `authenticate` returned, as JSON text.
    pub meta: Option<String>,
}

/// Keeps a connection registered while it runs; forgets it when dropped — including while
/// a panic in the connection's task unwinds, so a fault never leaves a ghost record.
struct Registration {
    manager: Arc<Manager>,
    id: String,
    key: RecordKey,
    outbox: Arc<Outbox>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.outbox.close(CloseReason::Gone);
        self.manager.connection_closed(&self.id, self.key);
    }
}

/// One connection: who it is and where it reads and writes.
struct Peer<'a> {
    manager: &'a Arc<Manager>,
    id: &'a str,
    key: RecordKey,
    outbox: &'a Outbox,
    socket: &'a TcpStream,
}

/// Runs a connection until it is closed. `socket` has completed its handshake; `leftover`
/// holds what the client sent after its request head.
pub async fn serve(
    manager: Arc<Manager>,
    socket: TcpStream,
    leftover: Vec<u8>,
    admission: Admission,
) {
    let _alive = manager.active_guard();
    let Admission {
        slot: _slot,
        cwd,
        meta,
    } = admission;
    let socket = Arc::new(socket);
    let id = new_connection_id();
    let outbox = manager.new_outbox(Arc::clone(&socket));
    let key = manager.add_native_connection(&id, &outbox, meta);
    let registration = Registration {
        manager: Arc::clone(&manager),
        id: id.clone(),
        key,
        outbox: Arc::clone(&outbox),
    };
    manager.send_native(&id, key, protocol::welcome(&id, cwd.as_deref()));

    let peer = Peer {
        manager: &manager,
        id: &id,
        key,
        outbox: &outbox,
        socket: &socket,
    };
    let mut decoder = Decoder::new(manager.options().max_payload_bytes);
    let violated = {
        let reader = read_loop(&peer, &mut decoder, leftover);
        let writer = write_loop(&outbox, &socket);
        tokio::pin!(reader, writer);
        let ended = tokio::select! {
            end = &mut reader => Ended::Reader(end),
            end = &mut writer => Ended::Writer(end),
            () = manager.shutdown_signal() => Ended::Shutdown,
        };
        let violated = matches!(ended, Ended::Reader(ReadEnd::Violation(_)));
        // The endings wait on timers; boxed, their state is paid for only while closing.
        Box::pin(async {
            match ended {
                Ended::Reader(ReadEnd::Violation(code)) => {
                    outbox.close(CloseReason::Server { code });
                    let _ = tokio::time::timeout(CLOSE_GRACE, &mut writer).await;
                }
                Ended::Reader(ReadEnd::PeerClosed) => {
                    let _ = tokio::time::timeout(CLOSE_GRACE, &mut writer).await;
                }
                Ended::Reader(ReadEnd::Closed) => outbox.close(CloseReason::Gone),
                Ended::Writer(WriteEnd::SentClose) => {
                    let _ = tokio::time::timeout(CLOSE_GRACE, &mut reader).await;
                }
                Ended::Writer(WriteEnd::Abandoned) => {}
                Ended::Shutdown => {
                    outbox.close(CloseReason::Server {
                        code: close_code::GOING_AWAY,
                    });
                    let _ = tokio::time::timeout(SHUTDOWN_DRAIN, async {
                        if let WriteEnd::SentClose = (&mut writer).await {
                            let _ = (&mut reader).await;
                        }
                    })
                    .await;
                }
            }
        })
        .await;
        violated
    };
    if violated {
        // The peer broke the protocol and may still be sending. Closing the socket over
        // unread input makes the kernel reset it, and the peer would lose the close frame
        // that says why: end our side (FIN after the close frame), then read and discard
        // until the peer ends its side too, for a moment at most.
        let _ = socket2::SockRef::from(&*socket).shutdown(std::net::Shutdown::Write);
        Box::pin(discard_input(&socket, CLOSE_GRACE)).await;
    }
    drop(registration);
}

/// What a read brought.
enum Read {
    /// Bytes, decoded into whole messages (perhaps none yet).
    Data,
    /// Nothing: the readiness was stale.
    Nothing,
    /// The peer ended the stream, or the socket failed.
    End,
}

/// Reads once, without waiting, into a buffer on this call's stack, and decodes.
fn read_once(
    socket: &TcpStream,
    decoder: &mut Decoder,
    out: &mut Vec<Incoming>,
) -> Result<Read, Violation> {
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    match socket.try_read(&mut chunk) {
        Ok(0) => Ok(Read::End),
        Ok(read) => decoder.feed(&chunk[..read], out).map(|()| Read::Data),
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(Read::Nothing)
        }
        Err(error) => {
            debug!(%error, "socket ended");
            Ok(Read::End)
        }
    }
}

async fn read_loop(peer: &Peer<'_>, decoder: &mut Decoder, leftover: Vec<u8>) -> ReadEnd {
    let mut bucket = peer.manager.new_rate_limiter();
    let mut incoming = Vec::new();
    let mut fed = decoder.feed(&leftover, &mut incoming);
    drop(leftover);
    loop {
        if let Err(violation) = fed {
            return violation_end(peer.id, violation);
        }
        for message in std::mem::take(&mut incoming) {
            if let Some(end) = Box::pin(on_message(peer, &mut bucket, message, decoder)).await {
                return end;
            }
        }
        if peer.socket.readable().await.is_err() {
            return ReadEnd::Closed;
        }
        fed = match read_once(peer.socket, decoder, &mut incoming) {
            Ok(Read::End) => return ReadEnd::Closed,
            Ok(Read::Data | Read::Nothing) => Ok(()),
            Err(violation) => Err(violation),
        };
    }
}

fn violation_end(id: &str, violation: Violation) -> ReadEnd {
    warn!(
        conn_id = id,
        error = violation.what,
        code = violation.code,
        "protocol violation; closing"
    );
    ReadEnd::Violation(violation.code)
}

/// Acts on one message from the client; `Some` when the reading is over.
async fn on_message(
    peer: &Peer<'_>,
    bucket: &mut Option<TokenBucket>,
    message: Incoming,
    decoder: &mut Decoder,
) -> Option<ReadEnd> {
    let Peer {
        manager, id, key, ..
    } = *peer;
    let text = match message {
        Incoming::Text(text) => text,
        // The original decoded every message with `data.toString()`; binary frames are
        // read the same way.
        Incoming::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Incoming::Pong => {
            manager.mark_alive(id, key);
            return None;
        }
        Incoming::Ping(payload) => {
            // A ping flood counts against the rate like any message.
            if let Handled::Close(code) = manager.rate_check(id, bucket) {
                return Some(close_and_drain(peer, code, decoder).await);
            }
            peer.outbox.push_control(Frame::pong(payload));
            return None;
        }
        Incoming::Close(code) => {
            let answer = code.map_or_else(Frame::close_empty, |code| Frame::close(code, ""));
            peer.outbox.answer_close(answer);
            return Some(ReadEnd::PeerClosed);
        }
    };
    let mut handled = manager.handle_message(id, bucket, &text);
    if let Handled::Authorize(pending) = handled {
        handled = manager.authorize(pending).await;
    }
    match handled {
        // The core sends a native connection's replies on the ordered path itself.
        Handled::Nothing
        | Handled::Dropped
        | Handled::Authorize(_)
        | Handled::Invoke(_)
        | Handled::Broadcast { .. }
        | Handled::Mirror(_) => None,
        Handled::Reply(reply) | Handled::Changed { reply, .. } => {
            manager.send_native(id, key, reply);
            None
        }
        Handled::Close(code) => Some(close_and_drain(peer, code, decoder).await),
    }
}

/// Closes with `code` while still reading (and discarding) what the peer sends, until it
/// answers the close or [`CLOSE_GRACE`] passes: closing a socket with unread data makes the
/// kernel reset it, and the peer would lose the close frame that says why.
/// The close travels the ordered path, after the replies sent before it.
async fn close_and_drain(peer: &Peer<'_>, code: u16, decoder: &mut Decoder) -> ReadEnd {
    if !peer.manager.close_native(peer.id, peer.key, Some(code)) {
        peer.outbox.close(CloseReason::Server { code });
    }
    let mut incoming = Vec::new();
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        loop {
            if incoming.iter().any(|m| matches!(m, Incoming::Close(_))) {
                return;
            }
            incoming.clear();
            if peer.socket.readable().await.is_err() {
                return;
            }
            match read_once(peer.socket, decoder, &mut incoming) {
                Ok(Read::Data | Read::Nothing) => {}
                Ok(Read::End) | Err(_) => return,
            }
        }
    })
    .await;
    ReadEnd::Closed
}

async fn write_loop(outbox: &Outbox, socket: &TcpStream) -> WriteEnd {
    loop {
        match outbox.next_work().await {
            Work::Write => {
                tokio::select! {
                    ready = socket.writable() => {
                        if ready.is_err() || outbox.flush() == Flushed::Failed {
                            return WriteEnd::Abandoned;
                        }
                    }
                    // A close while waiting for room: look again.
                    () = outbox.changed() => {}
                }
            }
            Work::Closed(CloseReason::Gone) => return WriteEnd::Abandoned,
            Work::Closed(CloseReason::SlowConsumer) => {
                // The peer is not reading, so this may never leave; try briefly.
                outbox.queue_farewell(Frame::close(close_code::SLOW_CONSUMER, "slow consumer"));
                let _ = tokio::time::timeout(CLOSE_GRACE / 10, write_all(outbox, socket)).await;
                return WriteEnd::Abandoned;
            }
            Work::Closed(CloseReason::Server { .. } | CloseReason::Answered) => {
                return WriteEnd::SentClose
            }
        }
    }
}

/// Writes everything queued, waiting for room as needed.
async fn write_all(outbox: &Outbox, socket: &TcpStream) {
    loop {
        match outbox.flush() {
            Flushed::All | Flushed::Failed => return,
            Flushed::Partly => {
                if socket.writable().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads and drops input until the peer closes, errs, or `limit` passes.
async fn discard_input(socket: &TcpStream, limit: std::time::Duration) {
    let _ = tokio::time::timeout(limit, async {
        loop {
            if socket.readable().await.is_err() {
                return;
            }
            let mut scratch = [0u8; READ_CHUNK_BYTES];
            match socket.try_read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}
