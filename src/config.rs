//! Configuration: one TOML file, every key optional with a safe default.
//!
//! Validated at start: an error names the key and the problem. With no file at all the relay
//! listens on loopback only, client authentication is off and only the built-in targets
//! (`echo`, `tone`) can be dialled.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub rtmp: RtmpConfig,
    pub web: WebConfig,
    pub tunnel: TunnelConfig,
    pub http: HttpConfig,
    pub sip: SipConfig,
    pub rtp: RtpConfig,
    pub auth: AuthConfig,
    pub builtin: BuiltinConfig,
    pub limits: LimitsConfig,
    pub tls: TlsConfig,
    pub shared: SharedConfig,
    /// Users allowed to place calls.
    pub users: Vec<UserConfig>,
    /// Dial plan: a target name a client may dial → the SIP URI it reaches.
    pub dialplan: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpConfig {
    /// Listen address for RTMP; empty string disables the listener.
    pub listen: String,
    /// Seconds a client has to finish the handshake and `connect`.
    pub handshake_timeout_secs: u64,
    /// Largest RTMP message accepted (bytes).
    pub max_message_bytes: usize,
    /// Bytes a connection may hold in partially reassembled messages.
    pub max_buffered_bytes: usize,
    /// Seconds without any input after which a connection is declared dead and closed
    /// (server pings go out every third of it). Unset: `limits.dead_peer_secs`.
    pub idle_timeout_secs: Option<u64>,
    /// Listen address for RTMPS (RTMP over TLS, certificate from `[tls]`); empty disables it.
    pub tls_listen: String,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:1935".into(),
            handshake_timeout_secs: 10,
            max_message_bytes: 256 * 1024,
            max_buffered_bytes: 1024 * 1024,
            idle_timeout_secs: None,
            tls_listen: String::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Listen address for the softphone page and its WebSocket (`/ws`); empty disables it.
    pub listen: String,
    /// Origins allowed to open the WebSocket (e.g. `https://phone.example.com`). Empty: only
    /// pages served by this listener (the Origin's host must equal the Host header).
    pub allowed_origins: Vec<String>,
    /// Seconds a client has to send its HTTP request, and then its `hello`.
    pub handshake_timeout_secs: u64,
    /// Listen address for HTTPS (the page) and WSS (`/ws`), certificate from `[tls]`; empty
    /// disables it.
    pub tls_listen: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            allowed_origins: Vec::new(),
            handshake_timeout_secs: 10,
            tls_listen: String::new(),
        }
    }
}

