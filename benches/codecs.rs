//! Per-frame cost of each codec alone, the resampler, and G.711 ⇄ L16 through the call's
//! `Transcoder`, against a baseline measured in the same run (`baseline/memcpy_160`: copying
//! one 20 ms µ-law payload). Every other transcode pair, as calls run it, is in
//! `benches/matrix.rs` (`scripts/bench-matrix.sh`).
//!
//! Every figure is for one frame: 20 ms, except Nellymoser (one 256-sample block: 32 ms at
//! 8 kHz, 16 ms at 16 kHz) and AAC (one 1024-sample access unit: 23.2 ms at 44.1 kHz).
//!
//! Run: `cargo bench --bench codecs -- --warm-up-time 1 --measurement-time 3`.
//! AAC needs ffmpeg (to make one access unit); without it the AAC benches are skipped.
#![allow(clippy::unwrap_used)] // bench set-up may unwrap

use std::hint::black_box;

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use skybridge::media::{Codec, MediaFrame};
use skybridge::transcode::Transcoder;
use skybridge_codecs::aac::AacDecoder;
use skybridge_codecs::g722::{G722Decoder, G722Encoder};
use skybridge_codecs::nellymoser::{NellymoserDecoder, NellymoserEncoder};
use skybridge_codecs::opus::{OpusDecoder, OpusEncoder, MAX_PACKET};
use skybridge_codecs::resample::Resampler;
use skybridge_codecs::speex::{SpeexDecoder, SpeexEncoder, SpeexMode, DEFAULT_QUALITY};
use skybridge_codecs::{g711, l16};

mod support;
use support::{aac_stream, speech_like};

/// One access unit from the middle of ffmpeg's AAC-LC coding of one second of speech.
fn aac_unit() -> Option<(Vec<u8>, Vec<u8>)> {
    let (config, units) = aac_stream(&speech_like(44_100, 44_100))?;
    let au = units.get(units.len() / 2)?.clone();
    Some((config, au))
}

fn speex_packet(mode: SpeexMode) -> Vec<u8> {
    let f = mode.frame_samples();
    let pcm = speech_like(mode.sample_rate(), f * 10);
    let mut enc = SpeexEncoder::new(mode, DEFAULT_QUALITY).unwrap();
    let mut out = [0u8; 200];
    let mut n = 0;
    for frame in pcm.chunks_exact(f) {
        n = enc.encode(frame, &mut out).unwrap();
    }
    out[..n].to_vec()
}

fn opus_packet(rate: u32) -> Vec<u8> {
    let f = rate as usize / 50;
    let pcm = speech_like(rate, f * 10);
    let mut enc = OpusEncoder::new(rate, 24_000).unwrap();
    let mut out = [0u8; MAX_PACKET];
    let mut n = 0;
    for frame in pcm.chunks_exact(f) {
        n = enc.encode(frame, &mut out).unwrap();
    }
    out[..n].to_vec()
}

