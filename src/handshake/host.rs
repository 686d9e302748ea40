//! The `Host` check against DNS rebinding, and host-name parsing shared with the origin check.
//!
//! DNS rebinding: a page on `http://evil.example:3000` makes its own name resolve to
//! 127.0.0.1 and then opens `ws://evil.example:3000/ws`. The browser sees a same-origin
//! request and the socket reaches our loopback listener; only the `Host` header
//! (`evil.example:3000`) gives it away. So on a loopback connection the `Host` must name a
//! loopback host — `localhost`, `*.localhost` (browsers resolve those to loopback without
//! DNS, RFC 6761), an address in 127.0.0.0/8, `[::1]` — with any port, or a host in
//! [`AllowedHosts`]; anything else, a missing or a repeated `Host` included, is a 403.
//! When `AllowedHosts` lists hosts, the check applies to every connection, loopback or not.
//!
//! Host names are compared after normalisation: lower-cased, IPv6 parsed (so `[0::1]` is
//! `[::1]`). A name with a trailing dot, an empty label, userinfo or a path is malformed and
//! never matches; so is a numeric name that is not a dotted-quad IPv4 address (`127.1`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{code, Rejection, UpgradeRequest};

/// Longest host name accepted (the DNS limit on a full name). Longer names are malformed.
const MAX_HOST_NAME_LEN: usize = 253;

/// A normalised host: a lower-case DNS name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostName {
    Domain(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl HostName {
    /// `localhost`, `*.localhost`, 127.0.0.0/8, `::1` or an IPv4-mapped loopback address.
    pub(crate) fn is_loopback(&self) -> bool {
        match self {
            HostName::Domain(d) => d == "localhost" || d.ends_with(".localhost"),
            HostName::V4(ip) => ip.is_loopback(),
            HostName::V6(ip) => is_loopback_addr(&IpAddr::V6(*ip)),
        }
    }

    /// Exactly `localhost`, `127.0.0.1` or `[::1]`: the loopback origins a browser produces.
    pub(crate) fn is_canonical_loopback(&self) -> bool {
        match self {
            HostName::Domain(d) => d == "localhost",
            HostName::V4(ip) => *ip == Ipv4Addr::LOCALHOST,
            HostName::V6(ip) => *ip == Ipv6Addr::LOCALHOST,
        }
    }

    /// Whether this is an IP literal (which no DNS answer can rebind).
    pub(crate) fn is_ip(&self) -> bool {
        !matches!(self, HostName::Domain(_))
    }
}

/// A parsed `host[:port]`; `port` is `None` when absent or empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authority {
    pub(crate) host: HostName,
    pub(crate) port: Option<u16>,
}

/// Parses `host[:port]` as found in a `Host` header or after `scheme://` in an origin.
pub(crate) fn parse_authority(s: &str) -> Option<Authority> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = inside.parse().ok()?;
        let port = match after {
            "" => None,
            _ => parse_port(after.strip_prefix(':')?)?,
        };
        (HostName::V6(ip), port)
    } else {
        let (name, port) = match s.split_once(':') {
            Some((name, port)) => (name, parse_port(port)?),
            None => (s, None),
        };
        (parse_host_name(name)?, port)
    };
    Some(Authority { host, port })
}

/// `Some(None)` for an empty port, `Some(Some(n))` for 1–5 digits ≤ 65535, else `None`.
fn parse_port(s: &str) -> Option<Option<u16>> {
    if s.is_empty() {
        return Some(None);
    }
    if s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().map(Some)
}

/// A DNS name (letters, digits, `-`, `_`, non-empty dot-separated labels) or a dotted-quad
/// IPv4 address, lower-cased.
fn parse_host_name(s: &str) -> Option<HostName> {
    if s.is_empty() || s.len() > MAX_HOST_NAME_LEN {
        return None;
    }
    let valid_chars = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid_chars || s.split('.').any(str::is_empty) {
        return None;
    }
    // As in the URL standard, a name whose last label is numeric is an IPv4 address or
    // nothing: `127.1` and `127.0.0.01` are refused rather than taken as names.
    let last = s.rsplit('.').next().unwrap_or(s);
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().map(HostName::V4);
    }
    Some(HostName::Domain(s.to_ascii_lowercase()))
}

