//! Hostile WebSocket clients against skybridge's web listener (`[web]`, `/ws`): bad frames,
//! oversized and endless messages, slow or stalled upgrade requests, foreign Origins.
//!
//! Every attack checks: the close code (or HTTP status) and a reason, that the process is still
//! alive, that the rejection is counted in `skybridge_client_rejected_total{transport=
//! "websocket",reason=…}`, and that a log line names the attacker's address. Meanwhile a
//! legitimate ffmpeg RTMP call to the built-in `echo` target keeps returning its tone.
//!
//! Attack frames are written as raw bytes (masked like a browser's), so that lengths, opcodes
//! and payloads can be anything.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::audio::{active_duration, dominant_frequency, read_wav, tone_snr_db};
use common::ffmpeg::{Player, Publisher};
use common::procs::{wait_until, Child, TestDir};
use common::skybridge::{rss_kib, strip_ansi};
use common::skybridge::{Skybridge, SkybridgeOpts};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);
const TOKEN: &str = "alice-token";
const ALLOWED_ORIGIN: &str = "https://phone.example.com";
const ECHO_HZ: f64 = 700.0;

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time: the legitimate call's audio must not suffer from a parallel test.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn sha256_hex(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// skybridge with authentication on, user alice (may dial `echo`), a 2 s handshake deadline
/// and one allowed Origin.
fn start_skybridge(dir: &TestDir) -> Skybridge {
    Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: "required = true\nanonymous_targets = []".into(),
            web: format!("handshake_timeout_secs = 2\nallowed_origins = [\"{ALLOWED_ORIGIN}\"]"),
            tail: format!(
                "[[users]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\ntargets = [\"echo\"]\n",
                sha256_hex(TOKEN)
            ),
            ..Default::default()
        },
    )
}

// ---------------------------------------------------------------- the legitimate call

/// ffmpeg publishing a 700 Hz tone to `echo` and another ffmpeg playing it back (one call:
/// same user, same name), recording `secs` seconds.
struct EchoCall {
    publisher: Child,
    player: Child,
    out: std::path::PathBuf,
    secs: f64,
}

impl EchoCall {
    /// Starts both and waits (≤ 10 s) until the echoed audio flows to the player.
    fn start(sb: &Skybridge, dir: &TestDir, secs: f64) -> EchoCall {
        let url = sb.rtmp_url(&format!("call/echo?token={TOKEN}"));
        let publisher =
            Publisher::new(&url, ECHO_HZ as u32, secs + 15.0).spawn("publisher", dir.path());
        let out = dir.path().join("echo.wav");
        let player = Player::new(&url, secs, &out).spawn("player", dir.path());
        let flowing = wait_until(10 * SEC, || {
            sb.metric(
                "skybridge_packets_total",
                &[("leg", "rtmp"), ("direction", "out")],
            ) > 25.0
        });
        assert!(
            flowing,
            "the echo call never started\n{}\n{}\n{}",
            player.tails(1500),
            publisher.tails(1500),
            sb.tails()
        );
        EchoCall {
            publisher,
            player,
            out,
            secs,
        }
    }

    /// Waits for the player and asserts the recording carries the tone nearly all along.
    fn assert_tone_survived(mut self, sb: &Skybridge) {
        let exited = self
            .player
            .wait_timeout(Duration::from_secs_f64(self.secs + 15.0));
        self.publisher.stop(SEC);
        let context = format!(
            "{}\n{}\n{}",
            self.player.tails(1500),
            self.publisher.tails(1500),
            sb.tails()
        );
        assert!(
            exited.is_some_and(|s| s.success()),
            "player: {exited:?}\n{context}"
        );
        let wav = read_wav(&self.out).unwrap_or_else(|e| panic!("read echo.wav: {e}\n{context}"));
        let x = wav.mono();
        let snr = tone_snr_db(&x, wav.rate, ECHO_HZ);
        let dominant = dominant_frequency(&x, wav.rate);
        let active = active_duration(&x, wav.rate, 0.01);
        eprintln!(
            "[measure] echo during attacks: SNR {snr:.1} dB, dominant {dominant} Hz, active \
             {active:.2} s of {:.2} s",
            wav.duration_secs()
        );
        assert!(
            snr > 20.0 && dominant == ECHO_HZ && active >= self.secs - 1.0,
            "the legitimate call suffered: SNR {snr:.1} dB, dominant {dominant} Hz, active \
             {active:.2} s of {:.2} s\n{context}",
            wav.duration_secs()
        );
    }
}

