//! Transcoding between the legs of a call, off the I/O path. Sans-IO coders plus a small pool.
//!
//! ```text
//!  frame (codec A) ─► decode ─► down-mix ─► resample ─► pending ─► encode ─► frame (codec B)
//!                     (i16 at A's rate)      (to B's rate)  (whole      (B's frame size,
//!                     PLC: repeat & fade ──────────────────► frames)      B's clock)
//! ```
//!
//! A [`Transcoder`] converts one direction of one call: it owns its decoder, encoder,
//! resampler and every buffer, all sized at construction, so a frame costs no allocation but
//! the output `Bytes` (taken from a reused `BytesMut` in chunks of several frames). Timestamps
//! follow the input's: a contiguous input gives contiguous output in the output codec's clock
//! (8000 ticks/s for G.722, whose audio is 16 kHz), a gap in the input is a gap in the output.
//!
//! **Packet loss concealment.** When RTP sequence numbers show packets missing,
//! [`Transcoder::conceal`] repeats the last decoded frame with a falling gain (repeat and
//! fade, up to [`MAX_CONCEALED`] frames), so the client hears a short fade instead of a click
//! and a hole. A pass-through leg conceals through a transcoder from the codec to itself,
//! primed with the last frame ([`Transcoder::prime`]).
//!
//! **Off the I/O path** ([`pool`]): socket tasks never run a coder. A call hands each frame
//! that needs transcoding to a [`pool::TranscodePool`] of `std` threads (one per core), each
//! with a bounded job queue; all jobs of one transcoder go to the same worker, so they stay in
//! order. When a queue is full the frame is dropped and counted, never waited for, so a busy
//! pool costs transcoding calls frames, not the other calls latency.
//!
//! Codecs: G.711 µ/A-law, L16 (big-endian, RTP), PCM s16le (FLV 0/3, mono or stereo), G.722,
//! Nellymoser, Speex NB/WB (several frames per packet), Opus (RFC 7587) and AAC-LC (decode
//! only; FLV 10).
//!
//! **Coder rates.** Each side's PCM runs at the codec's sample rate, except Opus: libopus
//! decodes any packet at, and encodes from, 8/12/16/24/48 kHz, so an Opus coder runs at the
//! other side's rate when it can (Opus ⇄ G.711 at 8 kHz: no resampler, about half the cost)
//! while its timestamps stay in the 48 kHz RTP clock ([`opus_pcm_rate`]).
//!
//! **AAC.** [`Codec::Aac`] carries what decoding AAC-LC needs from the stream's
//! AudioSpecificConfig (rate, mono/stereo; see [`Codec::from_aac_config`]); the decoder is
//! built from the equivalent canonical config, so a changed sequence header is a changed
//! codec, and the call builds a new transcoder.
//!
//! **Hostile payloads.** A payload that fails to decode is refused ([`TranscodeError`]; the
//! pool counts it) and the call goes on. After [`ERROR_BURST`] failures in a row only one frame
//! in [`ERROR_PROBE_EVERY`] is handed to the decoder until one decodes again
//! ([`TranscodeError::Suppressed`] for the rest): libspeex writes a line to stderr per corrupt
//! frame, so a peer sending garbage gets at most a burst and then about one line per second
//! (at 50 frames/s) instead of one per packet. Speex payloads whose first frame header names
//! no valid narrowband mode are refused before libspeex sees them.

pub mod pool;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use skybridge_codecs::aac::AacDecoder;
use skybridge_codecs::g722::{G722Decoder, G722Encoder};
use skybridge_codecs::nellymoser::{NellymoserDecoder, NellymoserEncoder, SAMPLES_PER_BLOCK};
use skybridge_codecs::opus::{OpusDecoder, OpusEncoder};
use skybridge_codecs::resample::Resampler;
use skybridge_codecs::speex::{SpeexDecoder, SpeexEncoder};
use skybridge_codecs::{g711, l16, opus, speex};

use crate::media::{Codec, MediaFrame};

/// Most samples (all channels) one input frame may decode to: 170 ms of 48 kHz stereo.
pub const MAX_DECODED: usize = 16 * 1024;
/// Most frames concealed in a row; after that the output has a gap.
pub const MAX_CONCEALED: u32 = 5;
/// Output frames of `BytesMut` reserved at once (one allocation per this many frames).
const OUT_CHUNK_FRAMES: usize = 16;
/// Decode failures in a row after which most frames are refused undecoded.
pub const ERROR_BURST: u32 = 10;
/// Once in a failure burst, one frame in this many is still tried (about 1 per second).
pub const ERROR_PROBE_EVERY: u32 = 50;
/// Opus encoder bit rate (VBR): plenty for wideband speech.
const OPUS_BITRATE: i32 = 24_000;
/// Largest Speex frame in bytes (wideband quality 10: 492 + 352 bits, rounded up).
const SPEEX_MAX_FRAME_BYTES: usize = 110;

/// What carries a transcoder's output: it decides whether coders spend bits and CPU on loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Link {
    /// RTP over UDP toward SIP: Opus adds in-band FEC (RFC 7587 §3.3).
    #[default]
    Lossy,
    /// TCP toward a client (RTMP, WebSocket, RFC 4571): no FEC, cheaper Opus encoding.
    Reliable,
}

/// Why a transcoder could not be built or a frame not converted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    /// No coder for this codec (AAC is decoded only; stereo PCM never encoded; a Speex or AAC
    /// rate without a coder), or a rate the resampler lacks.
    #[error("unsupported codec {}", .0.name())]
    Unsupported(Codec),
    /// The frame's codec is not the one this transcoder decodes.
    #[error("frame codec {} does not match the transcoder's input", .0.name())]
    WrongCodec(Codec),
    /// The payload is malformed for its codec (odd PCM length, partial Nellymoser block).
    #[error("malformed payload")]
    BadPayload,
    /// The payload decodes to more than [`MAX_DECODED`] samples.
    #[error("frame too long")]
    TooLong,
    /// Not decoded: the input is in a burst of decode failures (see the module docs).
    #[error("frame skipped after repeated decode failures")]
    Suppressed,
}

/// The rate an Opus coder runs at when the other side of the transcoder runs at `other` Hz:
/// `other` itself when libopus takes it and it is at most 16 kHz (no resampler), else 16 kHz.
/// Wideband is what telephony carries (G.722, Speex-WB, AMR-WB; SIP phones' Opus), and coding
/// above it costs libopus up to 2.5× (a CELT layer on top of SILK) for audio above 8 kHz
/// that a call does not need. Opus ⇄ Opus is passed through, whatever its bandwidth.
pub fn opus_pcm_rate(other: u32) -> u32 {
    match other {
        8_000 | 12_000 | 16_000 => other,
        _ => 16_000,
    }
}

/// The canonical AudioSpecificConfig of AAC-LC at `rate`, mono or stereo (ISO/IEC 14496-3
/// §1.6.2.1; what [`Codec::from_aac_config`] keeps of a stream's config): object type 2,
/// frequency index (or 15 and the explicit rate), channel configuration, then GA flags 0.
/// Returns the buffer and its length (2 or 5 bytes).
pub fn aac_lc_config(rate: u32, stereo: bool) -> ([u8; 5], usize) {
    const RATES: [u32; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
        8_000, 7_350,
    ];
    let channels: u64 = if stereo { 2 } else { 1 };
    let (bits, len): (u64, usize) = match RATES.iter().position(|r| *r == rate) {
        // 5 + 4 + 4 + 3 = 16 bits.
        Some(i) => ((2 << 11) | ((i as u64) << 7) | (channels << 3), 2),
        // 5 + 4 + 24 + 4 + 3 = 40 bits.
        None => (
            (2 << 35) | (15 << 31) | (u64::from(rate & 0xFF_FFFF) << 7) | (channels << 3),
            5,
        ),
    };
    let mut out = [0u8; 5];
    for (k, b) in out.iter_mut().take(len).enumerate() {
        *b = (bits >> (8 * (len - 1 - k))) as u8;
    }
    (out, len)
}

