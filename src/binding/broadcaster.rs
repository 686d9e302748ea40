//! `EventBroadcaster`: the typed event methods of the original module (SPEC A.3).
//!
//! Each method builds its data object — with its own `timestamp` — and calls
//! `manager.broadcast(channel, data)` through JavaScript, so a mock manager or a spy on
//! `broadcast` sees exactly what the original passed.

use std::ffi::CStr;

use napi::bindgen_prelude::Unknown;
use napi::{Env, JsValue};
use napi_derive::napi;

use super::error::{self, ErrorKind};
use super::js::{Called, Js, JsRef, Raw};
use crate::envelope;

/// Broadcasts typed events through a manager (anything with a `broadcast(channel, data)`
/// method).
#[napi]
pub struct EventBroadcaster {
    manager: JsRef,
}

impl EventBroadcaster {
    /// `manager.broadcast(channel, data)`, rethrowing whatever it throws.
    fn broadcast(&self, env: &Env, channel: Raw, data: Raw) -> napi::Result<()> {
        let js = Js::new(env);
        let manager = self.manager.value(js);
        match js.call_method(manager, c"broadcast", &[channel, data]) {
            Some(Called::Returned(_)) => Ok(()),
            Some(Called::Threw(thrown)) => Err(js.rethrow(thrown)),
            None => Err(error::throw(
                env,
                ErrorKind::TypeError,
                "manager.broadcast is not a function",
                error::codes::INVALID_MANAGER,
            )),
        }
    }

    /// Builds `{ ...fields, timestamp }` in the given key order and broadcasts it.
    fn emit_with_timestamp(
        &self,
        env: &Env,
        channel: &str,
        fields: &[(&CStr, Raw)],
    ) -> napi::Result<()> {
        let js = Js::new(env);
        let data = js.create_object()?;
        for (name, value) in fields {
            js.set(data, name, *value)?;
        }
        let timestamp = js.create_string(&envelope::now_iso())?;
        js.set(data, c"timestamp", timestamp)?;
        self.broadcast(env, js.create_string(channel)?, data)
    }
}

#[napi]
impl EventBroadcaster {
    #[napi(constructor, catch_unwind, ts_args_type = "manager: BroadcastTarget")]
    pub fn new(env: Env, manager: Unknown) -> napi::Result<Self> {
        let js = Js::new(&env);
        if !js.is_object(manager.raw()) {
            return Err(error::throw(
                &env,
                ErrorKind::TypeError,
                "EventBroadcaster needs a manager with a broadcast(channel, data) method",
                error::codes::INVALID_MANAGER,
            ));
        }
        Ok(Self {
            manager: js.create_reference(manager.raw())?,
        })
    }

    /// A file was added, changed or removed: `files` ← `{ file, event, timestamp }`.
    #[napi(catch_unwind, ts_args_type = "file: string, event: FileEventType")]
    pub fn file_changed(&self, env: Env, file: Unknown, event: Unknown) -> napi::Result<()> {
        self.emit_with_timestamp(
            &env,
            "files",
            &[(c"file", file.raw()), (c"event", event.raw())],
        )
    }

    /// Diagnostics changed: `diagnostics` ← `{ diagnostics, cleared, timestamp }`.
    /// `cleared` defaults to `false`.
    #[napi(
        catch_unwind,
        ts_args_type = "diagnostics: LSPDiagnostic[], cleared?: boolean"
    )]
    pub fn diagnostics_updated(
        &self,
        env: Env,
        diagnostics: Unknown,
        cleared: Unknown,
    ) -> napi::Result<()> {
        let js = Js::new(&env);
        let cleared = match js.type_of(cleared.raw()) {
            napi::sys::ValueType::napi_undefined => js.bool(false),
            _ => cleared.raw(),
        };
        self.emit_with_timestamp(
            &env,
            "diagnostics",
            &[(c"diagnostics", diagnostics.raw()), (c"cleared", cleared)],
        )
    }

    /// One chunk of a streamed AI answer: `ai-response` ←
    /// `{ id, chunk, index, finished, timestamp }`.
    #[napi(
        catch_unwind,
        ts_args_type = "id: string, chunk: string, index: number, finished: boolean"
    )]
    pub fn ai_chunk(
        &self,
        env: Env,
        id: Unknown,
        chunk: Unknown,
        index: Unknown,
        finished: Unknown,
    ) -> napi::Result<()> {
        self.emit_with_timestamp(
            &env,
            "ai-response",
            &[
                (c"id", id.raw()),
                (c"chunk", chunk.raw()),
                (c"index", index.raw()),
                (c"finished", finished.raw()),
            ],
        )
    }

    /// Search progress: `search` ← `{ query, completed, total, results, timestamp }`.
    #[napi(
        catch_unwind,
        ts_args_type = "query: string, completed: number, total: number | null, results: SearchResult[]"
    )]
    pub fn search_progress(
        &self,
        env: Env,
        query: Unknown,
        completed: Unknown,
        total: Unknown,
        results: Unknown,
    ) -> napi::Result<()> {
        self.emit_with_timestamp(
            &env,
            "search",
            &[
                (c"query", query.raw()),
                (c"completed", completed.raw()),
                (c"total", total.raw()),
                (c"results", results.raw()),
            ],
        )
    }

    /// A validation run finished: `validation` ← `{ validation, timestamp }`.
    #[napi(catch_unwind, ts_args_type = "validation: ValidationResult")]
    pub fn validation_complete(&self, env: Env, validation: Unknown) -> napi::Result<()> {
        self.emit_with_timestamp(&env, "validation", &[(c"validation", validation.raw())])
    }

    /// A git operation happened: `git` ← `{ type, message, timestamp }`.
    #[napi(catch_unwind, ts_args_type = "type: GitEventType, message: string")]
    pub fn git_event(&self, env: Env, kind: Unknown, message: Unknown) -> napi::Result<()> {
        self.emit_with_timestamp(
            &env,
            "git",
            &[(c"type", kind.raw()), (c"message", message.raw())],
        )
    }

    /// Broadcasts `data` unchanged on any channel.
    #[napi(catch_unwind, ts_args_type = "channel: string, data: unknown")]
    pub fn emit(&self, env: Env, channel: Unknown, data: Unknown) -> napi::Result<()> {
        self.broadcast(&env, channel.raw(), data.raw())
    }
}
