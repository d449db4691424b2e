//! Per-frame cost of each codec on a 20 ms frame, for sizing (not a benchmark: run it with
//! optimizations for meaningful numbers, e.g.
//! `cargo test -p skybridge-codecs --release --test timing -- --ignored --nocapture`).
//! Criterion benches of the hot path live in the workspace's `benches/`.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::hint::black_box;
use std::time::Instant;

use skybridge_codecs::g722::{G722Decoder, G722Encoder};
use skybridge_codecs::nellymoser::NellymoserDecoder;
use skybridge_codecs::resample::Resampler;
use skybridge_codecs::speex::{SpeexDecoder, SpeexEncoder, SpeexEncoderSettings, SpeexMode};
use skybridge_codecs::{g711, l16, tone};

/// Runs `f` `iters` times and prints the mean time per call.
fn time(name: &str, iters: u32, mut f: impl FnMut()) {
    f();
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let per = start.elapsed() / iters;
    eprintln!(
        "{name:<40} {:>10.2} µs per 20 ms frame",
        per.as_secs_f64() * 1e6
    );
}

#[test]
#[ignore = "timing report, run with --ignored --nocapture (and --release for real numbers)"]
fn per_frame_costs() {
    let pcm8 = tone::sine(1000.0, 8000.0, 8000, 160);
    let pcm16 = tone::sine(1000.0, 8000.0, 16000, 320);
    let pcm48 = tone::sine(1000.0, 8000.0, 48000, 960);
    let pcm441 = tone::sine(1000.0, 8000.0, 44100, 882);
    let mut ulaw = [0u8; 160];
    let mut out8 = [0i16; 160];
    let mut bytes = [0u8; 1920];
    time("g711 ulaw -> L16 (160 samples)", 100_000, || {
        g711::decode_ulaw(black_box(&ulaw), &mut out8);
        black_box(&out8);
    });
    time("L16 -> g711 ulaw", 100_000, || {
        g711::encode_ulaw(black_box(&pcm8), &mut ulaw);
        black_box(&ulaw);
    });
    time("L16 big-endian encode (160)", 100_000, || {
        l16::encode_be(black_box(&pcm8), &mut bytes).ok();
    });
    let mut enc = G722Encoder::new();
    let mut dec = G722Decoder::new();
    let mut g722 = [0u8; 160];
    let mut out16 = [0i16; 320];
    time("g722 encode (320 samples)", 2_000, || {
        enc.encode(black_box(&pcm16), &mut g722).ok();
    });
    time("g722 decode (160 octets)", 2_000, || {
        dec.decode(black_box(&g722), &mut out16).ok();
    });
    let mut nelly = NellymoserDecoder::new();
    let block = [0x5Au8; 64];
    let mut out256 = [0i16; 256];
    time("nellymoser decode (1 block = 256 samples)", 500, || {
        nelly.decode(black_box(&block), &mut out256).ok();
    });
    let mut out = vec![0i16; 1000];
    for (from, to, input) in [
        (8000, 16000, &pcm8),
        (16000, 8000, &pcm16),
        (8000, 48000, &pcm8),
        (48000, 8000, &pcm48),
        (44100, 8000, &pcm441),
        (44100, 48000, &pcm441),
    ] {
        let mut r = Resampler::new(from, to).unwrap();
        time(
            &format!("resample {from} -> {to} ({} taps)", r.taps()),
            200,
            || {
                r.process(black_box(input), &mut out).ok();
            },
        );
    }
}

/// How a Speex variant gets from source PCM to a packet for a wideband (FLV) decoder.
struct SpeexVariant {
    name: &'static str,
    /// Rate of the source PCM: 8 kHz sources go through the 8 → 16 kHz resampler unless the
    /// encoder itself takes 8 kHz.
    src_rate: u32,
    make: fn() -> SpeexEncoder,
}

/// Runs a source through a variant (resampling when the encoder's rate differs) and decodes
/// every packet with a wideband decoder; returns (16 kHz output, encoded bytes).
struct SpeexPath {
    enc: SpeexEncoder,
    rs: Option<Resampler>,
    pending: Vec<i16>,
    rs_out: Vec<i16>,
    pkt: [u8; 200],
}

