//! Engine configuration passed from JavaScript as a flat array of f64
//! (src/transport/quic-engine.ts `encodeParams` writes the same order).
use std::sync::Arc;
use std::time::Duration;

use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};

pub struct Params {
    pub idle_timeout_ms: f64,
    pub keep_alive_ms: f64,
    pub stream_window: f64,
    pub conn_window: f64,
    pub send_window: f64,
    /// 0 cubic, 1 newreno, 2 bbr
    pub congestion: f64,
    pub max_bidi_streams: f64,
    pub socket_buffer: f64,
    pub migration: f64,
    pub initial_rtt_ms: f64,
    /// UDP payload size of every packet (quinn 0.9 has no path MTU discovery); 0 = quinn's 1200.
    pub max_udp_payload: f64,
}

const FIELDS: usize = 11;

impl Params {
    pub fn decode(b: &[u8]) -> Result<Params, String> {
        if b.len() != FIELDS * 8 {
            return Err(format!("engine params: expected {} bytes, got {}", FIELDS * 8, b.len()));
        }
        let f = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i * 8..i * 8 + 8]);
            f64::from_le_bytes(a)
        };
        Ok(Params {
            idle_timeout_ms: f(0),
            keep_alive_ms: f(1),
            stream_window: f(2),
            conn_window: f(3),
            send_window: f(4),
            congestion: f(5),
            max_bidi_streams: f(6),
            socket_buffer: f(7),
            migration: f(8),
            initial_rtt_ms: f(9),
            max_udp_payload: f(10),
        })
    }

    pub fn transport(&self) -> Result<Arc<TransportConfig>, String> {
        let mut t = TransportConfig::default();
        let idle = IdleTimeout::try_from(Duration::from_millis(self.idle_timeout_ms as u64)).map_err(|e| e.to_string())?;
        t.max_idle_timeout(Some(idle));
        if self.keep_alive_ms > 0.0 {
            t.keep_alive_interval(Some(Duration::from_millis(self.keep_alive_ms as u64)));
        }
        t.stream_receive_window(VarInt::from_u32(self.stream_window as u32));
        t.receive_window(VarInt::from_u32(self.conn_window as u32));
        t.send_window(self.send_window as u64);
        t.max_concurrent_bidi_streams(VarInt::from_u32(self.max_bidi_streams as u32));
        t.max_concurrent_uni_streams(VarInt::from_u32(0));
        // Only liveness probes arrive as datagrams (engine.rs probe_watchdog);
        // they are never read, so a tiny buffer (oldest dropped first) bounds them.
        t.datagram_receive_buffer_size(Some(2048));
        t.datagram_send_buffer_size(2048);
        if self.initial_rtt_ms > 0.0 {
            t.initial_rtt(Duration::from_micros((self.initial_rtt_ms * 1000.0) as u64));
        }
        if self.max_udp_payload > 0.0 {
            // Clamped up to 1200 by quinn (RFC 9000 §14: every QUIC path carries 1200).
            t.initial_max_udp_payload_size(self.max_udp_payload.min(65527.0) as u16);
        }
        match self.congestion as u32 {
            0 => t.congestion_controller_factory(Arc::new(CubicConfig::default())),
            1 => t.congestion_controller_factory(Arc::new(NewRenoConfig::default())),
            2 => t.congestion_controller_factory(Arc::new(BbrConfig::default())),
            n => return Err(format!("unknown congestion controller {}", n)),
        };
        Ok(Arc::new(t))
    }
}
