//! Hostile SIP peers against the real `skybridge` binary (HOSTILE-INPUTS rows 9, 10, 11, 13):
//! malformed datagrams get a 400 or silence and never a crash, strangers are ignored, and a
//! digest challenge is answered only when it comes from the PBX.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use common::ffmpeg::Publisher;
use common::procs::TestDir;
use common::relay::{Relay, RelayOpts};

const SEC: Duration = Duration::from_secs(1);
/// SHA-256 of "test".
const TEST_TOKEN_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const DROPPED: &str = "skybridge_sip_dropped_total";

fn udp(ip: &str) -> UdpSocket {
    UdpSocket::bind(format!("{ip}:0")).unwrap()
}

/// Every datagram arriving on `s` within `within`, as text.
fn recv_all(s: &UdpSocket, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.recv_from(&mut buf) {
            Ok((n, _)) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return out
            }
            Err(_) => {}
        }
    }
}

/// The first datagram on `s` within `within` that satisfies `want`.
fn recv_match(s: &UdpSocket, within: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 65_536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if want(&text) {
                return Some(text);
            }
        }
    }
}

/// Values of header `name` (case-insensitive, full form) in a message's header section.
fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// An OPTIONS request to the relay from `from`, with `call_id`.
fn options(relay: SocketAddr, from: SocketAddr, call_id: &str) -> String {
    format!(
        "OPTIONS sip:relay@{relay} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{from}>;tag=t-{call_id}\r\n\
         To: <sip:relay@{relay}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn assert_alive(relay: &mut Relay) {
    assert!(relay.is_running(), "skybridge died\n{}", relay.tails());
}

/// A relay whose dial plan names only `pbx` (127.0.0.1).
fn relay_with_pbx(dir: &TestDir, pbx: SocketAddr, extra_sip: Vec<String>) -> Relay {
    let opts = RelayOpts {
        sip: extra_sip,
        auth: vec!["required = true".into(), "anonymous_targets = []".into()],
        dialplan: vec![format!("bob = \"sip:bob@{pbx}\"")],
        tail: format!(
            "[[users]]\nname = \"alice\"\ntoken_sha256 = \"{TEST_TOKEN_HASH}\"\n\
             targets = [\"bob\"]\nsip_username = \"alice\"\nsip_password = \"secret\"\n\
             sip_realm = \"pbx.test\"\n"
        ),
        ..RelayOpts::default()
    };
    opts.start(dir.path())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// A 400 must come back.
    BadRequest,
    /// No answer at all.
    Silence,
    /// A 4xx (400; 405 for REGISTER; 488 for a bad SDP offer) or nothing; never a success.
    BadOrSilence,
    /// Answered 200 (the first of two messages in one datagram: on UDP the bytes after
    /// Content-Length are discarded, RFC 3261 §18.3, so the second gets no answer).
    Answered200,
}

#[test]
fn malformed_sip_datagrams_never_crash() {
    let dir = TestDir::new("hostile-sip-malformed");
    let pbx = udp("127.0.0.1");
    let mut relay = relay_with_pbx(&dir, pbx.local_addr().unwrap(), Vec::new());
    let me = udp("127.0.0.1");
    let from = me.local_addr().unwrap();
    let r = relay.sip;
    // Warm up, then the baseline.
    me.send_to(options(r, from, "warmup").as_bytes(), r)
        .unwrap();
    assert!(recv_match(&me, 2 * SEC, |m| status(m) == Some(200)).is_some());
    let before = relay.rss_kib();

    // A request with every usual header, `extra` lines added and `body` after the blank line.
    let req = |id: &str, method: &str, cseq: &str, extra: &str, body: &str| {
        format!(
            "{method} sip:relay@{r} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {from};branch=z9hG4bK-{id}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:probe@{from}>;tag=t-{id}\r\n\
             To: <sip:relay@{r}>\r\n\
             Call-ID: {id}\r\n\
             CSeq: {cseq}\r\n\
             {extra}\r\n{body}"
        )
        .into_bytes()
    };
    use Expect::*;
    let mut cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("cl-neg", req("cl-neg", "OPTIONS", "1 OPTIONS", "Content-Length: -1\r\n", "x"), BadRequest),
        ("cl-2p32", req("cl-2p32", "OPTIONS", "1 OPTIONS", "Content-Length: 4294967296\r\n", "x"), BadRequest),
        ("cl-2p31", req("cl-2p31", "OPTIONS", "1 OPTIONS", "Content-Length: 2147483648\r\n", "x"), BadRequest),
        ("cl-long", req("cl-long", "OPTIONS", "1 OPTIONS", "Content-Length: 500\r\n", "only ten b"), BadRequest),
        ("cseq-2p31", req("cseq-2p31", "OPTIONS", "2147483648 OPTIONS", "Content-Length: 0\r\n", ""), BadRequest),
        ("cseq-huge", req("cseq-huge", "OPTIONS", "36893488147419103232 OPTIONS", "Content-Length: 0\r\n", ""), BadRequest),
        ("cseq-mismatch", req("cseq-mismatch", "OPTIONS", "1 INVITE", "Content-Length: 0\r\n", ""), BadOrSilence),
        ("dup-to", req("dup-to", "OPTIONS", "1 OPTIONS", &format!("To: <sip:other@{r}>\r\nContent-Length: 0\r\n"), ""), BadRequest),
        ("dup-callid", req("dup-callid", "OPTIONS", "1 OPTIONS", "Call-ID: second@x\r\nContent-Length: 0\r\n", ""), BadRequest),
        ("nul-header", req("nul-header", "OPTIONS", "1 OPTIONS", "Subject: a\0b\r\nContent-Length: 0\r\n", ""), BadOrSilence),
        ("nul-body", req("nul-body", "INVITE", "1 INVITE", "Content-Type: application/sdp\r\nContent-Length: 8\r\n", "v=0\0\0\0\0\0"), BadOrSilence),
        ("invite-sdp-bomb", req("invite-sdp-bomb", "INVITE", "1 INVITE", "Content-Type: application/sdp\r\nContent-Length: 40\r\n", "v=0\r\nm=audio 17000 RTP/AVP 4294967296\r\n\r\n"), BadOrSilence),
        ("bad-via", format!("OPTIONS sip:relay@{r} SIP/2.0\r\nVia: SIP/2.0/UDP ;;;branch=\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: bad-via\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").into_bytes(), BadOrSilence),
        ("no-branch-empty-tag", format!("OPTIONS sip:relay@{r} SIP/2.0\r\nVia: SIP/2.0/UDP {from}\r\nFrom: <sip:a@b>;tag=\r\nTo: <sip:c@d>;tag=\r\nCall-ID: no-branch-empty-tag\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").into_bytes(), BadOrSilence),
        ("no-cseq", format!("OPTIONS sip:relay@{r} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-x\r\nCall-ID: no-cseq\r\nContent-Length: 0\r\n\r\n").into_bytes(), Silence),
        ("no-via", format!("OPTIONS sip:relay@{r} SIP/2.0\r\nCall-ID: no-via\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").into_bytes(), Silence),
        ("ack-garbage", format!("ACK sip:relay@{r} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-y\r\nCall-ID: ack-garbage\r\nCSeq: x ACK\r\n\r\n").into_bytes(), Silence),
        ("response-garbage", b"SIP/2.0 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"pbx.test\", nonce=\"1\"\r\n\r\n".to_vec(), Silence),
        ("two-in-one", [options(r, from, "two-in-one"), options(r, from, "second-of-two")].concat().into_bytes(), Answered200),
        // RFC 4475-style torture: escaped NUL and spaces in the Request-URI, overlarge scalars,
        // unknown protocol version, a 3-digit-less status, multipart with a bogus boundary.
        ("t-escnull", format!("REGISTER sip:example.com SIP/2.0\r\nTo: sip:null-%00-null@example.com\r\nFrom: sip:null-%00-null@example.com;tag=839923423\r\nMax-Forwards: 70\r\nCall-ID: t-escnull\r\nCSeq: 392 REGISTER\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKkdjuw\r\nContent-Length: 0\r\n\r\n").into_bytes(), BadOrSilence),
        ("t-spaces", format!("INVITE sip:user@example.com; lr SIP/2.0\r\nTo: sip:user@example.com;tag=3xfe-9921883-z9f\r\nFrom: sip:caller@example.net;tag=231413434\r\nMax-Forwards: 5\r\nCall-ID: t-spaces\r\nCSeq: 2130706432 INVITE\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKkdjuw2395\r\nContent-Length: 0\r\n\r\n").into_bytes(), BadOrSilence),
        ("t-scalar02", format!("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKsxcl\r\nMax-Forwards: 300\r\nFrom: <sip:eve@example.com>;tag=f232jadfj23\r\nTo: <sip:eve@example.com>\r\nCall-ID: t-scalar02\r\nCSeq: 8 REGISTER\r\nExpires: 1000000000000000000000\r\nContact: <sip:eve@127.0.0.1>;expires=280297596632815\r\nContent-Length: 0\r\n\r\n").into_bytes(), BadOrSilence),
        ("t-version", format!("OPTIONS sip:t.watson@example.org SIP/7.0\r\nVia: SIP/7.0/UDP {from};branch=z9hG4bKkdjuw\r\nMax-Forwards: 70\r\nFrom: A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\r\nTo: T. Watson <sip:t.watson@example.org>\r\nCall-ID: t-version\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").into_bytes(), BadOrSilence),
        ("t-multipart", req("t-multipart", "INVITE", "1 INVITE", "Content-Type: multipart/mixed;boundary=\r\nContent-Length: 30\r\n", "--\r\n--\r\n\r\n--\r\n--\r\n\r\n--\r\n--")[..].to_vec(), BadOrSilence),
        ("t-many-headers", req("t-many-headers", "OPTIONS", "1 OPTIONS", &"X-A: b\r\n".repeat(5000), ""), BadOrSilence),
        ("crlf-only", b"\r\n\r\n".to_vec(), Silence),
        ("empty", Vec::new(), Silence),
    ];
    // Binary garbage (no SIP start line at all).
    let mut seed: u32 = 0x2545_F491;
    let garbage: Vec<u8> = (0..1400)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed >> 8) as u8
        })
        .collect();
    cases.push(("garbage", garbage, Silence));
    // The largest UDP datagram loopback carries (a 70 KB one cannot be sent): an OPTIONS whose
    // header section fills it.
    let mut big = req("big", "OPTIONS", "1 OPTIONS", "Content-Length: 0\r\n", "");
    let pad = format!("X-Pad: {}\r\n", "p".repeat(65_507 - big.len() - 10));
    big.splice(big.len() - 2..big.len() - 2, pad.into_bytes());
    big.truncate(65_507);
    cases.push(("big", big, BadOrSilence));
    let oversized = vec![b'A'; 70_000];
    assert!(
        me.send_to(&oversized, r).is_err(),
        "a 70 KB UDP datagram was sent; update this test to expect its handling"
    );

    for (_, bytes, _) in &cases {
        me.send_to(bytes, r).unwrap();
        thread::sleep(Duration::from_millis(10));
    }
    let mut answers: HashMap<String, Vec<u16>> = HashMap::new();
    for m in recv_all(&me, 2 * SEC) {
        let call_id = headers(&m, "Call-ID")
            .first()
            .copied()
            .unwrap_or("")
            .to_string();
        answers
            .entry(call_id)
            .or_default()
            .push(status(&m).unwrap_or(0));
    }
    let known: Vec<&str> = cases.iter().map(|(id, _, _)| *id).collect();
    for (id, codes) in &answers {
        assert!(
            known.contains(&id.as_str()),
            "answer to an unknown Call-ID {id:?}: {codes:?}"
        );
    }
    let mut bad = 0;
    for (id, _, expect) in &cases {
        let got = answers.get(*id).cloned().unwrap_or_default();
        match expect {
            BadRequest => {
                assert_eq!(got, vec![400], "{id}: expected one 400, got {got:?}");
                bad += 1;
            }
            Silence => assert!(got.is_empty(), "{id}: expected silence, got {got:?}"),
            // An INVITE is answered 100 Trying first, and its final response is
            // retransmitted until ACKed; 488 refuses an unusable SDP offer (row 8).
            BadOrSilence => assert!(
                got.iter().all(|c| *c == 100 || (400..500).contains(c)),
                "{id}: expected a 4xx or silence, got {got:?}"
            ),
            Answered200 => assert_eq!(got, vec![200], "{id}"),
        }
    }

    // Still serving: a valid OPTIONS gets its 200.
    assert_alive(&mut relay);
    me.send_to(options(r, from, "after").as_bytes(), r).unwrap();
    let ok = recv_match(&me, 2 * SEC, |m| headers(m, "Call-ID") == ["after"]);
    assert_eq!(ok.as_deref().and_then(status), Some(200), "{ok:?}");
    assert!(
        recv_all(&pbx, Duration::ZERO).is_empty(),
        "something was sent to the PBX"
    );

    let after = relay.rss_kib();
    assert!(
        after <= before + 2048,
        "RSS grew from {before} KiB to {after} KiB"
    );
    let m = relay.metrics();
    let dropped = common::skybridge::metric_sum(&m, DROPPED, &[]);
    let sent400 = common::skybridge::metric_sum(
        &m,
        "skybridge_sip_responses_total",
        &[("code", "400"), ("direction", "out")],
    );
    assert!(sent400 >= f64::from(bad), "{m}");
    assert!(dropped >= f64::from(bad) + 3.0, "{m}");
    assert!(
        relay.wait_log(&["sip datagram dropped", &from.to_string()], 2 * SEC),
        "no log line names {from}\n{}",
        relay.logs()
    );
}

