//! RTP over TCP (RFC 4571) end to end (README, "Calling over TCP (RFC 4571)"): stock GStreamer
//! pipelines ⇄ skybridge ⇄ baresip, a scripted native client that sends and receives on one
//! tunnel connection, and the hostile inputs of HOSTILE-INPUTS row 14 plus the binding rules
//! (wrong SSRC, another address, an expired window).
//!
//! The API request is made with a tiny HTTP client here (no curl). Tests run one at a time.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::audio::read_wav;
use common::baresip::{Baresip, BaresipOpts};
use common::procs::{have_program, wait_until, TestDir};
use common::scenario::{anonymous, assert_tone_samples, serial, user_block};
use common::skybridge::{Skybridge, SkybridgeOpts};
use common::tlsutil::{
    gst, gst_tunnel_receiver, gst_tunnel_sender, make_cert, tls_shared_tail, TlsForwarder,
};
use serde_json::{json, Value};

const SEC: Duration = Duration::from_secs(1);

/// `POST /v1/calls` (or any request with a JSON body); returns the status and parsed body.
fn http(web: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(web).unwrap();
    s.set_read_timeout(Some(5 * SEC)).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {web}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {out:?}"));
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A binding from `POST /v1/calls` for `target`.
struct Binding {
    id: u64,
    ssrc: u32,
    tunnel: SocketAddr,
    receive: String,
}

fn new_call(sb: &Skybridge, token: Option<&str>, target: &str) -> Binding {
    new_call_at(sb.web, sb, token, target)
}

/// `POST /v1/calls` to the listener at `api` (the web listener or the shared port).
fn new_call_at(api: SocketAddr, sb: &Skybridge, token: Option<&str>, target: &str) -> Binding {
    let mut req = json!({ "target": target });
    if let Some(t) = token {
        req["token"] = json!(t);
    }
    let (status, v) = http(api, "POST", "/v1/calls", Some(&req));
    assert_eq!(status, 201, "{v}\n{}", sb.tails());
    assert_eq!(v["expires_in"].as_u64(), Some(10), "{v}");
    Binding {
        id: v["call"].as_u64().unwrap(),
        ssrc: u32::try_from(v["ssrc"].as_u64().unwrap()).unwrap(),
        tunnel: v["tunnel"].as_str().unwrap().parse().unwrap(),
        receive: v["receive"].as_str().unwrap().to_string(),
    }
}

fn bob_phone(dir: &TestDir) -> Baresip {
    Baresip::start(BaresipOpts::answering_with_tone(
        dir.path(),
        "bob",
        440.0,
        30.0,
    ))
}

fn relay_to_bob(dir: &TestDir, bob: &Baresip, tunnel: &str) -> Skybridge {
    Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob", "tone"]),
            dialplan: vec![("bob".into(), bob.uri())],
            tunnel: tunnel.into(),
            ..Default::default()
        },
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

/// Reads until the peer closes (true) or `within` passes (false).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let end = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        s.set_read_timeout(Some(
            end.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        ))
        .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

fn rejected(sb: &Skybridge, reason: &str) -> f64 {
    sb.metric(
        "skybridge_client_rejected_total",
        &[("transport", "rfc4571"), ("reason", reason)],
    )
}

fn no_call_reached(bob: &Baresip) -> bool {
    !bob.history().iter().any(|e| e.kind.starts_with("CALL_"))
}

// ------------------------------------------------------------------------ GStreamer ⇄ baresip

#[test]
fn gstreamer_calls_baresip_over_the_tunnel_and_audio_flows_both_ways() {
    gstreamer_call("tunnel-gst-baresip", Via::Listeners);
}

#[test]
fn gstreamer_calls_baresip_through_the_shared_port() {
    gstreamer_call("tunnel-gst-shared", Via::Shared);
}