impl SpeexPath {
    fn new(v: &SpeexVariant) -> SpeexPath {
        let enc = (v.make)();
        assert_eq!(enc.stream_mode(), SpeexMode::Wideband);
        let rate = enc.mode().sample_rate();
        let rs = (rate != v.src_rate).then(|| Resampler::new(v.src_rate, rate).unwrap());
        SpeexPath {
            enc,
            rs,
            pending: Vec::with_capacity(2000),
            rs_out: vec![0; 2000],
            pkt: [0; 200],
        }
    }

    /// Feeds one 20 ms source frame, calls `sink` with each packet made.
    fn push(&mut self, src: &[i16], mut sink: impl FnMut(&[u8])) {
        let f = self.enc.mode().frame_samples();
        match self.rs.as_mut() {
            Some(rs) => {
                let n = rs.process(src, &mut self.rs_out).unwrap();
                self.pending.extend_from_slice(&self.rs_out[..n]);
            }
            None => self.pending.extend_from_slice(src),
        }
        while self.pending.len() >= f {
            let n = self.enc.encode(&self.pending[..f], &mut self.pkt).unwrap();
            sink(&self.pkt[..n]);
            self.pending.drain(..f);
        }
    }
}

fn speex_variants() -> Vec<SpeexVariant> {
    fn s(quality: u8, complexity: u8, high: Option<u8>) -> SpeexEncoderSettings {
        SpeexEncoderSettings {
            quality,
            complexity,
            high_band_mode: high,
        }
    }
    macro_rules! wb {
        ($name:expr, $rate:expr, $q:expr, $c:expr, $h:expr) => {
            SpeexVariant {
                name: $name,
                src_rate: $rate,
                make: || SpeexEncoder::with_settings(SpeexMode::Wideband, s($q, $c, $h)).unwrap(),
            }
        };
    }
    macro_rules! nbwb {
        ($name:expr, $q:expr, $c:expr) => {
            nbwb!($name, 8000, $q, $c)
        };
        ($name:expr, $rate:expr, $q:expr, $c:expr) => {
            SpeexVariant {
                name: $name,
                src_rate: $rate,
                make: || SpeexEncoder::narrowband_for_wideband(s($q, $c, None)).unwrap(),
            }
        };
    }
    vec![
        wb!("16k: wb q8 c3 (today)", 16000, 8, 3, None),
        wb!("16k: wb q8 c2", 16000, 8, 2, None),
        wb!("16k: wb q8 c1", 16000, 8, 1, None),
        wb!("16k: wb q8 c3 hb2", 16000, 8, 3, Some(2)),
        wb!("16k: wb q8 c3 hb1", 16000, 8, 3, Some(1)),
        wb!("16k: wb q8 c1 hb1", 16000, 8, 1, Some(1)),
        wb!("16k: wb q6 c3", 16000, 6, 3, None),
        wb!("16k: wb q8 c2 hb2", 16000, 8, 2, Some(2)),
        wb!("16k: wb q9 c3", 16000, 9, 3, None),
        wb!("16k: wb q9 c3 hb2", 16000, 9, 3, Some(2)),
        wb!("16k: wb q9 c3 hb1", 16000, 9, 3, Some(1)),
        wb!("8k: resample + wb q8 c3 (today)", 8000, 8, 3, None),
        wb!("8k: resample + wb q8 c1", 8000, 8, 1, None),
        nbwb!("8k: nb-in-wb q8 c3", 8, 3),
        nbwb!("8k: nb-in-wb q9 c3", 9, 3),
        nbwb!("8k: nb-in-wb q10 c3", 10, 3),
        nbwb!("8k: nb-in-wb q8 c2", 8, 2),
        nbwb!("8k: nb-in-wb q8 c1", 8, 1),
        nbwb!("8k: nb-in-wb q8 c0", 8, 0),
        nbwb!("8k: nb-in-wb q9 c1", 9, 1),
        nbwb!("8k: nb-in-wb q10 c2", 10, 2),
        nbwb!("8k: nb-in-wb q10 c1", 10, 1),
        nbwb!("16k: downsample + nb-in-wb q10 c3", 16000, 10, 3),
    ]
}

