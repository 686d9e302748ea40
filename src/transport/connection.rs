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

use std::borrow::Cow;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, warn};

use super::{CLOSE_GRACE, SHUTDOWN_DRAIN};
use crate::fanout::outbox::{CloseReason, Outbox};
use crate::manager::{new_connection_id, ConnectionSlot, Handled, Manager};
use crate::protocol;
use crate::registry::RecordKey;

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
    /// The peer closed, or the socket ended.
    Closed,
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
    /// It sent a close frame; the peer's answer is awaited.
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

/// Runs a connection until it is closed. `stream` has completed its handshake.
pub async fn serve<S>(manager: Arc<Manager>, stream: WebSocketStream<S>, admission: Admission)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _alive = manager.active_guard();
    let Admission {
        slot: _slot,
        cwd,
        meta,
    } = admission;
    let id = new_connection_id();
    let outbox = manager.new_outbox();
    let key = manager.add_native_connection(&id, &outbox, meta);
    let registration = Registration {
        manager: Arc::clone(&manager),
        id: id.clone(),
        key,
        outbox: Arc::clone(&outbox),
    };
    manager.send_native(&id, key, protocol::welcome(&id, cwd.as_deref()));

    let (mut sink, mut source) = stream.split();
    let violated = {
        let reader = read_loop(&manager, &id, key, &outbox, &mut source);
        let writer = write_loop(&outbox, &mut sink);
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
        if let Ok(mut socket) = source.reunite(sink) {
            let socket = socket.get_mut();
            let _ = socket.shutdown().await;
            Box::pin(discard_input(socket, CLOSE_GRACE)).await;
        }
    }
    drop(registration);
}

async fn read_loop<S>(
    manager: &Arc<Manager>,
    id: &str,
    key: RecordKey,
    outbox: &Outbox,
    source: &mut futures_util::stream::SplitStream<WebSocketStream<S>>,
) -> ReadEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut bucket = manager.new_rate_limiter();
    while let Some(item) = source.next().await {
        let text = match item {
            Ok(Message::Text(text)) => Cow::Owned(text.as_str().to_owned()),
            // The original decoded every message with `data.toString()`; binary frames are
            // read the same way.
            Ok(Message::Binary(bytes)) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
            Ok(Message::Pong(_)) => {
                manager.mark_alive(id, key);
                continue;
            }
            // tungstenite answers pings itself; a ping flood still counts against the rate.
            Ok(Message::Ping(_)) => {
                if let Handled::Close(code) = manager.rate_check(id, &mut bucket) {
                    return Box::pin(close_and_drain(manager, (id, key), outbox, code, source))
                        .await;
                }
                continue;
            }
            Ok(Message::Close(_) | Message::Frame(_)) => continue,
            Err(error) => return classify(id, error),
        };
        let mut handled = manager.handle_message(id, &mut bucket, &text);
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
            | Handled::Mirror(_) => {}
            Handled::Reply(reply) | Handled::Changed { reply, .. } => {
                manager.send_native(id, key, reply);
            }
            Handled::Close(code) => {
                return Box::pin(close_and_drain(manager, (id, key), outbox, code, source)).await
            }
        }
    }
    ReadEnd::Closed
}

/// Closes with `code` while still reading (and discarding) what the peer sends, until it
/// answers the close or [`CLOSE_GRACE`] passes: closing a socket with unread data makes the
/// kernel reset it, and the peer would lose the close frame that says why.
/// The close travels the ordered path, after the replies sent before it.
async fn close_and_drain<S>(
    manager: &Manager,
    (id, key): (&str, RecordKey),
    outbox: &Outbox,
    code: u16,
    source: &mut futures_util::stream::SplitStream<WebSocketStream<S>>,
) -> ReadEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !manager.close_native(id, key, Some(code)) {
        outbox.close(CloseReason::Server { code });
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = source.next().await {}
    })
    .await;
    ReadEnd::Closed
}

/// The close code for a read error, or a plain end for I/O errors and closed sockets.
fn classify(id: &str, error: WsError) -> ReadEnd {
    let code = match &error {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => close_code::MESSAGE_TOO_BIG,
        WsError::Capacity(_) => close_code::MESSAGE_TOO_BIG,
        WsError::Utf8(_) => close_code::INVALID_PAYLOAD,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Io(_) => {
            debug!(conn_id = id, %error, "socket ended");
            return ReadEnd::Closed;
        }
        WsError::Protocol(_) => close_code::PROTOCOL_ERROR,
        _ => close_code::PROTOCOL_ERROR,
    };
    warn!(conn_id = id, %error, code, "protocol violation; closing");
    ReadEnd::Violation(code)
}

async fn write_loop<S>(
    outbox: &Outbox,
    sink: &mut futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
) -> WriteEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut batch = Vec::new();
    loop {
        let closing = outbox.next_batch(&mut batch).await;
        if !batch.is_empty() {
            let write = async {
                for message in batch.drain(..) {
                    sink.feed(message).await?;
                }
                sink.flush().await
            };
            tokio::select! {
                written = write => if written.is_err() { return WriteEnd::Abandoned },
                () = outbox.hard_closed() => {}
            }
            batch.clear();
        }
        match closing.or_else(|| outbox.closed().filter(|reason| reason.is_hard())) {
            None => {}
            Some(CloseReason::Gone) => return WriteEnd::Abandoned,
            Some(CloseReason::SlowConsumer) => {
                // The peer is not reading, so this may never leave; try briefly.
                let frame = close_frame(close_code::SLOW_CONSUMER, "slow consumer");
                Box::pin(send_close(sink, frame, CLOSE_GRACE / 10)).await;
                return WriteEnd::Abandoned;
            }
            Some(CloseReason::Server { code }) => {
                let frame = close_frame(code, "");
                return match Box::pin(send_close(sink, frame, CLOSE_GRACE)).await {
                    true => WriteEnd::SentClose,
                    false => WriteEnd::Abandoned,
                };
            }
        }
    }
}

/// Reads and drops input until the peer closes, errs, or `limit` passes.
async fn discard_input<S: AsyncRead + Unpin>(socket: &mut S, limit: std::time::Duration) {
    let mut scratch = vec![0u8; 4096];
    let _ = tokio::time::timeout(limit, async {
        while matches!(socket.read(&mut scratch).await, Ok(read) if read > 0) {}
    })
    .await;
}

/// Sends a close frame within `limit`; whether it left.
async fn send_close<S>(
    sink: &mut futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    frame: Message,
    limit: std::time::Duration,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    matches!(
        tokio::time::timeout(limit, sink.send(frame)).await,
        Ok(Ok(()))
    )
}

fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}
