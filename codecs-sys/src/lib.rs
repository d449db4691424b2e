//! The one place skybridge calls C: a small safe wrapper over the system's libspeex
//! (Debian `libspeex-dev`, linked through pkg-config).
//!
//! Why a crate of our own: the published safe wrapper (`speex-safe` 0.6) leaks every
//! `SpeexBits` buffer (no `Drop`), panics on unexpected library return values, has `todo!()` in
//! its public API, its coders are not `Send` (a call task could not hold one), and its
//! `speex-sys` compiles a bundled libspeex and runs bindgen (libclang) at build time. The
//! surface we need is eleven functions and one plain struct, so we declare them here, against
//! the Debian library, and keep `unsafe` out of every other crate of the workspace.
//!
//! Every `unsafe` block carries a `SAFETY:` comment. The invariants they rely on:
//! - `state` pointers come from `speex_{en,de}coder_init`, are checked non-null, are owned by
//!   exactly one Rust value and destroyed once, in its `Drop`;
//! - `Bits` is initialised by `speex_bits_init` (which allocates its own 2000-byte buffer)
//!   and destroyed once; we never feed it more than [`MAX_PACKET_BYTES`] (< 2000), so
//!   libspeex never reallocates it while reading, and packets never grow it past that while
//!   writing (at most [`MAX_FRAMES_PER_PACKET`] frames of ≤ 106 bytes);
//! - every sample pointer passed to libspeex points at a buffer of at least one frame
//!   (`frame_samples()` samples for the mode the state was created with).
//!
//! Per frame nothing is allocated: libspeex works in the state it allocated at init
//! (`tests/no_alloc.rs` counts every heap call of the process, libspeex's included).
//!
//! Encoders take [`SpeexEncoderSettings`] (quality, complexity, wideband high-band submode);
//! [`SpeexEncoder::narrowband_for_wideband`] codes 8 kHz audio as a stream wideband decoders
//! play, without the wideband encoder's QMF split and high-band search.

use std::ffi::{c_char, c_int, c_void};
use std::ptr::NonNull;

/// Mirror of libspeex's `SpeexBits` (speex/speex_bits.h, 1.2): a bit-stream cursor over a
/// byte buffer it owns.
#[repr(C)]
struct RawBits {
    chars: *mut c_char,
    nb_bits: c_int,
    char_ptr: c_int,
    bit_ptr: c_int,
    owner: c_int,
    overflow: c_int,
    buf_size: c_int,
    reserved1: c_int,
    reserved2: *mut c_void,
}

/// Opaque `SpeexMode` (only ever handled by pointer).
#[repr(C)]
struct RawMode {
    _private: [u8; 0],
}

#[link(name = "speex")]
extern "C" {
    fn speex_lib_get_mode(mode: c_int) -> *const RawMode;
    fn speex_encoder_init(mode: *const RawMode) -> *mut c_void;
    fn speex_encoder_destroy(state: *mut c_void);
    fn speex_encoder_ctl(state: *mut c_void, request: c_int, ptr: *mut c_void) -> c_int;
    fn speex_encode_int(state: *mut c_void, input: *mut i16, bits: *mut RawBits) -> c_int;
    fn speex_decoder_init(mode: *const RawMode) -> *mut c_void;
    fn speex_decoder_destroy(state: *mut c_void);
    fn speex_decode_int(state: *mut c_void, bits: *mut RawBits, out: *mut i16) -> c_int;
    fn speex_bits_init(bits: *mut RawBits);
    fn speex_bits_destroy(bits: *mut RawBits);
    fn speex_bits_reset(bits: *mut RawBits);
    fn speex_bits_read_from(bits: *mut RawBits, bytes: *const c_char, len: c_int);
    fn speex_bits_write(bits: *mut RawBits, bytes: *mut c_char, max_len: c_int) -> c_int;
    fn speex_bits_nbytes(bits: *mut RawBits) -> c_int;
    fn speex_bits_remaining(bits: *mut RawBits) -> c_int;
}

