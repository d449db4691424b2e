//! WebSocket (RFC 6455): HTTP/1.1 upgrade handshake, frame decoding, message assembly and frame
//! writing, for the **server** side. Pure and bounded.
//!
//! ```text
//!   bytes ─► parse_upgrade ─► accept_key / upgrade_response ─► (101 sent)
//!   bytes ─► FrameReader::read ─► Frame ─► MessageAssembler::push ─► Message
//!   Message out ◄─ write_frame / write_close (unmasked, FIN)
//! ```
//!
//! No extension is ever negotiated (in particular not `permessage-deflate`, so no inflation
//! bomb is possible): the RSV bits must be zero. Lengths declared on the wire are checked against
//! the limits before anything is buffered; payloads are unmasked in place and handed out as
//! zero-copy slices of the caller's buffer.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::BufMut;
use sha1::{Digest, Sha1};

pub use bytes::{Bytes, BytesMut};

/// Largest HTTP request head (request line + headers + empty line) we accept.
pub const MAX_HEAD_LEN: usize = 8 * 1024;
/// Most header fields in a request head.
pub const MAX_HEADERS: usize = 64;
/// Largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Largest close reason: a control payload minus the 2-byte status code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// The GUID appended to the client key (RFC 6455 §1.3).
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Close status codes used by this crate (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Endpoint going away (also: peer stopped answering pings).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Data the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// No status code was present (never sent on the wire).
    pub const NO_STATUS: u16 = 1005;
    /// Inconsistent data (e.g. text that is not UTF-8).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation.
    pub const POLICY: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Internal server error.
    pub const SERVER_ERROR: u16 = 1011;
}

/// Why a handshake, frame or message was refused. Each maps to an HTTP status (handshake) or
/// a close code (frames/messages) and a static reason text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// The request head exceeds [`MAX_HEAD_LEN`].
    #[error("request head too large")]
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header fields.
    #[error("too many header fields")]
    TooManyHeaders,
    /// The request line is not `METHOD SP target SP HTTP/1.x`.
    #[error("malformed request line")]
    BadRequestLine,
    /// A header line is malformed (no colon, bad name, obsolete folding, not UTF-8).
    #[error("malformed header field")]
    BadHeader,
    /// The upgrade request is not `GET`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The upgrade request is not HTTP/1.1.
    #[error("HTTP/1.1 required")]
    HttpVersion,
    /// No `Host` header.
    #[error("missing Host header")]
    MissingHost,
    /// `Upgrade: websocket` or `Connection: Upgrade` missing: not a WebSocket upgrade.
    #[error("not a WebSocket upgrade")]
    NotUpgrade,
    /// `Sec-WebSocket-Version` is not 13.
    #[error("unsupported WebSocket version")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` missing or not the base64 of 16 bytes.
    #[error("bad Sec-WebSocket-Key")]
    BadKey,
    /// A client frame without a mask.
    #[error("unmasked client frame")]
    Unmasked,
    /// RSV1..3 set (no extension was negotiated).
    #[error("reserved bits set")]
    ReservedBits,
    /// Opcode 3-7 or 0xB-0xF.
    #[error("unknown opcode")]
    UnknownOpcode,
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload.
    #[error("control frame too long")]
    ControlTooLong,
    /// 64-bit payload length with the most significant bit set.
    #[error("invalid payload length")]
    BadLength,
    /// Declared frame length above the limit.
    #[error("frame too big")]
    FrameTooLong,
    /// A continuation frame with no message started.
    #[error("continuation without a message")]
    UnexpectedContinuation,
    /// A new text/binary frame while a fragmented message is open.
    #[error("new message inside a fragmented message")]
    UnfinishedMessage,
    /// More fragments than allowed.
    #[error("too many fragments")]
    TooManyFragments,
    /// Message longer than allowed.
    #[error("message too big")]
    MessageTooLong,
    /// A text message or close reason that is not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A close frame with a 1-byte payload or a status code not allowed on the wire.
    #[error("invalid close frame")]
    BadClose,
}

impl WsError {
    /// The close code to send for this error (RFC 6455 §7.4.1).
    pub fn close_code(self) -> u16 {
        match self {
            WsError::FrameTooLong | WsError::TooManyFragments | WsError::MessageTooLong => {
                close_code::TOO_BIG
            }
            WsError::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            _ => close_code::PROTOCOL_ERROR,
        }
    }

