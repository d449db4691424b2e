//! First-bytes classifier for the shared client port: which protocol does a new TCP
//! connection speak, judged from the bytes it sent first (nothing is consumed).
//!
//! ```text
//! TLS   = %x16 %x03 ...            ; TLS record, handshake type, major version 3 (RFC 8446 §5.1)
//! RTMP  = %x03 ...                 ; RTMP C0: protocol version 3 (RTMP spec §5.2.2)
//! HTTP  = method SP ...            ; method = "GET" / "POST" / "HEAD" / "OPTIONS" (RFC 9112 §3)
//! Other = any 2+ bytes not above   ; reserved for RFC 4571 framed RTP (length prefix)
//! ```
//!
//! Looks at no more than [`MAX_CLASSIFY_BYTES`] bytes.

/// The longest prefix [`classify`] ever needs (`OPTIONS ` is 8 bytes).
pub const MAX_CLASSIFY_BYTES: usize = 8;

/// HTTP method tokens recognised, each with its trailing space.
const HTTP_METHODS: [&[u8]; 4] = [b"GET ", b"POST ", b"HEAD ", b"OPTIONS "];

/// What the first bytes of a connection say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classified {
    /// Not decided yet: read more bytes (never after [`MAX_CLASSIFY_BYTES`]).
    NeedMore,
    /// A TLS ClientHello record (`0x16 0x03`).
    Tls,
    /// RTMP handshake C0 (`0x03`).
    Rtmp,
    /// An HTTP/1.x request line (`GET `, `POST `, `HEAD `, `OPTIONS `).
    Http,
    /// Anything else (at least 2 bytes seen).
    Other,
}

/// Classifies the first bytes of a connection (see the module grammar).
pub fn classify(first: &[u8]) -> Classified {
    match first {
        [] => Classified::NeedMore,
        [0x16] => Classified::NeedMore,
        [0x16, 0x03, ..] => Classified::Tls,
        [0x03, ..] => Classified::Rtmp,
        _ => {
            let mut maybe_http = false;
            for method in HTTP_METHODS {
                if first.starts_with(method) {
                    return Classified::Http;
                }
                if method.starts_with(first) {
                    maybe_http = true;
                }
            }
            if maybe_http || first.len() < 2 {
                Classified::NeedMore
            } else {
                Classified::Other
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_client_hello_is_tls() {
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02, 0x00]), Classified::Tls);
        assert_eq!(classify(&[0x16, 0x03]), Classified::Tls);
        assert_eq!(classify(&[0x16]), Classified::NeedMore);
        assert_eq!(classify(&[0x16, 0x02]), Classified::Other);
    }

    #[test]
    fn rtmp_c0_is_rtmp_from_the_first_byte() {
        assert_eq!(classify(&[0x03]), Classified::Rtmp);
        assert_eq!(classify(&[0x03, 0, 0, 0, 0]), Classified::Rtmp);
    }

    #[test]
    fn http_methods_need_the_whole_token_and_a_space() {
        for m in [
            "GET / HTTP/1.1\r\n",
            "POST /x",
            "HEAD / ",
            "OPTIONS * HTTP/1.1",
        ] {
            assert_eq!(classify(m.as_bytes()), Classified::Http, "{m}");
        }
        for partial in ["G", "GE", "GET", "OPTIONS", "P", "HEA"] {
            assert_eq!(
                classify(partial.as_bytes()),
                Classified::NeedMore,
                "{partial}"
            );
        }
        assert_eq!(classify(b"GETX"), Classified::Other);
        assert_eq!(classify(b"get / HTTP/1.1"), Classified::Other);
        assert_eq!(classify(b"PUT / HTTP/1.1"), Classified::Other);
    }

    #[test]
    fn other_bytes_are_other_after_two() {
        assert_eq!(classify(&[]), Classified::NeedMore);
        assert_eq!(classify(&[0x00]), Classified::NeedMore);
        // RFC 4571: a 2-byte length then an RTP packet.
        assert_eq!(classify(&[0x00, 0xac, 0x80, 0x00]), Classified::Other);
        assert_eq!(classify(b"\r\n"), Classified::Other);
    }

    #[test]
    fn never_needs_more_than_the_limit() {
        // Every byte string as long as the limit is decided.
        for a in 0..=255u8 {
            let mut v = vec![a];
            v.extend_from_slice(b"PTIONS ");
            assert_ne!(classify(&v), Classified::NeedMore, "{v:?}");
        }
        assert_eq!(classify(b"OPTIONS "), Classified::Http);
        assert_eq!(classify(b"OPTIONSX"), Classified::Other);
    }
}
