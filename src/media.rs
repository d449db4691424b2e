//! The media frame that moves between legs, the codecs the relay can name on either leg, and
//! what a client leg can receive.

use bytes::Bytes;
use skybridge_codecs::aac::{self, AacError, AudioSpecificConfig};

/// An audio codec one of the legs can name: on the SIP leg by SDP `rtpmap` (RFC 3551, 7587,
/// 5574), on an RTMP leg by FLV sound format (Adobe FLV spec E.4.2.1).
///
/// | codec | RTP (`rtpmap`) | FLV format | audio rate | timestamp clock |
/// |---|---|---|---|---|
/// | `Pcmu` | PT 0 `PCMU/8000` | 8 | 8 kHz | 8000 |
/// | `Pcma` | PT 8 `PCMA/8000` | 7 | 8 kHz | 8000 |
/// | `L16` | `L16/rate` (big-endian), PT 11 at 44.1 kHz | — | rate | rate |
/// | `PcmLe` | — | 0, 3 (little-endian) | rate | rate |
/// | `G722` | PT 9 `G722/8000` (RFC 3551 §4.5.2 quirk) | — | 16 kHz | **8000** |
/// | `Nellymoser` | — | 4 (16 kHz), 5 (8 kHz), 6 (any) | rate | rate |
/// | `Speex` | `speex/8000`, `speex/16000` | 11 | rate | rate |
/// | `Opus` | `opus/48000/2` (RFC 7587) | — | 48 kHz | 48000 |
/// | `Aac` | — | 10 | rate | rate |
///
/// AAC is decoded only (it arrives from RTMP publishers; no leg is ever sent AAC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// Linear 16-bit PCM, big-endian, mono, at `rate` Hz (RTP L16).
    L16 { rate: u32 },
    /// Linear 16-bit PCM, little-endian, at `rate` Hz (FLV sound formats 0 and 3).
    PcmLe { rate: u32, stereo: bool },
    /// G.722 (16 kHz audio, 8000 Hz RTP clock).
    G722,
    /// Nellymoser Asao at `rate` Hz (FLV only).
    Nellymoser { rate: u32 },
    /// Speex at 8000 (narrowband) or 16000 Hz (wideband; FLV format 11).
    Speex { rate: u32 },
    /// Opus (48 kHz clock; coded at the rate the transcoder picks, see `transcode`).
    Opus,
    /// AAC-LC (FLV format 10), at the rate and channel count its AudioSpecificConfig names
    /// ([`Codec::from_aac_config`]). Decoded only.
    Aac { rate: u32, stereo: bool },
}

/// Dynamic RTP payload types we offer for codecs without a static one (RFC 3551 §6).
const DYNAMIC_PT_BASE: u8 = 96;

