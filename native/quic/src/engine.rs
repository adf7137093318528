//! The engine: one tokio runtime for the process, quinn endpoints and
//! connections in id-keyed tables, one task per stream half.
//!
//! Crossings are batched both ways. JavaScript sends every stream and
//! connection command of an event-loop turn in one `submit(buffer)` call;
//! everything the engine has to tell JavaScript is appended to one event
//! buffer, and a single threadsafe-function call per batch hands that buffer
//! over (a new call is scheduled only when the buffer goes from empty to
//! non-empty). Reads are pulled: JavaScript asks for at most `max` bytes of a
//! stream and nothing more is read until it asks again, so QUIC flow control
//! pushes back on a peer that JavaScript does not keep up with.
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};

use once_cell::sync::{Lazy, OnceCell};
use quinn::{Connection, Endpoint, EndpointConfig, RecvStream, SendStream, VarInt};
use tokio::sync::Notify;

use crate::config::Params;
use crate::napi;
use crate::tls;

// Events (engine → JS): [op u8][a u32][b u32][len u32][payload]
pub const E_CONN_IN: u8 = 1;
pub const E_DIAL_OK: u8 = 2;
pub const E_DIAL_ERR: u8 = 3;
pub const E_STREAM_OPENED: u8 = 4;
pub const E_STREAM_OPEN_ERR: u8 = 5;
pub const E_STREAM_IN: u8 = 6;
pub const E_DATA: u8 = 7;
pub const E_FIN: u8 = 8;
pub const E_READ_ERR: u8 = 9;
pub const E_WRITTEN: u8 = 10;
pub const E_WRITE_ERR: u8 = 11;
pub const E_FINISHED: u8 = 12;
pub const E_CONN_CLOSED: u8 = 13;
pub const E_EP_CLOSED: u8 = 14;

// Commands (JS → engine), same layout.
const C_OPEN: u8 = 1;
const C_WRITE: u8 = 2;
const C_FINISH: u8 = 3;
const C_RESET: u8 = 4;
const C_READ: u8 = 5;
const C_STOP: u8 = 6;
const C_CLOSE: u8 = 7;
const C_EP_CLOSE: u8 = 8;
/// A write whose bytes are not inline: the payload lists u32 indices into the
/// `parts` array passed to `submit` next to the command buffer; the parts are
/// gathered into one buffer here (one copy, instead of JS concatenating them
/// into the command buffer and this side copying that again: issue 18, CPU per byte).
const C_WRITEV: u8 = 9;

/// First allocation of an empty event buffer: one bulk read (64 KiB) plus
/// headers fits without the Vec growing (and copying) mid-batch.
const EVENTS_INITIAL: usize = 160 * 1024;

enum SendCmd {
    Write(Vec<u8>),
    Finish,
    Reset(u32),
}

enum RecvCmd {
    Read(usize),
    Stop(u32),
}

/// Commands of one stream half, from `submit` (JS thread) to its task.
///
/// Not a tokio mpsc channel: an unbounded channel allocates its first
/// 32-slot block when created (1,056 B for SendCmd, 544 B for RecvCmd), two
/// per stream, eight per connection, while an idle stream never holds a
/// command (issue 16: 10,000 idle sessions). The queue is bounded by the JS
/// side: reads within READ_AHEAD per stream, writes within WRITE_AHEAD
/// (src/transport/quic-engine-native.ts).
struct Mailbox<T> {
    q: Mutex<VecDeque<T>>,
    notify: Notify,
    closed: AtomicBool,
}

impl<T> Mailbox<T> {
    fn new() -> Arc<Mailbox<T>> {
        Arc::new(Mailbox { q: Mutex::new(VecDeque::new()), notify: Notify::new(), closed: AtomicBool::new(false) })
    }

