//! Calls from networks that block UDP, on one port (issue 5's remaining tests):
//!
//! - ffmpeg over RTMPS, Chromium over HTTPS + WSS and GStreamer's RFC 4571 tunnel (through a
//!   local socat TLS client, see [`common::tlsutil`]) on one shared TLS port at the same time,
//!   each leg's tone measured;
//! - 1,000 slow ("slowloris") connections across the RTMP, web, tunnel, shared (plain and TLS),
//!   RTMPS and HTTPS ports from several loopback addresses: those over the per-IP cap are
//!   refused at once and counted, every other one is closed at its handshake deadline however
//!   it trickles bytes, while a client from 127.0.0.2 connects and gets its call answered in
//!   under 1 s; afterwards descriptors, memory, calls and ports are back where they were;
//! - skybridge raises its soft open-files limit to the hard limit at start.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::audio::read_wav;
use common::baresip::{Baresip, BaresipOpts};
use common::ffmpeg::{Player, Publisher};
use common::procs::{free_tcp_port, free_udp_port, have_program, loopback, wait_until, TestDir};
use common::scenario::{anonymous, assert_tone_samples, serial};
use common::skybridge::{Skybridge, SkybridgeOpts};
use common::tlsutil::{
    gst_tunnel_receiver, gst_tunnel_sender, make_cert, tls_shared_tail, TlsForwarder,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SEC: Duration = Duration::from_secs(1);

/// Raises this test process's soft open-files limit to its hard limit, as skybridge does: the
/// slowloris test holds 1,000 client sockets here while skybridge holds its side.
fn raise_own_nofile_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap()
}

/// `POST /v1/calls` with `{"target": target}` (no token: auth is off) to `api`; returns the
/// SSRC and the receive path.
fn new_tunnel_call(api: SocketAddr, target: &str) -> (u32, String) {
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(5 * SEC)).unwrap();
    let body = json!({ "target": target }).to_string();
    write!(
        s,
        "POST /v1/calls HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 201"), "{out}");
    let v: Value = serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap();
    (
        u32::try_from(v["ssrc"].as_u64().unwrap()).unwrap(),
        v["receive"].as_str().unwrap().to_string(),
    )
}

// ------------------------------------------------- three transports on one TLS port at once

