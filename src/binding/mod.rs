//! The napi-rs binding: converts JavaScript values and delegates to the core. Nothing
//! outside this module knows about Node.

mod broadcaster;
mod error;
mod gate;
mod helpers;
mod js;
mod js_fanout;
mod js_socket;
mod js_transport;
mod json;
mod lifetime;
mod logging;
mod manager;
mod metrics;
mod native_socket;
mod native_transport;
mod options;
mod requests;
mod types;

#[napi_derive::module_init]
fn init() {
    logging::init();
}
