//! TLS on the client transports and the shared port (one port for RTMP, RTMPS, HTTP(S),
//! WS(S) and the operations paths), end to end against skybridge as a child process with a
//! certificate from `skybridge cert --self-signed`: ffmpeg publishes and plays over
//! `rtmps://`, a WebSocket client talks over TLS, hostile first bytes are closed and counted,
//! and SIGHUP swaps the certificate for new connections.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::audio::{active_duration, dominant_frequency, read_wav, tone_snr_db, ulaw_to_linear};
use common::ffmpeg::{Player, Publisher};
use common::procs::{free_tcp_port, loopback, wait_until, TestDir};
use common::scenario::{serial, MIN_SNR_DB};
use common::skybridge::{Skybridge, SkybridgeOpts};
use common::tlsutil::make_cert;
use common::ws_client::linear_to_ulaw;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);

/// A running skybridge with `[tls]` from `cert_dir`, the shared port, an RTMPS port and an
/// HTTPS port, all on loopback.
struct Tls {
    sb: Skybridge,
    shared: SocketAddr,
    rtmps: SocketAddr,
    https: SocketAddr,
}

fn start(dir: &TestDir, cert_dir: &Path, classify_timeout_secs: u64) -> Tls {
    let shared = loopback(free_tcp_port());
    let rtmps = loopback(free_tcp_port());
    let https = loopback(free_tcp_port());
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            rtmp: format!("tls_listen = \"{rtmps}\"\nhandshake_timeout_secs = 3"),
            web: format!("tls_listen = \"{https}\""),
            tail: format!(
                "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
                 [shared]\nlisten = \"{shared}\"\nclassify_timeout_secs = {classify_timeout_secs}\n",
                cert_dir.join("cert.pem").display(),
                cert_dir.join("key.pem").display(),
            ),
            ..Default::default()
        },
    );
    Tls {
        sb,
        shared,
        rtmps,
        https,
    }
}

