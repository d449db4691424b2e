#![no_main]
//! Arbitrary packets to every audio decoder that takes bytes from the network: libspeex (NB,
//! WB) and libopus through our wrappers, our Nellymoser and G.722 decoders, and the Opus TOC
//! parser the WebSocket leg validates with. The first byte picks the decoder; the rest is split
//! at 0xFF into several packets so decoder state carries over. Errors are fine; panics, output
//! beyond the buffer and TOC durations beyond RFC 6716's 120 ms are not.
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::g722::G722Decoder;
use skybridge_codecs::nellymoser::NellymoserDecoder;
use skybridge_codecs::opus::OpusDecoder;
use skybridge_codecs::signal::opus_packet_ticks;
use skybridge_codecs::speex::{SpeexDecoder, SpeexMode, MAX_FRAMES_PER_PACKET};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let packets = rest.split(|&b| b == 0xFF).take(8);
    let mut out = vec![0i16; 8192];
    match pick % 6 {
        0 | 1 => {
            let mode = if pick % 6 == 0 {
                SpeexMode::Narrowband
            } else {
                SpeexMode::Wideband
            };
            let Ok(mut dec) = SpeexDecoder::new(mode) else {
                panic!("speex decoder");
            };
            assert!(mode.frame_samples() * MAX_FRAMES_PER_PACKET <= out.len());
            for p in packets {
                if let Ok(n) = dec.decode(Some(p), &mut out) {
                    assert!(n <= out.len());
                }
            }
        }
        2 | 3 => {
            let rate = if pick % 6 == 2 { 8000 } else { 48000 };
            let Ok(mut dec) = OpusDecoder::new(rate) else {
                panic!("opus decoder");
            };
            for p in packets {
                if let Some(ticks) = opus_packet_ticks(p) {
                    assert!(ticks <= 5760, "{ticks} ticks");
                }
                if let Ok(n) = dec.decode(Some(p), &mut out) {
                    assert!(n <= out.len());
                }
            }
        }
        4 => {
            let mut dec = NellymoserDecoder::new();
            for p in packets {
                if let Ok(n) = dec.decode(p, &mut out) {
                    assert!(n <= out.len());
                }
            }
        }
        _ => {
            let mut dec = G722Decoder::new();
            for p in packets {
                if let Ok(n) = dec.decode(p, &mut out) {
                    assert!(n <= out.len());
                }
            }
        }
    }
});
