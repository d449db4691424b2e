//! skybridge itself as a guarded child process on loopback, with every port free-allocated
//! (RTMP, web/WebSocket, HTTP, SIP, built-in targets and the RTP range), plus a tiny `/metrics`
//! reader.

use super::procs::{free_port_block, free_tcp_port, free_udp_port, loopback, wait_until, Child};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What a test adds to the generated configuration (the listen addresses and RTP range are
/// always generated).
#[derive(Debug, Clone, Default)]
pub struct SkybridgeOpts {
    /// Extra lines for `[rtmp]`, e.g. `tls_listen = "127.0.0.1:1936"` (`listen` is generated).
    pub rtmp: String,
    /// Extra lines for `[sip]`, e.g. `upstream = "127.0.0.1:5080"`.
    pub sip: String,
    /// Extra lines for `[rtp]`, e.g. `codecs = ["opus", "pcmu"]` (address and ports are
    /// generated).
    pub rtp: String,
    /// Lines for `[auth]`, e.g. `required = true`.
    pub auth: String,
    /// Lines for `[limits]`.
    pub limits: String,
    /// Extra lines for `[web]`, e.g. `handshake_timeout_secs = 2` (`listen` is generated).
    pub web: String,
    /// Extra lines for `[tunnel]`, e.g. `bind_window_secs = 2` (`listen` is generated).
    pub tunnel: String,
    /// `[dialplan]` entries: name → SIP URI.
    pub dialplan: Vec<(String, String)>,
    /// Raw TOML appended last (e.g. `[[users]]` blocks).
    pub tail: String,
}

/// A running skybridge; SIGTERM then SIGKILL on drop (via [`Child`]).
#[derive(Debug)]
pub struct Skybridge {
    child: Child,
    pub rtmp: SocketAddr,
    /// The web listener: softphone page at `/`, WebSocket at `/ws`.
    pub web: SocketAddr,
    /// The RFC 4571 tunnel listener (its API is on `web`).
    pub tunnel: SocketAddr,
    pub http: SocketAddr,
    pub sip: SocketAddr,
    pub builtin: SocketAddr,
    pub config_path: PathBuf,
}

impl Skybridge {
    /// Writes `<dir>/skybridge-<n>.toml`, starts `skybridge run --config …` and waits (≤ 10 s)
    /// until `/readyz` answers 200. Retries with fresh ports if a port was taken meanwhile.
    pub fn start(dir: &Path, opts: &SkybridgeOpts) -> Skybridge {
        let mut last = String::new();
        for attempt in 0..3 {
            match Self::try_start(dir, opts, attempt) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("skybridge failed to start:\n{last}");
    }

    fn try_start(dir: &Path, opts: &SkybridgeOpts, attempt: u32) -> Result<Skybridge, String> {
        let rtmp = loopback(free_tcp_port());
        let mut web = loopback(free_tcp_port());
        let mut http = loopback(free_tcp_port());
        while web == rtmp {
            web = loopback(free_tcp_port());
        }
        while http == rtmp || http == web {
            http = loopback(free_tcp_port());
        }
        let mut tunnel = loopback(free_tcp_port());
        while tunnel == rtmp || tunnel == web || tunnel == http {
            tunnel = loopback(free_tcp_port());
        }
        let sip = loopback(free_udp_port());
        let mut builtin = loopback(free_udp_port());
        while builtin == sip {
            builtin = loopback(free_udp_port());
        }
        // 16 ports from an even base: 7 RTP/RTCP pairs, plenty for these tests.
        let base = free_port_block(17);
        let rtp_min = base + base % 2;
        let rtp_max = rtp_min + 15;
        let dialplan: String = opts
            .dialplan
            .iter()
            .map(|(name, uri)| format!("{name} = \"{uri}\"\n"))
            .collect();
        let text = format!(
            "[rtmp]\nlisten = \"{rtmp}\"\n{}\n\
             [web]\nlisten = \"{web}\"\n{}\n\
             [tunnel]\nlisten = \"{tunnel}\"\n{}\n\
             [http]\nlisten = \"{http}\"\n\
             [sip]\nlisten = \"{sip}\"\n{}\n\
             [rtp]\nbind_ip = \"127.0.0.1\"\nport_min = {rtp_min}\nport_max = {rtp_max}\n{}\n\
             [auth]\n{}\n\
             [builtin]\nlisten = \"{builtin}\"\n\
             [limits]\n{}\n\
             [dialplan]\n{dialplan}\n{}\n",
            opts.rtmp, opts.web, opts.tunnel, opts.sip, opts.rtp, opts.auth, opts.limits, opts.tail
        );
        let config_path = dir.join(format!("skybridge-{attempt}.toml"));
        std::fs::write(&config_path, &text).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skybridge"));
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info,skybridge=debug");
        let mut child = Child::spawn(&format!("skybridge-{attempt}"), &mut cmd, dir);
        let ready = wait_until(Duration::from_secs(10), || {
            !child.is_running()
                || http_get(http, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        });
        if !ready || !child.is_running() {
            let tails = child.tails(3000);
            child.stop(Duration::from_secs(1));
            return Err(format!("not ready (config:\n{text})\n{tails}"));
        }
        Ok(Skybridge {
            child,
            rtmp,
            web,
            tunnel,
            http,
            sip,
            builtin,
            config_path,
        })
    }

    /// `rtmp://127.0.0.1:<port>/<path>`.
    pub fn rtmp_url(&self, path: &str) -> String {
        format!("rtmp://{}/{path}", self.rtmp)
    }

    /// The `/metrics` text (empty when unreachable).
    pub fn metrics(&self) -> String {
        http_get(self.http, "/metrics")
            .and_then(|r| r.split_once("\r\n\r\n").map(|(_, b)| b.to_string()))
            .unwrap_or_default()
    }

    /// `GET /calls` on the operations listener, parsed.
    pub fn calls(&self) -> serde_json::Value {
        let body = http_get(self.http, "/calls")
            .and_then(|r| r.split_once("\r\n\r\n").map(|(_, b)| b.to_string()))
            .unwrap_or_default();
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
    }

    /// Sum of the samples of `name` whose labels include every `(key, value)` of `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    /// Its log (stderr: tracing output).
    pub fn log(&self) -> String {
        self.child.stderr_text()
    }

    /// Its process id.
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

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn tails(&self) -> String {
        self.child.tails(4000)
    }
}

/// One `GET` over HTTP/1.1 with `Connection: close`; the whole response, or `None`.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Sum of the Prometheus text samples `name{…} value` whose label set includes `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (label_text, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once('}')?,
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            let all = labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            all.then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
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