/// Whether a Speex payload's first frame header is a valid narrowband one (wideband bit 0,
/// mode 0..=8, RFC 5574 §3; both modes start with the narrowband layer). libspeex would print
/// a notification for anything else.
fn speex_header_ok(payload: &[u8]) -> bool {
    payload
        .first()
        .is_some_and(|b| b >> 7 == 0 && (b >> 3) & 0x0F <= 8)
}

/// The decoders, one arm per codec.
enum Decoder {
    Ulaw,
    Alaw,
    L16Be,
    PcmLe,
    G722(Box<G722Decoder>),
    Nellymoser(Box<NellymoserDecoder>),
    Speex(Box<SpeexDecoder>),
    Opus(Box<OpusDecoder>),
    Aac(Box<AacDecoder>),
}

impl Decoder {
    /// A decoder of `codec` producing PCM at `rate` (the codec's sample rate, except Opus).
    fn new(codec: Codec, rate: u32) -> Result<Decoder, TranscodeError> {
        let unsupported = TranscodeError::Unsupported(codec);
        Ok(match codec {
            Codec::Pcmu => Decoder::Ulaw,
            Codec::Pcma => Decoder::Alaw,
            Codec::L16 { .. } => Decoder::L16Be,
            Codec::PcmLe { .. } => Decoder::PcmLe,
            Codec::G722 => Decoder::G722(Box::default()),
            Codec::Nellymoser { .. } => Decoder::Nellymoser(Box::default()),
            Codec::Speex { rate } => {
                let mode =
                    speex::mode_for_clock_rate(rate).ok_or(TranscodeError::Unsupported(codec))?;
                Decoder::Speex(Box::new(SpeexDecoder::new(mode).map_err(|_| unsupported)?))
            }
            Codec::Opus => {
                Decoder::Opus(Box::new(OpusDecoder::new(rate).map_err(|_| unsupported)?))
            }
            Codec::Aac { rate, stereo } => {
                let (config, len) = aac_lc_config(rate, stereo);
                let config = config.get(..len).unwrap_or_default();
                Decoder::Aac(Box::new(AacDecoder::new(config).map_err(|_| unsupported)?))
            }
        })
    }

    /// The codec's own concealment of one lost frame into `out` (Speex, Opus); None for
    /// codecs without one (repeat and fade instead).
    fn plc(&mut self, out: &mut [i16]) -> Option<usize> {
        match self {
            Decoder::Speex(d) => d.decode(None, out).ok(),
            Decoder::Opus(d) => d.decode(None, out).ok(),
            _ => None,
        }
    }

    /// Decodes `payload` into `out` (interleaved); returns the sample count.
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, TranscodeError> {
        let too_long = |n: usize| {
            if n > out.len() {
                Err(TranscodeError::TooLong)
            } else {
                Ok(())
            }
        };
        match self {
            Decoder::Ulaw => {
                too_long(payload.len())?;
                Ok(g711::decode_ulaw(payload, out))
            }
            Decoder::Alaw => {
                too_long(payload.len())?;
                Ok(g711::decode_alaw(payload, out))
            }
            Decoder::L16Be => {
                too_long(payload.len() / 2)?;
                l16::decode_be(payload, out).map_err(|_| TranscodeError::BadPayload)
            }
            Decoder::PcmLe => {
                too_long(payload.len() / 2)?;
                l16::decode_le(payload, out).map_err(|_| TranscodeError::BadPayload)
            }
            Decoder::G722(d) => {
                too_long(payload.len() * 2)?;
                d.decode(payload, out)
                    .map_err(|_| TranscodeError::BadPayload)
            }
            Decoder::Nellymoser(d) => {
                too_long(payload.len() / 64 * SAMPLES_PER_BLOCK)?;
                d.decode(payload, out)
                    .map_err(|_| TranscodeError::BadPayload)
            }
            Decoder::Speex(d) => {
                if !speex_header_ok(payload) {
                    return Err(TranscodeError::BadPayload);
                }
                d.decode(Some(payload), out).map_err(|e| match e {
                    speex::SpeexError::OutputTooSmall { .. }
                    | speex::SpeexError::PacketTooLong(_) => TranscodeError::TooLong,
                    _ => TranscodeError::BadPayload,
                })
            }
            Decoder::Opus(d) => d.decode(Some(payload), out).map_err(|e| match e {
                opus::OpusError::OutputTooSmall { .. } => TranscodeError::TooLong,
                _ => TranscodeError::BadPayload,
            }),
            Decoder::Aac(d) => d.decode(payload, out).map_err(|e| match e {
                skybridge_codecs::aac::AacError::TooLong(_)
                | skybridge_codecs::aac::AacError::OutputTooSmall { .. } => TranscodeError::TooLong,
                _ => TranscodeError::BadPayload,
            }),
        }
    }
}

/// The encoders, one arm per codec. AAC is never encoded (no client is sent AAC).
enum Encoder {
    Ulaw,
    Alaw,
    L16Be,
    PcmLe,
    G722(Box<G722Encoder>),
    Nellymoser(Box<NellymoserEncoder>),
    Speex(Box<SpeexEncoder>),
    Opus(Box<OpusEncoder>),
}

impl Encoder {
    /// An encoder of `codec` taking PCM at `pcm_rate` (the codec's sample rate, except Opus and
    /// wideband Speex of narrowband audio).
    fn new(codec: Codec, pcm_rate: u32, link: Link) -> Result<Encoder, TranscodeError> {
        let unsupported = TranscodeError::Unsupported(codec);
        Ok(match codec {
            Codec::Pcmu => Encoder::Ulaw,
            Codec::Pcma => Encoder::Alaw,
            Codec::L16 { .. } => Encoder::L16Be,
            Codec::PcmLe { stereo: false, .. } => Encoder::PcmLe,
            Codec::G722 => Encoder::G722(Box::default()),
            Codec::Nellymoser { .. } => Encoder::Nellymoser(Box::default()),
            Codec::Speex { rate } => {
                let mode =
                    speex::mode_for_clock_rate(rate).ok_or(TranscodeError::Unsupported(codec))?;
                // 8 kHz PCM for a wideband stream: libspeex's narrowband frames, which wideband
                // decoders play (speex::encoder_for_source).
                Encoder::Speex(Box::new(
                    speex::encoder_for_source(mode, pcm_rate).map_err(|_| unsupported)?,
                ))
            }
            Codec::Opus => Encoder::Opus(Box::new(
                match link {
                    Link::Lossy => OpusEncoder::new(pcm_rate, OPUS_BITRATE),
                    Link::Reliable => OpusEncoder::for_reliable_link(pcm_rate, OPUS_BITRATE),
                }
                .map_err(|_| unsupported)?,
            )),
            // Stereo PCM is never chosen for output; AAC is decoded only.
            Codec::PcmLe { stereo: true, .. } | Codec::Aac { .. } => {
                return Err(TranscodeError::Unsupported(codec))
            }
        })
    }

    /// Samples per coding unit (a frame's sample count is a multiple of it).
    fn block(&self) -> usize {
        match self {
            Encoder::G722(_) => 2,
            Encoder::Nellymoser(_) => SAMPLES_PER_BLOCK,
            Encoder::Speex(e) => e.mode().frame_samples(),
            Encoder::Opus(e) => e.frame_samples(),
            _ => 1,
        }
    }

    /// Most blocks one output frame may hold (Opus: one 20 ms frame per packet; Speex: the
    /// most frames one packet takes).
    fn max_blocks(&self) -> usize {
        match self {
            Encoder::Opus(_) => 1,
            Encoder::Speex(_) => speex::MAX_FRAMES_PER_PACKET,
            _ => usize::MAX,
        }
    }

