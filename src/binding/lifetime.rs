//! How the addon keeps — and stops keeping — the Node process alive.
//!
//! - [`Waker`]: a *weak* threadsafe function through which runtime tasks ask the JavaScript
//!   thread to apply pending work (health-check verdicts, keep-alive changes). Weak, so a
//!   pending wake never holds the process open by itself.
//! - [`KeepAlive`]: a referenced JavaScript timer that holds the process open while the
//!   manager has live native resources (a listener, a native connection), like a listening
//!   `http.Server` does, and is unreferenced when the last one ends.

use std::cell::{Cell, RefCell};

use napi::bindgen_prelude::Function;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};

use super::js::{Called, Js, JsRef};
use crate::manager::Lifeline;

type WakeFn = ThreadsafeFunction<(), (), (), Status, false, true>;

/// Schedules a callback on the JavaScript thread from any thread.
pub struct Waker {
    wake: WakeFn,
}

impl Waker {
    /// Wraps `on_wake`, a function created on the JavaScript thread.
    pub fn new(on_wake: Function<(), ()>) -> napi::Result<Self> {
        let wake = on_wake
            .build_threadsafe_function::<()>()
            .weak::<true>()
            .build_callback(|_ctx| Ok(()))?;
        Ok(Self { wake })
    }

    pub fn wake(&self) {
        self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
    }
}

impl Lifeline for Waker {
    fn active_changed(&self, _active: usize) {
        Waker::wake(self);
    }

    fn wake(&self) {
        Waker::wake(self);
    }
}

/// A JavaScript interval timer used only for its effect on the event loop.
#[derive(Default)]
pub struct KeepAlive {
    timer: RefCell<Option<JsRef>>,
    held: Cell<bool>,
}

/// Long enough never to fire in practice; the timer exists to be referenced.
const IDLE_INTERVAL_MS: f64 = 1_073_741_823.0;

impl KeepAlive {
    /// Holds the process open (`true`) or lets it exit (`false`).
    pub fn hold(&self, env: &Env, hold: bool) -> napi::Result<()> {
        if self.held.get() == hold {
            return Ok(());
        }
        let js = Js::new(env);
        if self.timer.borrow().is_none() {
            if !hold {
                return Ok(());
            }
            let timer = create_timer(env, js)?;
            *self.timer.borrow_mut() = Some(js.create_reference(timer)?);
            self.held.set(true);
            return Ok(());
        }
        let method = if hold { c"ref" } else { c"unref" };
        if let Some(timer) = self.timer.borrow().as_ref() {
            if let Some(Called::Threw(error)) = js.call_method(timer.value(js), method, &[]) {
                return Err(js.rethrow(error));
            }
        }
        self.held.set(hold);
        Ok(())
    }
}

fn create_timer(env: &Env, js: Js) -> napi::Result<super::js::Raw> {
    let noop = env.create_function_from_closure::<(), (), _>("clusoKeepAlive", |_ctx| Ok(()))?;
    let interval = js.create_double(IDLE_INTERVAL_MS);
    let set_interval = js
        .get(js.global(), c"setInterval")
        .map_err(|_| napi::Error::from_reason("setInterval is not available"))?;
    match js.call(js.global(), set_interval, &[noop_raw(&noop), interval]) {
        Called::Returned(timer) => Ok(timer),
        Called::Threw(error) => Err(js.rethrow(error)),
    }
}

fn noop_raw(function: &Function<(), ()>) -> super::js::Raw {
    napi::JsValue::raw(function)
}
