//! Streaming sample-rate conversion between the telephony and client rates: a polyphase
//! windowed-sinc (Kaiser) filter for any ratio of the supported rates (8, 11.025, 16,
//! 22.05, 32, 44.1 and 48 kHz).
//!
//! ```text
//! x (from_hz) ─► ↑L ─► low-pass at ~0.46·min(from, to), stopband from min(from, to)/2 ─► ↓M ─► y
//! L / M = to_hz / from_hz in lowest terms; only the L phases' dot products are computed.
//! ```
//!
//! Design: passband to 0.43·min(from, to) (3.44 kHz for 8 kHz telephony), stopband from
//! min(from, to)/2 with a 70 dB Kaiser design target (≥ 60 dB guaranteed by the tests), so
//! nothing above the output Nyquist frequency aliases back. The filter bank for each rate pair is
//! built once per process and shared; a [`Resampler`] owns only its history (fixed size) and
//! never allocates after construction.

use std::f64::consts::PI;
use std::sync::{Arc, Mutex};

/// Sample rates the resampler converts between, in Hz.
pub const SUPPORTED_RATES: [u32; 7] = [8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000];

/// Passband edge as a fraction of the lower of the two rates.
const PASS_EDGE: f64 = 0.43;
/// Stopband edge as a fraction of the lower rate: its Nyquist frequency.
const STOP_EDGE: f64 = 0.5;
/// Kaiser design attenuation target, dB.
const ATTENUATION_DB: f64 = 70.0;

/// Errors from the resampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResampleError {
    /// One of the rates is not in [`SUPPORTED_RATES`].
    #[error("resampling {from} Hz to {to} Hz is not supported")]
    UnsupportedRates {
        /// Input rate, Hz.
        from: u32,
        /// Output rate, Hz.
        to: u32,
    },
    /// The output buffer is shorter than the samples this call produces.
    #[error("output buffer holds {got} samples, {needed} needed")]
    OutputTooSmall {
        /// Samples the call produces.
        needed: usize,
        /// Samples the output buffer holds.
        got: usize,
    },
}

/// Polyphase filter bank for one rate pair.
#[derive(Debug)]
struct Bank {
    from: u32,
    to: u32,
    /// Interpolation factor.
    l: usize,
    /// Decimation factor.
    m: usize,
    /// Taps per phase.
    taps: usize,
    /// `l` phases of `taps` coefficients, each ordered oldest input first.
    coefs: Vec<f32>,
}

/// Dot product with eight independent accumulators, so the compiler can vectorize it
/// (a single running `f32` sum has to be evaluated strictly in order).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

const fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// Zeroth-order modified Bessel function of the first kind (power series).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    let mut k = 1.0;
    while term > 1e-14 * sum {
        term *= q / (k * k);
        sum += term;
        k += 1.0;
    }
    sum
}

impl Bank {
    fn design(from: u32, to: u32) -> Bank {
        let g = gcd(from, to);
        let l = (to / g) as usize;
        let m = (from / g) as usize;
        if l == m {
            return Bank {
                from,
                to,
                l: 1,
                m: 1,
                taps: 1,
                coefs: vec![1.0],
            };
        }
        let fmin = f64::from(from.min(to));
        let fs_up = f64::from(from) * l as f64;
        let transition = (STOP_EDGE - PASS_EDGE) * fmin / fs_up; // cycles per up-sample
        let cutoff = (STOP_EDGE + PASS_EDGE) / 2.0 * fmin / fs_up;
        // Kaiser's length estimate, rounded up to a whole number of taps per phase.
        let n_est = ((ATTENUATION_DB - 7.95) / (14.36 * transition)).ceil() as usize + 1;
        let taps = n_est.div_ceil(l).max(2);
        let n = taps * l;
        let beta = 0.1102 * (ATTENUATION_DB - 8.7);
        let i0_beta = bessel_i0(beta);
        let center = (n as f64 - 1.0) / 2.0;
        let proto: Vec<f64> = (0..n)
            .map(|i| {
                let t = i as f64 - center;
                let sinc = if t == 0.0 {
                    2.0 * cutoff
                } else {
                    (2.0 * PI * cutoff * t).sin() / (PI * t)
                };
                let r = t / (center + 0.5);
                let w = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0_beta;
                sinc * w * l as f64
            })
            .collect();
        let mut coefs = vec![0f32; n];
        for p in 0..l {
            for q in 0..taps {
                coefs[p * taps + q] = proto[p + (taps - 1 - q) * l] as f32;
            }
        }
        Bank {
            from,
            to,
            l,
            m,
            taps,
            coefs,
        }
    }

