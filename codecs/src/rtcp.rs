//! RTCP (RFC 3550 §6.4–6.6): a compound-packet walker with typed views for SR, RR, SDES and
//! BYE, and allocation-free writers.
//!
//! ```text
//! compound = 1*packet
//! packet   = V=2(2) P(1) count(5) PT(8) length(16) body   ; total = (length + 1) * 4 bytes
//! SR body  = ssrc(32) ntp(64) rtp_ts(32) packets(32) octets(32) report_block*RC [ext]
//! RR body  = ssrc(32) report_block*RC [ext]
//! block    = ssrc(32) fraction(8) cumulative_lost(24, signed) highest_seq(32) jitter(32)
//!            lsr(32) dlsr(32)
//! SDES     = chunk*SC ; chunk = ssrc(32) item* 0x00 pad-to-32-bits ; item = type(8) len(8) text
//! BYE      = ssrc(32)*SC [ len(8) reason ]
//! ```
//!
//! The walker advances by at least 4 bytes per step, so it ends after at most `len / 4` items;
//! after the first error it yields nothing more.

/// Packet type: sender report.
pub const PT_SR: u8 = 200;
/// Packet type: receiver report.
pub const PT_RR: u8 = 201;
/// Packet type: source description.
pub const PT_SDES: u8 = 202;
/// Packet type: goodbye.
pub const PT_BYE: u8 = 203;
/// Packet type: application-defined.
pub const PT_APP: u8 = 204;
/// SDES item type CNAME.
pub const SDES_CNAME: u8 = 1;

const REPORT_BLOCK_LEN: usize = 24;
const SENDER_INFO_LEN: usize = 20;

/// Why an RTCP packet was rejected (or could not be written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// Fewer than 4 bytes left for a common header, or a body too short for its type.
    #[error("RTCP packet too short")]
    TooShort,
    /// Version field is not 2.
    #[error("RTCP version {0} is not 2")]
    BadVersion(u8),
    /// The length word points past the end of the datagram.
    #[error("RTCP length runs past the datagram")]
    LengthOverflow,
    /// Report count needs more blocks than the packet holds.
    #[error("RTCP report count exceeds packet length")]
    BadReportCount,
    /// Padding count is 0 or larger than the packet body.
    #[error("RTCP padding invalid")]
    BadPadding,
    /// SDES chunk or item runs past its packet.
    #[error("RTCP SDES malformed")]
    BadSdes,
    /// BYE source list or reason runs past its packet.
    #[error("RTCP BYE malformed")]
    BadBye,
    /// Compound packet does not start with an SR or RR.
    #[error("RTCP compound does not start with SR or RR")]
    FirstNotReport,
    /// Writer: output buffer too small.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// Writer: more than 31 report blocks.
    #[error("more than 31 report blocks")]
    TooManyBlocks,
    /// Writer: SDES text longer than 255 bytes.
    #[error("SDES text longer than 255 bytes")]
    TextTooLong,
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

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// Source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost, 24-bit signed (clamped on write).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR (LSR).
    pub last_sr: u32,
    /// Delay since last SR, in 1/65536 s (DLSR).
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn read(b: &[u8]) -> ReportBlock {
        let lost_word = be32(b, 4);
        // Sign-extend the low 24 bits.
        let cumulative_lost = ((lost_word << 8) as i32) >> 8;
        ReportBlock {
            ssrc: be32(b, 0),
            fraction_lost: (lost_word >> 24) as u8,
            cumulative_lost,
            highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            last_sr: be32(b, 16),
            delay_since_last_sr: be32(b, 20),
        }
    }

    fn write(&self, out: &mut [u8]) {
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0x00FF_FFFF;
        let words = [
            self.ssrc,
            (u32::from(self.fraction_lost) << 24) | lost,
            self.highest_seq,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        ];
        for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
    }
}

/// Report blocks of an SR or RR, read lazily from validated bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks<'a>(&'a [u8]);

impl<'a> ReportBlocks<'a> {
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.0.len() / REPORT_BLOCK_LEN
    }

    /// True when there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates the blocks in order.
    pub fn iter(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        self.0.chunks_exact(REPORT_BLOCK_LEN).map(ReportBlock::read)
    }
}

