//! skybridge end to end against real SIP software on loopback: baresip (a phone), SIPp (canned
//! UAS behaviours), Kamailio (proxy with digest auth), ffmpeg (RTMP publisher/player) and an
//! RTMP client that sees skybridge's call commands.
//!
//! Every test starts its own skybridge with free ports and its own peers; they run one at a
//! time (a process-wide lock) so that audio timing is not disturbed by a parallel test.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::scenario::{anonymous, dialplan, serial, user_block, MIN_SNR_DB};

use common::audio::{
    active_duration, dominant_frequency, read_wav, tone_snr_db, write_tone_wav, Wav,
};
use common::baresip::{Answer, Baresip, BaresipOpts, Registration};
use common::ffmpeg::{Player, Publisher};
use common::kamailio::{Kamailio, KamailioOpts};
use common::procs::{free_udp_port, TestDir};
use common::rtmp_client::RtmpClient;
use common::sipp::{Scenario, Sipp};
use common::skybridge::{Skybridge, SkybridgeOpts};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);

/// Reads a WAV, panicking with `context` when it is missing or unreadable.
fn wav_or_panic(path: Option<&Path>, context: &str) -> Wav {
    let Some(path) = path else {
        panic!("no recording\n{context}");
    };
    read_wav(path).unwrap_or_else(|e| panic!("read {}: {e}\n{context}", path.display()))
}

/// Asserts `wav` carries a clean `freq` tone (dominant, SNR ≥ MIN_SNR_DB, ≥ `min_active` s).
fn assert_tone(wav: &Wav, freq: f64, min_active: f64, context: &str) {
    let x = wav.mono();
    let snr = tone_snr_db(&x, wav.rate, freq);
    let dominant = dominant_frequency(&x, wav.rate);
    let active = active_duration(&x, wav.rate, 0.01);
    eprintln!(
        "[measure] {freq} Hz: SNR {snr:.1} dB, dominant {dominant} Hz, active {active:.2} s of {:.2} s",
        wav.duration_secs()
    );
    assert!(
        snr > MIN_SNR_DB && dominant == freq && active >= min_active,
        "{freq} Hz tone: SNR {snr:.1} dB (want > {MIN_SNR_DB}), dominant {dominant} Hz, \
         active {active:.2} s (want ≥ {min_active}) of {:.2} s\n{context}",
        wav.duration_secs()
    );
}

fn bob(dir: &TestDir, play: Option<std::path::PathBuf>) -> Baresip {
    Baresip::start(BaresipOpts {
        name: "bob".into(),
        user: "bob".into(),
        record: true,
        answer: Answer::Auto,
        play_wav: play,
        dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
}

// ---------------------------------------------------------------- RTMP → SIP phone

#[test]
fn rtmp_tone_reaches_baresip() {
    let _serial = serial();
    let dir = TestDir::new("rtmp-to-baresip");
    let mut bob = bob(&dir, None);
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: dialplan(&[("bob", &bob.uri())]),
            ..Default::default()
        },
    );
    let mut publisher =
        Publisher::new(&sb.rtmp_url("call/bob"), 1000, 4.0).spawn("publisher", dir.path());
    let ctx = |bob: &Baresip, sb: &Skybridge, p: &common::procs::Child| {
        format!("{}\n{}\n{}", bob.tails(), sb.tails(), p.tails(1500))
    };
    if bob.wait_for_event("CALL_ESTABLISHED", 5 * SEC).is_none() {
        panic!("bob never answered\n{}", ctx(&bob, &sb, &publisher));
    }
    let established = Instant::now();
    if bob.wait_for_event("CALL_CLOSED", 10 * SEC).is_none() {
        panic!(
            "the call did not end after the publish\n{}",
            ctx(&bob, &sb, &publisher)
        );
    }
    let call_secs = established.elapsed().as_secs_f64();
    publisher.wait_timeout(5 * SEC);

    let context = ctx(&bob, &sb, &publisher);
    let wav = wav_or_panic(bob.recording_path().as_deref(), &context);
    let x = wav.mono();
    assert_tone(&wav, 1000.0, 3.0, &context);
    let active = active_duration(&x, wav.rate, 0.01);
    eprintln!("[measure] tone heard {active:.2} s, call {call_secs:.2} s");
    assert!(
        (active - call_secs).abs() <= 0.1 * call_secs,
        "tone heard for {active:.2} s of a {call_secs:.2} s call (recording {:.2} s)\n{context}",
        wav.duration_secs()
    );

    let metrics = sb.metrics();
    let m =
        |name: &str, labels: &[(&str, &str)]| common::skybridge::metric_sum(&metrics, name, labels);
    assert!(
        m("skybridge_calls_total", &[("outcome", "answered")]) >= 1.0
            && m(
                "skybridge_packets_total",
                &[("leg", "rtmp"), ("direction", "in")]
            ) > 0.0
            && m(
                "skybridge_packets_total",
                &[("leg", "rtp"), ("direction", "out")]
            ) > 0.0
            && m(
                "skybridge_packets_total",
                &[("leg", "rtp"), ("direction", "in")]
            ) > 0.0,
        "metrics after an answered call:\n{metrics}\n{context}"
    );
}

