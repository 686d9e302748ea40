use super::*;

const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// A client frame: `first` is FIN/RSV/opcode, the payload masked with [`MASK`].
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![first];
    match payload.len() {
        len @ 0..=125 => bytes.push(0x80 | len as u8),
        len @ 126..=65_535 => {
            bytes.push(0x80 | 126);
            bytes.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            bytes.push(0x80 | 127);
            bytes.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    bytes.extend_from_slice(&MASK);
    bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    bytes
}

fn text(payload: &str) -> Vec<u8> {
    frame(0x81, payload.as_bytes())
}

fn decode(max: usize, input: &[u8]) -> Result<Vec<Incoming>, Violation> {
    let mut decoder = Decoder::new(max);
    let mut out = Vec::new();
    decoder.feed(input, &mut out)?;
    Ok(out)
}

fn code(max: usize, input: &[u8]) -> u16 {
    decode(max, input).expect_err("a violation").code
}

#[test]
fn decodes_several_messages_from_one_read_and_keeps_nothing_after() {
    let mut input = text("one");
    input.extend(frame(0x82, b"\x00\xff"));
    input.extend(frame(0x89, b"hi"));
    input.extend(frame(0x8A, b""));
    input.extend(frame(0x88, &[0x03, 0xE8, b'o', b'k']));
    let mut decoder = Decoder::new(1024);
    let mut out = Vec::new();
    decoder.feed(&input, &mut out).expect("valid frames");
    assert_eq!(
        out,
        [
            Incoming::Text("one".into()),
            Incoming::Binary(vec![0, 255]),
            Incoming::Ping(Bytes::from_static(b"hi")),
            Incoming::Pong,
            Incoming::Close(Some(1000)),
        ]
    );
    assert_eq!(decoder.held_bytes(), 0);
}

#[test]
fn a_frame_split_at_every_byte_arrives_once_and_the_carry_is_freed() {
    let message = "x".repeat(300);
    let input = text(&message);
    for split in 1..input.len() {
        let mut decoder = Decoder::new(1024);
        let mut out = Vec::new();
        decoder.feed(&input[..split], &mut out).expect("a prefix");
        assert!(out.is_empty());
        assert!(decoder.held_bytes() > 0);
        decoder.feed(&input[split..], &mut out).expect("the rest");
        assert_eq!(out, [Incoming::Text(message.clone())], "split at {split}");
        assert_eq!(decoder.held_bytes(), 0);
    }
}

#[test]
fn fragments_join_with_control_frames_between_them() {
    let mut input = frame(0x01, b"hel");
    input.extend(frame(0x89, b""));
    input.extend(frame(0x00, b"lo "));
    input.extend(frame(0x80, "wörld".as_bytes()));
    let out = decode(1024, &input).expect("valid fragments");
    assert_eq!(
        out,
        [
            Incoming::Ping(Bytes::new()),
            Incoming::Text("hello wörld".into())
        ]
    );
}

#[test]
fn utf8_is_checked_on_the_whole_message_not_per_fragment() {
    let bytes = "é".as_bytes();
    let mut input = frame(0x01, &bytes[..1]);
    input.extend(frame(0x80, &bytes[1..]));
    assert_eq!(decode(64, &input), Ok(vec![Incoming::Text("é".into())]));
    assert_eq!(code(64, &frame(0x81, &[0xC3])), 1007);
}

#[test]
fn the_message_size_limit_is_exact_and_counts_every_fragment() {
    assert!(decode(10, &text(&"x".repeat(10))).is_ok());
    assert_eq!(code(10, &text(&"x".repeat(11))), 1009);
    let mut input = frame(0x01, b"123456");
    input.extend(frame(0x80, b"7890"));
    assert!(decode(10, &input).is_ok());
    let mut input = frame(0x01, b"123456");
    input.extend(frame(0x80, b"78901"));
    assert_eq!(code(10, &input), 1009);
}

#[test]
fn an_oversized_frame_is_refused_from_its_header_before_its_payload_arrives() {
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    assert_eq!(code(1 << 20, &header), 1009);
    let mut huge = vec![0x81, 0x80 | 127];
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(code(1 << 20, &huge), 1002);
}

#[test]
fn protocol_violations_close_with_1002() {
    let unmasked = [0x81, 0x02, b'h', b'i'];
    let cases: [(&str, Vec<u8>); 8] = [
        ("unmasked", unmasked.to_vec()),
        ("rsv1", frame(0xC1, b"x")),
        ("reserved opcode", frame(0x83, b"x")),
        ("reserved control opcode", frame(0x8B, b"")),
        ("fragmented ping", frame(0x09, b"")),
        ("long ping", frame(0x89, &[0; 126])),
        ("bare continuation", frame(0x80, b"x")),
        ("one-byte close", frame(0x88, &[3])),
    ];
    for (name, input) in cases {
        assert_eq!(code(1024, &input), 1002, "{name}");
    }
    let mut nested = frame(0x01, b"a");
    nested.extend(frame(0x81, b"b"));
    assert_eq!(code(1024, &nested), 1002);
}

#[test]
fn close_codes_are_checked_and_reasons_must_be_utf8() {
    for allowed in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
        let payload = u16::to_be_bytes(allowed);
        assert_eq!(
            decode(64, &frame(0x88, &payload)),
            Ok(vec![Incoming::Close(Some(allowed))])
        );
    }
    for refused in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
        assert_eq!(code(64, &frame(0x88, &u16::to_be_bytes(refused))), 1002);
    }
    assert_eq!(code(64, &frame(0x88, &[0x03, 0xE8, 0xFF])), 1007);
    assert_eq!(
        decode(64, &frame(0x88, b"")),
        Ok(vec![Incoming::Close(None)])
    );
}

#[test]
fn large_frames_use_the_extended_lengths() {
    for len in [125, 126, 65_535, 65_536] {
        let message = "y".repeat(len);
        assert_eq!(
            decode(1 << 20, &text(&message)),
            Ok(vec![Incoming::Text(message)])
        );
    }
}