/// RTP over TCP (RFC 4571) for clients whose network blocks UDP; calls are set up with
/// `POST /v1/calls` on the web listener (README, "Calling over TCP (RFC 4571)").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TunnelConfig {
    /// Listen address for RFC 4571 tunnel connections; empty disables it (and the API).
    pub listen: String,
    /// Seconds after `POST /v1/calls` within which the tunnel (and receive) connection must bind.
    pub bind_window_secs: u64,
    /// Seconds a connection has to send its first packet, and to finish any frame it started.
    pub read_timeout_secs: u64,
    /// Seconds without any input on a bound tunnel after which it is declared dead and closed
    /// (the call ends). Unset: `limits.dead_peer_secs`.
    pub idle_timeout_secs: Option<u64>,
    /// Largest RTP/RTCP packet accepted in one frame (bytes).
    pub max_frame_bytes: u16,
    /// Zero-length frames tolerated in a row before the connection is closed.
    pub max_empty_frames: u32,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4571".into(),
            bind_window_secs: 10,
            read_timeout_secs: 10,
            idle_timeout_secs: None,
            max_frame_bytes: 1500,
            max_empty_frames: 16,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address for `/metrics`, `/healthz`, `/readyz`; empty string disables it.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9090".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP address the relay's SIP user agent binds.
    pub listen: SocketAddr,
    /// Address written into Via/Contact (for NAT); defaults to `listen`.
    pub advertised: Option<SocketAddr>,
    /// Where every outgoing request is sent (a PBX, proxy or phone). Without it, requests go to
    /// the host and port of the dialled URI.
    pub upstream: Option<SocketAddr>,
    /// Hosts SIP is accepted from besides `upstream` and the dialled peers (IP addresses).
    pub allowed_peers: Vec<IpAddr>,
    /// Domain used in From URIs (`sip:user@domain`); defaults to the advertised host.
    pub domain: Option<String>,
    /// RFC 3261 T1 in milliseconds.
    pub t1_ms: u64,
    /// RFC 3261 T2 in milliseconds.
    pub t2_ms: u64,
    /// RFC 3261 T4 in milliseconds.
    pub t4_ms: u64,
    /// Seconds to wait for an answer before hanging up (CANCEL) — and for a client to answer
    /// an inbound call before it gets 480.
    pub ring_timeout_secs: u64,
    /// Registrar where signed-in users are registered (REGISTER with their credentials) so
    /// inbound calls reach them. None: no registration.
    pub registrar: Option<SocketAddr>,
    /// Expiry asked for in REGISTER (seconds); refreshed before it runs out.
    pub register_expires_secs: u32,
    /// Also send client DTMF as SIP INFO (`application/dtmf-relay`), besides RFC 4733 events.
    pub dtmf_info: bool,
    pub user_agent: String,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060),
            advertised: None,
            upstream: None,
            allowed_peers: Vec::new(),
            domain: None,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            ring_timeout_secs: 60,
            registrar: None,
            register_expires_secs: 600,
            dtmf_info: false,
            user_agent: concat!("skybridge/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtpConfig {
    /// Address RTP sockets bind to.
    pub bind_ip: IpAddr,
    /// Address written into SDP (for NAT); defaults to `bind_ip`.
    pub advertised_ip: Option<IpAddr>,
    /// First port of the RTP range (even; RTCP uses port + 1).
    pub port_min: u16,
    /// Last port of the RTP range.
    pub port_max: u16,
    /// Seconds without RTP from the peer, once answered, after which the call is ended.
    pub inactivity_timeout_secs: u64,
    /// Frames older than this (ms) on their way to RTP, or queued toward a client, are dropped
    /// instead of sent late.
    pub max_delay_ms: u64,
    /// Packet duration sent toward RTP (ms).
    pub ptime_ms: u32,
    /// Socket receive/send buffer sizes (bytes, 0 = system default).
    pub socket_buffer_bytes: usize,
    /// DSCP for RTP packets (46 = EF).
    pub dscp: u8,
    /// RTP payload type offered for RFC 4733 telephone-event.
    pub telephone_event_pt: u8,
    /// Codecs offered on the SIP leg, most preferred first (`pcmu`, `pcma`, `g722`, `l16`,
    /// `l16/16000`, …; see [`crate::media::Codec::from_config_name`]).
    pub codecs: Vec<String>,
}

impl Default for RtpConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertised_ip: None,
            port_min: 20000,
            port_max: 20999,
            inactivity_timeout_secs: 30,
            max_delay_ms: 200,
            ptime_ms: 20,
            socket_buffer_bytes: 256 * 1024,
            dscp: 46,
            telephone_event_pt: 101,
            codecs: vec!["pcmu".into(), "pcma".into(), "g722".into()],
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Require a valid user token before a call can be placed.
    pub required: bool,
    /// Targets a client may dial when `required = false`.
    pub anonymous_targets: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            required: false,
            anonymous_targets: vec!["echo".into(), "tone".into()],
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuiltinConfig {
    /// Run the built-in SIP targets `echo` and `tone`.
    pub enabled: bool,
    /// UDP address of the built-in SIP user agent (loopback only).
    pub listen: SocketAddr,
    /// Frequency of the `tone` target (Hz).
    pub tone_hz: u32,
}