    /// The shared bank for a rate pair, designed on first use.
    fn shared(from: u32, to: u32) -> Arc<Bank> {
        static CACHE: Mutex<Vec<Arc<Bank>>> = Mutex::new(Vec::new());
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = cache.iter().find(|b| b.from == from && b.to == to) {
            return Arc::clone(b);
        }
        let bank = Arc::new(Bank::design(from, to));
        cache.push(Arc::clone(&bank));
        bank
    }
}

/// A streaming resampler for one mono stream: feed it input frames of any size, it keeps the
/// filter history between calls.
#[derive(Debug, Clone)]
pub struct Resampler {
    bank: Arc<Bank>,
    /// Last `taps` inputs, stored twice so a contiguous window always exists.
    hist: Vec<f32>,
    /// Index of the oldest sample of the window in `hist`.
    head: usize,
    /// Up-sampled position of the next output, relative to the next input sample.
    next: usize,
}

impl Resampler {
    /// A resampler from `from_hz` to `to_hz`, both in [`SUPPORTED_RATES`]. The first use of a
    /// rate pair in the process designs its filter (milliseconds); later ones share it.
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Resampler, ResampleError> {
        if !SUPPORTED_RATES.contains(&from_hz) || !SUPPORTED_RATES.contains(&to_hz) {
            return Err(ResampleError::UnsupportedRates {
                from: from_hz,
                to: to_hz,
            });
        }
        let bank = Bank::shared(from_hz, to_hz);
        let hist = vec![0.0; 2 * bank.taps];
        Ok(Resampler {
            bank,
            hist,
            head: 0,
            next: 0,
        })
    }

    /// Input rate, Hz.
    pub fn from_hz(&self) -> u32 {
        self.bank.from
    }

    /// Output rate, Hz.
    pub fn to_hz(&self) -> u32 {
        self.bank.to
    }

    /// Filter taps per output sample (the cost of one output sample in multiply-adds).
    pub fn taps(&self) -> usize {
        self.bank.taps
    }

    /// Delay the filter adds, in output samples (its group delay).
    pub fn delay_output_samples(&self) -> f64 {
        (self.bank.l * self.bank.taps - 1) as f64 / 2.0 / self.bank.m as f64
    }

    /// Upper bound of the samples one call produces from `input_len` samples:
    /// `ceil(input_len · to / from)`.
    pub fn max_output_len(&self, input_len: usize) -> usize {
        (input_len * self.bank.l).div_ceil(self.bank.m)
    }

    /// Exact number of samples the next [`process`](Self::process) call produces from
    /// `input_len` samples.
    pub fn output_len(&self, input_len: usize) -> usize {
        (input_len * self.bank.l)
            .saturating_sub(self.next)
            .div_ceil(self.bank.m)
    }

    /// Resets the history to silence (a new stream).
    pub fn reset(&mut self) {
        self.hist.fill(0.0);
        self.head = 0;
        self.next = 0;
    }

    /// Converts `input` and writes the output into `out`; returns the sample count, which is
    /// [`output_len`](Self::output_len)`(input.len())`. Nothing is consumed when `out` is too
    /// short.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) -> Result<usize, ResampleError> {
        let needed = self.output_len(input.len());
        if out.len() < needed {
            return Err(ResampleError::OutputTooSmall {
                needed,
                got: out.len(),
            });
        }
        let Bank { l, m, taps, .. } = *self.bank;
        let mut written = 0;
        for &x in input {
            let x = f32::from(x);
            self.hist[self.head] = x;
            self.hist[self.head + taps] = x;
            self.head = (self.head + 1) % taps;
            let window = &self.hist[self.head..self.head + taps];
            while self.next < l {
                let phase = &self.bank.coefs[self.next * taps..(self.next + 1) * taps];
                let acc = dot(window, phase);
                if let Some(o) = out.get_mut(written) {
                    *o = acc.round().clamp(-32768.0, 32767.0) as i16;
                }
                written += 1;
                self.next += m;
            }
            self.next -= l;
        }
        Ok(written)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::tone;

