//! A TCP proxy that plays a bad link between a client and skybridge: it forwards both ways
//! until told to **freeze** (stop reading either side for a while, so bytes pile up in the
//! kernel as they do behind a stalled in-flight Wi-Fi link, then arrive in a burst) or to
//! **blackhole** (stop forwarding for good without closing anything: no FIN, no RST, exactly a
//! client that vanished).
//!
//! Its sockets have small buffers so a stall is felt by the sender within a few hundred
//! milliseconds of audio instead of being hidden by megabytes of loopback buffering. Every
//! thread polls with a short timeout and ends when the proxy is dropped or a side closes.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const PASS: u8 = 0;
const FROZEN: u8 = 1;
const BLACKHOLE: u8 = 2;

/// Socket buffer size on the proxy's sockets (the kernel doubles it).
const SOCKET_BUFFER: usize = 4096;
/// Poll period of the pump threads.
const TICK: Duration = Duration::from_millis(5);

#[derive(Debug)]
struct State {
    mode: AtomicU8,
    stop: AtomicBool,
}

/// The proxy; clients connect to [`LinkProxy::addr`], which forwards to the target.
#[derive(Debug)]
pub struct LinkProxy {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl LinkProxy {
    /// Listens on 127.0.0.1 (ephemeral port) and forwards every accepted connection to `target`.
    pub fn start(target: SocketAddr) -> LinkProxy {
        LinkProxy::start_on("127.0.0.1:0".parse().expect("addr"), target)
    }

    /// Same, listening on `bind` (e.g. 127.0.0.2:0 to appear as another client address to
    /// whoever sees the proxy's outgoing side: the outgoing socket binds to the same IP).
    pub fn start_on(bind: SocketAddr, target: SocketAddr) -> LinkProxy {
        // Buffers are sized before listen/connect: shrinking a receive buffer after its window
        // was advertised makes the kernel drop segments, and the sender's retransmission
        // backoff would then add seconds that have nothing to do with the stall.
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(bind),
            socket2::Type::STREAM,
            None,
        )
        .expect("link proxy socket");
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        sock.bind(&bind.into()).expect("bind link proxy");
        sock.listen(128).expect("listen");
        let listener: TcpListener = sock.into();
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy addr");
        let state = Arc::new(State {
            mode: AtomicU8::new(PASS),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        thread::spawn(move || {
            while !st.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Some(server) = connect_from(addr, target) else {
                            continue;
                        };
                        let _ = client.set_nonblocking(false);
                        for s in [&client, &server] {
                            let _ = s.set_nodelay(true);
                            let _ = s.set_read_timeout(Some(TICK));
                        }
                        let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                            (Ok(c), Ok(s)) => (c, s),
                            _ => continue,
                        };
                        let (a, b) = (st.clone(), st.clone());
                        thread::spawn(move || pump(client, server, a));
                        thread::spawn(move || pump(s2, c2, b));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(TICK),
                    Err(_) => thread::sleep(TICK),
                }
            }
        });
        LinkProxy { addr, state }
    }

    /// Stops reading both ways for `d`, then forwards what piled up (a stall, then a burst).
    /// Returns at once; the link thaws on its own.
    pub fn freeze_for(&self, d: Duration) {
        self.state.mode.store(FROZEN, Ordering::SeqCst);
        let st = self.state.clone();
        thread::spawn(move || {
            let until = Instant::now() + d;
            while Instant::now() < until && !st.stop.load(Ordering::Relaxed) {
                thread::sleep(TICK);
            }
            let _ = st
                .mode
                .compare_exchange(FROZEN, PASS, Ordering::SeqCst, Ordering::SeqCst);
        });
    }

    /// Whether a freeze is in progress.
    pub fn frozen(&self) -> bool {
        self.state.mode.load(Ordering::SeqCst) == FROZEN
    }

    /// Stops forwarding for good and keeps every socket open: the far ends see silence, never a
    /// close.
    pub fn blackhole(&self) {
        self.state.mode.store(BLACKHOLE, Ordering::SeqCst);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
    }
}

/// Connects to `target` from the proxy's own IP (so a proxy on 127.0.0.2 looks like a client
/// at 127.0.0.2).
fn connect_from(local: SocketAddr, target: SocketAddr) -> Option<TcpStream> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        None,
    )
    .ok()?;
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    sock.bind(&SocketAddr::new(local.ip(), 0).into()).ok()?;
    sock.connect_timeout(&target.into(), Duration::from_secs(2))
        .ok()?;
    Some(sock.into())
}

/// Copies `from` → `to` while the mode allows; ends (shutting down `to`'s write side) when
/// `from` closes, unless blackholed, in which case it just idles until the proxy is dropped.
fn pump(mut from: TcpStream, mut to: TcpStream, st: Arc<State>) {
    let mut buf = [0u8; 2048];
    while !st.stop.load(Ordering::Relaxed) {
        match st.mode.load(Ordering::Relaxed) {
            PASS => {}
            _ => {
                thread::sleep(TICK);
                continue;
            }
        }
        match from.read(&mut buf) {
            Ok(0) => {
                if st.mode.load(Ordering::Relaxed) != BLACKHOLE {
                    let _ = to.shutdown(Shutdown::Write);
                }
                break;
            }
            Ok(n) => {
                // Bytes read just as the link froze wait for the thaw; a blackhole eats them.
                while st.mode.load(Ordering::Relaxed) == FROZEN && !st.stop.load(Ordering::Relaxed)
                {
                    thread::sleep(TICK);
                }
                if st.mode.load(Ordering::Relaxed) == BLACKHOLE {
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    if st.mode.load(Ordering::Relaxed) == BLACKHOLE {
        // Keep both sockets open (silently) until the proxy goes away.
        while !st.stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(50));
        }
    }
}
