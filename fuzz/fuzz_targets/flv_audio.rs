#![no_main]
//! FLV audio tag header: parse, call every accessor, header length fits and first byte round-trips.
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::flv::AudioTagHeader;

fuzz_target!(|data: &[u8]| {
    let Ok((h, len)) = AudioTagHeader::parse(data) else {
        return;
    };
    assert!(len <= data.len());
    assert_eq!(Some(&h.to_byte()), data.first());
    let _ = (h.sample_rate_hz(), h.format_name(), h.aac_packet_type);
});
