//! Interop: real ffmpeg publishing to and playing from our sans-IO RTMP server session, driven by
//! a small tokio TCP driver on loopback.
//!
//! How ffmpeg (libavformat/rtmpproto.c) splits `rtmp://host:port/call/bob?token=T`, as observed
//! by these tests: `app` = the first path segment (`call`), `tcUrl` = `rtmp://host:port/call`
//! (no query), and the play path / stream name = the rest *including the query* (`bob?token=T`),
//! sent as the `publish`/`play` argument (after `releaseStream`/`FCPublish` resp.
//! `getStreamLength`). So for ffmpeg clients the token arrives with the stream name; the session
//! strips `?query` from the name and surfaces `token`.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use skybridge::rtmp::{RtmpEvent, RtmpServerSession, RtmpSessionConfig};
use std::io::Read;
use std::process::{Child, Command, ExitStatus};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout};

const FFMPEG: &str = "/usr/bin/ffmpeg";
/// FLV audio tag header: format 8 (G.711 µ-law), rate 0, 16-bit flag, mono — what ffmpeg writes.
const MULAW_TAG: u8 = 0x82;

/// Everything the driver saw, in order.
#[derive(Debug)]
enum Seen {
    Event(RtmpEvent),
    Closed(#[allow(dead_code)] Result<(), String>), // shown in failure messages
}

/// Runs one session on `sock`: accepts connect/publish/play, and once playing sends 20 ms
/// frames of a 440 Hz µ-law tone for `play_seconds`.
async fn drive(mut sock: TcpStream, tx: mpsc::UnboundedSender<Seen>, play_seconds: u32) {
    let result = drive_inner(&mut sock, &tx, play_seconds).await;
    let _ = tx.send(Seen::Closed(result));
}

async fn drive_inner(
    sock: &mut TcpStream,
    tx: &mpsc::UnboundedSender<Seen>,
    play_seconds: u32,
) -> Result<(), String> {
    let config = RtmpSessionConfig::default();
    let cap = config.chunk_limits.max_message_len as usize + 64;
    let mut s = RtmpServerSession::new(config, Instant::now());
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let tone = mulaw_tone(440.0, 8000 * play_seconds as usize);
    let mut playing: Option<(u32, usize, tokio::time::Instant)> = None;
    loop {
        while let Some(e) = s.poll_event() {
            match &e {
                RtmpEvent::Connect { .. } => s.accept_connect(),
                RtmpEvent::Publish { stream_id, .. } => s.accept_publish(*stream_id),
                RtmpEvent::Play { stream_id, .. } => {
                    s.accept_play(*stream_id);
                    playing = Some((*stream_id, 0, tokio::time::Instant::now()));
                }
                _ => {}
            }
            let _ = tx.send(Seen::Event(e));
        }
        while let Some(out) = s.poll_output() {
            sock.write_all(&out).await.map_err(|e| e.to_string())?;
        }
        if s.is_closing() {
            return Ok(());
        }
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let timer = s
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or(far);
        let next_frame = match playing {
            Some((_, sent, _)) if sent >= tone.len() => far,
            Some((_, _, at)) => at,
            None => far,
        };
        if buf.len() >= cap {
            return Err("input buffer cap".into());
        }
        tokio::select! {
            r = sock.read_buf(&mut buf) => {
                match r {
                    Ok(0) => return Ok(()),
                    Ok(_) => s.handle_input(Instant::now(), &mut buf).map_err(|e| e.to_string())?,
                    Err(e) => return Err(e.to_string()),
                }
            }
            _ = sleep_until(timer) => s.handle_timeout(Instant::now()).map_err(|e| e.to_string())?,
            _ = sleep_until(next_frame) => {
                if let Some((sid, sent, at)) = playing.as_mut() {
                    let frame = &tone[*sent..(*sent + 160).min(tone.len())];
                    s.send_audio(*sid, (*sent / 8) as u32, MULAW_TAG, frame);
                    *sent += frame.len();
                    *at += Duration::from_millis(20);
                }
            }
        }
    }
}

/// G.711 µ-law encoding of one linear 16-bit sample.
fn linear_to_mulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let sign = if sample < 0 { 0x80 } else { 0 };
    let x = i32::from(sample).abs().min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && x & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (x >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

fn mulaw_tone(freq: f64, samples: usize) -> Vec<u8> {
    (0..samples)
        .map(|n| {
            let v = (2.0 * std::f64::consts::PI * freq * n as f64 / 8000.0).sin() * 12_000.0;
            linear_to_mulaw(v as i16)
        })
        .collect()
}

/// An ffmpeg child process, killed when dropped.
struct Ffmpeg(Child);

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Ffmpeg {
    fn spawn(args: &[&str]) -> Ffmpeg {
        let child = Command::new(FFMPEG)
            .args(["-hide_banner", "-nostdin", "-y", "-loglevel"])
            .arg(std::env::var("FFMPEG_LOGLEVEL").unwrap_or_else(|_| "error".into()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Ffmpeg(child)
    }

    /// Waits (polling) up to `within` for exit; returns the status and stderr.
    async fn wait(&mut self, within: Duration) -> (Option<ExitStatus>, String) {
        let deadline = tokio::time::Instant::now() + within;
        let mut status = None;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(s)) = self.0.try_wait() {
                status = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if status.is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
        let mut stderr = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        (status, stderr)
    }
}

async fn serve_one(play_seconds: u32) -> (u16, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        if let Ok(Ok((sock, _))) = timeout(Duration::from_secs(20), listener.accept()).await {
            drive(sock, tx, play_seconds).await;
        }
    });
    (port, rx)
}

async fn collect(rx: &mut mpsc::UnboundedReceiver<Seen>, within: Duration) -> Vec<Seen> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(s)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        let done = matches!(s, Seen::Closed(_));
        seen.push(s);
        if done {
            break;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_mulaw_and_we_get_connect_publish_and_audio() {
    let (port, mut rx) = serve_one(0).await;
    let url = format!("rtmp://127.0.0.1:{port}/call/bob?token=T");
    let mut child = Ffmpeg::spawn(&[
        "-re",
        "-f",
        "lavfi",
        "-i",
        "sine=f=1000:d=2",
        "-c:a",
        "pcm_mulaw",
        "-ar",
        "8000",
        "-ac",
        "1",
        "-f",
        "flv",
        &url,
    ]);
    let seen = collect(&mut rx, Duration::from_secs(20)).await;
    let (status, stderr) = child.wait(Duration::from_secs(5)).await;

    let events: Vec<&RtmpEvent> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Event(e) => Some(e),
            Seen::Closed(_) => None,
        })
        .collect();
    let connect = events.iter().find_map(|e| match e {
        RtmpEvent::Connect {
            app, tc_url, token, ..
        } => Some((app.clone(), tc_url.clone(), token.clone())),
        _ => None,
    });
    assert_eq!(
        connect,
        Some((
            "call".to_owned(),
            Some(format!("rtmp://127.0.0.1:{port}/call")),
            None
        )),
        "ffmpeg stderr: {stderr}"
    );
    let publish = events.iter().find_map(|e| match e {
        RtmpEvent::Publish { name, token, .. } => Some((name.clone(), token.clone())),
        _ => None,
    });
    assert_eq!(publish, Some(("bob".to_owned(), Some("T".to_owned()))));
    let mulaw_bytes: usize = events
        .iter()
        .filter_map(|e| match e {
            RtmpEvent::Audio {
                tag_header,
                payload,
                ..
            } if tag_header >> 4 == 8 => Some(payload.len()),
            _ => None,
        })
        .sum();
    assert!(
        mulaw_bytes >= 12_000,
        "only {mulaw_bytes} bytes of µ-law (1.5 s = 12000)"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            RtmpEvent::Unpublish { .. } | RtmpEvent::DeleteStream { .. }
        )),
        "ffmpeg ends with FCUnpublish/deleteStream: {events:?}"
    );
    assert!(
        matches!(status, Some(s) if s.success()),
        "ffmpeg: {status:?} {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_mulaw_tone_we_send_into_a_wav() {
    let (port, mut rx) = serve_one(4).await;
    let dir =
        std::env::temp_dir().join(format!("skybridge-rtmp-play-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("out.wav");
    let url = format!("rtmp://127.0.0.1:{port}/call/bob?token=T");
    let mut child = Ffmpeg::spawn(&[
        "-analyzeduration",
        "0",
        "-i",
        &url,
        "-t",
        "2",
        "-f",
        "wav",
        wav.to_str().unwrap(),
    ]);
    let (status, stderr) = child.wait(Duration::from_secs(20)).await;
    drop(child);
    let seen = collect(&mut rx, Duration::from_secs(5)).await;
    let play = seen.iter().find_map(|s| match s {
        Seen::Event(RtmpEvent::Play { name, token, .. }) => Some((name.clone(), token.clone())),
        _ => None,
    });
    assert_eq!(
        play,
        Some(("bob".to_owned(), Some("T".to_owned()))),
        "{seen:?} {stderr}"
    );
    assert!(
        matches!(status, Some(s) if s.success()),
        "ffmpeg: {status:?} {stderr}"
    );

    let data = std::fs::read(&wav).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let samples = wav_samples(&data);
    assert!(
        samples.len() >= 8000,
        "only {} samples (1 s = 8000 at 8 kHz)",
        samples.len()
    );
    let rms = (samples
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum::<f64>()
        / samples.len() as f64)
        .sqrt();
    assert!(rms > 1000.0, "audio is silent (rms {rms})");
}

/// 16-bit PCM samples of a WAV file written by ffmpeg (asserts 8 kHz mono s16le).
fn wav_samples(data: &[u8]) -> Vec<i16> {
    assert_eq!(&data[..4], b"RIFF");
    let mut pos = 12;
    let mut fmt_ok = false;
    while pos + 8 <= data.len() {
        let id = &data[pos..pos + 4];
        let len = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &data[pos + 8..(pos + 8 + len).min(data.len())];
        if id == b"fmt " {
            let channels = u16::from_le_bytes([body[2], body[3]]);
            let rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            let bits = u16::from_le_bytes([body[14], body[15]]);
            assert_eq!((channels, rate, bits), (1, 8000, 16));
            fmt_ok = true;
        }
        if id == b"data" {
            assert!(fmt_ok);
            return body
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
        }
        pos += 8 + len + (len & 1);
    }
    panic!("no data chunk");
}