    /// Bytes the encoding of `samples` mono samples takes (at most, for the variable-rate
    /// codecs).
    fn encoded_len(&self, samples: usize) -> usize {
        match self {
            Encoder::Ulaw | Encoder::Alaw => samples,
            Encoder::L16Be | Encoder::PcmLe => samples * 2,
            Encoder::G722(_) => samples / 2,
            Encoder::Nellymoser(_) => samples / SAMPLES_PER_BLOCK * 64,
            Encoder::Speex(e) => samples.div_ceil(e.mode().frame_samples()) * SPEEX_MAX_FRAME_BYTES,
            Encoder::Opus(_) => opus::MAX_PACKET,
        }
    }

    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, TranscodeError> {
        match self {
            Encoder::Ulaw => Ok(g711::encode_ulaw(pcm, out)),
            Encoder::Alaw => Ok(g711::encode_alaw(pcm, out)),
            Encoder::L16Be => l16::encode_be(pcm, out).map_err(|_| TranscodeError::BadPayload),
            Encoder::PcmLe => l16::encode_le(pcm, out).map_err(|_| TranscodeError::BadPayload),
            Encoder::G722(e) => e.encode(pcm, out).map_err(|_| TranscodeError::BadPayload),
            Encoder::Nellymoser(e) => e.encode(pcm, out).map_err(|_| TranscodeError::BadPayload),
            Encoder::Speex(e) => e.encode(pcm, out).map_err(|_| TranscodeError::BadPayload),
            Encoder::Opus(e) => e.encode(pcm, out).map_err(|_| TranscodeError::BadPayload),
        }
    }
}

/// Counters of one transcoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TranscodeStats {
    /// Input frames converted.
    pub frames_in: u64,
    /// Output frames produced (concealment included).
    pub frames_out: u64,
    /// Frames synthesised by packet loss concealment.
    pub concealed: u64,
    /// Input frames refused (malformed, too long, wrong codec, suppressed).
    pub rejected: u64,
    /// Lost frames recovered from the next packet's in-band FEC (Opus).
    pub recovered: u64,
}

/// One direction of one call's transcoding. See the module docs.
pub struct Transcoder {
    from: Codec,
    to: Codec,
    decoder: Decoder,
    encoder: Encoder,
    /// PCM rates of the decoder's output and the encoder's input.
    in_rate: u32,
    out_rate: u32,
    resampler: Option<Resampler>,
    /// Decoded samples (interleaved), then down-mixed in place.
    decoded: Vec<i16>,
    /// Resampled samples.
    resampled: Vec<i16>,
    /// Samples at the output rate waiting to fill an output frame (`pending_len` valid).
    pending: Vec<i16>,
    pending_len: usize,
    /// Output timestamp (output clock) of `pending[0]`.
    pending_ts: u32,
    marker_next: bool,
    /// Samples per output frame at the output rate.
    frame_samples: usize,
    out: BytesMut,
    /// Expected timestamp of the next input frame (input clock), once one was seen.
    next_in_ts: Option<u32>,
    /// Last decoded input frame (mono, input rate), for concealment.
    last: Vec<i16>,
    last_len: usize,
    /// Input-clock ticks the last input frame spanned.
    last_ticks: u32,
    /// Frames concealed since the last real one.
    concealed_run: u32,
    /// Decode failures in a row, and frames since the last one tried during a burst.
    failures: u32,
    since_probe: u32,
    stats: TranscodeStats,
    /// Finished output frames, taken by [`Transcoder::poll`].
    ready: std::collections::VecDeque<MediaFrame>,
    /// Decoding only, output not chosen yet ([`Transcoder::warming`]).
    warming: bool,
    /// What carries the output.
    link: Link,
}

impl Transcoder {
    /// A transcoder from `from` to `to` whose output frames last `frame` (rounded up to the
    /// output coder's block: 256 samples for Nellymoser).
    /// An Opus side runs at [`opus_pcm_rate`] of the other side's rate; Opus output frames
    /// are always 20 ms (one Opus frame per RTP packet, RFC 7587 §4.2).
    pub fn new(from: Codec, to: Codec, frame: Duration) -> Result<Transcoder, TranscodeError> {
        Transcoder::toward(Link::Lossy, from, to, frame)
    }

    /// [`Transcoder::new`] for output carried over `link`.
    pub fn toward(
        link: Link,
        from: Codec,
        to: Codec,
        frame: Duration,
    ) -> Result<Transcoder, TranscodeError> {
        let (in_rate, out_rate) = match (from, to) {
            (Codec::Opus, Codec::Opus) => (48_000, 48_000),
            (Codec::Opus, _) => (opus_pcm_rate(to.sample_rate()), to.sample_rate()),
            (_, Codec::Opus) => (from.sample_rate(), opus_pcm_rate(from.sample_rate())),
            // A wideband Speex stream of narrowband audio is coded from 8 kHz, no resampler.
            (_, Codec::Speex { rate }) => {
                let mode =
                    speex::mode_for_clock_rate(rate).ok_or(TranscodeError::Unsupported(to))?;
                (
                    from.sample_rate(),
                    speex::encoder_pcm_rate(mode, from.sample_rate()),
                )
            }
            _ => (from.sample_rate(), to.sample_rate()),
        };
        let decoder = Decoder::new(from, in_rate)?;
        let encoder = Encoder::new(to, out_rate, link)?;
        let resampler = if in_rate == out_rate {
            None
        } else {
            Some(Resampler::new(in_rate, out_rate).map_err(|_| {
                TranscodeError::Unsupported(
                    if skybridge_codecs::resample::SUPPORTED_RATES.contains(&in_rate) {
                        to
                    } else {
                        from
                    },
                )
            })?)
        };
        let block = encoder.block();
        let wanted = (out_rate as usize * frame.as_millis() as usize / 1000).max(1);
        let frame_samples = wanted.div_ceil(block).min(encoder.max_blocks()) * block;
        let resampled_cap = resampler
            .as_ref()
            .map(|r| r.max_output_len(MAX_DECODED))
            .unwrap_or(MAX_DECODED);
        let out_frame_bytes = encoder.encoded_len(frame_samples);
        Ok(Transcoder {
            from,
            to,
            decoder,
            encoder,
            in_rate,
            out_rate,
            resampler,
            decoded: vec![0; MAX_DECODED],
            resampled: vec![0; resampled_cap],
            pending: vec![0; frame_samples + resampled_cap],
            pending_len: 0,
            pending_ts: 0,
            marker_next: true,
            frame_samples,
            out: BytesMut::with_capacity(out_frame_bytes * OUT_CHUNK_FRAMES),
            next_in_ts: None,
            last: vec![0; MAX_DECODED],
            last_len: 0,
            last_ticks: 0,
            concealed_run: 0,
            failures: 0,
            since_probe: 0,
            stats: TranscodeStats::default(),
            ready: std::collections::VecDeque::with_capacity(64),
            warming: false,
            link,
        })
    }

    /// A transcoder from `from` whose output is not known yet: it decodes every frame pushed
    /// (so its decoder follows the stream from its start) and outputs nothing until
    /// [`Transcoder::retarget`] names the output codec.
    pub fn warming(from: Codec, frame: Duration) -> Result<Transcoder, TranscodeError> {
        let mut t = Transcoder::new(
            from,
            Codec::L16 {
                rate: from.sample_rate(),
            },
            frame,
        )?;
        t.warming = true;
        Ok(t)
    }

    /// Encodes to `to` in `frame` frames from now on, keeping the decoder (and so its state)
    /// when it already decodes at the rate the new pair needs (all codecs but Opus, whose
    /// decoder runs at the other side's rate). Builds the new coders: once per call, not per
    /// frame.
    pub fn retarget(&mut self, to: Codec, frame: Duration) -> Result<(), TranscodeError> {
        let mut next = Transcoder::toward(self.link, self.from, to, frame)?;
        if next.in_rate == self.in_rate {
            std::mem::swap(&mut next.decoder, &mut self.decoder);
        }
        next.stats = self.stats;
        *self = next;
        Ok(())
    }

    /// Whether this transcoder only decodes, its output not chosen yet.
    pub fn is_warming(&self) -> bool {
        self.warming
    }

    /// Input codec.
    pub fn from(&self) -> Codec {
        self.from
    }

    /// Output codec.
    pub fn to(&self) -> Codec {
        self.to
    }

    /// Samples per output frame (at the output codec's sample rate).
    pub fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    /// Counters so far.
    pub fn stats(&self) -> TranscodeStats {
        self.stats
    }

