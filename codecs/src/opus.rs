//! Opus (RFC 6716) for calls: mono, 20 ms frames, over the system's libopus.
//!
//! RTP carries Opus per RFC 7587: one Opus packet per RTP packet, the RTP clock always 48 kHz
//! whatever the audio bandwidth (`a=rtpmap:<pt> opus/48000/2` in SDP, even for mono, §7).
//! The coders themselves run at any of libopus's rates (8, 12, 16, 24, 48 kHz), so a call
//! bridged to G.711 can decode straight to 8 kHz and skip a resampler; timestamps still
//! advance in 48 kHz ticks ([`rtp_ticks`]).
//!
//! Backed by the `opus` crate (safe bindings; `audiopus_sys` links Debian's `libopus-dev`
//! found through pkg-config). libopus works in the state it allocated at creation: nothing is
//! allocated per frame.

use opus::{Application, Channels, ErrorCode};

/// RTP clock rate of Opus (RFC 7587 §4.1), whatever the coded bandwidth.
pub const RTP_CLOCK_RATE: u32 = 48_000;

/// Largest Opus packet (RFC 6716 §3.4: 1275 bytes per frame; one frame per 20 ms packet).
pub const MAX_PACKET: usize = 1275;

/// Encoder complexity (libopus 0..=10, default 10) of [`OpusEncoder::new`]: 2, the lowest at
/// which libopus still adds in-band FEC. Measured on 39 s of synthetic speech at 24 kbit/s
/// (release build, one core), encoding 20 ms costs 55 µs from 8 kHz and 74 µs from 16 kHz
/// (complexity 5: 77 / 103 µs) with PESQ 4.35 narrowband (5: 4.40) and 4.20 wideband (5:
/// 4.39).
pub const COMPLEXITY: i32 = 2;

/// Complexity of [`OpusEncoder::for_reliable_link`]: 1, where SILK (the speech layer) skips
/// its delayed-decision quantiser and the costlier pitch search and libopus adds no FEC:
/// 26 µs from 8 kHz and 48 µs from 16 kHz, PESQ 4.48 narrowband and 4.13 wideband; a 1 kHz
/// tone keeps 37 dB SNR.
pub const RELIABLE_COMPLEXITY: i32 = 1;

/// Frame duration used here, in milliseconds.
pub const FRAME_MS: u32 = 20;

/// Errors from the Opus coders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpusError {
    /// libopus runs at 8, 12, 16, 24 or 48 kHz only.
    #[error("unsupported Opus sample rate {0} Hz")]
    UnsupportedRate(u32),
    /// The encoder takes exactly one 20 ms frame.
    #[error("{got} samples given, one 20 ms frame is {frame}")]
    FrameSize {
        /// Samples given.
        got: usize,
        /// Samples in 20 ms at the coder's rate.
        frame: usize,
    },
    /// The output buffer is shorter than the result.
    #[error("output buffer holds {got} items, {needed} needed")]
    OutputTooSmall {
        /// Items the call produces.
        needed: usize,
        /// Items the output buffer holds.
        got: usize,
    },
    /// An empty packet (use `decode(None, …)` for a lost one).
    #[error("empty Opus packet")]
    Empty,
    /// The packet is malformed (libopus `OPUS_INVALID_PACKET`).
    #[error("invalid Opus packet")]
    InvalidPacket,
    /// libopus found the output buffer too small for the packet.
    #[error("output buffer too small for the Opus packet")]
    BufferTooSmall,
    /// Any other libopus failure (bad argument, internal error, allocation failure).
    #[error("libopus error")]
    Library,
}

impl From<opus::Error> for OpusError {
    fn from(e: opus::Error) -> OpusError {
        match e.code() {
            ErrorCode::InvalidPacket => OpusError::InvalidPacket,
            ErrorCode::BufferTooSmall => OpusError::BufferTooSmall,
            _ => OpusError::Library,
        }
    }
}

fn check_rate(rate: u32) -> Result<usize, OpusError> {
    match rate {
        8_000 | 12_000 | 16_000 | 24_000 | 48_000 => Ok(rate as usize / 50),
        _ => Err(OpusError::UnsupportedRate(rate)),
    }
}

