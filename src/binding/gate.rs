//! The application's `authenticate` and `authorizeSubscribe` callbacks, as the core's
//! [`Gatekeeper`].
//!
//! Native connections ask from the runtime: the question travels to the JavaScript thread
//! through a weak threadsafe function and the answer comes back on a oneshot channel.
//! JavaScript sockets ask on the JavaScript thread directly ([`JsGate::ask_authorize`]).
//! Either way a callback may answer at once or with a promise; a throw or a rejection
//! refuses.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{FunctionCallContext, FunctionRef, Unknown};
use napi::threadsafe_function::{
    ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode,
};
use napi::{Env, JsValue, Status};
use tokio::sync::oneshot;
use tracing::warn;

use super::js::{Called, Js, Raw};
use crate::gate::{AuthRequest, AuthVerdict, ConnectionInfo, Decision, Gatekeeper};

/// A JavaScript function held for the life of the manager.
pub type Callback = FunctionRef<(), ()>;

enum Question {
    Authenticate(AuthRequest, oneshot::Sender<AuthVerdict>),
    Authorize(ConnectionInfo, String, oneshot::Sender<bool>),
}

type AskFn = ThreadsafeFunction<Question, (), (), Status, false, true>;

/// The application's callbacks.
pub struct JsGate {
    authenticate: Option<Arc<Callback>>,
    authorize: Option<Arc<Callback>>,
    ask: AskFn,
}

impl JsGate {
    pub fn new(
        env: &Env,
        authenticate: Option<Callback>,
        authorize: Option<Callback>,
        timeout: Duration,
    ) -> napi::Result<Self> {
        let authenticate = authenticate.map(Arc::new);
        let authorize = authorize.map(Arc::new);
        let (auth_fn, authz_fn) = (authenticate.clone(), authorize.clone());
        let carrier = env.create_function_from_closure::<(), (), _>("clusoGate", |_ctx| Ok(()))?;
        let ask = carrier
            .build_threadsafe_function::<Question>()
            .weak::<true>()
            .build_callback(move |ctx: ThreadsafeCallContext<Question>| {
                answer(
                    &ctx.env,
                    ctx.value,
                    auth_fn.as_deref(),
                    authz_fn.as_deref(),
                    timeout,
                );
                Ok(())
            })?;
        Ok(Self {
            authenticate,
            authorize,
            ask,
        })
    }
}

impl Gatekeeper for JsGate {
    fn authenticate(&self, request: AuthRequest) -> Option<Decision<AuthVerdict>> {
        self.authenticate.as_ref()?;
        let (answer, verdict) = oneshot::channel();
        self.ask.call(
            Question::Authenticate(request, answer),
            ThreadsafeFunctionCallMode::NonBlocking,
        );
        Some(Box::pin(async move {
            verdict.await.unwrap_or(AuthVerdict::Deny)
        }))
    }

    fn authorize_subscribe(
        &self,
        connection: ConnectionInfo,
        channel: String,
    ) -> Option<Decision<bool>> {
        self.authorize.as_ref()?;
        let (answer, allowed) = oneshot::channel();
        self.ask.call(
            Question::Authorize(connection, channel, answer),
            ThreadsafeFunctionCallMode::NonBlocking,
        );
        Some(Box::pin(async move { allowed.await.unwrap_or(false) }))
    }

    fn authorizes_subscriptions(&self) -> bool {
        self.authorize.is_some()
    }
}

/// Runs on the JavaScript thread for a question from the runtime.
fn answer(
    env: &Env,
    question: Question,
    authenticate: Option<&Callback>,
    authorize_fn: Option<&Callback>,
    timeout: Duration,
) {
    match question {
        Question::Authenticate(request, answer) => {
            let Some(callback) = authenticate else {
                let _ = answer.send(AuthVerdict::Allow { meta: None });
                return;
            };
            let js = Js::new(env);
            let Ok(argument) = request_object(js, &request) else {
                let _ = answer.send(AuthVerdict::Deny);
                return;
            };
            call_deciding(env, callback, &[argument], timeout, move |env, value| {
                let _ = answer.send(value.map_or(AuthVerdict::Deny, |v| auth_verdict(env, v)));
            });
        }
        Question::Authorize(connection, channel, answer) => match authorize_fn {
            Some(callback) => authorize(
                env,
                callback,
                &connection,
                &channel,
                timeout,
                Box::new(move |allowed| {
                    let _ = answer.send(allowed);
                }),
            ),
            None => {
                let _ = answer.send(true);
            }
        },
    }
}