/// RFC 4571 over TLS for a client without TLS: stock GStreamer has no TLS TCP client sink, so
/// a deployment puts a local TLS client in front of it — here Debian `socat` listening on
/// loopback and wrapping each connection in TLS to the shared port (verifying the relay's
/// certificate). `tcpclientsink`, `souphttpsrc` and the API request all go through it; the
/// relay terminates TLS, classifies the decrypted bytes, and sees the client's own address,
/// so the tunnel's binding to the API caller's IP holds.
#[test]
fn gstreamer_calls_baresip_over_tls_on_the_shared_port_through_socat() {
    gstreamer_call("tunnel-gst-tls", Via::SharedTls);
}

/// Where the GStreamer client's connections go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// The API on the web listener, RTP to the tunnel listener.
    Listeners,
    /// Everything in the clear on the shared port.
    Shared,
    /// Everything through a local socat TLS client to the shared port.
    SharedTls,
}

/// GStreamer sends 1 kHz over an RFC 4571 tunnel and receives bob's 440 Hz over HTTP; `via`
/// says which port(s) the API request and both connections go to.
/// Once bob answers, 4 s of talk (`during` runs after the first 2 s); then EOS on the sender closes the tunnel, so the call ends
/// (BYE) and the receive stream with it. Returns what bob and the client (`wav`) recorded, and
/// every party's log tail.
fn talk_then_hang_up(
    bob: &mut Baresip,
    sb: &Skybridge,
    mut tx: common::procs::Child,
    mut rx: common::procs::Child,
    wav: &std::path::Path,
    during: impl FnOnce(),
) -> (common::audio::Wav, common::audio::Wav, String) {
    bob.expect_event("CALL_ESTABLISHED", 10 * SEC);
    std::thread::sleep(2 * SEC);
    during();
    std::thread::sleep(2 * SEC);
    tx.signal("INT");
    tx.wait_timeout(5 * SEC);
    bob.expect_event("CALL_CLOSED", 10 * SEC);
    let rx_done = rx.wait_timeout(10 * SEC);
    let context = format!(
        "{}\n{}\n{}\n{}",
        sb.tails(),
        bob.tails(),
        tx.tails(2000),
        rx.tails(2000)
    );
    assert!(
        rx_done.is_some(),
        "the receive pipeline did not end with the call\n{context}"
    );
    let rec = bob
        .recording_path()
        .unwrap_or_else(|| panic!("bob recorded nothing\n{context}"));
    let bob_heard = read_wav(&rec).unwrap();
    let client_heard =
        read_wav(wav).unwrap_or_else(|e| panic!("{}: {e}\n{context}", wav.display()));
    (bob_heard, client_heard, context)
}

/// Bob heard GStreamer's 1 kHz and GStreamer bob's 440 Hz, each for ≥ 3 s.
fn assert_both_tones(
    bob_heard: &common::audio::Wav,
    client_heard: &common::audio::Wav,
    how: &str,
    context: &str,
) {
    for (what, wav, hz) in [
        ("bob hears GStreamer", bob_heard, 1000.0),
        ("GStreamer hears bob", client_heard, 440.0),
    ] {
        assert_tone_samples(
            &format!("{what}{how}"),
            &wav.mono(),
            wav.rate,
            hz,
            3.0,
            context,
        );
    }
}

