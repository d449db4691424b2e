//! RTMP client transport: a sans-IO RTMP **server** session.
//!
//! ```text
//!   socket bytes ──► handle_input(now, &mut BytesMut) ──► poll_event()  ──► session layer
//!                    handle_timeout(now)                 poll_output() ──► socket
//!   session layer ─► accept_* / reject_* / send_*        poll_timeout() ─► driver's timer
//! ```
//!
//! The handshake is done by `rml_rtmp::handshake` (fed at most C0+C1+C2 bytes, so it never
//! buffers more); everything after it is ours: [`ChunkReader`] (bounded, zero-copy) for inbound
//! chunks, [`amf0`] for commands, [`ChunkWriter`] for outbound messages. Audio payloads are handed
//! out as slices of the caller's read buffer.
//!
//! Commands understood (what ffmpeg, rtmpdump/librtmp and OBS send): `connect`, `releaseStream`,
//! `FCPublish`, `createStream`, `_checkbw`, `getStreamLength`, `publish`, `play`, `FCUnpublish`,
//! `closeStream`, `deleteStream`, and our NetConnection calls `call(target)`, `answer()`,
//! `hangup()`, `dtmf(digits)`. Unknown commands get an `_error` result; a command that is not
//! valid AMF0 gets an `_error` and then [`RtmpError::MalformedCommand`] (the driver closes).
//!
//! A driver must, after every `handle_input`/`handle_timeout` (including one that returned
//! `Err`), drain `poll_output` to the socket and `poll_event` to the session layer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use skybridge_codecs::amf0::{self, Amf0Error, Amf0Limits, Amf0Value};
use skybridge_codecs::rtmp::{
    message_type, ChunkError, ChunkLimits, ChunkReader, ChunkWriter, OutboundHeader, RtmpMessage,
};

#[cfg(test)]
mod tests;

/// Bytes the client sends during the handshake: C0 (1) + C1 (1536) + C2 (1536).
const HANDSHAKE_CLIENT_BYTES: usize = 1 + 1536 + 1536;
/// Chunk stream ids used for outbound messages.
const CSID_CONTROL: u32 = 2;
const CSID_COMMAND: u32 = 3;
const CSID_AUDIO: u32 = 4;
const CSID_STREAM_COMMAND: u32 = 5;

/// User Control event types (RTMP spec 7.1.7).
mod user_control {
    pub(super) const STREAM_BEGIN: u16 = 0;
    pub(super) const STREAM_EOF: u16 = 1;
    pub(super) const PING_REQUEST: u16 = 6;
    pub(super) const PING_RESPONSE: u16 = 7;
}

/// Configuration of one RTMP server session.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RtmpSessionConfig {
    /// Inbound chunk stream limits.
    pub chunk_limits: ChunkLimits,
    /// Limits for decoding AMF0 commands.
    pub amf0_limits: Amf0Limits,
    /// Time allowed from accept until the `connect` command arrives (handshake included).
    pub handshake_timeout: Duration,
    /// Chunk size we send with.
    pub out_chunk_size: u32,
    /// Window Acknowledgement Size we announce (the peer acks every this many bytes).
    pub window_ack_size: u32,
    /// Set Peer Bandwidth we announce.
    pub peer_bandwidth: u32,
    /// Most message streams (`createStream`) per connection.
    pub max_streams: usize,
    /// Unpolled output above which `send_audio` drops frames.
    pub max_output_bytes: usize,
    /// Events queued above which inbound processing pauses (input stays in the buffer).
    pub max_pending_events: usize,
    /// Interval of server ping requests once connected (`None`: never ping). RTMP clients
    /// answer with a ping response, which is input like any other: a play-only client that
    /// sends nothing else stays alive through these.
    pub ping_interval: Option<Duration>,
    /// Once connected, time without any input after which the peer is declared dead
    /// ([`RtmpError::DeadPeer`] from `handle_timeout`); `None`: never.
    pub dead_peer: Option<Duration>,
}

impl Default for RtmpSessionConfig {
    fn default() -> Self {
        RtmpSessionConfig {
            chunk_limits: ChunkLimits::default(),
            amf0_limits: Amf0Limits::default(),
            handshake_timeout: Duration::from_secs(10),
            out_chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            max_streams: 8,
            max_output_bytes: 1024 * 1024,
            max_pending_events: 256,
            ping_interval: Some(Duration::from_secs(5)),
            dead_peer: Some(Duration::from_secs(15)),
        }
    }
}