/// Whether `addr` is a loopback address, counting IPv4-mapped IPv6 (`::ffff:127.0.0.1`),
/// as a dual-stack socket reports an IPv4 loopback peer.
pub fn is_loopback_addr(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Host names the `Host` header may name besides loopback ones (option `allowedHosts`).
///
/// Entries are host names without port: `example.com` matches that name only,
/// `.example.com` matches `example.com` and every subdomain, an IP address matches itself,
/// and `*` turns the `Host` check off. The default is empty: loopback names only, checked on
/// loopback connections only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    any: bool,
    exact: Vec<HostName>,
    suffixes: Vec<String>,
}

/// An `allowedHosts` entry that is not a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHostEntry(pub String);

impl fmt::Display for InvalidHostEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid allowedHosts entry {:?}: expected a host name without port, \
             '.example.com' for a domain and its subdomains, or '*'",
            self.0
        )
    }
}

impl std::error::Error for InvalidHostEntry {}

impl AllowedHosts {
    /// Parses the `allowedHosts` option.
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<Self, InvalidHostEntry> {
        let mut hosts = AllowedHosts::default();
        for entry in entries {
            let raw = entry.as_ref();
            let invalid = || InvalidHostEntry(raw.to_owned());
            let trimmed = raw.trim();
            if trimmed == "*" {
                hosts.any = true;
            } else if let Some(domain) = trimmed.strip_prefix('.') {
                match parse_host_name(domain) {
                    Some(HostName::Domain(d)) => hosts.suffixes.push(d),
                    _ => return Err(invalid()),
                }
            } else {
                match parse_authority(trimmed) {
                    Some(Authority { host, port: None }) if !trimmed.ends_with(':') => {
                        hosts.exact.push(host)
                    }
                    _ => return Err(invalid()),
                }
            }
        }
        Ok(hosts)
    }

    /// Whether `*` was given: every host is admitted.
    pub fn is_any(&self) -> bool {
        self.any
    }

    /// Whether the list names hosts (so the check applies to every connection).
    fn restricts(&self) -> bool {
        !self.any && (!self.exact.is_empty() || !self.suffixes.is_empty())
    }

    /// Whether `host` is listed (ignoring the loopback rule).
    pub(crate) fn admits(&self, host: &HostName) -> bool {
        if self.any || self.exact.contains(host) {
            return true;
        }
        match host {
            HostName::Domain(d) => self.suffixes.iter().any(|s| {
                d == s
                    || (d.len() > s.len()
                        && d.ends_with(s.as_str())
                        && d[..d.len() - s.len()].ends_with('.'))
            }),
            _ => false,
        }
    }
}

