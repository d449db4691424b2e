#![allow(clippy::unwrap_used)] // tests may unwrap

use super::*;

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice \\\"A\\\" Smith\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 12\r\n\
\r\n\
v=0\r\no=- 1 1\r\n";

/// A minimal valid request with the given extra header lines (each ending in CRLF) and body.
fn request_with(extra: &str, body: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
         From: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: c1\r\n\
         CSeq: 1 OPTIONS\r\n{extra}\r\n{body}"
    )
    .into_bytes()
}

#[test]
fn invite_with_sdp_exposes_every_accessor() {
    let m = Message::parse(INVITE).unwrap();
    assert!(m.is_request());
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(m.status(), None);
    assert_eq!(m.request_uri(), Some("sip:bob@biloxi.example.com"));
    assert_eq!(m.body, b"v=0\r\no=- 1 1");
    assert_eq!(
        m.call_id().unwrap(),
        "a84b4c76e66710@pc33.atlanta.example.com"
    );
    assert_eq!(
        m.cseq().unwrap(),
        CSeq {
            seq: 314_159,
            method: Method::Invite
        }
    );
    let from = m.from().unwrap();
    assert_eq!(from.display, Some("Alice \\\"A\\\" Smith"));
    assert_eq!(from.uri, "sip:alice@atlanta.example.com");
    assert_eq!(from.tag(), Some("1928301774"));
    let to = m.to().unwrap();
    assert_eq!(to.display, Some("Bob"));
    assert_eq!(to.tag(), None);
    let via = m.top_via().unwrap();
    assert_eq!(via.transport, "UDP");
    assert_eq!(via.host, "pc33.atlanta.example.com");
    assert_eq!(via.port, Some(5060));
    assert_eq!(via.branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(via.rport(), Some(None));
    assert_eq!(via.received(), None);
    assert_eq!(
        m.contact().unwrap().unwrap().uri,
        "sip:alice@pc33.atlanta.example.com"
    );
    assert_eq!(m.content_type(), Some("application/sdp"));
    assert_eq!(m.max_forwards(), Some(Ok(70)));
    assert_eq!(m.record_routes().count(), 0);
}

#[test]
fn response_200_ok_with_record_routes_in_order() {
    let raw = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds8;received=192.0.2.99;rport=5062, SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bK2\r\n\
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Record-Route: <sip:p3.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\r\n";
    let m = Message::parse(raw).unwrap();
    assert!(!m.is_request());
    assert_eq!(m.status(), Some(200));
    assert_eq!(
        m.start,
        StartLine::Response {
            code: 200,
            reason: "OK"
        }
    );
    let rr: Vec<_> = m.record_routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(
        rr,
        [
            "sip:p1.example.com;lr",
            "sip:p2.example.com;lr",
            "sip:p3.example.com;lr"
        ]
    );
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].received(), Some("192.0.2.99"));
    assert_eq!(vias[0].rport(), Some(Some(5062)));
    assert_eq!(vias[1].host, "[2001:db8::9]");
    assert_eq!(vias[1].port, Some(5070));
    assert_eq!(vias[1].transport, "TCP");
    assert_eq!(m.to().unwrap().tag(), Some("a6c85cf"));
    assert!(m.body.is_empty());
}

#[test]
fn register_401_challenge_is_parsed() {
    let raw = b"SIP/2.0 401 Unauthorized\r\n\
Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKreg1\r\n\
From: <sip:100@pbx.example>;tag=r1\r\n\
To: <sip:100@pbx.example>;tag=as1\r\n\
Call-ID: reg-1\r\n\
CSeq: 1 REGISTER\r\n\
WWW-Authenticate: Digest realm=\"pbx.example\", nonce=\"4f2a,\\\"x\", algorithm=MD5,\r\n qop=\"auth,auth-int\", opaque=\"op\", stale=TRUE\r\n\
Content-Length: 0\r\n\r\n";
    let m = Message::parse(raw).unwrap();
    assert_eq!(m.status(), Some(401));
    assert_eq!(m.cseq().unwrap().method, Method::Register);
    let c = parse_challenge(m.header("www-authenticate").unwrap()).unwrap();
    assert_eq!(c.scheme, "Digest");
    assert_eq!(c.realm, Some("pbx.example"));
    assert_eq!(c.nonce, Some("4f2a,\\\"x"));
    assert_eq!(c.algorithm, Some("MD5"));
    assert_eq!(c.qop, Some("auth,auth-int"));
    assert_eq!(c.opaque, Some("op"));
    assert!(c.stale);
}