const SPEEX_MODEID_NB: c_int = 0;
const SPEEX_MODEID_WB: c_int = 1;
const SPEEX_SET_QUALITY: c_int = 4;
const SPEEX_SET_HIGH_MODE: c_int = 10;
const SPEEX_SET_COMPLEXITY: c_int = 16;
const SPEEX_GET_COMPLEXITY: c_int = 17;

/// Highest wideband high-band submode (libspeex's `sb_wb_mode` has submodes 0..=4; larger
/// values would index past its table, so we never pass one).
pub const MAX_HIGH_BAND_MODE: u8 = 4;

/// Largest packet [`SpeexDecoder::decode`] accepts, in bytes (below libspeex's 2000-byte bit
/// buffer, so reading never reallocates).
pub const MAX_PACKET_BYTES: usize = 1500;

/// Most frames [`SpeexEncoder::encode`] packs into one packet.
pub const MAX_FRAMES_PER_PACKET: usize = 10;

/// Samples of the largest frame (wideband, 20 ms at 16 kHz).
const MAX_FRAME: usize = 320;

/// Speex mode: narrowband (8 kHz) or wideband (16 kHz); both code 20 ms frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpeexMode {
    /// 8 kHz, 160 samples per frame.
    Narrowband,
    /// 16 kHz, 320 samples per frame (what Flash Player sends, FLV SoundFormat 11).
    Wideband,
}

impl SpeexMode {
    /// PCM samples in one 20 ms frame.
    pub const fn frame_samples(self) -> usize {
        match self {
            SpeexMode::Narrowband => 160,
            SpeexMode::Wideband => 320,
        }
    }

    /// PCM sample rate (and RTP clock rate, RFC 5574 §3.1) in Hz.
    pub const fn sample_rate(self) -> u32 {
        match self {
            SpeexMode::Narrowband => 8_000,
            SpeexMode::Wideband => 16_000,
        }
    }

    fn id(self) -> c_int {
        match self {
            SpeexMode::Narrowband => SPEEX_MODEID_NB,
            SpeexMode::Wideband => SPEEX_MODEID_WB,
        }
    }

    fn raw(self) -> Result<NonNull<RawMode>, SpeexError> {
        // SAFETY: speex_lib_get_mode only reads its integer argument and returns a pointer to
        // an immutable static mode table (or null for an unknown id, checked below).
        let ptr = unsafe { speex_lib_get_mode(self.id()) };
        NonNull::new(ptr.cast_mut()).ok_or(SpeexError::Init)
    }
}

/// Errors from the Speex coders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpeexError {
    /// libspeex could not create a coder (out of memory or unknown mode).
    #[error("libspeex could not create the coder")]
    Init,
    /// The PCM length is not 1..=MAX_FRAMES_PER_PACKET whole frames.
    #[error("{got} samples is not a whole number (1..=10) of {frame}-sample frames")]
    FrameSize {
        /// Samples given.
        got: usize,
        /// Samples per frame of the mode.
        frame: usize,
    },
    /// An empty packet (use `decode(None, …)` for a lost one).
    #[error("empty Speex packet")]
    Empty,
    /// The packet is longer than [`MAX_PACKET_BYTES`].
    #[error("Speex packet of {0} bytes is too long")]
    PacketTooLong(usize),
    /// The bit stream is corrupt (invalid mode, or read past its end).
    #[error("corrupt Speex bit stream")]
    Corrupt,
    /// The output buffer is shorter than the result.
    #[error("output buffer holds {got} items, {needed} needed")]
    OutputTooSmall {
        /// Items the call produces (at least).
        needed: usize,
        /// Items the output buffer holds.
        got: usize,
    },
}

/// Encoder settings beyond the mode: what libspeex codes (quality, high band) and how hard it
/// searches (complexity). VBR, VAD and DTX stay off (libspeex's defaults): a constant bit
/// rate and no silence frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpeexEncoderSettings {
    /// Quality 0..=10 (clamped): picks the narrowband submode (and, wideband, the high-band
    /// one). 8 ≈ 15 kbit/s narrowband, ≈ 23.8 kbit/s wideband.
    pub quality: u8,
    /// Search effort 0..=10 (clamped; libspeex raises the wideband high band's to 1).
    /// libspeex's own default is 2.
    pub complexity: u8,
    /// Wideband only: the high-band submode 1..=[`MAX_HIGH_BAND_MODE`] (clamped; 0 means 1)
    /// instead of the one `quality` picks. Ignored by narrowband coders.
    pub high_band_mode: Option<u8>,
}

