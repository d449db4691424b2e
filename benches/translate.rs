//! Per-packet cost of the media hot path, against a baseline measured in the same run.
//!
//! - `baseline/rewrite_header_and_copy`: what the minimal C forwarder does in user space
//!   (rewrite seq/ts/ssrc, copy a 172-byte packet) — the floor.
//! - `rtmp_to_rtp`: an RTMP audio chunk read by our reassembler, through the call core
//!   (pacer, sequence/timestamp mapping) to an RTP header + payload slice ready to send.
//! - `rtp_to_rtmp`: an RTP packet validated and mapped by the call core, then framed as an RTMP
//!   audio message.
//!
//! - `rfc4571_to_rtp`: an RFC 4571 frame deframed and classified by the tunnel reader, through
//!   the call core to an RTP header + payload slice.
//!
//! Run: `cargo bench --bench translate`. Report `rtmp_to_rtp / baseline` and
//! `rtp_to_rtmp / baseline` (the README has the figures).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use skybridge::call::{CallCore, CallSettings, ClientCommand, Output};
use skybridge::media::{Codec, MediaFrame};
use skybridge_codecs::rtmp::{ChunkLimits, ChunkReader, ChunkWriter, OutboundHeader};

fn answered_call(now: Instant) -> CallCore {
    let mut core = CallCore::new(
        now,
        CallSettings {
            rtp_ip: [127, 0, 0, 1].into(),
            rtp_port: 30000,
            ptime: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            inactivity_timeout: Duration::from_secs(3600),
            ring_timeout: Duration::from_secs(60),
            telephone_event_pt: 101,
            dtmf_info: false,
            seed: 7,
        },
    );
    let answer = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    core.sip_answered(now, answer);
    while core.poll_output().is_some() {}
    core
}

fn baseline(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Elements(1));
    let packet = [0x80u8; 172];
    let mut out = [0u8; 1500];
    let mut seq = 0u16;
    g.bench_function("rewrite_header_and_copy", |b| {
        b.iter(|| {
            let p = black_box(&packet);
            out[..172].copy_from_slice(p);
            seq = seq.wrapping_add(1);
            out[2..4].copy_from_slice(&seq.to_be_bytes());
            out[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            out[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
            black_box(&out);
        })
    });
    g.finish();
}

fn rtmp_to_rtp(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate");
    g.throughput(Throughput::Elements(1));
    // One RTMP audio message (FLV tag byte + 160 bytes of µ-law) as the client sends it.
    let mut writer = ChunkWriter::new();
    let mut wire = BytesMut::new();
    let mut steady = BytesMut::new();
    let body = [0xFFu8; 160];
    for (ts, out) in [(0u32, &mut wire), (20, &mut steady)] {
        writer.write(
            out,
            OutboundHeader {
                csid: 4,
                type_id: 8,
                stream_id: 1,
                timestamp: ts,
            },
            &[&[0x82], &body],
        );
    }
    // The second message carries the compressed header a steady stream uses.
    let steady = steady.freeze();
    let t0 = Instant::now();
    let mut core = answered_call(t0);
    let mut reader = ChunkReader::new(ChunkLimits::default());
    let mut inbuf = BytesMut::with_capacity(1 << 20);
    inbuf.extend_from_slice(&wire);
    let _ = reader.read(&mut inbuf);
    let mut i: u64 = 1;
    g.bench_function("rtmp_to_rtp", |b| {
        b.iter(|| {
            if inbuf.capacity() - inbuf.len() < 512 {
                inbuf.reserve(1 << 20);
            }
            inbuf.extend_from_slice(&steady);
            let msg = match reader.read(&mut inbuf) {
                Ok(Some(m)) => m,
                other => panic!("no message: {other:?}"),
            };
            let payload = msg.payload.slice(1..);
            let now = t0 + Duration::from_millis(20 * i);
            core.client_audio(
                now,
                MediaFrame {
                    codec: Codec::Pcmu,
                    timestamp: (i as u32).wrapping_mul(160),
                    marker: false,
                    payload,
                },
            );
            core.handle_timeout(now, SystemTime::UNIX_EPOCH);
            while let Some(out) = core.poll_output() {
                if let Output::Rtp {
                    header, payload, ..
                } = out
                {
                    black_box((header, payload));
                }
            }
            i += 1;
        })
    });
    g.finish();
}

fn rtp_to_rtmp(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate");
    g.throughput(Throughput::Elements(1));
    let t0 = Instant::now();
    let mut core = answered_call(t0);
    let peer: SocketAddr = ([127, 0, 0, 1], 40000).into();
    let mut src = BytesMut::with_capacity(1 << 20);
    let mut writer = ChunkWriter::new();
    let mut out = BytesMut::with_capacity(1 << 20);
    let mut i: u32 = 0;
    g.bench_function("rtp_to_rtmp", |b| {
        b.iter(|| {
            if src.capacity() - src.len() < 512 {
                src.reserve(1 << 20);
            }
            src.put_slice(&[0x80, 0x00]);
            src.put_u16(i as u16);
            src.put_u32(i.wrapping_mul(160));
            src.put_u32(0x1234_5678);
            src.put_bytes(0xFF, 160);
            let packet: Bytes = src.split().freeze();
            core.rtp_received(t0 + Duration::from_millis(20 * u64::from(i)), peer, packet);
            while let Some(o) = core.poll_output() {
                if let Output::Client(ClientCommand::Audio(frame)) = o {
                    if out.capacity() - out.len() < 512 {
                        out.clear();
                    }
                    writer.write(
                        &mut out,
                        OutboundHeader {
                            csid: 4,
                            type_id: 8,
                            stream_id: 1,
                            timestamp: frame.timestamp / 8,
                        },
                        &[&[0x82], &frame.payload],
                    );
                }
            }
            black_box(&out);
            i = i.wrapping_add(1);
        })
    });
    g.finish();
}

fn ws_to_rtp(c: &mut Criterion) {
    use skybridge_codecs::signal::parse_audio_frame;
    use skybridge_codecs::websocket::{
        FrameLimits, FrameReader, Message, MessageAssembler, MessageLimits,
    };
    let mut g = c.benchmark_group("translate");
    g.throughput(Throughput::Elements(1));
    // One masked binary frame as a browser sends it: 8-byte audio header + 160 bytes µ-law.
    let key = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x82u8, 0x80 | 126, 0, 168];
    frame.extend_from_slice(&key);
    let mut payload = [0xFFu8; 168];
    payload[..8].copy_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0]);
    frame.extend(payload.iter().enumerate().map(|(n, b)| b ^ key[n % 4]));
    let t0 = Instant::now();
    let mut core = answered_call(t0);
    let mut reader = FrameReader::new(FrameLimits {
        max_frame_len: 16 * 1024,
        require_mask: true,
    });
    let mut assembler = MessageAssembler::new(MessageLimits {
        max_text_len: 16 * 1024,
        max_binary_len: 2048,
        max_fragments: 64,
    });
    let mut inbuf = BytesMut::with_capacity(1 << 20);
    let mut i: u64 = 0;
    g.bench_function("ws_to_rtp", |b| {
        b.iter(|| {
            if inbuf.capacity() - inbuf.len() < 512 {
                inbuf.reserve(1 << 20);
            }
            inbuf.extend_from_slice(&frame);
            let f = match reader.read(&mut inbuf) {
                Ok(Some(f)) => f,
                other => panic!("no frame: {other:?}"),
            };
            let Ok(Some(Message::Binary(data))) = assembler.push(f) else {
                panic!("no message")
            };
            let (_, range) = parse_audio_frame(&data).expect("audio");
            let now = t0 + Duration::from_millis(20 * i);
            core.client_audio(
                now,
                MediaFrame {
                    codec: Codec::Pcmu,
                    timestamp: (i as u32).wrapping_mul(160),
                    marker: false,
                    payload: data.slice(range),
                },
            );
            core.handle_timeout(now, SystemTime::UNIX_EPOCH);
            while let Some(out) = core.poll_output() {
                if let Output::Rtp {
                    header, payload, ..
                } = out
                {
                    black_box((header, payload));
                }
            }
            i += 1;
        })
    });
    g.finish();
}

