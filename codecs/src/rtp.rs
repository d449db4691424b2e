//! RTP fixed header (RFC 3550 §5.1): a validating zero-copy view and an allocation-free writer.
//!
//! ```text
//! packet = V=2(2) P(1) X(1) CC(4) M(1) PT(7) seq(16) ts(32) ssrc(32) csrc(32)*CC
//!          [ profile(16) length(16) ext(32)*length ]   ; if X
//!          payload [ padding ... count(8) ]            ; if P, 1 <= count <= len(payload+padding)
//! ```
//!
//! The view is the only thing that looks at untrusted RTP bytes. The `rtp` crate is used for
//! writing only: `rtp` 0.17 can panic while parsing a malformed two-byte header extension.

use std::ops::Range;

use ::rtp::header::Header;
use webrtc_util::marshal::Marshal;

/// Length of the fixed RTP header (no CSRCs, no extension).
pub const FIXED_HEADER_LEN: usize = 12;

/// Why an RTP packet was rejected (or could not be written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    #[error("RTP packet shorter than 12 bytes")]
    TooShort,
    /// Version field is not 2.
    #[error("RTP version {0} is not 2")]
    BadVersion(u8),
    /// The CSRC list (CC × 4 bytes) runs past the end of the packet.
    #[error("RTP CSRC list runs past the packet")]
    CsrcOverflow,
    /// X=1 but the extension header or its declared length runs past the end.
    #[error("RTP header extension runs past the packet")]
    ExtensionOverflow,
    /// P=1 but the padding count is 0 or larger than what follows the header.
    #[error("RTP padding count is 0 or larger than the payload")]
    BadPadding,
    /// Payload type above 127 given to the writer.
    #[error("RTP payload type above 127")]
    BadPayloadType,
    /// Output buffer too small for the writer.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// A validated, borrowed view of one RTP packet. All accessors are infallible after
/// [`RtpView::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView<'a> {
    buf: &'a [u8],
    header_len: usize,
    payload_end: usize,
}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[w, x, y, z]) => u32::from_be_bytes([w, x, y, z]),
        _ => 0,
    }
}

impl<'a> RtpView<'a> {
    /// Validates version, CSRC list, extension length and padding; the payload range then lies
    /// inside `buf`.
    pub fn parse(buf: &'a [u8]) -> Result<RtpView<'a>, RtpError> {
        let &b0 = buf.first().ok_or(RtpError::TooShort)?;
        if buf.len() < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort);
        }
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let cc = usize::from(b0 & 0x0F);
        let mut header_len = FIXED_HEADER_LEN + cc * 4;
        if header_len > buf.len() {
            return Err(RtpError::CsrcOverflow);
        }
        if b0 & 0x10 != 0 {
            if header_len + 4 > buf.len() {
                return Err(RtpError::ExtensionOverflow);
            }
            let words = usize::from(be16(buf, header_len + 2));
            header_len += 4 + words * 4;
            if header_len > buf.len() {
                return Err(RtpError::ExtensionOverflow);
            }
        }
        let mut payload_end = buf.len();
        if b0 & 0x20 != 0 {
            let pad = usize::from(*buf.last().ok_or(RtpError::TooShort)?);
            if pad == 0 || pad > buf.len() - header_len {
                return Err(RtpError::BadPadding);
            }
            payload_end -= pad;
        }
        Ok(RtpView {
            buf,
            header_len,
            payload_end,
        })
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    fn b0(&self) -> u8 {
        self.buf.first().copied().unwrap_or(0)
    }

    fn b1(&self) -> u8 {
        self.buf.get(1).copied().unwrap_or(0)
    }

    /// P bit.
    pub fn has_padding(&self) -> bool {
        self.b0() & 0x20 != 0
    }

    /// X bit.
    pub fn has_extension(&self) -> bool {
        self.b0() & 0x10 != 0
    }

    /// CSRC count (CC).
    pub fn csrc_count(&self) -> u8 {
        self.b0() & 0x0F
    }

    /// M bit.
    pub fn marker(&self) -> bool {
        self.b1() & 0x80 != 0
    }

    /// Payload type, 0..=127.
    pub fn payload_type(&self) -> u8 {
        self.b1() & 0x7F
    }

    /// Sequence number.
    pub fn sequence(&self) -> u16 {
        be16(self.buf, 2)
    }

    /// RTP timestamp.
    pub fn timestamp(&self) -> u32 {
        be32(self.buf, 4)
    }

