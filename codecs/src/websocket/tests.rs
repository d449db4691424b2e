use super::*;

/// A client (masked) frame with explicit header bits.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
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

fn reader() -> FrameReader {
    FrameReader::new(FrameLimits::default())
}

fn read_all(bytes: &[u8]) -> Result<Vec<Frame>, WsError> {
    let mut r = reader();
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = r.read(&mut buf)? {
        out.push(f);
    }
    Ok(out)
}

const UPGRADE: &str = "GET /ws?x=1 HTTP/1.1\r\nHost: relay.example:8080\r\nUpgrade: websocket\r\n\
Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nOrigin: http://relay.example:8080\r\n\
Sec-WebSocket-Protocol: chat, skybridge.v1\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

#[test]
fn accept_key_matches_rfc6455_example() {
    // RFC 6455 §1.3 (also checked with Python hashlib + base64).
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn upgrade_request_is_parsed_case_insensitively() {
    let lower = UPGRADE.replace("Upgrade: websocket", "upgrade: WebSocket");
    let mut input = lower.into_bytes();
    input.extend_from_slice(b"\x81\x80");
    let (req, n) = parse_upgrade(&input).unwrap().unwrap();
    assert_eq!(&input[n..], b"\x81\x80");
    assert_eq!(req.path(), "/ws");
    assert_eq!(req.head.query(), Some("x=1"));
    assert_eq!(req.host, "relay.example:8080");
    assert_eq!(req.origin, Some("http://relay.example:8080"));
    assert_eq!(req.key, "dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(
        req.protocols().collect::<Vec<_>>(),
        ["chat", "skybridge.v1"]
    );
    assert!(req.offers_protocol("skybridge.v1"));
    assert!(!req.offers_protocol("skybridge"));
    assert!(req.offers_extensions());
}

#[test]
fn incomplete_upgrade_needs_more_bytes() {
    for cut in [0, 1, 20, UPGRADE.len() - 1] {
        assert_eq!(
            parse_upgrade(&UPGRADE.as_bytes()[..cut]),
            Ok(None),
            "cut {cut}"
        );
    }
}

#[test]
fn head_over_8k_is_too_large() {
    let mut big = b"GET /ws HTTP/1.1\r\nX-Pad: ".to_vec();
    big.resize(1024 * 1024, b'a');
    assert_eq!(parse_upgrade(&big), Err(WsError::HeadTooLarge));
    assert_eq!(WsError::HeadTooLarge.http_status(), 431);
    // Exactly at the limit without a terminator is already too large.
    assert_eq!(
        parse_upgrade(&big[..MAX_HEAD_LEN]),
        Err(WsError::HeadTooLarge)
    );
    assert_eq!(parse_upgrade(&big[..MAX_HEAD_LEN - 1]), Ok(None));
}

#[test]
fn more_than_64_headers_are_refused() {
    let mut s = String::from("GET /ws HTTP/1.1\r\n");
    for i in 0..65 {
        s.push_str(&format!("X-{i}: v\r\n"));
    }
    s.push_str("\r\n");
    assert_eq!(
        parse_http_request_head(s.as_bytes()),
        Err(WsError::TooManyHeaders)
    );
}

#[test]
fn malformed_heads_are_refused() {
    let cases: &[(&str, WsError)] = &[
        ("GET /ws\r\n\r\n", WsError::BadRequestLine),
        ("GET  /ws HTTP/1.1\r\n\r\n", WsError::BadRequestLine),
        ("GET /ws HTTP/2.0\r\n\r\n", WsError::BadRequestLine),
        ("GET /ws HTTP/1.1\r\nNoColon\r\n\r\n", WsError::BadHeader),
        (
            "GET /ws HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            WsError::BadHeader,
        ),
        (
            "GET /ws HTTP/1.1\r\nBad Name: b\r\n\r\n",
            WsError::BadHeader,
        ),
        ("GET /ws HTTP/1.1\r\nA: b\x00c\r\n\r\n", WsError::BadHeader),
    ];
    for (input, err) in cases {
        assert_eq!(
            parse_http_request_head(input.as_bytes()),
            Err(*err),
            "{input:?}"
        );
    }
    assert_eq!(
        parse_http_request_head(b"GET /\xff HTTP/1.1\r\n\r\n"),
        Err(WsError::BadHeader)
    );
}

#[test]
fn plain_get_head_is_parsed() {
    let (h, n) = parse_http_request_head(b"GET /app.js HTTP/1.0\r\nAccept: */*\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(n, 37);
    assert_eq!((h.method, h.path(), h.version_minor), ("GET", "/app.js", 0));
    assert_eq!(h.header("ACCEPT"), Some("*/*"));
    assert_eq!(UpgradeRequest::from_head(h), Err(WsError::HttpVersion));
}

#[test]
fn upgrade_requirements_are_enforced() {
    let cases: &[(&str, &str, WsError)] = &[
        ("GET /ws", "POST /ws", WsError::MethodNotAllowed),
        ("Host: relay.example:8080\r\n", "", WsError::MissingHost),
        ("Upgrade: websocket", "Upgrade: h2c", WsError::NotUpgrade),
        ("keep-alive, Upgrade", "keep-alive", WsError::NotUpgrade),
        ("Version: 13", "Version: 8", WsError::UnsupportedVersion),
        (
            "dGhlIHNhbXBsZSBub25jZQ==",
            "dGhlIHNhbXBsZQ==",
            WsError::BadKey,
        ),
        (
            "dGhlIHNhbXBsZSBub25jZQ==",
            "dGhlIHNhbXBsZSBub25jZ!=",
            WsError::BadKey,
        ),
        (
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "",
            WsError::BadKey,
        ),
    ];
    for (from, to, err) in cases {
        let req = UPGRADE.replacen(from, to, 1);
        assert_eq!(
            parse_upgrade(req.as_bytes()).map(|_| ()),
            Err(*err),
            "{to:?}"
        );
    }
    assert_eq!(WsError::NotUpgrade.http_status(), 426);
    assert_eq!(WsError::BadKey.http_status(), 400);
}

#[test]
fn upgrade_response_echoes_protocol_and_declines_extensions() {
    let r = String::from_utf8(upgrade_response(
        &accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        Some("skybridge.v1"),
    ))
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(r.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(r.contains("\r\nSec-WebSocket-Protocol: skybridge.v1\r\n"));
    assert!(!r.to_ascii_lowercase().contains("extensions"));
    assert!(r.ends_with("\r\n\r\n"));
    let r = String::from_utf8(upgrade_response("x", Some("bad\r\nInjected: 1"))).unwrap();
    assert!(!r.contains("Injected"));
    assert!(!r.contains("Sec-WebSocket-Protocol"));
}

#[test]
fn http_error_response_is_well_formed() {
    let r = String::from_utf8(http_error_response(
        431,
        "Request Header Fields Too Large\r\nX: y",
    ))
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 431 Request Header Fields Too LargeX: y\r\n"));
    assert!(r.contains("Connection: close\r\n"));
    let body = r.split_once("\r\n\r\n").unwrap().1;
    assert!(r.contains(&format!("Content-Length: {}\r\n", body.len())));
    assert!(
        String::from_utf8(http_error_response(426, "Upgrade Required"))
            .unwrap()
            .contains("Sec-WebSocket-Version: 13\r\n")
    );
}

#[test]
fn masked_frames_are_unmasked_in_place_zero_copy() {
    let bytes = client_frame(0x81, b"hello");
    let mut buf = BytesMut::from(&bytes[..]);
    let base = buf.as_ptr() as usize;
    let f = reader().read(&mut buf).unwrap().unwrap();
    assert_eq!(
        (f.fin, f.opcode, &f.payload[..]),
        (true, Opcode::Text, &b"hello"[..])
    );
    // The payload points into the original allocation, just past the 6-byte header.
    assert_eq!(f.payload.as_ptr() as usize, base + 6);
    assert!(buf.is_empty());
}

#[test]
fn frames_split_at_every_byte_decode_the_same() {
    let mut bytes = client_frame(0x82, &[7u8; 300]);
    bytes.extend(client_frame(0x89, b"p"));
    bytes.extend(client_frame(0x01, &[b'a'; 70_00]));
    let mut r = FrameReader::new(FrameLimits {
        max_frame_len: 70_000,
        require_mask: true,
    });
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in &bytes {
        buf.extend_from_slice(&[*b]);
        while let Some(f) = r.read(&mut buf).unwrap() {
            got.push(f);
        }
    }
    assert_eq!(got, read_all_with(&bytes, r.clone()));
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].payload.len(), 300);
    assert_eq!(
        (got[1].opcode, &got[1].payload[..]),
        (Opcode::Ping, &b"p"[..])
    );
    assert!(!got[2].fin);
}

fn read_all_with(bytes: &[u8], mut r: FrameReader) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = r.read(&mut buf).unwrap() {
        out.push(f);
    }
    out
}

