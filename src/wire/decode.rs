//! Client-to-server frames, decoded from whatever a read returned.
//!
//! [`Decoder::feed`] parses every whole frame in its input and keeps only what is left of
//! an incomplete one; between messages a connection holds no buffer at all. Every rule a
//! server must enforce is checked here, with the close code RFC 6455 §7.4.1 gives it.

use bytes::Bytes;

/// A whole message or control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary(Vec<u8>),
    Ping(Bytes),
    Pong,
    /// The client's close, with its code if it gave one.
    Close(Option<u16>),
}

/// A broken rule: the connection is closed with `code`; `what` is for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub what: &'static str,
}

const PROTOCOL_ERROR: u16 = 1002;
const INVALID_PAYLOAD: u16 = 1007;
const MESSAGE_TOO_BIG: u16 = 1009;

fn protocol(what: &'static str) -> Violation {
    Violation {
        code: PROTOCOL_ERROR,
        what,
    }
}

mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// A message that arrived in several frames, so far.
#[derive(Debug)]
struct Fragmented {
    text: bool,
    data: Vec<u8>,
}

/// One connection's decoding state: empty (no allocation) between messages.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// The start of a frame whose end has not arrived yet.
    carry: Vec<u8>,
    fragmented: Option<Box<Fragmented>>,
}

/// A frame header: what the bytes before the payload say.
struct Head {
    fin: bool,
    opcode: u8,
    /// Header bytes, mask included.
    len: usize,
    payload: usize,
}