    /// The HTTP status to answer a failed handshake with.
    pub fn http_status(self) -> u16 {
        match self {
            WsError::HeadTooLarge | WsError::TooManyHeaders => 431,
            WsError::MethodNotAllowed => 405,
            WsError::HttpVersion => 505,
            WsError::NotUpgrade | WsError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// A short human reason (fits a close frame).
    pub fn reason(self) -> &'static str {
        match self {
            WsError::HeadTooLarge => "request head too large",
            WsError::TooManyHeaders => "too many header fields",
            WsError::BadRequestLine => "malformed request line",
            WsError::BadHeader => "malformed header field",
            WsError::MethodNotAllowed => "method not allowed",
            WsError::HttpVersion => "HTTP/1.1 required",
            WsError::MissingHost => "missing Host header",
            WsError::NotUpgrade => "not a WebSocket upgrade",
            WsError::UnsupportedVersion => "unsupported WebSocket version",
            WsError::BadKey => "bad Sec-WebSocket-Key",
            WsError::Unmasked => "unmasked client frame",
            WsError::ReservedBits => "reserved bits set",
            WsError::UnknownOpcode => "unknown opcode",
            WsError::FragmentedControl => "fragmented control frame",
            WsError::ControlTooLong => "control frame too long",
            WsError::BadLength => "invalid payload length",
            WsError::FrameTooLong => "frame too big",
            WsError::UnexpectedContinuation => "continuation without a message",
            WsError::UnfinishedMessage => "new message inside a fragmented message",
            WsError::TooManyFragments => "too many fragments",
            WsError::MessageTooLong => "message too big",
            WsError::InvalidUtf8 => "invalid UTF-8",
            WsError::BadClose => "invalid close frame",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP request head
// ---------------------------------------------------------------------------------------------

/// A parsed HTTP/1.x request head, borrowing the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// Request target as sent (path and query).
    pub target: &'a str,
    /// Minor HTTP version (`HTTP/1.0` → 0, `HTTP/1.1` → 1).
    pub version_minor: u8,
    /// Header fields in order, names as sent, values trimmed.
    pub headers: Vec<(&'a str, &'a str)>,
}

impl<'a> RequestHead<'a> {
    /// The target without its `?query`.
    pub fn path(&self) -> &'a str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    /// The target's `?query` (without `?`), if any.
    pub fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Every comma-separated token of every `name` header, trimmed, empty ones skipped.
    pub fn header_tokens<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Parses an HTTP/1.x request head (RFC 9112 §2–§5):
///
/// `request-line = method SP request-target SP "HTTP/1." DIGIT CRLF`,
/// `*( field-name ":" OWS field-value OWS CRLF ) CRLF`.
///
/// `Ok(None)`: the head is incomplete (and still under [`MAX_HEAD_LEN`]). On success returns the
/// head and the number of bytes it took (the body or WebSocket frames start there).
pub fn parse_http_request_head(buf: &[u8]) -> Result<Option<(RequestHead<'_>, usize)>, WsError> {
    let window = buf.get(..MAX_HEAD_LEN.min(buf.len())).unwrap_or(buf);
    let Some(end) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_HEAD_LEN {
            Err(WsError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    let consumed = end + 4;
    let head = window.get(..end).ok_or(WsError::BadRequestLine)?;
    let head = std::str::from_utf8(head).map_err(|_| WsError::BadHeader)?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().ok_or(WsError::BadRequestLine)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(WsError::BadRequestLine);
    };
    if !is_token(method) || target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(WsError::BadRequestLine);
    }
    let version_minor = match version {
        "HTTP/1.0" => 0,
        "HTTP/1.1" => 1,
        _ => return Err(WsError::BadRequestLine),
    };
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() == MAX_HEADERS {
            return Err(WsError::TooManyHeaders);
        }
        let (name, value) = line.split_once(':').ok_or(WsError::BadHeader)?;
        // A name with surrounding whitespace, or a line starting with whitespace (obsolete
        // line folding), is rejected (RFC 9112 §5.1, §5.2).
        if !is_token(name) {
            return Err(WsError::BadHeader);
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(WsError::BadHeader);
        }
        headers.push((name, value));
    }
    Ok(Some((
        RequestHead {
            method,
            target,
            version_minor,
            headers,
        },
        consumed,
    )))
}

/// A valid WebSocket opening handshake request (RFC 6455 §4.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeRequest<'a> {
    /// The whole request head.
    pub head: RequestHead<'a>,
    /// `Host` header.
    pub host: &'a str,
    /// `Origin` header (browsers always send it).
    pub origin: Option<&'a str>,
    /// `Sec-WebSocket-Key`, validated as the base64 of 16 bytes.
    pub key: &'a str,
}

impl<'a> UpgradeRequest<'a> {
    /// Checks that `head` is a WebSocket upgrade: `GET`, HTTP/1.1, `Host`, `Upgrade: websocket`,
    /// `Connection` containing `Upgrade`, `Sec-WebSocket-Version: 13`, a valid key.
    pub fn from_head(head: RequestHead<'a>) -> Result<Self, WsError> {
        if head.method != "GET" {
            return Err(WsError::MethodNotAllowed);
        }
        if head.version_minor != 1 {
            return Err(WsError::HttpVersion);
        }
        let host = head.header("host").ok_or(WsError::MissingHost)?;
        if host.is_empty() {
            return Err(WsError::MissingHost);
        }
        if !head
            .header_tokens("upgrade")
            .any(|t| t.eq_ignore_ascii_case("websocket"))
            || !head
                .header_tokens("connection")
                .any(|t| t.eq_ignore_ascii_case("upgrade"))
        {
            return Err(WsError::NotUpgrade);
        }
        if head.header("sec-websocket-version") != Some("13") {
            return Err(WsError::UnsupportedVersion);
        }
        let key = head.header("sec-websocket-key").ok_or(WsError::BadKey)?;
        if !is_valid_key(key) {
            return Err(WsError::BadKey);
        }
        let origin = head.header("origin");
        Ok(UpgradeRequest {
            head,
            host,
            origin,
            key,
        })
    }

    /// Request path without query.
    pub fn path(&self) -> &'a str {
        self.head.path()
    }

    /// Subprotocols offered in `Sec-WebSocket-Protocol`, in order.
    pub fn protocols(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.head.header_tokens("sec-websocket-protocol")
    }

    /// Whether subprotocol `name` was offered (exact match, as RFC 6455 §4.2.2 compares).
    pub fn offers_protocol(&self, name: &str) -> bool {
        self.protocols().any(|p| p == name)
    }

    /// Whether any extension was offered (we decline them all by not answering).
    pub fn offers_extensions(&self) -> bool {
        self.head
            .header_tokens("sec-websocket-extensions")
            .next()
            .is_some()
    }
}

/// Parses a WebSocket upgrade request head: [`parse_http_request_head`] then
/// [`UpgradeRequest::from_head`]. `Ok(None)`: need more bytes.
pub fn parse_upgrade(buf: &[u8]) -> Result<Option<(UpgradeRequest<'_>, usize)>, WsError> {
    match parse_http_request_head(buf)? {
        None => Ok(None),
        Some((head, n)) => Ok(Some((UpgradeRequest::from_head(head)?, n))),
    }
}

fn is_valid_key(key: &str) -> bool {
    // base64 of 16 bytes: 22 characters and "==".
    let mut out = [0u8; 18];
    key.len() == 24 && matches!(BASE64.decode_slice(key, &mut out), Ok(16))
}

/// `Sec-WebSocket-Accept` for a client key: base64(SHA-1(key ++ GUID)) (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(WS_GUID.as_bytes());
    BASE64.encode(h.finalize())
}