fn gstreamer_call(name: &str, via: Via) {
    let _serial = serial();
    if !have_program("gst-launch-1.0") {
        panic!("gst-launch-1.0 missing: run scripts/install-deps.sh");
    }
    let dir = TestDir::new(name);
    let mut bob = bob_phone(&dir);
    let shared_addr: SocketAddr = format!("127.0.0.1:{}", common::procs::free_tcp_port())
        .parse()
        .unwrap();
    let tail = match via {
        Via::Listeners => String::new(),
        Via::Shared => format!("[shared]\nlisten = \"{shared_addr}\"\n"),
        Via::SharedTls => {
            make_cert(dir.path());
            tls_shared_tail(dir.path(), shared_addr, 5)
        }
    };
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob", "tone"]),
            dialplan: vec![("bob".into(), bob.uri())],
            tail,
            ..Default::default()
        },
    );
    let forwarder = (via == Via::SharedTls).then(|| {
        TlsForwarder::start(
            dir.path(),
            "socat-tls",
            shared_addr,
            &dir.path().join("cert.pem"),
        )
    });
    let (api, send_to) = match (via, &forwarder) {
        (Via::Listeners, _) => (sb.web, sb.tunnel),
        (Via::SharedTls, Some(f)) => (f.addr, f.addr),
        _ => (shared_addr, shared_addr),
    };
    let b = new_call_at(api, &sb, None, "bob");
    assert_eq!(b.tunnel, sb.tunnel);
    let wav = dir.path().join("client-hears.wav");
    let rx = gst_tunnel_receiver(dir.path(), "gst-recv", api, &b.receive, &wav);
    let tx = gst_tunnel_sender(dir.path(), "gst-send", 1000, b.ssrc, send_to);
    let (bob_heard, client_heard, context) = talk_then_hang_up(&mut bob, &sb, tx, rx, &wav, || {});
    assert_both_tones(&bob_heard, &client_heard, "", &context);
    assert_eq!(rejected(&sb, "unknown_ssrc"), 0.0, "{context}");
    if let Some(f) = forwarder {
        // The API request, the tunnel and the receive stream each crossed TLS.
        let tls_seen = sb
            .logs()
            .lines()
            .filter(|l| l.contains("protocol recognised") && l.contains("Tls"))
            .count();
        assert!(
            f.connections() >= 3 && tls_seen >= 3,
            "socat TLS connections {}, relay saw TLS {tls_seen}\n{}\n{context}",
            f.connections(),
            f.tails()
        );
    }
}

// ---------------------------------------------- a native client on one full-duplex connection

#[test]
fn a_native_client_sends_and_receives_on_the_tunnel_connection() {
    let _serial = serial();
    let dir = TestDir::new("tunnel-native");
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: "required = true\nanonymous_targets = []".into(),
            tail: user_block("alice", "alice-token", &["tone"], None),
            ..Default::default()
        },
    );
    // Auth as everywhere: no token, a bad token, a target not allowed.
    let (status, v) = http(
        sb.web,
        "POST",
        "/v1/calls",
        Some(&json!({"target": "tone"})),
    );
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("missing_token")),
        "{v}"
    );
    let (status, _) = http(
        sb.web,
        "POST",
        "/v1/calls",
        Some(&json!({"token": "nope", "target": "tone"})),
    );
    assert_eq!(status, 401);
    let (status, v) = http(
        sb.web,
        "POST",
        "/v1/calls",
        Some(&json!({"token": "alice-token", "target": "echo"})),
    );
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("target_not_allowed")),
        "{v}"
    );

    let b = new_call(&sb, Some("alice-token"), "tone");
    let mut s = TcpStream::connect(b.tunnel).unwrap();
    s.set_read_timeout(Some(5 * SEC)).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    let mut inbox = Vec::new();
    let end = Instant::now() + 5 * SEC;
    let mut seq = 0u16;
    while got.len() < 50 && Instant::now() < end {
        s.write_all(&rtp_frame(b.ssrc, seq)).unwrap();
        if seq == 5 {
            // An RTCP receiver report (RFC 5761: PT 201) is accepted and ignored.
            let mut rr = vec![0u8, 8, 0x80, 201, 0, 1];
            rr.extend_from_slice(&b.ssrc.to_be_bytes());
            s.write_all(&rr).unwrap();
        }
        seq = seq.wrapping_add(1);
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        if let Ok(n) = s.read(&mut buf) {
            assert!(n > 0, "tunnel closed\n{}", sb.tails());
            inbox.extend_from_slice(&buf[..n]);
        }
        while inbox.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([inbox[0], inbox[1]]));
            if inbox.len() < 2 + len {
                break;
            }
            got.push(inbox[2..2 + len].to_vec());
            inbox.drain(..2 + len);
        }
    }
    assert!(
        got.len() >= 50,
        "only {} packets back\n{}",
        got.len(),
        sb.tails()
    );
    let ssrcs: std::collections::BTreeSet<u32> = got
        .iter()
        .map(|p| u32::from_be_bytes([p[8], p[9], p[10], p[11]]))
        .collect();
    assert_eq!(ssrcs.len(), 1, "one SSRC from the relay");
    assert!(!ssrcs.contains(&b.ssrc), "the relay uses its own SSRC");
    for w in got.windows(2) {
        let (a, c) = (
            u16::from_be_bytes([w[0][2], w[0][3]]),
            u16::from_be_bytes([w[1][2], w[1][3]]),
        );
        assert_eq!(c, a.wrapping_add(1), "consecutive sequence numbers");
    }
    assert!(got
        .iter()
        .all(|p| p[0] == 0x80 && p[1] & 0x7F == 0 && p.len() == 172));
    // The relay hangs up on request; the tunnel is closed.
    let key = b.receive.split("key=").nth(1).unwrap();
    let (status, _) = http(
        sb.web,
        "DELETE",
        &format!("/v1/calls/{}?key={key}", b.id),
        None,
    );
    assert_eq!(status, 204);
    assert!(
        closed_within(&mut s, 5 * SEC),
        "tunnel still open after DELETE\n{}",
        sb.tails()
    );
}