impl Codec {
    /// Short lowercase name for logs, metric labels and the config (`rtp.codecs`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "pcmu",
            Codec::Pcma => "pcma",
            Codec::L16 { .. } => "l16",
            Codec::PcmLe { .. } => "pcm_s16le",
            Codec::G722 => "g722",
            Codec::Nellymoser { .. } => "nellymoser",
            Codec::Speex { .. } => "speex",
            Codec::Opus => "opus",
            Codec::Aac { .. } => "aac",
        }
    }

    /// A codec from its config name: `pcmu`, `pcma`, `g722`, `l16` (8 kHz) or `l16/RATE`,
    /// `speex` (8 kHz) or `speex/16000`, `opus`. Case-insensitive.
    pub fn from_config_name(name: &str) -> Option<Codec> {
        let lower = name.to_ascii_lowercase();
        let (base, rate) = match lower.split_once('/') {
            Some((b, r)) => (b, Some(r.parse::<u32>().ok()?)),
            None => (lower.as_str(), None),
        };
        match (base, rate) {
            ("pcmu", None) => Some(Codec::Pcmu),
            ("pcma", None) => Some(Codec::Pcma),
            ("g722", None) => Some(Codec::G722),
            ("opus", None) => Some(Codec::Opus),
            ("l16", None) => Some(Codec::L16 { rate: 8000 }),
            ("l16", Some(r)) if [8000, 16000, 44100, 48000].contains(&r) => {
                Some(Codec::L16 { rate: r })
            }
            ("speex", None) => Some(Codec::Speex { rate: 8000 }),
            ("speex", Some(r)) if r == 8000 || r == 16000 => Some(Codec::Speex { rate: r }),
            _ => None,
        }
    }

    /// Whether the relay can decode this codec, and encode it unless it is AAC (which only
    /// ever arrives from a client). Speex only at its narrowband and wideband rates.
    pub fn transcodable(self) -> bool {
        match self {
            Codec::Pcmu
            | Codec::Pcma
            | Codec::L16 { .. }
            | Codec::PcmLe { .. }
            | Codec::G722
            | Codec::Nellymoser { .. }
            | Codec::Opus
            | Codec::Aac { .. } => true,
            Codec::Speex { rate } => rate == 8000 || rate == 16000,
        }
    }

    /// Whether this codec's decoder carries state from frame to frame that a decoder joining
    /// mid-stream lacks (a Speex decoder joining a stationary tone can lock onto a wrong pitch
    /// for seconds): a client's audio in such a codec is decoded from its first frame, before
    /// the SIP answer names what it is encoded to. Not Opus: its decoder runs at the rate of
    /// the other leg, which only the answer names, and Opus resynchronises within a frame.
    pub fn decoder_keeps_state(self) -> bool {
        matches!(
            self,
            Codec::Speex { .. } | Codec::G722 | Codec::Nellymoser { .. } | Codec::Aac { .. }
        )
    }

    /// The AAC codec an FLV AAC sequence header (AudioSpecificConfig) describes, if the relay
    /// decodes it: AAC-LC, mono or stereo, 1024-sample frames, at a rate the resampler takes.
    pub fn from_aac_config(config: &[u8]) -> Result<Codec, AacError> {
        let asc = AudioSpecificConfig::parse(config)?;
        if asc.object_type != aac::OBJECT_TYPE_LC {
            return Err(AacError::UnsupportedObjectType(asc.object_type));
        }
        if !(1..=2).contains(&asc.channel_configuration) {
            return Err(AacError::UnsupportedChannels(asc.channel_configuration));
        }
        if asc.short_frames || asc.depends_on_core_coder {
            return Err(AacError::UnsupportedFrame);
        }
        if !skybridge_codecs::resample::SUPPORTED_RATES.contains(&asc.sample_rate) {
            return Err(AacError::BadSampleRate(asc.sampling_frequency_index));
        }
        Ok(Codec::Aac {
            rate: asc.sample_rate,
            stereo: asc.channel_configuration == 2,
        })
    }

    /// Static RTP payload type (RFC 3551 table 4), if the codec has one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
            Codec::L16 { rate: 44100 } => Some(11),
            _ => None,
        }
    }

    /// RTP payload type to offer: the static one, or `96 + index` (dynamic) for the codec at
    /// `index` of our preference list.
    pub fn offer_payload_type(self, index: usize) -> u8 {
        self.static_payload_type()
            .unwrap_or(DYNAMIC_PT_BASE.saturating_add(u8::try_from(index).unwrap_or(0).min(31)))
    }

    /// The payload type of this codec in a WebSocket/RFC 4571 audio frame (G.711 only there):
    /// its static payload type, or 96 for a codec with a dynamic one.
    pub fn rtp_payload_type(self) -> u8 {
        self.static_payload_type().unwrap_or(DYNAMIC_PT_BASE)
    }

    /// Codec from a static RTP payload type (0 PCMU, 8 PCMA, 9 G.722).
    pub fn from_rtp_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            9 => Some(Codec::G722),
            _ => None,
        }
    }

    /// SDP `rtpmap` encoding name, clock rate and channel count, for codecs RTP can carry.
    pub fn rtpmap(self) -> Option<(&'static str, u32, Option<u8>)> {
        match self {
            Codec::Pcmu => Some(("PCMU", 8000, None)),
            Codec::Pcma => Some(("PCMA", 8000, None)),
            // RFC 3551 §4.5.2: G.722 is sampled at 16 kHz but its RTP clock is 8000.
            Codec::G722 => Some(("G722", 8000, None)),
            Codec::L16 { rate } => Some(("L16", rate, None)),
            Codec::Speex { rate } => Some(("speex", rate, None)),
            // RFC 7587 §7: always `opus/48000/2`.
            Codec::Opus => Some(("opus", 48000, Some(2))),
            Codec::PcmLe { .. } | Codec::Nellymoser { .. } | Codec::Aac { .. } => None,
        }
    }

    /// SDP encoding name (rtpmap); `""` for codecs RTP does not carry.
    pub fn encoding_name(self) -> &'static str {
        self.rtpmap().map(|(n, _, _)| n).unwrap_or("")
    }

    /// The codec an `rtpmap` names (`name/clock[/channels]`). L16 is accepted mono only.
    pub fn from_rtpmap(name: &str, clock: u32, channels: Option<u8>) -> Option<Codec> {
        let mono = matches!(channels, None | Some(1));
        if name.eq_ignore_ascii_case("PCMU") && clock == 8000 && mono {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") && clock == 8000 && mono {
            Some(Codec::Pcma)
        } else if name.eq_ignore_ascii_case("G722") && clock == 8000 && mono {
            Some(Codec::G722)
        } else if name.eq_ignore_ascii_case("L16")
            && mono
            && [8000, 16000, 44100, 48000].contains(&clock)
        {
            Some(Codec::L16 { rate: clock })
        } else if name.eq_ignore_ascii_case("speex") && (clock == 8000 || clock == 16000) {
            Some(Codec::Speex { rate: clock })
        } else if name.eq_ignore_ascii_case("opus") && clock == 48000 {
            Some(Codec::Opus)
        } else {
            None
        }
    }

    /// FLV audio tag header byte (format, rate, size, type) for codecs FLV can carry.
    pub fn flv_tag_header(self) -> Option<u8> {
        // Rate bits: 0 = 5.5 kHz (also what ffmpeg writes for 8/16 kHz PCM and G.711),
        // 1 = 11, 2 = 22, 3 = 44 kHz. The real rate of PCM goes in onMetaData.
        let rate_bits = |rate: u32| match rate {
            11025 => 1,
            22050 => 2,
            44100 | 48000 => 3,
            _ => 0,
        };
        let (format, rate, stereo) = match self {
            Codec::Pcmu => (8, 0, false),
            Codec::Pcma => (7, 0, false),
            Codec::PcmLe { rate, stereo } => (3, rate_bits(rate), stereo),
            Codec::Nellymoser { rate: 16000 } => (4, 0, false),
            Codec::Nellymoser { rate: 8000 } => (5, 0, false),
            Codec::Nellymoser { rate } => (6, rate_bits(rate), false),
            Codec::Speex { .. } => (11, 0, false),
            Codec::Aac { stereo, .. } => (10, 3, stereo),
            Codec::L16 { .. } | Codec::G722 | Codec::Opus => return None,
        };
        Some((format << 4) | (rate << 2) | 0x02 | u8::from(stereo))
    }

    /// FLV sound format (the header's top four bits), for codecs FLV can carry.
    pub fn flv_sound_format(self) -> Option<u8> {
        self.flv_tag_header().map(|h| h >> 4)
    }

    /// The codec an FLV audio tag header names. `metadata_rate` is the stream's
    /// `onMetaData.audiosamplerate`, which PCM needs (its header cannot say 8 or 16 kHz).
    /// None for formats the relay cannot name (ADPCM, MP3, 8-bit PCM, device-specific).
    pub fn from_flv(tag_header: u8, metadata_rate: Option<u32>) -> Option<Codec> {
        let format = tag_header >> 4;
        let sixteen_bit = tag_header & 0x02 != 0;
        let stereo = tag_header & 0x01 != 0;
        let header_rate = match (tag_header >> 2) & 0x03 {
            0 => 5512,
            1 => 11025,
            2 => 22050,
            _ => 44100,
        };
        match format {
            8 => Some(Codec::Pcmu),
            7 => Some(Codec::Pcma),
            0 | 3 if sixteen_bit => Some(Codec::PcmLe {
                // ffmpeg writes rate bits 0 for 8 and 16 kHz and names the rate in metadata;
                // without metadata, 5.5 kHz means 8 kHz in practice.
                rate: metadata_rate.unwrap_or(if header_rate == 5512 {
                    8000
                } else {
                    header_rate
                }),
                stereo,
            }),
            4 => Some(Codec::Nellymoser { rate: 16000 }),
            5 => Some(Codec::Nellymoser { rate: 8000 }),
            6 => Some(Codec::Nellymoser {
                rate: metadata_rate.unwrap_or(header_rate),
            }),
            10 => Some(Codec::Aac {
                rate: metadata_rate.unwrap_or(44100),
                stereo,
            }),
            11 => Some(Codec::Speex { rate: 16000 }),
            _ => None,
        }
    }

    /// Clock of this codec's timestamps (RTP clock; G.722's is 8000, Opus's 48000).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma | Codec::G722 => 8000,
            Codec::Opus => 48000,
            Codec::L16 { rate }
            | Codec::PcmLe { rate, .. }
            | Codec::Nellymoser { rate }
            | Codec::Speex { rate }
            | Codec::Aac { rate, .. } => rate,
        }
    }

    /// Audio sample rate (G.722: 16000 although its clock is 8000).
    pub fn sample_rate(self) -> u32 {
        match self {
            Codec::G722 => 16000,
            other => other.clock_rate(),
        }
    }

    /// Channels of the encoded audio.
    pub fn channels(self) -> usize {
        match self {
            Codec::PcmLe { stereo: true, .. } | Codec::Aac { stereo: true, .. } => 2,
            _ => 1,
        }
    }

    /// Bytes of payload per millisecond for constant-rate codecs whose millisecond is a whole
    /// number of bytes (G.711, G.722, L16 at 8/16/48 kHz); None otherwise.
    pub fn bytes_per_ms(self) -> Option<usize> {
        match self {
            Codec::Pcmu | Codec::Pcma | Codec::G722 => Some(8),
            Codec::L16 { rate } | Codec::PcmLe { rate, .. } if rate % 1000 == 0 => {
                Some(rate as usize / 1000 * 2 * self.channels())
            }
            _ => None,
        }
    }

    /// Timestamp ticks (in [`Codec::clock_rate`]) a payload of `len` bytes spans, for codecs
    /// where the length says it.
    pub fn ticks_for_len(self, len: usize) -> Option<u32> {
        let ticks = match self {
            Codec::Pcmu | Codec::Pcma | Codec::G722 => len,
            Codec::L16 { .. } => len / 2,
            Codec::PcmLe { .. } => len / (2 * self.channels()),
            Codec::Nellymoser { .. } => len / 64 * 256,
            Codec::Speex { .. } | Codec::Opus | Codec::Aac { .. } => return None,
        };
        u32::try_from(ticks).ok()
    }
}

