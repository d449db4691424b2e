//! Speex narrowband (8 kHz) and wideband (16 kHz), 20 ms frames, over the system's libspeex.
//!
//! - **FLV/RTMP** SoundFormat 11 is Flash Player's microphone codec: wideband, 16 kHz, one or
//!   more frames per audio tag (the FLV rate bits are ignored).
//! - **RTP** (RFC 5574): payload name `speex`, clock rate = sample rate (`speex/8000`,
//!   `speex/16000`); a payload is one or more frames concatenated, padded to an octet with a
//!   `0` bit then `1` bits (§3.3) — the decoder finds the frame count from the bit stream.
//!
//! [`encoder_for_source`] picks the encoder for a stream from the rate of the audio it carries
//! (a wideband stream of 8 kHz audio is coded as narrowband frames, which every wideband
//! decoder plays: about 60 % of the wideband encoder's cost, and better audio).
//!
//! The coders are [`SpeexEncoder`] / [`SpeexDecoder`] from `skybridge-codecs-sys`, the
//! workspace's only crate with `unsafe` (why: see its docs). Nothing is allocated per frame.
//! libspeex prints a `notification: …` line to stderr for each corrupt frame it meets; a
//! hostile peer can therefore write to our stderr (bounded by the packet rate).

pub use skybridge_codecs_sys::{
    SpeexDecoder, SpeexEncoder, SpeexEncoderSettings, SpeexError, SpeexMode, MAX_FRAMES_PER_PACKET,
    MAX_HIGH_BAND_MODE, MAX_PACKET_BYTES,
};

/// RTP payload name (RFC 5574 §6).
pub const RTP_ENCODING_NAME: &str = "speex";

/// Encoder quality used for calls: 8 (15 kbit/s narrowband, 27.8 kbit/s wideband).
pub const DEFAULT_QUALITY: u8 = 8;

/// Settings for a wideband stream coded from 8 kHz audio by
/// [`SpeexEncoder::narrowband_for_wideband`]: quality 10 (narrowband submode 7, 24.6 kbit/s),
/// complexity 3. Measured against today's 8 → 16 kHz resampler + wideband quality 8: about
/// 60 % of the cost, a higher PESQ-WB on speech (3.87 against 3.60) and cleaner tones (1 kHz
/// 43 dB SNR against 39). Complexity stays 3: at 2 and below a pure tone (ringback, DTMF) loses
/// 20+ dB of SNR and ffmpeg's float decoder turns it to noise.
pub const FROM_NARROWBAND: SpeexEncoderSettings = SpeexEncoderSettings {
    quality: 10,
    complexity: 3,
    high_band_mode: None,
};

/// Settings for a wideband stream coded from 16 kHz audio: quality 9 (narrowband submode 7 for
/// the low band) with high-band submode 1 (envelope and gain only, no high-band codebook
/// search), complexity 3, 26.4 kbit/s. About 73 % of the cost of quality 8 with its own
/// high band (submode 3), at a PESQ-WB 0.06 lower on speech (3.67 against 3.73) and tones as
/// clean.
pub const FROM_WIDEBAND: SpeexEncoderSettings = SpeexEncoderSettings {
    quality: 9,
    complexity: 3,
    high_band_mode: Some(1),
};

/// The PCM rate to feed the encoder of a `mode` Speex stream whose audio comes from a
/// `source_rate` Hz leg: 8 kHz for a wideband stream of narrowband audio (see
/// [`encoder_for_source`]), else the mode's own rate.
pub const fn encoder_pcm_rate(mode: SpeexMode, source_rate: u32) -> u32 {
    match mode {
        SpeexMode::Wideband if source_rate <= 8_000 => 8_000,
        _ => mode.sample_rate(),
    }
}

