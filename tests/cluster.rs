//! Scale-out through a real `redis-server` (Debian's package; `.ci/run` installs it): each
//! test starts its own server on a free loopback port with no persistence, and stops it.
//! Managers ("processes") are driven through the crate's API, clients are real WebSocket
//! connections to `listen()` listeners.
//!
//! No sleeps as synchronisation: every wait is on a socket event or a poll with a deadline.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

use cluso_ws::cluster::ClusterOptions;
use cluso_ws::handshake::HandshakePolicy;
use cluso_ws::manager::Manager as Hub;
use cluso_ws::options::{HistoryOptions, Options};
use cluso_ws::transport::{listener, Endpoint};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const DEADLINE: Duration = Duration::from_secs(5);
/// Reconnection backs off up to 5 s.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(20);

/// A `redis-server` of this test's own, stopped on drop.
struct Redis {
    port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Redis {
    async fn start() -> Self {
        let mut redis = Redis {
            port: free_port(),
            child: None,
        };
        redis.restart().await;
        redis
    }

    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(mut c) = self.command_connection().await {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
                if pong.is_ok() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn command_connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        // DEBUG SLEEP 1 must not time out on the client's side.
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(5)));
        redis::Client::open(self.url())?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn options(redis: &Redis, prefix: &str, history: usize, queue: usize) -> Options {
    Options {
        history: HistoryOptions {
            size: history,
            ..HistoryOptions::default()
        },
        cluster: Some(ClusterOptions::new(&redis.url(), Some(prefix), queue).expect("valid")),
        ..Options::default()
    }
}

async fn start(options: Options) -> (Arc<Hub>, SocketAddr) {
    let hub = Hub::new(options);
    let endpoint = Arc::new(Endpoint {
        policy: HandshakePolicy::default(),
        cwd: None,
    });
    let address = listener::listen(Arc::clone(&hub), "127.0.0.1", 0, endpoint)
        .await
        .expect("listen");
    (hub, address)
}

/// Ends the managers' tasks before the test's runtime goes away (their listeners were
/// registered with it).
async fn stop(hubs: &[&Arc<Hub>]) {
    for hub in hubs {
        hub.begin_shutdown();
    }
    for hub in hubs {
        hub.closed().await;
    }
}

async fn until(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + deadline;
    while !check() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn up(hub: &Hub) {
    until("cluster up", RECONNECT_DEADLINE, || {
        hub.cluster_status().is_some_and(|s| s.up)
    })
    .await;
}

async fn connect(address: SocketAddr) -> Client {
    let (mut client, _) =
        tokio::time::timeout(DEADLINE, connect_async(format!("ws://{address}/ws")))
            .await
            .expect("handshake in time")
            .expect("handshake");
    next_json(&mut client).await; // the welcome
    client
}

async fn next_json(client: &mut Client) -> Value {
    loop {
        let item = tokio::time::timeout(DEADLINE, client.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("no error");
        if let Message::Text(text) = item {
            return serde_json::from_str(text.as_str()).expect("JSON");
        }
    }
}

/// Subscribes and returns the reply's `data`.
async fn subscribe(client: &mut Client, channel: &str, since: Option<(&str, u64)>) -> Value {
    let since = since.map_or(String::new(), |(epoch, seq)| {
        format!(r#","since":{{"epoch":"{epoch}","seq":{seq}}}"#)
    });
    let request = format!(r#"{{"type":"subscribe","channel":"{channel}","id":"s"{since}}}"#);
    client.send(Message::text(request)).await.expect("send");
    let reply = next_json(client).await;
    assert_eq!(reply["type"], "response", "{reply}");
    reply["data"].clone()
}

fn envelope(channel: &str, data: &str) -> String {
    format!(r#"{{"type":"event","channel":"{channel}","data":"{data}","timestamp":"t"}}"#)
}

/// `(data, seq, epoch)` of the next `n` events.
async fn events(client: &mut Client, n: usize) -> Vec<(String, u64, String)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let event = next_json(client).await;
        assert_eq!(event["type"], "event", "{event}");
        out.push((
            event["data"].as_str().unwrap_or_default().to_owned(),
            event["seq"].as_u64().unwrap_or(0),
            event["epoch"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn broadcasts_from_every_process_reach_every_client_in_one_order() {
    let redis = Redis::start().await;
    let (a, a_addr) = start(options(&redis, "order", 100, 10_000)).await;
    let (b, b_addr) = start(options(&redis, "order", 100, 10_000)).await;
    up(&a).await;
    up(&b).await;
    let mut on_a = connect(a_addr).await;
    let mut on_b = connect(b_addr).await;
    let start_a = subscribe(&mut on_a, "files", None).await;
    let start_b = subscribe(&mut on_b, "files", None).await;
    assert_eq!(start_a["epoch"], start_b["epoch"], "one shared epoch");
    assert_eq!(start_a["seq"], 0);
    let publishers: Vec<_> = [(Arc::clone(&a), "a"), (Arc::clone(&b), "b")]
        .into_iter()
        .map(|(hub, name)| {
            tokio::spawn(async move {
                for i in 0..100 {
                    assert!(hub.cluster_publish("files", envelope("files", &format!("{name}{i}"))));
                    if i % 10 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.expect("publisher");
    }
    let seen_a = events(&mut on_a, 200).await;
    let seen_b = events(&mut on_b, 200).await;
    assert_eq!(seen_a, seen_b, "every client sees one order");
    let seqs: Vec<u64> = seen_a.iter().map(|e| e.1).collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    // Each process's own broadcasts keep their order.
    for name in ["a", "b"] {
        let mine: Vec<&str> = seen_a
            .iter()
            .filter(|e| e.0.starts_with(name))
            .map(|e| &e.0[1..])
            .collect();
        let expected: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        assert_eq!(
            mine,
            expected.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }
    // The script cache lost (a Redis restart without the restart): loaded again.
    let mut admin = redis.command_connection().await.expect("admin");
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .expect("flush");
    assert!(a.cluster_publish("files", envelope("files", "after-flush")));
    assert_eq!(events(&mut on_b, 1).await[0].1, 201);
    assert_eq!(events(&mut on_a, 1).await[0].0, "after-flush");
    let status = a.cluster_status().expect("cluster");
    assert_eq!((status.dropped, status.local), (0, 0));
    stop(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_resumes_on_another_process_from_the_redis_stream() {
    let redis = Redis::start().await;
    let (a, a_addr) = start(options(&redis, "resume", 50, 10_000)).await;
    up(&a).await;
    let mut on_a = connect(a_addr).await;
    subscribe(&mut on_a, "files", None).await;
    for i in 0..30 {
        a.cluster_publish("files", envelope("files", &i.to_string()));
    }
    let seen = events(&mut on_a, 30).await;
    let epoch = seen[0].2.clone();
    // A process that started later knows nothing of the channel: the gap comes from Redis.
    let (c, c_addr) = start(options(&redis, "resume", 50, 10_000)).await;
    up(&c).await;
    let mut on_c = connect(c_addr).await;
    let reply = subscribe(&mut on_c, "files", Some((&epoch, 10))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["seq"], 30);
    assert_eq!(reply["epoch"], epoch.as_str());
    let replayed = events(&mut on_c, 20).await;
    assert_eq!(replayed, seen[10..].to_vec(), "exactly the gap, in order");
    a.cluster_publish("files", envelope("files", "live"));
    let live = events(&mut on_c, 1).await;
    assert_eq!((live[0].0.as_str(), live[0].1), ("live", 31));
    // More than the history size: never part of it.
    let (d, d_addr) = start(options(&redis, "resume", 10, 10_000)).await;
    up(&d).await;
    let mut on_d = connect(d_addr).await;
    let reply = subscribe(&mut on_d, "files", Some((&epoch, 5))).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["seq"], 31);
    // Another epoch: not recovered.
    let reply = subscribe(&mut on_d, "files", Some(("other", 30))).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    stop(&[&a, &c, &d]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_survives_redis_going_away_and_resumes_when_it_returns() {
    let mut redis = Redis::start().await;
    let (a, a_addr) = start(options(&redis, "outage", 100, 10_000)).await;
    let (b, b_addr) = start(options(&redis, "outage", 100, 10_000)).await;
    up(&a).await;
    up(&b).await;
    let mut on_a = connect(a_addr).await;
    let mut on_b = connect(b_addr).await;
    subscribe(&mut on_a, "files", None).await;
    subscribe(&mut on_b, "files", None).await;
    a.cluster_publish("files", envelope("files", "before"));
    let before = events(&mut on_a, 1).await;
    assert_eq!(events(&mut on_b, 1).await, before);

    redis.kill();
    until("a sees Redis down", DEADLINE, || {
        a.cluster_status().is_some_and(|s| !s.up)
    })
    .await;
    a.cluster_publish("files", envelope("files", "during"));
    let during = events(&mut on_a, 1).await;
    assert_eq!(during[0].0, "during", "local subscribers still get it");
    assert_ne!(during[0].2, before[0].2, "under a new, local epoch");
    // A client resuming from the shared epoch is told it cannot be recovered.
    let reply = subscribe(&mut on_a, "files", Some((&before[0].2, 1))).await;
    assert_eq!(reply["recovered"], false, "{reply}");

    redis.restart().await;
    up(&a).await;
    up(&b).await;
    // b saw nothing since it reconnected: it answers with where Redis stands, not with
    // what it knew before the outage.
    let mut late_on_b = connect(b_addr).await;
    let fresh = subscribe(&mut late_on_b, "files", None).await;
    assert_ne!(fresh["epoch"], before[0].2.as_str(), "{fresh}");
    assert_eq!(fresh["seq"], 0);
    a.cluster_publish("files", envelope("files", "after"));
    let after_b = events(&mut on_b, 1).await;
    assert_eq!(
        after_b[0].0, "after",
        "cross-process delivery resumed by itself"
    );
    let after_a = events(&mut on_a, 1).await;
    assert_eq!(after_a, after_b);
    let after_late = events(&mut late_on_b, 1).await;
    assert_eq!(after_late, after_b);
    assert_eq!(
        fresh["epoch"],
        after_late[0].2.as_str(),
        "the position it gave was Redis's"
    );
    // Redis lost its data (no persistence): a new shared epoch.
    assert_ne!(after_a[0].2, before[0].2);
    assert!(a.cluster_status().expect("cluster").local >= 1);
    stop(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_redis_meets_the_bounded_queue() {
    let redis = Redis::start().await;
    let (a, _) = start(options(&redis, "slow", 0, 50)).await;
    up(&a).await;
    let mut admin = redis.command_connection().await.expect("admin");
    let sleeping = tokio::spawn(async move {
        redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(1)
            .query_async::<()>(&mut admin)
            .await
    });
    // Publish until the queue has overflowed a hundred times: while Redis sleeps the queue
    // cannot drain, so this ends long before the second is over.
    let (mut published, mut refused, mut i) = (0u64, 0u64, 0u64);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while refused < 100 {
        assert!(tokio::time::Instant::now() < deadline, "no overflow");
        if a.cluster_publish("files", envelope("files", &i.to_string())) {
            published += 1;
        } else {
            refused += 1;
        }
        i += 1;
        let status = a.cluster_status().expect("cluster");
        assert!(status.queued <= 50, "queue bounded: {}", status.queued);
        if i % 10 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(
        a.cluster_status().expect("cluster").dropped,
        refused,
        "every overflow counted"
    );
    sleeping.await.expect("task").expect("DEBUG SLEEP ran");
    until("queue drained", DEADLINE, || {
        a.cluster_status()
            .is_some_and(|s| s.queued == 0 && s.published == published)
    })
    .await;
    let status = a.cluster_status().expect("cluster");
    assert!(status.up, "slow is not down");
    assert_eq!(status.local, 0, "nothing fell back to local delivery");
    stop(&[&a]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_starts_later_is_found_by_itself() {
    let mut redis = Redis::start().await;
    redis.kill();
    let (a, a_addr) = start(options(&redis, "late", 10, 100)).await;
    let mut on_a = connect(a_addr).await;
    subscribe(&mut on_a, "files", None).await;
    a.cluster_publish("files", envelope("files", "alone"));
    assert_eq!(
        events(&mut on_a, 1).await[0].0,
        "alone",
        "local until Redis comes"
    );
    assert!(!a.cluster_status().expect("cluster").up);
    redis.restart().await;
    up(&a).await;
    let (b, b_addr) = start(options(&redis, "late", 10, 100)).await;
    up(&b).await;
    let mut on_b = connect(b_addr).await;
    subscribe(&mut on_b, "files", None).await;
    a.cluster_publish("files", envelope("files", "together"));
    assert_eq!(events(&mut on_b, 1).await[0].0, "together");
    assert_eq!(events(&mut on_a, 1).await[0].0, "together");
    stop(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn what_comes_back_from_redis_is_checked_before_it_reaches_a_client() {
    let redis = Redis::start().await;
    let (a, a_addr) = start(options(&redis, "hostile", 10, 100)).await;
    up(&a).await;
    let mut on_a = connect(a_addr).await;
    subscribe(&mut on_a, "files", None).await;
    let mut admin = redis.command_connection().await.expect("admin");
    let huge = format!("n:{{\"x\":\"{}\"}}", "a".repeat(17 * 1024 * 1024));
    for forged in [
        "garbage".to_owned(),
        "n:not json".to_owned(),
        "s:1:bad epoch!:{}".to_owned(),
        "s:-3:abc:{}".to_owned(),
        "s:99999999999999999999999999:abc:{}".to_owned(),
        huge,
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("hostile:p:files")
            .arg(forged)
            .query_async(&mut admin)
            .await
            .expect("publish");
    }
    // Stream entries of the wrong shape: a resume reading them is refused, not a crash.
    let _: () = redis::cmd("HSET")
        .arg("hostile:m:other")
        .arg("e")
        .arg("abc")
        .arg("s")
        .arg(2)
        .query_async(&mut admin)
        .await
        .expect("hset");
    let _: String = redis::cmd("XADD")
        .arg("hostile:s:other")
        .arg("2-0")
        .arg("nod")
        .arg("x")
        .query_async(&mut admin)
        .await
        .expect("xadd");
    let reply = subscribe(&mut on_a, "other", Some(("abc", 1))).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    a.cluster_publish("files", envelope("files", "real"));
    let next = events(&mut on_a, 1).await;
    assert_eq!(next[0].0, "real", "nothing forged got through");
    assert!(a.cluster_status().expect("cluster").up);
    stop(&[&a]).await;
}
