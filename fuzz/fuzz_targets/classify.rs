//! Arbitrary bytes to the shared-port classifier. Invariants: no panic; never undecided once
//! `MAX_CLASSIFY_BYTES` are seen; a decision never changes as more bytes arrive.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::classify::{classify, Classified, MAX_CLASSIFY_BYTES};

fuzz_target!(|data: &[u8]| {
    let full = classify(data);
    if data.len() >= MAX_CLASSIFY_BYTES {
        assert_ne!(full, Classified::NeedMore);
    }
    for n in 0..data.len().min(MAX_CLASSIFY_BYTES + 1) {
        let part = classify(&data[..n]);
        assert!(
            part == Classified::NeedMore || part == full,
            "{n}: {part:?} vs {full:?}"
        );
    }
});
