//! FLV audio tag header (Adobe FLV spec v10, E.4.2.1 `AUDIODATA`).
//!
//! ```text
//! AUDIODATA   = SoundFormat(4) SoundRate(2) SoundSize(1) SoundType(1) [AACPacketType(8)] data
//! AACPacketType present only when SoundFormat == 10 (AAC): 0 = sequence header, 1 = raw
//! ```

/// Errors from [`AudioTagHeader::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    /// The tag body is empty (or AAC without its packet-type byte).
    #[error("FLV audio tag too short")]
    TooShort,
    /// AACPacketType other than 0 (sequence header) or 1 (raw).
    #[error("FLV AAC packet type {0} is not 0 or 1")]
    BadAacPacketType(u8),
}

/// SoundFormat 10: AAC, the only format with an extra header byte.
pub const SOUND_FORMAT_AAC: u8 = 10;
/// SoundFormat 7: G.711 A-law.
pub const SOUND_FORMAT_ALAW: u8 = 7;
/// SoundFormat 8: G.711 µ-law.
pub const SOUND_FORMAT_ULAW: u8 = 8;
/// SoundFormat 11: Speex.
pub const SOUND_FORMAT_SPEEX: u8 = 11;

/// Parsed first byte(s) of an FLV/RTMP audio message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTagHeader {
    /// SoundFormat, 0..=15 (see [`AudioTagHeader::format_name`]).
    pub sound_format: u8,
    /// SoundRate, 0..=3: 5.5 / 11 / 22 / 44 kHz (ignored by formats with a fixed rate).
    pub sound_rate: u8,
    /// SoundSize: true for 16-bit samples, false for 8-bit.
    pub sound_size_16bit: bool,
    /// SoundType: true for stereo.
    pub stereo: bool,
    /// AACPacketType, `Some` exactly when `sound_format == 10`.
    pub aac_packet_type: Option<u8>,
}

impl AudioTagHeader {
    /// Parses the header at the start of an audio tag body; returns it and its length in bytes
    /// (1, or 2 for AAC). The audio data starts at that offset.
    pub fn parse(buf: &[u8]) -> Result<(AudioTagHeader, usize), FlvError> {
        let (&b0, rest) = buf.split_first().ok_or(FlvError::TooShort)?;
        let sound_format = b0 >> 4;
        let (aac_packet_type, len) = if sound_format == SOUND_FORMAT_AAC {
            let &t = rest.first().ok_or(FlvError::TooShort)?;
            if t > 1 {
                return Err(FlvError::BadAacPacketType(t));
            }
            (Some(t), 2)
        } else {
            (None, 1)
        };
        Ok((
            AudioTagHeader {
                sound_format,
                sound_rate: (b0 >> 2) & 0x03,
                sound_size_16bit: b0 & 0x02 != 0,
                stereo: b0 & 0x01 != 0,
                aac_packet_type,
            },
            len,
        ))
    }

    /// The first header byte (fields masked to their widths). The AAC packet type, if any, is
    /// the second byte and is not included.
    pub fn to_byte(&self) -> u8 {
        ((self.sound_format & 0x0F) << 4)
            | ((self.sound_rate & 0x03) << 2)
            | (u8::from(self.sound_size_16bit) << 1)
            | u8::from(self.stereo)
    }

    /// Nominal sample rate in Hz. Formats with a fixed rate ignore SoundRate: Nellymoser 16 kHz
    /// (4) and 8 kHz (5), G.711 A-law/µ-law (7, 8) 8 kHz, Speex (11) 16 kHz, MP3 8 kHz (14).
    /// Everything else (including generic Nellymoser, 6) uses SoundRate: 5512 / 11025 / 22050 /
    /// 44100. For AAC the real rate is in the AudioSpecificConfig, not here.
    pub fn sample_rate_hz(&self) -> u32 {
        match self.sound_format {
            4 | 11 => 16_000,
            5 | 7 | 8 | 14 => 8_000,
            _ => match self.sound_rate & 0x03 {
                0 => 5_512,
                1 => 11_025,
                2 => 22_050,
                _ => 44_100,
            },
        }
    }

