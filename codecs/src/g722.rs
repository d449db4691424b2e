//! ITU-T G.722 (11/88, 09/2012) 7 kHz audio coding: sub-band ADPCM at 64 kbit/s (mode 1).
//!
//! ```text
//! 16 kHz PCM ─► transmit QMF ─┬─ lower band  (8 kHz, 6-bit ADPCM) ─┐
//!                             └─ higher band (8 kHz, 2-bit ADPCM) ─┴─► octet = IH(2) IL(6)
//! ```
//!
//! Two input samples (125 µs) give one octet: the higher-band code in the two most
//! significant bits, the lower-band code in the six least significant bits (G.722 §1.4.4;
//! RFC 3551 §4.5.2 packs the octets in that order). 20 ms is 320 samples ⇄ 160 octets.
//!
//! The arithmetic follows the block diagram of the Recommendation (blocks 1L–4L, 1H–4H: QUANTL,
//! INVQAL, LOGSCL, SCALEL, UPPOL1/2, UPZERO, FILTEP/FILTEZ, PREDIC) with its saturating 16-bit
//! integer operations. Linear samples are 16-bit: the QMF maps them to the codec's 15-bit
//! sub-band domain (input halved, output doubled), the level convention of common
//! implementations, so our octets decode at the same level elsewhere.
//!
//! **RTP clock-rate quirk** (RFC 3551 §4.5.2): the payload type 9 clock rate is 8000 Hz even
//! though the audio is sampled at 16 kHz — the RTP timestamp advances by 8000 per second,
//! i.e. by one per octet. Use [`RTP_CLOCK_RATE`] / [`rtp_timestamp_increment`], never the
//! sample count, for timestamps; SDP says `a=rtpmap:9 G722/8000`.

/// PCM sample rate of G.722 audio, in Hz.
pub const SAMPLE_RATE: u32 = 16_000;

/// RTP clock rate of G.722 (RFC 3551 §4.5.2): 8000, a historical error kept for
/// compatibility — half the real sample rate.
pub const RTP_CLOCK_RATE: u32 = 8_000;

/// Octets of G.722 (64 kbit/s) per millisecond of audio.
pub const BYTES_PER_MS: usize = 8;

/// RTP timestamp increment for a G.722 payload of `payload_len` octets: one tick per octet
/// (two 16 kHz samples), because of the 8000 Hz clock rate of RFC 3551.
pub const fn rtp_timestamp_increment(payload_len: usize) -> u32 {
    payload_len as u32
}

/// RTP timestamp increment for `samples` 16 kHz PCM samples: half the sample count.
pub const fn rtp_ticks_for_samples(samples: usize) -> u32 {
    (samples / 2) as u32
}

/// Errors from the G.722 encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum G722Error {
    /// G.722 codes samples in pairs; an odd sample count cannot be encoded.
    #[error("odd sample count {0}: G.722 codes pairs of 16 kHz samples")]
    OddSampleCount(usize),
    /// The output buffer is shorter than the result.
    #[error("output buffer holds {got} items, {needed} needed")]
    OutputTooSmall {
        /// Items the call produces.
        needed: usize,
        /// Items the output buffer holds.
        got: usize,
    },
}

/// QMF coefficients (G.722 Table 11), one half of the symmetric 24-tap filter:
/// h(0..12) = 3, -11, -11, 53, 12, -156, … interleaved; here as the two polyphase halves'
/// shared sequence.
const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// Lower-band quantizer decision levels Q6 (Table 6), in units of the scale factor / 2^12.
const Q6: [i32; 30] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919,
];
/// Output code for a negative lower-band difference in interval `mil` (Table 6, ILN).
const ILN: [u8; 31] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4,
];
/// Output code for a non-negative lower-band difference in interval `mil` (Table 6, ILP).
const ILP: [u8; 31] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32,
];
/// Inverse quantizer, 4-bit (the predictor's view of the lower band), Table 7 QM4.
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
/// Inverse quantizer, 6-bit (the decoder's output in mode 1), Table 7 QM6.
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
/// Lower-band log scale factor step WL by 4-bit magnitude class RIL (Table 8 with RL42).
const WL_BY_CODE4: [i32; 16] = [
    -60, 3042, 1198, 538, 334, 172, 58, -30, 3042, 1198, 538, 334, 172, 58, -30, -60,
];
/// Inverse log base 2 table ILB (Table 9): 2^(i/32) in Q11.
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// Higher-band inverse quantizer QM2 (Table 10), indexed by the 2-bit code.
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
/// Higher-band log scale factor step WH by 2-bit code (Table 10 with RH2).
const WH_BY_CODE2: [i32; 4] = [798, -214, 798, -214];

