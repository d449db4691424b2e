//! The media frame that moves between legs, and the codecs the call core knows.

use bytes::Bytes;

/// An audio codec both legs can name (RTP payload type, FLV sound format).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law: RTP PT 0, FLV sound format 8.
    Pcmu,
    /// G.711 A-law: RTP PT 8, FLV sound format 7.
    Pcma,
}

impl Codec {
    /// Static RTP payload type (RFC 3551).
    pub fn rtp_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }
    /// Codec from a static RTP payload type.
    pub fn from_rtp_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }
    /// FLV audio tag sound format.
    pub fn flv_sound_format(self) -> u8 {
        match self {
            Codec::Pcmu => 8,
            Codec::Pcma => 7,
        }
    }
    /// Codec from an FLV audio tag sound format.
    pub fn from_flv_sound_format(format: u8) -> Option<Codec> {
        match format {
            8 => Some(Codec::Pcmu),
            7 => Some(Codec::Pcma),
            _ => None,
        }
    }
    /// SDP encoding name (rtpmap).
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
    /// RTP clock rate in Hz.
    pub fn clock_rate(self) -> u32 {
        8000
    }
    /// Bytes of payload per millisecond of audio.
    pub fn bytes_per_ms(self) -> usize {
        8
    }
}

/// One frame of audio on its way between legs. `payload` is a slice of the buffer it arrived in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaFrame {
    pub codec: Codec,
    /// Timestamp in the codec's clock.
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
}
