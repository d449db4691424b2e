//! A stock RTMP client publishing a codec we do not decode (MP3, ADPCM) gets an `_error` naming
//! the format, and skybridge logs it with the peer address and counts it. (PCM, Nellymoser,
//! Speex and AAC are transcoded: tests/codecs_interop.rs.)

mod common;

use std::process::Command;
use std::time::Duration;

use common::procs::{free_port_block, free_tcp_port, free_udp_port, wait_until, Child, TestDir};

#[test]
fn mp3_publish_gets_an_error_naming_the_format() {
    refused_with_an_error_naming_it("libmp3lame", 44100, "mp3");
}

#[test]
fn adpcm_publish_gets_an_error_naming_the_format() {
    refused_with_an_error_naming_it("adpcm_swf", 44100, "adpcm");
}

fn refused_with_an_error_naming_it(codec: &str, rate: u32, name: &str) {
    // One relay at a time: each picks free ports.
    let _serial = common::scenario::serial();
    let dir = TestDir::new("unsupported_format");
    let rtmp = free_tcp_port();
    let http = free_tcp_port();
    let rtp = free_port_block(20);
    let config = dir.path().join("skybridge.toml");
    std::fs::write(
        &config,
        format!(
            "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [sip]\nlisten = \"127.0.0.1:{}\"\n[builtin]\nlisten = \"127.0.0.1:{}\"\n\
             [rtp]\nport_min = {}\nport_max = {}\n",
            free_udp_port(),
            free_udp_port(),
            rtp + rtp % 2,
            rtp + 18
        ),
    )
    .expect("write config");
    let relay = Child::spawn(
        "skybridge",
        Command::new(env!("CARGO_BIN_EXE_skybridge"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info"),
        dir.path(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            rtmp
        ))
        .is_ok()),
        "relay did not start: {}",
        relay.tails(2000)
    );
    let mut ffmpeg = Child::spawn(
        "ffmpeg",
        Command::new("ffmpeg").args([
            "-hide_banner",
            "-nostdin",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=f=1000:d=3",
            "-c:a",
            codec,
            "-ar",
            &rate.to_string(),
            "-ac",
            "1",
            "-f",
            "flv",
            &format!("rtmp://127.0.0.1:{rtmp}/call/echo"),
        ]),
        dir.path(),
    );
    let status = ffmpeg
        .wait_timeout(Duration::from_secs(15))
        .expect("ffmpeg ends");
    assert!(!status.success(), "ffmpeg should fail on the server error");
    let said = ffmpeg.stderr_text();
    assert!(
        said.contains(&format!("Server error: unsupported audio format {name}")),
        "ffmpeg did not report our _error: {}",
        ffmpeg.tails(2000)
    );
    let logged = wait_until(Duration::from_secs(5), || {
        let log = relay.stderr_text();
        log.contains(&format!("unsupported audio format {name}")) && log.contains("peer=127.0.0.1:")
    });
    assert!(
        logged,
        "no log line naming the format and peer: {}",
        relay.tails(3000)
    );
}
