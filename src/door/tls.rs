//! TLS for the client transports: the server certificate (loaded at start, re-read on
//! SIGHUP), the handshake with a deadline, and the RTMPS and HTTPS/WSS listeners.
//!
//! rustls with the `ring` provider; TLS 1.2 and 1.3; ALPN `http/1.1`; no client
//! certificates. Each accept takes the configuration current at that moment, so a reload
//! applies to new connections and leaves open ones alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::ops::metrics as m;
use crate::relay::Shared;

/// Why a certificate or key could not be used; names the configuration key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("`tls.cert_file` {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("`tls.key_file` {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("`tls`: {0}")]
    Config(String),
}

/// ALPN protocols advertised (RTMPS clients send none; browsers offer `http/1.1`).
const ALPN: &[&[u8]] = &[b"http/1.1"];

/// Reads a PEM certificate chain and private key into a server configuration.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<ServerConfig, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: cert_file.display().to_string(),
        reason,
    };
    let key_err = |reason: String| TlsError::Key {
        path: key_file.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("no CERTIFICATE in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| key_err(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| key_err(format!("does not fit the certificate: {e}")))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The certificate in use, shared by every TLS listener; [`TlsState::reload`] swaps it.
#[derive(Debug)]
pub struct TlsState {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsState {
    /// Loads the certificate and key (errors name the key and file).
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<TlsState, TlsError> {
        let config = server_config(cert_file, key_file)?;
        Ok(TlsState {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Re-reads both files; on error the old configuration stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(server_config(&self.cert_file, &self.key_file)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// An acceptor with the configuration current now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        TlsAcceptor::from(config)
    }
}

/// Runs the server side of the TLS handshake within `timeout`. A failure or a missed deadline
/// is logged with the peer and counted as `client_rejected_total{transport, reason="tls"}`.
pub async fn handshake<S>(
    tls: &TlsState,
    stream: S,
    timeout: Duration,
    transport: &'static str,
    peer: SocketAddr,
) -> Option<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let error = match tokio::time::timeout(timeout, tls.acceptor().accept(stream)).await {
        Ok(Ok(s)) => return Some(s),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "not done before the deadline".to_string(),
    };
    warn!(%peer, transport, %error, "TLS handshake failed; closing");
    metrics::counter!(m::CLIENT_REJECTED_TOTAL, "transport" => transport, "reason" => "tls")
        .increment(1);
    None
}

/// Accepts RTMPS connections (RTMP inside TLS) until `stop` turns true.
pub async fn serve_rtmps(listener: TcpListener, shared: Shared, stop: watch::Receiver<bool>) {
    const TRANSPORT: &str = "rtmp";
    super::accept_loop(
        listener,
        shared,
        stop,
        TRANSPORT,
        |stream, shared, peer| async move {
            let _ = stream.set_nodelay(true);
            let Some(tls) = shared.tls.clone() else {
                return;
            };
            let timeout = Duration::from_secs(shared.config.rtmp.handshake_timeout_secs.max(1));
            if let Some(s) = handshake(&tls, stream, timeout, TRANSPORT, peer).await {
                super::rtmp::serve_stream(s, BytesMut::new(), shared, peer).await;
            }
        },
    )
    .await;
}

/// Accepts HTTPS connections (the softphone page, WSS at `/ws`) until `stop` turns true.
pub async fn serve_https(listener: TcpListener, shared: Shared, stop: watch::Receiver<bool>) {
    const TRANSPORT: &str = "websocket";
    super::accept_loop(
        listener,
        shared,
        stop,
        TRANSPORT,
        |stream, shared, peer| async move {
            let _ = stream.set_nodelay(true);
            let Some(tls) = shared.tls.clone() else {
                return;
            };
            let timeout = Duration::from_secs(shared.config.web.handshake_timeout_secs.max(1));
            if let Some(s) = handshake(&tls, stream, timeout, TRANSPORT, peer).await {
                super::web::serve_stream(s, BytesMut::new(), shared, peer, false).await;
            }
        },
    )
    .await;
}

/// Logs the outcome of a reload (SIGHUP).
pub fn reload_and_log(tls: &TlsState) {
    match tls.reload() {
        Ok(()) => info!(cert = %tls.cert_file.display(), "TLS certificate reloaded"),
        Err(e) => warn!(error = %e, "TLS certificate reload failed; keeping the old one"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let cert_path = dir.join(format!("{name}-cert.pem"));
        let key_path = dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert_path, key.cert.pem()).unwrap();
        std::fs::write(&key_path, key.key_pair.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("skybridge-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_generated_pair_loads_with_alpn() {
        let dir = temp_dir("load");
        let (cert, key) = write_pair(&dir, "localhost");
        let config = server_config(&cert, &key).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let dir = temp_dir("errors");
        let (cert, key) = write_pair(&dir, "localhost");
        let missing = dir.join("missing.pem");
        let e = server_config(&missing, &key).unwrap_err().to_string();
        assert!(
            e.contains("tls.cert_file") && e.contains("missing.pem"),
            "{e}"
        );
        let e = server_config(&cert, &missing).unwrap_err().to_string();
        assert!(
            e.contains("tls.key_file") && e.contains("missing.pem"),
            "{e}"
        );
        // A key file holding a certificate has no key in it.
        let e = server_config(&cert, &cert).unwrap_err().to_string();
        assert!(e.contains("tls.key_file"), "{e}");
        // A key that is not the certificate's.
        let (_, other_key) = write_pair(&dir, "other");
        let e = server_config(&cert, &other_key).unwrap_err().to_string();
        assert!(e.contains("tls.key_file"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_bad_reload_keeps_the_old_configuration() {
        let dir = temp_dir("reload");
        let (cert, key) = write_pair(&dir, "localhost");
        let state = TlsState::load(&cert, &key).unwrap();
        let before = Arc::as_ptr(&state.current.read().unwrap());
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(state.reload().is_err());
        assert_eq!(Arc::as_ptr(&state.current.read().unwrap()), before);
        let (cert2, key2) = write_pair(&dir, "new");
        std::fs::rename(cert2, &cert).unwrap();
        std::fs::rename(key2, &key).unwrap();
        state.reload().unwrap();
        assert_ne!(Arc::as_ptr(&state.current.read().unwrap()), before);
        let _ = std::fs::remove_dir_all(dir);
    }
}
