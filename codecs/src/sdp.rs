//! SDP (RFC 8866) borrowed parser and builder, plus RFC 3264 offer/answer helpers for audio.
//!
//! ```text
//! session  = "v=0" EOL *(line EOL) ; EOL = CRLF or LF
//! line     = type "=" value        ; type = one lowercase letter
//! o=<username> <sess-id> <sess-version> IN <addrtype> <address>
//! c=IN <IP4|IP6> <address>[/ttl[/n]]
//! m=<media> <port>[/<n>] <proto> <fmt> *(SP <fmt>)
//! a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]
//! a=fmtp:<pt> <parameters>
//! a=ptime:<ms>   a=rtcp:<port> [IN <addrtype> <address>]   a=rtcp-mux
//! a=sendrecv | a=sendonly | a=recvonly | a=inactive
//! ```
//!
//! Limits (hostile input): at most [`MAX_SDP_LEN`] bytes, [`MAX_MEDIA`] m= lines,
//! [`MAX_ATTRIBUTES`] a= lines per section, [`MAX_FORMATS`] formats per m= line. NUL bytes and
//! non-UTF-8 are rejected. Ports are decimal `u16`; RTP payload types are 0..=127. Formats of a
//! non-RTP m= line (e.g. `UDP/DTLS/SCTP webrtc-datachannel`) are not numbers and are not kept.
//! Unknown lines and attributes are ignored (but counted).

use std::fmt::Write as _;
use std::net::IpAddr;

/// Largest SDP body accepted.
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// Most m= sections accepted.
pub const MAX_MEDIA: usize = 16;
/// Most a= lines per section (session level or one m= section).
pub const MAX_ATTRIBUTES: usize = 256;
/// Most formats on one m= line.
pub const MAX_FORMATS: usize = 64;

/// Why an SDP body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Longer than [`MAX_SDP_LEN`].
    #[error("SDP longer than 64 KiB")]
    TooLarge,
    /// Contains a NUL byte.
    #[error("SDP contains a NUL byte")]
    NulByte,
    /// Not valid UTF-8.
    #[error("SDP is not UTF-8")]
    NotUtf8,
    /// First line is not `v=0`.
    #[error("SDP does not start with v=0")]
    BadVersion,
    /// A line is not `<letter>=<value>`.
    #[error("SDP line is not <type>=<value>")]
    BadLine,
    /// A line that may appear once appeared twice in the same section.
    #[error("SDP line repeated")]
    DuplicateLine,
    /// Malformed o= line.
    #[error("SDP o= line malformed")]
    BadOrigin,
    /// Malformed c= line.
    #[error("SDP c= line malformed")]
    BadConnection,
    /// Malformed m= line.
    #[error("SDP m= line malformed")]
    BadMedia,
    /// Port is not a decimal u16.
    #[error("SDP port is not a decimal 16-bit number")]
    BadPort,
    /// RTP payload type is not 0..=127.
    #[error("SDP payload type is not 0..=127")]
    BadPayloadType,
    /// More than [`MAX_MEDIA`] m= lines.
    #[error("SDP has too many m= lines")]
    TooManyMedia,
    /// More than [`MAX_ATTRIBUTES`] a= lines in one section.
    #[error("SDP has too many attributes")]
    TooManyAttributes,
    /// More than [`MAX_FORMATS`] formats on one m= line.
    #[error("SDP m= line has too many formats")]
    TooManyFormats,
    /// Malformed a=rtpmap.
    #[error("SDP a=rtpmap malformed")]
    BadRtpmap,
    /// Malformed a=fmtp.
    #[error("SDP a=fmtp malformed")]
    BadFmtp,
    /// Malformed a=ptime.
    #[error("SDP a=ptime malformed")]
    BadPtime,
    /// Malformed a=rtcp.
    #[error("SDP a=rtcp malformed")]
    BadRtcp,
}

/// Media direction attribute (RFC 8866 §6.7, RFC 3264 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `a=sendrecv` (the default).
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The direction to put in an answer to an offer with this direction.
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// Attribute name, e.g. `"sendrecv"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an attribute name (exact, lowercase).
    pub fn from_attribute(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// True when the side that wrote this direction will send media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// True when the side that wrote this direction wants to receive media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// `o=` line (RFC 8866 §5.2); the network type is always `IN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// Username (`-` when none).
    pub username: &'a str,
    /// Session id.
    pub session_id: &'a str,
    /// Session version (incremented on each change).
    pub session_version: &'a str,
    /// Unicast address of the originator.
    pub address: &'a str,
}

/// `c=` line (RFC 8866 §5.7); the network type is always `IN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection<'a> {
    /// `IP4` or `IP6`.
    pub address_type: &'a str,
    /// Address, possibly with `/ttl[/n]` for multicast.
    pub address: &'a str,
}

