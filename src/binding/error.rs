//! JavaScript errors thrown by the binding, each with a stable `code` (listed in the
//! README), in the style of Node's own `ERR_*` codes; core errors keep their cause chain.

use napi::{Env, Status};

use super::js::{Js, Raw};

/// Error codes callers can act on.
pub mod codes {
    pub const INVALID_OPTION: &str = "ERR_CLUSO_INVALID_OPTION";
    pub const INVALID_SOCKET: &str = "ERR_CLUSO_INVALID_SOCKET";
    pub const INVALID_MANAGER: &str = "ERR_CLUSO_INVALID_MANAGER";
    pub const INVALID_CHANNEL: &str = "ERR_CLUSO_INVALID_CHANNEL";
    pub const INVALID_HANDLER: &str = "ERR_CLUSO_INVALID_HANDLER";
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

/// The error `listen()` and `attach()` throw on a manager that is shut down.
pub fn shut_down(env: &Env, what: &'static str) -> napi::Error {
    let error = crate::error::Error::ShutDown { what };
    throw(env, ErrorKind::Error, &error.to_string(), error.code())
}

/// A JavaScript `Error` for a core error: its message, its `code`, and the chain of its
/// sources as `cause`. For rejecting a promise or returning from a callback.
pub fn from_core(env: &Env, error: &crate::error::Error) -> napi::Error {
    let js = Js::new(env);
    match error_object(js, &error.to_string(), Some(error.code()), cause_of(error)) {
        Ok(object) => napi::Error::from(js.unknown(object)),
        Err(failure) => failure,
    }
}

fn cause_of(error: &dyn std::error::Error) -> Vec<String> {
    let mut chain = Vec::new();
    let mut source = error.source();
    while let Some(next) = source {
        chain.push(next.to_string());
        source = next.source();
    }
    chain
}

/// `new Error(message)` with `code` and, from `causes` (outermost first), nested `cause`s.
fn error_object(
    js: Js,
    message: &str,
    code: Option<&str>,
    causes: Vec<String>,
) -> napi::Result<Raw> {
    let cause = match causes.split_first() {
        Some((first, rest)) => Some(error_object(js, first, None, rest.to_vec())?),
        None => None,
    };
    let object = js.create_error(message)?;
    if let Some(code) = code {
        js.set(object, c"code", js.create_string(code)?)?;
    }
    if let Some(cause) = cause {
        js.set(object, c"cause", cause)?;
    }
    Ok(object)
}
