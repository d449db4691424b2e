//! RTMP listener and connection driver: socket ⇄ [`RtmpServerSession`] ⇄ calls.
//!
//! Stream-name dialling: publishing or playing `NAME` joins the call of this identity to
//! `NAME` (dialled through the dial plan); a publisher and a player of the same name join one
//! call. NetConnection commands `call`, `hangup`, `dtmf` work on the same connection.

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
use crate::media::{flash_snd, ClientCaps, Codec, MediaFrame};
use crate::ops::metrics as m;
use crate::relay::Shared;
use crate::rtmp::{RtmpError, RtmpEvent, RtmpServerSession, RtmpSessionConfig};
use crate::session::{Identity, Refusal};
use skybridge_codecs::amf0::Amf0Value;
use skybridge_codecs::flv;
use skybridge_codecs::rtmp::ChunkLimits;

/// AACPacketType of an FLV AAC sequence header (the AudioSpecificConfig).
const AAC_SEQUENCE_HEADER: u8 = 0;

/// Splits an FLV AAC tag body (after the tag header byte) into its AACPacketType (0 sequence
/// header, 1 raw access unit) and the rest; None for an empty body or an unknown type.
///
/// ```text
/// AACAUDIODATA = AACPacketType(8) Data(*)
/// ```
fn aac_tag(body: &[u8]) -> Option<(u8, &[u8])> {
    match body.split_first() {
        Some((&t @ (0 | 1), rest)) if !rest.is_empty() => Some((t, rest)),
        _ => None,
    }
}

const TRANSPORT: &str = "rtmp";

/// Accepts RTMP connections until `stop` turns true.
pub async fn serve(listener: TcpListener, shared: Shared, stop: watch::Receiver<bool>) {
    super::accept_loop(
        listener,
        shared,
        stop,
        TRANSPORT,
        |stream, shared, peer| async move {
            let _ = stream.set_nodelay(true);
            serve_stream(stream, BytesMut::new(), shared, peer).await;
        },
    )
    .await;
}

/// Serves one RTMP connection over any byte stream (TCP, TLS, the shared port), starting with
/// `initial`: bytes already read from it (by a protocol classifier), handled before any read.
pub async fn serve_stream<S>(stream: S, initial: BytesMut, shared: Shared, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    metrics::counter!(m::CLIENT_CONNECTIONS_TOTAL, "transport" => TRANSPORT).increment(1);
    metrics::gauge!(m::CLIENT_CONNECTIONS_ACTIVE, "transport" => TRANSPORT).increment(1.0);
    let mut conn = Connection::new(shared, peer);
    conn.run(stream, initial).await;
    conn.leave_all();
    metrics::gauge!(m::CLIENT_CONNECTIONS_ACTIVE, "transport" => TRANSPORT).decrement(1.0);
}

/// What this connection's streams are attached to.
struct Attachment {
    call: CallRef,
    leg: LegId,
}

struct Connection {
    shared: Shared,
    peer: SocketAddr,
    identity: Option<Identity>,
    /// Call per target name.
    calls: HashMap<String, (CallRef, Vec<LegId>)>,
    /// Publish/play streams attached to a call (stream-name dialling; the connection closes
    /// when that call ends).
    streams: HashMap<u32, Attachment>,
    play_streams: Vec<(u32, String)>,
    sink_audio: ClientAudioTx,
    sink_control: mpsc::UnboundedSender<ToClient>,
    audio_rx: Option<ClientAudioRx>,
    control_rx: Option<mpsc::UnboundedReceiver<ToClient>>,
    /// Inbound calls offered to this connection (leg → call), while signed in as a user.
    offered: HashMap<LegId, CallRef>,
    presence: Option<crate::presence::PresenceGuard>,
    warned_format: Option<u8>,
    /// The client's `audioCodecs` from `connect` (what a player of ours can decode).
    audio_codecs: Option<u16>,
    /// `onMetaData.audiosamplerate` per publishing stream (PCM's real rate).
    stream_rates: HashMap<u32, u32>,
    /// The AAC codec each publishing stream's last valid sequence header named.
    aac_streams: HashMap<u32, Codec>,
    close_after_flush: bool,
}