/// Accepts any server certificate: the tests compare fingerprints instead.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A TLS client connection (handshake done) to `addr`, offering ALPN `http/1.1`.
fn tls_connect(addr: SocketAddr) -> TlsStream {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let conn = ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
        .unwrap();
    let tcp = TcpStream::connect_timeout(&addr, 5 * SEC).unwrap();
    tcp.set_read_timeout(Some(5 * SEC)).unwrap();
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// SHA-256 of the certificate the server at `addr` presents.
fn served_fingerprint(addr: SocketAddr) -> Vec<u8> {
    let s = tls_connect(addr);
    let certs = s.conn.peer_certificates().unwrap();
    sha256(certs[0].as_ref())
}

/// SHA-256 of the (first) certificate in a PEM file.
fn file_fingerprint(path: &Path) -> Vec<u8> {
    sha256(CertificateDer::from_pem_file(path).unwrap().as_ref())
}

/// One `GET path` over `stream`; the whole response.
fn get<S: Read + Write>(mut stream: S, path: &str) -> String {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Asserts the WAV at `path` carries a clean `freq` tone for ≥ `min_active` s.
fn assert_wav_tone(path: &Path, freq: f64, min_active: f64, context: &str) {
    let wav = read_wav(path).unwrap_or_else(|e| panic!("read {}: {e}\n{context}", path.display()));
    assert_tone("wav", &wav.mono(), wav.rate, freq, min_active, context);
}

fn assert_tone(what: &str, x: &[f64], rate: u32, freq: f64, min_active: f64, context: &str) {
    let snr = tone_snr_db(x, rate, freq);
    let dominant = dominant_frequency(x, rate);
    let active = active_duration(x, rate, 0.01);
    eprintln!(
        "[measure] {what}: {freq} Hz SNR {snr:.1} dB, dominant {dominant} Hz, active {active:.2} s"
    );
    assert!(
        snr > MIN_SNR_DB && dominant == freq && active >= min_active,
        "{what}: {freq} Hz: SNR {snr:.1} dB, dominant {dominant} Hz, active {active:.2} s\n{context}"
    );
}

/// ffmpeg publishes a 700 Hz tone to `publish_url` (the echo target) and plays `play_url`;
/// what comes back must be the 700 Hz tone (not the `tone` target's 1 kHz).
fn echo_through(dir: &TestDir, sb: &Skybridge, publish_url: &str, play_url: &str) {
    let mut publisher = Publisher::new(publish_url, 700, 6.0).spawn("publisher", dir.path());
    let out = dir.path().join("echo.wav");
    let mut player = Player::new(play_url, 3.0, &out).spawn("player", dir.path());
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
    assert_wav_tone(&out, 700.0, 1.5, &context);
}

#[test]
fn rtmps_on_the_shared_port_echoes_the_tone() {
    let _serial = serial();
    let dir = TestDir::new("tls-rtmps-shared");
    make_cert(dir.path());
    let t = start(&dir, dir.path(), 5);
    let url = format!("rtmps://{}/call/echo", t.shared);
    echo_through(&dir, &t.sb, &url, &url);
    assert!(
        t.sb.metric(
            "skybridge_client_connections_total",
            &[("transport", "rtmp")]
        ) >= 2.0
    );
}

#[test]
fn plain_rtmp_on_the_shared_port_and_the_rtmps_port_share_a_call() {
    let _serial = serial();
    let dir = TestDir::new("tls-rtmp-shared");
    make_cert(dir.path());
    let t = start(&dir, dir.path(), 5);
    // Publisher in the clear on the shared port, player over RTMPS on its own port: the same
    // (anonymous) identity and name join one call.
    let publish = format!("rtmp://{}/call/echo", t.shared);
    let play = format!("rtmps://{}/call/echo", t.rtmps);
    echo_through(&dir, &t.sb, &publish, &play);
}

#[test]
fn wss_on_the_shared_port_gets_welcome_and_its_echo() {
    let _serial = serial();
    let dir = TestDir::new("tls-wss-shared");
    make_cert(dir.path());
    let t = start(&dir, dir.path(), 5);
    let stream = tls_connect(t.shared);
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "wss://{}/ws",
        t.shared
    ))
    .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tungstenite::http::HeaderValue::from_static("skybridge.v1"),
    );
    let (mut ws, _) = tungstenite::client(request, stream).unwrap();
    ws.get_ref()
        .sock
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let send = |ws: &mut tungstenite::WebSocket<TlsStream>, v: serde_json::Value| {
        ws.send(tungstenite::Message::text(v.to_string())).unwrap();
    };
    send(&mut ws, serde_json::json!({"type": "hello", "version": 1}));
    let mut messages: Vec<serde_json::Value> = Vec::new();
    let mut audio: Vec<u8> = Vec::new();
    let mut call: Option<u16> = None;
    let mut sample: u64 = 0;
    let mut ts: u32 = 0;
    let start_at = Instant::now();
    let mut next_frame = Instant::now();
    // Run ≤ 12 s: hello → welcome → call echo → calling; then send a 1 kHz tone in 20 ms
    // frames and collect what comes back until 3 s of audio arrived.
    while start_at.elapsed() < 12 * SEC && audio.len() < 3 * 8000 {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "welcome" {
                    send(
                        &mut ws,
                        serde_json::json!({"type": "call", "target": "echo"}),
                    );
                }
                if v["type"] == "calling" {
                    call = v["call"].as_u64().map(|c| c as u16);
                }
                messages.push(v);
            }
            Ok(tungstenite::Message::Binary(b)) if b.len() > 8 => audio.extend_from_slice(&b[8..]),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("websocket: {e}\n{messages:?}\n{}", t.sb.tails()),
        }
        if let Some(id) = call {
            while next_frame <= Instant::now() {
                let mut frame = vec![1u8, 0];
                frame.extend_from_slice(&id.to_be_bytes());
                frame.extend_from_slice(&ts.to_be_bytes());
                for i in 0..160u64 {
                    let x = 2.0 * std::f64::consts::PI * 1000.0 * (sample + i) as f64 / 8000.0;
                    frame.push(linear_to_ulaw((x.sin() * 0.5 * 32767.0) as i16));
                }
                sample += 160;
                ts = ts.wrapping_add(160);
                next_frame += Duration::from_millis(20);
                ws.send(tungstenite::Message::binary(frame)).unwrap();
            }
        }
    }
    let _ = ws.close(None);
    let context = format!("{messages:?}\n{}", t.sb.tails());
    assert!(messages.iter().any(|m| m["type"] == "welcome"), "{context}");
    assert!(
        messages.iter().any(|m| m["type"] == "answered"),
        "{context}"
    );
    let x: Vec<f64> = audio
        .iter()
        .map(|&u| f64::from(ulaw_to_linear(u)) / 32768.0)
        .collect();
    assert_tone("wss echo", &x, 8000, 1000.0, 1.5, &context);
}