#[test]
fn challenge_rejects_duplicate_realm_and_garbage() {
    assert_eq!(
        parse_challenge("Digest realm=\"a\", realm=\"b\", nonce=\"n\""),
        Err(SipError::BadChallenge)
    );
    assert_eq!(
        parse_challenge("Digest realm=\"unterminated"),
        Err(SipError::BadChallenge)
    );
    assert_eq!(parse_challenge("Digest realm"), Err(SipError::BadChallenge));
    assert_eq!(parse_challenge(""), Err(SipError::BadChallenge));
    let c = parse_challenge("Digest realm=r,nonce=n").unwrap();
    assert_eq!((c.realm, c.nonce, c.stale), (Some("r"), Some("n"), false));
}

#[test]
fn compact_forms_equal_long_forms() {
    let raw = b"MESSAGE sip:x@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP h.example.com;branch=z9hG4bKc\r\n\
f: <sip:a@example.com>;tag=9\r\n\
t: sip:x@example.com\r\n\
i: compact-1\r\n\
CSeq: 7 MESSAGE\r\n\
m: <sip:a@1.2.3.4>\r\n\
c: text/plain\r\n\
l: 5\r\n\
s: hi\r\n\
k: timer\r\n\r\nhello";
    let m = Message::parse(raw).unwrap();
    assert_eq!(m.call_id().unwrap(), "compact-1");
    assert_eq!(m.header("CALL-id"), Some("compact-1"));
    assert_eq!(m.header("I"), Some("compact-1"));
    assert_eq!(m.content_type(), Some("text/plain"));
    assert_eq!(m.header("Subject"), Some("hi"));
    assert_eq!(m.header_values("supported").collect::<Vec<_>>(), ["timer"]);
    assert_eq!(m.to().unwrap().uri, "sip:x@example.com");
    assert_eq!(m.from().unwrap().tag(), Some("9"));
    assert_eq!(m.top_via().unwrap().host, "h.example.com");
    assert_eq!(m.body, b"hello");
}

/// RFC 4475 §3.1.1.1 ("wsinv") style: folding everywhere, odd spacing, case and escapes.
#[test]
fn torture_folding_spacing_case_and_escapes_are_accepted() {
    let raw = b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n\
TO :\r\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n\
from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8\r\n\
MaX-fOrWaRdS: 0068\r\n\
Call-ID: wsinv.ndaksdj@192.0.2.1\r\n\
Content-Length   : 3\r\n\
cseq: 0009\r\n  INVITE\r\n\
Via  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw\r\n\
s :\r\n\
NewFangledHeader:   newfangled value\r\n continued newfangled value\r\n\
UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n\
Content-Type: application/sdp\r\n\
Route:\r\n <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n\
v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239\r\n\
m:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33\r\n\
\r\nv=0";
    let m = Message::parse(raw).unwrap();
    assert_eq!(
        m.request_uri(),
        Some("sip:vivekg@chair-dnrc.example.com;unknownparam")
    );
    let to = m.to().unwrap();
    assert_eq!(to.uri, "sip:vivekg@chair-dnrc.example.com");
    assert_eq!(to.tag(), Some("1918181833n"));
    let from = m.from().unwrap();
    assert_eq!(from.display, Some("J Rosenberg \\\\\\\""));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(m.max_forwards(), Some(Ok(68)));
    assert_eq!(
        m.cseq().unwrap(),
        CSeq {
            seq: 9,
            method: Method::Invite
        }
    );
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].host, "192.0.2.2");
    assert_eq!(vias[0].branch(), Some("390skdjuw"));
    assert_eq!(vias[1].transport, "TCP");
    assert_eq!(vias[1].host, "spindle.example.com");
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    let contact = m.contact().unwrap().unwrap();
    assert_eq!(contact.display, Some("Quoted string \\\"\\\""));
    assert_eq!(contact.param("newparam"), Some(Some("newvalue")));
    assert_eq!(contact.param("secondparam"), Some(None));
    assert_eq!(contact.param("Q"), Some(Some("0.33")));
    assert_eq!(m.header("Subject"), Some(""));
    assert_eq!(
        m.header("newfangledheader"),
        Some("newfangled value\r\n continued newfangled value")
    );
    assert_eq!(
        m.header_values("UnknownHeaderWithUnusualValue")
            .collect::<Vec<_>>(),
        [";;", ";;", ";"]
    );
    assert_eq!(
        m.routes().next().unwrap().unwrap().uri,
        "sip:services.example.com;lr;unknownwith=value;unknown-no-value"
    );
    assert_eq!(m.body, b"v=0");
}