#[inline]
fn sat16(x: i32) -> i32 {
    x.clamp(-32768, 32767)
}

/// The adaptive predictor and quantizer-scale state of one sub-band (Block 3, Block 4).
#[derive(Debug, Clone, Copy)]
struct Band {
    /// Predicted signal (PREDIC output).
    s: i32,
    /// Zero-section output (FILTEZ).
    sz: i32,
    /// Reconstructed signal, delayed 1 and 2.
    r: [i32; 3],
    /// Partially reconstructed signal, delayed 0..2.
    p: [i32; 3],
    /// Pole coefficients a1, a2 (index 0 unused).
    a: [i32; 3],
    /// Zero coefficients b1..b6 (index 0 unused).
    b: [i32; 7],
    /// Quantized difference signal, delayed 0..6.
    d: [i32; 7],
    /// Log scale factor (NBL / NBH).
    nb: i32,
    /// Scale factor (DETL / DETH).
    det: i32,
}

impl Band {
    const fn new(det: i32) -> Band {
        Band {
            s: 0,
            sz: 0,
            r: [0; 3],
            p: [0; 3],
            a: [0; 3],
            b: [0; 7],
            d: [0; 7],
            nb: 0,
            det,
        }
    }

    /// LOGSCL/LOGSCH + SCALEL/SCALEH: adapts the scale factor by `step`; `nb_max` and
    /// `shift_base` are 18432 / 8 for the lower band and 22528 / 10 for the higher band.
    fn adapt_scale(&mut self, step: i32, nb_max: i32, shift_base: i32) {
        self.nb = (((self.nb * 127) >> 7) + step).clamp(0, nb_max);
        let mant = ILB[((self.nb >> 6) & 31) as usize];
        let shift = shift_base - (self.nb >> 11);
        let lin = if shift < 0 {
            mant << -shift
        } else {
            mant >> shift
        };
        self.det = lin << 2;
    }