#[test]
fn https_page_and_ops_paths_on_the_shared_and_https_ports() {
    let dir = TestDir::new("tls-https");
    make_cert(dir.path());
    let t = start(&dir, dir.path(), 2);
    let r = get(tls_connect(t.shared), "/healthz");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = get(tls_connect(t.shared), "/metrics");
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("skybridge_"),
        "{r}"
    );
    let r = get(tls_connect(t.shared), "/readyz");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // Who calls whom stays on the operations listener.
    let r = get(tls_connect(t.shared), "/calls");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = get(tls_connect(t.shared), "/");
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("text/html"),
        "{r}"
    );
    // In the clear on the same port.
    let r = get(TcpStream::connect(t.shared).unwrap(), "/healthz");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // The HTTPS port serves the page, not the operations paths.
    let r = get(tls_connect(t.https), "/");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = get(tls_connect(t.https), "/metrics");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    // The certificate served is the one generated.
    let want = file_fingerprint(&dir.path().join("cert.pem"));
    assert_eq!(served_fingerprint(t.shared), want);
    assert_eq!(served_fingerprint(t.rtmps), want);
    assert_eq!(served_fingerprint(t.https), want);
}

/// Connects, sends `bytes`, and returns how long until the server closed (reads EOF/reset),
/// or None if still open after `limit`.
fn closed_after(addr: SocketAddr, bytes: &[u8], limit: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let t0 = Instant::now();
    s.write_all(bytes).unwrap();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(t0.elapsed()),
        }
    }
    None
}

