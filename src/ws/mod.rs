//! WebSocket client transport: a sans-IO WebSocket **server** session speaking the skybridge
//! browser protocol v1 (`WS-PROTOCOL.md`) over RFC 6455.
//!
//! ```text
//!   socket bytes ──► handle_input(now, &mut BytesMut) ──► poll_event()  ──► session layer
//!                    handle_timeout(now)                 poll_output() ──► socket
//!   session layer ─► authenticated / reject / send / send_audio / close
//!                                                        poll_timeout() ─► driver's timer
//! ```
//!
//! Life of a connection: the HTTP upgrade (path, Origin, `skybridge.v1` echoed when offered,
//! extensions declined) within `upgrade_timeout`; then a `hello` within `hello_timeout`, which
//! comes out as [`WsEvent::Message`] for the driver to check the token and answer with
//! [`WsServerSession::authenticated`] (sends `welcome`) or [`WsServerSession::reject`]. Any other
//! message before `hello` closes with 1008 "authenticate first"; messages arriving while the
//! driver decides are held (bounded) and released after `welcome`. Then signalling messages and
//! audio frames flow both ways; the session answers WebSocket pings and `{"type":"ping"}` itself,
//! pings the client every `ping_interval` and, once upgraded, closes (1001) when nothing at all
//! arrived for `dead_peer` (pongs are input: a client that answers pings stays connected).
//!
//! Errors: a bad upgrade queues an HTTP error response; a protocol violation queues a close frame
//! with the matching code (1002/1003/1007/1008/1009) and a [`WsEvent::Closed`]. In both cases
//! `handle_input`/`handle_timeout` return `Err` and [`WsServerSession::is_closing`] is true.
//!
//! A driver must, after every `handle_input`/`handle_timeout` (including one that returned
//! `Err`) and every `authenticated`/`reject`/`send*`/`close`, drain `poll_event` and write
//! `poll_output` to the socket; once `is_closing()`, flush the output and close the connection.
//! A plain HTTP GET (the softphone page) is the driver's to serve: check the request head with
//! [`skybridge_codecs::websocket::parse_http_request_head`] before handing the bytes here.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use skybridge_codecs::signal::{
    self, decode_client, encode_server, AudioFrameHeader, CallId, ClientMessage, ServerMessage,
    SignalError,
};
use skybridge_codecs::websocket::{
    self as ws, close_code, parse_http_request_head, write_close, write_frame, FrameLimits,
    FrameReader, Message, MessageAssembler, MessageLimits, Opcode, RequestHead, UpgradeRequest,
    WsError,
};

#[cfg(test)]
mod tests;

/// Subprotocol of WS-PROTOCOL.md version 1.
pub const SUBPROTOCOL: &str = "skybridge.v1";
/// Messages held while the driver decides on a `hello`; more closes with 1008.
const MAX_HELD_MESSAGES: usize = 16;

/// Configuration of one WebSocket server session.
#[derive(Clone, Debug, PartialEq)]
pub struct WsSessionConfig {
    /// Path of the WebSocket endpoint (query ignored).
    pub path: String,
    /// Allowed `Origin` values (exact, case-insensitive). Empty: the Origin's host\[:port\]
    /// must equal the `Host` header (same-origin page).
    pub allowed_origins: Vec<String>,
    /// Refuse upgrades without `Origin` (non-browser clients never send one).
    pub require_origin: bool,
    /// Frame decoder limits.
    pub frame_limits: FrameLimits,
    /// Message limits (text 16 KiB, binary 2 KiB, 64 fragments).
    pub message_limits: MessageLimits,
    /// Time allowed from accept until a complete upgrade request.
    pub upgrade_timeout: Duration,
    /// Time allowed from the upgrade until `hello`.
    pub hello_timeout: Duration,
    /// Interval of server pings after the upgrade (`None`: never ping).
    pub ping_interval: Option<Duration>,
    /// Time without any input after the upgrade after which the peer is declared dead
    /// ([`WsSessionError::DeadPeer`], close 1001); `None`: never.
    pub dead_peer: Option<Duration>,
    /// Unpolled output above which `send_audio` drops frames (signalling is never dropped).
    pub max_output_bytes: usize,
    /// Events queued above which inbound processing pauses (input stays in the buffer).
    pub max_pending_events: usize,
    /// Codec names the server speaks on this transport (`pcmu`, `pcma`, `opus`). `welcome`
    /// announces the G.711 ones always and the others only when `hello.codecs` offered them.
    pub codecs: Vec<String>,
    /// Server name announced in `welcome`.
    pub server_name: String,
}

