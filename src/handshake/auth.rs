//! Token mode: a shared secret every upgrade must present (option `token`).
//!
//! The Origin check stops web pages; a token also stops local programs and pages on allowed
//! origins that were not given it. Browsers cannot set headers on a WebSocket, so the token
//! is accepted from any of three carriers:
//!
//! - `Authorization: Bearer <token>` (non-browser clients);
//! - a `Sec-WebSocket-Protocol` entry `cluso-token.<token>` ([`TOKEN_PROTOCOL_PREFIX`]):
//!   `new WebSocket(url, ['cluso', 'cluso-token.' + token])`. That entry is never chosen as
//!   the subprotocol (the secret is not echoed back), and a browser fails a handshake that
//!   offered protocols and got none back, hence the companion `cluso` entry;
//! - a `token` query parameter ([`TOKEN_QUERY_PARAM`]), percent-decoded as
//!   `URLSearchParams` does: `ws://127.0.0.1:3000/ws?token=<token>` (it may end up in logs and
//!   history; prefer the subprotocol carrier in browsers).
//!
//! The comparison runs in constant time with respect to the token's content (`subtle`); the
//! length is not secret. A request presenting the token in several places passes when any
//! of them matches, and at most [`MAX_TOKEN_CANDIDATES`] values are tried.

use std::borrow::Cow;
use std::fmt;

use subtle::ConstantTimeEq;

use super::validate::query_of;
use super::{code, is_http_whitespace, Rejection, UpgradeRequest};

/// Prefix of the `Sec-WebSocket-Protocol` entry that carries the token (matched
/// case-insensitively; the token after it is case-sensitive).
pub const TOKEN_PROTOCOL_PREFIX: &str = "cluso-token.";

/// Name of the query parameter that carries the token.
pub const TOKEN_QUERY_PARAM: &str = "token";

/// Random bytes in a generated token: 256 bits, beyond any guessing.
const GENERATED_TOKEN_BYTES: usize = 32;

/// Shortest token a user may configure: 16 characters, so a random token of that size still
/// has 96+ bits; shorter secrets are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// Longest token a user may configure; it has to fit in a request head next to everything
/// else, and real secrets are far shorter.
pub const MAX_TOKEN_LEN: usize = 512;

/// Most presented values compared per request: bounds the work (and the guesses) one
/// request can make. Honest clients present one.
pub const MAX_TOKEN_CANDIDATES: usize = 8;

/// A shared secret. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(String);

/// A configured token that cannot be used (see [`AuthToken::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidToken;

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid token: expected {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} characters from \
             A-Z a-z 0-9 - . _ ~"
        )
    }
}

impl std::error::Error for InvalidToken {}

impl AuthToken {
    /// A fresh random 256-bit token as 64 lower-case hex characters, from the thread-local
    /// cryptographically secure generator of `rand`.
    pub fn generate() -> Self {
        let bytes: [u8; GENERATED_TOKEN_BYTES] = rand::random();
        let mut hex = String::with_capacity(GENERATED_TOKEN_BYTES * 2);
        for b in bytes {
            hex.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
            hex.push(char::from(HEX_DIGITS[usize::from(b & 0x0f)]));
        }
        AuthToken(hex)
    }

    /// A user-chosen token: [`MIN_TOKEN_LEN`] to [`MAX_TOKEN_LEN`] characters from the URL
    /// "unreserved" set (`A-Z a-z 0-9 - . _ ~`), so it travels unchanged in a header, a
    /// subprotocol and a query string.
    pub fn new(token: impl Into<String>) -> Result<Self, InvalidToken> {
        let token = token.into();
        let valid = (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token.len())
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if valid {
            Ok(AuthToken(token))
        } else {
            Err(InvalidToken)
        }
    }

    /// The secret, for `manager.token` and for handing to trusted clients.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Whether a subprotocol entry carries a token (and so must never be echoed).
pub(crate) fn is_token_protocol(protocol: &str) -> bool {
    protocol
        .get(..TOKEN_PROTOCOL_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(TOKEN_PROTOCOL_PREFIX))
}

/// The token values a request presents, in carrier order (bearer, subprotocol, query), at
/// most [`MAX_TOKEN_CANDIDATES`]. `offered` is the parsed `Sec-WebSocket-Protocol` list.
pub fn presented_tokens<'a>(req: &'a UpgradeRequest, offered: &[&'a str]) -> Vec<Cow<'a, str>> {
    let bearer = req.header_values("authorization").filter_map(|v| {
        let (scheme, rest) = v.trim_matches(is_http_whitespace).split_once([' ', '\t'])?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| Cow::Borrowed(rest.trim_matches(is_http_whitespace)))
    });
    let protocol = offered.iter().filter(|p| is_token_protocol(p)).map(|p| {
        // `is_token_protocol` checked that the prefix (ASCII) is there, so this is a char
        // boundary; `get` keeps it panic-free regardless.
        Cow::Borrowed(p.get(TOKEN_PROTOCOL_PREFIX.len()..).unwrap_or_default())
    });
    let query = query_of(&req.url)
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(name) == TOKEN_QUERY_PARAM).then(|| form_decode(value))
        });
    bearer
        .chain(protocol)
        .chain(query)
        .take(MAX_TOKEN_CANDIDATES)
        .collect()
}

/// Refuses, with 401, a request that does not present `token`.
pub fn check_token(
    req: &UpgradeRequest,
    offered: &[&str],
    token: &AuthToken,
) -> Result<(), Rejection> {
    let matched = presented_tokens(req, offered)
        .iter()
        .fold(false, |found, candidate| token.matches(candidate) | found);
    if matched {
        Ok(())
    } else {
        Err(Rejection::new(
            401,
            code::UNAUTHORIZED,
            "Missing or invalid token",
        ))
    }
}