/// Sender report view (PT 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport<'a> {
    /// Sender SSRC.
    pub ssrc: u32,
    /// 64-bit NTP timestamp.
    pub ntp: u64,
    /// RTP timestamp corresponding to `ntp`.
    pub rtp_ts: u32,
    /// Sender's packet count.
    pub packet_count: u32,
    /// Sender's octet count.
    pub octet_count: u32,
    /// Reception reports.
    pub blocks: ReportBlocks<'a>,
    /// Profile-specific extension after the blocks (usually empty).
    pub extension: &'a [u8],
}

/// Receiver report view (PT 201).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    /// Reporter SSRC.
    pub ssrc: u32,
    /// Reception reports.
    pub blocks: ReportBlocks<'a>,
    /// Profile-specific extension after the blocks.
    pub extension: &'a [u8],
}

/// One SDES item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    /// Source the item describes.
    pub ssrc: u32,
    /// Item type (1 = CNAME, …).
    pub item_type: u8,
    /// Item text (UTF-8 by the RFC, not checked).
    pub text: &'a [u8],
}

/// Source description view (PT 202); validated on parse, items read lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sdes<'a> {
    chunks: &'a [u8],
    count: u8,
}

impl<'a> Sdes<'a> {
    /// Number of chunks (SC).
    pub fn chunk_count(&self) -> u8 {
        self.count
    }

    /// All items of all chunks, in order.
    pub fn items(&self) -> SdesItems<'a> {
        SdesItems {
            buf: self.chunks,
            pos: 0,
            chunks_left: self.count,
            ssrc: None,
        }
    }

    /// The first CNAME in the packet.
    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items()
            .find(|i| i.item_type == SDES_CNAME)
            .map(|i| i.text)
    }

    /// Walks all chunks; returns the validated view.
    fn parse(chunks: &'a [u8], count: u8) -> Result<Sdes<'a>, RtcpError> {
        let mut pos = 0usize;
        for _ in 0..count {
            if pos + 4 > chunks.len() {
                return Err(RtcpError::BadSdes);
            }
            pos += 4;
            loop {
                let &t = chunks.get(pos).ok_or(RtcpError::BadSdes)?;
                if t == 0 {
                    // End of items: skip to the next 32-bit boundary.
                    pos = (pos + 4) & !3;
                    if pos > chunks.len() {
                        return Err(RtcpError::BadSdes);
                    }
                    break;
                }
                let &len = chunks.get(pos + 1).ok_or(RtcpError::BadSdes)?;
                pos += 2 + usize::from(len);
                if pos > chunks.len() {
                    return Err(RtcpError::BadSdes);
                }
            }
        }
        Ok(Sdes { chunks, count })
    }
}

/// Iterator over the items of a validated SDES packet.
#[derive(Debug, Clone)]
pub struct SdesItems<'a> {
    buf: &'a [u8],
    pos: usize,
    chunks_left: u8,
    ssrc: Option<u32>,
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = SdesItem<'a>;

    fn next(&mut self) -> Option<SdesItem<'a>> {
        loop {
            let ssrc = match self.ssrc {
                Some(s) => s,
                None => {
                    if self.chunks_left == 0 {
                        return None;
                    }
                    self.chunks_left -= 1;
                    let s = be32(self.buf.get(self.pos..)?, 0);
                    self.pos += 4;
                    self.ssrc = Some(s);
                    s
                }
            };
            let &t = self.buf.get(self.pos)?;
            if t == 0 {
                self.pos = (self.pos + 4) & !3;
                self.ssrc = None;
                continue;
            }
            let len = usize::from(*self.buf.get(self.pos + 1)?);
            let text = self.buf.get(self.pos + 2..self.pos + 2 + len)?;
            self.pos += 2 + len;
            return Some(SdesItem {
                ssrc,
                item_type: t,
                text,
            });
        }
    }
}