// ---------------------------------------------------------------- raw WebSocket bytes

/// A client frame, masked with a fixed key; `len` overrides the declared payload length.
fn frame(fin: bool, opcode: u8, payload: &[u8], len: Option<u64>) -> Vec<u8> {
    let key = [0x37u8, 0xfa, 0x21, 0x3d];
    let len = len.unwrap_or(payload.len() as u64);
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

fn text(json: &str) -> Vec<u8> {
    frame(true, 1, json.as_bytes(), None)
}

/// A TCP connection speaking raw WebSocket after a hand-written upgrade.
struct RawWs {
    s: TcpStream,
    buf: Vec<u8>,
    /// Text frames the server sent.
    texts: Vec<String>,
}

/// The upgrade request for `/ws` with extra header lines.
fn upgrade_request(addr: SocketAddr, extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: skybridge.v1\r\n{extra}\r\n"
    )
}

impl RawWs {
    /// Connects and sends the upgrade; returns the connection and the response head.
    fn upgrade(addr: SocketAddr, extra: &str) -> (RawWs, String) {
        let mut s = TcpStream::connect_timeout(&addr, SEC).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        s.write_all(upgrade_request(addr, extra).as_bytes())
            .unwrap();
        let mut ws = RawWs {
            s,
            buf: Vec::new(),
            texts: Vec::new(),
        };
        let deadline = Instant::now() + 5 * SEC;
        let head = loop {
            if let Some(end) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&ws.buf[..end + 4]).into_owned();
                ws.buf.drain(..end + 4);
                break head;
            }
            if Instant::now() > deadline || !ws.fill() {
                break String::from_utf8_lossy(&ws.buf).into_owned();
            }
        };
        (ws, head)
    }

    /// Upgrades (asserting 101) and signs in with `token`, asserting `welcome`.
    fn signed_in(addr: SocketAddr) -> RawWs {
        let (mut ws, head) = RawWs::upgrade(addr, "");
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        ws.send(&text(&format!(
            r#"{{"type":"hello","version":1,"token":"{TOKEN}"}}"#
        )));
        let welcome = ws.read_text(5 * SEC);
        assert!(
            welcome
                .as_deref()
                .is_some_and(|t| t.contains("\"welcome\"")),
            "no welcome: {welcome:?}"
        );
        ws
    }

    fn peer_label(&self) -> String {
        self.s.local_addr().unwrap().to_string()
    }

    fn send(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes);
    }

    /// Reads more bytes (≤ 100 ms); false on EOF or error.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match self.s.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => true,
            Err(_) => false,
        }
    }

    /// The next whole server frame (unmasked) from the buffer.
    fn take_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        assert_eq!(b[1] & 0x80, 0, "server frames must not be masked");
        let (len, at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap()), 10),
            126 | 127 => return None,
            n => (u64::from(n), 2),
        };
        let end = at + usize::try_from(len).unwrap();
        if b.len() < end {
            return None;
        }
        let f = (b[0] & 0x0f, b[at..end].to_vec());
        self.buf.drain(..end);
        Some(f)
    }

    /// Reads frames until a close frame: `Some((code, reason))`; `None` if the connection ended
    /// (or `timeout` passed) without one. Text frames on the way are kept in `texts`.
    fn read_close(&mut self, timeout: Duration) -> Option<(u16, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some((op, payload)) = self.take_frame() {
                match op {
                    1 => self
                        .texts
                        .push(String::from_utf8_lossy(&payload).into_owned()),
                    8 if payload.len() >= 2 => {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        return Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
                    }
                    8 => return Some((1005, String::new())),
                    _ => {}
                }
            }
            if Instant::now() > deadline || !self.fill() {
                return None;
            }
        }
    }

    /// The next text frame (≤ `timeout`).
    fn read_text(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some((op, payload)) = self.take_frame() {
                if op == 1 {
                    return Some(String::from_utf8_lossy(&payload).into_owned());
                }
            }
            if Instant::now() > deadline || !self.fill() {
                return None;
            }
        }
    }

    /// Writes `bytes` from another thread (errors ignored: the server may cut us off), while
    /// this thread reads the close frame.
    fn send_in_background(&self, bytes: Vec<u8>) -> thread::JoinHandle<()> {
        let mut w = self.s.try_clone().unwrap();
        thread::spawn(move || {
            for chunk in bytes.chunks(64 * 1024) {
                if w.write_all(chunk).is_err() {
                    return;
                }
            }
        })
    }
}

