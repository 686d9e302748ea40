use super::*;
use crate::manager::{CLOSE_GOING_AWAY, CLOSE_NORMAL};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn text(len: usize) -> Frame {
    Frame::text("x".repeat(len))
}

/// Wire size of a text frame with a payload under 126 bytes.
fn wire(len: usize) -> usize {
    len + 2
}

/// A connected loopback pair: the server side for an outbox, the client side to read.
async fn socket_pair() -> (Arc<TcpStream>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
    let (server, _) = accepted.expect("accept");
    (Arc::new(server), client.expect("connect"))
}

#[test]
fn without_a_socket_admits_data_up_to_the_cap_exactly() {
    let outbox = Outbox::new(wire(6) + wire(4));
    assert_eq!(outbox.push(text(6)), Push::Queued);
    assert_eq!(outbox.push(text(4)), Push::Queued);
    assert_eq!(outbox.queued_bytes(), wire(6) + wire(4));
    assert_eq!(outbox.closed(), None);
}

#[test]
fn a_message_finding_the_queue_over_the_cap_cuts_the_connection_and_drops_what_waits() {
    let outbox = Outbox::new(wire(6) + wire(4) - 1);
    assert_eq!(outbox.push(text(6)), Push::Queued);
    assert_eq!(
        outbox.push(text(4)),
        Push::Queued,
        "under the cap when it came: queued, now one byte over"
    );
    assert_eq!(outbox.push(text(1)), Push::OverCap);
    assert_eq!(outbox.closed(), Some(CloseReason::SlowConsumer));
    assert_eq!(outbox.push(text(1)), Push::Closed);
    assert_eq!(
        outbox.queued_bytes(),
        0,
        "nothing is kept for a cut consumer"
    );
}

#[test]
fn a_message_finding_the_queue_exactly_at_the_cap_is_queued() {
    let outbox = Outbox::new(wire(6) + wire(4));
    outbox.push(text(6));
    outbox.push(text(4));
    assert_eq!(outbox.push(text(1)), Push::Queued, "at the cap: sent");
    assert_eq!(outbox.push(text(1)), Push::OverCap, "over it: cut");
}

#[test]
fn replays_and_control_frames_bypass_the_cap_but_live_messages_after_them_do_not() {
    let outbox = Outbox::new(wire(10));
    assert_eq!(
        outbox.push_replay(&(0..5).map(|_| text(8)).collect::<Vec<_>>()),
        Push::Queued
    );
    assert_eq!(outbox.push_control(Frame::ping()), Push::Queued);
    assert_eq!(
        outbox.queued_bytes(),
        0,
        "the replay is history's, not the cap's"
    );
    assert_eq!(outbox.push(text(10)), Push::Queued);
    assert_eq!(outbox.push(text(1)), Push::Queued, "at the cap: sent");
    assert_eq!(outbox.push(text(1)), Push::OverCap);
    assert_eq!(outbox.push_replay(&[text(1)]), Push::Closed);
}

#[tokio::test]
async fn a_push_to_a_reader_that_keeps_up_is_written_at_once_and_nothing_waits() {
    let (server, mut client) = socket_pair().await;
    let gauge = Arc::new(QueueGauge::default());
    let outbox = Outbox::on_socket(16, Arc::clone(&gauge), server);
    assert_eq!(
        outbox.push_all(&[Frame::text("ab"), Frame::text("c")]),
        Push::Queued
    );
    assert_eq!(outbox.queued_bytes(), 0);
    assert_eq!(gauge.max(), 0);
    let mut bytes = [0u8; 7];
    client.read_exact(&mut bytes).await.expect("frames");
    assert_eq!(bytes, [0x81, 2, b'a', b'b', 0x81, 1, b'c']);
    let pending = tokio::time::timeout(std::time::Duration::from_millis(20), outbox.next_work());
    assert!(pending.await.is_err(), "the task has nothing to do");
}