impl Connection {
    fn new(shared: Shared, peer: SocketAddr) -> Connection {
        let (sink_audio, audio_rx) = client_audio_queue(&shared.config, TRANSPORT, true);
        let (sink_control, control_rx) = mpsc::unbounded_channel();
        Connection {
            shared,
            peer,
            identity: None,
            calls: HashMap::new(),
            streams: HashMap::new(),
            play_streams: Vec::new(),
            sink_audio,
            sink_control,
            audio_rx: Some(audio_rx),
            control_rx: Some(control_rx),
            warned_format: None,
            audio_codecs: None,
            stream_rates: HashMap::new(),
            aac_streams: HashMap::new(),
            close_after_flush: false,
            offered: HashMap::new(),
            presence: None,
        }
    }

    fn sink(&self) -> ClientSink {
        self.sink_with(self.audio_codecs, true)
    }

    /// A sink for a leg that can decode `audio_codecs` (Flash `SUPPORT_SND_*` bits) and plays
    /// audio when `plays` (a publish stream does not: no audio, and no transcoder, toward it).
    fn sink_with(&self, audio_codecs: Option<u16>, plays: bool) -> ClientSink {
        ClientSink {
            audio: self.sink_audio.clone(),
            control: self.sink_control.clone(),
            caps: ClientCaps::Flash { audio_codecs },
            wants_audio: plays,
        }
    }

