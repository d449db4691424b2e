//! RTP over TCP (RFC 4571) for clients on networks that block UDP — the sans-IO half.
//!
//! * [`BindingTable`]: the bindings handed out by `POST /v1/calls` (README, "Calling over TCP
//!   (RFC 4571)"). A tunnel connection is bound to its call when its first RTP packet carries
//!   the SSRC the relay assigned, from the IP address that made the API request, within the
//!   bind window; the binding is then consumed. The receive-only connection a stock GStreamer
//!   client needs (`souphttpsrc`, which cannot send RTP) presents the 128-bit receive key the
//!   API returned, from the same IP, within the same window, once.
//! * [`PacketReader`]: deframes a tunnel's byte stream and classifies each packet (RTP audio
//!   as a [`MediaFrame`] sliced from the receive buffer, RTCP per RFC 5761 §4, anything else).
//! * [`PacketWriter`]: frames audio toward the client as RTP with the relay's SSRC and its own
//!   sequence numbers.
//!
//! No sockets, no clock: everything takes `now`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use skybridge_codecs::rfc4571::{self, Deframer, DeframerLimits, FramingError};
use skybridge_codecs::rtp::{self, RtpError, RtpView};

use crate::media::{Codec, MediaFrame};

/// Why a binding or a tunnel connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    #[error("no binding for this SSRC")]
    UnknownSsrc,
    #[error("the binding expired")]
    Expired,
    #[error("connection from another address than the API request")]
    WrongAddress,
    #[error("wrong receive key")]
    BadKey,
    #[error("the binding was already used")]
    AlreadyUsed,
    #[error("too many pending bindings")]
    TooManyPending,
    #[error("first packet is not RTP")]
    NotRtp,
    #[error("bad RTP packet: {0}")]
    BadRtp(RtpError),
    #[error("{0}")]
    Framing(FramingError),
}

impl TunnelError {
    /// A short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            TunnelError::UnknownSsrc => "unknown_ssrc",
            TunnelError::Expired => "binding_expired",
            TunnelError::WrongAddress => "wrong_address",
            TunnelError::BadKey => "bad_key",
            TunnelError::AlreadyUsed => "binding_used",
            TunnelError::TooManyPending => "too_many_pending",
            TunnelError::NotRtp => "not_rtp",
            TunnelError::BadRtp(_) => "bad_rtp",
            TunnelError::Framing(e) => e.label(),
        }
    }
}

impl From<FramingError> for TunnelError {
    fn from(e: FramingError) -> Self {
        TunnelError::Framing(e)
    }
}

/// One offered binding.
#[derive(Debug)]
struct Entry<T> {
    ssrc: u32,
    receive_key: u128,
    client_ip: IpAddr,
    expires: Instant,
    /// The tunnel connection has bound (the SSRC is spent).
    bound: bool,
    /// The receive connection has attached (the key is spent).
    received: bool,
    data: T,
}

/// Bindings offered by the API and waiting for their connections. `T` is what the driver
/// needs once a connection binds (who asked, where to, the call's shared state).
#[derive(Debug)]
pub struct BindingTable<T> {
    entries: HashMap<u64, Entry<T>>,
    by_ssrc: HashMap<u32, u64>,
    window: Duration,
    max_pending: usize,
    max_pending_per_ip: usize,
}

impl<T: Clone> BindingTable<T> {
    /// Bindings live `window` after the API request; at most `max_pending` wait at once (and a
    /// quarter of that, at least 1, per client IP).
    pub fn new(window: Duration, max_pending: usize) -> BindingTable<T> {
        BindingTable {
            entries: HashMap::new(),
            by_ssrc: HashMap::new(),
            window,
            max_pending,
            max_pending_per_ip: (max_pending / 4).max(1),
        }
    }