/// ffmpeg (RTMPS, 700 Hz into `echo`), Chromium (HTTPS page + WSS, 1 kHz into `echo`) and
/// GStreamer (RFC 4571 over TLS through socat, 1 kHz to baresip, 440 Hz back) all on the one
/// shared port, their calls up at the same time; every leg hears its own tone.
#[test]
fn rtmps_wss_and_a_tls_tunnel_share_one_port_at_the_same_time() {
    let _serial = serial();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    assert!(
        repo.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core missing: run scripts/install-deps.sh (npm ci in tests/browser)"
    );
    assert!(
        have_program("gst-launch-1.0"),
        "gst-launch-1.0 missing: run scripts/install-deps.sh"
    );
    let dir = TestDir::new("edge443-three-on-443");
    let mut bob = Baresip::start(BaresipOpts::answering_with_tone(
        dir.path(),
        "bob",
        440.0,
        60.0,
    ));
    make_cert(dir.path());
    let shared = loopback(free_tcp_port());
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob", "echo", "tone"]),
            dialplan: vec![("bob".into(), bob.uri())],
            tail: tls_shared_tail(dir.path(), shared, 5),
            ..Default::default()
        },
    );
    let socat = TlsForwarder::start(
        dir.path(),
        "socat-tls",
        shared,
        &dir.path().join("cert.pem"),
    );

    // GStreamer: API request, sender and receiver through the TLS forwarder.
    let (ssrc, receive) = new_tunnel_call(socat.addr, "bob");
    let gst_wav = dir.path().join("gst-hears.wav");
    let mut gst_rx = gst_tunnel_receiver(dir.path(), "gst-recv", socat.addr, &receive, &gst_wav);
    let mut gst_tx = gst_tunnel_sender(dir.path(), "gst-send", 1000, ssrc, socat.addr);

    // ffmpeg over RTMPS: publish 700 Hz into echo (until stopped), play what comes back.
    let rtmps = format!("rtmps://{shared}/call/echo");
    let mut publisher = Publisher::new(&rtmps, 700, 40.0).spawn("publisher", dir.path());
    let ffmpeg_wav = dir.path().join("ffmpeg-hears.wav");

    // Chromium: the page over HTTPS, the call over WSS, 1 kHz from the fake microphone.
    let mut cmd = Command::new("node");
    cmd.arg(repo.join("tests/browser/softphone.mjs")).args([
        format!("--url=https://{shared}/?processing=off"),
        "--target=echo".into(),
        "--seconds=4".into(),
        "--tone=1000".into(),
        "--expect-tone=1000".into(),
        "--timeout=40".into(),
    ]);
    let mut page = common::procs::Child::spawn("softphone", &mut cmd, dir.path());

    bob.expect_event("CALL_ESTABLISHED", 10 * SEC);
    let mut player = Player::new(&rtmps, 3.0, &ffmpeg_wav).spawn("player", dir.path());

    // Watch the calls while all three run; the page finishes its call first or last.
    let mut most_calls = 0.0f64;
    let mut most_websocket = 0.0f64;
    let started = Instant::now();
    let page_status = loop {
        let text = sb.metrics();
        let calls = common::skybridge::metric_sum(&text, "skybridge_calls_active", &[]);
        let ws = common::skybridge::metric_sum(
            &text,
            "skybridge_client_connections_active",
            &[("transport", "websocket")],
        );
        if calls >= 3.0 && ws >= 1.0 {
            most_calls = most_calls.max(calls);
        }
        most_websocket = most_websocket.max(ws);
        if let Some(status) = page.try_status() {
            break Some(status);
        }
        if started.elapsed() > 60 * SEC {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let player_status = player.wait_timeout(20 * SEC);
    publisher.stop(SEC);
    gst_tx.signal("INT");
    gst_tx.wait_timeout(5 * SEC);
    bob.expect_event("CALL_CLOSED", 10 * SEC);
    let gst_rx_done = gst_rx.wait_timeout(10 * SEC);
    let context = format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        page.tails(3000),
        player.tails(1500),
        publisher.tails(1500),
        gst_tx.tails(1000),
        gst_rx.tails(1000),
        socat.tails(),
        bob.tails(),
        sb.tails()
    );
    eprintln!("[measure] Chromium page: {}", page.stdout_text().trim());
    eprintln!(
        "[measure] most calls active at once with the page connected: {most_calls}; \
         page finished after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        page_status.is_some_and(|s| s.success()),
        "Chromium page driver (1 kHz over WSS into echo): {page_status:?}\n{context}"
    );
    assert!(
        player_status.is_some_and(|s| s.success()),
        "ffmpeg player: {player_status:?}\n{context}"
    );
    assert!(
        gst_rx_done.is_some(),
        "the GStreamer receive pipeline did not end with the call\n{context}"
    );
    assert!(
        most_calls >= 3.0,
        "the three calls were never up at the same time (most {most_calls}, websocket {most_websocket})\n{context}"
    );
    // ffmpeg hears its own 700 Hz back, not the page's 1 kHz.
    let heard = read_wav(&ffmpeg_wav).unwrap();
    assert_tone_samples(
        "ffmpeg (RTMPS) hears its echo",
        &heard.mono(),
        heard.rate,
        700.0,
        1.5,
        &context,
    );
    let rec = bob
        .recording_path()
        .unwrap_or_else(|| panic!("bob recorded nothing\n{context}"));
    let bob_heard = read_wav(&rec).unwrap();
    assert_tone_samples(
        "bob hears GStreamer (tunnel over TLS)",
        &bob_heard.mono(),
        bob_heard.rate,
        1000.0,
        3.0,
        &context,
    );
    let gst_heard = read_wav(&gst_wav).unwrap();
    assert_tone_samples(
        "GStreamer hears bob",
        &gst_heard.mono(),
        gst_heard.rate,
        440.0,
        3.0,
        &context,
    );
    // Every leg came in over TLS on the shared port: RTMPS ×2, page + WSS, API + tunnel +
    // receive stream through socat.
    let tls_seen = sb
        .logs()
        .lines()
        .filter(|l| l.contains("protocol recognised") && l.contains("Tls"))
        .count();
    assert!(tls_seen >= 7, "TLS connections seen: {tls_seen}\n{context}");
    assert!(socat.connections() >= 3, "{context}");
}