/// The rest of a Speex-WB call's per-20 ms work besides the Speex encoder: [0] with a PCMU
/// SIP leg (Speex-WB decode, 16 → 8 kHz, µ-law encode; µ-law decode), [1] with a G.722 one
/// (Speex-WB decode, G.722 encode; G.722 decode).
#[allow(clippy::type_complexity)]
fn speex_pair_components(src8: &[i16], src16: &[i16]) -> Vec<(&'static str, Box<dyn FnMut()>)> {
    let mut enc = SpeexEncoder::new(SpeexMode::Wideband, 8).unwrap();
    let mut spx = [0u8; 200];
    let n = enc.encode(&src16[..320], &mut spx).unwrap();
    let spx = spx[..n].to_vec();
    let mut ulaw = [0u8; 160];
    g711::encode_ulaw(&src8[..160], &mut ulaw);
    let mut g722 = [0u8; 160];
    G722Encoder::new().encode(&src16[..320], &mut g722).unwrap();
    let spx2 = spx.clone();
    let mut dec = SpeexDecoder::new(SpeexMode::Wideband).unwrap();
    let mut dec2 = SpeexDecoder::new(SpeexMode::Wideband).unwrap();
    let mut down = Resampler::new(16000, 8000).unwrap();
    let mut gd = G722Decoder::new();
    let mut ge = G722Encoder::new();
    let (mut a, mut b, mut bytes) = (vec![0i16; 2000], vec![0i16; 2000], vec![0u8; 2000]);
    let (mut a2, mut bytes2) = (vec![0i16; 2000], vec![0u8; 2000]);
    vec![
        (
            "rest of Speex-WB <-> PCMU",
            Box::new(move || {
                let n = dec.decode(Some(black_box(&spx)), &mut a).unwrap();
                let m = down.process(&a[..n], &mut b).unwrap();
                g711::encode_ulaw(&b[..m], &mut bytes);
                let k = g711::decode_ulaw(black_box(&ulaw), &mut b);
                black_box((&bytes, k));
            }),
        ),
        (
            "rest of Speex-WB <-> G.722",
            Box::new(move || {
                let n = dec2.decode(Some(black_box(&spx2)), &mut a2).unwrap();
                ge.encode(&a2[..n], &mut bytes2).unwrap();
                let k = gd.decode(black_box(&g722), &mut a2).unwrap();
                black_box((&bytes2, k));
            }),
        ),
    ]
}

/// Median of `x` (sorts it).
fn median(x: &mut [f64]) -> f64 {
    x.sort_by(f64::total_cmp);
    x[x.len() / 2]
}