// ---------------------------------------------------------------- rejection checks

fn rejected(sb: &Skybridge, reasons: &[&str]) -> f64 {
    reasons
        .iter()
        .map(|r| {
            sb.metric(
                "skybridge_client_rejected_total",
                &[("transport", "websocket"), ("reason", r)],
            )
        })
        .sum()
}

/// Asserts, after an attack from `peer`: skybridge alive, the rejection counter for one of
/// `reasons` went up from `before`, and a warn/info line names `peer`.
fn assert_rejected(sb: &mut Skybridge, what: &str, peer: &str, reasons: &[&str], before: f64) {
    let counted = wait_until(3 * SEC, || rejected(sb, reasons) > before);
    let logged = wait_until(3 * SEC, || {
        strip_ansi(&sb.log()).lines().any(|l| {
            l.contains(peer)
                && (l.contains("WARN") || l.contains("INFO"))
                && [
                    "closed for bad input",
                    "refused",
                    "bad HTTP request",
                    "deadline",
                ]
                .iter()
                .any(|w| l.contains(w))
        })
    });
    let alive = sb.child().is_running();
    let context = format!("{}\n{}", sb.metrics(), sb.tails());
    assert!(alive, "{what}: skybridge died\n{context}");
    assert!(
        counted,
        "{what}: skybridge_client_rejected_total{{transport=\"websocket\",reason∈{reasons:?}}} \
         did not go up from {before}\n{context}"
    );
    assert!(
        logged,
        "{what}: no log line names the peer {peer}\n{context}"
    );
}

/// One frame-level attack on a fresh connection (signed in first when `sign_in`): sends
/// `attack` and expects close `code` with a non-empty reason, then the rejection checks.
fn frame_attack(
    sb: &mut Skybridge,
    what: &str,
    sign_in: bool,
    attack: Vec<u8>,
    code: u16,
    reasons: &[&str],
) {
    let before = rejected(sb, reasons);
    let mut ws = if sign_in {
        RawWs::signed_in(sb.web)
    } else {
        let (ws, head) = RawWs::upgrade(sb.web, "");
        assert!(head.starts_with("HTTP/1.1 101"), "{what}: upgrade: {head}");
        ws
    };
    let peer = ws.peer_label();
    let started = Instant::now();
    let writer = ws.send_in_background(attack);
    let close = ws.read_close(5 * SEC);
    let took = started.elapsed();
    let _ = writer.join();
    eprintln!("[measure] {what}: {close:?} after {took:?}");
    match &close {
        Some((c, reason)) => assert!(
            *c == code && !reason.is_empty(),
            "{what}: close {c} {reason:?}, want {code} with a reason\n{}",
            sb.tails()
        ),
        None => panic!("{what}: no close frame (want {code})\n{}", sb.tails()),
    }
    assert_rejected(sb, what, &peer, reasons, before);
}

// ---------------------------------------------------------------- 1. frames