// --------------------------------------------------------------------------- slowloris × 1000

/// Seconds every handshake deadline is set to in the slowloris test.
const DEADLINE_SECS: u64 = 3;
/// The per-IP cap (relay-wide, across listeners) in the slowloris test.
const CAP: usize = 40;
/// Connections from 127.0.0.1 on each listener (6 listeners: 60 against the cap of 40).
const LOCAL_PER_LISTENER: usize = 10;
/// A slow client sends one byte this often (faster than the deadline: a deadline that
/// restarted on every byte would never fire).
const TRICKLE: Duration = Duration::from_secs(1);

/// A TLS record header announcing a 200-byte ClientHello, then the start of it.
const TLS_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
];
/// RTMP C0 then the start of C1.
const RTMP_C0C1: &[u8] = &[0x03, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3];
/// An RFC 4571 length (12) then the start of an RTP header.
const RFC4571_START: &[u8] = &[0x00, 0x0c, 0x80, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
/// The start of a WebSocket upgrade request.
const HTTP_START: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\n";

/// One kind of slow client: which listener, what it trickles, and when the relay's deadline
/// for it falls (after accept; bytes needed before the shared port hands it to a driver add
/// their trickle time, as that driver's deadline starts then).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Rtmp,
    Web,
    Tunnel,
    SharedRtmp,
    SharedTunnel,
    SharedTls,
    Rtmps,
    Https,
}

const KINDS: [Kind; 8] = [
    Kind::Rtmp,
    Kind::Web,
    Kind::Tunnel,
    Kind::SharedRtmp,
    Kind::SharedTunnel,
    Kind::SharedTls,
    Kind::Rtmps,
    Kind::Https,
];

impl Kind {
    fn bytes(self) -> &'static [u8] {
        match self {
            Kind::Rtmp | Kind::SharedRtmp => RTMP_C0C1,
            Kind::Web => HTTP_START,
            Kind::Tunnel | Kind::SharedTunnel => RFC4571_START,
            Kind::SharedTls | Kind::Rtmps | Kind::Https => TLS_HELLO,
        }
    }

    /// The listener it connects to (the shared port hosts three kinds).
    fn listener(self) -> &'static str {
        match self {
            Kind::Rtmp => "rtmp",
            Kind::Web => "web",
            Kind::Tunnel => "tunnel",
            Kind::SharedRtmp | Kind::SharedTunnel | Kind::SharedTls => "shared",
            Kind::Rtmps => "rtmps",
            Kind::Https => "https",
        }
    }

    /// When the relay's deadline closes it, after connect.
    fn expected_close(self) -> Duration {
        let deadline = Duration::from_secs(DEADLINE_SECS);
        match self {
            // The second byte decides "not TLS, RTMP or HTTP"; the tunnel's read deadline
            // starts at the hand-over.
            Kind::SharedTunnel => TRICKLE + deadline,
            _ => deadline,
        }
    }
}

/// What happened to one slow connection.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// The relay closed it this long after connect.
    Closed(Duration),
    /// Still open at the test's bound.
    Lingered,
    /// connect() itself failed.
    ConnectFailed,
}

