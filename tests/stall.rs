//! Mouth-to-ear delay across a stalled TCP client link (issue 5, item 4): a scripted RFC 4571
//! tunnel client calls a scripted SIP UAS through skybridge, its TCP link running through a
//! [`LinkProxy`] that freezes for 3 s mid-call. Every frame's payload carries its number, and
//! frame `i` is "spoken" at `t0 + i × 20 ms` on each side, so the delay of every frame is its
//! arrival minus that instant. The bound is `rtp.max_delay_ms` (200 ms): toward SIP the pacer
//! drops what is older, toward the client the send queue does; from one second after the link
//! thaws every frame must arrive within the bound plus a scheduling slack.
//!
//! Figures are printed (`cargo test --test stall -- --nocapture`), only the bound is asserted.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::linkproxy::LinkProxy;
use common::procs::{wait_until, TestDir};
use common::scenario::{anonymous, dialplan, serial};
use common::skybridge::{Skybridge, SkybridgeOpts};
use common::uas::{numbered_payload, payload_number, Uas, PTIME};
use serde_json::{json, Value};

const MS: Duration = Duration::from_millis(1);
/// `rtp.max_delay_ms` (the default, stated here so the assertion names it).
const BOUND: Duration = Duration::from_millis(200);
/// Scheduling slack on a noisy 2-core machine (threads waking late, the pacer's tick).
const SLACK: Duration = Duration::from_millis(60);
/// Timeline from t0 (the first frame of each side): the link freezes at FREEZE_AT for STALL.
const FREEZE_AT: Duration = Duration::from_secs(2);
const STALL: Duration = Duration::from_secs(3);
/// Frames sent by each side: 11 s, so 5 s of it from one second after the thaw.
const FRAMES: u32 = 550;
/// SO_SNDBUF of the test client's socket.
const CLIENT_SNDBUF: usize = 4096;

