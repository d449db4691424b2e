//! The `skybridge` binary end to end, and the example configuration kept in step with `Config`.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use skybridge::config::Config;

const BIN: &str = env!("CARGO_BIN_EXE_skybridge");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example_path() -> PathBuf {
    root().join("config/skybridge.example.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).unwrap()
}

fn skybridge(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skybridge-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_config_accepts_the_example() {
    let out = skybridge(&["check-config", example_path().to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn check_config_names_an_unknown_key_and_exits_2() {
    let path = temp_file(
        "unknown.toml",
        "[rtp]\nport_min = 20000\nport_maxx = 30000\n",
    );
    let out = skybridge(&["check-config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("port_maxx"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn check_config_names_an_invalid_value() {
    let path = temp_file("invalid.toml", "[rtp]\nptime_ms = 25\n");
    let out = skybridge(&["check-config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rtp.ptime_ms"), "{stderr}");
}

#[test]
fn hash_token_prints_the_sha256_hex() {
    let out = skybridge(&["hash-token", "test"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
    );
}

// ---- the example file documents Config -------------------------------------------------------

/// `(section, key)` pairs in the example, including `#key = value` settings shown commented out
/// (a `#` directly followed by the key); prose comments (`# text`) are skipped. Section headers
/// are recorded as `(name, "")`.
fn example_keys(text: &str) -> BTreeSet<(String, String)> {
    let mut keys = BTreeSet::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        let line = match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '[') => rest,
            Some(_) => continue,
            None => line,
        };
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            keys.insert((section.clone(), String::new()));
        } else if let Some((key, _)) = line.split_once('=') {
            keys.insert((section.clone(), key.trim().to_string()));
        }
    }
    keys
}

/// Struct name → its `pub` field names, read from the text of src/config.rs.
fn config_structs(source: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut structs = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in source.lines() {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if rest.trim_end().ends_with('{') {
                structs.insert(name.clone(), Vec::new());
                current = Some(name);
            }
            continue;
        }
        if line.starts_with('}') {
            current = None;
            continue;
        }
        let Some(name) = &current else { continue };
        if let Some(field) = line.trim().strip_prefix("pub ") {
            if let Some((field, ty)) = field.split_once(':') {
                let ty = ty.trim().trim_end_matches(',').to_string();
                structs
                    .get_mut(name)
                    .unwrap()
                    .push((field.trim().to_string(), ty));
            }
        }
    }
    structs
}

#[test]
fn example_documents_every_config_key() {
    let source = std::fs::read_to_string(root().join("src/config.rs")).unwrap();
    let structs = config_structs(&source);
    let top = structs
        .get("Config")
        .expect("struct Config in src/config.rs");
    let keys = example_keys(&example_text());

    // Each field of Config is a section; a struct type (or Vec of one) gives that section's keys.
    let mut section_of: BTreeMap<&str, &str> = BTreeMap::new();
    for (field, ty) in top {
        assert!(
            keys.contains(&(field.clone(), String::new())),
            "section [{field}] missing from the example"
        );
        let inner = ty
            .trim_start_matches("Vec<")
            .trim_end_matches('>')
            .to_string();
        if let Some((name, _)) = structs.get_key_value(inner.as_str()) {
            section_of.insert(name.as_str(), field.as_str());
        }
    }
    let mut checked = 0;
    for (name, fields) in &structs {
        if name == "Config" {
            continue;
        }
        let section = section_of.get(name.as_str()).unwrap_or_else(|| {
            panic!("struct {name} is not a section of Config: teach this test where it lives")
        });
        for (field, _) in fields {
            assert!(
                keys.contains(&(section.to_string(), field.clone())),
                "`{section}.{field}` is not documented in config/skybridge.example.toml"
            );
            checked += 1;
        }
    }
    assert!(
        checked > 40,
        "parsed only {checked} keys from src/config.rs"
    );
}

#[test]
fn example_values_are_the_defaults() {
    let parsed = Config::from_toml(&example_text()).unwrap();
    assert_eq!(
        format!("{parsed:#?}"),
        format!("{:#?}", Config::default()),
        "a value in the example differs from Config::default()"
    );
}

#[test]
fn example_optional_settings_are_valid_when_enabled() {
    let enabled: String = example_text()
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '[') => rest,
            _ => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    let config = Config::from_toml(&enabled).unwrap_or_else(|e| panic!("{e}\n{enabled}"));
    assert_eq!(config.users.len(), 1);
    assert_eq!(config.dialplan.len(), 2);
    assert!(config.sip.upstream.is_some() && config.rtp.advertised_ip.is_some());
}

// ---- running -----------------------------------------------------------------------------------

/// Kills the child if a test fails before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_tcp() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn run_config(http: SocketAddr) -> String {
    let rtp = free_udp().port().min(65000) & !1;
    format!(
        "[rtmp]\nlisten = \"{}\"\n[http]\nlisten = \"{http}\"\n[sip]\nlisten = \"{}\"\n\
         [builtin]\nlisten = \"{}\"\n[rtp]\nport_min = {rtp}\nport_max = {}\n",
        free_tcp(),
        free_udp(),
        free_udp(),
        rtp + 10,
    )
}

fn spawn_run(config: &Path) -> Running {
    Running(
        Command::new(BIN)
            .args(["run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// One GET; None if the server is not there (yet).
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn wait_for(addr: SocketAddr, path: &str, child: &mut Running) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(r) = http_get(addr, path) {
            return r;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            let mut stderr = String::new();
            if let Some(mut e) = child.0.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            panic!("skybridge exited early: {status}\n{stderr}");
        }
        assert!(Instant::now() < deadline, "{path} never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut Running, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `skybridge run` on fresh loopback ports and waits for `/healthz`. Ports are picked
/// free and released before skybridge binds them, so a test running at the same time can take
/// one in between: an early exit naming a port in use is retried with new ports (3 tries).
fn start_on_free_ports() -> (Running, SocketAddr, String) {
    let mut last = String::new();
    for _ in 0..3 {
        let http = free_tcp();
        let config = temp_file("run.toml", &run_config(http));
        let mut child = spawn_run(&config);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(r) = http_get(http, "/healthz") {
                return (child, http, r);
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = child.0.stderr.take() {
                    let _ = e.read_to_string(&mut stderr);
                }
                assert!(
                    stderr.contains("in use"),
                    "skybridge exited early: {status}\n{stderr}"
                );
                last = stderr;
                break;
            }
            assert!(Instant::now() < deadline, "/healthz never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("three tries, a port in use each time: {last}");
}

#[test]
fn run_serves_health_and_metrics_then_exits_0_on_sigterm() {
    let (mut child, http, health) = start_on_free_ports();

    assert!(health.starts_with("HTTP/1.1 200 "), "{health}");
    let ready = wait_for(http, "/readyz", &mut child);
    assert!(ready.starts_with("HTTP/1.1 200 "), "{ready}");
    let metrics = wait_for(http, "/metrics", &mut child);
    assert!(metrics.starts_with("HTTP/1.1 200 "), "{metrics}");
    assert!(metrics.contains("skybridge_calls_active 0"), "{metrics}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_exit(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn run_with_http_port_in_use_fails_with_one_line_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let http = taken.local_addr().unwrap();
    let config = temp_file("busy.toml", &run_config(http));
    let mut child = spawn_run(&config);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(!status.success(), "{status}");
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("skybridge: ") && last.contains("http.listen"),
        "{stderr}"
    );
    drop(taken);
}

#[test]
fn run_with_a_bad_config_fails_naming_the_key() {
    let config = temp_file("bad-run.toml", "[limits]\nmax_calls = 0\n");
    let mut child = spawn_run(&config);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(!status.success(), "{status}");
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("limits.max_calls"), "{stderr}");
}
