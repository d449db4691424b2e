//! Calls from and to WebSocket clients (README, "WebSocket protocol (version 1)"), end to end
//! against real SIP software on loopback: baresip (a phone), Kamailio (registrar + proxy with
//! digest auth), SIPp (scripted in-dialog INFO and re-INVITEs).
//!
//! The client is scripted with tungstenite ([`common::ws_client::WsClient`]) and sends real
//! G.711 µ-law frames: 160 bytes every 20 ms carrying a 1 kHz tone, timestamps +160.
//! Tests run one at a time (a process-wide lock) so that audio timing is not disturbed.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::scenario::{
    anonymous, assert_tone_samples, assert_tone_snr, serial, sha256_hex, MIN_SNR_DB,
};

use common::audio::{active_duration, dominant_frequency, read_wav, tone_snr_db};
use common::baresip::{Answer, Baresip, BaresipOpts, Registration};
use common::kamailio::{Kamailio, KamailioOpts};
use common::procs::{free_udp_port, wait_until, TestDir};
use common::rtmp_client::RtmpClient;
use common::sipp::{Scenario, Sipp};
use common::skybridge::strip_ansi;
use common::skybridge::{Skybridge, SkybridgeOpts};
use common::ws_client::WsClient;
use serde_json::{json, Value};
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);
const ALICE_TOKEN: &str = "alice-token";

/// User alice (token `alice-token`), optionally with SIP credentials (user, pass, realm).
fn alice(sip: Option<(&str, &str, &str)>) -> String {
    let mut s = format!(
        "[[users]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\ntargets = []\n",
        sha256_hex(ALICE_TOKEN)
    );
    if let Some((user, pass, realm)) = sip {
        s.push_str(&format!(
            "sip_username = \"{user}\"\nsip_password = \"{pass}\"\nsip_realm = \"{realm}\"\n"
        ));
    }
    s
}

/// Asserts `x` (8 kHz) carries a clean `freq` tone for at least `min_active` seconds.
fn assert_tone(what: &str, x: &[f64], freq: f64, min_active: f64, context: &str) {
    let snr = tone_snr_db(x, 8000, freq);
    let dominant = dominant_frequency(x, 8000);
    let active = active_duration(x, 8000, 0.01);
    eprintln!(
        "[measure] {what}: {freq} Hz SNR {snr:.1} dB, dominant {dominant} Hz, active {active:.2} s \
         of {:.2} s",
        x.len() as f64 / 8000.0
    );
    assert!(
        snr > MIN_SNR_DB && dominant == freq && active >= min_active,
        "{what}: {freq} Hz tone: SNR {snr:.1} dB (want > {MIN_SNR_DB}), dominant {dominant} Hz, \
         active {active:.2} s (want ≥ {min_active})\n{context}"
    );
}

/// Waits for message `kind` on `c`, panicking with `context` if it does not come.
fn expect(c: &mut WsClient, kind: &str, timeout: Duration, context: &dyn Fn() -> String) -> Value {
    match c.wait_for(kind, timeout) {
        Some(v) => v,
        None => panic!("no {kind} within {timeout:?}: {c:?}\n{}", context()),
    }
}

fn call_id(v: &Value) -> u16 {
    v["call"]
        .as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .unwrap()
}

/// Places a call to `target` and waits for `answered`; returns the call id.
fn dial(c: &mut WsClient, target: &str, context: &dyn Fn() -> String) -> u16 {
    c.send_json(&json!({"type": "call", "target": target}));
    let calling = expect(c, "calling", 5 * SEC, context);
    let id = call_id(&calling);
    let answered = expect(c, "answered", 10 * SEC, context);
    assert_eq!(call_id(&answered), id, "answered names another call");
    assert_eq!(answered["codec"], "pcmu", "{answered}");
    id
}

fn bob_phone(dir: &TestDir, register_to: Option<Registration>) -> Baresip {
    Baresip::start(BaresipOpts {
        register_to,
        ..BaresipOpts::answering_with_tone(dir.path(), "bob", 440.0, 30.0)
    })
}

// ---------------------------------------------------------------- 5. outbound with audio

