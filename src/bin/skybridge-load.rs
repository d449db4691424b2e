//! Load generator for the RFC 4571 tunnel (README, "Performance"): N concurrent tunnel calls,
//! each set up with `POST /v1/calls` and sending `--pps` packets/s of 172-byte PCMU RTP over TCP;
//! the dialled target is a tiny SIP UAS inside this tool whose SDP points every call at one UDP
//! sink here, so skybridge's work is TCP in → RTP/UDP out and nothing else. Measures packets
//! delivered/s, loss, and skybridge's CPU time per packet from `/proc/<pid>/stat`.
//!
//! Bounded: every phase has a deadline and the whole run a hard one; it exits by itself.
//! Prints one `result key=value…` line (parsed by `scripts/load.sh`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Parser;
use skybridge_codecs::sip::{Message, MessageBuilder, StartLine};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};
use tokio::sync::Semaphore;

/// RTP header + 20 ms of PCMU.
const RTP_LEN: usize = 172;
/// Largest HTTP answer read from the API.
const MAX_ANSWER: usize = 4096;

#[derive(Parser, Debug)]
#[command(about = "RFC 4571 tunnel load generator for skybridge")]
struct Args {
    /// Concurrent tunnel calls.
    #[arg(long, default_value_t = 50)]
    calls: usize,
    /// Packets per second per call.
    #[arg(long, default_value_t = 50)]
    pps: u32,
    /// skybridge's web listener (serves POST /v1/calls).
    #[arg(long, default_value = "127.0.0.1:8080")]
    web: SocketAddr,
    /// Dial-plan name to call (must route to --uas).
    #[arg(long, default_value = "sink")]
    target: String,
    /// Where this tool's SIP UAS listens (UDP).
    #[arg(long, default_value = "127.0.0.1:5090")]
    uas: SocketAddr,
    /// UDP port of the RTP sink (RTCP goes to port + 1).
    #[arg(long, default_value_t = 46000)]
    sink_port: u16,
    /// Number of source addresses 127.0.0.1..=127.0.0.K to spread calls over (per-IP caps).
    #[arg(long, default_value_t = 4)]
    ips: u8,
    /// skybridge's process id (CPU and RSS are read from /proc/PID).
    #[arg(long)]
    pid: u32,
    /// Seconds of sending before the measured window (calls get answered).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 8.0)]
    duration: f64,
    /// Clock ticks per second of /proc/PID/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
    /// Calls set up at once.
    #[arg(long, default_value_t = 16)]
    setup_concurrency: usize,
}

/// Counters shared by the tasks.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    send_errors: AtomicU64,
    received: AtomicU64,
    received_bad_len: AtomicU64,
    rtcp: AtomicU64,
    invites: AtomicU64,
    byes: AtomicU64,
}

/// One snapshot of the counters and CPU clocks.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Snapshot {
    at: Instant,
    sent: u64,
    received: u64,
    /// skybridge utime + stime, ticks.
    relay_ticks: u64,
    /// skybridge utime alone, ticks.
    relay_user_ticks: u64,
    /// this tool's utime + stime, ticks.
    own_ticks: u64,
}

/// What the measured window works out to.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Window {
    secs: f64,
    sent_pps: f64,
    delivered_pps: f64,
    loss_pct: f64,
    relay_cpu_pct: f64,
    /// Share of the relay's CPU time spent in user space, percent.
    relay_user_share_pct: f64,
    relay_ns_per_pkt: f64,
    own_cpu_pct: f64,
}

