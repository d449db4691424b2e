//! Self-tests of the integration-test harness (`tests/common`): they run the real peers on
//! loopback against each other, without skybridge, to prove the harness measures what it claims.

mod common;

use common::audio::{
    active_duration, dominant_frequency, goertzel_power, read_wav, to_i16, tone, tone_snr_db,
    write_tone_wav, write_wav_s16,
};
use common::baresip::{Answer, Baresip, BaresipOpts, Registration};
use common::ffmpeg::{Player, Publisher};
use common::kamailio::{Kamailio, KamailioOpts};
use common::procs::{free_tcp_port, free_udp_port, group_members, wait_until, Child, TestDir};
use common::sipp::{Scenario, Sipp};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------- audio

#[test]
fn tone_wav_round_trip_measures_frequency_snr_and_length() {
    let dir = TestDir::new("audio-rt");
    let p = dir.path().join("tone.wav");
    write_tone_wav(&p, 1000.0, 2.0, 8000).expect("write");
    let wav = read_wav(&p).expect("read");
    assert_eq!((wav.rate, wav.channels), (8000, 1));
    let x = wav.mono();
    assert!((wav.duration_secs() - 2.0).abs() < 1e-9);
    assert_eq!(dominant_frequency(&x, 8000), 1000.0);
    let snr = tone_snr_db(&x, 8000, 1000.0);
    assert!(snr > 60.0, "16-bit quantised sine SNR {snr}");
    assert!((goertzel_power(&x, 8000, 1000.0) - 0.125).abs() < 0.002);
    assert!((active_duration(&x, 8000, 0.01) - 2.0).abs() < 0.011);
}

#[test]
fn snr_is_low_for_the_wrong_tone_and_for_noise() {
    let rate = 8000;
    let a = tone(1000.0, 1.0, rate, 0.5);
    assert!(tone_snr_db(&a, rate, 1050.0) < 0.0);
    assert!(
        tone_snr_db(&a, rate, 1003.0) > 40.0,
        "small frequency error tolerated"
    );
    assert!(
        tone_snr_db(&a, rate, 992.0) > 40.0,
        "small frequency error tolerated"
    );
    // Equal-power second tone: SNR ≈ 0 dB.
    let b = tone(1400.0, 1.0, rate, 0.5);
    let mix: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    let snr = tone_snr_db(&mix, rate, 1000.0);
    assert!(snr.abs() < 1.0, "two equal tones: {snr}");
    assert_eq!(dominant_frequency(&b, rate), 1400.0);
    // Pseudo-random noise has no tone.
    let mut seed = 12345u32;
    let noise: Vec<f64> = (0..8000)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            f64::from(seed >> 16) / 32768.0 - 1.0
        })
        .collect();
    assert!(tone_snr_db(&noise, rate, 1000.0) < -10.0);
    assert_eq!(tone_snr_db(&[0.0; 800], rate, 1000.0), f64::NEG_INFINITY);
}

#[test]
fn active_duration_ignores_silence() {
    let rate = 16000;
    let mut x = vec![0.0; rate as usize / 2];
    x.extend(tone(440.0, 1.5, rate, 0.3));
    x.extend(vec![0.0; rate as usize]);
    let d = active_duration(&x, rate, 0.01);
    assert!((d - 1.5).abs() < 0.02, "active {d}");
    assert_eq!(active_duration(&[], rate, 0.01), 0.0);
}

#[test]
fn reads_ulaw_alaw_and_stereo_wavs_written_by_sox() {
    let dir = TestDir::new("audio-sox");
    for (args, rate, ch) in [
        (vec!["-r", "8000", "-c", "1", "-e", "u-law"], 8000, 1),
        (vec!["-r", "8000", "-c", "1", "-e", "a-law"], 8000, 1),
        (vec!["-r", "48000", "-c", "2", "-b", "16"], 48000, 2),
    ] {
        let p = dir.path().join(format!("t{}{ch}{}.wav", rate, args[5]));
        let st = Command::new("sox")
            .args(["-n"])
            .args(&args)
            .arg(&p)
            .args(["synth", "1", "sine", "1000", "vol", "0.5"])
            .status()
            .expect("run sox");
        assert!(st.success());
        let wav = read_wav(&p).expect("read sox wav");
        assert_eq!((wav.rate, wav.channels), (rate, ch), "{args:?}");
        let x = wav.mono();
        assert!((wav.duration_secs() - 1.0).abs() < 0.01);
        assert_eq!(dominant_frequency(&x, rate), 1000.0, "{args:?}");
        let snr = tone_snr_db(&x, rate, 1000.0);
        assert!(snr > 30.0, "{args:?}: snr {snr}");
    }
    // A header claiming more data than present (killed recorder) is clamped, not an error.
    let p = dir.path().join("trunc.wav");
    write_wav_s16(&p, 8000, 1, &to_i16(&tone(500.0, 0.5, 8000, 0.5))).expect("write");
    let mut bytes = std::fs::read(&p).expect("read");
    bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&p, bytes).expect("write");
    assert_eq!(read_wav(&p).expect("clamped").samples.len(), 4000);
}

