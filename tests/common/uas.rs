//! A scripted SIP UAS on loopback (std UDP, no external program): answers INVITE with 100 and
//! 200 + SDP naming its own RTP socket, answers ACK/BYE/OPTIONS, records every RTP packet it
//! receives with its arrival `Instant`, and on request sends RTP back at 20 ms pacing with
//! payloads that carry their sequence number (PCMU passes through skybridge unchanged).
//!
//! Every thread polls with a short timeout and ends when the [`Uas`] is dropped.
#![allow(clippy::unwrap_used)] // test harness: a failed unwrap is a failed test

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Frame duration of what the UAS sends (PCMU, 160 samples).
pub const PTIME: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
struct State {
    stop: AtomicBool,
    /// Where skybridge's SDP offer said to send RTP.
    peer_rtp: Mutex<Option<SocketAddr>>,
    /// Every RTP packet received: (arrival, whole packet).
    received: Mutex<Vec<(Instant, Vec<u8>)>>,
    /// When set: frame `i` is due at `t0 + i × 20 ms`.
    send_from: Mutex<Option<Instant>>,
    /// Frames sent so far.
    sent: AtomicU32,
    invites: AtomicU32,
    acks: AtomicU32,
    byes: AtomicU32,
    /// The payload type the answer used for [`UasOpts::answer_rtpmap`].
    answer_pt: Mutex<Option<u8>>,
}

/// Options for [`Uas::start_with`]; the default is what [`Uas::start`] does (answers PCMU,
/// records the RTP it receives).
#[derive(Debug, Clone, Default)]
pub struct UasOpts {
    /// Answer with this one codec instead of PCMU, named as in `a=rtpmap` (e.g.
    /// `speex/16000`, case-insensitive); the answer takes the payload type the offer gave it
    /// (96 when the offer has no such rtpmap). See [`Uas::payload_type`].
    pub answer_rtpmap: Option<String>,
    /// Relay mode, for a media peer in another process (e.g. GStreamer): RTP from skybridge's
    /// SDP address is recorded and forwarded to this address; RTP from any other source is sent
    /// on to skybridge from the UAS's own RTP socket (the address the answer named, which is
    /// the only source skybridge accepts).
    pub relay_to: Option<SocketAddr>,
}

/// The running UAS.
#[derive(Debug)]
pub struct Uas {
    pub sip: SocketAddr,
    pub rtp: SocketAddr,
    state: Arc<State>,
}

/// The 160-byte PCMU payload numbered `seq`: the number big-endian in the first 4 bytes, then
/// µ-law silence.
pub fn numbered_payload(seq: u32) -> [u8; 160] {
    let mut p = [0xFFu8; 160];
    p[..4].copy_from_slice(&seq.to_be_bytes());
    p
}