    fn push(&self, cmd: T) {
        self.q.lock().unwrap_or_else(|e| e.into_inner()).push_back(cmd);
        self.notify.notify_one();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// The next command, or None once closed (the stream's entry is gone).
    async fn pop(&self) -> Option<T> {
        loop {
            if let Some(cmd) = self.q.lock().unwrap_or_else(|e| e.into_inner()).pop_front() {
                return Some(cmd);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            // notify_one stores a permit when nobody waits: a push between the
            // check above and this await is not lost.
            self.notify.notified().await;
        }
    }
}

struct StreamEntry {
    send: Arc<Mailbox<SendCmd>>,
    recv: Arc<Mailbox<RecvCmd>>,
}

impl Drop for StreamEntry {
    /// The stream's tasks end (and drop the quinn stream halves) once their entry is gone.
    fn drop(&mut self) {
        self.send.close();
        self.recv.close();
    }
}

struct ConnEntry {
    conn: Connection,
    streams: Vec<u32>,
}

#[derive(Default)]
struct State {
    next_id: u32,
    endpoints: HashMap<u32, Endpoint>,
    conns: HashMap<u32, ConnEntry>,
    streams: HashMap<u32, StreamEntry>,
    client4: Option<Endpoint>,
    client6: Option<Endpoint>,
}

impl State {
    fn id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }
}

static STATE: Lazy<Mutex<State>> = Lazy::new(|| Mutex::new(State::default()));
static RUNTIME: OnceCell<tokio::runtime::Runtime> = OnceCell::new();

struct Events {
    buf: Vec<u8>,
    scheduled: bool,
}
static EVENTS: Lazy<Mutex<Events>> = Lazy::new(|| Mutex::new(Events { buf: Vec::new(), scheduled: false }));
static TSFN: AtomicPtr<std::ffi::c_void> = AtomicPtr::new(std::ptr::null_mut());
/// Held while a worker thread calls the threadsafe function, and by the env cleanup hook while
/// it clears TSFN: once the hook returns, no thread is inside or can enter a call on a function
/// Node is about to free (process exit aborted ~1 in 60 echo runs with SIGABRT before this).
static CALLING: Mutex<()> = Mutex::new(());
static STARTED: AtomicBool = AtomicBool::new(false);

fn lock_state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get_or_init(|| {
        let threads = std::env::var("EDGEFABRIC_QUIC_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2usize);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("edgefabric-quic")
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

pub fn emit(op: u8, a: u32, b: u32, payload: &[u8]) {
    emit_parts(op, a, b, &[payload], &[]);
}

/// One event whose payload is `head` followed by `rest`, appended to the batch
/// without gathering it anywhere first (the read path hands quinn's chunks here).
pub fn emit_parts(op: u8, a: u32, b: u32, head: &[&[u8]], rest: &[bytes::Bytes]) {
    let len = head.iter().map(|p| p.len()).sum::<usize>() + rest.iter().map(|p| p.len()).sum::<usize>();
    let call = {
        let mut ev = EVENTS.lock().unwrap_or_else(|e| e.into_inner());
        if ev.buf.capacity() == 0 {
            ev.buf.reserve(EVENTS_INITIAL.max(13 + len));
        } else {
            ev.buf.reserve(13 + len);
        }
        ev.buf.push(op);
        ev.buf.extend_from_slice(&a.to_le_bytes());
        ev.buf.extend_from_slice(&b.to_le_bytes());
        ev.buf.extend_from_slice(&(len as u32).to_le_bytes());
        for p in head {
            ev.buf.extend_from_slice(p);
        }
        for p in rest {
            ev.buf.extend_from_slice(p);
        }
        !std::mem::replace(&mut ev.scheduled, true)
    };
    if call {
        let _calling = CALLING.lock().unwrap_or_else(|e| e.into_inner());
        let f = TSFN.load(Ordering::Acquire);
        if !f.is_null() {
            unsafe { napi::napi_call_threadsafe_function(f, std::ptr::null_mut(), napi::TSFN_NONBLOCKING) };
        }
    }
}

/// The Node environment is being torn down (process exit, or a worker thread ending): from now
/// on events are dropped instead of being handed to a threadsafe function Node frees next.
pub fn env_teardown() {
    let _calling = CALLING.lock().unwrap_or_else(|e| e.into_inner());
    TSFN.store(std::ptr::null_mut(), Ordering::Release);
}

/// Take the pending event batch (called on the JS thread).
pub fn take_events() -> Vec<u8> {
    let mut ev = EVENTS.lock().unwrap_or_else(|e| e.into_inner());
    ev.scheduled = false;
    std::mem::take(&mut ev.buf)
}

/// Batches at least this long go to JS as they are (external buffer, no copy); shorter ones are
/// copied and their buffer reused, so a stream of tiny batches (write confirmations) neither
/// allocates EVENTS_INITIAL each time nor leaves it pinned, unseen by V8, until the next GC.
pub const HAND_OVER_MIN: usize = 16 * 1024;

/// A delivered batch's buffer, copied to JS: keep it for the next batch if none has started.
pub fn recycle_events(mut batch: Vec<u8>) {
    let mut ev = EVENTS.lock().unwrap_or_else(|e| e.into_inner());
    if ev.buf.capacity() == 0 && batch.capacity() <= 4 * EVENTS_INITIAL {
        batch.clear();
        ev.buf = batch;
    }
}

pub fn tsfn() -> napi::napi_threadsafe_function {
    TSFN.load(Ordering::Acquire)
}

pub fn set_tsfn(f: napi::napi_threadsafe_function) -> bool {
    if STARTED.swap(true, Ordering::AcqRel) {
        return false;
    }
    TSFN.store(f, Ordering::Release);
    true
}

fn peer_payload(conn: &Connection) -> Vec<u8> {
    let addr = conn.remote_address().to_string();
    let mut out = Vec::with_capacity(1 + addr.len() + 600);
    out.push(addr.len() as u8);
    out.extend_from_slice(addr.as_bytes());
    if let Some(any) = conn.peer_identity() {
        if let Ok(certs) = any.downcast::<Vec<rustls::Certificate>>() {
            if let Some(c) = certs.first() {
                out.extend_from_slice(&c.0);
            }
        }
    }
    out
}

fn make_socket(addr: SocketAddr, buffer: usize) -> Result<std::net::UdpSocket, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| e.to_string())?;
    if addr.is_ipv6() {
        let _ = s.set_only_v6(true);
    }
    // The OS clamps these (net.core.rmem_max); a smaller buffer is not an error.
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
    s.bind(&addr.into()).map_err(|e| e.to_string())?;
    Ok(s.into())
}

/// Dialer side only: notice a peer that went away (a killed hub) as soon as
/// it, or its restarted successor, can answer. When we have sent something
/// since we last heard from the peer and it has been silent for longer than
/// an ACK takes (300 ms + 2 RTT), send a 1-byte DATAGRAM every 250 ms. A new
/// packet goes out at once instead of waiting for the exponentially backed-off
/// PTO, and a restarted hub answers it with a stateless reset (same reset key,
/// derived from its identity, RFC 9000 §10.3), which ends this connection
/// immediately. Costs nothing while the peer answers; peers without datagram
/// support (the libp2p engine) are simply not probed.
///
/// One task walks every dialed connection per tick (issue 16): a task and a
/// 100 ms timer per connection were 100,000 wake-ups a second for 10,000 sessions.
struct Watched {
    conn: Connection,
    rx: u64,
    tx_at_rx: u64,
    rx_at: std::time::Instant,
    probed_at: Option<std::time::Instant>,
}

static WATCHED: Lazy<Mutex<Vec<Watched>>> = Lazy::new(|| Mutex::new(Vec::new()));
static WATCHDOG: AtomicBool = AtomicBool::new(false);

fn probe_watch(conn: Connection) {
    let s = conn.stats();
    let w = Watched { conn, rx: s.udp_rx.datagrams, tx_at_rx: s.udp_tx.datagrams, rx_at: std::time::Instant::now(), probed_at: None };
    WATCHED.lock().unwrap_or_else(|e| e.into_inner()).push(w);
    if !WATCHDOG.swap(true, Ordering::AcqRel) {
        runtime().spawn(probe_watchdog());
    }
}

async fn probe_watchdog() {
    use std::time::{Duration, Instant};
    const TICK: Duration = Duration::from_millis(100);
    const EVERY: Duration = Duration::from_millis(250);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut list = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
        list.retain_mut(|w| {
            if w.conn.close_reason().is_some() {
                return false;
            }
            let s = w.conn.stats();
            if s.udp_rx.datagrams != w.rx {
                w.rx = s.udp_rx.datagrams;
                w.tx_at_rx = s.udp_tx.datagrams;
                w.rx_at = now;
                w.probed_at = None;
                return true;
            }
            let waiting = Duration::from_millis(300) + s.path.rtt * 2;
            if s.udp_tx.datagrams > w.tx_at_rx && now.duration_since(w.rx_at) > waiting
                && w.probed_at.map_or(true, |t| now.duration_since(t) >= EVERY)
            {
                w.probed_at = Some(now);
                if w.conn.max_datagram_size().is_some() {
                    let _ = w.conn.send_datagram(bytes::Bytes::from_static(&[0]));
                }
            }
            true
        });
    }
}

/// Register a new connection and start watching it: accept the peer's
/// streams, and report the close (accept_bi fails once the connection ends).
fn adopt(conn: Connection, dialer: bool) -> u32 {
    if dialer {
        probe_watch(conn.clone());
    }
    let id = {
        let mut st = lock_state();
        let id = st.id();
        st.conns.insert(id, ConnEntry { conn: conn.clone(), streams: Vec::new() });
        id
    };
    runtime().spawn(async move {
        loop {
            match conn.accept_bi().await {
                Ok((send, recv)) => {
                    let sid = add_stream(id, send, recv);
                    emit(E_STREAM_IN, id, sid, &[]);
                }
                Err(e) => {
                    let entry = {
                        let mut st = lock_state();
                        let entry = st.conns.remove(&id);
                        if let Some(ce) = &entry {
                            for s in &ce.streams {
                                st.streams.remove(s);
                            }
                        }
                        entry
                    };
                    drop(entry);
                    emit(E_CONN_CLOSED, id, 0, e.to_string().as_bytes());
                    return;
                }
            }
        }
    });
    id
}

fn add_stream(conn: u32, send: SendStream, recv: RecvStream) -> u32 {
    let (srx, rrx) = (Mailbox::new(), Mailbox::new());
    let sid = {
        let mut st = lock_state();
        let sid = st.id();
        st.streams.insert(sid, StreamEntry { send: srx.clone(), recv: rrx.clone() });
        if let Some(ce) = st.conns.get_mut(&conn) {
            ce.streams.push(sid);
        }
        sid
    };
    runtime().spawn(send_task(sid, send, srx));
    runtime().spawn(recv_task(sid, recv, rrx));
    sid
}

async fn send_task(sid: u32, mut send: SendStream, rx: Arc<Mailbox<SendCmd>>) {
    let mut failed: Option<String> = None;
    while let Some(cmd) = rx.pop().await {
        match cmd {
            SendCmd::Write(data) => {
                if let Some(msg) = &failed {
                    emit(E_WRITE_ERR, sid, 0, msg.as_bytes());
                    continue;
                }
                // Hand the command's buffer over as is (write_all would copy it again).
                match send.write_chunk(bytes::Bytes::from(data)).await {
                    Ok(()) => emit(E_WRITTEN, sid, 0, &[]),
                    Err(e) => {
                        let msg = e.to_string();
                        emit(E_WRITE_ERR, sid, 0, msg.as_bytes());
                        failed = Some(msg);
                    }
                }
            }
            SendCmd::Finish => {
                if failed.is_none() {
                    // Resolves once the peer acknowledged everything (or the stream failed).
                    let _ = send.finish().await;
                    failed = Some("stream finished".into());
                }
                emit(E_FINISHED, sid, 0, &[]);
            }
            SendCmd::Reset(code) => {
                let _ = send.reset(VarInt::from_u32(code));
                failed = Some("stream reset".into());
            }
        }
    }
}

/// Resolves at once with the inner future's output if it is ready on the first poll, else None.
struct PollOnce<'a, F: std::future::Future>(std::pin::Pin<&'a mut F>);

