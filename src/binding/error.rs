//! JavaScript errors thrown by the binding, each with a stable `code` (listed in the
//! README), in the style of Node's own `ERR_*` codes.

use napi::{Env, Status};

/// Error codes callers can act on.
pub mod codes {
    pub const SHUT_DOWN: &str = "ERR_CLUSO_SHUT_DOWN";
    pub const INVALID_OPTION: &str = "ERR_CLUSO_INVALID_OPTION";
    pub const INVALID_SOCKET: &str = "ERR_CLUSO_INVALID_SOCKET";
    pub const INVALID_MANAGER: &str = "ERR_CLUSO_INVALID_MANAGER";
    pub const INVALID_CHANNEL: &str = "ERR_CLUSO_INVALID_CHANNEL";
    pub const NOT_LOADED: &str = "ERR_CLUSO_NOT_LOADED";
}

/// An error whose JavaScript `code` is `code`: thrown now, reported as pending.
pub fn throw(env: &Env, kind: ErrorKind, message: &str, code: &str) -> napi::Error {
    let _ = match kind {
        ErrorKind::Error => env.throw_error(message, Some(code)),
        ErrorKind::TypeError => env.throw_type_error(message, Some(code)),
        ErrorKind::RangeError => env.throw_range_error(message, Some(code)),
    };
    napi::Error::from_status(Status::PendingException)
}

#[derive(Debug, Clone, Copy)]
pub enum ErrorKind {
    Error,
    TypeError,
    RangeError,
}

/// The error every call on a shut-down manager throws.
pub fn shut_down(env: &Env) -> napi::Error {
    throw(
        env,
        ErrorKind::Error,
        "WebSocketManager is shut down",
        codes::SHUT_DOWN,
    )
}