/// The number [`numbered_payload`] wrote, from an RTP packet (12-byte header plus CSRCs).
pub fn payload_number(rtp: &[u8]) -> Option<u32> {
    let cc = usize::from(*rtp.first()? & 0x0F);
    let at = 12 + 4 * cc;
    let b = rtp.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl Uas {
    /// Binds SIP and RTP sockets on 127.0.0.1 (ephemeral ports) and starts answering.
    pub fn start() -> Uas {
        Uas::start_with(UasOpts::default())
    }

    /// [`Uas::start`] with a chosen answer codec and/or relay mode.
    pub fn start_with(opts: UasOpts) -> Uas {
        let sip = UdpSocket::bind("127.0.0.1:0").expect("bind uas sip");
        let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind uas rtp");
        let (sip_addr, rtp_addr) = (sip.local_addr().unwrap(), rtp.local_addr().unwrap());
        let state = Arc::new(State::default());
        for s in [&sip, &rtp] {
            s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        }
        let st = state.clone();
        let answer = opts.answer_rtpmap.clone();
        thread::spawn(move || sip_loop(sip, rtp_addr, st, answer));
        let rtp_tx = rtp.try_clone().expect("clone rtp socket");
        let st = state.clone();
        let relay_to = opts.relay_to;
        thread::spawn(move || rtp_receive_loop(rtp, st, relay_to));
        let st = state.clone();
        thread::spawn(move || rtp_send_loop(rtp_tx, st));
        Uas {
            sip: sip_addr,
            rtp: rtp_addr,
            state,
        }
    }

    /// `sip:<user>@127.0.0.1:<port>`, for a dial plan.
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.sip)
    }

    /// Whether an INVITE was answered and its ACK arrived.
    pub fn confirmed(&self) -> bool {
        self.state.acks.load(Ordering::SeqCst) > 0
    }

    pub fn invites(&self) -> u32 {
        self.state.invites.load(Ordering::SeqCst)
    }

    pub fn byes(&self) -> u32 {
        self.state.byes.load(Ordering::SeqCst)
    }

    /// Starts sending numbered RTP toward skybridge: frame `i` at `t0 + i × 20 ms` (late
    /// frames go out as soon as the thread gets to them, never skipped).
    pub fn start_sending(&self, t0: Instant) {
        *self.state.send_from.lock().unwrap() = Some(t0);
    }

    /// Stops sending RTP.
    pub fn stop_sending(&self) {
        *self.state.send_from.lock().unwrap() = None;
    }

    /// Frames sent so far.
    pub fn sent(&self) -> u32 {
        self.state.sent.load(Ordering::SeqCst)
    }

    /// Every RTP packet received so far: (arrival, packet).
    pub fn received(&self) -> Vec<(Instant, Vec<u8>)> {
        self.state.received.lock().unwrap().clone()
    }

    /// The payload type the answer gave [`UasOpts::answer_rtpmap`] (None before an INVITE, or
    /// when answering PCMU).
    pub fn payload_type(&self) -> Option<u8> {
        *self.state.answer_pt.lock().unwrap()
    }

    /// Where skybridge's offer said to send RTP (None before an INVITE).
    pub fn peer_rtp(&self) -> Option<SocketAddr> {
        *self.state.peer_rtp.lock().unwrap()
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
    }
}

fn header<'a>(msg: &'a str, names: &[&str]) -> Vec<&'a str> {
    msg.split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            names
                .iter()
                .any(|want| n.trim().eq_ignore_ascii_case(want))
                .then_some(v.trim())
        })
        .collect()
}

