//! RFC 4571 framing of RTP and RTCP over a TCP stream: a bounded, zero-copy deframer and a
//! frame writer.
//!
//! ```text
//! stream = *frame
//! frame  = LENGTH(16, network order) packet(LENGTH bytes)    ; RFC 4571 §2
//! ```
//!
//! Limits (HOSTILE-INPUTS row 14): a declared length above [`DeframerLimits::max_frame_len`]
//! is refused as soon as its two length bytes are read, before anything is buffered for it;
//! zero-length frames (legal per RFC 4571 but useless for RTP) are skipped but counted, and
//! more than [`DeframerLimits::max_empty_run`] of them in a row is an error, so a flood of
//! them costs bounded CPU.

use bytes::BufMut;
pub use bytes::{Bytes, BytesMut};

/// Length of the frame header (the 16-bit length).
pub const LENGTH_PREFIX_LEN: usize = 2;

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The declared length is above the configured maximum.
    #[error("RFC 4571 frame length {0} above the limit")]
    FrameTooLong(u16),
    /// Too many zero-length frames in a row.
    #[error("too many zero-length RFC 4571 frames in a row")]
    EmptyFlood,
    /// The writer was given a packet longer than 65535 bytes.
    #[error("packet too long for an RFC 4571 frame")]
    PacketTooLong,
}

impl FramingError {
    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            FramingError::FrameTooLong(_) => "frame_too_long",
            FramingError::EmptyFlood => "empty_frame_flood",
            FramingError::PacketTooLong => "packet_too_long",
        }
    }
}

/// Deframer limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeframerLimits {
    /// Largest packet accepted (bytes); 1500 by default.
    pub max_frame_len: u16,
    /// Zero-length frames tolerated in a row before [`FramingError::EmptyFlood`]; 16 by default.
    pub max_empty_run: u32,
}

impl Default for DeframerLimits {
    fn default() -> Self {
        DeframerLimits {
            max_frame_len: 1500,
            max_empty_run: 16,
        }
    }
}

/// Splits RFC 4571 frames off the front of a receive buffer.
#[derive(Debug, Clone)]
pub struct Deframer {
    limits: DeframerLimits,
    empty_run: u32,
    empty_total: u64,
}

impl Deframer {
    pub fn new(limits: DeframerLimits) -> Deframer {
        Deframer {
            limits,
            empty_run: 0,
            empty_total: 0,
        }
    }

    /// The next complete packet, split off `buf` without copying (`split_to().freeze()`), or
    /// `None` when more bytes are needed. Zero-length frames are consumed and skipped. After an
    /// error the stream is unusable (the caller closes it).
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        loop {
            let len = match buf.get(..LENGTH_PREFIX_LEN) {
                Some(&[a, b]) => u16::from_be_bytes([a, b]),
                _ => return Ok(None),
            };
            if len > self.limits.max_frame_len {
                return Err(FramingError::FrameTooLong(len));
            }
            if len == 0 {
                self.empty_run += 1;
                self.empty_total += 1;
                if self.empty_run > self.limits.max_empty_run {
                    return Err(FramingError::EmptyFlood);
                }
                let _ = buf.split_to(LENGTH_PREFIX_LEN);
                continue;
            }
            let total = LENGTH_PREFIX_LEN + usize::from(len);
            if buf.len() < total {
                // The limit check above bounds what the caller buffers for this frame.
                return Ok(None);
            }
            self.empty_run = 0;
            let mut frame = buf.split_to(total);
            let _ = frame.split_to(LENGTH_PREFIX_LEN);
            return Ok(Some(frame.freeze()));
        }
    }

    /// Zero-length frames seen so far.
    pub fn empty_frames(&self) -> u64 {
        self.empty_total
    }

    /// Bytes still needed to complete the frame at the front of `buf` (0 when none is started).
    pub fn pending(&self, buf: &[u8]) -> usize {
        match buf.get(..LENGTH_PREFIX_LEN) {
            Some(&[a, b]) => (LENGTH_PREFIX_LEN + usize::from(u16::from_be_bytes([a, b])))
                .saturating_sub(buf.len()),
            _ => 0,
        }
    }
}

/// Appends one frame (length prefix + `packet`) to `out`.
pub fn write_frame(out: &mut BytesMut, packet: &[u8]) -> Result<(), FramingError> {
    let len = u16::try_from(packet.len()).map_err(|_| FramingError::PacketTooLong)?;
    out.reserve(LENGTH_PREFIX_LEN + packet.len());
    out.put_u16(len);
    out.put_slice(packet);
    Ok(())
}

