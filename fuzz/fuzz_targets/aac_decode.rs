#![no_main]
//! AAC-LC decoder fed arbitrary access units after a valid config (the first byte picks mono
//! or stereo, 44.1 or 48 kHz): errors are fine, panics are not, and output fits the buffer.
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::aac::AacDecoder;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let config: &[u8] = match pick & 3 {
        0 => &[0x12, 0x08], // 44.1 kHz mono
        1 => &[0x12, 0x10], // 44.1 kHz stereo
        2 => &[0x11, 0x88], // 48 kHz mono
        _ => &[0x11, 0x90, 0x56, 0xE5, 0x00], // 48 kHz stereo, ffmpeg's SBR signalling
    };
    let Ok(mut dec) = AacDecoder::new(config) else {
        panic!("valid config rejected");
    };
    let mut out = [0i16; 2048];
    // Several access units from one input, split at 0xFF bytes, to exercise decoder state.
    for au in rest.split(|&b| b == 0xFF).take(8) {
        if let Ok(n) = dec.decode(au, &mut out) {
            assert!(n <= out.len());
        }
    }
});
