//! The WebSocket opening handshake: parsing, validation and the security policy.
//!
//! Both native transports go through this module before a connection exists:
//! `listen()` reads the raw request bytes itself and parses them with [`parse_request`];
//! `attach()` receives method, url and raw headers from Node's HTTP parser. Either way they
//! build one [`UpgradeRequest`] and call [`check_upgrade`], which returns the
//! [`Accepted`] handshake (write [`switching_protocols`]) or a [`Rejection`] (write
//! [`rejection_response`] and close). The module is plain Rust: no napi, no tokio, no I/O.
//!
//! Layout, one concern per file:
//!
//! - [`request`]: request head from bytes (`httparse`), with the size limits, and the header
//!   helpers (Node's `req.headers` view for a JS `authenticate` callback).
//! - [`validate`]: the RFC 6455 checks exactly as the `ws` package makes them (method, path,
//!   `Upgrade`/`Connection`, key, version) and subprotocol negotiation.
//! - [`host`]: the `Host` check against DNS rebinding, and host-name parsing shared with
//!   [`origin`].
//! - [`origin`]: the `Origin` policy (loopback or same host by default, a list, or any).
//! - [`auth`]: the optional shared-secret token (generation, extraction, constant-time check).
//! - [`response`]: the bytes of the `101` answer and of every refusal.
//!
//! [`check_upgrade`] runs the checks in this order, and the first failure decides the answer:
//! method (405), path (404), upgrade headers / key / version / subprotocol syntax (400 or
//! 426), `Host` (403), `Origin` (403), token (401). Every refusal carries a stable
//! machine-readable code from [`code`].

pub mod auth;
pub mod host;
pub mod origin;
pub mod request;
pub mod response;
pub mod validate;

use std::fmt;

pub use auth::{AuthToken, InvalidToken, TOKEN_PROTOCOL_PREFIX, TOKEN_QUERY_PARAM};
pub use host::{is_loopback_addr, AllowedHosts, InvalidHostEntry};
pub use origin::{InvalidOriginEntry, OriginPolicy};
pub use request::{
    headers_to_lowercase_map, pairs_from_raw_headers, parse_request, ParseError, ParseStatus,
    RequestHead, MAX_HEADERS, MAX_HEADER_BYTES,
};
pub use response::{rejection_response, switching_protocols};

/// The stable machine-readable codes of handshake refusals ([`Rejection::code`]).
///
/// They are part of the public contract (logged, counted in statistics, listed in the README):
/// never rename one.
pub mod code {
    /// 400: the bytes are not an HTTP/1.1 request head.
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    /// 431: the request head is larger than [`super::MAX_HEADER_BYTES`] or has more than
    /// [`super::MAX_HEADERS`] header lines.
    pub const HEADERS_TOO_LARGE: &str = "HEADERS_TOO_LARGE";
    /// 405: the method is not `GET`.
    pub const BAD_METHOD: &str = "BAD_METHOD";
    /// 404: the path (query string excluded) is not the configured one.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// 400: `Upgrade: websocket` or the `upgrade` token of `Connection` is missing.
    pub const BAD_UPGRADE: &str = "BAD_UPGRADE";
    /// 400: `Sec-WebSocket-Key` is missing, repeated, or not 22 base64 characters + `==`.
    pub const BAD_KEY: &str = "BAD_KEY";
    /// 400: `Sec-WebSocket-Version` is missing, repeated or not a number.
    pub const BAD_VERSION: &str = "BAD_VERSION";
    /// 426: `Sec-WebSocket-Version` names a version other than 13 or 8.
    pub const UNSUPPORTED_VERSION: &str = "UNSUPPORTED_VERSION";
    /// 400: `Sec-WebSocket-Protocol` is not a list of distinct tokens.
    pub const BAD_PROTOCOL: &str = "BAD_PROTOCOL";
    /// 403: the `Host` header does not name a loopback host or an allowed host.
    pub const HOST_FORBIDDEN: &str = "HOST_FORBIDDEN";
    /// 403: the `Origin` is not admitted by the origin policy.
    pub const ORIGIN_FORBIDDEN: &str = "ORIGIN_FORBIDDEN";
    /// 401: the token is missing or wrong, or the `authenticate` callback refused.
    pub const UNAUTHORIZED: &str = "UNAUTHORIZED";
    /// 503: the server is at its connection limit.
    pub const SERVER_BUSY: &str = "SERVER_BUSY";
    /// 503: the server is shutting down.
    pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";

    /// Every code above: the bounded label set of `cluso_ws_rejected_handshakes_total`.
    pub const ALL: [&str; 14] = [
        BAD_REQUEST,
        HEADERS_TOO_LARGE,
        BAD_METHOD,
        NOT_FOUND,
        BAD_UPGRADE,
        BAD_KEY,
        BAD_VERSION,
        UNSUPPORTED_VERSION,
        BAD_PROTOCOL,
        HOST_FORBIDDEN,
        ORIGIN_FORBIDDEN,
        UNAUTHORIZED,
        SERVER_BUSY,
        SHUTTING_DOWN,
    ];
}

