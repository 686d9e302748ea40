//! The `Origin` policy (option `allowedOrigins`).
//!
//! Browsers do not apply CORS to the WebSocket handshake, so without this check any page the
//! developer visits can open `ws://127.0.0.1:PORT/ws` and read the events (webpack-dev-server
//! CVE-2018-14732, Vite CVE-2025-24010, Claude Code IDE extensions CVE-2025-52882). The
//! `Origin` header is the browser's word on which page asks; non-browser clients may send
//! any value or none, so this check stops web pages, not local programs (that is what the
//! token is for).
//!
//! - **Default** ([`OriginPolicy::LoopbackOrSameHost`]): a request without `Origin` is
//!   admitted (CLI and server-side clients). An `http`/`https` origin is admitted when its
//!   host is exactly `localhost`, `127.0.0.1` or `[::1]` (any port), or when it names the
//!   request's own `Host` (same host and port, a missing port meaning the scheme's default)
//!   *and* that `Host` cannot be rebound: an IP literal, a loopback name, or a host listed in
//!   [`AllowedHosts`] (`allowedHosts: ['*']` therefore also admits same-host origins on any
//!   name). Everything else is a 403: `null` (sandboxed frames, `file:` pages —
//!   Next.js CVE-2026-27977), look-alikes (`http://127.0.0.1.evil.example`,
//!   `http://localhost.evil.com`), userinfo tricks (`http://localhost@evil.com`), other
//!   loopback spellings (`127.0.0.2`, `app.localhost`), `0.0.0.0` (not a page a browser
//!   serves; reachable as loopback on some systems, so treated as hostile), and every other IP
//!   origin (webpack-dev-server CVE-2025-30360).
//! - **List** (`allowedOrigins: [...]`): exact match on scheme, host and port, after lower-
//!   casing and dropping default ports (`http://x:80` is `http://x`). A request without
//!   `Origin` is still admitted.
//! - **Any** (`allowedOrigins: ['*']`): no check. The caller should log a warning once.
//!
//! A version-8 client sends its origin as `Sec-WebSocket-Origin`; both headers are read, and
//! more than one origin value in total is refused.

use std::fmt;

use super::host::{parse_authority, AllowedHosts, Authority, HostName};
use super::{code, Rejection, UpgradeRequest};

/// Which `Origin` values the handshake admits. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OriginPolicy {
    /// No `Origin`, a loopback origin, or the request's own (non-rebindable) host.
    #[default]
    LoopbackOrSameHost,
    /// No `Origin`, or one of these origins exactly.
    List(Vec<Origin>),
    /// Every origin (`['*']`).
    Any,
}

/// A normalised web origin: lower-case scheme and host, port `None` when it is the scheme's
/// default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: HostName,
    port: Option<u16>,
}

impl Origin {
    /// Parses a serialised origin `scheme://host[:port]` (no userinfo, path, query or
    /// fragment; `null` and anything else malformed give `None`).
    pub fn parse(s: &str) -> Option<Origin> {
        let (scheme, authority) = s.split_once("://")?;
        let mut scheme_bytes = scheme.bytes();
        let scheme_ok = scheme_bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && scheme_bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let Authority { host, port } = parse_authority(authority)?;
        let port = port.filter(|p| Some(*p) != default_port(&scheme));
        Some(Origin { scheme, host, port })
    }

    /// The port, or the scheme's default port.
    fn effective_port(&self) -> Option<u16> {
        self.port.or_else(|| default_port(&self.scheme))
    }

    fn is_http(&self) -> bool {
        self.scheme == "http" || self.scheme == "https"
    }
}

/// The default port of the schemes whose origins can meet a WebSocket server.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// An `allowedOrigins` entry that is not an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOriginEntry(pub String);

impl fmt::Display for InvalidOriginEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid allowedOrigins entry {:?}: expected 'scheme://host[:port]' or '*' \
             ('null' is never allowed: any sandboxed page can send it)",
            self.0
        )
    }
}

impl std::error::Error for InvalidOriginEntry {}

