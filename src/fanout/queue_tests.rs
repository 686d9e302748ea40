use super::*;
use crate::manager::CLOSE_NORMAL;

fn member(key: u64, outbox: &Arc<Outbox>) -> Member {
    Member {
        key: RecordKey::for_tests(key),
        id: Arc::from(format!("n{key}")),
        outbox: Arc::clone(outbox),
    }
}

fn broadcast(text: &str) -> Job {
    Job::Broadcast {
        channel: Arc::from("files"),
        text: Utf8Bytes::from(text.to_owned()),
    }
}

fn subscribe(member: Member) -> Job {
    Job::Subscribe {
        channel: Arc::from("files"),
        member,
        reply: None,
        replay: Vec::new(),
    }
}

#[test]
fn submitted_jobs_wait_for_the_task() {
    let outbox = Arc::new(Outbox::new(1 << 20));
    let fanout = FanOut::default();
    let stats = Stats::default();
    fanout.submit(subscribe(member(1, &outbox)), &stats);
    fanout.submit(broadcast("a"), &stats);
    assert_eq!(fanout.pending(), 2);
    assert_eq!(outbox.queued_bytes(), 0);
    assert_eq!(fanout.drain(&stats), 2);
    assert_eq!(crate::fanout::outbox::queued_texts_now(&outbox), ["a"]);
}

#[test]
fn a_subscription_takes_effect_between_earlier_and_later_broadcasts() {
    let outbox = Arc::new(Outbox::new(1 << 20));
    let fanout = FanOut::default();
    let stats = Stats::default();
    fanout.submit(broadcast("before"), &stats);
    fanout.submit(subscribe(member(1, &outbox)), &stats);
    fanout.submit(broadcast("after"), &stats);
    fanout.submit(
        Job::Unsubscribe {
            channel: Arc::from("files"),
            member: member(1, &outbox),
            after: Some(Utf8Bytes::from_static("bye")),
        },
        &stats,
    );
    fanout.submit(broadcast("gone"), &stats);
    fanout.drain(&stats);
    assert_eq!(
        crate::fanout::outbox::queued_texts_now(&outbox),
        ["after", "bye"]
    );
}

#[test]
fn a_send_and_a_close_follow_earlier_broadcasts() {
    let outbox = Arc::new(Outbox::new(1 << 20));
    let fanout = FanOut::default();
    let stats = Stats::default();
    fanout.submit(subscribe(member(1, &outbox)), &stats);
    fanout.submit(broadcast("event"), &stats);
    fanout.submit(
        Job::Send {
            member: member(1, &outbox),
            text: Utf8Bytes::from_static("direct"),
        },
        &stats,
    );
    fanout.submit(
        Job::Close {
            member: member(1, &outbox),
            reason: CloseReason::Server { code: CLOSE_NORMAL },
        },
        &stats,
    );
    fanout.submit(broadcast("late"), &stats);
    fanout.drain(&stats);
    assert_eq!(
        outbox.closed(),
        Some(CloseReason::Server { code: CLOSE_NORMAL })
    );
    assert_eq!(
        crate::fanout::outbox::queued_texts_now(&outbox),
        ["event", "direct"]
    );
    assert_eq!(stats.snapshot().messages_sent, 1);
}

#[test]
fn a_forgotten_connection_leaves_every_channel() {
    let outbox = Arc::new(Outbox::new(1 << 20));
    let fanout = FanOut::default();
    let stats = Stats::default();
    fanout.submit(subscribe(member(7, &outbox)), &stats);
    fanout.submit(
        Job::Forget {
            key: RecordKey::for_tests(7),
        },
        &stats,
    );
    fanout.drain(&stats);
    assert!(lock(&fanout.turn).channels.is_empty());
    assert!(lock(&fanout.turn).memberships.is_empty());
}

fn queued(fanout: &FanOut, job: Job, stats: &Stats) {
    assert_eq!(fanout.submit(job, stats), Submitted::Queued);
}

