#![no_main]
//! SDP: parse, touch every accessor, build an answer from whatever parsed and re-parse it.
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::sdp::{answer_codecs, SdpBuilder, SessionDescription};

const SUPPORTED: &[(&str, u32)] = &[("PCMU", 8000), ("PCMA", 8000), ("G722", 8000)];

fuzz_target!(|data: &[u8]| {
    let Ok(sd) = SessionDescription::parse(data) else {
        return;
    };
    let _ = (sd.origin, sd.session_name, sd.direction);
    if let Some(c) = sd.connection {
        let _ = c.ip();
    }
    for m in &sd.media {
        let _ = (sd.media_address(m), sd.media_direction(m), m.is_rtp());
        for &pt in &m.formats {
            let _ = (m.encoding_of(pt), m.fmtp_of(pt));
        }
        let _ = m.payload_type_for("telephone-event", 8000);
    }
    if let Some(offer) = sd.first_audio() {
        let codecs = answer_codecs(offer, SUPPORTED);
        let port = if codecs.is_empty() { 0 } else { 30_000 };
        let te = offer.payload_type_for("telephone-event", 8000);
        let answer = SdpBuilder {
            username: sd.origin.map(|o| o.username.to_owned()).unwrap_or_default(),
            session_id: 1,
            session_version: 1,
            address: sd.media_address(offer).unwrap_or([192, 0, 2, 1].into()),
            port,
            codecs,
            telephone_event: te,
            ptime: offer.ptime,
            direction: sd.media_direction(offer).reversed(),
        };
        let bytes = answer.build_with_rtcp(offer.rtcp.map_or(30_001, |r| r.0));
        let reparsed = SessionDescription::parse(&bytes);
        assert!(reparsed.is_ok(), "our own answer must parse: {reparsed:?}");
    }
});