/// Everything the handshake check needs to know about one upgrade request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The request method as sent (`GET`; compared case-sensitively, as Node does).
    pub method: String,
    /// The request target as sent: path plus optional `?query`.
    pub url: String,
    /// Header (name, value) pairs in arrival order; names compare case-insensitively and a
    /// name may repeat.
    pub headers: Vec<(String, String)>,
    /// Whether the connection's *local* address is a loopback address. Take it from the
    /// accepted socket (`TcpStream::local_addr`, Node's `socket.localAddress`), not from the
    /// listener's bind address: a listener on `0.0.0.0` also receives loopback connections,
    /// and those need the `Host` check just the same. See [`is_loopback_addr`].
    pub local_is_loopback: bool,
}

impl UpgradeRequest {
    /// All values of header `name` (case-insensitive), in arrival order.
    pub fn header_values<'a: 'n, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + 'n {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of header `name` when it appears exactly once, trimmed of surrounding
    /// whitespace; `None` when it is absent or repeated.
    pub fn single_header(&self, name: &str) -> Option<&str> {
        let mut values = self.header_values(name);
        let first = values.next()?;
        match values.next() {
            Some(_) => None,
            None => Some(first.trim_matches(is_http_whitespace)),
        }
    }
}

/// The security and routing policy of one listener or attachment.
#[derive(Debug, Clone)]
pub struct HandshakePolicy {
    /// The only path upgrades are accepted on, compared exactly with the request path (query
    /// string excluded), as the `ws` package does. Default `/ws`.
    pub path: String,
    /// Which `Origin` headers are admitted. Default [`OriginPolicy::LoopbackOrSameHost`].
    pub origins: OriginPolicy,
    /// Extra host names the `Host` header may name. Default: none (loopback names only, and
    /// only checked on loopback connections).
    pub allowed_hosts: AllowedHosts,
    /// When set, every upgrade must present this token. Default `None`.
    pub token: Option<AuthToken>,
}

impl Default for HandshakePolicy {
    fn default() -> Self {
        HandshakePolicy {
            path: DEFAULT_PATH.to_owned(),
            origins: OriginPolicy::default(),
            allowed_hosts: AllowedHosts::default(),
            token: None,
        }
    }
}

/// The default upgrade path of `listen()` and `attach()`.
pub const DEFAULT_PATH: &str = "/ws";

/// A handshake that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The `Sec-WebSocket-Accept` value for the request's key.
    pub accept_key: String,
    /// The negotiated subprotocol: the first one offered, token carriers excluded.
    pub protocol: Option<String>,
}

/// A refused handshake: the HTTP status to answer with and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status code of the answer (400, 401, 403, 404, 405, 426, 431, 503).
    pub status: u16,
    /// Human-readable explanation, sent as the response body.
    pub reason: &'static str,
    /// Stable machine-readable code, one of [`code`].
    pub code: &'static str,
}

impl Rejection {
    /// A rejection with the given status, code and reason.
    pub const fn new(status: u16, code: &'static str, reason: &'static str) -> Self {
        Rejection {
            status,
            reason,
            code,
        }
    }

    /// 401 for a request an `authenticate` callback refused, threw on, or did not answer in
    /// time.
    pub const fn unauthorized() -> Self {
        Rejection::new(401, code::UNAUTHORIZED, "Unauthorized")
    }

    /// 503 for a request that would exceed the connection limit.
    pub const fn server_busy() -> Self {
        Rejection::new(503, code::SERVER_BUSY, "Too many connections")
    }

    /// 503 for a request that arrives during shutdown.
    pub const fn shutting_down() -> Self {
        Rejection::new(503, code::SHUTTING_DOWN, "Server is shutting down")
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.reason)
    }
}

impl std::error::Error for Rejection {}

/// Validates one upgrade request against `policy`.
///
/// Checks, in order: method, path, upgrade headers (`Upgrade`, `Connection`, key, version,
/// subprotocol syntax), `Host`, `Origin`, token. Returns the accept key and negotiated
/// subprotocol, or the first failing check as a [`Rejection`]. Pure and total: it never
/// panics, whatever the request holds.
pub fn check_upgrade(
    req: &UpgradeRequest,
    policy: &HandshakePolicy,
) -> Result<Accepted, Rejection> {
    validate::check_method(&req.method)?;
    validate::check_path(&req.url, &policy.path)?;
    validate::check_upgrade_headers(req)?;
    let key = validate::websocket_key(req)?;
    validate::check_version(req)?;
    let offered = validate::offered_protocols(req)?;
    host::check_host(req, &policy.allowed_hosts)?;
    origin::check_origin(req, &policy.origins, &policy.allowed_hosts)?;
    if let Some(token) = &policy.token {
        auth::check_token(req, &offered, token)?;
    }
    Ok(Accepted {
        accept_key: tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
        protocol: validate::select_protocol(&offered).map(str::to_owned),
    })
}

/// Optional whitespace of HTTP (RFC 9110 `OWS`): space and horizontal tab.
pub(crate) fn is_http_whitespace(c: char) -> bool {
    c == ' ' || c == '\t'
}

#[cfg(test)]
mod tests;
