//! The TypeScript types of the original module (SPEC A.4), declared here so that the
//! generated `index.d.ts` exports them. The broadcaster passes event data through to
//! `JSON.stringify` untouched, so these structs describe shapes; they never convert data.

#![allow(dead_code)]

use napi::bindgen_prelude::{Either, Null};
use napi_derive::napi;

/// What happened to a file (chokidar's event names).
#[napi(string_enum)]
pub enum FileEventType {
    #[napi(value = "add")]
    Add,
    #[napi(value = "change")]
    Change,
    #[napi(value = "unlink")]
    Unlink,
    #[napi(value = "unlinkDir")]
    UnlinkDir,
    #[napi(value = "addDir")]
    AddDir,
}

/// Severity of an LSP diagnostic.
#[napi(string_enum)]
pub enum DiagnosticSeverity {
    #[napi(value = "error")]
    Error,
    #[napi(value = "warning")]
    Warning,
    #[napi(value = "info")]
    Info,
    #[napi(value = "hint")]
    Hint,
}

/// Which validation ran.
#[napi(string_enum)]
pub enum ValidationType {
    #[napi(value = "lint")]
    Lint,
    #[napi(value = "typecheck")]
    Typecheck,
    #[napi(value = "format")]
    Format,
}

/// Which git operation happened.
#[napi(string_enum)]
pub enum GitEventType {
    #[napi(value = "status")]
    Status,
    #[napi(value = "commit")]
    Commit,
    #[napi(value = "push")]
    Push,
    #[napi(value = "pull")]
    Pull,
    #[napi(value = "branch")]
    Branch,
}

/// The `type` of a client → server message.
#[napi(string_enum, js_name = "WSMessageType")]
pub enum WSMessageType {
    #[napi(value = "subscribe")]
    Subscribe,
    #[napi(value = "unsubscribe")]
    Unsubscribe,
    #[napi(value = "request")]
    Request,
    #[napi(value = "event")]
    Event,
    #[napi(value = "response")]
    Response,
}

/// One diagnostic from a language server.
#[napi(object, js_name = "LSPDiagnostic")]
pub struct LSPDiagnostic {
    pub file: String,
    pub line: f64,
    pub column: f64,
    pub message: String,
    pub severity: DiagnosticSeverity,
    pub source: String,
}

/// One search hit.
#[napi(object)]
pub struct SearchResult {
    pub file: String,
    pub line: f64,
    pub column: f64,
    #[napi(js_name = "match")]
    pub matched: String,
    pub context: String,
}

/// One problem found by a validation run.
#[napi(object)]
pub struct ValidationError {
    pub file: String,
    pub line: f64,
    pub column: f64,
    pub message: String,
    pub rule: Option<String>,
}

/// The outcome of a lint, typecheck or format run.
#[napi(object)]
pub struct ValidationResult {
    #[napi(js_name = "type")]
    pub kind: ValidationType,
    pub passed: bool,
    pub errors: Vec<ValidationError>,
}

/// Data of a `files` event.
#[napi(object)]
pub struct FileChangeEvent {
    pub file: String,
    pub event: FileEventType,
    pub timestamp: String,
}

/// Data of a `diagnostics` event.
#[napi(object)]
pub struct DiagnosticsUpdateEvent {
    pub diagnostics: Vec<LSPDiagnostic>,
    pub cleared: bool,
    pub timestamp: String,
}

/// Data of an `ai-response` event: one chunk of a streamed AI answer.
#[napi(object, js_name = "AIChunkEvent")]
pub struct AIChunkEvent {
    pub id: String,
    pub chunk: String,
    pub index: f64,
    pub finished: bool,
    pub timestamp: String,
}

/// Data of a `search` event.
#[napi(object)]
pub struct SearchProgressEvent {
    pub query: String,
    pub completed: f64,
    pub total: Either<f64, Null>,
    pub results: Vec<SearchResult>,
    pub timestamp: String,
}

/// Data of a `validation` event.
#[napi(object)]
pub struct ValidationEvent {
    pub validation: ValidationResult,
    pub timestamp: String,
}

/// Data of a `git` event.
#[napi(object)]
pub struct GitEvent {
    #[napi(js_name = "type")]
    pub kind: GitEventType,
    pub message: String,
    pub timestamp: String,
}

/// A client → server message.
#[napi(object, js_name = "WSMessage")]
pub struct WSMessage {
    pub id: Option<String>,
    #[napi(js_name = "type")]
    pub kind: WSMessageType,
    pub channel: Option<String>,
    pub handler: Option<String>,
    #[napi(ts_type = "unknown")]
    pub data: Option<serde_json_placeholder::Unknown>,
}

/// A server → client event.
#[napi(object, js_name = "WSEvent")]
pub struct WSEvent {
    #[napi(js_name = "type", ts_type = "'event'")]
    pub kind: String,
    pub channel: String,
    #[napi(ts_type = "unknown")]
    pub data: serde_json_placeholder::Unknown,
    pub timestamp: String,
    /// The event's number on its channel (one more per broadcast), with `historySize` on.
    pub seq: Option<f64>,
    /// The run of the channel's numbering `seq` belongs to, with `historySize` on.
    pub epoch: Option<String>,
}

/// One registered connection, as `getConnections()` returns it.
#[napi(object, js_name = "WSConnection")]
pub struct WSConnection {
    #[napi(ts_type = "WebSocketLike")]
    pub ws: serde_json_placeholder::Unknown,
    pub id: String,
    #[napi(ts_type = "Set<string>")]
    pub channels: serde_json_placeholder::Unknown,
    pub is_alive: bool,
}

/// The upgrade request as `authenticate` sees it.
#[napi(object)]
pub struct UpgradeRequestInfo {
    pub url: String,
    /// Header names lower-cased; repeated headers combined as Node combines them.
    #[napi(ts_type = "Record<string, string>")]
    pub headers: std::collections::HashMap<String, String>,
    pub remote_address: String,
}

/// A connection as `authorizeSubscribe` sees it.
#[napi(object)]
pub struct ConnectionInfo {
    pub id: String,
    /// What `authenticate` returned, when it returned an object.
    #[napi(ts_type = "unknown")]
    pub meta: Option<serde_json_placeholder::Unknown>,
}

/// Fields typed `unknown` in TypeScript are never converted by this module; a unit value
/// stands in for them on the Rust side.
mod serde_json_placeholder {
    pub type Unknown = ();
}
