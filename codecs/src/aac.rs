//! AAC-LC decoding of FLV/RTMP audio (SoundFormat 10, what ffmpeg and OBS publish): decode
//! only, to i16 PCM at the stream's own rate and channel count.
//!
//! An FLV AAC stream is an `AACPacketType` 0 tag carrying the AudioSpecificConfig (the
//! "sequence header", ISO/IEC 14496-3 §1.6.2.1), then type 1 tags each carrying one raw
//! access unit (1024 samples per channel). Build an [`AacDecoder`] from the first, feed it the
//! others; a stereo result goes through [`crate::l16::downmix_stereo`].
//!
//! Decoding is `symphonia-codec-aac` (pure Rust, no `unsafe` of its own in the decode path).
//! It receives untrusted bytes: the fuzz targets `aac_config` and `aac_decode` feed it
//! arbitrary configs and access units. Its output buffer lives in the decoder; we convert
//! from it into the caller's buffer.

use symphonia_codec_aac::AacDecoder as SymphoniaAac;
use symphonia_core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia_core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia_core::packet::PacketRef;
use symphonia_core::units::{Duration, Timestamp};

/// Longest AudioSpecificConfig accepted, in bytes (LC needs 2; ffmpeg adds 3 of SBR
/// signalling).
pub const MAX_CONFIG_LEN: usize = 64;

/// Longest access unit accepted, in bytes: 6144 bits per channel (ISO/IEC 14496-3 §4.5.3.2)
/// for two channels, with room to spare.
pub const MAX_ACCESS_UNIT: usize = 4096;

/// Samples per channel in one AAC-LC access unit.
pub const SAMPLES_PER_FRAME: usize = 1024;

/// Audio object type of AAC-LC.
pub const OBJECT_TYPE_LC: u8 = 2;

/// Sampling rates by `samplingFrequencyIndex` (ISO/IEC 14496-3 Table 1.18); 13 and 14 are
/// reserved, 15 means an explicit 24-bit rate follows.
const SAMPLING_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Errors from the AAC config parser and decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AacError {
    /// The config ends before its fields do.
    #[error("AudioSpecificConfig too short")]
    TooShort,
    /// The config or access unit is longer than its limit.
    #[error("{0} bytes is over the limit")]
    TooLong(usize),
    /// A reserved sampling frequency index (13, 14), or an explicit rate of 0.
    #[error("bad sampling frequency (index {0})")]
    BadSampleRate(u8),
    /// Not AAC-LC (HE-AAC, Main, LD, … are not supported).
    #[error("unsupported audio object type {0}")]
    UnsupportedObjectType(u8),
    /// A channel configuration other than mono or stereo.
    #[error("unsupported channel configuration {0}")]
    UnsupportedChannels(u8),
    /// 960-sample frames or a core coder dependency.
    #[error("unsupported frame length or core coder")]
    UnsupportedFrame,
    /// An empty access unit.
    #[error("empty AAC access unit")]
    Empty,
    /// The decoder rejected the access unit.
    #[error("malformed AAC access unit")]
    Malformed,
    /// The output buffer is shorter than the result.
    #[error("output buffer holds {got} items, {needed} needed")]
    OutputTooSmall {
        /// Items the call produces.
        needed: usize,
        /// Items the output buffer holds.
        got: usize,
    },
}

/// The fields of an AudioSpecificConfig that decoding needs.
///
/// ```text
/// AudioSpecificConfig = audioObjectType(5) [=31: audioObjectTypeExt(6)]
///                       samplingFrequencyIndex(4) [=15: samplingFrequency(24)]
///                       channelConfiguration(4)
///                       GASpecificConfig = frameLengthFlag(1) dependsOnCoreCoder(1)
///                                          [coreCoderDelay(14)] extensionFlag(1)
///                       *extensions (ignored)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// audioObjectType (2 = LC).
    pub object_type: u8,
    /// samplingFrequencyIndex (15 = explicit).
    pub sampling_frequency_index: u8,
    /// Sampling rate in Hz.
    pub sample_rate: u32,
    /// channelConfiguration (1 = mono, 2 = stereo; 0 = in a program config element).
    pub channel_configuration: u8,
    /// frameLengthFlag: 960-sample frames instead of 1024.
    pub short_frames: bool,
    /// dependsOnCoreCoder.
    pub depends_on_core_coder: bool,
}

