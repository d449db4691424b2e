//! SIP message parser and serializer (RFC 3261 §7, §18.3, §20, §25).
//!
//! [`Message::parse`] takes one datagram (or one frame cut by [`stream_frame_len`]) and returns
//! a view borrowing from it: start line, headers (name/value slices, folds kept in place) and
//! body. Structured values (CSeq, Via, name-addr, SIP-URI, digest challenges) are parsed on
//! demand by the accessors. [`MessageBuilder`] writes messages.
//!
//! Limits: a message is at most [`MAX_MESSAGE_SIZE`] bytes with at most [`MAX_HEADERS`] headers
//! of at most [`MAX_HEADER_LINE`] bytes each (folds included); Content-Length is a plain
//! decimal ≤ [`MAX_MESSAGE_SIZE`]. Nothing is allocated from a length or count on the wire.

mod builder;
mod values;

pub use builder::{reason_phrase, MessageBuilder};
pub use values::{parse_challenge, unescape_quoted, CSeq, Challenge, NameAddr, SipUri, Via};

use values::{is_lws, is_token_char, trim_lws, SplitTop};

/// Largest accepted message (start line + headers + body), in bytes.
pub const MAX_MESSAGE_SIZE: usize = 65_536;
/// Largest accepted number of header fields (after unfolding, before comma splitting).
pub const MAX_HEADERS: usize = 128;
/// Largest accepted header field (name, colon, value and folds, without the final CRLF).
pub const MAX_HEADER_LINE: usize = 8 * 1024;

/// Why a SIP message or header value was rejected. All of these warrant a 400 (or a silent
/// drop for responses / unauthenticated peers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SipError {
    /// Message larger than [`MAX_MESSAGE_SIZE`].
    #[error("SIP message too large")]
    TooLarge,
    /// More than [`MAX_HEADERS`] header fields.
    #[error("too many SIP headers")]
    TooManyHeaders,
    /// A header field longer than [`MAX_HEADER_LINE`].
    #[error("SIP header line too long")]
    HeaderTooLong,
    /// No empty line ending the header section.
    #[error("SIP header section not terminated")]
    UnterminatedHeaders,
    /// Malformed Request-Line or Status-Line.
    #[error("malformed SIP start line")]
    BadStartLine,
    /// SIP version other than 2.0.
    #[error("unsupported SIP version")]
    BadVersion,
    /// Malformed header field (name, colon, or a fold with no header to continue).
    #[error("malformed SIP header field")]
    BadHeader,
    /// NUL byte in the start line or headers.
    #[error("NUL byte in SIP header section")]
    NulByte,
    /// Control character (other than HT) or a bare CR/LF in the start line or headers.
    #[error("control character in SIP header section")]
    ControlChar,
    /// Header section is not UTF-8.
    #[error("SIP header section is not UTF-8")]
    NotUtf8,
    /// Content-Length not a plain decimal ≤ [`MAX_MESSAGE_SIZE`].
    #[error("bad Content-Length")]
    BadContentLength,
    /// Content-Length larger than the bytes present (datagram).
    #[error("body shorter than Content-Length")]
    BodyTruncated,
    /// Content-Length missing on a stream transport (RFC 3261 §18.3).
    #[error("Content-Length missing on stream")]
    MissingContentLength,
    /// A mandatory header is absent.
    #[error("missing mandatory header {0}")]
    MissingHeader(&'static str),
    /// A header that must appear once appears more than once.
    #[error("duplicate header {0}")]
    DuplicateHeader(&'static str),
    /// Malformed CSeq, or its number ≥ 2^31.
    #[error("bad CSeq")]
    BadCSeq,
    /// CSeq method differs from the request method.
    #[error("CSeq method does not match request method")]
    CSeqMethodMismatch,
    /// Malformed Call-ID.
    #[error("bad Call-ID")]
    BadCallId,
    /// Malformed Via.
    #[error("bad Via")]
    BadVia,
    /// Malformed name-addr / addr-spec (To, From, Contact, Route, Record-Route).
    #[error("bad name-addr")]
    BadNameAddr,
    /// Malformed SIP URI.
    #[error("bad SIP URI")]
    BadUri,
    /// Malformed authentication challenge.
    #[error("bad authentication challenge")]
    BadChallenge,
    /// Max-Forwards not a decimal 0..=255.
    #[error("bad Max-Forwards")]
    BadMaxForwards,
}

/// A SIP method (RFC 3261 §7.1 and extensions). Methods are case-sensitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method<'a> {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// REGISTER
    Register,
    /// OPTIONS
    Options,
    /// INFO (RFC 6086)
    Info,
    /// UPDATE (RFC 3311)
    Update,
    /// PRACK (RFC 3262)
    Prack,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// REFER (RFC 3515)
    Refer,
    /// MESSAGE (RFC 3428)
    Message,
    /// Any other extension method token.
    Other(&'a str),
}

impl Method<'_> {
    /// The method token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Other(s) => s,
        }
    }

    /// Maps a method token (case-sensitive, RFC 3261 §7.1) to a [`Method`]; unknown tokens
    /// (including lower-case spellings) become [`Method::Other`].
    pub fn parse(s: &str) -> Method<'_> {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            other => Method::Other(other),
        }
    }
}

