//! Request handlers on the JavaScript thread: `manager.handle(name, handler)` and running
//! one [`Invocation`] the core handed over — `handler(data, { connectionId, meta, name })`,
//! awaited when it returns a promise, its result serialised with `JSON.stringify`.
//!
//! Nothing a handler does reaches the host as an exception: a throw, a rejection or a
//! result `JSON.stringify` rejects becomes a `HANDLER_ERROR` answer.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use napi::bindgen_prelude::{FunctionCallContext, Unknown};
use napi::{Env, JsValue};
use napi_derive::napi;
use tracing::warn;

use super::error::{self, ErrorKind};
use super::js::{Called, Js, JsRef, Raw};
use super::js_transport::{guarded, Shared};
use super::manager::WebSocketManager;
use crate::manager::{CallOutcome, Invocation};

/// The application's handlers by name.
#[derive(Default)]
pub(super) struct Handlers {
    by_name: RefCell<HashMap<String, JsRef>>,
}

/// The call a settled handler answers.
struct Pending {
    invocation: Invocation,
}

#[napi]
impl WebSocketManager {
    /// Registers `handler` for requests named `name` — `{"type":"invoke","channel":name}`,
    /// `{"type":"request","handler":name}` and `{"type":"send","channel":name}` — replacing
    /// any handler of that name; `null` removes it. The handler gets `(data, { connectionId,
    /// meta, name })` and returns the answer's `data`, or a promise of it.
    #[napi(
        catch_unwind,
        ts_args_type = "name: string, handler: RequestHandler | null"
    )]
    pub fn handle(&self, env: Env, name: Unknown, handler: Unknown) -> napi::Result<()> {
        let js = Js::new(&env);
        let invalid = |message: &str| {
            error::throw(
                &env,
                ErrorKind::TypeError,
                message,
                error::codes::INVALID_HANDLER,
            )
        };
        let Some(name) = js.string(name.raw()).filter(|name| !name.is_empty()) else {
            return Err(invalid(
                "handle(name, handler): name must be a non-empty string",
            ));
        };
        let kind = js.type_of(handler.raw());
        let shared = &self.shared;
        if kind == napi::sys::ValueType::napi_null {
            shared.handlers.by_name.borrow_mut().remove(&name);
            shared.core.set_handler(&name, false);
            return Ok(());
        }
        if kind != napi::sys::ValueType::napi_function {
            return Err(invalid(
                "handle(name, handler): handler must be a function or null",
            ));
        }
        if !shared.running("handle") {
            return Ok(());
        }
        let reference = js.create_reference(handler.raw())?;
        shared
            .handlers
            .by_name
            .borrow_mut()
            .insert(name.clone(), reference);
        shared.core.set_handler(&name, true);
        Ok(())
    }
}

