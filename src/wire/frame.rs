//! Server-to-client frames: a header of 2 to 10 bytes kept inline and a shared payload.

use bytes::Bytes;

/// Opcodes of the frames the server sends.
mod opcode {
    pub const TEXT: u8 = 0x1;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

const FIN: u8 = 0x80;

/// One whole, unmasked frame. Cloning it clones a reference to the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    head: [u8; 10],
    head_len: u8,
    payload: Bytes,
}

impl Frame {
    fn new(opcode: u8, payload: Bytes) -> Self {
        let mut head = [0u8; 10];
        head[0] = FIN | opcode;
        let len = payload.len();
        let head_len = if len < 126 {
            head[1] = len as u8;
            2
        } else if let Ok(short) = u16::try_from(len) {
            head[1] = 126;
            head[2..4].copy_from_slice(&short.to_be_bytes());
            4
        } else {
            head[1] = 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        Self {
            head,
            head_len,
            payload,
        }
    }

    /// A text frame; `text` must be UTF-8 (every server message is JSON text).
    pub fn text(text: impl Into<Bytes>) -> Self {
        Self::new(opcode::TEXT, text.into())
    }

    /// An empty ping.
    pub fn ping() -> Self {
        Self::new(opcode::PING, Bytes::new())
    }

    /// The answer to a ping, echoing its payload (at most 125 bytes, as the decoder checks).
    pub fn pong(payload: Bytes) -> Self {
        Self::new(opcode::PONG, payload)
    }

    /// A close frame with `code` and a short reason (at most 123 bytes).
    pub fn close(code: u16, reason: &str) -> Self {
        let mut payload = Vec::with_capacity(2 + reason.len());
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(reason.as_bytes());
        Self::new(opcode::CLOSE, Bytes::from(payload))
    }

    /// An empty close frame: the answer to a close that carried no code.
    pub fn close_empty() -> Self {
        Self::new(opcode::CLOSE, Bytes::new())
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        usize::from(self.head_len) + self.payload.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn is_close(&self) -> bool {
        self.head[0] & 0x0F == opcode::CLOSE
    }

    /// The payload (for tests and logs).
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The frame's unsent part — everything after its first `sent` bytes — as two slices
    /// (header, payload), either possibly empty.
    pub fn unsent(&self, sent: usize) -> [&[u8]; 2] {
        let head = &self.head[..usize::from(self.head_len)];
        if sent < head.len() {
            [&head[sent..], &self.payload]
        } else {
            let from = (sent - head.len()).min(self.payload.len());
            [&[], &self.payload[from..]]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(frame: &Frame) -> Vec<u8> {
        frame.unsent(0).concat()
    }

    #[test]
    fn lengths_use_the_shortest_encoding_at_each_boundary() {
        for (len, head) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let frame = Frame::text(vec![b'x'; len]);
            assert_eq!(frame.len(), len + head, "payload of {len}");
            let bytes = wire(&frame);
            assert_eq!(bytes[0], 0x81);
            assert_eq!(bytes.len(), len + head);
        }
        assert_eq!(&wire(&Frame::text(vec![b'x'; 126]))[1..4], &[126, 0, 126]);
        assert_eq!(
            &wire(&Frame::text(vec![b'x'; 65_536]))[1..10],
            &[127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    #[test]
    fn control_frames_carry_their_opcode_and_payload() {
        assert_eq!(wire(&Frame::ping()), [0x89, 0]);
        assert_eq!(
            wire(&Frame::pong(Bytes::from_static(b"hi"))),
            [0x8A, 2, b'h', b'i']
        );
        assert_eq!(
            wire(&Frame::close(4008, "slow")),
            [0x88, 6, 0x0F, 0xA8, b's', b'l', b'o', b'w']
        );
        assert_eq!(wire(&Frame::close_empty()), [0x88, 0]);
        assert!(Frame::close(1000, "").is_close());
        assert!(!Frame::ping().is_close());
    }

    #[test]
    fn the_unsent_part_resumes_mid_header_and_mid_payload() {
        let frame = Frame::text("abc");
        let all = wire(&frame);
        for sent in 0..=all.len() {
            assert_eq!(frame.unsent(sent).concat(), all[sent..]);
        }
    }
}
