//! TLS helpers shared by the TLS tests: a certificate from `skybridge cert --self-signed`, and
//! a TLS client put in front of a client that has none (Debian `socat`), plus the stock
//! GStreamer pipelines of the RFC 4571 tunnel (README, "Calling over TCP").
//!
//! How a deployment carries RFC 4571 over TLS for a client without TLS (GStreamer's
//! `tcpclientsink` and `souphttpsrc` pointed at a local port): a local TLS client listens on
//! loopback and wraps each connection in TLS to the relay's shared port, which terminates TLS
//! and classifies the decrypted bytes (HTTP for the call API and the receive stream, anything
//! else for the tunnel). The relay sees the forwarder's address, which is the client's own
//! (socat runs on the client's machine), so the tunnel's binding to the API caller's IP holds.

use super::procs::{free_tcp_port, loopback, wait_until, Child};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Runs `skybridge cert --self-signed --out <dir>`; returns (cert.pem, key.pem).
pub fn make_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let out = Command::new(env!("CARGO_BIN_EXE_skybridge"))
        .args(["cert", "--self-signed", "--out"])
        .arg(dir)
        .output()
        .expect("run skybridge cert");
    assert!(
        out.status.success(),
        "skybridge cert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// `[tls]` and `[shared]` lines for the generated configuration: the certificate in
/// `cert_dir` and a shared port at `shared`.
pub fn tls_shared_tail(cert_dir: &Path, shared: SocketAddr, classify_timeout_secs: u64) -> String {
    format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
         [shared]\nlisten = \"{shared}\"\nclassify_timeout_secs = {classify_timeout_secs}\n",
        cert_dir.join("cert.pem").display(),
        cert_dir.join("key.pem").display(),
    )
}

/// A local TLS client in front of a plain-TCP client: `socat` listening on a loopback port,
/// wrapping each accepted connection (one forked socat each) in TLS to `target`, verifying
/// the server against the self-signed `cafile`. Stopped (with its forks) on drop.
#[derive(Debug)]
pub struct TlsForwarder {
    /// Where the plain client connects.
    pub addr: SocketAddr,
    child: Child,
}

impl TlsForwarder {
    /// Starts socat and waits (≤ 5 s) until it listens.
    pub fn start(dir: &Path, name: &str, target: SocketAddr, cafile: &Path) -> TlsForwarder {
        assert!(
            super::procs::have_program("socat"),
            "socat missing: run scripts/install-deps.sh"
        );
        let addr = loopback(free_tcp_port());
        let mut cmd = Command::new("socat");
        cmd.args([
            "-d".to_string(),
            "-d".to_string(),
            format!("TCP-LISTEN:{},bind=127.0.0.1,reuseaddr,fork", addr.port()),
            format!(
                "OPENSSL:{target},cafile={},commonname=localhost",
                cafile.display()
            ),
        ]);
        let child = Child::spawn(name, &mut cmd, dir);
        let listening = wait_until(Duration::from_secs(5), || {
            child.stderr_text().contains("listening on")
        });
        assert!(listening, "socat did not listen\n{}", child.tails(2000));
        TlsForwarder { addr, child }
    }

    /// How many TLS connections socat opened so far (from its log).
    pub fn connections(&self) -> usize {
        self.child
            .stderr_text()
            .lines()
            .filter(|l| l.contains("SSL connection using"))
            .count()
    }

    pub fn tails(&self) -> String {
        self.child.tails(2000)
    }
}

/// Starts `gst-launch-1.0 -e <pipeline>` (split on whitespace).
pub fn gst(dir: &Path, name: &str, pipeline: &str) -> Child {
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-e").args(pipeline.split_whitespace());
    Child::spawn(name, &mut cmd, dir)
}

/// The stock sender: a live `freq` Hz tone as µ-law RTP with `ssrc`, RFC 4571-framed, over
/// TCP to `to` (`rtpstreampay ! tcpclientsink`).
pub fn gst_tunnel_sender(dir: &Path, name: &str, freq: u32, ssrc: u32, to: SocketAddr) -> Child {
    gst(
        dir,
        name,
        &format!(
            "audiotestsrc freq={freq} is-live=true ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! \
             rtppcmupay ssrc={ssrc} ! rtpstreampay ! tcpclientsink host={} port={}",
            to.ip(),
            to.port()
        ),
    )
}

/// The stock receiver: `GET http://<from><receive>` (`souphttpsrc`), RFC 4571 deframed, µ-law
/// decoded into the WAV file `wav`.
pub fn gst_tunnel_receiver(
    dir: &Path,
    name: &str,
    from: SocketAddr,
    receive: &str,
    wav: &Path,
) -> Child {
    gst(
        dir,
        name,
        &format!(
            "souphttpsrc location=http://{from}{receive} ! \
             application/x-rtp-stream,media=audio,clock-rate=8000,encoding-name=PCMU ! \
             rtpstreamdepay ! application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0 ! \
             rtppcmudepay ! mulawdec ! wavenc ! filesink location={}",
            wav.display()
        ),
    )
}