impl Decoder {
    /// A decoder refusing messages (whole, all fragments together) over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            carry: Vec::new(),
            fragmented: None,
        }
    }

    /// Decodes `input`, appending whole messages to `out`. After an error the connection
    /// must be closed; the decoder is not to be fed again.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Incoming>) -> Result<(), Violation> {
        if self.carry.is_empty() {
            let used = self.decode_all(input, out)?;
            if used < input.len() {
                self.carry.extend_from_slice(&input[used..]);
            }
            return Ok(());
        }
        let mut carry = std::mem::take(&mut self.carry);
        carry.extend_from_slice(input);
        let used = self.decode_all(&carry, out)?;
        if used < carry.len() {
            carry.drain(..used);
            self.carry = carry;
        }
        // Otherwise `carry` is dropped: an idle connection keeps no buffer.
        Ok(())
    }

    /// Decodes every whole frame at the start of `bytes`; returns how many bytes they took.
    fn decode_all(&mut self, bytes: &[u8], out: &mut Vec<Incoming>) -> Result<usize, Violation> {
        let mut used = 0;
        while let Some(head) = self.head(&bytes[used..])? {
            let end = used + head.len + head.payload;
            if bytes.len() < end {
                break;
            }
            let mask = &bytes[used + head.len - 4..used + head.len];
            let payload: Vec<u8> = bytes[used + head.len..end]
                .iter()
                .enumerate()
                .map(|(i, byte)| byte ^ mask[i % 4])
                .collect();
            if let Some(message) = self.complete(&head, payload)? {
                out.push(message);
            }
            used = end;
        }
        Ok(used)
    }

    /// Parses and checks a frame header, if all of it is in `bytes`.
    fn head(&self, bytes: &[u8]) -> Result<Option<Head>, Violation> {
        let [first, second, ..] = *bytes else {
            return Ok(None);
        };
        if first & 0x70 != 0 {
            return Err(protocol("reserved bits set without an extension"));
        }
        let fin = first & 0x80 != 0;
        let opcode = first & 0x0F;
        if second & 0x80 == 0 {
            return Err(protocol("unmasked client frame"));
        }
        let control = match opcode {
            opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => false,
            opcode::CLOSE | opcode::PING | opcode::PONG => true,
            _ => return Err(protocol("unknown opcode")),
        };
        let (payload, extended) = match second & 0x7F {
            126 => match bytes.get(2..4) {
                Some(len) => (u64::from(u16::from_be_bytes([len[0], len[1]])), 2),
                None => return Ok(None),
            },
            127 => match bytes.get(2..10) {
                Some(len) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(len);
                    let len = u64::from_be_bytes(be);
                    if len >> 63 != 0 {
                        return Err(protocol("frame length with its top bit set"));
                    }
                    (len, 8)
                }
                None => return Ok(None),
            },
            short => (u64::from(short), 0),
        };
        if control {
            if !fin {
                return Err(protocol("fragmented control frame"));
            }
            if payload > 125 {
                return Err(protocol("control frame over 125 bytes"));
            }
        } else {
            match (opcode, &self.fragmented) {
                (opcode::CONTINUATION, None) => {
                    return Err(protocol("continuation frame without a message"))
                }
                (opcode::TEXT | opcode::BINARY, Some(_)) => {
                    return Err(protocol("new message inside a fragmented one"))
                }
                _ => {}
            }
            let so_far = self.fragmented.as_ref().map_or(0, |f| f.data.len());
            let total = u64::try_from(so_far)
                .unwrap_or(u64::MAX)
                .saturating_add(payload);
            if total > u64::try_from(self.max_message).unwrap_or(u64::MAX) {
                return Err(Violation {
                    code: MESSAGE_TOO_BIG,
                    what: "message over maxPayloadBytes",
                });
            }
        }
        // Within max_message (or 125), so it fits a usize.
        let payload = usize::try_from(payload).map_err(|_| protocol("frame too long"))?;
        Ok(Some(Head {
            fin,
            opcode,
            len: 2 + extended + 4,
            payload,
        }))
    }

    /// What a whole frame adds up to: a message, or nothing yet (a fragment).
    fn complete(&mut self, head: &Head, payload: Vec<u8>) -> Result<Option<Incoming>, Violation> {
        match head.opcode {
            opcode::PING => Ok(Some(Incoming::Ping(Bytes::from(payload)))),
            opcode::PONG => Ok(Some(Incoming::Pong)),
            opcode::CLOSE => close(&payload).map(Some),
            opcode::CONTINUATION => {
                let Some(fragmented) = self.fragmented.as_mut() else {
                    return Err(protocol("continuation frame without a message"));
                };
                fragmented.data.extend_from_slice(&payload);
                if !head.fin {
                    return Ok(None);
                }
                let Fragmented { text, data } = *self.fragmented.take().unwrap_or_else(|| {
                    unreachable!("checked above: a fragmented message is in progress")
                });
                message(text, data).map(Some)
            }
            data_opcode => {
                let text = data_opcode == opcode::TEXT;
                if head.fin {
                    return message(text, payload).map(Some);
                }
                self.fragmented = Some(Box::new(Fragmented {
                    text,
                    data: payload,
                }));
                Ok(None)
            }
        }
    }

    /// Bytes held for an incomplete frame or message (0 between messages).
    pub fn held_bytes(&self) -> usize {
        self.carry.capacity() + self.fragmented.as_ref().map_or(0, |f| f.data.capacity())
    }
}

fn message(text: bool, data: Vec<u8>) -> Result<Incoming, Violation> {
    if !text {
        return Ok(Incoming::Binary(data));
    }
    String::from_utf8(data)
        .map(Incoming::Text)
        .map_err(|_| Violation {
            code: INVALID_PAYLOAD,
            what: "text message that is not UTF-8",
        })
}

/// A close frame's payload: empty, or a valid code and a UTF-8 reason.
fn close(payload: &[u8]) -> Result<Incoming, Violation> {
    match payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(protocol("close frame with a one-byte payload")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(protocol("close code not allowed on the wire"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(Violation {
                    code: INVALID_PAYLOAD,
                    what: "close reason that is not UTF-8",
                });
            }
            Ok(Incoming::Close(Some(code)))
        }
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
