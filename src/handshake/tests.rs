//! Tests of [`check_upgrade`] as a whole: the order of the checks and the attacks of
//! issue 4, from raw bytes to the answer.

use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The accept key of the RFC 6455 §1.3 example.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn valid(host: &str) -> UpgradeRequest {
    UpgradeRequest {
        method: "GET".into(),
        url: "/ws".into(),
        headers: [
            ("Host", host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect(),
        local_is_loopback: true,
    }
}

fn with(mut req: UpgradeRequest, name: &str, value: &str) -> UpgradeRequest {
    req.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    req.headers.push((name.to_string(), value.to_string()));
    req
}

fn code_of(req: &UpgradeRequest, policy: &HandshakePolicy) -> &'static str {
    check_upgrade(req, policy).map_or_else(|r| r.code, |_| "ACCEPTED")
}

#[test]
fn accepts_a_valid_loopback_upgrade_with_rfc_accept_key() {
    let accepted = check_upgrade(&valid("127.0.0.1:3000"), &HandshakePolicy::default()).unwrap();
    assert_eq!(
        accepted,
        Accepted {
            accept_key: ACCEPT.into(),
            protocol: None
        }
    );
}

#[test]
fn accepts_version_8_like_ws() {
    let req = with(valid("localhost"), "Sec-WebSocket-Version", "8");
    assert!(check_upgrade(&req, &HandshakePolicy::default()).is_ok());
}

#[test]
fn negotiates_first_protocol_and_strips_token_entry() {
    let token = AuthToken::generate();
    let policy = HandshakePolicy {
        token: Some(token.clone()),
        ..HandshakePolicy::default()
    };
    let offered = format!("cluso-token.{}, cluso, chat", token.as_str());
    let req = with(valid("localhost"), "Sec-WebSocket-Protocol", &offered);
    let accepted = check_upgrade(&req, &policy).unwrap();
    assert_eq!(accepted.protocol.as_deref(), Some("cluso"));
    let bytes = switching_protocols(&accepted);
    assert!(!String::from_utf8_lossy(&bytes).contains(token.as_str()));
}

#[test]
fn checks_method_then_path_then_upgrade_then_host_then_origin_then_token() {
    let policy = HandshakePolicy {
        token: Some(AuthToken::generate()),
        ..HandshakePolicy::default()
    };
    let mut req = with(valid("evil.example"), "Origin", "https://evil.example");
    req.headers.retain(|(n, _)| n != "Sec-WebSocket-Key");
    req.url = "/other".into();
    req.method = "POST".into();
    assert_eq!(code_of(&req, &policy), code::BAD_METHOD);
    req.method = "GET".into();
    assert_eq!(code_of(&req, &policy), code::NOT_FOUND);
    req.url = "/ws".into();
    assert_eq!(code_of(&req, &policy), code::BAD_KEY);
    req = with(req, "Sec-WebSocket-Key", KEY);
    assert_eq!(code_of(&req, &policy), code::HOST_FORBIDDEN);
    req = with(req, "Host", "localhost");
    assert_eq!(code_of(&req, &policy), code::ORIGIN_FORBIDDEN);
    req = with(req, "Origin", "http://localhost:5173");
    assert_eq!(code_of(&req, &policy), code::UNAUTHORIZED);
    let token = policy
        .token
        .as_ref()
        .map(AuthToken::as_str)
        .unwrap_or_default();
    req = with(req, "Authorization", &format!("Bearer {token}"));
    assert_eq!(code_of(&req, &policy), "ACCEPTED");
}

#[test]
fn checks_upgrade_then_key_then_version_then_protocol_syntax() {
    let policy = HandshakePolicy::default();
    let mut req = valid("localhost");
    req = with(req, "Sec-WebSocket-Protocol", "a,,b");
    req = with(req, "Sec-WebSocket-Version", "7");
    req = with(req, "Sec-WebSocket-Key", "short");
    req = with(req, "Upgrade", "h2c");
    assert_eq!(code_of(&req, &policy), code::BAD_UPGRADE);
    req = with(req, "Upgrade", "websocket");
    assert_eq!(code_of(&req, &policy), code::BAD_KEY);
    req = with(req, "Sec-WebSocket-Key", KEY);
    assert_eq!(code_of(&req, &policy), code::UNSUPPORTED_VERSION);
    req = with(req, "Sec-WebSocket-Version", "13");
    assert_eq!(code_of(&req, &policy), code::BAD_PROTOCOL);
}

#[test]
fn rejects_dns_rebinding_of_loopback_listener() {
    // CVE-2018-7160 (Node inspector): the page's own name, rebound to 127.0.0.1.
    let req = with(
        valid("evil.example:9229"),
        "Origin",
        "http://evil.example:9229",
    );
    let r = check_upgrade(&req, &HandshakePolicy::default()).unwrap_err();
    assert_eq!((r.status, r.code), (403, code::HOST_FORBIDDEN));
}

#[test]
fn rejects_dns_rebinding_to_lan_address_of_wildcard_listener() {
    // A listener on 0.0.0.0 reached through a LAN address: no Host check applies, but a
    // same-host origin on a DNS name does not count.
    let mut req = with(
        valid("evil.example:3000"),
        "Origin",
        "http://evil.example:3000",
    );
    req.local_is_loopback = false;
    assert_eq!(
        code_of(&req, &HandshakePolicy::default()),
        code::ORIGIN_FORBIDDEN
    );
}

#[test]
fn rejects_cross_site_pages_by_origin() {
    for origin in [
        "null",                          // CVE-2026-27977
        "http://192.168.1.20",           // CVE-2025-30360
        "https://evil.example",          // CVE-2018-14732, CVE-2025-24010, CVE-2025-52882
        "http://127.0.0.1.evil.example", // look-alike
        "http://localhost@evil.com",     // userinfo
    ] {
        let req = with(valid("127.0.0.1:3000"), "Origin", origin);
        let r = check_upgrade(&req, &HandshakePolicy::default()).unwrap_err();
        assert_eq!(
            (r.status, r.code),
            (403, code::ORIGIN_FORBIDDEN),
            "{origin}"
        );
    }
}

#[test]
fn admits_explicit_origin_list_and_star() {
    let list = HandshakePolicy {
        origins: OriginPolicy::from_allowed(&["https://ui.example"]).unwrap(),
        ..HandshakePolicy::default()
    };
    let req = with(valid("localhost:3000"), "Origin", "https://ui.example");
    assert!(check_upgrade(&req, &list).is_ok());
    assert_eq!(
        code_of(&req, &HandshakePolicy::default()),
        code::ORIGIN_FORBIDDEN
    );
    let any = HandshakePolicy {
        origins: OriginPolicy::Any,
        ..HandshakePolicy::default()
    };
    assert!(check_upgrade(&with(req, "Origin", "null"), &any).is_ok());
}

#[test]
fn handles_a_parsed_request_end_to_end() {
    let bytes = format!(
        "GET /ws?token=abc HTTP/1.1\r\nHost: [::1]:4000\r\nOrigin: http://[::1]:5173\r\n\
         Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n\r\nrest"
    );
    let Ok(ParseStatus::Complete { head, consumed_len }) = parse_request(bytes.as_bytes()) else {
        panic!("expected a complete head");
    };
    assert_eq!(&bytes[consumed_len..], "rest");
    let accepted = check_upgrade(
        &head.into_upgrade_request(true),
        &HandshakePolicy::default(),
    );
    assert_eq!(accepted.unwrap().protocol.as_deref(), Some("chat"));
}

#[test]
fn rejection_display_names_status_and_code() {
    let r = Rejection::server_busy();
    assert_eq!(r.to_string(), "503 SERVER_BUSY: Too many connections");
    assert_eq!(Rejection::shutting_down().status, 503);
}

#[test]
fn single_header_trims_and_refuses_repeats() {
    let req = with(valid("localhost"), "X-A", "  v\t");
    assert_eq!(req.single_header("x-a"), Some("v"));
    let mut twice = req.clone();
    twice.headers.push(("x-a".into(), "w".into()));
    assert_eq!(twice.single_header("X-A"), None);
    assert_eq!(req.single_header("absent"), None);
}