#[test]
fn unmasked_client_frame_is_protocol_error() {
    assert_eq!(read_all(b"\x81\x05hello"), Err(WsError::Unmasked));
    assert_eq!(WsError::Unmasked.close_code(), 1002);
}

#[test]
fn reserved_bits_are_protocol_error() {
    for b0 in [0xC1, 0xA1, 0x91] {
        assert_eq!(
            read_all(&client_frame(b0, b"x")),
            Err(WsError::ReservedBits)
        );
    }
    assert_eq!(WsError::ReservedBits.close_code(), 1002);
}

#[test]
fn unknown_opcodes_are_protocol_error() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_eq!(
            read_all(&client_frame(0x80 | op, b"")),
            Err(WsError::UnknownOpcode)
        );
    }
}

#[test]
fn control_frames_must_be_final_and_short() {
    assert_eq!(
        read_all(&client_frame(0x09, b"")),
        Err(WsError::FragmentedControl)
    );
    assert_eq!(
        read_all(&client_frame(0x89, &[0; 126])),
        Err(WsError::ControlTooLong)
    );
    assert_eq!(read_all(&client_frame(0x8A, &[0; 125])).unwrap().len(), 1);
}

#[test]
fn declared_2_pow_40_length_fails_with_1009_before_payload() {
    // Only the header: the payload never arrives, the error comes anyway.
    let mut h = vec![0x82, 0x80 | 127];
    h.extend_from_slice(&(1u64 << 40).to_be_bytes());
    h.extend_from_slice(&[1, 2, 3, 4]);
    let mut buf = BytesMut::from(&h[..]);
    assert_eq!(reader().read(&mut buf), Err(WsError::FrameTooLong));
    assert_eq!(WsError::FrameTooLong.close_code(), 1009);
    // Even before the mask key is there.
    let mut buf = BytesMut::from(&h[..10]);
    assert_eq!(reader().read(&mut buf), Err(WsError::FrameTooLong));
}