#[test]
fn silent_hello_silence_and_garbage_are_closed_and_counted() {
    let dir = TestDir::new("tls-hostile");
    make_cert(dir.path());
    let t = start(&dir, dir.path(), 2);
    let rejected = |transport: &str, reason: &str| {
        t.sb.metric(
            "skybridge_client_rejected_total",
            &[("transport", transport), ("reason", reason)],
        )
    };
    // A TLS record header announcing a ClientHello, then nothing: closed at the 2 s deadline.
    let took = closed_after(t.shared, &[0x16, 0x03, 0x01, 0x00, 0xc8], 6 * SEC);
    assert!(
        took.is_some_and(|d| d >= Duration::from_millis(1500) && d < 4 * SEC),
        "{took:?}\n{}",
        t.sb.tails()
    );
    assert!(
        wait_until(2 * SEC, || rejected("shared", "tls") >= 1.0),
        "{}",
        t.sb.tails()
    );
    // Nothing at all: closed at the deadline too.
    let took = closed_after(t.shared, &[], 6 * SEC);
    assert!(
        took.is_some_and(|d| d >= Duration::from_millis(1500) && d < 4 * SEC),
        "{took:?}"
    );
    assert!(wait_until(2 * SEC, || rejected("shared", "deadline") >= 1.0));
    // Garbage: neither TLS, RTMP nor HTTP goes to the RFC 4571 tunnel, which refuses a frame
    // that is not RTP at once.
    let took = closed_after(t.shared, b"\x00\x10not a protocol\r\n", 6 * SEC);
    assert!(took.is_some_and(|d| d < SEC), "{took:?}");
    assert!(
        wait_until(2 * SEC, || rejected("rfc4571", "not_rtp")
            + rejected("rfc4571", "bad_rtp")
            >= 1.0),
        "{}",
        t.sb.metrics()
    );
    // Garbage on the RTMPS port fails its handshake, counted under rtmp.
    let took = closed_after(t.rtmps, b"GET / HTTP/1.1\r\n\r\n", 6 * SEC);
    assert!(took.is_some_and(|d| d < SEC), "{took:?}");
    assert!(wait_until(2 * SEC, || rejected("rtmp", "tls") >= 1.0));
    // Garbage inside TLS is classified again and closed the same way.
    let mut inside = tls_connect(t.shared);
    inside.write_all(b"\x00\x10not a protocol\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = inside.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "expected the connection closed");
    assert!(
        wait_until(2 * SEC, || rejected("rfc4571", "not_rtp")
            + rejected("rfc4571", "bad_rtp")
            >= 2.0),
        "{}",
        t.sb.metrics()
    );
    let log = t.sb.log();
    assert!(log.contains("TLS handshake failed"), "{log}");
    // The relay still serves.
    let r = get(tls_connect(t.shared), "/healthz");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn sighup_swaps_the_certificate_for_new_connections() {
    let dir = TestDir::new("tls-sighup");
    let live = dir.sub("live");
    make_cert(&live);
    let mut t = start(&dir, &live, 5);
    let first = file_fingerprint(&live.join("cert.pem"));
    assert_eq!(served_fingerprint(t.shared), first);

    // A broken pair: the old certificate stays.
    std::fs::write(live.join("cert.pem"), "not a certificate").unwrap();
    t.sb.child().signal("HUP");
    assert!(
        wait_until(5 * SEC, || t.sb.log().contains("reload failed")),
        "{}",
        t.sb.tails()
    );
    assert_eq!(served_fingerprint(t.shared), first);

    // A new pair: new connections see it.
    let fresh = dir.sub("fresh");
    make_cert(&fresh);
    std::fs::rename(fresh.join("key.pem"), live.join("key.pem")).unwrap();
    std::fs::rename(fresh.join("cert.pem"), live.join("cert.pem")).unwrap();
    let second = file_fingerprint(&live.join("cert.pem"));
    assert_ne!(first, second);
    t.sb.child().signal("HUP");
    assert!(
        wait_until(5 * SEC, || served_fingerprint(t.shared) == second),
        "{}",
        t.sb.tails()
    );
    assert_eq!(served_fingerprint(t.rtmps), second);
    assert!(t.sb.log().contains("TLS certificate reloaded"));
}

#[test]
fn chromium_calls_echo_over_https_and_wss_on_the_shared_port() {
    let _serial = serial();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    assert!(
        repo.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core missing: run scripts/install-deps.sh (npm ci in tests/browser)"
    );
    let dir = TestDir::new("tls-chromium");
    make_cert(dir.path());
    let t = start(&dir, dir.path(), 5);
    // The page is served over HTTPS from the shared port and opens wss:// to the same origin;
    // the driver's browser context ignores the self-signed certificate.
    let mut cmd = Command::new("node");
    cmd.arg(repo.join("tests/browser/softphone.mjs")).args([
        format!("--url=https://{}/?processing=off", t.shared),
        "--target=echo".into(),
        "--seconds=3".into(),
        "--tone=1000".into(),
        "--expect-tone=1000".into(),
        "--timeout=30".into(),
    ]);
    let mut page = common::procs::Child::spawn("softphone", &mut cmd, dir.path());
    let status = page.wait_timeout(60 * SEC);
    let context = format!("{}\n{}", page.tails(3000), t.sb.tails());
    assert!(
        status.is_some_and(|s| s.success()),
        "page driver: {status:?}\n{context}"
    );
    assert!(
        t.sb.metric(
            "skybridge_client_connections_total",
            &[("transport", "websocket")]
        ) >= 1.0,
        "{context}"
    );
}

#[test]
fn a_missing_key_file_stops_the_start_naming_the_key_and_file() {
    let dir = TestDir::new("tls-missing-key");
    let (cert, _) = make_cert(dir.path());
    let missing = dir.path().join("nowhere/key.pem");
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        format!(
            "[rtmp]\nlisten = \"\"\n[web]\nlisten = \"\"\n[http]\nlisten = \"\"\n\
             [sip]\nlisten = \"{}\"\n[builtin]\nenabled = false\n[auth]\nanonymous_targets = []\n\
             [tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            loopback(common::procs::free_udp_port()),
            cert.display(),
            missing.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skybridge"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("tls.key_file") && stderr.contains("nowhere/key.pem"),
        "{stderr}"
    );
}
