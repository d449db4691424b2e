//! Nellymoser Asao decoder and encoder: the default audio codec of Flash-era RTMP clients (FLV
//! SoundFormat 4 = 16 kHz mono, 5 = 8 kHz mono, 6 = the rate of the tag header).
//!
//! ```text
//! block (64 octets, 512 bits, read least-significant bit first)
//!   = exponent(6) 22*delta(5)          ; 116 header bits: band energies, 23 bands
//!     2*(198 detail bits)               ; two halves of 128 MDCT coefficients each
//! ```
//!
//! The codec is rate-agnostic: every block is 256 samples at whatever rate the container
//! says. Per block: the band exponents give a spectral envelope; a fixed integer procedure
//! turns the envelope into a bit allocation (0–6 bits per coefficient, 198 bits per half)
//! that encoder and decoder must compute identically; coefficients with bits are
//! dequantized from a fixed table, those without get noise at the envelope level with a
//! random sign; an inverse MDCT (N = 256, sine window, 50 % overlap) gives the samples.
//! The tables below are data of the format (band sizes, exponent and delta tables,
//! dequantization levels), as used by every compatible implementation.

use std::f32::consts::PI;
use std::sync::OnceLock;

/// Octets per Nellymoser block.
pub const BLOCK_LEN: usize = 64;
/// PCM samples per block.
pub const SAMPLES_PER_BLOCK: usize = 256;

const BANDS: usize = 23;
/// MDCT coefficients per half block.
const HALF: usize = 128;
/// Coefficients that carry data (the top 4 of each half are always zero).
const FILL: usize = 124;
const HEADER_BITS: usize = 116;
const DETAIL_BITS: i32 = 198;
const BIT_CAP: i32 = 6;
const BASE_OFF: i32 = 4228;
const BASE_SHIFT: i32 = 19;

/// Output gain that maps the format's envelope (2^(e/2048)) and our unnormalized inverse
/// MDCT to 16-bit PCM.
const OUTPUT_GAIN: f32 = 1.0 / 8.0;

/// Coefficients per band (sums to [`FILL`]).
const BAND_SIZES: [u8; BANDS] = [
    2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 4, 4, 5, 6, 6, 7, 8, 9, 10, 12, 14, 15,
];

/// First band's exponent, indexed by the 6-bit header field (log2 domain, Q11).
const INIT_TABLE: [u16; 64] = [
    3134, 5342, 6870, 7792, 8569, 9185, 9744, 10191, 10631, 11061, 11434, 11770, 12116, 12513,
    12925, 13300, 13674, 14027, 14352, 14716, 15117, 15477, 15824, 16157, 16513, 16804, 17090,
    17401, 17679, 17948, 18238, 18520, 18764, 19078, 19381, 19640, 19921, 20205, 20500, 20813,
    21162, 21465, 21794, 22137, 22453, 22756, 23067, 23350, 23636, 23926, 24227, 24521, 24819,
    25107, 25414, 25730, 26120, 26497, 26895, 27344, 27877, 28463, 29426, 31355,
];

/// Exponent change from one band to the next, indexed by the 5-bit field.
const DELTA_TABLE: [i16; 32] = [
    -11725, -9420, -7910, -6801, -5948, -5233, -4599, -4039, -3507, -3030, -2596, -2170, -1774,
    -1383, -1016, -660, -329, -1, 337, 696, 1085, 1512, 1962, 2433, 2968, 3569, 4314, 5279, 6622,
    8154, 10076, 12975,
];

