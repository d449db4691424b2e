//! RTP over TCP (RFC 4571): the tunnel listener, the HTTP API that sets tunnel calls up
//! (`POST /v1/calls`, `GET /v1/calls/{id}/rtp`, `DELETE /v1/calls/{id}`, served from the web
//! listener) and one driver per connection. The rules live in [`crate::tunnel`]; README,
//! "Calling over TCP (RFC 4571)", documents the binding.
//!
//! Every driver here is generic over the stream, so the shared port can hand over a stream it
//! already read the first bytes of.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::call::client_queue::{self, AudioRx, AudioTx};
use crate::call::driver::{client_audio_queue, new_leg_id, CallRef, ClientSink, ToClient};
use crate::call::ClientCommand;
use crate::config::Config;
use crate::media::{Codec, MediaFrame};
use crate::ops::metrics as m;
use crate::relay::Shared;
use crate::session::{Identity, Route};
use crate::tunnel::{BindingTable, Packet, PacketReader, PacketWriter, ReaderLimits, TunnelError};
use skybridge_codecs::websocket::parse_http_request_head;

const TRANSPORT: &str = "rfc4571";
/// Largest `POST /v1/calls` body.
const MAX_BODY: usize = 4096;

/// What a binding carries from the API request to the connections that bind it.
#[derive(Debug)]
pub struct CallSlot {
    id: u64,
    key: u128,
    identity: Identity,
    route: Route,
    /// The receive-only connection, once attached: audio toward the client goes there.
    receiver: Mutex<Option<AudioTx<Bytes>>>,
    /// The call, once the tunnel bound.
    call: Mutex<Option<CallRef>>,
    /// Turns true when the tunnel connection is gone (the receiver stops then too).
    ended: watch::Sender<bool>,
    /// The codec the client asked for (sent and received), or G.711 as the SIP side chose.
    codec: Option<Codec>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The relay's tunnel bindings and bound calls.
#[derive(Clone)]
pub struct Tunnels {
    table: Arc<Mutex<BindingTable<Arc<CallSlot>>>>,
    active: Arc<Mutex<HashMap<u64, Arc<CallSlot>>>>,
    next_id: Arc<AtomicU64>,
    addr: Arc<OnceLock<SocketAddr>>,
    window: Duration,
}

impl Tunnels {
    /// Whether a pending binding waits for a tunnel whose first RTP packet carries `ssrc`.
    pub fn expects_ssrc(&self, ssrc: u32) -> bool {
        lock(&self.table).expects_ssrc(ssrc)
    }

    /// Bindings live `window`; at most `max_pending` wait at once.
    pub fn new(window: Duration, max_pending: usize) -> Tunnels {
        Tunnels {
            table: Arc::new(Mutex::new(BindingTable::new(window, max_pending.max(1)))),
            active: Arc::new(Mutex::new(HashMap::new())),
            next_id: Arc::new(AtomicU64::new(1)),
            addr: Arc::new(OnceLock::new()),
            window,
        }
    }

    /// Records where the tunnel listener is (told to API clients).
    pub fn set_addr(&self, addr: SocketAddr) {
        let _ = self.addr.set(addr);
    }

    /// Where the tunnel listener is, if it runs.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr.get().copied()
    }
}

/// Accepts tunnel connections until `stop` turns true.
pub async fn serve(listener: TcpListener, shared: Shared, stop: watch::Receiver<bool>) {
    super::accept_loop(listener, shared, stop, TRANSPORT, |stream, shared, peer| {
        let _ = stream.set_nodelay(true);
        serve_stream(stream, BytesMut::new(), shared, peer)
    })
    .await;
}

fn reject(peer: SocketAddr, why: TunnelError) {
    warn!(%peer, reason = why.label(), error = %why, "tunnel connection refused");
    metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => why.label())
        .increment(1);
}