// ---------------------------------------------------------------- SIP phone → RTMP player

#[test]
fn baresip_audio_reaches_rtmp_player() {
    let _serial = serial();
    let dir = TestDir::new("baresip-to-player");
    let tone = dir.path().join("tone440.wav");
    write_tone_wav(&tone, 440.0, 20.0, 8000).unwrap();
    let mut bob = bob(&dir, Some(tone));
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: dialplan(&[("bob", &bob.uri())]),
            ..Default::default()
        },
    );
    let out = dir.path().join("played.wav");
    let mut player = Player::new(&sb.rtmp_url("call/bob"), 3.0, &out).spawn("player", dir.path());
    let exited = player.wait_timeout(15 * SEC);
    let context = format!("{}\n{}\n{}", player.tails(2000), sb.tails(), bob.tails());
    assert!(
        exited.is_some_and(|s| s.success()),
        "player did not finish: {exited:?}\n{context}"
    );
    assert!(
        bob.wait_for_event("CALL_ESTABLISHED", SEC).is_some(),
        "bob never answered\n{context}"
    );
    let wav = wav_or_panic(Some(&out), &context);
    assert_tone(&wav, 440.0, 2.0, &context);
    // The player leaving is the listen-only call's end.
    assert!(
        bob.wait_for_event("CALL_CLOSED", 5 * SEC).is_some(),
        "the call outlived its only client\n{context}"
    );
}

// ---------------------------------------------------------------- through a proxy with digest

#[test]
fn call_through_kamailio_with_digest() {
    let _serial = serial();
    let dir = TestDir::new("kamailio-digest");
    let kam = Kamailio::start(KamailioOpts {
        users: vec![
            ("bob".into(), "bobpw".into()),
            ("studio".into(), "studiopw".into()),
        ],
        auth_invite: true,
    });
    let mut bob = Baresip::start(BaresipOpts {
        name: "bob".into(),
        record: true,
        register_to: Some(Registration {
            registrar: kam.addr(),
            user: "bob".into(),
            pass: "bobpw".into(),
        }),
        dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    });
    // Kamailio challenges with realm = From domain; skybridge's From domain is sip.domain.
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            sip: format!("upstream = \"{}\"\ndomain = \"127.0.0.1\"", kam.addr()),
            auth: "required = true\nanonymous_targets = []".into(),
            dialplan: dialplan(&[("bob", &kam.uri("bob"))]),
            tail: user_block(
                "studio",
                "studio-token",
                &["bob"],
                Some(("studio", "studiopw", "127.0.0.1")),
            ),
            ..Default::default()
        },
    );
    let url = sb.rtmp_url("call/bob?token=studio-token");
    let mut publisher = Publisher::new(&url, 1000, 3.0).spawn("publisher", dir.path());
    let ctx = |bob: &Baresip, p: &common::procs::Child| {
        format!(
            "{}\n{}\n{}\n{}",
            kam.tails(),
            sb.tails(),
            bob.tails(),
            p.tails(1500)
        )
    };
    if bob.wait_for_event("CALL_ESTABLISHED", 5 * SEC).is_none() {
        panic!("bob never answered\n{}", ctx(&bob, &publisher));
    }
    if bob.wait_for_event("CALL_CLOSED", 10 * SEC).is_none() {
        panic!("the call did not end\n{}", ctx(&bob, &publisher));
    }
    publisher.wait_timeout(5 * SEC);
    let context = ctx(&bob, &publisher);
    let wav = wav_or_panic(bob.recording_path().as_deref(), &context);
    assert_tone(&wav, 1000.0, 2.0, &context);

    let log = kam.log();
    assert!(
        log.contains("AUTH CHALLENGE INVITE from studio")
            && log.contains("AUTH OK INVITE as studio"),
        "Kamailio did not challenge skybridge's INVITE, or skybridge did not answer it\n{context}"
    );
    assert!(
        log.contains("REQ BYE"),
        "the BYE did not follow the Record-Route through Kamailio\n{context}"
    );
}

// ---------------------------------------------------------------- SIPp digest UAS

