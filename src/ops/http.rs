//! A minimal HTTP/1.1 server for operations: `GET /metrics`, `/healthz`, `/readyz`.
//!
//! One request per connection (`Connection: close`). Bounded: the request head is at most
//! [`HttpLimits::max_head_bytes`] (else 431), it must arrive within [`HttpLimits::read_timeout`]
//! (slowloris), responses must be taken within [`HttpLimits::write_timeout`], and at most
//! [`HttpLimits::max_connections`] connections are served at once (others get 503 and close).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, warn};

use super::metrics::{label, CLIENT_REJECTED_TOTAL};

/// Limits of the ops HTTP server.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Largest request head (request line + headers + blank line), bytes.
    pub max_head_bytes: usize,
    /// Time a client has to send the whole request head.
    pub read_timeout: Duration,
    /// Time a client has to take the response.
    pub write_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 8 * 1024,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_connections: 64,
        }
    }
}

/// What the HTTP server reports. Cheap to clone; the flags are shared with the binary.
#[derive(Clone)]
pub struct HttpState {
    /// Rendered on `/metrics`.
    pub metrics: PrometheusHandle,
    /// Set once the relay is serving; `/readyz` is 503 until then.
    pub ready: Arc<AtomicBool>,
    /// Set when shutdown begins; `/readyz` is 503 from then on.
    pub draining: Arc<AtomicBool>,
    pub limits: HttpLimits,
    /// Renders `/calls` (JSON), once the relay has set it.
    pub calls: Arc<OnceLock<CallsView>>,
}

/// Renders the active calls as JSON for `GET /calls`.
pub type CallsView = Box<dyn Fn() -> String + Send + Sync>;

impl HttpState {
    /// Not ready, not draining, default limits.
    pub fn new(metrics: PrometheusHandle) -> Self {
        Self {
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
            draining: Arc::new(AtomicBool::new(false)),
            limits: HttpLimits::default(),
            calls: Arc::new(OnceLock::new()),
        }
    }

    /// True when `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }
}

/// Accepts connections on `listener` until `shutdown` becomes `true` (or its sender is
/// dropped), serving each on its own task. Connections in flight finish within their deadlines.
pub async fn serve(listener: TcpListener, state: HttpState, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(state.limits.max_connections));
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            reject("busy");
            // Best effort, never blocks: the socket buffer of a fresh connection is empty.
            let _ = stream.try_write(BUSY_RESPONSE);
            debug!(%peer, "http connection refused: too many connections");
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = handle_connection(stream, &state).await {
                debug!(%peer, error = %e, "http connection ended with an error");
            }
            drop(permit);
        });
    }
}

const BUSY_RESPONSE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

fn reject(reason: &'static str) {
    metrics::counter!(CLIENT_REJECTED_TOTAL, label::TRANSPORT => "http", label::REASON => reason)
        .increment(1);
}

/// Serves one request on `stream` and closes it. Usable by any listener that has recognised
/// HTTP (the stream must start at the request line).
pub async fn handle_connection<S>(mut stream: S, state: &HttpState) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = state.limits;
    let mut buf = vec![0u8; limits.max_head_bytes];
    let head = tokio::time::timeout(limits.read_timeout, read_head(&mut stream, &mut buf)).await;
    let response = match head {
        Err(_elapsed) => {
            reject("timeout");
            // A stalled client gets no answer, just the close.
            return Ok(());
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Err(HeadError::Closed))) => return Ok(()),
        Ok(Ok(Err(HeadError::TooLarge))) => {
            reject("header_too_large");
            Response::text(431, "Request Header Fields Too Large", "header too large\n")
        }
        Ok(Ok(Err(HeadError::Malformed))) => {
            reject("malformed");
            Response::text(400, "Bad Request", "bad request\n")
        }
        Ok(Ok(Ok(len))) => match buf.get(..len).map(parse_request_line) {
            Some(Ok(line)) => route(&line, state),
            _ => {
                reject("malformed");
                Response::text(400, "Bad Request", "bad request\n")
            }
        },
    };
    let write = async {
        stream.write_all(&response.head()).await?;
        stream.write_all(response.body.as_bytes()).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(limits.write_timeout, write).await {
        Ok(result) => result?,
        Err(_elapsed) => {
            reject("write_timeout");
            return Ok(());
        }
    }
    // Lingering close: closing with unread input would send a reset, which can destroy the
    // response before the client reads it (e.g. a 431 for a head we stopped reading).
    let _ = tokio::time::timeout(LINGER_TIME, discard(&mut stream, &mut buf, LINGER_BYTES)).await;
    Ok(())
}