/// RTP timestamp ticks (48 kHz, RFC 7587 §4.1) for `samples` PCM samples at `rate` Hz.
pub const fn rtp_ticks(samples: usize, rate: u32) -> u32 {
    (samples as u64 * RTP_CLOCK_RATE as u64 / rate as u64) as u32
}

/// A mono Opus encoder for speech (libopus `OPUS_APPLICATION_VOIP`), 20 ms frames.
pub struct OpusEncoder {
    inner: opus::Encoder,
    frame: usize,
}

impl OpusEncoder {
    /// An encoder taking `rate` Hz input (8/12/16/24/48 kHz) at `bitrate` bit/s (libopus
    /// clamps to 500..=512000; 24000 is plenty for wideband speech), VBR, complexity [`COMPLEXITY`], in-band FEC on
    /// (RFC 7587 §3.3: recovery of a lost packet from the next one).
    pub fn new(rate: u32, bitrate: i32) -> Result<OpusEncoder, OpusError> {
        let frame = check_rate(rate)?;
        let mut inner = opus::Encoder::new(rate, Channels::Mono, Application::Voip)?;
        inner.set_bitrate(opus::Bitrate::Bits(bitrate))?;
        inner.set_inband_fec(true)?;
        inner.set_packet_loss_perc(5)?;
        // libopus adds FEC data only above a bit rate that grows with the bandwidth: at
        // 24 kbit/s it does from 8 kHz, and from 16 kHz only at complexity 10 (six times the
        // cost; tested below); there the cheaper complexity loses nothing but that.
        let fec_possible = rate <= 8_000 && bitrate >= 20_000;
        inner.set_complexity(if fec_possible {
            COMPLEXITY
        } else {
            RELIABLE_COMPLEXITY
        })?;
        Ok(OpusEncoder { inner, frame })
    }

    /// An encoder for a link that loses nothing (TCP: a WebSocket or RFC 4571 client): no
    /// in-band FEC (it would only spend the thin link's bits) and complexity
    /// [`RELIABLE_COMPLEXITY`], less than half the cost of [`OpusEncoder::new`].
    pub fn for_reliable_link(rate: u32, bitrate: i32) -> Result<OpusEncoder, OpusError> {
        let frame = check_rate(rate)?;
        let mut inner = opus::Encoder::new(rate, Channels::Mono, Application::Voip)?;
        inner.set_bitrate(opus::Bitrate::Bits(bitrate))?;
        inner.set_inband_fec(false)?;
        inner.set_packet_loss_perc(0)?;
        inner.set_complexity(RELIABLE_COMPLEXITY)?;
        Ok(OpusEncoder { inner, frame })
    }

    /// Samples in one 20 ms frame at the encoder's rate.
    pub fn frame_samples(&self) -> usize {
        self.frame
    }

    /// Encodes one 20 ms frame; returns the packet length written to `out` (room for
    /// [`MAX_PACKET`] is always enough).
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        if pcm.len() != self.frame {
            return Err(OpusError::FrameSize {
                got: pcm.len(),
                frame: self.frame,
            });
        }
        let limit = out.len().min(MAX_PACKET);
        Ok(self.inner.encode(pcm, &mut out[..limit])?)
    }
}

/// A mono Opus decoder at 8/12/16/24/48 kHz output (any packet decodes at any of them).
pub struct OpusDecoder {
    inner: opus::Decoder,
    frame: usize,
}

impl OpusDecoder {
    /// A decoder producing mono PCM at `rate` Hz (a stereo stream is down-mixed by libopus).
    pub fn new(rate: u32) -> Result<OpusDecoder, OpusError> {
        let frame = check_rate(rate)?;
        Ok(OpusDecoder {
            inner: opus::Decoder::new(rate, Channels::Mono)?,
            frame,
        })
    }

    /// Samples in one 20 ms frame at the decoder's rate.
    pub fn frame_samples(&self) -> usize {
        self.frame
    }