impl Shared {
    /// Runs one handler call and answers it when it settles.
    pub(super) fn run_invocation(self: &Rc<Self>, env: &Env, invocation: Invocation) {
        let js = Js::new(env);
        let handler = self
            .handlers
            .by_name
            .borrow()
            .get(&invocation.name)
            .map(|h| h.value(js));
        let Some(handler) = handler else {
            return self.finish(js, invocation, CallOutcome::NoHandler);
        };
        let arguments = match call_arguments(js, &invocation) {
            Ok(arguments) => arguments,
            Err(message) => return self.finish(js, invocation, CallOutcome::Failed(message)),
        };
        let value = match js.call(js.undefined(), handler, &arguments) {
            Called::Returned(value) => value,
            Called::Threw(thrown) => {
                let message = error_message(js, thrown);
                return self.finish(js, invocation, CallOutcome::Failed(message));
            }
        };
        if !js.is_promise(value) {
            let outcome = self.serialise(js, value);
            return self.finish(js, invocation, outcome);
        }
        let pending = Rc::new(RefCell::new(Some(Pending { invocation })));
        let settle = |fulfilled: bool| {
            let pending = Rc::clone(&pending);
            let shared = Rc::downgrade(self);
            env.create_function_from_closure::<(), (), _>(
                "clusoHandlerSettled",
                move |ctx: FunctionCallContext| {
                    guarded("handler result", || {
                        let (Some(shared), Some(Pending { invocation })) =
                            (shared.upgrade(), pending.borrow_mut().take())
                        else {
                            return;
                        };
                        let js = Js::new(ctx.env);
                        let value = ctx
                            .get::<Unknown>(0)
                            .map_or_else(|_| js.undefined(), |v| v.raw());
                        let outcome = if fulfilled {
                            shared.serialise(js, value)
                        } else {
                            CallOutcome::Failed(error_message(js, value))
                        };
                        shared.finish(js, invocation, outcome);
                    });
                    Ok(())
                },
            )
        };
        let (Ok(on_fulfilled), Ok(on_rejected)) = (settle(true), settle(false)) else {
            if let Some(Pending { invocation }) = pending.borrow_mut().take() {
                let failed = CallOutcome::Failed("cannot await the handler's promise".into());
                self.finish(js, invocation, failed);
            }
            return;
        };
        let awaited = js.call_method(value, c"then", &[on_fulfilled.raw(), on_rejected.raw()]);
        if !matches!(awaited, Some(Called::Returned(_))) {
            if let Some(Pending { invocation }) = pending.borrow_mut().take() {
                let failed = CallOutcome::Failed("the handler's promise cannot be awaited".into());
                self.finish(js, invocation, failed);
            }
        }
    }

    /// A result as the answer's `data`: its `JSON.stringify` text.
    fn serialise(&self, js: Js, value: Raw) -> CallOutcome {
        match self.stringify.value(js, value) {
            Ok(text) => CallOutcome::Returned(text),
            Err(thrown) => CallOutcome::Failed(format!(
                "the handler's result cannot be serialised: {}",
                error_message(js, thrown)
            )),
        }
    }

    /// Answers the call (when the client waits for an answer) or logs a failed `send`.
    fn finish(&self, js: Js, invocation: Invocation, outcome: CallOutcome) {
        let Some(ticket) = invocation.ticket else {
            let reason = match &outcome {
                CallOutcome::Failed(reason) => Some(reason.as_str()),
                CallOutcome::NoHandler => Some("no handler"),
                CallOutcome::Returned(_) => None,
            };
            if let Some(reason) = reason {
                warn!(
                    conn_id = &*invocation.connection_id,
                    handler = invocation.name,
                    reason,
                    "handler failed"
                );
            }
            return;
        };
        if let Some(reply) = self.core.complete(ticket, outcome) {
            if let Err(error) = self.send_text(js, invocation.key, &reply) {
                warn!(conn_id = &*invocation.connection_id, %error, "answer not sent");
            }
        }
    }
}

/// `(data, { connectionId, meta, name })`.
fn call_arguments(js: Js, invocation: &Invocation) -> Result<[Raw; 2], String> {
    let data = match &invocation.data {
        Some(text) => js
            .json_parse(text)
            .ok_or_else(|| "the request's data cannot be parsed".to_owned())?,
        None => js.undefined(),
    };
    let build = || -> napi::Result<Raw> {
        let context = js.create_object()?;
        js.set(
            context,
            c"connectionId",
            js.create_string(&invocation.connection_id)?,
        )?;
        let meta = invocation
            .meta
            .as_deref()
            .and_then(|meta| js.json_parse(meta))
            .unwrap_or_else(|| js.undefined());
        js.set(context, c"meta", meta)?;
        js.set(context, c"name", js.create_string(&invocation.name)?)?;
        Ok(context)
    };
    let context = build().map_err(|e| e.to_string())?;
    Ok([data, context])
}

/// What a thrown or rejected value says: an error's `message`, or the value as a string.
fn error_message(js: Js, thrown: Raw) -> String {
    if js.is_object(thrown) {
        if let Ok(message) = js.get(thrown, c"message") {
            if let Some(message) = js.string(message) {
                return message;
            }
        }
    }
    js.describe(thrown)
}
