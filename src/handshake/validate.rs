//! The RFC 6455 opening-handshake checks, made the way the `ws` package makes them.
//!
//! Differences from `ws`, each deliberate:
//! - a wrong path answers 404 (`ws` answers 400) and is checked right after the method;
//! - `Upgrade` and `Connection` are checked here, because `listen()` has no Node HTTP parser
//!   in front of it to refuse a request without `Connection: upgrade`;
//! - a repeated `Sec-WebSocket-Key` or `Sec-WebSocket-Version` header is refused (Node joins
//!   repeats with ", ", which `ws` then refuses too, so the outcome is the same);
//! - a missing or malformed version answers 400 `BAD_VERSION`, a well-formed version other
//!   than 13 or 8 answers 426 `UNSUPPORTED_VERSION` as RFC 6455 §4.4 suggests (`ws` answers
//!   400 for both); both carry `Sec-WebSocket-Version: 13, 8`.

use std::collections::HashSet;

use super::auth::is_token_protocol;
use super::{code, is_http_whitespace, Rejection, UpgradeRequest};

/// The protocol versions accepted, as `ws` accepts them: 13 (RFC 6455) and 8 (hybi-08,
/// whose framing is the same; its origin arrives as `Sec-WebSocket-Origin`).
pub const SUPPORTED_VERSIONS: [&str; 2] = ["13", "8"];

/// The `Sec-WebSocket-Version` value sent with a version refusal.
pub const SUPPORTED_VERSIONS_HEADER: &str = "13, 8";

/// Length of a valid `Sec-WebSocket-Key`: 16 random bytes in base64 = 22 characters + `==`.
const KEY_LEN: usize = 24;

/// Longest `Sec-WebSocket-Version` value treated as a (well-formed) number; longer digit
/// strings are malformed. Real versions have at most two digits.
const MAX_VERSION_DIGITS: usize = 3;

/// Refuses every method but `GET` (case-sensitive, as Node parses it) with 405.
pub fn check_method(method: &str) -> Result<(), Rejection> {
    if method == "GET" {
        Ok(())
    } else {
        Err(Rejection::new(405, code::BAD_METHOD, "Invalid HTTP method"))
    }
}

/// The path of a request target: everything before the first `?` (and before a `#`, which
/// clients never send but which must not count as part of the path).
pub fn path_of(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

/// The query of a request target: what follows the first `?`, up to a `#`.
pub fn query_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once('?')?;
    Some(rest.split('#').next().unwrap_or(rest))
}

/// Refuses a request whose path (query excluded) is not exactly `expected`, with 404.
///
/// No normalisation: `/ws/`, `/WS` and `/w%73` are different paths, as in `ws`.
pub fn check_path(url: &str, expected: &str) -> Result<(), Rejection> {
    if path_of(url) == expected {
        Ok(())
    } else {
        Err(Rejection::new(404, code::NOT_FOUND, "Not Found"))
    }
}

/// Requires exactly one `Upgrade: websocket` (case-insensitive) and an `upgrade` token in
/// `Connection` (a comma-separated list, possibly spread over several header lines).
pub fn check_upgrade_headers(req: &UpgradeRequest) -> Result<(), Rejection> {
    let upgrade_ok = req
        .single_header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade_ok {
        return Err(Rejection::new(
            400,
            code::BAD_UPGRADE,
            "Invalid Upgrade header",
        ));
    }
    let connection_ok = req.header_values("connection").any(|v| {
        v.split(',').any(|t| {
            t.trim_matches(is_http_whitespace)
                .eq_ignore_ascii_case("upgrade")
        })
    });
    if !connection_ok {
        return Err(Rejection::new(
            400,
            code::BAD_UPGRADE,
            "Invalid Connection header",
        ));
    }
    Ok(())
}

/// The `Sec-WebSocket-Key`, when it appears once and matches `^[+/0-9A-Za-z]{22}==$`.
pub fn websocket_key(req: &UpgradeRequest) -> Result<&str, Rejection> {
    let bad = || {
        Rejection::new(
            400,
            code::BAD_KEY,
            "Missing or invalid Sec-WebSocket-Key header",
        )
    };
    let key = req.single_header("sec-websocket-key").ok_or_else(bad)?;
    let bytes = key.as_bytes();
    let valid = bytes.len() == KEY_LEN
        && bytes[..KEY_LEN - 2]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        && &bytes[KEY_LEN - 2..] == b"==";
    if valid {
        Ok(key)
    } else {
        Err(bad())
    }
}

