//! Virtual-clock scenario tests: two user agents wired back to back, and hand-written messages.

use super::*;
use crate::sip::digest;

const A: &str = "10.0.0.1:5060";
const B: &str = "10.0.0.2:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ua(me: &str, seed: u64) -> UserAgent {
    UserAgent::new(UaConfig::new(addr(me), addr(me)), seed)
}

fn outgoing(to: &str) -> OutgoingCall {
    OutgoingCall {
        request_uri: "sip:bob@10.0.0.2".into(),
        from_uri: "sip:alice@10.0.0.1".into(),
        from_display: Some("Alice".into()),
        to_uri: "sip:bob@10.0.0.2".into(),
        next_hop: addr(to),
        sdp: b"v=0\r\nofferer\r\n".to_vec(),
        credentials: None,
    }
}

fn text(t: &Transmit) -> String {
    String::from_utf8_lossy(&t.payload).into_owned()
}

fn first_line(t: &Transmit) -> String {
    text(t).lines().next().unwrap_or_default().to_owned()
}

fn header(t: &Transmit, name: &str) -> String {
    let m = Message::parse(&t.payload).unwrap();
    m.header(name).unwrap_or_default().to_owned()
}

fn branch(t: &Transmit) -> String {
    let m = Message::parse(&t.payload).unwrap();
    m.top_via().unwrap().branch().unwrap().to_owned()
}

fn drain(ua: &mut UserAgent) -> Vec<Transmit> {
    std::iter::from_fn(|| ua.poll_transmit()).collect()
}

fn events(ua: &mut UserAgent) -> Vec<UaEvent> {
    std::iter::from_fn(|| ua.poll_event())
        .filter(|e| {
            !matches!(
                e,
                UaEvent::ResponseReceived { .. } | UaEvent::ResponseSent { .. }
            )
        })
        .collect()
}

/// Two UAs on a lossless in-memory network with a virtual clock. `log` records every
/// datagram as (sender, first line).
struct Pair {
    a: UserAgent,
    b: UserAgent,
    now: Instant,
    log: Vec<(char, String)>,
    /// Drop datagrams sent by b while true.
    b_mute: bool,
}