/// MSB-first bit reader over a byte slice.
struct Bits<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Result<u32, AacError> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.buf.get(self.pos / 8).ok_or(AacError::TooShort)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Ok(v)
    }
}

impl AudioSpecificConfig {
    /// Parses an AudioSpecificConfig (at most [`MAX_CONFIG_LEN`] bytes; trailing extension
    /// bits are ignored). Any object type parses; only the GA fields of GA types are read.
    pub fn parse(buf: &[u8]) -> Result<AudioSpecificConfig, AacError> {
        if buf.len() > MAX_CONFIG_LEN {
            return Err(AacError::TooLong(buf.len()));
        }
        let mut bits = Bits { buf, pos: 0 };
        let mut object_type = bits.read(5)? as u8;
        if object_type == 31 {
            object_type = 32 + bits.read(6)? as u8;
        }
        let sampling_frequency_index = bits.read(4)? as u8;
        let sample_rate = match sampling_frequency_index {
            15 => bits.read(24)?,
            i => *SAMPLING_RATES
                .get(usize::from(i))
                .ok_or(AacError::BadSampleRate(i))?,
        };
        if sample_rate == 0 {
            return Err(AacError::BadSampleRate(sampling_frequency_index));
        }
        let channel_configuration = bits.read(4)? as u8;
        // GASpecificConfig for the general-audio object types (Table 1.17).
        let (short_frames, depends_on_core_coder) = match object_type {
            1..=4 | 6 | 7 | 17 | 19..=23 => {
                let short = bits.read(1)? == 1;
                let core = bits.read(1)? == 1;
                if core {
                    bits.read(14)?;
                }
                bits.read(1)?; // extensionFlag
                (short, core)
            }
            _ => (false, false),
        };
        Ok(AudioSpecificConfig {
            object_type,
            sampling_frequency_index,
            sample_rate,
            channel_configuration,
            short_frames,
            depends_on_core_coder,
        })
    }

    /// Channels of the decoded audio (1 or 2 for what [`AacDecoder`] accepts).
    pub fn channels(&self) -> usize {
        usize::from(self.channel_configuration)
    }
}

/// An AAC-LC decoder for one FLV stream (mono or stereo, 1024-sample frames).
///
/// Allocation: `symphonia-codec-aac` allocates its per-channel state when it first sees each
/// channel element and then decodes into buffers it keeps; we add none per frame.
pub struct AacDecoder {
    inner: SymphoniaAac,
    config: AudioSpecificConfig,
}

impl AacDecoder {
    /// A decoder for the stream whose sequence header (AudioSpecificConfig) is `config`.
    pub fn new(config: &[u8]) -> Result<AacDecoder, AacError> {
        let asc = AudioSpecificConfig::parse(config)?;
        if asc.object_type != OBJECT_TYPE_LC {
            return Err(AacError::UnsupportedObjectType(asc.object_type));
        }
        if !(1..=2).contains(&asc.channel_configuration) {
            return Err(AacError::UnsupportedChannels(asc.channel_configuration));
        }
        if asc.short_frames || asc.depends_on_core_coder {
            return Err(AacError::UnsupportedFrame);
        }
        let mut params = AudioCodecParameters::new();
        params
            .for_codec(CODEC_ID_AAC)
            .with_extra_data(config.into());
        let inner = SymphoniaAac::try_new(&params, &AudioDecoderOptions::default())
            .map_err(|_| AacError::UnsupportedObjectType(asc.object_type))?;
        Ok(AacDecoder { inner, config: asc })
    }

    /// The stream's configuration.
    pub fn config(&self) -> AudioSpecificConfig {
        self.config
    }

