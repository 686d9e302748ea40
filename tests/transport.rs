//! The native transport through the crate's public API, without Node: a `listen()` listener
//! on port 0, real TCP clients (tokio-tungstenite's `connect_async` or a raw `TcpStream`),
//! and the hub driven directly (`publish`, `health_tick_native`, `begin_shutdown`).
//!
//! No sleeps as synchronisation: every wait is on a socket event or a poll with a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

use cluso_ws::handshake::HandshakePolicy;
use cluso_ws::manager::Manager as Hub;
use cluso_ws::options::Options;
use cluso_ws::transport::{listener, Endpoint};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Upper bound for any single wait in these tests.
const DEADLINE: Duration = Duration::from_secs(5);

const CWD: &str = "/work/project";

async fn start(options: Options) -> (Arc<Hub>, SocketAddr) {
    let hub = Hub::new(options);
    let endpoint = Arc::new(Endpoint {
        policy: HandshakePolicy::default(),
        cwd: Some(Arc::from(CWD)),
    });
    let address = listener::listen(Arc::clone(&hub), "127.0.0.1", 0, endpoint)
        .await
        .expect("listen on 127.0.0.1:0");
    assert_ne!(address.port(), 0, "port 0 must resolve to the bound port");
    (hub, address)
}

fn url(address: SocketAddr) -> String {
    format!("ws://{address}/ws")
}

async fn connect(address: SocketAddr) -> Client {
    let (client, response) = tokio::time::timeout(DEADLINE, connect_async(url(address)))
        .await
        .expect("handshake within the deadline")
        .expect("handshake succeeds");
    assert_eq!(response.status().as_u16(), 101);
    client
}