#[test]
fn hostile_frames_get_their_close_codes_while_a_call_keeps_working() {
    let _serial = serial();
    let dir = TestDir::new("hostile-ws-frames");
    let mut sb = start_skybridge(&dir);
    let echo = EchoCall::start(&sb, &dir, 8.0);
    let rss_before = rss_kib(sb.child().pid()).unwrap_or(0);

    frame_attack(
        &mut sb,
        "frame before hello",
        false,
        text(r#"{"type":"call","target":"echo"}"#),
        1008,
        &["not_authenticated"],
    );
    frame_attack(
        &mut sb,
        "unknown message type",
        true,
        text(r#"{"type":"reboot"}"#),
        1008,
        &["unknown_type"],
    );
    let mut big_json = br#"{"type":"ping","pad":""#.to_vec();
    big_json.resize(1024 * 1024 - 2, b'a');
    big_json.extend_from_slice(b"\"}");
    frame_attack(
        &mut sb,
        "1 MiB JSON text",
        true,
        frame(true, 1, &big_json, None),
        1009,
        &["too_big"],
    );
    frame_attack(
        &mut sb,
        "1 MiB binary",
        true,
        frame(true, 2, &vec![0u8; 1024 * 1024], None),
        1009,
        &["too_big"],
    );
    frame_attack(
        &mut sb,
        "frame declaring 2^40 bytes",
        true,
        frame(true, 2, &[0u8; 100], Some(1 << 40)),
        1009,
        &["too_big"],
    );
    let mut fragments = frame(false, 1, b"{", None);
    for _ in 1..10_000 {
        fragments.extend_from_slice(&frame(false, 0, b" ", None));
    }
    frame_attack(
        &mut sb,
        "10,000 continuation fragments",
        true,
        fragments,
        1009,
        &["too_big"],
    );
    frame_attack(
        &mut sb,
        "invalid UTF-8 text",
        true,
        frame(true, 1, &[b'{', 0xff, 0xfe, 0xc3, b'}'], None),
        1007,
        &["invalid_utf8", "not_json"],
    );

    // A bad token in hello: an `error` message, then 1008.
    let before = rejected(&sb, &["bad_token"]);
    let (mut ws, head) = RawWs::upgrade(sb.web, "");
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade: {head}");
    let peer = ws.peer_label();
    ws.send(&text(
        r#"{"type":"hello","version":1,"token":"not-the-token"}"#,
    ));
    let close = ws.read_close(5 * SEC);
    eprintln!("[measure] bad token: {:?}, close {close:?}", ws.texts);
    assert!(
        ws.texts
            .iter()
            .any(|t| t.contains(r#""type":"error""#) && t.contains("bad_token")),
        "bad token: no error message: {:?}\n{}",
        ws.texts,
        sb.tails()
    );
    assert!(
        close
            .as_ref()
            .is_some_and(|(c, r)| *c == 1008 && !r.is_empty()),
        "bad token: close {close:?}, want 1008 with a reason\n{}",
        sb.tails()
    );
    assert_rejected(&mut sb, "bad token", &peer, &["bad_token"], before);

    let rss_after = rss_kib(sb.child().pid()).unwrap_or(0);
    eprintln!("[measure] RSS {rss_before} KiB → {rss_after} KiB");
    assert!(
        rss_after <= rss_before + 4 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB during the frame attacks"
    );
    echo.assert_tone_survived(&sb);
}

// ---------------------------------------------------------------- 2. slow and stalled upgrades

#[test]
fn slow_huge_and_stalled_upgrade_requests_are_cut_off() {
    let _serial = serial();
    let dir = TestDir::new("hostile-ws-slow");
    let mut sb = start_skybridge(&dir);
    let echo = EchoCall::start(&sb, &dir, 8.0);

    // A 1 MiB header, 1 KiB every 100 ms (it would take 100 s to send).
    let reasons = ["bad_request", "head_too_large"];
    let before = rejected(&sb, &reasons);
    let mut s = TcpStream::connect_timeout(&sb.web, SEC).unwrap();
    let peer = s.local_addr().unwrap().to_string();
    let mut reader = s.try_clone().unwrap();
    reader.set_read_timeout(Some(10 * SEC)).unwrap();
    let answered = Arc::new(AtomicBool::new(false));
    let reply = {
        let answered = answered.clone();
        thread::spawn(move || {
            let mut out = Vec::new();
            let _ = reader.read_to_end(&mut out);
            answered.store(true, Ordering::SeqCst);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let started = Instant::now();
    s.write_all(format!("GET /ws HTTP/1.1\r\nHost: {}\r\nX-Padding: ", sb.web).as_bytes())
        .unwrap();
    let mut sent = 0usize;
    while sent < 1024 * 1024 && !answered.load(Ordering::SeqCst) {
        if s.write_all(&[b'a'; 1024]).is_err() {
            break;
        }
        sent += 1024;
        thread::sleep(Duration::from_millis(100));
    }
    let cut_after = started.elapsed();
    let reply = reply.join().unwrap();
    eprintln!(
        "[measure] slow 1 MiB header: cut off after {sent} bytes, {cut_after:?}: {:?}",
        reply.lines().next()
    );
    assert!(
        sent <= 32 * 1024 && cut_after < 5 * SEC,
        "the slow header was not cut off in time: {sent} bytes sent over {cut_after:?}\n{}",
        sb.tails()
    );
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "want 431 or a plain close, got {reply:?}"
    );
    assert_rejected(&mut sb, "slow 1 MiB header", &peer, &reasons, before);

    // A request that stalls half-way: closed at the 2 s deadline.
    let reasons = ["deadline", "upgrade_timeout"];
    let before = rejected(&sb, &reasons);
    let mut s = TcpStream::connect_timeout(&sb.web, SEC).unwrap();
    let peer = s.local_addr().unwrap().to_string();
    s.set_read_timeout(Some(10 * SEC)).unwrap();
    let started = Instant::now();
    s.write_all(format!("GET /ws HTTP/1.1\r\nHost: {}\r\n", sb.web).as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let took = started.elapsed();
    eprintln!("[measure] stalled request closed after {took:?}");
    assert!(
        took >= Duration::from_millis(1800) && took < 4 * SEC,
        "stalled request closed after {took:?}, handshake_timeout_secs = 2\n{}",
        sb.tails()
    );
    assert_rejected(&mut sb, "stalled request", &peer, &reasons, before);

    // Upgraded but no hello: 1008 at the same deadline.
    let reasons = ["hello_timeout"];
    let before = rejected(&sb, &reasons);
    let (mut ws, head) = RawWs::upgrade(sb.web, "");
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade: {head}");
    let peer = ws.peer_label();
    let started = Instant::now();
    let close = ws.read_close(10 * SEC);
    let took = started.elapsed();
    eprintln!("[measure] no hello: {close:?} after {took:?}");
    assert!(
        close
            .as_ref()
            .is_some_and(|(c, r)| *c == 1008 && !r.is_empty())
            && took >= Duration::from_millis(1800)
            && took < 4 * SEC,
        "no hello: close {close:?} after {took:?}, want 1008 at ~2 s\n{}",
        sb.tails()
    );
    assert_rejected(&mut sb, "no hello", &peer, &reasons, before);

    echo.assert_tone_survived(&sb);
}

// ---------------------------------------------------------------- 3. Origin

#[test]
fn foreign_origin_gets_403_and_an_allowed_one_works() {
    let _serial = serial();
    let dir = TestDir::new("hostile-ws-origin");
    let mut sb = start_skybridge(&dir);
    let echo = EchoCall::start(&sb, &dir, 4.0);

    let before = rejected(&sb, &["origin"]);
    let (mut ws, head) = RawWs::upgrade(sb.web, "Origin: https://evil.example.com\r\n");
    let peer = ws.peer_label();
    assert!(
        head.starts_with("HTTP/1.1 403") && !head.contains("Sec-WebSocket-Accept"),
        "foreign Origin: {head}\n{}",
        sb.tails()
    );
    // No upgrade: nothing more, and the connection ends.
    let rest = ws.read_close(3 * SEC);
    assert!(rest.is_none(), "a WebSocket frame after a 403: {rest:?}");
    assert_rejected(&mut sb, "foreign Origin", &peer, &["origin"], before);

    let (mut ws, head) = RawWs::upgrade(sb.web, &format!("Origin: {ALLOWED_ORIGIN}\r\n"));
    assert!(
        head.starts_with("HTTP/1.1 101") && head.contains("skybridge.v1"),
        "allowed Origin: {head}\n{}",
        sb.tails()
    );
    ws.send(&text(&format!(
        r#"{{"type":"hello","version":1,"token":"{TOKEN}"}}"#
    )));
    let welcome = ws.read_text(5 * SEC);
    assert!(
        welcome
            .as_deref()
            .is_some_and(|t| t.contains("\"welcome\"") && t.contains("alice")),
        "allowed Origin: no welcome: {welcome:?}\n{}",
        sb.tails()
    );
    ws.send(&text(r#"{"type":"ping"}"#));
    let pong = ws.read_text(5 * SEC);
    assert!(
        pong.as_deref().is_some_and(|t| t.contains("\"pong\"")),
        "allowed Origin: no pong: {pong:?}"
    );
    echo.assert_tone_survived(&sb);
}
