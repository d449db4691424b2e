//! WAV I/O and tone analysis (Goertzel / least-squares fits), std only.
//!
//! Samples are handled as `f64` normalised to [-1, 1]; [`Wav::mono`] mixes channels down.

use std::fs;
use std::io;
use std::path::Path;

/// Decoded WAV contents: interleaved 16-bit linear samples.
#[derive(Debug, Clone)]
pub struct Wav {
    pub rate: u32,
    pub channels: u16,
    /// Interleaved samples (µ-law / A-law files are expanded to linear 16-bit).
    pub samples: Vec<i16>,
}

impl Wav {
    /// Mono mix-down, normalised to [-1, 1].
    pub fn mono(&self) -> Vec<f64> {
        let ch = usize::from(self.channels.max(1));
        self.samples
            .chunks(ch)
            .map(|frame| frame.iter().map(|&s| f64::from(s)).sum::<f64>() / (ch as f64 * 32768.0))
            .collect()
    }

    /// Length in seconds.
    pub fn duration_secs(&self) -> f64 {
        let ch = usize::from(self.channels.max(1));
        (self.samples.len() / ch) as f64 / f64::from(self.rate.max(1))
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn le_u16(b: &[u8], at: usize) -> io::Result<u16> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| bad("truncated"))
}

fn le_u32(b: &[u8], at: usize) -> io::Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad("truncated"))
}

