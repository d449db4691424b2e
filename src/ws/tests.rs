use super::*;
use skybridge_codecs::websocket::{apply_mask, parse_close_payload, Frame};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade_request(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: relay.example:8080\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A masked client frame.
fn cf(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0xa1, 0x02, 0x7c, 0xee];
    let mut v = vec![b0];
    let len = payload.len();
    if len < 126 {
        v.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        v.push(0x80 | 126);
        v.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        v.push(0x80 | 127);
        v.extend_from_slice(&(len as u64).to_be_bytes());
    }
    v.extend_from_slice(&key);
    let mut p = payload.to_vec();
    apply_mask(&mut p, key);
    v.extend_from_slice(&p);
    v
}

fn text(s: &str) -> Vec<u8> {
    cf(0x81, s.as_bytes())
}

fn audio(call: u16, codec: u8, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 8];
    signal::write_audio_header(
        &mut h,
        AudioFrameHeader {
            codec,
            call,
            timestamp: ts,
        },
    );
    let mut v = h.to_vec();
    v.extend_from_slice(payload);
    cf(0x82, &v)
}

struct Harness {
    s: WsServerSession,
    now: Instant,
    out: BytesMut,
}

impl Harness {
    fn new(config: WsSessionConfig) -> Self {
        let now = Instant::now();
        Harness {
            s: WsServerSession::new(config, now),
            now,
            out: BytesMut::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), WsSessionError> {
        let mut buf = BytesMut::from(bytes);
        let r = self.s.handle_input(self.now, &mut buf);
        self.drain();
        r
    }

    fn drain(&mut self) {
        while let Some(b) = self.s.poll_output() {
            self.out.extend_from_slice(&b);
        }
    }

    fn events(&mut self) -> Vec<WsEvent> {
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }

    /// Takes everything the server wrote as a string (the HTTP part).
    fn http(&mut self) -> String {
        String::from_utf8(self.out.split().to_vec()).unwrap()
    }

    /// Takes every frame the server wrote.
    fn frames(&mut self) -> Vec<Frame> {
        let mut r = FrameReader::new(FrameLimits {
            max_frame_len: 1 << 20,
            require_mask: false,
        });
        let mut v = Vec::new();
        while let Some(f) = r.read(&mut self.out).unwrap() {
            v.push(f);
        }
        assert!(self.out.is_empty(), "trailing bytes");
        v
    }

    fn texts(&mut self) -> Vec<serde_json::Value> {
        self.frames()
            .into_iter()
            .filter(|f| f.opcode == Opcode::Text)
            .map(|f| serde_json::from_slice(&f.payload).unwrap())
            .collect()
    }

    /// The close frame the server wrote last: (code, reason).
    fn close_frame(&mut self) -> (u16, String) {
        let f = self
            .frames()
            .into_iter()
            .rfind(|f| f.opcode == Opcode::Close)
            .expect("a close frame");
        let (code, reason) = parse_close_payload(&f.payload).unwrap();
        (code.unwrap(), reason.to_owned())
    }

    fn upgraded() -> Self {
        let mut h = Harness::new(WsSessionConfig::default());
        h.feed(upgrade_request("").as_bytes()).unwrap();
        assert!(h.http().starts_with("HTTP/1.1 101 "));
        h
    }

    fn authenticated() -> Self {
        let mut h = Harness::upgraded();
        h.feed(&text(r#"{"type":"hello","version":1,"token":"t"}"#))
            .unwrap();
        h.events();
        h.s.authenticated("alice");
        h.drain();
        h.frames();
        h
    }

    fn closed_event(&mut self) -> (u16, String) {
        match self.events().pop() {
            Some(WsEvent::Closed { code, reason }) => (code, reason),
            other => panic!("expected Closed, got {other:?}"),
        }
    }
}

// ---- upgrade ----

#[test]
fn upgrade_echoes_subprotocol_and_declines_permessage_deflate() {
    let mut h = Harness::new(WsSessionConfig::default());
    let req = upgrade_request(
        "Origin: http://relay.example:8080\r\nSec-WebSocket-Protocol: skybridge.v1\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    );
    h.feed(req.as_bytes()).unwrap();
    let resp = h.http();
    assert!(
        resp.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{resp}"
    );
    assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(resp.contains("Sec-WebSocket-Protocol: skybridge.v1\r\n"));
    assert!(!resp
        .to_ascii_lowercase()
        .contains("sec-websocket-extensions"));
    assert!(h.s.is_upgraded() && !h.s.is_closing());
    assert_eq!(h.s.protocol(), Some(SUBPROTOCOL));
}

#[test]
fn upgrade_without_subprotocol_is_accepted_without_echo() {
    let h = Harness::upgraded();
    assert_eq!(h.s.protocol(), None);
    assert!(h.out.is_empty());
}

#[test]
fn upgrade_split_across_reads_and_followed_by_a_frame() {
    let mut h = Harness::new(WsSessionConfig::default());
    let mut all = upgrade_request("").into_bytes();
    all.extend(text(r#"{"type":"hello","version":1}"#));
    let mut buf = BytesMut::new();
    for b in &all {
        buf.extend_from_slice(&[*b]);
        h.s.handle_input(h.now, &mut buf).unwrap();
    }
    assert!(buf.is_empty());
    assert_eq!(
        h.events(),
        [WsEvent::Message(ClientMessage::Hello {
            version: 1,
            token: None,
            codecs: None,
        })]
    );
}

#[test]
fn upgrade_to_another_path_gets_404_and_closes() {
    let mut h = Harness::new(WsSessionConfig::default());
    let req = upgrade_request("").replace("GET /ws ", "GET /admin ");
    assert_eq!(h.feed(req.as_bytes()), Err(WsSessionError::NotFound));
    assert!(h.http().starts_with("HTTP/1.1 404 "));
    assert!(h.s.is_closing());
    assert!(h.events().is_empty());
}

#[test]
fn plain_get_to_ws_path_gets_426() {
    let mut h = Harness::new(WsSessionConfig::default());
    let r = h.feed(b"GET /ws HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(r, Err(WsSessionError::Handshake(WsError::NotUpgrade)));
    let resp = h.http();
    assert!(resp.starts_with("HTTP/1.1 426 "));
    assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"));
}

#[test]
fn upgrade_with_1mib_header_gets_431_and_closes() {
    let mut h = Harness::new(WsSessionConfig::default());
    let mut req = b"GET /ws HTTP/1.1\r\nHost: relay.example\r\nX-Big: ".to_vec();
    req.resize(1024 * 1024, b'x');
    let mut buf = BytesMut::from(&req[..]);
    let r = h.s.handle_input(h.now, &mut buf);
    h.drain();
    assert_eq!(r, Err(WsSessionError::Handshake(WsError::HeadTooLarge)));
    assert_eq!(r.unwrap_err().reason(), "head_too_large");
    assert!(h
        .http()
        .starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    assert!(h.s.is_closing());
    // Further input is discarded, nothing more is written.
    assert_eq!(h.feed(b"more"), Ok(()));
    assert!(h.out.is_empty());
}

#[test]
fn cross_origin_upgrade_gets_403() {
    let mut h = Harness::new(WsSessionConfig::default());
    let req = upgrade_request("Origin: https://evil.example\r\n");
    assert_eq!(h.feed(req.as_bytes()), Err(WsSessionError::Forbidden));
    assert!(h.http().starts_with("HTTP/1.1 403 "));
}

#[test]
fn same_origin_check_ignores_default_ports_and_case() {
    let same = |origin: &str, host: &str| origin_allowed(&[], origin, host);
    assert!(same("http://Relay.example:8080", "relay.example:8080"));
    assert!(same("http://relay.example", "relay.example:80"));
    assert!(same("https://relay.example", "relay.example"));
    assert!(!same("http://relay.example:8081", "relay.example:8080"));
    assert!(!same("http://relay.example.evil", "relay.example"));
    assert!(!same("null", "relay.example"));
    assert!(!same("ftp://relay.example", "relay.example"));
    assert!(!same("http://relay.example/x", "relay.example/x"));
}

#[test]
fn origin_allowlist_replaces_the_same_origin_rule() {
    let config = WsSessionConfig {
        allowed_origins: vec!["https://phone.example".into()],
        ..WsSessionConfig::default()
    };
    let mut h = Harness::new(config.clone());
    h.feed(upgrade_request("Origin: https://PHONE.example\r\n").as_bytes())
        .unwrap();
    assert!(h.s.is_upgraded());
    let mut h = Harness::new(config);
    let same_host = upgrade_request("Origin: http://relay.example:8080\r\n");
    assert_eq!(h.feed(same_host.as_bytes()), Err(WsSessionError::Forbidden));
}

#[test]
fn missing_origin_is_refused_only_when_required() {
    let mut h = Harness::new(WsSessionConfig {
        require_origin: true,
        ..WsSessionConfig::default()
    });
    assert_eq!(
        h.feed(upgrade_request("").as_bytes()),
        Err(WsSessionError::Forbidden)
    );
}

#[test]
fn upgrade_deadline_closes_a_silent_connection() {
    let mut h = Harness::new(WsSessionConfig::default());
    h.feed(b"GET /ws HTTP/1.1\r\n").unwrap();
    let at = h.s.poll_timeout().unwrap();
    assert_eq!(at, h.now + Duration::from_secs(10));
    assert_eq!(h.s.handle_timeout(at - Duration::from_millis(1)), Ok(()));
    assert_eq!(h.s.handle_timeout(at), Err(WsSessionError::UpgradeTimeout));
    assert!(h.s.is_closing());
    assert_eq!(h.s.poll_timeout(), None);
}

// ---- hello ----

#[test]
fn hello_surfaces_and_authenticated_sends_welcome() {
    let mut h = Harness::upgraded();
    h.feed(&text(r#"{"type":"hello","version":1,"token":"secret"}"#))
        .unwrap();
    assert_eq!(
        h.events(),
        [WsEvent::Message(ClientMessage::Hello {
            version: 1,
            token: Some("secret".into()),
            codecs: None,
        })]
    );
    assert!(!h.s.is_authenticated());
    h.s.authenticated("alice");
    h.drain();
    let welcome = &h.texts()[0];
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["user"], "alice");
    assert_eq!(welcome["version"], 1);
    assert_eq!(welcome["codecs"], serde_json::json!(["pcmu", "pcma"]));
    assert!(h.s.is_authenticated());
}

#[test]
fn message_before_hello_closes_1008_authenticate_first() {
    let mut h = Harness::upgraded();
    let r = h.feed(&text(r#"{"type":"call","target":"echo"}"#));
    assert_eq!(r, Err(WsSessionError::NotAuthenticated));
    assert_eq!(h.close_frame(), (1008, "authenticate first".to_owned()));
    assert_eq!(h.closed_event(), (1008, "authenticate first".to_owned()));
    assert!(h.s.is_closing());
}

#[test]
fn audio_before_hello_closes_1008() {
    let mut h = Harness::upgraded();
    assert_eq!(
        h.feed(&audio(1, 0, 0, &[0; 160])),
        Err(WsSessionError::NotAuthenticated)
    );
    assert_eq!(h.close_frame().0, 1008);
}

#[test]
fn messages_while_hello_pending_are_held_until_welcome() {
    let mut h = Harness::upgraded();
    let mut bytes = text(r#"{"type":"hello","version":1}"#);
    bytes.extend(text(r#"{"type":"ping"}"#));
    bytes.extend(text(r#"{"type":"call","target":"echo"}"#));
    bytes.extend(audio(1, 0, 0, &[0; 160]));
    h.feed(&bytes).unwrap();
    assert_eq!(h.events().len(), 1, "only hello before the driver decides");
    assert!(h.out.is_empty());
    h.s.authenticated("bob");
    h.drain();
    let types: Vec<_> = h
        .texts()
        .iter()
        .map(|v| v["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["welcome", "pong"]);
    assert_eq!(
        h.events(),
        [WsEvent::Message(ClientMessage::Call {
            target: "echo".into()
        })]
    );
    assert_eq!(h.s.stats().audio_dropped, 1);
}

#[test]
fn too_many_messages_while_hello_pending_close_1008() {
    let mut h = Harness::upgraded();
    let mut bytes = text(r#"{"type":"hello","version":1}"#);
    for _ in 0..=MAX_HELD_MESSAGES {
        bytes.extend(text(r#"{"type":"stats"}"#));
    }
    assert_eq!(h.feed(&bytes), Err(WsSessionError::NotAuthenticated));
    assert_eq!(h.close_frame().0, 1008);
}

#[test]
fn reject_sends_error_then_close_1008() {
    let mut h = Harness::upgraded();
    h.feed(&text(r#"{"type":"hello","version":1,"token":"bad"}"#))
        .unwrap();
    h.events();
    h.s.reject("bad_token", "token expired");
    h.drain();
    let frames = h.frames();
    assert_eq!(frames.len(), 2);
    let err: serde_json::Value = serde_json::from_slice(&frames[0].payload).unwrap();
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("bad_token"))
    );
    assert_eq!(
        parse_close_payload(&frames[1].payload).unwrap(),
        (Some(1008), "token expired")
    );
    assert_eq!(h.closed_event(), (1008, "token expired".to_owned()));
    assert!(h.s.is_closing());
    assert!(!h.s.is_authenticated());
}

#[test]
fn hello_deadline_closes_1008() {
    let mut h = Harness::upgraded();
    let deadline = h.now + Duration::from_secs(10);
    // A server ping at 5 s comes first.
    let ping = h.s.poll_timeout().unwrap();
    assert_eq!(ping, h.now + Duration::from_secs(5));
    h.s.handle_timeout(ping).unwrap();
    h.drain();
    assert_eq!(h.s.poll_timeout(), Some(deadline));
    assert_eq!(
        h.s.handle_timeout(deadline),
        Err(WsSessionError::HelloTimeout)
    );
    h.drain();
    assert_eq!(h.close_frame(), (1008, "hello timeout".to_owned()));
}

#[test]
fn a_second_hello_is_an_error_message_not_a_close() {
    let mut h = Harness::authenticated();
    h.feed(&text(r#"{"type":"hello","version":1}"#)).unwrap();
    assert_eq!(h.texts()[0]["code"], "bad_message");
    assert!(!h.s.is_closing());
}

// ---- messages ----

#[test]
fn signalling_messages_surface_after_welcome() {
    let mut h = Harness::authenticated();
    h.feed(&text(r#"{"type":"dtmf","call":2,"digits":"1#"}"#))
        .unwrap();
    assert_eq!(
        h.events(),
        [WsEvent::Message(ClientMessage::Dtmf {
            call: 2,
            digits: "1#".into()
        })]
    );
}

#[test]
fn json_ping_is_answered_with_pong_by_the_session() {
    let mut h = Harness::authenticated();
    h.feed(&text(r#"{"type":"ping"}"#)).unwrap();
    assert!(h.events().is_empty());
    assert_eq!(h.texts(), [serde_json::json!({"type": "pong"})]);
}

#[test]
fn unknown_type_sends_error_then_closes_1008() {
    let mut h = Harness::authenticated();
    let r = h.feed(&text(r#"{"type":"format_disk"}"#));
    assert_eq!(r, Err(WsSessionError::Signal(SignalError::UnknownType)));
    let frames = h.frames();
    let err: serde_json::Value = serde_json::from_slice(&frames[0].payload).unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(
        parse_close_payload(&frames[1].payload).unwrap(),
        (Some(1008), "unknown message type")
    );
}

#[test]
fn bad_fields_get_an_error_and_the_connection_stays_open() {
    let mut h = Harness::authenticated();
    h.feed(&text(r#"{"type":"answer","call":"x"}"#)).unwrap();
    let msgs = h.texts();
    assert_eq!(
        (msgs[0]["type"].as_str(), msgs[0]["code"].as_str()),
        (Some("error"), Some("bad_message"))
    );
    assert!(!h.s.is_closing());
    h.feed(&text(r#"{"type":"hangup","call":1}"#)).unwrap();
    assert_eq!(
        h.events(),
        [WsEvent::Message(ClientMessage::Hangup { call: 1 })]
    );
}

#[test]
fn invalid_utf8_text_closes_1007() {
    let mut h = Harness::authenticated();
    let r = h.feed(&cf(0x81, b"{\"type\":\"\xff\"}"));
    assert_eq!(r, Err(WsSessionError::Protocol(WsError::InvalidUtf8)));
    assert_eq!(h.close_frame().0, 1007);
}

#[test]
fn text_that_is_not_json_closes_1007() {
    let mut h = Harness::authenticated();
    assert_eq!(
        h.feed(&text("hello?")),
        Err(WsSessionError::Signal(SignalError::NotJson))
    );
    assert_eq!(h.close_frame().0, 1007);
}

#[test]
fn one_mib_json_text_message_closes_1009() {
    let mut json = br#"{"type":"call","target":""#.to_vec();
    json.resize(1024 * 1024, b'a');
    json.extend_from_slice(b"\"}");
    // As one frame: refused on its declared length.
    let mut h = Harness::authenticated();
    assert_eq!(
        h.feed(&cf(0x81, &json)),
        Err(WsSessionError::Protocol(WsError::FrameTooLong))
    );
    assert_eq!(h.close_frame().0, 1009);
    // As 8 KiB fragments: refused once the message passes 16 KiB.
    let mut h = Harness::authenticated();
    let mut chunks = json.chunks(8 * 1024).peekable();
    let mut first = true;
    let mut r = Ok(());
    while let Some(c) = chunks.next() {
        let b0 = if first { 0x01 } else { 0x00 } | if chunks.peek().is_none() { 0x80 } else { 0 };
        first = false;
        r = h.feed(&cf(b0, c));
        if r.is_err() {
            break;
        }
    }
    assert_eq!(r, Err(WsSessionError::Protocol(WsError::MessageTooLong)));
    assert_eq!(h.close_frame().0, 1009);
}

#[test]
fn one_mib_binary_closes_1009() {
    let mut h = Harness::authenticated();
    let r = h.feed(&cf(0x82, &vec![0u8; 1024 * 1024]));
    assert_eq!(r.map_err(|e| e.reason()), Err("too_big"));
    assert_eq!(h.close_frame().0, 1009);
    // A binary frame just over 2 KiB (under the frame limit) is refused by the message limit.
    let mut h = Harness::authenticated();
    assert_eq!(
        h.feed(&cf(0x82, &[0u8; 2049])),
        Err(WsSessionError::Protocol(WsError::MessageTooLong))
    );
    assert_eq!(h.close_frame().0, 1009);
}

#[test]
fn masked_frame_declaring_2_pow_40_bytes_closes_1009_before_buffering() {
    let mut h = Harness::authenticated();
    let mut hdr = vec![0x82, 0x80 | 127];
    hdr.extend_from_slice(&(1u64 << 40).to_be_bytes());
    hdr.extend_from_slice(&[1, 2, 3, 4]);
    hdr.extend_from_slice(&[0u8; 100]); // the first payload bytes
    let mut buf = BytesMut::from(&hdr[..]);
    let r = h.s.handle_input(h.now, &mut buf);
    h.drain();
    assert_eq!(r, Err(WsSessionError::Protocol(WsError::FrameTooLong)));
    assert_eq!(h.close_frame(), (1009, "frame too big".to_owned()));
    assert_eq!(h.closed_event().0, 1009);
}

#[test]
fn ten_thousand_1k_continuations_without_fin_close_1009() {
    let mut h = Harness::authenticated();
    let mut r = h.feed(&cf(0x01, &[b'a'; 1024]));
    let cont = cf(0x00, &[b'a'; 1024]);
    let mut sent = 0;
    while r.is_ok() && sent < 10_000 {
        r = h.feed(&cont);
        sent += 1;
    }
    assert!(sent < 64, "refused early, after {sent} frames");
    assert_eq!(r.map_err(|e| e.reason()), Err("too_big"));
    assert_eq!(h.close_frame().0, 1009);
}

#[test]
fn unmasked_frame_closes_1002() {
    let mut h = Harness::authenticated();
    let r = h.feed(b"\x81\x0f{\"type\":\"ping\"}");
    assert_eq!(r, Err(WsSessionError::Protocol(WsError::Unmasked)));
    assert_eq!(h.close_frame().0, 1002);
}

#[test]
fn fragmented_ping_closes_1002() {
    let mut h = Harness::authenticated();
    assert_eq!(
        h.feed(&cf(0x09, b"x")),
        Err(WsSessionError::Protocol(WsError::FragmentedControl))
    );
    assert_eq!(h.close_frame().0, 1002);
}

// ---- audio ----

#[test]
fn audio_frame_surfaces_as_a_zero_copy_slice() {
    let mut h = Harness::authenticated();
    let frame = audio(7, 8, 1600, &[0xd5; 160]);
    let mut buf = BytesMut::from(&frame[..]);
    let base = buf.as_ptr() as usize;
    h.s.handle_input(h.now, &mut buf).unwrap();
    match h.events().as_slice() {
        [WsEvent::Audio {
            call: 7,
            codec: 8,
            timestamp: 1600,
            payload,
        }] => {
            assert_eq!(payload.len(), 160);
            assert!(payload.iter().all(|&b| b == 0xd5));
            // 2 + 2 (16-bit length) + 4 (mask) frame header, then the 8-byte audio header.
            assert_eq!(payload.as_ptr() as usize, base + 8 + 8);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_audio_frames_close_1003() {
    for bad in [
        cf(0x82, &[1, 0, 0]),
        cf(0x82, &[2, 0, 0, 1, 0, 0, 0, 0]),
        cf(0x82, &[1, 9, 0, 1, 0, 0, 0, 0]),
    ] {
        let mut h = Harness::authenticated();
        assert!(matches!(h.feed(&bad), Err(WsSessionError::Signal(_))));
        assert_eq!(h.close_frame().0, 1003);
    }
}

fn with_opus() -> Harness {
    let mut h = Harness::upgraded();
    h.feed(&text(
        r#"{"type":"hello","version":1,"codecs":["opus","pcmu","speex"]}"#,
    ))
    .unwrap();
    h.events();
    h.s.authenticated("alice");
    h.drain();
    let welcome = &h.texts()[0];
    assert_eq!(
        welcome["codecs"],
        serde_json::json!(["opus", "pcmu", "pcma"]),
        "what the client offered and we do, G.711 always"
    );
    assert_eq!(
        welcome["payload_types"],
        serde_json::json!({"opus": 111, "pcmu": 0, "pcma": 8})
    );
    assert!(h.s.opus());
    h
}

#[test]
fn a_hello_offering_opus_gets_its_number_in_welcome_and_opus_frames_surface() {
    let mut h = with_opus();
    // A 20 ms CELT packet (config 31, code 0).
    h.feed(&audio(2, 111, 960, &[0xF8, 0xFF, 0xFE])).unwrap();
    assert!(matches!(
        h.events().as_slice(),
        [WsEvent::Audio { call: 2, codec: 111, timestamp: 960, payload }] if payload.len() == 3
    ));
}

#[test]
fn a_client_that_offers_codecs_without_opus_gets_g711_numbers_only() {
    let mut h = Harness::upgraded();
    h.feed(&text(r#"{"type":"hello","version":1,"codecs":["pcma"]}"#))
        .unwrap();
    h.events();
    h.s.authenticated("alice");
    h.drain();
    let welcome = &h.texts()[0];
    assert_eq!(welcome["codecs"], serde_json::json!(["pcmu", "pcma"]));
    assert_eq!(
        welcome["payload_types"],
        serde_json::json!({"pcmu": 0, "pcma": 8})
    );
    assert!(!h.s.opus());
    assert!(matches!(
        h.feed(&audio(2, 111, 960, &[0xF8, 0xFF])),
        Err(WsSessionError::Signal(SignalError::AudioCodec))
    ));
    assert_eq!(h.close_frame().0, 1003);
}

#[test]
fn opus_frames_on_a_g711_connection_close_1003() {
    let mut h = Harness::authenticated();
    assert!(!h.s.opus());
    assert!(h.feed(&audio(2, 111, 960, &[0xF8, 0xFF])).is_err());
    assert_eq!(h.close_frame().0, 1003);
}

#[test]
fn a_malformed_opus_packet_is_dropped_and_counted_and_the_connection_stays_open() {
    let mut h = with_opus();
    for bad in [&[][..], &[0xFB, 0x00][..], &[0xF9, 1, 2, 3][..]] {
        h.feed(&audio(2, 111, 960, bad)).unwrap();
    }
    assert_eq!(
        h.events(),
        vec![WsEvent::AudioMalformed { call: 2 }; 3],
        "dropped, and the driver is told which call"
    );
    assert_eq!(h.s.stats().audio_malformed, 3);
    assert!(!h.s.is_closing());
    h.feed(&audio(2, 111, 1920, &[0xF8, 0xFF])).unwrap();
    assert_eq!(h.events().len(), 1, "the next good frame flows");
}

#[test]
fn send_audio_writes_header_and_payload() {
    let mut h = Harness::authenticated();
    assert!(h.s.send_audio(3, 0, 160, &[0xff; 160]));
    h.drain();
    let f = h.frames().pop().unwrap();
    assert_eq!(f.opcode, Opcode::Binary);
    let (hdr, range) = signal::parse_audio_frame(&f.payload).unwrap();
    assert_eq!(
        hdr,
        AudioFrameHeader {
            codec: 0,
            call: 3,
            timestamp: 160
        }
    );
    assert_eq!(range.len(), 160);
}

#[test]
fn send_audio_drops_when_output_backs_up_but_signalling_is_never_dropped() {
    let mut h = Harness::authenticated();
    let mut sent = 0;
    while h.s.send_audio(1, 0, 0, &[0; 160]) {
        sent += 1;
        assert!(sent < 10_000);
    }
    assert!(sent * 172 > 256 * 1024);
    assert_eq!(h.s.stats().audio_out_dropped, 1);
    assert!(h.s.send(&ServerMessage::Hangup {
        call: 1,
        code: 200,
        reason: "bye".into()
    }));
    h.drain();
    assert!(
        h.s.send_audio(1, 0, 0, &[0; 160]),
        "polled output frees room"
    );
}

#[test]
fn send_audio_is_refused_before_authentication() {
    let mut h = Harness::upgraded();
    assert!(!h.s.send_audio(1, 0, 0, &[0; 160]));
    assert!(h.s.poll_output().is_none());
}

// ---- control frames, close, liveness ----

#[test]
fn websocket_ping_is_answered_with_same_payload_pong() {
    let mut h = Harness::upgraded();
    h.feed(&cf(0x89, b"abc")).unwrap();
    let f = h.frames().pop().unwrap();
    assert_eq!((f.opcode, &f.payload[..]), (Opcode::Pong, &b"abc"[..]));
}

#[test]
fn client_close_is_echoed_and_reported() {
    let mut h = Harness::authenticated();
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    h.feed(&cf(0x88, &payload)).unwrap();
    assert_eq!(h.close_frame().0, 1000);
    assert_eq!(h.closed_event(), (1000, "bye".to_owned()));
    assert!(h.s.is_closing());
    assert!(!h.s.send(&ServerMessage::Pong));
}

#[test]
fn client_close_without_code_is_reported_as_1005_and_echoed_empty() {
    let mut h = Harness::authenticated();
    h.feed(&cf(0x88, b"")).unwrap();
    let f = h.frames().pop().unwrap();
    assert_eq!((f.opcode, f.payload.len()), (Opcode::Close, 0));
    assert_eq!(h.closed_event().0, 1005);
}

#[test]
fn invalid_close_code_closes_1002() {
    let mut h = Harness::authenticated();
    assert_eq!(
        h.feed(&cf(0x88, &1005u16.to_be_bytes())),
        Err(WsSessionError::Protocol(WsError::BadClose))
    );
    assert_eq!(h.close_frame().0, 1002);
}

#[test]
fn server_close_truncates_reason_and_reports_once() {
    let mut h = Harness::authenticated();
    h.s.close(1000, &"x".repeat(500));
    h.s.close(1011, "again");
    h.drain();
    let (code, reason) = h.close_frame();
    assert_eq!((code, reason.len()), (1000, 123));
    assert_eq!(h.events().len(), 1);
}

#[test]
fn server_pings_every_third_and_closes_a_silent_peer_1001_at_dead_peer() {
    let mut h = Harness::authenticated();
    let last_input = h.now;
    let dead_at = last_input + Duration::from_secs(15);
    assert_eq!(h.s.dead_peer_deadline(), Some(dead_at));
    for i in 1..=2u64 {
        let t = h.s.poll_timeout().unwrap();
        assert_eq!(t, last_input + Duration::from_secs(5 * i));
        h.s.handle_timeout(t).unwrap();
        h.drain();
        assert_eq!(h.frames().pop().unwrap().opcode, Opcode::Ping);
    }
    assert_eq!(h.s.poll_timeout(), Some(dead_at));
    h.s.handle_timeout(dead_at - Duration::from_millis(1))
        .unwrap();
    assert!(!h.s.is_closing());
    assert_eq!(h.s.handle_timeout(dead_at), Err(WsSessionError::DeadPeer));
    assert_eq!(WsSessionError::DeadPeer.reason(), "dead_peer");
    h.drain();
    assert_eq!(
        h.close_frame(),
        (1001, "nothing received: dead peer".to_owned())
    );
    assert!(h.s.is_closing());
    assert_eq!(h.s.dead_peer_deadline(), None);
}

#[test]
fn dead_peer_counts_from_the_last_input_not_from_the_last_ping() {
    let mut h = Harness::authenticated();
    let t = h.s.poll_timeout().unwrap(); // first ping
    h.s.handle_timeout(t).unwrap();
    h.now = t + Duration::from_secs(2);
    h.feed(&cf(0x81, br#"{"type":"ping"}"#)).unwrap(); // JSON ping: input
    assert_eq!(
        h.s.dead_peer_deadline(),
        Some(h.now + Duration::from_secs(15))
    );
}

#[test]
fn no_dead_peer_timer_before_the_upgrade() {
    let now = Instant::now();
    let s = WsServerSession::new(WsSessionConfig::default(), now);
    assert_eq!(s.dead_peer_deadline(), None);
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(10)));
}

#[test]
fn any_input_resets_dead_peer_detection() {
    let mut h = Harness::authenticated();
    for _ in 0..10 {
        let t = h.s.poll_timeout().unwrap();
        h.s.handle_timeout(t).unwrap();
        h.now = t;
        h.feed(&cf(0x8A, b"")).unwrap(); // pong
    }
    assert!(!h.s.is_closing());
    assert_eq!(h.s.stats().pings_sent, 10);
}

// ---- an independent client ----

/// In-memory byte pipe for tungstenite: reads what the server wrote, or WouldBlock.
#[derive(Default)]
struct Pipe {
    to_server: Vec<u8>,
    from_server: std::collections::VecDeque<u8>,
    eof: bool,
}

impl std::io::Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.from_server.is_empty() {
            if self.eof {
                return Ok(0);
            }
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.from_server.len());
        for (dst, src) in buf.iter_mut().zip(self.from_server.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl std::io::Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.to_server.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Moves client bytes into the session and session output back to the client.
fn pump(pipe: &mut Pipe, s: &mut WsServerSession, now: Instant) -> Result<(), WsSessionError> {
    let mut buf = BytesMut::from(&std::mem::take(&mut pipe.to_server)[..]);
    let r = s.handle_input(now, &mut buf);
    while let Some(b) = s.poll_output() {
        pipe.from_server.extend(b.iter());
    }
    r
}

#[test]
fn tungstenite_client_round_trips_signalling_audio_and_close() {
    use tungstenite::client::IntoClientRequest;
    use tungstenite::handshake::HandshakeError;
    use tungstenite::Message as TMessage;

    let now = Instant::now();
    let mut s = WsServerSession::new(WsSessionConfig::default(), now);
    let mut req = "ws://relay.example/ws".into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "skybridge.v1".parse().unwrap());
    req.headers_mut()
        .insert("Origin", "http://relay.example".parse().unwrap());

    let mut attempt = tungstenite::client::client(req, Pipe::default());
    let mut client = loop {
        match attempt {
            Ok((ws, resp)) => {
                assert_eq!(resp.headers()["sec-websocket-protocol"], "skybridge.v1");
                break ws;
            }
            Err(HandshakeError::Interrupted(mut mid)) => {
                pump(mid.get_mut().get_mut(), &mut s, now).unwrap();
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(e)) => panic!("handshake failed: {e}"),
        }
    };

    client
        .send(TMessage::text(
            r#"{"type":"hello","version":1,"token":"t"}"#,
        ))
        .unwrap();
    pump(client.get_mut(), &mut s, now).unwrap();
    assert!(matches!(
        s.poll_event(),
        Some(WsEvent::Message(ClientMessage::Hello { .. }))
    ));
    s.authenticated("carol");
    pump(client.get_mut(), &mut s, now).unwrap();
    let welcome = client.read().unwrap();
    let v: serde_json::Value = serde_json::from_str(welcome.to_text().unwrap()).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["user"].as_str()),
        (Some("welcome"), Some("carol"))
    );

    // Client audio in, server audio out.
    let mut frame = vec![1u8, 0, 0, 5, 0, 0, 0, 160];
    frame.extend_from_slice(&[0x7f; 160]);
    client.send(TMessage::binary(frame)).unwrap();
    pump(client.get_mut(), &mut s, now).unwrap();
    match s.poll_event() {
        Some(WsEvent::Audio {
            call: 5,
            codec: 0,
            timestamp: 160,
            payload,
        }) => {
            assert_eq!(&payload[..], &[0x7f; 160]);
        }
        other => panic!("{other:?}"),
    }
    assert!(s.send_audio(5, 8, 320, &[0x55; 160]));
    s.handle_timeout(now + Duration::from_secs(5)).unwrap(); // a server ping
    pump(client.get_mut(), &mut s, now).unwrap();
    match client.read().unwrap() {
        TMessage::Binary(b) => {
            assert_eq!(&b[..8], &[1, 8, 0, 5, 0, 0, 1, 64]);
            assert_eq!(b.len(), 168);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(client.read().unwrap(), TMessage::Ping(_)));
    // tungstenite queued the pong; the session accepts it.
    client.flush().unwrap();
    pump(client.get_mut(), &mut s, now).unwrap();

    // Close handshake started by the client.
    client.close(None).unwrap();
    pump(client.get_mut(), &mut s, now).unwrap();
    assert_eq!(
        s.poll_event(),
        Some(WsEvent::Closed {
            code: 1005,
            reason: String::new()
        })
    );
    assert!(s.is_closing());
    // The client sees the echoed close; once the driver closes the socket (EOF) it is done.
    assert!(matches!(client.read(), Ok(TMessage::Close(None))));
    client.get_mut().eof = true;
    assert!(matches!(
        client.read(),
        Err(tungstenite::Error::ConnectionClosed)
    ));
}
