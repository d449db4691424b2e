#![no_main]
//! AAC AudioSpecificConfig: parse arbitrary bytes; accepted configs have sane fields, and a
//! decoder built from them (when one is) never panics.
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::aac::{AacDecoder, AudioSpecificConfig, MAX_CONFIG_LEN};

fuzz_target!(|data: &[u8]| {
    match AudioSpecificConfig::parse(data) {
        Ok(asc) => {
            assert!(data.len() <= MAX_CONFIG_LEN);
            assert!(asc.sample_rate > 0);
            assert!(asc.channel_configuration < 16);
        }
        Err(_) => return,
    }
    if let Ok(dec) = AacDecoder::new(data) {
        assert!((1..=2).contains(&dec.config().channels()));
    }
});