#[test]
fn a_broadcast_exactly_at_the_byte_bound_is_queued_and_one_byte_over_is_dropped_and_counted() {
    let outbox = Arc::new(Outbox::new(1 << 20));
    let fanout = FanOut::new(10);
    let stats = Stats::default();
    queued(&fanout, subscribe(member(1, &outbox)), &stats);
    queued(&fanout, broadcast("abcd"), &stats);
    queued(&fanout, broadcast("efghij"), &stats);
    assert_eq!(fanout.backlog(), (3, 10), "exactly at the bound");
    assert_eq!(
        fanout.backlog_on_the_wire(),
        10 + 2 + 2,
        "what a subscriber's outbox would take: payloads and frame headers"
    );
    assert_eq!(fanout.submit(broadcast("k"), &stats), Submitted::Dropped);
    assert_eq!(fanout.backlog(), (3, 10), "the refused one is not queued");
    assert_eq!(stats.snapshot().dropped_broadcasts, 1);

    fanout.drain(&stats);
    assert_eq!(fanout.backlog(), (0, 0));
    assert_eq!(fanout.backlog_on_the_wire(), 0);
    assert_eq!(
        crate::fanout::outbox::queued_texts_now(&outbox),
        ["abcd", "efghij"]
    );
    // Applied broadcasts free their room: a whole bound's worth fits again, one byte
    // more does not.
    queued(&fanout, broadcast("0123456789"), &stats);
    assert_eq!(fanout.submit(broadcast("x"), &stats), Submitted::Dropped);
    assert_eq!(fanout.backlog(), (1, 10));
    assert_eq!(stats.snapshot().dropped_broadcasts, 2);
}

#[test]
fn a_broadcast_larger_than_the_whole_bound_is_dropped_even_when_the_queue_is_empty() {
    let fanout = FanOut::new(3);
    let stats = Stats::default();
    assert_eq!(fanout.submit(broadcast("four"), &stats), Submitted::Dropped);
    assert_eq!(fanout.backlog(), (0, 0));
    assert_eq!(stats.snapshot().dropped_broadcasts, 1);
    assert!(fanout.is_idle());
}

#[test]
fn every_job_but_a_broadcast_queues_past_the_bound_and_is_not_counted_in_it() {
    let outbox = Arc::new(Outbox::new(1 << 20));
    let fanout = FanOut::new(1);
    let stats = Stats::default();
    queued(&fanout, subscribe(member(1, &outbox)), &stats);
    queued(&fanout, broadcast("a"), &stats);
    assert_eq!(fanout.submit(broadcast("b"), &stats), Submitted::Dropped);
    queued(
        &fanout,
        Job::Send {
            member: member(1, &outbox),
            text: Utf8Bytes::from("a send far larger than the bound".to_owned()),
        },
        &stats,
    );
    queued(
        &fanout,
        Job::Unsubscribe {
            channel: Arc::from("files"),
            member: member(1, &outbox),
            after: Some(Utf8Bytes::from_static("bye")),
        },
        &stats,
    );
    queued(&fanout, subscribe(member(1, &outbox)), &stats);
    queued(
        &fanout,
        Job::Forget {
            key: RecordKey::for_tests(1),
        },
        &stats,
    );
    queued(
        &fanout,
        Job::Close {
            member: member(1, &outbox),
            reason: CloseReason::Server { code: CLOSE_NORMAL },
        },
        &stats,
    );
    assert_eq!(fanout.backlog(), (7, 1));
    assert_eq!(stats.snapshot().dropped_broadcasts, 1);
    assert_eq!(fanout.drain(&stats), 7);
    assert_eq!(
        crate::fanout::outbox::queued_texts_now(&outbox),
        ["a", "a send far larger than the bound", "bye"]
    );
    assert_eq!(
        outbox.closed(),
        Some(CloseReason::Server { code: CLOSE_NORMAL })
    );
}

#[test]
fn a_producer_never_applies_a_job_nor_waits_for_the_turn() {
    let outbox = Arc::new(Outbox::new(1 << 30));
    let fanout = FanOut::default();
    let stats = Stats::default();
    queued(&fanout, subscribe(member(1, &outbox)), &stats);
    fanout.drain(&stats);
    // The fan-out task is mid-delivery: it holds the turn. A producer that took the
    // turn itself would deadlock here.
    let held = lock(&fanout.turn);
    let total = 3 * 4096;
    for n in 0..total {
        queued(&fanout, broadcast(&n.to_string()), &stats);
    }
    assert_eq!(fanout.pending(), total);
    assert_eq!(
        outbox.queued_bytes(),
        0,
        "nothing delivered by the producer"
    );
    drop(held);
    assert_eq!(fanout.drain(&stats), total);
    let received: Vec<usize> = crate::fanout::outbox::queued_texts_now(&outbox)
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect();
    assert_eq!(received, (0..total).collect::<Vec<_>>());
    assert_eq!(stats.snapshot().dropped_broadcasts, 0);
}

