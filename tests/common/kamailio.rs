//! Kamailio (5.6, Debian package, no database) as registrar + record-routing proxy on
//! 127.0.0.1:<port>, with digest auth against static credentials compiled into the config.
//!
//! The template `tests/kamailio/kamailio.cfg` is filled in (port, users, whether INVITEs are
//! challenged) and written to the test dir; Kamailio runs in the foreground with
//! `-DD -E -Y <rundir> -m 32 -M 4` (workers are forked into its process group, all killed on
//! drop). Auth uses the `auth` module's `pv_auth_check("$fd", "$var(pw)", "0", "1")` /
//! `auth_challenge("$fd", "0")` (realm = From domain, i.e. "127.0.0.1"); locations live in
//! memory (`usrloc db_mode 0`).

use super::procs::{free_udp_port, loopback, wait_until, Child, TestDir};
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Options for [`Kamailio::start`].
#[derive(Debug, Clone, Default)]
pub struct KamailioOpts {
    /// (user, password) pairs accepted for REGISTER (and INVITE when `auth_invite`).
    pub users: Vec<(String, String)>,
    /// Challenge INVITEs with 407 too (default: only REGISTER is authenticated).
    pub auth_invite: bool,
}

/// A running Kamailio; killed (with its workers) on drop.
#[derive(Debug)]
pub struct Kamailio {
    child: Child,
    port: u16,
    dir: PathBuf,
    _own_dir: TestDir,
}

impl Kamailio {
    /// Generates the config, checks it (`kamailio -c`) and starts Kamailio; waits ≤ 5 s until
    /// it holds its UDP port. Panics with its log on failure.
    pub fn start(opts: KamailioOpts) -> Kamailio {
        let own_dir = TestDir::new("kamailio");
        let dir = own_dir.path().to_path_buf();
        let rundir = dir.join("run");
        fs::create_dir_all(&rundir).expect("create kamailio rundir");
        let port = free_udp_port();
        let cfg_path = dir.join("kamailio.cfg");
        fs::write(&cfg_path, render_config(port, &opts)).expect("write kamailio.cfg");

        let check = Command::new("kamailio")
            .arg("-c")
            .arg("-f")
            .arg(&cfg_path)
            .output()
            .expect("run kamailio -c");
        assert!(
            check.status.success(),
            "kamailio config check failed:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );

        let mut cmd = Command::new("kamailio");
        cmd.arg("-f")
            .arg(&cfg_path)
            .args(["-DD", "-E", "-Y"])
            .arg(&rundir)
            .args(["-m", "32", "-M", "4", "-P"])
            .arg(rundir.join("kamailio.pid"))
            .current_dir(&dir);
        let mut child = Child::spawn("kamailio", &mut cmd, &dir);
        let up = wait_until(Duration::from_secs(5), || {
            !child.is_running() || UdpSocket::bind(loopback(port)).is_err()
        });
        if !up || !child.is_running() {
            panic!(
                "kamailio did not start on 127.0.0.1:{port}\n{}",
                child.tails(3000)
            );
        }
        Kamailio {
            child,
            port,
            dir,
            _own_dir: own_dir,
        }
    }

    /// Its UDP SIP address (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// `sip:<user>@127.0.0.1:<port>`: a user registered here.
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its log (stderr), e.g. to assert a request passed through.
    pub fn log(&self) -> String {
        self.child.stderr_text()
    }

    pub fn tails(&self) -> String {
        self.child.tails(4000)
    }
}

/// The template with placeholders substituted.
pub fn render_config(port: u16, opts: &KamailioOpts) -> String {
    let template = include_str!("../kamailio/kamailio.cfg");
    let passwords: String = opts
        .users
        .iter()
        .map(|(u, p)| {
            format!(
                "    if ($au == \"{}\") {{ $var(pw) = \"{}\"; }}\n",
                cfg_escape(u),
                cfg_escape(p)
            )
        })
        .collect();
    template
        .replace("@@SIP_PORT@@", &port.to_string())
        .replace("@@AUTH_INVITE@@", if opts.auth_invite { "1" } else { "0" })
        .replace("@@PASSWORDS@@", passwords.trim_end())
}

fn cfg_escape(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(*c))
        .collect()
}
