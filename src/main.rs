//! The `skybridge` binary: run the relay, check a configuration file, hash a user token.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use skybridge::config::Config;
use skybridge::ops::http::{self, HttpState};
use skybridge::ops::metrics;
use skybridge::relay::Relay;

/// Edge media relay: RTMP / WebSocket / RFC 4571 clients to SIP and RTP.
#[derive(Debug, Parser)]
#[command(name = "skybridge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay (the default; without --config, loopback-only defaults).
    Run {
        /// TOML configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file: prints "ok", or the problem and exits 2.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the SHA-256 of TOKEN for `[[users]] token_sha256`.
    HashToken { token: String },
    /// Write a certificate and key for `[tls]`: `cert.pem` and `key.pem` in DIR.
    Cert {
        /// A self-signed certificate for NAME, localhost and 127.0.0.1 (for tests and trials;
        /// clients must be told to trust it).
        #[arg(long, required = true)]
        self_signed: bool,
        /// Directory to write `cert.pem` and `key.pem` into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Host name the certificate is for (besides localhost and 127.0.0.1).
        #[arg(long, default_value = "localhost")]
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run { config: None }) {
        Command::Run { config } => match run(config.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("skybridge: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {}", file.display(), one_line(&e.to_string()));
                ExitCode::from(2)
            }
        },
        Command::HashToken { token } => {
            println!("{}", token_sha256_hex(&token));
            ExitCode::SUCCESS
        }
        Command::Cert { out, name, .. } => match write_self_signed(&out, &name) {
            Ok((cert, key)) => {
                println!("{}\n{}", cert.display(), key.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("skybridge cert: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Writes `DIR/cert.pem` and `DIR/key.pem` (mode 0600): a self-signed certificate for `name`,
/// `localhost` and `127.0.0.1`.
fn write_self_signed(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let mut names = vec![name.to_string()];
    for extra in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    let generated =
        rcgen::generate_simple_self_signed(names).context("cannot generate the certificate")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, generated.cert.pem())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&key_path)
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    std::io::Write::write_all(&mut file, generated.key_pair.serialize_pem().as_bytes())
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    Ok((cert_path, key_path))
}

/// Lowercase hex SHA-256 of `token`, as `[[users]] token_sha256` expects.
fn token_sha256_hex(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// TOML parse errors span several lines (position, a source excerpt, the message); keep
/// the position and the message on one line.
fn one_line(text: &str) -> String {
    let is_excerpt = |line: &str| {
        let before_bar = line.split('|').next().unwrap_or(line);
        line.contains('|') && before_bar.trim().bytes().all(|b| b.is_ascii_digit())
    };
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_excerpt(l))
        .map(|l| l.strip_prefix("TOML parse error at ").unwrap_or(l))
        .collect();
    parts.join(": ")
}

fn run(config_path: Option<&Path>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    raise_nofile_limit();

    let config = match config_path {
        Some(path) => {
            let config =
                Config::load(path).map_err(|e| anyhow::anyhow!(one_line(&e.to_string())))?;
            info!(path = %path.display(), "configuration loaded");
            config
        }
        None => {
            info!("no configuration file: loopback-only defaults");
            Config::default()
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("skybridge")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit, and logs both.
///
/// Every client connection is a file descriptor, and so is every RTP socket, so an edge relay
/// must not stop at the soft limit many systems start processes with (1024): a slowloris
/// flood of 1,000 idle connections alone would then starve real clients of `accept`. The
/// per-IP and total connection caps (`[limits]`) are what bound descriptors; this only makes
/// sure the kernel lets the process reach them. A failure is logged and start-up goes on with
/// the limit it had.
fn raise_nofile_limit() {
    use rlimit::Resource;
    let before = match Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(e) => {
            warn!(error = %e, "cannot read the open-files limit (RLIMIT_NOFILE)");
            return;
        }
    };
    let (soft, hard) = before;
    if soft >= hard {
        info!(
            soft,
            hard, "open-files limit (RLIMIT_NOFILE) already at the hard limit"
        );
        return;
    }
    match rlimit::increase_nofile_limit(hard) {
        Ok(now) => info!(
            soft_before = soft,
            soft = now,
            hard,
            "open-files limit (RLIMIT_NOFILE) raised to the hard limit"
        ),
        Err(e) => warn!(
            error = %e,
            soft,
            hard,
            "cannot raise the open-files limit (RLIMIT_NOFILE); keeping the soft limit"
        ),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Signal handlers first: a SIGTERM arriving at any point after start-up is a clean stop.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot install SIGHUP handler")?;

    let handle = metrics::install().context("cannot install the metrics recorder")?;
    metrics::describe();
    metrics::publish_initial_values();
    let upkeep = metrics::spawn_upkeep(handle.clone(), metrics::UPKEEP_INTERVAL);

    let state = HttpState::new(handle);
    let (stop_http, stop_rx) = tokio::sync::watch::channel(false);
    let http_task = match config.http_listen()? {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot bind http.listen {addr}"))?;
            info!(addr = %listener.local_addr().unwrap_or(addr), "http (metrics, health) listening");
            Some(tokio::spawn(http::serve(listener, state.clone(), stop_rx)))
        }
        None => {
            info!("http listener disabled");
            None
        }
    };

    let rtmp = config.rtmp_listen()?;
    let sip = config.sip.listen;
    let rtp = (config.rtp.bind_ip, config.rtp.port_min, config.rtp.port_max);
    let builtin = config.builtin.enabled.then_some(config.builtin.listen);
    let relay = Relay::start_with_ops(config, Some(state.clone()))
        .await
        .context("cannot start the relay")?;
    match rtmp {
        Some(addr) => info!(%addr, "rtmp listening"),
        None => info!("rtmp listener disabled"),
    }
    info!(addr = %sip, "sip listening (udp)");
    info!(ip = %rtp.0, port_min = rtp.1, port_max = rtp.2, "rtp port range");
    if let Some(addr) = builtin {
        info!(%addr, "built-in targets (echo, tone) listening");
    }
    state.ready.store(true, Ordering::Release);
    info!("ready");

    if let Some(addr) = relay.rtmp_tls_addr() {
        info!(%addr, "rtmps listening");
    }
    if let Some(addr) = relay.web_tls_addr() {
        info!(%addr, "https/wss listening");
    }
    if let Some(addr) = relay.shared_addr() {
        info!(%addr, "shared port (tls, rtmp, http) listening");
    }
    let which = loop {
        tokio::select! {
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            _ = sighup.recv() => {
                info!("SIGHUP: reloading the TLS certificate");
                relay.reload_tls();
            }
        }
    };
    info!(
        signal = which,
        active_calls = relay.active_calls(),
        "shutting down"
    );
    state.draining.store(true, Ordering::Release);
    state.ready.store(false, Ordering::Release);
    relay.shutdown().await;

    let _ = stop_http.send(true);
    if let Some(task) = http_task {
        if tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .is_err()
        {
            warn!("http server did not stop in time");
        }
    }
    upkeep.abort();
    info!("stopped");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_lowercase_sha256_hex() {
        assert_eq!(
            token_sha256_hex("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn one_line_keeps_position_and_message_of_toml_errors() {
        let err = Config::from_toml("[rtp]\nport_maxx = 1\n").unwrap_err();
        let line = one_line(&err.to_string());
        assert!(
            line.starts_with("line 2, column 1: unknown field `port_maxx`"),
            "{line}"
        );
        assert!(!line.contains('\n') && !line.contains('^'), "{line}");
        assert_eq!(one_line("`a.b`: bad"), "`a.b`: bad");
    }

    #[test]
    fn self_signed_pair_loads_as_a_server_certificate() {
        let dir = std::env::temp_dir().join(format!("skybridge-cert-{}", std::process::id()));
        let (cert, key) = write_self_signed(&dir, "relay.test").unwrap();
        skybridge::door::tls::server_config(&cert, &key).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        let cli = Cli::try_parse_from(["skybridge", "cert", "--out", "x"]);
        assert!(cli.is_err(), "--self-signed is required");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn no_subcommand_parses() {
        let cli = Cli::try_parse_from(["skybridge"]).unwrap();
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from(["skybridge", "run", "--config", "x.toml"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Run { config: Some(_) })
        ));
    }
}
