//! The shared client port: one TCP listener for every transport. The first bytes tell TLS,
//! RTMP and HTTP apart ([`skybridge_codecs::classify`]); TLS is terminated and the decrypted
//! stream is told apart again (RTMPS, HTTPS, WSS). Bytes read to decide are handed to the
//! chosen driver, so nothing is lost. HTTP here also answers `/metrics`, `/healthz`, `/readyz`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use skybridge_codecs::classify::{classify, rfc4571_rtp_ssrc, Classified, RFC4571_RTP_PREFIX};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::ops::metrics as m;
use crate::relay::Shared;

const TRANSPORT: &str = "shared";

/// How long a `0x03` prefix shorter than an RFC 4571 RTP header waits for more bytes.
const RTMP_GRACE: Duration = Duration::from_millis(100);

/// Accepts connections on the shared port until `stop` turns true (per-IP and total caps as
/// on every listener).
pub async fn serve(listener: TcpListener, shared: Shared, stop: watch::Receiver<bool>) {
    super::accept_loop(
        listener,
        shared,
        stop,
        TRANSPORT,
        |stream, shared, peer| async move {
            let _ = stream.set_nodelay(true);
            // One deadline to reach a protocol driver: first bytes, TLS handshake, first
            // decrypted bytes.
            let timeout = Duration::from_secs(shared.config.shared.classify_timeout_secs.max(1));
            let deadline = Instant::now() + timeout;
            let Some((kind, first, stream)) = sniff(stream, deadline, peer).await else {
                return;
            };
            if kind != Classified::Tls {
                dispatch(kind, first, stream, shared, peer).await;
                return;
            }
            let Some(tls) = shared.tls.clone() else {
                warn!(%peer, "TLS on the shared port but no [tls] certificate is configured; closing");
                metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => "tls").increment(1);
                return;
            };
            let replay = Prefixed::new(first.freeze(), stream);
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(stream) = super::tls::handshake(&tls, replay, left, TRANSPORT, peer).await
            else {
                return;
            };
            let Some((kind, first, stream)) = sniff(stream, deadline, peer).await else {
                return;
            };
            if kind == Classified::Tls {
                warn!(%peer, "TLS inside TLS on the shared port; closing");
                metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => "protocol_error").increment(1);
                return;
            }
            dispatch(kind, first, stream, shared, peer).await;
        },
    )
    .await;
}

/// Reads until [`classify`] decides (at most a few bytes matter), before `deadline`. None
/// when the peer closed, failed or stayed silent (logged and counted as `deadline`).
async fn sniff<S>(
    mut stream: S,
    deadline: Instant,
    peer: SocketAddr,
) -> Option<(Classified, BytesMut, S)>
where
    S: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(4096);
    let mut rtmp_grace = true;
    loop {
        let kind = classify(&buf);
        if kind == Classified::Rtmp && buf.len() < RFC4571_RTP_PREFIX && rtmp_grace {
            // `0x03` may also open a long RFC 4571 frame: give the rest of its RTP header a
            // moment to arrive (an RTMP client sends C0 and C1 together, so this rarely waits).
            rtmp_grace = false;
            let grace = deadline.min(Instant::now() + RTMP_GRACE);
            if let Ok(Ok(n)) =
                tokio::time::timeout_at(grace.into(), stream.read_buf(&mut buf)).await
            {
                if n == 0 {
                    return None;
                }
            }
            continue;
        }
        if kind != Classified::NeedMore {
            debug!(%peer, ?kind, "shared port: protocol recognised");
            return Some((kind, buf, stream));
        }
        match tokio::time::timeout_at(deadline.into(), stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) => {
                debug!(%peer, "closed before sending a recognisable protocol");
                return None;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "read error before a protocol was recognised");
                return None;
            }
            Err(_) => {
                info!(%peer, "shared port: no protocol recognised before the deadline; closing");
                metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => "deadline").increment(1);
                return None;
            }
        }
    }
}

/// Hands a classified (plain or decrypted) stream to its driver.
async fn dispatch<S>(kind: Classified, first: BytesMut, stream: S, shared: Shared, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let expected_tunnel =
        rfc4571_rtp_ssrc(&first).is_some_and(|ssrc| shared.tunnels.expects_ssrc(ssrc));
    match kind {
        Classified::Rtmp if expected_tunnel => {
            debug!(%peer, "shared port: 0x03 opens an RFC 4571 frame for a pending binding");
            super::tunnel::serve_stream(stream, first, shared, peer).await
        }
        Classified::Rtmp => super::rtmp::serve_stream(stream, first, shared, peer).await,
        Classified::Http => super::web::serve_stream(stream, first, shared, peer, true).await,
        Classified::Other => super::tunnel::serve_stream(stream, first, shared, peer).await,
        Classified::Tls | Classified::NeedMore => {
            route_other(stream, first, shared, peer).await;
        }
    }
}

/// A connection this port cannot serve (TLS inside TLS, or TLS without a certificate):
/// logged, counted and closed. Anything that is not TLS, RTMP or HTTP goes to the RFC 4571
/// tunnel, which holds it to its own binding rules.
pub async fn route_other<S>(stream: S, first_bytes: BytesMut, shared: Shared, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _ = &shared;
    let shown: Vec<u8> = first_bytes.iter().copied().take(8).collect();
    warn!(%peer, first_bytes = ?shown, "shared port: unrecognised protocol; closing");
    metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => TRANSPORT, "reason" => "unknown_protocol").increment(1);
    drop(stream);
}

/// A stream that first yields `prefix` (bytes already read from `inner`), then reads from
/// `inner`; writes go straight to `inner`.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Bytes, inner: S) -> Prefixed<S> {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() && buf.remaining() > 0 {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefixed_yields_the_prefix_then_the_stream_and_writes_through() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut p = Prefixed::new(Bytes::from_static(b"GET "), a);
        b.write_all(b"/ HTTP/1.1").await.unwrap();
        let mut got = vec![0u8; 14];
        p.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET / HTTP/1.1");
        p.write_all(b"ok").await.unwrap();
        let mut back = [0u8; 2];
        b.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ok");
    }
}