impl Default for BuiltinConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5070),
            tone_hz: 1000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Calls at once across the relay.
    pub max_calls: usize,
    /// Client connections at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Client connections at once in all.
    pub max_connections: usize,
    /// Calls at once per user.
    pub max_calls_per_user: usize,
    /// Seconds calls may take to finish on shutdown before they are hung up.
    pub drain_timeout_secs: u64,
    /// Kernel send buffer of each accepted client socket (SO_SNDBUF, bytes; 0 = system
    /// default). Small, so a stalled client link is felt within a second of audio instead of
    /// megabytes hiding a backlog past `rtp.max_delay_ms`.
    pub client_send_buffer_bytes: usize,
    /// Seconds after which a client connection from which nothing at all arrived is declared
    /// dead, closed and its calls hung up (at least 2). RTMP and WebSocket ping every third of
    /// it; TCP keepalive and `TCP_USER_TIMEOUT` on every client socket are derived from it.
    pub dead_peer_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_calls: 500,
            max_connections_per_ip: 20,
            max_connections: 2000,
            max_calls_per_user: 4,
            drain_timeout_secs: 0,
            client_send_buffer_bytes: 4096,
            dead_peer_secs: 15,
        }
    }
}

/// The server certificate used by every TLS listener (RTMPS, HTTPS/WSS, the shared port).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the certificate chain (leaf first). Reloaded on SIGHUP.
    pub cert_file: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1). Reloaded on SIGHUP.
    pub key_file: String,
}

/// One port for every client transport: TLS, RTMP and HTTP/WebSocket told apart by their
/// first bytes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharedConfig {
    /// Listen address of the shared port (e.g. `0.0.0.0:443`); empty disables it.
    pub listen: String,
    /// Seconds a new connection has to send its first bytes (and to finish a TLS handshake).
    pub classify_timeout_secs: u64,
}

impl Default for SharedConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            classify_timeout_secs: 5,
        }
    }
}