    /// Decodes one raw access unit into `out` as interleaved i16 (1024 samples per channel;
    /// `out` needs 2048 for stereo); returns the samples written.
    pub fn decode(&mut self, access_unit: &[u8], out: &mut [i16]) -> Result<usize, AacError> {
        if access_unit.is_empty() {
            return Err(AacError::Empty);
        }
        if access_unit.len() > MAX_ACCESS_UNIT {
            return Err(AacError::TooLong(access_unit.len()));
        }
        let needed = SAMPLES_PER_FRAME * self.config.channels();
        if out.len() < needed {
            return Err(AacError::OutputTooSmall {
                needed,
                got: out.len(),
            });
        }
        let packet = PacketRef::new(
            0,
            Timestamp::ZERO,
            Duration::from(SAMPLES_PER_FRAME as u64),
            access_unit,
        );
        let decoded = self
            .inner
            .decode_ref(&packet)
            .map_err(|_| AacError::Malformed)?;
        let n = decoded.frames() * decoded.num_planes();
        let dst = out.get_mut(..n).ok_or(AacError::OutputTooSmall {
            needed: n,
            got: needed,
        })?;
        decoded.copy_to_slice_interleaved::<i16, _>(dst);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn config_fields_parse_and_limits_hold() {
        // LC, 44.1 kHz (index 4), mono: 00010 0100 0001 000 → 0x12 0x08.
        let asc = AudioSpecificConfig::parse(&[0x12, 0x08]).unwrap();
        assert_eq!(asc.object_type, 2);
        assert_eq!(asc.sample_rate, 44_100);
        assert_eq!(asc.channels(), 1);
        // LC, 48 kHz, stereo, with ffmpeg's SBR-absent signalling after it.
        let asc = AudioSpecificConfig::parse(&[0x11, 0x90, 0x56, 0xE5, 0x00]).unwrap();
        assert_eq!((asc.sample_rate, asc.channels()), (48_000, 2));
        // Explicit rate (index 15) of 16000.
        let asc = AudioSpecificConfig::parse(&[0x17, 0x80, 0x1F, 0x40, 0x08]).unwrap();
        assert_eq!(asc.sample_rate, 16_000);
        // Escaped object type 31 → 32 + 6 bits.
        assert_eq!(
            AudioSpecificConfig::parse(&[0xF8, 0x08, 0x20])
                .unwrap()
                .object_type,
            32
        );
        assert_eq!(AudioSpecificConfig::parse(&[0x12]), Err(AacError::TooShort));
        assert_eq!(AudioSpecificConfig::parse(&[]), Err(AacError::TooShort));
        assert_eq!(
            AudioSpecificConfig::parse(&[0x16, 0x88]),
            Err(AacError::BadSampleRate(13))
        );
        assert_eq!(
            AudioSpecificConfig::parse(&[0; 65]),
            Err(AacError::TooLong(65))
        );
    }

    #[test]
    fn decoder_takes_only_mono_or_stereo_lc() {
        assert!(AacDecoder::new(&[0x12, 0x08]).is_ok());
        // HE-AAC (object type 5).
        assert_eq!(
            AacDecoder::new(&[0x2A, 0x08]).err(),
            Some(AacError::UnsupportedObjectType(5))
        );
        // LC, 44.1 kHz, 6 channels.
        assert_eq!(
            AacDecoder::new(&[0x12, 0x30]).err(),
            Some(AacError::UnsupportedChannels(6))
        );
        // 960-sample frames.
        assert_eq!(
            AacDecoder::new(&[0x12, 0x0C]).err(),
            Some(AacError::UnsupportedFrame)
        );
        let mut dec = AacDecoder::new(&[0x12, 0x10]).unwrap();
        let mut out = [0i16; 2048];
        assert_eq!(dec.decode(&[], &mut out), Err(AacError::Empty));
        assert_eq!(
            dec.decode(&[0; 10], &mut out[..1024]),
            Err(AacError::OutputTooSmall {
                needed: 2048,
                got: 1024
            })
        );
        assert_eq!(
            dec.decode(&[0; 4097], &mut out),
            Err(AacError::TooLong(4097))
        );
    }
}