// ------------------------------------------------------------------------------- bad input

#[test]
fn a_wrong_ssrc_is_closed_and_no_call_is_placed() {
    let _serial = serial();
    let dir = TestDir::new("tunnel-wrong-ssrc");
    let bob = bob_phone(&dir);
    let sb = relay_to_bob(&dir, &bob, "");
    let b = new_call(&sb, None, "bob");
    let mut s = TcpStream::connect(b.tunnel).unwrap();
    s.write_all(&rtp_frame(b.ssrc ^ 1, 1)).unwrap();
    assert!(closed_within(&mut s, 2 * SEC), "still open\n{}", sb.tails());
    std::thread::sleep(SEC);
    assert!(no_call_reached(&bob), "{:?}", bob.history());
    assert_eq!(rejected(&sb, "unknown_ssrc"), 1.0, "{}", sb.tails());
    assert!(
        sb.log().contains("tunnel connection refused"),
        "{}",
        sb.tails()
    );
}

#[test]
fn a_flood_of_empty_frames_is_closed_quickly() {
    let _serial = serial();
    let dir = TestDir::new("tunnel-empty-flood");
    let sb = Skybridge::start(dir.path(), &SkybridgeOpts::default());
    let b = new_call(&sb, None, "tone");
    let mut s = TcpStream::connect(b.tunnel).unwrap();
    let started = Instant::now();
    // 1 MiB of zero-length frames; the relay stops reading after the limit and closes.
    let flood = vec![0u8; 1 << 20];
    let _ = s.write_all(&flood);
    assert!(closed_within(&mut s, 2 * SEC), "still open\n{}", sb.tails());
    assert!(started.elapsed() < 3 * SEC);
    assert!(
        wait_until(2 * SEC, || rejected(&sb, "empty_frame_flood") == 1.0),
        "{}",
        sb.tails()
    );
    // The SSRC was never presented: the binding still works for the real client.
    let mut ok = TcpStream::connect(b.tunnel).unwrap();
    ok.write_all(&rtp_frame(b.ssrc, 1)).unwrap();
    assert!(!closed_within(&mut ok, SEC), "{}", sb.tails());
}

#[test]
fn an_oversized_length_is_refused_and_a_stalled_frame_closes_at_the_read_deadline() {
    let _serial = serial();
    let dir = TestDir::new("tunnel-stall");
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            tunnel: "read_timeout_secs = 2".into(),
            ..Default::default()
        },
    );
    // A declared 65535 then silence: refused before anything is buffered.
    let mut s = TcpStream::connect(sb.tunnel).unwrap();
    s.write_all(&[0xFF, 0xFF]).unwrap();
    assert!(closed_within(&mut s, SEC), "still open\n{}", sb.tails());
    assert_eq!(rejected(&sb, "frame_too_long"), 1.0);
    // A declared 1000 (within the limit), half of it, then silence: closed at the deadline.
    let mut s = TcpStream::connect(sb.tunnel).unwrap();
    let started = Instant::now();
    s.write_all(&[0x03, 0xE8]).unwrap();
    s.write_all(&[0x80; 500]).unwrap();
    assert!(closed_within(&mut s, 4 * SEC), "still open\n{}", sb.tails());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1800),
        "closed after {waited:?}"
    );
    assert_eq!(rejected(&sb, "deadline"), 1.0);
}