impl Pair {
    fn new() -> Self {
        Self {
            a: ua(A, 1),
            b: ua(B, 2),
            now: Instant::now(),
            log: Vec::new(),
            b_mute: false,
        }
    }

    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                moved = true;
                self.log.push(('a', first_line(&t)));
                assert_eq!(t.destination, addr(B));
                self.b.handle_datagram(self.now, addr(A), &t.payload);
            }
            while let Some(t) = self.b.poll_transmit() {
                moved = true;
                self.log.push(('b', first_line(&t)));
                if !self.b_mute {
                    assert_eq!(t.destination, addr(A));
                    self.a.handle_datagram(self.now, addr(B), &t.payload);
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn sent(&self, who: char, start: &str) -> usize {
        self.log
            .iter()
            .filter(|(w, l)| *w == who && l.starts_with(start))
            .count()
    }

    fn assert_idle(&mut self) {
        self.advance(Duration::from_secs(60));
        for ua in [&self.a, &self.b] {
            assert_eq!(ua.active_calls(), 0);
            assert_eq!(ua.transaction_count(), 0);
            assert_eq!(ua.poll_timeout(), None);
        }
    }

    /// Runs every timer for a minute: no transaction or timer is left, calls stay.
    fn assert_idle_calls_kept(&mut self) {
        self.advance(Duration::from_secs(60));
        for ua in [&self.a, &self.b] {
            assert_eq!(ua.active_calls(), 1);
            assert_eq!(ua.transaction_count(), 0);
            assert_eq!(ua.poll_timeout(), None);
        }
    }

    /// a calls b, b rings and answers; returns the handles.
    fn established(&mut self) -> (CallHandle, CallHandle) {
        let ca = self.a.invite(self.now, outgoing(B));
        self.pump();
        let cb = match events(&mut self.b).as_slice() {
            [UaEvent::IncomingCall { call, sdp, .. }] => {
                assert_eq!(sdp, b"v=0\r\nofferer\r\n");
                *call
            }
            other => panic!("{other:?}"),
        };
        self.b.respond(self.now, cb, 180, None);
        self.pump();
        assert_eq!(
            events(&mut self.a),
            [UaEvent::Progress {
                call: ca,
                code: 180,
                sdp: None
            }]
        );
        self.b.respond(self.now, cb, 200, Some(b"answer".to_vec()));
        self.pump();
        assert_eq!(
            events(&mut self.a),
            [UaEvent::Answered {
                call: ca,
                sdp: b"answer".to_vec()
            }]
        );
        assert_eq!(events(&mut self.b), [UaEvent::Confirmed { call: cb }]);
        (ca, cb)
    }
}

#[test]
fn invite_retransmits_on_timer_a_and_fails_408_at_timer_b() {
    let mut a = ua(A, 1);
    let t0 = Instant::now();
    let call = a.invite(t0, outgoing(B));
    let mut sends = vec![0u128];
    assert_eq!(drain(&mut a).len(), 1);
    while let Some(t) = a.poll_timeout() {
        a.handle_timeout(t);
        for _ in drain(&mut a) {
            sends.push((t - t0).as_millis());
        }
    }
    assert_eq!(sends, [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(
        events(&mut a),
        [UaEvent::Failed {
            call,
            code: 408,
            reason: "Request Timeout".into()
        }]
    );
    assert_eq!(a.active_calls(), 0);
    assert_eq!(a.transaction_count(), 0);
}

#[test]
fn ringing_then_answer_then_bye_ends_both_sides_and_frees_state() {
    let mut p = Pair::new();
    let (ca, cb) = p.established();
    assert_eq!(p.sent('b', "SIP/2.0 100"), 1);
    assert_eq!(p.sent('a', "ACK "), 1);
    assert_eq!(p.a.active_calls(), 1);
    p.a.hangup(p.now, ca);
    p.pump();
    assert_eq!(
        events(&mut p.b),
        [UaEvent::Ended {
            call: cb,
            by_remote: true
        }]
    );
    assert_eq!(
        events(&mut p.a),
        [UaEvent::Ended {
            call: ca,
            by_remote: false
        }]
    );
    p.assert_idle();
}

#[test]
fn bye_from_remote_ends_call() {
    let mut p = Pair::new();
    let (ca, cb) = p.established();
    p.b.hangup(p.now, cb);
    p.pump();
    assert_eq!(
        events(&mut p.a),
        [UaEvent::Ended {
            call: ca,
            by_remote: true
        }]
    );
    assert_eq!(
        events(&mut p.b),
        [UaEvent::Ended {
            call: cb,
            by_remote: false
        }]
    );
    p.assert_idle();
}

#[test]
fn busy_486_is_acked_on_the_invite_branch_and_fails() {
    let mut p = Pair::new();
    let ca = p.a.invite(p.now, outgoing(B));
    let invite = drain(&mut p.a).remove(0);
    p.b.handle_datagram(p.now, addr(A), &invite.payload);
    let [UaEvent::IncomingCall { call: cb, .. }] = events(&mut p.b)[..] else {
        panic!()
    };
    p.b.respond(p.now, cb, 486, None);
    for t in drain(&mut p.b) {
        p.a.handle_datagram(p.now, addr(B), &t.payload);
    }
    let ack = drain(&mut p.a).remove(0);
    assert!(first_line(&ack).starts_with("ACK sip:bob@10.0.0.2 "));
    assert_eq!(branch(&ack), branch(&invite));
    assert!(header(&ack, "To").contains("tag="));
    assert_eq!(
        header(&ack, "CSeq"),
        header(&invite, "CSeq").replace("INVITE", "ACK")
    );
    assert!(matches!(
        events(&mut p.a)[..],
        [UaEvent::Failed { code: 486, .. }]
    ));
    assert_eq!(
        events(&mut p.b),
        [UaEvent::Ended {
            call: cb,
            by_remote: false
        }]
    );
    let _ = ca;
    p.b.handle_datagram(p.now, addr(A), &ack.payload);
    p.assert_idle();
    // The UAS stopped retransmitting its 486 once the ACK arrived.
    assert_eq!(p.sent('b', "SIP/2.0 486"), 0);
}

#[test]
fn cancel_while_ringing_gets_487_and_ends_both_sides() {
    let mut p = Pair::new();
    let ca = p.a.invite(p.now, outgoing(B));
    p.pump();
    let [UaEvent::IncomingCall { call: cb, .. }] = events(&mut p.b)[..] else {
        panic!()
    };
    p.b.respond(p.now, cb, 180, None);
    p.pump();
    events(&mut p.a);
    p.a.hangup(p.now, ca);
    p.pump();
    assert_eq!(p.sent('a', "CANCEL "), 1);
    assert_eq!(p.sent('b', "SIP/2.0 487"), 1);
    assert_eq!(p.sent('a', "ACK "), 1);
    assert_eq!(
        events(&mut p.b),
        [UaEvent::Ended {
            call: cb,
            by_remote: true
        }]
    );
    assert_eq!(
        events(&mut p.a),
        [UaEvent::Ended {
            call: ca,
            by_remote: false
        }]
    );
    p.assert_idle();
}

#[test]
fn hangup_before_any_provisional_sends_cancel_after_the_100() {
    let mut a = ua(A, 1);
    let mut b = ua(B, 2);
    let now = Instant::now();
    let ca = a.invite(now, outgoing(B));
    a.hangup(now, ca);
    let invite = drain(&mut a);
    assert_eq!(invite.len(), 1, "no CANCEL before a provisional (§9.1)");
    b.handle_datagram(now, addr(A), &invite[0].payload);
    let [UaEvent::IncomingCall { call: cb, .. }] = events(&mut b)[..] else {
        panic!()
    };
    let trying = drain(&mut b).remove(0);
    a.handle_datagram(now, addr(B), &trying.payload);
    let cancel = drain(&mut a).remove(0);
    assert!(first_line(&cancel).starts_with("CANCEL sip:bob@10.0.0.2 "));
    assert_eq!(branch(&cancel), branch(&invite[0]));
    b.handle_datagram(now, addr(A), &cancel.payload);
    let lines: Vec<String> = drain(&mut b)
        .iter()
        .map(|t| {
            a.handle_datagram(now, addr(B), &t.payload);
            first_line(t)
        })
        .collect();
    assert_eq!(lines, ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"]);
    assert_eq!(
        events(&mut b),
        [UaEvent::Ended {
            call: cb,
            by_remote: true
        }]
    );
    assert_eq!(
        events(&mut a),
        [UaEvent::Ended {
            call: ca,
            by_remote: false
        }]
    );
    assert_eq!(a.active_calls(), 0);
}

#[test]
fn cancel_racing_a_200_gets_ack_then_bye() {
    let mut p = Pair::new();
    let ca = p.a.invite(p.now, outgoing(B));
    p.pump();
    let [UaEvent::IncomingCall { call: cb, .. }] = events(&mut p.b)[..] else {
        panic!()
    };
    p.b.respond(p.now, cb, 180, None);
    p.pump();
    events(&mut p.a);
    // b answers and a hangs up "at the same time": both messages cross.
    p.b.respond(p.now, cb, 200, Some(b"answer".to_vec()));
    p.a.hangup(p.now, ca);
    let from_b = drain(&mut p.b);
    p.pump(); // CANCEL reaches b: 200 to CANCEL, no 487 (INVITE already answered).
    for t in from_b {
        p.a.handle_datagram(p.now, addr(B), &t.payload);
    }
    p.pump();
    assert_eq!(p.sent('b', "SIP/2.0 487"), 0);
    assert_eq!(p.sent('a', "ACK "), 1);
    assert_eq!(p.sent('a', "BYE "), 1);
    assert_eq!(
        events(&mut p.a),
        [UaEvent::Ended {
            call: ca,
            by_remote: false
        }]
    );
    assert_eq!(
        events(&mut p.b),
        [
            UaEvent::Confirmed { call: cb },
            UaEvent::Ended {
                call: cb,
                by_remote: true
            }
        ]
    );
    p.assert_idle();
}

#[test]
fn uas_hangup_while_ringing_sends_480() {
    let mut p = Pair::new();
    let ca = p.a.invite(p.now, outgoing(B));
    p.pump();
    let [UaEvent::IncomingCall { call: cb, .. }] = events(&mut p.b)[..] else {
        panic!()
    };
    p.b.respond(p.now, cb, 180, None);
    p.pump();
    events(&mut p.a);
    p.b.hangup(p.now, cb);
    p.pump();
    assert!(matches!(
        events(&mut p.a)[..],
        [UaEvent::Failed { call, code: 480, .. }] if call == ca
    ));
    assert_eq!(
        events(&mut p.b),
        [UaEvent::Ended {
            call: cb,
            by_remote: false
        }]
    );
    p.assert_idle();
}

#[test]
fn bye_on_early_dialog_from_caller_ends_ringing_uas_with_487() {
    let mut b = ua(B, 2);
    let now = Instant::now();
    b.handle_datagram(now, addr(A), invite_text("z9hG4bKe1", "").as_bytes());
    let [UaEvent::IncomingCall { call: cb, .. }] = events(&mut b)[..] else {
        panic!()
    };
    b.respond(now, cb, 180, None);
    let ringing = drain(&mut b).pop().unwrap();
    let to = header(&ringing, "To");
    let bye = format!(
        "BYE sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKe2\r\n\
         From: <sip:alice@a>;tag=ft\r\nTo: {to}\r\nCall-ID: cid1\r\nCSeq: 2 BYE\r\n\r\n"
    );
    b.handle_datagram(now, addr(A), bye.as_bytes());
    let lines: Vec<String> = drain(&mut b).iter().map(first_line).collect();
    assert_eq!(lines, ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"]);
    assert_eq!(
        events(&mut b),
        [UaEvent::Ended {
            call: cb,
            by_remote: true
        }]
    );
}

#[test]
fn bye_to_silent_peer_retransmits_on_timer_e_and_ends_at_f() {
    let mut p = Pair::new();
    let (ca, _) = p.established();
    p.b_mute = true;
    let t0 = p.now;
    p.a.hangup(p.now, ca);
    p.pump();
    p.advance(Duration::from_millis(31_900));
    // 0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5 s.
    assert_eq!(p.sent('a', "BYE "), 11);
    assert!(events(&mut p.a).is_empty());
    p.advance(Duration::from_millis(200));
    assert_eq!(
        events(&mut p.a),
        [UaEvent::Ended {
            call: ca,
            by_remote: false
        }]
    );
    assert!(p.now - t0 >= Duration::from_secs(32));
    assert_eq!(p.a.active_calls(), 0);
}

fn invite_text(branch: &str, via_extra: &str) -> String {
    format!(
        "INVITE sip:bob@10.0.0.2 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}{via_extra}\r\n\
         Via: SIP/2.0/UDP 192.0.2.99;branch=z9hG4bKdown\r\n\
         Record-Route: <sip:10.0.0.1;lr>\r\n\
         From: \"Alice\" <sip:alice@a>;tag=ft\r\nTo: <sip:bob@b>\r\nCall-ID: cid1\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:alice@10.0.0.1>\r\nMax-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nhello"
    )
}

#[test]
fn responses_carry_received_and_rport_and_go_to_the_source() {
    let mut b = ua(B, 2);
    let now = Instant::now();
    let src = addr("10.0.0.1:40000");
    b.handle_datagram(now, src, invite_text("z9hG4bKr1", ";rport").as_bytes());
    let trying = drain(&mut b).remove(0);
    assert_eq!(trying.destination, src);
    assert_eq!(first_line(&trying), "SIP/2.0 100 Trying");
    let t = text(&trying);
    assert!(
        t.contains(
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKr1;received=10.0.0.1;rport=40000\r\n"
        ),
        "{t}"
    );
    // The second Via is echoed unchanged, To gets no tag on 100.
    assert!(t.contains("Via: SIP/2.0/UDP 192.0.2.99;branch=z9hG4bKdown\r\n"));
    assert_eq!(header(&trying, "To"), "<sip:bob@b>");
    let [UaEvent::IncomingCall {
        call,
        ref sdp,
        source,
        ..
    }] = events(&mut b)[..]
    else {
        panic!()
    };
    assert_eq!((sdp.as_slice(), source), (&b"hello"[..], src));
    b.respond(now, call, 180, None);
    let ringing = drain(&mut b).remove(0);
    assert_eq!(ringing.destination, src);
    assert!(header(&ringing, "To").starts_with("<sip:bob@b>;tag="));
    assert_eq!(header(&ringing, "Record-Route"), "<sip:10.0.0.1;lr>");
    assert_eq!(header(&ringing, "Contact"), "<sip:10.0.0.2:5060>");
    // Our own requests ask for rport.
    let mut a = ua(A, 1);
    a.invite(now, outgoing(B));
    assert!(header(&drain(&mut a)[0], "Via").ends_with(";rport"));
}

#[test]
fn retransmitted_invite_gets_last_provisional_again() {
    let mut b = ua(B, 2);
    let now = Instant::now();
    let inv = invite_text("z9hG4bKrt", "");
    b.handle_datagram(now, addr(A), inv.as_bytes());
    let [UaEvent::IncomingCall { call, .. }] = events(&mut b)[..] else {
        panic!()
    };
    b.respond(now, call, 183, Some(b"early".to_vec()));
    drain(&mut b);
    b.handle_datagram(now, addr(A), inv.as_bytes());
    let again = drain(&mut b);
    assert_eq!(again.len(), 1);
    assert!(first_line(&again[0]).starts_with("SIP/2.0 183"));
    assert!(events(&mut b).is_empty());
}

#[test]
fn uas_retransmits_2xx_until_ack() {
    let mut b = ua(B, 2);
    let t0 = Instant::now();
    b.handle_datagram(t0, addr(A), invite_text("z9hG4bKok", "").as_bytes());
    let [UaEvent::IncomingCall { call, .. }] = events(&mut b)[..] else {
        panic!()
    };
    b.respond(t0, call, 200, Some(b"answer".to_vec()));
    let ok = drain(&mut b).pop().unwrap();
    assert!(first_line(&ok).starts_with("SIP/2.0 200"));
    let mut at = Vec::new();
    while let Some(t) = b.poll_timeout() {
        if t - t0 > Duration::from_secs(8) {
            break;
        }
        b.handle_timeout(t);
        for r in drain(&mut b) {
            assert_eq!(r.payload, ok.payload);
            at.push((t - t0).as_millis());
        }
    }
    assert_eq!(at, [500, 1500, 3500, 7500]);
    let to = header(&ok, "To");
    let ack = format!(
        "ACK sip:bob@10.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKack\r\n\
         From: \"Alice\" <sip:alice@a>;tag=ft\r\nTo: {to}\r\nCall-ID: cid1\r\nCSeq: 1 ACK\r\n\r\n"
    );
    let now = t0 + Duration::from_secs(8);
    b.handle_datagram(now, addr(A), ack.as_bytes());
    assert_eq!(events(&mut b), [UaEvent::Confirmed { call }]);
    b.handle_timeout(now + Duration::from_secs(40));
    assert!(drain(&mut b).is_empty());
    assert_eq!(b.active_calls(), 1);
    assert_eq!(b.transaction_count(), 0);
}

#[test]
fn uas_without_ack_gives_up_after_64_t1_and_sends_bye() {
    let mut b = ua(B, 2);
    let t0 = Instant::now();
    b.handle_datagram(t0, addr(A), invite_text("z9hG4bKna", "").as_bytes());
    let [UaEvent::IncomingCall { call, .. }] = events(&mut b)[..] else {
        panic!()
    };
    b.respond(t0, call, 200, Some(b"answer".to_vec()));
    drain(&mut b);
    let mut bye_at = None;
    while let Some(t) = b.poll_timeout() {
        if t - t0 > Duration::from_secs(33) {
            break;
        }
        b.handle_timeout(t);
        for r in drain(&mut b) {
            if first_line(&r).starts_with("BYE ") {
                bye_at.get_or_insert(t - t0);
                assert_eq!(r.destination, addr(A));
                assert!(first_line(&r).starts_with("BYE sip:alice@10.0.0.1 "));
                assert_eq!(header(&r, "Route"), "<sip:10.0.0.1;lr>");
            }
        }
    }
    assert_eq!(bye_at, Some(Duration::from_secs(32)));
    assert!(matches!(
        events(&mut b)[..],
        [UaEvent::Failed { code: 408, .. }]
    ));
}

#[test]
fn retransmitted_2xx_is_acked_again() {
    let mut a = ua(A, 1);
    let now = Instant::now();
    a.invite(now, outgoing(B));
    let invite = drain(&mut a).remove(0);
    let ok = ok_for(&invite, 200, "");
    a.handle_datagram(now, addr(B), ok.as_bytes());
    let ack1 = drain(&mut a);
    a.handle_datagram(now, addr(B), ok.as_bytes());
    let ack2 = drain(&mut a);
    assert_eq!(ack1.len(), 1);
    assert_eq!(ack1, ack2);
    assert!(first_line(&ack1[0]).starts_with("ACK sip:bob@10.0.0.2:5060 "));
    assert_ne!(branch(&ack1[0]), branch(&invite));
    assert_eq!(events(&mut a).len(), 1);
}

/// A response to `req` from the PBX at B, with `extra` headers.
fn ok_for(req: &Transmit, code: u16, extra: &str) -> String {
    let m = Message::parse(&req.payload).unwrap();
    format!(
        "SIP/2.0 {code} {}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=pbx\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         Contact: <sip:bob@10.0.0.2:5060>\r\n{extra}Content-Length: 0\r\n\r\n",
        reason_phrase(code),
        m.header("Via").unwrap(),
        m.header("From").unwrap(),
        m.header("To").unwrap(),
        m.call_id().unwrap(),
        m.header("CSeq").unwrap(),
    )
}

fn creds(realm: Option<&str>) -> Credentials {
    Credentials {
        username: "alice".into(),
        password: "secret".into(),
        realm: realm.map(str::to_owned),
    }
}

/// Sends an INVITE with credentials, answers it with `code` + `challenge` from `from`;
/// returns the UA, the INVITE and everything the UA sent after the challenge.
fn challenged(
    code: u16,
    challenge: &str,
    realm: Option<&str>,
    from: &str,
) -> (UserAgent, Transmit, Vec<Transmit>) {
    let mut a = ua(A, 1);
    let now = Instant::now();
    let mut call = outgoing(B);
    call.credentials = Some(creds(realm));
    a.invite(now, call);
    let invite = drain(&mut a).remove(0);
    let resp = ok_for(&invite, code, challenge);
    a.handle_datagram(now, addr(from), resp.as_bytes());
    let out = drain(&mut a);
    (a, invite, out)
}

fn param<'h>(h: &'h str, name: &str) -> &'h str {
    let start = h.find(&format!("{name}=")).unwrap() + name.len() + 1;
    let rest = &h[start..];
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let end = rest.find(['"', ',']).unwrap_or(rest.len());
    &rest[..end]
}

fn check_digest(h: &str, alg: Algorithm, realm: &str, nonce: &str) {
    let cnonce = param(h, "cnonce");
    let ch = ChallengeParams {
        realm,
        nonce,
        opaque: None,
        algorithm: alg,
        qop_auth: true,
    };
    let expected = digest::response(
        &ch,
        "alice",
        "secret",
        "INVITE",
        "sip:bob@10.0.0.2",
        ClientNonce { cnonce, nc: 1 },
    );
    assert_eq!(param(h, "response"), expected, "{h}");
    assert_eq!(param(h, "nc"), "00000001");
}

#[test]
fn www_authenticate_md5_qop_auth_is_answered_once_with_cseq_plus_one() {
    let (mut a, invite, out) = challenged(
        401,
        "WWW-Authenticate: Digest realm=\"pbx\", nonce=\"n1\", qop=\"auth\", algorithm=MD5\r\n",
        Some("pbx"),
        B,
    );
    let lines: Vec<String> = out.iter().map(first_line).collect();
    assert_eq!(lines[0], "ACK sip:bob@10.0.0.2 SIP/2.0");
    assert_eq!(lines[1], "INVITE sip:bob@10.0.0.2 SIP/2.0");
    let re = &out[1];
    assert_ne!(branch(re), branch(&invite));
    let seq = |t: &Transmit| Message::parse(&t.payload).unwrap().cseq().unwrap().seq;
    assert_eq!(seq(re), seq(&invite) + 1);
    assert_eq!(header(re, "Call-ID"), header(&invite, "Call-ID"));
    assert_eq!(header(re, "From"), header(&invite, "From"));
    let auth = header(re, "Authorization");
    check_digest(&auth, Algorithm::Md5, "pbx", "n1");
    assert!(events(&mut a).is_empty());
    // The same nonce again (not stale) means the password is wrong: fail, no third INVITE.
    let again = ok_for(
        re,
        401,
        "WWW-Authenticate: Digest realm=\"pbx\", nonce=\"n1\", qop=\"auth\"\r\n",
    );
    a.handle_datagram(Instant::now(), addr(B), again.as_bytes());
    let out: Vec<String> = drain(&mut a).iter().map(first_line).collect();
    assert_eq!(out, ["ACK sip:bob@10.0.0.2 SIP/2.0"]);
    assert!(matches!(
        events(&mut a)[..],
        [UaEvent::Failed { code: 401, .. }]
    ));
}

#[test]
fn sha256_is_preferred_and_proxy_authenticate_gets_proxy_authorization() {
    let (mut a, _, out) = challenged(
        407,
        "Proxy-Authenticate: Digest realm=\"pbx\", nonce=\"n2\", qop=\"auth\", algorithm=MD5\r\n\
         Proxy-Authenticate: Digest realm=\"pbx\", nonce=\"n3\", qop=\"auth\", algorithm=SHA-256\r\n",
        None,
        B,
    );
    assert_eq!(out.len(), 2);
    let auth = header(&out[1], "Proxy-Authorization");
    assert!(auth.contains("algorithm=SHA-256"));
    check_digest(&auth, Algorithm::Sha256, "pbx", "n3");
    assert_eq!(header(&out[1], "Authorization"), "");
    // The authenticated INVITE is answered: the call is up.
    let ok = ok_for(&out[1], 200, "");
    a.handle_datagram(Instant::now(), addr(B), ok.as_bytes());
    assert!(matches!(events(&mut a)[..], [UaEvent::Answered { .. }]));
}

#[test]
fn challenge_from_another_address_is_not_answered() {
    let (mut a, _, out) = challenged(
        401,
        "WWW-Authenticate: Digest realm=\"pbx\", nonce=\"n1\", qop=\"auth\"\r\n",
        Some("pbx"),
        "10.0.0.66:5060",
    );
    assert!(out.iter().all(|t| !text(t).contains("Authorization")));
    assert!(out.iter().all(|t| !first_line(t).starts_with("INVITE")));
    // Dropped, not answered and not final: a stranger cannot end our call either.
    assert!(matches!(
        &events(&mut a)[..],
        [UaEvent::Dropped { reason, .. }] if reason.contains("unexpected address")
    ));
    assert_eq!(a.active_calls(), 1, "the call is still being set up");
}

#[test]
fn challenge_for_another_realm_is_not_answered() {
    let (mut a, _, out) = challenged(
        407,
        "Proxy-Authenticate: Digest realm=\"evil\", nonce=\"n1\"\r\n",
        Some("pbx"),
        B,
    );
    assert!(out.iter().all(|t| !text(t).contains("Authorization")));
    assert_eq!(out.len(), 1, "only the ACK");
    assert!(matches!(
        &events(&mut a)[..],
        [UaEvent::Failed { code: 407, reason, .. }] if reason.contains("realm")
    ));
}

#[test]
fn no_qop_challenge_is_answered_in_rfc2069_form() {
    let (_, _, out) = challenged(
        401,
        "WWW-Authenticate: Digest realm=\"pbx\", nonce=\"n9\", opaque=\"op\"\r\n",
        None,
        B,
    );
    let auth = header(&out[1], "Authorization");
    assert!(!auth.contains("qop"));
    assert!(auth.contains("opaque=\"op\""));
    let ch = ChallengeParams {
        realm: "pbx",
        nonce: "n9",
        opaque: Some("op"),
        algorithm: Algorithm::Md5,
        qop_auth: false,
    };
    let expected = digest::response(
        &ch,
        "alice",
        "secret",
        "INVITE",
        "sip:bob@10.0.0.2",
        ClientNonce { cnonce: "", nc: 1 },
    );
    assert_eq!(param(&auth, "response"), expected);
}

#[test]
fn datagram_from_unlisted_peer_is_dropped_silently() {
    let mut cfg = UaConfig::new(addr(B), addr(B));
    cfg.allowed_peers = vec!["10.0.0.1".parse().unwrap()];
    cfg.allowed_peer_addrs = vec![addr("10.0.0.7:5080")];
    let mut b = UserAgent::new(cfg, 3);
    let now = Instant::now();
    let evil = addr("10.0.0.66:5060");
    b.handle_datagram(now, evil, invite_text("z9hG4bKx", "").as_bytes());
    assert!(drain(&mut b).is_empty());
    assert_eq!(
        events(&mut b),
        [UaEvent::Dropped {
            source: evil,
            reason: "peer not allowed"
        }]
    );
    // Listed by ip:port, but another port: dropped too.
    b.handle_datagram(
        now,
        addr("10.0.0.7:5060"),
        invite_text("z9hG4bKy", "").as_bytes(),
    );
    assert!(drain(&mut b).is_empty());
    b.handle_datagram(
        now,
        addr("10.0.0.7:5080"),
        invite_text("z9hG4bKz", "").as_bytes(),
    );
    assert_eq!(drain(&mut b).len(), 1);
    b.handle_datagram(
        now,
        addr("10.0.0.1:1234"),
        invite_text("z9hG4bKw", "").as_bytes(),
    );
    assert_eq!(drain(&mut b).len(), 1);
}

#[test]
fn malformed_request_with_via_callid_cseq_gets_400_and_garbage_is_dropped() {
    let mut b = ua(B, 2);
    let now = Instant::now();
    // Duplicate To (HOSTILE-INPUTS row 10).
    let bad = "INVITE sip:bob@b SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKm\r\n\
               From: <sip:a@a>;tag=1\r\nTo: <sip:b@b>\r\nTo: <sip:c@c>\r\nCall-ID: m1\r\n\
               CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    b.handle_datagram(now, addr(A), bad.as_bytes());
    let out = drain(&mut b);
    assert_eq!(out.len(), 1);
    assert_eq!(first_line(&out[0]), "SIP/2.0 400 Bad Request");
    assert_eq!(out[0].destination, addr(A));
    assert_eq!(header(&out[0], "Call-ID"), "m1");
    // CSeq ≥ 2^31.
    let big = bad
        .replace("To: <sip:c@c>\r\n", "")
        .replace("CSeq: 1", "CSeq: 2147483648");
    b.handle_datagram(now, addr(A), big.as_bytes());
    assert_eq!(first_line(&drain(&mut b)[0]), "SIP/2.0 400 Bad Request");
    // Missing branch.
    let nobranch = bad
        .replace("To: <sip:c@c>\r\n", "")
        .replace(";branch=z9hG4bKm", "");
    b.handle_datagram(now, addr(A), nobranch.as_bytes());
    assert_eq!(first_line(&drain(&mut b)[0]), "SIP/2.0 400 Bad Request");
    // No Call-ID: nothing to answer with.
    let nocid = bad.replace("Call-ID: m1\r\n", "");
    b.handle_datagram(now, addr(A), nocid.as_bytes());
    assert!(drain(&mut b).is_empty());
    for junk in [
        &b"\x00\xff garbage"[..],
        b"",
        b"SIP/2.0 200 OK\r\n\r\n",
        &[0x80; 3000],
    ] {
        b.handle_datagram(now, addr(A), junk);
        assert!(drain(&mut b).is_empty());
    }
    assert!(events(&mut b)
        .iter()
        .all(|e| matches!(e, UaEvent::Dropped { .. })));
    assert_eq!(b.transaction_count(), 0);
    assert_eq!(b.active_calls(), 0);
}

#[test]
fn options_outside_a_dialog_is_answered_200() {
    let mut b = ua(B, 2);
    let now = Instant::now();
    let opt = "OPTIONS sip:b@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKo\r\n\
               From: <sip:proxy@a>;tag=1\r\nTo: <sip:b@b>\r\nCall-ID: o1\r\nCSeq: 7 OPTIONS\r\n\
               Max-Forwards: 70\r\n\r\n";
    b.handle_datagram(now, addr(A), opt.as_bytes());
    let out = drain(&mut b);
    assert_eq!(first_line(&out[0]), "SIP/2.0 200 OK");
    assert!(header(&out[0], "Allow").contains("INVITE"));
    // Retransmission gets the same answer from the transaction.
    b.handle_datagram(now, addr(A), opt.as_bytes());
    assert_eq!(drain(&mut b), out);
    b.handle_timeout(now + Duration::from_secs(33));
    assert_eq!(b.transaction_count(), 0);
}

#[test]
fn unanswered_reinvite_gets_200_with_current_sdp_after_2_s_and_info_gets_200() {
    let mut p = Pair::new();
    let (_, cb) = p.established();
    // b sends a re-INVITE-like request by hand to a: use the dialog identifiers from a BYE
    // template. Simpler: a receives INFO and re-INVITE built from b's view of the dialog.
    let call = p.b.calls.get(&cb).unwrap();
    let d = call.dialog.clone();
    let mk = |method: &str, seq: u32, br: &str| {
        format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch={br}\r\nFrom: {}\r\n\
             To: {}\r\nCall-ID: {}\r\nCSeq: {seq} {method}\r\nContact: <sip:10.0.0.2:5060>\r\n\
             Content-Length: 0\r\n\r\n",
            d.remote_target,
            d.local,
            d.remote(),
            d.call_id
        )
    };
    p.a.handle_datagram(p.now, addr(B), mk("INFO", 100, "z9hG4bKi1").as_bytes());
    let out = drain(&mut p.a);
    assert_eq!(first_line(&out[0]), "SIP/2.0 200 OK");
    assert!(
        events(&mut p.a).is_empty(),
        "INFO without DTMF reports nothing"
    );
    p.a.handle_datagram(p.now, addr(B), mk("INVITE", 101, "z9hG4bKi2").as_bytes());
    let out = drain(&mut p.a);
    assert_eq!(out.len(), 1);
    assert_eq!(first_line(&out[0]), "SIP/2.0 100 Trying");
    assert!(matches!(&events(&mut p.a)[..], [UaEvent::Reinvite { sdp, .. }] if sdp.is_empty()));
    // The call core stays silent: at 2 s the UA answers with the current SDP itself.
    p.a.handle_timeout(p.now + Duration::from_millis(1999));
    assert!(drain(&mut p.a).is_empty());
    p.a.handle_timeout(p.now + REINVITE_ANSWER_TIMEOUT);
    let out = drain(&mut p.a);
    assert_eq!(first_line(&out[0]), "SIP/2.0 200 OK");
    assert!(text(&out[0]).ends_with("v=0\r\nofferer\r\n"));
    // Out-of-order CSeq is refused.
    p.a.handle_datagram(p.now, addr(B), mk("INFO", 50, "z9hG4bKi3").as_bytes());
    assert_eq!(
        first_line(&drain(&mut p.a)[0]),
        "SIP/2.0 500 Server Internal Error"
    );
    // Unknown dialog: 481.
    let stray = mk("BYE", 102, "z9hG4bKi4").replace(&d.call_id, "nope");
    p.a.handle_datagram(p.now, addr(B), stray.as_bytes());
    assert!(first_line(&drain(&mut p.a)[0]).starts_with("SIP/2.0 481"));
}

#[test]
fn new_invites_beyond_the_dialog_cap_get_503() {
    let mut cfg = UaConfig::new(addr(B), addr(B));
    cfg.max_dialogs = 1;
    let mut b = UserAgent::new(cfg, 3);
    let now = Instant::now();
    b.handle_datagram(now, addr(A), invite_text("z9hG4bKc1", "").as_bytes());
    drain(&mut b);
    let second = invite_text("z9hG4bKc2", "").replace("cid1", "cid2");
    b.handle_datagram(now, addr(A), second.as_bytes());
    let out = drain(&mut b);
    assert!(first_line(out.last().unwrap()).starts_with("SIP/2.0 503"));
    assert_eq!(b.active_calls(), 1);
    let mut a = UserAgent::new(
        UaConfig {
            max_dialogs: 0,
            ..UaConfig::new(addr(A), addr(A))
        },
        1,
    );
    let h = a.invite(now, outgoing(B));
    assert!(matches!(
        events(&mut a)[..],
        [UaEvent::Failed { call, code: 503, .. }] if call == h
    ));
    assert!(drain(&mut a).is_empty());
}

#[test]
fn advertised_address_is_used_in_via_and_contact() {
    let cfg = UaConfig::new(addr("0.0.0.0:5060"), addr("203.0.113.5:5062"));
    let mut a = UserAgent::new(cfg, 1);
    a.invite(Instant::now(), outgoing(B));
    let inv = drain(&mut a).remove(0);
    assert!(header(&inv, "Via").starts_with("SIP/2.0/UDP 203.0.113.5:5062;branch=z9hG4bK"));
    assert_eq!(header(&inv, "Contact"), "<sip:203.0.113.5:5062>");
}

// ---------------------------------------------------------------- registration

fn registration(expires: u32) -> Registration {
    Registration {
        registrar: addr(B),
        aor: "sip:alice@example.com".into(),
        contact_user: "alice-c".into(),
        expires,
        credentials: Some(creds(Some("pbx"))),
    }
}

/// A registrar's response to `req` with `extra` headers (To gets a tag).
fn reg_reply(req: &Transmit, code: u16, extra: &str) -> String {
    let m = Message::parse(&req.payload).unwrap();
    format!(
        "SIP/2.0 {code} {}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=reg\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         {extra}Content-Length: 0\r\n\r\n",
        reason_phrase(code),
        m.header("Via").unwrap(),
        m.header("From").unwrap(),
        m.header("To").unwrap(),
        m.call_id().unwrap(),
        m.header("CSeq").unwrap(),
    )
}

fn seq_of(t: &Transmit) -> u32 {
    Message::parse(&t.payload).unwrap().cseq().unwrap().seq
}

/// Fires every timer up to `until`, returning what was sent.
fn run_until(ua: &mut UserAgent, until: Instant) -> Vec<Transmit> {
    let mut out = Vec::new();
    while let Some(t) = ua.poll_timeout().filter(|t| *t <= until) {
        ua.handle_timeout(t);
        out.extend(drain(ua));
    }
    out
}

/// Registers and answers 200 granting `granted` s; returns the UA, handle and the REGISTER.
fn registered(granted: u32) -> (UserAgent, RegHandle, Transmit, Instant) {
    let mut a = ua(A, 1);
    let now = Instant::now();
    let reg = a.register(now, registration(3600));
    let req = drain(&mut a).remove(0);
    let ok = reg_reply(
        &req,
        200,
        &format!("Contact: <sip:alice-c@10.0.0.1:5060>;expires={granted}\r\n"),
    );
    a.handle_datagram(now, addr(B), ok.as_bytes());
    assert_eq!(
        events(&mut a),
        [UaEvent::Registered {
            reg,
            expires: granted
        }]
    );
    (a, reg, req, now)
}

#[test]
fn register_goes_to_the_registrar_with_our_contact_and_refreshes_at_half_the_granted_expiry() {
    let (mut a, reg, first, t0) = registered(120);
    assert_eq!(first.destination, addr(B));
    assert_eq!(first_line(&first), "REGISTER sip:example.com SIP/2.0");
    assert_eq!(
        header(&first, "Contact"),
        "<sip:alice-c@10.0.0.1:5060>;expires=3600"
    );
    assert_eq!(header(&first, "Expires"), "3600");
    assert_eq!(header(&first, "To"), "<sip:alice@example.com>");
    assert!(header(&first, "From").starts_with("<sip:alice@example.com>;tag="));
    assert_eq!(a.registrations(), 1);
    assert_eq!(a.active_calls(), 0);
    // Refresh at 60 s (half of 120), same Call-ID and From tag, next CSeq, new branch.
    let out = run_until(&mut a, t0 + Duration::from_secs(59));
    assert!(out.is_empty());
    let out = run_until(&mut a, t0 + Duration::from_secs(60));
    assert_eq!(out.len(), 1);
    let refresh = &out[0];
    assert_eq!(header(refresh, "Call-ID"), header(&first, "Call-ID"));
    assert_eq!(header(refresh, "From"), header(&first, "From"));
    assert_eq!(seq_of(refresh), seq_of(&first) + 1);
    assert_ne!(branch(refresh), branch(&first));
    // No expires on our Contact: the Expires header counts; 40 s → refresh after 10 s.
    let now = t0 + Duration::from_secs(60);
    let ok = reg_reply(
        refresh,
        200,
        "Contact: <sip:other@10.9.9.9>;expires=999\r\nContact: <sip:alice-c@10.0.0.1:5060>\r\nExpires: 40\r\n",
    );
    a.handle_datagram(now, addr(B), ok.as_bytes());
    assert_eq!(events(&mut a), [UaEvent::Registered { reg, expires: 40 }]);
    let out = run_until(&mut a, now + Duration::from_secs(10));
    assert_eq!(
        out.iter()
            .filter(|t| first_line(t).starts_with("REGISTER"))
            .count(),
        1
    );
}

#[test]
fn register_challenge_is_answered_with_digest_over_the_register_uri() {
    let mut a = ua(A, 1);
    let now = Instant::now();
    let reg = a.register(now, registration(600));
    let req = drain(&mut a).remove(0);
    let ch = reg_reply(
        &req,
        401,
        "WWW-Authenticate: Digest realm=\"pbx\", nonce=\"rn\", qop=\"auth\"\r\n",
    );
    a.handle_datagram(now, addr(B), ch.as_bytes());
    let out = drain(&mut a);
    assert_eq!(out.len(), 1, "no ACK for a non-INVITE");
    let re = &out[0];
    assert_eq!(first_line(re), "REGISTER sip:example.com SIP/2.0");
    assert_eq!(seq_of(re), seq_of(&req) + 1);
    assert_eq!(header(re, "Call-ID"), header(&req, "Call-ID"));
    let auth = header(re, "Authorization");
    let cnonce = param(&auth, "cnonce");
    let p = ChallengeParams {
        realm: "pbx",
        nonce: "rn",
        opaque: None,
        algorithm: Algorithm::Md5,
        qop_auth: true,
    };
    let expected = digest::response(
        &p,
        "alice",
        "secret",
        "REGISTER",
        "sip:example.com",
        ClientNonce { cnonce, nc: 1 },
    );
    assert_eq!(param(&auth, "response"), expected);
    assert!(events(&mut a).is_empty());
    a.handle_datagram(now, addr(B), reg_reply(re, 200, "").as_bytes());
    // No expiry anywhere in the 200: what we asked for.
    assert_eq!(events(&mut a), [UaEvent::Registered { reg, expires: 600 }]);
}

#[test]
fn register_challenge_from_a_stranger_or_another_realm_is_not_answered() {
    let mut a = ua(A, 1);
    let now = Instant::now();
    let reg = a.register(now, registration(600));
    let req = drain(&mut a).remove(0);
    let ch = reg_reply(
        &req,
        407,
        "Proxy-Authenticate: Digest realm=\"pbx\", nonce=\"rn\"\r\n",
    );
    a.handle_datagram(now, addr("10.0.0.66:5060"), ch.as_bytes());
    assert!(drain(&mut a).is_empty());
    assert!(matches!(
        &events(&mut a)[..],
        [UaEvent::Dropped { reason, .. }] if reason.contains("unexpected address")
    ));
    let evil = reg_reply(
        &req,
        407,
        "Proxy-Authenticate: Digest realm=\"evil\", nonce=\"rn\"\r\n",
    );
    a.handle_datagram(now, addr(B), evil.as_bytes());
    assert!(drain(&mut a).is_empty());
    assert!(matches!(
        &events(&mut a)[..],
        [UaEvent::RegistrationFailed { reg: r, code: 407, reason }]
            if *r == reg && reason.contains("realm")
    ));
}

#[test]
fn failed_registration_is_reported_and_retried_after_30_then_60_s() {
    let mut a = ua(A, 1);
    let t0 = Instant::now();
    let reg = a.register(t0, registration(600));
    let req = drain(&mut a).remove(0);
    a.handle_datagram(t0, addr(B), reg_reply(&req, 403, "").as_bytes());
    assert_eq!(
        events(&mut a),
        [UaEvent::RegistrationFailed {
            reg,
            code: 403,
            reason: "Forbidden".into()
        }]
    );
    assert!(run_until(&mut a, t0 + Duration::from_millis(29_999))
        .iter()
        .all(|t| !first_line(t).starts_with("REGISTER")));
    let retry = run_until(&mut a, t0 + Duration::from_secs(30));
    assert_eq!(retry.len(), 1);
    assert_eq!(header(&retry[0], "Call-ID"), header(&req, "Call-ID"));
    let t1 = t0 + Duration::from_secs(30);
    a.handle_datagram(t1, addr(B), reg_reply(&retry[0], 503, "").as_bytes());
    assert!(matches!(
        events(&mut a)[..],
        [UaEvent::RegistrationFailed { code: 503, .. }]
    ));
    assert!(run_until(&mut a, t1 + Duration::from_millis(59_999))
        .iter()
        .all(|t| !first_line(t).starts_with("REGISTER")));
    assert_eq!(run_until(&mut a, t1 + Duration::from_secs(60)).len(), 1);
    assert_eq!(a.registrations(), 1);
}

#[test]
fn register_to_a_silent_registrar_fails_408_after_timer_f() {
    let mut a = ua(A, 1);
    let t0 = Instant::now();
    let reg = a.register(t0, registration(600));
    drain(&mut a);
    let out = run_until(&mut a, t0 + Duration::from_secs(32));
    assert!(out.iter().all(|t| first_line(t).starts_with("REGISTER")));
    assert_eq!(
        events(&mut a),
        [UaEvent::RegistrationFailed {
            reg,
            code: 408,
            reason: "Request Timeout".into()
        }]
    );
    assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(62)));
}

