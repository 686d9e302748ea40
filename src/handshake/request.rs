//! The request head, from raw bytes (`listen()`) or from Node's raw headers (`attach()`).
//!
//! [`parse_request`] is called on the bytes read so far; it answers [`ParseStatus::Partial`]
//! until a whole head is there, then [`ParseStatus::Complete`] with the head and its length
//! (bytes after it are the first WebSocket frames and belong to the connection). A head
//! that cannot become valid, or grows past [`MAX_HEADER_BYTES`], is a [`ParseError`], which
//! maps to an HTTP refusal with [`ParseError::rejection`].

use std::collections::HashMap;
use std::fmt;

use super::{code, Rejection, UpgradeRequest};

/// Largest request head (request line + headers + blank line) read before refusing with 431.
///
/// 16 KiB is Node's default `--max-http-header-size`, so `listen()` accepts exactly the heads
/// `attach()` (behind Node's parser) accepts: a browser on `localhost` sends the cookies of
/// every local dev app, which can exceed 8 KiB. It also bounds what a slow or hostile client
/// makes the server buffer before the handshake completes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Most header lines in one request head. Browsers send about 15 on a WebSocket upgrade;
/// 100 leaves room for proxies and is the `httparse` array we allocate on the stack.
pub const MAX_HEADERS: usize = 100;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method token, e.g. `GET`.
    pub method: String,
    /// The request target as sent (path and query).
    pub url: String,
    /// Header (name, value) pairs in arrival order; values are decoded as Latin-1, byte for
    /// byte, as Node decodes them.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The [`UpgradeRequest`] for this head, on a connection whose local address is (or is
    /// not) a loopback address.
    pub fn into_upgrade_request(self, local_is_loopback: bool) -> UpgradeRequest {
        UpgradeRequest {
            method: self.method,
            url: self.url,
            headers: self.headers,
            local_is_loopback,
        }
    }
}

/// Progress of [`parse_request`] on the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseStatus {
    /// The head is not complete yet: read more (within the handshake deadline).
    Partial,
    /// A whole head: `consumed_len` bytes of the buffer; the rest belongs to the WebSocket.
    Complete {
        /// The parsed head.
        head: RequestHead,
        /// Length of the head in the buffer, blank line included.
        consumed_len: usize,
    },
}

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not an HTTP request head (bad request line, header syntax, control characters).
    Malformed,
    /// Longer than [`MAX_HEADER_BYTES`] without being complete.
    TooLarge,
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// HTTP/1.0: a WebSocket upgrade needs HTTP/1.1 (RFC 6455 §4.1).
    HttpVersion,
}

impl ParseError {
    /// The HTTP refusal for this error (400 `BAD_REQUEST` or 431 `HEADERS_TOO_LARGE`).
    pub fn rejection(self) -> Rejection {
        match self {
            ParseError::Malformed => Rejection::new(400, code::BAD_REQUEST, "Bad Request"),
            ParseError::HttpVersion => Rejection::new(
                400,
                code::BAD_REQUEST,
                "WebSocket upgrades require HTTP/1.1",
            ),
            ParseError::TooLarge | ParseError::TooManyHeaders => Rejection::new(
                431,
                code::HEADERS_TOO_LARGE,
                "Request Header Fields Too Large",
            ),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rejection().reason)
    }
}

impl std::error::Error for ParseError {}

/// Parses the request head at the start of `buf` (at most [`MAX_HEADER_BYTES`] of it).
pub fn parse_request(buf: &[u8]) -> Result<ParseStatus, ParseError> {
    let window = &buf[..buf.len().min(MAX_HEADER_BYTES)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEADER_BYTES => {
            return Err(ParseError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(ParseStatus::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
        Err(_) => return Err(ParseError::Malformed),
    };
    if req.version != Some(1) {
        return Err(ParseError::HttpVersion);
    }
    let (Some(method), Some(url)) = (req.method, req.path) else {
        return Err(ParseError::Malformed);
    };
    let head = RequestHead {
        method: method.to_owned(),
        url: url.to_owned(),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), latin1(h.value)))
            .collect(),
    };
    Ok(ParseStatus::Complete { head, consumed_len })
}

/// Bytes as Latin-1 text (every byte one char), as Node decodes header values.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Header pairs from Node's `req.rawHeaders` (`[name, value, name, value, …]`); a trailing
/// name without value is dropped.
pub fn pairs_from_raw_headers(raw: Vec<String>) -> Vec<(String, String)> {
    let mut pairs = Vec::with_capacity(raw.len() / 2);
    let mut it = raw.into_iter();
    while let (Some(name), Some(value)) = (it.next(), it.next()) {
        pairs.push((name, value));
    }
    pairs
}

/// Headers of which Node keeps only the first occurrence in `req.headers`.
const NODE_SINGLE_VALUE_HEADERS: &[&str] = &[
    "age",
    "authorization",
    "content-length",
    "content-type",
    "etag",
    "expires",
    "from",
    "host",
    "if-modified-since",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "proxy-authorization",
    "referer",
    "retry-after",
    "server",
    "user-agent",
];