/// Longest a closed connection waits for the client's remaining input.
const LINGER_TIME: Duration = Duration::from_secs(1);
/// Most input read and discarded while lingering.
const LINGER_BYTES: usize = 64 * 1024;

async fn discard<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8], mut budget: usize) {
    while budget > 0 {
        match stream.read(buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => budget = budget.saturating_sub(n),
        }
    }
}

/// Why a request head could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("request head larger than the limit")]
    TooLarge,
    #[error("malformed request")]
    Malformed,
    #[error("connection closed before the request head ended")]
    Closed,
}

/// Reads into `buf` until the blank line ending the head; returns the head's length.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
) -> std::io::Result<Result<usize, HeadError>> {
    let mut filled = 0;
    loop {
        let Some(free) = buf.get_mut(filled..) else {
            return Ok(Err(HeadError::TooLarge));
        };
        if free.is_empty() {
            return Ok(Err(HeadError::TooLarge));
        }
        let n = stream.read(free).await?;
        if n == 0 {
            return Ok(Err(HeadError::Closed));
        }
        // Search only where the terminator could newly appear.
        let from = filled.saturating_sub(3);
        filled += n;
        let window = buf.get(from..filled).unwrap_or_default();
        if let Some(end) = find_head_end(window) {
            return Ok(Ok(from + end));
        }
        if buf.first().is_some_and(|b| !b.is_ascii_uppercase()) {
            return Ok(Err(HeadError::Malformed));
        }
    }
}

/// Offset just past the first `\r\n\r\n`.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The request line of an HTTP/1.x request, borrowed from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLine<'a> {
    pub method: &'a str,
    /// The path, without any `?query`.
    pub path: &'a str,
}

/// Parses the first line of `head`.
///
/// `request-line = method SP request-target SP HTTP-version CRLF` (RFC 9112 §3); `method` is a
/// token of uppercase letters, the target is origin-form (starts with `/`), the version is
/// `HTTP/1.0` or `HTTP/1.1`.
pub fn parse_request_line(head: &[u8]) -> Result<RequestLine<'_>, HeadError> {
    let end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or(HeadError::Malformed)?;
    let line = head.get(..end).ok_or(HeadError::Malformed)?;
    let line = std::str::from_utf8(line).map_err(|_| HeadError::Malformed)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed);
    };
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Malformed);
    }
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HeadError::Malformed);
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HeadError::Malformed);
    }
    let path = target.split('?').next().unwrap_or(target);
    Ok(RequestLine { method, path })
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    extra_header: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            extra_header: "",
            body: body.into(),
        }
    }

    fn head(&self) -> Vec<u8> {
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len(),
            self.extra_header,
        )
        .into_bytes()
    }
}