    /// Synchronization source.
    pub fn ssrc(&self) -> u32 {
        be32(self.buf, 8)
    }

    /// Contributing sources, in order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let buf = self.buf;
        (0..usize::from(self.csrc_count())).map(move |i| be32(buf, FIXED_HEADER_LEN + i * 4))
    }

    /// Header extension `(profile, data)` when X=1; `data` is the `length × 4` bytes after the
    /// 4-byte extension header.
    pub fn extension(&self) -> Option<(u16, &'a [u8])> {
        if !self.has_extension() {
            return None;
        }
        let at = FIXED_HEADER_LEN + usize::from(self.csrc_count()) * 4;
        let data = self.buf.get(at + 4..self.header_len)?;
        Some((be16(self.buf, at), data))
    }

    /// Bytes before the payload (fixed header, CSRCs, extension).
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Payload without padding.
    pub fn payload(&self) -> &'a [u8] {
        self.buf.get(self.payload_range()).unwrap_or(&[])
    }

    /// Payload position inside the packet, for `Bytes::slice` without copying.
    pub fn payload_range(&self) -> Range<usize> {
        self.header_len..self.payload_end
    }

    /// Number of padding bytes at the end (0 when P=0).
    pub fn padding_len(&self) -> usize {
        self.buf.len() - self.payload_end
    }
}

/// Returns true when `buf` looks like RTCP rather than RTP on a multiplexed port
/// (RFC 5761 §4: second byte 192..=223).
pub fn is_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(192..=223))
}

