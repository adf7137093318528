//! edgefabric's native QUIC engine for quic:// (issue 18): quinn 0.9 from
//! Debian's registry, exposed to Node through N-API without napi-rs.
//!
//! Exports (see src/transport/quic-engine-native.ts for the JS side):
//!   init(onEvents)                       once per process; onEvents(Buffer) gets event batches
//!   setRef(bool)                         keep the event loop alive (open endpoints/connections)
//!   listen(params, cert, key, resetKey, ip, port) -> id * 65536 + port
//!   dial(req, params, cert, key, ip, port)
//!   submit(commands, parts?)             one batch of stream/connection commands (parts: C_WRITEV data)
//!   rtt(conn) -> ms (-1 when gone), remote(conn) -> "ip:port" | undefined
//!   exporter(conn, label, len) -> Buffer | undefined   TLS exporter (channel binding)
//!   stats(conn) -> Buffer | undefined    quinn ConnectionStats as f64s (engine.rs stats)
mod config;
mod engine;
mod napi;
mod tls;

use napi::{napi_callback_info, napi_env, napi_value};
use std::ffi::c_void;
use std::ptr::null_mut;

unsafe extern "C" fn deliver(env: napi_env, js_cb: napi_value, _ctx: *mut c_void, _data: *mut c_void) {
    if env.is_null() || js_cb.is_null() {
        return;
    }
    let batch = engine::take_events();
    if batch.is_empty() {
        return;
    }
    let arg = if batch.len() >= engine::HAND_OVER_MIN {
        // A bulk batch's own allocation becomes the Buffer (no copy; freed when JS drops it),
        // trimmed to its length so what V8 accounts is what is held.
        let mut batch = batch;
        batch.shrink_to_fit();
        napi::buffer_owned(env, batch)
    } else {
        let arg = napi::buffer(env, &batch);
        engine::recycle_events(batch);
        arg
    };
    let mut out = null_mut();
    napi::napi_call_function(env, napi::undefined(env), js_cb, 1, &arg, &mut out);
}

unsafe extern "C" fn init(env: napi_env, info: napi_callback_info) -> napi_value {
    let (argv, argc) = napi::args::<1>(env, info);
    if argc < 1 {
        return napi::throw(env, "init(onEvents) needs a function");
    }
    let mut tsfn = null_mut();
    let name = napi::string(env, "edgefabric-quic");
    let status = napi::napi_create_threadsafe_function(
        env, argv[0], null_mut(), name, 0, 1, null_mut(), None, null_mut(), Some(deliver), &mut tsfn,
    );
    if status != napi::NAPI_OK {
        return napi::throw(env, "cannot create the threadsafe function");
    }
    // Not referenced until something is open (setRef): an idle engine must not keep Node alive.
    napi::napi_unref_threadsafe_function(env, tsfn);
    if !engine::set_tsfn(tsfn) {
        return napi::throw(env, "the QUIC engine is already initialised in this process");
    }
    // Registered after the threadsafe function, so it runs before Node's own cleanup frees it
    // (cleanup hooks run in reverse order of registration; N-API 3).
    napi::napi_add_env_cleanup_hook(env, Some(env_teardown), null_mut());
    engine::runtime();
    napi::undefined(env)
}

unsafe extern "C" fn env_teardown(_arg: *mut std::ffi::c_void) {
    engine::env_teardown();
}

unsafe extern "C" fn set_ref(env: napi_env, info: napi_callback_info) -> napi_value {
    let (argv, _) = napi::args::<1>(env, info);
    let on = napi::number(env, argv[0]).unwrap_or(0.0) != 0.0;
    let f = engine::tsfn();
    if !f.is_null() {
        if on {
            napi::napi_ref_threadsafe_function(env, f);
        } else {
            napi::napi_unref_threadsafe_function(env, f);
        }
    }
    napi::undefined(env)
}

unsafe extern "C" fn listen(env: napi_env, info: napi_callback_info) -> napi_value {
    let (a, argc) = napi::args::<6>(env, info);
    if argc < 6 {
        return napi::throw(env, "listen: 6 arguments expected");
    }
    // (no let-else: Debian's rustc is 1.63)
    let (params, cert, key, reset, ip, port) = match (
        napi::bytes(env, a[0]), napi::bytes(env, a[1]), napi::bytes(env, a[2]), napi::bytes(env, a[3]),
        napi::bytes(env, a[4]), napi::number(env, a[5]),
    ) {
        (Some(p), Some(c), Some(k), Some(r), Some(i), Some(n)) => (p, c, k, r, i, n),
        _ => return napi::throw(env, "listen: bad arguments"),
    };
    match engine::listen(params, cert, key, reset, ip, port as u16) {
        Ok((id, bound)) => napi::double(env, id as f64 * 65536.0 + bound as f64),
        Err(e) => napi::throw(env, &e),
    }
}