#[test]
fn length_with_top_bit_set_is_protocol_error() {
    let mut h = vec![0x82, 0x80 | 127];
    h.extend_from_slice(&(1u64 << 63).to_be_bytes());
    assert_eq!(read_all(&h), Err(WsError::BadLength));
    assert_eq!(WsError::BadLength.close_code(), 1002);
}

#[test]
fn sixteen_bit_length_frame_over_limit_is_too_big() {
    let mut r = FrameReader::new(FrameLimits {
        max_frame_len: 1000,
        require_mask: true,
    });
    let mut buf = BytesMut::from(&[0x82u8, 0x80 | 126, 0x03, 0xE9][..]);
    assert_eq!(r.read(&mut buf), Err(WsError::FrameTooLong));
}

fn frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Frame {
    Frame {
        fin,
        opcode,
        payload: Bytes::copy_from_slice(payload),
    }
}

fn asm() -> MessageAssembler {
    MessageAssembler::new(MessageLimits::default())
}

#[test]
fn single_frame_message_is_zero_copy() {
    let f = frame(true, Opcode::Binary, b"abc");
    let ptr = f.payload.as_ptr();
    match asm().push(f).unwrap() {
        Some(Message::Binary(b)) => assert_eq!(b.as_ptr(), ptr),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fragmented_text_is_reassembled_with_interleaved_ping() {
    let mut a = asm();
    assert_eq!(a.push(frame(false, Opcode::Text, b"he")), Ok(None));
    assert_eq!(
        a.push(frame(true, Opcode::Ping, b"p")),
        Ok(Some(Message::Ping(Bytes::from_static(b"p"))))
    );
    assert_eq!(a.push(frame(false, Opcode::Continuation, b"l")), Ok(None));
    assert_eq!(a.buffered(), 3);
    assert_eq!(
        a.push(frame(true, Opcode::Continuation, b"lo")),
        Ok(Some(Message::Text(Bytes::from_static(b"hello"))))
    );
    assert_eq!(
        a.push(frame(true, Opcode::Text, b"next")),
        Ok(Some(Message::Text(Bytes::from_static(b"next"))))
    );
}

#[test]
fn continuation_without_message_is_protocol_error() {
    assert_eq!(
        asm().push(frame(true, Opcode::Continuation, b"x")),
        Err(WsError::UnexpectedContinuation)
    );
    assert_eq!(WsError::UnexpectedContinuation.close_code(), 1002);
}

#[test]
fn new_data_frame_inside_fragmented_message_is_protocol_error() {
    let mut a = asm();
    a.push(frame(false, Opcode::Binary, b"x")).unwrap();
    assert_eq!(
        a.push(frame(true, Opcode::Text, b"y")),
        Err(WsError::UnfinishedMessage)
    );
    assert_eq!(WsError::UnfinishedMessage.close_code(), 1002);
}

#[test]
fn ten_thousand_1k_continuations_without_fin_fail_with_1009_and_bounded_buffer() {
    let mut a = asm();
    a.push(frame(false, Opcode::Text, &[b'a'; 1024])).unwrap();
    let chunk = [b'a'; 1024];
    let mut err = None;
    for _ in 0..10_000 {
        match a.push(frame(false, Opcode::Continuation, &chunk)) {
            Ok(None) => assert!(a.buffered() <= 16 * 1024),
            Ok(Some(m)) => panic!("{m:?}"),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(err.map(WsError::close_code), Some(1009));
}

#[test]
fn too_many_empty_fragments_fail_with_1009() {
    let mut a = asm();
    a.push(frame(false, Opcode::Binary, b"")).unwrap();
    let mut res = Ok(None);
    for _ in 0..64 {
        res = a.push(frame(false, Opcode::Continuation, b""));
        if res.is_err() {
            break;
        }
    }
    assert_eq!(res, Err(WsError::TooManyFragments));
    assert_eq!(WsError::TooManyFragments.close_code(), 1009);
}

#[test]
fn message_limits_differ_for_text_and_binary() {
    assert!(asm()
        .push(frame(true, Opcode::Text, &[b'a'; 16 * 1024]))
        .is_ok());
    assert_eq!(
        asm().push(frame(true, Opcode::Text, &[b'a'; 16 * 1024 + 1])),
        Err(WsError::MessageTooLong)
    );
    assert!(asm().push(frame(true, Opcode::Binary, &[0; 2048])).is_ok());
    assert_eq!(
        asm().push(frame(true, Opcode::Binary, &[0; 2049])),
        Err(WsError::MessageTooLong)
    );
    let mut a = asm();
    a.push(frame(false, Opcode::Binary, &[0; 2000])).unwrap();
    assert_eq!(
        a.push(frame(true, Opcode::Continuation, &[0; 49])),
        Err(WsError::MessageTooLong)
    );
}

#[test]
fn invalid_utf8_text_is_1007_even_when_split_across_fragments() {
    assert_eq!(
        asm().push(frame(true, Opcode::Text, b"\xff")),
        Err(WsError::InvalidUtf8)
    );
    assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
    // "é" split across two fragments is valid once complete.
    let mut a = asm();
    a.push(frame(false, Opcode::Text, b"\xc3")).unwrap();
    assert_eq!(
        a.push(frame(true, Opcode::Continuation, b"\xa9")),
        Ok(Some(Message::Text(Bytes::from("é"))))
    );
}

#[test]
fn close_payload_is_validated() {
    assert_eq!(parse_close_payload(b""), Ok((None, "")));
    assert_eq!(parse_close_payload(b"\x03\xe8bye"), Ok((Some(1000), "bye")));
    assert_eq!(parse_close_payload(b"\x03"), Err(WsError::BadClose));
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert_eq!(
            parse_close_payload(&code.to_be_bytes()),
            Err(WsError::BadClose),
            "{code}"
        );
    }
    assert_eq!(parse_close_payload(&[0x0f, 0xa0]), Ok((Some(4000), "")));
    assert_eq!(
        parse_close_payload(b"\x03\xe8\xff"),
        Err(WsError::InvalidUtf8)
    );
    assert_eq!(
        asm().push(frame(true, Opcode::Close, b"\x03\xe9x")),
        Ok(Some(Message::Close(Some(1001), Bytes::from_static(b"x"))))
    );
}

#[test]
fn writer_uses_7_16_and_64_bit_lengths_unmasked() {
    for (len, hdr) in [
        (0usize, 2usize),
        (125, 2),
        (126, 4),
        (65_535, 4),
        (65_536, 10),
    ] {
        let payload = vec![9u8; len];
        let mut out = BytesMut::new();
        write_frame(
            &mut out,
            Opcode::Binary,
            &[&payload[..len / 2], &payload[len / 2..]],
        );
        assert_eq!(out.len(), hdr + len);
        assert_eq!(out[0], 0x82);
        assert_eq!(out[1] & 0x80, 0, "server frames are unmasked");
        let f = FrameReader::new(FrameLimits {
            max_frame_len: 1 << 20,
            require_mask: false,
        })
        .read(&mut out)
        .unwrap()
        .unwrap();
        assert_eq!(f.payload.len(), len);
    }
}

#[test]
fn close_reason_is_truncated_on_utf8_boundary() {
    let reason = "é".repeat(100); // 200 bytes
    let mut out = BytesMut::new();
    write_close(&mut out, 1008, &reason);
    assert_eq!(out[1] as usize, out.len() - 2);
    assert!(out.len() - 2 <= 125);
    let (code, r) = parse_close_payload(&out[2..]).unwrap();
    assert_eq!(code, Some(1008));
    assert_eq!(r.len(), 122);
}