/// Serves one tunnel connection; `first` holds bytes already read from it (by a shared port).
/// The first RTP packet must carry an SSRC handed out by `POST /v1/calls` to this peer's IP
/// within the bind window; then the call starts and audio flows both ways until either side
/// ends it.
pub async fn serve_stream<S>(stream: S, first: BytesMut, shared: Shared, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    metrics::counter!(m::CLIENT_CONNECTIONS_TOTAL, "transport" => TRANSPORT).increment(1);
    metrics::gauge!(m::CLIENT_CONNECTIONS_ACTIVE, "transport" => TRANSPORT).increment(1.0);
    run(stream, first, &shared, peer).await;
    metrics::gauge!(m::CLIENT_CONNECTIONS_ACTIVE, "transport" => TRANSPORT).decrement(1.0);
}

async fn run<S>(stream: S, first: BytesMut, shared: &Shared, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = &shared.config.tunnel;
    let read_timeout = Duration::from_secs(cfg.read_timeout_secs.max(1));
    // Tunnel clients send RTP/RTCP all the time: nothing for the dead-peer time means gone.
    let dead_peer = shared.config.tunnel_dead_peer();
    let mut reader = PacketReader::new(ReaderLimits {
        max_frame_len: cfg.max_frame_bytes,
        max_empty_run: cfg.max_empty_frames,
    });
    let (mut rd, wr) = tokio::io::split(stream);
    let mut buf = first;

    // Binding: the first packet, within the read deadline.
    let deadline = Instant::now() + read_timeout;
    let first_packet = loop {
        match reader.next(&mut buf) {
            Ok(Some(p)) => break p,
            Ok(None) => {}
            Err(e) => return reject(peer, e),
        }
        buf.reserve(2048);
        match tokio::time::timeout_at(deadline.into(), rd.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                debug!(%peer, "tunnel closed before its first packet");
                return;
            }
            Ok(Ok(n)) => {
                metrics::counter!(m::BYTES_TOTAL, "leg" => TRANSPORT, "direction" => "in")
                    .increment(n as u64);
            }
            Err(_) => {
                info!(%peer, "tunnel sent no complete packet before the read deadline; closing");
                metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => "deadline").increment(1);
                return;
            }
        }
    };
    let (ssrc, first_frame, first_raw) = match first_packet {
        Packet::Audio { ssrc, frame } => (ssrc, Some(frame), None),
        Packet::Unsupported { ssrc, packet, .. } => (ssrc, None, Some(packet)),
        Packet::Rtcp(_) => return reject(peer, TunnelError::NotRtp),
    };
    let bound = lock(&shared.tunnels.table).bind(Instant::now(), ssrc, peer.ip().to_canonical());
    let (id, slot) = match bound {
        Ok(b) => b,
        Err(e) => {
            warn!(%peer, ssrc, "tunnel binding refused");
            return reject(peer, e);
        }
    };

    // The call.
    // Drained at once by this loop (it never waits on the socket); the bound that matters is
    // on `out` below, right before the socket.
    let (sink_audio, mut audio_rx) = client_audio_queue(&shared.config, TRANSPORT, false);
    let (sink_control, mut control_rx) = mpsc::unbounded_channel::<ToClient>();
    let leg = new_leg_id();
    let sink = ClientSink {
        audio: sink_audio,
        control: sink_control,
        caps: match slot.codec {
            Some(c) => crate::media::ClientCaps::Fixed(c),
            None => crate::media::ClientCaps::G711,
        },
        wants_audio: true,
    };
    // From now on (the first packet included) payload type 96 is the codec the client chose.
    if let Some(codec) = slot.codec {
        reader.set_dynamic(codec);
    }
    let first_frame =
        first_frame.or_else(
            || match crate::tunnel::classify(first_raw?, slot.codec).ok()? {
                Packet::Audio { frame, .. } => Some(frame),
                _ => None,
            },
        );
    let call = match shared.calls.start(&slot.identity, &slot.route, leg, sink) {
        Ok(c) => c,
        Err(e) => {
            warn!(%peer, reason = e.label(), "tunnel call could not be placed");
            metrics::counter!(m::CALLS_TOTAL, "outcome" => "rejected").increment(1);
            slot.ended.send_replace(true);
            return;
        }
    };
    info!(%peer, call = id, user = slot.identity.name(), target = %slot.route.target, "tunnel bound; calling");
    *lock(&slot.call) = Some(call.clone());
    lock(&shared.tunnels.active).insert(id, Arc::clone(&slot));

    let (out_tx, out_rx) = framed_queue(&shared.config);
    let writer = tokio::spawn(write_frames(wr, out_rx));
    let mut conn = Connection {
        slot: Arc::clone(&slot),
        call: call.clone(),
        out: out_tx,
        writer: PacketWriter::new(rand::random(), rand::random()),
        outbuf: BytesMut::with_capacity(8 * 1024),
    };
    if let Some(frame) = first_frame {
        conn.audio_in(frame);
    }

    let mut last_input = Instant::now();
    let mut partial_since: Option<Instant> = None;
    loop {
        buf.reserve(2048);
        let dead_at = last_input + dead_peer;
        let stuck_at = partial_since.map(|t| t + read_timeout);
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    debug!(%peer, "tunnel closed by the client");
                    break;
                }
                Ok(n) => {
                    metrics::counter!(m::BYTES_TOTAL, "leg" => TRANSPORT, "direction" => "in").increment(n as u64);
                    last_input = Instant::now();
                    if let Err(e) = conn.read_packets(&mut reader, &mut buf) {
                        reject(peer, e);
                        break;
                    }
                    partial_since = if buf.is_empty() { None } else { partial_since.or(Some(last_input)) };
                }
            },
            Some((_, frame)) = audio_rx.recv() => conn.audio_out(&frame),
            Some(msg) = control_rx.recv() => match msg.cmd {
                ClientCommand::Audio(frame) => conn.audio_out(&frame),
                ClientCommand::Ended { code, reason } => {
                    info!(%peer, call = id, code, %reason, "tunnel call ended");
                    break;
                }
                ClientCommand::Incoming { .. } => msg.call.reject(msg.leg, 486),
                ClientCommand::AnsweredElsewhere => break,
                other => debug!(call = id, ?other, "tunnel call event"),
            },
            _ = tokio::time::sleep_until(dead_at.into()) => {
                super::dead_peer(TRANSPORT, peer, dead_peer, 1);
                break;
            }
            _ = crate::sip_endpoint::sleep_until_opt(stuck_at) => {
                info!(%peer, call = id, "tunnel stuck mid-frame past its read deadline; closing");
                metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => "deadline").increment(1);
                break;
            }
        }
    }
    call.detach(leg);
    lock(&shared.tunnels.active).remove(&id);
    lock(&slot.receiver).take();
    slot.ended.send_replace(true);
    writer.abort();
}

