//! The few N-API functions the engine calls, declared by hand (node_api.h,
//! N-API version 4+, stable ABI). libnode-dev cannot be installed next to
//! Debian's nodejs and napi-rs is not packaged; the symbols are resolved
//! from the node binary at load time, so the cdylib links nothing.
#![allow(non_camel_case_types)]

use std::ffi::c_void;
use std::os::raw::c_char;

pub type napi_status = i32;
pub type napi_env = *mut c_void;
pub type napi_value = *mut c_void;
pub type napi_callback_info = *mut c_void;
pub type napi_threadsafe_function = *mut c_void;
pub type napi_callback = Option<unsafe extern "C" fn(napi_env, napi_callback_info) -> napi_value>;
pub type napi_finalize = Option<unsafe extern "C" fn(napi_env, *mut c_void, *mut c_void)>;
pub type napi_threadsafe_function_call_js =
    Option<unsafe extern "C" fn(napi_env, napi_value, *mut c_void, *mut c_void)>;

pub const NAPI_OK: napi_status = 0;
/// napi_tsfn_nonblocking
pub const TSFN_NONBLOCKING: i32 = 0;

extern "C" {
    pub fn napi_create_function(
        env: napi_env, name: *const c_char, length: usize, cb: napi_callback, data: *mut c_void,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_set_named_property(
        env: napi_env, object: napi_value, name: *const c_char, value: napi_value,
    ) -> napi_status;
    pub fn napi_get_cb_info(
        env: napi_env, info: napi_callback_info, argc: *mut usize, argv: *mut napi_value,
        this_arg: *mut napi_value, data: *mut *mut c_void,
    ) -> napi_status;
    pub fn napi_get_typedarray_info(
        env: napi_env, value: napi_value, kind: *mut i32, length: *mut usize, data: *mut *mut c_void,
        arraybuffer: *mut napi_value, byte_offset: *mut usize,
    ) -> napi_status;
    pub fn napi_create_buffer_copy(
        env: napi_env, length: usize, data: *const c_void, result_data: *mut *mut c_void,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_create_external_buffer(
        env: napi_env, length: usize, data: *mut c_void, finalize_cb: napi_finalize, finalize_hint: *mut c_void,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_get_element(env: napi_env, object: napi_value, index: u32, result: *mut napi_value) -> napi_status;
    pub fn napi_get_undefined(env: napi_env, result: *mut napi_value) -> napi_status;
    pub fn napi_create_double(env: napi_env, value: f64, result: *mut napi_value) -> napi_status;
    pub fn napi_get_value_double(env: napi_env, value: napi_value, result: *mut f64) -> napi_status;
    pub fn napi_create_string_utf8(
        env: napi_env, s: *const c_char, length: usize, result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_throw_error(env: napi_env, code: *const c_char, msg: *const c_char) -> napi_status;
    pub fn napi_call_function(
        env: napi_env, recv: napi_value, func: napi_value, argc: usize, argv: *const napi_value,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_create_threadsafe_function(
        env: napi_env, func: napi_value, async_resource: napi_value, async_resource_name: napi_value,
        max_queue_size: usize, initial_thread_count: usize, thread_finalize_data: *mut c_void,
        thread_finalize_cb: napi_finalize, context: *mut c_void,
        call_js_cb: napi_threadsafe_function_call_js, result: *mut napi_threadsafe_function,
    ) -> napi_status;
    pub fn napi_call_threadsafe_function(
        func: napi_threadsafe_function, data: *mut c_void, is_blocking: i32,
    ) -> napi_status;
    pub fn napi_ref_threadsafe_function(env: napi_env, func: napi_threadsafe_function) -> napi_status;
    pub fn napi_unref_threadsafe_function(env: napi_env, func: napi_threadsafe_function) -> napi_status;
    pub fn napi_add_env_cleanup_hook(
        env: napi_env, fun: Option<unsafe extern "C" fn(arg: *mut c_void)>, arg: *mut c_void,
    ) -> napi_status;
}

/// Read up to N arguments of a call.
pub unsafe fn args<const N: usize>(env: napi_env, info: napi_callback_info) -> ([napi_value; N], usize) {
    let mut argv = [std::ptr::null_mut(); N];
    let mut argc = N;
    napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), std::ptr::null_mut(), std::ptr::null_mut());
    (argv, argc)
}

/// The bytes of a Uint8Array / Buffer argument (borrowed for the call only).
pub unsafe fn bytes<'a>(env: napi_env, v: napi_value) -> Option<&'a [u8]> {
    let mut kind = 0i32;
    let mut len = 0usize;
    let mut data: *mut c_void = std::ptr::null_mut();
    let mut ab: napi_value = std::ptr::null_mut();
    let mut off = 0usize;
    if napi_get_typedarray_info(env, v, &mut kind, &mut len, &mut data, &mut ab, &mut off) != NAPI_OK {
        return None;
    }
    // 1 = napi_uint8_array (Buffer is one too)
    if kind != 1 {
        return None;
    }
    if len == 0 {
        return Some(&[]);
    }
    Some(std::slice::from_raw_parts(data as *const u8, len))
}

pub unsafe fn number(env: napi_env, v: napi_value) -> Option<f64> {
    let mut out = 0f64;
    if napi_get_value_double(env, v, &mut out) != NAPI_OK {
        return None;
    }
    Some(out)
}

pub unsafe fn undefined(env: napi_env) -> napi_value {
    let mut v = std::ptr::null_mut();
    napi_get_undefined(env, &mut v);
    v
}

pub unsafe fn double(env: napi_env, x: f64) -> napi_value {
    let mut v = std::ptr::null_mut();
    napi_create_double(env, x, &mut v);
    v
}

pub unsafe fn buffer(env: napi_env, data: &[u8]) -> napi_value {
    let mut v = std::ptr::null_mut();
    let mut out: *mut c_void = std::ptr::null_mut();
    napi_create_buffer_copy(env, data.len(), data.as_ptr() as *const c_void, &mut out, &mut v);
    v
}

unsafe extern "C" fn free_vec(_env: napi_env, _data: *mut c_void, hint: *mut c_void) {
    drop(Box::from_raw(hint as *mut Vec<u8>));
}

/// A Buffer over `data` without copying it: the Vec is freed when the Buffer is
/// collected. Falls back to a copy if Node refuses external buffers.
pub unsafe fn buffer_owned(env: napi_env, data: Vec<u8>) -> napi_value {
    let len = data.len();
    let mut boxed = Box::new(data);
    let ptr = boxed.as_mut_ptr() as *mut c_void;
    let hint = Box::into_raw(boxed);
    let mut v = std::ptr::null_mut();
    if napi_create_external_buffer(env, len, ptr, Some(free_vec), hint as *mut c_void, &mut v) != NAPI_OK {
        let data = Box::from_raw(hint);
        return buffer(env, &data);
    }
    v
}

/// Element `i` of a JS array, when it is a Uint8Array (borrowed for the call only).
pub unsafe fn element_bytes<'a>(env: napi_env, array: napi_value, i: u32) -> Option<&'a [u8]> {
    let mut v = std::ptr::null_mut();
    if napi_get_element(env, array, i, &mut v) != NAPI_OK || v.is_null() {
        return None;
    }
    bytes(env, v)
}

pub unsafe fn string(env: napi_env, s: &str) -> napi_value {
    let mut v = std::ptr::null_mut();
    napi_create_string_utf8(env, s.as_ptr() as *const c_char, s.len(), &mut v);
    v
}

/// Throw a JS Error with `msg`; returns undefined for the callback to return.
pub unsafe fn throw(env: napi_env, msg: &str) -> napi_value {
    let c = std::ffi::CString::new(msg.replace('\0', " ")).unwrap_or_default();
    napi_throw_error(env, std::ptr::null(), c.as_ptr());
    undefined(env)
}

pub unsafe fn export(env: napi_env, exports: napi_value, name: &str, cb: unsafe extern "C" fn(napi_env, napi_callback_info) -> napi_value) {
    let cname = std::ffi::CString::new(name).unwrap();
    let mut f = std::ptr::null_mut();
    napi_create_function(env, cname.as_ptr(), name.len(), Some(cb), std::ptr::null_mut(), &mut f);
    napi_set_named_property(env, exports, cname.as_ptr(), f);
}
