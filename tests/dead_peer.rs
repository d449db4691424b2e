//! Dead-peer detection on every client transport (README, "Dead peers"): a client whose TCP
//! link is silently blackholed mid-call (no FIN, no RST: [`LinkProxy::blackhole`]) is declared
//! dead after `limits.dead_peer_secs` and its call hung up with a BYE that reaches baresip
//! within that time, not before; a play-only RTMP client that sends nothing but answers the
//! server's pings stays in its call.
//!
//! `dead_peer_secs` is 3 here so the file runs in well under a minute. Tests run one at a time.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::baresip::{Baresip, BaresipOpts};
use common::ffmpeg::{Player, Publisher};
use common::linkproxy::LinkProxy;
use common::procs::{wait_until, TestDir};
use common::scenario::{anonymous, serial};
use common::skybridge::{Skybridge, SkybridgeOpts};
use common::ws_client::WsClient;
use serde_json::{json, Value};

const SEC: Duration = Duration::from_secs(1);
/// `limits.dead_peer_secs` in these tests.
const DEAD_PEER: u64 = 3;

fn bob_phone(dir: &TestDir) -> Baresip {
    Baresip::start(BaresipOpts {
        record: false,
        ..BaresipOpts::answering_with_tone(dir.path(), "bob", 440.0, 60.0)
    })
}

fn relay_to_bob(dir: &TestDir, bob: &Baresip) -> Skybridge {
    Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: vec![("bob".into(), bob.uri())],
            limits: format!("dead_peer_secs = {DEAD_PEER}"),
            ..Default::default()
        },
    )
}

/// Blackholes `proxy` now and asserts baresip sees the call closed after about the dead-peer
/// time: not before `DEAD_PEER - 1` s, not after `DEAD_PEER + 2` s; then that skybridge counted
/// one dead peer on `transport`, logged it naming the peer, and sent a BYE.
fn blackhole_and_expect_bye(
    proxy: &LinkProxy,
    bob: &mut Baresip,
    sb: &Skybridge,
    transport: &str,
    context: &dyn Fn() -> String,
) {
    proxy.blackhole();
    let blackholed = Instant::now();
    let closed = bob.wait_for_event("CALL_CLOSED", Duration::from_secs(DEAD_PEER + 4));
    let took = blackholed.elapsed();
    eprintln!("[measure] {transport}: call closed {took:.2?} after the blackhole (dead_peer_secs = {DEAD_PEER})");
    assert!(
        closed.is_some(),
        "{transport}: the call outlived its blackholed client\n{}",
        context()
    );
    eprintln!(
        "[measure] {transport}: bob's CALL_CLOSED: {:?}",
        closed.as_ref().map(|e| &e.param)
    );
    assert!(
        took >= Duration::from_secs(DEAD_PEER - 1),
        "{transport}: hung up {took:?} after the blackhole: before the dead-peer time\n{}",
        context()
    );
    assert!(
        took <= Duration::from_secs(DEAD_PEER + 2),
        "{transport}: hung up only {took:?} after the blackhole\n{}",
        context()
    );
    assert!(
        wait_until(2 * SEC, || {
            sb.metric(
                "skybridge_client_dead_peer_total",
                &[("transport", transport)],
            ) == 1.0
        }),
        "{transport}: dead peer not counted\n{}",
        sb.metrics()
    );
    let log = sb.log();
    assert!(
        log.lines().any(|l| l.contains("client dead peer")
            && l.contains(transport)
            && l.contains("127.0.0.1:")),
        "{transport}: no log line naming the dead peer\n{}",
        context()
    );
    // baresip reports a BYE from the far end as "Connection reset by peer" (ECONNRESET).
    let closed = closed.unwrap();
    assert!(
        closed.param.contains("Connection reset by peer"),
        "{transport}: the call did not end with a BYE from skybridge: {closed:?}\n{}",
        context()
    );
    assert!(
        wait_until(2 * SEC, || sb.metric("skybridge_calls_active", &[]) == 0.0),
        "{transport}: call state left behind\n{}",
        context()
    );
}

#[test]
fn rtmp_publisher_blackholed_mid_call_is_hung_up_after_dead_peer_secs() {
    let _serial = serial();
    let dir = TestDir::new("deadpeer-rtmp");
    let mut bob = bob_phone(&dir);
    let sb = relay_to_bob(&dir, &bob);
    let proxy = LinkProxy::start(sb.rtmp);
    let url = format!("rtmp://{}/call/bob", proxy.addr);
    let publisher = Publisher::new(&url, 1000, 60.0).spawn("publisher", dir.path());
    if bob.wait_for_event("CALL_ESTABLISHED", 8 * SEC).is_none() {
        panic!(
            "bob never answered\n{}\n{}\n{}",
            sb.tails(),
            bob.tails(),
            publisher.tails(1500)
        );
    }
    std::thread::sleep(SEC);
    let ctx = || format!("{}\n{}", sb.tails(), publisher.tails(1500));
    blackhole_and_expect_bye(&proxy, &mut bob, &sb, "rtmp", &ctx);
}

