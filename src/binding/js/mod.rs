//! A thin, exception-safe layer over the raw Node-API calls the binding makes on its hot
//! paths: reading properties, calling methods on WebSocket-like objects, strings, and
//! `JSON.stringify`. Every call that can run JavaScript returns the thrown value instead of
//! leaving an exception pending, so one throwing socket never poisons the next call.
//!
//! This is the only module that calls `napi::sys` directly. The soundness of every call
//! rests on one contract, which the rest of the binding keeps: a [`Js`] is made from the
//! `Env` of a call napi-rs is running on the JavaScript thread, and is used only within that
//! call; every [`Raw`] handed to it was produced in that same call (so its handle scope is
//! still open and the value is live). Out-pointers are locals of the calling method.

use std::ffi::CStr;
use std::ptr;

use napi::{sys, Env};

mod buffers;
mod reference;

pub use reference::JsRef;

pub type Raw = sys::napi_value;

/// The JavaScript environment of the current call. Only valid on the JavaScript thread,
/// within the call that produced it.
#[derive(Clone, Copy)]
pub struct Js {
    env: sys::napi_env,
}

/// How a call into JavaScript ended.
pub enum Called {
    Returned(Raw),
    Threw(Raw),
}

impl Js {
    pub fn new(env: &Env) -> Self {
        Self { env: env.raw() }
    }

    pub fn undefined(self) -> Raw {
        let mut value = ptr::null_mut();
        // SAFETY: `self.env` is the live env of the current call; `value` is a local out
        // pointer. No JavaScript value goes in.
        unsafe { sys::napi_get_undefined(self.env, &mut value) };
        value
    }

    pub fn global(self) -> Raw {
        let mut value = ptr::null_mut();
        // SAFETY: `self.env` is the live env of the current call; `value` is a local out
        // pointer. No JavaScript value goes in.
        unsafe { sys::napi_get_global(self.env, &mut value) };
        value
    }

    /// Takes the pending exception, if any, so the environment is usable again.
    fn take_exception(self) -> Option<Raw> {
        let mut pending = false;
        // SAFETY: `self.env` is the live env of the current call; `pending` is a local `bool`,
        // the type Node-API writes.
        unsafe { sys::napi_is_exception_pending(self.env, &mut pending) };
        if !pending {
            return None;
        }
        let mut exception = ptr::null_mut();
        // SAFETY: `self.env` is the live env of the current call; `exception` is a local out
        // pointer, which Node-API fills with a handle in the current scope.
        unsafe { sys::napi_get_and_clear_last_exception(self.env, &mut exception) };
        Some(exception)
    }

    /// Throws `value` (used to rethrow an exception this layer caught).
    pub fn throw(self, value: Raw) {
        // SAFETY: `value` is a live handle of this env from the current call (the module's
        // contract); Node-API only reads it.
        unsafe { sys::napi_throw(self.env, value) };
    }

    /// Rethrows `thrown` to the JavaScript caller; the returned error tells napi-rs that an
    /// exception is already pending.
    pub fn rethrow(self, thrown: Raw) -> napi::Error {
        self.throw(thrown);
        napi::Error::from_status(napi::Status::PendingException)
    }

    pub fn type_of(self, value: Raw) -> sys::napi_valuetype {
        let mut kind = sys::ValueType::napi_undefined;
        // SAFETY: `value` is a live handle of this env from the current call; `kind` is a
        // local of the `napi_valuetype` Node-API writes.
        unsafe { sys::napi_typeof(self.env, value, &mut kind) };
        kind
    }

    pub fn is_object(self, value: Raw) -> bool {
        matches!(
            self.type_of(value),
            sys::ValueType::napi_object | sys::ValueType::napi_function
        )
    }

