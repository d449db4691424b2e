//! Per-frame cost of each codec, the resampler and each transcode pair, against a baseline
//! measured in the same run (`baseline/memcpy_160`: copying one 20 ms µ-law payload).
//!
//! Every figure is for one frame: 20 ms, except Nellymoser (one 256-sample block: 32 ms at
//! 8 kHz, 16 ms at 16 kHz) and AAC (one 1024-sample access unit: 23.2 ms at 44.1 kHz); the
//! README scales those to 20 ms. A transcode pair is decode → resample → encode of one frame
//! in one direction; calls per core = 20 ms / (cost of both directions per 20 ms).
//!
//! Run: `cargo bench --bench codecs -- --warm-up-time 1 --measurement-time 3`.
//! AAC needs ffmpeg (to make one access unit); without it the AAC benches are skipped.
#![allow(clippy::unwrap_used)] // bench set-up may unwrap

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
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

fn transcode(c: &mut Criterion) {
    let mut g = c.benchmark_group("transcode");
    let pcm8 = speech_like(8_000, 160);
    let mut ulaw = [0u8; 160];
    g711::encode_ulaw(&pcm8, &mut ulaw);
    let mut a = vec![0i16; 4096];
    let mut r8 = vec![0i16; 4096];
    let mut bytes = vec![0u8; 4096];

    // Speex-WB 16 kHz ⇄ PCMU.
    let spx = speex_packet(SpeexMode::Wideband);
    let mut sd = SpeexDecoder::new(SpeexMode::Wideband).unwrap();
    let mut se = SpeexEncoder::new(SpeexMode::Wideband, DEFAULT_QUALITY).unwrap();
    let mut down16 = Resampler::new(16_000, 8_000).unwrap();
    let mut up16 = Resampler::new(8_000, 16_000).unwrap();
    g.bench_function("speex_wb_to_pcmu_20ms", |b| {
        b.iter(|| {
            let n = sd.decode(Some(black_box(&spx)), &mut a).unwrap();
            let m = down16.process(&a[..n], &mut r8).unwrap();
            black_box(g711::encode_ulaw(&r8[..m], &mut bytes))
        })
    });
    g.bench_function("pcmu_to_speex_wb_20ms", |b| {
        b.iter(|| {
            let n = g711::decode_ulaw(black_box(&ulaw), &mut r8);
            let m = up16.process(&r8[..n], &mut a).unwrap();
            black_box(se.encode(&a[..m], &mut bytes).unwrap())
        })
    });

    // G.722 ⇄ PCMU.
    let mut g722 = [0u8; 160];
    G722Encoder::new()
        .encode(&speech_like(16_000, 320), &mut g722)
        .unwrap();
    let mut gd = G722Decoder::new();
    let mut ge = G722Encoder::new();
    g.bench_function("g722_to_pcmu_20ms", |b| {
        b.iter(|| {
            let n = gd.decode(black_box(&g722), &mut a).unwrap();
            let m = down16.process(&a[..n], &mut r8).unwrap();
            black_box(g711::encode_ulaw(&r8[..m], &mut bytes))
        })
    });
    g.bench_function("pcmu_to_g722_20ms", |b| {
        b.iter(|| {
            let n = g711::decode_ulaw(black_box(&ulaw), &mut r8);
            let m = up16.process(&r8[..n], &mut a).unwrap();
            black_box(ge.encode(&a[..m], &mut bytes).unwrap())
        })
    });

    // Nellymoser 16 kHz → PCMU (one 256-sample block, 16 ms); PCMU → Nellymoser 8 kHz (one
    // block of 256 samples = 32 ms of µ-law).
    let mut nelly = [0u8; 64];
    NellymoserEncoder::new()
        .encode(&speech_like(16_000, 256), &mut nelly)
        .unwrap();
    let mut nd = NellymoserDecoder::new();
    let mut ne = NellymoserEncoder::new();
    let ulaw256: Vec<u8> = {
        let mut u = vec![0u8; 256];
        g711::encode_ulaw(&speech_like(8_000, 256), &mut u);
        u
    };
    g.bench_function("nellymoser16_to_pcmu_block256", |b| {
        b.iter(|| {
            let n = nd.decode(black_box(&nelly), &mut a).unwrap();
            let m = down16.process(&a[..n], &mut r8).unwrap();
            black_box(g711::encode_ulaw(&r8[..m], &mut bytes))
        })
    });
    g.bench_function("pcmu_to_nellymoser8_block256", |b| {
        b.iter(|| {
            let n = g711::decode_ulaw(black_box(&ulaw256), &mut r8);
            black_box(ne.encode(&r8[..n], &mut bytes).unwrap())
        })
    });

    // Opus 48 kHz ⇄ PCMU, through the resampler and directly at 8 kHz.
    let opus = opus_packet(48_000);
    let mut od48 = OpusDecoder::new(48_000).unwrap();
    let mut od8 = OpusDecoder::new(8_000).unwrap();
    let mut oe48 = OpusEncoder::new(48_000, 24_000).unwrap();
    let mut oe8 = OpusEncoder::new(8_000, 24_000).unwrap();
    let mut down48 = Resampler::new(48_000, 8_000).unwrap();
    let mut up48 = Resampler::new(8_000, 48_000).unwrap();
    g.bench_function("opus48_to_pcmu_20ms_resampled", |b| {
        b.iter(|| {
            let n = od48.decode(Some(black_box(&opus)), &mut a).unwrap();
            let m = down48.process(&a[..n], &mut r8).unwrap();
            black_box(g711::encode_ulaw(&r8[..m], &mut bytes))
        })
    });
    g.bench_function("pcmu_to_opus48_20ms_resampled", |b| {
        b.iter(|| {
            let n = g711::decode_ulaw(black_box(&ulaw), &mut r8);
            let m = up48.process(&r8[..n], &mut a).unwrap();
            black_box(oe48.encode(&a[..m], &mut bytes).unwrap())
        })
    });
    g.bench_function("opus_to_pcmu_20ms_decoded_at_8k", |b| {
        b.iter(|| {
            let n = od8.decode(Some(black_box(&opus)), &mut a).unwrap();
            black_box(g711::encode_ulaw(&a[..n], &mut bytes))
        })
    });
    g.bench_function("pcmu_to_opus_20ms_encoded_from_8k", |b| {
        b.iter(|| {
            let n = g711::decode_ulaw(black_box(&ulaw), &mut r8);
            black_box(oe8.encode(&r8[..n], &mut bytes).unwrap())
        })
    });

    // AAC 44.1 kHz → PCMU (one 1024-sample access unit, 23.2 ms).
    if let Some((config, au)) = aac_unit() {
        let mut dec = AacDecoder::new(&config).unwrap();
        let mut down44 = Resampler::new(44_100, 8_000).unwrap();
        g.bench_function("aac44_to_pcmu_au1024", |b| {
            b.iter(|| {
                let n = dec.decode(black_box(&au), &mut a).unwrap();
                let m = down44.process(&a[..n], &mut r8).unwrap();
                black_box(g711::encode_ulaw(&r8[..m], &mut bytes))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, baseline, codecs, transcode);
criterion_main!(benches);
