//! The transcoding matrix: for every client codec (row) and SIP codec (column), the per-frame
//! cost of each direction of a call on the path the call really takes, against a baseline
//! measured in the same run (`baseline/memcpy_160`: copying one 20 ms µ-law payload).
//!
//! Each direction is one of:
//! - pass-through: same codec on both legs, the payload `Bytes` is forwarded (no bench);
//! - µ⇄A-law toward SIP: the call core's per-byte table lookup into a new RTP packet
//!   (`call::core`, `send_frame`), benched as `<from>_to_<to>_lookup`;
//! - a [`Transcoder`] (`Transcoder::toward(link, from, to, 20 ms)`, as `call::driver` builds it, the law
//!   swap toward a client included), benched as `<from>_to_<to>`: one `push` of a source frame
//!   and draining `poll`, over a one-second ring of frames in the source codec with contiguous
//!   timestamps (what a live stream looks like to the transcoder).
//!
//! Rows name what the client sends; what it is sent is `ClientCaps::choose(sip)` for the
//! client's caps (WebSocket/RFC 4571 G.711, an RTMP player asking with `?codec=`, ffmpeg's
//! `audioCodecs` for an AAC publisher's player, a WebSocket Opus client). Source frames are
//! 20 ms, except Nellymoser (one 256-sample block per FLV tag: 16 ms at 16 kHz) and AAC (one
//! 1024-sample access unit: 23.2 ms at 44.1 kHz); `scripts/bench-matrix.sh` scales each
//! figure to 20 ms of audio.
//!
//! With `MATRIX_LAYOUT=<file>` set, the bench writes the matrix layout there (JSON: each cell's
//! two directions, their bench ids and audio per iteration), which the script reads along
//! with criterion's estimates. AAC needs ffmpeg (to make the access units); without it the AAC
//! row is marked not measured.
//!
//! Run: `scripts/bench-matrix.sh`, or `cargo bench --bench matrix`.
#![allow(clippy::unwrap_used)] // bench set-up may unwrap

use std::collections::HashMap;
use std::f64::consts::PI;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use serde_json::{json, Value};
use skybridge::media::{flash_snd, ClientCaps, Codec, MediaFrame};
use skybridge::transcode::{Link, Transcoder};
use skybridge_codecs::{g711, l16};

mod support;
use support::{aac_stream, speech_like};

/// The call's packet time (`rtp.ptime_ms` default): the `frame` every transcoder is built with.
const PTIME: Duration = Duration::from_millis(20);

/// ffmpeg's `connect` `audioCodecs` (AAC, Speex, Nellymoser, G.711, …).
const FFMPEG_AUDIO_CODECS: u16 = 4071;

/// One row: what the client sends and what it can receive.
struct Row {
    label: &'static str,
    sends: Codec,
    caps: ClientCaps,
}

fn flash(bits: u16) -> ClientCaps {
    ClientCaps::Flash {
        audio_codecs: Some(bits),
    }
}

fn play(name: &str) -> ClientCaps {
    flash(flash_snd::from_play_codec(name).unwrap())
}

fn rows(aac: Option<Codec>) -> Vec<Row> {
    let mut rows = vec![
        Row {
            label: "PCMU (WebSocket G.711, RFC 4571)",
            sends: Codec::Pcmu,
            caps: ClientCaps::G711,
        },
        Row {
            label: "PCMA (WebSocket G.711, RFC 4571)",
            sends: Codec::Pcma,
            caps: ClientCaps::G711,
        },
        Row {
            label: "PCM s16le 16 kHz (RTMP, `?codec=pcm`)",
            sends: Codec::PcmLe {
                rate: 16_000,
                stereo: false,
            },
            caps: play("pcm"),
        },
        Row {
            label: "Nellymoser 16 kHz (RTMP, `?codec=nellymoser16`)",
            sends: Codec::Nellymoser { rate: 16_000 },
            caps: play("nellymoser16"),
        },
        Row {
            label: "Speex WB 16 kHz (RTMP, `?codec=speex`)",
            sends: Codec::Speex { rate: 16_000 },
            caps: play("speex"),
        },
    ];
    rows.push(Row {
        label: "AAC-LC 44.1 kHz mono (RTMP publisher, ffmpeg player)",
        // Without ffmpeg there are no access units; the row is reported as not measured.
        sends: aac.unwrap_or(Codec::Aac {
            rate: 44_100,
            stereo: false,
        }),
        caps: flash(FFMPEG_AUDIO_CODECS),
    });
    rows.push(Row {
        label: "Opus (WebSocket)",
        sends: Codec::Opus,
        caps: ClientCaps::WebSocket { opus: true },
    });
    rows
}

