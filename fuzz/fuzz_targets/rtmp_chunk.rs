//! Arbitrary bytes, fed in arbitrary splits, to the RTMP chunk reader; every AMF0 command or data
//! payload it returns goes through the AMF0 decoder. Invariants: no panic, reassembly stays under
//! its cap, a split never changes the result.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::amf0;
use skybridge_codecs::rtmp::{message_type, BytesMut, ChunkLimits, ChunkReader, RtmpMessage};

fn run(data: &[u8], splits: &[u8]) -> (Vec<RtmpMessage>, bool) {
    let limits = ChunkLimits::default();
    let mut reader = ChunkReader::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = splits.get(i).map_or(rest.len(), |&s| usize::from(s).max(1)).min(rest.len());
        i += 1;
        let (now, later) = rest.split_at(n);
        rest = later;
        buf.extend_from_slice(now);
        loop {
            match reader.read(&mut buf) {
                Ok(Some(m)) => {
                    if matches!(m.type_id, message_type::COMMAND_AMF0 | message_type::DATA_AMF0) {
                        let _ = amf0::decode_all(&m.payload);
                    }
                    out.push(m);
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
            assert!(reader.reassembly_bytes() <= limits.max_reassembly_bytes);
        }
    }
    (out, false)
}

fuzz_target!(|input: &[u8]| {
    // First byte: how many split sizes follow; the rest is the stream.
    let Some((&k, rest)) = input.split_first() else {
        return;
    };
    let k = usize::from(k % 32).min(rest.len());
    let (splits, data) = rest.split_at(k);
    let whole = run(data, &[]);
    let split = run(data, splits);
    assert_eq!(whole, split);
});
