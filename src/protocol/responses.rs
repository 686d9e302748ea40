//! The exact bytes of every server response. The original module's responses keep its
//! shape and key order (`{"type":"response","id":…,"data":{…}}`, `id` only when the
//! request had one); errors caused by limits add a stable machine-readable `code`.

use super::RequestId;
use crate::envelope::push_json_string;

/// `{"type":"response"[,"id":…]` — the shared head of every response.
fn call_head(id: Option<&RequestId>) -> String {
    let mut out = String::with_capacity(96);
    out.push_str(r#"{"type":"response""#);
    if let Some(id) = id {
        out.push_str(r#","id":"#);
        out.push_str(id.as_json());
    }
    out
}

/// `{"type":"response"[,"id":…],"data":` — the head of every response with `data`.
fn response_head(id: Option<&RequestId>) -> String {
    let mut out = call_head(id);
    out.push_str(r#","data":"#);
    out
}

/// The welcome message sent to every new connection. `cwd` is omitted when the app passed
/// none (`JSON.stringify` drops `undefined`).
pub fn welcome(connection_id: &str, cwd: Option<&str>) -> String {
    let mut out = response_head(None);
    out.push_str(r#"{"status":"connected","connectionId":"#);
    push_json_string(&mut out, connection_id);
    if let Some(cwd) = cwd {
        out.push_str(r#","cwd":"#);
        push_json_string(&mut out, cwd);
    }
    out.push_str("}}");
    out
}

fn status_response(id: Option<&RequestId>, status: &str, channel: &str) -> String {
    let mut out = response_head(id);
    out.push_str(r#"{"status":""#);
    out.push_str(status);
    out.push_str(r#"","channel":"#);
    push_json_string(&mut out, channel);
    out.push_str("}}");
    out
}

pub fn subscribed(id: Option<&RequestId>, channel: &str) -> String {
    status_response(id, "subscribed", channel)
}

pub fn unsubscribed(id: Option<&RequestId>, channel: &str) -> String {
    status_response(id, "unsubscribed", channel)
}

/// The original's answer to a request; kept byte for byte (no `code`), since clients may
/// compare the text.
pub fn no_handler(id: Option<&RequestId>) -> String {
    let mut out = response_head(id);
    out.push_str(r#"{"error":"No handler for request type"}}"#);
    out
}

/// The original's answer to text that is not JSON, byte for byte.
pub fn parse_error() -> String {
    let mut out = response_head(None);
    out.push_str(r#"{"error":"Failed to parse message"}}"#);
    out
}

/// An error response with a stable `code`.
pub fn error(id: Option<&RequestId>, message: &str, code: &str) -> String {
    let mut out = response_head(id);
    out.push_str(r#"{"error":"#);
    push_json_string(&mut out, message);
    out.push_str(r#","code":"#);
    push_json_string(&mut out, code);
    out.push_str("}}");
    out
}

/// The answer to an application-level `{"type":"ping"}`.
pub fn pong(id: Option<&RequestId>) -> String {
    let mut out = String::from(r#"{"type":"pong""#);
    if let Some(id) = id {
        out.push_str(r#","id":"#);
        out.push_str(id.as_json());
    }
    out.push('}');
    out
}

/// A handler's result: `{"type":"response","id":…,"data":<result>}`, where `result` is
/// the result's `JSON.stringify` text; `None` (a result of `undefined`) leaves `data` out,
/// as `JSON.stringify` does.
pub fn call_result(id: Option<&RequestId>, result: Option<&str>) -> String {
    let mut out = call_head(id);
    if let Some(result) = result {
        out.push_str(r#","data":"#);
        out.push_str(result);
    }
    out.push('}');
    out
}

/// A failed call: the top-level `error` the Cluso web client reads, and `data.error` with a
/// `code` for the original module's clients.
pub fn call_failed(id: Option<&RequestId>, message: &str, code: &str) -> String {
    let mut out = call_head(id);
    out.push_str(r#","error":"#);
    push_json_string(&mut out, message);
    out.push_str(r#","data":{"error":"#);
    push_json_string(&mut out, message);
    out.push_str(r#","code":"#);
    push_json_string(&mut out, code);
    out.push_str("}}");
    out
}

/// `{"type":"response","id":…,"data":{"status":"subscribed","channel":…,"epoch":…,"seq":…
/// [,"recovered":…]}}` on a channel with history, or `recovered` alone where the server
/// keeps none.
pub fn subscribed_at(
    id: Option<&RequestId>,
    channel: &str,
    epoch: Option<&str>,
    seq: u64,
    recovered: Option<bool>,
) -> String {
    let mut out = response_head(id);
    out.push_str(r#"{"status":"subscribed","channel":"#);
    push_json_string(&mut out, channel);
    if let Some(epoch) = epoch {
        out.push_str(r#","epoch":"#);
        push_json_string(&mut out, epoch);
        out.push_str(r#","seq":"#);
        out.push_str(&seq.to_string());
    }
    if let Some(recovered) = recovered {
        out.push_str(if recovered {
            r#","recovered":true"#
        } else {
            r#","recovered":false"#
        });
    }
    out.push_str("}}");
    out
}