/// A user who may place calls.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// SHA-256 of the user's token, lowercase hex (`skybridge hash-token TOKEN` prints it).
    pub token_sha256: String,
    /// Dial-plan names this user may dial.
    #[serde(default)]
    pub targets: Vec<String>,
    /// SIP identity and digest credentials used on this user's calls.
    #[serde(default)]
    pub sip_username: Option<String>,
    #[serde(default)]
    pub sip_password: Option<String>,
    /// Realm the credentials belong to; challenges naming another realm are not answered.
    #[serde(default)]
    pub sip_realm: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A configuration problem: the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("`{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

impl Config {
    /// The SIP leg's codec preference (`rtp.codecs`), validated.
    pub fn rtp_codecs(&self) -> Vec<crate::media::Codec> {
        self.rtp
            .codecs
            .iter()
            .filter_map(|n| crate::media::Codec::from_config_name(n))
            .collect()
    }

    fn validate_codecs(&self) -> Result<(), ConfigError> {
        const KEY: &str = "rtp.codecs";
        if self.rtp.codecs.is_empty() || self.rtp.codecs.len() > 16 {
            return Err(invalid(KEY, "must list 1 to 16 codecs"));
        }
        let mut seen = Vec::new();
        for name in &self.rtp.codecs {
            let Some(codec) = crate::media::Codec::from_config_name(name) else {
                return Err(invalid(
                    KEY,
                    format!("unknown codec `{name}` (pcmu, pcma, g722, l16, l16/16000, l16/44100, l16/48000)"),
                ));
            };
            if !codec.transcodable() {
                return Err(invalid(KEY, format!("codec `{name}` is not supported yet")));
            }
            if seen.contains(&codec) {
                return Err(invalid(KEY, format!("`{name}` is listed twice")));
            }
            seen.push(codec);
        }
        Ok(())
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml(&text)
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks cross-field rules; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rtmp_listen = self.rtmp_listen()?;
        let http_listen = self.http_listen()?;
        let web_listen = self.web_listen()?;
        let tunnel_listen = self.tunnel_listen()?;
        if self.tunnel.bind_window_secs == 0 || self.tunnel.bind_window_secs > 300 {
            return Err(invalid("tunnel.bind_window_secs", "must be 1..=300"));
        }
        if self.tunnel.read_timeout_secs == 0 {
            return Err(invalid("tunnel.read_timeout_secs", "must be at least 1"));
        }
        if self.limits.dead_peer_secs < 2 {
            return Err(invalid("limits.dead_peer_secs", "must be at least 2"));
        }
        if self.tunnel.idle_timeout_secs.is_some_and(|s| s < 2) {
            return Err(invalid("tunnel.idle_timeout_secs", "must be at least 2"));
        }
        if self.rtmp.idle_timeout_secs.is_some_and(|s| s < 2) {
            return Err(invalid("rtmp.idle_timeout_secs", "must be at least 2"));
        }
        if self.tunnel.max_frame_bytes < 12 {
            return Err(invalid(
                "tunnel.max_frame_bytes",
                "must be at least 12 (an RTP header)",
            ));
        }
        let rtmp_tls_listen = self.rtmp_tls_listen()?;
        let web_tls_listen = self.web_tls_listen()?;
        let shared_listen = self.shared_listen()?;
        let needs_cert = [
            ("rtmp.tls_listen", rtmp_tls_listen),
            ("web.tls_listen", web_tls_listen),
        ];
        for (key, addr) in needs_cert {
            if addr.is_some() && !self.tls_configured() {
                return Err(invalid(
                    key,
                    "a TLS listener needs tls.cert_file and tls.key_file",
                ));
            }
        }
        if self.tls.cert_file.is_empty() != self.tls.key_file.is_empty() {
            let key = if self.tls.cert_file.is_empty() {
                "tls.cert_file"
            } else {
                "tls.key_file"
            };
            return Err(invalid(
                key,
                "set both tls.cert_file and tls.key_file, or neither",
            ));
        }
        if shared_listen.is_some() && self.shared.classify_timeout_secs == 0 {
            return Err(invalid(
                "shared.classify_timeout_secs",
                "must be at least 1",
            ));
        }
        if self.rtp.port_min % 2 != 0 {
            return Err(invalid("rtp.port_min", "must be even (RTCP uses port + 1)"));
        }
        if self.rtp.port_max <= self.rtp.port_min {
            return Err(invalid("rtp.port_max", "must be greater than rtp.port_min"));
        }
        if self.rtp.ptime_ms == 0 || self.rtp.ptime_ms > 120 || self.rtp.ptime_ms % 10 != 0 {
            return Err(invalid("rtp.ptime_ms", "must be 10, 20, … 120"));
        }
        if self.rtp.dscp > 63 {
            return Err(invalid("rtp.dscp", "must be 0..=63"));
        }
        if self.rtp.telephone_event_pt < 96 || self.rtp.telephone_event_pt > 127 {
            return Err(invalid(
                "rtp.telephone_event_pt",
                "must be a dynamic payload type 96..=127",
            ));
        }
        self.validate_codecs()?;
        if self.sip.t1_ms == 0 || self.sip.t2_ms < self.sip.t1_ms {
            return Err(invalid("sip.t2_ms", "need 0 < t1_ms <= t2_ms"));
        }
        if self.builtin.enabled && !self.builtin.listen.ip().is_loopback() {
            return Err(invalid(
                "builtin.listen",
                "the built-in targets listen on loopback only",
            ));
        }
        if self.builtin.enabled && self.builtin.listen == self.sip.listen {
            return Err(invalid("builtin.listen", "must differ from sip.listen"));
        }
        if self.limits.max_calls == 0 {
            return Err(invalid("limits.max_calls", "must be at least 1"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, user) in self.users.iter().enumerate() {
            let key = format!("users[{i}]");
            if user.name.is_empty() {
                return Err(invalid(format!("{key}.name"), "must not be empty"));
            }
            if !names.insert(user.name.as_str()) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("duplicate user `{}`", user.name),
                ));
            }
            if user.token_sha256.len() != 64
                || !user.token_sha256.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(invalid(
                    format!("{key}.token_sha256"),
                    "must be 64 hex digits (run `skybridge hash-token TOKEN`)",
                ));
            }
            for target in &user.targets {
                if !self.target_exists(target) {
                    return Err(invalid(
                        format!("{key}.targets"),
                        format!("`{target}` is neither in [dialplan] nor a built-in target"),
                    ));
                }
            }
            if user.sip_password.is_some() && user.sip_username.is_none() {
                return Err(invalid(
                    format!("{key}.sip_username"),
                    "required when sip_password is set",
                ));
            }
        }
        for (name, uri) in &self.dialplan {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
            {
                return Err(invalid(
                    format!("dialplan.{name}"),
                    "names are letters, digits and - _ . +",
                ));
            }
            if !(uri.starts_with("sip:") || uri.starts_with("sips:")) {
                return Err(invalid(format!("dialplan.{name}"), "must be a sip: URI"));
            }
            if self.sip.upstream.is_none() && uri_host_port(uri).is_none() {
                return Err(invalid(
                    format!("dialplan.{name}"),
                    "without sip.upstream the URI must name an IP address (and port)",
                ));
            }
        }
        for target in &self.auth.anonymous_targets {
            if !self.target_exists(target) {
                return Err(invalid(
                    "auth.anonymous_targets",
                    format!("`{target}` is neither in [dialplan] nor a built-in target"),
                ));
            }
        }
        if !self.auth.required {
            let open: Vec<&str> = [
                ("rtmp.listen", rtmp_listen),
                ("web.listen", web_listen),
                ("tunnel.listen", tunnel_listen),
                ("http.listen", http_listen),
                ("rtmp.tls_listen", rtmp_tls_listen),
                ("web.tls_listen", web_tls_listen),
                ("shared.listen", shared_listen),
            ]
            .iter()
            .filter_map(|(k, a)| a.filter(|a| !a.ip().is_loopback()).map(|_| *k))
            .collect();
            if let Some(key) = open.first() {
                return Err(invalid(
                    *key,
                    "a non-loopback listener needs client authentication: set auth.required = true and configure [[users]]",
                ));
            }
            if !self.sip.listen.ip().is_loopback() && !self.auth.anonymous_targets.is_empty() {
                // SIP itself is not a client listener, but anonymous dialling out of a public
                // address is still an open relay.
                return Err(invalid(
                    "sip.listen",
                    "a non-loopback SIP address with anonymous dialling is an open relay: set auth.required = true",
                ));
            }
        }
        Ok(())
    }

    /// True if `name` can be dialled at all (dial plan or built-in).
    pub fn target_exists(&self, name: &str) -> bool {
        self.dialplan.contains_key(name)
            || (self.builtin.enabled && BUILTIN_TARGETS.contains(&name))
    }

    /// Parsed RTMP listen address (None = disabled).
    pub fn rtmp_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_listen("rtmp.listen", &self.rtmp.listen)
    }

    /// Parsed RFC 4571 tunnel listen address (None = disabled).
    pub fn tunnel_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_listen("tunnel.listen", &self.tunnel.listen)
    }

    /// Parsed softphone/WebSocket listen address (None = disabled).
    pub fn web_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_listen("web.listen", &self.web.listen)
    }

    /// Parsed RTMPS listen address (None = disabled).
    pub fn rtmp_tls_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_listen("rtmp.tls_listen", &self.rtmp.tls_listen)
    }

    /// Parsed HTTPS/WSS listen address (None = disabled).
    pub fn web_tls_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_listen("web.tls_listen", &self.web.tls_listen)
    }

    /// Parsed shared-port listen address (None = disabled).
    pub fn shared_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_listen("shared.listen", &self.shared.listen)
    }

    /// True when `[tls]` names a certificate and a key.
    pub fn tls_configured(&self) -> bool {
        !self.tls.cert_file.is_empty() && !self.tls.key_file.is_empty()
    }

    /// Parsed HTTP listen address (None = disabled).
    pub fn http_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_listen("http.listen", &self.http.listen)
    }

    pub fn sip_advertised(&self) -> SocketAddr {
        self.sip.advertised.unwrap_or(self.sip.listen)
    }

    pub fn rtp_advertised_ip(&self) -> IpAddr {
        self.rtp.advertised_ip.unwrap_or(self.rtp.bind_ip)
    }

    pub fn t1(&self) -> Duration {
        Duration::from_millis(self.sip.t1_ms)
    }

    /// Time without any input after which a client connection is dead (`limits.dead_peer_secs`).
    pub fn dead_peer(&self) -> Duration {
        Duration::from_secs(self.limits.dead_peer_secs.max(2))
    }

    /// [`Config::dead_peer`] for RTMP connections (`rtmp.idle_timeout_secs` overrides it).
    pub fn rtmp_dead_peer(&self) -> Duration {
        self.rtmp
            .idle_timeout_secs
            .map_or_else(|| self.dead_peer(), |s| Duration::from_secs(s.max(2)))
    }

    /// [`Config::dead_peer`] for RFC 4571 tunnels (`tunnel.idle_timeout_secs` overrides it).
    pub fn tunnel_dead_peer(&self) -> Duration {
        self.tunnel
            .idle_timeout_secs
            .map_or_else(|| self.dead_peer(), |s| Duration::from_secs(s.max(2)))
    }
}