#[test]
fn comma_split_respects_quotes_and_angle_brackets() {
    let raw = request_with(
        "Contact: \"Doe, John\" <sip:j@a.example;x=1>;q=0.5, <sip:k@b.example?h=a,b>\r\n\
         Contact: sip:l@c.example\r\n",
        "",
    );
    let m = Message::parse(&raw).unwrap();
    let cs: Vec<_> = m
        .header_values("m")
        .map(|v| NameAddr::parse(v).unwrap())
        .collect();
    assert_eq!(cs.len(), 3);
    assert_eq!(cs[0].display, Some("Doe, John"));
    assert_eq!(cs[0].uri, "sip:j@a.example;x=1");
    assert_eq!(cs[0].param("q"), Some(Some("0.5")));
    assert_eq!(cs[1].uri, "sip:k@b.example?h=a,b");
    assert_eq!(cs[2].uri, "sip:l@c.example");
}

#[test]
fn leading_crlf_keepalives_are_skipped() {
    let mut raw = b"\r\n\r\n".to_vec();
    raw.extend_from_slice(INVITE);
    assert_eq!(Message::parse(&raw).unwrap().method(), Some(Method::Invite));
}

#[test]
fn datagram_body_is_exactly_content_length() {
    let raw = request_with("Content-Length: 4\r\n", "abcdEXTRA");
    assert_eq!(Message::parse(&raw).unwrap().body, b"abcd");
}

#[test]
fn datagram_without_content_length_takes_rest() {
    let raw = request_with("", "rest of it");
    assert_eq!(Message::parse(&raw).unwrap().body, b"rest of it");
}

#[test]
fn datagram_content_length_larger_than_body_is_rejected() {
    let raw = request_with("Content-Length: 50\r\n", "short");
    assert_eq!(Message::parse(&raw), Err(SipError::BodyTruncated));
}

#[test]
fn malformed_or_huge_content_length_is_rejected() {
    for cl in [
        "-1",
        "4294967296",
        "2147483648",
        "65537",
        "+5",
        "5 5",
        "0x10",
        "",
        "1e3",
        "99999999999999999999999",
    ] {
        let raw = request_with(&format!("Content-Length: {cl}\r\n"), "");
        assert_eq!(
            Message::parse(&raw),
            Err(SipError::BadContentLength),
            "CL {cl:?}"
        );
        assert_eq!(
            stream_frame_len(&raw),
            Err(SipError::BadContentLength),
            "CL {cl:?}"
        );
    }
    let raw = request_with("Content-Length: 0000000000000000003\r\n", "abc");
    assert_eq!(Message::parse(&raw).unwrap().body, b"abc");
}

#[test]
fn duplicate_content_length_is_rejected() {
    let raw = request_with("Content-Length: 1\r\nl: 1\r\n", "a");
    assert_eq!(
        Message::parse(&raw),
        Err(SipError::DuplicateHeader("Content-Length"))
    );
}

#[test]
fn stream_frames_two_messages_in_one_segment() {
    let a = request_with("Content-Length: 3\r\n", "abc");
    let b = MessageBuilder::response(200, "OK").finish(None, b"");
    let mut seg = b"\r\n".to_vec();
    seg.extend_from_slice(&a);
    seg.extend_from_slice(&b);
    let n = stream_frame_len(&seg).unwrap().unwrap();
    assert_eq!(n, a.len() + 2);
    assert_eq!(Message::parse(&seg[..n]).unwrap().body, b"abc");
    let rest = &seg[n..];
    let n2 = stream_frame_len(rest).unwrap().unwrap();
    assert_eq!(n2, b.len());
    assert_eq!(Message::parse(&rest[..n2]).unwrap().status(), Some(200));
}

#[test]
fn stream_waits_for_headers_and_body() {
    let a = request_with("Content-Length: 3\r\n", "abc");
    for cut in 0..a.len() {
        assert_eq!(stream_frame_len(&a[..cut]), Ok(None), "cut at {cut}");
    }
    assert_eq!(stream_frame_len(&a), Ok(Some(a.len())));
    assert_eq!(stream_frame_len(b"\r\n\r\n"), Ok(None));
}