impl Connection<'_> {
    /// The address as an IP (text before any `/`), if it parses and matches the address type.
    pub fn ip(&self) -> Option<IpAddr> {
        let host = self.address.split('/').next()?;
        let ip: IpAddr = host.parse().ok()?;
        match (self.address_type, ip) {
            ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Some(ip),
            _ => None,
        }
    }
}

/// `a=rtpmap` (RFC 8866 §6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpMap<'a> {
    /// Payload type, 0..=127.
    pub payload_type: u8,
    /// Encoding name as written (compare case-insensitively).
    pub encoding: &'a str,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Channel count for audio, if given.
    pub channels: Option<u8>,
}

/// One m= section (RFC 8866 §5.14) with the attributes we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription<'a> {
    /// Media type: `audio`, `video`, …
    pub media: &'a str,
    /// Transport port; 0 means the stream is rejected/disabled.
    pub port: u16,
    /// Transport protocol, e.g. `RTP/AVP`.
    pub proto: &'a str,
    /// RTP payload types in preference order (empty for non-RTP protocols).
    pub formats: Vec<u8>,
    /// Media-level c=.
    pub connection: Option<Connection<'a>>,
    /// `a=rtpmap` lines.
    pub rtpmaps: Vec<RtpMap<'a>>,
    /// `a=fmtp` lines: payload type and parameter text.
    pub fmtps: Vec<(u8, &'a str)>,
    /// `a=ptime` in milliseconds.
    pub ptime: Option<u32>,
    /// Media-level direction attribute.
    pub direction: Option<Direction>,
    /// `a=rtcp` (RFC 3605): port and optional address.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    /// `a=rtcp-mux` (RFC 5761).
    pub rtcp_mux: bool,
}

/// Static RTP/AVP audio payload types (RFC 3551 §6) we may meet without an rtpmap.
const STATIC_AUDIO: &[(u8, &str, u32)] = &[
    (0, "PCMU", 8000),
    (3, "GSM", 8000),
    (4, "G723", 8000),
    (8, "PCMA", 8000),
    (9, "G722", 8000),
    (18, "G729", 8000),
];

impl MediaDescription<'_> {
    /// True when the protocol carries RTP (`RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, …).
    pub fn is_rtp(&self) -> bool {
        is_rtp_proto(self.proto)
    }

    /// Payload type this m= line uses for `encoding`/`clock_rate`: an offered format with a
    /// matching rtpmap (encoding compared case-insensitively), else an offered static payload
    /// type (0 PCMU, 8 PCMA, 9 G722, …) that has no rtpmap of its own.
    pub fn payload_type_for(&self, encoding: &str, clock_rate: u32) -> Option<u8> {
        self.formats.iter().copied().find(|&pt| {
            self.encoding_of(pt)
                .is_some_and(|(e, r)| r == clock_rate && e.eq_ignore_ascii_case(encoding))
        })
    }

    /// Encoding name and clock rate of `pt`: from its rtpmap, else the static table.
    pub fn encoding_of(&self, pt: u8) -> Option<(&str, u32)> {
        if let Some(m) = self.rtpmaps.iter().find(|m| m.payload_type == pt) {
            return Some((m.encoding, m.clock_rate));
        }
        STATIC_AUDIO
            .iter()
            .find(|s| s.0 == pt)
            .map(|&(_, name, rate)| (name, rate))
    }

    /// Parameter text of `a=fmtp:<pt>`, if any.
    pub fn fmtp_of(&self, pt: u8) -> Option<&str> {
        self.fmtps.iter().find(|f| f.0 == pt).map(|f| f.1)
    }
}

/// A parsed SDP body borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDescription<'a> {
    /// o= line.
    pub origin: Option<Origin<'a>>,
    /// s= line.
    pub session_name: Option<&'a str>,
    /// Session-level c=.
    pub connection: Option<Connection<'a>>,
    /// Session-level direction attribute.
    pub direction: Option<Direction>,
    /// m= sections in order.
    pub media: Vec<MediaDescription<'a>>,
}

fn is_rtp_proto(proto: &str) -> bool {
    proto.split('/').any(|p| p == "RTP")
}

fn digits(s: &str, max_len: usize) -> bool {
    !s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit())
}

/// `port = 1*5DIGIT` fitting u16.
fn parse_port(s: &str) -> Result<u16, SdpError> {
    if !digits(s, 5) {
        return Err(SdpError::BadPort);
    }
    s.parse().map_err(|_| SdpError::BadPort)
}