/// Decodes one `application/x-www-form-urlencoded` component as `URLSearchParams` does:
/// `+` is a space, `%XX` a byte, a `%` not followed by two hex digits stays as it is, and
/// invalid UTF-8 becomes U+FFFD.
pub(crate) fn form_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex_value(bytes.get(i + 1)), hex_value(bytes.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex_value(b: Option<&u8>) -> Option<u8> {
    char::from(*b?)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn req(url: &str, headers: &[(&str, &str)]) -> UpgradeRequest {
        UpgradeRequest {
            method: "GET".into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            local_is_loopback: true,
        }
    }

    fn check(r: &UpgradeRequest, offered: &[&str]) -> Result<(), Rejection> {
        check_token(r, offered, &AuthToken::new(TOKEN).unwrap())
    }

    #[test]
    fn generates_distinct_256_bit_hex_tokens() {
        let (a, b) = (AuthToken::generate(), AuthToken::generate());
        assert_eq!(a.as_str().len(), 64);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert!(
            AuthToken::new(a.as_str()).is_ok(),
            "a generated token is a valid token"
        );
    }

    #[test]
    fn debug_output_redacts_the_token() {
        let t = AuthToken::new(TOKEN).unwrap();
        assert!(!format!("{t:?}").contains(TOKEN));
    }

    #[test]
    fn rejects_short_long_or_unsafe_configured_tokens() {
        for t in [
            "",
            "short",
            "0123456789abcde",
            "0123456789abcdef 0",
            "0123456789abcdef,",
            "0123456789abcdef%20",
        ] {
            assert_eq!(AuthToken::new(t), Err(InvalidToken), "{t:?}");
        }
        assert!(AuthToken::new("a".repeat(MAX_TOKEN_LEN + 1)).is_err());
        assert!(AuthToken::new("A-z.0_9~".repeat(2)).is_ok());
    }

    #[test]
    fn accepts_bearer_token() {
        assert!(check(
            &req("/ws", &[("Authorization", &format!("Bearer {TOKEN}"))]),
            &[]
        )
        .is_ok());
        assert!(check(
            &req("/ws", &[("authorization", &format!(" bearer \t {TOKEN} "))]),
            &[]
        )
        .is_ok());
    }

    #[test]
    fn rejects_other_authorization_schemes() {
        for v in [
            format!("Basic {TOKEN}"),
            TOKEN.to_string(),
            format!("Bearer{TOKEN}"),
            format!("Bearer {TOKEN}x"),
        ] {
            let r = check(&req("/ws", &[("Authorization", &v)]), &[]).unwrap_err();
            assert_eq!((r.status, r.code), (401, code::UNAUTHORIZED), "{v}");
        }
    }

    #[test]
    fn accepts_token_in_subprotocol_entry() {
        let entry = format!("cluso-token.{TOKEN}");
        assert!(check(&req("/ws", &[]), &["cluso", &entry]).is_ok());
        let upper = format!("CLUSO-TOKEN.{TOKEN}");
        assert!(check(&req("/ws", &[]), &[&upper]).is_ok());
        let wrong_case = format!("cluso-token.{}", TOKEN.to_uppercase());
        assert!(check(&req("/ws", &[]), &[&wrong_case]).is_err());
    }

    #[test]
    fn accepts_percent_encoded_token_query_parameter() {
        assert!(check(&req(&format!("/ws?token={TOKEN}"), &[]), &[]).is_ok());
        assert!(check(&req(&format!("/ws?a=1&%74oken={TOKEN}&b"), &[]), &[]).is_ok());
        let encoded: String = TOKEN.bytes().map(|b| format!("%{b:02X}")).collect();
        assert!(check(&req(&format!("/ws?token={encoded}"), &[]), &[]).is_ok());
    }

    #[test]
    fn rejects_missing_wrong_or_truncated_token() {
        for url in [
            "/ws",
            "/ws?token=",
            "/ws?tokens=x",
            &format!("/ws?token={}", &TOKEN[..31]),
            &format!("/ws#token={TOKEN}"),
        ] {
            let r = check(&req(url, &[]), &[]).unwrap_err();
            assert_eq!((r.status, r.code), (401, code::UNAUTHORIZED), "{url}");
        }
    }

    #[test]
    fn any_matching_carrier_admits() {
        let r = req(
            &format!("/ws?token=wrong&token={TOKEN}"),
            &[("Authorization", "Bearer nope")],
        );
        assert!(check(&r, &["cluso-token.alsowrong"]).is_ok());
    }

    #[test]
    fn caps_presented_candidates() {
        let mut url = String::from("/ws?");
        for _ in 0..MAX_TOKEN_CANDIDATES {
            url.push_str("token=x&");
        }
        url.push_str(&format!("token={TOKEN}"));
        assert_eq!(
            presented_tokens(&req(&url, &[]), &[]).len(),
            MAX_TOKEN_CANDIDATES
        );
        assert!(check(&req(&url, &[]), &[]).is_err());
    }

    #[test]
    fn form_decodes_like_url_search_params() {
        assert_eq!(form_decode("a+b%20c"), "a b c");
        assert_eq!(form_decode("%zz%4"), "%zz%4");
        assert_eq!(form_decode("%"), "%");
        assert_eq!(form_decode("%ff"), "\u{fffd}");
        assert_eq!(form_decode("%C3%A9"), "é");
    }
}