#[test]
fn stream_requires_content_length() {
    let raw = request_with("", "");
    assert_eq!(stream_frame_len(&raw), Err(SipError::MissingContentLength));
}

#[test]
fn stream_rejects_unterminated_head_at_limit_and_oversized_total() {
    let mut junk = b"INVITE sip:x SIP/2.0\r\nX: ".to_vec();
    junk.resize(MAX_MESSAGE_SIZE, b'a');
    assert_eq!(stream_frame_len(&junk), Err(SipError::TooLarge));
    junk.truncate(MAX_MESSAGE_SIZE - 1);
    assert_eq!(stream_frame_len(&junk), Ok(None));
    let raw = request_with("Content-Length: 65536\r\n", "");
    assert_eq!(stream_frame_len(&raw), Err(SipError::TooLarge));
}

#[test]
fn cseq_at_or_above_2_pow_31_is_rejected() {
    for seq in ["2147483648", "4294967296", "99999999999", "-1"] {
        let raw = String::from_utf8(request_with("", ""))
            .unwrap()
            .replace("CSeq: 1 OPTIONS", &format!("CSeq: {seq} OPTIONS"));
        assert_eq!(
            Message::parse(raw.as_bytes()),
            Err(SipError::BadCSeq),
            "seq {seq}"
        );
    }
    assert_eq!(CSeq::parse("2147483647 BYE").unwrap().seq, 2_147_483_647);
    assert_eq!(CSeq::parse("1 BYE extra"), Err(SipError::BadCSeq));
    assert_eq!(CSeq::parse("1"), Err(SipError::BadCSeq));
}

#[test]
fn cseq_method_mismatch_is_rejected() {
    let raw = String::from_utf8(request_with("", ""))
        .unwrap()
        .replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    assert_eq!(
        Message::parse(raw.as_bytes()),
        Err(SipError::CSeqMethodMismatch)
    );
}

#[test]
fn duplicate_to_from_call_id_cseq_are_rejected() {
    for (extra, name) in [
        ("To: <sip:y@example.com>\r\n", "To"),
        ("t: <sip:y@example.com>\r\n", "To"),
        ("f: <sip:y@example.com>;tag=2\r\n", "From"),
        ("i: other\r\n", "Call-ID"),
        ("CSeq: 1 OPTIONS\r\n", "CSeq"),
    ] {
        let raw = request_with(extra, "");
        assert_eq!(
            Message::parse(&raw),
            Err(SipError::DuplicateHeader(name)),
            "{extra}"
        );
    }
}

#[test]
fn two_addresses_in_one_to_header_are_rejected() {
    let raw = String::from_utf8(request_with("", "")).unwrap().replace(
        "To: <sip:x@example.com>",
        "To: <sip:x@example.com>, <sip:y@example.com>",
    );
    assert_eq!(Message::parse(raw.as_bytes()), Err(SipError::BadNameAddr));
    // In a response the accessor reports it.
    let resp = b"SIP/2.0 200 OK\r\nTo: <sip:x@example.com>, <sip:y@example.com>\r\n\r\n";
    assert_eq!(
        Message::parse(resp).unwrap().to(),
        Err(SipError::BadNameAddr)
    );
}

#[test]
fn missing_mandatory_request_headers_are_rejected() {
    let full = String::from_utf8(request_with("", "")).unwrap();
    for (line, name) in [
        ("Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n", "Via"),
        ("From: <sip:a@example.com>;tag=1\r\n", "From"),
        ("To: <sip:x@example.com>\r\n", "To"),
        ("Call-ID: c1\r\n", "Call-ID"),
        ("CSeq: 1 OPTIONS\r\n", "CSeq"),
    ] {
        let raw = full.replace(line, "");
        assert_eq!(
            Message::parse(raw.as_bytes()),
            Err(SipError::MissingHeader(name))
        );
    }
}

#[test]
fn responses_need_no_mandatory_headers_but_accessors_report_them_missing() {
    let m = Message::parse(b"SIP/2.0 100 Trying\r\n\r\n").unwrap();
    assert_eq!(m.call_id(), Err(SipError::MissingHeader("Call-ID")));
    assert_eq!(m.top_via(), Err(SipError::MissingHeader("Via")));
    assert_eq!(m.from(), Err(SipError::MissingHeader("From")));
    assert_eq!(m.cseq(), Err(SipError::MissingHeader("CSeq")));
    assert!(m.contact().is_none());
    assert!(m.max_forwards().is_none());
}