    /// Converts one input frame; finished output frames wait in [`Transcoder::poll`].
    pub fn push(&mut self, frame: &MediaFrame) -> Result<(), TranscodeError> {
        if frame.codec != self.from {
            self.stats.rejected += 1;
            return Err(TranscodeError::WrongCodec(frame.codec));
        }
        if self.failures >= ERROR_BURST {
            self.since_probe += 1;
            if self.since_probe < ERROR_PROBE_EVERY {
                self.stats.rejected += 1;
                return Err(TranscodeError::Suppressed);
            }
            self.since_probe = 0;
        }
        let n = match self.decoder.decode(&frame.payload, &mut self.decoded) {
            Ok(n) => n,
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                self.stats.rejected += 1;
                return Err(e);
            }
        };
        self.failures = 0;
        if self.warming {
            return Ok(());
        }
        let mono = downmix(&mut self.decoded, n, self.from.channels());
        self.stats.frames_in += 1;
        let ticks = self.in_ticks(mono);
        self.follow_timeline(frame.timestamp, frame.marker);
        self.next_in_ts = Some(frame.timestamp.wrapping_add(ticks));
        // Keep it for concealment.
        if let (Some(dst), Some(src)) = (self.last.get_mut(..mono), self.decoded.get(..mono)) {
            dst.copy_from_slice(src);
            self.last_len = mono;
            self.last_ticks = ticks;
        }
        self.concealed_run = 0;
        self.feed(mono, 1.0, 1.0)
    }

    /// Remembers `frame` as the last one heard without producing output (a pass-through leg
    /// primes its concealer with the frame before a gap).
    pub fn prime(&mut self, frame: &MediaFrame) -> Result<(), TranscodeError> {
        if frame.codec != self.from {
            return Err(TranscodeError::WrongCodec(frame.codec));
        }
        let n = self.decoder.decode(&frame.payload, &mut self.decoded)?;
        let mono = downmix(&mut self.decoded, n, self.from.channels());
        if let (Some(dst), Some(src)) = (self.last.get_mut(..mono), self.decoded.get(..mono)) {
            dst.copy_from_slice(src);
            self.last_len = mono;
            self.last_ticks = self.in_ticks(mono);
        }
        // The concealed frames follow this one directly.
        let after = frame.timestamp.wrapping_add(self.in_ticks(mono));
        if self.next_in_ts.is_none() {
            self.pending_ts = scale_ticks(after, self.from.clock_rate(), self.to.clock_rate());
            self.next_in_ts = Some(after);
        } else {
            self.realign(after);
        }
        self.concealed_run = 0;
        Ok(())
    }

    /// `lost` input frames are missing before the next one: fills up to [`MAX_CONCEALED`]
    /// frames (in a row, across calls) with the codec's own concealment (Speex, Opus) or by
    /// repeating the last frame with a falling gain (the others). Returns the frames
    /// synthesised.
    pub fn conceal(&mut self, lost: u32) -> u32 {
        if self.last_len == 0 || self.next_in_ts.is_none() {
            return 0;
        }
        let mut made = 0;
        for _ in 0..lost {
            if self.concealed_run >= MAX_CONCEALED {
                break;
            }
            if let Some(n) = self.decoder.plc(&mut self.decoded) {
                // The codec's PLC (it fades by itself); mono, at the decoder's rate.
                if self.feed(n, 1.0, 1.0).is_err() {
                    break;
                }
                let ticks = self.in_ticks(n);
                self.next_in_ts = self.next_in_ts.map(|t| t.wrapping_add(ticks));
                self.concealed_run += 1;
                self.stats.concealed += 1;
                made += 1;
                continue;
            }
            // Linear fade across the run: frame k goes from gain (1 - k/N) to (1 - (k+1)/N).
            let n = MAX_CONCEALED as f32;
            let g0 = 1.0 - self.concealed_run as f32 / n;
            let g1 = 1.0 - (self.concealed_run + 1) as f32 / n;
            let len = self.last_len;
            if let (Some(dst), Some(src)) = (self.decoded.get_mut(..len), self.last.get(..len)) {
                dst.copy_from_slice(src);
            }
            if self.feed(len, g0, g1).is_err() {
                break;
            }
            self.next_in_ts = self.next_in_ts.map(|t| t.wrapping_add(self.last_ticks));
            self.concealed_run += 1;
            self.stats.concealed += 1;
            made += 1;
        }
        made
    }

    /// `lost` input frames are missing before `next`: conceals them, recovering the last one
    /// from `next`'s in-band FEC data where the codec carries it (Opus, RFC 7587 §3.3: each
    /// packet may repeat the previous frame at a lower bit rate), then converts `next`.
    /// Returns the frames concealed and recovered, and `next`'s result.
    pub fn push_after_loss(
        &mut self,
        next: &MediaFrame,
        lost: u32,
    ) -> (u32, u32, Result<(), TranscodeError>) {
        let mut concealed = 0;
        let mut recovered = 0;
        let fec = lost > 0
            && lost <= MAX_CONCEALED
            && next.codec == self.from
            && !self.warming
            && self.next_in_ts.is_some()
            && self.failures < ERROR_BURST
            && matches!(self.decoder, Decoder::Opus(_));
        if fec {
            concealed = self.conceal(lost - 1);
            if concealed == lost - 1 {
                if let Decoder::Opus(d) = &mut self.decoder {
                    if let Ok(n) = d.decode_fec(&next.payload, &mut self.decoded) {
                        let ticks = self.in_ticks(n);
                        if self.feed(n, 1.0, 1.0).is_ok() {
                            self.next_in_ts = self.next_in_ts.map(|t| t.wrapping_add(ticks));
                            self.stats.recovered += 1;
                            recovered = 1;
                        }
                    }
                }
            }
        } else if lost > 0 {
            concealed = self.conceal(lost);
        }
        (concealed, recovered, self.push(next))
    }

    /// The next finished output frame.
    pub fn poll(&mut self) -> Option<MediaFrame> {
        self.ready.pop_front()
    }

    /// Moves the output timeline along with the input's: contiguous input continues it; a
    /// jump (a gap, a new talk spurt, a restart) flushes what is pending and re-anchors.
    fn follow_timeline(&mut self, in_ts: u32, marker: bool) {
        match self.next_in_ts {
            None => {
                self.pending_ts = scale_ticks(in_ts, self.from.clock_rate(), self.to.clock_rate());
                self.marker_next = true;
            }
            Some(expected) => {
                let delta = in_ts.wrapping_sub(expected) as i32;
                // Within 2 ms: contiguous (RTMP rounds timestamps to milliseconds).
                let tolerance = (self.from.clock_rate() / 500) as i32;
                if delta.abs() > tolerance {
                    self.realign(in_ts);
                }
                if marker {
                    self.marker_next = true;
                }
            }
        }
    }

    /// Flushes the pending partial frame (padded with silence) and places the pending start at
    /// input timestamp `in_ts`.
    fn realign(&mut self, in_ts: u32) {
        let Some(expected) = self.next_in_ts else {
            self.next_in_ts = Some(in_ts);
            return;
        };
        // Where the input timeline now is, relative to where the output had got to.
        let delta = in_ts.wrapping_sub(expected) as i32;
        let out_delta = (i64::from(delta) * i64::from(self.to.clock_rate())
            / i64::from(self.from.clock_rate())) as i32;
        let pending_ticks = self.out_ticks(self.pending_len);
        let target = self
            .pending_ts
            .wrapping_add(pending_ticks)
            .wrapping_add(out_delta as u32);
        if self.pending_len > 0 {
            if let Some(rest) = self.pending.get_mut(self.pending_len..self.frame_samples) {
                rest.fill(0);
            }
            self.pending_len = self.frame_samples;
            self.emit_frames();
        }
        // Never overlap the padded frame just flushed (a gap shorter than the padding).
        let overlap = self.pending_ts.wrapping_sub(target) as i32;
        self.pending_ts = if (1..(1 << 24)).contains(&overlap) && delta > 0 {
            self.pending_ts
        } else {
            target
        };
        self.marker_next = true;
        self.next_in_ts = Some(in_ts);
    }

    /// Input-clock ticks `samples` decoded mono samples span.
    fn in_ticks(&self, samples: usize) -> u32 {
        ticks(self.from.clock_rate(), self.in_rate, samples)
    }

    /// Output-clock ticks `samples` mono samples at the encoder's rate span.
    fn out_ticks(&self, samples: usize) -> u32 {
        ticks(self.to.clock_rate(), self.out_rate, samples)
    }

    /// Resamples `decoded[..len]` (mono) with a gain ramp `g0 → g1` into `pending` and emits
    /// every whole output frame.
    fn feed(&mut self, len: usize, g0: f32, g1: f32) -> Result<(), TranscodeError> {
        let input = self.decoded.get_mut(..len).ok_or(TranscodeError::TooLong)?;
        if (g0, g1) != (1.0, 1.0) {
            let step = (g1 - g0) / len.max(1) as f32;
            for (i, s) in input.iter_mut().enumerate() {
                *s = (f32::from(*s) * (g0 + step * i as f32)) as i16;
            }
        }
        let produced: &[i16] = match self.resampler.as_mut() {
            Some(r) => {
                let n = r
                    .process(input, &mut self.resampled)
                    .map_err(|_| TranscodeError::TooLong)?;
                self.resampled.get(..n).unwrap_or_default()
            }
            None => input,
        };
        let start = self.pending_len;
        let end = start + produced.len();
        let dst = self
            .pending
            .get_mut(start..end)
            .ok_or(TranscodeError::TooLong)?;
        dst.copy_from_slice(produced);
        self.pending_len = end;
        self.emit_frames();
        Ok(())
    }

    /// Encodes every whole frame in `pending`.
    fn emit_frames(&mut self) {
        let fs = self.frame_samples;
        let mut offset = 0;
        while self.pending_len - offset >= fs {
            let Some(pcm) = self.pending.get(offset..offset + fs) else {
                break;
            };
            let bytes = self.encoder.encoded_len(fs);
            if self.out.capacity() < bytes {
                self.out.reserve(bytes * OUT_CHUNK_FRAMES);
            }
            self.out.resize(bytes, 0);
            let written = self.encoder.encode(pcm, &mut self.out).unwrap_or(0);
            self.out.truncate(written);
            let payload: Bytes = self.out.split().freeze();
            self.ready.push_back(MediaFrame {
                codec: self.to,
                timestamp: self.pending_ts,
                marker: std::mem::take(&mut self.marker_next),
                payload,
            });
            self.stats.frames_out += 1;
            self.pending_ts = self.pending_ts.wrapping_add(self.out_ticks(fs));
            offset += fs;
        }
        if offset > 0 {
            self.pending.copy_within(offset..self.pending_len, 0);
            self.pending_len -= offset;
        }
    }
}