#[test]
fn ws_client_calls_baresip_and_audio_flows_both_ways() {
    let _serial = serial();
    let dir = TestDir::new("ws-to-baresip");
    let mut bob = bob_phone(&dir, None);
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: vec![("bob".into(), bob.uri())],
            ..Default::default()
        },
    );
    let (mut c, welcome) = WsClient::signed_in(sb.web, "ws", None).unwrap();
    assert_eq!(welcome["version"], 1, "{welcome}");
    let ctx = || sb.tails();
    let id = dial(&mut c, "bob", &ctx);
    bob.expect_event("CALL_ESTABLISHED", 5 * SEC);
    c.start_tone(id, 1000.0);
    c.pump(4 * SEC);
    c.stop_tone();
    c.send_json(&json!({"type": "hangup", "call": id}));
    let hangup = expect(&mut c, "hangup", 5 * SEC, &ctx);
    assert_eq!(call_id(&hangup), id);
    bob.expect_event("CALL_CLOSED", 5 * SEC);
    let context = format!("{c:?}\n{}\n{}", sb.tails(), bob.tails());

    let rec = bob
        .recording_path()
        .unwrap_or_else(|| panic!("bob recorded nothing\n{context}"));
    let wav = read_wav(&rec).unwrap();
    assert_tone("bob hears the client", &wav.mono(), 1000.0, 3.0, &context);
    assert_tone(
        "the client hears bob",
        &c.decoded_audio(id),
        440.0,
        3.0,
        &context,
    );
    eprintln!(
        "[measure] frames sent {}, received {}",
        c.frames_sent, c.audio_frames
    );
}

// ---------------------------------------------------------------- 6. inbound, registration

#[test]
fn inbound_call_rings_every_session_first_answer_wins() {
    let _serial = serial();
    let dir = TestDir::new("ws-inbound");
    let kam = Kamailio::start(KamailioOpts {
        users: vec![
            ("alice".into(), "alicepw".into()),
            ("bob".into(), "bobpw".into()),
        ],
        auth_invite: false,
    });
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            sip: format!("registrar = \"{}\"\ndomain = \"127.0.0.1\"", kam.addr()),
            auth: "required = true\nanonymous_targets = []".into(),
            tail: alice(Some(("alice", "alicepw", "127.0.0.1"))),
            ..Default::default()
        },
    );
    let (mut ws1, _) = WsClient::signed_in(sb.web, "ws1", Some(ALICE_TOKEN)).unwrap();
    let (mut ws2, _) = WsClient::signed_in(sb.web, "ws2", Some(ALICE_TOKEN)).unwrap();
    let mut rtmp = RtmpClient::connect(sb.rtmp, &format!("call?token={ALICE_TOKEN}")).unwrap();
    let registered = wait_until(5 * SEC, || {
        kam.log().contains("AUTH OK REGISTER as alice")
            && strip_ansi(&sb.log()).contains("registered")
    });
    assert!(
        registered,
        "skybridge did not register alice at Kamailio\n{}\n{}",
        kam.tails(),
        sb.tails()
    );

    let mut bob = bob_phone(
        &dir,
        Some(Registration {
            registrar: kam.addr(),
            user: "bob".into(),
            pass: "bobpw".into(),
        }),
    );
    bob.dial(&kam.uri("alice"));
    let ctx = || format!("{}\n{}", kam.tails(), sb.tails());
    let in1 = expect(&mut ws1, "incoming", 5 * SEC, &ctx);
    let in2 = expect(&mut ws2, "incoming", 5 * SEC, &ctx);
    assert_eq!(in1["codec"], "pcmu", "{in1}");
    assert!(
        in1["from"].as_str().is_some_and(|f| f.contains("bob")),
        "incoming names the caller: {in1}"
    );
    let offered = rtmp.wait_command("onIncoming", 5 * SEC);
    assert!(
        offered.is_some(),
        "the RTMP session did not ring: {rtmp:?}\n{}",
        ctx()
    );
    let (id1, id2) = (call_id(&in1), call_id(&in2));

    ws1.send_json(&json!({"type": "answer", "call": id1}));
    let answered = expect(&mut ws1, "answered", 5 * SEC, &ctx);
    assert_eq!(call_id(&answered), id1);
    let elsewhere = expect(&mut ws2, "answered_elsewhere", 5 * SEC, &ctx);
    assert_eq!(call_id(&elsewhere), id2);
    assert!(
        rtmp.wait_command("onAnsweredElsewhere", 5 * SEC).is_some(),
        "RTMP session: {rtmp:?}\n{}",
        ctx()
    );
    bob.expect_event("CALL_ESTABLISHED", 5 * SEC);

    ws1.start_tone(id1, 1000.0);
    ws1.pump(3 * SEC);
    ws1.stop_tone();
    bob.hangup();
    let hangup = expect(&mut ws1, "hangup", 5 * SEC, &ctx);
    assert_eq!(call_id(&hangup), id1);
    bob.expect_event("CALL_CLOSED", 5 * SEC);
    ws2.pump(Duration::from_millis(200));
    assert!(
        !ws2.saw("hangup") && ws2.audio_frames == 0,
        "the session that did not answer got call traffic: {ws2:?}"
    );
    let context = format!("{ws1:?}\n{}\n{}", ctx(), bob.tails());
    assert_tone(
        "the answering session hears bob",
        &ws1.decoded_audio(id1),
        440.0,
        2.0,
        &context,
    );
    let rec = bob
        .recording_path()
        .unwrap_or_else(|| panic!("bob recorded nothing\n{context}"));
    assert_tone(
        "bob hears the answering session",
        &read_wav(&rec).unwrap().mono(),
        1000.0,
        2.0,
        &context,
    );

    // Every session leaves: skybridge unregisters alice, Kamailio no longer finds her.
    ws1.close();
    ws2.close();
    drop(rtmp);
    let unregistered = wait_until(5 * SEC, || strip_ansi(&sb.log()).contains("unregistered"));
    assert!(unregistered, "no un-REGISTER\n{}", ctx());
    bob.dial(&kam.uri("alice"));
    let closed = bob.expect_event("CALL_CLOSED", 5 * SEC);
    assert!(
        closed.param.contains("404"),
        "a call to alice after she left must get Kamailio's 404 (binding removed), got {:?}\n{}",
        closed.param,
        ctx()
    );
}