#[test]
fn drained_resolves_at_once_when_idle_and_otherwise_once_earlier_jobs_are_applied() {
    use futures_util::FutureExt;

    let outbox = Arc::new(Outbox::new(1 << 20));
    let fanout = FanOut::default();
    let stats = Stats::default();
    assert_eq!(fanout.drained().now_or_never(), Some(()), "idle: at once");
    queued(&fanout, subscribe(member(1, &outbox)), &stats);
    queued(&fanout, broadcast("a"), &stats);
    let mut waiting = Box::pin(fanout.drained());
    assert!(waiting.as_mut().now_or_never().is_none());
    // A job queued after the call is applied in the same drain: it does not hold the
    // waiter back once the queue is empty.
    queued(&fanout, broadcast("b"), &stats);
    assert!(waiting.as_mut().now_or_never().is_none());
    fanout.drain(&stats);
    assert_eq!(waiting.now_or_never(), Some(()));
    assert_eq!(crate::fanout::outbox::queued_texts_now(&outbox), ["a", "b"]);
    assert!(fanout.is_idle());
}

#[tokio::test]
async fn drained_is_woken_by_the_applier_on_another_thread() {
    let outbox = Arc::new(Outbox::new(1 << 20));
    let fanout = Arc::new(FanOut::default());
    let stats = Arc::new(Stats::default());
    queued(&fanout, subscribe(member(1, &outbox)), &stats);
    for n in 0..1000 {
        queued(&fanout, broadcast(&n.to_string()), &stats);
    }
    let waiter = {
        let fanout = Arc::clone(&fanout);
        tokio::spawn(async move { fanout.drained().await })
    };
    let applier = {
        let (fanout, stats) = (Arc::clone(&fanout), Arc::clone(&stats));
        std::thread::spawn(move || fanout.drain(&stats))
    };
    let applied = applier.join().unwrap_or_default();
    assert_eq!(applied, 1001);
    let woken = tokio::time::timeout(Duration::from_secs(5), waiter).await;
    assert!(woken.is_ok(), "drained() was not woken");
    assert!(outbox.queued_bytes() > 0);
}

#[test]
fn refusals_are_reported_at_most_once_a_second_with_the_count_since_the_last_report() {
    let mut log = DropLog::default();
    let start = Instant::now();
    assert_eq!(
        log.note(start),
        Some(1),
        "the first refusal is reported at once"
    );
    assert_eq!(log.note(start + Duration::from_millis(10)), None);
    assert_eq!(log.note(start + Duration::from_millis(999)), None);
    assert_eq!(log.note(start + Duration::from_secs(1)), Some(3));
    assert_eq!(log.note(start + Duration::from_millis(1500)), None);
    assert_eq!(log.note(start + Duration::from_secs(5)), Some(2));
}

#[test]
fn a_broadcast_to_thousands_of_subscribers_reaches_each_once_in_order() {
    let fanout = FanOut::default();
    let stats = Stats::default();
    let outboxes: Vec<Arc<Outbox>> = (0..3 * 1024)
        .map(|_| Arc::new(Outbox::new(1 << 20)))
        .collect();
    for (key, outbox) in outboxes.iter().enumerate() {
        fanout.submit(subscribe(member(key as u64 + 1, outbox)), &stats);
    }
    for text in ["a", "b", "c"] {
        fanout.submit(broadcast(text), &stats);
    }
    fanout.drain(&stats);
    for outbox in &outboxes {
        assert_eq!(
            crate::fanout::outbox::queued_texts_now(outbox),
            ["a", "b", "c"]
        );
    }
}

#[test]
fn applying_in_slices_reaches_every_job_in_order_and_reports_the_end() {
    let outbox = Arc::new(Outbox::new(1 << 30));
    let fanout = FanOut::default();
    let stats = Stats::default();
    fanout.submit(subscribe(member(1, &outbox)), &stats);
    for index in 0..1000 {
        fanout.submit(broadcast(&index.to_string()), &stats);
    }
    let mut slices = 0;
    while fanout.apply_for(&stats, std::time::Duration::ZERO) {
        slices += 1;
        assert!(slices <= 1001, "every slice applies at least one run");
    }
    assert!(slices > 1, "a zero budget ends each slice after one run");
    assert!(fanout.is_idle());
    let received: Vec<usize> = crate::fanout::outbox::queued_texts_now(&outbox)
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect();
    assert_eq!(received, (0..1000).collect::<Vec<_>>());
}