/// Dequantization levels: for a coefficient of `b` bits and code `v`, entry `(1 << b) - 1 + v`.
/// (Kept with the format's published ten decimals.)
#[allow(clippy::excessive_precision)]
const DEQUANT: [f32; 127] = [
    0.0000000000,
    -0.8472560048,
    0.7224709988,
    -1.5247479677,
    -0.4531480074,
    0.3753609955,
    1.4717899561,
    -1.9822579622,
    -1.1929379702,
    -0.5829370022,
    -0.0693780035,
    0.3909569979,
    0.9069200158,
    1.4862740040,
    2.2215409279,
    -2.3887870312,
    -1.8067539930,
    -1.4105420113,
    -1.0773609877,
    -0.7995010018,
    -0.5558109879,
    -0.3334020078,
    -0.1324490011,
    0.0568020009,
    0.2548770010,
    0.4773550034,
    0.7386850119,
    1.0443060398,
    1.3954459429,
    1.8098750114,
    2.3918759823,
    -2.3893830776,
    -1.9884680510,
    -1.7514040470,
    -1.5643119812,
    -1.3922129869,
    -1.2164649963,
    -1.0469499826,
    -0.8905100226,
    -0.7645580173,
    -0.6454579830,
    -0.5259280205,
    -0.4059549868,
    -0.3029719889,
    -0.2096900046,
    -0.1239869967,
    -0.0479229987,
    0.0257730000,
    0.1001340002,
    0.1737180054,
    0.2585540116,
    0.3522900045,
    0.4569880068,
    0.5767750144,
    0.7003160119,
    0.8425520062,
    1.0093879700,
    1.1821349859,
    1.3534560204,
    1.5320819616,
    1.7332619429,
    1.9722349644,
    2.3978140354,
    -2.5756309032,
    -2.0573320389,
    -1.8984919786,
    -1.7727810144,
    -1.6662600040,
    -1.5742180347,
    -1.4993319511,
    -1.4316639900,
    -1.3652280569,
    -1.3000990152,
    -1.2280930281,
    -1.1588579416,
    -1.0921250582,
    -1.0135740042,
    -0.9202849865,
    -0.8287050128,
    -0.7374889851,
    -0.6447759867,
    -0.5590940118,
    -0.4857139885,
    -0.4110319912,
    -0.3459700048,
    -0.2851159871,
    -0.2341620028,
    -0.1870580018,
    -0.1442500055,
    -0.1107169986,
    -0.0739680007,
    -0.0365610011,
    -0.0073290002,
    0.0203610007,
    0.0479039997,
    0.0751969963,
    0.0980999991,
    0.1220389977,
    0.1458999962,
    0.1694349945,
    0.1970459968,
    0.2252430022,
    0.2556869984,
    0.2870100141,
    0.3197099864,
    0.3525829911,
    0.3889069855,
    0.4334920049,
    0.4769459963,
    0.5204820037,
    0.5644530058,
    0.6122040153,
    0.6685929894,
    0.7341650128,
    0.8032159805,
    0.8784040213,
    0.9566209912,
    1.0397069454,
    1.1293770075,
    1.2211159468,
    1.3080279827,
    1.4024800062,
    1.5056819916,
    1.6227730513,
    1.7724959850,
    1.9430880547,
    2.2903931141,
];

/// Errors from [`NellymoserDecoder::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NellymoserError {
    /// The payload is not a whole number of 64-octet blocks.
    #[error("Nellymoser payload of {0} octets is not a multiple of 64")]
    PartialBlock(usize),
    /// The output buffer is shorter than 256 samples per block.
    #[error("output buffer holds {got} samples, {needed} needed")]
    OutputTooSmall {
        /// Samples the call produces.
        needed: usize,
        /// Samples the output buffer holds.
        got: usize,
    },
}

/// Number of whole blocks in a payload, or an error if it has a partial block.
pub fn blocks_in(payload: &[u8]) -> Result<usize, NellymoserError> {
    if payload.len() % BLOCK_LEN != 0 {
        return Err(NellymoserError::PartialBlock(payload.len()));
    }
    Ok(payload.len() / BLOCK_LEN)
}

/// Least-significant-bit-first reader over one block.
struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    /// Reads `n <= 8` bits; bits past the end read as zero.
    fn read(&mut self, n: usize) -> usize {
        let mut v = 0;
        for k in 0..n {
            let p = self.pos + k;
            let byte = self.buf.get(p / 8).copied().unwrap_or(0);
            v |= usize::from((byte >> (p % 8)) & 1) << k;
        }
        self.pos += n;
        v
    }
}

/// Normalizes `x` so its magnitude fills 31 bits; returns the left shift used (31 for 0).
fn headroom(x: &mut i32) -> i32 {
    if *x == 0 {
        return 31;
    }
    let l = 30 - (31 - x.unsigned_abs().leading_zeros() as i32);
    *x = x.wrapping_mul(1i32.wrapping_shl(l as u32));
    l
}

/// Left shift for positive `shift`, arithmetic right shift for negative (two's-complement
/// wrapping, as the format's reference arithmetic).
fn signed_shift(x: i32, shift: i32) -> i32 {
    if shift > 0 {
        (x as u32).wrapping_shl(shift as u32) as i32
    } else {
        x.wrapping_shr((-shift) as u32)
    }
}