fn rfc4571_to_rtp(c: &mut Criterion) {
    use skybridge::tunnel::{Packet, PacketReader, ReaderLimits};
    let mut g = c.benchmark_group("translate");
    g.throughput(Throughput::Elements(1));
    // One RFC 4571 frame as GStreamer's rtpstreampay sends it: 2-byte length + RTP (PT 0).
    let mut frame = vec![
        0u8, 172, 0x80, 0x00, 0, 1, 0, 0, 0, 160, 0x0B, 0xAD, 0xCA, 0xFE,
    ];
    frame.extend_from_slice(&[0xFF; 160]);
    let t0 = Instant::now();
    let mut core = answered_call(t0);
    let mut reader = PacketReader::new(ReaderLimits::default());
    let mut inbuf = BytesMut::with_capacity(1 << 20);
    let mut i: u64 = 0;
    g.bench_function("rfc4571_to_rtp", |b| {
        b.iter(|| {
            if inbuf.capacity() - inbuf.len() < 512 {
                inbuf.reserve(1 << 20);
            }
            inbuf.extend_from_slice(&frame);
            let Ok(Some(Packet::Audio { mut frame, .. })) = reader.next(&mut inbuf) else {
                panic!("no audio frame")
            };
            frame.timestamp = (i as u32).wrapping_mul(160);
            let now = t0 + Duration::from_millis(20 * i);
            core.client_audio(now, frame);
            core.handle_timeout(now, SystemTime::UNIX_EPOCH);
            while let Some(out) = core.poll_output() {
                if let Output::Rtp {
                    header, payload, ..
                } = out
                {
                    black_box((header, payload));
                }
            }
            i += 1;
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    baseline,
    rtmp_to_rtp,
    rtp_to_rtmp,
    ws_to_rtp,
    rfc4571_to_rtp
);
criterion_main!(benches);
