//! Counts heap allocations on the pass-through media path: RTMP audio → RTP and RTP → client.
//! A count, not a time: the hot path must not allocate per packet.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use skybridge::call::{CallCore, CallSettings, ClientCommand, Output};
use skybridge::media::{Codec, MediaFrame};

/// Counts allocations made by the current thread while `COUNTING` is set.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is upheld by `System`. The only extra work touches thread-locals of
// `Copy` types through `try_with` (no allocation, no panic during thread teardown).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as ours, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout (all allocations go there).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged; `ptr`/`layout` come from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn bump() {
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = COUNT.try_with(|n| n.set(n.get() + 1));
        }
    });
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count<R>(f: impl FnOnce() -> R) -> (R, u64) {
    COUNT.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, COUNT.with(|n| n.get()))
}

const PEER: &str = "127.0.0.1:40000";

fn answered_call(now: Instant) -> CallCore {
    let mut core = CallCore::new(
        now,
        CallSettings {
            rtp_ip: "127.0.0.1".parse().unwrap(),
            rtp_port: 30000,
            ptime: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            inactivity_timeout: Duration::from_secs(30),
            ring_timeout: Duration::from_secs(60),
            telephone_event_pt: 101,
            dtmf_info: false,
            seed: 7,
        },
    );
    let answer = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    core.sip_answered(now, answer);
    while core.poll_output().is_some() {}
    core
}

/// A buffer the way the drivers fill it: one big `BytesMut`, each packet split off and frozen.
fn packets(n: usize, size: usize, fill: impl Fn(usize, &mut BytesMut)) -> Vec<Bytes> {
    let mut buf = BytesMut::with_capacity(n * size);
    (0..n)
        .map(|i| {
            fill(i, &mut buf);
            buf.split().freeze()
        })
        .collect()
}

#[test]
fn client_audio_to_rtp_allocates_nothing_per_packet() {
    let t0 = Instant::now();
    let mut core = answered_call(t0);
    let frames = packets(1000, 160, |_, b| b.put_bytes(0xFF, 160));
    let mut sent = 0usize;
    let mut step = |core: &mut CallCore, i: usize, frame: Bytes| {
        let now = t0 + Duration::from_millis(20 * i as u64);
        core.client_audio(
            now,
            MediaFrame {
                codec: Codec::Pcmu,
                timestamp: (i as u32) * 160,
                marker: false,
                payload: frame,
            },
        );
        core.handle_timeout(now, SystemTime::UNIX_EPOCH);
        while let Some(out) = core.poll_output() {
            if let Output::Rtp { payload, .. } = out {
                assert_eq!(payload.len(), 160);
                sent += 1;
            }
        }
    };
    let mut frames = frames.into_iter();
    // Warm-up: the first packets settle the queues' capacity.
    for i in 0..10 {
        step(&mut core, i, frames.next().unwrap());
    }
    let ((), allocs) = count(|| {
        for (i, frame) in frames.enumerate() {
            step(&mut core, i + 10, frame);
        }
    });
    assert_eq!(sent, 1000, "every frame went out");
    assert_eq!(
        allocs, 0,
        "allocations on the RTMP → RTP path for 990 packets ({allocs})"
    );
}

#[test]
fn rtp_to_client_allocates_nothing_per_packet() {
    let t0 = Instant::now();
    let mut core = answered_call(t0);
    let peer: SocketAddr = PEER.parse().unwrap();
    let pkts = packets(1000, 172, |i, b| {
        b.put_slice(&[0x80, 0x00]);
        b.put_u16(i as u16);
        b.put_u32(160 * i as u32);
        b.put_u32(0x1234_5678);
        b.put_bytes(0xFF, 160);
    });
    let mut frames = 0usize;
    let mut step = |core: &mut CallCore, i: usize, p: Bytes| {
        core.rtp_received(t0 + Duration::from_millis(20 * i as u64), peer, p);
        while let Some(out) = core.poll_output() {
            if let Output::Client(ClientCommand::Audio(f)) = out {
                assert_eq!(f.payload.len(), 160);
                frames += 1;
            }
        }
    };
    let mut pkts = pkts.into_iter();
    for i in 0..10 {
        step(&mut core, i, pkts.next().unwrap());
    }
    let ((), allocs) = count(|| {
        for (i, p) in pkts.enumerate() {
            step(&mut core, i + 10, p);
        }
    });
    assert_eq!(frames, 1000);
    assert_eq!(
        allocs, 0,
        "allocations on the RTP → client path for 990 packets"
    );
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the two tests above against a counter that never counts.
    let (v, allocs) = count(|| vec![1u8; 64]);
    assert_eq!(v.len(), 64);
    assert!(allocs >= 1);
}

