//! Fuzzes the handshake: arbitrary bytes through the request parser (the `listen()` path),
//! the same bytes as loosely split text lines (the `attach()` path, where Node's parser has
//! already accepted the head and anything may reach us), and as policy entries. Asserts no
//! panic and the invariants the transports rely on.
#![no_main]

use std::sync::OnceLock;

use cluso_ws::handshake::{
    check_upgrade, headers_to_lowercase_map, parse_request, rejection_response,
    switching_protocols, AllowedHosts, AuthToken, HandshakePolicy, OriginPolicy, ParseStatus,
    UpgradeRequest, MAX_HEADER_BYTES,
};
use libfuzzer_sys::fuzz_target;

/// The token of the token-mode policy; the seed corpus presents it.
const FUZZ_TOKEN: &str = "fuzz-token-0123456789";

fn policies() -> &'static [HandshakePolicy] {
    static POLICIES: OnceLock<Vec<HandshakePolicy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let token = AuthToken::new(FUZZ_TOKEN).expect("valid fuzz token");
        let origins = OriginPolicy::from_allowed(&["https://ui.example", "http://localhost:5173"])
            .expect("valid origins");
        let hosts = AllowedHosts::new(&["dev.example.com", ".corp.example"]).expect("valid hosts");
        vec![
            HandshakePolicy::default(),
            HandshakePolicy {
                path: "/".into(),
                origins,
                allowed_hosts: hosts,
                token: Some(token),
            },
            HandshakePolicy {
                origins: OriginPolicy::Any,
                allowed_hosts: AllowedHosts::new(&["*"]).expect("star"),
                ..HandshakePolicy::default()
            },
        ]
    })
}

/// Runs every policy on `req` and checks the answer's shape.
fn check_all(req: &UpgradeRequest) {
    let _ = headers_to_lowercase_map(&req.headers);
    for policy in policies() {
        match check_upgrade(req, policy) {
            Ok(accepted) => {
                let bytes = switching_protocols(&accepted);
                // Nothing the peer sent may add a header line: 4 header lines (5 with a
                // subprotocol), then the blank line.
                let lines = bytes.windows(2).filter(|w| w == b"\r\n").count();
                let expected = if accepted.protocol.is_some() { 6 } else { 5 };
                assert_eq!(lines, expected, "{:?}", String::from_utf8_lossy(&bytes));
                assert!(bytes.ends_with(b"\r\n\r\n"));
                if let Some(p) = &accepted.protocol {
                    assert!(!p.is_empty() && !p.to_ascii_lowercase().starts_with("cluso-token."));
                }
            }
            Err(rejection) => {
                assert!((400..600).contains(&rejection.status));
                let bytes = rejection_response(&rejection);
                assert!(bytes.ends_with(rejection.reason.as_bytes()));
            }
        }
    }
}

/// The `attach()` shape: first line `METHOD URL`, then `name: value` lines, no HTTP syntax
/// rules at all.
fn loose_request(text: &str, local_is_loopback: bool) -> UpgradeRequest {
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let (method, url) = first.split_once(' ').unwrap_or((first, ""));
    UpgradeRequest {
        method: method.to_owned(),
        url: url
            .trim_end_matches(['\r', ' '])
            .trim_end_matches(" HTTP/1.1")
            .to_owned(),
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.to_owned(), v.trim_end_matches('\r').to_owned()))
            .collect(),
        local_is_loopback,
    }
}

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(ParseStatus::Complete { head, consumed_len }) => {
            assert!(consumed_len <= data.len() && consumed_len <= MAX_HEADER_BYTES);
            for loopback in [true, false] {
                check_all(&head.clone().into_upgrade_request(loopback));
            }
        }
        Ok(ParseStatus::Partial) => assert!(data.len() < MAX_HEADER_BYTES),
        Err(e) => {
            let r = e.rejection();
            assert!(r.status == 400 || r.status == 431);
        }
    }

    let text = String::from_utf8_lossy(data);
    check_all(&loose_request(
        &text,
        data.first().is_some_and(|b| b & 1 == 0),
    ));

    // Option parsing from user-provided strings must refuse, not panic.
    let entries: Vec<&str> = text.lines().take(8).collect();
    let _ = OriginPolicy::from_allowed(&entries);
    let _ = AllowedHosts::new(&entries);
    if let Some(first) = entries.first() {
        let _ = AuthToken::new(*first);
    }
});
