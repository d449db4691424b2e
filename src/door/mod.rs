//! Listeners: accept client connections, enforce per-IP caps and deadlines, hand each
//! connection to its transport.

pub mod rtmp;
pub mod shared;
pub mod tls;
pub mod tunnel;
pub mod web;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn, Instrument};

use crate::call::client_queue::AudioRx;
use crate::ops::metrics as m;
use crate::relay::Shared;

/// Accepts connections until `stop` turns true, holding each to the per-IP and total caps,
/// and runs `handle` for each in its own task (inside a span naming the transport and peer).
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
    transport: &'static str,
    handle: F,
) where
    F: Fn(TcpStream, Shared, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // One set of counts for the whole relay: the caps hold across listeners.
    let limits = shared.connections.clone();
    let dead_peer = shared.config.dead_peer();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((stream, peer)) = r else { continue };
                let Some(slot) = limits.acquire(peer.ip()) else {
                    warn!(%peer, transport, "connection refused: connection cap reached");
                    metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => transport, "reason" => "connection_cap").increment(1);
                    continue;
                };
                set_send_buffer(&stream, shared.config.limits.client_send_buffer_bytes);
                if let Err(e) = set_keepalive(&stream, dead_peer) {
                    debug!(%peer, transport, error = %e, "could not set TCP keepalive");
                }
                let span = tracing::info_span!("conn", transport, %peer);
                let work = handle(stream, shared.clone(), peer);
                tokio::spawn(async move {
                    work.await;
                    drop(slot);
                }.instrument(span));
            }
            _ = stop.changed() => {
                debug!(transport, "listener stopped");
                return;
            }
        }
    }
}

/// Shrinks the kernel's send buffer of a client socket to `bytes` (0 leaves the default), so a
/// stalled link blocks our writer early and the audio queue's age bound applies instead of
/// megabytes of hidden backlog.
pub fn set_send_buffer(stream: &TcpStream, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let sock = socket2::SockRef::from(stream);
    if let Err(e) = sock.set_send_buffer_size(bytes) {
        debug!(error = %e, "could not set SO_SNDBUF on a client socket");
    }
    // Writes wait while more than this much is queued but not yet sent, so a stalled link
    // backs up into the age-bounded audio queue, not into the kernel.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = sock.set_tcp_notsent_lowat(NOTSENT_LOWAT) {
        debug!(error = %e, "could not set TCP_NOTSENT_LOWAT on a client socket");
    }
}

/// Unsent bytes a client socket may hold before writes wait (`TCP_NOTSENT_LOWAT`): a few
/// audio frames of any transport.
pub const NOTSENT_LOWAT: u32 = 1024;
/// Probes TCP keepalive sends before it gives up.
const KEEPALIVE_PROBES: u32 = 3;

/// TCP keepalive `(idle time, probe interval)` for the dead-peer time `d` (whole seconds, at
/// least 2): the first probe after `d/3` idle, then [`KEEPALIVE_PROBES`] probes
/// `(d - d/3)/3` apart, so an idle connection whose peer vanished is dropped after about `d`.
pub fn keepalive_times(d: Duration) -> (Duration, Duration) {
    let secs = d.as_secs().max(2);
    let time = (secs / 3).max(1);
    let interval = ((secs - time) / u64::from(KEEPALIVE_PROBES)).max(1);
    (Duration::from_secs(time), Duration::from_secs(interval))
}

/// Sets TCP keepalive ([`keepalive_times`]) and, on Linux, `TCP_USER_TIMEOUT` = `dead_peer` on an
/// accepted client socket: data left unacknowledged for `dead_peer` (a link that vanished
/// while we were sending) makes the kernel drop the connection, whatever the transport's own
/// timers are doing. Called for every accepted client connection (plain, TLS, shared port).
pub fn set_keepalive(stream: &TcpStream, dead_peer: Duration) -> std::io::Result<()> {
    let (time, interval) = keepalive_times(dead_peer);
    let ka = socket2::TcpKeepalive::new()
        .with_time(time)
        .with_interval(interval);
    #[cfg(not(any(target_os = "windows", target_os = "openbsd", target_os = "redox")))]
    let ka = ka.with_retries(KEEPALIVE_PROBES);
    let sock = socket2::SockRef::from(stream);
    sock.set_tcp_keepalive(&ka)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    sock.set_tcp_user_timeout(Some(dead_peer))?;
    Ok(())
}

/// How long a last write before closing (an error message, a close frame) may take: a
/// client that does not take it is not waited for.
pub const CLOSE_WRITE_WAIT: Duration = Duration::from_millis(500);

/// How a write toward a client ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Everything was written.
    Done,
    /// The connection failed (closed, reset): nothing more to do on it.
    Failed,
    /// The peer stopped taking data: the write did not finish before the dead-peer deadline,
    /// or the kernel gave up on unacknowledged data (`TCP_USER_TIMEOUT`, `ETIMEDOUT`).
    PeerDead,
}