impl Default for WsSessionConfig {
    fn default() -> Self {
        WsSessionConfig {
            path: "/ws".to_owned(),
            allowed_origins: Vec::new(),
            require_origin: false,
            frame_limits: FrameLimits {
                max_frame_len: signal::MAX_TEXT_LEN as u64,
                require_mask: true,
            },
            message_limits: MessageLimits {
                max_text_len: signal::MAX_TEXT_LEN,
                max_binary_len: signal::MAX_BINARY_LEN,
                max_fragments: 64,
            },
            upgrade_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            ping_interval: Some(Duration::from_secs(5)),
            dead_peer: Some(Duration::from_secs(15)),
            max_output_bytes: 256 * 1024,
            max_pending_events: 256,
            codecs: vec!["opus".to_owned(), "pcmu".to_owned(), "pcma".to_owned()],
            server_name: concat!("skybridge/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Why the session is closing. [`WsSessionError::reason`] names it for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WsSessionError {
    /// The upgrade request is malformed or not an upgrade (HTTP error sent).
    #[error("bad upgrade request: {0}")]
    Handshake(WsError),
    /// Upgrade to a path other than the configured one (404 sent).
    #[error("upgrade to an unknown path")]
    NotFound,
    /// `Origin` not allowed (403 sent).
    #[error("origin not allowed")]
    Forbidden,
    /// No complete upgrade request within the deadline.
    #[error("upgrade deadline expired")]
    UpgradeTimeout,
    /// No `hello` within the deadline (close 1008).
    #[error("hello deadline expired")]
    HelloTimeout,
    /// Nothing received for `dead_peer`, not even a pong (close 1001).
    #[error("nothing received from the peer within the dead-peer time")]
    DeadPeer,
    /// A frame/message violates RFC 6455 or a limit (close with its code).
    #[error("websocket: {0}")]
    Protocol(WsError),
    /// A message violates the signalling protocol (close with its code).
    #[error("signalling: {0}")]
    Signal(SignalError),
    /// A message other than `hello` before authentication (close 1008).
    #[error("message before hello")]
    NotAuthenticated,
}

impl WsSessionError {
    /// Short stable name for a rejection counter (`ws.<reason>`).
    pub fn reason(&self) -> &'static str {
        match self {
            WsSessionError::Handshake(WsError::HeadTooLarge | WsError::TooManyHeaders) => {
                "head_too_large"
            }
            WsSessionError::Handshake(_) => "bad_upgrade",
            WsSessionError::NotFound => "not_found",
            WsSessionError::Forbidden => "origin",
            WsSessionError::UpgradeTimeout => "upgrade_timeout",
            WsSessionError::HelloTimeout => "hello_timeout",
            WsSessionError::DeadPeer => "dead_peer",
            WsSessionError::Protocol(e) if e.close_code() == close_code::TOO_BIG => "too_big",
            WsSessionError::Protocol(WsError::InvalidUtf8) => "invalid_utf8",
            WsSessionError::Protocol(_) => "protocol",
            WsSessionError::Signal(SignalError::TooLong | SignalError::AudioTooLong) => "too_big",
            WsSessionError::Signal(SignalError::UnknownType) => "unknown_type",
            WsSessionError::Signal(SignalError::NotUtf8 | SignalError::NotJson) => "not_json",
            WsSessionError::Signal(_) => "bad_audio",
            WsSessionError::NotAuthenticated => "not_authenticated",
        }
    }
}

/// Something the session layer must act on.
#[derive(Clone, Debug, PartialEq)]
pub enum WsEvent {
    /// A signalling message. `Hello` must be answered with `authenticated` or `reject`;
    /// `ping` never comes out (answered here).
    Message(ClientMessage),
    /// An audio frame (only after `authenticated`).
    Audio {
        /// Call id (the driver checks it names one of this connection's calls).
        call: CallId,
        /// RTP static payload type: 0 PCMU, 8 PCMA.
        codec: u8,
        /// Timestamp in the codec clock.
        timestamp: u32,
        /// G.711 bytes: a slice of the input buffer.
        payload: Bytes,
    },
    /// An Opus frame whose payload is not a well-formed Opus packet was dropped (the
    /// connection and the call go on).
    AudioMalformed {
        /// Call id the frame named.
        call: CallId,
    },
    /// The WebSocket is closing (peer's close, our close, or an error): end this client's calls.
    /// Emitted once, and only after a successful upgrade.
    Closed {
        /// Close code (1005 when the peer's close had none).
        code: u16,
        /// Close reason.
        reason: String,
    },
}

/// Counters the driver may export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WsStats {
    /// Bytes consumed from the peer.
    pub bytes_received: u64,
    /// Signalling messages surfaced.
    pub messages: u64,
    /// Audio frames surfaced.
    pub audio_frames: u64,
    /// Opus frames whose payload is not a well-formed Opus packet (dropped, the call goes on).
    pub audio_malformed: u64,
    /// Inbound audio dropped (sent before `welcome`).
    pub audio_dropped: u64,
    /// Outbound audio dropped (output backed up or not authenticated).
    pub audio_out_dropped: u64,
    /// `error` messages sent for bad fields.
    pub bad_messages: u64,
    /// Pings sent.
    pub pings_sent: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Upgrade,
    AwaitHello,
    HelloPending,
    Open,
}

/// A sans-IO WebSocket server session for one TCP connection. See the module docs.
#[derive(Debug)]
pub struct WsServerSession {
    config: WsSessionConfig,
    phase: Phase,
    reader: FrameReader,
    assembler: MessageAssembler,
    out: BytesMut,
    events: VecDeque<WsEvent>,
    held: Vec<ClientMessage>,
    closing: bool,
    upgrade_deadline: Option<Instant>,
    hello_deadline: Option<Instant>,
    next_ping: Option<Instant>,
    /// When input last arrived (the dead-peer clock).
    last_input: Instant,
    protocol: Option<&'static str>,
    /// `hello.codecs`: `None` when the hello named none (a G.711-only client).
    offered: Option<Vec<String>>,
    /// Opus agreed in `welcome`: frames with [`signal::codec::OPUS`] are valid.
    opus: bool,
    stats: WsStats,
}

fn status_text(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Bad Request",
    }
}