/// Refuses, with 403, a loopback connection (or any connection when `allowed` lists hosts)
/// whose single `Host` header does not name a loopback or allowed host.
pub fn check_host(req: &UpgradeRequest, allowed: &AllowedHosts) -> Result<(), Rejection> {
    if allowed.any || !(req.local_is_loopback || allowed.restricts()) {
        return Ok(());
    }
    let admitted = req
        .single_header("host")
        .and_then(parse_authority)
        .is_some_and(|a| a.host.is_loopback() || allowed.admits(&a.host));
    if admitted {
        Ok(())
    } else {
        Err(Rejection::new(
            403,
            code::HOST_FORBIDDEN,
            "Host not allowed",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: Option<&str>, loopback: bool) -> UpgradeRequest {
        UpgradeRequest {
            method: "GET".into(),
            url: "/ws".into(),
            headers: host
                .map(|h| ("Host".to_string(), h.to_string()))
                .into_iter()
                .collect(),
            local_is_loopback: loopback,
        }
    }

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::new(entries).unwrap()
    }

    #[test]
    fn admits_loopback_hosts_with_or_without_port() {
        for h in [
            "localhost",
            "LOCALHOST:3000",
            "localhost:",
            "app.localhost:5173",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.255.0.7:1",
            "[::1]",
            "[::1]:3000",
            "[0:0:0:0:0:0:0:1]:3000",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(
                check_host(&req(Some(h), true), &AllowedHosts::default()).is_ok(),
                "{h:?}"
            );
        }
    }

    #[test]
    fn rejects_rebound_and_lookalike_hosts_on_loopback() {
        for h in [
            "evil.example",
            "evil.example:3000",
            "127.0.0.1.evil.example",
            "localhost.evil.com",
            "localhost.",
            "localhost@evil.com",
            "evil.com@localhost",
            "localhost:3000@evil.com",
            "127.1",
            "2130706433",
            "0x7f.0.0.1",
            "0.0.0.0:3000",
            "192.168.1.10",
            "[::]",
            "[::1]x",
            "[::1%25lo]",
            "localhost:99999",
            "localhost:30a",
            "",
            " ",
            "local host",
            ".localhost",
        ] {
            let r = check_host(&req(Some(h), true), &AllowedHosts::default()).unwrap_err();
            assert_eq!((r.status, r.code), (403, code::HOST_FORBIDDEN), "{h:?}");
        }
    }

    #[test]
    fn rejects_missing_or_repeated_host_on_loopback() {
        assert!(check_host(&req(None, true), &AllowedHosts::default()).is_err());
        let mut twice = req(Some("localhost"), true);
        twice.headers.push(("host".into(), "localhost".into()));
        assert!(check_host(&twice, &AllowedHosts::default()).is_err());
    }

    #[test]
    fn skips_host_check_on_non_loopback_connection_by_default() {
        assert!(check_host(&req(Some("evil.example"), false), &AllowedHosts::default()).is_ok());
        assert!(check_host(&req(None, false), &AllowedHosts::default()).is_ok());
    }

    #[test]
    fn admits_listed_hosts_and_subdomains() {
        let allowed = hosts(&["dev.example.com", ".corp.example", "192.168.1.10"]);
        for h in [
            "dev.example.com",
            "DEV.example.com:8443",
            "corp.example",
            "a.b.corp.example:1",
            "192.168.1.10:3000",
            "localhost",
        ] {
            assert!(check_host(&req(Some(h), true), &allowed).is_ok(), "{h:?}");
        }
        for h in [
            "example.com",
            "evilcorp.example",
            "x.dev.example.com",
            "192.168.1.11",
        ] {
            assert!(check_host(&req(Some(h), true), &allowed).is_err(), "{h:?}");
        }
    }

    #[test]
    fn enforces_a_host_list_on_non_loopback_connections() {
        let allowed = hosts(&["dev.example.com"]);
        assert!(check_host(&req(Some("dev.example.com"), false), &allowed).is_ok());
        assert!(check_host(&req(Some("evil.example"), false), &allowed).is_err());
    }

    #[test]
    fn star_turns_host_check_off() {
        assert!(check_host(&req(Some("evil.example"), true), &hosts(&["*"])).is_ok());
        assert!(check_host(&req(None, true), &hosts(&["*"])).is_ok());
    }

    #[test]
    fn rejects_invalid_allowed_host_entries() {
        for e in [
            "",
            "host:80",
            "http://host",
            "a b",
            ".",
            ".127.0.0.1",
            "host:",
            "h/x",
        ] {
            assert!(AllowedHosts::new(&[e]).is_err(), "{e:?}");
        }
    }

    #[test]
    fn recognises_loopback_socket_addresses() {
        for a in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback_addr(&a.parse().unwrap()), "{a}");
        }
        for a in ["0.0.0.0", "::", "10.0.0.1", "::ffff:10.0.0.1"] {
            assert!(!is_loopback_addr(&a.parse().unwrap()), "{a}");
        }
    }
}