/// Why the session must be closed. [`RtmpError::reason`] names it for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtmpError {
    /// The peer's handshake is invalid (e.g. not RTMP at all).
    #[error("invalid RTMP handshake")]
    Handshake,
    /// No `connect` within the handshake deadline.
    #[error("handshake/connect deadline expired")]
    HandshakeTimeout,
    /// The chunk stream is invalid or exceeded a limit.
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    /// A command message is not valid AMF0 or lacks its name/transaction id.
    #[error("malformed command: {0}")]
    MalformedCommand(Amf0Error),
    /// A command that is structurally valid AMF0 but not a command (no name or transaction id).
    #[error("command without name or transaction id")]
    BadCommand,
    /// Nothing arrived from the peer for `dead_peer` (not even a ping response).
    #[error("nothing received from the peer within the dead-peer time")]
    DeadPeer,
}

impl RtmpError {
    /// Short stable name for a rejection counter (`rtmp.<reason>`).
    pub fn reason(&self) -> &'static str {
        match self {
            RtmpError::Handshake => "handshake",
            RtmpError::HandshakeTimeout => "handshake_timeout",
            RtmpError::Chunk(ChunkError::InvalidChunkSize(_)) => "chunk_size",
            RtmpError::Chunk(ChunkError::MessageTooLong(_)) => "message_too_long",
            RtmpError::Chunk(ChunkError::TooManyChunkStreams) => "chunk_streams",
            RtmpError::Chunk(ChunkError::ReassemblyLimit) => "reassembly_limit",
            RtmpError::Chunk(_) => "chunk_protocol",
            RtmpError::MalformedCommand(Amf0Error::TooDeep) => "amf0_depth",
            RtmpError::MalformedCommand(_) | RtmpError::BadCommand => "amf0_malformed",
            RtmpError::DeadPeer => "dead_peer",
        }
    }
}

/// Something the session layer must act on.
#[derive(Clone, Debug, PartialEq)]
pub enum RtmpEvent {
    /// `connect`: answer with [`RtmpServerSession::accept_connect`] or `reject_connect`.
    Connect {
        /// Application name, its `?query` stripped.
        app: String,
        /// The `tcUrl` property, if sent.
        tc_url: Option<String>,
        /// `token` from the tcUrl query, the app query, or a connect extra argument
        /// (a string, or an object with a `token` property), in that order.
        token: Option<String>,
        /// The command object's `audioCodecs` (Flash `SUPPORT_SND_*` bits), if sent.
        audio_codecs: Option<u16>,
    },
    /// `@setDataFrame`/`onMetaData` on a publishing stream: what it says about the audio.
    Metadata {
        /// Message stream id.
        stream_id: u32,
        /// `audiosamplerate` (Hz), when present and in 1..=192000.
        audio_sample_rate: Option<u32>,
    },
    /// `publish`: answer with `accept_publish` or `reject_stream`.
    Publish {
        /// Message stream id.
        stream_id: u32,
        /// Stream name with its `?query` stripped.
        name: String,
        /// `token` from the name's query.
        token: Option<String>,
    },
    /// `play`: answer with `accept_play` or `reject_stream`.
    Play {
        /// Message stream id.
        stream_id: u32,
        /// Stream name with its `?query` stripped.
        name: String,
        /// `token` from the name's query.
        token: Option<String>,
        /// `codec` from the name's query: the codec this player asks to be sent.
        codec: Option<String>,
    },
    /// The client stopped publishing on this stream (`FCUnpublish`, `closeStream`, `deleteStream`).
    Unpublish {
        /// Message stream id.
        stream_id: u32,
    },
    /// The client stopped playing this stream (`closeStream`, `deleteStream`).
    StopPlay {
        /// Message stream id.
        stream_id: u32,
    },
    /// The client deleted the message stream.
    DeleteStream {
        /// Message stream id.
        stream_id: u32,
    },
    /// An audio message on a publishing stream.
    Audio {
        /// Message stream id.
        stream_id: u32,
        /// RTMP timestamp in milliseconds.
        timestamp: u32,
        /// The FLV audio tag header byte (format:4, rate:2, size:1, type:1).
        tag_header: u8,
        /// The tag body after the header byte: a slice of the input buffer.
        payload: Bytes,
    },
    /// `call(target)`: place a call.
    Call {
        /// Whom to call (resolved by the dial plan, never used as a raw URI).
        target: String,
    },
    /// `answer()`: answer the incoming call.
    Answer,
    /// `hangup()`: end the call.
    Hangup,
    /// `dtmf(digits)`: send DTMF digits.
    Dtmf {
        /// Digits as sent by the client.
        digits: String,
    },
}

/// Counters the driver may export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtmpStats {
    /// Bytes consumed from the peer.
    pub bytes_received: u64,
    /// Audio messages surfaced as events.
    pub audio_messages: u64,
    /// Inbound audio dropped (no publishing stream, empty).
    pub audio_dropped: u64,
    /// Outbound audio dropped because output was backed up or the stream was not playing.
    pub audio_out_dropped: u64,
    /// Video, data and other messages ignored.
    pub ignored_messages: u64,
    /// Commands answered with `_error`.
    pub rejected_commands: u64,
}