#[test]
fn another_address_than_the_api_callers_is_refused_and_late_bindings_expire() {
    let _serial = serial();
    let dir = TestDir::new("tunnel-address");
    let bob = bob_phone(&dir);
    let sb = relay_to_bob(&dir, &bob, "bind_window_secs = 2");
    let (status, v) = http(sb.web, "POST", "/v1/calls", Some(&json!({"target": "bob"})));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["expires_in"].as_u64(), Some(2));
    let ssrc = u32::try_from(v["ssrc"].as_u64().unwrap()).unwrap();
    let tunnel: SocketAddr = v["tunnel"].as_str().unwrap().parse().unwrap();
    // From 127.0.0.2 with the right SSRC: refused.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect(&tunnel.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.write_all(&rtp_frame(ssrc, 1)).unwrap();
    assert!(closed_within(&mut s, 2 * SEC), "still open\n{}", sb.tails());
    assert_eq!(rejected(&sb, "wrong_address"), 1.0, "{}", sb.tails());
    assert!(
        sb.log().contains("127.0.0.2"),
        "the refusal names the peer\n{}",
        sb.tails()
    );
    // The rightful client, too late: the window has passed.
    std::thread::sleep(Duration::from_millis(2200));
    let mut s = TcpStream::connect(tunnel).unwrap();
    s.write_all(&rtp_frame(ssrc, 1)).unwrap();
    assert!(closed_within(&mut s, 2 * SEC), "still open\n{}", sb.tails());
    assert_eq!(rejected(&sb, "unknown_ssrc"), 1.0, "{}", sb.tails());
    std::thread::sleep(SEC);
    assert!(no_call_reached(&bob), "{:?}", bob.history());
}

#[test]
fn a_bound_tunnel_that_goes_silent_is_closed_at_the_idle_timeout_and_the_call_ends() {
    let _serial = serial();
    let dir = TestDir::new("tunnel-idle");
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            tunnel: "idle_timeout_secs = 2".into(),
            ..Default::default()
        },
    );
    let b = new_call(&sb, None, "tone");
    let mut s = TcpStream::connect(b.tunnel).unwrap();
    for seq in 0..3 {
        s.write_all(&rtp_frame(b.ssrc, seq)).unwrap();
    }
    assert!(
        wait_until(3 * SEC, || sb.metric("skybridge_calls_active", &[]) == 1.0),
        "the call did not start\n{}",
        sb.tails()
    );
    let started = Instant::now();
    assert!(closed_within(&mut s, 5 * SEC), "still open\n{}", sb.tails());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "closed after {waited:?}"
    );
    assert!(
        wait_until(3 * SEC, || sb.metric("skybridge_calls_active", &[]) == 0.0),
        "the call outlived its tunnel\n{}",
        sb.tails()
    );
    assert_eq!(
        sb.metric(
            "skybridge_client_dead_peer_total",
            &[("transport", "rfc4571")]
        ),
        1.0,
        "the silent tunnel was not counted as a dead peer\n{}",
        sb.tails()
    );
}

// ------------------------------------------------------------ shared-port disambiguation