/// A queue of framed packets toward one tunnel or receive connection: frames that waited more
/// than `rtp.max_delay_ms` for a stalled socket are dropped, oldest first, and counted.
fn framed_queue(config: &Config) -> (AudioTx<Bytes>, AudioRx<Bytes>) {
    let bound = Duration::from_millis(config.rtp.max_delay_ms);
    let ptime = Duration::from_millis(u64::from(config.rtp.ptime_ms));
    client_queue::channel(
        bound,
        client_queue::capacity_for(bound, ptime),
        TRANSPORT,
        true,
    )
}

/// Writes queued frames to the client until the queue closes or the socket fails.
async fn write_frames<W: AsyncWrite + Unpin>(mut wr: W, mut rx: AudioRx<Bytes>) {
    while let Some(frame) = rx.recv().await {
        if wr.write_all(&frame).await.is_err() {
            return;
        }
        metrics::counter!(m::BYTES_TOTAL, "leg" => TRANSPORT, "direction" => "out")
            .increment(frame.len() as u64);
    }
    let _ = wr.shutdown().await;
}

/// A bound tunnel connection's per-packet work.
struct Connection {
    slot: Arc<CallSlot>,
    call: CallRef,
    out: AudioTx<Bytes>,
    writer: PacketWriter,
    outbuf: BytesMut,
}