#[test]
fn interval_too_brief_is_retried_at_once_with_min_expires() {
    let mut a = ua(A, 1);
    let now = Instant::now();
    let reg = a.register(now, registration(60));
    let req = drain(&mut a).remove(0);
    a.handle_datagram(
        now,
        addr(B),
        reg_reply(&req, 423, "Min-Expires: 300\r\n").as_bytes(),
    );
    let re = drain(&mut a).remove(0);
    assert_eq!(header(&re, "Expires"), "300");
    assert!(header(&re, "Contact").ends_with(";expires=300"));
    assert!(events(&mut a).is_empty());
    // A second 423 that does not raise the minimum is a failure, not a loop.
    a.handle_datagram(
        now,
        addr(B),
        reg_reply(&re, 423, "Min-Expires: 300\r\n").as_bytes(),
    );
    assert!(drain(&mut a).is_empty());
    assert!(matches!(
        events(&mut a)[..],
        [UaEvent::RegistrationFailed { reg: r, code: 423, .. }] if r == reg
    ));
}

#[test]
fn unregister_sends_expires_zero_reports_unregistered_and_forgets_the_binding() {
    let (mut a, reg, first, t0) = registered(3600);
    a.unregister(t0, reg);
    a.unregister(t0, reg);
    let out = drain(&mut a);
    assert_eq!(out.len(), 1);
    let un = &out[0];
    assert_eq!(header(un, "Expires"), "0");
    assert_eq!(
        header(un, "Contact"),
        "<sip:alice-c@10.0.0.1:5060>;expires=0"
    );
    assert_eq!(header(un, "Call-ID"), header(&first, "Call-ID"));
    assert_eq!(seq_of(un), seq_of(&first) + 1);
    assert!(events(&mut a).is_empty());
    a.handle_datagram(t0, addr(B), reg_reply(un, 200, "").as_bytes());
    assert_eq!(events(&mut a), [UaEvent::Unregistered { reg }]);
    assert_eq!(a.registrations(), 0);
    run_until(&mut a, t0 + Duration::from_secs(3600));
    assert!(drain(&mut a).is_empty(), "no refresh after unregister");
    assert_eq!(a.poll_timeout(), None);
    assert_eq!(a.transaction_count(), 0);
}

