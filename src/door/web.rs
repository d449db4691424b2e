//! The web listener: serves the softphone page and upgrades `/ws` to the WebSocket client
//! protocol (README, "WebSocket protocol"); one connection driver per socket, like RTMP's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::{recv_audio, recv_opt_unbounded};
use crate::call::driver::{
    client_audio_queue, new_leg_id, CallRef, ClientAudioRx, ClientAudioTx, ClientSink, LegId,
    ToClient,
};
use crate::call::ClientCommand;
use crate::media::{ClientCaps, Codec, MediaFrame};
use crate::ops::metrics as m;
use crate::relay::Shared;
use crate::session::Identity;
use crate::ws::{WsEvent, WsServerSession, WsSessionConfig, WsSessionError};
use skybridge_codecs::signal::{self, CallId, ClientMessage, HoldBy, ServerMessage};
use skybridge_codecs::websocket::{parse_http_request_head, WsError};

const TRANSPORT: &str = "websocket";

/// Accepts connections until `stop` turns true.
pub async fn serve(listener: TcpListener, shared: Shared, stop: watch::Receiver<bool>) {
    super::accept_loop(
        listener,
        shared,
        stop,
        TRANSPORT,
        |stream, shared, peer| async move {
            let _ = stream.set_nodelay(true);
            serve_stream(stream, BytesMut::new(), shared, peer, false).await;
        },
    )
    .await;
}

/// Paths answered by the operations server (`crate::ops::http`) where `ops` is on.
const OPS_PATHS: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

/// Reads the HTTP request head (bounded in size and time) from any byte stream, starting with
/// `initial` (bytes a classifier already read), and dispatches: `/ws` → WebSocket, page
/// assets → 200, with `ops` also `/metrics`, `/healthz`, `/readyz` → the operations server,
/// anything else → 404/405.
pub async fn serve_stream<S>(
    mut stream: S,
    initial: BytesMut,
    shared: Shared,
    peer: SocketAddr,
    ops: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let deadline =
        Instant::now() + Duration::from_secs(shared.config.web.handshake_timeout_secs.max(1));
    let mut buf = initial;
    buf.reserve(4096);
    let (path, method) = loop {
        match parse_http_request_head(&buf) {
            Ok(Some((head, _))) => break (head.path().to_string(), head.method.to_string()),
            Ok(None) => {}
            Err(e) => {
                let status = if matches!(e, WsError::HeadTooLarge | WsError::TooManyHeaders) {
                    431
                } else {
                    400
                };
                warn!(%peer, error = %e, "bad HTTP request");
                metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => "bad_request").increment(1);
                let _ = stream
                    .write_all(&simple_response(status, "text/plain", b"bad request\n"))
                    .await;
                let _ = stream.shutdown().await;
                return;
            }
        }
        let read = tokio::time::timeout_at(deadline.into(), stream.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => {
                info!(%peer, "HTTP request not complete before the deadline; closing");
                metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => "deadline").increment(1);
                return;
            }
        }
    };
    if path == "/v1/calls" || path.starts_with("/v1/calls/") {
        super::tunnel::serve_api(stream, buf, shared, peer).await;
        return;
    }
    if ops && OPS_PATHS.contains(&path.as_str()) {
        if let Some(state) = shared.ops.clone() {
            // The operations server reads the request itself: hand it what was read so far.
            let replay = super::shared::Prefixed::new(buf.freeze(), stream);
            if let Err(e) = crate::ops::http::handle_connection(replay, &state).await {
                debug!(%peer, error = %e, "ops request failed");
            }
            return;
        }
    }
    if path == "/ws" {
        metrics::counter!(m::CLIENT_CONNECTIONS_TOTAL, "transport" => TRANSPORT).increment(1);
        metrics::gauge!(m::CLIENT_CONNECTIONS_ACTIVE, "transport" => TRANSPORT).increment(1.0);
        let mut conn = WsConnection::new(shared, peer);
        conn.run(stream, buf).await;
        conn.leave_all();
        metrics::gauge!(m::CLIENT_CONNECTIONS_ACTIVE, "transport" => TRANSPORT).decrement(1.0);
        return;
    }
    let response = match (method.as_str(), crate::web::asset(&path)) {
        ("GET", Some((content_type, body))) => simple_response(200, content_type, body),
        // Browsers ask for it unprompted; an empty answer keeps their consoles clean.
        ("GET", None) if path == "/favicon.ico" => simple_response(204, "image/x-icon", b""),
        ("GET", None) => simple_response(404, "text/plain", b"not found\n"),
        _ => simple_response(405, "text/plain", b"method not allowed\n"),
    };
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