/// Per-frame cost and tone fidelity of the Speex encoder settings, for a wideband (FLV)
/// receiver: from 16 kHz sources and from 8 kHz ones (8 → 16 kHz resampler + wideband
/// encoder, or a narrowband encoder whose frames the wideband decoder plays). Costs are the
/// minimum and median over interleaved batches (the machine is shared), with a 160-sample copy
/// as the same-run baseline. With `SKYBRIDGE_SPEECH_DIR` set to a directory holding
/// `speech16.raw` and `speech8.raw` (mono s16le), each variant's wideband-decoded speech is
/// written there as `<n>.raw` for an external quality measure (e.g. PESQ).
#[test]
#[ignore = "timing report, run with --release --ignored --nocapture"]
fn speex_encoder_settings() {
    let variants = speex_variants();
    // Cost: every variant encodes the same second of a two-tone signal, batch by batch,
    // the variants interleaved so that a noisy neighbour hits them alike.
    let src8: Vec<i16> = tone::sine(440.0, 6000.0, 8000, 8000)
        .iter()
        .zip(tone::sine(1700.0, 3000.0, 8000, 8000))
        .map(|(a, b)| a.saturating_add(b))
        .collect();
    let src16: Vec<i16> = tone::sine(440.0, 6000.0, 16000, 16000)
        .iter()
        .zip(tone::sine(1700.0, 3000.0, 16000, 16000))
        .map(|(a, b)| a.saturating_add(b))
        .collect();
    let mut paths: Vec<SpeexPath> = variants.iter().map(SpeexPath::new).collect();
    let mut components = speex_pair_components(&src8, &src16);
    let (rounds, batch) = (60usize, 50usize);
    let mut costs = vec![Vec::new(); variants.len()];
    let mut comp_costs = vec![Vec::new(); components.len()];
    let mut base = Vec::new();
    let mut copy = [0i16; 160];
    for _ in 0..rounds {
        let start = Instant::now();
        for i in 0..batch * 100 {
            copy.copy_from_slice(black_box(&src8[(i % 50) * 160..][..160]));
            black_box(&copy);
        }
        base.push(start.elapsed().as_secs_f64() * 1e6 / (batch * 100) as f64);
        for (k, (v, p)) in variants.iter().zip(&mut paths).enumerate() {
            let (src, f) = if v.src_rate == 8000 {
                (&src8, 160)
            } else {
                (&src16, 320)
            };
            let start = Instant::now();
            for i in 0..batch {
                p.push(black_box(&src[(i % 50) * f..][..f]), |pkt| {
                    black_box(pkt);
                });
            }
            costs[k].push(start.elapsed().as_secs_f64() * 1e6 / batch as f64);
        }
        for (k, (_, f)) in components.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            comp_costs[k].push(start.elapsed().as_secs_f64() * 1e6 / batch as f64);
        }
    }
    let comp_min: Vec<f64> = comp_costs
        .iter()
        .map(|c| c.iter().copied().fold(f64::MAX, f64::min))
        .collect();
    let comp: Vec<f64> = comp_costs.iter_mut().map(|c| median(c)).collect();
    for (((name, _), c), m) in components.iter().zip(&comp).zip(&comp_min) {
        eprintln!("{name:<34} {m:>8.1} {c:>8.1} µs (min, median)");
    }
    let base_min = base.iter().copied().fold(f64::MAX, f64::min);
    eprintln!(
        "baseline: 160-sample copy {base_min:.3} µs (min), {:.3} µs (median)",
        median(&mut base)
    );
    eprintln!(
        "{:<34} {:>8} {:>8} {:>7} {:>9} {:>9} {:>8} {:>22}",
        "variant",
        "min µs",
        "med µs",
        "kbit/s",
        "1k SNR",
        "3.4k SNR",
        "1k lvl",
        "calls/core (min, med)"
    );
    for (k, v) in variants.iter().enumerate() {
        let min = costs[k].iter().copied().fold(f64::MAX, f64::min);
        let med = median(&mut costs[k]);
        // Fidelity: 2 s tones at 1 kHz and 3.4 kHz, decoded by a wideband decoder.
        let mut snrs = [0.0; 2];
        let mut level = 0.0;
        let mut bytes = 0usize;
        for (j, hz) in [1000.0, 3400.0].into_iter().enumerate() {
            let src = tone::sine(hz, 10_000.0, v.src_rate, v.src_rate as usize * 2);
            let out = decode_wideband(v, &src, &mut bytes);
            let tail = &out[4000..];
            snrs[j] = tone::snr_db(tail, hz, 16000);
            if j == 0 {
                level = tone::level_db(tone::rms(tail), 10_000.0 / 2f64.sqrt());
            }
        }
        let kbps = bytes as f64 * 8.0 / 4.0 / 1000.0;
        // Calls per core of Speex-WB ⇄ PCMU (8 kHz variants) or ⇄ G.722 (16 kHz ones): the
        // other direction and the other codec's half from the components, medians.
        let j = usize::from(v.src_rate != 8000);
        let best = 20_000.0 / (min + comp_min[j]);
        let typical = 20_000.0 / (med + comp[j]);
        eprintln!(
            "{:<34} {min:>8.1} {med:>8.1} {kbps:>7.1} {:>9.1} {:>9.1} {level:>8.2} {best:>11.0} {typical:>10.0}",
            v.name, snrs[0], snrs[1]
        );
    }
    if let Ok(dir) = std::env::var("SKYBRIDGE_SPEECH_DIR") {
        dump_for_external_checks(&variants, std::path::Path::new(&dir));
    }
}

