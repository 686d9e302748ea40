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

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::Poll;

use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::{debug, warn};

use super::CLOSE_GRACE;
use crate::fanout::outbox::{CloseReason, Flushed, Outbox, Work};
use crate::manager::{new_connection_id, ActiveGuard, ConnectionSlot, Handled, Manager};
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

/// How a connection's loop ended, and so how it is wound down.
enum End {
    /// The peer ended the stream or the socket failed: nothing more to exchange.
    Gone,
    /// The peer broke the protocol: close with this code, then stop listening.
    Violation(u16),
    /// The peer sent a close; its answer is queued.
    PeerClosed,
    /// The server decided to close with this code (rate limit, a refused command).
    Closing(u16),
    /// Our close frame (shutdown, removeConnection) is written: wait for the peer's.
    SentClose,
    /// The kernel refused more than the cap.
    SlowConsumer,
}

/// What a connection brings from its handshake.
pub struct Admission {
    pub slot: ConnectionSlot,
    pub cwd: Option<Arc<str>>,
    /// What `authenticate` returned, as JSON text.
    pub meta: Option<String>,
}

/// One registered connection: who it is and where it reads and writes. Dropping it
/// forgets the connection — including while a panic in its task unwinds, so a fault never
/// leaves a ghost record.
struct Peer {
    /// Keeps the manager and the process alive while the connection is.
    alive: ActiveGuard,
    /// The connection limit's permit.
    _slot: ConnectionSlot,
    id: Box<str>,
    key: RecordKey,
    outbox: Arc<Outbox>,
    socket: Arc<TcpStream>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.outbox.close(CloseReason::Gone);
        self.alive.manager().connection_closed(&self.id, self.key);
    }
}

impl Peer {
    fn manager(&self) -> &Arc<Manager> {
        self.alive.manager()
    }

    /// Registers a connection on `socket` and sends its welcome.
    fn register(manager: &Arc<Manager>, socket: TcpStream, admission: Admission) -> Self {
        let Admission { slot, cwd, meta } = admission;
        let socket = Arc::new(socket);
        let id = new_connection_id();
        let outbox = manager.new_outbox(Arc::clone(&socket));
        let key = manager.add_native_connection(&id, &outbox, meta);
        manager.send_native(&id, key, protocol::welcome(&id, cwd.as_deref()));
        Self {
            alive: manager.active_guard(),
            _slot: slot,
            id: id.into_boxed_str(),
            key,
            outbox,
            socket,
        }
    }
}

/// Runs a connection until it is closed. `socket` has completed its handshake; `leftover`
/// holds what the client sent after its request head.
///
/// One task, one readiness wait at a time: the socket's (readable, and writable only while
/// refused bytes wait) or the outbox's news (a refusal, a close). Deliveries to a reader
/// that keeps up never wake it — they were written by whoever delivered them.
///
/// The connection is registered here, before the returned future first runs: what only
/// setting up needs (the handshake's leftovers, the manager handle) is not kept in the
/// future, which lives as long as the connection.
pub fn serve(
    manager: Arc<Manager>,
    socket: TcpStream,
    leftover: Vec<u8>,
    admission: Admission,
) -> impl Future<Output = ()> + Send {
    let peer = Peer::register(&manager, socket, admission);
    let mut decoder = Decoder::new(manager.options().max_payload_bytes);
    let mut incoming = Vec::new();
    let fed = decoder.feed(&leftover, &mut incoming);
    async move {
        let end = match fed {
            Ok(()) => run(&peer, &mut decoder, incoming).await,
            Err(violation) => violation_end(&peer.id, violation),
        };
        // The endings wait on timers; boxed, their state is paid for only while closing.
        Box::pin(wind_down(&peer, &mut decoder, end)).await;
    }
}

/// Serves the connection until it is to end; `incoming` holds what arrived with the
/// handshake.
async fn run(peer: &Peer, decoder: &mut Decoder, mut incoming: Vec<Incoming>) -> End {
    let mut bucket = peer.manager().new_rate_limiter();
    loop {
        for message in std::mem::take(&mut incoming) {
            // Boxed: the state of handling a message is paid for only while handling one.
            if let Some(end) = Box::pin(on_message(peer, &mut bucket, message)).await {
                return end;
            }
        }
        let writing = match peer.outbox.work() {
            None => false,
            Some(Work::Write) => true,
            Some(Work::Closed(CloseReason::Gone)) => return End::Gone,
            Some(Work::Closed(CloseReason::SlowConsumer)) => return End::SlowConsumer,
            Some(Work::Closed(CloseReason::Server { .. } | CloseReason::Answered)) => {
                return End::SentClose
            }
        };
        let Ok(woken) = wait(peer, writing).await else {
            return End::Gone;
        };
        if woken.writable && peer.outbox.flush() == Flushed::Failed {
            return End::Gone;
        }
        if woken.readable {
            match read_once(&peer.socket, decoder, &mut incoming) {
                Ok(Read::End) => return End::Gone,
                Ok(Read::Data | Read::Nothing) => {}
                Err(violation) => return violation_end(&peer.id, violation),
            }
        }
        // Thousands of connections flushing a backlog run back to back on a worker.
        crate::runtime::offer_core_when_due();
    }
}

/// What woke a connection's task; neither flag for news from its outbox.
#[derive(Default)]
struct Woken {
    readable: bool,
    writable: bool,
}