    /// Block 4: reconstruction, pole and zero predictor adaptation, prediction; `d` is the
    /// quantized difference signal of this sample.
    fn update_predictor(&mut self, d: i32) {
        // RECONS, PARREC
        self.d[0] = d;
        self.r[0] = sat16(self.s + d);
        self.p[0] = sat16(self.sz + d);
        let sg = |x: i32| x < 0;
        let (sg0, sg1, sg2) = (sg(self.p[0]), sg(self.p[1]), sg(self.p[2]));
        // UPPOL2
        let wd1 = sat16(self.a[1] << 2);
        let wd2 = if sg0 == sg1 { -wd1 } else { wd1 }.min(32767);
        let wd3 = if sg0 == sg2 { 128 } else { -128 };
        let ap2 = ((wd2 >> 7) + wd3 + ((self.a[2] * 32512) >> 15)).clamp(-12288, 12288);
        // UPPOL1
        let wd1 = if sg0 == sg1 { 192 } else { -192 };
        let ap1 = sat16(wd1 + ((self.a[1] * 32640) >> 15));
        let lim = sat16(15360 - ap2);
        let ap1 = ap1.clamp(-lim, lim);
        // UPZERO
        let step = if d == 0 { 0 } else { 128 };
        let sgd = sg(d);
        for (b, &d) in self.b.iter_mut().zip(&self.d).skip(1) {
            let wd2 = if sg(d) == sgd { step } else { -step };
            *b = sat16(wd2 + ((*b * 32640) >> 15));
        }
        // DELAYA (the zero coefficients were updated in place above)
        self.d.copy_within(0..6, 1);
        self.r[2] = self.r[1];
        self.r[1] = self.r[0];
        self.p[2] = self.p[1];
        self.p[1] = self.p[0];
        self.a[1] = ap1;
        self.a[2] = ap2;
        // FILTEP
        let wd1 = (self.a[1] * sat16(self.r[1] + self.r[1])) >> 15;
        let wd2 = (self.a[2] * sat16(self.r[2] + self.r[2])) >> 15;
        let sp = sat16(wd1 + wd2);
        // FILTEZ
        let mut sz = 0;
        for i in 1..7 {
            sz += (self.b[i] * sat16(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = sat16(sz);
        // PREDIC
        self.s = sat16(sp + self.sz);
    }
}

/// Lower band after the 6-bit code `il` is known: adapts the predictor (INVQAL with the
/// 4-bit truncated code, LOGSCL, SCALEL, Block 4).
fn lower_update(band: &mut Band, il: u8) {
    let ril = usize::from(il >> 2);
    let dl = (band.det * QM4[ril]) >> 15;
    band.adapt_scale(WL_BY_CODE4[ril], 18432, 8);
    band.update_predictor(dl);
}

/// Higher band after the 2-bit code `ih` is known (INVQAH, LOGSCH, SCALEH, Block 4).
fn higher_update(band: &mut Band, ih: u8) {
    let ih = usize::from(ih & 3);
    let dh = (band.det * QM2[ih]) >> 15;
    band.adapt_scale(WH_BY_CODE2[ih], 22528, 10);
    band.update_predictor(dh);
}

/// The 24-sample QMF delay line, newest last.
#[derive(Debug, Clone, Copy)]
struct Qmf {
    x: [i32; 24],
}

impl Qmf {
    /// Shifts in two samples and returns the two polyphase sums (even, odd).
    fn push(&mut self, first: i32, second: i32) -> (i32, i32) {
        self.x.copy_within(2.., 0);
        self.x[22] = first;
        self.x[23] = second;
        let mut even = 0;
        let mut odd = 0;
        for i in 0..12 {
            odd += self.x[2 * i] * QMF[i];
            even += self.x[2 * i + 1] * QMF[11 - i];
        }
        (even, odd)
    }
}

/// G.722 encoder state (64 kbit/s). One per stream; `Copy`-sized, no heap.
#[derive(Debug, Clone)]
pub struct G722Encoder {
    qmf: Qmf,
    low: Band,
    high: Band,
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Encoder {
    /// A fresh encoder in the reset state of G.722 §3.
    pub const fn new() -> G722Encoder {
        G722Encoder {
            qmf: Qmf { x: [0; 24] },
            low: Band::new(32),
            high: Band::new(8),
        }
    }

    /// Encodes 16 kHz samples (an even count) into `out`, one octet per two samples; returns
    /// the octet count `pcm.len() / 2`.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, G722Error> {
        if pcm.len() % 2 != 0 {
            return Err(G722Error::OddSampleCount(pcm.len()));
        }
        let n = pcm.len() / 2;
        if out.len() < n {
            return Err(G722Error::OutputTooSmall {
                needed: n,
                got: out.len(),
            });
        }
        for (o, pair) in out.iter_mut().zip(pcm.chunks_exact(2)) {
            *o = self.encode_pair(pair[0], pair[1]);
        }
        Ok(n)
    }

    /// Encodes one pair of consecutive 16 kHz samples into one octet.
    pub fn encode_pair(&mut self, first: i16, second: i16) -> u8 {
        let (even, odd) = self.qmf.push(i32::from(first), i32::from(second));
        let xl = (even + odd) >> 14;
        let xh = (even - odd) >> 14;

        // Block 1L: SUBTRA, QUANTL
        let el = sat16(xl - self.low.s);
        let wd = if el >= 0 { el } else { -(el + 1) };
        let mut mil = 1;
        while mil < Q6.len() && wd >= (Q6[mil] * self.low.det) >> 12 {
            mil += 1;
        }
        let il = if el < 0 { ILN[mil] } else { ILP[mil] };
        lower_update(&mut self.low, il);

        // Block 1H: SUBTRA, QUANTH
        let eh = sat16(xh - self.high.s);
        let wd = if eh >= 0 { eh } else { -(eh + 1) };
        let big = wd >= (564 * self.high.det) >> 12;
        let ih: u8 = match (eh < 0, big) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        higher_update(&mut self.high, ih);

        (ih << 6) | il
    }
}

/// G.722 decoder state (64 kbit/s, mode 1). One per stream; no heap.
#[derive(Debug, Clone)]
pub struct G722Decoder {
    qmf: Qmf,
    low: Band,
    high: Band,
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    /// A fresh decoder in the reset state of G.722 §3.
    pub const fn new() -> G722Decoder {
        G722Decoder {
            qmf: Qmf { x: [0; 24] },
            low: Band::new(32),
            high: Band::new(8),
        }
    }

    /// Decodes octets into 16 kHz samples, two per octet; returns `2 * input.len()`.
    pub fn decode(&mut self, input: &[u8], out: &mut [i16]) -> Result<usize, G722Error> {
        let n = input.len() * 2;
        if out.len() < n {
            return Err(G722Error::OutputTooSmall {
                needed: n,
                got: out.len(),
            });
        }
        for (o, &code) in out.chunks_exact_mut(2).zip(input) {
            let (a, b) = self.decode_octet(code);
            o[0] = a;
            o[1] = b;
        }
        Ok(n)
    }

    /// Decodes one octet into two consecutive 16 kHz samples.
    pub fn decode_octet(&mut self, code: u8) -> (i16, i16) {
        let il = code & 0x3F;
        let ih = code >> 6;
        // Block 5L (INVQBL, mode 1) + RECONS
        let dl6 = (self.low.det * QM6[usize::from(il)]) >> 15;
        let rl = (self.low.s + dl6).clamp(-16384, 16383);
        lower_update(&mut self.low, il);
        // Block 2H + RECONS
        let dh = (self.high.det * QM2[usize::from(ih)]) >> 15;
        let rh = (self.high.s + dh).clamp(-16384, 16383);
        higher_update(&mut self.high, ih);
        // Receive QMF
        let (even, odd) = self.qmf.push(rl + rh, rl - rh);
        (sat16(even >> 11) as i16, sat16(odd >> 11) as i16)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::tone;

    #[test]
    fn rtp_clock_is_half_the_sample_rate() {
        assert_eq!(RTP_CLOCK_RATE * 2, SAMPLE_RATE);
        // 20 ms: 320 samples, 160 octets, timestamp +160.
        assert_eq!(rtp_timestamp_increment(160), 160);
        assert_eq!(rtp_ticks_for_samples(320), 160);
        assert_eq!(BYTES_PER_MS * 20, 160);
    }

    #[test]
    fn odd_input_and_short_output_are_errors() {
        let mut enc = G722Encoder::new();
        let mut out = [0u8; 4];
        assert_eq!(
            enc.encode(&[0; 3], &mut out),
            Err(G722Error::OddSampleCount(3))
        );
        assert_eq!(
            enc.encode(&[0; 10], &mut out),
            Err(G722Error::OutputTooSmall { needed: 5, got: 4 })
        );
        let mut dec = G722Decoder::new();
        let mut pcm = [0i16; 3];
        assert_eq!(
            dec.decode(&[0, 0], &mut pcm),
            Err(G722Error::OutputTooSmall { needed: 4, got: 3 })
        );
    }

    #[test]
    fn silence_decodes_to_near_silence() {
        let mut enc = G722Encoder::new();
        let mut dec = G722Decoder::new();
        let mut octets = [0u8; 160];
        let mut pcm = [0i16; 320];
        for _ in 0..10 {
            enc.encode(&[0; 320], &mut octets).unwrap();
            dec.decode(&octets, &mut pcm).unwrap();
        }
        assert!(pcm.iter().all(|s| s.abs() < 16), "{:?}", &pcm[..16]);
    }

    #[test]
    fn round_trip_keeps_tone_frequency_and_level() {
        for (hz, amp) in [
            (1000.0, 8000.0),
            (300.0, 16000.0),
            (3400.0, 4000.0),
            (6000.0, 4000.0),
        ] {
            let src = tone::sine(hz, amp, SAMPLE_RATE, 16_000);
            let mut enc = G722Encoder::new();
            let mut dec = G722Decoder::new();
            let mut octets = vec![0u8; src.len() / 2];
            let mut out = vec![0i16; src.len()];
            for (s, (o, p)) in src
                .chunks(320)
                .zip(octets.chunks_mut(160).zip(out.chunks_mut(320)))
            {
                enc.encode(s, o).unwrap();
                dec.decode(o, p).unwrap();
            }
            let tail = &out[4000..];
            let rms = tone::rms(tail);
            let want = amp / 2f64.sqrt();
            assert!(
                (rms / want - 1.0).abs() < 0.1,
                "{hz} Hz: rms {rms:.0}, want {want:.0}"
            );
            // The tone dominates: its Goertzel power is within 1 dB of the total power.
            let tone_rms = tone::goertzel_rms(tail, hz, SAMPLE_RATE);
            assert!(
                tone_rms / rms > 0.89,
                "{hz} Hz: tone {tone_rms:.0} of {rms:.0}"
            );
            let snr = tone::snr_db(tail, hz, SAMPLE_RATE);
            assert!(snr > 25.0, "{hz} Hz: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn full_scale_input_does_not_wrap() {
        let src = tone::sine(1000.0, 32767.0, SAMPLE_RATE, 8000);
        let mut enc = G722Encoder::new();
        let mut dec = G722Decoder::new();
        let mut octets = vec![0u8; src.len() / 2];
        let mut out = vec![0i16; src.len()];
        enc.encode(&src, &mut octets).unwrap();
        dec.decode(&octets, &mut out).unwrap();
        let snr = tone::snr_db(&out[2000..], 1000.0, SAMPLE_RATE);
        assert!(snr > 20.0, "SNR {snr:.1} dB");
    }
}