/// Bits of one coefficient for level `s` at offset `off` (before the cap).
fn coef_bits(s: i32, off: i32, shift: i32) -> i32 {
    let b = s.wrapping_sub(off);
    (b.wrapping_shr((shift - 1) as u32) + 1) >> 1
}

fn sum_bits(sbuf: &[i16; FILL], shift: i32, off: i16) -> i32 {
    sbuf.iter()
        .map(|&s| coef_bits(i32::from(s), i32::from(off), shift).clamp(0, BIT_CAP))
        .sum()
}

/// The format's bit allocation: from the per-coefficient envelope (log2, Q11) to 0..=6 bits
/// per coefficient, 198 bits in all (or fewer when the envelope cannot use them). Integer
/// arithmetic, identical in encoder and decoder; the search for the water level is a
/// secant step followed by bisection.
fn allocate_bits(env: &[i32; FILL], bits: &mut [i32; FILL]) {
    let max = env.iter().copied().fold(0, i32::max);
    let mut m = max;
    let mut shift = -16 + headroom(&mut m);

    let mut sbuf = [0i16; FILL];
    let mut sum: i32 = 0;
    for (s, &e) in sbuf.iter_mut().zip(env) {
        let v = signed_shift(e, shift) as i16;
        let v = (i32::from(v).wrapping_mul(3) >> 2) as i16;
        *s = v;
        sum = sum.wrapping_add(i32::from(v));
    }

    shift += 11;
    let shift_saved = shift;
    sum = sum.wrapping_sub(DETAIL_BITS.wrapping_shl(shift as u32));
    shift += headroom(&mut sum);
    let mut small_off = (BASE_OFF * (sum >> 16)) >> 15;
    shift = shift_saved - (BASE_SHIFT + shift - 31);
    small_off = signed_shift(small_off, shift);

    let mut bitsum = sum_bits(&sbuf, shift_saved, small_off as i16);
    if bitsum != DETAIL_BITS {
        let mut off = bitsum - DETAIL_BITS;
        let mut sh = 0;
        while off.abs() <= 16383 {
            off *= 2;
            sh += 1;
        }
        off = (off * BASE_OFF) >> 15;
        off = signed_shift(off, shift_saved - (BASE_SHIFT + sh - 15));

        let mut last_off = small_off;
        let mut last_bitsum = bitsum;
        let mut j = 1;
        while j < 20 {
            last_off = small_off;
            small_off = small_off.wrapping_add(off);
            last_bitsum = bitsum;
            bitsum = sum_bits(&sbuf, shift_saved, small_off as i16);
            if (bitsum - DETAIL_BITS) * (last_bitsum - DETAIL_BITS) <= 0 {
                break;
            }
            j += 1;
        }

        let (mut big_off, mut big_bitsum, mut small_bitsum);
        if bitsum > DETAIL_BITS {
            big_off = small_off;
            small_off = last_off;
            big_bitsum = bitsum;
            small_bitsum = last_bitsum;
        } else {
            big_off = last_off;
            big_bitsum = last_bitsum;
            small_bitsum = bitsum;
        }

        while bitsum != DETAIL_BITS && j <= 19 {
            let mid = big_off.wrapping_add(small_off) >> 1;
            bitsum = sum_bits(&sbuf, shift_saved, mid as i16);
            if bitsum > DETAIL_BITS {
                big_off = mid;
                big_bitsum = bitsum;
            } else {
                small_off = mid;
                small_bitsum = bitsum;
            }
            j += 1;
        }

        if (big_bitsum - DETAIL_BITS).abs() >= (small_bitsum - DETAIL_BITS).abs() {
            bitsum = small_bitsum;
        } else {
            small_off = big_off;
            bitsum = big_bitsum;
        }
    }

    for (b, &s) in bits.iter_mut().zip(&sbuf) {
        *b = coef_bits(i32::from(s), small_off, shift_saved).clamp(0, BIT_CAP);
    }

    if bitsum > DETAIL_BITS {
        // Too many: cut the allocation off where it reaches 198.
        let mut total = 0;
        let mut i = 0;
        while total < DETAIL_BITS && i < FILL {
            total += bits[i];
            i += 1;
        }
        if let Some(last) = i.checked_sub(1).and_then(|k| bits.get_mut(k)) {
            *last -= total - DETAIL_BITS;
        }
        for b in bits.iter_mut().skip(i) {
            *b = 0;
        }
    }
}

