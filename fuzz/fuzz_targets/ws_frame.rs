//! Arbitrary bytes, fed in arbitrary splits, to the WebSocket frame reader (server side, masks
//! required) and every frame to the message assembler. Invariants: no panic, the assembler's
//! buffer stays under the message limit, text messages are UTF-8, control payloads ≤ 125 bytes,
//! a split never changes the result.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::websocket::{
    BytesMut, FrameLimits, FrameReader, Message, MessageAssembler, MessageLimits, WsError,
};

fn run(data: &[u8], splits: &[u8]) -> (Vec<Message>, Option<WsError>) {
    let limits = MessageLimits::default();
    let mut reader = FrameReader::new(FrameLimits::default());
    let mut asm = MessageAssembler::new(limits);
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
            let frame = match reader.read(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            };
            if frame.opcode.is_control() {
                assert!(frame.payload.len() <= 125);
            }
            match asm.push(frame) {
                Ok(Some(m)) => {
                    if let Message::Text(t) = &m {
                        assert!(std::str::from_utf8(t).is_ok());
                    }
                    out.push(m);
                }
                Ok(None) => {}
                Err(e) => return (out, Some(e)),
            }
            assert!(asm.buffered() <= limits.max_text_len.max(limits.max_binary_len));
        }
    }
    (out, None)
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
