//! The engine: a bounded queue of broadcasts, the task that publishes them through the
//! [`PUBLISH`](super::script::PUBLISH) script, reads for subscribes, and the up / down
//! state.
//!
//! Publishing is pipelined: the task takes what is queued (at most [`MAX_BATCH`]) and sends
//! one `EVALSHA` per broadcast in one round trip, in queue order, on the one connection —
//! so Redis runs them in the order `broadcast()` was called on this process. While Redis is
//! down (or before it was first reached) the task hands each broadcast to the sink's local
//! delivery instead: local subscribers still get it, under a local epoch.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use redis::aio::MultiplexedConnection;
use redis::{Client, IntoConnectionInfo, ProtocolVersion, RedisError, Script, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::script::{self, Names};
use super::{ClusterOptions, Fetched, Sink, MAX_MESSAGE_BYTES, MAX_QUEUED_BYTES};
use crate::options::HistoryOptions;

/// Broadcasts sent to Redis in one round trip at most.
const MAX_BATCH: usize = 256;

/// How long the meta hash (epoch and top `seq`) outlives the last broadcast, at least.
const MIN_META_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// The engine's counters and state, for metrics (`cluso_ws_cluster_up`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Connected to Redis and subscribed.
    pub up: bool,
    /// Broadcasts handed to Redis.
    pub published: u64,
    /// Broadcasts dropped: the queue was full, or the event was too large.
    pub dropped: u64,
    /// Broadcasts delivered to this process only, because Redis was down.
    pub local: u64,
    /// Broadcasts waiting for Redis.
    pub queued: usize,
}

struct Publish {
    channel: String,
    envelope: String,
}

/// The current connection and the token that marks it lost.
#[derive(Clone)]
pub(super) struct Live {
    pub(super) connection: MultiplexedConnection,
    pub(super) lost: CancellationToken,
}

pub(super) struct Inner {
    pub(super) names: Names,
    pub(super) history: HistoryOptions,
    pub(super) sink: Weak<dyn Sink>,
    pub(super) client: Client,
    pub(super) live: Mutex<Option<Live>>,
    pub(super) up: AtomicBool,
    publish_script: Script,
    read_script: Script,
    queued_bytes: AtomicUsize,
    published: AtomicU64,
    dropped: AtomicU64,
    local: AtomicU64,
    overflowing: AtomicBool,
}

impl Inner {
    pub(super) fn live(&self) -> Option<Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn set_live(&self, live: Option<Live>) {
        self.up.store(live.is_some(), Ordering::Release);
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = live;
    }

    fn stream_ttl_ms(&self) -> u64 {
        u64::try_from(self.history.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    fn meta_ttl_ms(&self) -> u64 {
        self.stream_ttl_ms().saturating_mul(2).max(MIN_META_TTL_MS)
    }

    fn drop_one(&self, channel: &str, why: &str) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if !self.overflowing.swap(true, Ordering::AcqRel) {
            warn!(
                channel,
                why, "cluster: broadcast dropped (counted in dropped)"
            );
        }
    }
}

/// One manager's link to Redis.
pub struct Engine {
    inner: Arc<Inner>,
    queue: mpsc::Sender<Publish>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts the connection and publish tasks on the runtime; they end with `token`.
    pub fn start(
        options: &ClusterOptions,
        history: HistoryOptions,
        sink: Weak<dyn Sink>,
        token: CancellationToken,
    ) -> Result<Self, String> {
        // rediss://: rustls needs a crypto provider; the first manager installs ring's for
        // this copy of rustls (a later call finds it installed and changes nothing).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let info = options
            .redis_url()
            .into_connection_info()
            .map_err(|_| "options.cluster.redisUrl is not a valid Redis URL".to_owned())?;
        // RESP3: pub/sub pushes and commands share the one connection.
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let client = Client::open(info).map_err(|e| format!("options.cluster.redisUrl: {e}"))?;
        let inner = Arc::new(Inner {
            names: Names::new(&options.prefix),
            history,
            sink,
            client,
            live: Mutex::new(None),
            up: AtomicBool::new(false),
            publish_script: Script::new(script::PUBLISH),
            read_script: Script::new(script::READ),
            queued_bytes: AtomicUsize::new(0),
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            local: AtomicU64::new(0),
            overflowing: AtomicBool::new(false),
        });
        let (queue, jobs) = mpsc::channel(options.max_queued_publishes);
        let runtime = crate::runtime::handle();
        runtime.spawn(super::subscriber::run(Arc::clone(&inner), token.clone()));
        runtime.spawn(publish_loop(Arc::clone(&inner), jobs, token));
        Ok(Self { inner, queue })
    }

    /// Queues one broadcast (`envelope`: the event's JSON object) for Redis. Returns
    /// `false` when it was dropped: the queue is full or the event too large.
    pub fn publish(&self, channel: &str, envelope: String) -> bool {
        let inner = &self.inner;
        let size = envelope.len() + channel.len();
        if envelope.len() > MAX_MESSAGE_BYTES {
            inner.drop_one(channel, "event larger than 16 MiB");
            return false;
        }
        if inner.queued_bytes.fetch_add(size, Ordering::AcqRel) + size > MAX_QUEUED_BYTES {
            inner.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            inner.drop_one(channel, "queue for Redis full (bytes)");
            return false;
        }
        let job = Publish {
            channel: channel.to_owned(),
            envelope,
        };
        if self.queue.try_send(job).is_err() {
            inner.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            inner.drop_one(channel, "queue for Redis full");
            return false;
        }
        true
    }

