//! The call core: one client leg bridged to one SIP dialog and one RTP leg. Sans-IO.
//!
//! Inputs: client audio/DTMF/hang-up, SIP outcomes, RTP/RTCP datagrams, timeouts.
//! Outputs ([`Output`]): RTP/RTCP to send, commands for the client legs, SIP actions.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use skybridge_codecs::{g711, rtcp, rtp, sdp};

use super::pacer::{Paced, Pacer};
use crate::media::{Codec, MediaFrame};

/// Why a frame or packet was dropped (a metric label).
pub type DropReason = &'static str;

/// Settings a call core needs.
#[derive(Clone, Debug)]
pub struct CallSettings {
    pub rtp_ip: IpAddr,
    pub rtp_port: u16,
    pub ptime: Duration,
    pub max_delay: Duration,
    pub inactivity_timeout: Duration,
    pub ring_timeout: Duration,
    pub telephone_event_pt: u8,
    /// Also send each client DTMF digit as SIP INFO (`application/dtmf-relay`).
    pub dtmf_info: bool,
    /// Seed for SSRC and initial sequence/timestamp.
    pub seed: u64,
}

/// What the client legs are told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCommand {
    Ringing {
        code: u16,
    },
    /// The call is up: `codec` is what this client's leg carries, `sip` the SIP leg's codec
    /// (they differ when the call transcodes).
    Answered {
        codec: Codec,
        sip: Codec,
    },
    Audio(MediaFrame),
    Dtmf(char),
    Ended {
        code: u16,
        reason: String,
    },
    /// An inbound call offered to this client.
    Incoming {
        from: String,
        codec: Codec,
    },
    /// Another session of the same user answered the inbound call.
    AnsweredElsewhere,
    /// Media is on hold (`by_remote`: the far end put us on hold) or resumed.
    Held {
        by_remote: bool,
    },
    Unheld {
        by_remote: bool,
    },
    /// A request this call could not carry out (e.g. DTMF without telephone-event).
    Error {
        code: &'static str,
        reason: String,
    },
}

/// Something the driver must do.
#[derive(Debug)]
pub enum Output {
    Rtp {
        dest: SocketAddr,
        header: [u8; 12],
        payload: Bytes,
    },
    RtpOwned {
        dest: SocketAddr,
        packet: Vec<u8>,
    },
    /// An RTCP compound packet: `packet[..len]`.
    Rtcp {
        dest: SocketAddr,
        packet: [u8; RTCP_MAX],
        len: usize,
    },
    Client(ClientCommand),
    /// Hang up the SIP side (CANCEL or BYE, the SIP layer knows which).
    SipHangup,
    /// Inbound call: answer the INVITE (`sdp` for 2xx) or reject it.
    SipRespond {
        code: u16,
        sdp: Option<Vec<u8>>,
    },
    /// Send a re-INVITE with this SDP (hold / resume).
    SipReinvite {
        sdp: Vec<u8>,
    },
    /// Send one DTMF digit as SIP INFO (`application/dtmf-relay`).
    SipInfoDtmf {
        digit: char,
    },
    /// Answer the far end's re-INVITE.
    SipReinviteAnswer {
        sdp: Vec<u8>,
    },
    Dropped(DropReason),
    /// A client frame in a codec the SIP leg does not use: transcode it (off the I/O path)
    /// to [`CallCore::codec`] and give the result back to [`CallCore::client_audio`].
    TranscodeToSip(MediaFrame),
    /// Client audio before the SIP leg's codec is known, in a codec whose decoder keeps state:
    /// the driver decodes it (to warm the decoder the transcoder toward SIP will use).
    WarmDecoder(MediaFrame),
    /// RTP sequence numbers show `packets` missing before the next audio toward the client
    /// (the driver conceals them).
    ClientLoss {
        packets: u16,
    },
    /// A packet forwarded (for metrics): leg, direction, bytes.
    Forwarded {
        toward_sip: bool,
        bytes: usize,
    },
    /// The call is over; nothing more will come out.
    Finished,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Outbound: INVITE sent, nothing back yet.
    Dialing,
    /// Outbound: 180/183 received.
    Early,
    /// Inbound: offered to the client(s), not answered yet.
    Incoming,
    Answered,
    Ended,
}

#[derive(Debug, Default)]
struct RecvStats {
    ssrc: Option<u32>,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    jitter: f64,
    last_transit: Option<i64>,
    last_sr: u32,
    last_sr_at: Option<Instant>,
}

/// One call.
pub struct CallCore {
    settings: CallSettings,
    state: State,
    started: Instant,
    answered_at: Option<Instant>,
    outputs: VecDeque<Output>,
    /// Codec on the SIP leg (from the answer) and its payload type there.
    sip_codec: Option<(Codec, u8)>,
    /// Our codec preference toward SIP (`rtp.codecs`).
    codecs: Vec<Codec>,
    /// Sequence number of the last audio packet from RTP (loss detection toward the client).
    last_rtp_seq: Option<u16>,
    remote_te_pt: Option<u8>,
    remote_rtp: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    pacer: Pacer,
    // Sender state toward RTP.
    ssrc: u32,
    seq: u16,
    ts_offset: u32,
    first_client_ts: Option<u32>,
    last_sent_ts: Option<u32>,
    packets_sent: u32,
    octets_sent: u32,
    // Receiver state from RTP.
    recv: RecvStats,
    first_rtp_ts: Option<(u32, u32)>,
    last_rtp_at: Option<Instant>,
    last_dtmf_ts: Option<u32>,
    dtmf_queue: VecDeque<char>,
    dtmf_next: Option<Instant>,
    rtcp_next: Instant,
    rng: u64,
    sdp_version: u64,
    /// We put the far end on hold / the far end put us on hold.
    local_hold: bool,
    remote_hold: bool,
    /// Hold state the far end last accepted from our re-INVITEs.
    agreed_hold: bool,
    /// Hold state of our re-INVITE in flight (one at a time, RFC 3261 §14.1).
    hold_in_flight: Option<bool>,
}

/// Room for our compound RTCP packet (SR/RR with one block + SDES CNAME).
pub const RTCP_MAX: usize = 128;
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
const DTMF_DURATION_MS: u32 = 160;

impl CallCore {
    pub fn new(now: Instant, settings: CallSettings) -> CallCore {
        let mut rng = settings.seed | 1;
        let ssrc = xorshift(&mut rng) as u32;
        let seq = xorshift(&mut rng) as u16;
        let ts_offset = xorshift(&mut rng) as u32;
        let capacity = (settings.max_delay.as_millis() as usize / 10).max(8) * 4;
        CallCore {
            pacer: Pacer::new(8000, settings.max_delay, capacity),
            rtcp_next: now + RTCP_INTERVAL,
            settings,
            state: State::Dialing,
            started: now,
            answered_at: None,
            outputs: VecDeque::with_capacity(64),
            sip_codec: None,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            last_rtp_seq: None,
            remote_te_pt: None,
            remote_rtp: None,
            remote_rtcp: None,
            ssrc,
            seq,
            ts_offset,
            first_client_ts: None,
            last_sent_ts: None,
            packets_sent: 0,
            octets_sent: 0,
            recv: RecvStats::default(),
            first_rtp_ts: None,
            last_rtp_at: None,
            last_dtmf_ts: None,
            dtmf_queue: VecDeque::new(),
            dtmf_next: None,
            rng,
            sdp_version: 1,
            local_hold: false,
            remote_hold: false,
            agreed_hold: false,
            hold_in_flight: None,
        }
    }

    /// Sets the codec preference toward SIP (default PCMU, PCMA): the offer lists these in
    /// this order; an inbound offer is answered with the first of them it contains. Codecs
    /// RTP cannot carry are ignored; an empty list keeps the default.
    pub fn with_codecs(mut self, codecs: &[Codec]) -> CallCore {
        let usable: Vec<Codec> = codecs
            .iter()
            .copied()
            .filter(|c| c.rtpmap().is_some())
            .collect();
        if !usable.is_empty() {
            self.codecs = usable;
        }
        self
    }