/// `pt = 1*3DIGIT` in 0..=127.
fn parse_pt(s: &str) -> Result<u8, SdpError> {
    if !digits(s, 3) {
        return Err(SdpError::BadPayloadType);
    }
    match s.parse::<u8>() {
        Ok(pt) if pt <= 127 => Ok(pt),
        _ => Err(SdpError::BadPayloadType),
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    if digits(s, 10) {
        s.parse().ok()
    } else {
        None
    }
}

/// `c=IN <addrtype> <address>`
fn parse_connection(v: &str) -> Result<Connection<'_>, SdpError> {
    let mut it = v.split_ascii_whitespace();
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some("IN"), Some(t @ ("IP4" | "IP6")), Some(address), None) => Ok(Connection {
            address_type: t,
            address,
        }),
        _ => Err(SdpError::BadConnection),
    }
}

/// `o=<username> <sess-id> <sess-version> IN <addrtype> <address>`
fn parse_origin(v: &str) -> Result<Origin<'_>, SdpError> {
    let mut it = v.split_ascii_whitespace();
    match (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) {
        (
            Some(username),
            Some(session_id),
            Some(session_version),
            Some("IN"),
            Some(_),
            Some(address),
            None,
        ) => Ok(Origin {
            username,
            session_id,
            session_version,
            address,
        }),
        _ => Err(SdpError::BadOrigin),
    }
}

/// `m=<media> <port>[/<n>] <proto> 1*(SP <fmt>)`
fn parse_media(v: &str) -> Result<MediaDescription<'_>, SdpError> {
    let mut it = v.split_ascii_whitespace();
    let media = it.next().ok_or(SdpError::BadMedia)?;
    let port_field = it.next().ok_or(SdpError::BadMedia)?;
    let port = match port_field.split_once('/') {
        Some((p, n)) => {
            if !digits(n, 5) {
                return Err(SdpError::BadPort);
            }
            parse_port(p)?
        }
        None => parse_port(port_field)?,
    };
    let proto = it.next().ok_or(SdpError::BadMedia)?;
    let rtp = is_rtp_proto(proto);
    let mut formats = Vec::new();
    let mut n = 0usize;
    for f in it {
        n += 1;
        if n > MAX_FORMATS {
            return Err(SdpError::TooManyFormats);
        }
        if rtp {
            formats.push(parse_pt(f)?);
        }
    }
    if n == 0 {
        return Err(SdpError::BadMedia);
    }
    Ok(MediaDescription {
        media,
        port,
        proto,
        formats,
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        ptime: None,
        direction: None,
        rtcp: None,
        rtcp_mux: false,
    })
}

/// `a=rtpmap:<pt> <encoding>/<rate>[/<channels>]`
fn parse_rtpmap(v: &str) -> Result<RtpMap<'_>, SdpError> {
    let (pt, rest) = v.split_once(' ').ok_or(SdpError::BadRtpmap)?;
    let payload_type = parse_pt(pt)?;
    let mut parts = rest.trim().split('/');
    let encoding = parts
        .next()
        .filter(|e| !e.is_empty())
        .ok_or(SdpError::BadRtpmap)?;
    let clock_rate = parts
        .next()
        .and_then(parse_u32)
        .ok_or(SdpError::BadRtpmap)?;
    let channels = match parts.next() {
        None => None,
        Some(c) => Some(
            digits(c, 3)
                .then(|| c.parse::<u8>().ok())
                .flatten()
                .ok_or(SdpError::BadRtpmap)?,
        ),
    };
    if parts.next().is_some() {
        return Err(SdpError::BadRtpmap);
    }
    Ok(RtpMap {
        payload_type,
        encoding,
        clock_rate,
        channels,
    })
}

/// `a=fmtp:<pt> <params>` (params may be empty)
fn parse_fmtp(v: &str) -> Result<(u8, &str), SdpError> {
    let (pt, params) = v.split_once(' ').unwrap_or((v, ""));
    let pt = parse_pt(pt).map_err(|_| SdpError::BadFmtp)?;
    Ok((pt, params.trim()))
}

/// `a=ptime:<ms>` (a fractional part, as some phones send, is dropped)
fn parse_ptime(v: &str) -> Result<u32, SdpError> {
    let (int, frac) = v.trim().split_once('.').unwrap_or((v.trim(), "0"));
    if !digits(frac, 6) {
        return Err(SdpError::BadPtime);
    }
    parse_u32(int).ok_or(SdpError::BadPtime)
}

/// `a=rtcp:<port> [IN <addrtype> <address>]`
fn parse_rtcp(v: &str) -> Result<(u16, Option<IpAddr>), SdpError> {
    let v = v.trim();
    let (port, rest) = v.split_once(' ').unwrap_or((v, ""));
    let port = parse_port(port).map_err(|_| SdpError::BadRtcp)?;
    if rest.trim().is_empty() {
        return Ok((port, None));
    }
    let c = parse_connection(rest).map_err(|_| SdpError::BadRtcp)?;
    Ok((port, Some(c.ip().ok_or(SdpError::BadRtcp)?)))
}