const COLUMNS: [&str; 7] = [
    "pcmu",
    "pcma",
    "g722",
    "opus",
    "l16/16000",
    "speex",
    "speex/16000",
];

/// A short name for bench ids.
fn short(c: Codec) -> String {
    match c {
        Codec::Pcmu => "pcmu".into(),
        Codec::Pcma => "pcma".into(),
        Codec::G722 => "g722".into(),
        Codec::Opus => "opus".into(),
        Codec::L16 { rate } => format!("l16_{rate}"),
        Codec::PcmLe { rate, stereo } => {
            format!("pcm_s16le_{rate}{}", if stereo { "_stereo" } else { "" })
        }
        Codec::Nellymoser { rate } => format!("nellymoser_{rate}"),
        Codec::Speex { rate: 8000 } => "speex_nb".into(),
        Codec::Speex { rate: 16000 } => "speex_wb".into(),
        Codec::Speex { rate } => format!("speex_{rate}"),
        Codec::Aac { rate, stereo } => format!("aac_{rate}{}", if stereo { "_stereo" } else { "" }),
    }
}

/// Speech-like test signal: `speech_like` under a 4 Hz syllable envelope (gain 0.1–1). The
/// envelope matters: libopus spends about 1.7× as long on it as on the stationary tones alone
/// (PCMU → Opus measured 78 against 46 µs per 20 ms in one run).
fn talk(rate: u32, n: usize) -> Vec<i16> {
    speech_like(rate, n)
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let t = i as f64 / f64::from(rate);
            let g = 0.55 - 0.45 * (2.0 * PI * 4.0 * t).cos();
            (f64::from(s) * g) as i16
        })
        .collect()
}

/// A ring of frames in one codec, as a client or peer sends them.
struct Stream {
    frames: Vec<MediaFrame>,
    /// Timestamp ticks one lap of the ring spans (the next lap continues from there).
    period: u32,
    /// Audio per frame, in milliseconds.
    frame_ms: f64,
}

/// One second of `talk` in `codec`: PCM and G.711 directly, AAC from ffmpeg, the rest through a
/// `Transcoder` from PCM (so the payloads are exactly what the relay itself would send).
fn stream(codec: Codec) -> Option<Stream> {
    let frames: Vec<MediaFrame> = match codec {
        Codec::Aac { .. } => {
            let (config, units) = aac_stream(&talk(44_100, 44_100))?;
            let aac = Codec::from_aac_config(&config).ok()?;
            units
                .into_iter()
                .enumerate()
                .map(|(i, au)| MediaFrame {
                    codec: aac,
                    timestamp: i as u32 * 1024,
                    marker: false,
                    payload: Bytes::from(au),
                })
                .collect()
        }
        _ => {
            let rate = codec.sample_rate();
            let n = rate as usize / 50;
            let pcm = talk(rate, rate as usize);
            let raw = |i: usize, chunk: &[i16]| {
                let payload: Vec<u8> = match codec {
                    Codec::Pcmu => chunk.iter().map(|s| g711::linear_to_ulaw(*s)).collect(),
                    Codec::Pcma => chunk.iter().map(|s| g711::linear_to_alaw(*s)).collect(),
                    _ => {
                        let mut b = vec![0u8; chunk.len() * 2];
                        l16::encode_le(chunk, &mut b).unwrap();
                        b
                    }
                };
                MediaFrame {
                    codec,
                    timestamp: (i * n) as u32,
                    marker: false,
                    payload: Bytes::from(payload),
                }
            };
            let pcm_le = Codec::PcmLe {
                rate,
                stereo: false,
            };
            match codec {
                Codec::Pcmu | Codec::Pcma => pcm
                    .chunks_exact(n)
                    .enumerate()
                    .map(|(i, c)| raw(i, c))
                    .collect(),
                c if c == pcm_le => pcm
                    .chunks_exact(n)
                    .enumerate()
                    .map(|(i, c)| raw(i, c))
                    .collect(),
                _ => {
                    // An FLV Nellymoser tag carries one 256-sample block.
                    let frame = match codec {
                        Codec::Nellymoser { rate } => {
                            Duration::from_micros(256_000_000 / u64::from(rate))
                        }
                        _ => PTIME,
                    };
                    let mut t = Transcoder::new(pcm_le, codec, frame).ok()?;
                    let mut out = Vec::new();
                    for (i, c) in pcm.chunks_exact(n).enumerate() {
                        let mut f = raw(i, c);
                        f.codec = pcm_le;
                        t.push(&f).ok()?;
                        while let Some(o) = t.poll() {
                            out.push(MediaFrame { marker: false, ..o });
                        }
                    }
                    out
                }
            }
        }
    };
    let first = frames.first()?.timestamp;
    let step = frames.get(1)?.timestamp.wrapping_sub(first);
    let uniform = frames
        .windows(2)
        .all(|w| w[1].timestamp.wrapping_sub(w[0].timestamp) == step);
    assert!(uniform, "{codec:?}: source frames are not evenly spaced");
    Some(Stream {
        period: step * frames.len() as u32,
        frame_ms: f64::from(step) * 1000.0 / f64::from(codec.clock_rate()),
        frames,
    })
}