    /// An inbound call: `offer` is the INVITE's SDP. Errors with the SIP status to reject with
    /// (488 when no audio codec is shared).
    pub fn new_incoming(
        now: Instant,
        settings: CallSettings,
        offer: &[u8],
    ) -> Result<CallCore, u16> {
        CallCore::new_incoming_with(now, settings, &[], offer)
    }

    /// [`CallCore::new_incoming`] with a codec preference (see [`CallCore::with_codecs`]).
    pub fn new_incoming_with(
        now: Instant,
        settings: CallSettings,
        codecs: &[Codec],
        offer: &[u8],
    ) -> Result<CallCore, u16> {
        let mut core = CallCore::new(now, settings).with_codecs(codecs);
        if !core.apply_remote_sdp(offer, true) {
            return Err(488);
        }
        core.state = State::Incoming;
        Ok(core)
    }

    /// Codec chosen on the SIP leg (known once an answer or offer was applied).
    pub fn codec(&self) -> Option<Codec> {
        self.sip_codec.map(|(c, _)| c)
    }

    fn local_sdp(&mut self, direction: sdp::Direction, offer: bool) -> Vec<u8> {
        let codecs = match (offer, self.sip_codec) {
            (false, Some((c, pt))) => vec![(pt, c.encoding_name(), c.clock_rate())],
            _ => self.offered_codecs(),
        };
        let telephone_event = if offer {
            self.remote_te_pt.or(Some(self.settings.telephone_event_pt))
        } else {
            self.remote_te_pt
        };
        let version = self.sdp_version;
        self.sdp_version += 1;
        sdp::SdpBuilder {
            username: "skybridge".into(),
            session_id: u64::from(self.ssrc),
            session_version: version,
            address: self.settings.rtp_ip,
            port: self.settings.rtp_port,
            codecs,
            telephone_event,
            ptime: Some(self.settings.ptime.as_millis() as u32),
            direction,
        }
        .build()
    }

    fn our_direction(&self) -> sdp::Direction {
        match (self.local_hold, self.remote_hold) {
            (false, false) => sdp::Direction::SendRecv,
            (true, false) => sdp::Direction::SendOnly,
            (false, true) => sdp::Direction::RecvOnly,
            (true, true) => sdp::Direction::Inactive,
        }
    }

    /// A client answered the inbound call: 200 OK with our answer.
    pub fn client_answer(&mut self, now: Instant) {
        if self.state != State::Incoming {
            return;
        }
        let answer = self.local_sdp(self.our_direction(), false);
        self.outputs.push_back(Output::SipRespond {
            code: 200,
            sdp: Some(answer),
        });
        self.state = State::Answered;
        self.answered_at = Some(now);
        self.last_rtp_at = Some(now);
        if let Some(codec) = self.codec() {
            self.outputs
                .push_back(Output::Client(ClientCommand::Answered {
                    codec,
                    sip: codec,
                }));
        }
    }

    /// Every client rejected (or none answered) the inbound call.
    pub fn client_reject(&mut self, code: u16, reason: &str) {
        if self.state != State::Incoming {
            return;
        }
        self.outputs
            .push_back(Output::SipRespond { code, sdp: None });
        self.end(code, reason);
    }

    /// The client puts the call on hold (`true`) or resumes it: a re-INVITE goes out.
    /// While one of our re-INVITEs is in flight, the latest wish goes out when it ends.
    pub fn client_hold(&mut self, hold: bool) {
        if self.state != State::Answered || self.local_hold == hold {
            return;
        }
        self.local_hold = hold;
        if self.hold_in_flight.is_none() {
            self.send_hold_reinvite();
        }
        self.tell_local_hold();
    }

    fn send_hold_reinvite(&mut self) {
        let offer = self.local_sdp(self.our_direction(), true);
        self.outputs.push_back(Output::SipReinvite { sdp: offer });
        self.hold_in_flight = Some(self.local_hold);
    }

    fn tell_local_hold(&mut self) {
        let cmd = if self.local_hold {
            ClientCommand::Held { by_remote: false }
        } else {
            ClientCommand::Unheld { by_remote: false }
        };
        self.outputs.push_back(Output::Client(cmd));
    }

    /// The far end answered our re-INVITE; a hold change the client asked for meanwhile goes
    /// out now.
    pub fn sip_reinvite_answered(&mut self, sdp: &[u8]) {
        if let Some(hold) = self.hold_in_flight.take() {
            self.agreed_hold = hold;
        }
        self.apply_remote_sdp(sdp, false);
        if self.state == State::Answered && self.local_hold != self.agreed_hold {
            self.send_hold_reinvite();
        }
    }

    /// Our re-INVITE failed (491 while another was in progress, 408, 488, …): the session
    /// stays as the far end last agreed, and the client is told so.
    pub fn sip_reinvite_failed(&mut self) {
        self.hold_in_flight = None;
        if self.state == State::Answered && self.local_hold != self.agreed_hold {
            self.local_hold = self.agreed_hold;
            self.tell_local_hold();
        }
    }

    /// The far end sent a re-INVITE (hold, resume or a media change).
    pub fn sip_reinvite(&mut self, now: Instant, offer: &[u8]) {
        let was = self.remote_hold;
        let offered = sdp::SessionDescription::parse(offer)
            .ok()
            .and_then(|d| {
                d.first_audio().map(|a| {
                    if a.port == 0 {
                        sdp::Direction::Inactive
                    } else {
                        d.media_direction(a)
                    }
                })
            })
            .unwrap_or(sdp::Direction::SendRecv);
        self.apply_remote_sdp(offer, false);
        // On hold = the far end no longer wants our audio (sendonly or inactive).
        let hold = !offered.receives();
        self.remote_hold = hold;
        self.last_rtp_at = Some(now);
        // RFC 3264 §6.1: the answer's direction is the offer's reversed, narrowed by our own
        // hold state.
        let reversed = offered.reversed();
        let sends = reversed.sends() && !self.local_hold;
        let receives = reversed.receives();
        let direction = match (sends, receives) {
            (true, true) => sdp::Direction::SendRecv,
            (true, false) => sdp::Direction::SendOnly,
            (false, true) => sdp::Direction::RecvOnly,
            (false, false) => sdp::Direction::Inactive,
        };
        let answer = self.local_sdp(direction, false);
        self.outputs
            .push_back(Output::SipReinviteAnswer { sdp: answer });
        if hold != was {
            let cmd = if hold {
                ClientCommand::Held { by_remote: true }
            } else {
                ClientCommand::Unheld { by_remote: true }
            };
            self.outputs.push_back(Output::Client(cmd));
        }
    }

    /// DTMF from the network by SIP INFO.
    pub fn sip_dtmf(&mut self, digit: char) {
        self.outputs
            .push_back(Output::Client(ClientCommand::Dtmf(digit)));
    }

