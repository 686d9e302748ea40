//! How the addon keeps — and stops keeping — the Node process alive.
//!
//! - [`Waker`]: a *weak* threadsafe function through which runtime tasks ask the JavaScript
//!   thread to apply pending work (health-check verdicts, keep-alive changes). Weak, so a
//!   pending wake never holds the process open by itself.
//! - [`KeepAlive`]: a referenced JavaScript timer that holds the process open while the
//!   manager has live native resources (a listener, a native connection), like a listening
//!   `http.Server` does, and is unreferenced when the last one ends.
//! - [`EnvTeardown`]: an env cleanup hook that shuts the core down when its Node
//!   environment ends without `shutdown()` — a worker thread terminated, a process exiting —
//!   so the listener's port and the connections' sockets are released, and the runtime
//!   never calls into the dead environment.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use napi::bindgen_prelude::Function;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{CleanupEnvHook, Env, Status};
use tracing::{debug, warn};

use super::js::{Called, Js, JsRef};
use crate::manager::{Lifeline, Manager};

type WakeFn = ThreadsafeFunction<(), (), (), Status, false, true>;

/// Schedules a callback on the JavaScript thread from any thread.
pub struct Waker {
    /// `None` once detached: the environment is going away and must not be woken.
    wake: RwLock<Option<WakeFn>>,
}

impl Waker {
    /// Wraps `on_wake`, a function created on the JavaScript thread.
    pub fn new(on_wake: Function<(), ()>) -> napi::Result<Self> {
        let wake = on_wake
            .build_threadsafe_function::<()>()
            .weak::<true>()
            .build_callback(|_ctx| Ok(()))?;
        Ok(Self {
            wake: RwLock::new(Some(wake)),
        })
    }

    pub fn wake(&self) {
        let wake = self.wake.read().unwrap_or_else(|p| p.into_inner());
        if let Some(wake) = wake.as_ref() {
            wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    /// Releases the threadsafe function (on the JavaScript thread): later wakes do nothing.
    fn detach(&self) {
        drop(self.wake.write().unwrap_or_else(|p| p.into_inner()).take());
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

/// How long the cleanup hook waits for the core's tasks to end: what `shutdown()` gives a
/// connection to finish its writes and close, plus a margin.
const TEARDOWN_WAIT: Duration =
    crate::transport::SHUTDOWN_DRAIN.saturating_add(Duration::from_millis(500));

/// What the cleanup hook reaches; emptied when the manager goes first.
struct TeardownState {
    core: RefCell<Weak<Manager>>,
    waker: RefCell<Option<Arc<Waker>>>,
    ran: Cell<bool>,
}

/// An env cleanup hook for one manager (napi `napi_add_env_cleanup_hook`). Node runs it on
/// the JavaScript thread when the environment ends — a `Worker` is terminated or exits, or
/// the main thread's event loop ends — before it frees the environment. The hook:
///
/// 1. detaches the [`Waker`], so no runtime task wakes the environment any more;
/// 2. begins the core's shutdown (native connections closed with 1001, every listener and
///    connection task told to end) — JavaScript sockets are the environment's own, which
///    destroys them itself;
/// 3. waits, blocking this thread for at most [`TEARDOWN_WAIT`], until those tasks have
///    ended, so the port is free and the sockets closed once `worker.terminate()` resolves.
///
/// A manager dropped before its environment removes its hook. (napi-rs leaks the hook's
/// small box on removal — an emptied `Rc`, a few dozen bytes per collected manager.)
pub struct EnvTeardown {
    /// The environment the hook was added to; used only on this thread, to remove it.
    env: Env,
    state: Rc<TeardownState>,
    hook: Option<CleanupEnvHook<Rc<TeardownState>>>,
}

impl EnvTeardown {
    pub fn register(env: &Env, core: &Arc<Manager>, waker: Arc<Waker>) -> napi::Result<Self> {
        let state = Rc::new(TeardownState {
            core: RefCell::new(Arc::downgrade(core)),
            waker: RefCell::new(Some(waker)),
            ran: Cell::new(false),
        });
        let hook = env.add_env_cleanup_hook(Rc::clone(&state), tear_down)?;
        Ok(Self {
            env: *env,
            state,
            hook: Some(hook),
        })
    }
}

/// The hook itself: Node calls it through a C callback, so a panic stays inside.
fn tear_down(state: Rc<TeardownState>) {
    super::js_transport::guarded("env cleanup hook", || end_core(&state));
}

fn end_core(state: &TeardownState) {
    state.ran.set(true);
    if let Some(waker) = state.waker.take() {
        waker.detach();
    }
    let Some(core) = state.core.take().upgrade() else {
        return;
    };
    if core.begin_shutdown().is_some() {
        debug!("environment ending: manager shut down by its cleanup hook");
    }
    // Built inside the runtime: a timer needs its context.
    let wait = async { tokio::time::timeout(TEARDOWN_WAIT, core.closed()).await };
    if crate::runtime::handle().block_on(wait).is_err() {
        warn!(
            "environment ending: the manager's tasks did not end within {} ms",
            TEARDOWN_WAIT.as_millis()
        );
    }
}

impl Drop for EnvTeardown {
    fn drop(&mut self) {
        if self.state.ran.get() {
            return;
        }
        self.state.core.take();
        self.state.waker.take();
        if let Some(hook) = self.hook.take() {
            if let Err(error) = self.env.remove_env_cleanup_hook(hook) {
                warn!(%error, "cannot remove the env cleanup hook");
            }
        }
    }
}