impl std::fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `start-line = Request-Line / Status-Line` (RFC 3261 §7.1, §7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// `Method SP Request-URI SP SIP-Version`
    Request {
        /// Method.
        method: Method<'a>,
        /// Request-URI as written.
        uri: &'a str,
    },
    /// `SIP-Version SP Status-Code SP Reason-Phrase`
    Response {
        /// Status code, 100..=699.
        code: u16,
        /// Reason phrase (may be empty).
        reason: &'a str,
    },
}

/// One header field: `field-name HCOLON field-value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Name as written (compact or long form, any case).
    pub name: &'a str,
    /// Value, trimmed; may contain folds (CRLF + SP/HT), which mean a single space.
    pub value: &'a str,
}

/// Long form of a compact header name (RFC 3261 §7.3.3, §20 and extensions); other names are
/// returned unchanged.
pub fn canonical_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes().first().map(u8::to_ascii_lowercase) {
        Some(b'i') => "Call-ID",
        Some(b'm') => "Contact",
        Some(b'e') => "Content-Encoding",
        Some(b'l') => "Content-Length",
        Some(b'c') => "Content-Type",
        Some(b'f') => "From",
        Some(b's') => "Subject",
        Some(b'k') => "Supported",
        Some(b't') => "To",
        Some(b'v') => "Via",
        Some(b'o') => "Event",
        Some(b'u') => "Allow-Events",
        Some(b'r') => "Refer-To",
        Some(b'b') => "Referred-By",
        Some(b'x') => "Session-Expires",
        _ => name,
    }
}

/// Header name equality: case-insensitive, compact forms equal long forms.
pub fn header_name_eq(a: &str, b: &str) -> bool {
    canonical_name(a).eq_ignore_ascii_case(canonical_name(b))
}

/// A parsed SIP message borrowing from its datagram / stream frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// Request-Line or Status-Line.
    pub start: StartLine<'a>,
    /// Header fields in message order.
    pub headers: Vec<Header<'a>>,
    /// Body: exactly Content-Length bytes, or the rest of the datagram if Content-Length is
    /// absent.
    pub body: &'a [u8],
}

/// Skips empty lines (CRLF) before the start line (RFC 3261 §7.5, keep-alives RFC 5626 §3.5.1).
fn skip_leading_crlf(buf: &[u8]) -> usize {
    let mut i = 0;
    while buf.get(i..i + 2) == Some(b"\r\n") {
        i += 2;
    }
    i
}

/// Position of the first `\r\n\r\n` at or after `from`, within `buf`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let hay = buf.get(from..)?;
    hay.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + from)
}

/// The parsed header section: start line text and header fields.
struct Head<'a> {
    start: &'a str,
    headers: Vec<Header<'a>>,
}

/// Checks the header section bytes: no NUL, no control characters except HT, CR only as part
/// of CRLF, LF only after CR; then UTF-8.
fn check_head_bytes(head: &[u8]) -> Result<&str, SipError> {
    let mut prev = 0u8;
    for (i, &b) in head.iter().enumerate() {
        match b {
            0 => return Err(SipError::NulByte),
            b'\r' if head.get(i + 1) != Some(&b'\n') => return Err(SipError::ControlChar),
            b'\n' if prev != b'\r' => return Err(SipError::ControlChar),
            b'\r' | b'\n' | b'\t' => {}
            0x01..=0x1f | 0x7f => return Err(SipError::ControlChar),
            _ => {}
        }
        prev = b;
    }
    std::str::from_utf8(head).map_err(|_| SipError::NotUtf8)
}

