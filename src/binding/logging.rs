//! Structured logging for the addon, set up once when the module loads.
//!
//! `CLUSO_WS_LOG` takes a `tracing` filter (`warn` by default; `debug`, `info`, `error`,
//! `off`, or per-target directives such as `cluso_ws=debug`). Events go to stderr, where
//! the original module's `console.warn` / `console.error` went.

use tracing_subscriber::EnvFilter;

pub const LOG_ENV: &str = "CLUSO_WS_LOG";
const DEFAULT_FILTER: &str = "warn";

pub fn init() {
    let filter =
        EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Another copy of the addon in the same process (a worker thread, a second path) may
    // have installed the subscriber already; the first one stays.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