#[test]
fn sipp_digest_challenge_is_answered() {
    let _serial = serial();
    let dir = TestDir::new("sipp-digest");
    let mut sipp = Sipp::uas(
        Scenario::Auth {
            user: "alice".into(),
            pass: "s3cret".into(),
        },
        free_udp_port(),
    );
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: "required = true\nanonymous_targets = []".into(),
            dialplan: dialplan(&[("uas", &sipp.uri("uas"))]),
            tail: user_block(
                "alice",
                "alice-token",
                &["uas"],
                Some(("alice", "s3cret", "skybridge.test")),
            ),
            ..Default::default()
        },
    );
    let url = sb.rtmp_url("call/uas?token=alice-token");
    let mut publisher = Publisher::new(&url, 1000, 2.0).spawn("publisher", dir.path());
    // SIPp exits after the BYE skybridge sends when the publish ends.
    let r = sipp.wait_exit(10 * SEC);
    publisher.wait_timeout(5 * SEC);
    let context = format!(
        "{}\n{}\n{}",
        sipp.tails(),
        sb.tails(),
        publisher.tails(1500)
    );
    assert_eq!(
        (r.exit_code, r.successful, r.failed),
        (Some(0), 1, 0),
        "SIPp result\n{context}"
    );
    let msgs = sipp.messages();
    assert!(
        msgs.contains("SIP/2.0 401 Unauthorized")
            && msgs.contains("username=\"alice\"")
            && msgs.contains("realm=\"skybridge.test\"")
            && msgs.contains("BYE sip:"),
        "expected 401, an Authorization for alice and a BYE:\n{msgs}\n{context}"
    );
    assert!(
        sb.metric("skybridge_calls_total", &[("outcome", "answered")]) >= 1.0,
        "{}\n{context}",
        sb.metrics()
    );
}

#[test]
fn sipp_digest_wrong_password_fails_the_call() {
    let _serial = serial();
    let dir = TestDir::new("sipp-digest-bad");
    let mut sipp = Sipp::uas(
        Scenario::Auth {
            user: "alice".into(),
            pass: "s3cret".into(),
        },
        free_udp_port(),
    );
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: "required = true\nanonymous_targets = []".into(),
            dialplan: dialplan(&[("uas", &sipp.uri("uas"))]),
            tail: user_block(
                "alice",
                "alice-token",
                &["uas"],
                Some(("alice", "wrong", "skybridge.test")),
            ),
            ..Default::default()
        },
    );
    let mut client = RtmpClient::connect(sb.rtmp, "call").unwrap();
    client.publish("uas?token=alice-token").unwrap();
    let hangup = client.wait_command("onHangup", 5 * SEC);
    let r = sipp.wait_exit(5 * SEC);
    let context = format!("{client:?}\n{}\n{}", sipp.tails(), sb.tails());
    assert_eq!(
        hangup.as_ref().and_then(|h| h.number(0)),
        Some(403.0),
        "the client must learn the 403\n{context}"
    );
    assert_eq!(
        (r.exit_code, r.successful, r.failed),
        (Some(1), 0, 1),
        "SIPp must count the call as failed\n{context}"
    );
    let failed = sb.metric("skybridge_calls_total", &[("outcome", "failed")]);
    assert!(failed >= 1.0, "{}\n{context}", sb.metrics());
    assert_eq!(
        sb.metric("skybridge_calls_total", &[("outcome", "answered")]),
        0.0,
        "{}\n{context}",
        sb.metrics()
    );
}

// ---------------------------------------------------------------- failures reach the client