// ---------------------------------------------------------------- procs

#[test]
fn free_ports_are_bindable_on_loopback() {
    let u = free_udp_port();
    std::net::UdpSocket::bind(("127.0.0.1", u)).expect("udp port free");
    let t = free_tcp_port();
    std::net::TcpListener::bind(("127.0.0.1", t)).expect("tcp port free");
}

#[test]
fn wait_until_gives_up_after_its_timeout() {
    let start = Instant::now();
    assert!(!wait_until(Duration::from_millis(150), || false));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(150) && took < SEC, "{took:?}");
    let mut n = 0;
    assert!(wait_until(SEC, || {
        n += 1;
        n == 3
    }));
}

#[test]
fn child_and_its_forked_group_are_killed_on_drop() {
    let dir = TestDir::new("procs-kill");
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("sleep 30 & echo started; sleep 30");
    let child = Child::spawn("sleeper", &mut cmd, dir.path());
    let pgid = child.pid();
    assert!(wait_until(5 * SEC, || group_members(pgid).len() >= 2));
    assert!(wait_until(5 * SEC, || child
        .stdout_text()
        .contains("started")));
    drop(child);
    assert!(
        group_members(pgid).is_empty(),
        "processes of group {pgid} survived"
    );
}

// ---------------------------------------------------------------- baresip

fn tone_file(dir: &TestDir, secs: f64) -> std::path::PathBuf {
    let p = dir.path().join("tone1k.wav");
    write_tone_wav(&p, 1000.0, secs, 8000).expect("write tone");
    p
}

#[test]
fn baresip_call_on_loopback_carries_a_1khz_tone_end_to_end() {
    let dir = TestDir::new("baresip-tone");
    let mut bob = Baresip::start(BaresipOpts {
        name: "bob".into(),
        user: "bob".into(),
        record: true,
        answer: Answer::Auto,
        dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    });
    let mut alice = Baresip::start(BaresipOpts {
        name: "alice".into(),
        user: "alice".into(),
        play_wav: Some(tone_file(&dir, 10.0)),
        dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    });
    alice.dial(&bob.uri());
    alice.expect_event("CALL_ESTABLISHED", 5 * SEC);
    let established = Instant::now();
    let incoming = bob.expect_event("CALL_ESTABLISHED", 5 * SEC);
    assert!(incoming.peer.contains("alice@127.0.0.1"), "{incoming:?}");
    thread::sleep(3 * SEC);
    alice.hangup();
    let call_secs = established.elapsed().as_secs_f64();
    bob.expect_event("CALL_CLOSED", 5 * SEC);

    // baresip chose loopback as its only local address, which it uses for Via/Contact and
    // the SDP c=/o= lines (verified by SIP trace while building the harness).
    for b in [&bob, &alice] {
        let log = b.log();
        let local = log
            .lines()
            .find(|l| l.starts_with("Local network address:"))
            .unwrap_or_default();
        assert!(
            local.contains("IPv4=lo|127.0.0.1") && !local.contains("IPv6="),
            "baresip local address: {local:?}\n{}",
            b.tails()
        );
        assert!(log.contains("laddr=127.0.0.1"), "{}", b.tails());
    }

    let rec = bob.recording_path().expect("bob recorded the call");
    let wav = read_wav(&rec).expect("read recording");
    assert_eq!((wav.rate, wav.channels), (8000, 1));
    let x = wav.mono();
    let snr = tone_snr_db(&x, 8000, 1000.0);
    assert!(snr > 20.0, "SNR {snr:.1} dB\n{}", bob.tails());
    assert_eq!(dominant_frequency(&x, 8000), 1000.0);
    let len = wav.duration_secs();
    assert!(
        (len - call_secs).abs() < 0.1 * call_secs,
        "recording {len:.2}s vs call {call_secs:.2}s"
    );
    let active = active_duration(&x, 8000, 0.05);
    assert!(active > 0.9 * call_secs - 0.3, "active {active:.2}s");
}