    /// Offers binding `id` for `ssrc` to `client_ip` until `now + window`. Errors when the
    /// table is full or the SSRC is taken (the caller draws another).
    pub fn offer(
        &mut self,
        now: Instant,
        client_ip: IpAddr,
        id: u64,
        ssrc: u32,
        receive_key: u128,
        data: T,
    ) -> Result<Instant, TunnelError> {
        self.expire(now);
        if self.entries.len() >= self.max_pending
            || self
                .entries
                .values()
                .filter(|e| e.client_ip == client_ip)
                .count()
                >= self.max_pending_per_ip
        {
            return Err(TunnelError::TooManyPending);
        }
        if self.by_ssrc.contains_key(&ssrc) || self.entries.contains_key(&id) {
            return Err(TunnelError::AlreadyUsed);
        }
        let expires = now + self.window;
        self.by_ssrc.insert(ssrc, id);
        self.entries.insert(
            id,
            Entry {
                ssrc,
                receive_key,
                client_ip,
                expires,
                bound: false,
                received: false,
                data,
            },
        );
        Ok(expires)
    }

    /// Whether a binding for `ssrc` waits for its tunnel connection (lets the shared port tell
    /// a 768–1023-byte RFC 4571 frame from an RTMP handshake; see `classify`).
    pub fn expects_ssrc(&self, ssrc: u32) -> bool {
        self.by_ssrc.contains_key(&ssrc)
    }

    /// Binds a tunnel connection from `peer_ip` whose first RTP packet carries `ssrc`. One-time:
    /// the SSRC cannot bind again. A wrong address does not spend the binding (the rightful
    /// client may still come).
    pub fn bind(
        &mut self,
        now: Instant,
        ssrc: u32,
        peer_ip: IpAddr,
    ) -> Result<(u64, T), TunnelError> {
        self.expire(now);
        let id = *self.by_ssrc.get(&ssrc).ok_or(TunnelError::UnknownSsrc)?;
        let entry = self.entries.get_mut(&id).ok_or(TunnelError::UnknownSsrc)?;
        if entry.client_ip != peer_ip {
            return Err(TunnelError::WrongAddress);
        }
        self.by_ssrc.remove(&ssrc);
        entry.bound = true;
        let data = entry.data.clone();
        if entry.received {
            self.entries.remove(&id);
        }
        Ok((id, data))
    }

    /// Attaches the receive-only connection of binding `id`, which presents `key`, from
    /// `peer_ip`. One-time, like [`BindingTable::bind`]; it may come before or after the tunnel.
    pub fn attach_receiver(
        &mut self,
        now: Instant,
        id: u64,
        key: u128,
        peer_ip: IpAddr,
    ) -> Result<T, TunnelError> {
        self.expire(now);
        let entry = self.entries.get_mut(&id).ok_or(TunnelError::UnknownSsrc)?;
        if !constant_time_eq_u128(entry.receive_key, key) {
            return Err(TunnelError::BadKey);
        }
        if entry.client_ip != peer_ip {
            return Err(TunnelError::WrongAddress);
        }
        if entry.received {
            return Err(TunnelError::AlreadyUsed);
        }
        entry.received = true;
        let data = entry.data.clone();
        if entry.bound {
            self.entries.remove(&id);
        }
        Ok(data)
    }

    /// Withdraws binding `id` if `key` is its receive key (the client gave up before binding).
    pub fn withdraw(&mut self, id: u64, key: u128) -> Option<T> {
        let entry = self.entries.get(&id)?;
        if !constant_time_eq_u128(entry.receive_key, key) {
            return None;
        }
        let entry = self.entries.remove(&id)?;
        self.by_ssrc.remove(&entry.ssrc);
        Some(entry.data)
    }

    /// Drops bindings whose window has passed; returns how many were never bound.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut unbound = 0;
        let by_ssrc = &mut self.by_ssrc;
        self.entries.retain(|_, e| {
            if e.expires > now {
                return true;
            }
            if !e.bound {
                unbound += 1;
                by_ssrc.remove(&e.ssrc);
            }
            false
        });
        unbound
    }

    /// Bindings still waiting for a connection.
    pub fn pending(&self) -> usize {
        self.entries.len()
    }
}

fn constant_time_eq_u128(a: u128, b: u128) -> bool {
    let x = a ^ b;
    x.to_le_bytes().iter().fold(0u8, |acc, b| acc | b) == 0
}