#[test]
fn busy_not_found_and_no_answer_reach_the_client() {
    let _serial = serial();
    let dir = TestDir::new("failures");
    let mut busy = Sipp::uas(Scenario::Busy, free_udp_port());
    let mut missing = Sipp::uas(Scenario::NotFound, free_udp_port());
    let mut ringing = Sipp::uas(Scenario::RingForever, free_udp_port());
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            sip: "ring_timeout_secs = 2".into(),
            auth: anonymous(&["busy", "missing", "ringing"]),
            dialplan: dialplan(&[
                ("busy", &busy.uri("busy")),
                ("missing", &missing.uri("missing")),
                ("ringing", &ringing.uri("ringing")),
            ]),
            ..Default::default()
        },
    );
    // Publishing and playing both dial; cover both.
    let cases: [(&str, bool, f64, &mut Sipp); 3] = [
        ("busy", true, 486.0, &mut busy),
        ("missing", false, 404.0, &mut missing),
        ("ringing", true, 480.0, &mut ringing),
    ];
    for (target, publish, code, sipp) in cases {
        let started = Instant::now();
        let mut client = RtmpClient::connect(sb.rtmp, "call").unwrap();
        if publish {
            client.publish(target).unwrap();
        } else {
            client.play(target).unwrap();
        }
        let hangup = client.wait_command("onHangup", 6 * SEC);
        let took = started.elapsed();
        let r = sipp.wait_exit(5 * SEC);
        let context = format!("{target}: {client:?}\n{}\n{}", sipp.tails(), sb.tails());
        assert_eq!(
            hangup.as_ref().and_then(|h| h.number(0)),
            Some(code),
            "onHangup code\n{context}"
        );
        assert_eq!(
            (r.exit_code, r.successful),
            (Some(0), 1),
            "SIPp result\n{context}"
        );
        if target == "ringing" {
            assert!(
                client
                    .commands
                    .iter()
                    .any(|c| c.name == "onRinging" && c.number(0) == Some(180.0)),
                "the client must hear the ringing first\n{context}"
            );
            assert!(
                took >= Duration::from_millis(1900) && took < 5 * SEC,
                "no-answer after {took:?}, ring_timeout_secs = 2\n{context}"
            );
            let msgs = sipp.messages();
            assert!(
                msgs.contains("CANCEL sip:") && msgs.contains("SIP/2.0 487"),
                "skybridge must CANCEL (and SIPp answer 487):\n{msgs}\n{context}"
            );
        }
    }
}

// ---------------------------------------------------------------- built-in targets

#[test]
fn echo_builtin_returns_the_tone() {
    let _serial = serial();
    let dir = TestDir::new("echo");
    let sb = Skybridge::start(dir.path(), &SkybridgeOpts::default());
    let url = sb.rtmp_url("call/echo");
    // Not the `tone` target's 1 kHz: what comes back must be what was sent.
    let mut publisher = Publisher::new(&url, 700, 6.0).spawn("publisher", dir.path());
    let out = dir.path().join("echo.wav");
    let mut player = Player::new(&url, 3.0, &out).spawn("player", dir.path());
    let exited = player.wait_timeout(15 * SEC);
    publisher.stop(SEC);
    let context = format!(
        "{}\n{}\n{}",
        player.tails(2000),
        publisher.tails(1500),
        sb.tails()
    );
    assert!(
        exited.is_some_and(|s| s.success()),
        "player: {exited:?}\n{context}"
    );
    let wav = wav_or_panic(Some(&out), &context);
    assert_tone(&wav, 700.0, 1.5, &context);
}

#[test]
fn tone_builtin_plays_1khz() {
    let _serial = serial();
    let dir = TestDir::new("tone");
    let sb = Skybridge::start(dir.path(), &SkybridgeOpts::default());
    let out = dir.path().join("tone.wav");
    let mut player = Player::new(&sb.rtmp_url("call/tone"), 2.0, &out).spawn("player", dir.path());
    let exited = player.wait_timeout(15 * SEC);
    let context = format!("{}\n{}", player.tails(2000), sb.tails());
    assert!(
        exited.is_some_and(|s| s.success()),
        "player: {exited:?}\n{context}"
    );
    let wav = wav_or_panic(Some(&out), &context);
    assert_tone(&wav, 1000.0, 1.5, &context);
}

// ---------------------------------------------------------------- shutdown

#[test]
fn sigterm_hangs_up_calls_with_bye() {
    let _serial = serial();
    let dir = TestDir::new("sigterm");
    let mut bob = bob(&dir, None);
    let mut sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: dialplan(&[("bob", &bob.uri())]),
            ..Default::default()
        },
    );
    let publisher =
        Publisher::new(&sb.rtmp_url("call/bob"), 1000, 30.0).spawn("publisher", dir.path());
    if bob.wait_for_event("CALL_ESTABLISHED", 5 * SEC).is_none() {
        panic!(
            "bob never answered\n{}\n{}\n{}",
            bob.tails(),
            sb.tails(),
            publisher.tails(1500)
        );
    }
    thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    sb.child().signal("TERM");
    let closed = bob.wait_for_event("CALL_CLOSED", 5 * SEC);
    let status = sb.child().wait_timeout(5 * SEC);
    let context = format!("{}\n{}", bob.tails(), sb.tails());
    let closed = closed.unwrap_or_else(|| panic!("bob's call stayed up after SIGTERM\n{context}"));
    assert!(
        signalled.elapsed() < 6 * SEC,
        "took {:?}\n{context}",
        signalled.elapsed()
    );
    // baresip reports a BYE from the peer as ECONNRESET.
    assert!(
        closed.param.contains("Connection reset by peer"),
        "the call must end with skybridge's BYE, not a timeout ({closed:?})\n{context}"
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "skybridge exit status\n{context}"
    );
}
