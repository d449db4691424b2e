//! Speex narrowband (8 kHz) and wideband (16 kHz), 20 ms frames, over the system's libspeex.
//!
//! - **FLV/RTMP** SoundFormat 11 is Flash Player's microphone codec: wideband, 16 kHz, one or
//!   more frames per audio tag (the FLV rate bits are ignored).
//! - **RTP** (RFC 5574): payload name `speex`, clock rate = sample rate (`speex/8000`,
//!   `speex/16000`); a payload is one or more frames concatenated, padded to an octet with a
//!   `0` bit then `1` bits (§3.3) — the decoder finds the frame count from the bit stream.
//!
//! The coders are [`SpeexEncoder`] / [`SpeexDecoder`] from `skybridge-codecs-sys`, the
//! workspace's only crate with `unsafe` (why: see its docs). Nothing is allocated per frame.
//! libspeex prints a `notification: …` line to stderr for each corrupt frame it meets; a
//! hostile peer can therefore write to our stderr (bounded by the packet rate).

pub use skybridge_codecs_sys::{
    SpeexDecoder, SpeexEncoder, SpeexError, SpeexMode, MAX_FRAMES_PER_PACKET, MAX_PACKET_BYTES,
};

/// RTP payload name (RFC 5574 §6).
pub const RTP_ENCODING_NAME: &str = "speex";

/// Encoder quality used for calls: 8 (15 kbit/s narrowband, 23.8 kbit/s wideband).
pub const DEFAULT_QUALITY: u8 = 8;

/// The mode of an RTP `speex` stream with clock rate `clock_rate` (RFC 5574 §3.1), if we
/// support it (ultra-wideband, 32 kHz, is not).
pub const fn mode_for_clock_rate(clock_rate: u32) -> Option<SpeexMode> {
    match clock_rate {
        8_000 => Some(SpeexMode::Narrowband),
        16_000 => Some(SpeexMode::Wideband),
        _ => None,
    }
}

/// The mode of FLV SoundFormat 11 audio: always wideband, 16 kHz.
pub const FLV_MODE: SpeexMode = SpeexMode::Wideband;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tone;

    #[test]
    fn encode_then_decode_keeps_a_tone_in_both_modes() {
        for mode in [SpeexMode::Narrowband, SpeexMode::Wideband] {
            let rate = mode.sample_rate();
            let f = mode.frame_samples();
            let src = tone::sine(1000.0, 10_000.0, rate, rate as usize);
            let mut enc = SpeexEncoder::new(mode, DEFAULT_QUALITY).unwrap();
            let mut dec = SpeexDecoder::new(mode).unwrap();
            let mut pkt = [0u8; 200];
            let mut out = vec![0i16; f];
            let mut back = Vec::new();
            for chunk in src.chunks_exact(f) {
                let n = enc.encode(chunk, &mut pkt).unwrap();
                assert_eq!(dec.decode(Some(&pkt[..n]), &mut out), Ok(f));
                back.extend_from_slice(&out);
            }
            let tail = &back[rate as usize / 4..];
            let level = tone::level_db(tone::rms(tail), 10_000.0 / 2f64.sqrt());
            let hz = tone::zero_crossing_hz(tail, rate).unwrap();
            let snr = tone::snr_db(tail, 1000.0, rate);
            assert!(level.abs() < 2.0, "{mode:?}: level {level:.2} dB");
            assert!((hz - 1000.0).abs() < 5.0, "{mode:?}: {hz:.1} Hz");
            assert!(snr > 10.0, "{mode:?}: SNR {snr:.1} dB");
        }
        assert_eq!(mode_for_clock_rate(16_000), Some(SpeexMode::Wideband));
        assert_eq!(mode_for_clock_rate(32_000), None);
    }
}