#[test]
fn rtmp_play_only_client_that_answers_pings_stays_in_its_call() {
    let _serial = serial();
    let dir = TestDir::new("deadpeer-rtmp-player");
    let mut bob = bob_phone(&dir);
    let sb = relay_to_bob(&dir, &bob);
    // Through a proxy that passes everything: the same path as the blackhole tests.
    let proxy = LinkProxy::start(sb.rtmp);
    let url = format!("rtmp://{}/call/bob", proxy.addr);
    let out = dir.path().join("played.wav");
    let secs = 3 * DEAD_PEER + 1;
    let mut player = Player::new(&url, secs as f64, &out).spawn("player", dir.path());
    assert!(
        bob.wait_for_event("CALL_ESTABLISHED", 8 * SEC).is_some(),
        "bob never answered\n{}\n{}",
        sb.tails(),
        player.tails(1500)
    );
    let established = Instant::now();
    // Nothing but ping responses comes from ffmpeg: the call must last until it leaves.
    let closed = bob.wait_for_event("CALL_CLOSED", Duration::from_secs(secs + 8));
    let lasted = established.elapsed();
    let exited = player.wait_timeout(5 * SEC);
    let context = format!("{}\n{}\n{}", sb.tails(), bob.tails(), player.tails(2000));
    eprintln!("[measure] play-only RTMP call lasted {lasted:.2?} (dead_peer_secs = {DEAD_PEER}, ffmpeg -t {secs})");
    assert!(closed.is_some(), "the call never ended\n{context}");
    assert!(
        lasted >= Duration::from_secs(secs - 1),
        "a play-only client was hung up after {lasted:?}\n{context}"
    );
    assert!(
        exited.is_some_and(|s| s.success()),
        "player: {exited:?}\n{context}"
    );
    assert_eq!(
        sb.metric("skybridge_client_dead_peer_total", &[]),
        0.0,
        "{context}"
    );
}

#[test]
fn websocket_client_blackholed_mid_call_is_hung_up_after_dead_peer_secs() {
    let _serial = serial();
    let dir = TestDir::new("deadpeer-ws");
    let mut bob = bob_phone(&dir);
    let sb = relay_to_bob(&dir, &bob);
    let proxy = LinkProxy::start(sb.web);
    let (mut c, _) = WsClient::signed_in(proxy.addr, "ws", None).unwrap();
    c.send_json(&json!({"type": "call", "target": "bob"}));
    let answered = c.wait_for("answered", 8 * SEC);
    assert!(
        answered.is_some(),
        "not answered: {c:?}\n{}\n{}",
        sb.tails(),
        bob.tails()
    );
    let id = u16::try_from(answered.unwrap()["call"].as_u64().unwrap()).unwrap();
    assert!(bob.wait_for_event("CALL_ESTABLISHED", 5 * SEC).is_some());
    c.start_tone(id, 1000.0);
    c.pump(SEC);
    assert!(c.audio_frames > 0, "no audio reached the client: {c:?}");
    // From here on the client is gone: never polled again (its socket stays open).
    let ctx = || sb.tails();
    blackhole_and_expect_bye(&proxy, &mut bob, &sb, "websocket", &ctx);
    drop(c);
}

/// `POST /v1/calls` on the web listener; returns (ssrc, tunnel address).
fn new_tunnel_call(sb: &Skybridge, target: &str) -> (u32, SocketAddr) {
    let mut s = TcpStream::connect(sb.web).unwrap();
    s.set_read_timeout(Some(5 * SEC)).unwrap();
    let body = json!({ "target": target }).to_string();
    write!(
        s,
        "POST /v1/calls HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        sb.web,
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 201"), "{out}\n{}", sb.tails());
    let v: Value = serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap();
    (
        u32::try_from(v["ssrc"].as_u64().unwrap()).unwrap(),
        v["tunnel"].as_str().unwrap().parse().unwrap(),
    )
}

/// One RTP packet (PT 0, 160 bytes of µ-law silence) framed per RFC 4571.
fn rtp_frame(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0u8, 172, 0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xFF; 160]);
    p
}

#[test]
fn tunnel_client_blackholed_mid_call_is_hung_up_after_dead_peer_secs() {
    let _serial = serial();
    let dir = TestDir::new("deadpeer-tunnel");
    let mut bob = bob_phone(&dir);
    let sb = relay_to_bob(&dir, &bob);
    let (ssrc, tunnel) = new_tunnel_call(&sb, "bob");
    assert_eq!(tunnel, sb.tunnel);
    let proxy = LinkProxy::start(sb.tunnel);
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    let mut rx = s.try_clone().unwrap();
    // A native client: RTP every 20 ms until it "vanishes"; whatever comes back is read.
    let vanished = Arc::new(AtomicBool::new(false));
    let sender = {
        let vanished = vanished.clone();
        std::thread::spawn(move || {
            let mut seq = 0u16;
            while !vanished.load(Ordering::SeqCst) {
                if s.write_all(&rtp_frame(ssrc, seq)).is_err() {
                    return;
                }
                seq = seq.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    rx.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let (vanished, received) = (vanished.clone(), received.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !vanished.load(Ordering::SeqCst) {
                match rx.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        received.fetch_add(n, Ordering::SeqCst);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
            }
        });
    }
    assert!(
        bob.wait_for_event("CALL_ESTABLISHED", 8 * SEC).is_some(),
        "bob never answered\n{}\n{}",
        sb.tails(),
        bob.tails()
    );
    std::thread::sleep(SEC);
    assert!(
        received.load(Ordering::SeqCst) > 0,
        "no audio came back on the tunnel\n{}",
        sb.tails()
    );
    let ctx = || sb.tails();
    // The client stops (as if its link died) at the same moment the link is blackholed.
    vanished.store(true, Ordering::SeqCst);
    blackhole_and_expect_bye(&proxy, &mut bob, &sb, "rfc4571", &ctx);
    let _ = sender.join();
}
