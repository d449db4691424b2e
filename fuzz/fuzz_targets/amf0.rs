//! AMF0 decoding of arbitrary bytes: no panic, bounded depth; whatever decodes re-encodes into
//! something that decodes again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::amf0;

fuzz_target!(|data: &[u8]| {
    if let Ok(values) = amf0::decode_all(data) {
        let mut out = Vec::new();
        amf0::encode_all(&values, &mut out);
        let again = amf0::decode_all(&out).expect("re-encoded AMF0 must decode");
        assert_eq!(again.len(), values.len());
    }
});
