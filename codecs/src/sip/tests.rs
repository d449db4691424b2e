#![allow(clippy::unwrap_used)] // tests may unwrap

use super::*;

#[test]
fn placeholder_parses_minimal_invite() {
    let m = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let msg = Message::parse(m).unwrap();
    assert_eq!(msg.method(), Some(Method::Invite));
}