    /// Resamples `input` in 20 ms frames (as a call does) and returns the whole output.
    fn run(r: &mut Resampler, input: &[i16]) -> Vec<i16> {
        let frame = r.from_hz() as usize / 50;
        let mut out = Vec::new();
        let mut buf = vec![0i16; r.max_output_len(frame)];
        for chunk in input.chunks(frame) {
            let n = r.process(chunk, &mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// Level (dB re input amplitude) and SNR of a tone through a resampler, after the
    /// filter has settled.
    fn tone_through(from: u32, to: u32, hz: f64, amp: f64) -> (f64, Vec<i16>) {
        let mut r = Resampler::new(from, to).unwrap();
        let input = tone::sine(hz, amp, from, from as usize);
        let out = run(&mut r, &input);
        assert_eq!(out.len(), to as usize, "{from}->{to}: output length");
        let settled = &out[to as usize / 10..];
        let level = tone::level_db(tone::rms(settled), amp / 2f64.sqrt());
        (level, settled.to_vec())
    }

    #[test]
    fn dot_matches_the_plain_sum_for_every_length() {
        for n in 0..40 {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 / (i as f32 + 1.0)).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "{n}");
        }
    }

    #[test]
    fn unsupported_rates_are_rejected() {
        assert_eq!(
            Resampler::new(8000, 12345).unwrap_err(),
            ResampleError::UnsupportedRates {
                from: 8000,
                to: 12345
            }
        );
    }

    #[test]
    fn short_output_is_an_error_and_consumes_nothing() {
        let mut r = Resampler::new(8000, 48000).unwrap();
        let mut out = [0i16; 10];
        assert_eq!(
            r.process(&[1000; 160], &mut out),
            Err(ResampleError::OutputTooSmall {
                needed: 960,
                got: 10
            })
        );
        assert_eq!(r.output_len(160), 960);
    }

    #[test]
    fn frame_sizes_give_exact_output_counts() {
        for (from, to) in [(8000, 16000), (48000, 8000), (44100, 8000), (44100, 48000)] {
            let mut r = Resampler::new(from, to).unwrap();
            let frame = from as usize / 50;
            let mut out = vec![0i16; r.max_output_len(frame)];
            let mut total = 0;
            for _ in 0..50 {
                let expect = r.output_len(frame);
                let n = r.process(&vec![0; frame], &mut out).unwrap();
                assert_eq!(n, expect);
                total += n;
            }
            assert_eq!(total, to as usize, "{from}->{to}");
        }
    }

    #[test]
    fn passband_tones_keep_their_level_through_every_pair() {
        // 1 kHz and 3.4 kHz (top of the telephone band) within ±0.1 dB, SNR ≥ 60 dB.
        for (from, to) in [
            (8000, 16000),
            (16000, 8000),
            (8000, 48000),
            (48000, 8000),
            (16000, 48000),
            (48000, 16000),
            (44100, 8000),
            (44100, 16000),
            (44100, 48000),
        ] {
            for hz in [1000.0, 3400.0] {
                let (level, out) = tone_through(from, to, hz, 10000.0);
                assert!(level.abs() < 0.1, "{from}->{to} {hz} Hz: {level:.3} dB");
                let snr = tone::snr_db(&out, hz, to);
                assert!(snr > 60.0, "{from}->{to} {hz} Hz: SNR {snr:.1} dB");
            }
        }
    }

    #[test]
    fn tones_above_the_output_nyquist_do_not_alias() {
        // 5 kHz into 8 kHz output would alias to 3 kHz: it must be ≥ 60 dB down.
        for (from, to, hz) in [
            (16000, 8000, 5000.0),
            (48000, 8000, 5000.0),
            (44100, 8000, 4500.0),
            (48000, 16000, 9000.0),
            (44100, 16000, 12000.0),
        ] {
            let amp = 20000.0;
            let (_, out) = tone_through(from, to, hz, amp);
            let alias_hz = f64::from(to) - hz;
            let alias = tone::goertzel_rms(&out, alias_hz, to);
            let rel = tone::level_db(alias, amp / 2f64.sqrt());
            let total = tone::level_db(tone::rms(&out), amp / 2f64.sqrt());
            assert!(rel < -60.0, "{from}->{to} {hz} Hz: alias at {rel:.1} dB");
            assert!(
                total < -60.0,
                "{from}->{to} {hz} Hz: output at {total:.1} dB"
            );
        }
    }

    #[test]
    fn upsampling_leaves_no_images() {
        // A 3 kHz tone at 8 kHz up to 48 kHz: the image at 5 kHz must be ≥ 60 dB down.
        let (_, out) = tone_through(8000, 48000, 3000.0, 20000.0);
        let image = tone::goertzel_rms(&out, 5000.0, 48000);
        let rel = tone::level_db(image, 20000.0 / 2f64.sqrt());
        assert!(rel < -60.0, "image at {rel:.1} dB");
    }

    #[test]
    fn same_rate_is_identity_and_reset_clears_history() {
        let mut r = Resampler::new(16000, 16000).unwrap();
        let x = tone::sine(440.0, 1000.0, 16000, 320);
        let mut out = vec![0i16; 320];
        assert_eq!(r.process(&x, &mut out), Ok(320));
        assert_eq!(out, x);
        let mut r = Resampler::new(8000, 16000).unwrap();
        let mut out = vec![0i16; 320];
        r.process(&[20000; 160], &mut out).unwrap();
        r.reset();
        r.process(&[0; 160], &mut out).unwrap();
        assert!(out.iter().all(|&s| s == 0));
    }
}