impl Connection {
    fn read_packets(
        &mut self,
        reader: &mut PacketReader,
        buf: &mut BytesMut,
    ) -> Result<(), TunnelError> {
        while let Some(packet) = reader.next(buf)? {
            match packet {
                Packet::Audio { frame, .. } => self.audio_in(frame),
                Packet::Unsupported { .. } => {
                    metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => "unsupported_codec")
                        .increment(1);
                }
                // RFC 5761 multiplexed RTCP: accepted and ignored for now.
                Packet::Rtcp(_) => {}
            }
        }
        Ok(())
    }

    fn audio_in(&mut self, frame: MediaFrame) {
        metrics::counter!(m::PACKETS_TOTAL, "leg" => TRANSPORT, "direction" => "in").increment(1);
        if !self.call.audio(frame) {
            metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => "call_busy").increment(1);
        }
    }

    /// Frames `frame` toward the client: on the receive connection when one is attached,
    /// otherwise back on the tunnel. A client that is behind loses the oldest frames (see
    /// [`framed_queue`]).
    fn audio_out(&mut self, frame: &MediaFrame) {
        if self.outbuf.capacity() < 512 {
            self.outbuf.reserve(8 * 1024);
        }
        if self.writer.write(&mut self.outbuf, frame).is_err() {
            return;
        }
        let bytes = self.outbuf.split().freeze();
        let sent = {
            let mut receiver = lock(&self.slot.receiver);
            match receiver.as_ref().map(|tx| tx.send(bytes.clone())) {
                Some(true) => true,
                Some(false) => {
                    *receiver = None;
                    self.out.send(bytes)
                }
                None => self.out.send(bytes),
            }
        };
        if sent {
            metrics::counter!(m::PACKETS_TOTAL, "leg" => TRANSPORT, "direction" => "out")
                .increment(1);
        } else {
            metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => "client_behind").increment(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP API (on the web listener)

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCall {
    #[serde(default)]
    token: Option<String>,
    target: String,
    /// The codec the client sends and wants to receive (an `rtp.codecs` name).
    #[serde(default)]
    codec: Option<String>,
}

/// Codec names `POST /v1/calls` takes: what RTP carries and the relay transcodes.
fn tunnel_codec(name: &str) -> Option<Codec> {
    Codec::from_config_name(name).filter(|c| c.rtpmap().is_some() && c.transcodable())
}

/// Serves one `/v1/calls…` request whose head is at the front of `buf` (the web listener read
/// it): `POST /v1/calls`, `GET /v1/calls/{id}/rtp?key=K`, `DELETE /v1/calls/{id}?key=K`.
pub async fn serve_api<S>(mut stream: S, mut buf: BytesMut, shared: Shared, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let deadline =
        Instant::now() + Duration::from_secs(shared.config.web.handshake_timeout_secs.max(1));
    let (method, target, content_length, host, consumed) = match parse_http_request_head(&buf) {
        Ok(Some((head, consumed))) => {
            let header = |name: &str| {
                head.headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_string())
            };
            let length = header("content-length");
            (
                head.method.to_string(),
                head.target.to_string(),
                length,
                header("host"),
                consumed,
            )
        }
        _ => return respond(&mut stream, 400, &error_json("bad_request", "bad request")).await,
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let Some(tunnel_addr) = shared.tunnels.addr() else {
        return respond(
            &mut stream,
            503,
            &error_json("tunnel_disabled", "the RFC 4571 tunnel is not enabled"),
        )
        .await;
    };
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "calls"]) => {
            let Some(len) = content_length.and_then(|v| v.parse::<usize>().ok()) else {
                return respond(
                    &mut stream,
                    411,
                    &error_json("length_required", "Content-Length required"),
                )
                .await;
            };
            if len > MAX_BODY {
                return respond(&mut stream, 413, &error_json("too_large", "body too large")).await;
            }
            let _ = buf.split_to(consumed);
            while buf.len() < len {
                buf.reserve(len - buf.len());
                match tokio::time::timeout_at(deadline.into(), stream.read_buf(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
            }
            let body = buf.get(..len).unwrap_or_default();
            let (status, json) = create_call(&shared, peer, body, tunnel_addr, host.as_deref());
            respond(&mut stream, status, &json).await;
        }
        ("GET", ["v1", "calls", id, "rtp"]) => {
            let (Some(id), Some(key)) = (id.parse::<u64>().ok(), query_key(query)) else {
                return respond(
                    &mut stream,
                    404,
                    &error_json("unknown_call", "no such call"),
                )
                .await;
            };
            receive(stream, shared, peer, id, key).await;
        }
        ("DELETE", ["v1", "calls", id]) => {
            let (Some(id), Some(key)) = (id.parse::<u64>().ok(), query_key(query)) else {
                return respond(
                    &mut stream,
                    404,
                    &error_json("unknown_call", "no such call"),
                )
                .await;
            };
            let (status, json) = delete_call(&shared, id, key);
            respond(&mut stream, status, &json).await;
        }
        (_, ["v1", "calls", ..]) => {
            respond(
                &mut stream,
                405,
                &error_json("method_not_allowed", "method not allowed"),
            )
            .await
        }
        _ => respond(&mut stream, 404, &error_json("not_found", "not found")).await,
    }
}

fn query_key(query: &str) -> Option<u128> {
    let value = query.split('&').find_map(|kv| kv.strip_prefix("key="))?;
    if value.len() != 32 {
        return None;
    }
    u128::from_str_radix(value, 16).ok()
}

fn error_json(code: &str, reason: &str) -> String {
    serde_json::json!({ "error": code, "reason": reason }).to_string()
}

/// `POST /v1/calls`: authenticates, routes and offers a binding.
fn create_call(
    shared: &Shared,
    peer: SocketAddr,
    body: &[u8],
    tunnel_addr: SocketAddr,
    host: Option<&str>,
) -> (u16, String) {
    let Ok(req) = serde_json::from_slice::<NewCall>(body) else {
        return (
            400,
            error_json("bad_request", "expected {\"token\": …, \"target\": …}"),
        );
    };
    let codec = match req.codec.as_deref().map(|n| (n, tunnel_codec(n))) {
        None => None,
        Some((_, Some(c))) => Some(c),
        Some((name, None)) => {
            warn!(%peer, codec = %name, "tunnel API client refused: unknown codec");
            metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => "bad_codec").increment(1);
            return (
                400,
                error_json(
                    "bad_codec",
                    "codec must be one of pcmu, pcma, g722, opus, speex, speex/16000, l16, l16/16000, l16/44100, l16/48000",
                ),
            );
        }
    };
    let identity = match shared.authority.authenticate(req.token.as_deref()) {
        Ok(id) => id,
        Err(why) => {
            warn!(%peer, reason = why.label(), "tunnel API client refused");
            metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => why.label()).increment(1);
            return (401, error_json(why.label(), why.description()));
        }
    };
    let route = match shared.authority.route(&identity, &req.target) {
        Ok(r) => r,
        Err(why) => {
            warn!(%peer, user = identity.name(), target = %req.target, reason = why.label(), "dial refused");
            metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => why.label()).increment(1);
            return (403, error_json(why.label(), why.description()));
        }
    };
    let tunnels = &shared.tunnels;
    let id = tunnels.next_id.fetch_add(1, Ordering::Relaxed);
    let key: u128 = rand::random();
    let (ended, _) = watch::channel(false);
    let slot = Arc::new(CallSlot {
        id,
        key,
        identity,
        route,
        receiver: Mutex::new(None),
        call: Mutex::new(None),
        ended,
        codec,
    });
    let mut table = lock(&tunnels.table);
    let mut offered = Err(TunnelError::AlreadyUsed);
    // A fresh unguessable SSRC; a collision with a pending one draws again.
    for _ in 0..4 {
        let ssrc = rand::random::<u32>();
        match table.offer(
            Instant::now(),
            peer.ip().to_canonical(),
            id,
            ssrc,
            key,
            Arc::clone(&slot),
        ) {
            Err(TunnelError::AlreadyUsed) => continue,
            r => {
                offered = r.map(|_| ssrc);
                break;
            }
        }
    }
    drop(table);
    let ssrc = match offered {
        Ok(s) => s,
        Err(e) => {
            metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => e.label()).increment(1);
            return (
                429,
                error_json(e.label(), "too many calls waiting for their tunnel"),
            );
        }
    };
    // A wildcard listener is reached at the address the client used for the API.
    let tunnel = if tunnel_addr.ip().is_unspecified() {
        let host = host
            .map(|h| h.rsplit_once(':').map_or(h, |(h, _)| h))
            .unwrap_or("127.0.0.1");
        format!("{host}:{}", tunnel_addr.port())
    } else {
        tunnel_addr.to_string()
    };
    info!(%peer, call = id, user = slot.identity.name(), target = %slot.route.target, "tunnel call offered");
    let mut json = serde_json::json!({
        "call": id,
        "tunnel": tunnel,
        "ssrc": ssrc,
        "expires_in": tunnels.window.as_secs(),
        "receive": format!("/v1/calls/{id}/rtp?key={key:032x}"),
    });
    if let (Some(c), Some(obj)) = (codec, json.as_object_mut()) {
        let (name, clock, channels) = c.rtpmap().unwrap_or(("", 0, None));
        obj.insert("codec".into(), serde_json::json!(name));
        obj.insert(
            "payload_type".into(),
            serde_json::json!(c.rtp_payload_type()),
        );
        obj.insert("clock_rate".into(), serde_json::json!(clock));
        if let Some(ch) = channels {
            obj.insert("channels".into(), serde_json::json!(ch));
        }
    }
    (201, json.to_string())
}

