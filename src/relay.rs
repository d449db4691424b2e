//! Wires the layers together: listeners (door), SIP endpoint, built-in targets, calls.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tracing::info;

use crate::call::driver::Calls;
use crate::config::{uri_host_port, Config};
use crate::door;
use crate::door::tls::TlsState;
use crate::inbound;
use crate::ops::http::HttpState;
use crate::presence::Presence;
use crate::rtp_leg::PortPool;
use crate::session::Authority;
use crate::sip::{UaConfig, UserAgent};
use crate::sip_endpoint::{self, SipHandle};

/// A running relay.
pub struct Relay {
    config: Arc<Config>,
    calls: Calls,
    presence: Presence,
    sip: SipHandle,
    builtin: Option<SipHandle>,
    stop: watch::Sender<bool>,
    rtmp_addr: Option<SocketAddr>,
    web_addr: Option<SocketAddr>,
    tunnel_addr: Option<SocketAddr>,
    rtmp_tls_addr: Option<SocketAddr>,
    web_tls_addr: Option<SocketAddr>,
    shared_addr: Option<SocketAddr>,
    tls: Option<Arc<TlsState>>,
    sip_addr: SocketAddr,
    door_tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Everything a client transport needs to serve a connection.
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub authority: Authority,
    pub calls: Calls,
    pub presence: Presence,
    /// RFC 4571 tunnel bindings (offered by the web listener's API, bound by the tunnel).
    pub tunnels: door::tunnel::Tunnels,
    /// The server certificate, when `[tls]` names one.
    pub tls: Option<Arc<TlsState>>,
    /// The operations server's state, for `/metrics`, `/healthz`, `/readyz` on the shared port.
    pub ops: Option<HttpState>,
    /// Client connections held, per IP and in all, across every listener.
    pub connections: door::ConnectionLimits,
}

fn invalid_input(e: impl ToString) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
}

impl Relay {
    /// Binds every listener named in `config` and starts serving.
    pub async fn start(config: Config) -> std::io::Result<Relay> {
        Relay::start_with_ops(config, None).await
    }

    /// [`Relay::start`], also answering the operations paths on the shared port from `ops`.
    pub async fn start_with_ops(config: Config, ops: Option<HttpState>) -> std::io::Result<Relay> {
        config.validate().map_err(invalid_input)?;
        let tls = if config.tls_configured() {
            let state = TlsState::load(
                Path::new(&config.tls.cert_file),
                Path::new(&config.tls.key_file),
            )
            .map_err(invalid_input)?;
            Some(Arc::new(state))
        } else {
            None
        };
        let config = Arc::new(config);
        let pool = PortPool::new(
            config.rtp.bind_ip,
            config.rtp.port_min,
            config.rtp.port_max,
            config.rtp.socket_buffer_bytes,
            config.rtp.dscp,
        );
        let builtin = if config.builtin.enabled {
            Some(crate::builtin::start(Arc::clone(&config), Arc::clone(&pool)).await?)
        } else {
            None
        };
        let socket = UdpSocket::bind(config.sip.listen).await?;
        let sip_addr = socket.local_addr()?;
        let advertised = config.sip.advertised.unwrap_or(sip_addr);
        let ua = UserAgent::new(
            UaConfig {
                local: sip_addr,
                advertised,
                user_agent: config.sip.user_agent.clone(),
                allowed_peers: allowed_peers(&config),
                t1: config.t1(),
                t2: Duration::from_millis(config.sip.t2_ms),
                t4: Duration::from_millis(config.sip.t4_ms),
                ..UaConfig::new(sip_addr, advertised)
            },
            rand::random(),
        );
        let (incoming_tx, incoming_rx) = tokio::sync::mpsc::unbounded_channel();
        let sip = sip_endpoint::spawn(socket, ua, Some(incoming_tx), "relay");
        let authority = Authority::new(Arc::clone(&config));
        let calls = Calls::new(Arc::clone(&config), sip.clone(), pool, authority.clone());
        if let Some(ops) = &ops {
            let view = calls.clone();
            // Set once per HttpState; a second relay on the same state keeps the first view.
            let _ = ops.calls.set(Box::new(move || {
                let mut json =
                    serde_json::to_string_pretty(&view.list()).unwrap_or_else(|_| "[]".into());
                json.push('\n');
                json
            }));
        }
        let (presence, changes) = Presence::new();
        tokio::spawn(inbound::serve(
            incoming_rx,
            Arc::clone(&config),
            sip.clone(),
            presence.clone(),
            calls.clone(),
        ));
        tokio::spawn(inbound::registrar(
            changes,
            Arc::clone(&config),
            sip.clone(),
        ));
        let shared = Shared {
            config: Arc::clone(&config),
            authority,
            calls: calls.clone(),
            presence: presence.clone(),
            tunnels: door::tunnel::Tunnels::new(
                Duration::from_secs(config.tunnel.bind_window_secs),
                config.limits.max_calls,
            ),
            tls: tls.clone(),
            ops,
            connections: door::ConnectionLimits::new(
                config.limits.max_connections_per_ip,
                config.limits.max_connections,
            ),
        };
        let (stop, stop_rx) = watch::channel(false);
        let mut door_tasks = Vec::new();
        let mut rtmp_addr = None;
        if let Some(addr) = config
            .rtmp_listen()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?
        {
            let listener = TcpListener::bind(addr).await?;
            rtmp_addr = Some(listener.local_addr()?);
            door_tasks.push(tokio::spawn(door::rtmp::serve(
                listener,
                shared.clone(),
                stop_rx.clone(),
            )));
        }
        let mut web_addr = None;
        if let Some(addr) = config
            .web_listen()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?
        {
            let listener = TcpListener::bind(addr).await?;
            web_addr = Some(listener.local_addr()?);
            door_tasks.push(tokio::spawn(door::web::serve(
                listener,
                shared.clone(),
                stop_rx.clone(),
            )));
        }
        let mut tunnel_addr = None;
        if let Some(addr) = config
            .tunnel_listen()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?
        {
            let listener = TcpListener::bind(addr).await?;
            let local = listener.local_addr()?;
            tunnel_addr = Some(local);
            shared.tunnels.set_addr(local);
            door_tasks.push(tokio::spawn(door::tunnel::serve(
                listener,
                shared.clone(),
                stop_rx.clone(),
            )));
        }
        let bind = |addr: Option<SocketAddr>| async move {
            match addr {
                Some(a) => TcpListener::bind(a).await.map(Some),
                None => Ok(None),
            }
        };
        let mut rtmp_tls_addr = None;
        if let Some(listener) = bind(config.rtmp_tls_listen().map_err(invalid_input)?).await? {
            rtmp_tls_addr = Some(listener.local_addr()?);
            door_tasks.push(tokio::spawn(door::tls::serve_rtmps(
                listener,
                shared.clone(),
                stop_rx.clone(),
            )));
        }
        let mut web_tls_addr = None;
        if let Some(listener) = bind(config.web_tls_listen().map_err(invalid_input)?).await? {
            web_tls_addr = Some(listener.local_addr()?);
            door_tasks.push(tokio::spawn(door::tls::serve_https(
                listener,
                shared.clone(),
                stop_rx.clone(),
            )));
        }
        let mut shared_addr = None;
        if let Some(listener) = bind(config.shared_listen().map_err(invalid_input)?).await? {
            shared_addr = Some(listener.local_addr()?);
            door_tasks.push(tokio::spawn(door::shared::serve(
                listener,
                shared.clone(),
                stop_rx.clone(),
            )));
        }
        info!(rtmp = ?rtmp_addr, web = ?web_addr, rtmps = ?rtmp_tls_addr, https = ?web_tls_addr, shared = ?shared_addr, tunnel = ?tunnel_addr, tls = tls.is_some(), sip = %sip_addr, builtin = config.builtin.enabled, "skybridge relay started");
        Ok(Relay {
            config,
            calls,
            presence,
            sip,
            builtin,
            stop,
            rtmp_addr,
            web_addr,
            tunnel_addr,
            rtmp_tls_addr,
            web_tls_addr,
            shared_addr,
            tls,
            sip_addr,
            door_tasks,
        })
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.calls.active()
    }