impl<F: std::future::Future> std::future::Future for PollOnce<'_, F> {
    type Output = Option<F::Output>;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match self.0.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        }
    }
}

async fn recv_task(sid: u32, mut recv: RecvStream, rx: Arc<Mailbox<RecvCmd>>) {
    let mut more_chunks: Vec<bytes::Bytes> = Vec::new();
    while let Some(cmd) = rx.pop().await {
        match cmd {
            RecvCmd::Read(max) => match recv.read_chunk(max, true).await {
                Ok(Some(first)) => {
                    // One chunk is one STREAM frame (~1.2 KB): take whatever else is
                    // already buffered, up to `max`, so one crossing carries up to
                    // `max` bytes. The chunks are quinn's own buffers (no copy until
                    // they go into the event batch). Nothing is held while waiting
                    // for the first chunk (an idle stream costs no read buffer).
                    let mut got = first.bytes.len();
                    while got < max {
                        // Poll the read once: data already there, or nothing (no timer: a
                        // zero tokio timeout waits for the next 1 ms timer tick).
                        let next = recv.read_chunk(max - got, true);
                        tokio::pin!(next);
                        match (PollOnce(next.as_mut())).await {
                            Some(Ok(Some(c))) => {
                                got += c.bytes.len();
                                more_chunks.push(c.bytes);
                            }
                            // FIN, error or nothing buffered: the next Read reports it.
                            _ => break,
                        }
                    }
                    emit_parts(E_DATA, sid, 0, &[&first.bytes], &more_chunks);
                    more_chunks.clear();
                }
                Ok(None) => emit(E_FIN, sid, 0, &[]),
                Err(e) => emit(E_READ_ERR, sid, 0, e.to_string().as_bytes()),
            },
            RecvCmd::Stop(code) => {
                let _ = recv.stop(VarInt::from_u32(code));
            }
        }
    }
}