    /// Decodes one packet into `out` (room for 120 ms, six frames, covers every packet);
    /// returns the samples written. `None` is a lost packet: libopus conceals one 20 ms frame.
    pub fn decode(&mut self, packet: Option<&[u8]>, out: &mut [i16]) -> Result<usize, OpusError> {
        match packet {
            None => {
                let dst = self.frame_out(out)?;
                Ok(self.inner.decode(&[], dst, false)?)
            }
            Some([]) => Err(OpusError::Empty),
            Some(p) => {
                let needed = self.inner.get_nb_samples(p)?;
                if needed > out.len() {
                    return Err(OpusError::OutputTooSmall {
                        needed,
                        got: out.len(),
                    });
                }
                Ok(self.inner.decode(p, &mut out[..needed], false)?)
            }
        }
    }

    /// Recovers the frame lost just before `next` from `next`'s in-band FEC data (RFC 7587
    /// §3.3), or conceals it when `next` has none; returns the samples written (one frame).
    pub fn decode_fec(&mut self, next: &[u8], out: &mut [i16]) -> Result<usize, OpusError> {
        if next.is_empty() {
            return Err(OpusError::Empty);
        }
        let dst = self.frame_out(out)?;
        Ok(self.inner.decode(next, dst, true)?)
    }

    fn frame_out<'a>(&self, out: &'a mut [i16]) -> Result<&'a mut [i16], OpusError> {
        let got = out.len();
        out.get_mut(..self.frame).ok_or(OpusError::OutputTooSmall {
            needed: self.frame,
            got,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tone;

    #[test]
    fn encode_then_decode_keeps_a_tone_at_each_rate() {
        for rate in [8_000u32, 16_000, 48_000] {
            let src = tone::sine(1000.0, 10_000.0, rate, rate as usize);
            let mut enc = OpusEncoder::new(rate, 32_000).unwrap();
            let mut dec = OpusDecoder::new(rate).unwrap();
            let f = enc.frame_samples();
            let mut pkt = [0u8; MAX_PACKET];
            let mut out = vec![0i16; f];
            let mut back = Vec::new();
            for chunk in src.chunks_exact(f) {
                let n = enc.encode(chunk, &mut pkt).unwrap();
                assert_eq!(dec.decode(Some(&pkt[..n]), &mut out), Ok(f));
                back.extend_from_slice(&out);
            }
            let tail = &back[rate as usize / 4..];
            let level = tone::level_db(tone::rms(tail), 10_000.0 / 2f64.sqrt());
            let snr = tone::snr_db(tail, 1000.0, rate);
            eprintln!("opus {rate} Hz: level {level:.2} dB, SNR {snr:.1} dB");
            assert!(level.abs() < 1.0, "{rate}: level {level:.2} dB");
            // A perceptual codec: a pure tone keeps its level, not a high SNR.
            assert!(snr > 12.0, "{rate}: SNR {snr:.1} dB");
        }
    }

    /// How much of a 1500 Hz tone that starts in a lost frame the FEC decode of the next
    /// packet restores, against concealment (rms at 1500 Hz in the lost frame, both).
    fn fec_vs_plc(mut encode: impl FnMut(&[i16], &mut [u8]) -> usize, rate: u32) -> (f64, f64) {
        let n = rate as usize / 50;
        let mut pcm = tone::sine(500.0, 8000.0, rate, n * 10);
        pcm.extend(tone::sine(1500.0, 8000.0, rate, n * 10));
        let packets: Vec<Vec<u8>> = pcm
            .chunks(n)
            .map(|c| {
                let mut out = [0u8; MAX_PACKET];
                let len = encode(c, &mut out);
                out[..len].to_vec()
            })
            .collect();
        let mut got = [0.0; 2];
        for (i, fec) in [true, false].into_iter().enumerate() {
            let mut d = OpusDecoder::new(8000).unwrap();
            let mut out = [0i16; 960];
            for p in &packets[..10] {
                d.decode(Some(p), &mut out).unwrap();
            }
            let k = if fec {
                d.decode_fec(&packets[11], &mut out).unwrap()
            } else {
                d.decode(None, &mut out).unwrap()
            };
            got[i] = tone::goertzel_rms(&out[..k], 1500.0, 8000);
        }
        (got[0], got[1])
    }

    #[test]
    fn fec_data_comes_from_8_khz_at_24_kbits_and_from_16_khz_only_at_the_costliest_complexity() {
        let mut enc = OpusEncoder::new(8000, 24_000).unwrap();
        let (fec, plc) = fec_vs_plc(|c, o| enc.encode(c, o).unwrap(), 8000);
        assert!(fec > 10.0 * plc, "8 kHz: FEC {fec:.0} vs PLC {plc:.0}");
        // So `new` codes 16 kHz at the cheaper complexity: up to 5 there is no FEC anyway; only
        // 10 (about 300 µs a frame, six times complexity 1) adds it.
        for (complexity, has_fec) in [(COMPLEXITY, false), (5, false), (10, true)] {
            let mut raw = opus::Encoder::new(16000, Channels::Mono, Application::Voip).unwrap();
            raw.set_bitrate(opus::Bitrate::Bits(24_000)).unwrap();
            raw.set_inband_fec(true).unwrap();
            raw.set_packet_loss_perc(5).unwrap();
            raw.set_complexity(complexity).unwrap();
            let (fec, plc) = fec_vs_plc(|c, o| raw.encode(c, o).unwrap(), 16000);
            assert_eq!(
                fec > 10.0 * plc,
                has_fec,
                "16 kHz complexity {complexity}: FEC {fec:.0} vs PLC {plc:.0}"
            );
        }
        let mut tcp = OpusEncoder::for_reliable_link(8000, 24_000).unwrap();
        let (fec, plc) = fec_vs_plc(|c, o| tcp.encode(c, o).unwrap(), 8000);
        assert!(
            (fec - plc).abs() < 1.0,
            "no FEC toward TCP: {fec:.0} vs {plc:.0}"
        );
    }

    #[test]
    fn lost_packets_are_concealed_and_bad_input_is_an_error() {
        let mut enc = OpusEncoder::new(48_000, 24_000).unwrap();
        let mut dec = OpusDecoder::new(8_000).unwrap();
        let mut pkt = [0u8; MAX_PACKET];
        let mut out = [0i16; 960];
        let src = tone::sine(1000.0, 10_000.0, 48_000, 960 * 2);
        let n = enc.encode(&src[..960], &mut pkt).unwrap();
        assert_eq!(
            dec.decode(Some(&pkt[..n]), &mut out),
            Ok(160),
            "48 kHz stream decodes at 8 kHz"
        );
        assert_eq!(dec.decode(None, &mut out), Ok(160));
        let n = enc.encode(&src[960..], &mut pkt).unwrap();
        assert_eq!(dec.decode_fec(&pkt[..n], &mut out), Ok(160));
        assert_eq!(dec.decode(Some(&[]), &mut out), Err(OpusError::Empty));
        assert_eq!(
            dec.decode(None, &mut out[..100]),
            Err(OpusError::OutputTooSmall {
                needed: 160,
                got: 100
            })
        );
        assert!(matches!(
            enc.encode(&src[..100], &mut pkt),
            Err(OpusError::FrameSize { .. })
        ));
        assert_eq!(
            OpusDecoder::new(44_100).err(),
            Some(OpusError::UnsupportedRate(44_100))
        );
        // A code-3 packet claiming 48 frames (too long) is invalid, not a crash.
        assert!(dec.decode(Some(&[0x03, 0x30]), &mut out).is_err());
        let mut x = 0x9E37_79B9u32;
        for len in 1..200 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let mut big = [0i16; 960 * 6];
            let _ = dec.decode(Some(&junk), &mut big);
        }
    }

    #[test]
    fn rtp_ticks_are_48_khz() {
        assert_eq!(rtp_ticks(160, 8_000), 960);
        assert_eq!(rtp_ticks(960, 48_000), 960);
        assert_eq!(rtp_ticks(320, 16_000), 960);
    }
}
