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
