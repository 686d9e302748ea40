//! cluso-loadgen: the load generator of the cluso-ws benchmark (`bench/`).
//!
//! Opens N WebSocket clients to one loopback URL, spreading their source
//! addresses over 127.0.0.1..127.0.0.K (bind before connect) so that 10 000+
//! connections do not exhaust the ephemeral ports of one address pair. Each
//! client subscribes to one channel and waits for the acknowledgement; when all
//! have settled the generator prints `{"ready":true,...}` and then counts the
//! events it receives and their end-to-end latency, computed from the
//! `"sentUs":<CLOCK_REALTIME µs>` the server embeds in every event payload.
//!
//! Two wire modes: `ws` (the cluso protocol of SPEC A.2) and `socketio`
//! (engine.io v4 over a raw WebSocket: `0{..}` open, `40` connect, `42[..]`
//! events; `2` pings are answered with `3`).
//!
//! Two ways to run, both bounded in time:
//! * `--duration S`: measure one phase for S seconds after ready, print one
//!   JSON line, exit.
//! * control mode (default): JSON commands on stdin, one result line per
//!   phase on stdout: `{"cmd":"start","label":"A"}`,
//!   `{"cmd":"stop","expect":E,"quietMs":300,"maxDrainMs":10000}`,
//!   `{"cmd":"exit"}` (EOF exits too). `--max-seconds` caps the lifetime.
//!
//! Single-threaded on purpose (a current-thread runtime): the harness pins it
//! to one core, and one thread needs no locks around the shared counters.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use memchr::memmem;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Per-step timeout for connect, handshake, welcome and subscription ack.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest latency the histogram records (60 s); larger values saturate.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Descriptors kept beyond one per connection (stdio, runtime, slack).
const NOFILE_SLACK: u64 = 1024;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ws,
    SocketIo,
}

struct Args {
    url: String,
    addr: SocketAddrV4,
    conns: usize,
    mode: Mode,
    channel: String,
    sources: u32,
    concurrency: usize,
    connect_timeout: Duration,
    duration: Option<Duration>,
    max_seconds: u64,
    read_buffer: usize,
    label: String,
}

fn usage() -> ! {
    eprintln!(
        "usage: cluso-loadgen --url ws://127.0.0.1:PORT/PATH [--conns N] [--mode ws|socketio]\n\
         \x20      [--channel files] [--sources K] [--concurrency C] [--connect-timeout S]\n\
         \x20      [--duration S] [--max-seconds S] [--read-buffer BYTES] [--label L]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut url = None;
    let mut a = Args {
        url: String::new(),
        addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        conns: 1000,
        mode: Mode::Ws,
        channel: "files".into(),
        sources: 0,
        concurrency: 256,
        connect_timeout: Duration::from_secs(120),
        duration: None,
        max_seconds: 900,
        read_buffer: 16 * 1024,
        label: "run".into(),
    };
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        let num = |v: &str| v.parse::<f64>().unwrap_or_else(|_| usage());
        match k.as_str() {
            "--url" => url = Some(v),
            "--conns" => a.conns = num(&v) as usize,
            "--mode" => {
                a.mode = match v.as_str() {
                    "ws" => Mode::Ws,
                    "socketio" => Mode::SocketIo,
                    _ => usage(),
                }
            }
            "--channel" => a.channel = v,
            "--sources" => a.sources = num(&v) as u32,
            "--concurrency" => a.concurrency = (num(&v) as usize).max(1),
            "--connect-timeout" => a.connect_timeout = Duration::from_secs_f64(num(&v)),
            "--duration" => a.duration = Some(Duration::from_secs_f64(num(&v))),
            "--max-seconds" => a.max_seconds = num(&v) as u64,
            "--read-buffer" => a.read_buffer = (num(&v) as usize).max(4096),
            "--label" => a.label = v,
            _ => usage(),
        }
    }
    a.url = url.unwrap_or_else(|| usage());
    // Only ws://<loopback IPv4>:<port>/... : this tool never targets another host.
    let rest = a.url.strip_prefix("ws://").unwrap_or_else(|| usage());
    let hostport = rest.split('/').next().unwrap_or("");
    let addr: SocketAddr = hostport.parse().unwrap_or_else(|_| {
        eprintln!("--url must be ws://<IPv4>:<port>/...");
        std::process::exit(2)
    });
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => a.addr = v4,
        _ => {
            eprintln!("refusing non-loopback target {addr}");
            std::process::exit(2)
        }
    }
    if a.sources == 0 {
        // ~20 000 connections per source address keeps well inside the
        // ephemeral range (32768-60999) of each address.
        a.sources = (a.conns as u32).div_ceil(20_000).max(4);
    }
    a.sources = a.sources.clamp(1, 250);
    a
}