fn parse_ip(ip: &[u8]) -> Result<IpAddr, String> {
    std::str::from_utf8(ip).ok().and_then(|s| s.parse().ok()).ok_or_else(|| "invalid IP address".to_string())
}

/// Bind a server endpoint; returns (endpoint id, bound port).
pub fn listen(params: &[u8], cert: &[u8], key: &[u8], reset_key: &[u8], ip: &[u8], port: u16) -> Result<(u32, u16), String> {
    let p = Params::decode(params)?;
    let crypto = tls::server_crypto(cert, key)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(p.transport()?);
    server.migration(p.migration != 0.0);
    if reset_key.len() < 32 {
        return Err("stateless reset key must be at least 32 bytes".into());
    }
    // Derived from the listener identity by the caller: a restarted listener
    // computes the same reset tokens, so peers of the old process honour its resets.
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset_key);
    let ep_cfg = EndpointConfig::new(Arc::new(hmac));
    let addr = SocketAddr::new(parse_ip(ip)?, port);
    let socket = make_socket(addr, p.socket_buffer as usize)?;
    let _guard = runtime().enter();
    let ep = Endpoint::new(ep_cfg, Some(server), socket, quinn::TokioRuntime).map_err(|e| e.to_string())?;
    let bound = ep.local_addr().map_err(|e| e.to_string())?.port();
    let id = {
        let mut st = lock_state();
        let id = st.id();
        st.endpoints.insert(id, ep.clone());
        id
    };
    runtime().spawn(async move {
        while let Some(connecting) = ep.accept().await {
            tokio::spawn(async move {
                // A failed handshake is the dialer's problem; nothing to report here.
                if let Ok(conn) = connecting.await {
                    let payload = peer_payload(&conn);
                    let cid = adopt(conn, false);
                    emit(E_CONN_IN, id, cid, &payload);
                }
            });
        }
    });
    Ok((id, bound))
}