    pub fn on_hold(&self) -> bool {
        self.local_hold || self.remote_hold
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Our preference as SDP formats: static payload types where they exist, dynamic ones
    /// (96 + position) otherwise.
    fn offered_codecs(&self) -> Vec<(u8, &'static str, u32)> {
        self.codecs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let (name, clock, _) = c.rtpmap()?;
                Some((c.offer_payload_type(i), name, clock))
            })
            .collect()
    }

    /// Our SDP offer: the codec preference and telephone-event, at our RTP address.
    pub fn offer_sdp(&self) -> Vec<u8> {
        sdp::SdpBuilder {
            username: "skybridge".into(),
            session_id: u64::from(self.ssrc),
            session_version: 1,
            address: self.settings.rtp_ip,
            port: self.settings.rtp_port,
            codecs: self.offered_codecs(),
            telephone_event: Some(self.settings.telephone_event_pt),
            ptime: Some(self.settings.ptime.as_millis() as u32),
            direction: sdp::Direction::SendRecv,
        }
        .build()
    }

    /// Applies an SDP answer (or early-media SDP). Returns false if it has no usable audio.
    fn apply_remote_sdp(&mut self, body: &[u8], is_offer: bool) -> bool {
        let Ok(desc) = sdp::SessionDescription::parse(body) else {
            return false;
        };
        let Some(audio) = desc.first_audio() else {
            return false;
        };
        let Some(ip) = desc.media_address(audio) else {
            return false;
        };
        if audio.port == 0 {
            return false;
        }
        let offered: Vec<(Codec, u8)> = audio
            .formats
            .iter()
            .filter_map(|pt| {
                let (name, clock) = audio.encoding_of(*pt)?;
                let codec = Codec::from_rtpmap(name, clock, None)?;
                self.codecs.contains(&codec).then_some((codec, *pt))
            })
            .collect();
        let chosen = if is_offer {
            // We answer: the first of our preferences the offer contains.
            self.codecs
                .iter()
                .find_map(|c| offered.iter().find(|(o, _)| o == c).copied())
        } else {
            // The answer decides: its first format we offered (RFC 3264 §6.1).
            offered.first().copied()
        };
        let Some(chosen) = chosen else {
            return false;
        };
        // A re-offer keeps the codec already in use when it is still offered.
        let chosen = match self.sip_codec {
            Some((c, pt)) if audio.formats.contains(&pt) => (c, pt),
            _ => chosen,
        };
        if chosen.0.clock_rate() != self.pacer_clock() {
            let capacity = (self.settings.max_delay.as_millis() as usize / 10).max(8) * 4;
            self.pacer = Pacer::new(chosen.0.clock_rate(), self.settings.max_delay, capacity);
        }
        self.sip_codec = Some(chosen);
        self.remote_te_pt = audio.payload_type_for("telephone-event", 8000);
        let rtp = SocketAddr::new(ip, audio.port);
        self.remote_rtp = Some(rtp);
        self.remote_rtcp = Some(match audio.rtcp {
            Some((port, Some(addr))) => SocketAddr::new(addr, port),
            Some((port, None)) => SocketAddr::new(ip, port),
            None if audio.rtcp_mux => rtp,
            None => SocketAddr::new(ip, audio.port.wrapping_add(1)),
        });
        true
    }

    /// SIP 180/183 (with SDP for early media).
    pub fn sip_progress(&mut self, _now: Instant, code: u16, sdp: Option<&[u8]>) {
        if self.state != State::Dialing && self.state != State::Early {
            return;
        }
        if let Some(body) = sdp {
            self.apply_remote_sdp(body, false);
        }
        self.state = State::Early;
        self.outputs
            .push_back(Output::Client(ClientCommand::Ringing { code }));
    }

    /// SIP 2xx with the answer.
    pub fn sip_answered(&mut self, now: Instant, sdp: &[u8]) {
        if self.state == State::Ended || self.state == State::Answered {
            return;
        }
        if !self.apply_remote_sdp(sdp, false) {
            self.outputs.push_back(Output::SipHangup);
            self.end(488, "no common audio codec in the answer");
            return;
        }
        self.state = State::Answered;
        self.answered_at = Some(now);
        self.last_rtp_at = Some(now);
        if let Some(codec) = self.codec() {
            self.outputs
                .push_back(Output::Client(ClientCommand::Answered {
                    codec,
                    sip: codec,
                }));
        }
    }

    /// SIP final failure (after authentication handling).
    pub fn sip_failed(&mut self, code: u16, reason: &str) {
        self.end(code, reason);
    }

    /// The SIP dialog ended (BYE either way, or CANCEL completed).
    pub fn sip_ended(&mut self, by_remote: bool) {
        if self.state == State::Incoming {
            self.end(487, "caller cancelled");
        } else if by_remote {
            self.end(200, "remote party hung up");
        } else {
            self.end(200, "call ended");
        }
    }

    /// Every client leg left, or a client asked to hang up.
    pub fn client_hangup(&mut self) {
        if self.state == State::Ended {
            return;
        }
        if self.state == State::Incoming {
            self.client_reject(480, "no client took the call");
            return;
        }
        self.outputs.push_back(Output::SipHangup);
        self.end(200, "client hung up");
    }

    /// The relay is shutting down.
    pub fn shutdown(&mut self) {
        if self.state == State::Ended {
            return;
        }
        self.outputs.push_back(Output::SipHangup);
        self.end(503, "relay shutting down");
    }

    fn end(&mut self, code: u16, reason: &str) {
        if self.state == State::Ended {
            return;
        }
        self.state = State::Ended;
        self.outputs.push_back(Output::Client(ClientCommand::Ended {
            code,
            reason: reason.to_string(),
        }));
        self.outputs.push_back(Output::Finished);
    }

    /// Audio from a client leg. The payload is split into ptime pieces (zero-copy slices).
    pub fn client_audio(&mut self, now: Instant, frame: MediaFrame) {
        if self.state == State::Ended {
            return;
        }
        let sip = self.codec();
        let law_swap = matches!(
            (frame.codec, sip),
            (Codec::Pcmu, Some(Codec::Pcma)) | (Codec::Pcma, Some(Codec::Pcmu))
        );
        if sip != Some(frame.codec) && !law_swap {
            if sip.is_some() {
                self.outputs.push_back(Output::TranscodeToSip(frame));
            } else {
                if frame.codec.decoder_keeps_state() {
                    self.outputs.push_back(Output::WarmDecoder(frame));
                }
                self.outputs.push_back(Output::Dropped("not_answered"));
            }
            return;
        }
        let Some(per_ms) = frame.codec.bytes_per_ms() else {
            if let Some(Paced::DroppedQueueFull) = self.pacer.push(now, frame) {
                self.outputs.push_back(Output::Dropped("queue_full"));
            }
            return;
        };
        let step = self.settings.ptime.as_millis() as usize * per_ms;
        let ticks_per_byte = |n: usize| frame.codec.ticks_for_len(n).unwrap_or(n as u32);
        let mut offset = 0usize;
        let len = frame.payload.len();
        while offset < len {
            let end = (offset + step).min(len);
            let piece = MediaFrame {
                codec: frame.codec,
                timestamp: frame.timestamp.wrapping_add(ticks_per_byte(offset)),
                marker: frame.marker && offset == 0,
                payload: frame.payload.slice(offset..end),
            };
            if let Some(Paced::DroppedQueueFull) = self.pacer.push(now, piece) {
                self.outputs.push_back(Output::Dropped("queue_full"));
            }
            offset = end;
        }
    }

    /// DTMF digits from a client (RFC 4733 events toward RTP).
    pub fn client_dtmf(&mut self, now: Instant, digits: &str) -> Result<(), &'static str> {
        if self.state != State::Answered {
            return Err("DTMF needs an answered call");
        }
        if self.remote_te_pt.is_none() && !self.settings.dtmf_info {
            return Err("the far end did not offer telephone-event");
        }
        for d in digits.chars().filter(|c| dtmf_code(*c).is_some()).take(32) {
            if self.settings.dtmf_info {
                self.outputs.push_back(Output::SipInfoDtmf { digit: d });
            }
            if self.remote_te_pt.is_some() && self.dtmf_queue.len() < 64 {
                self.dtmf_queue.push_back(d);
            }
        }
        if self.dtmf_queue.is_empty() {
            return Ok(());
        }
        if self.dtmf_next.is_none() {
            self.dtmf_next = Some(now);
        }
        Ok(())
    }

    fn send_frame(&mut self, frame: MediaFrame) {
        if self.on_hold() || self.state != State::Answered && self.state != State::Early {
            self.outputs.push_back(Output::Dropped("not_sending"));
            return;
        }
        let (Some((codec, pt)), Some(dest)) = (self.sip_codec, self.remote_rtp) else {
            self.outputs.push_back(Output::Dropped("not_answered"));
            return;
        };
        let first = *self.first_client_ts.get_or_insert(frame.timestamp);
        let ts = self
            .ts_offset
            .wrapping_add(frame.timestamp.wrapping_sub(first));
        let clock = codec.clock_rate();
        let gap = self
            .last_sent_ts
            .map(|last| ts.wrapping_sub(last) > clock / 5)
            .unwrap_or(true);
        let marker = frame.marker || gap;
        let span = frame
            .codec
            .ticks_for_len(frame.payload.len())
            .unwrap_or((self.settings.ptime.as_millis() as u64 * u64::from(clock) / 1000) as u32);
        self.last_sent_ts = Some(ts.wrapping_add(span));
        let mut header = [0u8; 12];
        if rtp::write_header(&mut header, pt, marker, self.seq, ts, self.ssrc).is_err() {
            return;
        }
        self.seq = self.seq.wrapping_add(1);
        self.packets_sent = self.packets_sent.wrapping_add(1);
        self.octets_sent = self.octets_sent.wrapping_add(frame.payload.len() as u32);
        let bytes = 12 + frame.payload.len();
        if codec == frame.codec {
            self.outputs.push_back(Output::Rtp {
                dest,
                header,
                payload: frame.payload,
            });
        } else {
            // µ-law ⇄ A-law: a table lookup per byte (the only transcoding G.711 needs; every
            // other pair went through the transcoding pool before pacing).
            let swap: fn(u8) -> u8 = match (frame.codec, codec) {
                (Codec::Pcmu, Codec::Pcma) => g711::ulaw_to_alaw,
                (Codec::Pcma, Codec::Pcmu) => g711::alaw_to_ulaw,
                _ => {
                    self.outputs.push_back(Output::Dropped("unsupported_codec"));
                    return;
                }
            };
            let mut packet = Vec::with_capacity(bytes);
            packet.extend_from_slice(&header);
            packet.extend(frame.payload.iter().map(|b| swap(*b)));
            self.outputs.push_back(Output::RtpOwned { dest, packet });
        }
        self.outputs.push_back(Output::Forwarded {
            toward_sip: true,
            bytes,
        });
    }

    fn send_dtmf(&mut self, now: Instant) {
        let (Some(pt), Some(dest)) = (self.remote_te_pt, self.remote_rtp) else {
            self.dtmf_queue.clear();
            self.dtmf_next = None;
            return;
        };
        let Some(digit) = self.dtmf_queue.pop_front() else {
            self.dtmf_next = None;
            return;
        };
        let Some(code) = dtmf_code(digit) else { return };
        // One event: start packet (marker), then updates every ptime, then three end packets;
        // all carry the event's start timestamp (RFC 4733 §2.5). Sent at once: the receiver
        // plays by timestamp/duration, and an event is short.
        let ts = self
            .last_sent_ts
            .unwrap_or(self.ts_offset)
            .wrapping_add(160);
        let step = self.settings.ptime.as_millis() as u32 * 8;
        let total = DTMF_DURATION_MS * 8;
        let mut duration = step;
        let mut first = true;
        loop {
            let end = duration >= total;
            let repeats = if end { 3 } else { 1 };
            for _ in 0..repeats {
                let mut packet = vec![0u8; 16];
                if rtp::write_header(&mut packet[..12], pt, first, self.seq, ts, self.ssrc).is_err()
                {
                    return;
                }
                packet[12] = code;
                packet[13] = if end { 0x80 | 10 } else { 10 };
                let d = duration.min(0xFFFF) as u16;
                packet[14..16].copy_from_slice(&d.to_be_bytes());
                self.seq = self.seq.wrapping_add(1);
                self.outputs.push_back(Output::RtpOwned { dest, packet });
                first = false;
            }
            if end {
                break;
            }
            duration += step;
        }
        self.last_sent_ts = Some(ts.wrapping_add(total));
        self.dtmf_next = Some(now + Duration::from_millis(u64::from(DTMF_DURATION_MS) + 80));
    }

    /// An RTP datagram arrived on our RTP port from `source`.
    pub fn rtp_received(&mut self, now: Instant, source: SocketAddr, packet: Bytes) {
        if Some(source) != self.remote_rtp {
            // No source learning: only the address the SDP named (RTP bleed, AST-2017-005).
            self.outputs.push_back(Output::Dropped("wrong_source"));
            return;
        }
        let view = match rtp::RtpView::parse(&packet) {
            Ok(v) => v,
            Err(_) => {
                self.outputs.push_back(Output::Dropped("malformed"));
                return;
            }
        };
        self.last_rtp_at = Some(now);
        self.update_recv_stats(now, &view);
        let pt = view.payload_type();
        let ts = view.timestamp();
        if Some(pt) == self.remote_te_pt
            || (self.remote_te_pt.is_none() && pt == self.settings.telephone_event_pt)
        {
            let payload = view.payload();
            if payload.len() >= 4 && payload[1] & 0x80 != 0 && self.last_dtmf_ts != Some(ts) {
                self.last_dtmf_ts = Some(ts);
                if let Some(c) = dtmf_char(payload[0]) {
                    self.outputs
                        .push_back(Output::Client(ClientCommand::Dtmf(c)));
                }
            }
            return;
        }
        let Some((codec, sip_pt)) = self.sip_codec else {
            self.outputs.push_back(Output::Dropped("not_answered"));
            return;
        };
        if pt != sip_pt {
            self.outputs
                .push_back(Output::Dropped("unexpected_payload_type"));
            return;
        }
        let range = view.payload_range();
        if range.is_empty() {
            return;
        }
        // Packets missing in sequence (a short run; a long one is a restart, not loss).
        let seq = view.sequence();
        if let Some(last) = self.last_rtp_seq {
            let missing = seq.wrapping_sub(last).wrapping_sub(1);
            if (1..=50).contains(&missing) {
                self.outputs
                    .push_back(Output::ClientLoss { packets: missing });
            } else if missing >= 0x8000 {
                // Late or duplicate: older than what was already forwarded.
                self.outputs.push_back(Output::Dropped("out_of_order"));
                return;
            }
        }
        self.last_rtp_seq = Some(seq);
        // Client timeline: starts at the call's elapsed time so RTMP timestamps stay monotonic
        // across early media and answer.
        let clock = codec.clock_rate();
        let (first_rtp, base) = *self.first_rtp_ts.get_or_insert_with(|| {
            let elapsed = now.saturating_duration_since(self.started);
            (
                ts,
                (elapsed.as_millis() as u64 * u64::from(clock) / 1000) as u32,
            )
        });
        let frame = MediaFrame {
            codec,
            timestamp: base.wrapping_add(ts.wrapping_sub(first_rtp)),
            marker: view.marker(),
            payload: packet.slice(range),
        };
        self.outputs.push_back(Output::Forwarded {
            toward_sip: false,
            bytes: packet.len(),
        });
        self.outputs
            .push_back(Output::Client(ClientCommand::Audio(frame)));
    }

    fn update_recv_stats(&mut self, now: Instant, view: &rtp::RtpView<'_>) {
        let r = &mut self.recv;
        let seq = view.sequence();
        if r.ssrc != Some(view.ssrc()) {
            *r = RecvStats {
                ssrc: Some(view.ssrc()),
                base_seq: u32::from(seq),
                max_seq: seq,
                last_sr: r.last_sr,
                last_sr_at: r.last_sr_at,
                ..RecvStats::default()
            };
        }
        let delta = seq.wrapping_sub(r.max_seq);
        if delta > 0 && delta < 0x8000 {
            if seq < r.max_seq {
                r.cycles = r.cycles.wrapping_add(1 << 16);
            }
            r.max_seq = seq;
        }
        r.received = r.received.wrapping_add(1);
        // Interarrival jitter (RFC 3550 §6.4.1, A.8) in timestamp units.
        let arrival = now.saturating_duration_since(self.started).as_micros() as i64 * 8 / 1000;
        let transit = arrival - i64::from(view.timestamp());
        if let Some(last) = r.last_transit {
            let d = (transit - last).unsigned_abs() as f64;
            r.jitter += (d - r.jitter) / 16.0;
        }
        r.last_transit = Some(transit);
    }

    /// An RTCP datagram arrived on our RTCP port.
    pub fn rtcp_received(&mut self, now: Instant, source: SocketAddr, packet: &[u8]) {
        if Some(source.ip()) != self.remote_rtcp.map(|a| a.ip()) {
            self.outputs.push_back(Output::Dropped("wrong_source"));
            return;
        }
        for item in rtcp::walk(packet) {
            match item {
                Ok(rtcp::RtcpPacket::SenderReport(sr)) => {
                    self.recv.last_sr = (sr.ntp >> 16) as u32;
                    self.recv.last_sr_at = Some(now);
                }
                Ok(_) => {}
                Err(_) => {
                    self.outputs.push_back(Output::Dropped("malformed_rtcp"));
                    return;
                }
            }
        }
    }

    fn report_block(&mut self, now: Instant) -> Option<rtcp::ReportBlock> {
        let r = &mut self.recv;
        let ssrc = r.ssrc?;
        let extended_max = r.cycles.wrapping_add(u32::from(r.max_seq));
        let expected = extended_max.wrapping_sub(r.base_seq).wrapping_add(1);
        let lost = i64::from(expected) - i64::from(r.received);
        let expected_interval = expected.wrapping_sub(r.expected_prior);
        let received_interval = r.received.wrapping_sub(r.received_prior);
        r.expected_prior = expected;
        r.received_prior = r.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let dlsr = r
            .last_sr_at
            .map(|at| {
                (now.saturating_duration_since(at).as_micros() as u64 * 65536 / 1_000_000) as u32
            })
            .unwrap_or(0);
        Some(rtcp::ReportBlock {
            ssrc,
            fraction_lost: fraction,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_seq: extended_max,
            jitter: r.jitter as u32,
            last_sr: r.last_sr,
            delay_since_last_sr: dlsr,
        })
    }

    fn send_rtcp(&mut self, now: Instant, wall: std::time::SystemTime) {
        let Some(dest) = self.remote_rtcp else { return };
        let block = self.report_block(now);
        let blocks = block.as_slice();
        let mut buf = [0u8; RTCP_MAX];
        let written = if self.packets_sent > 0 {
            let ntp = ntp_timestamp(wall);
            let rtp_ts = self.last_sent_ts.unwrap_or(self.ts_offset);
            rtcp::write_sender_report(
                &mut buf,
                self.ssrc,
                ntp,
                rtp_ts,
                self.packets_sent,
                self.octets_sent,
                blocks,
            )
        } else {
            rtcp::write_receiver_report(&mut buf, self.ssrc, blocks)
        };
        if let Ok(n) = written {
            let mut len = n;
            if let Some(rest) = buf.get_mut(len..) {
                if let Ok(n) = rtcp::write_sdes_cname(rest, self.ssrc, b"skybridge") {
                    len += n;
                }
            }
            self.outputs.push_back(Output::Rtcp {
                dest,
                packet: buf,
                len,
            });
        }
    }

    /// Next instant [`CallCore::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Ended {
            return None;
        }
        let mut t = self.rtcp_next;
        match self.state {
            State::Answered if self.on_hold() => {}
            State::Answered => {
                if let Some(last) = self.last_rtp_at {
                    t = t.min(last + self.settings.inactivity_timeout);
                }
            }
            _ => t = t.min(self.started + self.settings.ring_timeout),
        }
        if let Some(p) = self.pacer.poll_timeout() {
            t = t.min(p);
        }
        if let Some(d) = self.dtmf_next {
            t = t.min(d);
        }
        Some(t)
    }

    /// Runs timers: pacing, DTMF, RTCP, ring and media timeouts.
    pub fn handle_timeout(&mut self, now: Instant, wall: std::time::SystemTime) {
        if self.state == State::Ended {
            return;
        }
        for _ in 0..1024 {
            match self.pacer.poll(now) {
                Some(Paced::Send(frame)) => self.send_frame(frame),
                Some(Paced::DroppedLate) => self.outputs.push_back(Output::Dropped("late")),
                Some(Paced::DroppedQueueFull) => {
                    self.outputs.push_back(Output::Dropped("queue_full"))
                }
                None => break,
            }
        }
        if self.dtmf_next.is_some_and(|t| t <= now) {
            self.send_dtmf(now);
        }
        if now >= self.rtcp_next {
            // Randomised interval (RFC 3550 §6.3.1): 0.5 … 1.5 × the nominal one.
            let jitter = xorshift(&mut self.rng) % 1000;
            self.rtcp_next = now + RTCP_INTERVAL / 2 + RTCP_INTERVAL * (jitter as u32) / 1000;
            if self.state == State::Answered {
                self.send_rtcp(now, wall);
            }
        }
        match self.state {
            State::Answered if self.on_hold() => {}
            State::Answered => {
                if self
                    .last_rtp_at
                    .is_some_and(|last| now >= last + self.settings.inactivity_timeout)
                {
                    self.outputs.push_back(Output::SipHangup);
                    self.end(408, "no media from the far end");
                }
            }
            State::Dialing | State::Early => {
                if now >= self.started + self.settings.ring_timeout {
                    self.outputs.push_back(Output::SipHangup);
                    self.end(480, "no answer");
                }
            }
            State::Incoming => {
                if now >= self.started + self.settings.ring_timeout {
                    self.client_reject(480, "no answer");
                }
            }
            State::Ended => {}
        }
    }

    /// Next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Seconds from start to answer.
    pub fn setup_time(&self) -> Option<Duration> {
        self.answered_at.map(|a| a - self.started)
    }

    fn pacer_clock(&self) -> u32 {
        self.pacer.clock_rate()
    }

    /// Local RTP port of this call.
    pub fn rtp_port(&self) -> u16 {
        self.settings.rtp_port
    }
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

