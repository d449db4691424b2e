#![no_main]
//! RTP header view: parse and call every accessor; the payload range must lie in the packet.
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::rtp::{is_rtcp, write_header, RtpView};

fuzz_target!(|data: &[u8]| {
    let _ = is_rtcp(data);
    let Ok(p) = RtpView::parse(data) else {
        return;
    };
    let _ = (
        p.marker(),
        p.payload_type(),
        p.sequence(),
        p.timestamp(),
        p.ssrc(),
    );
    let _ = (
        p.has_padding(),
        p.has_extension(),
        p.csrc_count(),
        p.padding_len(),
    );
    let _ = p.csrcs().count();
    let _ = p.extension();
    let r = p.payload_range();
    assert!(r.start <= r.end && r.end <= data.len());
    assert_eq!(data.get(r), Some(p.payload()));
    assert_eq!(
        p.header_len() + p.payload().len() + p.padding_len(),
        data.len()
    );
    let mut out = [0u8; 12];
    let n = write_header(
        &mut out,
        p.payload_type(),
        p.marker(),
        p.sequence(),
        p.timestamp(),
        p.ssrc(),
    );
    assert_eq!(n, Ok(12));
    let again = RtpView::parse(&out)
        .ok()
        .map(|v| (v.payload_type(), v.sequence(), v.ssrc()));
    assert_eq!(again, Some((p.payload_type(), p.sequence(), p.ssrc())));
});