/// Inverse-MDCT kernel shared by all decoders: `cos(π/128 · (m + 128.5) · (k + ½))` for the
/// middle half of the 256 outputs (the other half follows by symmetry), and the sine window.
struct Tables {
    imdct: Vec<[f32; HALF]>,
    window: [f32; 2 * HALF],
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let imdct = (0..HALF)
            .map(|m| {
                let mut row = [0f32; HALF];
                for (k, c) in row.iter_mut().enumerate() {
                    let phase = (m as f64 + 64.0 + 64.5) * (k as f64 + 0.5) * std::f64::consts::PI
                        / HALF as f64;
                    *c = phase.cos() as f32;
                }
                row
            })
            .collect();
        let mut window = [0f32; 2 * HALF];
        for (n, w) in window.iter_mut().enumerate() {
            *w = (PI * (n as f32 + 0.5) / (2 * HALF) as f32).sin();
        }
        Tables { imdct, window }
    })
}

/// Unpacks the spectral envelope of a block: per coefficient, the exponent (log2, Q11) and
/// the linear amplitude.
fn envelope(block: &[u8], env: &mut [i32; FILL], amp: &mut [f32; FILL]) {
    let mut r = BitReader { buf: block, pos: 0 };
    let mut val = i32::from(INIT_TABLE[r.read(6)]);
    let mut i = 0;
    for (band, &size) in BAND_SIZES.iter().enumerate() {
        if band > 0 {
            val += i32::from(DELTA_TABLE[r.read(5)]);
        }
        let a = (val as f32 / 2048.0).exp2();
        for _ in 0..size {
            if let (Some(e), Some(p)) = (env.get_mut(i), amp.get_mut(i)) {
                *e = val;
                *p = a;
            }
            i += 1;
        }
    }
}

/// Nellymoser decoder state: the overlap of the last inverse MDCT and the noise generator.
#[derive(Debug, Clone)]
pub struct NellymoserDecoder {
    /// Second half of the previous inverse MDCT output (not yet windowed).
    overlap: [f32; HALF],
    rng: u32,
}

impl Default for NellymoserDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl NellymoserDecoder {
    /// A fresh decoder (silent history).
    pub fn new() -> NellymoserDecoder {
        NellymoserDecoder {
            overlap: [0.0; HALF],
            rng: 0x2545_F491,
        }
    }

    /// Decodes whole 64-octet blocks into `out` (256 samples per block); returns the sample
    /// count. A payload with a partial block is rejected before anything is decoded.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, NellymoserError> {
        let blocks = blocks_in(payload)?;
        let needed = blocks * SAMPLES_PER_BLOCK;
        if out.len() < needed {
            return Err(NellymoserError::OutputTooSmall {
                needed,
                got: out.len(),
            });
        }
        for (block, pcm) in payload
            .chunks_exact(BLOCK_LEN)
            .zip(out.chunks_exact_mut(SAMPLES_PER_BLOCK))
        {
            self.decode_block(block, pcm);
        }
        Ok(needed)
    }

    fn noise_sign(&mut self) -> f32 {
        // xorshift32: only the sign of noise-filled coefficients is random.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        if x & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }

    /// Decodes one block (64 octets) into 256 samples.
    fn decode_block(&mut self, block: &[u8], pcm: &mut [i16]) {
        let mut env = [0i32; FILL];
        let mut amp = [0f32; FILL];
        envelope(block, &mut env, &mut amp);
        let mut bits = [0i32; FILL];
        allocate_bits(&env, &mut bits);

        let t = tables();
        for (half, pcm) in pcm.chunks_exact_mut(HALF).enumerate() {
            let mut r = BitReader {
                buf: block,
                pos: HEADER_BITS + half * DETAIL_BITS as usize,
            };
            let mut coef = [0f32; HALF];
            for ((c, &b), &a) in coef.iter_mut().zip(&bits).zip(&amp) {
                *c = if b <= 0 {
                    std::f32::consts::FRAC_1_SQRT_2 * a * self.noise_sign()
                } else {
                    let b = b as usize;
                    let v = r.read(b);
                    DEQUANT.get((1 << b) - 1 + v).copied().unwrap_or(0.0) * a
                };
            }
            // u[m] = y[m + 64]: the middle half of the 256-point inverse MDCT.
            let mut u = [0f32; HALF];
            for (um, row) in u.iter_mut().zip(&t.imdct) {
                *um = crate::resample::dot(row, &coef);
            }
            // y[n] = -u[63 - n] for n < 64; y[n] = u[n - 64] for 64 <= n < 192;
            // y[n] = u[319 - n] for n >= 192.
            let y = |n: usize| -> f32 {
                if n < 64 {
                    -u[63 - n]
                } else if n < 192 {
                    u[n - 64]
                } else {
                    u[319 - n]
                }
            };
            for (n, out) in pcm.iter_mut().enumerate() {
                let v = t.window[n] * y(n) + t.window[n + HALF] * self.overlap[n];
                *out = (v * OUTPUT_GAIN).round().clamp(-32768.0, 32767.0) as i16;
            }
            for (n, o) in self.overlap.iter_mut().enumerate() {
                *o = y(n + HALF);
            }
        }
    }
}