impl OriginPolicy {
    /// Builds the policy of an `allowedOrigins` option: `*` anywhere in the list gives
    /// [`OriginPolicy::Any`], otherwise every entry must be an origin (one trailing `/` is
    /// forgiven). An empty list admits only requests without `Origin`.
    pub fn from_allowed<S: AsRef<str>>(entries: &[S]) -> Result<Self, InvalidOriginEntry> {
        if entries.iter().any(|e| e.as_ref().trim() == "*") {
            return Ok(OriginPolicy::Any);
        }
        entries
            .iter()
            .map(|e| {
                let raw = e.as_ref();
                let trimmed = raw.trim();
                let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
                Origin::parse(trimmed).ok_or_else(|| InvalidOriginEntry(raw.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(OriginPolicy::List)
    }
}

/// Refuses, with 403, a request whose origin the policy does not admit.
pub fn check_origin(
    req: &UpgradeRequest,
    policy: &OriginPolicy,
    allowed_hosts: &AllowedHosts,
) -> Result<(), Rejection> {
    if *policy == OriginPolicy::Any {
        return Ok(());
    }
    let mut values = req
        .header_values("origin")
        .chain(req.header_values("sec-websocket-origin"));
    let Some(value) = values.next() else {
        return Ok(());
    };
    let admitted = values.next().is_none()
        && Origin::parse(value.trim_matches(super::is_http_whitespace)).is_some_and(|origin| {
            match policy {
                OriginPolicy::LoopbackOrSameHost => {
                    origin.is_http()
                        && (origin.host.is_canonical_loopback()
                            || is_same_host(req, &origin, allowed_hosts))
                }
                OriginPolicy::List(list) => list.contains(&origin),
                OriginPolicy::Any => true,
            }
        });
    if admitted {
        Ok(())
    } else {
        Err(Rejection::new(
            403,
            code::ORIGIN_FORBIDDEN,
            "Origin not allowed",
        ))
    }
}

/// Whether `origin` names the request's own `Host` (host and port), and that `Host` is one
/// DNS rebinding cannot forge.
fn is_same_host(req: &UpgradeRequest, origin: &Origin, allowed_hosts: &AllowedHosts) -> bool {
    let Some(Authority { host, port }) = req.single_header("host").and_then(parse_authority) else {
        return false;
    };
    let rebind_safe = host.is_ip() || host.is_loopback() || allowed_hosts.admits(&host);
    rebind_safe
        && host == origin.host
        && origin.effective_port() == port.or_else(|| default_port(&origin.scheme))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str, origins: &[&str]) -> UpgradeRequest {
        let mut headers = vec![("Host".to_string(), host.to_string())];
        headers.extend(
            origins
                .iter()
                .map(|o| ("Origin".to_string(), o.to_string())),
        );
        UpgradeRequest {
            method: "GET".into(),
            url: "/ws".into(),
            headers,
            local_is_loopback: true,
        }
    }

    fn default_check(host: &str, origin: &str) -> Result<(), Rejection> {
        check_origin(
            &req(host, &[origin]),
            &OriginPolicy::default(),
            &AllowedHosts::default(),
        )
    }

    fn assert_forbidden(result: Result<(), Rejection>, what: &str) {
        let r = result.expect_err(what);
        assert_eq!((r.status, r.code), (403, code::ORIGIN_FORBIDDEN), "{what}");
    }

    #[test]
    fn admits_request_without_origin() {
        assert!(check_origin(
            &req("localhost", &[]),
            &OriginPolicy::default(),
            &AllowedHosts::default()
        )
        .is_ok());
        let list = OriginPolicy::from_allowed(&["https://app.example"]).unwrap();
        assert!(check_origin(&req("localhost", &[]), &list, &AllowedHosts::default()).is_ok());
    }

    #[test]
    fn admits_loopback_origin_any_port() {
        for o in [
            "http://localhost",
            "http://localhost:5173",
            "https://localhost:3000",
            "http://127.0.0.1:1",
            "https://127.0.0.1",
            "http://[::1]:8080",
            "http://[0:0:0:0:0:0:0:1]",
            "HTTP://LOCALHOST:5173",
            "http://LocalHost",
        ] {
            assert!(default_check("localhost:3000", o).is_ok(), "{o}");
        }
    }

    #[test]
    fn rejects_origin_null() {
        assert_forbidden(default_check("localhost:3000", "null"), "null");
        assert_forbidden(default_check("localhost:3000", "NULL"), "NULL");
        assert!(OriginPolicy::from_allowed(&["null"]).is_err());
    }

    #[test]
    fn rejects_lookalike_and_userinfo_origins() {
        for o in [
            "http://127.0.0.1.evil.example",
            "http://localhost.evil.com",
            "http://localhost.evil.com:3000",
            "http://evil-localhost",
            "http://localhost@evil.com",
            "http://evil.com@localhost",
            "http://localhost:3000@evil.com",
            "http://localhost:3000/",
            "http://localhost/path",
            "http://localhost?x",
            "http://localhost#x",
            "http://localhost.",
            "http://localhost:65536",
            "http:/localhost",
            "http//localhost",
            "localhost",
            "ws://localhost:3000",
            "file://localhost",
            "chrome-extension://localhost",
            "http://app.localhost",
            "http://127.0.0.2",
            "http://127.1",
            "http://2130706433",
            "http://[::ffff:127.0.0.1]",
            "http://local host",
            "",
        ] {
            assert_forbidden(default_check("localhost:3000", o), o);
        }
    }

    #[test]
    fn rejects_non_loopback_ip_origins() {
        // CVE-2025-30360: webpack-dev-server admitted any IP-address origin.
        for o in [
            "http://0.0.0.0:3000",
            "http://1.2.3.4",
            "http://192.168.1.10:8080",
            "http://[2001:db8::1]",
            "http://[::]",
        ] {
            assert_forbidden(default_check("localhost:3000", o), o);
        }
    }

    #[test]
    fn rejects_foreign_web_origins() {
        // CVE-2018-14732, CVE-2025-24010, CVE-2025-52882: any web page could connect.
        for o in [
            "https://evil.example",
            "http://evil.example:5173",
            "https://attacker.example:443",
        ] {
            assert_forbidden(default_check("127.0.0.1:3000", o), o);
        }
    }

    #[test]
    fn rejects_more_than_one_origin() {
        let two = req("localhost", &["http://localhost", "http://localhost"]);
        assert_forbidden(
            check_origin(&two, &OriginPolicy::default(), &AllowedHosts::default()),
            "two",
        );
        let mut mixed = req("localhost", &["http://localhost"]);
        mixed
            .headers
            .push(("Sec-WebSocket-Origin".into(), "https://evil.example".into()));
        assert_forbidden(
            check_origin(&mixed, &OriginPolicy::default(), &AllowedHosts::default()),
            "mixed",
        );
    }

    #[test]
    fn checks_version_8_sec_websocket_origin() {
        let mut r = req("localhost", &[]);
        r.headers
            .push(("Sec-WebSocket-Origin".into(), "https://evil.example".into()));
        assert_forbidden(
            check_origin(&r, &OriginPolicy::default(), &AllowedHosts::default()),
            "v8",
        );
    }

    #[test]
    fn admits_origin_of_own_ip_or_allowed_host() {
        assert!(default_check("192.168.1.10:3000", "http://192.168.1.10:3000").is_ok());
        assert!(default_check("192.168.1.10", "http://192.168.1.10").is_ok());
        assert!(default_check("192.168.1.10:80", "http://192.168.1.10").is_ok());
        assert!(default_check("192.168.1.10:443", "https://192.168.1.10").is_ok());
        // Behind a TLS proxy the Host has no port: it means the origin scheme's default.
        assert!(default_check("192.168.1.10", "https://192.168.1.10").is_ok());
        assert!(default_check("app.localhost:5173", "http://app.localhost:5173").is_ok());
        let allowed = AllowedHosts::new(&["dev.example.com"]).unwrap();
        let r = req("dev.example.com", &["https://dev.example.com"]);
        assert!(check_origin(&r, &OriginPolicy::default(), &allowed).is_ok());
    }

    #[test]
    fn rejects_same_host_origin_on_rebindable_name_or_other_port() {
        // A DNS name may have been rebound to us: only listed names count as our own.
        assert_forbidden(
            default_check("evil.example:3000", "http://evil.example:3000"),
            "rebind",
        );
        assert_forbidden(
            default_check("192.168.1.10:3000", "http://192.168.1.10:3001"),
            "port",
        );
        assert_forbidden(
            default_check("192.168.1.10:80", "https://192.168.1.10"),
            "default port",
        );
        assert_forbidden(
            default_check("192.168.1.11:3000", "http://192.168.1.10:3000"),
            "ip",
        );
    }

    #[test]
    fn list_matches_scheme_host_and_port_exactly() {
        let policy = OriginPolicy::from_allowed(&[
            "https://app.example",
            "http://LOCALHOST:5173/",
            "vscode-webview://abc",
        ])
        .unwrap();
        let check =
            |o: &str| check_origin(&req("localhost", &[o]), &policy, &AllowedHosts::default());
        for o in [
            "https://app.example",
            "https://app.example:443",
            "http://localhost:5173",
            "vscode-webview://ABC",
        ] {
            assert!(check(o).is_ok(), "{o}");
        }
        for o in [
            "http://app.example",
            "https://app.example:8443",
            "https://sub.app.example",
            "http://localhost:5174",
            "http://localhost",
            "http://127.0.0.1:5173",
            "null",
        ] {
            assert_forbidden(check(o), o);
        }
    }

    #[test]
    fn empty_list_admits_only_requests_without_origin() {
        let policy = OriginPolicy::from_allowed::<&str>(&[]).unwrap();
        assert_forbidden(
            check_origin(
                &req("localhost", &["http://localhost"]),
                &policy,
                &AllowedHosts::default(),
            ),
            "empty",
        );
    }

    #[test]
    fn star_admits_every_origin() {
        let policy = OriginPolicy::from_allowed(&["https://a.example", "*"]).unwrap();
        assert_eq!(policy, OriginPolicy::Any);
        for o in ["null", "https://evil.example", "garbage"] {
            assert!(
                check_origin(&req("localhost", &[o]), &policy, &AllowedHosts::default()).is_ok()
            );
        }
    }

    #[test]
    fn rejects_invalid_origin_entries() {
        for e in [
            "",
            "localhost:3000",
            "http://",
            "http://a/b",
            "http://u@a",
            "://a",
            "1http://a",
        ] {
            assert!(OriginPolicy::from_allowed(&[e]).is_err(), "{e:?}");
        }
    }
}