/// Names the built-in SIP user agent answers.
pub const BUILTIN_TARGETS: [&str; 2] = ["echo", "tone"];

fn parse_listen(key: &str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| invalid(key, format!("`{value}` is not an ip:port address")))
}

/// `sip:user@1.2.3.4:5062;params` → 1.2.3.4:5062 (port 5060 when absent). None if the host is
/// not an IP literal.
pub fn uri_host_port(uri: &str) -> Option<SocketAddr> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let hostport = rest.rsplit('@').next()?;
    let hostport = hostport.split([';', '?']).next()?;
    if let Ok(addr) = hostport.parse::<SocketAddr>() {
        return Some(addr);
    }
    let host = hostport.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 5060))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn no_file_defaults_are_valid_and_loopback_only() {
        let c = Config::default();
        c.validate().expect("defaults validate");
        assert!(c.rtmp_listen().unwrap().unwrap().ip().is_loopback());
        assert!(c.http_listen().unwrap().unwrap().ip().is_loopback());
        assert!(c.sip.listen.ip().is_loopback());
        assert!(!c.auth.required);
        assert!(c.target_exists("echo") && c.target_exists("tone"));
    }

    #[test]
    fn dead_peer_defaults_to_15_s_and_per_transport_overrides_win() {
        let c = Config::default();
        assert_eq!(c.dead_peer(), Duration::from_secs(15));
        assert_eq!(c.rtmp_dead_peer(), Duration::from_secs(15));
        assert_eq!(c.tunnel_dead_peer(), Duration::from_secs(15));
        let c = Config::from_toml("[limits]\ndead_peer_secs = 4\n[rtmp]\nidle_timeout_secs = 30\n")
            .unwrap();
        assert_eq!(c.dead_peer(), Duration::from_secs(4));
        assert_eq!(c.rtmp_dead_peer(), Duration::from_secs(30));
        assert_eq!(c.tunnel_dead_peer(), Duration::from_secs(4));
    }

    #[test]
    fn dead_peer_below_2_s_is_refused() {
        for (text, key) in [
            ("[limits]\ndead_peer_secs = 1\n", "limits.dead_peer_secs"),
            (
                "[tunnel]\nidle_timeout_secs = 0\n",
                "tunnel.idle_timeout_secs",
            ),
            ("[rtmp]\nidle_timeout_secs = 1\n", "rtmp.idle_timeout_secs"),
        ] {
            let err = Config::from_toml(text).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = Config::from_toml("[rtmp]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[test]
    fn public_listener_without_auth_is_refused() {
        let err = Config::from_toml("[rtmp]\nlisten = \"0.0.0.0:1935\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("rtmp.listen") && text.contains("auth"),
            "{text}"
        );
    }

    #[test]
    fn tunnel_keys_are_checked_and_a_public_tunnel_needs_auth() {
        let c = Config::default();
        assert!(c.tunnel_listen().unwrap().unwrap().ip().is_loopback());
        let err = Config::from_toml("[tunnel]\nlisten = \"0.0.0.0:4571\"\n").unwrap_err();
        assert!(err.to_string().contains("tunnel.listen"), "{err}");
        let err = Config::from_toml("[tunnel]\nmax_frame_bytes = 11\n").unwrap_err();
        assert!(err.to_string().contains("tunnel.max_frame_bytes"), "{err}");
        let err = Config::from_toml("[tunnel]\nbind_window_secs = 0\n").unwrap_err();
        assert!(err.to_string().contains("tunnel.bind_window_secs"), "{err}");
        let off = Config::from_toml("[tunnel]\nlisten = \"\"\n").unwrap();
        assert_eq!(off.tunnel_listen().unwrap(), None);
    }

    #[test]
    fn public_listener_with_auth_is_accepted() {
        let text = format!(
            "[rtmp]\nlisten = \"0.0.0.0:1935\"\n[auth]\nrequired = true\nanonymous_targets = []\n\
             [dialplan]\nbob = \"sip:bob@127.0.0.1:5062\"\n\
             [[users]]\nname = \"alice\"\ntoken_sha256 = \"{HASH}\"\ntargets = [\"bob\"]\n"
        );
        let c = Config::from_toml(&text).expect("valid");
        assert_eq!(c.users[0].targets, vec!["bob".to_string()]);
    }

    #[test]
    fn public_shared_or_tls_listener_without_auth_is_refused() {
        let tls = "[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n";
        for (section, key) in [
            ("shared", "listen"),
            ("rtmp", "tls_listen"),
            ("web", "tls_listen"),
        ] {
            let text = format!("{tls}[{section}]\n{key} = \"0.0.0.0:443\"\n");
            let err = Config::from_toml(&text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{section}.{key}")) && err.contains("auth"),
                "{err}"
            );
            let local = format!("{tls}[{section}]\n{key} = \"127.0.0.1:4443\"\n");
            Config::from_toml(&local).expect("loopback is fine");
        }
    }

    #[test]
    fn tls_listener_without_certificate_is_named() {
        let err = Config::from_toml("[rtmp]\ntls_listen = \"127.0.0.1:1936\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rtmp.tls_listen") && err.contains("tls.cert_file"),
            "{err}"
        );
        let err = Config::from_toml("[tls]\ncert_file = \"c.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.key_file"), "{err}");
        // The shared port works without TLS (plain RTMP and HTTP only).
        Config::from_toml("[shared]\nlisten = \"127.0.0.1:4443\"\n").expect("valid");
    }

    #[test]
    fn user_target_missing_from_dialplan_is_named() {
        let text =
            format!("[[users]]\nname = \"a\"\ntoken_sha256 = \"{HASH}\"\ntargets = [\"carol\"]\n");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(
            err.contains("users[0].targets") && err.contains("carol"),
            "{err}"
        );
    }

    #[test]
    fn rtp_codecs_are_validated_by_name_support_and_uniqueness() {
        use crate::media::Codec;
        let ok =
            Config::from_toml("[rtp]\ncodecs = [\"g722\", \"L16/16000\", \"pcmu\"]\n").unwrap();
        assert_eq!(
            ok.rtp_codecs(),
            vec![Codec::G722, Codec::L16 { rate: 16000 }, Codec::Pcmu]
        );
        for (list, why) in [
            ("[]", "1 to 16"),
            ("[\"gsm\"]", "unknown codec `gsm`"),
            ("[\"speex\"]", "not supported yet"),
            ("[\"pcmu\", \"PCMU\"]", "listed twice"),
        ] {
            let err = Config::from_toml(&format!("[rtp]\ncodecs = {list}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("rtp.codecs") && err.contains(why),
                "{list}: {err}"
            );
        }
    }

    #[test]
    fn bad_token_hash_is_named() {
        let err = Config::from_toml("[[users]]\nname = \"a\"\ntoken_sha256 = \"abc\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("users[0].token_sha256"), "{err}");
    }

    #[test]
    fn odd_rtp_port_is_refused() {
        let err = Config::from_toml("[rtp]\nport_min = 20001\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rtp.port_min"), "{err}");
    }

    #[test]
    fn uri_host_port_parses_ip_literals() {
        assert_eq!(
            uri_host_port("sip:bob@127.0.0.1:5062"),
            Some("127.0.0.1:5062".parse().unwrap())
        );
        assert_eq!(
            uri_host_port("sip:127.0.0.1;transport=udp"),
            Some("127.0.0.1:5060".parse().unwrap())
        );
        assert_eq!(
            uri_host_port("sip:bob@[::1]:5070"),
            Some("[::1]:5070".parse().unwrap())
        );
        assert_eq!(uri_host_port("sip:bob@pbx.example"), None);
    }
}