#[test]
fn sip_from_unknown_hosts_is_ignored() {
    let dir = TestDir::new("hostile-sip-stranger");
    let pbx = udp("127.0.0.1");
    let mut relay = relay_with_pbx(&dir, pbx.local_addr().unwrap(), Vec::new());
    let r = relay.sip;
    let stranger = udp("127.0.0.2");
    let from = stranger.local_addr().unwrap();
    let before = relay.metric(DROPPED, &[("reason", "peer not allowed")]);

    let invite = format!(
        "INVITE sip:relay@{r} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-inv\r\n\
         Max-Forwards: 70\r\nFrom: <sip:x@{from}>;tag=1\r\nTo: <sip:relay@{r}>\r\n\
         Call-ID: stranger-invite\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let datagrams: Vec<Vec<u8>> = vec![
        options(r, from, "stranger-options").into_bytes(),
        invite.into_bytes(),
        b"OPTIONS sip:x SIP/2.0\r\nCSeq: 2147483648 OPTIONS\r\n\r\n".to_vec(),
        b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
        vec![0xFF; 512],
    ];
    for _ in 0..10 {
        for d in &datagrams {
            stranger.send_to(d, r).unwrap();
        }
    }
    let answers = recv_all(&stranger, SEC);
    assert!(answers.is_empty(), "a stranger got answers: {answers:?}");
    assert_alive(&mut relay);
    let grown = relay.metric(DROPPED, &[("reason", "peer not allowed")]) - before;
    assert!(
        grown >= 50.0,
        "dropped grew by {grown}\n{}",
        relay.metrics()
    );
    assert!(
        relay.wait_log(&["peer not allowed", &from.to_string()], 2 * SEC),
        "no log line names {from}\n{}",
        relay.logs()
    );
    assert!(
        recv_all(&pbx, Duration::ZERO).is_empty(),
        "something was sent to the PBX"
    );

    // Control: the same OPTIONS from the PBX's host is answered.
    let friend = udp("127.0.0.1");
    let ffrom = friend.local_addr().unwrap();
    friend
        .send_to(options(r, ffrom, "friend").as_bytes(), r)
        .unwrap();
    let ok = recv_match(&friend, 2 * SEC, |m| headers(m, "Call-ID") == ["friend"]);
    assert_eq!(ok.as_deref().and_then(status), Some(200), "{ok:?}");
}

