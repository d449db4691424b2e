#![no_main]
//! RTCP compound walk: terminates (at most len/4 + 1 items) and every view is readable.
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::rtcp::{validate_compound, walk, RtcpPacket};

fuzz_target!(|data: &[u8]| {
    let _ = validate_compound(data);
    let mut items = 0usize;
    for p in walk(data) {
        items += 1;
        assert!(items <= data.len() / 4 + 1, "walk must advance");
        match p {
            Ok(RtcpPacket::SenderReport(sr)) => {
                let _ = (sr.ssrc, sr.ntp, sr.rtp_ts, sr.packet_count, sr.octet_count);
                let _ = (
                    sr.blocks.len(),
                    sr.blocks.iter().count(),
                    sr.extension.len(),
                );
            }
            Ok(RtcpPacket::ReceiverReport(rr)) => {
                let _ = (rr.ssrc, rr.blocks.iter().count(), rr.extension.len());
            }
            Ok(RtcpPacket::Sdes(s)) => {
                let _ = (s.chunk_count(), s.cname(), s.items().count());
            }
            Ok(RtcpPacket::Bye(b)) => {
                let _ = (b.sources().count(), b.reason);
            }
            Ok(RtcpPacket::Other {
                packet_type,
                count,
                body,
            }) => {
                let _ = (packet_type, count, body.len());
            }
            Err(_) => {}
        }
    }
});