/// Whether `origin` may open a WebSocket to `host`: in `allowed` (if not empty), else the same
/// host\[:port\] (default ports ignored).
fn origin_allowed(allowed: &[String], origin: &str, host: &str) -> bool {
    if !allowed.is_empty() {
        return allowed.iter().any(|a| a.eq_ignore_ascii_case(origin));
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        ":80"
    } else if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        return false;
    };
    let o = rest.strip_suffix(default_port).unwrap_or(rest);
    let h = host.strip_suffix(default_port).unwrap_or(host);
    !o.is_empty() && !o.contains('/') && o.eq_ignore_ascii_case(h)
}

impl WsServerSession {
    /// A session for a freshly accepted connection; the upgrade deadline starts at `now`.
    pub fn new(config: WsSessionConfig, now: Instant) -> Self {
        WsServerSession {
            reader: FrameReader::new(config.frame_limits),
            assembler: MessageAssembler::new(config.message_limits),
            upgrade_deadline: Some(now + config.upgrade_timeout),
            config,
            phase: Phase::Upgrade,
            out: BytesMut::new(),
            events: VecDeque::new(),
            held: Vec::new(),
            closing: false,
            hello_deadline: None,
            next_ping: None,
            last_input: now,
            protocol: None,
            offered: None,
            opus: false,
            stats: WsStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> WsStats {
        self.stats
    }

    /// True once the session has decided to close: flush the output, then close the socket.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether the HTTP upgrade succeeded.
    pub fn is_upgraded(&self) -> bool {
        self.phase != Phase::Upgrade
    }

    /// Whether `hello` was accepted (`welcome` sent).
    pub fn is_authenticated(&self) -> bool {
        self.phase == Phase::Open
    }

    /// The subprotocol agreed on (`skybridge.v1`), if the client offered it.
    pub fn protocol(&self) -> Option<&'static str> {
        self.protocol
    }

    /// Whether `welcome` agreed on Opus (the client offered it in `hello.codecs`).
    pub fn opus(&self) -> bool {
        self.opus
    }

    /// Consumes input from the front of `buf`. Bytes that do not yet form a whole request head
    /// or frame (or that arrive while `max_pending_events` events are unpolled) stay in `buf`.
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) -> Result<(), WsSessionError> {
        if self.closing {
            buf.clear();
            return Ok(());
        }
        if !buf.is_empty() {
            self.last_input = now;
        }
        if self.phase == Phase::Upgrade && !self.upgrade(now, buf)? {
            return Ok(());
        }
        while self.events.len() < self.config.max_pending_events && !self.closing {
            let before = buf.len();
            let frame = self.reader.read(buf);
            self.stats.bytes_received += (before - buf.len()) as u64;
            let frame = match frame {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    return self.fail(e.close_code(), e.reason(), WsSessionError::Protocol(e))
                }
            };
            match self.assembler.push(frame) {
                Ok(Some(m)) => self.on_message(m)?,
                Ok(None) => {}
                Err(e) => {
                    return self.fail(e.close_code(), e.reason(), WsSessionError::Protocol(e))
                }
            }
        }
        Ok(())
    }

    /// Parses the upgrade request; `Ok(true)` once upgraded.
    fn upgrade(&mut self, now: Instant, buf: &mut BytesMut) -> Result<bool, WsSessionError> {
        let (n, outcome) = match parse_http_request_head(buf) {
            Ok(None) => return Ok(false),
            Err(e) => return self.fail_http(e.http_status(), WsSessionError::Handshake(e)),
            Ok(Some((head, n))) => (n, self.check_upgrade(head)),
        };
        let (accept, protocol) = match outcome {
            Ok(ok) => ok,
            Err((status, err)) => return self.fail_http(status, err),
        };
        buf.advance(n);
        self.stats.bytes_received += n as u64;
        self.protocol = protocol;
        self.out
            .extend_from_slice(&ws::upgrade_response(&accept, protocol));
        self.phase = Phase::AwaitHello;
        self.upgrade_deadline = None;
        self.hello_deadline = Some(now + self.config.hello_timeout);
        self.next_ping = self.config.ping_interval.map(|i| now + i);
        Ok(true)
    }

    /// `(Sec-WebSocket-Accept, subprotocol)` or `(HTTP status, error)`.
    #[allow(clippy::type_complexity)]
    fn check_upgrade(
        &self,
        head: RequestHead<'_>,
    ) -> Result<(String, Option<&'static str>), (u16, WsSessionError)> {
        if head.path() != self.config.path {
            return Err((404, WsSessionError::NotFound));
        }
        let req = UpgradeRequest::from_head(head)
            .map_err(|e| (e.http_status(), WsSessionError::Handshake(e)))?;
        let origin_ok = match req.origin {
            Some(o) => origin_allowed(&self.config.allowed_origins, o, req.host),
            None => !self.config.require_origin,
        };
        if !origin_ok {
            return Err((403, WsSessionError::Forbidden));
        }
        let protocol = req.offers_protocol(SUBPROTOCOL).then_some(SUBPROTOCOL);
        Ok((ws::accept_key(req.key), protocol))
    }

    fn on_message(&mut self, m: Message) -> Result<(), WsSessionError> {
        match m {
            Message::Ping(p) => write_frame(&mut self.out, Opcode::Pong, &[&p]),
            Message::Pong(_) => {}
            Message::Close(code, reason) => {
                match code {
                    Some(c) => write_close(&mut self.out, c, ""),
                    None => write_frame(&mut self.out, Opcode::Close, &[]),
                }
                self.closing = true;
                self.clear_timers();
                self.events.push_back(WsEvent::Closed {
                    code: code.unwrap_or(close_code::NO_STATUS),
                    reason: String::from_utf8_lossy(&reason).into_owned(),
                });
            }
            Message::Text(t) => match decode_client(&t) {
                Ok(msg) => self.on_client_message(msg)?,
                Err(e) => match e.close_code() {
                    Some(code) => {
                        if e == SignalError::UnknownType {
                            self.send(&ServerMessage::error(e.error_code(), e.reason(), None));
                        }
                        return self.fail(code, e.reason(), WsSessionError::Signal(e));
                    }
                    None => {
                        self.stats.bad_messages += 1;
                        self.send(&ServerMessage::error(e.error_code(), e.reason(), None));
                    }
                },
            },
            Message::Binary(b) => match self.phase {
                Phase::Open => match signal::parse_audio_frame_with(&b, self.opus) {
                    Ok((
                        AudioFrameHeader {
                            codec,
                            call,
                            timestamp,
                        },
                        range,
                    )) => {
                        if codec == signal::codec::OPUS
                            && b.get(range.clone())
                                .and_then(signal::opus_packet_ticks)
                                .is_none()
                        {
                            // A bad packet is the client's problem, not the call's: drop it.
                            self.stats.audio_malformed += 1;
                            self.events.push_back(WsEvent::AudioMalformed { call });
                            return Ok(());
                        }
                        self.stats.audio_frames += 1;
                        self.events.push_back(WsEvent::Audio {
                            call,
                            codec,
                            timestamp,
                            payload: b.slice(range),
                        });
                    }
                    Err(e) => {
                        let code = e.close_code().unwrap_or(close_code::UNSUPPORTED_DATA);
                        return self.fail(code, e.reason(), WsSessionError::Signal(e));
                    }
                },
                Phase::HelloPending => self.stats.audio_dropped += 1,
                Phase::AwaitHello | Phase::Upgrade => return self.not_authenticated(),
            },
        }
        Ok(())
    }

    fn on_client_message(&mut self, msg: ClientMessage) -> Result<(), WsSessionError> {
        match (self.phase, msg) {
            (Phase::AwaitHello, msg @ ClientMessage::Hello { .. }) => {
                if let ClientMessage::Hello { codecs, .. } = &msg {
                    self.offered.clone_from(codecs);
                }
                self.phase = Phase::HelloPending;
                self.hello_deadline = None;
                self.stats.messages += 1;
                self.events.push_back(WsEvent::Message(msg));
            }
            (Phase::AwaitHello | Phase::Upgrade, _) => return self.not_authenticated(),
            (Phase::HelloPending | Phase::Open, ClientMessage::Hello { .. }) => {
                self.stats.bad_messages += 1;
                self.send(&ServerMessage::error(
                    "bad_message",
                    "hello already sent",
                    None,
                ));
            }
            (Phase::HelloPending, msg) => {
                if self.held.len() >= MAX_HELD_MESSAGES {
                    return self.fail(
                        close_code::POLICY,
                        "authenticate first",
                        WsSessionError::NotAuthenticated,
                    );
                }
                self.held.push(msg);
            }
            (Phase::Open, ClientMessage::Ping) => {
                self.send(&ServerMessage::Pong);
            }
            (Phase::Open, msg) => {
                self.stats.messages += 1;
                self.events.push_back(WsEvent::Message(msg));
            }
        }
        Ok(())
    }

    fn not_authenticated(&mut self) -> Result<(), WsSessionError> {
        self.fail(
            close_code::POLICY,
            "authenticate first",
            WsSessionError::NotAuthenticated,
        )
    }

    /// Queues a close frame and the `Closed` event; returns `Err(err)`.
    fn fail<T>(
        &mut self,
        code: u16,
        reason: &str,
        err: WsSessionError,
    ) -> Result<T, WsSessionError> {
        self.close(code, reason);
        Err(err)
    }

    /// Queues an HTTP error response; returns `Err(err)`.
    fn fail_http<T>(&mut self, status: u16, err: WsSessionError) -> Result<T, WsSessionError> {
        self.out
            .extend_from_slice(&ws::http_error_response(status, status_text(status)));
        self.closing = true;
        self.clear_timers();
        Err(err)
    }

    fn clear_timers(&mut self) {
        self.upgrade_deadline = None;
        self.hello_deadline = None;
        self.next_ping = None;
    }

    /// The next instant `handle_timeout` must be called, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.upgrade_deadline,
            self.hello_deadline,
            self.next_ping,
            self.dead_peer_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When the peer will be declared dead if nothing arrives before (after the upgrade).
    pub fn dead_peer_deadline(&self) -> Option<Instant> {
        if self.closing || self.phase == Phase::Upgrade {
            return None;
        }
        self.config.dead_peer.map(|d| self.last_input + d)
    }

    /// Advances timers: upgrade and hello deadlines, pings and dead-peer detection.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), WsSessionError> {
        if self.closing {
            return Ok(());
        }
        if self.upgrade_deadline.is_some_and(|d| now >= d) {
            self.closing = true;
            self.clear_timers();
            return Err(WsSessionError::UpgradeTimeout);
        }
        if self.hello_deadline.is_some_and(|d| now >= d) {
            return self.fail(
                close_code::POLICY,
                "hello timeout",
                WsSessionError::HelloTimeout,
            );
        }
        if self.dead_peer_deadline().is_some_and(|d| now >= d) {
            return self.fail(
                close_code::GOING_AWAY,
                "nothing received: dead peer",
                WsSessionError::DeadPeer,
            );
        }
        if let (Some(at), Some(interval)) = (self.next_ping, self.config.ping_interval) {
            if now >= at {
                self.stats.pings_sent += 1;
                write_frame(
                    &mut self.out,
                    Opcode::Ping,
                    &[&self.stats.pings_sent.to_be_bytes()],
                );
                self.next_ping = Some(now + interval);
            }
        }
        Ok(())
    }

    /// The next queued event.
    pub fn poll_event(&mut self) -> Option<WsEvent> {
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

    /// Accepts the pending `hello`: sends `welcome` for `user` and releases the messages that
    /// arrived meanwhile.
    pub fn authenticated(&mut self, user: &str) {
        if self.phase != Phase::HelloPending || self.closing {
            return;
        }
        self.phase = Phase::Open;
        let offered = self.offered.take();
        let is_g711 = |c: &str| c == "pcmu" || c == "pcma";
        let codecs: Vec<String> = self
            .config
            .codecs
            .iter()
            .filter(|c| is_g711(c) || offered.as_ref().is_some_and(|o| o.iter().any(|x| x == *c)))
            .cloned()
            .collect();
        self.opus = codecs.iter().any(|c| c == "opus");
        // Numbers only for a client that negotiates (one that sent `codecs`); the reply to an
        // old client stays what it was.
        let payload_types: BTreeMap<String, u8> = if offered.is_some() {
            codecs
                .iter()
                .filter_map(|c| Some((c.clone(), signal::codec::number(c)?)))
                .collect()
        } else {
            BTreeMap::new()
        };
        self.send(&ServerMessage::Welcome {
            version: signal::PROTOCOL_VERSION,
            user: user.to_owned(),
            codecs,
            payload_types,
            server: self.config.server_name.clone(),
        });
        for msg in std::mem::take(&mut self.held) {
            let _ = self.on_client_message(msg);
        }
    }

    /// Refuses the pending `hello`: an `error` with `code` (e.g. `bad_token`) and `reason`, then
    /// close 1008 with `reason`.
    pub fn reject(&mut self, code: &'static str, reason: &str) {
        self.send(&ServerMessage::error(code, reason.to_owned(), None));
        self.close(close_code::POLICY, reason);
    }

    /// Sends a signalling message (never dropped). `false` if not upgraded or closing.
    pub fn send(&mut self, msg: &ServerMessage) -> bool {
        if self.phase == Phase::Upgrade || self.closing {
            return false;
        }
        write_frame(
            &mut self.out,
            Opcode::Text,
            &[encode_server(msg).as_bytes()],
        );
        true
    }

    /// Sends one audio frame. Dropped (returns `false`) before authentication, while closing,
    /// when the payload exceeds 1024 bytes, or when unpolled output exceeds `max_output_bytes`.
    pub fn send_audio(&mut self, call: CallId, codec: u8, timestamp: u32, payload: &[u8]) -> bool {
        if self.phase != Phase::Open
            || self.closing
            || payload.len() > signal::MAX_AUDIO_PAYLOAD
            || self.out.len() > self.config.max_output_bytes
        {
            self.stats.audio_out_dropped += 1;
            return false;
        }
        let mut header = [0u8; signal::AUDIO_HEADER_LEN];
        signal::write_audio_header(
            &mut header,
            AudioFrameHeader {
                codec,
                call,
                timestamp,
            },
        );
        write_frame(&mut self.out, Opcode::Binary, &[&header, payload]);
        true
    }

    /// Starts the closing handshake with `code` and `reason` (≤ 123 bytes, truncated), emits
    /// `Closed`; the session is then closing. Before the upgrade it just marks the session
    /// closing.
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.clear_timers();
        if self.phase == Phase::Upgrade {
            return;
        }
        write_close(&mut self.out, code, reason);
        self.events.push_back(WsEvent::Closed {
            code,
            reason: ws::truncate_utf8(reason, ws::MAX_CLOSE_REASON).to_owned(),
        });
    }
}