// ---------------------------------------------------------------- 7. nobody / everybody refuses

#[test]
fn nobody_online_gets_480() {
    let _serial = serial();
    let dir = TestDir::new("ws-nobody");
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: "required = true\nanonymous_targets = []".into(),
            tail: alice(None),
            ..Default::default()
        },
    );
    let mut bob = bob_phone(&dir, None);
    bob.dial(&format!("sip:alice@{}", sb.sip));
    let closed = bob.expect_event("CALL_CLOSED", 5 * SEC);
    assert!(
        closed.param.contains("480"),
        "want 480 with nobody online, got {:?}\n{}",
        closed.param,
        sb.tails()
    );
}

#[test]
fn all_sessions_reject_gets_486() {
    let _serial = serial();
    let dir = TestDir::new("ws-all-reject");
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: "required = true\nanonymous_targets = []".into(),
            tail: alice(None),
            ..Default::default()
        },
    );
    let (mut ws1, _) = WsClient::signed_in(sb.web, "ws1", Some(ALICE_TOKEN)).unwrap();
    let (mut ws2, _) = WsClient::signed_in(sb.web, "ws2", Some(ALICE_TOKEN)).unwrap();
    let mut bob = bob_phone(&dir, None);
    bob.dial(&format!("sip:alice@{}", sb.sip));
    let ctx = || sb.tails();
    let id1 = call_id(&expect(&mut ws1, "incoming", 5 * SEC, &ctx));
    let id2 = call_id(&expect(&mut ws2, "incoming", 5 * SEC, &ctx));

    ws1.send_json(&json!({"type": "reject", "call": id1}));
    let h1 = expect(&mut ws1, "hangup", 5 * SEC, &ctx);
    assert_eq!(h1["code"], 486, "{h1}");
    // One refusal is not the end: the other session still rings.
    ws2.pump(Duration::from_millis(500));
    assert!(
        bob.wait_for_event("CALL_CLOSED", Duration::ZERO).is_none() && !ws2.saw("hangup"),
        "the call ended while a session was still ringing: {ws2:?}\n{}",
        sb.tails()
    );
    ws2.send_json(&json!({"type": "reject", "call": id2}));
    let closed = bob.expect_event("CALL_CLOSED", 5 * SEC);
    assert!(
        closed.param.contains("486"),
        "want 486 once every session refused, got {:?}\n{}",
        closed.param,
        sb.tails()
    );
}

// ---------------------------------------------------------------- 8. DTMF