    async fn run<S>(&mut self, mut stream: S, mut inbuf: BytesMut)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let cfg = &self.shared.config.rtmp;
        // Dead-peer detection: ping every third of the dead-peer time; a connection from which
        // nothing (not even a ping response) arrived for the whole of it is closed.
        let dead_peer = self.shared.config.rtmp_dead_peer();
        let session_config = RtmpSessionConfig {
            handshake_timeout: Duration::from_secs(cfg.handshake_timeout_secs),
            chunk_limits: ChunkLimits {
                max_message_len: u32::try_from(cfg.max_message_bytes).unwrap_or(u32::MAX),
                max_reassembly_bytes: cfg.max_buffered_bytes,
                ..ChunkLimits::default()
            },
            ping_interval: Some(dead_peer / 3),
            dead_peer: Some(dead_peer),
            ..RtmpSessionConfig::default()
        };
        let mut session = RtmpServerSession::new(session_config, Instant::now());
        let mut audio_rx = self.audio_rx.take();
        let mut control_rx = self.control_rx.take();
        // Bytes handed over by a classifier are input like any other.
        let mut pending_input = !inbuf.is_empty();
        if pending_input {
            metrics::counter!(m::BYTES_TOTAL, "leg" => TRANSPORT, "direction" => "in")
                .increment(inbuf.len() as u64);
        }
        loop {
            if inbuf.capacity() - inbuf.len() < 4096 {
                inbuf.reserve(16 * 1024);
            }
            let wake = session.poll_timeout();
            if pending_input {
                pending_input = false;
                if let Err(e) = session.handle_input(Instant::now(), &mut inbuf) {
                    warn!(peer = %self.peer, error = %e, "rtmp protocol error; closing");
                    metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => e.reason()).increment(1);
                    let _ = tokio::time::timeout(
                        super::CLOSE_WRITE_WAIT,
                        flush(&mut session, &mut stream),
                    )
                    .await;
                    return;
                }
            } else {
                tokio::select! {
                    r = stream.read_buf(&mut inbuf) => match r {
                        Ok(0) => {
                            debug!("client closed the connection");
                            return;
                        }
                        Ok(n) => {
                            metrics::counter!(m::BYTES_TOTAL, "leg" => TRANSPORT, "direction" => "in").increment(n as u64);
                            pending_input = true;
                            continue;
                        }
                        Err(e) => {
                            debug!(error = %e, "read error");
                            return;
                        }
                    },
                    Some((_, frame)) = recv_audio(&mut audio_rx) => self.play_audio(&mut session, frame),
                    Some(msg) = recv_opt_unbounded(&mut control_rx) => self.on_call_command(&mut session, msg),
                    _ = crate::sip_endpoint::sleep_until_opt(wake) => {
                        if let Err(e) = session.handle_timeout(Instant::now()) {
                            if e == RtmpError::DeadPeer {
                                super::dead_peer(TRANSPORT, self.peer, dead_peer, self.calls.len());
                                return;
                            }
                            warn!(peer = %self.peer, error = %e, "rtmp deadline passed; closing");
                            metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => e.reason()).increment(1);
                            return;
                        }
                    }
                }
            }
            while let Some(event) = session.poll_event() {
                self.on_event(&mut session, event);
            }
            let deadline = session.dead_peer_deadline();
            match super::write_by(deadline, flush(&mut session, &mut stream)).await {
                super::Written::Done => {}
                super::Written::Failed => return,
                super::Written::PeerDead => {
                    super::dead_peer(TRANSPORT, self.peer, dead_peer, self.calls.len());
                    return;
                }
            }
            if session.is_closing() || self.close_after_flush {
                let _ = stream.shutdown().await;
                return;
            }
        }
    }

    fn authenticate(&mut self, token: Option<&str>) -> Result<Identity, Refusal> {
        if let Some(id) = &self.identity {
            if token.is_none() {
                return Ok(id.clone());
            }
        }
        let id = self.shared.authority.authenticate(token)?;
        if let (Identity::User(name), None) = (&id, &self.presence) {
            // Signed in: inbound calls for this user ring here too.
            self.presence = Some(self.shared.presence.sign_in(name, self.sink()));
        }
        self.identity = Some(id.clone());
        Ok(id)
    }

    fn refuse(&mut self, session: &mut RtmpServerSession, stream_id: Option<u32>, why: Refusal) {
        warn!(peer = %self.peer, reason = why.label(), "rtmp client refused");
        metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => why.label()).increment(1);
        if let Some(id) = stream_id {
            session.reject_stream(id, "NetStream.Publish.Forbidden", why.description());
        }
        session.reject_connect("NetConnection.Connect.Rejected", why.description());
        self.close_after_flush = true;
    }

    fn on_event(&mut self, session: &mut RtmpServerSession, event: RtmpEvent) {
        match event {
            RtmpEvent::Connect {
                app,
                token,
                audio_codecs,
                ..
            } => {
                debug!(%app, token = token.is_some(), ?audio_codecs, "connect");
                self.audio_codecs = audio_codecs;
                // A token here is checked now; without one, publish/play must bring it (ffmpeg
                // passes `?token=` on the stream name) unless authentication is off.
                match token {
                    Some(t) => match self.authenticate(Some(&t)) {
                        Ok(_) => session.accept_connect(),
                        Err(why) => self.refuse(session, None, why),
                    },
                    None => session.accept_connect(),
                }
            }
            RtmpEvent::Publish {
                stream_id,
                name,
                token,
            } => {
                // A publish stream only sends: its leg gets no audio (and no transcoder).
                if self
                    .join_with(session, stream_id, &name, token.as_deref(), None)
                    .is_some()
                {
                    session.accept_publish(stream_id);
                }
            }
            RtmpEvent::Play {
                stream_id,
                name,
                token,
                codec,
            } => {
                // `?codec=` narrows what this player is sent to one codec.
                let audio_codecs = match codec.as_deref().map(flash_snd::from_play_codec) {
                    None => self.audio_codecs,
                    Some(Some(bits)) => Some(bits),
                    Some(None) => {
                        let codec = codec.unwrap_or_default();
                        warn!(peer = %self.peer, %codec, "play refused: unknown codec");
                        metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => "bad_codec").increment(1);
                        session.reject_stream(
                            stream_id,
                            "NetStream.Play.Failed",
                            &format!(
                                "unknown codec {codec:?}: one of {}",
                                flash_snd::PLAY_CODECS.join(", ")
                            ),
                        );
                        return;
                    }
                };
                if self
                    .join_with(
                        session,
                        stream_id,
                        &name,
                        token.as_deref(),
                        Some(audio_codecs),
                    )
                    .is_some()
                {
                    self.play_streams.push((stream_id, name));
                    session.accept_play(stream_id);
                }
            }
            RtmpEvent::Metadata {
                stream_id,
                audio_sample_rate,
            } => {
                debug!(stream_id, ?audio_sample_rate, "stream metadata");
                match audio_sample_rate {
                    Some(rate) => self.stream_rates.insert(stream_id, rate),
                    None => self.stream_rates.remove(&stream_id),
                };
            }
            RtmpEvent::Unpublish { stream_id }
            | RtmpEvent::StopPlay { stream_id }
            | RtmpEvent::DeleteStream { stream_id } => {
                self.play_streams.retain(|(id, _)| *id != stream_id);
                self.aac_streams.remove(&stream_id);
                if let Some(att) = self.streams.remove(&stream_id) {
                    att.call.detach(att.leg);
                }
            }
            RtmpEvent::Audio {
                stream_id,
                timestamp,
                tag_header,
                payload,
            } => {
                let Some(att) = self.streams.get(&stream_id) else {
                    metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => "no_call").increment(1);
                    return;
                };
                metrics::counter!(m::PACKETS_TOTAL, "leg" => TRANSPORT, "direction" => "in")
                    .increment(1);
                let format = tag_header >> 4;
                let rate = self.stream_rates.get(&stream_id).copied();
                let mut payload = payload;
                let codec = if format == flv::SOUND_FORMAT_AAC {
                    // AACPacketType 0: sequence header (AudioSpecificConfig); 1: raw frame.
                    match aac_tag(&payload) {
                        Some((AAC_SEQUENCE_HEADER, config)) => {
                            match Codec::from_aac_config(config) {
                                Ok(codec) => {
                                    debug!(stream_id, ?codec, "AAC sequence header");
                                    self.aac_streams.insert(stream_id, codec);
                                }
                                Err(e) => {
                                    self.aac_streams.remove(&stream_id);
                                    metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => "unsupported_codec")
                                        .increment(1);
                                    self.refuse_format(
                                        session,
                                        format,
                                        &format!("AAC sequence header refused ({e}); publish AAC-LC, mono or stereo, 8 to 48 kHz"),
                                    );
                                }
                            }
                            return;
                        }
                        Some((_, frame)) => {
                            payload = payload.slice_ref(frame);
                            self.aac_streams.get(&stream_id).copied()
                        }
                        None => None,
                    }
                } else {
                    // Formats the relay can carry: decodable, at a rate the resampler takes.
                    Codec::from_flv(tag_header, rate).filter(|c| {
                        c.transcodable()
                            && skybridge_codecs::resample::SUPPORTED_RATES
                                .contains(&c.sample_rate())
                    })
                };
                let Some(codec) = codec else {
                    metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => "unsupported_codec")
                        .increment(1);
                    let why = if format == flv::SOUND_FORMAT_AAC {
                        "AAC audio without a valid sequence header (AudioSpecificConfig) first"
                    } else {
                        "publish pcm_mulaw, pcm_alaw, pcm_s16le, nellymoser, speex or aac"
                    };
                    self.refuse_format(session, format, why);
                    return;
                };
                let frame = MediaFrame {
                    codec,
                    timestamp: (u64::from(timestamp) * u64::from(codec.clock_rate()) / 1000) as u32,
                    marker: false,
                    payload,
                };
                if !att.call.audio(frame) {
                    metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => "call_busy")
                        .increment(1);
                }
            }
            RtmpEvent::Call { target } => {
                // Success is reported by the call itself (onRinging/onAnswered/onHangup).
                let _ = self.join(session, 0, &target, None);
            }
            RtmpEvent::Hangup => {
                for (call, _) in self.calls.values() {
                    call.hangup();
                }
            }
            RtmpEvent::Answer => match self.offered.drain().next() {
                Some((leg, call)) => {
                    call.answer(leg);
                    self.calls
                        .insert(format!("inbound-{}", call.id), (call, vec![leg]));
                }
                None => session.send_error("no incoming call to answer"),
            },
            RtmpEvent::Dtmf { digits } => match self.calls.values().next() {
                Some((call, legs)) => call.dtmf(legs.first().copied().unwrap_or_default(), digits),
                None => session.send_error("dtmf: no call in progress"),
            },
        }
    }

    /// Tells the client (once per format) and the log that its audio format is refused.
    fn refuse_format(&mut self, session: &mut RtmpServerSession, format: u8, why: &str) {
        if self.warned_format == Some(format) {
            return;
        }
        self.warned_format = Some(format);
        let text = format!(
            "unsupported audio format {} (FLV sound format {format}): {why}",
            flv::format_name(format),
        );
        warn!(peer = %self.peer, "{text}");
        session.send_error(&text);
    }

    /// Authenticates, routes and joins (or starts) the call for `target`. Stream id 0 means the
    /// `call()` command (no stream).
    fn join(
        &mut self,
        session: &mut RtmpServerSession,
        stream_id: u32,
        target: &str,
        token: Option<&str>,
    ) -> Option<CallRef> {
        self.join_with(session, stream_id, target, token, Some(self.audio_codecs))
    }

    /// [`Self::join`] with the leg's player able to decode `plays` (`audio_codecs`); None for
    /// a publish stream, which plays nothing.
    fn join_with(
        &mut self,
        session: &mut RtmpServerSession,
        stream_id: u32,
        target: &str,
        token: Option<&str>,
        plays: Option<Option<u16>>,
    ) -> Option<CallRef> {
        let stream = (stream_id != 0).then_some(stream_id);
        let identity = match self.authenticate(token) {
            Ok(id) => id,
            Err(why) => {
                self.refuse(session, stream, why);
                return None;
            }
        };
        let route = match self.shared.authority.route(&identity, target) {
            Ok(r) => r,
            Err(why) => {
                warn!(peer = %self.peer, user = identity.name(), %target, reason = why.label(), "dial refused");
                metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => why.label()).increment(1);
                match stream {
                    Some(id) => {
                        session.reject_stream(id, "NetStream.Publish.Forbidden", why.description())
                    }
                    None => session.send_error(why.description()),
                }
                return None;
            }
        };
        let leg = new_leg_id();
        // A publisher needs no audio back on its leg; a player or controller does.
        let sink = match plays {
            Some(audio_codecs) => self.sink_with(audio_codecs, true),
            None => self.sink_with(self.audio_codecs, false),
        };
        match self.shared.calls.join(&identity, &route, leg, Some(sink)) {
            Ok(call) => {
                let entry = self
                    .calls
                    .entry(target.to_string())
                    .or_insert_with(|| (call.clone(), Vec::new()));
                entry.1.push(leg);
                if let Some(id) = stream {
                    self.streams.insert(
                        id,
                        Attachment {
                            call: call.clone(),
                            leg,
                        },
                    );
                }
                Some(call)
            }
            Err(e) => {
                warn!(peer = %self.peer, reason = e.label(), "call refused");
                metrics::counter!(m::CALLS_TOTAL, "outcome" => "rejected").increment(1);
                let text = format!("call refused: {}", e.label());
                match stream {
                    Some(id) => session.reject_stream(id, "NetStream.Publish.Failed", &text),
                    None => session.send_error(&text),
                }
                None
            }
        }
    }

    fn play_audio(&mut self, session: &mut RtmpServerSession, frame: MediaFrame) {
        // FLV audio tag header: sound format, rate bits, 16-bit, mono — what ffmpeg's FLV muxer
        // writes (rate bits 0 for G.711). The call sent this leg a codec FLV carries.
        let Some(tag) = frame.codec.flv_tag_header() else {
            metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => "unsupported_codec")
                .increment(1);
            return;
        };
        let ms =
            (u64::from(frame.timestamp) * 1000 / u64::from(frame.codec.clock_rate().max(1))) as u32;
        for (stream_id, _) in &self.play_streams {
            session.send_audio(*stream_id, ms, tag, &frame.payload);
            metrics::counter!(m::PACKETS_TOTAL, "leg" => TRANSPORT, "direction" => "out")
                .increment(1);
        }
    }

    fn on_call_command(&mut self, session: &mut RtmpServerSession, msg: ToClient) {
        let ToClient { leg, call, cmd } = msg;
        match cmd {
            ClientCommand::Incoming { from, .. } => {
                self.offered.insert(leg, call);
                session.send_command("onIncoming", &[Amf0Value::String(&from)]);
            }
            ClientCommand::AnsweredElsewhere => {
                self.offered.remove(&leg);
                session.send_command("onAnsweredElsewhere", &[]);
            }
            ClientCommand::Held { by_remote } => {
                session.send_command("onHold", &[Amf0Value::Boolean(by_remote)]);
            }
            ClientCommand::Unheld { by_remote } => {
                session.send_command("onUnhold", &[Amf0Value::Boolean(by_remote)]);
            }
            ClientCommand::Error { reason, .. } => session.send_error(&reason),
            ClientCommand::Ringing { code } => {
                session.send_command("onRinging", &[Amf0Value::Number(f64::from(code))]);
            }
            ClientCommand::Answered { .. } => session.send_command("onAnswered", &[]),
            ClientCommand::Dtmf(c) => {
                let s = c.to_string();
                session.send_command("onDtmf", &[Amf0Value::String(&s)]);
            }
            ClientCommand::Ended { code, reason } if self.offered.remove(&leg).is_some() => {
                // An inbound call that rang here ended before this connection answered it.
                session.send_command(
                    "onHangup",
                    &[
                        Amf0Value::Number(f64::from(code)),
                        Amf0Value::String(&reason),
                    ],
                );
            }
            ClientCommand::Ended { code, reason } => {
                info!(code, %reason, "call ended; telling the client");
                session.send_command(
                    "onHangup",
                    &[
                        Amf0Value::Number(f64::from(code)),
                        Amf0Value::String(&reason),
                    ],
                );
                let by_stream = !self.streams.is_empty();
                for (id, _) in &self.play_streams {
                    session.send_stream_status(*id, "NetStream.Play.Stop", &reason);
                }
                for (id, att) in &self.streams {
                    if !self.play_streams.iter().any(|(p, _)| p == id) {
                        let _ = att;
                        session.send_stream_status(*id, "NetStream.Unpublish.Success", &reason);
                    }
                }
                self.streams.clear();
                self.play_streams.clear();
                self.calls.clear();
                if by_stream {
                    self.close_after_flush = true;
                }
            }
            ClientCommand::Audio(frame) => self.play_audio(session, frame),
        }
    }

    fn leave_all(&mut self) {
        for (call, legs) in self.calls.values() {
            for leg in legs {
                call.detach(*leg);
            }
        }
        self.calls.clear();
        self.streams.clear();
    }
}

/// Writes everything the session has queued. False if the socket failed.
async fn flush<S: AsyncWrite + Unpin>(
    session: &mut RtmpServerSession,
    stream: &mut S,
) -> std::io::Result<()> {
    while let Some(bytes) = session.poll_output() {
        if let Err(e) = stream.write_all(&bytes).await {
            debug!(error = %e, "write failed");
            return Err(e);
        }
    }
    // TLS streams hold records until flushed; a no-op on TCP.
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_tags_split_into_packet_type_and_data() {
        assert_eq!(aac_tag(&[0, 0x12, 0x08]), Some((0, &[0x12, 0x08][..])));
        assert_eq!(aac_tag(&[1, 0x21]), Some((1, &[0x21][..])));
        assert_eq!(aac_tag(&[1]), None, "no access unit");
        assert_eq!(aac_tag(&[2, 0]), None, "unknown packet type");
        assert_eq!(aac_tag(&[]), None);
    }
}