/// Goodbye view (PT 203).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bye<'a> {
    sources: &'a [u8],
    /// Optional reason text.
    pub reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    /// The SSRCs/CSRCs leaving.
    pub fn sources(&self) -> impl Iterator<Item = u32> + 'a {
        self.sources.chunks_exact(4).map(|c| be32(c, 0))
    }
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    /// PT 200.
    SenderReport(SenderReport<'a>),
    /// PT 201.
    ReceiverReport(ReceiverReport<'a>),
    /// PT 202.
    Sdes(Sdes<'a>),
    /// PT 203.
    Bye(Bye<'a>),
    /// Any other type (APP, RTPFB, PSFB, XR, …): header fields and the body after the 4-byte
    /// common header, padding removed.
    Other {
        /// Packet type.
        packet_type: u8,
        /// The 5-bit count/subtype field.
        count: u8,
        /// Body after the common header.
        body: &'a [u8],
    },
}

/// Iterator returned by [`walk`].
#[derive(Debug, Clone)]
pub struct Walk<'a> {
    rest: &'a [u8],
}

/// Walks a compound RTCP datagram packet by packet. Stops after the first error.
pub fn walk(buf: &[u8]) -> Walk<'_> {
    Walk { rest: buf }
}

/// Validates a whole compound packet: every packet parses and the first is an SR or RR
/// (RFC 3550 §6.1). Returns the number of packets.
pub fn validate_compound(buf: &[u8]) -> Result<usize, RtcpError> {
    let mut n = 0;
    for p in walk(buf) {
        let p = p?;
        if n == 0
            && !matches!(
                p,
                RtcpPacket::SenderReport(_) | RtcpPacket::ReceiverReport(_)
            )
        {
            return Err(RtcpError::FirstNotReport);
        }
        n += 1;
    }
    if n == 0 {
        return Err(RtcpError::TooShort);
    }
    Ok(n)
}

impl<'a> Iterator for Walk<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = next_packet(self.rest);
        match r {
            Ok((p, used)) => {
                self.rest = self.rest.get(used..).unwrap_or(&[]);
                Some(Ok(p))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// Parses the packet at the start of `buf`; returns it and its total length (>= 4).
fn next_packet(buf: &[u8]) -> Result<(RtcpPacket<'_>, usize), RtcpError> {
    let (&b0, &pt) = match buf {
        [b0, pt, _, _, ..] => (b0, pt),
        _ => return Err(RtcpError::TooShort),
    };
    let version = b0 >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion(version));
    }
    let total = (usize::from(be16(buf, 2)) + 1) * 4;
    let packet = buf.get(..total).ok_or(RtcpError::LengthOverflow)?;
    let mut body = packet.get(4..).unwrap_or(&[]);
    if b0 & 0x20 != 0 {
        let pad = usize::from(*body.last().ok_or(RtcpError::BadPadding)?);
        if pad == 0 || pad > body.len() {
            return Err(RtcpError::BadPadding);
        }
        body = body.get(..body.len() - pad).unwrap_or(&[]);
    }
    let count = b0 & 0x1F;
    let p = match pt {
        PT_SR => {
            let fixed = 4 + SENDER_INFO_LEN;
            let blocks_end = fixed + usize::from(count) * REPORT_BLOCK_LEN;
            if body.len() < fixed {
                return Err(RtcpError::TooShort);
            }
            let blocks = body
                .get(fixed..blocks_end)
                .ok_or(RtcpError::BadReportCount)?;
            RtcpPacket::SenderReport(SenderReport {
                ssrc: be32(body, 0),
                ntp: (u64::from(be32(body, 4)) << 32) | u64::from(be32(body, 8)),
                rtp_ts: be32(body, 12),
                packet_count: be32(body, 16),
                octet_count: be32(body, 20),
                blocks: ReportBlocks(blocks),
                extension: body.get(blocks_end..).unwrap_or(&[]),
            })
        }
        PT_RR => {
            let blocks_end = 4 + usize::from(count) * REPORT_BLOCK_LEN;
            if body.len() < 4 {
                return Err(RtcpError::TooShort);
            }
            let blocks = body.get(4..blocks_end).ok_or(RtcpError::BadReportCount)?;
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: be32(body, 0),
                blocks: ReportBlocks(blocks),
                extension: body.get(blocks_end..).unwrap_or(&[]),
            })
        }
        PT_SDES => RtcpPacket::Sdes(Sdes::parse(body, count)?),
        PT_BYE => {
            let src_end = usize::from(count) * 4;
            let sources = body.get(..src_end).ok_or(RtcpError::BadBye)?;
            let reason = match body.get(src_end) {
                None => None,
                Some(&len) => Some(
                    body.get(src_end + 1..src_end + 1 + usize::from(len))
                        .ok_or(RtcpError::BadBye)?,
                ),
            };
            RtcpPacket::Bye(Bye { sources, reason })
        }
        _ => RtcpPacket::Other {
            packet_type: pt,
            count,
            body,
        },
    };
    Ok((p, total))
}

