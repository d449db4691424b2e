//! Process guards, per-test directories, loopback ports and bounded waiting.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// 127.0.0.1.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A loopback socket address.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((LOOPBACK, port))
}

/// A UDP port on 127.0.0.1 that was free a moment ago (the OS picked it).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind((LOOPBACK, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral UDP port on 127.0.0.1")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind((LOOPBACK, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral TCP port on 127.0.0.1")
}

/// A port P such that UDP and TCP are free on P..P+span (exclusive) on 127.0.0.1. Needed by
/// tools binding several sockets from one base port (baresip: UDP+TCP on P and TLS on P+1).
pub fn free_port_block(span: u16) -> u16 {
    for _ in 0..200 {
        let base = free_tcp_port();
        if base.checked_add(span).is_none() {
            continue;
        }
        let ok = (0..span).all(|i| {
            let p = base + i;
            UdpSocket::bind((LOOPBACK, p)).is_ok() && TcpListener::bind((LOOPBACK, p)).is_ok()
        });
        if ok {
            return base;
        }
    }
    panic!("no block of {span} free UDP+TCP ports on 127.0.0.1");
}

/// Polls `cond` every 20 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

static DIR_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory for one test's configs, logs and recordings, under cargo's
/// `CARGO_TARGET_TMPDIR` (`target/tmp/skybridge-it/<name>-<pid>-<n>`). Removed on drop when the
/// test passed; kept (and its path printed) when the thread is panicking, for debugging.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let n = DIR_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("skybridge-it")
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create test dir");
        TestDir { path }
    }

    /// A fresh directory with a short path (`$TMPDIR/sb-<name>-<pid>-<n>`), for programs that
    /// keep file names in small fixed buffers: baresip's sndfile truncates its recording paths
    /// at 127 bytes, dropping the `.wav` when the checkout lives a few directories deeper.
    pub fn short(name: &str) -> TestDir {
        let n = DIR_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("sb-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create short test dir");
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A subdirectory (created).
    pub fn sub(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        fs::create_dir_all(&p).expect("create test subdir");
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("[harness] keeping test dir {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A child process in its own process group, stdout/stderr captured to `<dir>/<name>.out` /
/// `.err`. On drop the whole group gets SIGTERM, then SIGKILL after 2 s if still alive; if the
/// thread is panicking, the tails of its output are printed first.
#[derive(Debug)]
pub struct Child {
    name: String,
    child: std::process::Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Child {
    /// Spawns `cmd` (stdin null, stdout/stderr to files in `dir`). Panics when it cannot start.
    pub fn spawn(name: &str, cmd: &mut Command, dir: &Path) -> Child {
        let stdout_path = dir.join(format!("{name}.out"));
        let stderr_path = dir.join(format!("{name}.err"));
        let out = File::create(&stdout_path).expect("create stdout log");
        let err = File::create(&stderr_path).expect("create stderr log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        Child {
            name: name.to_string(),
            child,
            stdout_path,
            stderr_path,
            status: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Exit status if it has exited (non-blocking).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits at most `timeout` for exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(timeout, || self.try_status().is_some());
        self.status
    }

    /// Sends `signal` (e.g. "TERM", "INT") to the child's process group.
    pub fn signal(&mut self, signal: &str) {
        if self.is_running() {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg("--")
                .arg(format!("-{}", self.child.id()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// SIGTERM the group, wait ≤ `grace`, then SIGKILL the group and reap. Group members that
    /// outlive the leader (forked workers) are found in /proc by process group and killed.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.is_running() {
            self.signal("TERM");
            if self.wait_timeout(grace).is_none() {
                self.signal("KILL");
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
            }
        }
        // The group id stays ours while any member lives, so these pids are our descendants.
        let pgid = self.child.id();
        let gone = wait_until(grace, || group_members(pgid).is_empty());
        if !gone {
            for pid in group_members(pgid) {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            wait_until(Duration::from_secs(1), || group_members(pgid).is_empty());
        }
        self.status
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    pub fn stdout_text(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The last `bytes` of stdout and stderr, labelled, for failure messages.
    pub fn tails(&self, bytes: u64) -> String {
        format!(
            "--- {} stdout (tail) ---\n{}\n--- {} stderr (tail) ---\n{}",
            self.name,
            tail_of(&self.stdout_path, bytes),
            self.name,
            tail_of(&self.stderr_path, bytes)
        )
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
        if thread::panicking() {
            eprintln!("{}", self.tails(3000));
        }
    }
}

/// The last `bytes` of a file, lossily decoded.
pub fn tail_of(path: &Path, bytes: u64) -> String {
    let read = || -> io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(bytes)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    read().unwrap_or_else(|e| format!("<{}: {e}>", path.display()))
}

/// True when `program` is found on PATH.
pub fn have_program(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Live (non-zombie) pids whose process group is `pgid` (from /proc/<pid>/stat).
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // pid (comm) state ppid pgrp ...; comm may contain spaces and parens.
                    let mut f = stat[stat.rfind(')')? + 1..].split_whitespace();
                    let state = f.next()?;
                    let pgrp = f.nth(1)?.parse::<u32>().ok()?;
                    Some(state != "Z" && state != "X" && pgrp == pgid)
                })
                .unwrap_or(false)
        })
        .collect()
}