fn baseline(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline");
    let src = [0x55u8; 160];
    let mut dst = [0u8; 160];
    g.bench_function("memcpy_160", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
    g.finish();
}

fn codecs(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let pcm8 = speech_like(8_000, 160);
    let pcm16 = speech_like(16_000, 320);
    let pcm48 = speech_like(48_000, 960);
    let mut ulaw = [0u8; 160];
    g711::encode_ulaw(&pcm8, &mut ulaw);
    let mut out = vec![0i16; 4096];
    let mut bytes = vec![0u8; 4096];

    g.bench_function("g711_ulaw_decode_20ms", |b| {
        b.iter(|| black_box(g711::decode_ulaw(black_box(&ulaw), &mut out)))
    });
    g.bench_function("g711_ulaw_encode_20ms", |b| {
        b.iter(|| black_box(g711::encode_ulaw(black_box(&pcm8), &mut bytes)))
    });
    let mut be = [0u8; 320];
    l16::encode_be(&pcm8, &mut be).unwrap();
    g.bench_function("l16_decode_20ms_8k", |b| {
        b.iter(|| black_box(l16::decode_be(black_box(&be), &mut out)))
    });
    g.bench_function("l16_encode_20ms_8k", |b| {
        b.iter(|| black_box(l16::encode_be(black_box(&pcm8), &mut bytes)))
    });

    let mut g722e = G722Encoder::new();
    let mut g722 = [0u8; 160];
    g722e.encode(&pcm16, &mut g722).unwrap();
    let mut g722d = G722Decoder::new();
    g.bench_function("g722_decode_20ms", |b| {
        b.iter(|| black_box(g722d.decode(black_box(&g722), &mut out)))
    });
    g.bench_function("g722_encode_20ms", |b| {
        b.iter(|| black_box(g722e.encode(black_box(&pcm16), &mut bytes)))
    });

    let block = speech_like(8_000, 256);
    let mut nelly = [0u8; 64];
    let mut nellye = NellymoserEncoder::new();
    nellye.encode(&block, &mut nelly).unwrap();
    let mut nellyd = NellymoserDecoder::new();
    g.bench_function("nellymoser_decode_block256", |b| {
        b.iter(|| black_box(nellyd.decode(black_box(&nelly), &mut out)))
    });
    g.bench_function("nellymoser_encode_block256", |b| {
        b.iter(|| black_box(nellye.encode(black_box(&block), &mut bytes)))
    });

    for (name, mode, pcm) in [
        ("nb", SpeexMode::Narrowband, &pcm8),
        ("wb", SpeexMode::Wideband, &pcm16),
    ] {
        let pkt = speex_packet(mode);
        let mut dec = SpeexDecoder::new(mode).unwrap();
        let mut enc = SpeexEncoder::new(mode, DEFAULT_QUALITY).unwrap();
        g.bench_function(format!("speex_{name}_decode_20ms"), |b| {
            b.iter(|| black_box(dec.decode(Some(black_box(&pkt)), &mut out)))
        });
        g.bench_function(format!("speex_{name}_encode_20ms"), |b| {
            b.iter(|| black_box(enc.encode(black_box(pcm), &mut bytes)))
        });
    }

    let pkt48 = opus_packet(48_000);
    let mut od48 = OpusDecoder::new(48_000).unwrap();
    let mut od8 = OpusDecoder::new(8_000).unwrap();
    let mut oe48 = OpusEncoder::new(48_000, 24_000).unwrap();
    let mut oe8 = OpusEncoder::new(8_000, 24_000).unwrap();
    g.bench_function("opus_decode_20ms_48k", |b| {
        b.iter(|| black_box(od48.decode(Some(black_box(&pkt48)), &mut out)))
    });
    g.bench_function("opus_decode_20ms_to_8k", |b| {
        b.iter(|| black_box(od8.decode(Some(black_box(&pkt48)), &mut out)))
    });
    g.bench_function("opus_encode_20ms_48k", |b| {
        b.iter(|| black_box(oe48.encode(black_box(&pcm48), &mut bytes)))
    });
    g.bench_function("opus_encode_20ms_from_8k", |b| {
        b.iter(|| black_box(oe8.encode(black_box(&pcm8), &mut bytes)))
    });

    if let Some((config, au)) = aac_unit() {
        let mut dec = AacDecoder::new(&config).unwrap();
        g.bench_function("aac_decode_au1024_44k", |b| {
            b.iter(|| black_box(dec.decode(black_box(&au), &mut out)))
        });
    } else {
        eprintln!("ffmpeg not available: AAC benches skipped (run scripts/install-deps.sh)");
    }

    for (from, to) in [
        (8_000u32, 16_000u32),
        (16_000, 8_000),
        (48_000, 8_000),
        (44_100, 8_000),
    ] {
        let input = speech_like(from, from as usize / 50);
        let mut r = Resampler::new(from, to).unwrap();
        g.bench_function(format!("resample_{from}_to_{to}_20ms"), |b| {
            b.iter(|| black_box(r.process(black_box(&input), &mut out)))
        });
    }
    g.finish();
}

/// G.711 ⇄ L16 through the call's own [`Transcoder`] (the issue's ≤ 0.5 µs per 20 ms target
/// is for this pair); every other pair is in `benches/matrix.rs`.
fn transcode(c: &mut Criterion) {
    let mut g = c.benchmark_group("transcode");
    let pcm8 = speech_like(8_000, 160);
    let mut ulaw = [0u8; 160];
    g711::encode_ulaw(&pcm8, &mut ulaw);
    let mut be = [0u8; 320];
    l16::encode_be(&pcm8, &mut be).unwrap();
    let l16_8k = Codec::L16 { rate: 8000 };
    for (name, from, to, payload) in [
        (
            "pcmu_to_l16_8k_20ms",
            Codec::Pcmu,
            l16_8k,
            Bytes::copy_from_slice(&ulaw),
        ),
        (
            "l16_8k_to_pcmu_20ms",
            l16_8k,
            Codec::Pcmu,
            Bytes::copy_from_slice(&be),
        ),
    ] {
        let mut t = Transcoder::new(from, to, Duration::from_millis(20)).unwrap();
        let mut ts = 0u32;
        g.bench_function(name, |b| {
            b.iter(|| {
                let f = MediaFrame {
                    codec: from,
                    timestamp: ts,
                    marker: false,
                    payload: payload.clone(),
                };
                ts = ts.wrapping_add(160);
                t.push(black_box(&f)).unwrap();
                while let Some(o) = t.poll() {
                    black_box(o);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, baseline, codecs, transcode);
criterion_main!(benches);