/// The next message that is not a ping or pong (tungstenite answers pings itself).
async fn next_message(client: &mut Client) -> Message {
    loop {
        let item = tokio::time::timeout(DEADLINE, client.next())
            .await
            .expect("a message within the deadline")
            .expect("the stream is still open")
            .expect("no protocol error");
        match item {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

async fn next_text(client: &mut Client) -> String {
    match next_message(client).await {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Reads the welcome message and returns the connection id it announces.
async fn welcome(client: &mut Client) -> String {
    let text = next_text(client).await;
    let prefix = r#"{"type":"response","data":{"status":"connected","connectionId":""#;
    let suffix = format!(r#"","cwd":"{CWD}"}}}}"#);
    assert!(
        text.starts_with(prefix) && text.ends_with(&suffix),
        "unexpected welcome {text}"
    );
    let id = &text[prefix.len()..text.len() - suffix.len()];
    assert!(id.starts_with("conn-"), "unexpected id {id}");
    id.to_owned()
}

async fn subscribe(client: &mut Client, channel: &str, req: &str) {
    let request = format!(r#"{{"type":"subscribe","channel":"{channel}","id":"{req}"}}"#);
    client
        .send(Message::text(request))
        .await
        .expect("send subscribe");
    assert_eq!(
        next_text(client).await,
        format!(
            r#"{{"type":"response","id":"{req}","data":{{"status":"subscribed","channel":"{channel}"}}}}"#
        )
    );
}

/// Polls `check` until it holds or the deadline passes.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Broadcasts `text` to the native subscribers of `channel` and returns how many there are.
fn deliver(hub: &Arc<Hub>, channel: &str, text: &str) -> usize {
    let targets = hub.broadcast_targets(channel);
    assert_eq!(targets.js, 0, "no JavaScript subscribers here");
    if targets.native > 0 {
        hub.publish(channel, Utf8Bytes::from(text.to_owned()));
    }
    targets.native
}

/// Whether the connection `id` answered the last ping (`None` when it is not registered).
fn alive(hub: &Hub, id: &str) -> Option<bool> {
    hub.connection_rows()
        .into_iter()
        .find(|row| row.id == id)
        .map(|row| row.alive)
}

/// Sends a raw HTTP request and reads the whole answer (the server closes after a refusal).
async fn raw_request(address: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes after answering")
        .expect("read answer");
    String::from_utf8_lossy(&answer).into_owned()
}

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A masked client text frame (payload < 126 bytes).
fn masked_text_frame(payload: &str) -> Vec<u8> {
    let bytes = payload.as_bytes();
    assert!(bytes.len() < 126);
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | bytes.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(bytes.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test(flavor = "multi_thread")]
async fn client_gets_welcome_then_subscribe_ack_then_delivered_event() {
    let (hub, address) = start(Options::default()).await;
    let mut client = connect(address).await;
    let id = welcome(&mut client).await;
    assert!(hub.lookup(&id).is_some());
    assert_eq!(hub.gauges().counts.native_connections, 1);

    subscribe(&mut client, "files", "7").await;
    assert_eq!(hub.subscriber_ids("files").len(), 1);

    let event = r#"{"type":"event","channel":"files","data":{"file":"a.ts"},"timestamp":"2024-12-09T15:30:45.123Z"}"#;
    assert_eq!(deliver(&hub, "files", event), 1);
    assert_eq!(next_text(&mut client).await, event);
    assert_eq!(
        deliver(&hub, "other", event),
        0,
        "other channels reach nobody"
    );

    client
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_text(&mut client).await, r#"{"type":"pong"}"#);
    client
        .send(Message::text(r#"{"type":"request","id":"9"}"#))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut client).await,
        r#"{"type":"response","id":"9","data":{"error":"No handler for request type"}}"#
    );
    client
        .send(Message::text(r#"{"type":"unsubscribe","channel":"files"}"#))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut client).await,
        r#"{"type":"response","data":{"status":"unsubscribed","channel":"files"}}"#
    );
    assert_eq!(deliver(&hub, "files", event), 0);

    client.close(None).await.unwrap();
    eventually("the record is removed after the client closes", || {
        hub.lookup(&id).is_none()
    })
    .await;
    let _ = hub.begin_shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_subscribers_receive_every_delivery_in_order() {
    const MESSAGES: usize = 500;
    let (hub, address) = start(Options::default()).await;
    let mut a = connect(address).await;
    let mut b = connect(address).await;
    welcome(&mut a).await;
    welcome(&mut b).await;
    subscribe(&mut a, "files", "a").await;
    subscribe(&mut b, "files", "b").await;

    for seq in 0..MESSAGES {
        assert_eq!(deliver(&hub, "files", &format!(r#"{{"seq":{seq}}}"#)), 2);
    }
    for client in [&mut a, &mut b] {
        for seq in 0..MESSAGES {
            assert_eq!(next_text(client).await, format!(r#"{{"seq":{seq}}}"#));
        }
    }
    let _ = hub.begin_shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frame_sent_with_the_upgrade_request_is_answered() {
    let (hub, address) = start(Options::default()).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    let mut bytes = upgrade_request("/ws").into_bytes();
    bytes.extend(masked_text_frame(
        r#"{"type":"subscribe","channel":"files","id":"x"}"#,
    ));
    stream.write_all(&bytes).await.unwrap();

    let expected_ack =
        r#"{"type":"response","id":"x","data":{"status":"subscribed","channel":"files"}}"#;
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        while !String::from_utf8_lossy(&received).contains(expected_ack) {
            let read = stream.read(&mut chunk).await.expect("read");
            assert_ne!(read, 0, "server closed before acknowledging");
            received.extend_from_slice(&chunk[..read]);
        }
    })
    .await
    .expect("the subscribe in the upgrade packet is acknowledged");
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_eq!(hub.subscriber_ids("files").len(), 1);
    let _ = hub.begin_shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_clients_with_1001_and_stops_the_listener() {
    let (hub, address) = start(Options::default()).await;
    let mut client = connect(address).await;
    welcome(&mut client).await;
    subscribe(&mut client, "files", "1").await;

    assert!(hub.begin_shutdown().is_some(), "first shutdown");
    assert!(hub.begin_shutdown().is_none(), "shutdown is idempotent");
    match next_message(&mut client).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a 1001 close frame, got {other:?}"),
    }
    // The client answers the close; the stream then ends.
    let end = tokio::time::timeout(DEADLINE, client.next())
        .await
        .expect("the stream ends after the close handshake");
    assert!(matches!(end, None | Some(Err(_))), "{end:?}");

    eventually("the registry is empty after shutdown", || {
        hub.gauges().counts.native_connections == 0
    })
    .await;
    eventually("nothing native is left running", || hub.active() == 0).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while TcpStream::connect(address).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener's port still accepts after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_peer_is_removed_after_two_health_ticks_and_a_live_one_stays() {
    let (hub, address) = start(Options {
        ping_interval: None,
        ..Options::default()
    })
    .await;

    // The silent peer completes its handshake and reads the welcome, then never reads again,
    // so it never answers a ping.
    let mut silent = connect(address).await;
    let silent_id = welcome(&mut silent).await;

    // The live peer reads continuously (tungstenite answers pings while reading).
    let mut live = connect(address).await;
    let live_id = welcome(&mut live).await;
    let (live_tx, mut live_rx) = tokio::sync::mpsc::channel::<Message>(16);
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = live.next().await {
            let _ = live_tx.send(message).await;
        }
    });

    hub.health_tick_native();
    // The live peer sees the ping and answers it; wait until the hub has recorded the pong.
    loop {
        let message = tokio::time::timeout(DEADLINE, live_rx.recv())
            .await
            .expect("the live peer is pinged")
            .expect("the live peer is open");
        if matches!(message, Message::Ping(_)) {
            break;
        }
    }
    eventually("the live peer's pong is recorded", || {
        alive(&hub, &live_id) == Some(true)
    })
    .await;
    assert!(
        alive(&hub, &silent_id) == Some(false),
        "the silent peer has not answered"
    );

    hub.health_tick_native();
    eventually("the silent peer is removed", || {
        hub.lookup(&silent_id).is_none()
    })
    .await;
    assert!(hub.lookup(&live_id).is_some(), "the live peer stays");
    assert_eq!(hub.stats().snapshot().dead_peers_removed, 1);

    // The silent peer's TCP connection is dropped without a close handshake.
    let end = tokio::time::timeout(DEADLINE, async {
        loop {
            match silent.next().await {
                Some(Ok(Message::Ping(_) | Message::Text(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the silent peer's connection ends");
    assert!(
        !matches!(end, Some(Ok(Message::Close(_)))),
        "terminated, not closed: {end:?}"
    );

    let _ = hub.begin_shutdown();
    reader.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn handshake_refusals_answer_http_errors_and_are_counted() {
    let (hub, address) = start(Options::default()).await;

    let answer = raw_request(address, &upgrade_request("/elsewhere")).await;
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");

    let answer = raw_request(address, &upgrade_request("/ws").replacen("GET", "POST", 1)).await;
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");

    let answer = raw_request(
        address,
        &upgrade_request("/ws").replace("dGhlIHNhbXBsZSBub25jZQ==", "short"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");

    let answer = raw_request(
        address,
        &upgrade_request("/ws").replace("Version: 13", "Version: 12"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 426 "), "{answer}");
    assert!(answer.contains("\r\nSec-WebSocket-Version: 13"), "{answer}");

    let answer = raw_request(
        address,
        &upgrade_request("/ws").replace("\r\n\r\n", "\r\nOrigin: http://evil.example\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");

    assert_eq!(hub.stats().snapshot().rejected_handshakes, 5);
    assert_eq!(hub.gauges().counts.native_connections, 0);
    let _ = hub.begin_shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_that_stops_reading_is_cut_off_at_the_cap_while_another_gets_everything() {
    const CAP: usize = 64 * 1024;
    const PAYLOAD: usize = 16 * 1024;
    // Enough to fill both kernel socket buffers many times over on loopback.
    const MAX_ROUNDS: usize = 20_000;
    let (hub, address) = start(Options {
        max_buffered_bytes_per_connection: CAP,
        ..Options::default()
    })
    .await;

    let mut stuck = connect(address).await;
    welcome(&mut stuck).await;
    subscribe(&mut stuck, "files", "s").await;
    let mut healthy = connect(address).await;
    welcome(&mut healthy).await;
    subscribe(&mut healthy, "files", "h").await;

    // `stuck` is never read from again. Each round, the healthy client reads what was just
    // delivered, so its own queue never approaches the cap.
    let body = "x".repeat(PAYLOAD);
    let mut rounds = 0;
    while hub.stats().snapshot().slow_consumer_disconnects == 0 {
        assert!(
            rounds < MAX_ROUNDS,
            "the stuck subscriber was never cut off"
        );
        deliver(&hub, "files", &format!("{rounds:08}{body}"));
        let text = next_text(&mut healthy).await;
        assert_eq!(&text[..8], format!("{rounds:08}"));
        rounds += 1;
    }
    assert_eq!(hub.stats().snapshot().slow_consumer_disconnects, 1);
    eventually("only the healthy subscriber is left", || {
        hub.subscriber_ids("files").len() == 1
    })
    .await;
    // Later deliveries still reach the healthy subscriber.
    assert_eq!(deliver(&hub, "files", "after"), 1);
    assert_eq!(next_text(&mut healthy).await, "after");
    drop(stuck);
    let _ = hub.begin_shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handshake_in_progress_ends_at_shutdown() {
    let (hub, address) = start(Options::default()).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    // Half a request head: the server is still reading it.
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let _ = hub.begin_shutdown();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
        .await
        .expect("the server drops the half-open connection at shutdown");
    assert!(read.is_err() || rest.is_empty() || rest.starts_with(b"HTTP/1.1 503"));
    eventually("nothing native is left running", || hub.active() == 0).await;
}