fn write_common_header(out: &mut [u8], count: u8, pt: u8, total: usize) {
    let words = (total / 4 - 1) as u16;
    if let Some(h) = out.get_mut(..4) {
        h[0] = 0x80 | (count & 0x1F);
        h[1] = pt;
        h[2..4].copy_from_slice(&words.to_be_bytes());
    }
}

fn put32(out: &mut [u8], at: usize, v: u32) {
    if let Some(d) = out.get_mut(at..at + 4) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

/// Writes a sender report with up to 31 report blocks; returns its length.
pub fn write_sender_report(
    out: &mut [u8],
    ssrc: u32,
    ntp: u64,
    rtp_ts: u32,
    packet_count: u32,
    octet_count: u32,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpError> {
    let count = u8::try_from(blocks.len())
        .ok()
        .filter(|&c| c <= 31)
        .ok_or(RtcpError::TooManyBlocks)?;
    let total = 8 + SENDER_INFO_LEN + blocks.len() * REPORT_BLOCK_LEN;
    let out = out.get_mut(..total).ok_or(RtcpError::BufferTooSmall)?;
    write_common_header(out, count, PT_SR, total);
    put32(out, 4, ssrc);
    put32(out, 8, (ntp >> 32) as u32);
    put32(out, 12, ntp as u32);
    put32(out, 16, rtp_ts);
    put32(out, 20, packet_count);
    put32(out, 24, octet_count);
    for (chunk, b) in out[28..].chunks_exact_mut(REPORT_BLOCK_LEN).zip(blocks) {
        b.write(chunk);
    }
    Ok(total)
}

/// Writes a receiver report with up to 31 report blocks; returns its length.
pub fn write_receiver_report(
    out: &mut [u8],
    ssrc: u32,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpError> {
    let count = u8::try_from(blocks.len())
        .ok()
        .filter(|&c| c <= 31)
        .ok_or(RtcpError::TooManyBlocks)?;
    let total = 8 + blocks.len() * REPORT_BLOCK_LEN;
    let out = out.get_mut(..total).ok_or(RtcpError::BufferTooSmall)?;
    write_common_header(out, count, PT_RR, total);
    put32(out, 4, ssrc);
    for (chunk, b) in out[8..].chunks_exact_mut(REPORT_BLOCK_LEN).zip(blocks) {
        b.write(chunk);
    }
    Ok(total)
}

/// Writes an SDES packet with one chunk holding one CNAME item (at most 255 bytes);
/// returns its length.
pub fn write_sdes_cname(out: &mut [u8], ssrc: u32, cname: &[u8]) -> Result<usize, RtcpError> {
    let len = u8::try_from(cname.len()).map_err(|_| RtcpError::TextTooLong)?;
    // header + ssrc + type + len + text + at least one NUL, padded to 32 bits.
    let total = (4 + 4 + 2 + cname.len() + 1).div_ceil(4) * 4;
    let out = out.get_mut(..total).ok_or(RtcpError::BufferTooSmall)?;
    write_common_header(out, 1, PT_SDES, total);
    put32(out, 4, ssrc);
    out[8] = SDES_CNAME;
    out[9] = len;
    out[10..10 + cname.len()].copy_from_slice(cname);
    out[10 + cname.len()..].fill(0);
    Ok(total)
}

/// Writes a BYE for one SSRC, without reason; returns 8.
pub fn write_bye(out: &mut [u8], ssrc: u32) -> Result<usize, RtcpError> {
    let out = out.get_mut(..8).ok_or(RtcpError::BufferTooSmall)?;
    write_common_header(out, 1, PT_BYE, 8);
    put32(out, 4, ssrc);
    Ok(8)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn block(n: u32) -> ReportBlock {
        ReportBlock {
            ssrc: n,
            fraction_lost: 12,
            cumulative_lost: -5,
            highest_seq: 0x0001_0010,
            jitter: 33,
            last_sr: 0xABCD_1234,
            delay_since_last_sr: 65536,
        }
    }

    #[test]
    fn compound_sr_sdes_bye_round_trips() {
        let mut buf = [0u8; 256];
        let mut n = write_sender_report(
            &mut buf,
            0x1111,
            0x0102_0304_0506_0708,
            160,
            10,
            1600,
            &[block(7), block(8)],
        )
        .unwrap();
        assert_eq!(n, 28 + 48);
        n += write_sdes_cname(&mut buf[n..], 0x1111, b"skybridge@relay").unwrap();
        n += write_bye(&mut buf[n..], 0x1111).unwrap();
        let pkts: Vec<_> = walk(&buf[..n]).collect::<Result<_, _>>().unwrap();
        assert_eq!(pkts.len(), 3);
        assert_eq!(validate_compound(&buf[..n]), Ok(3));
        let RtcpPacket::SenderReport(sr) = pkts[0] else {
            panic!("not SR")
        };
        assert_eq!(sr.ssrc, 0x1111);
        assert_eq!(sr.ntp, 0x0102_0304_0506_0708);
        assert_eq!(
            (sr.rtp_ts, sr.packet_count, sr.octet_count),
            (160, 10, 1600)
        );
        assert_eq!(sr.blocks.iter().collect::<Vec<_>>(), [block(7), block(8)]);
        let RtcpPacket::Sdes(sdes) = pkts[1] else {
            panic!("not SDES")
        };
        assert_eq!(sdes.cname(), Some(&b"skybridge@relay"[..]));
        assert_eq!(sdes.items().next().unwrap().ssrc, 0x1111);
        let RtcpPacket::Bye(bye) = pkts[2] else {
            panic!("not BYE")
        };
        assert_eq!(bye.sources().collect::<Vec<_>>(), [0x1111]);
        assert_eq!(bye.reason, None);
    }

    #[test]
    fn receiver_report_round_trips_with_extreme_cumulative_loss() {
        let mut b = block(9);
        b.cumulative_lost = -0x80_0000;
        let mut b2 = block(10);
        b2.cumulative_lost = 0x7F_FFFF;
        let mut b3 = block(11);
        b3.cumulative_lost = i32::MAX; // clamped on write
        let mut buf = [0u8; 128];
        let n = write_receiver_report(&mut buf, 42, &[b, b2, b3]).unwrap();
        let Some(Ok(RtcpPacket::ReceiverReport(rr))) = walk(&buf[..n]).next() else {
            panic!("not RR")
        };
        assert_eq!(rr.ssrc, 42);
        let got: Vec<_> = rr.blocks.iter().map(|b| b.cumulative_lost).collect();
        assert_eq!(got, [-0x80_0000, 0x7F_FFFF, 0x7F_FFFF]);
        assert!(rr.extension.is_empty());
    }

    #[test]
    fn writers_reject_small_buffers_and_too_many_blocks() {
        let mut small = [0u8; 7];
        assert_eq!(write_bye(&mut small, 1), Err(RtcpError::BufferTooSmall));
        assert_eq!(
            write_receiver_report(&mut small, 1, &[]),
            Err(RtcpError::BufferTooSmall)
        );
        let mut big = [0u8; 2048];
        let blocks = [block(1); 32];
        assert_eq!(
            write_receiver_report(&mut big, 1, &blocks),
            Err(RtcpError::TooManyBlocks)
        );
        assert_eq!(
            write_sender_report(&mut big, 1, 0, 0, 0, 0, &blocks),
            Err(RtcpError::TooManyBlocks)
        );
        assert_eq!(
            write_sdes_cname(&mut big, 1, &[b'a'; 256]),
            Err(RtcpError::TextTooLong)
        );
        assert_eq!(write_sdes_cname(&mut big, 1, &[b'a'; 255]), Ok(268));
    }

    #[test]
    fn zero_length_word_is_a_four_byte_packet_and_the_walk_ends() {
        // Five 4-byte APP-like packets with length 0: five items, then the end.
        let buf = [0x80, 204, 0, 0].repeat(5);
        let items: Vec<_> = walk(&buf).collect();
        assert_eq!(items.len(), 5);
        assert!(items.iter().all(|p| matches!(
            p,
            Ok(RtcpPacket::Other {
                packet_type: 204,
                body: &[],
                ..
            })
        )));
    }

    #[test]
    fn four_byte_rr_is_too_short_not_an_out_of_bounds_read() {
        assert_eq!(
            walk(&[0x80, 201, 0, 0]).next(),
            Some(Err(RtcpError::TooShort))
        );
        assert_eq!(
            walk(&[0x80, 200, 0, 0]).next(),
            Some(Err(RtcpError::TooShort))
        );
        assert_eq!(walk(&[0x80, 200]).next(), Some(Err(RtcpError::TooShort)));
    }

    #[test]
    fn length_past_the_end_is_rejected_and_stops_the_walk() {
        let mut buf = [0u8; 16];
        write_bye(&mut buf, 1).unwrap();
        buf[8..12].copy_from_slice(&[0x80, 201, 0x00, 0x10]);
        let items: Vec<_> = walk(&buf[..12]).collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1], Err(RtcpError::LengthOverflow));
    }

    #[test]
    fn report_count_31_without_blocks_is_rejected() {
        let buf = [0x80 | 31, 201, 0, 1, 0, 0, 0, 1];
        assert_eq!(walk(&buf).next(), Some(Err(RtcpError::BadReportCount)));
        let mut sr = [0u8; 28];
        write_sender_report(&mut sr, 1, 0, 0, 0, 0, &[]).unwrap();
        sr[0] |= 31;
        assert_eq!(walk(&sr).next(), Some(Err(RtcpError::BadReportCount)));
    }

    #[test]
    fn wrong_version_and_bad_padding_are_rejected() {
        assert_eq!(
            walk(&[0x40, 201, 0, 1, 0, 0, 0, 1]).next(),
            Some(Err(RtcpError::BadVersion(1)))
        );
        // P=1 with padding count 0, then count larger than body.
        assert_eq!(
            walk(&[0xA0, 201, 0, 1, 0, 0, 0, 0]).next(),
            Some(Err(RtcpError::BadPadding))
        );
        assert_eq!(
            walk(&[0xA0, 201, 0, 1, 0, 0, 0, 9]).next(),
            Some(Err(RtcpError::BadPadding))
        );
        assert_eq!(
            walk(&[0xA0, 204, 0, 0]).next(),
            Some(Err(RtcpError::BadPadding))
        );
    }

    #[test]
    fn malformed_sdes_and_bye_are_rejected() {
        // SDES with SC=1, item length past the end.
        let sdes = [0x81, 202, 0, 2, 0, 0, 0, 1, 1, 200, b'a', 0];
        assert_eq!(walk(&sdes).next(), Some(Err(RtcpError::BadSdes)));
        // SDES with SC=2 but one chunk.
        let sdes = [0x82, 202, 0, 2, 0, 0, 0, 1, 1, 1, b'a', 0];
        assert_eq!(walk(&sdes).next(), Some(Err(RtcpError::BadSdes)));
        // BYE with SC=3 but one source.
        let bye = [0x83, 203, 0, 1, 0, 0, 0, 1];
        assert_eq!(walk(&bye).next(), Some(Err(RtcpError::BadBye)));
        // BYE whose reason length runs past the end.
        let bye = [0x81, 203, 0, 2, 0, 0, 0, 1, 9, b'x', 0, 0];
        assert_eq!(walk(&bye).next(), Some(Err(RtcpError::BadBye)));
        // A good reason.
        let bye = [0x81, 203, 0, 2, 0, 0, 0, 1, 2, b'o', b'k', 0];
        let Some(Ok(RtcpPacket::Bye(b))) = walk(&bye).next() else {
            panic!()
        };
        assert_eq!(b.reason, Some(&b"ok"[..]));
    }

    #[test]
    fn compound_must_start_with_a_report() {
        let mut buf = [0u8; 8];
        write_bye(&mut buf, 1).unwrap();
        assert_eq!(validate_compound(&buf), Err(RtcpError::FirstNotReport));
        assert!(validate_compound(&[]).is_err());
    }
}