enum Phase {
    Handshake { hs: Box<Handshake>, fed: usize },
    AwaitConnect,
    ConnectPending { txn: f64 },
    Connected,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum StreamState {
    Idle,
    PublishPending(String),
    Publishing(String),
    PlayPending(String),
    Playing(String),
}

#[derive(Debug)]
struct Stream {
    id: u32,
    state: StreamState,
    /// Whether the play-stream `onMetaData` went out (see `send_audio`).
    meta_sent: bool,
}

/// A sans-IO RTMP server session for one TCP connection. See the module docs.
pub struct RtmpServerSession {
    config: RtmpSessionConfig,
    phase: Phase,
    reader: ChunkReader,
    writer: ChunkWriter,
    out: BytesMut,
    events: VecDeque<RtmpEvent>,
    streams: Vec<Stream>,
    next_stream_id: u32,
    closing: bool,
    start: Instant,
    handshake_deadline: Option<Instant>,
    next_ping: Option<Instant>,
    /// When input last arrived (the dead-peer clock).
    last_input: Instant,
    last_now: Instant,
    peer_window: Option<u32>,
    acked_at: u64,
    stats: RtmpStats,
}

impl std::fmt::Debug for RtmpServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpServerSession")
            .field("phase", &self.phase_name())
            .field("closing", &self.closing)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// `(before '?', query after '?')`.
fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (s, None),
    }
}

/// Value of `key` in an `a=b&c=d` query, percent-decoded.
fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b.get(i),
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (Some(b'%'), Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (Some(&c), _, _) => {
                out.push(c);
                i += 1;
            }
            (None, _, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_object<'a>(level: &'a str, code: &'a str, description: &'a str) -> Amf0Value<'a> {
    Amf0Value::Object(vec![
        ("level", Amf0Value::String(level)),
        ("code", Amf0Value::String(code)),
        ("description", Amf0Value::String(description)),
    ])
}

impl RtmpServerSession {
    /// A session for a freshly accepted connection; the handshake deadline starts at `now`.
    pub fn new(config: RtmpSessionConfig, now: Instant) -> Self {
        RtmpServerSession {
            config,
            phase: Phase::Handshake {
                hs: Box::new(Handshake::new(PeerType::Server)),
                fed: 0,
            },
            reader: ChunkReader::new(config.chunk_limits),
            writer: ChunkWriter::new(),
            out: BytesMut::new(),
            events: VecDeque::new(),
            streams: Vec::new(),
            next_stream_id: 1,
            closing: false,
            start: now,
            handshake_deadline: Some(now + config.handshake_timeout),
            next_ping: None,
            last_input: now,
            last_now: now,
            peer_window: None,
            acked_at: 0,
            stats: RtmpStats::default(),
        }
    }

    fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Handshake { .. } => "handshake",
            Phase::AwaitConnect => "await_connect",
            Phase::ConnectPending { .. } => "connect_pending",
            Phase::Connected => "connected",
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> RtmpStats {
        self.stats
    }