    /// Short lowercase name of the SoundFormat, for logs and error messages.
    pub fn format_name(&self) -> &'static str {
        format_name(self.sound_format)
    }
}

/// Short lowercase name of an FLV SoundFormat value (only the low 4 bits are used).
pub fn format_name(sound_format: u8) -> &'static str {
    match sound_format & 0x0F {
        0 => "pcm_platform_endian",
        1 => "adpcm",
        2 => "mp3",
        3 => "pcm_le",
        4 => "nellymoser_16k",
        5 => "nellymoser_8k",
        6 => "nellymoser",
        7 => "pcm_alaw",
        8 => "pcm_mulaw",
        9 => "ex_header",
        10 => "aac",
        11 => "speex",
        14 => "mp3_8k",
        15 => "device_specific",
        _ => "reserved",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn parses_pcmu_mono_header_of_one_byte() {
        // 8 (µ-law) << 4 | rate 0 | 16-bit | mono = 0x82
        let (h, n) = AudioTagHeader::parse(&[0x82, 0xFF, 0xFF]).unwrap();
        assert_eq!(n, 1);
        assert_eq!(h.sound_format, SOUND_FORMAT_ULAW);
        assert!(h.sound_size_16bit);
        assert!(!h.stereo);
        assert_eq!(h.aac_packet_type, None);
        assert_eq!(h.sample_rate_hz(), 8_000);
        assert_eq!(h.format_name(), "pcm_mulaw");
        assert_eq!(h.to_byte(), 0x82);
    }

    #[test]
    fn aac_header_is_two_bytes_with_packet_type() {
        let (h, n) = AudioTagHeader::parse(&[0xAF, 0x00, 0x12, 0x10]).unwrap();
        assert_eq!(n, 2);
        assert_eq!(h.aac_packet_type, Some(0));
        assert!(h.stereo);
        assert_eq!(h.sample_rate_hz(), 44_100);
        assert_eq!(h.format_name(), "aac");
        assert_eq!(h.to_byte(), 0xAF);
        assert_eq!(
            AudioTagHeader::parse(&[0xAF, 0x01])
                .unwrap()
                .0
                .aac_packet_type,
            Some(1)
        );
    }

    #[test]
    fn truncated_or_bad_aac_is_rejected() {
        assert_eq!(AudioTagHeader::parse(&[]), Err(FlvError::TooShort));
        assert_eq!(AudioTagHeader::parse(&[0xAF]), Err(FlvError::TooShort));
        assert_eq!(
            AudioTagHeader::parse(&[0xAF, 2]),
            Err(FlvError::BadAacPacketType(2))
        );
    }

    #[test]
    fn fixed_rate_formats_ignore_sound_rate() {
        for (fmt, hz) in [
            (4, 16_000),
            (5, 8_000),
            (7, 8_000),
            (8, 8_000),
            (11, 16_000),
        ] {
            let (h, _) = AudioTagHeader::parse(&[(fmt << 4) | 0x0C]).unwrap();
            assert_eq!(h.sample_rate_hz(), hz, "format {fmt}");
        }
        let rates: Vec<u32> = (0..4)
            .map(|r| AudioTagHeader::parse(&[r << 2]).unwrap().0.sample_rate_hz())
            .collect();
        assert_eq!(rates, [5_512, 11_025, 22_050, 44_100]);
    }

    #[test]
    fn every_first_byte_round_trips_through_to_byte() {
        for b in 0..=255u8 {
            let buf = [b, 1];
            let (h, _) = AudioTagHeader::parse(&buf).unwrap();
            assert_eq!(h.to_byte(), b);
            assert!(!h.format_name().is_empty());
        }
        assert_eq!(format_name(12), "reserved");
        assert_eq!(format_name(9), "ex_header");
    }
}
