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

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn, Instrument};

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
    let limits = ConnectionLimits::new(
        shared.config.limits.max_connections_per_ip,
        shared.config.limits.max_connections,
    );
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
    if let Err(e) = socket2::SockRef::from(stream).set_send_buffer_size(bytes) {
        debug!(error = %e, "could not set SO_SNDBUF on a client socket");
    }
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
    inner: Arc<Mutex<HashMap<IpAddr, usize>>>,
    per_ip: usize,
    total: usize,
}

/// A place held by one connection.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: ConnectionLimits,
    ip: IpAddr,
}

impl ConnectionLimits {
    pub fn new(per_ip: usize, total: usize) -> ConnectionLimits {
        ConnectionLimits {
            inner: Arc::new(Mutex::new(HashMap::new())),
            per_ip,
            total,
        }
    }

    /// A slot for a connection from `ip`, or None when a cap is reached.
    pub fn acquire(&self, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = map.values().sum();
        let count = map.entry(ip).or_insert(0);
        if *count >= self.per_ip || total >= self.total {
            if *count == 0 {
                map.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut map = self.limits.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
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
    fn total_cap_holds() {
        let limits = ConnectionLimits::new(5, 2);
        let _a = limits.acquire("127.0.0.1".parse().unwrap()).expect("1");
        let _b = limits.acquire("127.0.0.2".parse().unwrap()).expect("2");
        assert!(limits.acquire("127.0.0.3".parse().unwrap()).is_none());
    }
}