    /// True once the session has decided to close (after a rejected connect): flush the
    /// output, then close the socket.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether `connect` has been accepted.
    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected)
    }

    /// Consumes input from the front of `buf`. Bytes that do not yet form a whole chunk (or
    /// that arrive while `max_pending_events` events are unpolled) stay in `buf`.
    ///
    /// Any bytes in `buf` count as a sign of life for dead-peer detection: call this after
    /// every read.
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) -> Result<(), RtmpError> {
        self.last_now = now;
        if !buf.is_empty() {
            self.last_input = now;
        }
        if self.closing {
            buf.clear();
            return Ok(());
        }
        if let Phase::Handshake { hs, fed } = &mut self.phase {
            let take = buf.len().min(HANDSHAKE_CLIENT_BYTES.saturating_sub(*fed));
            if take == 0 {
                return Ok(());
            }
            let data = buf.split_to(take);
            *fed += take;
            self.stats.bytes_received += take as u64;
            match hs.process_bytes(&data) {
                Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                    self.out.extend_from_slice(&response_bytes);
                    return Ok(());
                }
                Ok(HandshakeProcessResult::Completed { response_bytes, .. }) => {
                    // `remaining_bytes` is empty: we never feed more than C0+C1+C2.
                    self.out.extend_from_slice(&response_bytes);
                    self.phase = Phase::AwaitConnect;
                    self.writer
                        .set_chunk_size(self.config.out_chunk_size, &mut self.out);
                }
                Err(_) => return Err(RtmpError::Handshake),
            }
        }
        while self.events.len() < self.config.max_pending_events && !self.closing {
            let before = buf.len();
            let msg = self.reader.read(buf)?;
            self.stats.bytes_received += (before - buf.len()) as u64;
            self.maybe_ack();
            match msg {
                Some(m) => self.handle_message(m)?,
                None => break,
            }
        }
        Ok(())
    }

    /// The next instant `handle_timeout` must be called, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.handshake_deadline,
            self.next_ping,
            self.dead_peer_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When the peer will be declared dead if nothing arrives before (connected sessions only).
    pub fn dead_peer_deadline(&self) -> Option<Instant> {
        if self.closing || !self.is_connected() {
            return None;
        }
        self.config.dead_peer.map(|d| self.last_input + d)
    }

    /// Advances timers: the handshake/connect deadline, server pings and dead-peer detection.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), RtmpError> {
        self.last_now = now;
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            self.handshake_deadline = None;
            return Err(RtmpError::HandshakeTimeout);
        }
        if self.dead_peer_deadline().is_some_and(|d| now >= d) {
            self.next_ping = None;
            self.closing = true;
            return Err(RtmpError::DeadPeer);
        }
        if let (Some(at), Some(interval)) = (self.next_ping, self.config.ping_interval) {
            if now >= at {
                let ms = now.saturating_duration_since(self.start).as_millis() as u32;
                self.user_control(user_control::PING_REQUEST, ms);
                self.next_ping = Some(now + interval);
            }
        }
        Ok(())
    }

    /// The next queued event.
    pub fn poll_event(&mut self) -> Option<RtmpEvent> {
        self.events.pop_front()
    }

    /// Bytes to write to the socket, if any.
    pub fn poll_output(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.split().freeze())
        }
    }

    /// Accepts the pending `connect`: window ack size, peer bandwidth, stream begin and the
    /// `NetConnection.Connect.Success` result.
    pub fn accept_connect(&mut self) {
        let Phase::ConnectPending { txn } = self.phase else {
            return;
        };
        self.control(
            message_type::WINDOW_ACK_SIZE,
            &self.config.window_ack_size.to_be_bytes(),
        );
        let mut bw = [0u8; 5];
        bw[..4].copy_from_slice(&self.config.peer_bandwidth.to_be_bytes());
        bw[4] = 2; // dynamic
        self.control(message_type::SET_PEER_BANDWIDTH, &bw);
        self.user_control(user_control::STREAM_BEGIN, 0);
        let props = Amf0Value::Object(vec![
            ("fmsVer", Amf0Value::String("FMS/3,0,1,123")),
            ("capabilities", Amf0Value::Number(31.0)),
        ]);
        let info = Amf0Value::Object(vec![
            ("level", Amf0Value::String("status")),
            ("code", Amf0Value::String("NetConnection.Connect.Success")),
            ("description", Amf0Value::String("Connection succeeded.")),
            ("objectEncoding", Amf0Value::Number(0.0)),
        ]);
        self.command(0, "_result", txn, &props, &[info]);
        self.phase = Phase::Connected;
        self.next_ping = self.config.ping_interval.map(|i| self.last_now + i);
    }

    /// Rejects the pending `connect` with an `_error` carrying `code`/`description`
    /// (e.g. `NetConnection.Connect.Rejected`); the session is then closing.
    pub fn reject_connect(&mut self, code: &str, description: &str) {
        let txn = match self.phase {
            Phase::ConnectPending { txn } => txn,
            _ => 0.0,
        };
        self.command(
            0,
            "_error",
            txn,
            &Amf0Value::Null,
            &[status_object("error", code, description)],
        );
        self.closing = true;
        self.next_ping = None;
    }

    /// Accepts a pending `publish`: Stream Begin and `NetStream.Publish.Start`.
    pub fn accept_publish(&mut self, stream_id: u32) {
        let Some(s) = self.streams.iter_mut().find(|s| s.id == stream_id) else {
            return;
        };
        let StreamState::PublishPending(name) = &s.state else {
            return;
        };
        let name = name.clone();
        s.state = StreamState::Publishing(name.clone());
        self.user_control(user_control::STREAM_BEGIN, stream_id);
        let desc = format!("Publishing {name}.");
        self.on_status(stream_id, "status", "NetStream.Publish.Start", &desc);
    }

    /// Accepts a pending `play`: Stream Begin, `NetStream.Play.Reset`, `NetStream.Play.Start`
    /// and `|RtmpSampleAccess`. Audio may then be sent with [`Self::send_audio`].
    pub fn accept_play(&mut self, stream_id: u32) {
        let Some(s) = self.streams.iter_mut().find(|s| s.id == stream_id) else {
            return;
        };
        let StreamState::PlayPending(name) = &s.state else {
            return;
        };
        let name = name.clone();
        s.state = StreamState::Playing(name.clone());
        s.meta_sent = false;
        self.user_control(user_control::STREAM_BEGIN, stream_id);
        let desc = format!("Playing {name}.");
        self.on_status(stream_id, "status", "NetStream.Play.Reset", &desc);
        self.on_status(stream_id, "status", "NetStream.Play.Start", &desc);
        let mut data = Vec::new();
        amf0::encode_all(
            &[
                Amf0Value::String("|RtmpSampleAccess"),
                Amf0Value::Boolean(true),
                Amf0Value::Boolean(true),
            ],
            &mut data,
        );
        self.write(
            CSID_STREAM_COMMAND,
            message_type::DATA_AMF0,
            stream_id,
            0,
            &[&data],
        );
    }

    /// Rejects a pending `publish`/`play` with an error `onStatus` (`code`, e.g.
    /// `NetStream.Publish.BadName` / `NetStream.Play.StreamNotFound`); the stream returns to idle.
    pub fn reject_stream(&mut self, stream_id: u32, code: &str, description: &str) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.id == stream_id) {
            s.state = StreamState::Idle;
        }
        self.on_status(stream_id, "error", code, description);
    }

    /// Sends one audio message (FLV tag header byte + body) on a playing stream. Returns false
    /// (and counts it) when the stream is not playing or unpolled output exceeds the cap.
    ///
    /// The first audio message of a play stream is followed by an `onMetaData` naming the
    /// audio codec and carrying `videocodecid` as an empty object: ffmpeg's FLV demuxer treats
    /// that as "no video" and stops waiting for a video stream (otherwise an audio-only live
    /// stream stalls `avformat_find_stream_info` for up to 90 s of media).
    pub fn send_audio(
        &mut self,
        stream_id: u32,
        timestamp_ms: u32,
        tag_header: u8,
        payload: &[u8],
    ) -> bool {
        let Some(stream) = self
            .streams
            .iter_mut()
            .find(|s| s.id == stream_id && matches!(s.state, StreamState::Playing(_)))
        else {
            self.stats.audio_out_dropped += 1;
            return false;
        };
        if self.closing || self.out.len() > self.config.max_output_bytes {
            self.stats.audio_out_dropped += 1;
            return false;
        }
        let first = !stream.meta_sent;
        stream.meta_sent = true;
        self.write(
            CSID_AUDIO,
            message_type::AUDIO,
            stream_id,
            timestamp_ms,
            &[&[tag_header], payload],
        );
        if first {
            let format = tag_header >> 4;
            let mut meta = vec![("audiocodecid", Amf0Value::Number(f64::from(format)))];
            match format {
                5 | 7 | 8 => meta.push(("audiosamplerate", Amf0Value::Number(8000.0))),
                4 => meta.push(("audiosamplerate", Amf0Value::Number(16000.0))),
                _ => {}
            }
            meta.push(("videocodecid", Amf0Value::Object(Vec::new())));
            self.send_data(
                stream_id,
                &[Amf0Value::String("onMetaData"), Amf0Value::EcmaArray(meta)],
            );
        }
        true
    }

    /// Sends an AMF0 data message on a message stream, e.g. `onMetaData` with an ECMA array
    /// (`audiocodecid`, `audiosamplerate`, ...) before the first audio of a play stream.
    pub fn send_data(&mut self, stream_id: u32, values: &[Amf0Value<'_>]) {
        let mut data = Vec::with_capacity(128);
        amf0::encode_all(values, &mut data);
        self.write(
            CSID_STREAM_COMMAND,
            message_type::DATA_AMF0,
            stream_id,
            0,
            &[&data],
        );
    }

    /// Sends a NetConnection command (transaction id 0, null command object), e.g.
    /// `onRinging`, `onAnswered`, `onHangup(code, reason)`, `onDtmf(digit)`.
    pub fn send_command(&mut self, name: &str, args: &[Amf0Value<'_>]) {
        self.command(0, name, 0.0, &Amf0Value::Null, args);
    }

    /// Sends a status `onStatus` on a message stream (e.g. `NetStream.Play.Stop`,
    /// `NetStream.Play.UnpublishNotify`); `NetStream.Play.Stop` also sends Stream EOF.
    pub fn send_stream_status(&mut self, stream_id: u32, code: &str, description: &str) {
        self.on_status(stream_id, "status", code, description);
        if code == "NetStream.Play.Stop" {
            self.user_control(user_control::STREAM_EOF, stream_id);
        }
    }

    /// Sends an `_error` on the NetConnection (transaction id 0).
    pub fn send_error(&mut self, description: &str) {
        self.command(
            0,
            "_error",
            0.0,
            &Amf0Value::Null,
            &[status_object(
                "error",
                "NetConnection.Call.Failed",
                description,
            )],
        );
    }

    // ---- inbound ----

    fn maybe_ack(&mut self) {
        let Some(window) = self.peer_window else {
            return;
        };
        if self.stats.bytes_received - self.acked_at >= u64::from(window) {
            self.acked_at = self.stats.bytes_received;
            self.control(
                message_type::ACKNOWLEDGEMENT,
                &(self.stats.bytes_received as u32).to_be_bytes(),
            );
        }
    }

    fn handle_message(&mut self, m: RtmpMessage) -> Result<(), RtmpError> {
        match m.type_id {
            message_type::SET_CHUNK_SIZE | message_type::ABORT | message_type::ACKNOWLEDGEMENT => {}
            message_type::WINDOW_ACK_SIZE => {
                if let Some(w) = m.payload.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()) {
                    let w = u32::from_be_bytes(w);
                    self.peer_window = (w > 0).then_some(w);
                }
            }
            message_type::USER_CONTROL => self.handle_user_control(&m.payload),
            message_type::AUDIO => self.handle_audio(m),
            message_type::DATA_AMF0 => self.handle_data(m.stream_id, &m.payload),
            message_type::COMMAND_AMF0 => self.handle_command(m.stream_id, &m.payload)?,
            message_type::COMMAND_AMF3 => {
                // AMF3 command messages start with a format byte, then AMF0 values.
                self.handle_command(m.stream_id, m.payload.get(1..).unwrap_or(&[]))?
            }
            _ => self.stats.ignored_messages += 1,
        }
        Ok(())
    }

    fn handle_user_control(&mut self, p: &[u8]) {
        let (Some(&[e0, e1]), Some(&[a, b, c, d])) = (
            p.get(..2).and_then(|s| <&[u8; 2]>::try_from(s).ok()),
            p.get(2..6).and_then(|s| <&[u8; 4]>::try_from(s).ok()),
        ) else {
            self.stats.ignored_messages += 1;
            return;
        };
        let value = u32::from_be_bytes([a, b, c, d]);
        // SetBufferLength and PingResponse need nothing.
        if u16::from_be_bytes([e0, e1]) == user_control::PING_REQUEST {
            self.user_control(user_control::PING_RESPONSE, value);
        }
    }

    fn handle_audio(&mut self, m: RtmpMessage) {
        let publishing = self
            .streams
            .iter()
            .any(|s| s.id == m.stream_id && matches!(s.state, StreamState::Publishing(_)));
        match m.payload.first() {
            Some(&tag_header) if publishing => {
                self.stats.audio_messages += 1;
                self.events.push_back(RtmpEvent::Audio {
                    stream_id: m.stream_id,
                    timestamp: m.timestamp,
                    tag_header,
                    payload: m.payload.slice(1..),
                });
            }
            _ => self.stats.audio_dropped += 1,
        }
    }

    /// A data message: `[@setDataFrame,] onMetaData, {…}` on a publishing stream surfaces its
    /// audio sample rate; anything else (or undecodable) is ignored.
    fn handle_data(&mut self, stream_id: u32, payload: &[u8]) {
        let publishing = self
            .streams
            .iter()
            .any(|s| s.id == stream_id && matches!(s.state, StreamState::Publishing(_)));
        let Ok(values) = amf0::decode_all_with(payload, self.config.amf0_limits) else {
            self.stats.ignored_messages += 1;
            return;
        };
        let mut rest = values.as_slice();
        if rest.first().and_then(Amf0Value::as_str) == Some("@setDataFrame") {
            rest = rest.get(1..).unwrap_or_default();
        }
        let (Some("onMetaData"), Some(meta), true) = (
            rest.first().and_then(Amf0Value::as_str),
            rest.get(1),
            publishing,
        ) else {
            self.stats.ignored_messages += 1;
            return;
        };
        let audio_sample_rate = meta
            .get("audiosamplerate")
            .and_then(Amf0Value::as_number)
            .filter(|r| (1.0..=192_000.0).contains(r))
            .map(|r| r as u32);
        self.events.push_back(RtmpEvent::Metadata {
            stream_id,
            audio_sample_rate,
        });
    }

    fn handle_command(&mut self, stream_id: u32, payload: &[u8]) -> Result<(), RtmpError> {
        let values = match amf0::decode_all_with(payload, self.config.amf0_limits) {
            Ok(v) => v,
            Err(e) => {
                self.stats.rejected_commands += 1;
                self.send_error("malformed command");
                return Err(RtmpError::MalformedCommand(e));
            }
        };
        let (Some(name), Some(txn)) = (
            values.first().and_then(Amf0Value::as_str),
            values.get(1).and_then(Amf0Value::as_number),
        ) else {
            self.stats.rejected_commands += 1;
            self.send_error("malformed command");
            return Err(RtmpError::BadCommand);
        };
        let cmd_obj = values.get(2).cloned().unwrap_or(Amf0Value::Null);
        let args = values.get(3..).unwrap_or(&[]);
        let arg_str = |i: usize| args.get(i).and_then(Amf0Value::as_str);

        if name == "connect" {
            self.handle_connect(txn, &cmd_obj, args);
            return Ok(());
        }
        if !self.is_connected() {
            self.error_result(txn, "NetConnection.Call.Failed", "not connected");
            return Ok(());
        }
        match name {
            "createStream" => {
                if self.streams.len() >= self.config.max_streams {
                    self.error_result(txn, "NetConnection.Call.Failed", "too many streams");
                } else {
                    let id = self.next_stream_id;
                    self.next_stream_id = self.next_stream_id.wrapping_add(1).max(1);
                    self.streams.push(Stream {
                        id,
                        state: StreamState::Idle,
                        meta_sent: false,
                    });
                    self.command(
                        0,
                        "_result",
                        txn,
                        &Amf0Value::Null,
                        &[Amf0Value::Number(f64::from(id))],
                    );
                }
            }
            "releaseStream" | "FCPublish" | "_checkbw" => self.ok_result(txn, Amf0Value::Undefined),
            "getStreamLength" => self.ok_result(txn, Amf0Value::Number(0.0)),
            "publish" | "play" => {
                let publish = name == "publish";
                let idle = self
                    .streams
                    .iter()
                    .any(|s| s.id == stream_id && s.state == StreamState::Idle);
                let (bad_code, busy_code) = if publish {
                    (
                        "NetStream.Publish.BadName",
                        "NetStream.Publish.BadConnection",
                    )
                } else {
                    ("NetStream.Play.StreamNotFound", "NetStream.Play.Failed")
                };
                match arg_str(0).map(split_query) {
                    _ if !idle => {
                        self.on_status(stream_id, "error", busy_code, "stream not available")
                    }
                    None | Some(("", _)) => {
                        self.on_status(stream_id, "error", bad_code, "missing stream name")
                    }
                    Some((n, q)) => {
                        let (n, token) = (n.to_owned(), q.and_then(|q| query_param(q, "token")));
                        let codec = q.and_then(|q| query_param(q, "codec"));
                        if let Some(s) = self.streams.iter_mut().find(|s| s.id == stream_id) {
                            s.state = if publish {
                                StreamState::PublishPending(n.clone())
                            } else {
                                StreamState::PlayPending(n.clone())
                            };
                        }
                        self.events.push_back(if publish {
                            RtmpEvent::Publish {
                                stream_id,
                                name: n,
                                token,
                            }
                        } else {
                            RtmpEvent::Play {
                                stream_id,
                                name: n,
                                token,
                                codec,
                            }
                        });
                    }
                }
            }
            "FCUnpublish" => {
                let target = arg_str(0).map(|n| split_query(n).0);
                let id = self.streams.iter().find_map(|s| match &s.state {
                    StreamState::Publishing(n) | StreamState::PublishPending(n)
                        if Some(n.as_str()) == target =>
                    {
                        Some(s.id)
                    }
                    _ => None,
                });
                if let Some(id) = id {
                    self.stop_stream(id);
                }
                self.ok_result(txn, Amf0Value::Undefined);
            }
            "closeStream" => self.stop_stream(stream_id),
            "deleteStream" => {
                let id = args
                    .first()
                    .and_then(Amf0Value::as_number)
                    .map(|n| n as u32)
                    .unwrap_or(stream_id);
                if self.streams.iter().any(|s| s.id == id) {
                    self.stop_stream(id);
                    self.streams.retain(|s| s.id != id);
                    self.events
                        .push_back(RtmpEvent::DeleteStream { stream_id: id });
                }
            }
            "call" => match arg_str(0) {
                Some(target) if !target.is_empty() => {
                    self.events.push_back(RtmpEvent::Call {
                        target: target.to_owned(),
                    });
                    self.ok_result(txn, Amf0Value::Null);
                }
                _ => self.error_result(txn, "NetConnection.Call.BadValue", "call needs a target"),
            },
            "answer" => {
                self.events.push_back(RtmpEvent::Answer);
                self.ok_result(txn, Amf0Value::Null);
            }
            "hangup" => {
                self.events.push_back(RtmpEvent::Hangup);
                self.ok_result(txn, Amf0Value::Null);
            }
            "dtmf" => match arg_str(0) {
                Some(d) if !d.is_empty() => {
                    self.events.push_back(RtmpEvent::Dtmf {
                        digits: d.to_owned(),
                    });
                    self.ok_result(txn, Amf0Value::Null);
                }
                _ => self.error_result(txn, "NetConnection.Call.BadValue", "dtmf needs digits"),
            },
            _ => self.error_result(txn, "NetConnection.Call.Failed", "unknown command"),
        }
        Ok(())
    }

    fn handle_connect(&mut self, txn: f64, cmd_obj: &Amf0Value<'_>, args: &[Amf0Value<'_>]) {
        if !matches!(self.phase, Phase::AwaitConnect) {
            self.error_result(txn, "NetConnection.Call.Failed", "already connected");
            return;
        }
        let (app, app_query) =
            split_query(cmd_obj.get("app").and_then(Amf0Value::as_str).unwrap_or(""));
        let tc_url = cmd_obj.get("tcUrl").and_then(Amf0Value::as_str);
        let token = tc_url
            .and_then(|u| split_query(u).1)
            .and_then(|q| query_param(q, "token"))
            .or_else(|| app_query.and_then(|q| query_param(q, "token")))
            .or_else(|| {
                args.iter().find_map(|a| match a {
                    Amf0Value::String(s) => Some((*s).to_owned()),
                    Amf0Value::Object(_) => a
                        .get("token")
                        .and_then(Amf0Value::as_str)
                        .map(str::to_owned),
                    _ => None,
                })
            });
        let audio_codecs = cmd_obj
            .get("audioCodecs")
            .and_then(Amf0Value::as_number)
            .filter(|n| (0.0..=65535.0).contains(n))
            .map(|n| n as u16);
        self.events.push_back(RtmpEvent::Connect {
            app: app.to_owned(),
            tc_url: tc_url.map(str::to_owned),
            token,
            audio_codecs,
        });
        self.phase = Phase::ConnectPending { txn };
        self.handshake_deadline = None;
    }

    /// Ends publishing/playing on `id`, surfacing Unpublish/StopPlay.
    fn stop_stream(&mut self, id: u32) {
        let Some(s) = self.streams.iter_mut().find(|s| s.id == id) else {
            return;
        };
        let ev = match s.state {
            StreamState::Publishing(_) | StreamState::PublishPending(_) => {
                Some(RtmpEvent::Unpublish { stream_id: id })
            }
            StreamState::Playing(_) | StreamState::PlayPending(_) => {
                Some(RtmpEvent::StopPlay { stream_id: id })
            }
            StreamState::Idle => None,
        };
        s.state = StreamState::Idle;
        self.events.extend(ev);
    }

    // ---- outbound ----

    fn write(&mut self, csid: u32, type_id: u8, stream_id: u32, timestamp: u32, parts: &[&[u8]]) {
        let header = OutboundHeader {
            csid,
            type_id,
            stream_id,
            timestamp,
        };
        self.writer.write(&mut self.out, header, parts);
    }

    fn control(&mut self, type_id: u8, payload: &[u8]) {
        self.write(CSID_CONTROL, type_id, 0, 0, &[payload]);
    }

    fn user_control(&mut self, event: u16, value: u32) {
        let mut p = [0u8; 6];
        p[..2].copy_from_slice(&event.to_be_bytes());
        p[2..].copy_from_slice(&value.to_be_bytes());
        self.write(CSID_CONTROL, message_type::USER_CONTROL, 0, 0, &[&p]);
    }

    fn command(
        &mut self,
        stream_id: u32,
        name: &str,
        txn: f64,
        obj: &Amf0Value<'_>,
        args: &[Amf0Value<'_>],
    ) {
        let mut p = Vec::with_capacity(128);
        amf0::encode_string(name, &mut p);
        amf0::encode_number(txn, &mut p);
        obj.encode(&mut p);
        amf0::encode_all(args, &mut p);
        let csid = if stream_id == 0 {
            CSID_COMMAND
        } else {
            CSID_STREAM_COMMAND
        };
        self.write(csid, message_type::COMMAND_AMF0, stream_id, 0, &[&p]);
    }

    fn on_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        self.command(
            stream_id,
            "onStatus",
            0.0,
            &Amf0Value::Null,
            &[status_object(level, code, description)],
        );
    }

    fn ok_result(&mut self, txn: f64, value: Amf0Value<'_>) {
        if txn != 0.0 {
            self.command(0, "_result", txn, &Amf0Value::Null, &[value]);
        }
    }

    fn error_result(&mut self, txn: f64, code: &str, description: &str) {
        self.stats.rejected_commands += 1;
        self.command(
            0,
            "_error",
            txn,
            &Amf0Value::Null,
            &[status_object("error", code, description)],
        );
    }
}
