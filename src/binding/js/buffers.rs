//! Reading binary values (Buffers, typed arrays, DataViews, ArrayBuffers) and arrays.

use std::ptr;

use napi::sys;

use super::{Js, Raw};

impl Js {
    /// A copy of the bytes of a Buffer, typed array, DataView or ArrayBuffer.
    pub fn bytes(self, value: Raw) -> Option<Vec<u8>> {
        let mut is = false;
        // SAFETY: `value` is a live handle of this env from the current call; `is` is a local
        // `bool` out pointer.
        unsafe { sys::napi_is_typedarray(self.env, value, &mut is) };
        if is {
            let mut kind = 0;
            let mut length = 0;
            let mut data = ptr::null_mut();
            let mut buffer = ptr::null_mut();
            let mut offset = 0;
            // SAFETY: `value` is a live typed array of this env (checked above); each out
            // pointer is a local of the type Node-API writes.
            unsafe {
                sys::napi_get_typedarray_info(
                    self.env,
                    value,
                    &mut kind,
                    &mut length,
                    &mut data,
                    &mut buffer,
                    &mut offset,
                )
            };
            let element = match kind {
                sys::TypedarrayType::int16_array | sys::TypedarrayType::uint16_array => 2,
                sys::TypedarrayType::int32_array
                | sys::TypedarrayType::uint32_array
                | sys::TypedarrayType::float32_array => 4,
                sys::TypedarrayType::float64_array
                | sys::TypedarrayType::bigint64_array
                | sys::TypedarrayType::biguint64_array => 8,
                _ => 1,
            };
            // SAFETY: `data` points at the array's first element (offset already applied) and
            // `length` elements of `element` bytes follow it in the backing store, which the
            // live `value` keeps alive; no JavaScript runs before the copy, so nothing can
            // detach or shrink the buffer in between.
            return Some(unsafe { copy_raw(data.cast(), length * element) });
        }
        // SAFETY: as for `napi_is_typedarray` above.
        unsafe { sys::napi_is_arraybuffer(self.env, value, &mut is) };
        if is {
            let mut data = ptr::null_mut();
            let mut length = 0;
            // SAFETY: `value` is a live ArrayBuffer of this env (checked above); `data` and
            // `length` are local out pointers.
            unsafe { sys::napi_get_arraybuffer_info(self.env, value, &mut data, &mut length) };
            // SAFETY: `data` is the start of the buffer's `length` bytes, kept alive by the
            // live `value`; no JavaScript runs before the copy.
            return Some(unsafe { copy_raw(data.cast(), length) });
        }
        // SAFETY: as for `napi_is_typedarray` above.
        unsafe { sys::napi_is_dataview(self.env, value, &mut is) };
        if is {
            let mut length = 0;
            let mut data = ptr::null_mut();
            let mut buffer = ptr::null_mut();
            let mut offset = 0;
            // SAFETY: `value` is a live DataView of this env (checked above); each out pointer
            // is a local of the type Node-API writes.
            unsafe {
                sys::napi_get_dataview_info(
                    self.env,
                    value,
                    &mut length,
                    &mut data,
                    &mut buffer,
                    &mut offset,
                )
            };
            // SAFETY: `data` points at the view's first byte (offset already applied) and
            // `length` bytes follow it in the backing store, kept alive by the live `value`;
            // no JavaScript runs before the copy.
            return Some(unsafe { copy_raw(data.cast(), length) });
        }
        None
    }

    /// The elements of an array, or `None` when `value` is not one.
    pub fn array_items(self, value: Raw) -> Option<Vec<Raw>> {
        let mut is = false;
        // SAFETY: `value` is a live handle of this env from the current call; `is` is a local
        // `bool` out pointer.
        unsafe { sys::napi_is_array(self.env, value, &mut is) };
        if !is {
            return None;
        }
        let mut length = 0;
        // SAFETY: `value` is a live array of this env (checked above); `length` is a local
        // `u32` out pointer.
        unsafe { sys::napi_get_array_length(self.env, value, &mut length) };
        let mut items = Vec::with_capacity(length as usize);
        for index in 0..length {
            let mut item = ptr::null_mut();
            // SAFETY: `value` is a live array of this env; `item` is a local out pointer. An
            // index getter may throw; the exception is taken below.
            if unsafe { sys::napi_get_element(self.env, value, index, &mut item) }
                != sys::Status::napi_ok
            {
                self.take_exception();
                return None;
            }
            items.push(item);
        }
        Some(items)
    }
}

/// Copies memory owned by a JavaScript value that is alive for the current call.
///
/// # Safety
///
/// Unless `data` is null or `length` is 0, `data` must be readable for `length` bytes until
/// this returns.
unsafe fn copy_raw(data: *const u8, length: usize) -> Vec<u8> {
    if data.is_null() || length == 0 {
        return Vec::new();
    }
    // SAFETY: `data` is non-null and readable for `length` bytes (the caller's promise);
    // `u8` has no alignment or validity requirement, and the slice lives only for the copy.
    unsafe { std::slice::from_raw_parts(data, length) }.to_vec()
}