impl Window {
    fn between(a: &Snapshot, b: &Snapshot, clk_tck: u64) -> Window {
        let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
        let sent = b.sent.saturating_sub(a.sent);
        let received = b.received.saturating_sub(a.received);
        let tick = 1.0 / clk_tck.max(1) as f64;
        let relay_cpu = b.relay_ticks.saturating_sub(a.relay_ticks) as f64 * tick;
        let relay_user = b.relay_user_ticks.saturating_sub(a.relay_user_ticks) as f64 * tick;
        let own_cpu = b.own_ticks.saturating_sub(a.own_ticks) as f64 * tick;
        let loss_pct = if sent == 0 {
            0.0
        } else {
            100.0 * (sent.saturating_sub(received)) as f64 / sent as f64
        };
        Window {
            secs,
            sent_pps: sent as f64 / secs,
            delivered_pps: received as f64 / secs,
            loss_pct,
            relay_cpu_pct: 100.0 * relay_cpu / secs,
            relay_user_share_pct: if relay_cpu > 0.0 {
                100.0 * relay_user / relay_cpu
            } else {
                0.0
            },
            relay_ns_per_pkt: if received == 0 {
                0.0
            } else {
                1e9 * relay_cpu / received as f64
            },
            own_cpu_pct: 100.0 * own_cpu / secs,
        }
    }
}

/// (utime, stime) in ticks from the text of `/proc/PID/stat`: fields 14 and 15, counted after
/// the `)` that closes the command name (which may itself hold spaces and parentheses).
fn parse_stat_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // After ")": field 3 (state) is the first; utime is field 14, stime 15.
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// `VmRSS` / `VmHWM` (kB) from the text of `/proc/PID/status`.
fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        v.split_ascii_whitespace().next()?.parse().ok()
    })
}

/// (utime + stime, utime) of `pid` in ticks; zeros when unreadable.
fn proc_ticks(pid: &str) -> (u64, u64) {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat_ticks(&s))
        .map_or((0, 0), |(u, s)| (u + s, u))
}

/// The API answer's `ssrc` and `tunnel` from a whole HTTP/1.1 response.
fn parse_api_answer(answer: &[u8]) -> anyhow::Result<(u32, SocketAddr)> {
    let text = std::str::from_utf8(answer).context("answer is not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").context("no end of head")?;
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" && status != "201" {
        bail!("API answered {status}: {body}");
    }
    let v: serde_json::Value = serde_json::from_str(body).context("body is not JSON")?;
    let ssrc = v
        .get("ssrc")
        .and_then(|s| s.as_u64())
        .and_then(|s| u32::try_from(s).ok())
        .context("no ssrc")?;
    let tunnel = v
        .get("tunnel")
        .and_then(|s| s.as_str())
        .context("no tunnel")?
        .parse()
        .context("bad tunnel address")?;
    Ok((ssrc, tunnel))
}

/// One RFC 4571 frame: 16-bit length, then a PCMU RTP packet.
fn rtp_frame(out: &mut [u8; RTP_LEN + 2], ssrc: u32, seq: u16, ts: u32) {
    out[..2].copy_from_slice(&(RTP_LEN as u16).to_be_bytes());
    out[2] = 0x80;
    out[3] = 0; // PT 0 (PCMU), no marker
    out[4..6].copy_from_slice(&seq.to_be_bytes());
    out[6..10].copy_from_slice(&ts.to_be_bytes());
    out[10..14].copy_from_slice(&ssrc.to_be_bytes());
    out[14..].fill(0xff); // µ-law silence
}

/// A 200 OK (with SDP pointing at the sink) for INVITE, 200 OK for BYE and anything else but
/// ACK; `None` for ACK, responses and what does not parse.
fn uas_answer(datagram: &[u8], sink: SocketAddr, contact: SocketAddr) -> Option<(Vec<u8>, bool)> {
    let msg = Message::parse(datagram).ok()?;
    let StartLine::Request { method, .. } = &msg.start else {
        return None;
    };
    let method = method.as_str().to_string();
    if method == "ACK" {
        return None;
    }
    let mut b = MessageBuilder::response(200, "OK");
    for via in msg
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("via") || h.name.eq_ignore_ascii_case("v"))
    {
        b.header("Via", via.value);
    }
    b.header("From", msg.header("From")?);
    let to = msg.header("To")?;
    let tag = msg
        .call_id()
        .ok()?
        .bytes()
        .fold(5381u32, |h, c| h.wrapping_mul(33) ^ u32::from(c));
    if to.contains(";tag=") {
        b.header("To", to);
    } else {
        b.header("To", &format!("{to};tag=t{tag:08x}"));
    }
    b.header("Call-ID", msg.call_id().ok()?);
    b.header("CSeq", msg.header("CSeq")?);
    b.header("Contact", &format!("<sip:sink@{contact}>"));
    if method == "INVITE" {
        let ip = sink.ip();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=recvonly\r\n",
            sink.port()
        );
        Some((b.finish(Some("application/sdp"), sdp.as_bytes()), true))
    } else {
        Some((b.finish(None, b""), false))
    }
}