/// One packet read from a tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// RTP audio in a codec the call core knows; `frame.payload` is a slice of the receive
    /// buffer.
    Audio { ssrc: u32, frame: MediaFrame },
    /// RTP with a payload type we do not carry (counted and dropped).
    Unsupported {
        ssrc: u32,
        payload_type: u8,
        /// The whole packet, to read again once the connection's dynamic codec is known.
        packet: Bytes,
    },
    /// RTCP (RFC 5761 §4: second byte 192..=223); accepted and ignored for now.
    Rtcp(Bytes),
}

/// Limits of a tunnel connection's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderLimits {
    pub max_frame_len: u16,
    pub max_empty_run: u32,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        let d = DeframerLimits::default();
        ReaderLimits {
            max_frame_len: d.max_frame_len,
            max_empty_run: d.max_empty_run,
        }
    }
}

/// Reads packets off a tunnel's receive buffer.
#[derive(Debug, Clone)]
pub struct PacketReader {
    deframer: Deframer,
    /// The codec the call's client chose (`POST /v1/calls` `codec`), carried with the dynamic
    /// payload type [`Codec::rtp_payload_type`] gives it (96).
    dynamic: Option<Codec>,
}

impl PacketReader {
    pub fn new(limits: ReaderLimits) -> PacketReader {
        PacketReader {
            deframer: Deframer::new(DeframerLimits {
                max_frame_len: limits.max_frame_len,
                max_empty_run: limits.max_empty_run,
            }),
            dynamic: None,
        }
    }

    /// From now on the dynamic payload type (96) carries `codec`.
    pub fn set_dynamic(&mut self, codec: Codec) {
        self.dynamic = codec.static_payload_type().is_none().then_some(codec);
    }

    /// The next packet in `buf`, or `None` when more bytes are needed. A framing error or a
    /// packet that is neither RTCP nor valid RTP is an error: the stream cannot be trusted to
    /// be in step any more.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, TunnelError> {
        let Some(packet) = self.deframer.read(buf)? else {
            return Ok(None);
        };
        classify(packet, self.dynamic).map(Some)
    }
}

/// Classifies one deframed packet; `dynamic` is the codec payload type 96 carries, if any.
pub fn classify(packet: Bytes, dynamic: Option<Codec>) -> Result<Packet, TunnelError> {
    if rtp::is_rtcp(&packet) {
        return Ok(Packet::Rtcp(packet));
    }
    let view = RtpView::parse(&packet).map_err(TunnelError::BadRtp)?;
    let ssrc = view.ssrc();
    let payload_type = view.payload_type();
    let codec = Codec::from_rtp_payload_type(payload_type).or(dynamic
        .filter(|c| c.rtp_payload_type() == payload_type && c.static_payload_type().is_none()));
    let Some(codec) = codec else {
        return Ok(Packet::Unsupported {
            ssrc,
            payload_type,
            packet,
        });
    };
    let frame = MediaFrame {
        codec,
        timestamp: view.timestamp(),
        marker: view.marker(),
        payload: packet.slice(view.payload_range()),
    };
    Ok(Packet::Audio { ssrc, frame })
}

/// Frames audio toward the client as RTP: payload type from the codec, the frame's timestamp,
/// the relay's SSRC and a sequence number of its own.
#[derive(Debug, Clone)]
pub struct PacketWriter {
    ssrc: u32,
    seq: u16,
}

impl PacketWriter {
    pub fn new(ssrc: u32, first_seq: u16) -> PacketWriter {
        PacketWriter {
            ssrc,
            seq: first_seq,
        }
    }

    /// Appends one RFC 4571 frame carrying `frame` to `out`.
    pub fn write(&mut self, out: &mut BytesMut, frame: &MediaFrame) -> Result<(), TunnelError> {
        let mut header = [0u8; rtp::FIXED_HEADER_LEN];
        rtp::write_header(
            &mut header,
            frame.codec.rtp_payload_type(),
            frame.marker,
            self.seq,
            frame.timestamp,
            self.ssrc,
        )
        .map_err(TunnelError::BadRtp)?;
        rfc4571::write_frame_parts(out, &header, &frame.payload)?;
        self.seq = self.seq.wrapping_add(1);
        Ok(())
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    const A: &str = "192.0.2.1";
    const B: &str = "192.0.2.2";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table() -> BindingTable<&'static str> {
        BindingTable::new(Duration::from_secs(10), 8)
    }