/// G.711 µ-law byte to linear 16-bit.
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let t = ((i32::from(u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

/// G.711 A-law byte to linear 16-bit.
pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let seg = (a & 0x70) >> 4;
    let mut t = i32::from(a & 0x0f) << 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (seg - 1),
    };
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// Reads a RIFF/WAVE file: PCM 16-bit (format 1), A-law (6), µ-law (7), or
/// WAVE_FORMAT_EXTENSIBLE wrapping one of those; any rate, any channel count.
/// A data chunk whose declared size runs past the file (a recorder killed before it fixed up
/// the header) is clamped to the bytes present.
pub fn read_wav(path: &Path) -> io::Result<Wav> {
    let b = fs::read(path)?;
    if b.get(0..4) != Some(b"RIFF") || b.get(8..12) != Some(b"WAVE") {
        return Err(bad(format!("{}: not a RIFF/WAVE file", path.display())));
    }
    let mut at = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let size = le_u32(&b, at + 4)? as usize;
        let body = at + 8;
        let end = body.saturating_add(size).min(b.len());
        if id == b"fmt " {
            let mut tag = le_u16(&b, body)?;
            let channels = le_u16(&b, body + 2)?;
            let rate = le_u32(&b, body + 4)?;
            let bits = le_u16(&b, body + 14)?;
            if tag == 0xfffe {
                tag = le_u16(&b, body + 24)?;
            }
            fmt = Some((tag, channels, rate, bits));
        } else if id == b"data" {
            let (tag, channels, rate, bits) =
                fmt.ok_or_else(|| bad("data chunk before fmt chunk"))?;
            let data = &b[body..end];
            let samples = match (tag, bits) {
                (1, 16) => data
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect(),
                (6, 8) => data.iter().map(|&x| alaw_to_linear(x)).collect(),
                (7, 8) => data.iter().map(|&x| ulaw_to_linear(x)).collect(),
                _ => {
                    return Err(bad(format!(
                        "unsupported WAV format tag {tag} / {bits} bits"
                    )))
                }
            };
            return Ok(Wav {
                rate,
                channels,
                samples,
            });
        }
        at = body.saturating_add(size + (size & 1));
    }
    Err(bad(format!("{}: no data chunk", path.display())))
}

/// Writes interleaved 16-bit PCM samples as a canonical 44-byte-header WAV.
pub fn write_wav_s16(path: &Path, rate: u32, channels: u16, samples: &[i16]) -> io::Result<()> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
    out.extend_from_slice(&(2 * channels).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    fs::write(path, out)
}

/// `secs` seconds of a sine at `freq` Hz with peak `amplitude` (0..1), normalised samples.
pub fn tone(freq: f64, secs: f64, rate: u32, amplitude: f64) -> Vec<f64> {
    let n = (secs * f64::from(rate)).round() as usize;
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    (0..n).map(|i| amplitude * (w * i as f64).sin()).collect()
}

/// Normalised samples to 16-bit (clamped).
pub fn to_i16(samples: &[f64]) -> Vec<i16> {
    samples
        .iter()
        .map(|&x| (x * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Writes a mono 16-bit WAV with a sine at `freq` Hz, half full scale (-6 dBFS), for peers to
/// play (baresip's aufile needs a mono S16LE file at the codec rate, 8000 Hz for G.711).
pub fn write_tone_wav(path: &Path, freq: f64, secs: f64, rate: u32) -> io::Result<()> {
    write_wav_s16(path, rate, 1, &to_i16(&tone(freq, secs, rate, 0.5)))
}

/// Mean square of the samples (0 for none).
pub fn mean_power(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.iter().map(|x| x * x).sum::<f64>() / samples.len() as f64
}

/// Goertzel over the whole slice: the mean-square power of the component at `freq`
/// (a sine of amplitude A exactly at `freq` yields ≈ A²/2, like [`mean_power`] of that sine).
pub fn goertzel_power(samples: &[f64], rate: u32, freq: f64) -> f64 {
    let n = samples.len();
    if n == 0 {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let mag2 = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // |X|² → amplitude² = (2|X|/N)², power = amplitude² / 2.
    2.0 * mag2 / (n as f64 * n as f64)
}

/// Energy (sum of squares) of the least-squares fit `a·cos(wt) + b·sin(wt)` to `block`.
fn fitted_tone_energy(block: &[f64], w: f64) -> f64 {
    let (mut scc, mut sss, mut scs, mut sxc, mut sxs) = (0.0, 0.0, 0.0, 0.0, 0.0);
    // cos/sin of w·i by rotation (exact enough over one short block).
    let (dw_s, dw_c) = w.sin_cos();
    let (mut c, mut s) = (1.0f64, 0.0f64);
    for &x in block {
        scc += c * c;
        sss += s * s;
        scs += c * s;
        sxc += x * c;
        sxs += x * s;
        (c, s) = (c * dw_c - s * dw_s, s * dw_c + c * dw_s);
    }
    let det = scc * sss - scs * scs;
    if det.abs() < 1e-12 {
        return 0.0;
    }
    let a = (sxc * sss - sxs * scs) / det;
    let b = (sxs * scc - sxc * scs) / det;
    // For a least-squares projection, ‖fit‖² = a·<x,c> + b·<x,s>.
    (a * sxc + b * sxs).max(0.0)
}

/// Sum over blocks of the fitted tone energy at `freq`, and the total energy.
fn blockwise_fit(samples: &[f64], rate: u32, freq: f64, block: usize) -> (f64, f64) {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let mut tone_e = 0.0;
    let mut total_e = 0.0;
    for chunk in samples.chunks(block) {
        if chunk.len() < block / 2 {
            break;
        }
        tone_e += fitted_tone_energy(chunk, w);
        total_e += chunk.iter().map(|x| x * x).sum::<f64>();
    }
    (tone_e, total_e)
}

/// How far from the nominal frequency [`tone_snr_db`] searches for the tone (Hz).
pub const SNR_FREQ_TOLERANCE_HZ: f64 = 10.0;

/// Block length (20 ms) used by [`tone_snr_db`].
pub const SNR_BLOCK_SECS: f64 = 0.020;

/// Signal-to-noise ratio of a tone at `freq`, in dB.
///
/// Definition: the signal is cut into 20 ms blocks; in each block a sinusoid (free amplitude
/// and phase) is fitted by least squares. Tone energy = energy of the fits; noise = everything
/// else (total energy − tone energy: other tones, distortion, codec noise, DC, clicks).
/// SNR = 10·log10(tone / noise). The fitted frequency is the best one within
/// ±[`SNR_FREQ_TOLERANCE_HZ`] of `freq` (0.5 Hz steps), so clock error or resampling does not
/// count as noise, while a tone 50 Hz away counts almost entirely as noise. Per-block fitting
/// also tolerates phase jumps (lost or re-timed packets). Silence contributes to neither side,
/// so leading or trailing silence does not lower the SNR (check length with
/// [`active_duration`]). At most the first 20 s are analysed. Returns `f64::NEG_INFINITY` for
/// no tone energy and caps at 120 dB for no noise.
pub fn tone_snr_db(samples: &[f64], rate: u32, freq: f64) -> f64 {
    let block = ((SNR_BLOCK_SECS * f64::from(rate)).round() as usize).max(8);
    let samples = &samples[..samples.len().min(rate as usize * 20)];
    let steps = (SNR_FREQ_TOLERANCE_HZ * 2.0) as i32;
    let (mut tone_e, mut total_e) = (0.0, 0.0);
    for k in -steps..=steps {
        let (t, total) = blockwise_fit(samples, rate, freq + f64::from(k) * 0.5, block);
        total_e = total;
        tone_e = f64::max(tone_e, t);
    }
    let noise_e = (total_e - tone_e).max(0.0);
    if tone_e <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if noise_e <= tone_e * 1e-12 {
        return 120.0;
    }
    10.0 * (tone_e / noise_e).log10()
}

/// The strongest frequency between 100 and 4000 Hz (capped below Nyquist), on a 10 Hz grid.
///
/// Hann-windowed 100 ms blocks (10 Hz resolution), Goertzel power summed over blocks; at most
/// the first 10 s are analysed. Returns 0.0 for an empty or too-short input.
pub fn dominant_frequency(samples: &[f64], rate: u32) -> f64 {
    let block = (f64::from(rate) * 0.1).round() as usize;
    let limit = samples.len().min(rate as usize * 10);
    if block < 8 || limit < block {
        return 0.0;
    }
    let window: Vec<f64> = (0..block)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (block - 1) as f64).cos())
        .collect();
    let blocks: Vec<Vec<f64>> = samples[..limit]
        .chunks_exact(block)
        .map(|c| c.iter().zip(&window).map(|(x, w)| x * w).collect())
        .collect();
    let top = 4000.0f64.min(f64::from(rate) / 2.0 - 10.0);
    let mut best = (0.0, -1.0);
    let mut f = 100.0;
    while f <= top {
        let p: f64 = blocks.iter().map(|b| goertzel_power(b, rate, f)).sum();
        if p > best.1 {
            best = (f, p);
        }
        f += 10.0;
    }
    best.0
}

/// Seconds of non-silence: the signal is cut into 10 ms windows and a window counts as active
/// when its RMS exceeds `threshold` (normalised amplitude, e.g. 0.01 ≈ -40 dBFS).
pub fn active_duration(samples: &[f64], rate: u32, threshold: f64) -> f64 {
    let win = ((f64::from(rate) * 0.01).round() as usize).max(1);
    let active: usize = samples
        .chunks(win)
        .filter(|c| mean_power(c).sqrt() > threshold)
        .map(<[f64]>::len)
        .sum();
    active as f64 / f64::from(rate)
}