/// `DELETE /v1/calls/{id}?key=K`: withdraws a binding or hangs up a bound call.
fn delete_call(shared: &Shared, id: u64, key: u128) -> (u16, String) {
    let tunnels = &shared.tunnels;
    // Withdrawn first, so that a receive connection can no longer attach.
    let withdrawn = lock(&tunnels.table).withdraw(id, key).is_some();
    let slot = lock(&tunnels.active).get(&id).cloned();
    match slot {
        Some(slot) if slot.key == key => {
            if let Some(call) = lock(&slot.call).as_ref() {
                call.hangup();
            }
            (204, String::new())
        }
        _ if withdrawn => (204, String::new()),
        _ => (404, error_json("unknown_call", "no such call")),
    }
}

/// `GET /v1/calls/{id}/rtp?key=K`: the receive-only connection. Answers 200 and streams the
/// call's audio as RFC 4571 frames until the call ends.
async fn receive<S>(mut stream: S, shared: Shared, peer: SocketAddr, id: u64, key: u128)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let attached = lock(&shared.tunnels.table).attach_receiver(
        Instant::now(),
        id,
        key,
        peer.ip().to_canonical(),
    );
    let slot = match attached {
        Ok(s) => s,
        Err(e) => {
            reject(peer, e);
            return respond(
                &mut stream,
                404,
                &error_json("unknown_call", "no such call"),
            )
            .await;
        }
    };
    let (tx, mut rx) = framed_queue(&shared.config);
    *lock(&slot.receiver) = Some(tx);
    let mut ended = slot.ended.subscribe();
    info!(%peer, call = slot.id, "tunnel receive connection attached");
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-rtp-stream\r\n\
                Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    // A receiver whose tunnel never binds is closed when the bind window is over.
    let bind_by = Instant::now() + shared.tunnels.window;
    loop {
        let over = *ended.borrow();
        if over {
            break;
        }
        let waiting = lock(&slot.call).is_none();
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(f) => {
                    if stream.write_all(&f).await.is_err() {
                        break;
                    }
                    metrics::counter!(m::BYTES_TOTAL, "leg" => TRANSPORT, "direction" => "out").increment(f.len() as u64);
                }
                None => break,
            },
            r = ended.changed() => {
                let over = r.is_err() || *ended.borrow();
                if over {
                    break;
                }
            }
            _ = tokio::time::sleep_until(bind_by.into()), if waiting => {
                if lock(&slot.call).is_none() {
                    info!(%peer, call = slot.id, "tunnel never bound; closing the receive connection");
                    break;
                }
            }
        }
    }
    lock(&slot.receiver).take();
    let _ = stream.shutdown().await;
}

async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}