async fn run_uas(
    sock: UdpSocket,
    sink: SocketAddr,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let contact = sock.local_addr().unwrap_or(sink);
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf)).await
        else {
            continue;
        };
        let Some(datagram) = buf.get(..n) else {
            continue;
        };
        if let Some((answer, invite)) = uas_answer(datagram, sink, contact) {
            let counter = if invite {
                &counters.invites
            } else {
                &counters.byes
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let _ = sock.send_to(&answer, from).await;
        }
    }
}

async fn run_sink(sock: UdpSocket, counter: Arc<Counters>, rtcp: bool, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf)).await
        else {
            continue;
        };
        if rtcp {
            counter.rtcp.fetch_add(1, Ordering::Relaxed);
        } else if n == RTP_LEN {
            counter.received.fetch_add(1, Ordering::Relaxed);
        } else {
            counter.received_bad_len.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn udp_bound(addr: SocketAddr, buffer: usize) -> anyhow::Result<UdpSocket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let _ = s.set_recv_buffer_size(buffer);
    s.bind(&addr.into())
        .with_context(|| format!("bind {addr}"))?;
    s.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(s.into())?)
}

/// `POST /v1/calls` from `src`, then the tunnel connection from the same address; returns the
/// connected stream and the SSRC it must send with.
async fn set_up(
    src: IpAddr,
    web: SocketAddr,
    target: &str,
) -> anyhow::Result<(tokio::net::TcpStream, u32)> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(src, 0))?;
    let mut api = sock.connect(web).await?;
    let body = serde_json::json!({ "target": target }).to_string();
    let req = format!(
        "POST /v1/calls HTTP/1.1\r\nHost: {web}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    api.write_all(req.as_bytes()).await?;
    let mut answer = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = api.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if answer.len() > MAX_ANSWER {
            bail!("API answer too long");
        }
    }
    let (ssrc, tunnel) = parse_api_answer(&answer)?;
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(src, 0))?;
    let stream = sock.connect(tunnel).await?;
    stream.set_nodelay(true)?;
    Ok((stream, ssrc))
}

