//! Arbitrary bytes to the JSON signalling decoder and the audio frame parser. Invariants: no
//! panic, a decoded message re-encodes and decodes to itself, an audio payload range lies inside
//! the input and within 1024 bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::signal::{decode_client, parse_audio_frame, MAX_AUDIO_PAYLOAD};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode_client(data) {
        let json = serde_json::to_string(&msg).expect("client messages serialize");
        assert_eq!(decode_client(json.as_bytes()), Ok(msg));
    }
    if let Ok((_, range)) = parse_audio_frame(data) {
        assert!(range.end <= data.len() && range.start <= range.end);
        assert!(range.len() <= MAX_AUDIO_PAYLOAD);
    }
});