fn client_endpoint(v6: bool, buffer: usize) -> Result<Endpoint, String> {
    let mut st = lock_state();
    let slot = if v6 { &mut st.client6 } else { &mut st.client4 };
    if let Some(ep) = slot {
        return Ok(ep.clone());
    }
    let any: SocketAddr = if v6 { "[::]:0".parse().unwrap() } else { "0.0.0.0:0".parse().unwrap() };
    let socket = make_socket(any, buffer)?;
    let _guard = runtime().enter();
    let ep = Endpoint::new(EndpointConfig::default(), None, socket, quinn::TokioRuntime).map_err(|e| e.to_string())?;
    *slot = Some(ep.clone());
    Ok(ep)
}

/// Start a dial; the outcome arrives as E_DIAL_OK / E_DIAL_ERR with `req`.
pub fn dial(req: u32, params: &[u8], cert: &[u8], key: &[u8], ip: &[u8], port: u16) -> Result<(), String> {
    let p = Params::decode(params)?;
    let crypto = tls::client_crypto(cert, key)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(p.transport()?);
    let addr = SocketAddr::new(parse_ip(ip)?, port);
    let ep = client_endpoint(addr.is_ipv6(), p.socket_buffer as usize)?;
    let connecting = {
        let _guard = runtime().enter();
        ep.connect_with(cfg, addr, "libp2p").map_err(|e| e.to_string())?
    };
    runtime().spawn(async move {
        match connecting.await {
            Ok(conn) => {
                let payload = peer_payload(&conn);
                let cid = adopt(conn, true);
                emit(E_DIAL_OK, req, cid, &payload);
            }
            Err(e) => emit(E_DIAL_ERR, req, 0, e.to_string().as_bytes()),
        }
    });
    Ok(())
}

