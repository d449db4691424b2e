//! A scripted WebSocket client of skybridge's protocol v1 (README, "WebSocket protocol"):
//! tungstenite over a blocking std `TcpStream`, polled with a short read timeout so that one
//! thread can send 20 ms G.711 frames on time while collecting what the server sends. With
//! Opus negotiated ([`WsClient::signed_in_with`]) it sends and decodes Opus in-process
//! (`skybridge_codecs::opus`, 48 kHz, 20 ms), like a browser with WebCodecs would.

use super::audio::ulaw_to_linear;
use skybridge_codecs::opus::{OpusDecoder, OpusEncoder};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

/// One 20 ms G.711 frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;

/// The µ-law byte of a linear sample (G.711, with the usual bias and clipping).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// The `codec` byte skybridge announces for Opus in `welcome.payload_types`.
pub const OPUS: u8 = 111;
/// One 20 ms Opus frame at 48 kHz.
pub const OPUS_FRAME_SAMPLES: usize = 960;

/// A tone being sent as 20 ms frames (µ-law, or Opus when `opus` is set) on one call.
struct ToneTx {
    call: u16,
    freq: f64,
    sample: u64,
    timestamp: u32,
    next: Instant,
    opus: Option<(u8, OpusEncoder)>,
}

impl std::fmt::Debug for ToneTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToneTx")
            .field("call", &self.call)
            .field("freq", &self.freq)
            .field("opus", &self.opus.as_ref().map(|(pt, _)| *pt))
            .finish()
    }
}

/// A connected (upgraded) client. Everything the server sends is recorded: JSON messages in
/// `messages` (in order), audio payloads per call in `audio`, the close frame in `closed`.
pub struct WsClient {
    ws: WebSocket<TcpStream>,
    /// Every JSON message received, with whether a `wait_for` already took it.
    messages: Vec<(serde_json::Value, bool)>,
    /// Received µ-law/A-law payload bytes per call id, concatenated.
    pub audio: HashMap<u16, Vec<u8>>,
    /// Received Opus packets per call id (frames whose `codec` byte was [`OPUS`]).
    pub opus: HashMap<u16, Vec<Vec<u8>>>,
    /// `codec` byte of every audio frame received, counted.
    pub codecs_received: HashMap<u8, usize>,
    /// Audio frames received (all calls).
    pub audio_frames: usize,
    /// Audio frames sent.
    pub frames_sent: usize,
    /// `(code, reason)` of the server's close frame, once received.
    pub closed: Option<(u16, String)>,
    /// The connection is gone (closed or failed).
    pub dead: bool,
    /// The error that made it [`Self::dead`], for failure messages.
    pub dead_because: Option<String>,
    tone: Option<ToneTx>,
    label: String,
}

impl std::fmt::Debug for WsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsClient")
            .field("label", &self.label)
            .field(
                "messages",
                &self
                    .messages
                    .iter()
                    .map(|(m, _)| m.to_string())
                    .collect::<Vec<_>>(),
            )
            .field("audio_frames", &self.audio_frames)
            .field("frames_sent", &self.frames_sent)
            .field("closed", &self.closed)
            .field("dead_because", &self.dead_because)
            .finish()
    }
}

