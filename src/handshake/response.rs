//! The bytes written back at the end of the handshake.
//!
//! Every value written comes from this crate (status phrases and reasons are `'static`, the
//! accept key is base64, a subprotocol passed the token-character check), so nothing a peer
//! sent can inject a header line.

use std::fmt::Write as _;

use super::validate::SUPPORTED_VERSIONS_HEADER;
use super::{code, Accepted, Rejection};

/// The `101 Switching Protocols` answer for an accepted handshake.
pub fn switching_protocols(accepted: &Accepted) -> Vec<u8> {
    let mut out = String::with_capacity(160);
    out.push_str(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    // Writing into a String cannot fail.
    let _ = write!(out, "Sec-WebSocket-Accept: {}\r\n", accepted.accept_key);
    if let Some(protocol) = &accepted.protocol {
        let _ = write!(out, "Sec-WebSocket-Protocol: {protocol}\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The answer for a refused handshake, after which the connection is closed:
///
/// ```text
/// HTTP/1.1 <status> <phrase>\r\nConnection: close\r\nContent-Type: text/plain\r\n
/// Content-Length: <n>\r\n[extra]\r\n<reason>
/// ```
///
/// Extra headers by code: `Sec-WebSocket-Version: 13, 8` for the version refusals (RFC 6455
/// §4.4), `Allow: GET` for 405 (RFC 9110 §15.5.6), `WWW-Authenticate: Bearer` for 401
/// (RFC 9110 §11.6.1).
pub fn rejection_response(rejection: &Rejection) -> Vec<u8> {
    let mut out = String::with_capacity(160 + rejection.reason.len());
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        rejection.status,
        status_phrase(rejection.status),
        rejection.reason.len()
    );
    match rejection.code {
        code::BAD_VERSION | code::UNSUPPORTED_VERSION => {
            let _ = write!(
                out,
                "Sec-WebSocket-Version: {SUPPORTED_VERSIONS_HEADER}\r\n"
            );
        }
        code::BAD_METHOD => out.push_str("Allow: GET\r\n"),
        code::UNAUTHORIZED => out.push_str("WWW-Authenticate: Bearer\r\n"),
        _ => {}
    }
    out.push_str("\r\n");
    out.push_str(rejection.reason);
    out.into_bytes()
}

/// The standard reason phrase of the statuses a handshake can answer with.
pub fn status_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("responses are ASCII")
    }

    #[test]
    fn builds_101_with_accept_key() {
        let accepted = Accepted {
            accept_key: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(),
            protocol: None,
        };
        assert_eq!(
            text(switching_protocols(&accepted)),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn builds_101_with_negotiated_protocol() {
        let accepted = Accepted {
            accept_key: "k".into(),
            protocol: Some("chat".into()),
        };
        let t = text(switching_protocols(&accepted));
        assert!(t.ends_with("Sec-WebSocket-Accept: k\r\nSec-WebSocket-Protocol: chat\r\n\r\n"));
    }

    #[test]
    fn builds_rejection_with_body_and_length() {
        let r = Rejection::new(403, code::ORIGIN_FORBIDDEN, "Origin not allowed");
        assert_eq!(
            text(rejection_response(&r)),
            "HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: text/plain\r\n\
             Content-Length: 18\r\n\r\nOrigin not allowed"
        );
    }

    #[test]
    fn advertises_supported_versions_on_version_refusals() {
        for c in [code::UNSUPPORTED_VERSION, code::BAD_VERSION] {
            let t = text(rejection_response(&Rejection::new(426, c, "x")));
            assert!(t.contains("\r\nSec-WebSocket-Version: 13, 8\r\n"), "{t}");
        }
        let t = text(rejection_response(&Rejection::new(
            426,
            code::UNSUPPORTED_VERSION,
            "x",
        )));
        assert!(t.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    }

    #[test]
    fn adds_allow_to_405_and_challenge_to_401() {
        let t = text(rejection_response(&Rejection::new(
            405,
            code::BAD_METHOD,
            "x",
        )));
        assert!(t.contains("\r\nAllow: GET\r\n"));
        let t = text(rejection_response(&Rejection::unauthorized()));
        assert!(t.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(t.contains("\r\nWWW-Authenticate: Bearer\r\n"));
    }

    #[test]
    fn names_every_handshake_status() {
        for s in [400, 401, 403, 404, 405, 426, 431, 500, 503] {
            assert_ne!(status_phrase(s), "Error", "{s}");
        }
    }
}
