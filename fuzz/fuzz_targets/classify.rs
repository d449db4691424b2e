//! Arbitrary bytes to the shared-port classifier. Invariants: no panic; never undecided once
//! `MAX_CLASSIFY_BYTES` are seen; a decision never changes as more bytes arrive; the RFC 4571
//! SSRC probe reads its fixed prefix only.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::classify::{
    classify, rfc4571_rtp_ssrc, Classified, MAX_CLASSIFY_BYTES, RFC4571_RTP_PREFIX,
};

fuzz_target!(|data: &[u8]| {
    let full = classify(data);
    if data.len() >= MAX_CLASSIFY_BYTES {
        assert_ne!(full, Classified::NeedMore);
    }
    // The SSRC probe decides from its fixed prefix only, and never without it.
    let ssrc = rfc4571_rtp_ssrc(data);
    if data.len() < RFC4571_RTP_PREFIX {
        assert_eq!(ssrc, None);
    } else {
        assert_eq!(ssrc, rfc4571_rtp_ssrc(&data[..RFC4571_RTP_PREFIX]));
    }
    for n in 0..data.len().min(MAX_CLASSIFY_BYTES + 1) {
        let part = classify(&data[..n]);
        assert!(
            part == Classified::NeedMore || part == full,
            "{n}: {part:?} vs {full:?}"
        );
    }
});