/// Writes a 12-byte RTP header (V=2, no padding/extension/CSRC) into `out`; returns 12.
pub fn write_header(
    out: &mut [u8],
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
) -> Result<usize, RtpError> {
    if pt > 127 {
        return Err(RtpError::BadPayloadType);
    }
    if out.len() < FIXED_HEADER_LEN {
        return Err(RtpError::BufferTooSmall);
    }
    // Empty Vecs in Header do not allocate.
    let header = Header {
        version: 2,
        marker,
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        ..Header::default()
    };
    header.marshal_to(out).map_err(|_| RtpError::BufferTooSmall)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use ::rtp::packet::Packet;
    use bytes::Bytes;
    use webrtc_util::marshal::{MarshalSize, Unmarshal};

    /// Small deterministic generator so tests need no extra dependency.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) as u32
        }
    }

    fn packet(pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 12];
        write_header(&mut v, pt, true, 0x1234, 0xDEAD_BEEF, 0x0102_0304).unwrap();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn writer_produces_a_packet_the_view_reads_back() {
        let v = packet(8, &[1, 2, 3]);
        assert_eq!(v[..2], [0x80, 0x88]);
        let p = RtpView::parse(&v).unwrap();
        assert!(p.marker());
        assert_eq!(p.payload_type(), 8);
        assert_eq!(p.sequence(), 0x1234);
        assert_eq!(p.timestamp(), 0xDEAD_BEEF);
        assert_eq!(p.ssrc(), 0x0102_0304);
        assert_eq!(p.payload(), [1, 2, 3]);
        assert_eq!(p.payload_range(), 12..15);
        assert_eq!(p.csrcs().count(), 0);
        assert_eq!(p.extension(), None);
    }

    #[test]
    fn writer_rejects_small_buffer_and_large_pt() {
        let mut small = [0u8; 11];
        assert_eq!(
            write_header(&mut small, 0, false, 0, 0, 0),
            Err(RtpError::BufferTooSmall)
        );
        let mut buf = [0u8; 12];
        assert_eq!(
            write_header(&mut buf, 128, false, 0, 0, 0),
            Err(RtpError::BadPayloadType)
        );
        assert_eq!(write_header(&mut buf, 127, false, 1, 2, 3), Ok(12));
    }

    #[test]
    fn view_agrees_with_rtp_crate_on_generated_packets() {
        let mut rng = Lcg(7);
        for i in 0..500 {
            let mut header = Header {
                version: 2,
                padding: i % 3 == 0,
                marker: rng.next() & 1 == 1,
                payload_type: (rng.next() % 128) as u8,
                sequence_number: rng.next() as u16,
                timestamp: rng.next(),
                ssrc: rng.next(),
                csrc: (0..rng.next() % 16).map(|_| rng.next()).collect(),
                ..Header::default()
            };
            if i % 4 == 1 {
                header.extension = true;
                header.extension_profile = 0xBEDE;
                let len = 1 + (rng.next() % 16) as usize;
                header
                    .set_extension(1 + (rng.next() % 14) as u8, Bytes::from(vec![0xAB; len]))
                    .unwrap();
            }
            let payload: Vec<u8> = (0..rng.next() % 200).map(|_| rng.next() as u8).collect();
            let pkt = Packet {
                header,
                payload: Bytes::from(payload),
            };
            let mut wire = vec![0u8; pkt.marshal_size()];
            let n = pkt.marshal_to(&mut wire).unwrap();
            wire.truncate(n);

            let theirs = Packet::unmarshal(&mut Bytes::from(wire.clone())).unwrap();
            let ours = RtpView::parse(&wire).unwrap();
            assert_eq!(ours.marker(), theirs.header.marker);
            assert_eq!(ours.payload_type(), theirs.header.payload_type);
            assert_eq!(ours.sequence(), theirs.header.sequence_number);
            assert_eq!(ours.timestamp(), theirs.header.timestamp);
            assert_eq!(ours.ssrc(), theirs.header.ssrc);
            assert_eq!(ours.csrcs().collect::<Vec<_>>(), theirs.header.csrc);
            assert_eq!(ours.has_extension(), theirs.header.extension);
            assert_eq!(ours.has_padding(), theirs.header.padding);
            if let Some((profile, _)) = ours.extension() {
                assert_eq!(profile, theirs.header.extension_profile);
            }
            assert_eq!(ours.payload(), &theirs.payload[..]);
            assert_eq!(&wire[ours.payload_range()], &theirs.payload[..]);
        }
    }

    #[test]
    fn extension_length_past_end_is_rejected() {
        // 20 bytes: header + X=1 with length 0xFFFF words.
        let mut v = packet(0, &[0xBE, 0xDE, 0xFF, 0xFF, 0, 0, 0, 0]);
        v[0] |= 0x10;
        assert_eq!(v.len(), 20);
        assert_eq!(RtpView::parse(&v), Err(RtpError::ExtensionOverflow));
        // X=1 with no room for the extension header at all.
        let mut v = packet(0, &[0xBE]);
        v[0] |= 0x10;
        assert_eq!(RtpView::parse(&v), Err(RtpError::ExtensionOverflow));
    }

    #[test]
    fn csrc_count_past_end_is_rejected() {
        let mut v = packet(0, &[]);
        v[0] |= 0x0F;
        assert_eq!(RtpView::parse(&v), Err(RtpError::CsrcOverflow));
    }

    #[test]
    fn bad_padding_is_rejected() {
        // Count larger than payload.
        let mut v = packet(0, &[1, 2, 200]);
        v[0] |= 0x20;
        assert_eq!(RtpView::parse(&v), Err(RtpError::BadPadding));
        // Count zero.
        let mut v = packet(0, &[1, 2, 0]);
        v[0] |= 0x20;
        assert_eq!(RtpView::parse(&v), Err(RtpError::BadPadding));
        // P=1 with nothing after the header: the last byte is the SSRC, not a count.
        let mut v = packet(0, &[]);
        v[0] |= 0x20;
        v[11] = 1;
        assert_eq!(RtpView::parse(&v), Err(RtpError::BadPadding));
        // Valid: the whole payload is padding.
        let mut v = packet(0, &[0, 0, 3]);
        v[0] |= 0x20;
        let p = RtpView::parse(&v).unwrap();
        assert_eq!(p.payload(), [] as [u8; 0]);
        assert_eq!(p.padding_len(), 3);
    }

    #[test]
    fn wrong_version_and_short_packets_are_rejected() {
        let mut v = packet(0, &[1]);
        v[0] = (v[0] & 0x3F) | 0x40;
        assert_eq!(RtpView::parse(&v), Err(RtpError::BadVersion(1)));
        assert_eq!(RtpView::parse(&v[..0]), Err(RtpError::TooShort));
        let v = packet(0, &[]);
        assert_eq!(RtpView::parse(&v[..11]), Err(RtpError::TooShort));
    }

    #[test]
    fn rtcp_is_told_apart_from_rtp_by_second_byte() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(!is_rtcp(&packet(0, &[])));
        assert!(!is_rtcp(&packet(96, &[]))); // 0x80 | 96 = 224 with marker
        assert!(!is_rtcp(&[0x80]));
    }
}