/// `POST /v1/calls` on the web listener; (call id, ssrc, tunnel address).
fn new_tunnel_call(web: SocketAddr, target: &str) -> (u64, u32, SocketAddr) {
    let mut s = TcpStream::connect(web).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = json!({ "target": target }).to_string();
    write!(
        s,
        "POST /v1/calls HTTP/1.1\r\nHost: {web}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let v: Value = serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap();
    (
        v["call"].as_u64().unwrap(),
        u32::try_from(v["ssrc"].as_u64().unwrap()).unwrap(),
        v["tunnel"].as_str().unwrap().parse().unwrap(),
    )
}

/// One numbered PCMU frame as RTP framed per RFC 4571.
fn tunnel_frame(ssrc: u32, i: u32) -> Vec<u8> {
    let mut p = vec![0u8, 172, 0x80, 0];
    p.extend_from_slice(&(i as u16).to_be_bytes());
    p.extend_from_slice(&(i * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&numbered_payload(i));
    p
}

/// Delays (ms) of the frames spoken in `[from, to)` (frame i spoken at t0 + i × 20 ms);
/// `arrivals` holds (arrival, frame number). Each frame counts once (its first arrival).
fn delays(t0: Instant, arrivals: &[(Instant, u32)], from: Duration, to: Duration) -> Vec<f64> {
    let mut seen = std::collections::BTreeSet::new();
    arrivals
        .iter()
        .filter(|(_, i)| {
            let spoken = PTIME * *i;
            spoken >= from && spoken < to && seen.insert(*i)
        })
        .map(|(at, i)| at.saturating_duration_since(t0 + PTIME * *i).as_secs_f64() * 1000.0)
        .collect()
}

fn median_max(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let med = s.get(s.len() / 2).copied().unwrap_or(f64::NAN);
    (med, s.last().copied().unwrap_or(f64::NAN))
}

/// Frames spoken in `[from, to)`.
fn spoken_in(from: Duration, to: Duration) -> usize {
    (0..FRAMES)
        .filter(|i| PTIME * *i >= from && PTIME * *i < to)
        .count()
}

#[test]
fn a_three_second_stall_of_the_client_link_leaves_the_delay_within_the_bound_both_ways() {
    let _serial = serial();
    let dir = TestDir::new("stall");
    let uas = Uas::start();
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["uas"]),
            dialplan: dialplan(&[("uas", &uas.uri("uas"))]),
            // e.g. STALL_LIMITS="client_send_buffer_bytes = 2048" to compare buffer sizes.
            limits: std::env::var("STALL_LIMITS").unwrap_or_default(),
            ..Default::default()
        },
    );
    let (_, ssrc, tunnel) = new_tunnel_call(sb.web, "uas");
    let proxy = LinkProxy::start(tunnel);
    // The client's own socket keeps little unsent audio (as skybridge's client sockets do), so
    // what the stall piles up on the client side stays small.
    let sock = {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_send_buffer_size(CLIENT_SNDBUF).unwrap();
        s.connect_timeout(&proxy.addr.into(), Duration::from_secs(2))
            .unwrap();
        TcpStream::from(s)
    };
    sock.set_nodelay(true).unwrap();

    // The client: a writer speaking frame i at t0 + i × 20 ms (a write blocked by the stall
    // just makes the frames late, as a real client's would be), and a reader timestamping
    // every RTP packet the relay sends back.
    let stop = Arc::new(AtomicBool::new(false));
    let heard: Arc<Mutex<Vec<(Instant, u32)>>> = Arc::default();
    let t0_client = Instant::now() + 100 * MS;
    let writer = {
        let mut s = sock.try_clone().unwrap();
        let stop = stop.clone();
        thread::spawn(move || {
            for i in 0..FRAMES {
                let due = t0_client + PTIME * i;
                while Instant::now() < due && !stop.load(Ordering::Relaxed) {
                    thread::sleep((due - Instant::now().min(due)).min(5 * MS));
                }
                if stop.load(Ordering::Relaxed) || s.write_all(&tunnel_frame(ssrc, i)).is_err() {
                    return;
                }
            }
        })
    };
    let reader = {
        let mut s = sock.try_clone().unwrap();
        s.set_read_timeout(Some(20 * MS)).unwrap();
        let (stop, heard) = (stop.clone(), heard.clone());
        thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            let mut inbox: Vec<u8> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match s.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => inbox.extend_from_slice(&buf[..n]),
                    Err(_) => continue,
                }
                let at = Instant::now();
                while inbox.len() >= 2 {
                    let len = usize::from(u16::from_be_bytes([inbox[0], inbox[1]]));
                    if inbox.len() < 2 + len {
                        break;
                    }
                    if let Some(i) = payload_number(&inbox[2..2 + len]) {
                        heard.lock().unwrap().push((at, i));
                    }
                    inbox.drain(..2 + len);
                }
            }
        })
    };

    // The tunnel binds with the first frame; the UAS answers and starts talking back.
    assert!(
        wait_until(Duration::from_secs(5), || uas.confirmed()),
        "the UAS was never called (invites {})\n{}",
        uas.invites(),
        sb.tails()
    );
    let t0_uas = Instant::now() + 20 * MS;
    uas.start_sending(t0_uas);

    // The stall: both directions freeze at FREEZE_AT (client clock) for 3 s.
    let freeze_at = t0_client + FREEZE_AT;
    thread::sleep(freeze_at.saturating_duration_since(Instant::now()));
    proxy.freeze_for(STALL);
    let thaw = Instant::now() + STALL;
    let end = t0_client + PTIME * FRAMES + 300 * MS;
    thread::sleep(end.saturating_duration_since(Instant::now()));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    reader.join().unwrap();
    uas.stop_sending();

    let report = |what: &str, t0: Instant, arrivals: &[(Instant, u32)]| {
        // Windows on this side's speaking clock.
        let freeze = freeze_at.saturating_duration_since(t0);
        let thawed = thaw.saturating_duration_since(t0);
        let last = PTIME * FRAMES - 100 * MS;
        let before = delays(t0, arrivals, 500 * MS, freeze);
        let during = delays(t0, arrivals, freeze, thawed);
        let after = delays(t0, arrivals, thawed + Duration::from_secs(1), last);
        let (b_med, b_max) = median_max(&before);
        let (d_med, d_max) = median_max(&during);
        let (a_med, a_max) = median_max(&after);
        let stall_frames = spoken_in(freeze, thawed);
        eprintln!(
            "[measure] {what}: before the stall median {b_med:.0} ms max {b_max:.0} ms ({} frames); \
             spoken during the 3 s stall: {} of {stall_frames} delivered (median {d_med:.0} ms, max {d_max:.0} ms); \
             from 1 s after the thaw: median {a_med:.0} ms max {a_max:.0} ms ({} of {} frames)",
            before.len(),
            during.len(),
            after.len(),
            spoken_in(thawed + Duration::from_secs(1), last),
        );
        (before, during, after, stall_frames)
    };

    let received: Vec<(Instant, u32)> = uas
        .received()
        .iter()
        .filter_map(|(at, p)| Some((*at, payload_number(p)?)))
        .collect();
    let dump: String = received
        .iter()
        .map(|(at, i)| {
            format!(
                "{i} {:.1} {:.1}\n",
                (PTIME * *i).as_secs_f64() * 1e3,
                at.saturating_duration_since(t0_client).as_secs_f64() * 1e3
            )
        })
        .collect();
    std::fs::write(dir.path().join("uas-arrivals.txt"), dump).unwrap();
    let (before, during, after, stall_frames) = report("client → SIP", t0_client, &received);
    let heard = heard.lock().unwrap().clone();
    let (b2, during2, after2, stall_frames2) = report("SIP → client", t0_uas, &heard);
    let metrics = sb.metrics();
    let late_rtp = common::skybridge::metric_sum(
        &metrics,
        "skybridge_packets_dropped_total",
        &[("reason", "late"), ("leg", "rtp")],
    );
    let late_client = common::skybridge::metric_sum(
        &metrics,
        "skybridge_packets_dropped_total",
        &[("reason", "late"), ("leg", "rfc4571")],
    );
    eprintln!(
        "[measure] frames dropped late: toward SIP {late_rtp}, toward the client {late_client} \
         (skybridge_packets_dropped_total{{reason=\"late\"}}); client delay gauge {}",
        common::skybridge::metric_sum(&metrics, "skybridge_client_delay_seconds", &[])
    );
    let context = format!("{}\n{metrics}", sb.tails());

    // Audio flowed both ways before the stall, promptly.
    assert!(
        before.len() > 50 && b2.len() > 50,
        "too little audio before the stall\n{context}"
    );
    let within = (BOUND + SLACK).as_secs_f64() * 1000.0;
    let last = PTIME * FRAMES - 100 * MS;
    // Toward the client: from one second after the thaw every frame arrives within the bound
    // (plus slack), and nearly all of them arrive.
    let (_, max2) = median_max(&after2);
    let want2 = spoken_in(
        thaw.saturating_duration_since(t0_uas) + Duration::from_secs(1),
        last,
    );
    assert!(
        max2 <= within,
        "SIP → client: after recovery a frame took {max2:.0} ms\n{context}"
    );
    assert!(
        after2.len() * 10 >= want2 * 9,
        "SIP → client: only {} of {want2} frames after recovery\n{context}",
        after2.len()
    );
    // Toward SIP: from one second after the thaw every frame arrives within the bound (plus
    // slack), and nearly all of them arrive — skybridge keeps none of the stall as delay.
    let (a_med, a_max) = median_max(&after);
    let want = spoken_in(
        thaw.saturating_duration_since(t0_client) + Duration::from_secs(1),
        last,
    );
    assert!(
        a_max <= within,
        "client → SIP: after recovery a frame took {a_max:.0} ms (median {a_med:.0})\n{context}"
    );
    assert!(
        after.len() * 10 >= want * 9,
        "client → SIP: only {} of {want} frames after recovery\n{context}",
        after.len()
    );
    // The backlog the client's TCP delivered in a burst at the thaw was paced against the
    // call's timeline: what was older than the bound was dropped (counted), and what went out
    // was within the bound.
    // (None delivered at all is fine: the max of nothing is NaN and is not compared.)
    let (_, d_max) = median_max(&during);
    assert!(
        during.len() * 5 <= stall_frames,
        "client → SIP: {} of {stall_frames} stalled frames still delivered\n{context}",
        during.len()
    );
    assert!(
        during.is_empty() || d_max <= within,
        "client → SIP: a stalled frame went out {d_max:.0} ms late\n{context}"
    );
    // How many stalled frames reach skybridge at all depends on how much the client's own
    // socket took during the freeze (measured 64–141 of 151); those that did were dropped late.
    assert!(
        late_rtp >= 1.0,
        "pacer late drops {late_rtp} for {stall_frames} stalled frames\n{context}"
    );
    // The frames spoken during the stall toward the client were mostly dropped by the send
    // queue (not delivered 3 s late) and counted; what did arrive late had left skybridge
    // before the stall was felt and sat in the network — here the proxy's 8 KiB receive
    // buffer, ~47 frames; skybridge's own socket holds at most TCP_NOTSENT_LOWAT unsent.
    assert!(
        during2.len() * 10 <= stall_frames2 * 4,
        "SIP → client: {} of {stall_frames2} stalled frames still delivered\n{context}",
        during2.len()
    );
    assert!(
        late_client * 4.0 >= stall_frames2 as f64,
        "client queue late drops {late_client}\n{context}"
    );
    drop(sock);
    drop(proxy);
}
