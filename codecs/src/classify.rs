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
//!
//! One overlap remains: an RFC 4571 frame of 768–1023 bytes also starts with `0x03`. Such a
//! prefix is reported as RTMP; [`rfc4571_rtp_ssrc`] reads the SSRC it would carry as framed
//! RTP, so a caller that knows which SSRCs it expects (the tunnel's pending bindings) can take
//! it back. An RTMP C1 whose bytes 10..14 happen to equal a pending, unguessable SSRC is a
//! 2^-32 event per pending binding.

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

/// Bytes [`rfc4571_rtp_ssrc`] needs: 2-byte length + a 12-byte RTP header.
pub const RFC4571_RTP_PREFIX: usize = 14;

/// The SSRC of the RTP packet `first` would start with if it were RFC 4571 framed RTP
/// (length ≥ 12, RTP version 2); `None` when too short or not shaped like that.
///
/// ```text
/// frame = length:u16 rtp ; rtp = V(2)=2 P X CC M PT seq:u16 ts:u32 ssrc:u32 ...
/// ```
pub fn rfc4571_rtp_ssrc(first: &[u8]) -> Option<u32> {
    let head = first.get(..RFC4571_RTP_PREFIX)?;
    let len = u16::from_be_bytes([head[0], head[1]]);
    if len < 12 || head[2] >> 6 != 2 {
        return None;
    }
    Some(u32::from_be_bytes([head[10], head[11], head[12], head[13]]))
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
    fn a_long_rfc4571_frame_reads_as_rtmp_but_yields_its_ssrc() {
        // 800 bytes of PCMU (100 ms) + 12-byte header = length 0x032c.
        let mut f = vec![0x03, 0x2c, 0x80, 0x00, 0x00, 0x01, 0, 0, 0, 160];
        f.extend_from_slice(&0xdead_beef_u32.to_be_bytes());
        assert_eq!(classify(&f), Classified::Rtmp);
        assert_eq!(rfc4571_rtp_ssrc(&f), Some(0xdead_beef));
        assert_eq!(
            rfc4571_rtp_ssrc(&f[..13]),
            None,
            "needs the whole RTP header"
        );
        // ffmpeg's C0+C1: version 3, uptime 0, then its version bytes: not RTP v2.
        let c1 = [3u8, 0, 0, 0, 0, 9, 0, 124, 2, 1, 2, 3, 4, 5];
        assert_eq!(rfc4571_rtp_ssrc(&c1), None);
        // A length below an RTP header is never framed RTP.
        let short = [0u8, 11, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(rfc4571_rtp_ssrc(&short), None);
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