#[test]
fn nul_and_control_bytes_in_headers_are_rejected() {
    let raw = request_with("Subject: a\0b\r\n", "");
    assert_eq!(Message::parse(&raw), Err(SipError::NulByte));
    let raw = request_with("Subject: a\x07b\r\n", "");
    assert_eq!(Message::parse(&raw), Err(SipError::ControlChar));
    let raw = request_with("Subject: a\nX: smuggled\r\n", "");
    assert_eq!(Message::parse(&raw), Err(SipError::ControlChar));
    let raw = request_with("Subject: a\rb\r\n", "");
    assert_eq!(Message::parse(&raw), Err(SipError::ControlChar));
    let raw = request_with("Subject: caf\u{e9}\r\n", "");
    assert!(Message::parse(&raw).is_ok(), "UTF-8 text is fine");
    let mut raw = request_with("Subject: Q\r\n", "");
    let pos = raw.iter().position(|&b| b == b'Q').unwrap();
    raw[pos] = 0xff;
    assert_eq!(Message::parse(&raw), Err(SipError::NotUtf8));
}

#[test]
fn nul_bytes_in_body_are_fine() {
    let raw = request_with("Content-Length: 3\r\n", "a\0b");
    assert_eq!(Message::parse(&raw).unwrap().body, b"a\0b");
}

#[test]
fn size_limits_are_enforced() {
    let mut big = request_with("", "");
    big.resize(MAX_MESSAGE_SIZE + 1, b'a');
    assert_eq!(Message::parse(&big), Err(SipError::TooLarge));

    let many: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        Message::parse(&request_with(&many, "")),
        Err(SipError::TooManyHeaders)
    );
    let ok: String = (0..MAX_HEADERS - 6)
        .map(|i| format!("X-{i}: v\r\n"))
        .collect();
    assert!(Message::parse(&request_with(&ok, "")).is_ok());

    let long = format!("X-Long: {}\r\n", "a".repeat(MAX_HEADER_LINE));
    assert_eq!(
        Message::parse(&request_with(&long, "")),
        Err(SipError::HeaderTooLong)
    );
    let exact = format!("X-Long: {}\r\n", "a".repeat(MAX_HEADER_LINE - 8));
    assert!(Message::parse(&request_with(&exact, "")).is_ok());
    let folded = format!("X-Long: {}\r\n {}\r\n", "a".repeat(5000), "b".repeat(5000));
    assert_eq!(
        Message::parse(&request_with(&folded, "")),
        Err(SipError::HeaderTooLong)
    );
}

#[test]
fn malformed_start_lines_are_rejected() {
    for line in [
        "INVITE  sip:x@example.com SIP/2.0",
        "INVITE sip:x@example.com  SIP/2.0",
        "INVITE sip:x@example.com",
        "INV<ITE sip:x SIP/2.0",
        "SIP/2.0 20 OK",
        "SIP/2.0 2000 OK",
        "SIP/2.0 099 Weird",
        "SIP/2.0 700 Weird",
        "SIP/2.0200 OK",
    ] {
        let raw = format!("{line}\r\n\r\n");
        assert_eq!(
            Message::parse(raw.as_bytes()),
            Err(SipError::BadStartLine),
            "{line:?}"
        );
    }
    assert_eq!(
        Message::parse(b"OPTIONS sip:x SIP/7.0\r\n\r\n"),
        Err(SipError::BadVersion)
    );
    assert_eq!(
        Message::parse(b"SIP/2.1 200 OK\r\n\r\n"),
        Err(SipError::BadVersion)
    );
    assert_eq!(
        Message::parse(b"SIP/2.0 200 OK\r\n"),
        Err(SipError::UnterminatedHeaders)
    );
}

#[test]
fn status_line_with_empty_or_spaced_reason_is_accepted() {
    let m = Message::parse(b"sip/2.0 180\r\n\r\n").unwrap();
    assert_eq!(
        m.start,
        StartLine::Response {
            code: 180,
            reason: ""
        }
    );
    let m = Message::parse(b"SIP/2.0 486 Busy  Here \r\n\r\n").unwrap();
    assert_eq!(
        m.start,
        StartLine::Response {
            code: 486,
            reason: "Busy  Here "
        }
    );
}