fn simple_response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: default-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// One call as this connection sees it.
struct WsCall {
    call: CallRef,
    leg: LegId,
    /// Offered to us and not answered yet.
    ringing: bool,
    frames_in: u64,
    frames_out: u64,
    dropped: u64,
    started: Instant,
    /// (client leg, SIP leg) codecs once answered.
    codecs: Option<(Codec, Codec)>,
}

struct WsConnection {
    shared: Shared,
    peer: SocketAddr,
    identity: Option<Identity>,
    presence: Option<crate::presence::PresenceGuard>,
    calls: HashMap<CallId, WsCall>,
    by_leg: HashMap<LegId, CallId>,
    next_call: CallId,
    sink_audio: ClientAudioTx,
    sink_control: mpsc::UnboundedSender<ToClient>,
    audio_rx: Option<ClientAudioRx>,
    control_rx: Option<mpsc::UnboundedReceiver<ToClient>>,
    /// The client negotiated Opus in `hello`/`welcome`.
    opus: bool,
}

impl WsConnection {
    fn new(shared: Shared, peer: SocketAddr) -> WsConnection {
        let (sink_audio, audio_rx) = client_audio_queue(&shared.config, TRANSPORT, true);
        let (sink_control, control_rx) = mpsc::unbounded_channel();
        WsConnection {
            shared,
            peer,
            identity: None,
            presence: None,
            calls: HashMap::new(),
            by_leg: HashMap::new(),
            next_call: 1,
            sink_audio,
            sink_control,
            audio_rx: Some(audio_rx),
            control_rx: Some(control_rx),
            opus: false,
        }
    }

    fn caps(&self) -> ClientCaps {
        ClientCaps::WebSocket { opus: self.opus }
    }

    fn sink(&self) -> ClientSink {
        ClientSink {
            audio: self.sink_audio.clone(),
            control: self.sink_control.clone(),
            caps: self.caps(),
            wants_audio: true,
        }
    }

    fn session_config(&self) -> WsSessionConfig {
        let web = &self.shared.config.web;
        WsSessionConfig {
            allowed_origins: web.allowed_origins.clone(),
            upgrade_timeout: Duration::from_secs(web.handshake_timeout_secs.max(1)),
            hello_timeout: Duration::from_secs(web.handshake_timeout_secs.max(1)),
            // Dead-peer detection: ping every third; nothing (not even a pong) for the whole
            // dead-peer time closes the connection 1001 and hangs up its calls.
            ping_interval: Some(self.shared.config.dead_peer() / 3),
            dead_peer: Some(self.shared.config.dead_peer()),
            ..WsSessionConfig::default()
        }
    }