fn realtime_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Raises RLIMIT_NOFILE to cover `want` descriptors (soft up to hard; as root
/// the hard limit is raised too). Returns the soft limit in force.
fn raise_nofile(want: u64) -> u64 {
    use rlimit::Resource;
    let (soft, hard) = Resource::NOFILE.get().unwrap_or((1024, 1024));
    if soft >= want {
        return soft;
    }
    if hard < want && Resource::NOFILE.set(want, want).is_ok() {
        return want;
    }
    let target = want.min(hard);
    let _ = Resource::NOFILE.set(target, hard);
    Resource::NOFILE.get().map(|(s, _)| s).unwrap_or(soft)
}

/// Counters shared by every connection task (single-threaded: Cell/RefCell).
struct Shared {
    finder: memmem::Finder<'static>,
    measuring: Cell<bool>,
    phase_start: Cell<Instant>,
    delivered: Cell<u64>,
    bytes: Cell<u64>,
    first: Cell<Option<Instant>>,
    last: Cell<Option<Instant>>,
    per_sec: RefCell<Vec<u64>>,
    hist: RefCell<Histogram<u64>>,
    negative: Cell<u64>,
    unmeasured: Cell<u64>,
    no_stamp: Cell<u64>,
    /// Events stamped before the phase started (stragglers of an earlier one).
    stale: Cell<u64>,
    min_sent_us: Cell<u64>,
    // connection lifecycle
    ready: Cell<usize>,
    failed: Cell<usize>,
    closed: Cell<usize>,
    errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
    settled: Notify,
    progress: Notify,
    expect: Cell<u64>,
}

impl Shared {
    fn new() -> Self {
        Shared {
            finder: memmem::Finder::new(b"\"sentUs\":"),
            measuring: Cell::new(false),
            phase_start: Cell::new(Instant::now()),
            delivered: Cell::new(0),
            bytes: Cell::new(0),
            first: Cell::new(None),
            last: Cell::new(None),
            per_sec: RefCell::new(Vec::new()),
            hist: RefCell::new(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap()),
            negative: Cell::new(0),
            unmeasured: Cell::new(0),
            no_stamp: Cell::new(0),
            stale: Cell::new(0),
            min_sent_us: Cell::new(0),
            ready: Cell::new(0),
            failed: Cell::new(0),
            closed: Cell::new(0),
            errors: Cell::new(0),
            first_error: RefCell::new(None),
            settled: Notify::new(),
            progress: Notify::new(),
            expect: Cell::new(u64::MAX),
        }
    }

    fn error(&self, what: String) {
        self.errors.set(self.errors.get() + 1);
        let mut fe = self.first_error.borrow_mut();
        if fe.is_none() {
            *fe = Some(what);
        }
    }

    fn settle(&self, ok: bool, total: usize) {
        if ok {
            self.ready.set(self.ready.get() + 1);
        } else {
            self.failed.set(self.failed.get() + 1);
        }
        if self.ready.get() + self.failed.get() == total {
            self.settled.notify_one();
        }
    }

    /// Counts one event frame and records its latency.
    fn on_event(&self, text: &[u8]) {
        let Some(pos) = self.finder.find(text) else {
            self.no_stamp.set(self.no_stamp.get() + 1);
            return;
        };
        if !self.measuring.get() {
            self.unmeasured.set(self.unmeasured.get() + 1);
            return;
        }
        let mut sent: u64 = 0;
        for &b in text[pos + 9..].iter().skip_while(|b| **b == b' ') {
            if !b.is_ascii_digit() {
                break;
            }
            sent = sent * 10 + (b - b'0') as u64;
        }
        if sent < self.min_sent_us.get() {
            self.stale.set(self.stale.get() + 1);
            return;
        }
        let now_us = realtime_us();
        let now = Instant::now();
        if now_us >= sent {
            self.hist.borrow_mut().saturating_record((now_us - sent).max(1));
        } else {
            self.negative.set(self.negative.get() + 1);
            self.hist.borrow_mut().saturating_record(1);
        }
        let d = self.delivered.get() + 1;
        self.delivered.set(d);
        self.bytes.set(self.bytes.get() + text.len() as u64);
        if self.first.get().is_none() {
            self.first.set(Some(now));
        }
        self.last.set(Some(now));
        let sec = now.duration_since(self.phase_start.get()).as_secs() as usize;
        let mut ps = self.per_sec.borrow_mut();
        if ps.len() <= sec {
            ps.resize(sec + 1, 0);
        }
        ps[sec] += 1;
        if d >= self.expect.get() {
            self.progress.notify_one();
        }
    }

    fn start_phase(&self) {
        self.delivered.set(0);
        self.bytes.set(0);
        self.first.set(None);
        self.last.set(None);
        self.per_sec.borrow_mut().clear();
        self.hist.borrow_mut().reset();
        self.negative.set(0);
        self.unmeasured.set(0);
        self.no_stamp.set(0);
        self.stale.set(0);
        // 1 ms of slack for clock drift between the two processes' clocks.
        self.min_sent_us.set(realtime_us().saturating_sub(1000));
        self.expect.set(u64::MAX);
        self.phase_start.set(Instant::now());
        self.measuring.set(true);
    }

    fn result(&self, label: &str, args: &Args) -> Value {
        self.measuring.set(false);
        let h = self.hist.borrow();
        let delivered = self.delivered.get();
        let span = match (self.first.get(), self.last.get()) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        let since_start = self
            .last
            .get()
            .map(|l| l.duration_since(self.phase_start.get()).as_secs_f64())
            .unwrap_or(0.0);
        let q = |p: f64| if h.is_empty() { 0 } else { h.value_at_quantile(p) };
        json!({
            "label": label,
            "mode": if args.mode == Mode::Ws { "ws" } else { "socketio" },
            "connections": self.ready.get(),
            "connectFailed": self.failed.get(),
            "closedDuringRun": self.closed.get(),
            "errors": self.errors.get(),
            "firstError": *self.first_error.borrow(),
            "delivered": delivered,
            "bytes": self.bytes.get(),
            "spanS": span,
            "phaseS": self.phase_start.get().elapsed().as_secs_f64(),
            "msgsPerSec": if span > 0.0 { delivered as f64 / span } else { 0.0 },
            "msgsPerSecFromStart": if since_start > 0.0 { delivered as f64 / since_start } else { 0.0 },
            "perSecond": *self.per_sec.borrow(),
            "latencyUs": {
                "count": h.len(), "min": if h.is_empty() { 0 } else { h.min() },
                "p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "p999": q(0.999),
                "max": if h.is_empty() { 0 } else { h.max() }, "mean": h.mean(),
            },
            "negativeLatency": self.negative.get(),
            "unmeasured": self.unmeasured.get(),
            "untimedFrames": self.no_stamp.get(),
            "staleFrames": self.stale.get(),
        })
    }
}

type Ws = WebSocketStream<TcpStream>;

async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match timeout(STEP_TIMEOUT, ws.next()).await {
            Err(_) => return Err("timeout waiting for a message".into()),
            Ok(None) => return Err("closed during setup".into()),
            Ok(Some(Err(e))) => return Err(format!("read: {e}")),
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.as_str().to_owned()),
            Ok(Some(Ok(Message::Close(c)))) => return Err(format!("close during setup: {c:?}")),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

async fn send_text(ws: &mut Ws, s: &str) -> Result<(), String> {
    timeout(STEP_TIMEOUT, ws.send(Message::text(s.to_owned())))
        .await
        .map_err(|_| "timeout sending".to_string())?
        .map_err(|e| format!("send: {e}"))
}

/// Connect, handshake, and subscribe one client.
async fn setup(i: usize, a: &Args) -> Result<Ws, String> {
    let src = Ipv4Addr::new(127, 0, 0, 1 + (i as u32 % a.sources) as u8);
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    sock.bind(SocketAddr::V4(SocketAddrV4::new(src, 0))).map_err(|e| format!("bind {src}: {e}"))?;
    let stream = timeout(STEP_TIMEOUT, sock.connect(SocketAddr::V4(a.addr)))
        .await
        .map_err(|_| "connect timeout".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).ok();
    let cfg = WebSocketConfig::default()
        .read_buffer_size(a.read_buffer)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20))
        .max_frame_size(Some(16 << 20));
    let (mut ws, _) = timeout(
        STEP_TIMEOUT,
        tokio_tungstenite::client_async_with_config(a.url.as_str(), stream, Some(cfg)),
    )
    .await
    .map_err(|_| "handshake timeout".to_string())?
    .map_err(|e| format!("handshake: {e}"))?;
    match a.mode {
        Mode::Ws => {
            let w = next_text(&mut ws).await?;
            if !w.contains("\"connected\"") {
                return Err(format!("unexpected welcome: {w}"));
            }
            let sub = json!({"type":"subscribe","channel":a.channel,"id":"1"}).to_string();
            send_text(&mut ws, &sub).await?;
            for _ in 0..64 {
                let m = next_text(&mut ws).await?;
                if m.contains("\"subscribed\"") {
                    return Ok(ws);
                }
            }
            Err("no subscription ack".into())
        }
        Mode::SocketIo => {
            let open = next_text(&mut ws).await?;
            if !open.starts_with('0') {
                return Err(format!("unexpected engine.io open: {open}"));
            }
            send_text(&mut ws, "40").await?;
            let sub = json!(["subscribe", {"type":"subscribe","channel":a.channel,"id":"1"}]);
            let mut connected = false;
            for _ in 0..64 {
                let m = next_text(&mut ws).await?;
                if m == "2" {
                    send_text(&mut ws, "3").await?;
                } else if m.starts_with("40") && !connected {
                    connected = true;
                    send_text(&mut ws, &format!("42{sub}")).await?;
                } else if m.starts_with("44") {
                    return Err(format!("namespace connect refused: {m}"));
                } else if m.starts_with("42") && m.contains("\"subscribed\"") {
                    return Ok(ws);
                }
            }
            Err("no subscription ack".into())
        }
    }
}

