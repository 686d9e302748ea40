use std::sync::Arc;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::*;
use crate::fanout::outbox::Outbox;
use crate::gate::{AuthRequest, AuthVerdict, ConnectionInfo, Decision};

fn manager_with(ids: &[&str]) -> Arc<Manager> {
    let manager = Manager::new(Options::default());
    for id in ids {
        manager.add_js_connection(id);
    }
    manager
}

#[test]
fn subscribe_message_subscribes_and_answers() {
    let manager = manager_with(&["a"]);
    let reply =
        manager.handle_client_text("a", r#"{"type":"subscribe","channel":"files","id":"7"}"#);
    assert_eq!(
        reply.reply().as_deref(),
        Some(r#"{"type":"response","id":"7","data":{"status":"subscribed","channel":"files"}}"#)
    );
    assert_eq!(manager.subscriber_ids("files"), ["a"]);
}

#[test]
fn subscription_limit_answers_with_a_code_and_keeps_the_connection() {
    let manager = Manager::new(Options {
        max_subscriptions_per_connection: 1,
        ..Options::default()
    });
    manager.add_js_connection("a");
    manager.handle_client_text("a", r#"{"type":"subscribe","channel":"one"}"#);
    let reply = manager
        .handle_client_text("a", r#"{"type":"subscribe","channel":"two","id":2}"#)
        .reply()
        .unwrap_or_default();
    assert!(reply.contains(r#""code":"SUBSCRIPTION_LIMIT""#), "{reply}");
    assert!(reply.contains(r#""id":2"#));
    assert!(manager.lookup("a").is_some());
    assert_eq!(manager.channels_of("a").len(), 1);
}

struct RefuseAll;

impl Gatekeeper for RefuseAll {
    fn authenticate(&self, _: AuthRequest) -> Option<Decision<AuthVerdict>> {
        None
    }
    fn authorize_subscribe(&self, _: ConnectionInfo, _: String) -> Option<Decision<bool>> {
        Some(Box::pin(async { false }))
    }
    fn authorizes_subscriptions(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_checked_subscribe_waits_for_authorization_and_a_refusal_is_forbidden() {
    let manager = manager_with(&["a"]);
    manager.set_gatekeeper(Arc::new(RefuseAll));
    let handled = manager.handle_client_text("a", r#"{"type":"subscribe","channel":"x","id":1}"#);
    let Handled::Authorize(pending) = handled else {
        panic!("expected an authorization step, got {handled:?}");
    };
    let reply = manager.authorize(pending).await.reply().unwrap_or_default();
    assert!(reply.contains(r#""code":"FORBIDDEN""#), "{reply}");
    assert!(manager.channels_of("a").is_empty());
}

#[test]
fn the_rate_limit_answers_once_then_drops_then_closes() {
    let manager = Manager::new(Options {
        max_messages_per_second: 1,
        ..Options::default()
    });
    manager.add_js_connection("a");
    let mut bucket = manager.new_rate_limiter();
    assert!(matches!(
        manager.rate_check("a", &mut bucket),
        Handled::Nothing
    ));
    assert!(matches!(
        manager.rate_check("a", &mut bucket),
        Handled::Nothing
    ));
    let Handled::Reply(reply) = manager.rate_check("a", &mut bucket) else {
        panic!("expected a RATE_LIMITED reply");
    };
    assert!(reply.contains("RATE_LIMITED"));
    assert!(matches!(
        manager.rate_check("a", &mut bucket),
        Handled::Dropped
    ));
    assert!(matches!(
        manager.rate_check("a", &mut bucket),
        Handled::Close(POLICY_VIOLATION)
    ));
}

#[test]
fn connection_slots_stop_at_the_limit_and_come_back() {
    let manager = Manager::new(Options {
        max_connections: 1,
        ..Options::default()
    });
    let slot = manager.reserve_connection();
    assert!(slot.is_some());
    assert!(manager.reserve_connection().is_none());
    drop(slot);
    assert!(manager.reserve_connection().is_some());
}

#[test]
fn messages_from_a_removed_connection_change_nothing() {
    let manager = manager_with(&[]);
    assert!(matches!(
        manager.handle_client_text("gone", r#"{"type":"subscribe","channel":"files"}"#),
        Handled::Nothing
    ));
    assert_eq!(manager.gauges().counts.channels, 0);
}

#[test]
fn native_replies_and_events_travel_one_ordered_path() {
    let manager = manager_with(&["js"]);
    let outbox = Arc::new(Outbox::new(1 << 20));
    manager.add_native_connection("native", &outbox, None);
    manager.publish("files", Utf8Bytes::from_static("early"));
    let handled =
        manager.handle_client_text("native", r#"{"type":"subscribe","channel":"files","id":1}"#);
    assert!(matches!(handled, Handled::Nothing));
    assert_eq!(
        manager.subscribe("js", "files").map(|c| c.key),
        manager.lookup("js").map(|l| l.0)
    );
    assert_eq!(
        manager.broadcast_targets("files"),
        BroadcastTargets { js: 1, native: 1 }
    );
    manager.publish("files", Utf8Bytes::from_static("late"));
    manager.fanout.drain(&manager.stats);
    assert_eq!(
        crate::fanout::outbox::queued_texts_now(&outbox),
        [
            r#"{"type":"response","id":1,"data":{"status":"subscribed","channel":"files"}}"#,
            "late"
        ]
    );
}

#[test]
fn removing_a_native_connection_closes_it_after_earlier_broadcasts() {
    let manager = manager_with(&[]);
    let outbox = Arc::new(Outbox::new(1 << 20));
    manager.add_native_connection("n", &outbox, None);
    manager.subscribe("n", "files");
    manager.publish("files", Utf8Bytes::from_static("before"));
    assert_eq!(manager.remove_connection("n"), Some(Removed::Native));
    manager.fanout.drain(&manager.stats);
    assert_eq!(
        outbox.closed(),
        Some(CloseReason::Server { code: CLOSE_NORMAL })
    );
    assert_eq!(crate::fanout::outbox::queued_texts_now(&outbox), ["before"]);
}

#[test]
fn publish_counts_a_slow_consumer_once() {
    let manager = manager_with(&[]);
    let outbox = Arc::new(Outbox::new(8));
    manager.add_native_connection("slow", &outbox, None);
    manager.subscribe("slow", "files");
    // One run at a time: the first two find the queue at or under the cap, the third
    // over it (one run is pushed whole, whatever it holds).
    for _ in 0..4 {
        manager.publish("files", Utf8Bytes::from_static("12345"));
        manager.fanout.drain(&manager.stats);
    }
    assert_eq!(manager.stats().snapshot().slow_consumer_disconnects, 1);
    assert_eq!(outbox.closed(), Some(CloseReason::SlowConsumer));
}

#[test]
fn health_ticks_split_by_transport() {
    let manager = manager_with(&["js"]);
    let outbox = Arc::new(Outbox::new(1024));
    manager.add_native_connection("native", &outbox, None);
    manager.health_tick_native();
    manager.health_tick_native();
    assert_eq!(outbox.closed(), Some(CloseReason::Gone));
    assert!(manager.lookup("js").is_some());
    let first = manager.health_tick_js();
    assert_eq!(first.to_ping.len(), 1);
    assert!(first.dead.is_empty());
    let second = manager.health_tick_js();
    assert_eq!(second.dead.len(), 1);
    assert_eq!(manager.stats().snapshot().dead_peers_removed, 2);
}

#[tokio::test]
async fn shutdown_closes_native_connections_after_pending_broadcasts_then_waits_for_tasks() {
    let manager = manager_with(&["js"]);
    let outbox = Arc::new(Outbox::new(1 << 20));
    manager.add_native_connection("n", &outbox, None);
    manager.subscribe("n", "files");
    manager.publish("files", Utf8Bytes::from_static("last"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let token = manager.shutdown_token();
    manager.spawn(async move {
        token.cancelled().await;
        let _ = rx.await;
    });
    let js = manager.begin_shutdown().unwrap_or_default();
    assert_eq!(js.len(), 1);
    assert!(
        manager.begin_shutdown().is_none(),
        "a second call does nothing"
    );
    assert_eq!(manager.state(), State::Closing);
    assert_eq!(
        outbox.closed(),
        Some(CloseReason::Server {
            code: CLOSE_GOING_AWAY
        })
    );
    assert_eq!(
        outbox.next_work().await,
        crate::fanout::outbox::Work::Write,
        "the close frame waits for the connection's task"
    );
    let closed = manager.closed();
    tokio::pin!(closed);
    let early = tokio::time::timeout(std::time::Duration::ZERO, &mut closed).await;
    assert!(early.is_err(), "a task is still running");
    let _ = tx.send(());
    closed.await;
    assert_eq!(manager.state(), State::Closed);
}

fn invocation(handled: Handled) -> Invocation {
    match handled {
        Handled::Invoke(invocation) => invocation,
        other => panic!("expected an invocation, got {other:?}"),
    }
}

#[test]
fn a_call_is_answered_with_its_result_and_a_second_answer_is_ignored() {
    let manager = manager_with(&["a"]);
    manager.set_handler("sum", true);
    let call = invocation(manager.handle_client_text(
        "a",
        r#"{"type":"invoke","id":"x","channel":"sum","data":[1]}"#,
    ));
    assert_eq!(call.name, "sum");
    assert_eq!(call.data.as_deref(), Some("[1]"));
    let ticket = call.ticket.expect("an invoke with an id is answered");
    assert_eq!(
        manager.complete(ticket, CallOutcome::Returned(Some("3".into()))),
        Some(r#"{"type":"response","id":"x","data":3}"#.to_owned())
    );
    assert_eq!(manager.complete(ticket, CallOutcome::Returned(None)), None);
    assert_eq!(manager.pending_requests(), 0);
}

#[test]
fn calls_beyond_the_in_flight_limit_are_busy_until_one_finishes() {
    let manager = Manager::new(Options {
        max_pending_requests_per_connection: 1,
        ..Options::default()
    });
    manager.add_js_connection("a");
    manager.set_handler("h", true);
    let text = r#"{"type":"request","id":1,"handler":"h"}"#;
    let first = invocation(manager.handle_client_text("a", text));
    let busy = manager
        .handle_client_text("a", text)
        .reply()
        .unwrap_or_default();
    assert!(busy.contains(r#""code":"BUSY""#), "{busy}");
    let ticket = first.ticket.expect("a request is answered");
    manager.complete(ticket, CallOutcome::Failed("no".into()));
    assert!(matches!(
        manager.handle_client_text("a", text),
        Handled::Invoke(_)
    ));
}

#[test]
fn sends_and_unregistered_names_follow_their_kind() {
    let manager = manager_with(&["a"]);
    assert_eq!(
        manager
            .handle_client_text("a", r#"{"type":"request","id":"9","handler":"nope"}"#)
            .reply()
            .as_deref(),
        Some(r#"{"type":"response","id":"9","data":{"error":"No handler for request type"}}"#)
    );
    assert!(matches!(
        manager.handle_client_text("a", r#"{"type":"send","channel":"nope"}"#),
        Handled::Nothing
    ));
    manager.set_handler("log", true);
    let send = invocation(manager.handle_client_text("a", r#"{"type":"send","channel":"log"}"#));
    assert_eq!(send.ticket, None);
    manager.set_handler("log", false);
    let gone = manager
        .handle_client_text("a", r#"{"type":"invoke","id":1,"channel":"log"}"#)
        .reply()
        .unwrap_or_default();
    assert!(gone.contains(r#""code":"NO_HANDLER""#), "{gone}");
}

#[test]
fn a_call_that_outlives_the_timeout_is_answered_timeout_through_the_js_inbox() {
    let manager = Manager::new(Options {
        request_timeout: Some(std::time::Duration::from_millis(100)),
        ..Options::default()
    });
    manager.add_js_connection("a");
    manager.set_handler("slow", true);
    let call =
        invocation(manager.handle_client_text("a", r#"{"type":"invoke","id":5,"channel":"slow"}"#));
    // The timer runs on the manager's runtime: poll its inbox with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let delivered = loop {
        if let Some(delivery) = manager.take_js_deliveries().pop() {
            break delivery;
        }
        assert!(std::time::Instant::now() < deadline, "no timeout answer");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let reply = delivered.handled.reply().unwrap_or_default();
    assert!(reply.contains(r#""code":"TIMEOUT""#), "{reply}");
    let ticket = call.ticket.expect("answered");
    assert_eq!(manager.complete(ticket, CallOutcome::Returned(None)), None);
}
