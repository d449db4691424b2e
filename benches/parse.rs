//! Signalling parsers: a SIP INVITE with SDP, and the SDP alone. Same-run baseline: a plain
//! scan of the same bytes for CRLF (the least any line parser must do).
//!
//! Run: `cargo bench --bench parse`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use skybridge_codecs::{sdp, sip};

const SDP: &[u8] = b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n\
c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n\
a=sendrecv\r\n";

fn invite() -> Vec<u8> {
    let head = "INVITE sip:bob@192.0.2.20:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@192.0.2.20>\r\n\
From: Alice <sip:alice@192.0.2.10>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@192.0.2.10\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5060>\r\n\
Record-Route: <sip:proxy.example;lr>\r\n\
User-Agent: bench\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
Content-Type: application/sdp\r\n";
    let mut m = format!("{head}Content-Length: {}\r\n\r\n", SDP.len()).into_bytes();
    m.extend_from_slice(SDP);
    m
}

fn parse(c: &mut Criterion) {
    let msg = invite();
    let mut g = c.benchmark_group("parse");
    g.bench_function("baseline_crlf_scan", |b| {
        b.iter(|| black_box(msg.windows(2).filter(|w| w == b"\r\n").count()))
    });
    g.bench_function("sip_invite", |b| {
        b.iter(|| {
            let m = sip::Message::parse(black_box(&msg)).expect("parses");
            black_box((
                m.call_id().ok(),
                m.cseq().ok(),
                m.top_via().ok().and_then(|v| v.branch()),
            ));
        })
    });
    g.bench_function("sdp_offer", |b| {
        b.iter(|| {
            let d = sdp::SessionDescription::parse(black_box(SDP)).expect("parses");
            black_box(d.first_audio().map(|a| a.port));
        })
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