fn ntp_timestamp(wall: std::time::SystemTime) -> u64 {
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let since = wall
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// RFC 4733 event code of a DTMF key.
pub fn dtmf_code(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(12 + (c as u8 - b'A')),
        'a'..='d' => Some(12 + (c as u8 - b'a')),
        _ => None,
    }
}

/// DTMF key of an RFC 4733 event code.
pub fn dtmf_char(code: u8) -> Option<char> {
    match code {
        0..=9 => Some((b'0' + code) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + code - 12) as char),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    const PEER: &str = "127.0.0.1:40000";

    fn settings() -> CallSettings {
        CallSettings {
            rtp_ip: "127.0.0.1".parse().unwrap(),
            rtp_port: 30000,
            ptime: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            inactivity_timeout: Duration::from_secs(5),
            ring_timeout: Duration::from_secs(10),
            telephone_event_pt: 101,
            dtmf_info: false,
            seed: 42,
        }
    }

    fn answer(codecs: &str) -> Vec<u8> {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 40000 RTP/AVP {codecs}\r\na=rtpmap:101 telephone-event/8000\r\n"
        )
        .into_bytes()
    }

    fn drain(core: &mut CallCore) -> Vec<Output> {
        std::iter::from_fn(|| core.poll_output()).collect()
    }

    #[test]
    fn an_opus_offer_says_opus_48000_2_with_fec_and_an_opus_answer_is_taken() {
        let mut core = CallCore::new(Instant::now(), settings()).with_codecs(&[
            Codec::Opus,
            Codec::Speex { rate: 16000 },
            Codec::Pcmu,
        ]);
        let offer = String::from_utf8(core.offer_sdp()).unwrap();
        assert!(
            offer.contains("m=audio 30000 RTP/AVP 96 97 0 101"),
            "{offer}"
        );
        assert!(offer.contains("a=rtpmap:96 opus/48000/2\r\n"), "{offer}");
        assert!(offer.contains("a=fmtp:96 useinbandfec=1\r\n"), "{offer}");
        assert!(offer.contains("a=rtpmap:97 speex/16000\r\n"), "{offer}");
        let answer = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n";
        assert!(core.apply_remote_sdp(answer, false));
        assert_eq!(core.codec(), Some(Codec::Opus));
    }

    #[test]
    fn the_offer_lists_the_configured_preference_with_rtpmaps_and_telephone_event() {
        let core = CallCore::new(Instant::now(), settings()).with_codecs(&[
            Codec::G722,
            Codec::L16 { rate: 16000 },
            Codec::Pcmu,
        ]);
        let offer = String::from_utf8(core.offer_sdp()).unwrap();
        assert!(
            offer.contains("m=audio 30000 RTP/AVP 9 97 0 101"),
            "static PTs where they exist, 96 + position otherwise:\n{offer}"
        );
        assert!(offer.contains("a=rtpmap:9 G722/8000"), "{offer}");
        assert!(offer.contains("a=rtpmap:97 L16/16000"), "{offer}");
        assert!(
            offer.contains("a=rtpmap:101 telephone-event/8000"),
            "{offer}"
        );
    }

    #[test]
    fn a_g722_answer_sends_client_g711_to_the_transcoder_and_g722_frames_straight_to_rtp() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings()).with_codecs(&[Codec::Pcmu, Codec::G722]);
        core.sip_answered(t0, &answer("9 101"));
        assert_eq!(core.codec(), Some(Codec::G722), "the answer decides");
        drain(&mut core);
        core.client_audio(t0, frame(0, 0xFF, 160));
        assert!(
            matches!(drain(&mut core).as_slice(), [Output::TranscodeToSip(f)] if f.codec == Codec::Pcmu),
            "PCMU toward a G.722 leg goes to the pool"
        );
        let g722 = MediaFrame {
            codec: Codec::G722,
            timestamp: 0,
            marker: true,
            payload: Bytes::from(vec![0u8; 160]),
        };
        core.client_audio(t0, g722);
        core.handle_timeout(t0 + Duration::from_millis(1), SystemTime::now());
        let outs = drain(&mut core);
        assert!(
            outs.iter()
                .any(|o| matches!(o, Output::Rtp { header, .. } if header[1] & 0x7F == 9)),
            "transcoded frames are paced out as PT 9: {outs:?}"
        );
    }

    #[test]
    fn stateful_client_audio_before_the_answer_warms_a_decoder_and_g711_is_dropped() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings()).with_codecs(&[Codec::Pcmu]);
        drain(&mut core);
        let speex = MediaFrame {
            codec: Codec::Speex { rate: 16000 },
            timestamp: 0,
            marker: true,
            payload: Bytes::from(vec![0x1Du8; 60]),
        };
        core.client_audio(t0, speex);
        assert!(
            matches!(drain(&mut core).as_slice(),
                [Output::WarmDecoder(f), Output::Dropped("not_answered")] if f.codec == Codec::Speex { rate: 16000 }),
            "Speex before the answer goes to a warming decoder"
        );
        core.client_audio(t0, frame(0, 0xFF, 160));
        assert!(
            matches!(
                drain(&mut core).as_slice(),
                [Output::Dropped("not_answered")]
            ),
            "G.711 has no decoder state to warm"
        );
    }

    #[test]
    fn an_inbound_offer_is_answered_with_our_first_preference_it_contains() {
        let offer = answer("0 8 9 101");
        let core = CallCore::new_incoming_with(
            Instant::now(),
            settings(),
            &[Codec::G722, Codec::Pcma],
            &offer,
        )
        .expect("offer");
        assert_eq!(core.codec(), Some(Codec::G722));
        let none = CallCore::new_incoming_with(
            Instant::now(),
            settings(),
            &[Codec::G722],
            &answer("0 101"),
        );
        assert_eq!(none.err(), Some(488), "no shared codec");
    }

    #[test]
    fn a_gap_in_rtp_sequence_numbers_is_reported_before_the_next_audio() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_answered(t0, &answer("0 101"));
        drain(&mut core);
        let peer: SocketAddr = PEER.parse().unwrap();
        core.rtp_received(t0, peer, rtp(10, 1600, 0, &[0xFF; 160]));
        core.rtp_received(t0, peer, rtp(11, 1760, 0, &[0xFF; 160]));
        assert!(!drain(&mut core)
            .iter()
            .any(|o| matches!(o, Output::ClientLoss { .. })));
        core.rtp_received(t0, peer, rtp(14, 2240, 0, &[0xFF; 160]));
        let outs = drain(&mut core);
        let loss = outs
            .iter()
            .position(|o| matches!(o, Output::ClientLoss { packets: 2 }));
        let audio = outs
            .iter()
            .position(|o| matches!(o, Output::Client(ClientCommand::Audio(_))));
        assert!(loss.is_some() && loss < audio, "{outs:?}");
    }

    fn rtp(seq: u16, ts: u32, pt: u8, payload: &[u8]) -> Bytes {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0xABCD_0001u32.to_be_bytes());
        p.extend_from_slice(payload);
        Bytes::from(p)
    }

    fn frame(ts: u32, byte: u8, len: usize) -> MediaFrame {
        MediaFrame {
            codec: Codec::Pcmu,
            timestamp: ts,
            marker: false,
            payload: Bytes::from(vec![byte; len]),
        }
    }

    #[test]
    fn offer_lists_g711_and_telephone_event_at_our_port() {
        let core = CallCore::new(Instant::now(), settings());
        let offer = core.offer_sdp();
        let desc = sdp::SessionDescription::parse(&offer).expect("offer parses");
        let audio = desc.first_audio().expect("audio");
        assert_eq!(audio.port, 30000);
        assert_eq!(audio.payload_type_for("PCMU", 8000), Some(0));
        assert_eq!(audio.payload_type_for("PCMA", 8000), Some(8));
        assert_eq!(audio.payload_type_for("telephone-event", 8000), Some(101));
    }

    #[test]
    fn client_audio_is_split_into_ptime_packets_paced_at_20ms() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_answered(t0, &answer("0 101"));
        drain(&mut core);
        // 1024 bytes = 128 ms, as ffmpeg sends: 6 packets of 160 and one of 64.
        core.client_audio(t0, frame(0, 0x55, 1024));
        let mut sizes = Vec::new();
        let mut stamps = Vec::new();
        for ms in (0..=140).step_by(10) {
            core.handle_timeout(t0 + Duration::from_millis(ms), SystemTime::UNIX_EPOCH);
            for out in drain(&mut core) {
                if let Output::Rtp {
                    header,
                    payload,
                    dest,
                } = out
                {
                    assert_eq!(dest, PEER.parse().unwrap());
                    let view = rtp::RtpView::parse(&header).expect("header");
                    stamps.push((ms, view.timestamp(), view.sequence()));
                    sizes.push(payload.len());
                }
            }
        }
        assert_eq!(sizes, vec![160, 160, 160, 160, 160, 160, 64]);
        // One packet per 20 ms, timestamps +160, sequence +1.
        for w in stamps.windows(2) {
            assert_eq!(w[1].0 - w[0].0, 20);
            assert_eq!(w[1].1.wrapping_sub(w[0].1), 160);
            assert_eq!(w[1].2.wrapping_sub(w[0].2), 1);
        }
    }

    #[test]
    fn mulaw_from_the_client_is_converted_when_the_far_end_chose_alaw() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_answered(t0, &answer("8"));
        drain(&mut core);
        core.client_audio(t0, frame(0, 0xFF, 160));
        core.handle_timeout(t0, SystemTime::UNIX_EPOCH);
        let packet = drain(&mut core)
            .into_iter()
            .find_map(|o| match o {
                Output::RtpOwned { packet, .. } => Some(packet),
                _ => None,
            })
            .expect("converted packet");
        let view = rtp::RtpView::parse(&packet).expect("rtp");
        assert_eq!(view.payload_type(), 8);
        assert!(view
            .payload()
            .iter()
            .all(|b| *b == g711::ulaw_to_alaw(0xFF)));
    }

    #[test]
    fn rtp_from_another_address_is_dropped() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_answered(t0, &answer("0"));
        drain(&mut core);
        core.rtp_received(
            t0,
            "127.0.0.2:40000".parse().unwrap(),
            rtp(1, 160, 0, &[0xFF; 160]),
        );
        core.rtp_received(
            t0,
            "127.0.0.1:40001".parse().unwrap(),
            rtp(1, 160, 0, &[0xFF; 160]),
        );
        let outs = drain(&mut core);
        assert_eq!(outs.len(), 2);
        assert!(outs
            .iter()
            .all(|o| matches!(o, Output::Dropped("wrong_source"))));
    }

    #[test]
    fn rtp_from_the_sdp_address_reaches_the_client_as_a_slice() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_answered(t0, &answer("0"));
        drain(&mut core);
        let packet = rtp(7, 1000, 0, &[0x12; 160]);
        let base = packet.as_ptr() as usize;
        core.rtp_received(t0, PEER.parse().unwrap(), packet);
        let frame = drain(&mut core)
            .into_iter()
            .find_map(|o| match o {
                Output::Client(ClientCommand::Audio(f)) => Some(f),
                _ => None,
            })
            .expect("audio to client");
        assert_eq!(frame.payload.len(), 160);
        assert_eq!(
            frame.payload.as_ptr() as usize,
            base + 12,
            "payload is a slice, not a copy"
        );
    }

    #[test]
    fn malformed_rtp_is_counted_and_the_call_goes_on() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_answered(t0, &answer("0"));
        drain(&mut core);
        // X=1 with an extension length running past the packet (HOSTILE-INPUTS row 5).
        let bad = Bytes::from_static(&[
            0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xBE, 0xDE, 0xFF, 0xFF, 0, 0, 0, 0,
        ]);
        core.rtp_received(t0, PEER.parse().unwrap(), bad);
        assert!(matches!(
            drain(&mut core).as_slice(),
            [Output::Dropped("malformed")]
        ));
        core.rtp_received(t0, PEER.parse().unwrap(), rtp(1, 160, 0, &[0xFF; 160]));
        assert!(drain(&mut core)
            .iter()
            .any(|o| matches!(o, Output::Client(ClientCommand::Audio(_)))));
    }

    #[test]
    fn dtmf_goes_out_as_rfc4733_events_with_three_end_packets() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_answered(t0, &answer("0 101"));
        drain(&mut core);
        core.client_dtmf(t0, "5")
            .expect("telephone-event negotiated");
        core.handle_timeout(t0, SystemTime::UNIX_EPOCH);
        let events: Vec<Vec<u8>> = drain(&mut core)
            .into_iter()
            .filter_map(|o| match o {
                Output::RtpOwned { packet, .. } => Some(packet),
                _ => None,
            })
            .collect();
        assert!(events.len() >= 4);
        let first = rtp::RtpView::parse(&events[0]).expect("rtp");
        assert!(first.marker());
        assert_eq!(first.payload_type(), 101);
        assert_eq!(first.payload()[0], 5);
        let ends = events.iter().filter(|p| p[13] & 0x80 != 0).count();
        assert_eq!(ends, 3);
        let ts: Vec<u32> = events
            .iter()
            .map(|p| rtp::RtpView::parse(p).expect("rtp").timestamp())
            .collect();
        assert!(ts.iter().all(|t| *t == ts[0]), "one event, one timestamp");
    }

    #[test]
    fn dtmf_without_telephone_event_is_refused() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        let plain = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
        core.sip_answered(t0, plain);
        assert!(core.client_dtmf(t0, "1").is_err());
    }

    #[test]
    fn dtmf_goes_out_as_sip_info_when_configured_even_without_telephone_event() {
        let t0 = Instant::now();
        let mut core = CallCore::new(
            t0,
            CallSettings {
                dtmf_info: true,
                ..settings()
            },
        );
        let plain = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
        core.sip_answered(t0, plain);
        drain(&mut core);
        core.client_dtmf(t0, "4*")
            .expect("INFO needs no telephone-event");
        core.handle_timeout(t0, SystemTime::UNIX_EPOCH);
        let digits: Vec<char> = drain(&mut core)
            .into_iter()
            .filter_map(|o| match o {
                Output::SipInfoDtmf { digit } => Some(digit),
                Output::RtpOwned { .. } => panic!("no RFC 4733 without telephone-event"),
                _ => None,
            })
            .collect();
        assert_eq!(digits, vec!['4', '*']);
    }

    #[test]
    fn dtmf_from_the_network_reaches_the_client_once() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_answered(t0, &answer("0 101"));
        drain(&mut core);
        for (seq, end) in [(1u16, false), (2, true), (3, true), (4, true)] {
            let flags = if end { 0x80 | 10 } else { 10 };
            core.rtp_received(
                t0,
                PEER.parse().unwrap(),
                rtp(seq, 8000, 101, &[11, flags, 0, 160]),
            );
        }
        let digits: Vec<char> = drain(&mut core)
            .into_iter()
            .filter_map(|o| match o {
                Output::Client(ClientCommand::Dtmf(c)) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(digits, vec!['#']);
    }

    #[test]
    fn answer_without_a_common_codec_ends_the_call_with_488() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_answered(t0, &answer("9"));
        let outs = drain(&mut core);
        assert!(outs
            .iter()
            .any(|o| matches!(o, Output::Client(ClientCommand::Ended { code: 488, .. }))));
        assert!(outs.iter().any(|o| matches!(o, Output::SipHangup)));
        assert!(matches!(outs.last(), Some(Output::Finished)));
    }

    #[test]
    fn silence_from_the_far_end_hangs_up_after_the_inactivity_timeout() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_answered(t0, &answer("0"));
        drain(&mut core);
        let wake = core.poll_timeout().expect("timer");
        assert!(wake <= t0 + Duration::from_secs(5));
        core.handle_timeout(t0 + Duration::from_secs(5), SystemTime::UNIX_EPOCH);
        let outs = drain(&mut core);
        assert!(outs.iter().any(|o| matches!(o, Output::SipHangup)));
        assert!(outs
            .iter()
            .any(|o| matches!(o, Output::Client(ClientCommand::Ended { code: 408, .. }))));
    }

    #[test]
    fn no_answer_within_the_ring_timeout_cancels_with_480() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_progress(t0, 180, None);
        assert!(matches!(
            drain(&mut core).as_slice(),
            [Output::Client(ClientCommand::Ringing { code: 180 })]
        ));
        core.handle_timeout(t0 + Duration::from_secs(10), SystemTime::UNIX_EPOCH);
        let outs = drain(&mut core);
        assert!(outs.iter().any(|o| matches!(o, Output::SipHangup)));
        assert!(outs
            .iter()
            .any(|o| matches!(o, Output::Client(ClientCommand::Ended { code: 480, .. }))));
    }

    #[test]
    fn sip_failure_reaches_the_client_with_its_code() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_failed(486, "Busy Here");
        let outs = drain(&mut core);
        assert!(matches!(
            outs.first(),
            Some(Output::Client(ClientCommand::Ended { code: 486, reason })) if reason == "Busy Here"
        ));
        assert!(
            !outs.iter().any(|o| matches!(o, Output::SipHangup)),
            "nothing to hang up"
        );
    }

    #[test]
    fn rtcp_sender_report_goes_to_the_rtcp_port_after_the_interval() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_answered(t0, &answer("0"));
        drain(&mut core);
        core.rtp_received(t0, PEER.parse().unwrap(), rtp(1, 160, 0, &[0xFF; 160]));
        core.client_audio(t0, frame(0, 0xFF, 160));
        let mut report = None;
        for s in 0..=8 {
            let now = t0 + Duration::from_secs(s);
            core.rtp_received(
                now,
                PEER.parse().unwrap(),
                rtp(2 + s as u16, 160, 0, &[0xFF; 160]),
            );
            core.handle_timeout(now, SystemTime::now());
            for o in drain(&mut core) {
                if let Output::Rtcp { dest, packet, len } = o {
                    report = Some((dest, packet[..len].to_vec()));
                }
            }
        }
        let (dest, packet) = report.expect("an RTCP report within 8 s");
        assert_eq!(dest, "127.0.0.1:40001".parse().unwrap());
        let first = rtcp::walk(&packet)
            .next()
            .expect("a packet")
            .expect("valid");
        match first {
            rtcp::RtcpPacket::SenderReport(sr) => {
                assert_eq!(sr.packet_count, 1);
                assert_eq!(sr.blocks.len(), 1);
            }
            other => panic!("expected SR, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod inbound_and_hold_tests {
    use super::*;
    use std::time::SystemTime;

    fn settings() -> CallSettings {
        CallSettings {
            rtp_ip: "127.0.0.1".parse().unwrap(),
            rtp_port: 30000,
            ptime: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            inactivity_timeout: Duration::from_secs(5),
            ring_timeout: Duration::from_secs(10),
            telephone_event_pt: 101,
            dtmf_info: false,
            seed: 42,
        }
    }

    fn sdp_with(dir: &str, pts: &str) -> Vec<u8> {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 40000 RTP/AVP {pts}\r\na=rtpmap:101 telephone-event/8000\r\na={dir}\r\n"
        )
        .into_bytes()
    }

    fn drain(core: &mut CallCore) -> Vec<Output> {
        std::iter::from_fn(|| core.poll_output()).collect()
    }

    fn direction_of(sdp: &[u8]) -> sdp::Direction {
        let d = sdp::SessionDescription::parse(sdp).expect("sdp");
        let a = d.first_audio().expect("audio");
        d.media_direction(a)
    }

    #[test]
    fn inbound_offer_without_g711_is_refused_with_488() {
        let r = CallCore::new_incoming(Instant::now(), settings(), &sdp_with("sendrecv", "9"));
        assert_eq!(r.err(), Some(488));
    }

    #[test]
    fn answering_an_inbound_call_sends_200_with_our_first_preference_the_offer_has() {
        let t0 = Instant::now();
        let mut core = CallCore::new_incoming(t0, settings(), &sdp_with("sendrecv", "8 0 101"))
            .expect("offer");
        assert_eq!(core.state(), State::Incoming);
        assert_eq!(
            core.codec(),
            Some(Codec::Pcmu),
            "our first preference (PCMU, PCMA) the offer has, whatever the offerer's order"
        );
        core.client_answer(t0);
        let outs = drain(&mut core);
        let answer = outs
            .iter()
            .find_map(|o| match o {
                Output::SipRespond {
                    code: 200,
                    sdp: Some(s),
                } => Some(s.clone()),
                _ => None,
            })
            .expect("200 with SDP");
        let d = sdp::SessionDescription::parse(&answer).expect("answer parses");
        let a = d.first_audio().expect("audio");
        assert_eq!(a.formats, vec![0, 101]);
        assert!(outs.iter().any(|o| matches!(
            o,
            Output::Client(ClientCommand::Answered {
                codec: Codec::Pcmu,
                sip: Codec::Pcmu
            })
        )));
        assert_eq!(core.state(), State::Answered);
    }

    #[test]
    fn an_unanswered_inbound_call_gets_480_after_the_ring_timeout() {
        let t0 = Instant::now();
        let mut core =
            CallCore::new_incoming(t0, settings(), &sdp_with("sendrecv", "0")).expect("offer");
        core.handle_timeout(t0 + Duration::from_secs(10), SystemTime::UNIX_EPOCH);
        let outs = drain(&mut core);
        assert!(outs.iter().any(|o| matches!(
            o,
            Output::SipRespond {
                code: 480,
                sdp: None
            }
        )));
        assert!(matches!(outs.last(), Some(Output::Finished)));
    }

    #[test]
    fn a_caller_who_cancels_ends_the_offer_with_487() {
        let t0 = Instant::now();
        let mut core =
            CallCore::new_incoming(t0, settings(), &sdp_with("sendrecv", "0")).expect("offer");
        core.sip_ended(true);
        assert!(drain(&mut core)
            .iter()
            .any(|o| matches!(o, Output::Client(ClientCommand::Ended { code: 487, .. }))));
    }

    #[test]
    fn local_hold_reinvites_sendonly_stops_media_and_resume_restores_it() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_answered(t0, &sdp_with("sendrecv", "0 101"));
        drain(&mut core);
        core.client_hold(true);
        let outs = drain(&mut core);
        let offer = outs
            .iter()
            .find_map(|o| match o {
                Output::SipReinvite { sdp } => Some(sdp.clone()),
                _ => None,
            })
            .expect("re-INVITE");
        assert_eq!(direction_of(&offer), sdp::Direction::SendOnly);
        assert!(outs
            .iter()
            .any(|o| matches!(o, Output::Client(ClientCommand::Held { by_remote: false }))));
        core.sip_reinvite_answered(&sdp_with("recvonly", "0 101"));
        assert!(drain(&mut core)
            .iter()
            .all(|o| !matches!(o, Output::SipReinvite { .. })));
        // On hold: client audio is not sent, and silence from the far end does not end the call.
        core.client_audio(
            t0,
            MediaFrame {
                codec: Codec::Pcmu,
                timestamp: 0,
                marker: false,
                payload: Bytes::from_static(&[0xFF; 160]),
            },
        );
        core.handle_timeout(t0 + Duration::from_secs(6), SystemTime::UNIX_EPOCH);
        let outs = drain(&mut core);
        assert!(!outs
            .iter()
            .any(|o| matches!(o, Output::Rtp { .. } | Output::SipHangup)));
        assert_eq!(core.state(), State::Answered);
        core.client_hold(false);
        let offer = drain(&mut core)
            .into_iter()
            .find_map(|o| match o {
                Output::SipReinvite { sdp } => Some(sdp),
                _ => None,
            })
            .expect("resume re-INVITE");
        assert_eq!(direction_of(&offer), sdp::Direction::SendRecv);
    }

    fn reinvite_directions(outs: &[Output]) -> Vec<sdp::Direction> {
        outs.iter()
            .filter_map(|o| match o {
                Output::SipReinvite { sdp } => Some(direction_of(sdp)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn hold_changes_wait_for_the_reinvite_in_flight_and_a_refused_one_is_undone() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_answered(t0, &sdp_with("sendrecv", "0 101"));
        drain(&mut core);
        core.client_hold(true);
        assert_eq!(
            reinvite_directions(&drain(&mut core)),
            [sdp::Direction::SendOnly]
        );
        // Resume while the hold is still in flight: nothing goes out yet (one re-INVITE at a
        // time), and it does once the hold is answered.
        core.client_hold(false);
        let outs = drain(&mut core);
        assert!(reinvite_directions(&outs).is_empty());
        assert!(outs.iter().any(|o| matches!(
            o,
            Output::Client(ClientCommand::Unheld { by_remote: false })
        )));
        core.sip_reinvite_answered(&sdp_with("recvonly", "0 101"));
        assert_eq!(
            reinvite_directions(&drain(&mut core)),
            [sdp::Direction::SendRecv]
        );
        core.sip_reinvite_answered(&sdp_with("sendrecv", "0 101"));
        assert!(reinvite_directions(&drain(&mut core)).is_empty());
        // A refused hold: the far end still sends and receives, so the client is told it is
        // not on hold.
        core.client_hold(true);
        drain(&mut core);
        core.sip_reinvite_failed();
        let outs = drain(&mut core);
        assert!(outs.iter().any(|o| matches!(
            o,
            Output::Client(ClientCommand::Unheld { by_remote: false })
        )));
        assert!(reinvite_directions(&outs).is_empty());
        assert!(!core.on_hold());
    }

    #[test]
    fn remote_hold_is_answered_recvonly_and_the_client_is_told() {
        let t0 = Instant::now();
        let mut core = CallCore::new(t0, settings());
        core.sip_answered(t0, &sdp_with("sendrecv", "0"));
        drain(&mut core);
        core.sip_reinvite(t0, &sdp_with("sendonly", "0"));
        let outs = drain(&mut core);
        let answer = outs
            .iter()
            .find_map(|o| match o {
                Output::SipReinviteAnswer { sdp } => Some(sdp.clone()),
                _ => None,
            })
            .expect("answer");
        assert_eq!(direction_of(&answer), sdp::Direction::RecvOnly);
        assert!(outs
            .iter()
            .any(|o| matches!(o, Output::Client(ClientCommand::Held { by_remote: true }))));
        core.sip_reinvite(t0, &sdp_with("sendrecv", "0"));
        let outs = drain(&mut core);
        assert!(outs
            .iter()
            .any(|o| matches!(o, Output::Client(ClientCommand::Unheld { by_remote: true }))));
    }
}