fn set_once<T>(slot: &mut Option<T>, v: T) -> Result<(), SdpError> {
    if slot.is_some() {
        return Err(SdpError::DuplicateLine);
    }
    *slot = Some(v);
    Ok(())
}

impl<'a> SessionDescription<'a> {
    /// Parses an SDP body (CRLF or LF line ends) within the limits in the module docs.
    pub fn parse(buf: &'a [u8]) -> Result<Self, SdpError> {
        if buf.len() > MAX_SDP_LEN {
            return Err(SdpError::TooLarge);
        }
        if buf.contains(&0) {
            return Err(SdpError::NulByte);
        }
        let text = std::str::from_utf8(buf).map_err(|_| SdpError::NotUtf8)?;
        let mut lines = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| !l.is_empty());
        if lines.next() != Some("v=0") {
            return Err(SdpError::BadVersion);
        }
        let mut sd = SessionDescription::default();
        let mut attributes = 0usize;
        for line in lines {
            let (kind, value) = match line.as_bytes() {
                [k @ b'a'..=b'z', b'=', ..] => (*k, line.get(2..).unwrap_or("")),
                _ => return Err(SdpError::BadLine),
            };
            if kind == b'm' {
                if sd.media.len() >= MAX_MEDIA {
                    return Err(SdpError::TooManyMedia);
                }
                sd.media.push(parse_media(value)?);
                attributes = 0;
                continue;
            }
            match sd.media.last_mut() {
                None => match kind {
                    b'v' => return Err(SdpError::DuplicateLine),
                    b'o' => set_once(&mut sd.origin, parse_origin(value)?)?,
                    b's' => set_once(&mut sd.session_name, value)?,
                    b'c' => set_once(&mut sd.connection, parse_connection(value)?)?,
                    b'a' => {
                        attributes += 1;
                        if attributes > MAX_ATTRIBUTES {
                            return Err(SdpError::TooManyAttributes);
                        }
                        if let Some(d) = Direction::from_attribute(value.trim_end()) {
                            sd.direction = Some(d);
                        }
                    }
                    _ => {}
                },
                Some(m) => match kind {
                    b'c' => set_once(&mut m.connection, parse_connection(value)?)?,
                    b'a' => {
                        attributes += 1;
                        if attributes > MAX_ATTRIBUTES {
                            return Err(SdpError::TooManyAttributes);
                        }
                        media_attribute(m, value)?;
                    }
                    _ => {}
                },
            }
        }
        Ok(sd)
    }

    /// The first `m=audio` section (it may have port 0, i.e. be rejected).
    pub fn first_audio(&self) -> Option<&MediaDescription<'a>> {
        self.media.iter().find(|m| m.media == "audio")
    }

    /// Where to send media for `m`: its own c= if present, else the session c=.
    pub fn media_address(&self, m: &MediaDescription<'a>) -> Option<IpAddr> {
        m.connection.or(self.connection).and_then(|c| c.ip())
    }

    /// Direction of `m`: its own attribute, else the session one, else sendrecv.
    pub fn media_direction(&self, m: &MediaDescription<'a>) -> Direction {
        m.direction
            .or(self.direction)
            .unwrap_or(Direction::SendRecv)
    }
}

/// Applies one media-level `a=` value.
fn media_attribute<'a>(m: &mut MediaDescription<'a>, value: &'a str) -> Result<(), SdpError> {
    let (name, val) = value.split_once(':').unwrap_or((value, ""));
    match name {
        "rtpmap" => m.rtpmaps.push(parse_rtpmap(val)?),
        "fmtp" => m.fmtps.push(parse_fmtp(val)?),
        "ptime" => m.ptime = Some(parse_ptime(val)?),
        "rtcp" => m.rtcp = Some(parse_rtcp(val)?),
        "rtcp-mux" => m.rtcp_mux = true,
        _ => {
            if let Some(d) = Direction::from_attribute(name.trim_end()) {
                m.direction = Some(d);
            }
        }
    }
    Ok(())
}

