//! Per-channel sequence numbers and the recent events a resuming client can catch up on.
//!
//! With history on, every broadcast on a channel gets the next `seq` (exactly one more than
//! the last) under the channel's `epoch`, a random name for this run of the channel's
//! numbering: a restart or a reset shows up as a new epoch. The last events are kept,
//! bounded three ways (count, bytes, age), so memory stays bounded whatever the traffic;
//! the epoch and top `seq` are kept longer than the events, so a quiet channel still
//! tells a returning client where it stands.
//!
//! Recovery is all or nothing (Centrifugo's rule): a client that names the same epoch and
//! a position whose whole gap is still kept gets exactly the missed events; anything else
//! gets none and is told so.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::options::HistoryOptions;
use crate::protocol::Since;

/// Characters of a generated epoch.
const EPOCH_LENGTH: usize = 8;

/// A new epoch: 8 random base-36 characters.
pub(crate) fn new_epoch() -> Arc<str> {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let epoch: String = (0..EPOCH_LENGTH)
        .map(|_| DIGITS[rng.random_range(0..DIGITS.len())] as char)
        .collect();
    Arc::from(epoch)
}

struct Kept {
    seq: u64,
    text: Utf8Bytes,
    at: Instant,
}

/// One channel's numbering and kept events.
pub struct ChannelHistory {
    epoch: Arc<str>,
    /// The epoch and numbering come from Redis (cluster mode), not from this process.
    shared: bool,
    /// The connection to Redis (counted by [`History::reconnected`]) over which this
    /// channel's shared position was last confirmed.
    connection: u64,
    top: u64,
    events: VecDeque<Kept>,
    bytes: usize,
}

/// Where a channel stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub epoch: Arc<str>,
    pub seq: u64,
}

impl ChannelHistory {
    fn new() -> Self {
        Self {
            epoch: new_epoch(),
            shared: false,
            connection: 0,
            top: 0,
            events: VecDeque::new(),
            bytes: 0,
        }
    }

    fn position(&self) -> Position {
        Position {
            epoch: Arc::clone(&self.epoch),
            seq: self.top,
        }
    }

    /// Keeps `text` as event `seq` (one more than the top).
    fn keep(&mut self, text: Utf8Bytes, now: Instant, limits: &HistoryOptions) {
        self.top += 1;
        self.bytes += text.len();
        self.events.push_back(Kept {
            seq: self.top,
            text,
            at: now,
        });
        self.evict(now, limits);
    }

    /// Takes the shared position `(epoch, top)` and forgets kept events.
    fn adopt(&mut self, epoch: &str, top: u64) {
        self.epoch = Arc::from(epoch);
        self.shared = true;
        self.top = top;
        self.events.clear();
        self.bytes = 0;
    }

    /// Drops what is over the count, byte or age limit, oldest first.
    fn evict(&mut self, now: Instant, limits: &HistoryOptions) {
        while let Some(oldest) = self.events.front() {
            let over = self.events.len() > limits.size
                || self.bytes > limits.max_bytes
                || now.saturating_duration_since(oldest.at) > limits.ttl;
            if !over {
                break;
            }
            self.bytes -= oldest.text.len();
            self.events.pop_front();
        }
    }
}

/// The events `since` missed, or `None` when they cannot all be given.
fn missed(channel: &ChannelHistory, since: &Since) -> Option<Vec<Utf8Bytes>> {
    if *channel.epoch != *since.epoch || since.seq > channel.top {
        return None;
    }
    if since.seq == channel.top {
        return Some(Vec::new());
    }
    let first_kept = channel.events.front()?.seq;
    if first_kept > since.seq + 1 {
        return None;
    }
    Some(
        channel
            .events
            .iter()
            .filter(|kept| kept.seq > since.seq)
            .map(|kept| kept.text.clone())
            .collect(),
    )
}

/// `envelope` (a JSON object whose last member is `timestamp`) with
/// `"seq":<seq>,"epoch":"<epoch>"` after it.
fn numbered(envelope: String, seq: u64, epoch: &str) -> Utf8Bytes {
    // In place: the envelope's closing brace gives way to the two members.
    let mut text = envelope;
    if text.ends_with('}') {
        text.pop();
    }
    text.push_str(",\"seq\":");
    text.push_str(&seq.to_string());
    text.push_str(",\"epoch\":\"");
    text.push_str(epoch);
    text.push_str("\"}");
    Utf8Bytes::from(text)
}