/// Waits for the socket to be readable (or writable, when `writing`) or for news from the
/// outbox. Polled in place: the wait adds no future, and so no memory, of its own.
async fn wait(peer: &Peer, writing: bool) -> io::Result<Woken> {
    std::future::poll_fn(|cx| {
        if peer.outbox.poll_news(cx).is_ready() {
            return Poll::Ready(Ok(Woken::default()));
        }
        let readable = match peer.socket.poll_read_ready(cx) {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => false,
        };
        let writable = writing
            && match peer.socket.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => true,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => false,
            };
        match readable || writable {
            true => Poll::Ready(Ok(Woken { readable, writable })),
            false => Poll::Pending,
        }
    })
    .await
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

fn violation_end(id: &str, violation: Violation) -> End {
    warn!(
        conn_id = id,
        error = violation.what,
        code = violation.code,
        "protocol violation; closing"
    );
    End::Violation(violation.code)
}

/// Acts on one message from the client; `Some` when the connection is to end.
async fn on_message(
    peer: &Peer,
    bucket: &mut Option<TokenBucket>,
    message: Incoming,
) -> Option<End> {
    let (manager, id, key) = (peer.manager(), &*peer.id, peer.key);
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
            // A ping flood counts against the rate like any message; a refused ping gets
            // no pong, so a flood cannot make the server write.
            match manager.rate_check(id, bucket) {
                Handled::Close(code) => return Some(End::Closing(code)),
                Handled::Nothing => {
                    peer.outbox.push_control(Frame::pong(payload));
                }
                _ => {}
            }
            return None;
        }
        Incoming::Close(code) => {
            let answer = code.map_or_else(Frame::close_empty, |code| Frame::close(code, ""));
            peer.outbox.answer_close(answer);
            return Some(End::PeerClosed);
        }
    };
    let mut handled = manager.handle_message(id, bucket, &text);
    if let Handled::Authorize(pending) = handled {
        // Boxed, like every rare path here: a future is as large as its largest state,
        // and an idle connection should pay only for waiting.
        handled = Box::pin(manager.authorize(pending)).await;
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
        Handled::Close(code) => Some(End::Closing(code)),
    }
}

/// Ends a connection the way `end` calls for.
async fn wind_down(peer: &Peer, decoder: &mut Decoder, end: End) {
    match end {
        End::Gone => peer.outbox.close(CloseReason::Gone),
        End::Violation(code) => {
            peer.outbox.close(CloseReason::Server { code });
            let _ = timeout(CLOSE_GRACE, exchange(peer, decoder, Until::Written)).await;
            // The peer broke the protocol and may still be sending. Closing the socket
            // over unread input makes the kernel reset it, and the peer would lose the
            // close frame that says why: end our side (FIN after the close frame), then
            // read and discard until the peer ends its side too, for a moment at most.
            let _ = socket2::SockRef::from(&*peer.socket).shutdown(std::net::Shutdown::Write);
            let _ = timeout(CLOSE_GRACE, discard_input(&peer.socket)).await;
        }
        End::PeerClosed => {
            let _ = timeout(CLOSE_GRACE, exchange(peer, decoder, Until::Written)).await;
        }
        End::Closing(code) => {
            // The close travels the ordered path, after the replies sent before it.
            if !peer.manager().close_native(&peer.id, peer.key, Some(code)) {
                peer.outbox.close(CloseReason::Server { code });
            }
            let _ = timeout(CLOSE_GRACE, exchange(peer, decoder, Until::PeerClosed)).await;
        }
        End::SentClose => {
            let _ = timeout(CLOSE_GRACE, exchange(peer, decoder, Until::PeerClosed)).await;
        }
        End::SlowConsumer => {
            // The peer is not reading, so this may never leave; try briefly.
            peer.outbox
                .queue_farewell(Frame::close(close_code::SLOW_CONSUMER, "slow consumer"));
            let _ = timeout(CLOSE_GRACE / 10, exchange(peer, decoder, Until::Written)).await;
        }
    }
}

/// When a closing exchange is over.
#[derive(PartialEq, Eq)]
enum Until {
    /// Everything queued (the close frame last) is written.
    Written,
    /// The peer answered our close (or ended the stream).
    PeerClosed,
}

/// Writes what waits and reads (discarding data) until `until`, the socket fails, or the
/// peer ends the stream.
async fn exchange(peer: &Peer, decoder: &mut Decoder, until: Until) {
    let mut incoming = Vec::new();
    loop {
        if incoming.iter().any(|m| matches!(m, Incoming::Close(_))) {
            return;
        }
        incoming.clear();
        let writing = match peer.outbox.work() {
            Some(Work::Write) => true,
            Some(Work::Closed(CloseReason::Gone)) => return,
            _ if until == Until::Written => return,
            _ => false,
        };
        let Ok(woken) = wait(peer, writing).await else {
            return;
        };
        if woken.writable && peer.outbox.flush() == Flushed::Failed {
            return;
        }
        if woken.readable {
            match read_once(&peer.socket, decoder, &mut incoming) {
                Ok(Read::Data | Read::Nothing) => {}
                Ok(Read::End) | Err(_) => return,
            }
        }
    }
}

/// Reads and drops input until the peer ends the stream or the socket fails.
async fn discard_input(socket: &TcpStream) {
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
}