async fn conn_task(i: usize, a: Rc<Args>, st: Rc<Shared>, sem: Rc<Semaphore>) {
    let permit = sem.acquire().await.expect("semaphore closed");
    let r = setup(i, &a).await;
    drop(permit);
    let mut ws = match r {
        Ok(ws) => {
            st.settle(true, a.conns);
            ws
        }
        Err(e) => {
            st.error(e);
            st.settle(false, a.conns);
            return;
        }
    };
    let sio = a.mode == Mode::SocketIo;
    while let Some(m) = ws.next().await {
        match m {
            Ok(Message::Text(t)) => {
                let b = t.as_bytes();
                if sio && b == b"2" {
                    if let Err(e) = ws.send(Message::text("3")).await {
                        st.error(format!("pong: {e}"));
                        break;
                    }
                } else {
                    st.on_event(b);
                }
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(e) => {
                st.error(format!("read: {e}"));
                break;
            }
        }
    }
    st.closed.set(st.closed.get() + 1);
}

fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Waits until `expect` events arrived, no event came for `quiet`, or `max` elapsed.
async fn drain(st: &Shared, expect: u64, quiet: Duration, max: Duration) {
    st.expect.set(expect);
    let drain_start = Instant::now();
    let deadline = drain_start + max;
    let tick = quiet.min(Duration::from_millis(50)).max(Duration::from_millis(5));
    while st.delivered.get() < expect && Instant::now() < deadline {
        let idle_since = st.last.get().map_or(drain_start, |l| l.max(drain_start));
        if idle_since.elapsed() >= quiet {
            break;
        }
        tokio::select! {
            _ = st.progress.notified() => {}
            _ = tokio::time::sleep(tick) => {}
        }
    }
    st.expect.set(u64::MAX);
}

async fn run(a: Rc<Args>) {
    let st = Rc::new(Shared::new());
    let sem = Rc::new(Semaphore::new(a.concurrency));
    let t0 = Instant::now();
    let lifetime = Duration::from_secs(a.max_seconds);
    for i in 0..a.conns {
        tokio::task::spawn_local(conn_task(i, a.clone(), st.clone(), sem.clone()));
    }
    if a.conns > 0 && timeout(a.connect_timeout, st.settled.notified()).await.is_err() {
        st.error(format!("connect phase timed out after {:?}", a.connect_timeout));
    }
    emit(&json!({
        "ready": true,
        "connections": st.ready.get(),
        "failed": st.failed.get(),
        "pending": a.conns - st.ready.get() - st.failed.get(),
        "connectMs": t0.elapsed().as_millis() as u64,
        "sources": a.sources,
        "firstError": *st.first_error.borrow(),
    }));

    if let Some(d) = a.duration {
        st.start_phase();
        tokio::time::sleep(d).await;
        emit(&st.result(&a.label, &a));
        return;
    }

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let end = t0 + lifetime;
    loop {
        let line = match tokio::time::timeout_at(end.into(), lines.next_line()).await {
            Err(_) => {
                emit(&json!({"exit": "max-seconds reached"}));
                break;
            }
            Ok(Ok(Some(l))) => l,
            Ok(_) => break, // EOF or stdin error
        };
        let Ok(cmd) = serde_json::from_str::<Value>(&line) else {
            emit(&json!({"error": format!("bad command: {line}")}));
            continue;
        };
        match cmd["cmd"].as_str().unwrap_or("") {
            "start" => {
                st.start_phase();
                emit(&json!({"id": cmd["id"], "started": cmd["label"]}));
            }
            "stop" => {
                let expect = cmd["expect"].as_u64().unwrap_or(u64::MAX);
                let quiet = Duration::from_millis(cmd["quietMs"].as_u64().unwrap_or(300));
                let max = Duration::from_millis(cmd["maxDrainMs"].as_u64().unwrap_or(10_000));
                drain(&st, expect, quiet, max).await;
                let label = cmd["label"].as_str().unwrap_or(&a.label).to_owned();
                let mut r = st.result(&label, &a);
                r["expected"] = cmd["expect"].clone();
                r["id"] = cmd["id"].clone();
                emit(&r);
            }
            "status" => emit(&json!({
                "id": cmd["id"],
                "connections": st.ready.get(), "closed": st.closed.get(),
                "errors": st.errors.get(), "delivered": st.delivered.get(),
            })),
            "exit" => break,
            other => emit(&json!({"error": format!("unknown cmd {other}")})),
        }
    }
}

fn main() {
    let a = parse_args();
    let nofile = raise_nofile(a.conns as u64 + NOFILE_SLACK);
    if nofile < a.conns as u64 + 16 {
        eprintln!("warning: RLIMIT_NOFILE is {nofile}, below {} connections", a.conns);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(Rc::new(a)));
    // Exit without tearing down thousands of sockets one by one: the kernel
    // closes them. Results are already flushed.
    std::process::exit(0);
}