impl SpeexEncoderSettings {
    /// `quality` at complexity 3 (as ffmpeg's libspeex encoder), high band by quality: what
    /// [`SpeexEncoder::new`] uses.
    pub const fn new(quality: u8) -> SpeexEncoderSettings {
        SpeexEncoderSettings {
            quality,
            complexity: 3,
            high_band_mode: None,
        }
    }
}

/// An owned, initialised `SpeexBits`.
struct Bits(RawBits);

impl Bits {
    fn new() -> Result<Bits, SpeexError> {
        let mut raw = RawBits {
            chars: std::ptr::null_mut(),
            nb_bits: 0,
            char_ptr: 0,
            bit_ptr: 0,
            owner: 0,
            overflow: 0,
            buf_size: 0,
            reserved1: 0,
            reserved2: std::ptr::null_mut(),
        };
        // SAFETY: `raw` is a valid, writable RawBits with the C layout; speex_bits_init fills
        // every field and allocates `chars` (left null on allocation failure, checked below).
        unsafe { speex_bits_init(&mut raw) };
        if raw.chars.is_null() {
            return Err(SpeexError::Init);
        }
        Ok(Bits(raw))
    }

    fn ptr(&mut self) -> *mut RawBits {
        &mut self.0
    }
}

impl Drop for Bits {
    fn drop(&mut self) {
        // SAFETY: initialised by speex_bits_init in `Bits::new` (non-null buffer it owns),
        // destroyed exactly once here.
        unsafe { speex_bits_destroy(self.ptr()) }
    }
}

/// A Speex encoder of one mode.
pub struct SpeexEncoder {
    state: NonNull<c_void>,
    bits: Bits,
    /// Mode of the coder (the PCM it takes).
    mode: SpeexMode,
    /// Mode of the decoder its packets are for.
    stream_mode: SpeexMode,
    /// libspeex takes a mutable input pointer; we give it a copy, never the caller's slice.
    scratch: [i16; MAX_FRAME],
}

// SAFETY: the encoder state is heap memory owned only by this value; libspeex keeps no
// thread-affine or global mutable state for it (modes are immutable statics), so moving it
// to another thread is sound. It is not `Sync` (raw pointers), and needs not be.
unsafe impl Send for SpeexEncoder {}

impl SpeexEncoder {
    /// An encoder for `mode` at `quality` 0..=10 (clamped; 8 ≈ 15 kbit/s narrowband,
    /// 8 ≈ 23.8 kbit/s wideband), complexity 3 (as ffmpeg; at 2 and below a pure tone we
    /// encode drives ffmpeg's float decoder unstable).
    pub fn new(mode: SpeexMode, quality: u8) -> Result<SpeexEncoder, SpeexError> {
        SpeexEncoder::with_settings(mode, SpeexEncoderSettings::new(quality))
    }

    /// An encoder for `mode` with explicit `settings`.
    pub fn with_settings(
        mode: SpeexMode,
        settings: SpeexEncoderSettings,
    ) -> Result<SpeexEncoder, SpeexError> {
        let raw_mode = mode.raw()?;
        // SAFETY: `raw_mode` is a valid mode table from speex_lib_get_mode; the returned state
        // is checked for null.
        let state = unsafe { speex_encoder_init(raw_mode.as_ptr()) };
        let state = NonNull::new(state).ok_or(SpeexError::Init)?;
        let mut enc = SpeexEncoder {
            state,
            bits: Bits::new()?,
            mode,
            stream_mode: mode,
            scratch: [0; MAX_FRAME],
        };
        enc.ctl(SPEEX_SET_QUALITY, c_int::from(settings.quality.min(10)));
        enc.ctl(
            SPEEX_SET_COMPLEXITY,
            c_int::from(settings.complexity.min(10)),
        );
        if let (SpeexMode::Wideband, Some(high)) = (mode, settings.high_band_mode) {
            // After SET_QUALITY, which also sets the high-band submode.
            enc.ctl(
                SPEEX_SET_HIGH_MODE,
                c_int::from(high.clamp(1, MAX_HIGH_BAND_MODE)),
            );
        }
        Ok(enc)
    }