#[test]
fn methods_are_case_sensitive_and_extensible() {
    assert_eq!(Method::parse("INVITE"), Method::Invite);
    assert_eq!(Method::parse("invite"), Method::Other("invite"));
    assert_eq!(Method::parse("NEWMETHOD").as_str(), "NEWMETHOD");
    for m in [
        Method::Ack,
        Method::Bye,
        Method::Cancel,
        Method::Register,
        Method::Info,
        Method::Update,
        Method::Prack,
        Method::Subscribe,
        Method::Notify,
        Method::Refer,
        Method::Message,
        Method::Options,
    ] {
        assert_eq!(Method::parse(m.as_str()), m);
    }
}

#[test]
fn fold_right_after_start_line_is_rejected() {
    let raw = b"OPTIONS sip:x SIP/2.0\r\n continuation\r\n\r\n";
    assert_eq!(Message::parse(raw), Err(SipError::BadHeader));
    assert_eq!(
        Message::parse(b"SIP/2.0 200 OK\r\n: novalue\r\n\r\n"),
        Err(SipError::BadHeader)
    );
    assert_eq!(
        Message::parse(b"SIP/2.0 200 OK\r\nNo colon\r\n\r\n"),
        Err(SipError::BadHeader)
    );
}

#[test]
fn max_forwards_must_be_small_decimal() {
    for (v, want) in [
        ("0", Ok(0)),
        ("255", Ok(255)),
        ("256", Err(SipError::BadMaxForwards)),
        ("-1", Err(SipError::BadMaxForwards)),
        ("1000", Err(SipError::BadMaxForwards)),
    ] {
        let raw = request_with(&format!("Max-Forwards: {v}\r\n"), "");
        assert_eq!(
            Message::parse(&raw).unwrap().max_forwards(),
            Some(want),
            "{v}"
        );
    }
}

#[test]
fn name_addr_forms() {
    let n = NameAddr::parse("sip:a@b.example;tag=x;lr").unwrap();
    assert_eq!(
        (n.display, n.uri, n.tag(), n.param("lr")),
        (None, "sip:a@b.example", Some("x"), Some(None))
    );
    let n = NameAddr::parse("<sip:a@b;transport=tcp>;tag=y").unwrap();
    assert_eq!((n.uri, n.params), ("sip:a@b;transport=tcp", "tag=y"));
    let n = NameAddr::parse("Anonymous Caller <sip:c@d>").unwrap();
    assert_eq!(n.display, Some("Anonymous Caller"));
    assert_eq!(NameAddr::parse("*").unwrap().uri, "*");
    for bad in [
        "",
        "<sip:a@b",
        "\"unterminated <sip:a@b>",
        "<sip:a@b> junk",
        "<sip:a b>",
        "<sip:a@b>;tag=",
        "sip:a@b;tag=",
        "nocolon",
        "<sip:a@b>;=x",
        "\"d\" sip:a@b",
    ] {
        assert_eq!(NameAddr::parse(bad), Err(SipError::BadNameAddr), "{bad:?}");
    }
}

#[test]
fn sip_uri_parts() {
    let u =
        SipUri::parse("sips:alice:secret@[2001:db8::1]:5061;transport=tls;lr?subject=hi").unwrap();
    assert_eq!(u.scheme, "sips");
    assert_eq!(u.user, Some("alice"));
    assert_eq!(u.password, Some("secret"));
    assert_eq!(u.host, "[2001:db8::1]");
    assert_eq!(u.port, Some(5061));
    assert_eq!(u.params, "transport=tls;lr");
    assert_eq!(u.param("TRANSPORT"), Some(Some("tls")));
    assert_eq!(u.param("lr"), Some(None));
    assert_eq!(u.headers, "subject=hi");
    let u = SipUri::parse("SIP:pbx.example.com").unwrap();
    assert_eq!(
        (u.user, u.host, u.port, u.params),
        (None, "pbx.example.com", None, "")
    );
    let u = SipUri::parse("sip:+15551234;phone-context=x@gw.example?h=v").unwrap();
    assert_eq!(u.user, Some("+15551234;phone-context=x"));
    assert_eq!(u.host, "gw.example");
    assert_eq!(u.headers, "h=v");
    for bad in [
        "",
        "sip:",
        "http://x",
        "sip:host:99999",
        "sip:host:abc",
        "sip:@host",
        "sip:a b",
        "sip:[::1",
        "sip:host junk",
        "tel:+123",
        "sip:host;p=\"x",
    ] {
        assert_eq!(SipUri::parse(bad), Err(SipError::BadUri), "{bad:?}");
    }
}