/// What a client leg can receive, and so which codec the call sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCaps {
    /// G.711 only (RFC 4571 tunnel).
    G711,
    /// A WebSocket client: G.711 always, Opus when its `hello` offered it.
    WebSocket { opus: bool },
    /// A client that asked for exactly this codec (an RFC 4571 tunnel's `POST /v1/calls`).
    Fixed(Codec),
    /// An RTMP player: the `audioCodecs` bitmask of its NetConnection `connect` (Flash
    /// `SUPPORT_SND_*`), if it sent one.
    Flash { audio_codecs: Option<u16> },
}

/// Flash `SUPPORT_SND_*` bits of the `connect` command's `audioCodecs`.
pub mod flash_snd {
    /// Nellymoser at 8 kHz.
    pub const NELLY8: u16 = 0x0020;
    /// Nellymoser at any rate.
    pub const NELLY: u16 = 0x0040;
    /// G.711 A-law.
    pub const G711A: u16 = 0x0080;
    /// G.711 µ-law.
    pub const G711U: u16 = 0x0100;
    /// Nellymoser at 16 kHz.
    pub const NELLY16: u16 = 0x0200;
    /// AAC.
    pub const AAC: u16 = 0x0400;
    /// Speex.
    pub const SPEEX: u16 = 0x0800;