    /// `object[name]`; `Err` with the thrown value when a getter throws.
    pub fn get(self, object: Raw, name: &CStr) -> Result<Raw, Raw> {
        let mut value = ptr::null_mut();
        // SAFETY: `object` is a live handle of this env from the current call; `name` is a
        // NUL-terminated `CStr` borrowed for the whole call; `value` is a local out pointer.
        // A getter may run JavaScript, whose exception is taken below.
        let status =
            unsafe { sys::napi_get_named_property(self.env, object, name.as_ptr(), &mut value) };
        if status == sys::Status::napi_ok {
            return Ok(value);
        }
        Err(self.take_exception().unwrap_or_else(|| self.undefined()))
    }

    pub fn set(self, object: Raw, name: &CStr, value: Raw) -> napi::Result<()> {
        // SAFETY: `object` and `value` are live handles of this env from the current call;
        // `name` is a NUL-terminated `CStr` borrowed for the whole call.
        let status =
            unsafe { sys::napi_set_named_property(self.env, object, name.as_ptr(), value) };
        self.check(status)
    }

    fn check(self, status: sys::napi_status) -> napi::Result<()> {
        if status == sys::Status::napi_ok {
            return Ok(());
        }
        if let Some(exception) = self.take_exception() {
            return Err(self.rethrow(exception));
        }
        Err(napi::Error::from_status(napi::Status::from(status)))
    }

    /// `object[key] = value` with a computed key.
    pub fn set_property(self, object: Raw, key: Raw, value: Raw) -> napi::Result<()> {
        // SAFETY: `object`, `key` and `value` are live handles of this env from the current
        // call; Node-API only reads them.
        let status = unsafe { sys::napi_set_property(self.env, object, key, value) };
        self.check(status)
    }

    /// Whether `value` is the boolean `true`.
    pub fn is_true(self, value: Raw) -> bool {
        let mut result = false;
        // SAFETY: `value` is a live handle of this env from the current call; `result` is a
        // local `bool`, left untouched when `value` is not a boolean.
        let status = unsafe { sys::napi_get_value_bool(self.env, value, &mut result) };
        status == sys::Status::napi_ok && result
    }

    pub fn is_promise(self, value: Raw) -> bool {
        let mut result = false;
        // SAFETY: `value` is a live handle of this env from the current call; `result` is a
        // local `bool` out pointer.
        unsafe { sys::napi_is_promise(self.env, value, &mut result) };
        result
    }

    /// `setTimeout(callback, ms).unref()`: a timer that does not keep the process alive.
    pub fn set_unref_timeout(self, callback: Raw, ms: f64) {
        let Ok(set_timeout) = self.get(self.global(), c"setTimeout") else {
            return;
        };
        let delay = self.create_double(ms);
        if let Called::Returned(timer) = self.call(self.global(), set_timeout, &[callback, delay]) {
            let _ = self.call_method(timer, c"unref", &[]);
        }
    }

    /// `JSON.stringify(value)` with the current global, for rare paths; `None` when it
    /// throws or gives `undefined`.
    pub fn json_stringify(self, value: Raw) -> Option<String> {
        let json = self.get(self.global(), names::JSON).ok()?;
        match self.call_method(json, names::STRINGIFY, &[value])? {
            Called::Returned(text) => self.string(text),
            Called::Threw(_) => None,
        }
    }

    /// `JSON.parse(text)`; `None` when it throws.
    pub fn json_parse(self, text: &str) -> Option<Raw> {
        let json = self.get(self.global(), names::JSON).ok()?;
        let text = self.create_string(text).ok()?;
        match self.call_method(json, c"parse", &[text])? {
            Called::Returned(value) => Some(value),
            Called::Threw(_) => None,
        }
    }

    pub fn number(self, value: Raw) -> Option<f64> {
        let mut number = 0.0;
        // SAFETY: `value` is a live handle of this env from the current call; `number` is a
        // local `f64`, left untouched when `value` is not a number.
        let status = unsafe { sys::napi_get_value_double(self.env, value, &mut number) };
        (status == sys::Status::napi_ok).then_some(number)
    }