/// Averages interleaved stereo to mono in place; returns the mono sample count.
fn downmix(buf: &mut [i16], n: usize, channels: usize) -> usize {
    if channels != 2 {
        return n;
    }
    let frames = n / 2;
    for i in 0..frames {
        let (l, r) = (
            buf.get(2 * i).copied().unwrap_or(0),
            buf.get(2 * i + 1).copied().unwrap_or(0),
        );
        if let Some(o) = buf.get_mut(i) {
            *o = ((i32::from(l) + i32::from(r)) / 2) as i16;
        }
    }
    frames
}

/// Ticks of a `clock` Hz clock that `samples` mono samples at `rate` Hz span (G.722: half the
/// samples; Opus at 8 kHz: six times as many).
fn ticks(clock: u32, rate: u32, samples: usize) -> u32 {
    (samples as u64 * u64::from(clock) / u64::from(rate.max(1))) as u32
}

/// A timestamp in clock `from` expressed in clock `to` (for a timeline's first anchor).
fn scale_ticks(ts: u32, from: u32, to: u32) -> u32 {
    (u64::from(ts) * u64::from(to) / u64::from(from.max(1))) as u32
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may unwrap
mod tests {
    use super::*;
    use skybridge_codecs::tone;

    const PTIME: Duration = Duration::from_millis(20);

    /// Encodes `pcm` (at `codec`'s rate) into frames of `codec` of 20 ms (Nellymoser: 256
    /// samples), timestamps in its clock.
    fn encode_stream(codec: Codec, pcm: &[i16]) -> Vec<MediaFrame> {
        encode_stream_from(codec, codec.sample_rate(), pcm)
    }

    /// [`encode_stream`] from PCM at `rate` (Opus: libopus then codes at that rate).
    fn encode_stream_from(codec: Codec, rate: u32, pcm: &[i16]) -> Vec<MediaFrame> {
        encode_stream_over(Link::Lossy, codec, rate, pcm)
    }

    /// [`encode_stream_from`] by an encoder for output over `link`.
    fn encode_stream_over(link: Link, codec: Codec, rate: u32, pcm: &[i16]) -> Vec<MediaFrame> {
        let mut t = Transcoder::toward(link, Codec::L16 { rate }, codec, PTIME).unwrap();
        let mut frames = Vec::new();
        let step = rate as usize / 50;
        for (i, chunk) in pcm.chunks(step).enumerate() {
            let mut payload = vec![0u8; chunk.len() * 2];
            l16::encode_be(chunk, &mut payload).unwrap();
            // In the L16 input's clock (the codec's sample rate).
            let ts = (i * step) as u32;
            t.push(&MediaFrame {
                codec: Codec::L16 { rate },
                timestamp: ts,
                marker: false,
                payload: payload.into(),
            })
            .unwrap();
            while let Some(f) = t.poll() {
                frames.push(f);
            }
        }
        frames
    }

    /// Decodes frames of `codec` back to PCM at its rate.
    fn decode_stream(codec: Codec, frames: &[MediaFrame]) -> Vec<i16> {
        let mut d = Decoder::new(codec, codec.sample_rate()).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0i16; MAX_DECODED];
        for f in frames {
            let n = d.decode(&f.payload, &mut buf).unwrap();
            let m = downmix(&mut buf, n, codec.channels());
            out.extend_from_slice(&buf[..m]);
        }
        out
    }

    fn through(from: Codec, to: Codec, hz: f64) -> (Vec<MediaFrame>, Vec<i16>) {
        let secs = 1;
        let input = tone::sine(
            hz,
            8000.0,
            from.sample_rate(),
            from.sample_rate() as usize * secs,
        );
        let frames = encode_stream(from, &input);
        let mut t = Transcoder::new(from, to, PTIME).unwrap();
        let mut out = Vec::new();
        for f in &frames {
            t.push(f).unwrap();
            while let Some(o) = t.poll() {
                out.push(o);
            }
        }
        let pcm = decode_stream(to, &out);
        (out, pcm)
    }

    const ALL: [Codec; 12] = [
        Codec::Pcmu,
        Codec::Pcma,
        Codec::L16 { rate: 8000 },
        Codec::L16 { rate: 16000 },
        Codec::PcmLe {
            rate: 16000,
            stereo: false,
        },
        Codec::PcmLe {
            rate: 44100,
            stereo: false,
        },
        Codec::G722,
        Codec::Nellymoser { rate: 8000 },
        Codec::Nellymoser { rate: 16000 },
        Codec::Speex { rate: 8000 },
        Codec::Speex { rate: 16000 },
        Codec::Opus,
    ];

    /// Perceptual codecs keep a tone's frequency and level, not a high SNR.
    fn lossy(c: Codec) -> bool {
        matches!(
            c,
            Codec::Nellymoser { .. } | Codec::Speex { .. } | Codec::Opus
        )
    }

    /// Pushes `frames` and returns every output frame.
    fn run(t: &mut Transcoder, frames: &[MediaFrame]) -> Vec<MediaFrame> {
        let mut out = Vec::new();
        for f in frames {
            t.push(f).unwrap();
            while let Some(o) = t.poll() {
                out.push(o);
            }
        }
        out
    }

    #[test]
    fn a_warmed_transcoder_continues_the_decoder_that_heard_the_stream_from_its_start() {
        let joined_at = 40; // frames before the answer
        for codec in [
            Codec::Speex { rate: 16000 },
            Codec::Speex { rate: 8000 },
            Codec::G722,
            Codec::Nellymoser { rate: 16000 },
        ] {
            let l16 = Codec::L16 {
                rate: codec.sample_rate(),
            };
            let rate = codec.sample_rate() as usize;
            let frames = encode_stream(
                codec,
                &tone::sine(440.0, 6000.0, codec.sample_rate(), rate * 2),
            );
            // What a decoder that heard everything makes of the frames after the answer.
            let whole = decode_stream(codec, &frames);
            let heard_before: usize = decode_stream(codec, &frames[..joined_at]).len();
            let want = &whole[heard_before..];

            let mut warm = Transcoder::warming(codec, PTIME).unwrap();
            assert!(
                run(&mut warm, &frames[..joined_at]).is_empty(),
                "{codec:?}: silent while warming"
            );
            assert!(warm.is_warming());
            warm.retarget(l16, PTIME).unwrap();
            assert!(!warm.is_warming());
            let got = decode_stream(l16, &run(&mut warm, &frames[joined_at..]));
            // Output comes in whole 20 ms frames (a Nellymoser block is 256 samples).
            assert!(
                got.len() + rate / 50 > want.len(),
                "{codec:?}: {}",
                got.len()
            );
            let want = &want[..got.len()];
            assert!(
                got == want,
                "{codec:?}: the warmed decoder continues bit-exactly"
            );

            // A decoder that joins at the answer (the old behaviour) starts from nothing.
            let mut cold = Transcoder::new(codec, l16, PTIME).unwrap();
            let mut cold = decode_stream(l16, &run(&mut cold, &frames[joined_at..]));
            cold.truncate(want.len());
            assert!(
                cold != want,
                "{codec:?}: a cold decoder differs, so the test can fail"
            );
        }
        // Retargeting to a codec that needs resampling and another encoder works too.
        let frames = encode_stream(
            Codec::Speex { rate: 16000 },
            &tone::sine(1000.0, 8000.0, 16000, 16000),
        );
        let mut warm = Transcoder::warming(Codec::Speex { rate: 16000 }, PTIME).unwrap();
        run(&mut warm, &frames[..10]);
        warm.retarget(Codec::Pcmu, PTIME).unwrap();
        let out = run(&mut warm, &frames[10..]);
        assert_eq!(out.len(), frames.len() - 10);
        let pcm = decode_stream(Codec::Pcmu, &out);
        let snr = tone::snr_db(&pcm[800..], 1000.0, 8000);
        assert!(snr > 15.0, "1 kHz at {snr:.1} dB");
    }

    #[test]
    fn a_lost_opus_packet_is_recovered_from_the_next_ones_fec_not_just_concealed() {
        // 500 Hz, then 1500 Hz from the lost frame on: concealment can only extend the 500 Hz
        // it heard; the next packet's FEC data carries the lost frame's 1500 Hz. Coded as the
        // relay codes toward an Opus client from a G.711 phone: libopus at 8 kHz, 24 kbit/s.
        // (libopus adds FEC data only above a bit rate that grows with the bandwidth: at
        // 24 kbit/s a 16 or 48 kHz stream carries none.)
        let lost_at = 25;
        let mut pcm = tone::sine(500.0, 8000.0, 8000, 160 * lost_at);
        pcm.extend(tone::sine(1500.0, 8000.0, 8000, 160 * 25));
        let frames = encode_stream_from(Codec::Opus, 8000, &pcm);
        let to = Codec::L16 { rate: 8000 };
        let heard = |fec: bool| {
            let mut t = Transcoder::new(Codec::Opus, to, PTIME).unwrap();
            let mut out = run(&mut t, &frames[..lost_at]);
            let next = &frames[lost_at + 1];
            let (concealed, recovered) = if fec {
                let (c, r, res) = t.push_after_loss(next, 1);
                res.unwrap();
                (c, r)
            } else {
                let c = t.conceal(1);
                t.push(next).unwrap();
                (c, 0)
            };
            while let Some(o) = t.poll() {
                out.push(o);
            }
            out.extend(run(&mut t, &frames[lost_at + 2..]));
            assert_eq!(t.stats().recovered, u64::from(recovered));
            (decode_stream(to, &out), concealed, recovered)
        };
        let (with_fec, concealed, recovered) = heard(true);
        assert_eq!((concealed, recovered), (0, 1), "recovered, not concealed");
        let (with_plc, concealed, _) = heard(false);
        assert_eq!(concealed, 1);
        assert_eq!(
            with_fec.len(),
            with_plc.len(),
            "the same timeline either way"
        );
        // The lost frame's 20 ms at 8 kHz (the decoder's look-ahead shifts it a little).
        let lost = 160 * lost_at..160 * (lost_at + 1);
        let at = |x: &[i16], hz| tone::goertzel_rms(&x[lost.clone()], hz, 8000);
        assert!(
            at(&with_fec, 1500.0) > 2.0 * at(&with_plc, 1500.0),
            "FEC {:.0} vs PLC {:.0} rms at 1500 Hz in the lost frame",
            at(&with_fec, 1500.0),
            at(&with_plc, 1500.0)
        );
        // More losses than one: all but the last are concealed, the last recovered.
        let mut t = Transcoder::new(Codec::Opus, to, PTIME).unwrap();
        run(&mut t, &frames[..lost_at]);
        let (c, r, res) = t.push_after_loss(&frames[lost_at + 3], 3);
        assert_eq!((c, r, res), (2, 1, Ok(())));
        // Toward a client over TCP nothing is lost: no FEC data, so fewer bytes, and the next
        // packet cannot restore the lost frame.
        let tcp = encode_stream_over(Link::Reliable, Codec::Opus, 8000, &pcm);
        let bytes = |f: &[MediaFrame]| f.iter().map(|f| f.payload.len()).sum::<usize>();
        assert!(
            bytes(&tcp) * 10 < bytes(&frames) * 9,
            "{} bytes without FEC, {} with",
            bytes(&tcp),
            bytes(&frames)
        );
        let mut t = Transcoder::new(Codec::Opus, to, PTIME).unwrap();
        let mut out = run(&mut t, &tcp[..lost_at]);
        let (_, r, _) = t.push_after_loss(&tcp[lost_at + 1], 1);
        assert_eq!(r, 1, "tried");
        while let Some(o) = t.poll() {
            out.push(o);
        }
        let no_fec = decode_stream(to, &out);
        assert!(
            at(&no_fec, 1500.0) < at(&with_fec, 1500.0) / 2.0,
            "nothing to recover without FEC data"
        );
        // A codec without FEC conceals every lost frame.
        let pcmu = encode_stream(Codec::Pcmu, &tone::sine(500.0, 8000.0, 8000, 8000));
        let mut t = Transcoder::new(Codec::Pcmu, to, PTIME).unwrap();
        run(&mut t, &pcmu[..10]);
        let (c, r, res) = t.push_after_loss(&pcmu[12], 2);
        assert_eq!((c, r, res), (2, 0, Ok(())));
    }

    #[test]
    fn a_1khz_tone_keeps_frequency_and_level_through_every_supported_pair() {
        let mut worst = f64::MAX;
        for from in ALL {
            for to in ALL {
                let (frames, pcm) = through(from, to, 1000.0);
                assert!(!frames.is_empty(), "{from:?} → {to:?}: nothing out");
                // Skip the codecs' and resampler's start-up.
                let body = &pcm[pcm.len() / 4..pcm.len() * 9 / 10];
                let rate = to.sample_rate();
                let fit = tone::fit(body, 1000.0, rate);
                let level = tone::level_db(fit.tone_rms, 8000.0 / 2f64.sqrt());
                let snr = tone::snr_db(body, 1000.0, rate);
                let hz = tone::zero_crossing_hz(body, rate).unwrap_or(0.0);
                worst = worst.min(snr);
                assert!((hz - 1000.0).abs() < 15.0, "{from:?} → {to:?}: {hz:.1} Hz");
                assert!(level.abs() < 2.5, "{from:?} → {to:?}: level {level:.2} dB");
                let floor = if lossy(from) || lossy(to) { 10.0 } else { 25.0 };
                assert!(snr > floor, "{from:?} → {to:?}: SNR {snr:.1} dB");
            }
        }
        eprintln!("worst SNR over all pairs: {worst:.1} dB");
    }

    #[test]
    fn opus_and_pcmu_transcode_both_ways_in_20_ms_frames_of_960_ticks() {
        for (from, to) in [(Codec::Pcmu, Codec::Opus), (Codec::Opus, Codec::Pcmu)] {
            let (frames, pcm) = through(from, to, 1000.0);
            assert!(
                frames.len() >= 45,
                "{from:?} → {to:?}: {} frames",
                frames.len()
            );
            let step = to.clock_rate() / 50;
            for pair in frames.windows(2) {
                assert_eq!(pair[1].timestamp.wrapping_sub(pair[0].timestamp), step);
            }
            let body = &pcm[pcm.len() / 4..pcm.len() * 9 / 10];
            let snr = tone::snr_db(body, 1000.0, to.sample_rate());
            assert!(snr > 15.0, "{from:?} → {to:?}: SNR {snr:.1} dB");
        }
        let mut t = Transcoder::new(Codec::Opus, Codec::Pcmu, PTIME).unwrap();
        let bad = MediaFrame {
            codec: Codec::Opus,
            timestamp: 0,
            marker: false,
            payload: Bytes::from_static(&[0xFB, 0x00]),
        };
        assert_eq!(t.push(&bad), Err(TranscodeError::BadPayload));
    }

    #[test]
    fn output_timestamps_are_contiguous_in_the_output_clock_g722_counting_8000() {
        let (frames, _) = through(Codec::Pcmu, Codec::G722, 1000.0);
        for pair in frames.windows(2) {
            assert_eq!(pair[1].timestamp.wrapping_sub(pair[0].timestamp), 160);
            assert_eq!(pair[0].payload.len(), 160, "20 ms of G.722 is 160 octets");
        }
        let (frames, _) = through(Codec::G722, Codec::Nellymoser { rate: 8000 }, 1000.0);
        for pair in frames.windows(2) {
            assert_eq!(pair[1].timestamp.wrapping_sub(pair[0].timestamp), 256);
            assert_eq!(pair[0].payload.len(), 64);
        }
        assert!(frames[0].marker && !frames[1].marker);
    }

    #[test]
    fn an_input_gap_is_a_gap_in_the_output_timeline() {
        let input = tone::sine(1000.0, 8000.0, 8000, 8000);
        let mut frames = encode_stream(Codec::Pcmu, &input);
        // A new talk spurt 1 s later.
        for f in frames.iter_mut().skip(25) {
            f.timestamp = f.timestamp.wrapping_add(8000);
        }
        let mut t = Transcoder::new(Codec::Pcmu, Codec::L16 { rate: 16000 }, PTIME).unwrap();
        let mut out = Vec::new();
        for f in &frames {
            t.push(f).unwrap();
            while let Some(o) = t.poll() {
                out.push(o);
            }
        }
        let jumps: Vec<u32> = out
            .windows(2)
            .map(|p| p[1].timestamp.wrapping_sub(p[0].timestamp))
            .filter(|d| *d != 320)
            .collect();
        assert_eq!(jumps, vec![16000 + 320], "one gap of 1 s at 16 kHz");
        assert_eq!(out.iter().filter(|f| f.marker).count(), 2);
    }

    #[test]
    fn lost_packets_are_concealed_by_repeat_and_fade_then_silence() {
        let input = tone::sine(1000.0, 8000.0, 8000, 8000);
        let frames = encode_stream(Codec::Pcmu, &input);
        let mut t = Transcoder::new(Codec::Pcmu, Codec::Pcmu, PTIME).unwrap();
        let mut out = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            if (10..18).contains(&i) {
                continue; // 8 lost
            }
            if i == 18 {
                assert_eq!(t.conceal(8), MAX_CONCEALED, "at most 5 frames concealed");
            }
            t.push(f).unwrap();
            while let Some(o) = t.poll() {
                out.push(o);
            }
        }
        assert_eq!(t.stats().concealed, u64::from(MAX_CONCEALED));
        let pcm = decode_stream(Codec::Pcmu, &out);
        let level = |k: usize| tone::rms(&pcm[k * 160..(k + 1) * 160]);
        let full = level(5);
        assert!(
            level(10) > full * 0.6,
            "first concealed frame close to full level"
        );
        assert!(level(14) < full * 0.25, "last concealed frame faded");
        assert!(
            level(10) > level(12) && level(12) > level(14),
            "monotonic fade"
        );
        // The concealed frames continue the timeline; the real audio resumes after the gap.
        assert_eq!(out[10].timestamp.wrapping_sub(out[9].timestamp), 160);
        assert_eq!(out[15].timestamp.wrapping_sub(out[14].timestamp), 160 * 4);
        assert!(out[15].marker);
    }

    #[test]
    fn a_primed_pass_through_concealer_continues_after_the_primed_frame() {
        let input = tone::sine(1000.0, 8000.0, 8000, 1600);
        let frames = encode_stream(Codec::Pcma, &input);
        let mut t = Transcoder::new(Codec::Pcma, Codec::Pcma, PTIME).unwrap();
        t.prime(&frames[3]).unwrap();
        assert_eq!(t.conceal(2), 2);
        let a = t.poll().unwrap();
        let b = t.poll().unwrap();
        assert_eq!(a.timestamp, frames[4].timestamp);
        assert_eq!(b.timestamp, frames[5].timestamp);
        assert!(t.poll().is_none());
    }

    #[test]
    fn aac_is_decoded_only_and_speex_needs_a_speex_rate() {
        let aac = Codec::Aac {
            rate: 44100,
            stereo: true,
        };
        assert!(Transcoder::new(aac, Codec::Pcmu, PTIME).is_ok());
        assert_eq!(
            Transcoder::new(Codec::Pcmu, aac, PTIME).err(),
            Some(TranscodeError::Unsupported(aac))
        );
        let uwb = Codec::Speex { rate: 32000 };
        assert_eq!(
            Transcoder::new(uwb, Codec::Pcmu, PTIME).err(),
            Some(TranscodeError::Unsupported(uwb))
        );
    }

    #[test]
    fn opus_runs_at_the_other_legs_rate_and_stamps_48_khz() {
        // PCMU → Opus: 8 kHz into libopus, no resampler, 960 ticks per 20 ms packet.
        let (frames, _) = through(Codec::Pcmu, Codec::Opus, 1000.0);
        let t = Transcoder::new(Codec::Pcmu, Codec::Opus, PTIME).unwrap();
        assert!(t.resampler.is_none(), "Opus encodes from 8 kHz directly");
        assert_eq!(t.frame_samples(), 160);
        for pair in frames.windows(2) {
            assert_eq!(pair[1].timestamp.wrapping_sub(pair[0].timestamp), 960);
        }
        let t = Transcoder::new(Codec::Opus, Codec::Pcmu, PTIME).unwrap();
        assert!(t.resampler.is_none(), "Opus decodes to 8 kHz directly");
        // A 60 ms ptime still gives 20 ms Opus packets.
        let t = Transcoder::new(Codec::Pcmu, Codec::Opus, Duration::from_millis(60)).unwrap();
        assert_eq!(t.frame_samples(), 160);
        // 44.1 kHz AAC goes through the resampler to a wideband (16 kHz) encoder.
        assert_eq!(opus_pcm_rate(44_100), 16_000);
        assert_eq!(opus_pcm_rate(48_000), 16_000);
        assert_eq!(opus_pcm_rate(11_025), 16_000);
        let t = Transcoder::new(
            Codec::Aac {
                rate: 44100,
                stereo: false,
            },
            Codec::Opus,
            PTIME,
        )
        .unwrap();
        assert_eq!(
            (t.in_rate, t.out_rate, t.frame_samples()),
            (44100, 16000, 320)
        );
        // Speex packs several 20 ms frames per packet at a longer ptime. A wideband stream of
        // 8 kHz audio is coded from 8 kHz (narrowband frames), stamped in the 16 kHz clock.
        let t = Transcoder::new(
            Codec::Pcmu,
            Codec::Speex { rate: 16000 },
            Duration::from_millis(40),
        )
        .unwrap();
        assert_eq!(t.frame_samples(), 320, "40 ms at 8 kHz");
        assert!(t.resampler.is_none(), "no 8 → 16 kHz resampler");
        let (frames, pcm) = through(Codec::Pcmu, Codec::Speex { rate: 16000 }, 1000.0);
        for pair in frames.windows(2) {
            assert_eq!(pair[1].timestamp.wrapping_sub(pair[0].timestamp), 320);
        }
        assert!(tone::snr_db(&pcm[3200..], 1000.0, 16000) > 30.0);
        // 16 kHz audio keeps the wideband encoder.
        let t = Transcoder::new(Codec::G722, Codec::Speex { rate: 16000 }, PTIME).unwrap();
        assert_eq!((t.frame_samples(), t.resampler.is_none()), (320, true));
    }

    #[test]
    fn the_canonical_aac_config_parses_back_to_its_rate_and_channels() {
        use skybridge_codecs::aac::AudioSpecificConfig;
        for (rate, stereo) in [(44100, false), (48000, true), (8000, false), (44000, true)] {
            let (buf, len) = aac_lc_config(rate, stereo);
            let asc = AudioSpecificConfig::parse(&buf[..len]).unwrap();
            assert_eq!(asc.object_type, 2);
            assert_eq!(asc.sample_rate, rate);
            assert_eq!(asc.channels(), if stereo { 2 } else { 1 });
            assert!(!asc.short_frames && !asc.depends_on_core_coder);
        }
        assert_eq!(aac_lc_config(44100, false), ([0x12, 0x08, 0, 0, 0], 2));
    }

    /// Pseudo-random bytes (xorshift), reproducible.
    fn garbage(seed: u32, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    /// Feeds garbage of every length to a transcoder from `codec`, then real frames: no panic,
    /// every failure refused and counted, and the call's audio resumes afterwards.
    fn survives_garbage(codec: Codec, good: &[MediaFrame]) {
        let mut t = Transcoder::new(codec, Codec::Pcmu, PTIME).unwrap();
        let mut refused = 0u64;
        for (i, len) in (1..400).step_by(7).enumerate() {
            let bad = MediaFrame {
                codec,
                timestamp: i as u32 * 960,
                marker: false,
                payload: garbage((i as u32).wrapping_mul(2_654_435_761), len).into(),
            };
            if t.push(&bad).is_err() {
                refused += 1;
            }
            while t.poll().is_some() {}
        }
        assert!(refused > 0, "{codec:?}: garbage was decoded every time");
        assert_eq!(t.stats().rejected, refused);
        // Real audio after the garbage: decoded again (the next probe lets it through).
        let mut ok = 0;
        for f in good.iter().cycle().take(2 * ERROR_PROBE_EVERY as usize) {
            if t.push(f).is_ok() {
                ok += 1;
            }
        }
        assert!(
            ok > ERROR_PROBE_EVERY as usize / 2,
            "{codec:?}: {ok} good frames"
        );
    }

    #[test]
    fn garbage_speex_payloads_are_refused_without_stopping_the_stream() {
        for rate in [8000, 16000] {
            let c = Codec::Speex { rate };
            let good = encode_stream(c, &tone::sine(1000.0, 8000.0, rate, rate as usize / 5));
            survives_garbage(c, &good);
        }
        // A first frame header with an invalid mode never reaches libspeex.
        assert!(!speex_header_ok(&[0x48]) && !speex_header_ok(&[0x80]) && !speex_header_ok(&[]));
        assert!(speex_header_ok(&[0x40]));
    }

    #[test]
    fn garbage_opus_payloads_are_refused_without_stopping_the_stream() {
        let good = encode_stream(Codec::Opus, &tone::sine(1000.0, 8000.0, 48000, 9600));
        survives_garbage(Codec::Opus, &good);
    }

    #[test]
    fn garbage_aac_payloads_are_refused_without_stopping_the_stream() {
        let c = Codec::Aac {
            rate: 44100,
            stereo: false,
        };
        // No AAC encoder here: an all-zero access unit is not valid AAC; an empty one neither.
        let mut t = Transcoder::new(c, Codec::Pcmu, PTIME).unwrap();
        let mut refused = 0;
        for (i, len) in (0..4200).step_by(97).enumerate() {
            let bad = MediaFrame {
                codec: c,
                timestamp: i as u32 * 1024,
                marker: false,
                payload: garbage(i as u32 + 7, len).into(),
            };
            if t.push(&bad).is_err() {
                refused += 1;
            }
            while t.poll().is_some() {}
        }
        assert!(refused > 0);
        assert_eq!(t.stats().rejected, refused);
    }

    #[test]
    fn a_burst_of_decode_failures_is_then_probed_once_per_interval() {
        let c = Codec::Speex { rate: 16000 };
        let mut t = Transcoder::new(c, Codec::Pcmu, PTIME).unwrap();
        let bad = MediaFrame {
            codec: c,
            timestamp: 0,
            marker: false,
            payload: Bytes::from_static(&[0xFF; 20]),
        };
        let errors: Vec<_> = (0..ERROR_BURST + 2 * ERROR_PROBE_EVERY)
            .map(|_| t.push(&bad).err())
            .collect();
        let tried = errors
            .iter()
            .filter(|e| **e == Some(TranscodeError::BadPayload))
            .count();
        assert_eq!(
            tried,
            ERROR_BURST as usize + 2,
            "burst, then one try per interval"
        );
        assert_eq!(
            t.stats().rejected,
            u64::from(ERROR_BURST + 2 * ERROR_PROBE_EVERY)
        );
    }

    #[test]
    fn opus_and_speex_losses_are_concealed_by_the_codec() {
        for c in [Codec::Opus, Codec::Speex { rate: 16000 }] {
            let rate = c.sample_rate();
            let frames = encode_stream(c, &tone::sine(1000.0, 8000.0, rate, rate as usize / 2));
            let mut t = Transcoder::new(c, Codec::L16 { rate: 16000 }, PTIME).unwrap();
            let mut out = Vec::new();
            for (i, f) in frames.iter().enumerate() {
                if (10..13).contains(&i) {
                    continue;
                }
                if i == 13 {
                    assert_eq!(t.conceal(3), 3, "{c:?}");
                }
                t.push(f).unwrap();
                while let Some(o) = t.poll() {
                    out.push(o);
                }
            }
            assert_eq!(t.stats().concealed, 3);
            // The concealed frames fill the gap: the timeline is contiguous, no new spurt.
            for pair in out.windows(2) {
                assert_eq!(
                    pair[1].timestamp.wrapping_sub(pair[0].timestamp),
                    320,
                    "{c:?}"
                );
            }
            assert_eq!(out.iter().filter(|f| f.marker).count(), 1, "{c:?}");
            let pcm = decode_stream(Codec::L16 { rate: 16000 }, &out);
            let concealed = tone::rms(&pcm[320 * 10..320 * 11]);
            assert!(concealed > 1000.0, "{c:?}: PLC frame level {concealed:.0}");
        }
    }

    #[test]
    fn malformed_payloads_are_refused_and_counted() {
        let mut t = Transcoder::new(Codec::Nellymoser { rate: 8000 }, Codec::Pcmu, PTIME).unwrap();
        let bad = MediaFrame {
            codec: Codec::Nellymoser { rate: 8000 },
            timestamp: 0,
            marker: false,
            payload: Bytes::from_static(&[0u8; 63]),
        };
        assert_eq!(t.push(&bad), Err(TranscodeError::BadPayload));
        let huge = MediaFrame {
            payload: Bytes::from(vec![0u8; 64 * 65]),
            ..bad.clone()
        };
        assert_eq!(t.push(&huge), Err(TranscodeError::TooLong));
        assert_eq!(t.stats().rejected, 2);
    }
}