    /// The names a player's `?codec=` query takes (see [`from_play_codec`]).
    pub const PLAY_CODECS: [&str; 7] = [
        "pcmu",
        "pcma",
        "pcm",
        "nellymoser",
        "nellymoser8",
        "nellymoser16",
        "speex",
    ];

    /// The `audioCodecs` bits that make a player of `name` (a play name's `?codec=`) be sent
    /// exactly that codec: `pcmu`, `pcma`, `pcm` (s16le at the SIP leg's rate), `nellymoser`
    /// (at the SIP leg's rate), `nellymoser8`, `nellymoser16` or `speex` (wideband). `None` for
    /// any other name.
    pub fn from_play_codec(name: &str) -> Option<u16> {
        Some(match name.to_ascii_lowercase().as_str() {
            "pcmu" | "g711u" => G711U,
            "pcma" | "g711a" => G711A,
            "pcm" | "l16" => 0,
            "nellymoser" | "nelly" => NELLY,
            "nellymoser8" => NELLY8,
            "nellymoser16" => NELLY16,
            "speex" => SPEEX,
            _ => return None,
        })
    }
}

impl ClientCaps {
    /// The codec to send this client when the SIP leg uses `sip`: `sip` itself when the
    /// client can take it (pass-through: G.711, Speex-WB), µ⇄A-law when it takes only the
    /// other law, else the most bandwidth-efficient codec it decodes that the relay can
    /// encode cheaply (Nellymoser at the SIP leg's rate, then Speex-WB, then G.711), else PCM
    /// at the SIP leg's rate. Never AAC (decoded only), whatever the client announces.
    /// A WebSocket client that does Opus always gets Opus: pass-through when the SIP leg uses
    /// it, else the thin client leg carries ~24 kbit/s instead of G.711's 64.
    pub fn choose(self, sip: Codec) -> Codec {
        match self {
            ClientCaps::Fixed(c) => c,
            ClientCaps::WebSocket { opus: true } => Codec::Opus,
            ClientCaps::G711 | ClientCaps::WebSocket { opus: false } => match sip {
                Codec::Pcma => Codec::Pcma,
                _ => Codec::Pcmu,
            },
            ClientCaps::Flash { audio_codecs } => {
                let Some(bits) = audio_codecs else {
                    return match sip {
                        Codec::Pcmu | Codec::Pcma => sip,
                        other => Codec::PcmLe {
                            rate: pcm_rate(other.sample_rate()),
                            stereo: false,
                        },
                    };
                };
                let has = |b: u16| bits & b != 0;
                match sip {
                    Codec::Pcmu if has(flash_snd::G711U) => return sip,
                    Codec::Pcma if has(flash_snd::G711A) => return sip,
                    // FLV Speex is wideband only.
                    Codec::Speex { rate: 16000 } if has(flash_snd::SPEEX) => return sip,
                    _ => {}
                }
                // Transcoding anyway: the thin client leg gets the fewest bits per second.
                let wideband = sip.sample_rate() >= 16000;
                if wideband && (has(flash_snd::NELLY16) || has(flash_snd::NELLY)) {
                    return Codec::Nellymoser { rate: 16000 };
                }
                if has(flash_snd::NELLY8) || has(flash_snd::NELLY) {
                    return Codec::Nellymoser { rate: 8000 };
                }
                if has(flash_snd::NELLY16) {
                    return Codec::Nellymoser { rate: 16000 };
                }
                if has(flash_snd::SPEEX) {
                    return Codec::Speex { rate: 16000 };
                }
                if has(flash_snd::G711U) {
                    return Codec::Pcmu;
                }
                if has(flash_snd::G711A) {
                    return Codec::Pcma;
                }
                Codec::PcmLe {
                    rate: pcm_rate(sip.sample_rate()),
                    stereo: false,
                }
            }
        }
    }
}