/// `message-header = field-name HCOLON field-value CRLF`, `HCOLON = *( SP / HTAB ) ":" SWS`.
fn parse_header_field(field: &str) -> Result<Header<'_>, SipError> {
    let name_len = field
        .find(|c: char| !is_token_char(c))
        .unwrap_or(field.len());
    let name = field.get(..name_len).ok_or(SipError::BadHeader)?;
    let rest = field.get(name_len..).ok_or(SipError::BadHeader)?;
    let rest = rest.trim_start_matches([' ', '\t']);
    let value = rest.strip_prefix(':').ok_or(SipError::BadHeader)?;
    if name.is_empty() {
        return Err(SipError::BadHeader);
    }
    Ok(Header {
        name,
        value: trim_lws(value),
    })
}

/// Splits the header section (`head` = start line + header lines, each ending in CRLF, without
/// the final empty line) into the start line and unfolded header fields. A line starting with
/// SP/HT continues the previous field (RFC 3261 §7.3.1).
fn parse_head(head: &[u8]) -> Result<Head<'_>, SipError> {
    let text = check_head_bytes(head)?;
    let (start, mut rest) = text.split_once("\r\n").unwrap_or((text, ""));
    let mut headers: Vec<Header<'_>> = Vec::with_capacity(16);
    while !rest.is_empty() {
        if rest.starts_with([' ', '\t']) {
            // A fold with no field to continue (right after the start line).
            return Err(SipError::BadHeader);
        }
        // The field ends at the first CRLF not followed by SP/HT.
        let mut end = 0;
        loop {
            match rest.get(end..).and_then(|r| r.find("\r\n")) {
                Some(p) => {
                    let crlf = end + p;
                    if matches!(rest.as_bytes().get(crlf + 2), Some(b' ' | b'\t')) {
                        end = crlf + 2;
                    } else {
                        end = crlf;
                        break;
                    }
                }
                None => {
                    end = rest.len();
                    break;
                }
            }
        }
        let field = rest.get(..end).ok_or(SipError::BadHeader)?;
        let tail = rest.get(end..).ok_or(SipError::BadHeader)?;
        rest = tail.strip_prefix("\r\n").unwrap_or(tail);
        if field.len() > MAX_HEADER_LINE {
            return Err(SipError::HeaderTooLong);
        }
        if headers.len() >= MAX_HEADERS {
            return Err(SipError::TooManyHeaders);
        }
        headers.push(parse_header_field(field)?);
    }
    Ok(Head { start, headers })
}

/// `Content-Length = 1*DIGIT`, ≤ [`MAX_MESSAGE_SIZE`]; no sign, no spaces inside.
fn parse_content_length(value: &str) -> Result<usize, SipError> {
    let v = trim_lws(value);
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SipError::BadContentLength);
    }
    // Leading zeros are legal; skip them so the digit count bounds the value.
    let significant = v.trim_start_matches('0');
    if significant.len() > 6 {
        return Err(SipError::BadContentLength);
    }
    let n: usize = if significant.is_empty() {
        0
    } else {
        significant
            .parse()
            .map_err(|_| SipError::BadContentLength)?
    };
    if n > MAX_MESSAGE_SIZE {
        return Err(SipError::BadContentLength);
    }
    Ok(n)
}

