//! Arbitrary bytes, fed in arbitrary splits, to the RFC 4571 deframer with small limits.
//! Invariants: no panic, every packet is non-empty and within the frame limit, the receive
//! buffer never holds more than one frame's worth past what was consumed, a split never
//! changes the result, and re-framing the packets reproduces the consumed input (minus the
//! skipped zero-length frames).
#![no_main]
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::rfc4571::{write_frame, BytesMut, Deframer, DeframerLimits, FramingError};

const LIMITS: DeframerLimits = DeframerLimits {
    max_frame_len: 300,
    max_empty_run: 4,
};

fn run(data: &[u8], splits: &[u8]) -> (Vec<Vec<u8>>, Option<FramingError>) {
    let mut d = Deframer::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = splits
            .get(i)
            .map_or(rest.len(), |&s| usize::from(s).max(1))
            .min(rest.len());
        i += 1;
        let (now, later) = rest.split_at(n);
        rest = later;
        buf.extend_from_slice(now);
        loop {
            match d.read(&mut buf) {
                Ok(Some(p)) => {
                    assert!(!p.is_empty() && p.len() <= usize::from(LIMITS.max_frame_len));
                    out.push(p.to_vec());
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        // What is left is a frame in progress: at most a header plus one frame.
        assert!(buf.len() < 2 + usize::from(LIMITS.max_frame_len));
    }
    (out, None)
}

fuzz_target!(|input: &[u8]| {
    let Some((&k, rest)) = input.split_first() else {
        return;
    };
    let k = usize::from(k % 32).min(rest.len());
    let (splits, data) = rest.split_at(k);
    let whole = run(data, &[]);
    let split = run(data, splits);
    assert_eq!(whole, split);
    if whole.1.is_none() {
        let mut again = BytesMut::new();
        for p in &whole.0 {
            write_frame(&mut again, p).unwrap();
        }
        let mut d = Deframer::new(LIMITS);
        let mut n = 0;
        while let Ok(Some(p)) = d.read(&mut again) {
            assert_eq!(&p[..], &whole.0[n][..]);
            n += 1;
        }
        assert_eq!(n, whole.0.len());
    }
});