/// Least-significant-bit-first writer into one block; bits past the end are dropped.
struct BitWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl BitWriter<'_> {
    fn write(&mut self, n: usize, v: usize) {
        for k in 0..n {
            let p = self.pos + k;
            if let Some(byte) = self.buf.get_mut(p / 8) {
                if (v >> k) & 1 != 0 {
                    *byte |= 1 << (p % 8);
                }
            }
        }
        self.pos += n;
    }
}

/// Scale from our forward MDCT to the decoder's coefficient domain (undoes the inverse
/// MDCT's missing 1/64 and the decoder's output gain).
const ENCODER_SCALE: f32 = 1.0 / (64.0 * OUTPUT_GAIN);

/// Peak coefficient to envelope ratio the encoder allows before raising a band's envelope.
const PEAK_TO_ENVELOPE: f32 = 2.0;

/// Largest per-band envelope rise the encoder plans for (the top delta is 12975; the margin
/// absorbs rounding to the nearest delta).
const MAX_RISE: i32 = 12_000;

/// Nellymoser encoder: 256 samples → one 64-octet block. Output is delayed by 128 samples
/// (one MDCT half) relative to the input.
///
/// A straightforward encoder: band energies → nearest exponent codes (closed loop over the
/// delta table) → the format's bit allocation → nearest dequantization level per
/// coefficient. No psychoacoustic model and no trellis search.
#[derive(Debug, Clone)]
pub struct NellymoserEncoder {
    /// The last 128 input samples (the first half of the next MDCT window).
    prev: [f32; HALF],
}

impl Default for NellymoserEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl NellymoserEncoder {
    /// A fresh encoder (silent history).
    pub fn new() -> NellymoserEncoder {
        NellymoserEncoder { prev: [0.0; HALF] }
    }

    /// Encodes whole blocks of 256 samples; `pcm.len()` must be a multiple of 256. Returns
    /// the octet count (64 per block).
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, NellymoserError> {
        if pcm.len() % SAMPLES_PER_BLOCK != 0 {
            return Err(NellymoserError::PartialBlock(pcm.len()));
        }
        let needed = pcm.len() / SAMPLES_PER_BLOCK * BLOCK_LEN;
        if out.len() < needed {
            return Err(NellymoserError::OutputTooSmall {
                needed,
                got: out.len(),
            });
        }
        for (samples, block) in pcm
            .chunks_exact(SAMPLES_PER_BLOCK)
            .zip(out.chunks_exact_mut(BLOCK_LEN))
        {
            self.encode_block(samples, block);
        }
        Ok(needed)
    }

    /// Forward MDCT of `prev ++ cur` (256 samples, sine window) into the decoder's
    /// coefficient domain.
    fn mdct(prev: &[f32; HALF], cur: &[f32; HALF], coef: &mut [f32; HALF]) {
        let t = tables();
        let z = |n: usize| -> f32 {
            let x = if n < HALF { prev[n] } else { cur[n - HALF] };
            x * t.window[n]
        };
        // Fold the 256 windowed samples onto the 128 kernel rows the decoder uses
        // (the kernel is odd about n = 63.5 and even about n = 191.5).
        coef.fill(0.0);
        for m in 0..HALF {
            let v = if m < 64 {
                z(m + 64) - z(63 - m)
            } else {
                z(m + 64) + z(319 - m)
            };
            for (c, k) in coef.iter_mut().zip(&t.imdct[m]) {
                *c += v * k;
            }
        }
        for c in coef.iter_mut() {
            *c *= ENCODER_SCALE;
        }
    }