pub fn rtt_ms(conn: u32) -> f64 {
    lock_state().conns.get(&conn).map(|c| c.conn.rtt().as_secs_f64() * 1000.0).unwrap_or(-1.0)
}

pub fn remote(conn: u32) -> Option<String> {
    lock_state().conns.get(&conn).map(|c| c.conn.remote_address().to_string())
}

/// quinn's ConnectionStats of a connection as little-endian f64s, in the order of
/// STATS in src/transport/quic-engine-native.ts; None when the connection is gone.
/// For finding what limits a transfer (issue 18): congestion window and events,
/// losses, datagrams and ACK frames each way, flow-control blocking.
pub fn stats(conn: u32) -> Option<Vec<u8>> {
    let s = lock_state().conns.get(&conn)?.conn.stats();
    let v: [f64; 20] = [
        s.path.rtt.as_secs_f64() * 1000.0,
        s.path.cwnd as f64,
        s.path.congestion_events as f64,
        s.path.lost_packets as f64,
        s.path.lost_bytes as f64,
        s.path.sent_packets as f64,
        s.udp_tx.datagrams as f64,
        s.udp_tx.bytes as f64,
        s.udp_tx.transmits as f64,
        s.udp_rx.datagrams as f64,
        s.udp_rx.bytes as f64,
        s.frame_tx.acks as f64,
        s.frame_rx.acks as f64,
        s.frame_tx.stream as f64,
        s.frame_rx.stream as f64,
        s.frame_tx.max_data as f64,
        s.frame_tx.max_stream_data as f64,
        s.frame_rx.data_blocked as f64,
        s.frame_rx.stream_data_blocked as f64,
        (s.frame_tx.data_blocked + s.frame_tx.stream_data_blocked) as f64,
    ];
    let mut out = Vec::with_capacity(v.len() * 8);
    for x in v.iter() {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Some(out)
}

/// TLS exporter value of an established connection (RFC 5705, RFC 8446 §7.5; RFC 9001 §4 uses
/// the TLS 1.3 key schedule): the channel binding of the session handshake (issue 13 item 10).
/// None when the connection is gone or the handshake has not completed.
pub fn exporter(conn: u32, label: &[u8], len: usize) -> Option<Vec<u8>> {
    let st = lock_state();
    let c = st.conns.get(&conn)?;
    let mut out = vec![0u8; len];
    match c.conn.export_keying_material(&mut out, label, b"") {
        Ok(()) => Some(out),
        Err(_) => None,
    }
}

/// The bytes of a C_WRITEV: the parts named by the payload's u32 indices, in order, in one buffer.
fn gather<'p>(indices: &[u8], part: &dyn Fn(u32) -> Option<&'p [u8]>) -> Result<Vec<u8>, String> {
    if indices.len() % 4 != 0 {
        return Err("truncated write parts".into());
    }
    let mut parts = Vec::with_capacity(indices.len() / 4);
    let mut len = 0usize;
    for i in (0..indices.len()).step_by(4) {
        let p = part(u32_at(indices, i)).ok_or_else(|| "write part missing".to_string())?;
        len += p.len();
        parts.push(p);
    }
    let mut out = Vec::with_capacity(len);
    for p in parts {
        out.extend_from_slice(p);
    }
    Ok(out)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Apply one batch of commands from JavaScript; `part(i)` is the i-th buffer
/// passed next to the batch (C_WRITEV), borrowed for this call only.
pub fn submit<'p>(mut b: &[u8], part: &dyn Fn(u32) -> Option<&'p [u8]>) -> Result<(), String> {
    let st = lock_state();
    let mut ep_close = Vec::new();
    let mut opens = Vec::new();
    while !b.is_empty() {
        if b.len() < 13 {
            return Err("truncated command".into());
        }
        let (op, a, x, len) = (b[0], u32_at(b, 1), u32_at(b, 5), u32_at(b, 9) as usize);
        if b.len() < 13 + len {
            return Err("truncated command payload".into());
        }
        let payload = &b[13..13 + len];
        b = &b[13 + len..];
        match op {
            C_OPEN => match st.conns.get(&a) {
                Some(ce) => opens.push((a, x, ce.conn.clone())),
                None => emit(E_STREAM_OPEN_ERR, x, 0, b"connection closed"),
            },
            C_WRITE | C_WRITEV | C_FINISH | C_RESET => match st.streams.get(&a) {
                Some(se) => {
                    let cmd = match op {
                        C_WRITE => SendCmd::Write(payload.to_vec()),
                        C_WRITEV => SendCmd::Write(gather(payload, part)?),
                        C_FINISH => SendCmd::Finish,
                        _ => SendCmd::Reset(x),
                    };
                    se.send.push(cmd);
                }
                None if op == C_WRITE || op == C_WRITEV => emit(E_WRITE_ERR, a, 0, b"connection lost"),
                None if op == C_FINISH => emit(E_FINISHED, a, 0, &[]),
                None => {}
            },
            C_READ | C_STOP => match st.streams.get(&a) {
                Some(se) => {
                    let cmd = if op == C_READ { RecvCmd::Read(x.max(1) as usize) } else { RecvCmd::Stop(x) };
                    se.recv.push(cmd);
                }
                None if op == C_READ => emit(E_READ_ERR, a, 0, b"connection lost"),
                None => {}
            },
            C_CLOSE => {
                if let Some(ce) = st.conns.get(&a) {
                    ce.conn.close(VarInt::from_u32(x), payload);
                }
            }
            C_EP_CLOSE => ep_close.push(a),
            _ => return Err(format!("unknown command {}", op)),
        }
    }
    drop(st);
    for (conn, req, c) in opens {
        runtime().spawn(async move {
            match c.open_bi().await {
                Ok((send, recv)) => {
                    let sid = add_stream(conn, send, recv);
                    emit(E_STREAM_OPENED, req, sid, &[]);
                }
                Err(e) => emit(E_STREAM_OPEN_ERR, req, 0, e.to_string().as_bytes()),
            }
        });
    }
    for id in ep_close {
        let ep = lock_state().endpoints.remove(&id);
        match ep {
            Some(ep) => {
                ep.close(VarInt::from_u32(0), b"listener closed");
                runtime().spawn(async move {
                    ep.wait_idle().await;
                    drop(ep);
                    emit(E_EP_CLOSED, id, 0, &[]);
                });
            }
            None => emit(E_EP_CLOSED, id, 0, &[]),
        }
    }
    Ok(())
}