/// Writes, per variant `k` and signal (`speech`; `t1000`, 6 s of 1 kHz, long enough to show
/// ffmpeg's own float decoder drifting off a steady tone after ~2 s whatever the encoder;
/// `t3400`, 2 s of 3.4 kHz), our wideband decoder's
/// output `<k>_<signal>.raw` and the packets as FLV (SoundFormat 11) with 1 and 3 frames per
/// tag, `<k>_<signal>_1.flv` / `_3.flv`, for decoding with ffmpeg and scoring outside.
fn dump_for_external_checks(variants: &[SpeexVariant], dir: &std::path::Path) {
    for (k, v) in variants.iter().enumerate() {
        let raw = std::fs::read(dir.join(format!("speech{}.raw", v.src_rate / 1000))).unwrap();
        let speech: Vec<i16> = raw
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let signals = [
            ("speech", speech),
            (
                "t1000",
                tone::sine(1000.0, 10_000.0, v.src_rate, v.src_rate as usize * 6),
            ),
            (
                "t3400",
                tone::sine(3400.0, 10_000.0, v.src_rate, v.src_rate as usize * 2),
            ),
        ];
        for (name, src) in signals {
            let mut frames = Vec::new();
            let out = decode_wideband(v, &src, &mut 0);
            let mut p = SpeexPath::new(v);
            for frame in src.chunks_exact(v.src_rate as usize / 50) {
                p.push(frame, |pkt| frames.push(pkt.to_vec()));
            }
            // Several frames per packet: encode anew, 3 frames per call.
            let mut enc = (v.make)();
            let mut rs = (enc.mode().sample_rate() != v.src_rate)
                .then(|| Resampler::new(v.src_rate, enc.mode().sample_rate()).unwrap());
            let mut coded: Vec<i16> = Vec::new();
            let mut buf = vec![0i16; 2000];
            for frame in src.chunks_exact(v.src_rate as usize / 50) {
                match rs.as_mut() {
                    Some(r) => {
                        let n = r.process(frame, &mut buf).unwrap();
                        coded.extend_from_slice(&buf[..n]);
                    }
                    None => coded.extend_from_slice(frame),
                }
            }
            let f3 = enc.mode().frame_samples() * 3;
            let mut triples = Vec::new();
            let mut pkt = [0u8; 600];
            for chunk in coded.chunks_exact(f3) {
                let n = enc.encode(chunk, &mut pkt).unwrap();
                triples.push(pkt[..n].to_vec());
            }
            let bytes: Vec<u8> = out.iter().flat_map(|s| s.to_le_bytes()).collect();
            std::fs::write(dir.join(format!("{k}_{name}.raw")), bytes).unwrap();
            std::fs::write(dir.join(format!("{k}_{name}_1.flv")), flv(&frames, 20)).unwrap();
            std::fs::write(dir.join(format!("{k}_{name}_3.flv")), flv(&triples, 60)).unwrap();
        }
        eprintln!("{k}: {}", v.name);
    }
}

/// An FLV file of Speex (SoundFormat 11, header byte 0xB2) tags, `ms` apart.
fn flv(payloads: &[Vec<u8>], ms: u32) -> Vec<u8> {
    let mut out = b"FLV\x01\x04\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
    for (i, p) in payloads.iter().enumerate() {
        let size = (p.len() + 1) as u32;
        let ts = i as u32 * ms;
        out.push(8);
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.push((ts >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0, 0xB2]);
        out.extend_from_slice(p);
        out.extend_from_slice(&(size + 11).to_be_bytes());
    }
    out
}

/// `src` through variant `v` and a wideband decoder, at 16 kHz; adds the packet bytes to
/// `bytes`.
fn decode_wideband(v: &SpeexVariant, src: &[i16], bytes: &mut usize) -> Vec<i16> {
    let mut p = SpeexPath::new(v);
    let mut dec = SpeexDecoder::new(SpeexMode::Wideband).unwrap();
    let f = v.src_rate as usize / 50;
    let mut out = Vec::new();
    let mut pcm = [0i16; 320];
    for frame in src.chunks_exact(f) {
        p.push(frame, |pkt| {
            *bytes += pkt.len();
            assert_eq!(dec.decode(Some(pkt), &mut pcm), Ok(320));
            out.extend_from_slice(&pcm);
        });
    }
    out
}