    /// A wideband *stream* coded from 8 kHz PCM: a narrowband coder (160-sample frames at
    /// 8 kHz) whose packets every wideband decoder plays, at 16 kHz with nothing above 4 kHz.
    ///
    /// Speex's bit stream is embedded: a wideband frame is a narrowband frame followed by an
    /// optional high-band layer that starts with a `1` bit; a wideband decoder that finds no
    /// such layer (the next bit is the `0` that starts the next narrowband frame, the padding's
    /// `0`, or the packet's end) decodes the frame with a silent high band (libspeex
    /// `sb_decode`, ffmpeg's native decoder alike). For audio that comes from an 8 kHz leg this
    /// drops the 8 → 16 kHz resampler, the QMF split and the high-band search, and spends no
    /// bits on a band that holds nothing. `settings.high_band_mode` is ignored.
    pub fn narrowband_for_wideband(
        settings: SpeexEncoderSettings,
    ) -> Result<SpeexEncoder, SpeexError> {
        let mut enc = SpeexEncoder::with_settings(SpeexMode::Narrowband, settings)?;
        enc.stream_mode = SpeexMode::Wideband;
        Ok(enc)
    }

    fn ctl(&mut self, request: c_int, value: c_int) {
        let mut v = value;
        // SAFETY: `state` is a live encoder state; every request used here (SET_QUALITY,
        // SET_COMPLEXITY, SET_HIGH_MODE) reads one c_int through `ptr`, which points at a live
        // local. SET_HIGH_MODE indexes a table with the value unchecked, so the one caller
        // passes only 1..=MAX_HIGH_BAND_MODE.
        unsafe { speex_encoder_ctl(self.state.as_ptr(), request, (&mut v as *mut c_int).cast()) };
    }

    /// The complexity libspeex uses (after its own clamping).
    pub fn complexity(&self) -> u8 {
        let mut v: c_int = 0;
        // SAFETY: `state` is a live encoder state; GET_COMPLEXITY writes one c_int through
        // `ptr`, which points at a live local.
        unsafe {
            speex_encoder_ctl(
                self.state.as_ptr(),
                SPEEX_GET_COMPLEXITY,
                (&mut v as *mut c_int).cast(),
            )
        };
        u8::try_from(v).unwrap_or(u8::MAX)
    }

    /// The mode of the decoder its packets are for: [`SpeexEncoder::mode`], except for
    /// [`SpeexEncoder::narrowband_for_wideband`] (wideband).
    pub fn stream_mode(&self) -> SpeexMode {
        self.stream_mode
    }

    /// The mode this encoder codes: its PCM rate and frame size (`frame_samples()` samples at
    /// `sample_rate()` per 20 ms frame).
    pub fn mode(&self) -> SpeexMode {
        self.mode
    }

