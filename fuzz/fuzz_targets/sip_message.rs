//! SIP message parser: arbitrary bytes must never panic; every accessor is exercised; a message
//! that parses must survive re-serialization through `MessageBuilder` and parse again with the
//! same meaning.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skybridge_codecs::sip::{
    header_name_eq, parse_challenge, stream_frame_len, Message, MessageBuilder, NameAddr, SipUri,
    StartLine, MAX_HEADERS, MAX_HEADER_LINE, MAX_MESSAGE_SIZE,
};

fn exercise(m: &Message<'_>) {
    let _ = (
        m.is_request(),
        m.method(),
        m.status(),
        m.request_uri(),
        m.content_type(),
    );
    let _ = (m.call_id(), m.cseq(), m.max_forwards());
    for na in [m.from(), m.to()].into_iter().flatten() {
        let _ = (
            na.tag(),
            na.param("x"),
            SipUri::parse(na.uri).map(|u| u.param("lr")),
        );
    }
    if let Some(Ok(c)) = m.contact() {
        let _ = SipUri::parse(c.uri);
    }
    for v in m.vias().flatten() {
        let _ = (v.branch(), v.received(), v.rport(), v.param("maddr"));
    }
    let _ = m.top_via();
    for r in m.record_routes().chain(m.routes()).flatten() {
        let _ = NameAddr::parse(r.uri);
    }
    for h in &m.headers {
        let _ = m.header_values(h.name).count();
        let _ = parse_challenge(h.value);
    }
    if let Some(uri) = m.request_uri() {
        let _ = SipUri::parse(uri);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(n)) = stream_frame_len(data) {
        assert!(n <= data.len() && n <= MAX_MESSAGE_SIZE);
        // A frame cut by the stream framer must parse on its own or fail cleanly.
        let _ = data.get(..n).map(Message::parse);
    }
    let Ok(m) = Message::parse(data) else { return };
    exercise(&m);

    let mut b = match m.start {
        StartLine::Request { method, uri } => MessageBuilder::request(method.as_str(), uri),
        StartLine::Response { code, reason } => MessageBuilder::response(code, reason),
    };
    let mut count = 1; // Content-Length added by finish()
    let mut lines_fit = true;
    for h in m
        .headers
        .iter()
        .filter(|h| !header_name_eq(h.name, "Content-Length"))
    {
        b.header(h.name, h.value);
        count += 1;
        lines_fit &= h.name.len() + 2 + h.value.len() <= MAX_HEADER_LINE;
    }
    let wire = b.finish(None, m.body);
    if wire.len() > MAX_MESSAGE_SIZE || count > MAX_HEADERS || !lines_fit {
        return; // the re-serialized form legitimately exceeds a limit
    }
    let again = match Message::parse(&wire) {
        Ok(again) => again,
        Err(e) => panic!("re-parse failed: {e:?}"),
    };
    assert_eq!(again.start, m.start);
    assert_eq!(again.body, m.body);
    assert_eq!(again.call_id(), m.call_id());
    assert_eq!(again.cseq(), m.cseq());
    assert_eq!(again.headers.len(), count);
    assert_eq!(stream_frame_len(&wire), Ok(Some(wire.len())));
    exercise(&again);
});