/// Connects from `src` to `dst`, trickles `bytes` one every [`TRICKLE`], and reports when
/// the relay closed the connection (EOF or reset), giving up after `limit`.
async fn slow_client(
    src: IpAddr,
    dst: SocketAddr,
    bytes: &'static [u8],
    limit: Duration,
) -> Outcome {
    let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
        return Outcome::ConnectFailed;
    };
    if socket.bind(SocketAddr::new(src, 0)).is_err() {
        return Outcome::ConnectFailed;
    }
    let Ok(Ok(mut stream)) = tokio::time::timeout(2 * SEC, socket.connect(dst)).await else {
        return Outcome::ConnectFailed;
    };
    let t0 = tokio::time::Instant::now();
    let mut next = t0;
    let mut sent = 0usize;
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Outcome::Closed(t0.elapsed()),
                Ok(_) => {}
            },
            _ = tokio::time::sleep_until(next) => {
                if sent < bytes.len() {
                    // A write to a closed connection fails; the read above reports the close.
                    let _ = stream.write_all(&bytes[sent..=sent]).await;
                    sent += 1;
                }
                next += TRICKLE;
            }
            _ = tokio::time::sleep_until(t0 + limit) => return Outcome::Lingered,
        }
    }
}

/// Open descriptors of `pid` (entries in /proc/<pid>/fd).
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A WebSocket client bound to `src`: connect, upgrade, hello, call `echo`; returns the time
/// from connect to `answered`, or why it failed.
fn call_echo_from(src: Ipv4Addr, web: SocketAddr) -> Result<Duration, String> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .map_err(|e| e.to_string())?;
    socket
        .bind(&SocketAddr::new(IpAddr::V4(src), 0).into())
        .map_err(|e| format!("bind {src}: {e}"))?;
    let t0 = Instant::now();
    socket
        .connect_timeout(&web.into(), SEC)
        .map_err(|e| format!("connect: {e}"))?;
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{web}/ws"))
            .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tungstenite::http::HeaderValue::from_static("skybridge.v1"),
    );
    let (mut ws, _) = tungstenite::client(request, stream).map_err(|e| format!("upgrade: {e}"))?;
    let send = |ws: &mut tungstenite::WebSocket<TcpStream>, v: Value| {
        ws.send(tungstenite::Message::text(v.to_string()))
            .map_err(|e| e.to_string())
    };
    send(&mut ws, json!({"type": "hello", "version": 1}))?;
    let mut seen = Vec::new();
    while t0.elapsed() < 5 * SEC {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
                match v["type"].as_str() {
                    Some("welcome") => send(&mut ws, json!({"type": "call", "target": "echo"}))?,
                    Some("answered") => {
                        let took = t0.elapsed();
                        let call = v["call"].clone();
                        send(&mut ws, json!({"type": "hangup", "call": call}))?;
                        let _ = ws.close(None);
                        let _ = ws.flush();
                        return Ok(took);
                    }
                    Some("hangup") | Some("error") => return Err(format!("{seen:?} {v}")),
                    _ => {}
                }
                seen.push(v);
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("websocket: {e} after {seen:?}")),
        }
    }
    Err(format!("no answer within 5 s: {seen:?}"))
}