    async fn run<S>(&mut self, mut stream: S, mut inbuf: BytesMut)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut session = WsServerSession::new(self.session_config(), Instant::now());
        let mut audio_rx = self.audio_rx.take();
        let mut control_rx = self.control_rx.take();
        let mut pending_input = true;
        loop {
            if pending_input {
                pending_input = false;
                if let Err(e) = session.handle_input(Instant::now(), &mut inbuf) {
                    self.protocol_error(&e.to_string(), e.reason());
                    let _ = tokio::time::timeout(
                        super::CLOSE_WRITE_WAIT,
                        flush(&mut session, &mut stream),
                    )
                    .await;
                    return;
                }
            } else {
                if inbuf.capacity() - inbuf.len() < 4096 {
                    inbuf.reserve(16 * 1024);
                }
                let wake = session.poll_timeout();
                tokio::select! {
                    r = stream.read_buf(&mut inbuf) => match r {
                        Ok(0) | Err(_) => {
                            debug!("client closed the connection");
                            return;
                        }
                        Ok(n) => {
                            metrics::counter!(m::BYTES_TOTAL, "leg" => TRANSPORT, "direction" => "in").increment(n as u64);
                            pending_input = true;
                            continue;
                        }
                    },
                    Some((leg, frame)) = recv_audio(&mut audio_rx) => self.play_audio(&mut session, leg, frame),
                    Some(msg) = recv_opt_unbounded(&mut control_rx) => self.on_call_message(&mut session, msg),
                    _ = crate::sip_endpoint::sleep_until_opt(wake) => {
                        if let Err(e) = session.handle_timeout(Instant::now()) {
                            if e == WsSessionError::DeadPeer {
                                let after = self.shared.config.dead_peer();
                                super::dead_peer(TRANSPORT, self.peer, after, self.calls.len());
                                // The 1001 close is best effort: a dead peer may never take it.
                                let closing = flush(&mut session, &mut stream);
                                let _ = tokio::time::timeout(super::CLOSE_WRITE_WAIT, closing).await;
                                return;
                            }
                            self.protocol_error(&e.to_string(), e.reason());
                            let _ = tokio::time::timeout(super::CLOSE_WRITE_WAIT, flush(&mut session, &mut stream)).await;
                            return;
                        }
                    }
                }
            }
            while let Some(event) = session.poll_event() {
                if let WsEvent::Closed { code, reason } = &event {
                    debug!(code, %reason, "websocket closed");
                    let _ = tokio::time::timeout(
                        super::CLOSE_WRITE_WAIT,
                        flush(&mut session, &mut stream),
                    )
                    .await;
                    let _ = stream.shutdown().await;
                    return;
                }
                self.on_event(&mut session, event);
            }
            let deadline = session.dead_peer_deadline();
            match super::write_by(deadline, flush(&mut session, &mut stream)).await {
                super::Written::Done => {}
                super::Written::Failed => return,
                super::Written::PeerDead => {
                    let after = self.shared.config.dead_peer();
                    super::dead_peer(TRANSPORT, self.peer, after, self.calls.len());
                    return;
                }
            }
            if session.is_closing() {
                let _ = stream.shutdown().await;
                return;
            }
        }
    }

    fn protocol_error(&self, error: &str, reason: &'static str) {
        warn!(peer = %self.peer, %error, "websocket client closed for bad input");
        metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => reason)
            .increment(1);
    }

    fn on_event(&mut self, session: &mut WsServerSession, event: WsEvent) {
        match event {
            WsEvent::Message(msg) => self.on_message(session, msg),
            WsEvent::Audio {
                call,
                codec,
                timestamp,
                payload,
            } => {
                let Some(c) = self.calls.get_mut(&call) else {
                    metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => "unknown_call")
                        .increment(1);
                    return;
                };
                let Some(codec) = codec_of_number(codec) else {
                    metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => "unsupported_codec")
                        .increment(1);
                    return;
                };
                metrics::counter!(m::PACKETS_TOTAL, "leg" => TRANSPORT, "direction" => "in")
                    .increment(1);
                c.frames_in += 1;
                let frame = MediaFrame {
                    codec,
                    timestamp,
                    marker: false,
                    payload,
                };
                if !c.call.audio(frame) {
                    c.dropped += 1;
                    metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => "call_busy")
                        .increment(1);
                }
            }
            WsEvent::AudioMalformed { call } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.dropped += 1;
                }
                debug!(peer = %self.peer, call, "malformed Opus packet dropped");
                metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => m::drop_reason::MALFORMED)
                    .increment(1);
            }
            WsEvent::Closed { .. } => {}
        }
    }

    fn on_message(&mut self, session: &mut WsServerSession, msg: ClientMessage) {
        let err = |session: &mut WsServerSession,
                   code: &'static str,
                   reason: &str,
                   call: Option<CallId>| {
            session.send(&ServerMessage::error(code, reason.to_string(), call));
        };
        match msg {
            ClientMessage::Hello { token, .. } => {
                match self.shared.authority.authenticate(token.as_deref()) {
                    Ok(id) => {
                        session.authenticated(id.name());
                        // Before the sink exists: it carries what the client decodes.
                        self.opus = session.opus();
                        if let Identity::User(name) = &id {
                            self.presence = Some(self.shared.presence.sign_in(name, self.sink()));
                        }
                        info!(peer = %self.peer, user = id.name(), opus = self.opus, "websocket client signed in");
                        self.identity = Some(id);
                    }
                    Err(why) => {
                        warn!(peer = %self.peer, reason = why.label(), "websocket client refused");
                        metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => why.label()).increment(1);
                        session.reject(why.label(), why.description());
                    }
                }
            }
            ClientMessage::Call { target } => {
                let Some(identity) = self.identity.clone() else {
                    return;
                };
                let route = match self.shared.authority.route(&identity, &target) {
                    Ok(r) => r,
                    Err(why) => {
                        warn!(peer = %self.peer, user = identity.name(), %target, reason = why.label(), "dial refused");
                        metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => why.label()).increment(1);
                        err(session, why.label(), why.description(), None);
                        return;
                    }
                };
                let Some(id) = self.new_call_id() else {
                    err(
                        session,
                        "too_many_calls",
                        "too many calls on this connection",
                        None,
                    );
                    return;
                };
                let leg = new_leg_id();
                match self.shared.calls.start(&identity, &route, leg, self.sink()) {
                    Ok(call) => {
                        self.insert_call(id, call, leg, false);
                        session.send(&ServerMessage::Calling { call: id, target });
                    }
                    Err(e) => {
                        metrics::counter!(m::CALLS_TOTAL, "outcome" => "rejected").increment(1);
                        err(session, e.label(), "the call could not be placed", None);
                    }
                }
            }
            ClientMessage::Answer { call } => match self.calls.get_mut(&call) {
                Some(c) if c.ringing => {
                    c.ringing = false;
                    c.started = Instant::now();
                    c.call.answer(c.leg);
                    // Call waiting: answering one call holds the others.
                    for (other, oc) in &self.calls {
                        if *other != call && !oc.ringing {
                            oc.call.hold(true);
                        }
                    }
                }
                _ => err(session, "unknown_call", "no such ringing call", Some(call)),
            },
            ClientMessage::Reject { call, code } => match self.calls.remove(&call) {
                Some(c) if c.ringing => {
                    self.by_leg.remove(&c.leg);
                    let code = match code {
                        Some(603) => 603,
                        _ => 486,
                    };
                    c.call.reject(c.leg, code);
                    session.send(&ServerMessage::Hangup {
                        call,
                        code,
                        reason: "rejected".into(),
                    });
                }
                Some(c) => {
                    self.calls.insert(call, c);
                    err(
                        session,
                        "not_ringing",
                        "the call is not ringing",
                        Some(call),
                    );
                }
                None => err(session, "unknown_call", "no such call", Some(call)),
            },
            ClientMessage::Hangup { call } => match self.calls.get(&call) {
                Some(c) if c.ringing => c.call.reject(c.leg, 486),
                Some(c) => c.call.hangup(),
                None => err(session, "unknown_call", "no such call", Some(call)),
            },
            ClientMessage::Dtmf { call, digits } => match self.calls.get(&call) {
                Some(c) => c.call.dtmf(c.leg, digits),
                None => err(session, "unknown_call", "no such call", Some(call)),
            },
            ClientMessage::Hold { call } | ClientMessage::Unhold { call }
                if !self.calls.contains_key(&call) =>
            {
                err(session, "unknown_call", "no such call", Some(call));
            }
            ClientMessage::Hold { call } => {
                if let Some(c) = self.calls.get(&call) {
                    c.call.hold(true);
                }
            }
            ClientMessage::Unhold { call } => {
                if let Some(c) = self.calls.get(&call) {
                    c.call.hold(false);
                }
            }
            ClientMessage::Stats { call } => {
                let ids: Vec<CallId> = match call {
                    Some(id) => vec![id],
                    None => self.calls.keys().copied().collect(),
                };
                for id in ids {
                    if let Some(c) = self.calls.get(&id) {
                        session.send(&ServerMessage::Stats {
                            call: id,
                            packets_in: c.frames_out,
                            packets_out: c.frames_in,
                            dropped: c.dropped,
                            jitter_ms: 0,
                            duration_ms: c.started.elapsed().as_millis() as u64,
                            codec: c.codecs.map(|(client, _)| codec_name(client).into()),
                            sip_codec: c.codecs.map(|(_, sip)| codec_name(sip).into()),
                            transcoding: c.codecs.map(|(client, sip)| client != sip),
                        });
                    }
                }
            }
            ClientMessage::Ping => {}
        }
    }

    fn new_call_id(&mut self) -> Option<CallId> {
        if self.calls.len() >= 8 {
            return None;
        }
        for _ in 0..=u16::MAX {
            let id = self.next_call;
            self.next_call = self.next_call.wrapping_add(1).max(1);
            if !self.calls.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    fn insert_call(&mut self, id: CallId, call: CallRef, leg: LegId, ringing: bool) {
        self.by_leg.insert(leg, id);
        self.calls.insert(
            id,
            WsCall {
                call,
                leg,
                ringing,
                frames_in: 0,
                frames_out: 0,
                dropped: 0,
                started: Instant::now(),
                codecs: None,
            },
        );
    }

    fn remove_leg(&mut self, leg: LegId) -> Option<CallId> {
        let id = self.by_leg.remove(&leg)?;
        self.calls.remove(&id);
        Some(id)
    }

    fn play_audio(&mut self, session: &mut WsServerSession, leg: LegId, frame: MediaFrame) {
        let Some(id) = self.by_leg.get(&leg).copied() else {
            return;
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(number) = number_of_codec(frame.codec) else {
            c.dropped += 1;
            metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => m::drop_reason::UNSUPPORTED_CODEC)
                .increment(1);
            return;
        };
        if session.send_audio(id, number, frame.timestamp, &frame.payload) {
            c.frames_out += 1;
            metrics::counter!(m::PACKETS_TOTAL, "leg" => TRANSPORT, "direction" => "out")
                .increment(1);
        } else {
            c.dropped += 1;
            metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => "client_behind").increment(1);
        }
    }

    fn on_call_message(&mut self, session: &mut WsServerSession, msg: ToClient) {
        let ToClient { leg, call, cmd } = msg;
        if let ClientCommand::Incoming { from, codec } = cmd {
            let Some(id) = self.new_call_id() else {
                call.reject(leg, 486);
                return;
            };
            self.insert_call(id, call, leg, true);
            session.send(&ServerMessage::Incoming {
                call: id,
                from,
                codec: codec_name(self.caps().choose(codec)).into(),
            });
            return;
        }
        let Some(id) = self.by_leg.get(&leg).copied() else {
            return;
        };
        let out = match cmd {
            ClientCommand::Ringing { code } => ServerMessage::Ringing { call: id, code },
            ClientCommand::Answered { codec, sip } => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.started = Instant::now();
                    c.codecs = Some((codec, sip));
                }
                ServerMessage::Answered {
                    call: id,
                    codec: codec_name(codec).into(),
                }
            }
            ClientCommand::Ended { code, reason } => {
                self.remove_leg(leg);
                ServerMessage::Hangup {
                    call: id,
                    code,
                    reason,
                }
            }
            ClientCommand::AnsweredElsewhere => {
                self.remove_leg(leg);
                ServerMessage::AnsweredElsewhere { call: id }
            }
            ClientCommand::Held { by_remote } => ServerMessage::Held {
                call: id,
                by: hold_by(by_remote),
            },
            ClientCommand::Unheld { by_remote } => ServerMessage::Unheld {
                call: id,
                by: hold_by(by_remote),
            },
            ClientCommand::Dtmf(d) => ServerMessage::Dtmf {
                call: id,
                digit: d.to_string(),
            },
            ClientCommand::Error { code, reason } => ServerMessage::error(code, reason, Some(id)),
            ClientCommand::Audio(frame) => {
                self.play_audio(session, leg, frame);
                return;
            }
            ClientCommand::Incoming { .. } => return,
        };
        session.send(&out);
    }

    fn leave_all(&mut self) {
        for (_, c) in self.calls.drain() {
            if c.ringing {
                c.call.reject(c.leg, 480);
            } else {
                c.call.detach(c.leg);
            }
        }
        self.by_leg.clear();
        self.presence = None;
    }
}