    /// Encodes 1..=[`MAX_FRAMES_PER_PACKET`] whole frames of `pcm` into one packet (frames
    /// concatenated, padded to a whole octet with `0` then `1`s, RFC 5574 §3.3); returns the
    /// bytes written to `out`.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, SpeexError> {
        let frame = self.mode.frame_samples();
        if pcm.is_empty() || pcm.len() % frame != 0 || pcm.len() / frame > MAX_FRAMES_PER_PACKET {
            return Err(SpeexError::FrameSize {
                got: pcm.len(),
                frame,
            });
        }
        // SAFETY: `bits` is initialised (Bits::new).
        unsafe { speex_bits_reset(self.bits.ptr()) };
        for chunk in pcm.chunks_exact(frame) {
            self.scratch[..frame].copy_from_slice(chunk);
            // SAFETY: `state` is a live encoder of `self.mode`, which reads exactly `frame`
            // samples from `scratch` (MAX_FRAME ≥ frame); `bits` is initialised and, with at
            // most MAX_FRAMES_PER_PACKET frames, stays inside its own buffer.
            unsafe {
                speex_encode_int(
                    self.state.as_ptr(),
                    self.scratch.as_mut_ptr(),
                    self.bits.ptr(),
                )
            };
        }
        // SAFETY: `bits` is initialised.
        let needed = unsafe { speex_bits_nbytes(self.bits.ptr()) };
        let needed = usize::try_from(needed).map_err(|_| SpeexError::Corrupt)?;
        if out.len() < needed {
            return Err(SpeexError::OutputTooSmall {
                needed,
                got: out.len(),
            });
        }
        let max = c_int::try_from(needed).map_err(|_| SpeexError::Corrupt)?;
        // SAFETY: `out` is writable for `needed` ≥ `max` bytes; speex_bits_write writes at
        // most `max` bytes.
        let written = unsafe { speex_bits_write(self.bits.ptr(), out.as_mut_ptr().cast(), max) };
        usize::try_from(written).map_err(|_| SpeexError::Corrupt)
    }
}

impl Drop for SpeexEncoder {
    fn drop(&mut self) {
        // SAFETY: created by speex_encoder_init, destroyed exactly once here.
        unsafe { speex_encoder_destroy(self.state.as_ptr()) }
    }
}

/// A Speex decoder of one mode, with libspeex's perceptual enhancer on (its default).
pub struct SpeexDecoder {
    state: NonNull<c_void>,
    bits: Bits,
    mode: SpeexMode,
    scratch: [i16; MAX_FRAME],
}

// SAFETY: as for SpeexEncoder: exclusively owned heap state, no thread affinity.
unsafe impl Send for SpeexDecoder {}

impl SpeexDecoder {
    /// A decoder for `mode`.
    pub fn new(mode: SpeexMode) -> Result<SpeexDecoder, SpeexError> {
        let raw_mode = mode.raw()?;
        // SAFETY: `raw_mode` is a valid mode table; the returned state is checked for null.
        let state = unsafe { speex_decoder_init(raw_mode.as_ptr()) };
        let state = NonNull::new(state).ok_or(SpeexError::Init)?;
        Ok(SpeexDecoder {
            state,
            bits: Bits::new()?,
            mode,
            scratch: [0; MAX_FRAME],
        })
    }

    /// The mode this decoder decodes.
    pub fn mode(&self) -> SpeexMode {
        self.mode
    }

    /// Decodes every frame of `packet` (one or more, RFC 5574 §3.3; the count is found from
    /// the bit stream) into `out`, returning the samples written. `None` is a lost packet:
    /// libspeex's concealment fills one frame.
    pub fn decode(&mut self, packet: Option<&[u8]>, out: &mut [i16]) -> Result<usize, SpeexError> {
        let frame = self.mode.frame_samples();
        let Some(packet) = packet else {
            let got = out.len();
            let dst = out
                .get_mut(..frame)
                .ok_or(SpeexError::OutputTooSmall { needed: frame, got })?;
            // SAFETY: a null bits pointer asks for concealment; `dst` holds `frame` samples,
            // exactly what a decoder of this mode writes.
            unsafe {
                speex_decode_int(self.state.as_ptr(), std::ptr::null_mut(), dst.as_mut_ptr())
            };
            return Ok(frame);
        };
        if packet.is_empty() {
            return Err(SpeexError::Empty);
        }
        if packet.len() > MAX_PACKET_BYTES {
            return Err(SpeexError::PacketTooLong(packet.len()));
        }
        let len =
            c_int::try_from(packet.len()).map_err(|_| SpeexError::PacketTooLong(packet.len()))?;
        // SAFETY: `packet` is readable for `len` bytes; `len` ≤ MAX_PACKET_BYTES < the bit
        // buffer's 2000 bytes, so libspeex copies it without reallocating.
        unsafe { speex_bits_read_from(self.bits.ptr(), packet.as_ptr().cast(), len) };
        let mut written = 0usize;
        loop {
            // SAFETY: `state` is a live decoder of `self.mode`, which writes exactly `frame`
            // samples into `scratch` (MAX_FRAME ≥ frame); `bits` holds the packet just read and
            // libspeex's reader never goes past its end (it flags overflow instead).
            let ret = unsafe {
                speex_decode_int(
                    self.state.as_ptr(),
                    self.bits.ptr(),
                    self.scratch.as_mut_ptr(),
                )
            };
            // SAFETY: `bits` is initialised.
            let remaining = unsafe { speex_bits_remaining(self.bits.ptr()) };
            match ret {
                -1 => break,
                0 if remaining >= 0 => {}
                _ => return Err(SpeexError::Corrupt),
            }
            let got = out.len();
            let dst = out
                .get_mut(written..written + frame)
                .ok_or(SpeexError::OutputTooSmall {
                    needed: written + frame,
                    got,
                })?;
            dst.copy_from_slice(&self.scratch[..frame]);
            written += frame;
        }
        if written == 0 {
            return Err(SpeexError::Corrupt);
        }
        Ok(written)
    }
}