#[test]
fn a_thousand_slow_connections_are_cut_at_their_deadlines_while_another_address_calls_in_under_a_second(
) {
    let _serial = serial();
    let nofile = raise_own_nofile_limit();
    assert!(
        nofile >= 2200,
        "this test needs ≥ 2200 open files (hard limit {nofile})"
    );
    let dir = TestDir::new("edge443-slowloris");
    make_cert(dir.path());
    let shared = loopback(free_tcp_port());
    let rtmps = loopback(free_tcp_port());
    let https = loopback(free_tcp_port());
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            rtmp: format!("tls_listen = \"{rtmps}\"\nhandshake_timeout_secs = {DEADLINE_SECS}"),
            web: format!("tls_listen = \"{https}\"\nhandshake_timeout_secs = {DEADLINE_SECS}"),
            tunnel: format!("read_timeout_secs = {DEADLINE_SECS}"),
            limits: format!("max_connections_per_ip = {CAP}"),
            tail: tls_shared_tail(dir.path(), shared, DEADLINE_SECS),
            ..Default::default()
        },
    );
    let pid = sb.pid();
    let addr_of = |kind: Kind| match kind.listener() {
        "rtmp" => sb.rtmp,
        "web" => sb.web,
        "tunnel" => sb.tunnel,
        "shared" => shared,
        "rtmps" => rtmps,
        _ => https,
    };
    let metric_total =
        |reason: &str| sb.metric("skybridge_client_rejected_total", &[("reason", reason)]);
    // Warm up (the first TLS handshake, the first WebSocket call) before the baseline.
    call_echo_from(Ipv4Addr::new(127, 0, 0, 2), sb.web).unwrap();
    assert!(wait_until(3 * SEC, || sb
        .metric("skybridge_calls_active", &[])
        == 0.0));
    let fds_before = fd_count(pid);
    let rss_before = sb.rss_kib();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Three rounds: each shows the caps and deadlines; together they show that memory levels
    // off instead of growing with every flood.
    let mut rss_rounds = Vec::new();
    for round in 1..=std::env::var("SLOWLORIS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3u32)
    {
        let cap_before = metric_total("connection_cap");
        let rejected_before: f64 = sb.metric("skybridge_client_rejected_total", &[]);

        // The plan: from 127.0.0.1, the first LOCAL_PER_LISTENER connections of every
        // listener (60 in all against a relay-wide cap of 40: 20 refused, whichever listener
        // they knock on); the other 940 rotate over 127.0.0.3–32, ≤ 32 per address.
        let listeners = ["rtmp", "web", "tunnel", "shared", "rtmps", "https"];
        let local = Ipv4Addr::new(127, 0, 0, 1);
        let mut plan: Vec<(Kind, Ipv4Addr)> = Vec::new();
        let mut per_listener: BTreeMap<&str, usize> = BTreeMap::new();
        let mut others = 0usize;
        for i in 0..1000usize {
            let kind = KINDS[i % KINDS.len()];
            let n = per_listener.entry(kind.listener()).or_insert(0);
            let src = if *n < LOCAL_PER_LISTENER {
                local
            } else {
                others += 1;
                Ipv4Addr::new(127, 0, 0, 3 + (others % 30) as u8)
            };
            *n += 1;
            plan.push((kind, src));
        }
        let mut per_source: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
        for (_, src) in &plan {
            *per_source.entry(*src).or_insert(0) += 1;
        }
        let local_total = per_source[&local];
        assert_eq!(local_total, LOCAL_PER_LISTENER * listeners.len());
        assert!(per_source.iter().all(|(&src, &n)| src == local || n <= CAP));

        let limit = Duration::from_secs(DEADLINE_SECS) + TRICKLE + 5 * SEC;
        let flood_start = Instant::now();
        let tasks: Vec<_> = plan
            .iter()
            .map(|&(kind, src)| {
                let dst = addr_of(kind);
                runtime.spawn(slow_client(IpAddr::V4(src), dst, kind.bytes(), limit))
            })
            .collect();

        // While they hold their places: a client from another address calls in.
        std::thread::sleep(Duration::from_millis(1500));
        let fds_during = fd_count(pid);
        let good = call_echo_from(Ipv4Addr::new(127, 0, 0, 2), sb.web);
        let good_at = flood_start.elapsed();

        let outcomes: Vec<Outcome> = runtime.block_on(async {
            let mut out = Vec::with_capacity(tasks.len());
            for t in tasks {
                out.push(t.await.unwrap_or(Outcome::ConnectFailed));
            }
            out
        });
        let flood_secs = flood_start.elapsed().as_secs_f64();

        // Tally per listener and source: refused at once, closed at the deadline, anything else.
        let mut refused: BTreeMap<&str, usize> = BTreeMap::new();
        let mut at_deadline = 0usize;
        let mut wrong: Vec<String> = Vec::new();
        let mut close_range: BTreeMap<Kind, (f64, f64)> = BTreeMap::new();
        for (&(kind, src), outcome) in plan.iter().zip(&outcomes) {
            match *outcome {
                Outcome::Closed(d) if d < SEC => {
                    if src == local {
                        *refused.entry(kind.listener()).or_insert(0) += 1;
                    } else {
                        wrong.push(format!("{kind:?} from {src} closed early after {d:?}"));
                    }
                }
                Outcome::Closed(d) => {
                    let want = kind.expected_close();
                    let r = close_range.entry(kind).or_insert((f64::MAX, 0.0));
                    r.0 = r.0.min(d.as_secs_f64());
                    r.1 = r.1.max(d.as_secs_f64());
                    if d + Duration::from_millis(300) >= want && d <= want + 2 * SEC {
                        at_deadline += 1;
                    } else {
                        wrong.push(format!(
                            "{kind:?} from {src} closed after {d:?} (deadline {want:?})"
                        ));
                    }
                }
                other => wrong.push(format!("{kind:?} from {src}: {other:?}")),
            }
        }
        let refused_total: usize = refused.values().sum();
        eprintln!(
            "[measure] slowloris round {round}: 1000 connections, {refused_total} refused at once ({refused:?}), \
             {at_deadline} closed at their deadline, {} otherwise; close times per kind (s): {close_range:?}; \
             flood over after {flood_secs:.1} s",
            wrong.len()
        );
        eprintln!(
            "[measure] round {round}: skybridge fds: {fds_before} before, {fds_during} during; RSS {rss_before} KiB before the first round"
        );
        let context = format!("{:?}\n{}", &wrong[..wrong.len().min(20)], sb.tails());
        let took = good.unwrap_or_else(|e| panic!("the 127.0.0.2 client failed: {e}\n{context}"));
        eprintln!(
            "[measure] round {round}: 127.0.0.2 connected and was answered in {:.0} ms, {:.1} s into the flood",
            took.as_secs_f64() * 1000.0,
            good_at.as_secs_f64()
        );
        assert!(
            wrong.is_empty(),
            "{} connections misbehaved: {context}",
            wrong.len()
        );
        // The cap is the relay's, not each listener's: exactly the excess over it is refused,
        // spread over whichever listeners 127.0.0.1 reached last.
        assert_eq!(
            refused_total,
            local_total - CAP,
            "refused from 127.0.0.1: {refused:?}\n{context}"
        );
        assert_eq!(at_deadline + refused_total, 1000);
        assert!(
            fds_during >= fds_before + 600,
            "the flood was not held while the good client called ({fds_before} → {fds_during} fds)"
        );
        assert!(
            took < SEC,
            "the 127.0.0.2 call took {took:?} to be answered during the flood\n{context}"
        );

        // Counted: every refusal under connection_cap, every deadline close under some reason.
        assert!(
            wait_until(3 * SEC, || metric_total("connection_cap") - cap_before
                == refused_total as f64),
            "connection_cap counted {} for {refused_total} refused\n{}",
            metric_total("connection_cap") - cap_before,
            sb.metrics()
        );
        let rejected_after = sb.metric("skybridge_client_rejected_total", &[]);
        assert!(
            rejected_after - rejected_before >= 1000.0,
            "rejections counted {} for 1000 connections\n{}",
            rejected_after - rejected_before,
            sb.metrics()
        );
        assert!(
            sb.log().contains("connection cap reached"),
            "no log line for the refusals"
        );

        // Nothing left behind: connections, calls, ports, descriptors, memory.
        let settled = wait_until(5 * SEC, || {
            let text = sb.metrics();
            let m = |n: &str| common::skybridge::metric_sum(&text, n, &[]);
            m("skybridge_client_connections_active") == 0.0
                && m("skybridge_calls_active") == 0.0
                && m("skybridge_rtp_ports_in_use") == 0.0
                && fd_count(pid) <= fds_before + 2
        });
        let fds_after = fd_count(pid);
        let rss_after = sb.rss_kib();
        eprintln!(
            "[measure] after round {round}: skybridge {fds_after} fds, RSS {rss_after} KiB ({:+} KiB)",
            rss_after as i64 - rss_before as i64
        );
        assert!(
            settled,
            "not back to baseline: fds {fds_before} → {fds_after}\n{}",
            sb.metrics()
        );
        rss_rounds.push(rss_after);
    }
    // Memory: the allocator keeps much of what the held connections freed (glibc's
    // per-thread arenas; measured +20–28 MiB after the first round, then creeping up by a
    // few MiB in steps as fragmentation shifts: 6 rounds measured +20.3, +21.6, +27.9,
    // +29.4, +29.5, +31.9 MiB), so RSS does not return to the baseline and round-to-round
    // growth is noisy. Leaks of objects are caught exactly above (connections, calls, ports,
    // descriptors back to baseline); here a coarse guard: leaking half of one connection's
    // buffers (~24 KiB each at the peak) would add ≥ 11 MiB per round of 980 held
    // connections, ≥ 22 MiB from the first round to the last; less than 14 MiB may grow.
    let last = *rss_rounds.last().unwrap_or(&rss_before);
    let first = rss_rounds.first().copied().unwrap_or(rss_before);
    assert!(
        last <= rss_before + 980 * 48,
        "RSS {rss_before} → {rss_rounds:?} KiB: more than 48 KiB per held connection kept"
    );
    assert!(
        last.saturating_sub(first) <= 14 * 1024,
        "RSS {rss_before} → {rss_rounds:?} KiB: growing with every flood (a leak)"
    );
    // And the relay still takes calls from the address the cap held back.
    let again = call_echo_from(Ipv4Addr::LOCALHOST, sb.web);
    assert!(again.is_ok(), "{again:?}\n{}", sb.tails());
}

