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
//! Nellymoser. Speex, Opus and AAC are named by [`Codec`] but their coders are not here yet:
//! [`Transcoder::new`] returns [`TranscodeError::Unsupported`] for them (see the `TODO(codecs)`
//! arms of [`Decoder`] and [`Encoder`]).

pub mod pool;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use skybridge_codecs::g722::{G722Decoder, G722Encoder};
use skybridge_codecs::nellymoser::{NellymoserDecoder, NellymoserEncoder, SAMPLES_PER_BLOCK};
use skybridge_codecs::opus::{OpusDecoder, OpusEncoder, OpusError};
use skybridge_codecs::resample::Resampler;
use skybridge_codecs::{g711, l16};

use crate::media::{Codec, MediaFrame};

/// Most samples (all channels) one input frame may decode to: 170 ms of 48 kHz stereo.
pub const MAX_DECODED: usize = 16 * 1024;
/// Most frames concealed in a row; after that the output has a gap.
pub const MAX_CONCEALED: u32 = 5;
/// Output frames of `BytesMut` reserved at once (one allocation per this many frames).
const OUT_CHUNK_FRAMES: usize = 16;

/// Why a transcoder could not be built or a frame not converted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    /// No coder for this codec yet (Speex, Opus, AAC), or a rate the resampler lacks.
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
}

/// The decoders, one arm per codec. TODO(codecs): Speex, Opus and AAC arms go here when the
/// `codecs` wrappers land (they are refused by [`Decoder::new`] until then).
enum Decoder {
    Ulaw,
    Alaw,
    L16Be,
    PcmLe,
    G722(Box<G722Decoder>),
    Nellymoser(Box<NellymoserDecoder>),
    // Minimal Opus arm of branch wsopus (WebSocket Opus); branch plug's arm supersedes it.
    Opus(Box<OpusDecoder>),
}

/// Opus bit rate we encode at: wideband speech.
const OPUS_BITRATE: i32 = 24_000;

impl Decoder {
    fn new(codec: Codec) -> Result<Decoder, TranscodeError> {
        Ok(match codec {
            Codec::Pcmu => Decoder::Ulaw,
            Codec::Pcma => Decoder::Alaw,
            Codec::L16 { .. } => Decoder::L16Be,
            Codec::PcmLe { .. } => Decoder::PcmLe,
            Codec::G722 => Decoder::G722(Box::default()),
            Codec::Nellymoser { .. } => Decoder::Nellymoser(Box::default()),
            Codec::Opus => Decoder::Opus(Box::new(
                OpusDecoder::new(codec.sample_rate())
                    .map_err(|_| TranscodeError::Unsupported(codec))?,
            )),
            // TODO(codecs): Speex (NB/WB) and AAC-LC decoders.
            Codec::Speex { .. } | Codec::Aac { .. } => {
                return Err(TranscodeError::Unsupported(codec))
            }
        })
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
            Decoder::Opus(d) => d.decode(Some(payload), out).map_err(|e| match e {
                OpusError::OutputTooSmall { .. } | OpusError::BufferTooSmall => {
                    TranscodeError::TooLong
                }
                _ => TranscodeError::BadPayload,
            }),
        }
    }
}

/// The encoders, one arm per codec. TODO(codecs): Speex and Opus arms go here (and AAC if a
/// client ever needs it) when the `codecs` wrappers land.
enum Encoder {
    Ulaw,
    Alaw,
    L16Be,
    PcmLe,
    G722(Box<G722Encoder>),
    Nellymoser(Box<NellymoserEncoder>),
    Opus(Box<OpusEncoder>),
}

impl Encoder {
    fn new(codec: Codec) -> Result<Encoder, TranscodeError> {
        Ok(match codec {
            Codec::Pcmu => Encoder::Ulaw,
            Codec::Pcma => Encoder::Alaw,
            Codec::L16 { .. } => Encoder::L16Be,
            Codec::PcmLe { stereo: false, .. } => Encoder::PcmLe,
            Codec::G722 => Encoder::G722(Box::default()),
            Codec::Nellymoser { .. } => Encoder::Nellymoser(Box::default()),
            Codec::Opus => Encoder::Opus(Box::new(
                OpusEncoder::new(codec.sample_rate(), OPUS_BITRATE)
                    .map_err(|_| TranscodeError::Unsupported(codec))?,
            )),
            // TODO(codecs): Speex encoder. Stereo PCM is never chosen for output.
            Codec::PcmLe { stereo: true, .. } | Codec::Speex { .. } | Codec::Aac { .. } => {
                return Err(TranscodeError::Unsupported(codec))
            }
        })
    }

    /// Samples per coding unit (a frame's sample count is a multiple of it).
    fn block(&self) -> usize {
        match self {
            Encoder::G722(_) => 2,
            Encoder::Nellymoser(_) => SAMPLES_PER_BLOCK,
            Encoder::Opus(e) => e.frame_samples(),
            _ => 1,
        }
    }