unsafe extern "C" fn dial(env: napi_env, info: napi_callback_info) -> napi_value {
    let (a, argc) = napi::args::<6>(env, info);
    if argc < 6 {
        return napi::throw(env, "dial: 6 arguments expected");
    }
    let (req, params, cert, key, ip, port) = match (
        napi::number(env, a[0]), napi::bytes(env, a[1]), napi::bytes(env, a[2]), napi::bytes(env, a[3]),
        napi::bytes(env, a[4]), napi::number(env, a[5]),
    ) {
        (Some(r), Some(p), Some(c), Some(k), Some(i), Some(n)) => (r, p, c, k, i, n),
        _ => return napi::throw(env, "dial: bad arguments"),
    };
    match engine::dial(req as u32, params, cert, key, ip, port as u16) {
        Ok(()) => napi::undefined(env),
        Err(e) => napi::throw(env, &e),
    }
}

unsafe extern "C" fn submit(env: napi_env, info: napi_callback_info) -> napi_value {
    let (a, argc) = napi::args::<2>(env, info);
    let b = match napi::bytes(env, a[0]) {
        Some(b) => b,
        None => return napi::throw(env, "submit: a Uint8Array expected"),
    };
    let parts = if argc >= 2 { a[1] } else { null_mut() };
    let part = |i: u32| if parts.is_null() { None } else { napi::element_bytes(env, parts, i) };
    match engine::submit(b, &part) {
        Ok(()) => napi::undefined(env),
        Err(e) => napi::throw(env, &e),
    }
}

unsafe extern "C" fn rtt(env: napi_env, info: napi_callback_info) -> napi_value {
    let (a, _) = napi::args::<1>(env, info);
    let id = napi::number(env, a[0]).unwrap_or(0.0) as u32;
    napi::double(env, engine::rtt_ms(id))
}

unsafe extern "C" fn remote(env: napi_env, info: napi_callback_info) -> napi_value {
    let (a, _) = napi::args::<1>(env, info);
    let id = napi::number(env, a[0]).unwrap_or(0.0) as u32;
    match engine::remote(id) {
        Some(s) => napi::string(env, &s),
        None => napi::undefined(env),
    }
}

unsafe extern "C" fn exporter(env: napi_env, info: napi_callback_info) -> napi_value {
    let (a, argc) = napi::args::<3>(env, info);
    if argc < 3 {
        return napi::throw(env, "exporter: 3 arguments expected");
    }
    let (id, label, len) = match (napi::number(env, a[0]), napi::bytes(env, a[1]), napi::number(env, a[2])) {
        (Some(i), Some(l), Some(n)) if n >= 1.0 && n <= 255.0 => (i as u32, l.to_vec(), n as usize),
        _ => return napi::throw(env, "exporter: bad arguments"),
    };
    match engine::exporter(id, &label, len) {
        Some(v) => napi::buffer(env, &v),
        None => napi::undefined(env),
    }
}

unsafe extern "C" fn stats(env: napi_env, info: napi_callback_info) -> napi_value {
    let (a, _) = napi::args::<1>(env, info);
    let id = napi::number(env, a[0]).unwrap_or(0.0) as u32;
    match engine::stats(id) {
        Some(v) => napi::buffer(env, &v),
        None => napi::undefined(env),
    }
}

#[no_mangle]
pub unsafe extern "C" fn napi_register_module_v1(env: napi_env, exports: napi_value) -> napi_value {
    napi::export(env, exports, "init", init);
    napi::export(env, exports, "setRef", set_ref);
    napi::export(env, exports, "listen", listen);
    napi::export(env, exports, "dial", dial);
    napi::export(env, exports, "submit", submit);
    napi::export(env, exports, "rtt", rtt);
    napi::export(env, exports, "remote", remote);
    napi::export(env, exports, "exporter", exporter);
    napi::export(env, exports, "stats", stats);
    exports
}

#[no_mangle]
pub extern "C" fn node_api_module_get_api_version_v1() -> i32 {
    8
}