impl Drop for SpeexDecoder {
    fn drop(&mut self) {
        // SAFETY: created by speex_decoder_init, destroyed exactly once here.
        unsafe { speex_decoder_destroy(self.state.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tone(rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn several_frames_in_one_packet_decode_to_as_many_frames() {
        for mode in [SpeexMode::Narrowband, SpeexMode::Wideband] {
            let f = mode.frame_samples();
            let pcm = tone(mode.sample_rate(), f * 3);
            let mut enc = SpeexEncoder::new(mode, 8).unwrap();
            let mut dec = SpeexDecoder::new(mode).unwrap();
            let mut pkt = [0u8; 400];
            let n = enc.encode(&pcm, &mut pkt).unwrap();
            let mut out = [0i16; 960];
            assert_eq!(dec.decode(Some(&pkt[..n]), &mut out), Ok(f * 3), "{mode:?}");
        }
    }

    /// Bytes of one encoded 20 ms frame (constant bit rate: every frame is alike).
    fn frame_bytes(enc: &mut SpeexEncoder) -> usize {
        let f = enc.mode().frame_samples();
        let pcm = tone(enc.mode().sample_rate(), f);
        let mut pkt = [0u8; 200];
        enc.encode(&pcm, &mut pkt).unwrap()
    }

    fn settings(quality: u8, complexity: u8, high: Option<u8>) -> SpeexEncoderSettings {
        SpeexEncoderSettings {
            quality,
            complexity,
            high_band_mode: high,
        }
    }

    #[test]
    fn settings_pick_the_submodes_and_complexity_libspeex_codes_with() {
        let wb = |q, c, h| SpeexEncoder::with_settings(SpeexMode::Wideband, settings(q, c, h));
        // Wideband quality 8: narrowband submode 6 (364 bits) + high-band submode 3.
        assert_eq!(frame_bytes(&mut wb(8, 3, None).unwrap()), 70);
        assert_eq!(frame_bytes(&mut wb(8, 3, Some(2)).unwrap()), 60);
        assert_eq!(frame_bytes(&mut wb(8, 3, Some(1)).unwrap()), 50);
        assert_eq!(frame_bytes(&mut wb(9, 3, Some(1)).unwrap()), 66);
        // Out-of-range high-band submodes are clamped to 1..=4, never handed to libspeex.
        assert_eq!(frame_bytes(&mut wb(8, 3, Some(0)).unwrap()), 50);
        assert_eq!(
            frame_bytes(&mut wb(8, 3, Some(200)).unwrap()),
            frame_bytes(&mut wb(8, 3, Some(MAX_HIGH_BAND_MODE)).unwrap())
        );
        // The same settings through `new`.
        let mut default = SpeexEncoder::new(SpeexMode::Wideband, 8).unwrap();
        assert_eq!(frame_bytes(&mut default), 70);
        assert_eq!(default.complexity(), 3);
        // Complexity: clamped to 10 by us, raised to 1 by libspeex's wideband coder.
        assert_eq!(wb(8, 200, None).unwrap().complexity(), 10);
        assert_eq!(wb(8, 0, None).unwrap().complexity(), 1);
        let nb = |q, c| SpeexEncoder::with_settings(SpeexMode::Narrowband, settings(q, c, None));
        assert_eq!(nb(8, 0).unwrap().complexity(), 0);
        // Narrowband quality 8, 9, 10: submodes 5, 6, 7 (300, 364, 492 bits); the high band
        // setting is ignored.
        assert_eq!(frame_bytes(&mut nb(8, 3).unwrap()), 38);
        assert_eq!(frame_bytes(&mut nb(9, 3).unwrap()), 46);
        assert_eq!(frame_bytes(&mut nb(10, 3).unwrap()), 62);
        let mut nb_high =
            SpeexEncoder::with_settings(SpeexMode::Narrowband, settings(10, 3, Some(1))).unwrap();
        assert_eq!(frame_bytes(&mut nb_high), 62);
    }

    #[test]
    fn narrowband_for_wideband_takes_8_khz_frames_and_decodes_in_a_wideband_decoder() {
        let mut enc = SpeexEncoder::narrowband_for_wideband(settings(10, 3, Some(1))).unwrap();
        assert_eq!(enc.mode(), SpeexMode::Narrowband);
        assert_eq!(enc.stream_mode(), SpeexMode::Wideband);
        assert_eq!(enc.complexity(), 3);
        let mut dec = SpeexDecoder::new(SpeexMode::Wideband).unwrap();
        let pcm = tone(8000, 160 * 3);
        let mut pkt = [0u8; 400];
        let mut out = [0i16; 320 * 4];
        // One frame per packet: 62 bytes (narrowband submode 7), 320 samples at 16 kHz.
        let n = enc.encode(&pcm[..160], &mut pkt).unwrap();
        assert_eq!(n, 62);
        assert_eq!(dec.decode(Some(&pkt[..n]), &mut out), Ok(320));
        // Three frames per packet: three 16 kHz frames, no frame lost or invented.
        let n = enc.encode(&pcm, &mut pkt).unwrap();
        assert_eq!(n, 62 * 3 - 1, "492 bits a frame, padded once at the end");
        assert_eq!(dec.decode(Some(&pkt[..n]), &mut out), Ok(960));
        // Frames are 160 samples (8 kHz), whatever the stream's mode.
        assert!(matches!(
            enc.encode(&pcm[..100], &mut pkt),
            Err(SpeexError::FrameSize { frame: 160, .. })
        ));
    }

    #[test]
    fn bad_sizes_and_garbage_are_errors_not_crashes() {
        let mut enc = SpeexEncoder::new(SpeexMode::Wideband, 8).unwrap();
        let mut pkt = [0u8; 200];
        assert!(matches!(
            enc.encode(&[0; 100], &mut pkt),
            Err(SpeexError::FrameSize { .. })
        ));
        assert!(matches!(
            enc.encode(&[0; 320], &mut pkt[..2]),
            Err(SpeexError::OutputTooSmall { .. })
        ));
        let mut dec = SpeexDecoder::new(SpeexMode::Wideband).unwrap();
        let mut out = [0i16; 320 * 8];
        assert_eq!(dec.decode(Some(&[]), &mut out), Err(SpeexError::Empty));
        assert_eq!(
            dec.decode(Some(&[0; 1501]), &mut out),
            Err(SpeexError::PacketTooLong(1501))
        );
        assert_eq!(
            dec.decode(None, &mut out[..10]),
            Err(SpeexError::OutputTooSmall {
                needed: 320,
                got: 10
            })
        );
        assert_eq!(dec.decode(None, &mut out), Ok(320));
        // Arbitrary bytes: any result but a crash.
        let mut x = 0x1234_5678u32;
        for len in 1..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = dec.decode(Some(&junk), &mut out);
        }
    }
}