fn response(req: &str, code: u16, reason: &str, extra: &str, body: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for v in header(req, &["Via", "v"]) {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    for (name, short) in [("From", "f"), ("Call-ID", "i"), ("CSeq", "CSeq")] {
        for v in header(req, &[name, short]) {
            out.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    for v in header(req, &["To", "t"]) {
        if v.contains(";tag=") || code == 100 {
            out.push_str(&format!("To: {v}\r\n"));
        } else {
            out.push_str(&format!("To: {v};tag=uas1\r\n"));
        }
    }
    out.push_str(extra);
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

/// The RTP address of an SDP offer (session or media `c=` and the audio `m=` port).
fn sdp_rtp_addr(body: &str) -> Option<SocketAddr> {
    let ip = body
        .lines()
        .filter_map(|l| l.trim().strip_prefix("c=IN IP4 "))
        .next_back()?;
    let port = body
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?;
    format!("{}:{port}", ip.trim()).parse().ok()
}

/// The payload type of `a=rtpmap:<pt> <rtpmap>` in an SDP offer (case-insensitive).
fn sdp_payload_type(body: &str, rtpmap: &str) -> Option<u8> {
    body.lines().find_map(|l| {
        let (pt, name) = l.trim().strip_prefix("a=rtpmap:")?.split_once(' ')?;
        let name = name.trim();
        // `speex/16000` also matches an offer's `speex/16000/1`.
        let same = name.eq_ignore_ascii_case(rtpmap)
            || name
                .to_ascii_lowercase()
                .strip_prefix(&rtpmap.to_ascii_lowercase())
                .is_some_and(|rest| rest == "/1");
        same.then(|| pt.parse().ok()).flatten()
    })
}

fn sip_loop(sock: UdpSocket, rtp: SocketAddr, st: Arc<State>, answer: Option<String>) {
    let mut buf = vec![0u8; 65536];
    let contact = format!("Contact: <sip:uas@{}>\r\n", sock.local_addr().unwrap());
    while !st.stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let method = msg.split(' ').next().unwrap_or("");
        let body = msg.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let reply = match method {
            "INVITE" => {
                st.invites.fetch_add(1, Ordering::SeqCst);
                if let Some(addr) = sdp_rtp_addr(body) {
                    *st.peer_rtp.lock().unwrap() = Some(addr);
                }
                let _ = sock.send_to(response(&msg, 100, "Trying", "", "").as_bytes(), from);
                let (pt, rtpmap) = match &answer {
                    Some(name) => {
                        let pt = sdp_payload_type(body, name).unwrap_or(96);
                        *st.answer_pt.lock().unwrap() = Some(pt);
                        (pt, name.clone())
                    }
                    None => (0, "PCMU/8000".to_string()),
                };
                let sdp = format!(
                    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
                     m=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {rtpmap}\r\na=ptime:20\r\na=sendrecv\r\n",
                    ip = rtp.ip(),
                    port = rtp.port()
                );
                let extra = format!("{contact}Content-Type: application/sdp\r\n");
                Some(response(&msg, 200, "OK", &extra, &sdp))
            }
            "ACK" => {
                st.acks.fetch_add(1, Ordering::SeqCst);
                None
            }
            "BYE" => {
                st.byes.fetch_add(1, Ordering::SeqCst);
                *st.send_from.lock().unwrap() = None;
                Some(response(&msg, 200, "OK", "", ""))
            }
            "SIP/2.0" => None,
            _ => Some(response(&msg, 200, "OK", "", "")),
        };
        if let Some(r) = reply {
            let _ = sock.send_to(r.as_bytes(), from);
        }
    }
}

fn rtp_receive_loop(sock: UdpSocket, st: Arc<State>, relay_to: Option<SocketAddr>) {
    let mut buf = vec![0u8; 2048];
    while !st.stop.load(Ordering::Relaxed) {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let at = Instant::now();
            if let Some(media) = relay_to {
                let peer = *st.peer_rtp.lock().unwrap();
                if Some(from) != peer {
                    // From the media process: on to skybridge, from the address it accepts.
                    if let Some(peer) = peer {
                        let _ = sock.send_to(&buf[..n], peer);
                    }
                    continue;
                }
                let _ = sock.send_to(&buf[..n], media);
            }
            let mut rx = st.received.lock().unwrap();
            // Bounded: a test call of a few seconds; stop recording past 10 minutes' worth.
            if rx.len() < 30_000 {
                rx.push((at, buf[..n].to_vec()));
            }
        }
    }
}

fn rtp_send_loop(sock: UdpSocket, st: Arc<State>) {
    let ssrc = 0x5AB5_0001u32;
    while !st.stop.load(Ordering::Relaxed) {
        let t0 = *st.send_from.lock().unwrap();
        let peer = *st.peer_rtp.lock().unwrap();
        let (Some(t0), Some(peer)) = (t0, peer) else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        let i = st.sent.load(Ordering::SeqCst);
        let due = t0 + PTIME * i;
        let now = Instant::now();
        if due > now {
            thread::sleep((due - now).min(Duration::from_millis(5)));
            continue;
        }
        let mut p = Vec::with_capacity(172);
        p.extend_from_slice(&[0x80, if i == 0 { 0x80 } else { 0 }]);
        p.extend_from_slice(&(i as u16).to_be_bytes());
        p.extend_from_slice(&(i.wrapping_mul(160)).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&numbered_payload(i));
        let _ = sock.send_to(&p, peer);
        st.sent.fetch_add(1, Ordering::SeqCst);
    }
}