#[test]
fn dtmf_both_ways() {
    let _serial = serial();
    let dir = TestDir::new("ws-dtmf");
    let mut bob = bob_phone(&dir, None);
    let mut sipp = Sipp::uas(Scenario::File("uas_info_dtmf.xml"), free_udp_port());
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob", "uas"]),
            dialplan: vec![("bob".into(), bob.uri()), ("uas".into(), sipp.uri("uas"))],
            ..Default::default()
        },
    );
    let (mut c, _) = WsClient::signed_in(sb.web, "ws", None).unwrap();
    let ctx = || sb.tails();

    // Client → phone: RFC 4733 events that baresip decodes.
    let id = dial(&mut c, "bob", &ctx);
    bob.expect_event("CALL_ESTABLISHED", 5 * SEC);
    c.start_tone(id, 1000.0);
    c.pump(SEC);
    c.send_json(&json!({"type": "dtmf", "call": id, "digits": "1#"}));
    let mut heard = String::new();
    for _ in 0..2 {
        let mut ev = None;
        let ok = wait_until(5 * SEC, || {
            c.poll_once();
            ev = bob.wait_for_event("CALL_DTMF_START", Duration::ZERO);
            ev.is_some()
        });
        if !ok {
            break;
        }
        heard.push_str(ev.unwrap().param.trim());
    }
    c.send_json(&json!({"type": "hangup", "call": id}));
    expect(&mut c, "hangup", 5 * SEC, &ctx);
    assert_eq!(
        heard,
        "1#",
        "baresip's DTMF events: {:?}\n{}\n{}",
        bob.history()
            .iter()
            .filter(|e| e.kind.contains("DTMF"))
            .collect::<Vec<_>>(),
        bob.tails(),
        sb.tails()
    );

    // Phone → client: SIP INFO application/dtmf-relay Signal=5.
    let id = dial(&mut c, "uas", &ctx);
    let dtmf = expect(&mut c, "dtmf", 5 * SEC, &|| {
        format!("{}\n{}", sipp.tails(), sb.tails())
    });
    assert_eq!((call_id(&dtmf), dtmf["digit"].as_str()), (id, Some("5")));
    c.send_json(&json!({"type": "hangup", "call": id}));
    expect(&mut c, "hangup", 5 * SEC, &ctx);
    let r = sipp.wait_exit(5 * SEC);
    assert_eq!(
        (r.exit_code, r.successful),
        (Some(0), 1),
        "SIPp result\n{}\n{}",
        sipp.tails(),
        sb.tails()
    );
}

// ---------------------------------------------------------------- 9. hold

#[test]
fn hold_and_resume_from_each_side() {
    let _serial = serial();
    let dir = TestDir::new("ws-hold");
    let mut sipp = Sipp::uas(Scenario::File("uas_hold.xml"), free_udp_port());
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["uas"]),
            dialplan: vec![("uas".into(), sipp.uri("uas"))],
            ..Default::default()
        },
    );
    let (mut c, _) = WsClient::signed_in(sb.web, "ws", None).unwrap();
    let ctx = || format!("{}\n{}", sipp.tails(), sb.tails());
    let id = dial(&mut c, "uas", &ctx);

    c.send_json(&json!({"type": "hold", "call": id}));
    let held = expect(&mut c, "held", 5 * SEC, &ctx);
    assert_eq!((call_id(&held), held["by"].as_str()), (id, Some("local")));
    c.send_json(&json!({"type": "unhold", "call": id}));
    let unheld = expect(&mut c, "unheld", 5 * SEC, &ctx);
    assert_eq!(
        (call_id(&unheld), unheld["by"].as_str()),
        (id, Some("local"))
    );

    // SIPp then holds and resumes on its own.
    let held = expect(&mut c, "held", 5 * SEC, &ctx);
    assert_eq!((call_id(&held), held["by"].as_str()), (id, Some("remote")));
    let unheld = expect(&mut c, "unheld", 5 * SEC, &ctx);
    assert_eq!(
        (call_id(&unheld), unheld["by"].as_str()),
        (id, Some("remote"))
    );

    c.send_json(&json!({"type": "hangup", "call": id}));
    expect(&mut c, "hangup", 5 * SEC, &ctx);
    let r = sipp.wait_exit(5 * SEC);
    let msgs = sipp.messages();
    assert_eq!(
        (r.exit_code, r.successful),
        (Some(0), 1),
        "SIPp result (it checks a=sendonly then a=sendrecv in skybridge's re-INVITEs)\n{msgs}\n{}\n{}",
        sipp.tails(),
        sb.tails()
    );
    assert!(
        msgs.contains("a=sendonly") && msgs.contains("a=recvonly"),
        "the hold re-INVITE/answer are not in SIPp's trace\n{msgs}"
    );
}