    fn encode_block(&mut self, pcm: &[i16], block: &mut [u8]) {
        let mut a = [0f32; HALF];
        let mut b = [0f32; HALF];
        for (d, &s) in a.iter_mut().zip(&pcm[..HALF]) {
            *d = f32::from(s);
        }
        for (d, &s) in b.iter_mut().zip(&pcm[HALF..]) {
            *d = f32::from(s);
        }
        let mut c0 = [0f32; HALF];
        let mut c1 = [0f32; HALF];
        Self::mdct(&self.prev, &a, &mut c0);
        Self::mdct(&a, &b, &mut c1);
        self.prev = b;

        block.fill(0);
        let mut w = BitWriter { buf: block, pos: 0 };
        // Envelope: per band, 2048·log2(rms) of both halves (raised to the peak where one
        // coefficient dominates).
        let mut target = [0i32; BANDS];
        let mut start = 0;
        for (t, &size) in target.iter_mut().zip(&BAND_SIZES) {
            let range = start..start + usize::from(size);
            let both = || c0[range.clone()].iter().chain(&c1[range.clone()]);
            let mean_square = both().map(|c| c * c).sum::<f32>() / (2 * size) as f32;
            // The largest dequantization level is about 2.3× the envelope: a band whose
            // energy sits in one coefficient needs an envelope set by that peak, or it clips.
            let peak = both().fold(0f32, |m, c| m.max(c.abs())) / PEAK_TO_ENVELOPE;
            *t = (1024.0 * mean_square.max(peak * peak).max(1.0).log2()) as i32;
            start += usize::from(size);
        }
        // The envelope rises by at most one delta step per band: start climbing early
        // enough to reach every peak (a quiet band before a loud one gets a little noise).
        for b in (0..BANDS - 1).rev() {
            target[b] = target[b].max(target[b + 1] - MAX_RISE);
        }
        let mut env = [0i32; FILL];
        let mut amp = [0f32; FILL];
        let mut start = 0;
        let mut val = 0i32;
        for (band, (&size, &t)) in BAND_SIZES.iter().zip(&target).enumerate() {
            let size = usize::from(size);
            if band == 0 {
                let idx = nearest(INIT_TABLE.iter().map(|&v| i32::from(v)), t);
                w.write(6, idx);
                val = i32::from(INIT_TABLE[idx]);
            } else {
                let idx = nearest(DELTA_TABLE.iter().map(|&d| val + i32::from(d)), t);
                w.write(5, idx);
                val += i32::from(DELTA_TABLE[idx]);
            }
            let a = (val as f32 / 2048.0).exp2();
            for i in start..start + size {
                env[i] = val;
                amp[i] = a;
            }
            start += size;
        }
        let mut bits = [0i32; FILL];
        allocate_bits(&env, &mut bits);
        for (half, coef) in [&c0, &c1].into_iter().enumerate() {
            w.pos = HEADER_BITS + half * DETAIL_BITS as usize;
            for ((&c, &nb), &a) in coef.iter().zip(&bits).zip(&amp) {
                if nb <= 0 {
                    continue;
                }
                let nb = nb as usize;
                let first = (1 << nb) - 1;
                let levels = &DEQUANT[first..first + (1 << nb)];
                let t = c / a;
                let v = levels.partition_point(|&q| q < t);
                let v = if v == levels.len()
                    || (v > 0 && (t - levels[v - 1]).abs() <= (levels[v] - t).abs())
                {
                    v - 1
                } else {
                    v
                };
                w.write(nb, v);
            }
        }
    }
}

