//! The built-in SIP targets: a real SIP user agent inside the process, on its own loopback
//! port, answering `echo` (sends back what it hears) and `tone` (plays a sine tone). They let
//! the whole SIP/RTP path run with nothing else installed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skybridge_codecs::{g711, rtp, sdp};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, Instrument};

use crate::config::Config;
use crate::media::Codec;
use crate::rtp_leg::PortPool;
use crate::sip::{UaConfig, UserAgent};
use crate::sip_endpoint::{self, IncomingCall, SipCallEvent, SipHandle};

/// Longest a built-in call lasts.
const MAX_CALL: Duration = Duration::from_secs(3600);
/// A built-in call ends after this long without RTP from the caller.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the built-in user agent on `config.builtin.listen`.
pub async fn start(config: Arc<Config>, pool: Arc<PortPool>) -> std::io::Result<SipHandle> {
    let socket = UdpSocket::bind(config.builtin.listen).await?;
    let local = socket.local_addr()?;
    let ua = UserAgent::new(
        UaConfig {
            local,
            advertised: local,
            user_agent: format!("{} (built-in targets)", config.sip.user_agent),
            allowed_peers: vec![config.sip_advertised().ip(), config.sip.listen.ip()],
            t1: config.t1(),
            t2: Duration::from_millis(config.sip.t2_ms),
            t4: Duration::from_millis(config.sip.t4_ms),
            ..UaConfig::new(local, local)
        },
        rand::random(),
    );
    let (tx, mut rx) = mpsc::unbounded_channel::<IncomingCall>();
    let handle = sip_endpoint::spawn(socket, ua, Some(tx), "builtin");
    let sip = handle.clone();
    let tone_hz = config.builtin.tone_hz;
    tokio::spawn(async move {
        while let Some(call) = rx.recv().await {
            answer(&sip, &pool, call, tone_hz);
        }
    });
    info!(%local, "built-in SIP targets `echo` and `tone` listening");
    Ok(handle)
}

fn answer(sip: &SipHandle, pool: &Arc<PortPool>, call: IncomingCall, tone_hz: u32) {
    let user = request_user(&call.request_uri)
        .unwrap_or_default()
        .to_string();
    let mode = match user.as_str() {
        "echo" => Mode::Echo,
        "tone" => Mode::Tone(tone_hz),
        _ => {
            sip.respond(call.call, 404, None);
            return;
        }
    };
    let Some((codec, pt, remote)) = parse_offer(&call.sdp) else {
        sip.respond(call.call, 488, None);
        return;
    };
    let ports = match pool.allocate() {
        Ok(p) => p,
        Err(_) => {
            sip.respond(call.call, 503, None);
            return;
        }
    };
    let answer = sdp::SdpBuilder {
        username: "skybridge-builtin".into(),
        session_id: u64::from(ports.rtp_port),
        session_version: 1,
        address: ports
            .rtp
            .local_addr()
            .map(|a| a.ip())
            .unwrap_or(remote.ip()),
        port: ports.rtp_port,
        codecs: vec![(pt, codec.encoding_name(), 8000)],
        telephone_event: None,
        ptime: Some(20),
        direction: sdp::Direction::SendRecv,
    }
    .build();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    sip.attach(call.call, events_tx);
    sip.respond(call.call, 200, Some(answer));
    let sip = sip.clone();
    let span = tracing::info_span!("builtin", target = %user);
    tokio::spawn(
        async move {
            media(mode, codec, pt, remote, ports.rtp_socket(), events_rx).await;
            sip.hangup(call.call);
            drop(ports);
        }
        .instrument(span),
    );
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Echo,
    Tone(u32),
}

/// `sip:echo@127.0.0.1:5070;x=y` → `echo`.
fn request_user(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user)
}

/// First PCMU/PCMA format of the offer and where its RTP goes.
fn parse_offer(body: &[u8]) -> Option<(Codec, u8, SocketAddr)> {
    let desc = sdp::SessionDescription::parse(body).ok()?;
    let audio = desc.first_audio()?;
    let ip = desc.media_address(audio)?;
    for pt in &audio.formats {
        match audio.encoding_of(*pt) {
            Some((name, 8000)) if name.eq_ignore_ascii_case("PCMU") => {
                return Some((Codec::Pcmu, *pt, SocketAddr::new(ip, audio.port)))
            }
            Some((name, 8000)) if name.eq_ignore_ascii_case("PCMA") => {
                return Some((Codec::Pcma, *pt, SocketAddr::new(ip, audio.port)))
            }
            _ => {}
        }
    }
    None
}

async fn media(
    mode: Mode,
    codec: Codec,
    pt: u8,
    remote: SocketAddr,
    socket: &UdpSocket,
    mut events: mpsc::UnboundedReceiver<SipCallEvent>,
) {
    let started = Instant::now();
    let ssrc: u32 = rand::random();
    let mut seq: u16 = rand::random();
    let mut ts: u32 = rand::random();
    let mut phase = 0f64;
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 12 + 160];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(SipCallEvent::Ended { .. }) | Some(SipCallEvent::Failed { .. }) | None => break,
                Some(_) => {}
            },
            r = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { continue };
                if source != remote {
                    continue; // no source learning
                }
                let Ok(view) = rtp::RtpView::parse(buf.get(..n).unwrap_or_default()) else { continue };
                if view.payload_type() != pt {
                    continue;
                }
                last_heard = Instant::now();
                if let Mode::Echo = mode {
                    let payload = view.payload();
                    let len = 12 + payload.len();
                    if out.len() < len {
                        out.resize(len, 0);
                    }
                    if rtp::write_header(&mut out[..12], pt, view.marker(), seq, view.timestamp(), ssrc).is_ok() {
                        out[12..len].copy_from_slice(payload);
                        let _ = socket.send_to(&out[..len], remote).await;
                        seq = seq.wrapping_add(1);
                    }
                }
            }
            _ = tick.tick() => {
                if let Mode::Tone(hz) = mode {
                    let step = 2.0 * std::f64::consts::PI * f64::from(hz) / 8000.0;
                    for i in 0..160 {
                        let s = (phase.sin() * 10_000.0) as i16;
                        phase = (phase + step) % (2.0 * std::f64::consts::PI);
                        out[12 + i] = match codec {
                            Codec::Pcma => g711::linear_to_alaw(s),
                            // The built-in targets negotiate G.711 only.
                            _ => g711::linear_to_ulaw(s),
                        };
                    }
                    if rtp::write_header(&mut out[..12], pt, false, seq, ts, ssrc).is_ok() {
                        let _ = socket.send_to(&out[..172], remote).await;
                    }
                    seq = seq.wrapping_add(1);
                    ts = ts.wrapping_add(160);
                }
                if started.elapsed() > MAX_CALL || last_heard.elapsed() > SILENCE_TIMEOUT {
                    debug!("built-in call timed out");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_user_takes_the_user_part() {
        assert_eq!(request_user("sip:echo@127.0.0.1:5070"), Some("echo"));
        assert_eq!(request_user("sip:127.0.0.1"), None);
    }

    #[test]
    fn offer_picks_the_first_g711_format() {
        let offer = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 9 8 0\r\na=rtpmap:9 G722/8000\r\n";
        let (codec, pt, addr) = parse_offer(offer).expect("offer");
        assert_eq!((codec, pt), (Codec::Pcma, 8));
        assert_eq!(addr, "127.0.0.1:4000".parse().unwrap());
    }
}