// ---------------------------------------------------------------- registration refresh

#[test]
fn registration_is_refreshed_before_it_expires() {
    let _serial = serial();
    let dir = TestDir::new("ws-register-refresh");
    let kam = Kamailio::start(KamailioOpts {
        users: vec![("alice".into(), "alicepw".into())],
        auth_invite: false,
    });
    // 10 s asked: skybridge refreshes at half of what is granted (at least 5 s).
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            sip: format!(
                "registrar = \"{}\"\ndomain = \"127.0.0.1\"\nregister_expires_secs = 10",
                kam.addr()
            ),
            auth: "required = true\nanonymous_targets = []".into(),
            tail: alice(Some(("alice", "alicepw", "127.0.0.1"))),
            ..Default::default()
        },
    );
    let (ws, _) = WsClient::signed_in(sb.web, "ws", Some(ALICE_TOKEN)).unwrap();
    let count = || kam.log().matches("AUTH OK REGISTER as alice").count();
    assert!(
        wait_until(5 * SEC, || count() >= 1),
        "no registration\n{}\n{}",
        kam.tails(),
        sb.tails()
    );
    assert!(
        wait_until(10 * SEC, || count() >= 2),
        "the registration was not refreshed within 10 s ({} REGISTERs accepted)\n{}\n{}",
        count(),
        kam.tails(),
        sb.tails()
    );
    drop(ws);
    assert!(
        wait_until(5 * SEC, || strip_ansi(&sb.log()).contains("unregistered")),
        "no un-REGISTER after the last session left\n{}",
        sb.tails()
    );
}

// ---------------------------------------------------------------- call waiting

#[test]
fn answering_a_second_call_puts_the_first_on_hold() {
    let _serial = serial();
    let dir = TestDir::new("ws-call-waiting");
    let mut bob = bob_phone(&dir, None);
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: "required = true\nanonymous_targets = []".into(),
            dialplan: vec![("bob".into(), bob.uri())],
            tail: common::scenario::user_block("alice", ALICE_TOKEN, &["bob"], None),
            ..Default::default()
        },
    );
    let (mut ws, _) = WsClient::signed_in(sb.web, "ws", Some(ALICE_TOKEN)).unwrap();
    let ctx = || sb.tails();
    let first = dial(&mut ws, "bob", &ctx);
    bob.expect_event("CALL_ESTABLISHED", 5 * SEC);
    // A second, inbound call while the first is up.
    let mut carol = Baresip::start(BaresipOpts {
        name: "carol".into(),
        user: "carol".into(),
        answer: Answer::Auto,
        dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    });
    carol.dial(&format!("sip:alice@{}", sb.sip));
    let incoming = expect(&mut ws, "incoming", 5 * SEC, &ctx);
    let second = call_id(&incoming);
    assert_ne!(second, first, "a second call gets its own id");
    ws.send_json(&json!({"type": "answer", "call": second}));
    let answered = expect(&mut ws, "answered", 5 * SEC, &ctx);
    assert_eq!(call_id(&answered), second);
    let held = expect(&mut ws, "held", 5 * SEC, &ctx);
    assert_eq!(
        call_id(&held),
        first,
        "the first call is the one held: {held}"
    );
    assert_eq!(held["by"], "local", "{held}");
    carol.expect_event("CALL_ESTABLISHED", 5 * SEC);
    // Both calls are still up: hang up each and see both end.
    for id in [second, first] {
        ws.send_json(&json!({"type": "hangup", "call": id}));
        let h = expect(&mut ws, "hangup", 5 * SEC, &ctx);
        assert_eq!(call_id(&h), id);
    }
    bob.expect_event("CALL_CLOSED", 5 * SEC);
    carol.expect_event("CALL_CLOSED", 5 * SEC);
}

// ---------------------------------------------------------------- Opus on the WebSocket leg

/// A phone playing 440 Hz that speaks only the codecs of `modules` (e.g. `opus.so`).
fn bob_with_codecs(dir: &TestDir, modules: &[&str]) -> Baresip {
    Baresip::start(BaresipOpts {
        codec_modules: modules.iter().map(|m| (*m).to_owned()).collect(),
        ..BaresipOpts::answering_with_tone(dir.path(), "bob", 440.0, 30.0)
    })
}