/// The cheapest encoder that keeps the audio of a `source_rate` Hz leg, for a stream any
/// `mode` decoder plays: a wideband stream of narrowband audio (source ≤ 8 kHz) is coded by
/// [`SpeexEncoder::narrowband_for_wideband`] with [`FROM_NARROWBAND`] and takes 160-sample
/// frames at 8 kHz; a wideband stream of wideband audio uses [`FROM_WIDEBAND`]; narrowband
/// streams use [`DEFAULT_QUALITY`]. Feed it [`SpeexEncoder::mode`]`.frame_samples()` samples
/// per 20 ms frame at [`encoder_pcm_rate`]; stamp the output in `mode`'s clock.
pub fn encoder_for_source(mode: SpeexMode, source_rate: u32) -> Result<SpeexEncoder, SpeexError> {
    match mode {
        SpeexMode::Wideband if source_rate <= 8_000 => {
            SpeexEncoder::narrowband_for_wideband(FROM_NARROWBAND)
        }
        SpeexMode::Wideband => SpeexEncoder::with_settings(mode, FROM_WIDEBAND),
        SpeexMode::Narrowband => SpeexEncoder::new(mode, DEFAULT_QUALITY),
    }
}

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

    /// `src` (at `enc`'s PCM rate) through `enc` and a wideband decoder, `frames` frames per
    /// packet; the 16 kHz output.
    fn through_wideband_decoder(enc: &mut SpeexEncoder, src: &[i16], frames: usize) -> Vec<i16> {
        let f = enc.mode().frame_samples() * frames;
        let mut dec = SpeexDecoder::new(SpeexMode::Wideband).unwrap();
        let mut pkt = [0u8; 600];
        let mut out = vec![0i16; 320 * frames];
        let mut back = Vec::new();
        for chunk in src.chunks_exact(f) {
            let n = enc.encode(chunk, &mut pkt).unwrap();
            assert_eq!(dec.decode(Some(&pkt[..n]), &mut out), Ok(320 * frames));
            back.extend_from_slice(&out);
        }
        back
    }

    /// Asserts the tone at `hz` in 16 kHz `x` (after a quarter second of start-up): frequency
    /// within 0.5 %, level within 1 dB of an amplitude of 10 000, SNR above `min_snr`.
    fn assert_wideband_tone(what: &str, x: &[i16], hz: f64, min_snr: f64) {
        let tail = &x[4000..];
        let level = tone::level_db(tone::rms(tail), 10_000.0 / 2f64.sqrt());
        let got = tone::zero_crossing_hz(tail, 16_000).unwrap();
        let snr = tone::snr_db(tail, hz, 16_000);
        assert!(
            (got - hz).abs() < hz * 0.005,
            "{what}: {got:.1} Hz for {hz} Hz"
        );
        assert!(level.abs() < 1.0, "{what}: level {level:.2} dB");
        assert!(snr > min_snr, "{what}: SNR {snr:.1} dB at {hz} Hz");
    }

    #[test]
    fn narrowband_audio_for_a_wideband_decoder_keeps_1_and_3_4_khz_tones() {
        assert_eq!(encoder_pcm_rate(SpeexMode::Wideband, 8_000), 8_000);
        // Measured: 43 dB at 1 kHz, 33 dB at 3.4 kHz (today's resampler + wideband: 39, 27).
        for (hz, floor) in [(1000.0, 38.0), (3400.0, 28.0)] {
            for frames in [1, 3] {
                let mut enc = encoder_for_source(SpeexMode::Wideband, 8_000).unwrap();
                assert_eq!(enc.mode(), SpeexMode::Narrowband);
                assert_eq!(enc.stream_mode(), SpeexMode::Wideband);
                let src = tone::sine(hz, 10_000.0, 8_000, 24_000);
                let out = through_wideband_decoder(&mut enc, &src, frames);
                assert_eq!(out.len(), 48_000, "twice the samples, at 16 kHz");
                assert_wideband_tone(&format!("{frames} frames/packet"), &out, hz, floor);
            }
        }
    }

    #[test]
    fn wideband_audio_with_the_cheap_high_band_keeps_1_and_3_4_khz_tones() {
        assert_eq!(encoder_pcm_rate(SpeexMode::Wideband, 16_000), 16_000);
        assert_eq!(encoder_pcm_rate(SpeexMode::Wideband, 48_000), 16_000);
        assert_eq!(encoder_pcm_rate(SpeexMode::Narrowband, 16_000), 8_000);
        // Measured: 37 dB at 1 kHz, 32 dB at 3.4 kHz.
        for (hz, floor) in [(1000.0, 33.0), (3400.0, 28.0)] {
            let mut enc = encoder_for_source(SpeexMode::Wideband, 16_000).unwrap();
            assert_eq!(enc.mode(), SpeexMode::Wideband);
            assert_eq!(enc.complexity(), 3);
            let src = tone::sine(hz, 10_000.0, 16_000, 32_000);
            let out = through_wideband_decoder(&mut enc, &src, 1);
            assert_wideband_tone("wideband", &out, hz, floor);
        }
        let nb = encoder_for_source(SpeexMode::Narrowband, 8_000).unwrap();
        assert_eq!(nb.stream_mode(), SpeexMode::Narrowband);
    }
}