/// A PCM rate the resampler handles for `rate`.
/// The PCM rate to send a player for audio at `rate`: one an FLV tag header can name (11025,
/// 22050 or 44100 Hz; Flash plays no other and ffmpeg reads 8/16/48 kHz PCM only with
/// `onMetaData`), at or above `rate` so nothing is lost.
fn pcm_rate(rate: u32) -> u32 {
    match rate {
        0..=11025 => 11025,
        11026..=22050 => 22050,
        _ => 44100,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g722_and_opus_carry_their_rfc_clock_quirks() {
        assert_eq!(Codec::G722.rtpmap(), Some(("G722", 8000, None)));
        assert_eq!(Codec::G722.sample_rate(), 16000);
        assert_eq!(Codec::G722.clock_rate(), 8000);
        assert_eq!(Codec::Opus.rtpmap(), Some(("opus", 48000, Some(2))));
        assert_eq!(
            Codec::from_rtpmap("speex", 16000, None),
            Some(Codec::Speex { rate: 16000 })
        );
        assert_eq!(
            Codec::from_rtpmap("L16", 16000, None),
            Some(Codec::L16 { rate: 16000 })
        );
        assert_eq!(Codec::from_rtpmap("L16", 16000, Some(2)), None);
    }

    #[test]
    fn flv_headers_round_trip_through_from_flv() {
        for c in [
            Codec::Pcmu,
            Codec::Pcma,
            Codec::Nellymoser { rate: 8000 },
            Codec::Nellymoser { rate: 16000 },
            Codec::Nellymoser { rate: 22050 },
            Codec::PcmLe {
                rate: 44100,
                stereo: true,
            },
        ] {
            let h = c.flv_tag_header().unwrap_or_default();
            assert_eq!(Codec::from_flv(h, None), Some(c), "{c:?}");
        }
        // ffmpeg's pcm_s16le at 16 kHz: header says 5.5 kHz, metadata says 16000.
        assert_eq!(
            Codec::from_flv(0x32, Some(16000)),
            Some(Codec::PcmLe {
                rate: 16000,
                stereo: false
            })
        );
        assert_eq!(Codec::from_flv(0x2E, None), None, "mp3 is not named");
        assert_eq!(Codec::from_flv(0x30, None), None, "8-bit PCM is not named");
    }

    #[test]
    fn config_names_parse_and_reject_unknown_rates() {
        assert_eq!(Codec::from_config_name("PCMU"), Some(Codec::Pcmu));
        assert_eq!(
            Codec::from_config_name("l16/16000"),
            Some(Codec::L16 { rate: 16000 })
        );
        assert_eq!(Codec::from_config_name("l16/12345"), None);
        assert_eq!(Codec::from_config_name("gsm"), None);
    }

    #[test]
    fn a_play_codec_query_makes_the_player_get_exactly_that_codec() {
        let pick = |name: &str, sip: Codec| {
            ClientCaps::Flash {
                audio_codecs: flash_snd::from_play_codec(name),
            }
            .choose(sip)
        };
        for sip in [Codec::Pcmu, Codec::G722, Codec::Opus] {
            assert_eq!(pick("speex", sip), Codec::Speex { rate: 16000 });
            assert_eq!(pick("nellymoser8", sip), Codec::Nellymoser { rate: 8000 });
            assert_eq!(pick("NELLYMOSER16", sip), Codec::Nellymoser { rate: 16000 });
            assert_eq!(pick("pcma", sip), Codec::Pcma);
            assert_eq!(pick("pcmu", sip), Codec::Pcmu);
        }
        assert_eq!(
            pick("nellymoser", Codec::Pcmu),
            Codec::Nellymoser { rate: 8000 }
        );
        assert_eq!(
            pick("nellymoser", Codec::G722),
            Codec::Nellymoser { rate: 16000 }
        );
        let pcm = |rate| Codec::PcmLe {
            rate,
            stereo: false,
        };
        // At a rate an FLV tag header names, at or above the SIP leg's.
        assert_eq!(pick("pcm", Codec::Pcmu), pcm(11025));
        assert_eq!(pick("pcm", Codec::G722), pcm(22050));
        assert_eq!(pick("pcm", Codec::Opus), pcm(44100));
        for sip in [
            Codec::Pcmu,
            Codec::G722,
            Codec::Opus,
            Codec::L16 { rate: 48000 },
        ] {
            let c = pick("pcm", sip);
            let h = c.flv_tag_header().unwrap();
            assert_eq!(
                Codec::from_flv(h, None),
                Some(c),
                "{sip:?}: the header alone names it"
            );
        }
        for name in flash_snd::PLAY_CODECS {
            assert!(flash_snd::from_play_codec(name).is_some(), "{name}");
        }
        assert_eq!(flash_snd::from_play_codec("aac"), None, "never sent");
        assert_eq!(flash_snd::from_play_codec(""), None);
    }

    #[test]
    fn flash_players_get_pass_through_or_the_leanest_codec_they_decode() {
        let ffmpeg = ClientCaps::Flash {
            audio_codecs: Some(4071),
        };
        assert_eq!(ffmpeg.choose(Codec::Pcmu), Codec::Pcmu, "pass-through");
        assert_eq!(
            ffmpeg.choose(Codec::G722),
            Codec::Nellymoser { rate: 16000 },
            "wideband kept at half G.711's bit rate"
        );
        let g711_only = ClientCaps::Flash {
            audio_codecs: Some(flash_snd::G711A),
        };
        assert_eq!(g711_only.choose(Codec::Pcmu), Codec::Pcma);
        let unknown = ClientCaps::Flash { audio_codecs: None };
        assert_eq!(unknown.choose(Codec::Pcma), Codec::Pcma);
        assert_eq!(
            unknown.choose(Codec::G722),
            Codec::PcmLe {
                rate: 22050,
                stereo: false
            }
        );
        assert_eq!(ClientCaps::G711.choose(Codec::G722), Codec::Pcmu);
        // Speex: pass-through for a wideband Speex SIP leg, else after Nellymoser.
        assert_eq!(
            ffmpeg.choose(Codec::Speex { rate: 16000 }),
            Codec::Speex { rate: 16000 }
        );
        let speex_only = ClientCaps::Flash {
            audio_codecs: Some(flash_snd::SPEEX | flash_snd::AAC),
        };
        assert_eq!(speex_only.choose(Codec::Opus), Codec::Speex { rate: 16000 });
        assert_eq!(
            ffmpeg.choose(Codec::Opus),
            Codec::Nellymoser { rate: 16000 }
        );
    }

    #[test]
    fn no_client_is_ever_sent_aac_whatever_it_announces() {
        for bits in [
            None,
            Some(0xFFFF),
            Some(flash_snd::AAC),
            Some(4071),
            Some(0),
        ] {
            for sip in [
                Codec::Pcmu,
                Codec::Pcma,
                Codec::G722,
                Codec::Opus,
                Codec::Speex { rate: 8000 },
                Codec::Speex { rate: 16000 },
                Codec::L16 { rate: 44100 },
            ] {
                let c = ClientCaps::Flash { audio_codecs: bits }.choose(sip);
                assert!(
                    !matches!(c, Codec::Aac { .. }) && Codec::flv_tag_header(c).is_some(),
                    "{bits:?} {sip:?} → {c:?}"
                );
            }
        }
    }

    #[test]
    fn aac_sequence_headers_name_the_codec_or_say_why_not() {
        // ffmpeg's 44.1 kHz mono and 48 kHz stereo LC headers.
        assert_eq!(
            Codec::from_aac_config(&[0x12, 0x08]),
            Ok(Codec::Aac {
                rate: 44100,
                stereo: false
            })
        );
        assert_eq!(
            Codec::from_aac_config(&[0x11, 0x90, 0x56, 0xE5, 0x00]),
            Ok(Codec::Aac {
                rate: 48000,
                stereo: true
            })
        );
        assert_eq!(
            Codec::from_aac_config(&[0x2A, 0x08]),
            Err(AacError::UnsupportedObjectType(5))
        );
        assert_eq!(
            Codec::from_aac_config(&[0x12, 0x30]),
            Err(AacError::UnsupportedChannels(6))
        );
        // 96 kHz (index 0): no resampler path.
        assert_eq!(
            Codec::from_aac_config(&[0x10, 0x08]),
            Err(AacError::BadSampleRate(0))
        );
        assert_eq!(Codec::from_aac_config(&[0x12]), Err(AacError::TooShort));
        assert!(Codec::Opus.transcodable() && Codec::Speex { rate: 16000 }.transcodable());
        assert!(!Codec::Speex { rate: 32000 }.transcodable());
    }

    #[test]
    fn websocket_clients_get_opus_when_they_offered_it_and_g711_otherwise() {
        let opus = ClientCaps::WebSocket { opus: true };
        assert_eq!(opus.choose(Codec::Opus), Codec::Opus, "pass-through");
        assert_eq!(
            opus.choose(Codec::Pcmu),
            Codec::Opus,
            "transcoded, thin leg"
        );
        assert_eq!(opus.choose(Codec::G722), Codec::Opus);
        let g711 = ClientCaps::WebSocket { opus: false };
        assert_eq!(g711.choose(Codec::Opus), Codec::Pcmu);
        assert_eq!(g711.choose(Codec::Pcma), Codec::Pcma);
        assert_eq!(g711.choose(Codec::Pcmu), Codec::Pcmu);
    }
}