/// Sends one frame every `period` until `stop`; the first packet binds the call.
async fn send_call(
    mut stream: tokio::net::TcpStream,
    ssrc: u32,
    period: Duration,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let mut frame = [0u8; RTP_LEN + 2];
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut seq, mut ts) = (1u16, 160u32);
    let mut sink = [0u8; 2048];
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // Drain anything the relay sends back (nothing is expected from the sink UAS).
            r = stream.read(&mut sink) => if matches!(r, Ok(0) | Err(_)) { return },
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        rtp_frame(&mut frame, ssrc, seq, ts);
        if stream.write_all(&frame).await.is_ok() {
            counters.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(160);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.calls == 0 || args.pps == 0 || args.ips == 0 {
        bail!("--calls, --pps and --ips must be at least 1");
    }
    let pid = args.pid.to_string();
    if !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() {
        bail!("no process {pid}");
    }
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sink_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let sink_addr = SocketAddr::new(sink_ip, args.sink_port);
    let rtcp_addr = SocketAddr::new(sink_ip, args.sink_port.wrapping_add(1));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(run_sink(
        udp_bound(sink_addr, 16 << 20)?,
        Arc::clone(&counters),
        false,
        Arc::clone(&stop),
    ));
    tasks.spawn(run_sink(
        udp_bound(rtcp_addr, 1 << 20)?,
        Arc::clone(&counters),
        true,
        Arc::clone(&stop),
    ));
    tasks.spawn(run_uas(
        udp_bound(args.uas, 4 << 20)?,
        sink_addr,
        Arc::clone(&counters),
        Arc::clone(&stop),
    ));

    // Set the calls up, a few at a time, within a deadline.
    let period = Duration::from_secs_f64(1.0 / f64::from(args.pps));
    let gate = Arc::new(Semaphore::new(args.setup_concurrency.max(1)));
    let mut setups = tokio::task::JoinSet::new();
    for i in 0..args.calls {
        let src = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            1 + (i % usize::from(args.ips)) as u8,
        ));
        let gate = Arc::clone(&gate);
        let target = args.target.clone();
        let web = args.web;
        setups.spawn(async move {
            let _permit = gate.acquire_owned().await;
            set_up(src, web, &target).await
        });
    }
    let setup_deadline = Instant::now() + Duration::from_secs(30);
    let mut failures = 0usize;
    let mut first_error = None;
    while let Ok(Some(r)) = tokio::time::timeout_at(setup_deadline.into(), setups.join_next()).await
    {
        match r.map_err(|e| anyhow!(e)).and_then(|r| r) {
            Ok((stream, ssrc)) => {
                tasks.spawn(send_call(
                    stream,
                    ssrc,
                    period,
                    Arc::clone(&counters),
                    Arc::clone(&stop),
                ));
            }
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    setups.abort_all();
    if let Some(e) = &first_error {
        eprintln!("skybridge-load: {failures} call setups failed; first: {e}");
    }

    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let snap = |c: &Counters| {
        let (relay_ticks, relay_user_ticks) = proc_ticks(&pid);
        Snapshot {
            at: Instant::now(),
            sent: c.sent.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            relay_ticks,
            relay_user_ticks,
            own_ticks: proc_ticks("self").0,
        }
    };
    let a = snap(&counters);
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let b = snap(&counters);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tasks.abort_all();

    let w = Window::between(&a, &b, args.clk_tck);
    let c = &counters;
    println!(
        "result calls={} failed={} answered={} window_s={:.2} sent_pps={:.0} delivered_pps={:.0} \
         loss_pct={:.3} relay_cpu_pct={:.1} relay_user_share_pct={:.0} relay_ns_per_pkt={:.0} rss_kb={} hwm_kb={} \
         tool_cpu_pct={:.1} bad_len={} rtcp={} send_errors={}",
        args.calls - failures,
        failures,
        c.invites.load(Ordering::Relaxed),
        w.secs,
        w.sent_pps,
        w.delivered_pps,
        w.loss_pct,
        w.relay_cpu_pct,
        w.relay_user_share_pct,
        w.relay_ns_per_pkt,
        parse_status_kb(&status, "VmRSS").unwrap_or(0),
        parse_status_kb(&status, "VmHWM").unwrap_or(0),
        w.own_cpu_pct,
        c.received_bad_len.load(Ordering::Relaxed),
        c.rtcp.load(Ordering::Relaxed),
        c.send_errors.load(Ordering::Relaxed),
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let hard = Duration::from_secs_f64(30.0 + args.warmup + args.duration + 10.0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let r = rt.block_on(async { tokio::time::timeout(hard, run(args)).await });
    rt.shutdown_timeout(Duration::from_millis(500));
    match r {
        Ok(r) => r,
        Err(_) => bail!("hard deadline passed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_are_utime_plus_stime_even_with_odd_command_names() {
        // Fields: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
        // cmajflt utime stime ...
        let stat = "4242 (sky bridge) (x)) S 1 2 3 4 5 6 7 8 9 10 120 35 0 0 20 0 9 0";
        assert_eq!(parse_stat_ticks(stat), Some((120, 35)));
        assert_eq!(parse_stat_ticks("4242 (x) S 1 2"), None);
    }

    #[test]
    fn status_kb_reads_the_named_key_only() {
        let status = "Name:\tskybridge\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(10240));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn window_divides_cpu_by_delivered_packets() {
        let t0 = Instant::now();
        let a = Snapshot {
            at: t0,
            sent: 1_000,
            received: 900,
            relay_ticks: 10,
            relay_user_ticks: 4,
            own_ticks: 0,
        };
        let b = Snapshot {
            at: t0 + Duration::from_secs(2),
            sent: 21_000,
            received: 20_700,
            relay_ticks: 60,
            relay_user_ticks: 14,
            own_ticks: 20,
        };
        let w = Window::between(&a, &b, 100);
        assert!((w.sent_pps - 10_000.0).abs() < 1e-6);
        assert!((w.delivered_pps - 9_900.0).abs() < 1e-6);
        assert!((w.loss_pct - 1.0).abs() < 1e-9);
        assert!((w.relay_cpu_pct - 25.0).abs() < 1e-9);
        // 0.1 s of user time out of 0.5 s.
        assert!((w.relay_user_share_pct - 20.0).abs() < 1e-9);
        // 0.5 s CPU over 19,800 packets.
        assert!((w.relay_ns_per_pkt - 0.5e9 / 19_800.0).abs() < 1e-3);
        assert!((w.own_cpu_pct - 10.0).abs() < 1e-9);
    }

    #[test]
    fn api_answer_gives_ssrc_and_tunnel_and_errors_name_the_status() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{\"call\":7,\"tunnel\":\"127.0.0.1:4571\",\"ssrc\":2839951414}";
        let (ssrc, tunnel) = parse_api_answer(ok).unwrap();
        assert_eq!(ssrc, 2_839_951_414);
        assert_eq!(tunnel, "127.0.0.1:4571".parse().unwrap());
        let err = b"HTTP/1.1 429 Too Many Requests\r\n\r\n{\"error\":\"too_many_pending\"}";
        assert!(parse_api_answer(err)
            .unwrap_err()
            .to_string()
            .contains("429"));
        let big = b"HTTP/1.1 200 OK\r\n\r\n{\"tunnel\":\"127.0.0.1:1\",\"ssrc\":4294967296}";
        assert!(parse_api_answer(big).is_err());
    }

    #[test]
    fn rtp_frame_is_length_prefixed_pcmu_with_the_ssrc() {
        let mut f = [0u8; RTP_LEN + 2];
        rtp_frame(&mut f, 0x0102_0304, 7, 1120);
        assert_eq!(&f[..2], &[0, 172]);
        assert_eq!(f[2], 0x80);
        assert_eq!(f[3], 0);
        assert_eq!(&f[4..6], &[0, 7]);
        assert_eq!(&f[6..10], &1120u32.to_be_bytes());
        assert_eq!(&f[10..14], &[1, 2, 3, 4]);
    }

    #[test]
    fn uas_answers_invite_with_sdp_to_the_sink_and_ignores_ack() {
        let invite = b"INVITE sip:sink@127.0.0.1:5090 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
            From: <sip:a@127.0.0.1>;tag=f1\r\nTo: <sip:sink@127.0.0.1:5090>\r\n\
            Call-ID: abc@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let sink: SocketAddr = "127.0.0.1:46000".parse().unwrap();
        let (answer, is_invite) =
            uas_answer(invite, sink, "127.0.0.1:5090".parse().unwrap()).unwrap();
        assert!(is_invite);
        let text = String::from_utf8(answer).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"));
        assert!(text.contains("branch=z9hG4bK1"));
        assert!(text.contains("To: <sip:sink@127.0.0.1:5090>;tag=t"));
        assert!(text.contains("m=audio 46000 RTP/AVP 0"));
        let ack = b"ACK sip:sink@127.0.0.1:5090 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK2\r\n\
            From: <sip:a@127.0.0.1>;tag=f1\r\nTo: <sip:sink@127.0.0.1:5090>;tag=t1\r\n\
            Call-ID: abc@x\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
        assert!(uas_answer(ack, sink, sink).is_none());
    }
}
