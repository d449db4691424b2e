//! Test-tone generation and measurement, for codec tests and interop checks (not the hot
//! path: [`sine`] allocates).
//!
//! A tone is measured by a least-squares fit of `a·cos(ωn) + b·sin(ωn) + c` at the known
//! frequency, which is exact for any length (no window, no whole-period requirement): the fit
//! gives the tone's level, the residual the noise + distortion + aliasing around it.

use std::f64::consts::PI;

/// `n` samples of `amp · sin(2π·hz·t)` at `rate` Hz, rounded and saturated to `i16`.
pub fn sine(hz: f64, amp: f64, rate: u32, n: usize) -> Vec<i16> {
    let w = 2.0 * PI * hz / f64::from(rate);
    (0..n)
        .map(|i| {
            (amp * (w * i as f64).sin())
                .round()
                .clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// Root mean square of the samples (0 for an empty slice).
pub fn rms(x: &[i16]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let sum: f64 = x.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / x.len() as f64).sqrt()
}

/// Result of fitting a sinusoid of known frequency (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneFit {
    /// RMS of the fitted sinusoid (its amplitude / √2).
    pub tone_rms: f64,
    /// RMS of what the fit does not explain (everything but the tone and DC).
    pub residual_rms: f64,
}

/// Fits a sinusoid at `hz` (plus DC) to `x` sampled at `rate` Hz.
pub fn fit(x: &[i16], hz: f64, rate: u32) -> ToneFit {
    let w = 2.0 * PI * hz / f64::from(rate);
    // Normal equations of the 3-parameter fit [cos, sin, 1].
    let mut m = [[0.0f64; 3]; 3];
    let mut v = [0.0f64; 3];
    for (i, &s) in x.iter().enumerate() {
        let (sn, cs) = (w * i as f64).sin_cos();
        let basis = [cs, sn, 1.0];
        for r in 0..3 {
            v[r] += basis[r] * f64::from(s);
            for c in 0..3 {
                m[r][c] += basis[r] * basis[c];
            }
        }
    }
    let coef = solve3(m, v);
    let mut res = 0.0;
    for (i, &s) in x.iter().enumerate() {
        let (sn, cs) = (w * i as f64).sin_cos();
        let e = f64::from(s) - (coef[0] * cs + coef[1] * sn + coef[2]);
        res += e * e;
    }
    let n = x.len().max(1) as f64;
    ToneFit {
        tone_rms: ((coef[0] * coef[0] + coef[1] * coef[1]) / 2.0).sqrt(),
        residual_rms: (res / n).sqrt(),
    }
}

/// Gaussian elimination with partial pivoting; a singular system gives zeros.
fn solve3(mut m: [[f64; 3]; 3], mut v: [f64; 3]) -> [f64; 3] {
    for col in 0..3 {
        let piv = (col..3)
            .max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))
            .unwrap_or(col);
        m.swap(col, piv);
        v.swap(col, piv);
        if m[col][col].abs() < 1e-12 {
            return [0.0; 3];
        }
        for r in col + 1..3 {
            let f = m[r][col] / m[col][col];
            let pivot = m[col];
            for (dst, src) in m[r].iter_mut().zip(pivot).skip(col) {
                *dst -= f * src;
            }
            v[r] -= f * v[col];
        }
    }
    let mut out = [0.0; 3];
    for r in (0..3).rev() {
        let mut acc = v[r];
        for c in r + 1..3 {
            acc -= m[r][c] * out[c];
        }
        out[r] = acc / m[r][r];
    }
    out
}

/// RMS of the component at `hz` (see [`fit`]).
pub fn goertzel_rms(x: &[i16], hz: f64, rate: u32) -> f64 {
    fit(x, hz, rate).tone_rms
}

/// Tone-to-residual ratio in dB at `hz`: how far the tone stands above everything else.
pub fn snr_db(x: &[i16], hz: f64, rate: u32) -> f64 {
    let f = fit(x, hz, rate);
    20.0 * (f.tone_rms / f.residual_rms.max(1e-9)).log10()
}

/// Estimated frequency of a dominant tone from its rising zero crossings (linearly
/// interpolated); `None` with fewer than two crossings.
pub fn zero_crossing_hz(x: &[i16], rate: u32) -> Option<f64> {
    let mut first = None;
    let mut last = 0.0;
    let mut count = 0usize;
    for (i, pair) in x.windows(2).enumerate() {
        let (a, b) = (f64::from(pair[0]), f64::from(pair[1]));
        if a < 0.0 && b >= 0.0 {
            let t = i as f64 + (-a) / (b - a);
            if first.is_none() {
                first = Some(t);
            }
            last = t;
            count += 1;
        }
    }
    let first = first?;
    if count < 2 || last <= first {
        return None;
    }
    Some((count - 1) as f64 * f64::from(rate) / (last - first))
}

/// Level of `x` relative to `reference` RMS, in dB.
pub fn level_db(x: f64, reference: f64) -> f64 {
    20.0 * (x.max(1e-9) / reference.max(1e-9)).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_measures_a_clean_tone_exactly() {
        let x = sine(1000.0, 10000.0, 8000, 1234);
        let f = fit(&x, 1000.0, 8000);
        assert!((f.tone_rms - 10000.0 / 2f64.sqrt()).abs() < 1.0, "{f:?}");
        assert!(f.residual_rms < 0.5, "{f:?}");
        assert!(snr_db(&x, 1000.0, 8000) > 80.0);
        // A different frequency sees almost nothing.
        assert!(goertzel_rms(&x, 2500.0, 8000) < 100.0);
    }

    #[test]
    fn zero_crossings_find_the_frequency() {
        let x = sine(1234.5, 5000.0, 16000, 16000);
        let hz = zero_crossing_hz(&x, 16000).unwrap_or(0.0);
        assert!((hz - 1234.5).abs() < 0.5, "{hz}");
        assert_eq!(zero_crossing_hz(&[0, 0, 0], 8000), None);
        assert!((rms(&[3, -3, 3, -3]) - 3.0).abs() < 1e-9);
        assert!((level_db(1.0, 10.0) + 20.0).abs() < 1e-9);
    }
}
