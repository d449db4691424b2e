//! skybridge itself as a guarded child process on free loopback ports, with `/metrics`
//! scraping, log reading and RSS measurement.

use super::procs::{free_tcp_port, free_udp_port, loopback, wait_until, Child, LOOPBACK};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Extra lines per section of the generated configuration (appended after the port settings).
#[derive(Debug, Clone, Default)]
pub struct RelayOpts {
    pub rtmp: Vec<String>,
    pub sip: Vec<String>,
    pub auth: Vec<String>,
    pub limits: Vec<String>,
    /// `name = "sip:…"` lines.
    pub dialplan: Vec<String>,
    /// Raw TOML appended at the end (e.g. `[[users]]` blocks).
    pub tail: String,
}

/// A running `skybridge run --config FILE`; killed on drop.
#[derive(Debug)]
pub struct Relay {
    pub child: Child,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub sip: SocketAddr,
    pub builtin: SocketAddr,
}

/// An even port P with UDP P..P+span free on 127.0.0.1 (for `rtp.port_min`).
fn free_rtp_range(span: u16) -> u16 {
    for _ in 0..200 {
        let p = free_udp_port() & !1;
        if p < 1024 || p.checked_add(span).is_none() {
            continue;
        }
        if (0..span).all(|i| UdpSocket::bind((LOOPBACK, p + i)).is_ok()) {
            return p;
        }
    }
    panic!("no free UDP port range on 127.0.0.1");
}

fn section(name: &str, lines: &[String]) -> String {
    let mut s = format!("[{name}]\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

impl Relay {
    /// Writes `<dir>/<name>.toml` and starts the relay (RUST_LOG=info), waiting ≤ 15 s for
    /// `/readyz`.
    pub fn start(dir: &Path, name: &str, opts: &RelayOpts) -> Relay {
        let rtmp = loopback(free_tcp_port());
        let http = loopback(free_tcp_port());
        // Not the default 127.0.0.1:8080: parallel relays would collide on it.
        let web = loopback(free_tcp_port());
        // Likewise the RFC 4571 tunnel's default 127.0.0.1:4571.
        let tunnel = loopback(free_tcp_port());
        let sip = loopback(free_udp_port());
        let mut builtin = loopback(free_udp_port());
        while builtin == sip {
            builtin = loopback(free_udp_port());
        }
        let rtp = free_rtp_range(40);
        let mut rtmp_lines = vec![format!("listen = \"{rtmp}\"")];
        rtmp_lines.extend(opts.rtmp.iter().cloned());
        let mut sip_lines = vec![format!("listen = \"{sip}\"")];
        sip_lines.extend(opts.sip.iter().cloned());
        let text = [
            section("rtmp", &rtmp_lines),
            section("web", &[format!("listen = \"{web}\"")]),
            section("http", &[format!("listen = \"{http}\"")]),
            section("tunnel", &[format!("listen = \"{tunnel}\"")]),
            section("sip", &sip_lines),
            section(
                "rtp",
                &[
                    "bind_ip = \"127.0.0.1\"".into(),
                    format!("port_min = {rtp}"),
                    format!("port_max = {}", rtp + 39),
                ],
            ),
            section("auth", &opts.auth),
            section("builtin", &[format!("listen = \"{builtin}\"")]),
            section("limits", &opts.limits),
            section("dialplan", &opts.dialplan),
            opts.tail.clone(),
        ]
        .join("\n");
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, &text).expect("write relay config");
        let mut child = Child::spawn(
            name,
            Command::new(env!("CARGO_BIN_EXE_skybridge"))
                .arg("run")
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1"),
            dir,
        );
        let ready = wait_until(Duration::from_secs(15), || {
            !child.is_running()
                || http_get(http, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        });
        assert!(
            ready && child.is_running(),
            "skybridge did not become ready\n{text}\n{}",
            child.tails(3000)
        );
        Relay {
            child,
            rtmp,
            http,
            sip,
            builtin,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// Resident set size in KiB (VmRSS from /proc/<pid>/status).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid()).expect("read VmRSS of skybridge")
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        http_get(self.http, "/metrics").expect("GET /metrics")
    }

    /// Sum of the samples of `name` carrying every `labels` pair (0 when absent).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    /// stdout + stderr so far, ANSI escapes removed.
    pub fn logs(&self) -> String {
        strip_ansi(&(self.child.stdout_text() + &self.child.stderr_text()))
    }

    /// Waits ≤ `timeout` for a log line containing every needle.
    pub fn wait_log(&self, needles: &[&str], timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.logs()
                .lines()
                .any(|l| needles.iter().all(|n| l.contains(n)))
        })
    }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `GET path` over HTTP/1.0; the whole response (status line, headers, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = Vec::new();
    s.take(16 << 20).read_to_end(&mut out).ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Sum of Prometheus samples named exactly `name` whose label set contains every
/// `key="value"` pair.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Removes ANSI CSI escape sequences.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