    fn rtp_packet(pt: u8, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        rtp::write_header(&mut p, pt, false, 1, 160, ssrc).unwrap();
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn the_assigned_ssrc_from_the_api_callers_address_binds_once() {
        let now = Instant::now();
        let mut t = table();
        t.offer(now, ip(A), 1, 0xABCD, 7, "call").unwrap();
        assert_eq!(t.bind(now, 0xABCD, ip(A)), Ok((1, "call")));
        assert_eq!(t.bind(now, 0xABCD, ip(A)), Err(TunnelError::UnknownSsrc));
    }

    #[test]
    fn another_address_is_refused_without_spending_the_binding() {
        let now = Instant::now();
        let mut t = table();
        t.offer(now, ip(A), 1, 0xABCD, 7, "call").unwrap();
        assert_eq!(t.bind(now, 0xABCD, ip(B)), Err(TunnelError::WrongAddress));
        assert_eq!(t.bind(now, 0xABCD, ip(A)), Ok((1, "call")));
    }

    #[test]
    fn unknown_ssrc_and_expired_bindings_are_refused() {
        let now = Instant::now();
        let mut t = table();
        t.offer(now, ip(A), 1, 5, 7, "call").unwrap();
        assert_eq!(t.bind(now, 6, ip(A)), Err(TunnelError::UnknownSsrc));
        let late = now + Duration::from_secs(10);
        assert_eq!(t.bind(late, 5, ip(A)), Err(TunnelError::UnknownSsrc));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn the_receiver_needs_the_key_and_the_address_and_attaches_once() {
        let now = Instant::now();
        let mut t = table();
        t.offer(now, ip(A), 1, 5, 0x1234, "call").unwrap();
        assert_eq!(
            t.attach_receiver(now, 1, 0x1235, ip(A)),
            Err(TunnelError::BadKey)
        );
        assert_eq!(
            t.attach_receiver(now, 1, 0x1234, ip(B)),
            Err(TunnelError::WrongAddress)
        );
        assert_eq!(t.attach_receiver(now, 1, 0x1234, ip(A)), Ok("call"));
        assert_eq!(
            t.attach_receiver(now, 1, 0x1234, ip(A)),
            Err(TunnelError::AlreadyUsed)
        );
        // The tunnel may still bind after the receiver; then the entry is gone.
        assert_eq!(t.bind(now, 5, ip(A)), Ok((1, "call")));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn pending_bindings_are_capped_per_address_and_in_all() {
        let now = Instant::now();
        let mut t = table();
        t.offer(now, ip(A), 1, 1, 1, "a").unwrap();
        t.offer(now, ip(A), 2, 2, 1, "a").unwrap();
        assert_eq!(
            t.offer(now, ip(A), 3, 3, 1, "a"),
            Err(TunnelError::TooManyPending)
        );
        assert_eq!(
            t.offer(now, ip(B), 4, 2, 1, "b"),
            Err(TunnelError::AlreadyUsed)
        );
        // Expired offers make room again.
        let later = now + Duration::from_secs(11);
        t.offer(later, ip(A), 3, 3, 1, "a").unwrap();
    }

    #[test]
    fn a_withdrawn_binding_cannot_bind() {
        let now = Instant::now();
        let mut t = table();
        t.offer(now, ip(A), 1, 5, 9, "call").unwrap();
        assert_eq!(t.withdraw(1, 8), None);
        assert_eq!(t.withdraw(1, 9), Some("call"));
        assert_eq!(t.bind(now, 5, ip(A)), Err(TunnelError::UnknownSsrc));
    }

    #[test]
    fn rtp_audio_comes_out_as_a_media_frame_sliced_from_the_buffer() {
        let mut buf = BytesMut::new();
        rfc4571::write_frame(&mut buf, &rtp_packet(0, 42, &[0xFF; 160])).unwrap();
        let base = buf.as_ptr() as usize;
        let mut r = PacketReader::new(ReaderLimits::default());
        let Some(Packet::Audio { ssrc, frame }) = r.next(&mut buf).unwrap() else {
            panic!("no audio");
        };
        assert_eq!(ssrc, 42);
        assert_eq!(frame.codec, Codec::Pcmu);
        assert_eq!(frame.timestamp, 160);
        assert_eq!(frame.payload.len(), 160);
        assert_eq!(frame.payload.as_ptr() as usize, base + 2 + 12);
    }

    #[test]
    fn rtcp_and_other_payload_types_are_told_apart_from_audio() {
        let mut buf = BytesMut::new();
        // An RTCP receiver report header: V=2, PT 201.
        rfc4571::write_frame(&mut buf, &[0x80, 201, 0, 1, 0, 0, 0, 42]).unwrap();
        rfc4571::write_frame(&mut buf, &rtp_packet(101, 42, &[1, 2, 3, 4])).unwrap();
        let mut r = PacketReader::new(ReaderLimits::default());
        assert!(matches!(r.next(&mut buf).unwrap(), Some(Packet::Rtcp(_))));
        assert!(matches!(
            r.next(&mut buf).unwrap(),
            Some(Packet::Unsupported {
                ssrc: 42,
                payload_type: 101,
                ..
            })
        ));
    }

    #[test]
    fn the_dynamic_payload_type_carries_the_codec_the_client_chose() {
        let opus = rtp_packet(96, 7, &[0x78, 1, 2]);
        let mut buf = BytesMut::new();
        rfc4571::write_frame(&mut buf, &opus).unwrap();
        rfc4571::write_frame(&mut buf, &opus).unwrap();
        rfc4571::write_frame(&mut buf, &rtp_packet(0, 7, &[0xFF; 160])).unwrap();
        rfc4571::write_frame(&mut buf, &rtp_packet(97, 7, &[1])).unwrap();
        let mut r = PacketReader::new(ReaderLimits::default());
        let Some(Packet::Unsupported { packet, .. }) = r.next(&mut buf).unwrap() else {
            panic!("96 means nothing before the codec is known");
        };
        let again = classify(packet, Some(Codec::Opus)).unwrap();
        assert!(matches!(again, Packet::Audio { ssrc: 7, frame } if frame.codec == Codec::Opus));
        r.set_dynamic(Codec::Opus);
        assert!(matches!(r.next(&mut buf).unwrap(),
            Some(Packet::Audio { frame, .. }) if frame.codec == Codec::Opus && frame.payload[..] == [0x78, 1, 2]));
        assert!(
            matches!(r.next(&mut buf).unwrap(),
            Some(Packet::Audio { frame, .. }) if frame.codec == Codec::Pcmu),
            "static types still work"
        );
        assert!(matches!(
            r.next(&mut buf).unwrap(),
            Some(Packet::Unsupported {
                payload_type: 97,
                ..
            })
        ));
        // A static codec's choice adds no dynamic type.
        r.set_dynamic(Codec::G722);
        let mut buf = BytesMut::new();
        rfc4571::write_frame(&mut buf, &opus).unwrap();
        assert!(matches!(
            r.next(&mut buf).unwrap(),
            Some(Packet::Unsupported { .. })
        ));
    }

    #[test]
    fn garbage_in_a_frame_is_an_error() {
        let mut buf = BytesMut::new();
        rfc4571::write_frame(&mut buf, &[0x00; 20]).unwrap();
        let mut r = PacketReader::new(ReaderLimits::default());
        assert_eq!(
            r.next(&mut buf),
            Err(TunnelError::BadRtp(RtpError::BadVersion(0)))
        );
    }

    #[test]
    fn the_writer_numbers_packets_with_the_relays_ssrc() {
        let mut w = PacketWriter::new(0x5EED, 65535);
        let mut out = BytesMut::new();
        let frame = MediaFrame {
            codec: Codec::Pcma,
            timestamp: 800,
            marker: true,
            payload: Bytes::from_static(&[0xD5; 160]),
        };
        w.write(&mut out, &frame).unwrap();
        w.write(&mut out, &frame).unwrap();
        let mut seqs = Vec::new();
        while let Some(p) = Deframer::new(DeframerLimits::default())
            .read(&mut out)
            .unwrap()
        {
            let v = RtpView::parse(&p).unwrap();
            assert_eq!(
                (v.ssrc(), v.payload_type(), v.timestamp()),
                (0x5EED, 8, 800)
            );
            assert!(v.marker());
            seqs.push(v.sequence());
        }
        assert_eq!(seqs, vec![65535, 0]);
    }
}