/// Requires `Sec-WebSocket-Version` 13 or 8.
pub fn check_version(req: &UpgradeRequest) -> Result<(), Rejection> {
    let Some(version) = req.single_header("sec-websocket-version") else {
        return Err(bad_version());
    };
    if SUPPORTED_VERSIONS.contains(&version) {
        return Ok(());
    }
    let well_formed = !version.is_empty()
        && version.len() <= MAX_VERSION_DIGITS
        && version.bytes().all(|b| b.is_ascii_digit());
    if well_formed {
        Err(Rejection::new(
            426,
            code::UNSUPPORTED_VERSION,
            "Unsupported Sec-WebSocket-Version",
        ))
    } else {
        Err(bad_version())
    }
}

fn bad_version() -> Rejection {
    Rejection::new(
        400,
        code::BAD_VERSION,
        "Missing or invalid Sec-WebSocket-Version header",
    )
}

/// The subprotocols offered in `Sec-WebSocket-Protocol`, in order, over all its header lines
/// (Node joins repeats with ", ", so they form one list).
///
/// Like `ws`'s `subprotocol.parse`: a comma-separated list of RFC 7230 tokens, optional
/// whitespace around each, no empty element, no duplicate; anything else is a 400.
pub fn offered_protocols(req: &UpgradeRequest) -> Result<Vec<&str>, Rejection> {
    let bad = || {
        Rejection::new(
            400,
            code::BAD_PROTOCOL,
            "Invalid Sec-WebSocket-Protocol header",
        )
    };
    let mut offered = Vec::new();
    let mut seen = HashSet::new();
    for value in req.header_values("sec-websocket-protocol") {
        for item in value.split(',') {
            let item = item.trim_matches(is_http_whitespace);
            if item.is_empty() || !item.bytes().all(is_token_byte) || !seen.insert(item) {
                return Err(bad());
            }
            offered.push(item);
        }
    }
    Ok(offered)
}

/// The subprotocol to answer with: the first offered one that does not carry a token.
///
/// A `cluso-token.…` entry is never echoed, so the secret does not come back in the
/// response. A browser fails a connection that offered protocols and got none back, so a
/// browser client sending its token this way offers a real protocol too (e.g.
/// `['cluso', 'cluso-token.<token>']`).
pub fn select_protocol<'a>(offered: &[&'a str]) -> Option<&'a str> {
    offered.iter().copied().find(|p| !is_token_protocol(p))
}