    /// Samples per output frame whatever the frame time asked for (Opus: always 20 ms).
    fn fixed_frame(&self) -> Option<usize> {
        match self {
            Encoder::Opus(e) => Some(e.frame_samples()),
            _ => None,
        }
    }

    /// Bytes the encoding of `samples` mono samples takes.
    fn encoded_len(&self, samples: usize) -> usize {
        match self {
            Encoder::Ulaw | Encoder::Alaw => samples,
            Encoder::L16Be | Encoder::PcmLe => samples * 2,
            Encoder::G722(_) => samples / 2,
            Encoder::Nellymoser(_) => samples / SAMPLES_PER_BLOCK * 64,
            Encoder::Opus(_) => skybridge_codecs::opus::MAX_PACKET,
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
    /// Input frames refused (malformed, too long, wrong codec).
    pub rejected: u64,
}

/// One direction of one call's transcoding. See the module docs.
pub struct Transcoder {
    from: Codec,
    to: Codec,
    decoder: Decoder,
    encoder: Encoder,
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
    stats: TranscodeStats,
    /// Finished output frames, taken by [`Transcoder::poll`].
    ready: std::collections::VecDeque<MediaFrame>,
}

impl Transcoder {
    /// A transcoder from `from` to `to` whose output frames last `frame` (rounded up to the
    /// output coder's block: 256 samples for Nellymoser).
    pub fn new(from: Codec, to: Codec, frame: Duration) -> Result<Transcoder, TranscodeError> {
        let decoder = Decoder::new(from)?;
        let encoder = Encoder::new(to)?;
        let (in_rate, out_rate) = (from.sample_rate(), to.sample_rate());
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
        let frame_samples = encoder
            .fixed_frame()
            .unwrap_or(wanted.div_ceil(block) * block);
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
            stats: TranscodeStats::default(),
            ready: std::collections::VecDeque::with_capacity(64),
        })
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
        let n = match self.decoder.decode(&frame.payload, &mut self.decoded) {
            Ok(n) => n,
            Err(e) => {
                self.stats.rejected += 1;
                return Err(e);
            }
        };
        let mono = downmix(&mut self.decoded, n, self.from.channels());
        self.stats.frames_in += 1;
        let ticks = ticks_for(self.from, mono);
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
            self.last_ticks = ticks_for(self.from, mono);
        }
        // The concealed frames follow this one directly.
        let after = frame.timestamp.wrapping_add(ticks_for(self.from, mono));
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
    /// frames (in a row, across calls) by repeating the last frame with a falling gain.
    /// Returns the frames synthesised.
    pub fn conceal(&mut self, lost: u32) -> u32 {
        if self.last_len == 0 || self.next_in_ts.is_none() {
            return 0;
        }
        let mut made = 0;
        for _ in 0..lost {
            if self.concealed_run >= MAX_CONCEALED {
                break;
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
        let pending_ticks = ticks_for(self.to, self.pending_len);
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
            self.pending_ts = self.pending_ts.wrapping_add(ticks_for(self.to, fs));
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

/// Clock ticks `samples` mono samples of `codec` span (G.722: half the samples).
fn ticks_for(codec: Codec, samples: usize) -> u32 {
    let t = samples as u64 * u64::from(codec.clock_rate()) / u64::from(codec.sample_rate().max(1));
    t as u32
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
        let mut t = Transcoder::new(
            Codec::L16 {
                rate: codec.sample_rate(),
            },
            codec,
            PTIME,
        )
        .unwrap();
        let mut frames = Vec::new();
        let step = codec.sample_rate() as usize / 50;
        for (i, chunk) in pcm.chunks(step).enumerate() {
            let mut payload = vec![0u8; chunk.len() * 2];
            l16::encode_be(chunk, &mut payload).unwrap();
            // In the L16 input's clock (the codec's sample rate).
            let ts = (i * step) as u32;
            t.push(&MediaFrame {
                codec: Codec::L16 {
                    rate: codec.sample_rate(),
                },
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
        let mut d = Decoder::new(codec).unwrap();
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

    const ALL: [Codec; 9] = [
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
    ];

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
                let floor = if matches!(from, Codec::Nellymoser { .. })
                    || matches!(to, Codec::Nellymoser { .. })
                {
                    12.0
                } else {
                    25.0
                };
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
    fn speex_and_aac_are_refused_until_their_coders_land() {
        for c in [
            Codec::Speex { rate: 16000 },
            Codec::Aac {
                rate: 44100,
                stereo: true,
            },
        ] {
            assert_eq!(
                Transcoder::new(c, Codec::Pcmu, PTIME).err(),
                Some(TranscodeError::Unsupported(c))
            );
            assert_eq!(
                Transcoder::new(Codec::Pcmu, c, PTIME).err(),
                Some(TranscodeError::Unsupported(c))
            );
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
