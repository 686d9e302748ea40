//! Server-to-client frames: a header of 2 to 10 bytes kept inline and a shared payload, or
//! — for a run of broadcasts, written to every subscriber — whole frames back to back in one
//! buffer, so each write is a single slice and a socket that refuses the run keeps one
//! entry for it, not one per message.

use bytes::Bytes;

/// Opcodes of the frames the server sends.
mod opcode {
    pub const TEXT: u8 = 0x1;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

const FIN: u8 = 0x80;

/// One whole, unmasked frame — or several text frames in one buffer
/// ([`Frame::texts_in_one`]). Cloning it clones a reference to the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header; its first byte also tells the opcode of frames sent in one buffer.
    head: [u8; 10],
    /// Bytes of `head` sent before `payload`: 0 when `payload` holds whole frames.
    head_len: u8,
    payload: Bytes,
}

impl Frame {
    fn new(opcode: u8, payload: Bytes) -> Self {
        let (head, head_len) = Self::header(opcode, payload.len());
        Self {
            head,
            head_len,
            payload,
        }
    }

    /// Bytes of the header a frame with a payload of `len` bytes carries.
    pub fn header_len(len: usize) -> usize {
        usize::from(Self::header(opcode::TEXT, len).1)
    }

    fn header(opcode: u8, len: usize) -> ([u8; 10], u8) {
        let mut head = [0u8; 10];
        head[0] = FIN | opcode;
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
        (head, head_len)
    }

    /// A text frame; `text` must be UTF-8 (every server message is JSON text).
    pub fn text(text: impl Into<Bytes>) -> Self {
        Self::new(opcode::TEXT, text.into())
    }

    /// Text frames of `texts` (each UTF-8), headers and texts copied back to back into one
    /// buffer: a run of broadcasts written to many sockets leaves in one slice per write.
    pub fn texts_in_one<'a, I>(texts: I) -> Self
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: Clone,
    {
        let texts = texts.into_iter();
        let size = texts.clone().map(|text| text.len() + 10).sum();
        let mut wire = Vec::with_capacity(size);
        for text in texts {
            let (head, head_len) = Self::header(opcode::TEXT, text.len());
            wire.extend_from_slice(&head[..usize::from(head_len)]);
            wire.extend_from_slice(text);
        }
        let mut head = [0u8; 10];
        head[0] = FIN | opcode::TEXT;
        Self {
            head,
            head_len: 0,
            payload: Bytes::from(wire),
        }
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

    /// The frames' opcodes and payloads, decoded from the bytes they go out as.
    #[cfg(test)]
    pub fn messages(&self) -> Vec<(u8, Vec<u8>)> {
        let wire = self.unsent(0).concat();
        let mut messages = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            let (len, head) = match wire[at + 1] {
                126 => (
                    usize::from(u16::from_be_bytes([wire[at + 2], wire[at + 3]])),
                    4,
                ),
                127 => {
                    let mut bytes = [0u8; 8];
                    bytes.copy_from_slice(&wire[at + 2..at + 10]);
                    (
                        usize::try_from(u64::from_be_bytes(bytes)).unwrap_or(usize::MAX),
                        10,
                    )
                }
                short => (usize::from(short), 2),
            };
            let payload = wire[at + head..at + head + len].to_vec();
            messages.push((wire[at] & 0x0F, payload));
            at += head + len;
        }
        messages
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
            assert_eq!(Frame::header_len(len), head, "payload of {len}");
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
        let run: [&[u8]; 2] = [b"abc", b"de"];
        for frame in [Frame::text("abc"), Frame::texts_in_one(run)] {
            let all = wire(&frame);
            for sent in 0..=all.len() {
                assert_eq!(frame.unsent(sent).concat(), all[sent..]);
            }
        }
    }

    #[test]
    fn frames_in_one_buffer_are_the_same_frames_in_one_slice() {
        let texts: Vec<Vec<u8>> = [0, 125, 126, 65_535, 65_536]
            .iter()
            .map(|&len| vec![b'x'; len])
            .collect();
        let apart: Vec<u8> = texts
            .iter()
            .flat_map(|text| wire(&Frame::text(text.clone())))
            .collect();
        let whole = Frame::texts_in_one(texts.iter().map(Vec::as_slice));
        assert_eq!(wire(&whole), apart);
        assert_eq!(whole.len(), apart.len());
        assert!(whole.unsent(0)[0].is_empty(), "one slice");
        assert!(!whole.is_close());
        let decoded: Vec<Vec<u8>> = whole.messages().into_iter().map(|(_, m)| m).collect();
        assert_eq!(decoded, texts);
        let one: [&[u8]; 1] = [b"abc"];
        assert_eq!(wire(&Frame::texts_in_one(one)), wire(&Frame::text("abc")));
    }
}