/// A response to `req` (an INVITE the PBX received) with `code` and extra header lines.
fn response_to(req: &str, code: &str, to_tag: &str, extra: &str) -> String {
    let mut out = format!("SIP/2.0 {code}\r\n");
    for v in headers(req, "Via") {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    out.push_str(&format!("From: {}\r\n", headers(req, "From")[0]));
    out.push_str(&format!("To: {};tag={to_tag}\r\n", headers(req, "To")[0]));
    out.push_str(&format!("Call-ID: {}\r\n", headers(req, "Call-ID")[0]));
    out.push_str(&format!("CSeq: {}\r\n", headers(req, "CSeq")[0]));
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

fn is_invite(m: &str) -> bool {
    m.starts_with("INVITE ")
}

fn has_credentials(m: &str) -> bool {
    !headers(m, "Authorization").is_empty() || !headers(m, "Proxy-Authorization").is_empty()
}

#[test]
fn a_challenge_from_a_stranger_is_not_answered() {
    let dir = TestDir::new("hostile-sip-challenge");
    let pbx = udp("127.0.0.1");
    let mut relay = relay_with_pbx(&dir, pbx.local_addr().unwrap(), Vec::new());
    let dropped_before = relay.metric(DROPPED, &[("reason", "peer not allowed")]);
    let url = format!("rtmp://{}/live/bob?token=test", relay.rtmp);
    let _publisher = Publisher::new(&url, 1000, 20.0).spawn("publisher", dir.path());
    let invite = recv_match(&pbx, 10 * SEC, is_invite).expect("the call reaches the PBX");
    assert!(!has_credentials(&invite), "{invite}");
    let relay_sip = relay.sip;
    pbx.send_to(
        response_to(&invite, "100 Trying", "pbx", "").as_bytes(),
        relay_sip,
    )
    .unwrap();
    thread::sleep(Duration::from_millis(100));

    let challenge = "WWW-Authenticate: Digest realm=\"pbx.test\", nonce=\"stranger-nonce\", \
                     algorithm=MD5, qop=\"auth\"\r\n";
    // A stranger on another host challenges our INVITE in our realm, naming our branch.
    let stranger = udp("127.0.0.2");
    stranger
        .send_to(
            response_to(&invite, "401 Unauthorized", "evil", challenge).as_bytes(),
            relay_sip,
        )
        .unwrap();
    let seen = recv_all(&pbx, 1500 * Duration::from_millis(1));
    assert!(
        !seen.iter().any(|m| has_credentials(m)),
        "credentials sent after a stranger's challenge: {seen:?}"
    );
    assert!(
        recv_all(&stranger, Duration::ZERO).is_empty(),
        "the stranger got an answer"
    );
    let dropped = relay.metric(DROPPED, &[("reason", "peer not allowed")]) - dropped_before;
    assert!(dropped >= 1.0, "{}", relay.metrics());
    let sfrom = stranger.local_addr().unwrap().to_string();
    assert!(
        relay.wait_log(&["peer not allowed", &sfrom], 2 * SEC),
        "no log line names {sfrom}\n{}",
        relay.logs()
    );

    // Control: the PBX's own challenge is answered, so the capture above could see one.
    let pbx_challenge = "WWW-Authenticate: Digest realm=\"pbx.test\", nonce=\"pbx-nonce-1\", \
                         algorithm=MD5, qop=\"auth\"\r\n";
    pbx.send_to(
        response_to(&invite, "401 Unauthorized", "pbx", pbx_challenge).as_bytes(),
        relay_sip,
    )
    .unwrap();
    let authed = recv_match(&pbx, 3 * SEC, |m| is_invite(m) && has_credentials(m))
        .expect("the PBX's own challenge is answered");
    assert!(authed.contains("nonce=\"pbx-nonce-1\""), "{authed}");
    pbx.send_to(
        response_to(&authed, "100 Trying", "pbx", "").as_bytes(),
        relay_sip,
    )
    .unwrap();
    thread::sleep(Duration::from_millis(100));

    // Same IP as the PBX (so allowed through the peer filter), other port: still not the PBX,
    // so its challenge must not be answered.
    let neighbour = udp("127.0.0.1");
    let challenge2 = "WWW-Authenticate: Digest realm=\"pbx.test\", nonce=\"neighbour-nonce\", \
                      algorithm=MD5, qop=\"auth\", stale=true\r\n";
    neighbour
        .send_to(
            response_to(&authed, "401 Unauthorized", "evil2", challenge2).as_bytes(),
            relay_sip,
        )
        .unwrap();
    let seen = recv_all(&pbx, 1500 * Duration::from_millis(1));
    assert!(
        !seen.iter().any(|m| is_invite(m)),
        "INVITE re-sent after a neighbour's challenge: {seen:?}"
    );
    assert!(
        !seen.iter().any(|m| m.contains("neighbour-nonce")),
        "the neighbour's nonce was used: {seen:?}"
    );

    assert_alive(&mut relay);
}