/// What a subscribe finds on a channel with history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub position: Position,
    /// `Some(events)` when the client resumed and every missed event is here (possibly
    /// none); `None` when it did not ask or cannot be given the whole gap.
    pub replay: Option<Vec<Utf8Bytes>>,
}

/// Every channel's history, for one manager.
pub struct History {
    limits: HistoryOptions,
    /// Cluster mode: connections to Redis so far. A channel last confirmed over an earlier
    /// one may have missed events while disconnected, so it reads Redis before answering.
    connection: u64,
    channels: HashMap<Arc<str>, ChannelHistory>,
}

impl History {
    pub fn new(limits: HistoryOptions) -> Self {
        Self {
            limits,
            connection: 0,
            channels: HashMap::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.limits.enabled()
    }

    fn channel(&mut self, name: &str) -> &mut ChannelHistory {
        if !self.channels.contains_key(name) {
            self.channels.insert(Arc::from(name), ChannelHistory::new());
        }
        self.channels
            .get_mut(name)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }

    /// Numbers one event of `channel` and keeps it. `envelope` is the event's JSON text,
    /// an object whose last member is `timestamp`; the kept (and returned) text has
    /// `"seq":<n>,"epoch":"<epoch>"` after it.
    pub fn record(&mut self, channel: &str, envelope: String, now: Instant) -> Utf8Bytes {
        let limits = self.limits;
        let history = self.channel(channel);
        let text = numbered(envelope, history.top + 1, &history.epoch);
        history.keep(text.clone(), now, &limits);
        text
    }

    /// Cluster mode, Redis down: numbers and keeps one event under a local epoch — a new
    /// one if the channel's numbering was shared, so no client resumes into a hole.
    pub fn record_local(&mut self, channel: &str, envelope: &str, now: Instant) -> Utf8Bytes {
        let history = self.channel(channel);
        if history.shared {
            history.epoch = new_epoch();
            history.shared = false;
            history.events.clear();
            history.bytes = 0;
        }
        self.record(channel, envelope.to_owned(), now)
    }

    /// Cluster mode: keeps event `seq` of the shared `epoch` as it came from Redis. Returns
    /// `false` for one already counted (its `seq` is not above the top): a duplicate, not
    /// delivered again. A gap or another epoch resets the channel to the event's position
    /// (what was missed stays readable in Redis).
    pub fn record_shared(
        &mut self,
        channel: &str,
        seq: u64,
        epoch: &str,
        text: Utf8Bytes,
        now: Instant,
    ) -> bool {
        let limits = self.limits;
        let connection = self.connection;
        let history = self.channel(channel);
        // This event came over the current connection: from here on nothing is missed.
        history.connection = connection;
        if history.shared && *history.epoch == *epoch {
            if seq <= history.top {
                return false;
            }
            if seq != history.top + 1 {
                history.adopt(epoch, seq - 1);
            }
        } else {
            history.adopt(epoch, seq.saturating_sub(1));
        }
        history.keep(text, now, &limits);
        true
    }

    /// Cluster mode: whether `channel`'s position is the shared one, and (for a resume) the
    /// whole gap after `since` is kept here.
    pub fn serves_locally(&mut self, channel: &str, since: Option<&Since>, now: Instant) -> bool {
        let limits = self.limits;
        let connection = self.connection;
        let Some(history) = self.channels.get_mut(channel) else {
            return false;
        };
        if !history.shared || history.connection != connection {
            return false;
        }
        history.evict(now, &limits);
        since.is_none_or(|since| missed(history, since).is_some())
    }

    /// Cluster mode: where `channel` stands and what a resume from `since` missed, from a
    /// read of Redis (`fetched`) and the events delivered since. Every event published
    /// before the read was delivered before it returned, so the kept top is at least the
    /// read's unless a connection was lost in between: then the read's position wins.
    pub fn reconcile(
        &mut self,
        channel: &str,
        fetched: &crate::cluster::Fetched,
        since: Option<&Since>,
        now: Instant,
    ) -> Resume {
        let limits = self.limits;
        let connection = self.connection;
        let history = self.channel(channel);
        history.evict(now, &limits);
        if !(history.shared && *history.epoch == *fetched.epoch && history.top >= fetched.top) {
            history.adopt(&fetched.epoch, fetched.top);
        }
        history.connection = connection;
        let replay = since.and_then(|since| {
            if *since.epoch != *fetched.epoch || since.seq > history.top {
                return None;
            }
            let mut replay = Vec::new();
            let mut next = since.seq + 1;
            let mut bytes = 0usize;
            for (seq, text) in &fetched.events {
                if *seq < next || *seq > fetched.top {
                    continue;
                }
                if *seq != next {
                    return None;
                }
                bytes += text.len();
                replay.push(text.clone());
                next += 1;
            }
            for kept in &history.events {
                if kept.seq < next {
                    continue;
                }
                if kept.seq != next {
                    return None;
                }
                bytes += kept.text.len();
                replay.push(kept.text.clone());
                next += 1;
            }
            (next == history.top + 1 && bytes <= limits.max_bytes).then_some(replay)
        });
        Resume {
            position: history.position(),
            replay,
        }
    }

    /// Where `channel` stands and, for a client resuming from `since`, what it missed.
    pub fn resume(&mut self, channel: &str, since: Option<&Since>, now: Instant) -> Resume {
        let limits = self.limits;
        let history = self.channel(channel);
        history.evict(now, &limits);
        Resume {
            position: history.position(),
            replay: since.and_then(|since| missed(history, since)),
        }
    }

    /// Cluster mode: a new connection to Redis is up. Channels answer from here again only
    /// once an event or a read over it confirms where they stand.
    pub fn reconnected(&mut self) {
        self.connection += 1;
    }

    /// Bytes of kept events across all channels.
    pub fn kept_bytes(&self) -> usize {
        self.channels.values().map(|c| c.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const ENVELOPE: &str = r#"{"type":"event","channel":"files","data":1,"timestamp":"t"}"#;

    fn history(size: usize) -> History {
        History::new(HistoryOptions {
            size,
            ttl: Duration::from_secs(60),
            max_bytes: 1 << 20,
        })
    }

    fn since(position: &Position, seq: u64) -> Since {
        Since {
            epoch: position.epoch.to_string(),
            seq,
        }
    }

    #[test]
    fn numbers_events_one_by_one_after_the_timestamp() {
        let mut h = history(10);
        let now = Instant::now();
        let first = h.record("files", ENVELOPE.to_owned(), now);
        let epoch = h.resume("files", None, now).position.epoch;
        assert_eq!(
            first.as_str(),
            format!(
                r#"{{"type":"event","channel":"files","data":1,"timestamp":"t","seq":1,"epoch":"{epoch}"}}"#
            )
        );
        h.record("files", ENVELOPE.to_owned(), now);
        assert_eq!(h.resume("files", None, now).position.seq, 2);
        assert_eq!(h.resume("other", None, now).position.seq, 0);
        assert_ne!(h.resume("other", None, now).position.epoch, epoch);
    }

    #[test]
    fn recovers_exactly_the_size_of_history_and_not_one_more() {
        let mut h = history(3);
        let now = Instant::now();
        let start = h.resume("files", None, now).position;
        for _ in 0..4 {
            h.record("files", ENVELOPE.to_owned(), now);
        }
        let missed_three = h.resume("files", Some(&since(&start, 1)), now);
        assert_eq!(missed_three.replay.map(|r| r.len()), Some(3));
        let missed_four = h.resume("files", Some(&since(&start, 0)), now);
        assert_eq!(missed_four.replay, None, "never partial");
        let up_to_date = h.resume("files", Some(&since(&start, 4)), now);
        assert_eq!(up_to_date.replay, Some(Vec::new()));
    }

    #[test]
    fn a_foreign_epoch_or_a_future_seq_is_not_recovered() {
        let mut h = history(3);
        let now = Instant::now();
        h.record("files", ENVELOPE.to_owned(), now);
        let foreign = Since {
            epoch: "other".into(),
            seq: 1,
        };
        assert_eq!(h.resume("files", Some(&foreign), now).replay, None);
        let position = h.resume("files", None, now).position;
        assert_eq!(
            h.resume("files", Some(&since(&position, 2)), now).replay,
            None
        );
    }

    #[test]
    fn events_expire_but_the_position_stays() {
        let mut h = History::new(HistoryOptions {
            size: 10,
            ttl: Duration::from_secs(5),
            max_bytes: 1 << 20,
        });
        let start = Instant::now();
        let position = h.resume("files", None, start).position;
        h.record("files", ENVELOPE.to_owned(), start);
        let later = start + Duration::from_secs(6);
        let resumed = h.resume("files", Some(&since(&position, 0)), later);
        assert_eq!(resumed.replay, None);
        assert_eq!(resumed.position.seq, 1);
        assert_eq!(h.kept_bytes(), 0);
        let current = h.resume("files", Some(&since(&position, 1)), later);
        assert_eq!(current.replay, Some(Vec::new()), "nothing missed");
    }

    #[test]
    fn the_byte_cap_bounds_what_is_kept() {
        let mut h = History::new(HistoryOptions {
            size: 1000,
            ttl: Duration::from_secs(60),
            max_bytes: 250,
        });
        let now = Instant::now();
        for _ in 0..100 {
            h.record("files", ENVELOPE.to_owned(), now);
        }
        assert!(h.kept_bytes() <= 250, "{}", h.kept_bytes());
        assert!(h.kept_bytes() > 0);
    }

    fn shared_text(seq: u64) -> Utf8Bytes {
        Utf8Bytes::from(format!("{{\"n\":{seq}}}"))
    }

    fn fetched(epoch: &str, top: u64, from: u64) -> crate::cluster::Fetched {
        crate::cluster::Fetched {
            epoch: epoch.into(),
            top,
            events: (from..=top).map(|seq| (seq, shared_text(seq))).collect(),
        }
    }

    #[test]
    fn shared_events_dedupe_and_a_gap_resets_the_mirror() {
        let mut h = history(10);
        let now = Instant::now();
        h.reconnected();
        assert!(h.record_shared("files", 5, "abc", shared_text(5), now));
        assert!(h.record_shared("files", 6, "abc", shared_text(6), now));
        assert!(
            !h.record_shared("files", 6, "abc", shared_text(6), now),
            "duplicate"
        );
        let since = Since {
            epoch: "abc".into(),
            seq: 5,
        };
        assert!(h.serves_locally("files", Some(&since), now));
        assert!(
            h.record_shared("files", 9, "abc", shared_text(9), now),
            "after a gap"
        );
        assert!(
            !h.serves_locally("files", Some(&since), now),
            "the gap is not kept here"
        );
        assert_eq!(h.resume("files", None, now).position.seq, 9);
        h.reconnected();
        assert!(
            !h.serves_locally("files", None, now),
            "stale after a reconnection"
        );
        assert!(h.record_shared("files", 10, "abc", shared_text(10), now));
        assert!(
            h.serves_locally("files", None, now),
            "confirmed by an event"
        );
    }

    #[test]
    fn a_read_of_redis_and_the_mirror_make_one_gap_or_none() {
        let mut h = history(10);
        let now = Instant::now();
        // Delivered while the read was in flight: 8 and 9 are in the mirror.
        assert!(h.record_shared("files", 8, "abc", shared_text(8), now));
        assert!(h.record_shared("files", 9, "abc", shared_text(9), now));
        let since = Since {
            epoch: "abc".into(),
            seq: 3,
        };
        let resume = h.reconcile("files", &fetched("abc", 7, 4), Some(&since), now);
        assert_eq!(resume.position.seq, 9);
        let replay = resume.replay.expect("recovered");
        assert_eq!(replay, (4..=9).map(shared_text).collect::<Vec<_>>());
        // A hole in what Redis returned: nothing.
        let mut holed = fetched("abc", 7, 4);
        holed.events.remove(1);
        assert_eq!(h.reconcile("files", &holed, Some(&since), now).replay, None);
        // Another epoch in Redis: the mirror takes it, the resume is not recovered.
        let other = h.reconcile("files", &fetched("xyz", 2, 1), Some(&since), now);
        assert_eq!((other.position.seq, other.replay), (2, None));
        assert_eq!(&*other.position.epoch, "xyz");
    }

    #[test]
    fn local_numbering_during_an_outage_takes_a_new_epoch() {
        let mut h = history(10);
        let now = Instant::now();
        assert!(h.record_shared("files", 4, "abc", shared_text(4), now));
        h.record_local("files", ENVELOPE, now);
        let position = h.resume("files", None, now).position;
        assert_ne!(&*position.epoch, "abc");
        let since = Since {
            epoch: "abc".into(),
            seq: 4,
        };
        assert_eq!(h.resume("files", Some(&since), now).replay, None);
        // Redis is back: its epoch returns with the next event.
        assert!(h.record_shared("files", 5, "abc", shared_text(5), now));
        assert_eq!(&*h.resume("files", None, now).position.epoch, "abc");
    }
}
