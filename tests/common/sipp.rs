//! SIPp (3.6) UAS scenarios on loopback (`tests/sipp/uas_*.xml`).
//!
//! Command line used: `sipp -sf <xml> -i 127.0.0.1 -mi 127.0.0.1 -p <port> -mp <media>
//! -m <calls> -nostdin -timeout <secs> -trace_screen -screen_file ... -trace_msg ...`.
//! `-i`/`-mi` are essential: SIPp's default local and media IP is the machine's primary address.
//! Digest auth on the UAS side uses `<verifyauth assign_to="authvalid" username="[$user]"
//! password="[$pass]"/>` with `<Global variables="user,pass"/>` set by `-set user X -set pass Y`.
//! Exit codes: 0 all calls successful, 1 some failed, 97 stopped by internal command/global
//! timeout, 99 normal exit with no call processed, 255/254 fatal.

use super::procs::{free_port_block, loopback, wait_until, Child, TestDir};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A canned UAS behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// INVITE → 486 Busy Here.
    Busy,
    /// INVITE → 404 Not Found.
    NotFound,
    /// INVITE → 100, 180, then nothing; CANCEL → 200 OK + 487 for the INVITE.
    RingForever,
    /// INVITE → 180, 200 OK with SDP (PCMU on the SIPp media port); holds until BYE → 200.
    Answer,
    /// INVITE → 401 (Digest MD5, realm "skybridge.test", qop=auth); INVITE with good
    /// credentials → 180, 200 OK with SDP, held until BYE; bad credentials → 403 (call fails).
    Auth { user: String, pass: String },
    /// Another scenario file of `tests/sipp/` (its behaviour is described in the file).
    File(&'static str),
}

impl Scenario {
    fn file(&self) -> &'static str {
        match self {
            Scenario::Busy => "uas_busy.xml",
            Scenario::NotFound => "uas_404.xml",
            Scenario::RingForever => "uas_ring_forever.xml",
            Scenario::Answer => "uas_answer.xml",
            Scenario::Auth { .. } => "uas_auth.xml",
            Scenario::File(name) => name,
        }
    }

    /// Path of the scenario XML in the source tree.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(self.file())
    }
}

/// Outcome of a SIPp run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SippResult {
    /// Process exit code (`None` if it had to be killed or died by a signal).
    pub exit_code: Option<i32>,
    /// Cumulative "Successful call" count from the final statistics screen.
    pub successful: u64,
    /// Cumulative "Failed call" count.
    pub failed: u64,
}

/// A running SIPp UAS; killed on drop.
#[derive(Debug)]
pub struct Sipp {
    child: Child,
    port: u16,
    media_port: u16,
    dir: PathBuf,
    _own_dir: TestDir,
}

impl Sipp {
    /// Starts a UAS on 127.0.0.1:`port` (UDP) that handles one call and exits; SIPp's own
    /// `-timeout` stops it after 60 s whatever happens.
    pub fn uas(scenario: Scenario, port: u16) -> Sipp {
        Self::uas_with(scenario, port, 1, Duration::from_secs(60))
    }

    /// Like [`Self::uas`] with a number of calls to handle before exiting and a global timeout.
    pub fn uas_with(scenario: Scenario, port: u16, calls: u32, timeout: Duration) -> Sipp {
        let own_dir = TestDir::new("sipp");
        let dir = own_dir.path().to_path_buf();
        let media_port = free_port_block(4);
        let mut cmd = Command::new("sipp");
        cmd.arg("-sf")
            .arg(scenario.path())
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .arg("-p")
            .arg(port.to_string())
            .arg("-mp")
            .arg(media_port.to_string())
            .arg("-m")
            .arg(calls.to_string())
            .arg("-nostdin")
            .arg("-timeout")
            .arg(format!("{}s", timeout.as_secs().max(1)))
            .arg("-trace_screen")
            .arg("-screen_file")
            .arg(dir.join("screen.log"))
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.join("messages.log"))
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.join("errors.log"))
            .current_dir(&dir);
        if let Scenario::Auth { user, pass } = &scenario {
            cmd.args(["-set", "user", user, "-set", "pass", pass]);
        }
        let mut child = Child::spawn("sipp", &mut cmd, &dir);
        // Ready once it holds the port (our own bind then fails) — bounded to 5 s.
        let ready = wait_until(Duration::from_secs(5), || {
            !child.is_running() || UdpSocket::bind(loopback(port)).is_err()
        });
        if !ready || !child.is_running() {
            panic!(
                "sipp did not start on 127.0.0.1:{port}\n{}",
                child.tails(2000)
            );
        }
        Sipp {
            child,
            port,
            media_port,
            dir,
            _own_dir: own_dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// `sip:<user>@127.0.0.1:<port>`.
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@127.0.0.1:{}", self.port)
    }

    /// The RTP port SIPp advertises in its SDP (nothing is sent from it).
    pub fn media_port(&self) -> u16 {
        self.media_port
    }

    /// Waits ≤ `timeout` for SIPp to exit (killing it after that) and reads its final counts.
    pub fn wait_exit(&mut self, timeout: Duration) -> SippResult {
        let status = match self.child.wait_timeout(timeout) {
            Some(s) => Some(s),
            None => self.child.stop(Duration::from_secs(1)),
        };
        let screen = std::fs::read_to_string(self.dir.join("screen.log")).unwrap_or_default();
        SippResult {
            exit_code: status.and_then(|s| s.code()),
            successful: last_counter(&screen, "Successful call"),
            failed: last_counter(&screen, "Failed call"),
        }
    }

    /// SIP messages SIPp sent and received (its `-trace_msg` log).
    pub fn messages(&self) -> String {
        std::fs::read_to_string(self.dir.join("messages.log")).unwrap_or_default()
    }

    /// Logs for failure messages.
    pub fn tails(&self) -> String {
        format!(
            "{}\n--- sipp errors ---\n{}",
            self.child.tails(2000),
            super::procs::tail_of(&self.dir.join("errors.log"), 2000)
        )
    }
}

/// The cumulative (last) number on the last line starting with `label` in a SIPp screen dump:
/// `  Successful call        |        0                  |        1`.
fn last_counter(screen: &str, label: &str) -> u64 {
    screen
        .lines()
        .rfind(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.rsplit('|').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