/// Runs `write` until it finishes or `deadline` (the connection's dead-peer deadline) passes,
/// so a driver blocked writing to a vanished client still hangs up in time.
pub async fn write_by<F>(deadline: Option<std::time::Instant>, write: F) -> Written
where
    F: Future<Output = std::io::Result<()>>,
{
    let result = match deadline {
        Some(at) => match tokio::time::timeout_at(at.into(), write).await {
            Ok(r) => r,
            Err(_) => return Written::PeerDead,
        },
        None => write.await,
    };
    match result {
        Ok(()) => Written::Done,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Written::PeerDead,
        Err(_) => Written::Failed,
    }
}

/// Logs and counts a client connection declared dead (nothing arrived for `after`); the caller
/// then closes it, which hangs up its `calls` calls.
pub fn dead_peer(transport: &'static str, peer: SocketAddr, after: Duration, calls: usize) {
    info!(%peer, transport, after_secs = after.as_secs(), calls, "client dead peer: nothing received; closing and hanging up its calls");
    metrics::counter!(m::CLIENT_DEAD_PEER_TOTAL, "transport" => transport).increment(1);
}

/// Receives from an optional channel; pending forever when there is none (for `select!`).
pub async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// [`recv_opt`] for a client audio queue.
pub async fn recv_audio<T>(rx: &mut Option<AudioRx<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// [`recv_opt`] for an unbounded channel.
pub async fn recv_opt_unbounded<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Counts connections per client IP and in all; a [`ConnectionSlot`] gives its place back when
/// dropped.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    inner: Arc<Mutex<Counts>>,
    per_ip: usize,
    total: usize,
}

#[derive(Debug, Default)]
struct Counts {
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
}

/// A place held by one connection.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: ConnectionLimits,
    ip: IpAddr,
}

impl ConnectionLimits {
    /// At most `per_ip` connections from one address and `total` in all, across every
    /// listener that shares this value.
    pub fn new(per_ip: usize, total: usize) -> ConnectionLimits {
        ConnectionLimits {
            inner: Arc::new(Mutex::new(Counts::default())),
            per_ip,
            total,
        }
    }

    /// A slot for a connection from `ip`, or None when a cap is reached.
    pub fn acquire(&self, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut counts = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let held = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if held >= self.per_ip || counts.total >= self.total {
            return None;
        }
        counts.per_ip.insert(ip, held + 1);
        counts.total += 1;
        Some(ConnectionSlot {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.limits.inner.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_cap_holds_and_other_ips_still_connect() {
        let limits = ConnectionLimits::new(2, 10);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = limits.acquire(a).expect("1");
        let _s2 = limits.acquire(a).expect("2");
        assert!(limits.acquire(a).is_none());
        assert!(limits.acquire(b).is_some());
        drop(s1);
        assert!(limits.acquire(a).is_some());
    }

    #[test]
    fn slots_given_back_free_the_total_and_forget_the_address() {
        let limits = ConnectionLimits::new(2, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = limits.acquire(a).expect("1");
        let s2 = limits.acquire(b).expect("2");
        assert!(limits.acquire(a).is_none(), "total reached");
        drop((s1, s2));
        let counts = limits.inner.lock().unwrap();
        assert_eq!((counts.total, counts.per_ip.len()), (0, 0));
    }

    #[test]
    fn keepalive_gives_up_after_about_the_dead_peer_time() {
        for secs in [2u64, 3, 4, 15, 16, 60, 3600] {
            let (time, interval) = keepalive_times(Duration::from_secs(secs));
            let total = (time + interval * KEEPALIVE_PROBES).as_secs();
            assert!(time >= Duration::from_secs(1) && interval >= Duration::from_secs(1));
            assert!(
                total <= secs + 2 && total + 2 >= secs,
                "{secs} s: {total} s"
            );
        }
        assert_eq!(
            keepalive_times(Duration::from_secs(15)),
            (Duration::from_secs(5), Duration::from_secs(3))
        );
    }

    #[tokio::test]
    async fn accepted_sockets_get_keepalive_and_user_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        set_keepalive(&stream, Duration::from_secs(15)).unwrap();
        let sock = socket2::SockRef::from(&stream);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(5));
        assert_eq!(
            sock.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(3)
        );
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), 3);
        #[cfg(target_os = "linux")]
        assert_eq!(
            sock.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(15))
        );
    }

    #[tokio::test]
    async fn a_write_past_the_dead_peer_deadline_is_a_dead_peer() {
        let now = std::time::Instant::now();
        let stuck = std::future::pending::<std::io::Result<()>>();
        let at = Some(now + Duration::from_millis(20));
        assert_eq!(write_by(at, stuck).await, Written::PeerDead);
        let timed_out = async { Err(std::io::Error::from(std::io::ErrorKind::TimedOut)) };
        assert_eq!(write_by(None, timed_out).await, Written::PeerDead);
        let reset = async { Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)) };
        assert_eq!(write_by(None, reset).await, Written::Failed);
        assert_eq!(write_by(at, async { Ok(()) }).await, Written::Done);
    }

    #[test]
    fn total_cap_holds() {
        let limits = ConnectionLimits::new(5, 2);
        let _a = limits.acquire("127.0.0.1".parse().unwrap()).expect("1");
        let _b = limits.acquire("127.0.0.2".parse().unwrap()).expect("2");
        assert!(limits.acquire("127.0.0.3".parse().unwrap()).is_none());
    }
}