/// Signs in offering Opus; checks `welcome` agreed on it and returns its number.
fn opus_client(sb: &Skybridge) -> (WsClient, u8) {
    let (c, welcome) =
        WsClient::signed_in_with(sb.web, "ws-opus", None, Some(&["opus", "pcmu", "pcma"])).unwrap();
    assert_eq!(
        welcome["codecs"],
        json!(["opus", "pcmu", "pcma"]),
        "{welcome}"
    );
    let pt = welcome["payload_types"]["opus"]
        .as_u64()
        .and_then(|n| u8::try_from(n).ok())
        .unwrap_or_else(|| panic!("no Opus number in {welcome}"));
    (c, pt)
}

/// Places a call and waits for `answered` naming `codec`; returns the call id.
fn dial_expecting(
    c: &mut WsClient,
    target: &str,
    codec: &str,
    context: &dyn Fn() -> String,
) -> u16 {
    c.send_json(&json!({"type": "call", "target": target}));
    let id = call_id(&expect(c, "calling", 5 * SEC, context));
    let answered = expect(c, "answered", 10 * SEC, context);
    assert_eq!(call_id(&answered), id);
    assert_eq!(answered["codec"], codec, "{answered}");
    id
}

#[test]
fn ws_opus_client_calls_a_pcmu_only_phone_transcoded_both_ways_and_survives_a_bad_packet() {
    let _serial = serial();
    let dir = TestDir::new("ws-opus-to-pcmu");
    let mut bob = bob_with_codecs(&dir, &["g711.so"]);
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: vec![("bob".into(), bob.uri())],
            ..Default::default()
        },
    );
    let (mut c, pt) = opus_client(&sb);
    let ctx = || sb.tails();
    let id = dial_expecting(&mut c, "bob", "opus", &ctx);
    bob.expect_event("CALL_ESTABLISHED", 5 * SEC);
    c.start_tone_opus(id, 1000.0, pt);
    c.pump(2 * SEC);
    // A frame that is not an Opus packet (code 3 with no frame count) mid-call.
    c.send_audio(id, pt, 0, &[0xFB]);
    c.pump(2 * SEC);
    c.stop_tone();
    let malformed = sb.metric(
        "skybridge_packets_dropped_total",
        &[("reason", "malformed")],
    );
    let transcoding = sb.metric("skybridge_transcoding_calls", &[]);
    let pair = sb.metric(
        "skybridge_calls_by_codec_pair",
        &[("client", "opus"), ("sip", "pcmu")],
    );
    c.send_json(&json!({"type": "hangup", "call": id}));
    expect(&mut c, "hangup", 5 * SEC, &ctx);
    bob.expect_event("CALL_CLOSED", 5 * SEC);
    let context = format!("{c:?}\n{}\n{}", sb.tails(), bob.tails());
    assert_eq!(
        malformed, 1.0,
        "the bad packet is dropped and counted\n{context}"
    );
    assert!(
        !c.saw("error") && c.closed.is_none(),
        "the call went on\n{context}"
    );
    assert_eq!((transcoding, pair), (1.0, 1.0), "{context}");
    assert!(
        sb.wait_log(&["codec pair opus/pcmu", "transcoding=true"], 2 * SEC),
        "{context}"
    );
    assert_eq!(
        c.codecs_received.keys().copied().collect::<Vec<_>>(),
        [pt],
        "every frame toward the client is Opus\n{context}"
    );
    let rec = bob
        .recording_path()
        .unwrap_or_else(|| panic!("bob recorded nothing\n{context}"));
    let wav = read_wav(&rec).unwrap();
    assert_tone_samples(
        "Opus client → PCMU phone",
        &wav.mono(),
        wav.rate,
        1000.0,
        3.0,
        &context,
    );
    assert_tone(
        "PCMU phone → Opus client",
        &c.decoded_opus(id),
        440.0,
        3.0,
        &context,
    );
}