/// RFC 3264 §6.1 codec selection for an answer: every offered format whose encoding and clock
/// rate appear in `supported` (names compared case-insensitively), **in the offer's order**,
/// keeping the offer's payload type numbers. Each entry is `(offer PT, name from supported,
/// clock rate)`, so passing `&'static str` names gives entries that fit [`SdpBuilder::codecs`].
/// Duplicate offered PTs are listed once. Negotiate `telephone-event` separately with
/// [`MediaDescription::payload_type_for`] and leave it out of `supported`.
/// An empty result means no common codec: reject the stream (port 0) or the call (488).
pub fn answer_codecs<'s>(
    offer: &MediaDescription<'_>,
    supported: &[(&'s str, u32)],
) -> Vec<(u8, &'s str, u32)> {
    let mut out: Vec<(u8, &'s str, u32)> = Vec::new();
    for &pt in &offer.formats {
        if out.iter().any(|c| c.0 == pt) {
            continue;
        }
        let Some((enc, rate)) = offer.encoding_of(pt) else {
            continue;
        };
        if let Some(&(name, r)) = supported
            .iter()
            .find(|(n, r)| *r == rate && n.eq_ignore_ascii_case(enc))
        {
            out.push((pt, name, r));
        }
    }
    out
}

/// Owned builder for our offers and answers (one audio stream over RTP/AVP).
///
/// Output: `v=0`, `o=`, `s=skybridge`, `c=`, `t=0 0`, `m=audio`, an `a=rtpmap` per codec, for
/// telephone-event an `a=rtpmap:<pt> telephone-event/8000` and `a=fmtp:<pt> 0-16`, `a=ptime`,
/// the direction attribute. Do not list telephone-event in `codecs` too. If there are no
/// payload types at all, the m= line carries format `0` (an m= line needs one) — use port 0 for
/// a rejected stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpBuilder {
    /// o= username.
    pub username: String,
    /// o= session id.
    pub session_id: u64,
    /// o= session version.
    pub session_version: u64,
    /// Our media address (o= and c=).
    pub address: IpAddr,
    /// Our RTP port (0 rejects the stream).
    pub port: u16,
    /// `(payload type, encoding name, clock rate)` in preference order. `opus` is written as
    /// RFC 7587 §7 requires, `opus/48000/2`, with `a=fmtp:<pt> useinbandfec=1` (§6.1).
    pub codecs: Vec<(u8, &'static str, u32)>,
    /// Payload type for RFC 4733 telephone-event/8000, if offered/accepted.
    pub telephone_event: Option<u8>,
    /// Packetization time in ms.
    pub ptime: Option<u32>,
    /// Direction attribute to write.
    pub direction: Direction,
}

impl SdpBuilder {
    /// Builds the SDP with CRLF line ends; RTCP is implied on `port + 1`.
    pub fn build(&self) -> Vec<u8> {
        self.build_inner(None)
    }

    /// Like [`SdpBuilder::build`], adding `a=rtcp:<rtcp_port>` (RFC 3605) when the RTCP port is
    /// not `port + 1`.
    pub fn build_with_rtcp(&self, rtcp_port: u16) -> Vec<u8> {
        self.build_inner(Some(rtcp_port))
    }

    fn build_inner(&self, rtcp_port: Option<u16>) -> Vec<u8> {
        let family = match self.address {
            IpAddr::V4(_) => "IP4",
            IpAddr::V6(_) => "IP6",
        };
        // Usernames with spaces or line breaks would corrupt the o= line.
        let username: &str = if self.username.is_empty()
            || self
                .username
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            "-"
        } else {
            &self.username
        };
        let mut s = String::with_capacity(256);
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            "v=0\r\no={username} {} {} IN {family} {}\r\ns=skybridge\r\nc=IN {family} {}\r\nt=0 0\r\nm=audio {} RTP/AVP",
            self.session_id, self.session_version, self.address, self.address, self.port
        );
        let pts = self
            .codecs
            .iter()
            .map(|c| c.0)
            .chain(self.telephone_event)
            .filter(|&pt| pt <= 127);
        let mut any = false;
        for pt in pts {
            any = true;
            let _ = write!(s, " {pt}");
        }
        if !any {
            s.push_str(" 0");
        }
        s.push_str("\r\n");
        for &(pt, name, rate) in self.codecs.iter().filter(|c| c.0 <= 127) {
            if name.eq_ignore_ascii_case("opus") {
                let _ = write!(
                    s,
                    "a=rtpmap:{pt} {name}/{rate}/2\r\na=fmtp:{pt} useinbandfec=1\r\n"
                );
            } else {
                let _ = write!(s, "a=rtpmap:{pt} {name}/{rate}\r\n");
            }
        }
        if let Some(te) = self.telephone_event.filter(|&pt| pt <= 127) {
            let _ = write!(
                s,
                "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
            );
        }
        if let Some(p) = self.ptime {
            let _ = write!(s, "a=ptime:{p}\r\n");
        }
        if let Some(r) = rtcp_port.filter(|&r| Some(r) != self.port.checked_add(1)) {
            let _ = write!(s, "a=rtcp:{r}\r\n");
        }
        let _ = write!(s, "a={}\r\n", self.direction.as_str());
        s.into_bytes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const ASTERISK_OFFER: &str = "v=0\r\n\
o=- 1234 5678 IN IP4 192.0.2.10\r\n\
s=Asterisk\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 17000 RTP/AVP 8 0 9 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";

    #[test]
    fn parses_a_typical_pbx_offer() {
        let sd = SessionDescription::parse(ASTERISK_OFFER.as_bytes()).unwrap();
        let o = sd.origin.unwrap();
        assert_eq!(
            (o.username, o.session_id, o.session_version),
            ("-", "1234", "5678")
        );
        assert_eq!(sd.session_name, Some("Asterisk"));
        let m = sd.first_audio().unwrap();
        assert_eq!((m.port, m.proto), (17000, "RTP/AVP"));
        assert_eq!(m.formats, [8, 0, 9, 101]);
        assert_eq!(m.rtpmaps.len(), 4);
        assert_eq!(m.fmtp_of(101), Some("0-16"));
        assert_eq!(m.ptime, Some(20));
        assert_eq!(sd.media_direction(m), Direction::SendRecv);
        assert_eq!(
            sd.media_address(m),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)))
        );
        assert_eq!(m.payload_type_for("telephone-event", 8000), Some(101));
        assert_eq!(m.encoding_of(9), Some(("G722", 8000)));
    }

    #[test]
    fn accepts_lf_line_ends_and_static_payload_types_without_rtpmap() {
        let sdp = "v=0\no=alice 1 1 IN IP4 198.51.100.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0 8\nc=IN IP4 198.51.100.7\na=recvonly\n";
        let sd = SessionDescription::parse(sdp.as_bytes()).unwrap();
        let m = sd.first_audio().unwrap();
        assert_eq!(m.payload_type_for("pcma", 8000), Some(8));
        assert_eq!(m.payload_type_for("PCMU", 8000), Some(0));
        assert_eq!(m.payload_type_for("G722", 8000), None, "not offered");
        assert_eq!(m.payload_type_for("PCMU", 16000), None);
        assert_eq!(sd.media_address(m), Some("198.51.100.7".parse().unwrap()));
        assert_eq!(sd.connection, None);
        assert_eq!(sd.media_direction(m), Direction::RecvOnly);
    }

    #[test]
    fn session_level_direction_and_connection_apply_to_media_without_their_own() {
        let sdp = "v=0\r\nc=IN IP6 2001:db8::1\r\na=sendonly\r\nm=audio 5000 RTP/AVP 0\r\nm=audio 5002 RTP/AVP 0\r\na=inactive\r\n";
        let sd = SessionDescription::parse(sdp.as_bytes()).unwrap();
        assert_eq!(sd.media_direction(&sd.media[0]), Direction::SendOnly);
        assert_eq!(sd.media_direction(&sd.media[1]), Direction::Inactive);
        assert_eq!(
            sd.media_address(&sd.media[0]),
            Some("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn rtcp_rtcp_mux_and_non_rtp_media_are_understood() {
        let sdp = "v=0\r\nm=audio 5000 RTP/AVP 0\r\na=rtcp:5011 IN IP4 203.0.113.9\r\na=rtcp-mux\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        let sd = SessionDescription::parse(sdp.as_bytes()).unwrap();
        let m = &sd.media[0];
        assert_eq!(m.rtcp, Some((5011, Some("203.0.113.9".parse().unwrap()))));
        assert!(m.rtcp_mux);
        assert!(!sd.media[1].is_rtp());
        assert!(sd.media[1].formats.is_empty());
        let sd = SessionDescription::parse(b"v=0\nm=audio 5000 RTP/AVP 0\na=rtcp:5001\n").unwrap();
        assert_eq!(sd.media[0].rtcp, Some((5001, None)));
    }

    #[test]
    fn hostile_values_are_rejected() {
        let bad = |s: &str| SessionDescription::parse(s.as_bytes()).unwrap_err();
        assert_eq!(
            bad("v=0\r\nm=audio 17000 RTP/AVP 4294967296\r\n"),
            SdpError::BadPayloadType
        );
        assert_eq!(
            bad("v=0\r\nm=audio 17000 RTP/AVP 128\r\n"),
            SdpError::BadPayloadType
        );
        assert_eq!(bad("v=0\r\nm=audio RTP/AVP 0\r\n"), SdpError::BadPort);
        assert_eq!(bad("v=0\r\nm=audio 65536 RTP/AVP 0\r\n"), SdpError::BadPort);
        assert_eq!(bad("v=0\r\nm=audio +5 RTP/AVP 0\r\n"), SdpError::BadPort);
        assert_eq!(bad("v=0\r\nm=audio 5000 RTP/AVP\r\n"), SdpError::BadMedia);
        assert_eq!(
            bad("v=0\r\nm=audio 5000 RTP/AVP 0\r\na=fmtp\0\r\n"),
            SdpError::NulByte
        );
        assert_eq!(
            bad("v=0\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:300 X/8000\r\n"),
            SdpError::BadPayloadType
        );
        assert_eq!(
            bad("v=0\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:96 opus\r\n"),
            SdpError::BadRtpmap
        );
        assert_eq!(
            bad("v=0\r\nm=audio 5000 RTP/AVP 0\r\na=ptime:x\r\n"),
            SdpError::BadPtime
        );
        assert_eq!(
            bad("v=0\r\nm=audio 5000 RTP/AVP 0\r\na=rtcp:RTP\r\n"),
            SdpError::BadRtcp
        );
        assert_eq!(
            bad("v=0\r\nm=audio 5000 RTP/AVP 0\r\na=fmtp:abc x\r\n"),
            SdpError::BadFmtp
        );
        assert_eq!(bad("v=1\r\n"), SdpError::BadVersion);
        assert_eq!(bad("o=- 1 1 IN IP4 1.2.3.4\r\n"), SdpError::BadVersion);
        assert_eq!(bad("v=0\r\nthis is not sdp\r\n"), SdpError::BadLine);
        assert_eq!(
            bad("v=0\r\nc=IN IP4 1.1.1.1\r\nc=IN IP4 2.2.2.2\r\n"),
            SdpError::DuplicateLine
        );
        assert_eq!(bad("v=0\r\nc=IN IPX 1.1.1.1\r\n"), SdpError::BadConnection);
        assert_eq!(bad("v=0\r\no=- 1 IN IP4 1.1.1.1\r\n"), SdpError::BadOrigin);
        assert_eq!(
            SessionDescription::parse(b"v=0\r\ns=\xff\r\n"),
            Err(SdpError::NotUtf8)
        );
    }

    #[test]
    fn count_and_size_limits_hold() {
        let mut s = String::from("v=0\r\n");
        for _ in 0..MAX_MEDIA {
            s.push_str("m=audio 5000 RTP/AVP 0\r\n");
        }
        assert!(SessionDescription::parse(s.as_bytes()).is_ok());
        s.push_str("m=audio 5000 RTP/AVP 0\r\n");
        assert_eq!(
            SessionDescription::parse(s.as_bytes()),
            Err(SdpError::TooManyMedia)
        );

        let mut s = String::from("v=0\r\nm=audio 5000 RTP/AVP 0\r\n");
        for _ in 0..MAX_ATTRIBUTES {
            s.push_str("a=x\r\n");
        }
        assert!(SessionDescription::parse(s.as_bytes()).is_ok());
        s.push_str("a=x\r\n");
        assert_eq!(
            SessionDescription::parse(s.as_bytes()),
            Err(SdpError::TooManyAttributes)
        );

        let fmts = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| (i % 128).to_string()).collect();
            format!("v=0\r\nm=audio 5000 RTP/AVP {}\r\n", list.join(" "))
        };
        assert!(SessionDescription::parse(fmts(MAX_FORMATS).as_bytes()).is_ok());
        assert_eq!(
            SessionDescription::parse(fmts(MAX_FORMATS + 1).as_bytes()),
            Err(SdpError::TooManyFormats)
        );

        let big = format!("v=0\r\ns={}\r\n", "x".repeat(MAX_SDP_LEN));
        assert_eq!(
            SessionDescription::parse(big.as_bytes()),
            Err(SdpError::TooLarge)
        );
    }

    #[test]
    fn answer_keeps_offer_order_and_payload_types() {
        let sd = SessionDescription::parse(ASTERISK_OFFER.as_bytes()).unwrap();
        let m = sd.first_audio().unwrap();
        let ours: &[(&'static str, u32)] = &[("PCMU", 8000), ("pcma", 8000), ("opus", 48000)];
        assert_eq!(
            answer_codecs(m, ours),
            [(8, "pcma", 8000), (0, "PCMU", 8000)]
        );
        assert!(answer_codecs(m, &[("opus", 48000)]).is_empty());
        // Dynamic PT remapping is honoured: PCMU offered as 96.
        let sd =
            SessionDescription::parse(b"v=0\nm=audio 1 RTP/AVP 96 96\na=rtpmap:96 PCMU/8000\n")
                .unwrap();
        assert_eq!(answer_codecs(&sd.media[0], ours), [(96, "PCMU", 8000)]);
    }

    fn builder() -> SdpBuilder {
        SdpBuilder {
            username: "skybridge".into(),
            session_id: 42,
            session_version: 1,
            address: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
            port: 30000,
            codecs: vec![(8, "PCMA", 8000), (0, "PCMU", 8000)],
            telephone_event: Some(101),
            ptime: Some(20),
            direction: Direction::SendRecv,
        }
    }

    #[test]
    fn built_sdp_parses_back_to_the_same_values() {
        let bytes = builder().build();
        let sd = SessionDescription::parse(&bytes).unwrap();
        let o = sd.origin.unwrap();
        assert_eq!(
            (o.username, o.session_id, o.session_version),
            ("skybridge", "42", "1")
        );
        let m = sd.first_audio().unwrap();
        assert_eq!(m.port, 30000);
        assert_eq!(m.formats, [8, 0, 101]);
        assert_eq!(m.payload_type_for("telephone-event", 8000), Some(101));
        assert_eq!(m.fmtp_of(101), Some("0-16"));
        assert_eq!(m.ptime, Some(20));
        assert_eq!(m.rtcp, None);
        assert_eq!(sd.media_direction(m), Direction::SendRecv);
        assert_eq!(sd.media_address(m), Some(builder().address));
        assert!(bytes.ends_with(b"a=sendrecv\r\n"));
    }

    #[test]
    fn opus_is_written_with_two_channels_and_fec_and_parses_back() {
        let mut b = builder();
        b.codecs = vec![(96, "opus", 48000), (0, "PCMU", 8000)];
        let bytes = b.build();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains("a=rtpmap:96 opus/48000/2\r\n"), "{text}");
        assert!(text.contains("a=fmtp:96 useinbandfec=1\r\n"), "{text}");
        let sd = SessionDescription::parse(&bytes).unwrap();
        let m = sd.first_audio().unwrap();
        assert_eq!(m.encoding_of(96), Some(("opus", 48000)));
        assert_eq!(m.payload_type_for("opus", 48000), Some(96));
    }

    #[test]
    fn rtcp_attribute_only_when_not_the_next_port() {
        let b = builder();
        let sd_bytes = b.build_with_rtcp(30001);
        assert!(SessionDescription::parse(&sd_bytes).unwrap().media[0]
            .rtcp
            .is_none());
        let sd_bytes = b.build_with_rtcp(30011);
        let sd = SessionDescription::parse(&sd_bytes).unwrap();
        assert_eq!(sd.media[0].rtcp, Some((30011, None)));
    }

    #[test]
    fn rejected_stream_and_ipv6_and_odd_usernames_still_build_valid_sdp() {
        let mut b = builder();
        b.port = 0;
        b.codecs.clear();
        b.telephone_event = None;
        b.ptime = None;
        b.direction = Direction::Inactive;
        b.address = "2001:db8::5".parse().unwrap();
        b.username = "evil user\r\nm=video".into();
        let bytes = b.build();
        let sd = SessionDescription::parse(&bytes).unwrap();
        assert_eq!(sd.media.len(), 1);
        assert_eq!(sd.origin.unwrap().username, "-");
        assert_eq!(sd.media[0].port, 0);
        assert_eq!(sd.media[0].formats, [0]);
        assert_eq!(sd.media_address(&sd.media[0]), Some(b.address));
        assert_eq!(sd.media_direction(&sd.media[0]), Direction::Inactive);
    }

    #[test]
    fn opus_is_written_with_two_channels_as_rfc_7587_requires() {
        let mut b = builder();
        b.codecs = vec![(96, "opus", 48000), (0, "PCMU", 8000)];
        let text = String::from_utf8(b.build()).unwrap();
        assert!(text.contains("a=rtpmap:96 opus/48000/2\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:0 PCMU/8000\r\n"), "{text}");
    }

    #[test]
    fn answer_direction_is_the_reverse_of_the_offer() {
        assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
        assert_eq!(Direction::RecvOnly.reversed(), Direction::SendOnly);
        assert_eq!(Direction::SendRecv.reversed(), Direction::SendRecv);
        assert_eq!(Direction::Inactive.reversed(), Direction::Inactive);
        for d in [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ] {
            assert_eq!(Direction::from_attribute(d.as_str()), Some(d));
        }
        assert!(Direction::SendOnly.sends() && !Direction::SendOnly.receives());
    }

    #[test]
    fn connection_ip_checks_family_and_strips_ttl() {
        let c = Connection {
            address_type: "IP4",
            address: "233.252.0.1/127",
        };
        assert_eq!(c.ip(), Some("233.252.0.1".parse().unwrap()));
        let c = Connection {
            address_type: "IP6",
            address: "10.0.0.1",
        };
        assert_eq!(c.ip(), None);
        let c = Connection {
            address_type: "IP4",
            address: "pbx.example.com",
        };
        assert_eq!(c.ip(), None);
    }
}