/// The `101 Switching Protocols` response. `protocol` is echoed in `Sec-WebSocket-Protocol` if it
/// is a valid token. No `Sec-WebSocket-Extensions`: every extension is declined.
pub fn upgrade_response(accept: &str, protocol: Option<&str>) -> Vec<u8> {
    let mut r = String::with_capacity(160);
    r.push_str("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    r.push_str("Sec-WebSocket-Accept: ");
    r.extend(accept.chars().filter(|c| c.is_ascii_graphic()));
    r.push_str("\r\n");
    if let Some(p) = protocol.filter(|p| is_token(p)) {
        r.push_str("Sec-WebSocket-Protocol: ");
        r.push_str(p);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// A minimal `HTTP/1.1 <code> <reason>` response with a text body and `Connection: close`.
/// A 426 carries `Sec-WebSocket-Version: 13` (RFC 6455 §4.4). Control characters in `reason`
/// are dropped.
pub fn http_error_response(code: u16, reason: &str) -> Vec<u8> {
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    let body = format!("{code} {reason}\n");
    let mut r = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if code == 426 {
        r.push_str("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
    }
    r.push_str("\r\n");
    r.push_str(&body);
    r.into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// Frame opcode (RFC 6455 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// 0x0
    Continuation = 0x0,
    /// 0x1
    Text = 0x1,
    /// 0x2
    Binary = 0x2,
    /// 0x8
    Close = 0x8,
    /// 0x9
    Ping = 0x9,
    /// 0xA
    Pong = 0xA,
}

impl Opcode {
    /// The opcode for a 4-bit value, `None` for reserved ones.
    pub fn from_u8(v: u8) -> Option<Opcode> {
        Some(match v {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// Close, Ping or Pong.
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// One decoded (unmasked) frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: Opcode,
    /// Unmasked payload: a slice of the reader's input buffer.
    pub payload: Bytes,
}

/// Limits for [`FrameReader`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest declared payload length accepted (checked before buffering).
    pub max_frame_len: u64,
    /// Reject unmasked frames (a server must, RFC 6455 §5.1).
    pub require_mask: bool,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_frame_len: 16 * 1024,
            require_mask: true,
        }
    }
}

/// Incremental frame decoder (RFC 6455 §5.2):
///
/// `FIN:1 RSV:3 opcode:4 MASK:1 len:7 [len:16 | len:64] [mask-key:32] payload`.
#[derive(Clone, Debug)]
pub struct FrameReader {
    limits: FrameLimits,
}

impl FrameReader {
    /// A reader with `limits`.
    pub fn new(limits: FrameLimits) -> Self {
        FrameReader { limits }
    }

    /// Decodes one frame from the front of `buf`. `Ok(None)`: incomplete (nothing consumed). The
    /// header is validated, and the declared length checked, as soon as its bytes are present:
    /// a frame over the limit fails before its payload is buffered.
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, WsError> {
        let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        let fin = b0 & 0x80 != 0;
        let opcode = Opcode::from_u8(b0 & 0x0F).ok_or(WsError::UnknownOpcode)?;
        let masked = b1 & 0x80 != 0;
        if self.limits.require_mask && !masked {
            return Err(WsError::Unmasked);
        }
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(WsError::FragmentedControl);
            }
            if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(WsError::ControlTooLong);
            }
        }
        let (len, ext) = match len7 {
            126 => match (buf.get(2), buf.get(3)) {
                (Some(&a), Some(&b)) => (u64::from(u16::from_be_bytes([a, b])), 2),
                _ => return Ok(None),
            },
            127 => {
                let Some(b) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let l = u64::from_be_bytes(a);
                if l & (1 << 63) != 0 {
                    return Err(WsError::BadLength);
                }
                (l, 8)
            }
            n => (u64::from(n), 0),
        };
        if len > self.limits.max_frame_len {
            return Err(WsError::FrameTooLong);
        }
        let len = usize::try_from(len).map_err(|_| WsError::FrameTooLong)?;
        let mask_len = if masked { 4 } else { 0 };
        let header_len = 2 + ext + mask_len;
        if buf.len() < header_len + len {
            return Ok(None);
        }
        let mut key = [0u8; 4];
        if masked {
            if let Some(k) = buf.get(2 + ext..header_len) {
                key.copy_from_slice(k);
            }
        }
        let _ = buf.split_to(header_len);
        let mut payload = buf.split_to(len);
        if masked {
            apply_mask(&mut payload, key);
        }
        Ok(Some(Frame {
            fin,
            opcode,
            payload: payload.freeze(),
        }))
    }
}

/// XORs `data` with the 4-byte masking key (RFC 6455 §5.3), in place.
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        for (b, k) in c.iter_mut().zip(key) {
            *b ^= k;
        }
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// Limits for [`MessageAssembler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    /// Largest text message.
    pub max_text_len: usize,
    /// Largest binary message.
    pub max_binary_len: usize,
    /// Most frames in one fragmented message.
    pub max_fragments: usize,
}