// ------------------------------------------------------------------------------ NOFILE raise

/// Started with a soft open-files limit of 256, skybridge raises it to the hard limit and
/// logs both.
#[test]
fn skybridge_raises_its_soft_open_files_limit_to_the_hard_limit() {
    let dir = TestDir::new("edge443-nofile");
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    assert!(hard > 256, "hard limit {hard} too low for this test");
    let http = loopback(free_tcp_port());
    let config = dir.path().join("nofile.toml");
    std::fs::write(
        &config,
        format!(
            "[rtmp]\nlisten = \"\"\n[web]\nlisten = \"\"\n[http]\nlisten = \"{http}\"\n\
             [sip]\nlisten = \"{}\"\n[builtin]\nenabled = false\n\
             [auth]\nanonymous_targets = []\n",
            loopback(free_udp_port())
        ),
    )
    .unwrap();
    // The shell lowers its own soft limit, then becomes skybridge.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -S -n 256 && exec \"$0\" run --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_skybridge"))
        .arg(&config);
    let mut child = common::procs::Child::spawn("skybridge-nofile", &mut cmd, dir.path());
    let logged = wait_until(10 * SEC, || {
        child.stderr_text().contains("open-files limit")
            && common::skybridge::http_get(http, "/readyz")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.pid())).unwrap();
    let log = common::skybridge::strip_ansi(&child.stderr_text());
    child.stop(2 * SEC);
    assert!(logged, "{log}");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    eprintln!("[measure] test process NOFILE {soft}/{hard}; skybridge: {line}");
    // "Max open files  <soft>  <hard>  files"
    assert_eq!(fields[3], fields[4], "soft ≠ hard: {line}");
    assert_eq!(fields[4], hard.to_string(), "{line}");
    let raised = log
        .lines()
        .find(|l| l.contains("raised to the hard limit"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        raised.contains("soft_before=256") && raised.contains(&format!("hard={hard}")),
        "{raised}"
    );
}
