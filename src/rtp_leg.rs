//! RTP leg resources: the port pool (RTP/RTCP pairs) and socket set-up with socket2.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use socket2::{Domain, Protocol, Socket, Type};

use crate::ops::metrics as m;

/// Even RTP ports (RTCP = port + 1) handed out from a configured range.
#[derive(Debug)]
pub struct PortPool {
    inner: Mutex<PoolInner>,
    ip: IpAddr,
    buffer_bytes: usize,
    dscp: u8,
}

#[derive(Debug)]
struct PoolInner {
    free: BTreeSet<u16>,
    /// Next port to try first, so recently released ports rest a while (late packets of an
    /// ended call do not reach the next one).
    cursor: u16,
}

/// A bound RTP/RTCP socket pair. Its ports return to the pool when dropped.
#[derive(Debug)]
pub struct PortPair {
    pub rtp: tokio::net::UdpSocket,
    pub rtcp: tokio::net::UdpSocket,
    pub rtp_port: u16,
    pool: Arc<PortPool>,
}

impl PortPair {
    /// The RTP socket.
    pub fn rtp_socket(&self) -> &tokio::net::UdpSocket {
        &self.rtp
    }
}

impl Drop for PortPair {
    fn drop(&mut self) {
        self.pool.release(self.rtp_port);
    }
}

impl PortPool {
    /// A pool of the even ports in `min..=max` (with `max` itself usable only if `max + 1` fits).
    pub fn new(ip: IpAddr, min: u16, max: u16, buffer_bytes: usize, dscp: u8) -> Arc<PortPool> {
        let free = (min..max).step_by(2).collect();
        Arc::new(PortPool {
            inner: Mutex::new(PoolInner { free, cursor: min }),
            ip,
            buffer_bytes,
            dscp,
        })
    }

    /// Ports still free.
    pub fn available(&self) -> usize {
        self.lock().free.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolInner> {
        // A poisoned pool only means another thread panicked while holding it; the set of free
        // ports is still consistent (every mutation is a single insert/remove).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Option<u16> {
        let mut inner = self.lock();
        let port = inner
            .free
            .range(inner.cursor..)
            .next()
            .or_else(|| inner.free.iter().next())
            .copied()?;
        inner.free.remove(&port);
        inner.cursor = port.wrapping_add(2);
        Some(port)
    }

    fn release(&self, port: u16) {
        self.lock().free.insert(port);
        metrics::gauge!(m::RTP_PORTS_IN_USE).decrement(1.0);
    }

    /// Binds a free RTP/RTCP pair. Ports some other program holds are skipped (and left out of
    /// the pool until the next pass finds them free). Must run inside a tokio runtime.
    pub fn allocate(self: &Arc<Self>) -> io::Result<PortPair> {
        let attempts = self.available().max(1);
        for _ in 0..attempts {
            let Some(port) = self.take() else { break };
            match (self.bind(port), self.bind(port.wrapping_add(1))) {
                (Ok(rtp), Ok(rtcp)) => {
                    metrics::gauge!(m::RTP_PORTS_IN_USE).increment(1.0);
                    return Ok(PortPair {
                        rtp,
                        rtcp,
                        rtp_port: port,
                        pool: Arc::clone(self),
                    });
                }
                _ => {
                    // In use elsewhere: give it back for a later try.
                    self.lock().free.insert(port);
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "RTP port range exhausted",
        ))
    }

    fn bind(&self, port: u16) -> io::Result<tokio::net::UdpSocket> {
        let addr = SocketAddr::new(self.ip, port);
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if self.buffer_bytes > 0 {
            socket.set_recv_buffer_size(self.buffer_bytes)?;
            socket.set_send_buffer_size(self.buffer_bytes)?;
        }
        // DSCP sits in the upper six bits of the TOS / traffic-class byte.
        let tos = u32::from(self.dscp) << 2;
        if addr.is_ipv4() {
            socket.set_tos_v4(tos)?;
        } else {
            socket.set_tclass_v6(tos)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        tokio::net::UdpSocket::from_std(socket.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[tokio::test]
    async fn pairs_are_even_and_return_to_the_pool() {
        let pool = PortPool::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 41000, 41010, 0, 46);
        assert_eq!(pool.available(), 5);
        let a = pool.allocate().expect("a");
        let b = pool.allocate().expect("b");
        assert_eq!(a.rtp_port % 2, 0);
        assert_ne!(a.rtp_port, b.rtp_port);
        assert_eq!(a.rtcp.local_addr().unwrap().port(), a.rtp_port + 1);
        assert_eq!(pool.available(), 3);
        drop(a);
        drop(b);
        assert_eq!(pool.available(), 5);
    }

    #[tokio::test]
    async fn exhausted_pool_is_an_error_not_a_hang() {
        let pool = PortPool::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 41100, 41102, 0, 46);
        let _a = pool.allocate().expect("one pair fits");
        let err = pool.allocate().expect_err("range exhausted");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn ports_held_by_others_are_skipped() {
        let squatter = std::net::UdpSocket::bind("127.0.0.1:41200").expect("bind");
        let pool = PortPool::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 41200, 41204, 0, 46);
        let pair = pool.allocate().expect("second pair");
        assert_eq!(pair.rtp_port, 41202);
        drop(squatter);
    }
}