/// A client with 100 ms PCMU packets sends RFC 4571 frames of 814 bytes: the length prefix
/// starts with `0x03`, RTMP's first byte. On the shared port the pending binding's SSRC tells
/// it apart, so the tunnel binds and the call works.
#[test]
fn a_long_frame_starting_like_rtmp_binds_its_tunnel_on_the_shared_port() {
    let _serial = serial();
    let dir = TestDir::new("tunnel-long-frames");
    let shared_addr: SocketAddr = format!("127.0.0.1:{}", common::procs::free_tcp_port())
        .parse()
        .unwrap();
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["tone"]),
            tail: format!("[shared]\nlisten = \"{shared_addr}\"\n"),
            ..Default::default()
        },
    );
    let b = new_call_at(shared_addr, &sb, None, "tone");
    let frame = |seq: u16| {
        let mut p = vec![0u8; 2];
        p.extend_from_slice(&[0x80, 0]);
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 800).to_be_bytes());
        p.extend_from_slice(&b.ssrc.to_be_bytes());
        p.extend_from_slice(&[0xFF; 800]);
        let len = u16::try_from(p.len() - 2).unwrap();
        p[..2].copy_from_slice(&len.to_be_bytes());
        p
    };
    assert_eq!(frame(0)[0], 0x03, "the frame really starts like RTMP C0");
    let mut s = TcpStream::connect(shared_addr).unwrap();
    let mut inbox = Vec::new();
    let mut packets = 0;
    let mut buf = vec![0u8; 8192];
    let end = Instant::now() + 5 * SEC;
    let mut seq = 0u16;
    while packets < 20 && Instant::now() < end {
        s.write_all(&frame(seq)).unwrap();
        seq = seq.wrapping_add(1);
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => panic!("the shared port closed the tunnel\n{}", sb.tails()),
            Ok(n) => inbox.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        while inbox.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([inbox[0], inbox[1]]));
            if inbox.len() < 2 + len {
                break;
            }
            assert_eq!(inbox[2] >> 6, 2, "RTP back");
            packets += 1;
            inbox.drain(..2 + len);
        }
    }
    assert!(
        packets >= 20,
        "only {packets} RTP packets came back through the shared port\n{}",
        sb.tails()
    );
    assert_eq!(
        sb.metric(
            "skybridge_client_rejected_total",
            &[("transport", "rtmp"), ("reason", "protocol_error")]
        ),
        0.0,
        "nothing was taken for a broken RTMP handshake"
    );
}

// ---------------------------------------------- a tunnel client that chose its codec (Opus)

/// `POST /v1/calls` with `"codec": codec`; returns the binding and the answer's JSON.
fn new_call_with_codec(sb: &Skybridge, target: &str, codec: &str) -> (Binding, Value) {
    let (status, v) = http(
        sb.web,
        "POST",
        "/v1/calls",
        Some(&json!({ "target": target, "codec": codec })),
    );
    assert_eq!(status, 201, "{v}\n{}", sb.tails());
    let b = Binding {
        id: v["call"].as_u64().unwrap(),
        ssrc: u32::try_from(v["ssrc"].as_u64().unwrap()).unwrap(),
        tunnel: v["tunnel"].as_str().unwrap().parse().unwrap(),
        receive: v["receive"].as_str().unwrap().to_string(),
    };
    (b, v)
}