/// The headers as Node's `req.headers` presents them, for a JS `authenticate` callback:
/// names lower-cased, one entry per name in order of first appearance, repeats combined as
/// Node combines them — dropped for the single-value headers (`host`, `authorization`,
/// `user-agent`, …), joined with `"; "` for `cookie` and with `", "` otherwise (Node gives
/// `set-cookie` as an array; a request has no business sending it, so it is joined too).
pub fn headers_to_lowercase_map(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut map: Vec<(String, String)> = Vec::with_capacity(headers.len());
    let mut index: HashMap<String, usize> = HashMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match index.get(&name) {
            Some(&i) => {
                if NODE_SINGLE_VALUE_HEADERS.contains(&name.as_str()) {
                    continue;
                }
                let existing = &mut map[i].1;
                existing.push_str(if name == "cookie" { "; " } else { ", " });
                existing.push_str(value);
            }
            None => {
                index.insert(name.clone(), map.len());
                map.push((name, value.clone()));
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /ws?x=1 HTTP/1.1\r\nHost: localhost:3000\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn parses_complete_head_and_reports_its_length() {
        let mut buf = UPGRADE.to_vec();
        buf.extend_from_slice(b"\x81\x80frame");
        let Ok(ParseStatus::Complete { head, consumed_len }) = parse_request(&buf) else {
            panic!("expected a complete head");
        };
        assert_eq!(consumed_len, UPGRADE.len());
        assert_eq!(head.method, "GET");
        assert_eq!(head.url, "/ws?x=1");
        assert_eq!(
            head.headers[0],
            ("Host".to_string(), "localhost:3000".to_string())
        );
        assert_eq!(head.headers.len(), 5);
    }

    #[test]
    fn reports_partial_for_every_prefix() {
        for end in 0..UPGRADE.len() {
            assert_eq!(
                parse_request(&UPGRADE[..end]),
                Ok(ParseStatus::Partial),
                "{end}"
            );
        }
    }

    #[test]
    fn rejects_head_larger_than_limit() {
        let mut buf = b"GET /ws HTTP/1.1\r\nX-Big: ".to_vec();
        buf.resize(MAX_HEADER_BYTES, b'a');
        assert_eq!(parse_request(&buf), Err(ParseError::TooLarge));
        assert_eq!(
            parse_request(&buf[..MAX_HEADER_BYTES - 1]),
            Ok(ParseStatus::Partial)
        );
        assert_eq!(ParseError::TooLarge.rejection().status, 431);
    }

    #[test]
    fn accepts_head_of_exactly_the_limit() {
        let mut buf = b"GET /ws HTTP/1.1\r\nX-Big: ".to_vec();
        buf.resize(MAX_HEADER_BYTES - 4, b'a');
        buf.extend_from_slice(b"\r\n\r\n");
        assert!(
            matches!(parse_request(&buf), Ok(ParseStatus::Complete { consumed_len, .. }) if consumed_len == MAX_HEADER_BYTES)
        );
    }

    #[test]
    fn rejects_too_many_headers() {
        let mut buf = b"GET /ws HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            buf.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&buf), Err(ParseError::TooManyHeaders));
        assert_eq!(
            ParseError::TooManyHeaders.rejection().code,
            code::HEADERS_TOO_LARGE
        );
    }

    #[test]
    fn rejects_malformed_heads() {
        for bad in [
            &b"GET /ws HTTP/1.1\r\nHost localhost\r\n\r\n"[..],
            b"GET /ws HTTP/2.0\r\n\r\n",
            b"GET  /ws HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GET /ws HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"GET /ws HTTP/1.1\r\n folded: x\r\n\r\n",
        ] {
            assert_eq!(parse_request(bad), Err(ParseError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn rejects_http_1_0() {
        let r = parse_request(b"GET /ws HTTP/1.0\r\n\r\n");
        assert_eq!(r, Err(ParseError::HttpVersion));
        assert_eq!(ParseError::HttpVersion.rejection().status, 400);
    }

    #[test]
    fn decodes_header_values_as_latin1() {
        let Ok(ParseStatus::Complete { head, .. }) =
            parse_request(b"GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n")
        else {
            panic!("expected a complete head");
        };
        assert_eq!(head.headers[0].1, "café");
    }

    #[test]
    fn pairs_raw_headers_and_drops_a_dangling_name() {
        let raw = ["Host", "a", "X", "1", "Dangling"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            pairs_from_raw_headers(raw),
            [
                ("Host".to_string(), "a".to_string()),
                ("X".to_string(), "1".to_string())
            ]
        );
    }

    #[test]
    fn lowercases_and_combines_headers_like_node() {
        let headers: Vec<(String, String)> = [
            ("Host", "a"),
            ("X-Multi", "1"),
            ("HOST", "b"),
            ("Cookie", "a=1"),
            ("x-multi", "2"),
            ("cookie", "b=2"),
            ("Authorization", "Bearer 1"),
            ("authorization", "Bearer 2"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let map = headers_to_lowercase_map(&headers);
        let get = |n: &str| map.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(map.len(), 4);
        assert_eq!(map[0].0, "host");
        assert_eq!(get("host"), Some("a"));
        assert_eq!(get("x-multi"), Some("1, 2"));
        assert_eq!(get("cookie"), Some("a=1; b=2"));
        assert_eq!(get("authorization"), Some("Bearer 1"));
    }
}