/// Index of the candidate closest to `target`.
fn nearest(candidates: impl Iterator<Item = i32>, target: i32) -> usize {
    candidates
        .enumerate()
        .min_by_key(|&(_, v)| (v - target).unsigned_abs())
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn round_trip(rate: u32, hz: f64, amp: f64) -> Vec<i16> {
        let src = crate::tone::sine(hz, amp, rate, 256 * 64);
        let mut enc = NellymoserEncoder::new();
        let mut dec = NellymoserDecoder::new();
        let mut octets = vec![0u8; src.len() / 4];
        let mut out = vec![0i16; src.len()];
        assert_eq!(enc.encode(&src, &mut octets), Ok(octets.len()));
        assert_eq!(dec.decode(&octets, &mut out), Ok(src.len()));
        out
    }

    #[test]
    fn encode_decode_keeps_tone_frequency_and_level() {
        use crate::tone;
        for (rate, hz) in [
            (8000, 1000.0),
            (8000, 300.0),
            (16000, 1000.0),
            (16000, 3400.0),
            (22050, 1000.0),
        ] {
            for amp in [1000.0, 10000.0, 30000.0] {
                let out = round_trip(rate, hz, amp);
                let tail = &out[2048..];
                let level = tone::level_db(tone::goertzel_rms(tail, hz, rate), amp / 2f64.sqrt());
                let freq = tone::zero_crossing_hz(tail, rate).unwrap_or(0.0);
                let snr = tone::snr_db(tail, hz, rate);
                assert!(
                    level.abs() < 2.5,
                    "{rate} Hz, {hz} Hz, amp {amp}: level {level:.2} dB"
                );
                assert!(
                    (freq - hz).abs() < hz * 0.005,
                    "{rate}/{hz}/{amp}: {freq:.1} Hz"
                );
                assert!(snr > 25.0, "{rate}/{hz}/{amp}: SNR {snr:.1} dB");
            }
        }
    }

    #[test]
    fn silence_encodes_to_near_silence() {
        let out = round_trip(8000, 1000.0, 0.0);
        let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak < 32, "peak {peak}");
        let mut enc = NellymoserEncoder::new();
        assert_eq!(
            enc.encode(&[0; 100], &mut [0; 64]),
            Err(NellymoserError::PartialBlock(100))
        );
    }

    #[test]
    fn tables_are_consistent() {
        assert_eq!(
            BAND_SIZES.iter().map(|&s| usize::from(s)).sum::<usize>(),
            FILL
        );
        assert_eq!(HEADER_BITS + 2 * DETAIL_BITS as usize, BLOCK_LEN * 8);
        assert_eq!(HEADER_BITS, 6 + 5 * (BANDS - 1));
    }

    #[test]
    fn partial_blocks_and_short_outputs_are_rejected() {
        let mut d = NellymoserDecoder::new();
        let mut out = [0i16; 256];
        assert_eq!(
            d.decode(&[0; 65], &mut out),
            Err(NellymoserError::PartialBlock(65))
        );
        assert_eq!(
            d.decode(&[0; 128], &mut out),
            Err(NellymoserError::OutputTooSmall {
                needed: 512,
                got: 256
            })
        );
        assert_eq!(d.decode(&[], &mut out), Ok(0));
    }

    #[test]
    fn allocation_spends_at_most_198_bits_within_the_cap() {
        // Envelopes a real encoder sends: flat, rising, falling, very loud.
        let shapes: [fn(usize) -> i32; 4] = [
            |_| 12000,
            |i| 3000 + 200 * i as i32,
            |i| 40000 - 250 * i as i32,
            |i| 300_000 - 1000 * i as i32,
        ];
        for shape in shapes {
            let mut env = [0i32; FILL];
            for (i, e) in env.iter_mut().enumerate() {
                *e = shape(i);
            }
            let mut bits = [0i32; FILL];
            allocate_bits(&env, &mut bits);
            let total: i32 = bits.iter().sum();
            assert!(total <= DETAIL_BITS, "total {total}");
            assert!(total >= DETAIL_BITS - 12, "total {total}");
            assert!(bits.iter().all(|&b| (0..=BIT_CAP).contains(&b)));
        }
    }

    #[test]
    fn degenerate_envelopes_keep_bits_within_the_cap() {
        // A flat, very quiet envelope makes the reference arithmetic wrap its 16-bit offset
        // (every implementation then over-allocates the same way); the cap still holds and
        // reads past the block give zeros.
        for level in [-50_000, -1, 0, 1, 100, 1 << 20] {
            let env = [level; FILL];
            let mut bits = [0i32; FILL];
            allocate_bits(&env, &mut bits);
            assert!(bits.iter().all(|&b| (0..=BIT_CAP).contains(&b)), "{level}");
        }
    }

    #[test]
    fn every_block_pattern_decodes_without_panic() {
        let mut d = NellymoserDecoder::new();
        let mut out = [0i16; 256];
        for seed in 0..64u32 {
            let mut x = seed.wrapping_mul(2_654_435_761).max(1);
            let mut block = [0u8; 64];
            for b in &mut block {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            if seed == 0 {
                block = [0xFF; 64];
            }
            assert_eq!(d.decode(&block, &mut out), Ok(256));
        }
    }
}
