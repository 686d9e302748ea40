//! Strong references: JavaScript values Rust keeps alive across calls.

use std::ptr;

use napi::sys;

use super::{Js, Raw};

impl Js {
    pub fn create_reference(self, value: Raw) -> napi::Result<JsRef> {
        let mut reference = ptr::null_mut();
        // SAFETY: `value` is a live handle of this env from the current call; `reference` is
        // a local out pointer. The count of 1 makes the reference strong; `JsRef`'s drop
        // releases it.
        self.check(unsafe { sys::napi_create_reference(self.env, value, 1, &mut reference) })?;
        Ok(JsRef {
            env: self.env,
            reference,
        })
    }
}

/// A strong reference that keeps a JavaScript value alive while Rust holds it. Released
/// on drop; it never leaves the JavaScript thread (it is neither `Send` nor `Sync`).
pub struct JsRef {
    env: sys::napi_env,
    reference: sys::napi_ref,
}

impl JsRef {
    pub fn value(&self, js: Js) -> Raw {
        debug_assert_eq!(
            js.env, self.env,
            "a reference is used in the env that made it"
        );
        let mut value = ptr::null_mut();
        // SAFETY: `self.reference` is a strong reference (never deleted before drop) made in
        // `self.env`, which is `js.env`: a `JsRef` cannot leave the JavaScript thread that
        // made it, and that thread runs one env. `js` proves a call is running, so the
        // returned handle lands in its open scope. `value` is a local out pointer.
        unsafe { sys::napi_get_reference_value(js.env, self.reference, &mut value) };
        value
    }
}

impl Drop for JsRef {
    fn drop(&mut self) {
        // SAFETY: `JsRef` is neither `Send` nor `Sync`, so this runs on the JavaScript thread
        // of `self.env`. Its owners (state of the exported classes) are dropped in a call or
        // in napi-rs's finalizer, while that env is still alive; the reference is deleted
        // exactly once, here.
        unsafe { sys::napi_delete_reference(self.env, self.reference) };
    }
}