/// GStreamer sends Opus over the tunnel and receives Opus back; the phone has only `module`
/// (`g711.so`: transcoded both ways; `opus.so`: passed through both ways).
fn gstreamer_opus_call(name: &str, module: &str, rtp_codecs: &str, pair: &str, transcoding: bool) {
    let _serial = serial();
    let dir = TestDir::new(name);
    let mut opts = BaresipOpts::answering_with_tone(dir.path(), "bob", 440.0, 30.0);
    opts.codec_modules = vec![module.into()];
    let mut bob = Baresip::start(opts);
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: vec![("bob".into(), bob.uri())],
            rtp: format!("codecs = [{rtp_codecs}]"),
            ..Default::default()
        },
    );
    let (b, v) = new_call_with_codec(&sb, "bob", "opus");
    assert_eq!(v["codec"], "opus", "{v}");
    assert_eq!(v["payload_type"], 96, "{v}");
    assert_eq!(v["clock_rate"], 48000, "{v}");
    assert_eq!(v["channels"], 2, "RFC 7587: opus/48000/2 {v}");
    let wav = dir.path().join("client-hears.wav");
    let rx = gst(
        dir.path(),
        "gst-recv",
        &format!(
            "souphttpsrc location=http://{}{} ! \
             application/x-rtp-stream,media=audio,clock-rate=48000,encoding-name=OPUS ! \
             rtpstreamdepay ! application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96 ! \
             rtpopusdepay ! opusdec ! audioconvert ! audioresample ! audio/x-raw,rate=16000,channels=1 ! \
             wavenc ! filesink location={}",
            sb.web,
            b.receive,
            wav.display()
        ),
    );
    let tx = gst(
        dir.path(),
        "gst-send",
        &format!(
            "audiotestsrc freq=1000 is-live=true ! audio/x-raw,rate=48000,channels=1 ! \
             opusenc bitrate=24000 frame-size=20 ! rtpopuspay pt=96 ssrc={} ! rtpstreampay ! \
             tcpclientsink host={} port={}",
            b.ssrc,
            b.tunnel.ip(),
            b.tunnel.port()
        ),
    );
    // The operations listener lists the call with its codecs.
    let mut listed = serde_json::Value::Null;
    let (bob_heard, client_heard, context) =
        talk_then_hang_up(&mut bob, &sb, tx, rx, &wav, || listed = sb.calls());
    let sip_codec = pair.split_once('/').map(|(_, s)| s).unwrap_or_default();
    let call = &listed[0];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(call["state"], "answered", "{listed}");
    assert_eq!(call["direction"], "outbound", "{listed}");
    assert_eq!(call["target"], "bob", "{listed}");
    assert_eq!(call["client_codec"], "opus", "{listed}");
    assert_eq!(call["sip_codec"], sip_codec, "{listed}");
    assert_eq!(call["transcoding"], transcoding, "{listed}");
    assert_eq!(call["legs"], 1, "{listed}");
    assert!(
        call["answered_secs"].as_f64().is_some_and(|s| s >= 1.5),
        "{listed}"
    );
    let (up, down) = (
        common::audio::tone_snr_db(&bob_heard.mono(), bob_heard.rate, 1000.0),
        common::audio::tone_snr_db(&client_heard.mono(), client_heard.rate, 440.0),
    );
    println!("[measure] {name}: GStreamer Opus → phone 1 kHz {up:.1} dB, phone → GStreamer Opus 440 Hz {down:.1} dB");
    assert_both_tones(&bob_heard, &client_heard, " (Opus)", &context);
    assert!(
        sb.wait_log(
            &[
                &format!("codec pair {pair}"),
                &format!("transcoding={transcoding}")
            ],
            SEC
        ),
        "no `codec pair {pair}` transcoding={transcoding} in the log\n{context}"
    );
    assert_eq!(rejected(&sb, "unknown_ssrc"), 0.0, "{context}");
}

#[test]
fn a_tunnel_client_that_chose_opus_talks_to_a_pcmu_phone_transcoded_both_ways() {
    gstreamer_opus_call("tunnel-opus-pcmu", "g711.so", "\"pcmu\"", "opus/pcmu", true);
}

#[test]
fn a_tunnel_client_that_chose_opus_talks_to_an_opus_phone_passed_through() {
    gstreamer_opus_call(
        "tunnel-opus-opus",
        "opus.so",
        "\"opus\"",
        "opus/opus",
        false,
    );
}

#[test]
fn an_unknown_tunnel_codec_is_refused_with_400_naming_the_choices() {
    let _serial = serial();
    let dir = TestDir::new("tunnel-bad-codec");
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: vec![("bob".into(), "sip:bob@127.0.0.1:9".into())],
            ..Default::default()
        },
    );
    for bad in ["aac", "nellymoser", "gsm", ""] {
        let (status, v) = http(
            sb.web,
            "POST",
            "/v1/calls",
            Some(&json!({ "target": "bob", "codec": bad })),
        );
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["error"], "bad_codec", "{v}");
        assert!(v["reason"].as_str().unwrap().contains("opus"), "{v}");
    }
    assert_eq!(rejected(&sb, "bad_codec"), 4.0);
}