#[tokio::test]
async fn only_bytes_the_kernel_refused_count_and_the_task_writes_them_when_there_is_room() {
    let (server, mut client) = socket_pair().await;
    let outbox = Arc::new(Outbox::on_socket(
        64 << 20,
        Arc::new(QueueGauge::default()),
        Arc::clone(&server),
    ));
    let frame = Frame::text(vec![b'y'; 16 * 1024]);
    let mut pushed = 0usize;
    while outbox.queued_bytes() == 0 {
        assert!(pushed < 10_000, "the kernel never refused anything");
        assert_eq!(outbox.push(frame.clone()), Push::Queued);
        pushed += 1;
    }
    let refused = outbox.queued_bytes();
    assert!(
        refused <= frame.len(),
        "at most the frame in flight counts: {refused}"
    );
    assert_eq!(outbox.next_work().await, Work::Write);

    let reader = tokio::spawn(async move {
        let mut total = 0usize;
        let mut chunk = vec![0u8; 64 * 1024];
        while total < pushed * frame.len() {
            let read = client.read(&mut chunk).await.expect("read");
            assert!(read > 0, "the stream ended early");
            total += read;
        }
        total
    });
    loop {
        server.writable().await.expect("writable");
        if outbox.flush() == Flushed::All {
            break;
        }
    }
    assert_eq!(outbox.queued_bytes(), 0);
    assert!(reader.await.is_ok());
}

#[tokio::test]
async fn a_server_close_goes_out_after_everything_queued_before_it() {
    let outbox = Outbox::new(100);
    outbox.push(text(1));
    outbox.close(CloseReason::Server {
        code: CLOSE_GOING_AWAY,
    });
    assert_eq!(outbox.push(text(1)), Push::Closed);
    assert_eq!(outbox.next_work().await, Work::Write);
    let state = outbox.lock();
    let kinds: Vec<bool> = state
        .unsent
        .frames
        .iter()
        .map(|w| w.frame.is_close())
        .collect();
    assert_eq!(kinds, [false, true]);
}

#[tokio::test]
async fn the_first_close_reason_stays_and_a_hard_one_abandons_the_queue() {
    let outbox = Outbox::new(100);
    outbox.push(text(3));
    outbox.close(CloseReason::Server { code: CLOSE_NORMAL });
    outbox.close(CloseReason::SlowConsumer);
    assert_eq!(
        outbox.closed(),
        Some(CloseReason::Server { code: CLOSE_NORMAL })
    );
    outbox.close(CloseReason::Gone);
    outbox.close(CloseReason::Server { code: CLOSE_NORMAL });
    assert_eq!(
        outbox.closed(),
        Some(CloseReason::Gone),
        "a socket that failed ends a graceful close"
    );
    assert_eq!(outbox.next_work().await, Work::Closed(CloseReason::Gone));
    assert_eq!(outbox.queued_bytes(), 0);
}

#[test]
fn the_gauge_sees_pushes_cuts_and_drops() {
    let gauge = Arc::new(QueueGauge::default());
    let outbox = Outbox::with_gauge(wire(10), Arc::clone(&gauge));
    outbox.push(text(6));
    assert_eq!(gauge.max(), wire(6));
    outbox.push_control(Frame::ping());
    assert_eq!(gauge.max(), wire(6), "control frames are not data bytes");
    let other = Outbox::with_gauge(100, Arc::clone(&gauge));
    other.push(text(3));
    assert_eq!(outbox.push(text(5)), Push::Queued);
    assert!(outbox.queued_bytes() > wire(10));
    assert_eq!(outbox.push(text(1)), Push::OverCap);
    assert_eq!(
        gauge.max(),
        wire(3),
        "a slow consumer's dropped queue no longer counts"
    );
    drop(other);
    assert_eq!(gauge.max(), 0);
}

#[tokio::test]
async fn the_task_wakes_when_a_frame_is_refused_later() {
    let outbox = Arc::new(Outbox::new(100));
    let task = {
        let outbox = Arc::clone(&outbox);
        tokio::spawn(async move { outbox.next_work().await })
    };
    tokio::task::yield_now().await;
    outbox.push(text(3));
    assert_eq!(task.await.ok(), Some(Work::Write));
}