    /// Connected to Redis and subscribed.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    pub fn status(&self) -> ClusterStatus {
        let inner = &self.inner;
        ClusterStatus {
            up: self.is_up(),
            published: inner.published.load(Ordering::Relaxed),
            dropped: inner.dropped.load(Ordering::Relaxed),
            local: inner.local.load(Ordering::Relaxed),
            queued: self.queue.max_capacity() - self.queue.capacity(),
        }
    }

    /// Reads `channel`'s shared position (creating its epoch if it has none) and, when
    /// `from` is given, the kept events from that `seq` on. Travels the subscription's
    /// connection, so every event published before the read was delivered before its
    /// reply. `None` when Redis is down or the reply is malformed.
    pub async fn fetch(&self, channel: &str, from: Option<u64>) -> Option<Fetched> {
        let inner = &self.inner;
        let mut live = inner.live()?;
        let history = inner.history;
        let reply: Result<Value, RedisError> = inner
            .read_script
            .key(inner.names.meta(channel))
            .key(inner.names.stream(channel))
            .arg(&*crate::history::new_epoch())
            .arg(from.map(|seq| seq.to_string()).unwrap_or_default())
            .arg(history.size.saturating_add(1))
            .arg(inner.meta_ttl_ms())
            .invoke_async(&mut live.connection)
            .await;
        match reply {
            Ok(value) => {
                let fetched =
                    script::parse_read(&value, history.size.saturating_add(1), history.max_bytes);
                if fetched.is_none() {
                    warn!(
                        channel,
                        "cluster: malformed or oversized history reply from Redis"
                    );
                }
                fetched
            }
            Err(error) => {
                debug!(channel, %error, "cluster: history read failed");
                if connection_problem(&error) {
                    live.lost.cancel();
                }
                None
            }
        }
    }
}

fn connection_problem(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
}

/// Takes broadcasts off the queue and publishes them, in order, a batch per round trip.
async fn publish_loop(
    inner: Arc<Inner>,
    mut jobs: mpsc::Receiver<Publish>,
    token: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            job = jobs.recv() => match job { Some(job) => job, None => return },
            () = token.cancelled() => return,
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let bytes: usize = batch
            .iter()
            .map(|j| j.envelope.len() + j.channel.len())
            .sum();
        inner.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        if jobs.is_empty() && inner.overflowing.swap(false, Ordering::AcqRel) {
            info!("cluster: queue for Redis drained");
        }
        let delivered_remotely = match inner.live() {
            Some(mut live) => match publish_batch(&inner, &mut live.connection, &batch).await {
                Ok(()) => true,
                Err(error) if connection_problem(&error) => {
                    warn!(%error, "cluster: publishing to Redis failed; delivering on this process");
                    live.lost.cancel();
                    false
                }
                Err(error) => {
                    // A server error (not the connection): some of the batch may have run,
                    // so it is not delivered again locally.
                    warn!(%error, dropped = batch.len(), "cluster: Redis refused a publish");
                    inner
                        .dropped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    batch.clear();
                    continue;
                }
            },
            None => false,
        };
        if delivered_remotely {
            inner
                .published
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            batch.clear();
        } else {
            inner.local.fetch_add(batch.len() as u64, Ordering::Relaxed);
            let sink = inner.sink.upgrade();
            for job in batch.drain(..) {
                if let Some(sink) = &sink {
                    sink.deliver_local(&job.channel, &job.envelope);
                }
            }
        }
    }
}

/// One `EVALSHA` per broadcast in one pipeline; loads the script and sends the batch again
/// when Redis lost its script cache (a restart): then none of the batch ran.
async fn publish_batch(
    inner: &Inner,
    connection: &mut MultiplexedConnection,
    batch: &[Publish],
) -> Result<(), RedisError> {
    let size = if inner.history.enabled() {
        inner.history.size.to_string()
    } else {
        "0".to_owned()
    };
    let stream_ttl = inner.stream_ttl_ms().max(1);
    let meta_ttl = inner.meta_ttl_ms();
    let epoch = crate::history::new_epoch();
    let mut pipe = redis::pipe();
    for job in batch {
        pipe.cmd("EVALSHA")
            .arg(inner.publish_script.get_hash())
            .arg(2)
            .arg(inner.names.meta(&job.channel))
            .arg(inner.names.stream(&job.channel))
            .arg(inner.names.publish_channel(&job.channel))
            .arg(&job.envelope)
            .arg(&*epoch)
            .arg(&size)
            .arg(stream_ttl)
            .arg(meta_ttl)
            .ignore();
    }
    match pipe.exec_async(connection).await {
        Err(error) if error.code() == Some("NOSCRIPT") => {
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(script::PUBLISH)
                .exec_async(connection)
                .await?;
            pipe.exec_async(connection).await
        }
        other => other,
    }
}