impl Default for MessageLimits {
    fn default() -> Self {
        MessageLimits {
            max_text_len: 16 * 1024,
            max_binary_len: 2 * 1024,
            max_fragments: 64,
        }
    }
}

/// A complete message or a control frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message, validated as UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping; answer with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: status code (`None` if the payload was empty) and reason, validated.
    Close(Option<u16>, Bytes),
}

/// Turns frames into messages (RFC 6455 §5.4), bounded by [`MessageLimits`].
#[derive(Clone, Debug)]
pub struct MessageAssembler {
    limits: MessageLimits,
    /// The open fragmented message: text?, frames so far, bytes so far.
    open: Option<(bool, usize)>,
    buf: BytesMut,
}

impl MessageAssembler {
    /// An assembler with `limits`.
    pub fn new(limits: MessageLimits) -> Self {
        MessageAssembler {
            limits,
            open: None,
            buf: BytesMut::new(),
        }
    }

    /// Bytes held for the open fragmented message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn max_for(&self, text: bool) -> usize {
        if text {
            self.limits.max_text_len
        } else {
            self.limits.max_binary_len
        }
    }

    /// Feeds one frame. Control frames come out at once (they may interleave with fragments);
    /// data frames come out when their message is complete. Single-frame messages stay
    /// zero-copy; fragmented ones are copied into a buffer bounded by the limits.
    pub fn push(&mut self, frame: Frame) -> Result<Option<Message>, WsError> {
        match frame.opcode {
            Opcode::Ping => Ok(Some(Message::Ping(frame.payload))),
            Opcode::Pong => Ok(Some(Message::Pong(frame.payload))),
            Opcode::Close => {
                let (code, reason) = parse_close_payload(&frame.payload)?;
                let reason = frame.payload.slice_ref_or_empty(reason);
                Ok(Some(Message::Close(code, reason)))
            }
            Opcode::Text | Opcode::Binary => {
                if self.open.is_some() {
                    return Err(WsError::UnfinishedMessage);
                }
                let text = frame.opcode == Opcode::Text;
                if frame.payload.len() > self.max_for(text) {
                    return Err(WsError::MessageTooLong);
                }
                if frame.fin {
                    return finish(text, frame.payload).map(Some);
                }
                if self.limits.max_fragments < 2 {
                    return Err(WsError::TooManyFragments);
                }
                self.buf.clear();
                self.buf.extend_from_slice(&frame.payload);
                self.open = Some((text, 1));
                Ok(None)
            }
            Opcode::Continuation => {
                let Some((text, frames)) = self.open else {
                    return Err(WsError::UnexpectedContinuation);
                };
                let frames = frames + 1;
                if frames > self.limits.max_fragments {
                    self.reset();
                    return Err(WsError::TooManyFragments);
                }
                if self.buf.len() + frame.payload.len() > self.max_for(text) {
                    self.reset();
                    return Err(WsError::MessageTooLong);
                }
                self.buf.extend_from_slice(&frame.payload);
                if !frame.fin {
                    self.open = Some((text, frames));
                    return Ok(None);
                }
                self.open = None;
                let whole = self.buf.split().freeze();
                finish(text, whole).map(Some)
            }
        }
    }

    fn reset(&mut self) {
        self.open = None;
        self.buf = BytesMut::new();
    }
}