fn codec_name(codec: Codec) -> &'static str {
    codec.name()
}

/// The codec of an audio frame's `codec` byte (only numbers the session let through arrive).
fn codec_of_number(number: u8) -> Option<Codec> {
    match number {
        signal::codec::PCMU => Some(Codec::Pcmu),
        signal::codec::PCMA => Some(Codec::Pcma),
        signal::codec::OPUS => Some(Codec::Opus),
        _ => None,
    }
}

/// The `codec` byte for frames of `codec` toward a WebSocket client.
fn number_of_codec(codec: Codec) -> Option<u8> {
    match codec {
        Codec::Pcmu => Some(signal::codec::PCMU),
        Codec::Pcma => Some(signal::codec::PCMA),
        Codec::Opus => Some(signal::codec::OPUS),
        _ => None,
    }
}

fn hold_by(by_remote: bool) -> HoldBy {
    if by_remote {
        HoldBy::Remote
    } else {
        HoldBy::Local
    }
}

/// Writes everything the session has queued. False if the socket failed.
async fn flush<S: AsyncWrite + Unpin>(
    session: &mut WsServerSession,
    stream: &mut S,
) -> std::io::Result<()> {
    while let Some(bytes) = session.poll_output() {
        metrics::counter!(m::BYTES_TOTAL, "leg" => TRANSPORT, "direction" => "out")
            .increment(bytes.len() as u64);
        stream.write_all(&bytes).await?;
    }
    // TLS streams hold records until flushed; a no-op on TCP.
    stream.flush().await
}