/// The Content-Length of a header list: `Ok(None)` when absent, an error when duplicated or
/// malformed.
fn content_length(headers: &[Header<'_>]) -> Result<Option<usize>, SipError> {
    let mut found = None;
    for h in headers
        .iter()
        .filter(|h| header_name_eq(h.name, "Content-Length"))
    {
        if found.is_some() {
            return Err(SipError::DuplicateHeader("Content-Length"));
        }
        found = Some(parse_content_length(h.value)?);
    }
    Ok(found)
}

/// Locates the header section: `(start, end)` where `buf[start..end]` is the start line and
/// header lines including their CRLFs, and `end + 2` is where the body begins.
fn locate_head(buf: &[u8]) -> Result<Option<(usize, usize)>, SipError> {
    let start = skip_leading_crlf(buf);
    let window = buf.get(..buf.len().min(MAX_MESSAGE_SIZE)).unwrap_or(buf);
    match find_head_end(window, start) {
        Some(p) => Ok(Some((start, p + 2))),
        None if buf.len() >= MAX_MESSAGE_SIZE => Err(SipError::TooLarge),
        None => Ok(None),
    }
}

/// TCP/TLS framing (RFC 3261 §18.3): `Ok(None)` = need more bytes; `Ok(Some(n))` = the first
/// message (with any leading keep-alive CRLFs) is `buf[..n]`. Content-Length is mandatory on
/// streams. Errors mean the stream cannot be resynchronised: answer 400 if possible and close.
pub fn stream_frame_len(buf: &[u8]) -> Result<Option<usize>, SipError> {
    let Some((start, end)) = locate_head(buf)? else {
        return Ok(None);
    };
    let head = buf.get(start..end).ok_or(SipError::UnterminatedHeaders)?;
    let parsed = parse_head(head)?;
    let cl = content_length(&parsed.headers)?.ok_or(SipError::MissingContentLength)?;
    let total = end + 2 + cl;
    if total > MAX_MESSAGE_SIZE {
        return Err(SipError::TooLarge);
    }
    Ok(if buf.len() >= total {
        Some(total)
    } else {
        None
    })
}

/// Headers that must not appear more than once (RFC 3261 §20; CVE-2018-14767).
const SINGLE_HEADERS: [&str; 4] = ["To", "From", "Call-ID", "CSeq"];
/// Headers every request must carry (RFC 3261 §8.1.1).
const MANDATORY_REQUEST_HEADERS: [&str; 5] = ["Via", "From", "To", "Call-ID", "CSeq"];

fn parse_start_line(line: &str) -> Result<StartLine<'_>, SipError> {
    if line.len() >= 4
        && line
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        let (_, (ver, code, reason)) =
            values::status_line(line).map_err(|_| SipError::BadStartLine)?;
        if ver != "2.0" {
            return Err(SipError::BadVersion);
        }
        let code: u16 = code.parse().map_err(|_| SipError::BadStartLine)?;
        if !(100..=699).contains(&code) {
            return Err(SipError::BadStartLine);
        }
        Ok(StartLine::Response { code, reason })
    } else {
        let (_, (method, uri, ver)) =
            values::request_line(line).map_err(|_| SipError::BadStartLine)?;
        if ver != "2.0" {
            return Err(SipError::BadVersion);
        }
        // RFC 4475 §3.1.2.7 (`ltgtruri`): a Request-URI is never enclosed in `<...>`.
        if uri.contains(['<', '>', '"']) {
            return Err(SipError::BadStartLine);
        }
        Ok(StartLine::Request {
            method: Method::parse(method),
            uri,
        })
    }
}