fn finish(text: bool, payload: Bytes) -> Result<Message, WsError> {
    if text {
        std::str::from_utf8(&payload).map_err(|_| WsError::InvalidUtf8)?;
        Ok(Message::Text(payload))
    } else {
        Ok(Message::Binary(payload))
    }
}

trait SliceRefOrEmpty {
    fn slice_ref_or_empty(&self, sub: &str) -> Bytes;
}

impl SliceRefOrEmpty for Bytes {
    fn slice_ref_or_empty(&self, sub: &str) -> Bytes {
        if sub.is_empty() {
            Bytes::new()
        } else {
            self.slice_ref(sub.as_bytes())
        }
    }
}

/// Whether a close status code may appear on the wire (RFC 6455 §7.4).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses a close frame payload: empty, or `code:16 reason:UTF-8` (RFC 6455 §5.5.1).
pub fn parse_close_payload(payload: &[u8]) -> Result<(Option<u16>, &str), WsError> {
    match payload {
        [] => Ok((None, "")),
        [_] => Err(WsError::BadClose),
        [a, b, rest @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !is_valid_close_code(code) {
                return Err(WsError::BadClose);
            }
            let reason = std::str::from_utf8(rest).map_err(|_| WsError::InvalidUtf8)?;
            Ok((Some(code), reason))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Appends one unmasked FIN frame (server → client) whose payload is the concatenation of
/// `payload_parts`. Allocates nothing except growing `out`. Control frames must carry at most
/// 125 bytes (the caller's duty; [`write_close`] truncates).
pub fn write_frame(out: &mut BytesMut, opcode: Opcode, payload_parts: &[&[u8]]) {
    let len: usize = payload_parts.iter().map(|p| p.len()).sum();
    out.reserve(10 + len);
    out.put_u8(0x80 | opcode as u8);
    if len < 126 {
        out.put_u8(len as u8);
    } else if let Ok(l) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(l);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    for p in payload_parts {
        out.extend_from_slice(p);
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Appends a close frame with `code` and `reason` (truncated to 123 bytes on a UTF-8 boundary).
pub fn write_close(out: &mut BytesMut, code: u16, reason: &str) {
    let reason = truncate_utf8(reason, MAX_CLOSE_REASON);
    write_frame(
        out,
        Opcode::Close,
        &[&code.to_be_bytes(), reason.as_bytes()],
    );
}

#[cfg(test)]
mod tests;