#[test]
fn baresip_reject_mode_answers_486() {
    let mut bob = Baresip::start(BaresipOpts {
        name: "bob-busy".into(),
        answer: Answer::RejectBusy,
        ..Default::default()
    });
    let mut alice = Baresip::start(BaresipOpts {
        name: "alice".into(),
        ..Default::default()
    });
    alice.dial(&bob.uri());
    let closed = alice.expect_event("CALL_CLOSED", 5 * SEC);
    assert!(closed.param.contains("486"), "{closed:?}");
    bob.expect_event("CALL_INCOMING", SEC);
}

// ---------------------------------------------------------------- sipp

fn caller(name: &str, auth: Option<(&str, &str)>) -> Baresip {
    Baresip::start(BaresipOpts {
        name: name.into(),
        user: "caller".into(),
        auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        ..Default::default()
    })
}

#[test]
fn sipp_busy_and_404_scenarios_reject_with_their_codes() {
    for (scenario, code) in [(Scenario::Busy, "486"), (Scenario::NotFound, "404")] {
        let mut sipp = Sipp::uas(scenario, free_udp_port());
        let mut b = caller("caller", None);
        b.dial(&sipp.uri("x"));
        let closed = b.expect_event("CALL_CLOSED", 5 * SEC);
        assert!(closed.param.starts_with(code), "{closed:?}");
        let r = sipp.wait_exit(5 * SEC);
        assert_eq!(
            (r.exit_code, r.successful, r.failed),
            (Some(0), 1, 0),
            "{}",
            sipp.tails()
        );
    }
}

#[test]
fn sipp_ring_forever_rings_then_answers_cancel_with_487() {
    let mut sipp = Sipp::uas(Scenario::RingForever, free_udp_port());
    let mut b = caller("caller", None);
    b.dial(&sipp.uri("x"));
    b.expect_event("CALL_RINGING", 5 * SEC);
    assert!(b.wait_for_event("CALL_ESTABLISHED", SEC).is_none());
    b.hangup();
    b.expect_event("CALL_CLOSED", 5 * SEC);
    let r = sipp.wait_exit(5 * SEC);
    assert_eq!(
        (r.exit_code, r.successful),
        (Some(0), 1),
        "{}",
        sipp.tails()
    );
    let msgs = sipp.messages();
    assert!(msgs.contains("SIP/2.0 487 Request Terminated"), "{msgs}");
    assert!(msgs.contains("CANCEL sip:"), "{msgs}");
}

#[test]
fn sipp_answer_holds_the_call_until_bye() {
    let mut sipp = Sipp::uas(Scenario::Answer, free_udp_port());
    let mut b = caller("caller", None);
    b.dial(&sipp.uri("x"));
    b.expect_event("CALL_ESTABLISHED", 5 * SEC);
    thread::sleep(Duration::from_millis(500));
    assert!(b.history().iter().all(|e| e.kind != "CALL_CLOSED"));
    b.hangup();
    let r = sipp.wait_exit(5 * SEC);
    assert_eq!(
        (r.exit_code, r.successful),
        (Some(0), 1),
        "{}",
        sipp.tails()
    );
    assert!(sipp
        .messages()
        .contains(&format!("m=audio {} RTP/AVP 0", sipp.media_port())));
}

#[test]
fn sipp_auth_challenges_then_accepts_good_credentials_only() {
    let creds = Scenario::Auth {
        user: "alice".into(),
        pass: "s3cret".into(),
    };
    let mut sipp = Sipp::uas(creds.clone(), free_udp_port());
    let mut b = caller("good", Some(("alice", "s3cret")));
    b.dial(&sipp.uri("x"));
    b.expect_event("CALL_ESTABLISHED", 5 * SEC);
    b.hangup();
    let r = sipp.wait_exit(5 * SEC);
    assert_eq!(
        (r.exit_code, r.successful),
        (Some(0), 1),
        "{}",
        sipp.tails()
    );
    let msgs = sipp.messages();
    assert!(msgs.contains("SIP/2.0 401 Unauthorized") && msgs.contains("Authorization: Digest"));

    let mut sipp = Sipp::uas(creds, free_udp_port());
    let mut b = caller("bad", Some(("alice", "wrong")));
    b.dial(&sipp.uri("x"));
    let closed = b.expect_event("CALL_CLOSED", 5 * SEC);
    assert!(closed.param.starts_with("403"), "{closed:?}");
    let r = sipp.wait_exit(5 * SEC);
    assert_eq!((r.exit_code, r.failed), (Some(1), 1), "{}", sipp.tails());
}

// ---------------------------------------------------------------- kamailio

