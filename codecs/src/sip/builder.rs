//! SIP message serializer (RFC 3261 §7): CRLF-terminated start line and header fields, an
//! empty line, then the body.

use std::io::Write as _;

/// Builds one SIP message. Header values are written as given, except that CR, LF and NUL
/// (which would split or corrupt the message) are written as spaces; a fold thus becomes
/// plain whitespace, which has the same meaning.
#[derive(Clone, Debug)]
pub struct MessageBuilder {
    buf: Vec<u8>,
}

/// Appends `s`, writing CR, LF and NUL as spaces.
fn push_clean(buf: &mut Vec<u8>, s: &str) {
    buf.extend(s.bytes().map(|b| {
        if matches!(b, b'\r' | b'\n' | 0) {
            b' '
        } else {
            b
        }
    }));
}

impl MessageBuilder {
    /// Starts a request: `Method SP Request-URI SP SIP/2.0 CRLF`.
    pub fn request(method: &str, uri: &str) -> Self {
        let mut buf = Vec::with_capacity(512);
        push_clean(&mut buf, method);
        buf.push(b' ');
        push_clean(&mut buf, uri);
        buf.extend_from_slice(b" SIP/2.0\r\n");
        MessageBuilder { buf }
    }

    /// Starts a response: `SIP/2.0 SP Status-Code SP Reason-Phrase CRLF`.
    pub fn response(code: u16, reason: &str) -> Self {
        let mut buf = Vec::with_capacity(512);
        // Writing to a Vec cannot fail.
        let _ = write!(buf, "SIP/2.0 {code:03} ");
        push_clean(&mut buf, reason);
        buf.extend_from_slice(b"\r\n");
        MessageBuilder { buf }
    }

    /// Appends `name: value CRLF`.
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        push_clean(&mut self.buf, name);
        self.buf.extend_from_slice(b": ");
        push_clean(&mut self.buf, value);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Adds Content-Type (when given) and Content-Length (always), the empty line and the body.
    pub fn finish(mut self, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
        if let Some(ct) = content_type {
            self.header("Content-Type", ct);
        }
        let _ = write!(self.buf, "Content-Length: {}\r\n\r\n", body.len());
        self.buf.extend_from_slice(body);
        self.buf
    }
}

/// Standard reason phrase for a status code (RFC 3261 §21 and extensions), `"Unknown"` otherwise.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        430 => "Flow Failed",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => "Unknown",
    }
}
