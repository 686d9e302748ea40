//! The package's JavaScript helpers (`lib/fanout.js`, `lib/attach.js`): ordinary modules
//! that `index.js` hands to the addon through `installHelpers`, once per JavaScript
//! environment. They are kept in that environment's instance data, so every worker thread
//! that loads the package holds its own and none outlives its environment.

use std::ffi::CStr;

use napi::bindgen_prelude::Unknown;
use napi::{Env, JsValue};
use napi_derive::napi;

use super::error::{self, ErrorKind};
use super::js::{Js, JsRef, Raw};

/// The helper functions of one JavaScript environment.
struct Helpers {
    create_js_fan_out: JsRef,
    attach_cluso: JsRef,
}

/// Called by `index.js` with `{ createJsFanOut, attachCluso }`; a second call replaces
/// the first. Not part of the public API.
// Only napi's module registration calls it, and that is compiled out of `cargo test`.
#[cfg_attr(test, allow(dead_code))]
#[napi(skip_typescript, catch_unwind)]
pub fn install_helpers(env: Env, helpers: Unknown) -> napi::Result<()> {
    let js = Js::new(&env);
    let function = |name: &CStr| -> napi::Result<JsRef> {
        let value = js
            .is_object(helpers.raw())
            .then(|| js.get(helpers.raw(), name).ok())
            .flatten()
            .filter(|value| js.type_of(*value) == napi::sys::ValueType::napi_function);
        match value {
            Some(value) => js.create_reference(value),
            None => Err(error::throw(
                &env,
                ErrorKind::TypeError,
                &format!(
                    "installHelpers() needs a function {}",
                    name.to_string_lossy()
                ),
                error::codes::INVALID_OPTION,
            )),
        }
    };
    let fresh = Helpers {
        create_js_fan_out: function(c"createJsFanOut")?,
        attach_cluso: function(c"attachCluso")?,
    };
    match env.get_instance_data::<Helpers>()? {
        Some(installed) => *installed = fresh,
        // The references are released with the environment.
        None => env.set_instance_data(fresh, (), drop)?,
    }
    Ok(())
}

fn helper(env: &Env, pick: impl FnOnce(&Helpers) -> &JsRef) -> napi::Result<Raw> {
    match env.get_instance_data::<Helpers>()? {
        Some(helpers) => Ok(pick(helpers).value(Js::new(env))),
        None => Err(error::throw(
            env,
            ErrorKind::Error,
            "cluso-ws was loaded without its JavaScript helpers: require('cluso-ws') (its \
             index.js), not native.js or the .node file directly",
            error::codes::NOT_LOADED,
        )),
    }
}

/// `createJsFanOut` of `lib/fanout.js`.
pub fn create_js_fan_out(env: &Env) -> napi::Result<Raw> {
    helper(env, |helpers| &helpers.create_js_fan_out)
}

/// `attachCluso` of `lib/attach.js`.
pub fn attach_cluso(env: &Env) -> napi::Result<Raw> {
    helper(env, |helpers| &helpers.attach_cluso)
}
