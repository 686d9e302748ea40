//! The internal tokio runtime that every background task of the addon runs on.
//!
//! One runtime per process, started on first use. Its worker threads hold no libuv handle,
//! so they never keep Node's event loop alive by themselves; what must keep the process
//! alive (a listener, an open native connection) does so explicitly through the binding.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::runtime::{Builder, Handle, Runtime};

/// Worker threads at most: fan-out and socket I/O are the work; two threads saturate the two
/// cores this is built for without contending with Node's own thread. A process that may use
/// one core only (CPU affinity, cgroup quota) gets one: a second would only take turns with
/// the first and with Node's thread, and every turn it takes is time a `broadcast()` call
/// waits for the core.
const MAX_WORKER_THREADS: usize = 2;

fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get().min(MAX_WORKER_THREADS))
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Puts the calling worker thread under `SCHED_BATCH`, which gives up wake-up preemption:
/// when `broadcast()` wakes the fan-out task and both must share a core, the task waits for
/// the JavaScript thread's time slice instead of interrupting the call mid-way. The thread
/// still gets its fair share of the CPU.
fn yield_to_javascript() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is an initialised `sched_param` on this stack frame, alive for the
        // call, which only reads it. Pid 0 names the calling thread (Linux schedules
        // threads), so no other thread is affected; a refusal returns -1, ignored, and
        // leaves the default policy.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    }
}

/// The shared runtime's handle, starting the runtime on first call.
pub fn handle() -> Handle {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(worker_threads())
                .thread_name("cluso-ws")
                .on_thread_start(yield_to_javascript)
                .on_thread_park(|| WORKING_SINCE.set(None))
                .enable_all()
                .build()
                // Without threads or timers the addon cannot work at all; there is no
                // degraded mode to fall back to.
                .unwrap_or_else(|error| panic!("cluso-ws: cannot start its runtime: {error}"))
        })
        .handle()
        .clone()
}

/// How long a thread of the addon works before it offers its core to another thread.
const OFFER_CORE_EVERY: Duration = Duration::from_micros(500);

thread_local! {
    /// When this thread last started working (woke, or offered its core); `None` while it
    /// sleeps.
    static WORKING_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Offers the core to another runnable thread once this one has worked for
/// [`OFFER_CORE_EVERY`] without doing so. Where the addon's threads share a core with
/// Node's (one core, or a busy machine), a `broadcast()` preempted mid-call otherwise waits
/// for their whole time slice — the fan-out and, under a backlog, a thousand connections
/// flushing what their sockets refused: milliseconds. With a core to itself the yield
/// returns at once. Called between units of work (a batch of deliveries, a connection's
/// flush or read).
pub fn offer_core_when_due() {
    let now = Instant::now();
    match WORKING_SINCE.get() {
        Some(since) if now.duration_since(since) < OFFER_CORE_EVERY => {}
        Some(_) => {
            std::thread::yield_now();
            WORKING_SINCE.set(Some(Instant::now()));
        }
        None => WORKING_SINCE.set(Some(now)),
    }
}