#[test]
fn ws_opus_client_to_an_opus_only_phone_passes_opus_through_untranscoded() {
    let _serial = serial();
    let dir = TestDir::new("ws-opus-to-opus");
    let mut bob = bob_with_codecs(&dir, &["opus.so"]);
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: vec![("bob".into(), bob.uri())],
            rtp: "codecs = [\"pcmu\", \"opus\"]".into(),
            ..Default::default()
        },
    );
    let (mut c, pt) = opus_client(&sb);
    let ctx = || sb.tails();
    let id = dial_expecting(&mut c, "bob", "opus", &ctx);
    bob.expect_event("CALL_ESTABLISHED", 5 * SEC);
    c.start_tone_opus(id, 1000.0, pt);
    c.pump(4 * SEC);
    c.stop_tone();
    let transcoding = sb.metric("skybridge_transcoding_calls", &[]);
    let pair = sb.metric(
        "skybridge_calls_by_codec_pair",
        &[("client", "opus"), ("sip", "opus")],
    );
    c.send_json(&json!({"type": "hangup", "call": id}));
    expect(&mut c, "hangup", 5 * SEC, &ctx);
    bob.expect_event("CALL_CLOSED", 5 * SEC);
    let context = format!("{c:?}\n{}\n{}", sb.tails(), bob.tails());
    assert_eq!((transcoding, pair), (0.0, 1.0), "pass-through\n{context}");
    assert!(
        sb.wait_log(&["codec pair opus/opus", "transcoding=false"], 2 * SEC),
        "{context}"
    );
    assert!(
        !sb.logs().contains("transcoding toward a client"),
        "no transcoder was started\n{context}"
    );
    let rec = bob
        .recording_path()
        .unwrap_or_else(|| panic!("bob recorded nothing\n{context}"));
    let wav = read_wav(&rec).unwrap();
    assert_tone_samples(
        "Opus client → Opus phone",
        &wav.mono(),
        wav.rate,
        1000.0,
        3.0,
        &context,
    );
    assert_tone(
        "Opus phone → Opus client",
        &c.decoded_opus(id),
        440.0,
        3.0,
        &context,
    );
}

#[test]
fn a_g711_ws_client_reaches_an_opus_only_phone_through_the_transcoder() {
    let _serial = serial();
    let dir = TestDir::new("ws-pcmu-to-opus");
    let mut bob = bob_with_codecs(&dir, &["opus.so"]);
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: vec![("bob".into(), bob.uri())],
            rtp: "codecs = [\"pcmu\", \"opus\"]".into(),
            ..Default::default()
        },
    );
    // An old client: no `codecs` in hello, so the welcome it gets is unchanged.
    let (mut c, welcome) = WsClient::signed_in(sb.web, "ws", None).unwrap();
    assert_eq!(welcome["codecs"], json!(["pcmu", "pcma"]), "{welcome}");
    assert!(welcome.get("payload_types").is_none(), "{welcome}");
    let ctx = || sb.tails();
    let id = dial_expecting(&mut c, "bob", "pcmu", &ctx);
    bob.expect_event("CALL_ESTABLISHED", 5 * SEC);
    c.start_tone(id, 1000.0);
    c.pump(4 * SEC);
    // The call's stats name both legs' codecs and say it transcodes.
    c.send_json(&json!({"type": "stats", "call": id}));
    let stats = expect(&mut c, "stats", 5 * SEC, &ctx);
    assert_eq!(
        (&stats["codec"], &stats["sip_codec"], &stats["transcoding"]),
        (&json!("pcmu"), &json!("opus"), &json!(true)),
        "{stats}"
    );
    c.stop_tone();
    c.send_json(&json!({"type": "hangup", "call": id}));
    expect(&mut c, "hangup", 5 * SEC, &ctx);
    bob.expect_event("CALL_CLOSED", 5 * SEC);
    let context = format!("{c:?}\n{}\n{}", sb.tails(), bob.tails());
    assert!(
        sb.wait_log(&["codec pair pcmu/opus", "transcoding=true"], 2 * SEC),
        "{context}"
    );
    let rec = bob
        .recording_path()
        .unwrap_or_else(|| panic!("bob recorded nothing\n{context}"));
    let wav = read_wav(&rec).unwrap();
    // The relay codes Opus at the other leg's 8 kHz (SILK narrowband, the cheapest path; same
    // band as the PCMU leg). On this −6 dBFS pure tone at 24 kbit/s that measures ~18 dB SNR
    // (speech codecs are not tone-exact), so the floor is 15 dB: the tone, dominant, all along.
    assert_tone_snr(
        "PCMU client → Opus phone",
        &wav.mono(),
        wav.rate,
        1000.0,
        3.0,
        15.0,
        &context,
    );
    assert_tone(
        "Opus phone → PCMU client",
        &c.decoded_audio(id),
        440.0,
        3.0,
        &context,
    );
}