/// Appends one frame made of `header` followed by `payload` (an RTP header and its payload),
/// without joining them first.
pub fn write_frame_parts(
    out: &mut BytesMut,
    header: &[u8],
    payload: &[u8],
) -> Result<(), FramingError> {
    let len =
        u16::try_from(header.len() + payload.len()).map_err(|_| FramingError::PacketTooLong)?;
    out.reserve(LENGTH_PREFIX_LEN + usize::from(len));
    out.put_u16(len);
    out.put_slice(header);
    out.put_slice(payload);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn deframer() -> Deframer {
        Deframer::new(DeframerLimits::default())
    }

    #[test]
    fn frames_split_across_reads_come_out_whole_and_in_order() {
        let mut wire = BytesMut::new();
        write_frame(&mut wire, b"first").unwrap();
        write_frame_parts(&mut wire, b"sec", b"ond").unwrap();
        let mut d = deframer();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in wire.iter() {
            buf.put_u8(*byte);
            while let Some(f) = d.read(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![Bytes::from_static(b"first"), Bytes::from_static(b"second")]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn a_frame_is_a_view_of_the_receive_buffer_not_a_copy() {
        let mut buf = BytesMut::with_capacity(64);
        write_frame(&mut buf, &[7u8; 20]).unwrap();
        let start = buf.as_ptr() as usize;
        let frame = deframer().read(&mut buf).unwrap().unwrap();
        assert_eq!(frame.as_ptr() as usize, start + LENGTH_PREFIX_LEN);
    }

    #[test]
    fn a_declared_length_above_the_limit_is_refused_before_its_body_arrives() {
        let mut buf = BytesMut::from(&[0xFF, 0xFF][..]);
        assert_eq!(
            deframer().read(&mut buf),
            Err(FramingError::FrameTooLong(65535))
        );
        let mut d = Deframer::new(DeframerLimits {
            max_frame_len: 100,
            max_empty_run: 4,
        });
        let mut ok = BytesMut::new();
        write_frame(&mut ok, &[0u8; 100]).unwrap();
        assert!(d.read(&mut ok).unwrap().is_some());
        let mut big = BytesMut::from(&[0, 101][..]);
        assert_eq!(d.read(&mut big), Err(FramingError::FrameTooLong(101)));
    }

    #[test]
    fn a_flood_of_empty_frames_is_an_error_after_the_limit() {
        let mut d = Deframer::new(DeframerLimits {
            max_frame_len: 1500,
            max_empty_run: 3,
        });
        let mut buf = BytesMut::from(&[0u8; 2 * 1000][..]);
        assert_eq!(d.read(&mut buf), Err(FramingError::EmptyFlood));
        // It stopped right after the limit instead of chewing through the whole buffer.
        assert_eq!(d.empty_frames(), 4);
        assert_eq!(buf.len(), 2 * 1000 - 2 * 3);
    }

    #[test]
    fn a_few_empty_frames_between_packets_are_skipped() {
        let mut d = Deframer::new(DeframerLimits {
            max_frame_len: 1500,
            max_empty_run: 3,
        });
        let mut buf = BytesMut::new();
        for _ in 0..5 {
            buf.put_slice(&[0, 0, 0, 0, 0, 0]);
            write_frame(&mut buf, b"rtp").unwrap();
        }
        let mut n = 0;
        while let Some(f) = d.read(&mut buf).unwrap() {
            assert_eq!(&f[..], b"rtp");
            n += 1;
        }
        assert_eq!(n, 5);
        assert_eq!(d.empty_frames(), 15);
    }

    #[test]
    fn pending_counts_the_missing_bytes_of_a_started_frame() {
        let buf = [0u8, 10, 1, 2, 3];
        assert_eq!(deframer().pending(&buf), 7);
        assert_eq!(deframer().pending(&[0u8]), 0);
    }

    #[test]
    fn the_writer_refuses_packets_longer_than_65535() {
        let mut out = BytesMut::new();
        assert_eq!(
            write_frame(&mut out, &vec![0u8; 65536]),
            Err(FramingError::PacketTooLong)
        );
        assert!(out.is_empty());
        write_frame(&mut out, &vec![1u8; 65535]).unwrap();
        assert_eq!(&out[..2], &[0xFF, 0xFF]);
    }
}