fn route(line: &RequestLine<'_>, state: &HttpState) -> Response {
    if line.method != "GET" {
        let mut r = Response::text(405, "Method Not Allowed", "method not allowed\n");
        r.extra_header = "Allow: GET\r\n";
        return r;
    }
    match line.path {
        "/metrics" => Response {
            status: 200,
            reason: "OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            extra_header: "",
            body: state.metrics.render(),
        },
        "/calls" => Response {
            status: 200,
            reason: "OK",
            content_type: "application/json",
            extra_header: "",
            body: state
                .calls
                .get()
                .map_or_else(|| "[]\n".to_string(), |f| f()),
        },
        "/healthz" => Response::text(200, "OK", "ok\n"),
        "/readyz" if state.is_ready() => Response::text(200, "OK", "ready\n"),
        "/readyz" => Response::text(503, "Service Unavailable", "not ready\n"),
        _ => Response::text(404, "Not Found", "not found\n"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    struct Server {
        addr: std::net::SocketAddr,
        state: HttpState,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(limits: HttpLimits) -> Server {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("skybridge_test_total").increment(3);
        });
        let mut state = HttpState::new(handle);
        state.limits = limits;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, state.clone(), rx));
        Server {
            addr,
            state,
            stop,
            task,
        }
    }

    /// Sends `request`, returns everything until the server closes (bounded).
    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .expect("server closes the connection")
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .await
    }

    #[tokio::test]
    async fn healthz_is_ok_and_closes() {
        let srv = start(HttpLimits::default()).await;
        let r = get(srv.addr, "/healthz").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Connection: close\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nok\n"), "{r}");
    }

    #[tokio::test]
    async fn metrics_renders_prometheus_text() {
        let srv = start(HttpLimits::default()).await;
        let r = get(srv.addr, "/metrics?x=1").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("skybridge_test_total 3"), "{r}");
    }

    #[tokio::test]
    async fn calls_is_an_empty_list_until_the_relay_sets_its_view() {
        let srv = start(HttpLimits::default()).await;
        let r = get(srv.addr, "/calls").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: application/json\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n[]\n"), "{r}");
        assert!(srv
            .state
            .calls
            .set(Box::new(|| "[{\"id\":1}]\n".into()))
            .is_ok());
        let r = get(srv.addr, "/calls").await;
        assert!(r.ends_with("\r\n\r\n[{\"id\":1}]\n"), "{r}");
    }

    #[tokio::test]
    async fn readyz_follows_ready_and_draining() {
        let srv = start(HttpLimits::default()).await;
        let r = get(srv.addr, "/readyz").await;
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        srv.state.ready.store(true, Ordering::Release);
        let r = get(srv.addr, "/readyz").await;
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
        srv.state.draining.store(true, Ordering::Release);
        let r = get(srv.addr, "/readyz").await;
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
    }

    #[tokio::test]
    async fn unknown_path_is_404() {
        let srv = start(HttpLimits::default()).await;
        let r = get(srv.addr, "/admin").await;
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    }

    #[tokio::test]
    async fn non_get_is_405_with_allow() {
        let srv = start(HttpLimits::default()).await;
        let r = exchange(
            srv.addr,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        assert!(r.contains("Allow: GET\r\n"), "{r}");
    }

    #[tokio::test]
    async fn garbage_request_line_is_400() {
        let srv = start(HttpLimits::default()).await;
        let r = exchange(srv.addr, b"GET nopath\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    }

    #[tokio::test]
    async fn oversized_head_is_431_and_closed() {
        let srv = start(HttpLimits::default()).await;
        let mut req = b"GET /healthz HTTP/1.1\r\nX-Big: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 9000));
        req.extend_from_slice(b"\r\n\r\n");
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        // The server may close before reading everything; a write error then is fine.
        let _ = s.write_all(&req).await;
        let mut out = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut out))
            .await
            .expect("answered")
            .unwrap_or(0);
        let r = String::from_utf8_lossy(&out[..n]);
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    }

    #[tokio::test]
    async fn stalled_client_is_closed_at_the_deadline() {
        let limits = HttpLimits {
            read_timeout: Duration::from_millis(200),
            ..HttpLimits::default()
        };
        let srv = start(limits).await;
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"G").await.unwrap();
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out))
            .await
            .expect("closed by the server's deadline")
            .unwrap();
        assert!(out.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn connections_over_the_cap_get_503() {
        let limits = HttpLimits {
            max_connections: 1,
            ..HttpLimits::default()
        };
        let srv = start(limits).await;
        let mut hog = TcpStream::connect(srv.addr).await.unwrap();
        hog.write_all(b"G").await.unwrap();
        // Let the server accept the hog before the second client arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Send nothing: a refused client that already sent data may see a reset instead.
        let r = exchange(srv.addr, b"").await;
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        drop(hog);
        // Once the hog is gone, its slot is free again.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let r = get(srv.addr, "/healthz").await;
            if r.starts_with("HTTP/1.1 200 ") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "slot never freed: {r}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn serve_returns_on_shutdown() {
        let srv = start(HttpLimits::default()).await;
        srv.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), srv.task)
            .await
            .expect("serve returns")
            .unwrap();
    }

    #[test]
    fn request_line_parser_accepts_origin_form_and_strips_query() {
        let l = parse_request_line(b"GET /metrics?a=b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            l,
            RequestLine {
                method: "GET",
                path: "/metrics"
            }
        );
    }

    #[test]
    fn request_line_parser_rejects_malformed_lines() {
        for bad in [
            &b"GET /x HTTP/1.1"[..],
            b"GET /x HTTP/2\r\n",
            b"GET  /x HTTP/1.1\r\n",
            b"GET http://h/x HTTP/1.1\r\n",
            b"get /x HTTP/1.1\r\n",
            b"GET /x HTTP/1.1 extra\r\n",
            b"GET /\xff HTTP/1.1\r\n",
            b"\r\n",
        ] {
            assert_eq!(
                parse_request_line(bad),
                Err(HeadError::Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn head_end_is_found_after_blank_line() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