#[test]
fn via_rejects_bad_protocol_port_and_tail() {
    for bad in [
        "SIP/3.0/UDP h",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP h:70000",
        "SIP/2.0/UDP h junk",
        "SIP/2.0 UDP h",
        "SIP/2.0/UDP h;branch=",
    ] {
        assert_eq!(Via::parse(bad), Err(SipError::BadVia), "{bad:?}");
    }
    let v =
        Via::parse("sip/2.0/ws df7jal23ls0d.invalid;branch=z9hG4bK;received=\"10.0.0.1\"").unwrap();
    assert_eq!((v.transport, v.received()), ("ws", Some("10.0.0.1")));
}

#[test]
fn builder_round_trip_parses_back() {
    let mut b = MessageBuilder::request("INVITE", "sip:bob@example.com");
    b.header("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKrt;rport")
        .header("Max-Forwards", "70")
        .header("From", "\"Al\" <sip:al@example.com>;tag=t1")
        .header("To", "<sip:bob@example.com>")
        .header("Call-ID", "rt-1@10.0.0.1")
        .header("CSeq", "2 INVITE");
    let wire = b.finish(Some("application/sdp"), b"v=0\r\n");
    assert!(wire.ends_with(b"Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"));
    let m = Message::parse(&wire).unwrap();
    assert_eq!(m.request_uri(), Some("sip:bob@example.com"));
    assert_eq!(
        m.cseq().unwrap(),
        CSeq {
            seq: 2,
            method: Method::Invite
        }
    );
    assert_eq!(m.from().unwrap().display, Some("Al"));
    assert_eq!(m.content_type(), Some("application/sdp"));
    assert_eq!(m.body, b"v=0\r\n");
    assert_eq!(stream_frame_len(&wire), Ok(Some(wire.len())));

    let resp = MessageBuilder::response(404, reason_phrase(404)).finish(None, b"");
    assert_eq!(resp, b"SIP/2.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn builder_neutralises_header_injection() {
    let mut b = MessageBuilder::response(200, "OK\r\nX-Evil: 1");
    b.header("Subject", "a\r\nCall-ID: injected\0");
    let wire = b.finish(None, b"");
    let m = Message::parse(&wire).unwrap();
    assert_eq!(m.header("Call-ID"), None);
    assert_eq!(m.header("X-Evil"), None);
    assert_eq!(m.headers.len(), 2);
}

#[test]
fn reason_phrases() {
    assert_eq!(reason_phrase(200), "OK");
    assert_eq!(reason_phrase(487), "Request Terminated");
    assert_eq!(reason_phrase(299), "Unknown");
}

/// The fuzz target's property, run over the committed seeds and simple mutations of them:
/// never panic; anything that parses re-serializes through `MessageBuilder` and parses again
/// with the same start line, body, Call-ID and CSeq.
fn roundtrip_property(data: &[u8]) {
    if let Ok(Some(n)) = stream_frame_len(data) {
        assert!(n <= data.len());
        let _ = Message::parse(&data[..n]);
    }
    let Ok(m) = Message::parse(data) else { return };
    let _ = (m.from(), m.to(), m.top_via(), m.contact(), m.max_forwards());
    let _ = m.vias().count() + m.record_routes().count();
    let mut b = match m.start {
        StartLine::Request { method, uri } => MessageBuilder::request(method.as_str(), uri),
        StartLine::Response { code, reason } => MessageBuilder::response(code, reason),
    };
    for h in m
        .headers
        .iter()
        .filter(|h| !header_name_eq(h.name, "Content-Length"))
    {
        b.header(h.name, h.value);
    }
    let wire = b.finish(None, m.body);
    let again = Message::parse(&wire).unwrap_or_else(|e| panic!("re-parse failed: {e:?}"));
    assert_eq!(again.start, m.start);
    assert_eq!(again.body, m.body);
    assert_eq!(again.call_id(), m.call_id());
    assert_eq!(again.cseq(), m.cseq());
    assert_eq!(stream_frame_len(&wire), Ok(Some(wire.len())));
}

const SEEDS: [&[u8]; 7] = [
    include_bytes!("../../../fuzz/corpus/sip_message/seed-invite-sdp"),
    include_bytes!("../../../fuzz/corpus/sip_message/seed-200-ok"),
    include_bytes!("../../../fuzz/corpus/sip_message/seed-register-401"),
    include_bytes!("../../../fuzz/corpus/sip_message/seed-compact"),
    include_bytes!("../../../fuzz/corpus/sip_message/seed-torture-wsinv"),
    include_bytes!("../../../fuzz/corpus/sip_message/seed-torture-bad-cl"),
    include_bytes!("../../../fuzz/corpus/sip_message/seed-torture-dup-to"),
];

#[test]
fn seeds_parse_as_expected() {
    let ok: Vec<bool> = SEEDS.iter().map(|s| Message::parse(s).is_ok()).collect();
    assert_eq!(ok, [true, true, true, true, true, false, false]);
    for s in SEEDS {
        roundtrip_property(s);
    }
}

#[test]
fn truncated_and_mutated_seeds_never_panic_and_round_trip() {
    const MUTATIONS: [u8; 10] = [0, b'\r', b'\n', b' ', b',', b';', b'"', b'<', b'>', 0xff];
    for seed in SEEDS {
        for cut in 0..seed.len() {
            roundtrip_property(&seed[..cut]);
        }
        let mut buf = seed.to_vec();
        for i in 0..buf.len() {
            let orig = buf[i];
            for m in MUTATIONS {
                buf[i] = m;
                roundtrip_property(&buf);
            }
            buf[i] = orig;
        }
    }
}

#[test]
fn request_uri_in_angle_brackets_is_rejected() {
    let raw = String::from_utf8(request_with("", "")).unwrap().replace(
        "OPTIONS sip:x@example.com SIP/2.0",
        "OPTIONS <sip:x@example.com> SIP/2.0",
    );
    assert_eq!(Message::parse(raw.as_bytes()), Err(SipError::BadStartLine));
}

/// RFC 4475 §3.1.2.8 (`quotbal`) and friends: a request whose To/From/Via cannot be parsed is
/// rejected as a whole, so the typed accessors cannot fail on a parsed request.
#[test]
fn request_with_unparsable_to_from_or_via_is_rejected() {
    let full = String::from_utf8(request_with("", "")).unwrap();
    for (from, to, want) in [
        (
            "To: <sip:x@example.com>",
            "To: \"Mr. J. User <sip:x@example.com>",
            SipError::BadNameAddr,
        ),
        (
            "From: <sip:a@example.com>;tag=1",
            "From: <sip:a@example.com>;tag=",
            SipError::BadNameAddr,
        ),
        (
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP",
            SipError::BadVia,
        ),
        ("Call-ID: c1", "Call-ID: c 1", SipError::BadCallId),
    ] {
        let raw = full.replace(from, to);
        assert_eq!(Message::parse(raw.as_bytes()), Err(want), "{to}");
    }
}

/// RFC 4475 §3.1.2.11 (`bigcode`) and §3.1.2.12 (`badvers`).
#[test]
fn huge_status_code_and_unknown_version_are_rejected() {
    assert_eq!(
        Message::parse(b"SIP/2.0 4294967301 better not break the receiver\r\n\r\n"),
        Err(SipError::BadStartLine)
    );
    assert_eq!(
        Message::parse(b"OPTIONS sip:t@example.com SIP/7.0\r\n\r\n"),
        Err(SipError::BadVersion)
    );
}

/// RFC 4475 §3.1.1.6-like: an unknown URI scheme in the Request-URI parses (the UA answers 416).
#[test]
fn unknown_request_uri_scheme_parses() {
    let raw = String::from_utf8(request_with("", "")).unwrap().replace(
        "OPTIONS sip:x@example.com",
        "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent",
    );
    let m = Message::parse(raw.as_bytes()).unwrap();
    assert_eq!(
        SipUri::parse(m.request_uri().unwrap()),
        Err(SipError::BadUri)
    );
}

#[test]
fn unescape_quoted_resolves_quoted_pairs() {
    assert_eq!(unescape_quoted("plain"), "plain");
    assert!(matches!(
        unescape_quoted("plain"),
        std::borrow::Cow::Borrowed(_)
    ));
    assert_eq!(unescape_quoted(r#"J Rosenberg \\\""#), r#"J Rosenberg \""#);
    assert_eq!(unescape_quoted(r#"a\"b"#), r#"a"b"#);
}