/// A browser's audio frame as it arrives: a masked binary WebSocket frame carrying the 8-byte
/// audio header and 160 bytes of µ-law.
fn masked_audio_frame(buf: &mut BytesMut, i: u32) {
    let mut payload = [0u8; 168];
    payload[0] = 1;
    payload[1] = 0;
    payload[2..4].copy_from_slice(&1u16.to_be_bytes());
    payload[4..8].copy_from_slice(&(i * 160).to_be_bytes());
    payload[8..].fill(0xFF);
    let key = [0x12, 0x34, 0x56, 0x78];
    buf.put_slice(&[0x82, 0x80 | 126]);
    buf.put_u16(168);
    buf.put_slice(&key);
    for (n, b) in payload.iter().enumerate() {
        buf.put_u8(b ^ key[n % 4]);
    }
}

#[test]
fn websocket_audio_to_rtp_allocates_nothing_per_packet() {
    use skybridge_codecs::signal::parse_audio_frame;
    use skybridge_codecs::websocket::{
        FrameLimits, FrameReader, Message, MessageAssembler, MessageLimits,
    };
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
    // The socket's receive buffer, filled as the driver's reads would fill it.
    let mut wire = BytesMut::with_capacity(1000 * 180);
    for i in 0..1000 {
        masked_audio_frame(&mut wire, i);
    }
    let mut sent = 0usize;
    let mut step = |core: &mut CallCore, wire: &mut BytesMut, i: usize| {
        let frame = reader.read(wire).expect("valid").expect("a whole frame");
        let Some(Message::Binary(data)) = assembler.push(frame).expect("valid message") else {
            panic!("binary message expected");
        };
        let (header, range) = parse_audio_frame(&data).expect("audio frame");
        let now = t0 + Duration::from_millis(20 * i as u64);
        core.client_audio(
            now,
            MediaFrame {
                codec: Codec::from_rtp_payload_type(header.codec).unwrap(),
                timestamp: header.timestamp,
                marker: false,
                payload: data.slice(range),
            },
        );
        core.handle_timeout(now, SystemTime::UNIX_EPOCH);
        while let Some(out) = core.poll_output() {
            if let Output::Rtp { payload, .. } = out {
                assert_eq!(payload.len(), 160);
                assert!(payload.iter().all(|b| *b == 0xFF), "unmasked in place");
                sent += 1;
            }
        }
    };
    for i in 0..10 {
        step(&mut core, &mut wire, i);
    }
    let ((), allocs) = count(|| {
        for i in 10..1000 {
            step(&mut core, &mut wire, i);
        }
    });
    assert_eq!(sent, 1000);
    assert_eq!(
        allocs, 0,
        "allocations on the WebSocket → RTP path for 990 packets ({allocs})"
    );
}

/// One RTP packet (PT 0, 160 bytes of µ-law) framed per RFC 4571, as a tunnel client sends it.
fn rfc4571_audio_frame(buf: &mut BytesMut, i: u32) {
    buf.put_u16(172);
    buf.put_slice(&[0x80, 0x00]);
    buf.put_u16(i as u16);
    buf.put_u32(i * 160);
    buf.put_u32(0x0BAD_CAFE);
    buf.put_bytes(0xFF, 160);
}

#[test]
fn rfc4571_audio_to_rtp_allocates_nothing_per_packet() {
    use skybridge::tunnel::{Packet, PacketReader, ReaderLimits};
    let t0 = Instant::now();
    let mut core = answered_call(t0);
    let mut reader = PacketReader::new(ReaderLimits::default());
    // The socket's receive buffer, filled as the driver's reads would fill it.
    let mut wire = BytesMut::with_capacity(1000 * 174);
    for i in 0..1000 {
        rfc4571_audio_frame(&mut wire, i);
    }
    let mut sent = 0usize;
    let mut step = |core: &mut CallCore, wire: &mut BytesMut, i: usize| {
        let Some(Packet::Audio { frame, .. }) = reader.next(wire).expect("valid") else {
            panic!("audio expected");
        };
        let now = t0 + Duration::from_millis(20 * i as u64);
        core.client_audio(now, frame);
        core.handle_timeout(now, SystemTime::UNIX_EPOCH);
        while let Some(out) = core.poll_output() {
            if let Output::Rtp { payload, .. } = out {
                assert_eq!(payload.len(), 160);
                sent += 1;
            }
        }
    };
    for i in 0..10 {
        step(&mut core, &mut wire, i);
    }
    let ((), allocs) = count(|| {
        for i in 10..1000 {
            step(&mut core, &mut wire, i);
        }
    });
    assert_eq!(sent, 1000);
    assert_eq!(
        allocs, 0,
        "allocations on the RFC 4571 → RTP path for 990 packets"
    );
}

#[test]
fn framing_audio_for_a_tunnel_allocates_nothing_per_packet() {
    use skybridge::tunnel::PacketWriter;
    let mut writer = PacketWriter::new(0x5EED, 1);
    let mut out = BytesMut::with_capacity(1000 * 174);
    let frame = MediaFrame {
        codec: Codec::Pcmu,
        timestamp: 0,
        marker: false,
        payload: Bytes::from(vec![0xFFu8; 160]),
    };
    let ((), allocs) = count(|| {
        for _ in 0..1000 {
            writer.write(&mut out, &frame).unwrap();
        }
    });
    assert_eq!(out.len(), 1000 * 174);
    assert_eq!(
        allocs, 0,
        "allocations framing 1000 packets toward a tunnel"
    );
}