#[test]
fn unregister_of_a_silent_registrar_ends_after_the_timeout() {
    let (mut a, reg, _, t0) = registered(3600);
    a.unregister(t0, reg);
    drain(&mut a);
    run_until(&mut a, t0 + Duration::from_secs(31));
    assert!(events(&mut a).is_empty());
    run_until(&mut a, t0 + Duration::from_secs(32));
    assert_eq!(events(&mut a), [UaEvent::Unregistered { reg }]);
    assert_eq!(a.registrations(), 0);
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn registrations_beyond_the_cap_or_with_bad_uris_fail_at_once_and_are_not_kept() {
    let mut a = UserAgent::new(
        UaConfig {
            max_registrations: 1,
            ..UaConfig::new(addr(A), addr(A))
        },
        1,
    );
    let now = Instant::now();
    a.register(now, registration(60));
    let second = a.register(now, registration(60));
    let mut bad = registration(60);
    bad.aor = "sip:x@y>\r\nEvil: 1".into();
    let third = a.register(now, bad);
    let mut bad_user = registration(60);
    bad_user.contact_user = "a>;b".into();
    let fourth = a.register(now, bad_user);
    let ev = events(&mut a);
    assert!(matches!(
        &ev[..],
        [
            UaEvent::RegistrationFailed { reg: r2, code: 503, .. },
            UaEvent::RegistrationFailed { reg: r3, code: 503, .. },
            UaEvent::RegistrationFailed { reg: r4, code: 503, .. },
        ] if *r2 == second && *r3 == third && *r4 == fourth
    ));
    assert_eq!(a.registrations(), 1);
    assert_eq!(drain(&mut a).len(), 1);
    let mut b = ua(B, 2);
    let mut bad = registration(60);
    bad.aor = "tel:+15551234".into();
    b.register(now, bad);
    assert!(matches!(
        events(&mut b)[..],
        [UaEvent::RegistrationFailed { code: 400, .. }]
    ));
    let mut bad_user = registration(60);
    bad_user.contact_user = "a>;b".into();
    b.register(now, bad_user);
    assert!(matches!(
        events(&mut b)[..],
        [UaEvent::RegistrationFailed { code: 400, .. }]
    ));
    assert_eq!(b.registrations(), 0);
    assert!(drain(&mut b).is_empty());
}

#[test]
fn invite_to_a_registered_contact_is_offered_as_an_incoming_call() {
    let (mut a, _, _, now) = registered(3600);
    let invite = invite_text("z9hG4bKu1", "")
        .replace(
            "INVITE sip:bob@10.0.0.2 ",
            "INVITE sip:alice-c@10.0.0.1:5060 ",
        )
        .replace("To: <sip:bob@b>", "To: <sip:alice@example.com>");
    a.handle_datagram(now, addr(B), invite.as_bytes());
    assert!(matches!(
        &events(&mut a)[..],
        [UaEvent::IncomingCall { request_uri, to, .. }]
            if request_uri == "sip:alice-c@10.0.0.1:5060" && to == "<sip:alice@example.com>"
    ));
    assert_eq!(a.active_calls(), 1);
    assert_eq!(a.registrations(), 1);
}

// ---------------------------------------------------------------- re-INVITE

const HOLD: &[u8] = b"v=0\r\na=sendonly\r\n";
const HELD: &[u8] = b"v=0\r\na=recvonly\r\n";

fn local_sdp(ua: &UserAgent, call: CallHandle) -> Vec<u8> {
    ua.calls.get(&call).unwrap().local_sdp.clone()
}

#[test]
fn hold_reinvite_is_answered_by_the_remote_core_and_both_sides_keep_the_new_sdp() {
    let mut p = Pair::new();
    let (ca, cb) = p.established();
    p.a.reinvite(p.now, ca, HOLD.to_vec());
    p.pump();
    assert_eq!(
        events(&mut p.b),
        [UaEvent::Reinvite {
            call: cb,
            sdp: HOLD.to_vec()
        }]
    );
    assert!(events(&mut p.a).is_empty());
    p.b.respond_reinvite(p.now, cb, 200, Some(HELD.to_vec()));
    p.pump();
    assert_eq!(
        events(&mut p.a),
        [UaEvent::ReinviteAnswered {
            call: ca,
            sdp: HELD.to_vec()
        }]
    );
    assert_eq!(
        p.sent('a', "ACK "),
        2,
        "ACK for the INVITE and the re-INVITE"
    );
    assert!(events(&mut p.b).is_empty(), "the ACK confirms silently");
    assert_eq!(local_sdp(&p.a, ca), HOLD);
    assert_eq!(local_sdp(&p.b, cb), HELD);
    // Resume; b's core stays silent and the UA answers with b's current SDP after 2 s.
    p.a.reinvite(p.now, ca, b"v=0\r\na=sendrecv\r\n".to_vec());
    p.pump();
    assert!(matches!(events(&mut p.b)[..], [UaEvent::Reinvite { .. }]));
    p.advance(Duration::from_secs(2));
    assert_eq!(
        events(&mut p.a),
        [UaEvent::ReinviteAnswered {
            call: ca,
            sdp: HELD.to_vec()
        }]
    );
    assert_eq!(local_sdp(&p.a, ca), b"v=0\r\na=sendrecv\r\n");
    // The call still ends cleanly.
    p.b.hangup(p.now, cb);
    p.pump();
    assert_eq!(
        events(&mut p.a),
        [UaEvent::Ended {
            call: ca,
            by_remote: true
        }]
    );
    p.assert_idle();
}

#[test]
fn rejected_reinvite_is_acked_reported_and_the_call_goes_on() {
    let mut p = Pair::new();
    let (ca, cb) = p.established();
    p.a.reinvite(p.now, ca, HOLD.to_vec());
    p.pump();
    events(&mut p.b);
    p.b.respond_reinvite(p.now, cb, 488, None);
    p.pump();
    assert_eq!(
        events(&mut p.a),
        [UaEvent::ReinviteFailed {
            call: ca,
            code: 488
        }]
    );
    assert_eq!(p.sent('a', "ACK "), 2);
    assert_eq!(local_sdp(&p.a, ca), b"v=0\r\nofferer\r\n");
    assert_eq!(local_sdp(&p.b, cb), b"answer");
    assert!(events(&mut p.b).is_empty());
    // A late answer from b's core is ignored.
    p.b.respond_reinvite(p.now, cb, 200, None);
    p.pump();
    assert_eq!(
        p.sent('b', "SIP/2.0 200"),
        1,
        "only the 200 to the first INVITE"
    );
    p.advance(Duration::from_secs(40));
    assert_eq!(p.sent('b', "SIP/2.0 488"), 1, "ACK stopped retransmissions");
    assert_eq!((p.a.active_calls(), p.b.active_calls()), (1, 1));
    p.a.hangup(p.now, ca);
    p.pump();
    p.assert_idle();
}

#[test]
fn crossing_reinvites_get_491_and_both_succeed_after_the_random_delays() {
    let mut p = Pair::new();
    let (ca, cb) = p.established();
    p.a.reinvite(p.now, ca, HOLD.to_vec());
    p.b.reinvite(p.now, cb, HELD.to_vec());
    let from_a = drain(&mut p.a);
    let from_b = drain(&mut p.b);
    for t in from_a {
        p.b.handle_datagram(p.now, addr(A), &t.payload);
    }
    for t in from_b {
        p.a.handle_datagram(p.now, addr(B), &t.payload);
    }
    p.pump();
    assert_eq!(p.sent('a', "SIP/2.0 491"), 1);
    assert_eq!(p.sent('b', "SIP/2.0 491"), 1);
    assert!(events(&mut p.a).is_empty());
    assert!(events(&mut p.b).is_empty());
    // b (not the Call-ID owner) retries within 2 s, a within 2.1-4 s; cores stay silent,
    // so each incoming re-INVITE is auto-answered after 2 s.
    let t0 = p.now;
    p.advance(Duration::from_secs(10));
    let ea = events(&mut p.a);
    let eb = events(&mut p.b);
    assert!(ea.contains(&UaEvent::Reinvite {
        call: ca,
        sdp: HELD.to_vec()
    }));
    assert!(ea.contains(&UaEvent::ReinviteAnswered {
        call: ca,
        sdp: HELD.to_vec()
    }));
    assert!(eb.contains(&UaEvent::Reinvite {
        call: cb,
        sdp: HOLD.to_vec()
    }));
    // a answered b's retry with its SDP of the time; a's own hold came after.
    assert!(eb.contains(&UaEvent::ReinviteAnswered {
        call: cb,
        sdp: b"v=0\r\nofferer\r\n".to_vec()
    }));
    assert_eq!(local_sdp(&p.a, ca), HOLD);
    assert_eq!(
        local_sdp(&p.b, cb),
        HELD,
        "b's own offer, also its answer to a's retry"
    );
    // The crossing re-INVITEs went by hand (not logged): one retry each, no retransmission.
    assert_eq!(p.sent('a', "INVITE "), 2, "the call's INVITE and the retry");
    assert_eq!(p.sent('b', "INVITE "), 1, "the retry");
    assert!(p.now - t0 >= Duration::from_secs(2));
    p.a.hangup(p.now, ca);
    p.pump();
    p.assert_idle();
}

#[test]
fn second_reinvite_while_one_is_pending_fails_at_once_with_491() {
    let mut p = Pair::new();
    let (ca, cb) = p.established();
    p.a.reinvite(p.now, ca, HOLD.to_vec());
    p.a.reinvite(p.now, ca, HELD.to_vec());
    assert_eq!(
        events(&mut p.a),
        [UaEvent::ReinviteFailed {
            call: ca,
            code: 491
        }]
    );
    p.pump();
    // b has a re-INVITE waiting for its core: b cannot start one either.
    p.b.reinvite(p.now, cb, HELD.to_vec());
    assert!(events(&mut p.b).contains(&UaEvent::ReinviteFailed {
        call: cb,
        code: 491
    }));
    assert_eq!(p.sent('a', "INVITE "), 2);
    assert_eq!(p.sent('b', "INVITE "), 0);
}

#[test]
fn reinvite_to_a_silent_peer_fails_408_and_the_call_survives() {
    let mut p = Pair::new();
    let (ca, _) = p.established();
    p.b_mute = true;
    p.a.reinvite(p.now, ca, HOLD.to_vec());
    p.pump();
    p.advance(Duration::from_secs(33));
    assert!(events(&mut p.a).contains(&UaEvent::ReinviteFailed {
        call: ca,
        code: 408
    }));
    assert_eq!(p.a.active_calls(), 1);
    assert_eq!(local_sdp(&p.a, ca), b"v=0\r\nofferer\r\n");
}

#[test]
fn bye_while_a_reinvite_waits_for_the_core_answers_it_487() {
    let mut p = Pair::new();
    let (ca, cb) = p.established();
    p.a.reinvite(p.now, ca, HOLD.to_vec());
    p.pump();
    events(&mut p.b);
    p.a.hangup(p.now, ca);
    p.pump();
    assert_eq!(p.sent('b', "SIP/2.0 487"), 1);
    assert_eq!(
        events(&mut p.b),
        [UaEvent::Ended {
            call: cb,
            by_remote: true
        }]
    );
    assert_eq!(
        events(&mut p.a),
        [UaEvent::Ended {
            call: ca,
            by_remote: false
        }]
    );
    p.b.respond_reinvite(p.now, cb, 200, None);
    p.pump();
    p.assert_idle();
}

#[test]
fn hangup_while_answering_a_reinvite_answers_it_487_before_the_bye() {
    let mut p = Pair::new();
    let (ca, cb) = p.established();
    p.a.reinvite(p.now, ca, HOLD.to_vec());
    p.pump();
    events(&mut p.b);
    p.b.hangup(p.now, cb);
    p.pump();
    let b_lines: Vec<&String> = p
        .log
        .iter()
        .filter(|(w, _)| *w == 'b')
        .map(|(_, l)| l)
        .collect();
    let i487 = b_lines.iter().position(|l| l.starts_with("SIP/2.0 487"));
    let ibye = b_lines.iter().position(|l| l.starts_with("BYE "));
    assert!(i487.is_some() && i487 < ibye, "{b_lines:?}");
    let ea = events(&mut p.a);
    assert!(ea.contains(&UaEvent::ReinviteFailed {
        call: ca,
        code: 487
    }));
    p.assert_idle();
}

// ---------------------------------------------------------------- INFO DTMF

#[test]
fn info_dtmf_is_sent_as_dtmf_relay_and_reported_once_on_the_other_side() {
    let mut p = Pair::new();
    let (ca, cb) = p.established();
    p.a.send_info_dtmf(p.now, ca, '5', 160);
    let info = drain(&mut p.a).remove(0);
    assert!(first_line(&info).starts_with("INFO sip:10.0.0.2:5060 "));
    assert_eq!(header(&info, "Content-Type"), "application/dtmf-relay");
    assert!(text(&info).ends_with("\r\n\r\nSignal=5\r\nDuration=160\r\n"));
    p.b.handle_datagram(p.now, addr(A), &info.payload);
    // A retransmission is absorbed by the transaction: one event.
    p.b.handle_datagram(p.now, addr(A), &info.payload);
    let replies = drain(&mut p.b);
    assert_eq!(replies.len(), 2);
    assert!(replies.iter().all(|t| first_line(t) == "SIP/2.0 200 OK"));
    assert_eq!(
        events(&mut p.b),
        [UaEvent::Dtmf {
            call: cb,
            digit: '5'
        }]
    );
    p.a.handle_datagram(p.now, addr(B), &replies[0].payload);
    assert!(events(&mut p.a).is_empty());
    // Lower-case A-D are upper-cased; anything else is not sent.
    p.a.send_info_dtmf(p.now, ca, 'b', 100);
    p.a.send_info_dtmf(p.now, ca, 'x', 100);
    p.a.send_info_dtmf(p.now, CallHandle(999), '1', 100);
    p.pump();
    assert_eq!(p.sent('a', "INFO "), 1);
    assert_eq!(
        events(&mut p.b),
        [UaEvent::Dtmf {
            call: cb,
            digit: 'B'
        }]
    );
    p.assert_idle_calls_kept();
}

#[test]
fn dtmf_relay_bodies_are_parsed_strictly() {
    assert_eq!(parse_dtmf_relay(b"Signal=#\r\nDuration=100\r\n"), Some('#'));
    assert_eq!(parse_dtmf_relay(b"signal = 10\r\n"), Some('*'));
    assert_eq!(parse_dtmf_relay(b"Duration=100\nSignal=d\n"), Some('D'));
    assert_eq!(parse_dtmf_relay(b"Signal=55\r\n"), None);
    assert_eq!(parse_dtmf_relay(b"Signal=\r\n"), None);
    assert_eq!(parse_dtmf_relay(b"\xff\xfeSignal=1"), None);
    assert_eq!(parse_dtmf_relay(&[b'x'; 70_000]), None);
    assert!(is_dtmf_relay(Some("Application/DTMF-Relay; charset=x")));
    assert!(!is_dtmf_relay(Some("application/dtmf")));
    assert!(!is_dtmf_relay(None));
}

#[test]
fn retransmitted_2xx_to_our_reinvite_gets_the_same_ack_again() {
    let mut p = Pair::new();
    let (ca, cb) = p.established();
    p.a.reinvite(p.now, ca, HOLD.to_vec());
    p.pump();
    p.b.respond_reinvite(p.now, cb, 200, None);
    let ok = drain(&mut p.b).remove(0);
    p.a.handle_datagram(p.now, addr(B), &ok.payload);
    let ack1 = drain(&mut p.a);
    p.a.handle_datagram(p.now, addr(B), &ok.payload);
    let ack2 = drain(&mut p.a);
    assert_eq!(ack1.len(), 1);
    assert!(first_line(&ack1[0]).starts_with("ACK "));
    assert_eq!(ack1, ack2);
    assert_eq!(
        header(&ack1[0], "CSeq"),
        header(&ok, "CSeq").replace("INVITE", "ACK")
    );
    assert_eq!(
        events(&mut p.a),
        [UaEvent::ReinviteAnswered {
            call: ca,
            sdp: b"answer".to_vec()
        }]
    );
}

#[test]
fn cancelled_incoming_reinvite_gets_487_and_the_call_goes_on() {
    let mut p = Pair::new();
    let (ca, cb) = p.established();
    p.b.reinvite(p.now, cb, HELD.to_vec());
    let reinvite = drain(&mut p.b).remove(0);
    p.a.handle_datagram(p.now, addr(B), &reinvite.payload);
    drain(&mut p.a);
    assert!(matches!(events(&mut p.a)[..], [UaEvent::Reinvite { .. }]));
    let cancel = text(&reinvite)
        .replacen("INVITE ", "CANCEL ", 1)
        .replace(" INVITE\r\n", " CANCEL\r\n");
    let cancel =
        cancel.split("Content-Type").next().unwrap().to_owned() + "Content-Length: 0\r\n\r\n";
    p.a.handle_datagram(p.now, addr(B), cancel.as_bytes());
    let lines: Vec<String> = drain(&mut p.a).iter().map(first_line).collect();
    assert_eq!(lines, ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"]);
    // The core's late answer is ignored; the call is still up.
    p.a.respond_reinvite(p.now, ca, 200, None);
    assert!(drain(&mut p.a).is_empty());
    assert!(events(&mut p.a).is_empty());
    assert_eq!(p.a.active_calls(), 1);
}