    pub fn create_double(self, value: f64) -> Raw {
        let mut raw = ptr::null_mut();
        // SAFETY: `self.env` is the live env of the current call; `raw` is a local out
        // pointer. The number goes in by value.
        unsafe { sys::napi_create_double(self.env, value, &mut raw) };
        raw
    }

    /// The length in bytes of a JavaScript string encoded as UTF-8.
    pub fn utf8_len(self, value: Raw) -> usize {
        let mut len = 0;
        // SAFETY: `value` is a live handle of this env from the current call. A null buffer
        // of size 0 asks only for the length, written to the local `len`.
        unsafe { sys::napi_get_value_string_utf8(self.env, value, ptr::null_mut(), 0, &mut len) };
        len
    }

    pub fn bool(self, value: bool) -> Raw {
        let mut raw = ptr::null_mut();
        // SAFETY: `self.env` is the live env of the current call; `raw` is a local out
        // pointer. The boolean goes in by value.
        unsafe { sys::napi_get_boolean(self.env, value, &mut raw) };
        raw
    }

    /// The UTF-8 text of a JavaScript string (lone surrogates become U+FFFD), or `None`
    /// when `value` is not a string.
    pub fn string(self, value: Raw) -> Option<String> {
        let mut len = 0;
        // SAFETY: as in `utf8_len`: a live handle of this env, a null buffer of size 0 (length
        // only), and a local out pointer for the length.
        let status = unsafe {
            sys::napi_get_value_string_utf8(self.env, value, ptr::null_mut(), 0, &mut len)
        };
        if status != sys::Status::napi_ok {
            return None;
        }
        let mut bytes = vec![0u8; len + 1];
        let mut written = 0;
        // SAFETY: `bytes` is writable for `bytes.len()` bytes and that size is passed, so
        // Node-API writes at most `len` bytes of text plus the NUL it always appends, and
        // `written` (a local) never exceeds `len`. `value` is the same live string as above.
        unsafe {
            sys::napi_get_value_string_utf8(
                self.env,
                value,
                bytes.as_mut_ptr().cast(),
                bytes.len(),
                &mut written,
            )
        };
        bytes.truncate(written);
        // V8 writes well-formed UTF-8; the lossy path only guards the invariant.
        Some(
            String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into()),
        )
    }

    pub fn create_string(self, text: &str) -> napi::Result<Raw> {
        let mut raw = ptr::null_mut();
        // SAFETY: `text` is valid UTF-8, readable for `text.len()` bytes and borrowed for the
        // call; Node-API copies it, and the explicit length means no NUL is needed (a
        // slice's length never exceeds `isize::MAX`, so the cast is exact). `raw` is a local
        // out pointer.
        let status = unsafe {
            sys::napi_create_string_utf8(
                self.env,
                text.as_ptr().cast(),
                text.len() as isize,
                &mut raw,
            )
        };
        self.check(status)?;
        Ok(raw)
    }

    /// `new Error(message)`.
    pub fn create_error(self, message: &str) -> napi::Result<Raw> {
        let text = self.create_string(message)?;
        let mut raw = ptr::null_mut();
        // SAFETY: `text` is a live string value of this env; `raw` is a valid out pointer.
        let status = unsafe { sys::napi_create_error(self.env, ptr::null_mut(), text, &mut raw) };
        self.check(status)?;
        Ok(raw)
    }

    /// `new constructor(...args)`.
    pub fn construct(self, constructor: Raw, args: &[Raw]) -> napi::Result<Raw> {
        let mut instance = ptr::null_mut();
        // SAFETY: `constructor` and `args` are live values of this env, `args` stays
        // borrowed for the call, and `instance` is a valid out pointer.
        let status = unsafe {
            sys::napi_new_instance(
                self.env,
                constructor,
                args.len(),
                args.as_ptr(),
                &mut instance,
            )
        };
        self.check(status)?;
        Ok(instance)
    }

    /// `value` as napi-rs's `Unknown`, to return it from a method.
    pub fn unknown<'a>(self, value: Raw) -> napi::bindgen_prelude::Unknown<'a> {
        // SAFETY: `value` is a live handle of this env from the current call. The caller
        // picks `'a`; it returns the `Unknown` from the method it is in, so the value is not
        // used after that call's handle scope closes.
        unsafe { napi::bindgen_prelude::Unknown::from_raw_unchecked(self.env, value) }
    }

    /// `value` (an object) as napi-rs's `Object`, to return it from a method.
    pub fn object<'a>(self, value: Raw) -> napi::bindgen_prelude::Object<'a> {
        napi::bindgen_prelude::Object::from_raw(self.env, value)
    }

    pub fn create_object(self) -> napi::Result<Raw> {
        let mut raw = ptr::null_mut();
        // SAFETY: `self.env` is the live env of the current call; `raw` is a local out
        // pointer.
        let status = unsafe { sys::napi_create_object(self.env, &mut raw) };
        self.check(status)?;
        Ok(raw)
    }

    pub fn create_array(self, items: &[Raw]) -> napi::Result<Raw> {
        let mut raw = ptr::null_mut();
        // SAFETY: `self.env` is the live env of the current call; `raw` is a local out
        // pointer.
        self.check(unsafe { sys::napi_create_array_with_length(self.env, items.len(), &mut raw) })?;
        for (index, item) in items.iter().enumerate() {
            // SAFETY: `raw` is the array just created in this env and every item is a live
            // handle of this env from the current call.
            self.check(unsafe { sys::napi_set_element(self.env, raw, index as u32, *item) })?;
        }
        Ok(raw)
    }

    /// Calls `function` with `this` and `args`.
    pub fn call(self, this: Raw, function: Raw, args: &[Raw]) -> Called {
        let mut result = ptr::null_mut();
        // SAFETY: `this`, `function` and every element of `args` are live handles of this
        // env from the current call; `args` is borrowed for the whole call, so its pointer is
        // valid for `args.len()` elements (Node-API does not read it when the length is 0).
        // `result` is a local out pointer. The called JavaScript may throw; the exception is
        // taken below.
        let status = unsafe {
            sys::napi_call_function(
                self.env,
                this,
                function,
                args.len(),
                args.as_ptr(),
                &mut result,
            )
        };
        if status == sys::Status::napi_ok {
            return Called::Returned(result);
        }
        Called::Threw(self.take_exception().unwrap_or_else(|| self.undefined()))
    }

    /// Calls `object[name](...args)` if it is a function; `None` when there is no such
    /// method.
    pub fn call_method(self, object: Raw, name: &CStr, args: &[Raw]) -> Option<Called> {
        let method = match self.get(object, name) {
            Ok(method) => method,
            Err(thrown) => return Some(Called::Threw(thrown)),
        };
        if self.type_of(method) != sys::ValueType::napi_function {
            return None;
        }
        Some(self.call(object, method, args))
    }

    /// `String(value)`, for logging a thrown value. Never throws.
    pub fn describe(self, value: Raw) -> String {
        let mut text = ptr::null_mut();
        // SAFETY: `value` is a live handle of this env from the current call; `text` is a
        // local out pointer. A throwing `toString` leaves an exception, taken below.
        let status = unsafe { sys::napi_coerce_to_string(self.env, value, &mut text) };
        if status != sys::Status::napi_ok {
            self.take_exception();
            return String::from("<unprintable value>");
        }
        self.string(text).unwrap_or_default()
    }
}

/// Property names used on the hot paths, as C strings.
pub mod names {
    use std::ffi::CStr;
    pub const READY_STATE: &CStr = c"readyState";
    pub const SEND: &CStr = c"send";
    pub const PING: &CStr = c"ping";
    pub const CLOSE: &CStr = c"close";
    pub const TERMINATE: &CStr = c"terminate";
    pub const ON: &CStr = c"on";
    pub const JSON: &CStr = c"JSON";
    pub const STRINGIFY: &CStr = c"stringify";
}