impl<'a> Message<'a> {
    /// Parses one message from a datagram (or a frame cut by [`stream_frame_len`]).
    ///
    /// `SIP-message = start-line *message-header CRLF [ message-body ]`. The body is exactly
    /// Content-Length bytes (extra bytes are ignored, RFC 3261 §18.3); without Content-Length it
    /// is the rest of the datagram. Requests must carry Via, From, To, Call-ID and CSeq with a
    /// CSeq method equal to the request method, and their Call-ID, CSeq, From, To and top Via must
    /// parse (so those accessors cannot fail on a parsed request); To/From/Call-ID/CSeq/
    /// Content-Length may appear only once; CSeq must be < 2^31. Responses are only checked for
    /// duplicates and CSeq range (the caller matches them to a transaction and drops the rest).
    pub fn parse(datagram: &'a [u8]) -> Result<Message<'a>, SipError> {
        if datagram.len() > MAX_MESSAGE_SIZE {
            return Err(SipError::TooLarge);
        }
        let (start, end) = locate_head(datagram)?.ok_or(SipError::UnterminatedHeaders)?;
        let head = datagram
            .get(start..end)
            .ok_or(SipError::UnterminatedHeaders)?;
        let Head {
            start: start_line,
            headers,
        } = parse_head(head)?;
        let start = parse_start_line(start_line)?;
        let rest = datagram.get(end + 2..).unwrap_or_default();
        let body = match content_length(&headers)? {
            Some(cl) => rest.get(..cl).ok_or(SipError::BodyTruncated)?,
            None => rest,
        };
        let msg = Message {
            start,
            headers,
            body,
        };
        msg.validate()?;
        Ok(msg)
    }

    fn validate(&self) -> Result<(), SipError> {
        for name in SINGLE_HEADERS {
            if self
                .headers
                .iter()
                .filter(|h| header_name_eq(h.name, name))
                .nth(1)
                .is_some()
            {
                return Err(SipError::DuplicateHeader(name));
            }
        }
        if let StartLine::Request { method, .. } = self.start {
            for name in MANDATORY_REQUEST_HEADERS {
                if self.header(name).is_none() {
                    return Err(SipError::MissingHeader(name));
                }
            }
            let cseq = self.cseq()?;
            if cseq.method != method {
                return Err(SipError::CSeqMethodMismatch);
            }
            self.call_id()?;
            self.from()?;
            self.to()?;
            self.top_via()?;
        } else if self.header("CSeq").is_some() {
            self.cseq()?;
        }
        Ok(())
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method (requests only).
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code (responses only).
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The Request-URI (requests only).
    pub fn request_uri(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// Value of the first header named `name` (case-insensitive; compact forms equal long forms).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|h| header_name_eq(h.name, name))
            .map(|h| h.value)
    }

    /// All values of `name`: every occurrence, split on top-level commas (not inside quoted
    /// strings or `<...>`), trimmed, empty elements skipped. Do not use for headers whose
    /// grammar is not a comma list (WWW-Authenticate, Date).
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |h| header_name_eq(h.name, name))
            .flat_map(|h| SplitTop::new(h.value, b','))
            .map(trim_lws)
            .filter(|v| !v.is_empty())
    }

    /// `Call-ID = callid` (`word [ "@" word ]`): non-empty, no whitespace.
    pub fn call_id(&self) -> Result<&'a str, SipError> {
        let v = self
            .header("Call-ID")
            .ok_or(SipError::MissingHeader("Call-ID"))?;
        if v.is_empty() || v.contains(is_lws) {
            return Err(SipError::BadCallId);
        }
        Ok(v)
    }

    /// The CSeq header.
    pub fn cseq(&self) -> Result<CSeq<'a>, SipError> {
        CSeq::parse(self.header("CSeq").ok_or(SipError::MissingHeader("CSeq"))?)
    }

    /// The From header.
    pub fn from(&self) -> Result<NameAddr<'a>, SipError> {
        NameAddr::parse(self.header("From").ok_or(SipError::MissingHeader("From"))?)
    }

    /// The To header.
    pub fn to(&self) -> Result<NameAddr<'a>, SipError> {
        NameAddr::parse(self.header("To").ok_or(SipError::MissingHeader("To"))?)
    }

    /// The topmost Via.
    pub fn top_via(&self) -> Result<Via<'a>, SipError> {
        self.vias()
            .next()
            .unwrap_or(Err(SipError::MissingHeader("Via")))
    }

    /// Every Via, top first (all Via headers, comma-split).
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, SipError>> + '_ {
        self.header_values("Via").map(Via::parse)
    }

    /// The first Contact, if any.
    pub fn contact(&self) -> Option<Result<NameAddr<'a>, SipError>> {
        self.header_values("Contact").next().map(NameAddr::parse)
    }

    /// Every Record-Route entry in message order.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, SipError>> + '_ {
        self.header_values("Record-Route").map(NameAddr::parse)
    }

    /// Every Route entry in message order.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, SipError>> + '_ {
        self.header_values("Route").map(NameAddr::parse)
    }

    /// The Content-Type value (`c` compact form included).
    pub fn content_type(&self) -> Option<&'a str> {
        self.header("Content-Type")
    }

    /// `Max-Forwards = 1*DIGIT`, 0..=255.
    pub fn max_forwards(&self) -> Option<Result<u8, SipError>> {
        self.header("Max-Forwards").map(|v| {
            let v = trim_lws(v);
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SipError::BadMaxForwards);
            }
            let significant = v.trim_start_matches('0');
            if significant.is_empty() {
                return Ok(0);
            }
            if significant.len() > 3 {
                return Err(SipError::BadMaxForwards);
            }
            significant.parse().map_err(|_| SipError::BadMaxForwards)
        })
    }
}

#[cfg(test)]
mod tests;