    /// Where RTMP listens (useful with port 0 in tests).
    pub fn rtmp_addr(&self) -> Option<SocketAddr> {
        self.rtmp_addr
    }

    /// Where the softphone page and WebSocket listen.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web_addr
    }

    /// Where the RFC 4571 tunnel listens.
    pub fn tunnel_addr(&self) -> Option<SocketAddr> {
        self.tunnel_addr
    }

    /// Where RTMPS listens.
    pub fn rtmp_tls_addr(&self) -> Option<SocketAddr> {
        self.rtmp_tls_addr
    }

    /// Where HTTPS/WSS listens.
    pub fn web_tls_addr(&self) -> Option<SocketAddr> {
        self.web_tls_addr
    }

    /// Where the shared port listens.
    pub fn shared_addr(&self) -> Option<SocketAddr> {
        self.shared_addr
    }

    /// Re-reads the TLS certificate and key (SIGHUP); logs the outcome. A bad new pair keeps
    /// the old one. Nothing to do without `[tls]`.
    pub fn reload_tls(&self) {
        match &self.tls {
            Some(tls) => door::tls::reload_and_log(tls),
            None => info!("no [tls] certificate configured; nothing to reload"),
        }
    }

    /// Where the relay's SIP user agent listens.
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }

    /// Stops accepting, hangs up every call cleanly (BYE/CANCEL) and returns when done.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let grace = Duration::from_secs(self.config.limits.drain_timeout_secs);
        self.calls.shutdown(grace).await;
        self.presence.shutdown();
        // Let BYE/CANCEL transactions complete (bounded by the SIP timers' own limits).
        self.sip.drained(Duration::from_secs(5)).await;
        if let Some(b) = &self.builtin {
            b.drained(Duration::from_secs(2)).await;
        }
        for t in self.door_tasks {
            t.abort();
        }
        info!("skybridge relay stopped");
    }
}

/// SIP is accepted only from the configured upstream, the registrar, the dial plan's hosts,
/// the built-in targets and `sip.allowed_peers`; everyone else is ignored silently.
fn allowed_peers(config: &Config) -> Vec<IpAddr> {
    let mut peers: Vec<IpAddr> = config.sip.allowed_peers.clone();
    peers.extend(config.sip.upstream.map(|a| a.ip()));
    // Its answers to our REGISTERs, and the inbound calls it routes to our bindings.
    peers.extend(config.sip.registrar.map(|a| a.ip()));
    peers.extend(
        config
            .dialplan
            .values()
            .filter_map(|u| uri_host_port(u))
            .map(|a| a.ip()),
    );
    if config.builtin.enabled {
        peers.push(config.builtin.listen.ip());
    }
    peers.sort();
    peers.dedup();
    peers
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn the_registrar_may_send_sip() {
        let mut config = Config::default();
        let registrar: SocketAddr = "192.0.2.7:5060".parse().unwrap();
        config.sip.registrar = Some(registrar);
        let peers = allowed_peers(&config);
        assert!(peers.contains(&registrar.ip()), "{peers:?}");
        // Still an allow-list: the built-in targets' loopback address is in it too.
        assert!(peers.contains(&config.builtin.listen.ip()), "{peers:?}");
    }
}