/// RFC 7230 `tchar`: the characters a token (and so a subprotocol name) may hold.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> UpgradeRequest {
        UpgradeRequest {
            method: "GET".into(),
            url: "/ws".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            local_is_loopback: true,
        }
    }

    #[test]
    fn rejects_non_get_methods_with_405() {
        for m in ["POST", "get", "HEAD", "PUT", "", "GET "] {
            let r = check_method(m).unwrap_err();
            assert_eq!((r.status, r.code), (405, code::BAD_METHOD), "{m:?}");
        }
        assert!(check_method("GET").is_ok());
    }

    #[test]
    fn compares_path_without_query_string() {
        assert!(check_path("/ws", "/ws").is_ok());
        assert!(check_path("/ws?token=abc&x=1", "/ws").is_ok());
        assert!(check_path("/ws#frag", "/ws").is_ok());
        for url in [
            "/ws/",
            "/WS",
            "/w%73",
            "/",
            "",
            "/wsx",
            "http://localhost/ws",
            "?/ws",
        ] {
            let r = check_path(url, "/ws").unwrap_err();
            assert_eq!((r.status, r.code), (404, code::NOT_FOUND), "{url:?}");
        }
    }

    #[test]
    fn splits_query_and_fragment() {
        assert_eq!(query_of("/ws?a=1#x"), Some("a=1"));
        assert_eq!(query_of("/ws?"), Some(""));
        assert_eq!(query_of("/ws"), None);
        assert_eq!(path_of("/ws?a?b"), "/ws");
    }

    #[test]
    fn requires_upgrade_websocket_case_insensitively() {
        let ok = req(&[("Upgrade", "WebSocket"), ("Connection", "Upgrade")]);
        assert!(check_upgrade_headers(&ok).is_ok());
        for upgrade in ["h2c", "websocket, h2c", ""] {
            let r = check_upgrade_headers(&req(&[("Upgrade", upgrade), ("Connection", "upgrade")]))
                .unwrap_err();
            assert_eq!(r.code, code::BAD_UPGRADE, "{upgrade:?}");
        }
        let missing = req(&[("Connection", "upgrade")]);
        assert_eq!(
            check_upgrade_headers(&missing).unwrap_err().code,
            code::BAD_UPGRADE
        );
        let repeated = req(&[("Upgrade", "websocket"), ("upgrade", "websocket")]);
        assert_eq!(
            check_upgrade_headers(&repeated).unwrap_err().code,
            code::BAD_UPGRADE
        );
    }

    #[test]
    fn finds_upgrade_token_anywhere_in_connection() {
        let ok = req(&[
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive"),
            ("connection", " Keep-Alive ,  UPGRADE "),
        ]);
        assert!(check_upgrade_headers(&ok).is_ok());
        for conn in ["keep-alive", "upgrades", "close", ""] {
            let r = check_upgrade_headers(&req(&[("Upgrade", "websocket"), ("Connection", conn)]))
                .unwrap_err();
            assert_eq!((r.status, r.code), (400, code::BAD_UPGRADE), "{conn:?}");
        }
    }

    #[test]
    fn accepts_key_of_22_base64_chars_and_padding() {
        let r = req(&[("Sec-WebSocket-Key", " dGhlIHNhbXBsZSBub25jZQ== ")]);
        assert_eq!(websocket_key(&r).unwrap(), "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(websocket_key(&req(&[("sec-websocket-key", "++++++++++++++++++++//==")])).is_ok());
    }

    #[test]
    fn rejects_malformed_or_repeated_keys() {
        for key in [
            "",
            "dGhlIHNhbXBsZSBub25jZQ=",
            "dGhlIHNhbXBsZSBub25jZQ===",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZ===",
            "dGhlIHNhbXBsZSBub25j-_==",
            "dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ==",
            "dGhlIHNhbXBsZSBub25jZQé=",
        ] {
            let r = websocket_key(&req(&[("Sec-WebSocket-Key", key)])).unwrap_err();
            assert_eq!((r.status, r.code), (400, code::BAD_KEY), "{key:?}");
        }
        assert_eq!(websocket_key(&req(&[])).unwrap_err().code, code::BAD_KEY);
        let twice = req(&[
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert_eq!(websocket_key(&twice).unwrap_err().code, code::BAD_KEY);
    }

    #[test]
    fn accepts_versions_13_and_8_like_ws() {
        for v in ["13", "8", " 13 "] {
            assert!(
                check_version(&req(&[("Sec-WebSocket-Version", v)])).is_ok(),
                "{v:?}"
            );
        }
    }

    #[test]
    fn answers_426_for_a_well_formed_unsupported_version() {
        for v in ["7", "12", "14", "0", "013"] {
            let r = check_version(&req(&[("Sec-WebSocket-Version", v)])).unwrap_err();
            assert_eq!(
                (r.status, r.code),
                (426, code::UNSUPPORTED_VERSION),
                "{v:?}"
            );
        }
    }

    #[test]
    fn answers_400_for_a_missing_or_malformed_version() {
        for v in [
            "", "13, 13", "thirteen", "1e1", "0x0d", "13.0", "-13", "1300",
        ] {
            let r = check_version(&req(&[("Sec-WebSocket-Version", v)])).unwrap_err();
            assert_eq!((r.status, r.code), (400, code::BAD_VERSION), "{v:?}");
        }
        assert_eq!(
            check_version(&req(&[])).unwrap_err().code,
            code::BAD_VERSION
        );
        let twice = req(&[
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Version", "13"),
        ]);
        assert_eq!(check_version(&twice).unwrap_err().code, code::BAD_VERSION);
    }

    #[test]
    fn parses_offered_protocols_across_header_lines() {
        let r = req(&[
            ("Sec-WebSocket-Protocol", "chat ,\tsuperchat"),
            ("sec-websocket-protocol", "v2.cluso"),
        ]);
        assert_eq!(
            offered_protocols(&r).unwrap(),
            ["chat", "superchat", "v2.cluso"]
        );
        assert!(offered_protocols(&req(&[])).unwrap().is_empty());
    }

    #[test]
    fn rejects_invalid_protocol_lists_like_ws() {
        for value in [
            "",
            "chat,",
            ",chat",
            "chat,,x",
            "chat, chat",
            "a b",
            "a;b",
            "ch@t",
            "é",
        ] {
            let r = offered_protocols(&req(&[("Sec-WebSocket-Protocol", value)])).unwrap_err();
            assert_eq!((r.status, r.code), (400, code::BAD_PROTOCOL), "{value:?}");
        }
        let dup = req(&[
            ("Sec-WebSocket-Protocol", "a"),
            ("Sec-WebSocket-Protocol", "a"),
        ]);
        assert_eq!(
            offered_protocols(&dup).unwrap_err().code,
            code::BAD_PROTOCOL
        );
    }

    #[test]
    fn selects_first_offered_protocol() {
        assert_eq!(select_protocol(&["chat", "superchat"]), Some("chat"));
        assert_eq!(select_protocol(&[]), None);
    }

    #[test]
    fn never_selects_a_token_carrying_protocol() {
        assert_eq!(
            select_protocol(&["cluso-token.abc", "cluso"]),
            Some("cluso")
        );
        assert_eq!(select_protocol(&["Cluso-Token.abc"]), None);
    }
}