#[test]
fn kamailio_registers_with_digest_and_proxies_a_call() {
    let kam = Kamailio::start(KamailioOpts {
        users: vec![
            ("bob".into(), "bobpw".into()),
            ("alice".into(), "alicepw".into()),
        ],
        auth_invite: false,
    });
    let reg = |user: &str, pass: &str| Registration {
        registrar: kam.addr(),
        user: user.into(),
        pass: pass.into(),
    };
    let mut bob = Baresip::start(BaresipOpts {
        name: "bob".into(),
        register_to: Some(reg("bob", "bobpw")),
        ..Default::default()
    });
    let mut alice = Baresip::start(BaresipOpts {
        name: "alice".into(),
        register_to: Some(reg("alice", "alicepw")),
        ..Default::default()
    });
    alice.dial(&kam.uri("bob"));
    alice.expect_event("CALL_ESTABLISHED", 5 * SEC);
    bob.expect_event("CALL_ESTABLISHED", 5 * SEC);
    alice.hangup();
    bob.expect_event("CALL_CLOSED", 5 * SEC);
    let log = kam.log();
    assert!(log.contains("REQ INVITE sip:bob@"), "{}", kam.tails());
    assert!(
        log.contains("REQ BYE"),
        "BYE must be record-routed through kamailio"
    );

    // A wrong password is refused.
    let dir = TestDir::new("kam-bad");
    let result = std::panic::catch_unwind(|| {
        Baresip::start(BaresipOpts {
            name: "mallory".into(),
            register_to: Some(reg("bob", "nope")),
            dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
    });
    assert!(
        result.is_err(),
        "registration with a bad password succeeded"
    );
}

// ---------------------------------------------------------------- ffmpeg

#[test]
fn ffmpeg_publisher_to_listening_player_carries_the_tone() {
    let dir = TestDir::new("ffmpeg");
    let url = format!("rtmp://127.0.0.1:{}/live/test", free_tcp_port());
    let out = dir.path().join("played.wav");
    let mut player = Player::new(&url, 1.5, &out);
    player.listen = true;
    let mut p = player.spawn("player", dir.path());
    thread::sleep(Duration::from_millis(300));
    let mut publisher = Publisher::new(&url, 1000, 3.0).spawn("publisher", dir.path());
    let exited = p.wait_timeout(10 * SEC);
    assert!(exited.is_some_and(|s| s.success()), "{}", p.tails(2000));
    publisher.stop(SEC);
    let wav = read_wav(&out).expect("player wrote a wav");
    let x = wav.mono();
    assert_eq!(wav.rate, 8000);
    assert!(
        (wav.duration_secs() - 1.5).abs() < 0.15,
        "{}",
        wav.duration_secs()
    );
    let snr = tone_snr_db(&x, wav.rate, 1000.0);
    assert!(snr > 25.0, "snr {snr}");
}

// ---------------------------------------------------------------- link proxy

/// An echo server on loopback for the proxy tests; ends with the listener's first client.
fn echo_server() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.set_read_timeout(Some(10 * SEC));
            while let Ok(n) = std::io::Read::read(&mut s, &mut buf) {
                if n == 0 || std::io::Write::write_all(&mut s, &buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    addr
}

fn round_trip(s: &mut std::net::TcpStream, msg: &[u8]) -> Option<Duration> {
    use std::io::{Read, Write};
    let t0 = Instant::now();
    s.write_all(msg).ok()?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).ok()?;
    (got == msg).then(|| t0.elapsed())
}

#[test]
fn link_proxy_forwards_freezes_then_bursts_and_blackholes_without_closing() {
    use common::linkproxy::LinkProxy;
    let proxy = LinkProxy::start(echo_server());
    let mut s = std::net::TcpStream::connect(proxy.addr).expect("connect");
    s.set_read_timeout(Some(5 * SEC)).expect("timeout");
    let rt = round_trip(&mut s, b"hello").expect("echo through the proxy");
    assert!(rt < SEC, "a passing link answers at once: {rt:?}");

    proxy.freeze_for(Duration::from_millis(700));
    assert!(proxy.frozen());
    let rt = round_trip(&mut s, b"during the stall").expect("echo after the stall");
    assert!(
        rt >= Duration::from_millis(600),
        "a frozen link holds bytes until it thaws: {rt:?}"
    );
    assert!(!proxy.frozen());

    proxy.blackhole();
    s.set_read_timeout(Some(Duration::from_millis(800)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    std::io::Write::write_all(&mut s, b"into the void").expect("write is accepted");
    let r = std::io::Read::read(&mut s, &mut buf);
    assert!(
        matches!(&r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "a blackholed link neither answers nor closes: {r:?}"
    );
}