impl WsClient {
    /// Connects to `ws://<addr>/ws` offering `skybridge.v1` (≤ 5 s).
    pub fn connect(addr: SocketAddr, label: &str) -> Result<WsClient, String> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let mut request = format!("ws://{addr}/ws")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("skybridge.v1"),
        );
        let (ws, _response) =
            tungstenite::client(request, stream).map_err(|e| format!("upgrade: {e}"))?;
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(5)))
            .map_err(|e| e.to_string())?;
        Ok(WsClient {
            ws,
            messages: Vec::new(),
            audio: HashMap::new(),
            opus: HashMap::new(),
            codecs_received: HashMap::new(),
            audio_frames: 0,
            frames_sent: 0,
            closed: None,
            dead: false,
            dead_because: None,
            tone: None,
            label: label.to_string(),
        })
    }

    /// Connects and signs in (`hello`, then waits ≤ 5 s for `welcome`, returned).
    pub fn signed_in(
        addr: SocketAddr,
        label: &str,
        token: Option<&str>,
    ) -> Result<(WsClient, serde_json::Value), String> {
        WsClient::signed_in_with(addr, label, token, None)
    }

    /// Like [`WsClient::signed_in`], offering `codecs` in `hello` (e.g. `["opus", "pcmu"]`).
    pub fn signed_in_with(
        addr: SocketAddr,
        label: &str,
        token: Option<&str>,
        codecs: Option<&[&str]>,
    ) -> Result<(WsClient, serde_json::Value), String> {
        let mut c = WsClient::connect(addr, label)?;
        let mut hello = serde_json::json!({"type": "hello", "version": 1});
        if let Some(t) = token {
            hello["token"] = serde_json::json!(t);
        }
        if let Some(list) = codecs {
            hello["codecs"] = serde_json::json!(list);
        }
        c.send_json(&hello);
        match c.wait_for("welcome", Duration::from_secs(5)) {
            Some(w) => Ok((c, w)),
            None => Err(format!("no welcome: {c:?}")),
        }
    }

    /// The local address of the socket (what skybridge logs as the peer).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.ws.get_ref().local_addr().ok()
    }

    /// Sends one JSON text message.
    pub fn send_json(&mut self, v: &serde_json::Value) {
        if let Err(e) = self.ws.send(Message::text(v.to_string())) {
            self.died(format!("send text: {e}"));
        }
    }

    /// Starts sending a `freq` tone on `call`: 160 µ-law bytes every 20 ms, timestamps +160.
    pub fn start_tone(&mut self, call: u16, freq: f64) {
        self.tone = Some(ToneTx {
            call,
            freq,
            sample: 0,
            timestamp: 0x1234_0000,
            next: Instant::now(),
            opus: None,
        });
    }

    /// Starts sending a `freq` tone on `call` as Opus: one 20 ms packet of 48 kHz audio
    /// (24 kbit/s) every 20 ms with `codec` byte `pt`, timestamps +960.
    pub fn start_tone_opus(&mut self, call: u16, freq: f64, pt: u8) {
        self.tone = Some(ToneTx {
            call,
            freq,
            sample: 0,
            timestamp: 0x5678_0000,
            next: Instant::now(),
            opus: Some((pt, OpusEncoder::new(48_000, 24_000).expect("Opus encoder"))),
        });
    }

    /// Sends one audio frame as given (for malformed payloads).
    pub fn send_audio(&mut self, call: u16, codec: u8, timestamp: u32, payload: &[u8]) {
        let mut frame = vec![1u8, codec];
        frame.extend_from_slice(&call.to_be_bytes());
        frame.extend_from_slice(&timestamp.to_be_bytes());
        frame.extend_from_slice(payload);
        if let Err(e) = self.ws.send(Message::binary(frame)) {
            self.died(format!("send audio: {e}"));
        }
    }

    /// Marks the connection dead, keeping the first reason.
    fn died(&mut self, why: String) {
        self.dead = true;
        self.dead_because.get_or_insert(why);
    }

    pub fn stop_tone(&mut self) {
        self.tone = None;
    }

    fn send_due_frames(&mut self) {
        let Some(t) = self.tone.as_mut() else {
            return;
        };
        let now = Instant::now();
        let mut frames = Vec::new();
        while t.next <= now {
            if let Some((pt, enc)) = t.opus.as_mut() {
                let pcm: Vec<i16> = (0..OPUS_FRAME_SAMPLES as u64)
                    .map(|i| {
                        let x =
                            2.0 * std::f64::consts::PI * t.freq * (t.sample + i) as f64 / 48_000.0;
                        (x.sin() * 0.5 * 32767.0) as i16
                    })
                    .collect();
                let mut packet = [0u8; 1275];
                let n = enc.encode(&pcm, &mut packet).expect("one 20 ms Opus frame");
                let mut frame = vec![1u8, *pt];
                frame.extend_from_slice(&t.call.to_be_bytes());
                frame.extend_from_slice(&t.timestamp.to_be_bytes());
                frame.extend_from_slice(&packet[..n]);
                t.sample += OPUS_FRAME_SAMPLES as u64;
                t.timestamp = t.timestamp.wrapping_add(OPUS_FRAME_SAMPLES as u32);
                t.next += Duration::from_millis(20);
                frames.push(frame);
                continue;
            }
            let mut frame = Vec::with_capacity(8 + FRAME_SAMPLES);
            frame.push(1u8); // version
            frame.push(0u8); // PCMU
            frame.extend_from_slice(&t.call.to_be_bytes());
            frame.extend_from_slice(&t.timestamp.to_be_bytes());
            for i in 0..FRAME_SAMPLES as u64 {
                let x = 2.0 * std::f64::consts::PI * t.freq * (t.sample + i) as f64 / 8000.0;
                frame.push(linear_to_ulaw((x.sin() * 0.5 * 32767.0) as i16));
            }
            t.sample += FRAME_SAMPLES as u64;
            t.timestamp = t.timestamp.wrapping_add(FRAME_SAMPLES as u32);
            t.next += Duration::from_millis(20);
            frames.push(frame);
        }
        for f in frames {
            if let Err(e) = self.ws.send(Message::binary(f)) {
                self.died(format!("send tone: {e}"));
                return;
            }
            self.frames_sent += 1;
        }
    }

    /// Reads whatever is available (≤ ~5 ms wait) and sends due audio frames.
    pub fn poll_once(&mut self) {
        self.send_due_frames();
        if self.dead {
            std::thread::sleep(Duration::from_millis(5));
            return;
        }
        match self.ws.read() {
            Ok(Message::Text(t)) => {
                let v = serde_json::from_str(t.as_str()).unwrap_or_else(
                    |_| serde_json::json!({"type": "<not json>", "text": t.as_str()}),
                );
                self.messages.push((v, false));
            }
            Ok(Message::Binary(b)) => {
                if b.len() >= 8 && b[0] == 1 {
                    let call = u16::from_be_bytes([b[2], b[3]]);
                    *self.codecs_received.entry(b[1]).or_default() += 1;
                    if b[1] == OPUS {
                        self.opus.entry(call).or_default().push(b[8..].to_vec());
                    } else {
                        self.audio
                            .entry(call)
                            .or_default()
                            .extend_from_slice(&b[8..]);
                    }
                    self.audio_frames += 1;
                }
            }
            Ok(Message::Close(frame)) => {
                self.closed = Some(
                    frame
                        .map(|f| (u16::from(f.code), f.reason.as_str().to_string()))
                        .unwrap_or((1005, String::new())),
                );
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => self.died(format!("read: {e}")),
        }
    }

    /// Polls for `d`.
    pub fn pump(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.poll_once();
        }
    }

    /// Polls until a not-yet-taken message of `kind` arrives (taking it), or `timeout`.
    pub fn wait_for(&mut self, kind: &str, timeout: Duration) -> Option<serde_json::Value> {
        let end = Instant::now() + timeout;
        loop {
            if let Some((v, taken)) = self
                .messages
                .iter_mut()
                .find(|(v, taken)| !*taken && v["type"] == kind)
            {
                *taken = true;
                return Some(v.clone());
            }
            if Instant::now() >= end || (self.dead && self.closed.is_none()) {
                return None;
            }
            self.poll_once();
        }
    }

    /// Every message received so far, taken or not.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        self.messages.iter().map(|(m, _)| m.clone()).collect()
    }

    /// Whether any message of `kind` was received.
    pub fn saw(&self, kind: &str) -> bool {
        self.messages.iter().any(|(m, _)| m["type"] == kind)
    }

    /// Received audio of `call` decoded from µ-law to normalised samples.
    pub fn decoded_audio(&self, call: u16) -> Vec<f64> {
        self.audio
            .get(&call)
            .map(|b| {
                b.iter()
                    .map(|&u| f64::from(ulaw_to_linear(u)) / 32768.0)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Received Opus audio of `call` decoded to normalised samples at 8 kHz.
    pub fn decoded_opus(&self, call: u16) -> Vec<f64> {
        let mut dec = OpusDecoder::new(8000).expect("Opus decoder");
        let mut out = Vec::new();
        let mut buf = [0i16; 960];
        for p in self.opus.get(&call).map(Vec::as_slice).unwrap_or_default() {
            if let Ok(n) = dec.decode(Some(p), &mut buf) {
                out.extend(buf[..n].iter().map(|&s| f64::from(s) / 32768.0));
            }
        }
        out
    }

    /// Sends a close frame (1000) and gives the server a moment to answer.
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let end = Instant::now() + Duration::from_millis(500);
        while Instant::now() < end && !self.dead && self.closed.is_none() {
            self.poll_once();
        }
    }
}