fn authorize(
    env: &Env,
    callback: &Callback,
    connection: &ConnectionInfo,
    channel: &str,
    timeout: Duration,
    done: Box<dyn FnOnce(bool)>,
) {
    let js = Js::new(env);
    let arguments =
        connection_object(js, connection).and_then(|c| Ok([c, js.create_string(channel)?]));
    let Ok(arguments) = arguments else {
        done(false);
        return;
    };
    call_deciding(env, callback, &arguments, timeout, move |env, value| {
        let allowed = value.is_some_and(|v| {
            let js = Js::new(env);
            js.type_of(v) == napi::sys::ValueType::napi_boolean && js.is_true(v)
        });
        done(allowed);
    });
}

/// Calls `callback(...arguments)` and hands its answer — awaited when it is a promise — to
/// `done` on this thread. A throw or a rejection hands `None`.
fn call_deciding(
    env: &Env,
    callback: &Callback,
    arguments: &[Raw],
    timeout: Duration,
    done: impl FnOnce(&Env, Option<Raw>) + 'static,
) {
    let js = Js::new(env);
    let function = match callback.borrow_back(env) {
        Ok(function) => function.raw(),
        Err(_) => return done(env, None),
    };
    let value = match js.call(js.undefined(), function, arguments) {
        Called::Returned(value) => value,
        Called::Threw(error) => {
            warn!(error = js.describe(error), "callback threw; refusing");
            return done(env, None);
        }
    };
    if !js.is_promise(value) {
        return done(env, Some(value));
    }
    let done = Rc::new(RefCell::new(Some(done)));
    let settle = |fulfilled: bool| {
        let done = Rc::clone(&done);
        env.create_function_from_closure::<(), (), _>(
            "clusoSettle",
            move |ctx: FunctionCallContext| {
                if let Some(done) = done.borrow_mut().take() {
                    let value = ctx.get::<Unknown>(0).map(|v| v.raw()).ok();
                    if !fulfilled {
                        let js = Js::new(ctx.env);
                        warn!(
                            reason = value.map(|v| js.describe(v)),
                            "callback rejected; refusing"
                        );
                    }
                    done(ctx.env, if fulfilled { value } else { None });
                }
                Ok(())
            },
        )
    };
    let (Ok(on_fulfilled), Ok(on_rejected)) = (settle(true), settle(false)) else {
        if let Some(done) = done.borrow_mut().take() {
            done(env, None);
        }
        return;
    };
    if let Some(Called::Threw(_)) | None =
        js.call_method(value, c"then", &[on_fulfilled.raw(), on_rejected.raw()])
    {
        if let Some(done) = done.borrow_mut().take() {
            done(env, None);
        }
        return;
    }
    let expire = {
        let done = Rc::clone(&done);
        env.create_function_from_closure::<(), (), _>("clusoDecisionTimeout", move |ctx| {
            if let Some(done) = done.borrow_mut().take() {
                warn!("callback did not answer in time; refusing");
                done(ctx.env, None);
            }
            Ok(())
        })
    };
    if let Ok(expire) = expire {
        js.set_unref_timeout(expire.raw(), timeout.as_millis() as f64);
    }
}

/// `true` admits; an object admits and becomes the connection's metadata; anything else
/// refuses.
fn auth_verdict(env: &Env, value: Raw) -> AuthVerdict {
    let js = Js::new(env);
    match js.type_of(value) {
        napi::sys::ValueType::napi_boolean if js.is_true(value) => {
            AuthVerdict::Allow { meta: None }
        }
        napi::sys::ValueType::napi_object => match js.json_stringify(value) {
            Some(meta) => AuthVerdict::Allow { meta: Some(meta) },
            None => {
                warn!("authenticate returned an object JSON cannot hold; refusing");
                AuthVerdict::Deny
            }
        },
        _ => AuthVerdict::Deny,
    }
}

/// `{ url, headers, remoteAddress }`, headers lower-cased as in Node's `req.headers`.
fn request_object(js: Js, request: &AuthRequest) -> napi::Result<Raw> {
    let object = js.create_object()?;
    js.set(object, c"url", js.create_string(&request.url)?)?;
    let headers = js.create_object()?;
    for (name, value) in &request.headers {
        js.set_property(headers, js.create_string(name)?, js.create_string(value)?)?;
    }
    js.set(object, c"headers", headers)?;
    js.set(
        object,
        c"remoteAddress",
        js.create_string(&request.remote_address)?,
    )?;
    Ok(object)
}

/// `{ id, meta }`, `meta` being what `authenticate` returned (absent when it returned
/// `true`).
pub fn connection_object(js: Js, connection: &ConnectionInfo) -> napi::Result<Raw> {
    let object = js.create_object()?;
    js.set(object, c"id", js.create_string(&connection.id)?)?;
    if let Some(meta) = &connection.meta {
        if let Some(value) = js.json_parse(meta) {
            js.set(object, c"meta", value)?;
        }
    }
    Ok(object)
}