/// Hands out a stream's frames forever, lap after lap, with contiguous timestamps.
struct Feeder<'a> {
    stream: &'a Stream,
    next: usize,
    offset: u32,
}

impl<'a> Feeder<'a> {
    fn new(stream: &'a Stream) -> Feeder<'a> {
        Feeder {
            stream,
            next: 0,
            offset: 0,
        }
    }

    fn frame(&mut self) -> MediaFrame {
        let src = &self.stream.frames[self.next];
        let f = MediaFrame {
            codec: src.codec,
            timestamp: src.timestamp.wrapping_add(self.offset),
            marker: false,
            payload: src.payload.clone(),
        };
        self.next += 1;
        if self.next == self.stream.frames.len() {
            self.next = 0;
            self.offset = self.offset.wrapping_add(self.stream.period);
        }
        f
    }
}

/// What one direction of a cell costs.
enum Dir {
    Pass,
    /// µ⇄A-law table lookup in the call core (toward SIP).
    Lookup(Codec, Codec),
    /// A transcoder on the pool, for output over the given link (toward SIP: UDP; toward a
    /// client: TCP, which changes the Opus encoder).
    Transcode(Codec, Codec, Link),
}

impl Dir {
    fn bench_id(&self) -> Option<String> {
        match self {
            Dir::Pass => None,
            Dir::Lookup(f, t) => Some(format!("{}_to_{}_lookup", short(*f), short(*t))),
            Dir::Transcode(f, t, Link::Lossy) => Some(format!("{}_to_{}", short(*f), short(*t))),
            Dir::Transcode(f, t, Link::Reliable) => {
                Some(format!("{}_to_{}_tcp", short(*f), short(*t)))
            }
        }
    }
}

fn law_swap(a: Codec, b: Codec) -> bool {
    matches!(
        (a, b),
        (Codec::Pcmu, Codec::Pcma) | (Codec::Pcma, Codec::Pcmu)
    )
}

/// Client → SIP, as `CallCore::client_audio` routes it.
fn toward_sip(client: Codec, sip: Codec) -> Dir {
    if client == sip {
        Dir::Pass
    } else if law_swap(client, sip) {
        Dir::Lookup(client, sip)
    } else {
        Dir::Transcode(client, sip, Link::Lossy)
    }
}

/// SIP → client, as `CallTask::audio_to_clients` routes it (a law swap is a transcoder there).
fn toward_client(sip: Codec, played: Codec) -> Dir {
    if sip == played {
        Dir::Pass
    } else {
        Dir::Transcode(sip, played, Link::Reliable)
    }
}

fn baseline(c: &mut Criterion, name: &str) {
    let mut g = c.benchmark_group("baseline");
    let src = [0x55u8; 160];
    let mut dst = [0u8; 160];
    g.bench_function(name, |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
    g.finish();
}

fn baseline_start(c: &mut Criterion) {
    baseline(c, "memcpy_160");
}

fn baseline_end(c: &mut Criterion) {
    baseline(c, "memcpy_160_end");
}

fn matrix(c: &mut Criterion) {
    let mut streams: HashMap<Codec, Option<Stream>> = HashMap::new();
    let aac = Codec::Aac {
        rate: 44_100,
        stereo: false,
    };
    streams.insert(aac, stream(aac));
    if streams[&aac].is_none() {
        eprintln!(
            "ffmpeg not available: the AAC row is not measured (run scripts/install-deps.sh)"
        );
    }
    let columns: Vec<Codec> = COLUMNS
        .iter()
        .map(|n| Codec::from_config_name(n).unwrap())
        .collect();

    let mut g = c.benchmark_group("matrix");
    let aac_codec = streams[&aac].as_ref().map(|s| s.frames[0].codec);
    let mut done: HashMap<String, Value> = HashMap::new();
    // Benches one direction (once per distinct pair) and describes it for the layout.
    let mut direction = |g: &mut BenchmarkGroup<'_, WallTime>, dir: Dir| -> Value {
        let Some(id) = dir.bench_id() else {
            return json!({ "kind": "pass" });
        };
        if let Some(v) = done.get(&id) {
            return v.clone();
        }
        let (kind, from, to, link) = match dir {
            Dir::Lookup(f, t) => ("lookup", f, t, Link::Lossy),
            Dir::Transcode(f, t, link) => ("transcode", f, t, link),
            Dir::Pass => unreachable!(),
        };
        let src = streams.entry(from).or_insert_with(|| stream(from));
        let v = match (src.as_ref(), kind) {
            (None, _) => json!({
                "kind": "unmeasured", "from": short(from), "to": short(to),
                "error": format!("no {} source frames", from.name()),
            }),
            (Some(s), "lookup") => {
                let swap: fn(u8) -> u8 = if from == Codec::Pcmu {
                    g711::ulaw_to_alaw
                } else {
                    g711::alaw_to_ulaw
                };
                let mut feed = Feeder::new(s);
                let header = [0x80u8; 12];
                g.bench_function(&id, |b| {
                    b.iter(|| {
                        let f = feed.frame();
                        let mut packet = Vec::with_capacity(12 + f.payload.len());
                        packet.extend_from_slice(black_box(&header));
                        packet.extend(f.payload.iter().map(|b| swap(*b)));
                        black_box(packet)
                    })
                });
                json!({
                    "kind": "lookup", "from": short(from), "to": short(to),
                    "bench": format!("matrix/{id}"), "audio_ms": s.frame_ms,
                })
            }
            (Some(s), _) => match Transcoder::toward(link, from, to, PTIME) {
                Err(e) => json!({
                    "kind": "unsupported", "from": short(from), "to": short(to),
                    "error": e.to_string(),
                }),
                Ok(mut t) => {
                    let mut feed = Feeder::new(s);
                    // Two laps first: the coders settle, and a broken pair fails here, not
                    // in the figures. The second lap's output must be one contiguous timeline
                    // as long as its input (no re-anchoring, no padded frames).
                    for _ in 0..s.frames.len() {
                        t.push(&feed.frame()).unwrap();
                        while t.poll().is_some() {}
                    }
                    let mut out_ts = Vec::new();
                    for _ in 0..s.frames.len() {
                        t.push(&feed.frame()).unwrap();
                        while let Some(o) = t.poll() {
                            out_ts.push(o.timestamp);
                        }
                    }
                    let st = t.stats();
                    assert!(
                        st.rejected == 0 && out_ts.len() >= 2,
                        "{id}: {st:?} after two laps"
                    );
                    let step = out_ts[1].wrapping_sub(out_ts[0]);
                    assert!(
                        out_ts.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step),
                        "{id}: output timeline not contiguous"
                    );
                    let out_ms =
                        out_ts.len() as f64 * f64::from(step) * 1000.0 / f64::from(to.clock_rate());
                    let lap_ms = s.frames.len() as f64 * s.frame_ms;
                    let out_frame_ms = f64::from(step) * 1000.0 / f64::from(to.clock_rate());
                    assert!(
                        (out_ms - lap_ms).abs() <= out_frame_ms + 1.0,
                        "{id}: {out_ms} ms out for a {lap_ms} ms lap"
                    );
                    g.bench_function(&id, |b| {
                        b.iter(|| {
                            let _ = t.push(&feed.frame());
                            while let Some(o) = t.poll() {
                                black_box(o);
                            }
                        })
                    });
                    assert_eq!(t.stats().rejected, 0, "{id}: frames rejected while timed");
                    json!({
                        "kind": "transcode", "from": short(from), "to": short(to),
                        "bench": format!("matrix/{id}"), "audio_ms": s.frame_ms,
                    })
                }
            },
        };
        done.insert(id, v.clone());
        v
    };

    let mut layout_rows = Vec::new();
    for row in rows(aac_codec) {
        let mut cells = Vec::new();
        for (name, &sip) in COLUMNS.iter().zip(&columns) {
            let played = row.caps.choose(sip);
            let to_sip = direction(&mut g, toward_sip(row.sends, sip));
            let to_client = direction(&mut g, toward_client(sip, played));
            cells.push(json!({
                "sip": name,
                "client_sends": short(row.sends),
                "client_gets": short(played),
                "to_sip": to_sip,
                "to_client": to_client,
            }));
        }
        layout_rows.push(json!({ "label": row.label, "cells": cells }));
    }
    g.finish();

    if let Ok(path) = std::env::var("MATRIX_LAYOUT") {
        let layout = json!({
            "frame_ms": PTIME.as_secs_f64() * 1000.0,
            "baseline": ["baseline/memcpy_160", "baseline/memcpy_160_end"],
            "columns": COLUMNS,
            "rows": layout_rows,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&layout).unwrap()).unwrap();
    }
}

fn config() -> Criterion {
    // About 60 functions: keep the whole run to a few minutes.
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
}

criterion_group! {
    name = benches;
    config = config();
    targets = baseline_start, matrix, baseline_end
}
criterion_main!(benches);
