//! The SIP user agent core: UAC and UAS for calls over UDP, sans-IO.
//!
//! ```text
//!   datagrams in ──► handle_datagram(now, src, bytes) ─┐
//!   timers       ──► handle_timeout(now)               ├─► poll_transmit() ──► datagrams out
//!   call core    ──► invite / respond / hangup         │   poll_event()    ──► call core
//!                                                      └─► poll_timeout()  ──► next wake-up
//! ```
//!
//! Transactions follow RFC 3261 §17 (with RFC 6026 Accepted states), dialogs §12, digest
//! RFC 2617/7616/8760, symmetric response routing RFC 3581. Every call handle gets exactly one
//! terminal event ([`UaEvent::Failed`] or [`UaEvent::Ended`]).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use skybridge_codecs::sip::{
    header_name_eq, parse_challenge, reason_phrase, Message, MessageBuilder, Method, Via,
};

use super::dialog::{Dialog, DialogState, RequestTemplate, SDP};
use super::digest::{self, Algorithm, ChallengeParams, ClientNonce};
use super::timer::{TimerConfig, TimerQueue};
use super::transaction::{
    ClientTimeout, ClientTx, ClientVerdict, Kind, ServerState, ServerTimeout, ServerTx,
};

/// Methods we accept (Allow header).
pub(crate) const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY";

/// Digest re-sends allowed per request chain (new nonces each time would otherwise loop).
const MAX_AUTH_ATTEMPTS: u8 = 3;

/// Default cap on concurrent transactions and on concurrent dialogs.
pub const DEFAULT_MAX_TRANSACTIONS: usize = 10_000;

/// Default cap on registrations held at once.
pub const DEFAULT_MAX_REGISTRATIONS: usize = 10_000;

/// Time the call core has to answer an incoming re-INVITE ([`UaEvent::Reinvite`]) before the
/// user agent answers 200 with the current SDP itself.
pub const REINVITE_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Re-sends of a re-INVITE after 491 Request Pending (§14.1) before giving up.
const MAX_GLARE_RETRIES: u8 = 3;

/// Content type of DTMF in INFO (the de-facto `application/dtmf-relay` form).
const DTMF_RELAY: &str = "application/dtmf-relay";

/// Longest DTMF duration we write or accept, in milliseconds.
const MAX_DTMF_DURATION_MS: u32 = 10_000;

/// User agent configuration.
#[derive(Clone, Debug)]
pub struct UaConfig {
    /// Local bind address of the SIP socket.
    pub local: SocketAddr,
    /// Address written in Via and Contact (public address behind NAT).
    pub advertised: SocketAddr,
    /// User-Agent / Server header value (empty: none).
    pub user_agent: String,
    /// Peers (any port) allowed to send us SIP; with `allowed_peer_addrs` both empty, anyone.
    pub allowed_peers: Vec<IpAddr>,
    /// Peers allowed by exact address and port.
    pub allowed_peer_addrs: Vec<SocketAddr>,
    /// RTT estimate T1 (default 500 ms).
    pub t1: Duration,
    /// Retransmit cap T2 (default 4 s).
    pub t2: Duration,
    /// Network lifetime T4 (default 5 s).
    pub t4: Duration,
    /// Cap on live transactions (client + server); beyond it new requests get 503.
    pub max_transactions: usize,
    /// Cap on live dialogs/calls; beyond it new INVITEs get 503.
    pub max_dialogs: usize,
    /// Cap on registrations held at once; beyond it [`UserAgent::register`] fails with 503.
    pub max_registrations: usize,
}

impl UaConfig {
    /// Defaults for everything but the addresses.
    pub fn new(local: SocketAddr, advertised: SocketAddr) -> Self {
        let t = TimerConfig::default();
        Self {
            local,
            advertised,
            user_agent: "skybridge".into(),
            allowed_peers: Vec::new(),
            allowed_peer_addrs: Vec::new(),
            t1: t.t1,
            t2: t.t2,
            t4: t.t4,
            max_transactions: DEFAULT_MAX_TRANSACTIONS,
            max_dialogs: DEFAULT_MAX_TRANSACTIONS,
            max_registrations: DEFAULT_MAX_REGISTRATIONS,
        }
    }

    fn timers(&self) -> TimerConfig {
        TimerConfig {
            t1: self.t1,
            t2: self.t2,
            t4: self.t4,
        }
    }

    fn allows(&self, source: SocketAddr) -> bool {
        (self.allowed_peers.is_empty() && self.allowed_peer_addrs.is_empty())
            || self.allowed_peers.contains(&source.ip())
            || self.allowed_peer_addrs.contains(&source)
    }
}

/// Identifies one call (one INVITE dialog) for the call core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(pub u64);

/// Identifies one registration (RFC 3261 §10) kept by the user agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegHandle(pub u64);

/// A binding to register and keep refreshed (RFC 3261 §10.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// Where REGISTER requests go (the registrar or outbound proxy).
    pub registrar: SocketAddr,
    /// Address of record, `sip:alice@domain`: From and To; the Request-URI is its domain part.
    pub aor: String,
    /// User part of our Contact, `sip:contact_user@advertised` (calls to it are ours).
    pub contact_user: String,
    /// Requested expiry in seconds (0 is taken as 3600).
    pub expires: u32,
    /// Credentials for 401/407 challenges (realm rules as for calls).
    pub credentials: Option<Credentials>,
}

/// Digest credentials for our requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
    /// Realm the credentials belong to; when set, challenges naming another realm are refused.
    pub realm: Option<String>,
}

/// A call to place.
#[derive(Clone, Debug)]
pub struct OutgoingCall {
    /// Request-URI.
    pub request_uri: String,
    /// From URI.
    pub from_uri: String,
    /// From display name.
    pub from_display: Option<String>,
    /// To URI.
    pub to_uri: String,
    /// Where to send the INVITE and every later request of this call (proxy / PBX).
    pub next_hop: SocketAddr,
    /// SDP offer.
    pub sdp: Vec<u8>,
    /// Credentials for 401/407 challenges.
    pub credentials: Option<Credentials>,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub destination: SocketAddr,
    /// Datagram.
    pub payload: Vec<u8>,
}

/// What the user agent reports to the call core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UaEvent {
    /// A new INVITE (100 Trying already sent). Answer with [`UserAgent::respond`].
    IncomingCall {
        /// Handle for this call.
        call: CallHandle,
        /// From header value.
        from: String,
        /// To header value.
        to: String,
        /// Request-URI.
        request_uri: String,
        /// SDP offer (may be empty).
        sdp: Vec<u8>,
        /// Source address of the INVITE.
        source: SocketAddr,
    },
    /// UAC: 101-199 received (`sdp` = early media).
    Progress {
        /// Call.
        call: CallHandle,
        /// Status code.
        code: u16,
        /// SDP in the provisional, if any.
        sdp: Option<Vec<u8>>,
    },
    /// UAC: 2xx received; the ACK is already queued.
    Answered {
        /// Call.
        call: CallHandle,
        /// SDP answer.
        sdp: Vec<u8>,
    },
    /// UAS: ACK for our 2xx received.
    Confirmed {
        /// Call.
        call: CallHandle,
    },
    /// Terminal: the call failed before being established (final non-2xx after auth
    /// handling; timeouts are 408; refused challenges keep 401/407; local limits 503).
    Failed {
        /// Call.
        call: CallHandle,
        /// Status code.
        code: u16,
        /// Reason phrase or local explanation.
        reason: String,
    },
    /// Terminal: the call ended (BYE/CANCEL from the remote, or our hangup completed).
    Ended {
        /// Call.
        call: CallHandle,
        /// Whether the remote side ended it.
        by_remote: bool,
    },
    /// A registration was accepted (first time or refresh); the next refresh is scheduled.
    Registered {
        /// Registration.
        reg: RegHandle,
        /// Expiry granted by the registrar, in seconds.
        expires: u32,
    },
    /// A REGISTER failed (final non-2xx after auth handling; timeouts are 408; local limits
    /// 503; a bad AoR or contact user 400). Unless the handle is unknown afterwards (400/503
    /// from [`UserAgent::register`]), it is retried with back-off.
    RegistrationFailed {
        /// Registration.
        reg: RegHandle,
        /// Status code.
        code: u16,
        /// Reason phrase or local explanation.
        reason: String,
    },
    /// Terminal for a registration: the un-REGISTER finished (or timed out); the handle is
    /// forgotten.
    Unregistered {
        /// Registration.
        reg: RegHandle,
    },
    /// The remote sent a re-INVITE (`sdp` is its offer, maybe empty). Answer with
    /// [`UserAgent::respond_reinvite`] within [`REINVITE_ANSWER_TIMEOUT`], or the user agent
    /// answers 200 with the current SDP.
    Reinvite {
        /// Call.
        call: CallHandle,
        /// Offered SDP.
        sdp: Vec<u8>,
    },
    /// Our re-INVITE ([`UserAgent::reinvite`]) got a 2xx (ACK already queued); `sdp` is the answer.
    ReinviteAnswered {
        /// Call.
        call: CallHandle,
        /// SDP answer.
        sdp: Vec<u8>,
    },
    /// Our re-INVITE failed; the call goes on with the previous SDP. 491 also when one was
    /// already pending or glare retries ran out; 408 on timeout.
    ReinviteFailed {
        /// Call.
        call: CallHandle,
        /// Status code.
        code: u16,
    },
    /// A DTMF digit arrived in an INFO (`application/dtmf-relay`).
    Dtmf {
        /// Call.
        call: CallHandle,
        /// `0`-`9`, `*`, `#`, `A`-`D`.
        digit: char,
    },
    /// A response arrived (metrics).
    ResponseReceived {
        /// Status code.
        code: u16,
    },
    /// A response was sent the first time (metrics).
    ResponseSent {
        /// Status code.
        code: u16,
    },
    /// A datagram was dropped (source not allowed, malformed, unmatched).
    Dropped {
        /// Source.
        source: SocketAddr,
        /// Why.
        reason: &'static str,
    },
}

/// What a client transaction is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Invite,
    Cancel,
    Bye,
    Register,
    Reinvite,
    Info,
}

#[derive(Debug)]
struct ClientEntry {
    tx: ClientTx,
    key: (String, &'static str),
    call: Option<CallHandle>,
    reg: Option<RegHandle>,
    purpose: Purpose,
    /// For digest re-sends, the non-2xx ACK and CANCEL.
    template: RequestTemplate,
    via: String,
    cseq: u32,
    auth_attempts: u8,
    last_nonce: Option<String>,
    /// Re-INVITE: the ACK for its 2xx, re-sent when the 2xx is retransmitted.
    ack: Option<Vec<u8>>,
    scheduled: Option<Instant>,
}

#[derive(Debug)]
struct ServerEntry {
    tx: ServerTx,
    key: (String, String),
    call: Option<CallHandle>,
    /// An in-dialog re-INVITE of this call (CANCEL gets it a 487, not the call an end).
    reinvite: Option<CallHandle>,
    scheduled: Option<Instant>,
}

/// Fields of a request echoed in our responses (§8.2.6.2).
#[derive(Clone, Debug)]
struct Echo {
    vias: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: String,
    record_routes: Vec<String>,
    has_to_tag: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Uac,
    Uas,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallState {
    /// UAC: INVITE sent, no provisional beyond 100. UAS: INVITE received, no final yet.
    Calling,
    /// UAC: 101-199 received. UAS: provisional sent.
    Early,
    /// UAS: 2xx sent, waiting for ACK.
    AwaitingAck,
    Confirmed,
    /// BYE sent (or CANCEL sent and waiting for the INVITE to finish).
    Terminating,
}

#[derive(Debug)]
struct Retrans2xx {
    bytes: Vec<u8>,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

/// Our re-INVITE: in flight (`tx`) or waiting to be re-sent after a 491 (`retry_at`).
#[derive(Debug)]
struct OutReinvite {
    tx: Option<u64>,
    sdp: Vec<u8>,
    retry_at: Option<Instant>,
    glare_retries: u8,
}

/// The remote's re-INVITE, waiting for the call core's answer until `deadline`.
#[derive(Debug)]
struct InReinvite {
    tx: u64,
    echo: Echo,
    deadline: Instant,
}

#[derive(Debug)]
struct Call {
    role: Role,
    state: CallState,
    dialog: Dialog,
    local_sdp: Vec<u8>,
    reported: bool,
    hangup: bool,
    credentials: Option<Credentials>,
    // UAC
    invite_tx: Option<u64>,
    invite_cseq: u32,
    invite_via: String,
    invite_template: Option<RequestTemplate>,
    cancel_pending: bool,
    cancel_sent: bool,
    ack_2xx: Option<Vec<u8>>,
    /// After a hangup: stop waiting for the INVITE to finish at this time.
    teardown_deadline: Option<Instant>,
    // UAS
    server_tx: Option<u64>,
    echo: Option<Echo>,
    retrans: Option<Retrans2xx>,
    reinvite_out: Option<OutReinvite>,
    reinvite_in: Option<InReinvite>,
    scheduled: Option<Instant>,
}

impl Call {
    fn new(role: Role, dialog: Dialog, local_sdp: Vec<u8>, invite_cseq: u32) -> Self {
        Self {
            role,
            state: CallState::Calling,
            dialog,
            local_sdp,
            reported: false,
            hangup: false,
            credentials: None,
            invite_tx: None,
            invite_cseq,
            invite_via: String::new(),
            invite_template: None,
            cancel_pending: false,
            cancel_sent: false,
            ack_2xx: None,
            teardown_deadline: None,
            server_tx: None,
            echo: None,
            retrans: None,
            reinvite_out: None,
            reinvite_in: None,
            scheduled: None,
        }
    }

    fn next_timeout(&self) -> Option<Instant> {
        [
            self.retrans.as_ref().map(|r| r.next.min(r.give_up)),
            self.teardown_deadline,
            self.reinvite_out.as_ref().and_then(|o| o.retry_at),
            self.reinvite_in.as_ref().map(|i| i.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether a re-INVITE may start now (ours or the remote's): confirmed, not ending, no 2xx
    /// waiting for its ACK and no re-INVITE in progress either way.
    fn reinvite_allowed(&self) -> bool {
        self.state == CallState::Confirmed
            && !self.hangup
            && self.retrans.is_none()
            && self.reinvite_in.is_none()
            && self.reinvite_out.as_ref().is_none_or(|o| o.tx.is_none())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Client(u64),
    Server(u64),
    Call(u64),
    Reg(u64),
}

/// The SIP user agent. See the module documentation.
#[derive(Debug)]
pub struct UserAgent {
    config: UaConfig,
    timers_cfg: TimerConfig,
    rng: StdRng,
    next_id: u64,
    clients: HashMap<u64, ClientEntry>,
    client_index: HashMap<(String, &'static str), u64>,
    servers: HashMap<u64, ServerEntry>,
    server_index: HashMap<(String, String), u64>,
    calls: HashMap<CallHandle, Call>,
    dialogs: HashMap<(String, String), CallHandle>,
    regs: HashMap<RegHandle, register::Reg>,
    timers: TimerQueue<TimerKey>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<UaEvent>,
}

/// Borrowed view of the request fields the UA needs, checked once.
struct Req<'m> {
    msg: &'m Message<'m>,
    method: Method<'m>,
    branch: &'m str,
    call_id: &'m str,
    cseq: u32,
    from_tag: Option<&'m str>,
    to_tag: Option<&'m str>,
}

fn method_key(method: Method<'_>) -> String {
    match method {
        Method::Ack => "INVITE".to_owned(),
        m => m.as_str().to_owned(),
    }
}

impl UserAgent {
    /// Creates a user agent; `seed` drives tags, branches, Call-IDs and cnonces.
    pub fn new(config: UaConfig, seed: u64) -> Self {
        let timers_cfg = config.timers();
        Self {
            config,
            timers_cfg,
            rng: StdRng::seed_from_u64(seed),
            next_id: 1,
            clients: HashMap::new(),
            client_index: HashMap::new(),
            servers: HashMap::new(),
            server_index: HashMap::new(),
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            regs: HashMap::new(),
            timers: TimerQueue::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Calls holding dialog state (including ones still tearing down).
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Live transactions (client + server).
    pub fn transaction_count(&self) -> usize {
        self.clients.len() + self.servers.len()
    }

    /// Earliest time [`UserAgent::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the call core.
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    // ---------------------------------------------------------------- helpers

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn hex(&mut self) -> String {
        format!("{:016x}", self.rng.random::<u64>())
    }

    fn branch(&mut self) -> String {
        format!("z9hG4bK{}", self.hex())
    }

    fn our_via(&self, branch: &str) -> String {
        format!(
            "SIP/2.0/UDP {};branch={branch};rport",
            self.config.advertised
        )
    }

    fn contact(&self) -> String {
        format!("<sip:{}>", self.config.advertised)
    }

    fn send(&mut self, destination: SocketAddr, payload: Vec<u8>) {
        self.transmits.push_back(Transmit {
            destination,
            payload,
        });
    }

    fn event(&mut self, e: UaEvent) {
        self.events.push_back(e);
    }

    fn at_tx_cap(&self) -> bool {
        self.transaction_count() >= self.config.max_transactions
    }

    /// Reports the call's terminal event once.
    fn report(&mut self, handle: CallHandle, e: UaEvent) {
        if let Some(call) = self.calls.get_mut(&handle) {
            if call.reported {
                return;
            }
            call.reported = true;
        }
        self.event(e);
    }

    fn remove_call(&mut self, now: Instant, handle: CallHandle) {
        self.abort_reinvite_in(now, handle);
        if let Some(call) = self.calls.remove(&handle) {
            self.dialogs
                .remove(&(call.dialog.call_id.clone(), call.dialog.local_tag.clone()));
            self.timers
                .reschedule(TimerKey::Call(handle.0), call.scheduled, None);
        }
    }

    /// The remote's re-INVITE still waiting for an answer gets 487 (the dialog is ending).
    fn abort_reinvite_in(&mut self, now: Instant, handle: CallHandle) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let Some(pending) = call.reinvite_in.take() else {
            return;
        };
        let tag = call.dialog.local_tag.clone();
        self.server_respond(now, pending.tx, &pending.echo, 487, Some(&tag), &[]);
        self.resched_server(pending.tx);
        self.resched_call(handle);
    }

    fn resched_call(&mut self, handle: CallHandle) {
        if let Some(call) = self.calls.get_mut(&handle) {
            let new = call.next_timeout();
            self.timers
                .reschedule(TimerKey::Call(handle.0), call.scheduled, new);
            call.scheduled = new;
        }
    }

    fn resched_client(&mut self, id: u64) {
        let Some(e) = self.clients.get_mut(&id) else {
            return;
        };
        if e.tx.is_terminated() {
            let e = self.clients.remove(&id);
            if let Some(e) = e {
                self.timers
                    .reschedule(TimerKey::Client(id), e.scheduled, None);
                self.client_index.remove(&e.key);
            }
            return;
        }
        let new = e.tx.next_timeout();
        self.timers
            .reschedule(TimerKey::Client(id), e.scheduled, new);
        e.scheduled = new;
    }

    fn resched_server(&mut self, id: u64) {
        let Some(e) = self.servers.get_mut(&id) else {
            return;
        };
        if e.tx.is_terminated() {
            let e = self.servers.remove(&id);
            if let Some(e) = e {
                self.timers
                    .reschedule(TimerKey::Server(id), e.scheduled, None);
                self.server_index.remove(&e.key);
            }
            return;
        }
        let new = e.tx.next_timeout();
        self.timers
            .reschedule(TimerKey::Server(id), e.scheduled, new);
        e.scheduled = new;
    }

    /// Starts a client transaction for `template` and sends it.
    #[allow(clippy::too_many_arguments)]
    fn start_client(
        &mut self,
        now: Instant,
        call: Option<CallHandle>,
        purpose: Purpose,
        template: RequestTemplate,
        cseq: u32,
        via: Option<String>,
        auth: Option<(&str, &str)>,
        destination: SocketAddr,
    ) -> u64 {
        let via = match via {
            Some(v) => v,
            None => {
                let b = self.branch();
                self.our_via(&b)
            }
        };
        let branch = via
            .split(";branch=")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .unwrap_or_default()
            .to_owned();
        let bytes = template.render(&via, cseq, template.method, auth, &self.config.user_agent);
        let kind = if matches!(purpose, Purpose::Invite | Purpose::Reinvite) {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        let tx = ClientTx::new(now, kind, bytes.clone(), destination, self.timers_cfg);
        let id = self.id();
        let key = (branch, template.method);
        self.client_index.insert(key.clone(), id);
        self.clients.insert(
            id,
            ClientEntry {
                tx,
                key,
                call,
                reg: None,
                purpose,
                template,
                via: via.clone(),
                cseq,
                auth_attempts: 0,
                last_nonce: None,
                ack: None,
                scheduled: None,
            },
        );
        self.send(destination, bytes);
        self.resched_client(id);
        if purpose == Purpose::Invite {
            if let Some(c) = call.and_then(|h| self.calls.get_mut(&h)) {
                c.invite_tx = Some(id);
                c.invite_cseq = cseq;
                c.invite_via = via;
            }
        }
        id
    }

    // ---------------------------------------------------------------- UAC API

    /// Places a call: sends the INVITE to `call.next_hop`.
    pub fn invite(&mut self, now: Instant, call: OutgoingCall) -> CallHandle {
        let handle = CallHandle(self.id());
        if self.calls.len() >= self.config.max_dialogs || self.at_tx_cap() {
            self.event(UaEvent::Failed {
                call: handle,
                code: 503,
                reason: "local call limit reached".into(),
            });
            return handle;
        }
        let call_id = self.hex();
        let local_tag = self.hex();
        let display = call
            .from_display
            .as_deref()
            .map(|d| format!("\"{}\" ", d.replace(['"', '\\'], "")))
            .unwrap_or_default();
        let from = format!("{display}<{}>;tag={local_tag}", call.from_uri);
        let to = format!("<{}>", call.to_uri);
        let seq = self.rng.random_range(1..10_000u32);
        let dialog = Dialog::uac(
            call_id.clone(),
            local_tag.clone(),
            from.clone(),
            to.clone(),
            seq,
            call.request_uri.clone(),
            call.next_hop,
        );
        let template = RequestTemplate {
            method: "INVITE",
            uri: call.request_uri,
            from,
            to,
            call_id: call_id.clone(),
            routes: Vec::new(),
            contact: Some(self.contact()),
            extra: Vec::new(),
            content_type: SDP,
            body: call.sdp.clone(),
        };
        self.calls.insert(
            handle,
            Call {
                credentials: call.credentials,
                invite_template: Some(template.clone()),
                ..Call::new(Role::Uac, dialog, call.sdp, seq)
            },
        );
        self.dialogs.insert((call_id, local_tag), handle);
        self.start_client(
            now,
            Some(handle),
            Purpose::Invite,
            template,
            seq,
            None,
            None,
            call.next_hop,
        );
        handle
    }

    /// Ends a call in whatever state it is: UAC early → CANCEL (a 2xx racing it gets ACK +
    /// BYE); confirmed → BYE; UAS unanswered → 480; UAS answered but not ACKed → BYE after the
    /// ACK (or when the 2xx retransmissions give up).
    pub fn hangup(&mut self, now: Instant, handle: CallHandle) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if call.hangup {
            return;
        }
        call.hangup = true;
        match (call.role, call.state) {
            (Role::Uac, CallState::Calling) => {
                call.cancel_pending = true;
                call.teardown_deadline = Some(now + self.timers_cfg.t1x64());
                self.resched_call(handle);
            }
            (Role::Uac, CallState::Early) => {
                call.teardown_deadline = Some(now + self.timers_cfg.t1x64());
                self.send_cancel(now, handle);
                self.resched_call(handle);
            }
            (Role::Uas, CallState::Calling | CallState::Early) => {
                self.respond(now, handle, 480, None);
            }
            (Role::Uas, CallState::AwaitingAck) => {}
            (_, CallState::Confirmed) => self.send_bye(now, handle),
            (_, _) => {}
        }
    }

    fn send_cancel(&mut self, now: Instant, handle: CallHandle) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if call.cancel_sent {
            return;
        }
        call.cancel_sent = true;
        call.cancel_pending = false;
        call.state = CallState::Terminating;
        let Some(inv) = call.invite_template.clone() else {
            return;
        };
        let template = RequestTemplate {
            method: "CANCEL",
            contact: None,
            body: Vec::new(),
            ..inv
        };
        let (seq, via, peer) = (call.invite_cseq, call.invite_via.clone(), call.dialog.peer);
        if self.at_tx_cap() {
            return;
        }
        self.start_client(
            now,
            Some(handle),
            Purpose::Cancel,
            template,
            seq,
            Some(via),
            None,
            peer,
        );
    }

    fn send_bye(&mut self, now: Instant, handle: CallHandle) {
        self.abort_reinvite_in(now, handle);
        let contact = self.contact();
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        call.state = CallState::Terminating;
        call.hangup = true;
        call.retrans = None;
        let template = call.dialog.request("BYE", Some(contact));
        let seq = call.dialog.next_seq();
        let peer = call.dialog.peer;
        call.teardown_deadline = Some(now + self.timers_cfg.t1x64() + self.timers_cfg.t1);
        self.resched_call(handle);
        self.start_client(
            now,
            Some(handle),
            Purpose::Bye,
            template,
            seq,
            None,
            None,
            peer,
        );
    }

    // ---------------------------------------------------------------- UAS API

    /// Answers an incoming call: 180/183 (optionally with early-media SDP), 2xx with SDP
    /// (retransmitted until ACK), or 300-699 (ends the call).
    pub fn respond(&mut self, now: Instant, handle: CallHandle, code: u16, sdp: Option<Vec<u8>>) {
        let contact = self.contact();
        let server_name = self.config.user_agent.clone();
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if call.role != Role::Uas
            || !matches!(call.state, CallState::Calling | CallState::Early)
            || !(101..=699).contains(&code)
        {
            return;
        }
        let (Some(echo), Some(tx_id)) = (call.echo.clone(), call.server_tx) else {
            return;
        };
        if let Some(s) = &sdp {
            if (200..300).contains(&code) {
                call.local_sdp = s.clone();
            }
        }
        let tag = call.dialog.local_tag.clone();
        let with_contact = code < 300;
        let bytes = build_response(
            &echo,
            code,
            Some(&tag),
            with_contact.then_some(contact.as_str()),
            &server_name,
            &[],
            sdp.as_deref().unwrap_or_default(),
        );
        let Some(e) = self.servers.get_mut(&tx_id) else {
            return;
        };
        if !e.tx.send_response(now, code, bytes.clone()) {
            return;
        }
        let destination = e.tx.destination;
        self.send(destination, bytes.clone());
        self.event(UaEvent::ResponseSent { code });
        self.resched_server(tx_id);
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        match code {
            101..=199 => call.state = CallState::Early,
            200..=299 => {
                call.state = CallState::AwaitingAck;
                call.dialog.state = DialogState::Confirmed;
                call.retrans = Some(Retrans2xx {
                    bytes,
                    interval: self.timers_cfg.t1,
                    next: now + self.timers_cfg.t1,
                    give_up: now + self.timers_cfg.t1x64(),
                });
                self.resched_call(handle);
            }
            _ => {
                self.report(
                    handle,
                    UaEvent::Ended {
                        call: handle,
                        by_remote: false,
                    },
                );
                self.remove_call(now, handle);
            }
        }
    }

    // ---------------------------------------------------------------- mid-call

    /// Sends a re-INVITE with `sdp` (RFC 3261 §14.1), e.g. `a=sendonly` for hold and
    /// `a=sendrecv` to resume. Outcome: [`UaEvent::ReinviteAnswered`] (ACK sent, `sdp` becomes
    /// our current SDP) or [`UaEvent::ReinviteFailed`] (the call goes on unchanged). A 491 is
    /// retried after the §14.1 random delay. While another re-INVITE is in progress (either
    /// way) or the call is not confirmed, fails at once with 491. Unknown or ending calls:
    /// nothing happens.
    pub fn reinvite(&mut self, now: Instant, handle: CallHandle, sdp: Vec<u8>) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if call.hangup {
            return;
        }
        if !call.reinvite_allowed() || call.reinvite_out.is_some() {
            self.event(UaEvent::ReinviteFailed {
                call: handle,
                code: 491,
            });
            return;
        }
        call.reinvite_out = Some(OutReinvite {
            tx: None,
            sdp,
            retry_at: None,
            glare_retries: 0,
        });
        self.resend_reinvite(now, handle);
    }

    /// Sends (again) the pending re-INVITE of `handle` with a new CSeq, unless the call is
    /// ending; waits another round if a remote re-INVITE is being handled.
    fn resend_reinvite(&mut self, now: Instant, handle: CallHandle) {
        let contact = self.contact();
        let at_cap = self.at_tx_cap();
        let delay = self.glare_delay(handle);
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if call.hangup || call.state != CallState::Confirmed {
            call.reinvite_out = None;
            self.resched_call(handle);
            return;
        }
        if call.retrans.is_some() || call.reinvite_in.is_some() {
            if let Some(out) = &mut call.reinvite_out {
                out.retry_at = Some(now + delay);
            }
            self.resched_call(handle);
            return;
        }
        let Some(sdp) = call.reinvite_out.as_ref().map(|o| o.sdp.clone()) else {
            return;
        };
        if at_cap {
            call.reinvite_out = None;
            self.resched_call(handle);
            self.event(UaEvent::ReinviteFailed {
                call: handle,
                code: 503,
            });
            return;
        }
        let mut template = call.dialog.request("INVITE", Some(contact));
        template.body = sdp;
        let seq = call.dialog.next_seq();
        let peer = call.dialog.peer;
        let id = self.start_client(
            now,
            Some(handle),
            Purpose::Reinvite,
            template,
            seq,
            None,
            None,
            peer,
        );
        if let Some(out) = self
            .calls
            .get_mut(&handle)
            .and_then(|c| c.reinvite_out.as_mut())
        {
            out.tx = Some(id);
            out.retry_at = None;
        }
        self.resched_call(handle);
    }

    /// §14.1: the owner of the Call-ID (the dialog's UAC) waits 2.1-4 s, the other side 0-2 s,
    /// in units of 10 ms.
    fn glare_delay(&mut self, handle: CallHandle) -> Duration {
        let owner = self.calls.get(&handle).is_some_and(|c| c.role == Role::Uac);
        let units = if owner {
            self.rng.random_range(210..=400u64)
        } else {
            self.rng.random_range(0..=200u64)
        };
        Duration::from_millis(units * 10)
    }

    /// A response to one of our re-INVITEs.
    fn reinvite_response(
        &mut self,
        now: Instant,
        source: SocketAddr,
        tx: u64,
        handle: Option<CallHandle>,
        code: u16,
        msg: &Message<'_>,
    ) {
        if code < 200 {
            return;
        }
        if code >= 300 {
            self.ack_non_2xx(now, tx, msg);
        }
        let Some(handle) = handle.filter(|h| {
            self.calls
                .get(h)
                .and_then(|c| c.reinvite_out.as_ref())
                .is_some_and(|o| o.tx == Some(tx))
        }) else {
            return;
        };
        match code {
            200..=299 => {
                let contact = msg.contact().and_then(Result::ok).map(|c| c.uri.to_owned());
                let seq = self.clients.get(&tx).map(|e| e.cseq).unwrap_or_default();
                let branch = self.branch();
                let via = self.our_via(&branch);
                let ua = self.config.user_agent.clone();
                let Some(call) = self.calls.get_mut(&handle) else {
                    return;
                };
                if let Some(c) = contact {
                    call.dialog.remote_target = c;
                }
                let ack = call
                    .dialog
                    .request("ACK", None)
                    .render(&via, seq, "ACK", None, &ua);
                let peer = call.dialog.peer;
                if let Some(out) = call.reinvite_out.take() {
                    call.local_sdp = out.sdp;
                }
                let report = !call.hangup;
                self.send(peer, ack.clone());
                if let Some(e) = self.clients.get_mut(&tx) {
                    e.ack = Some(ack);
                }
                self.resched_call(handle);
                if report {
                    self.event(UaEvent::ReinviteAnswered {
                        call: handle,
                        sdp: msg.body.to_vec(),
                    });
                }
            }
            401 | 407 => {
                if self.try_auth(now, source, tx, code, msg).is_err() {
                    self.reinvite_failed(handle, tx, code);
                }
            }
            491 => {
                let delay = self.glare_delay(handle);
                let Some(out) = self
                    .calls
                    .get_mut(&handle)
                    .and_then(|c| c.reinvite_out.as_mut())
                else {
                    return;
                };
                if out.glare_retries >= MAX_GLARE_RETRIES {
                    self.reinvite_failed(handle, tx, code);
                    return;
                }
                out.glare_retries += 1;
                out.tx = None;
                out.retry_at = Some(now + delay);
                self.resched_call(handle);
            }
            _ => self.reinvite_failed(handle, tx, code),
        }
    }

    /// Our re-INVITE `tx` of `handle` ended without a 2xx: report it, keep the call.
    fn reinvite_failed(&mut self, handle: CallHandle, tx: u64, code: u16) {
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if call.reinvite_out.as_ref().is_none_or(|o| o.tx != Some(tx)) {
            return;
        }
        call.reinvite_out = None;
        let report = !call.hangup;
        self.resched_call(handle);
        if report {
            self.event(UaEvent::ReinviteFailed { call: handle, code });
        }
    }

    /// Answers the remote's re-INVITE announced by [`UaEvent::Reinvite`]: 2xx with `sdp` (our
    /// current SDP when `None`; the answer becomes our current SDP) or 300-699 (the session
    /// stays as it was; 488 for an offer we cannot take). Ignored when no re-INVITE is waiting
    /// (e.g. already auto-answered after [`REINVITE_ANSWER_TIMEOUT`]) or `code` is not final.
    pub fn respond_reinvite(
        &mut self,
        now: Instant,
        handle: CallHandle,
        code: u16,
        sdp: Option<Vec<u8>>,
    ) {
        if !(200..=699).contains(&code) {
            return;
        }
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let Some(pending) = call.reinvite_in.take() else {
            return;
        };
        let tag = call.dialog.local_tag.clone();
        if code >= 300 {
            self.server_respond(now, pending.tx, &pending.echo, code, Some(&tag), &[]);
            self.resched_server(pending.tx);
            self.resched_call(handle);
            return;
        }
        if let Some(sdp) = sdp {
            call.local_sdp = sdp;
        }
        let body = call.local_sdp.clone();
        self.server_respond(now, pending.tx, &pending.echo, code, Some(&tag), &body);
        self.resched_server(pending.tx);
        let bytes = self
            .servers
            .get(&pending.tx)
            .and_then(|e| e.tx.last_response());
        if let (Some(call), Some(bytes)) = (self.calls.get_mut(&handle), bytes) {
            call.retrans = Some(Retrans2xx {
                bytes,
                interval: self.timers_cfg.t1,
                next: now + self.timers_cfg.t1,
                give_up: now + self.timers_cfg.t1x64(),
            });
        }
        self.resched_call(handle);
    }

    /// Sends one DTMF digit (`0`-`9`, `*`, `#`, `A`-`D`, case-insensitive) in an in-dialog
    /// INFO with `application/dtmf-relay` (`Signal=5\r\nDuration=160\r\n`; the duration is
    /// capped at 10 s). Only on confirmed calls that are not ending; other digits, calls or a
    /// full transaction table: nothing is sent. No event reports the outcome.
    pub fn send_info_dtmf(
        &mut self,
        now: Instant,
        handle: CallHandle,
        digit: char,
        duration_ms: u32,
    ) {
        let Some(digit) = dtmf_digit(digit) else {
            return;
        };
        if self.at_tx_cap() {
            return;
        }
        let contact = self.contact();
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if call.state != CallState::Confirmed || call.hangup {
            return;
        }
        let mut template = call.dialog.request("INFO", Some(contact));
        template.content_type = DTMF_RELAY;
        template.body = format!(
            "Signal={digit}\r\nDuration={}\r\n",
            duration_ms.min(MAX_DTMF_DURATION_MS)
        )
        .into_bytes();
        let seq = call.dialog.next_seq();
        let peer = call.dialog.peer;
        self.start_client(
            now,
            Some(handle),
            Purpose::Info,
            template,
            seq,
            None,
            None,
            peer,
        );
    }

    // ---------------------------------------------------------------- timers

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(key) = self.timers.pop_expired(now) {
            match key {
                TimerKey::Client(id) => {
                    if let Some(e) = self.clients.get_mut(&id) {
                        e.scheduled = None;
                    }
                    self.client_timeout(now, id);
                    self.resched_client(id);
                }
                TimerKey::Server(id) => {
                    if let Some(e) = self.servers.get_mut(&id) {
                        e.scheduled = None;
                    }
                    self.server_timeout(now, id);
                    self.resched_server(id);
                }
                TimerKey::Call(h) => {
                    let handle = CallHandle(h);
                    if let Some(c) = self.calls.get_mut(&handle) {
                        c.scheduled = None;
                    }
                    self.call_timeout(now, handle);
                    self.resched_call(handle);
                }
                TimerKey::Reg(r) => {
                    let handle = RegHandle(r);
                    if let Some(reg) = self.regs.get_mut(&handle) {
                        reg.scheduled = None;
                    }
                    self.reg_timeout(now, handle);
                    self.resched_reg(handle);
                }
            }
        }
    }

    fn client_timeout(&mut self, now: Instant, id: u64) {
        let Some(e) = self.clients.get_mut(&id) else {
            return;
        };
        let outs = e.tx.on_timeout(now);
        let (dest, call, reg, purpose) = (e.tx.destination, e.call, e.reg, e.purpose);
        for out in outs {
            match out {
                ClientTimeout::Retransmit(bytes) => self.send(dest, bytes),
                ClientTimeout::TimedOut => {
                    if let Some(h) = call {
                        self.client_failed(now, h, purpose, id, 408, "Request Timeout");
                    }
                    if let Some(r) = reg {
                        self.register_failed(now, r, Some(id), 408, "Request Timeout");
                    }
                }
                ClientTimeout::Terminated => {}
            }
        }
    }

    /// A client transaction of `handle` ended without a usable final response.
    fn client_failed(
        &mut self,
        now: Instant,
        handle: CallHandle,
        purpose: Purpose,
        tx: u64,
        code: u16,
        reason: &str,
    ) {
        let Some(call) = self.calls.get(&handle) else {
            return;
        };
        match purpose {
            Purpose::Invite if call.invite_tx == Some(tx) => {
                let e = if call.hangup {
                    UaEvent::Ended {
                        call: handle,
                        by_remote: false,
                    }
                } else {
                    UaEvent::Failed {
                        call: handle,
                        code,
                        reason: reason.to_owned(),
                    }
                };
                self.report(handle, e);
                self.remove_call(now, handle);
            }
            Purpose::Bye => {
                self.report(
                    handle,
                    UaEvent::Ended {
                        call: handle,
                        by_remote: false,
                    },
                );
                self.remove_call(now, handle);
            }
            Purpose::Reinvite => self.reinvite_failed(handle, tx, code),
            _ => {}
        }
    }

    fn server_timeout(&mut self, now: Instant, id: u64) {
        let Some(e) = self.servers.get_mut(&id) else {
            return;
        };
        let outs = e.tx.on_timeout(now);
        let dest = e.tx.destination;
        for out in outs {
            match out {
                ServerTimeout::Retransmit(bytes) => self.send(dest, bytes),
                ServerTimeout::AckTimedOut | ServerTimeout::Terminated => {}
            }
        }
    }

    fn call_timeout(&mut self, now: Instant, handle: CallHandle) {
        let t2 = self.timers_cfg.t2;
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if call.reinvite_in.as_ref().is_some_and(|i| now >= i.deadline) {
            // The call core did not answer in time: keep the session as it is.
            self.respond_reinvite(now, handle, 200, None);
        }
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if let Some(out) = &mut call.reinvite_out {
            if out.retry_at.is_some_and(|at| now >= at) {
                out.retry_at = None;
                self.resend_reinvite(now, handle);
            }
        }
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if let Some(r) = &mut call.retrans {
            if now >= r.give_up {
                // §13.3.1.4: no ACK within 64*T1: confirm and end the dialog with BYE.
                call.retrans = None;
                if !call.hangup {
                    self.report(
                        handle,
                        UaEvent::Failed {
                            call: handle,
                            code: 408,
                            reason: "no ACK for 2xx".into(),
                        },
                    );
                }
                self.send_bye(now, handle);
                return;
            }
            if now >= r.next {
                r.interval = r.interval.saturating_mul(2).min(t2);
                r.next = now + r.interval;
                let (bytes, dest) = (r.bytes.clone(), call.dialog.peer);
                self.send(dest, bytes);
            }
        }
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if call.teardown_deadline.is_some_and(|d| now >= d) {
            call.teardown_deadline = None;
            if let Some(tx) = call.invite_tx.and_then(|id| self.clients.get_mut(&id)) {
                if !matches!(
                    tx.tx.state,
                    super::transaction::ClientState::Completed
                        | super::transaction::ClientState::Accepted
                ) {
                    tx.tx.terminate();
                }
            }
            if let Some(id) = self.calls.get(&handle).and_then(|c| c.invite_tx) {
                self.resched_client(id);
            }
            self.report(
                handle,
                UaEvent::Ended {
                    call: handle,
                    by_remote: false,
                },
            );
            self.remove_call(now, handle);
        }
    }

    // ---------------------------------------------------------------- input

    /// Feeds one received datagram.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        if !self.config.allows(source) {
            self.event(UaEvent::Dropped {
                source,
                reason: "peer not allowed",
            });
            return;
        }
        // RFC 5626 keep-alives.
        if data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            return;
        }
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(_) => {
                self.reject_malformed(now, source, data);
                return;
            }
        };
        if msg.is_request() {
            match checked_request(&msg) {
                Some(req) => self.handle_request(now, source, &req),
                None => self.reject_malformed(now, source, data),
            }
        } else {
            self.handle_response(now, source, &msg);
        }
    }

    /// 400 for a request with enough to answer (Via, Call-ID, CSeq), silence otherwise.
    fn reject_malformed(&mut self, _now: Instant, source: SocketAddr, data: &[u8]) {
        match salvage(data) {
            Some(echo) => {
                let bytes =
                    build_response(&echo, 400, None, None, &self.config.user_agent, &[], &[]);
                self.send(source, bytes);
                self.event(UaEvent::ResponseSent { code: 400 });
                self.event(UaEvent::Dropped {
                    source,
                    reason: "malformed request",
                });
            }
            None => self.event(UaEvent::Dropped {
                source,
                reason: "malformed",
            }),
        }
    }

    fn handle_response(&mut self, now: Instant, source: SocketAddr, msg: &Message<'_>) {
        let (Some(code), Ok(via), Ok(cseq)) = (msg.status(), msg.top_via(), msg.cseq()) else {
            self.event(UaEvent::Dropped {
                source,
                reason: "malformed response",
            });
            return;
        };
        let Some(branch) = via.branch() else {
            self.event(UaEvent::Dropped {
                source,
                reason: "response without branch",
            });
            return;
        };
        let method: &'static str = match cseq.method {
            Method::Invite => "INVITE",
            Method::Cancel => "CANCEL",
            Method::Bye => "BYE",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            _ => "",
        };
        let Some(&id) = self.client_index.get(&(branch.to_owned(), method)) else {
            self.event(UaEvent::Dropped {
                source,
                reason: "unmatched response",
            });
            return;
        };
        // A response must come from where the request went: anyone else who learnt the branch
        // (another host on an allowed IP, a neighbour port) could otherwise end or steer our
        // transactions. Such responses are dropped, not treated as final.
        if self
            .clients
            .get(&id)
            .is_some_and(|e| e.tx.destination != source)
        {
            self.event(UaEvent::Dropped {
                source,
                reason: "response from unexpected address",
            });
            return;
        }
        self.event(UaEvent::ResponseReceived { code });
        let Some(e) = self.clients.get_mut(&id) else {
            return;
        };
        let verdict = e.tx.on_response(now, code);
        let (call, reg, purpose) = (e.call, e.reg, e.purpose);
        match verdict {
            ClientVerdict::Ignore => {}
            ClientVerdict::ResendAck(ack) => {
                let dest = e.tx.destination;
                self.send(dest, ack);
            }
            ClientVerdict::Retransmitted2xx if purpose == Purpose::Reinvite => {
                if let Some(ack) = e.ack.clone() {
                    let dest = e.tx.destination;
                    self.send(dest, ack);
                }
            }
            ClientVerdict::Retransmitted2xx => {
                if let Some(c) = call.and_then(|h| self.calls.get(&h)) {
                    if let Some(ack) = c.ack_2xx.clone() {
                        let dest = c.dialog.peer;
                        self.send(dest, ack);
                    }
                }
            }
            ClientVerdict::Provisional | ClientVerdict::Final => match (call, purpose) {
                (Some(h), Purpose::Invite) => {
                    self.invite_response(now, source, id, h, code, msg);
                }
                (_, Purpose::Reinvite) => {
                    self.reinvite_response(now, source, id, call, code, msg);
                }
                (_, Purpose::Register) if code >= 200 => {
                    if let Some(r) = reg {
                        self.register_response(now, source, id, r, code, msg);
                    }
                }
                (Some(_), Purpose::Info) if code == 401 || code == 407 => {
                    // A refused challenge just drops the digit.
                    let _ = self.try_auth(now, source, id, code, msg);
                }
                (Some(h), Purpose::Bye) if code >= 200 => {
                    if (code == 401 || code == 407)
                        && self.try_auth(now, source, id, code, msg).is_ok()
                    {
                        self.resched_client(id);
                        return;
                    }
                    self.report(
                        h,
                        UaEvent::Ended {
                            call: h,
                            by_remote: false,
                        },
                    );
                    self.remove_call(now, h);
                }
                _ => {}
            },
        }
        self.resched_client(id);
    }

    fn invite_response(
        &mut self,
        now: Instant,
        source: SocketAddr,
        tx: u64,
        handle: CallHandle,
        code: u16,
        msg: &Message<'_>,
    ) {
        let to_tag = msg.to().ok().and_then(|t| t.tag().map(str::to_owned));
        let contact = msg.contact().and_then(Result::ok).map(|c| c.uri.to_owned());
        let rr: Vec<String> = msg
            .header_values("Record-Route")
            .map(str::to_owned)
            .collect();
        let body = msg.body.to_vec();
        let Some(call) = self.calls.get_mut(&handle) else {
            // Call already gone: a non-2xx still needs its ACK.
            if code >= 300 {
                self.ack_non_2xx(now, tx, msg);
            }
            return;
        };
        if call.invite_tx != Some(tx) {
            if code >= 300 {
                self.ack_non_2xx(now, tx, msg);
            }
            return;
        }
        if code < 200 && call.cancel_pending {
            // §9.1: CANCEL only once a provisional response arrived.
            self.send_cancel(now, handle);
            return;
        }
        match code {
            100 => {}
            101..=199 => {
                if let Some(tag) = &to_tag {
                    call.dialog.uac_update(tag, rr, contact.as_deref(), false);
                }
                if call.state == CallState::Calling {
                    call.state = CallState::Early;
                }
                if !call.hangup {
                    let sdp = (!body.is_empty()).then_some(body);
                    self.event(UaEvent::Progress {
                        call: handle,
                        code,
                        sdp,
                    });
                }
            }
            200..=299 => {
                let Some(tag) = to_tag else {
                    // A 2xx without To tag cannot form a dialog.
                    self.report(
                        handle,
                        UaEvent::Failed {
                            call: handle,
                            code: 502,
                            reason: "2xx without To tag".into(),
                        },
                    );
                    self.remove_call(now, handle);
                    return;
                };
                call.dialog.uac_update(&tag, rr, contact.as_deref(), true);
                call.teardown_deadline = None;
                let ack_tpl = call.dialog.request("ACK", None);
                let seq = call.invite_cseq;
                let peer = call.dialog.peer;
                let hangup = call.hangup;
                let branch = self.branch();
                let via = self.our_via(&branch);
                let ack = ack_tpl.render(&via, seq, "ACK", None, &self.config.user_agent);
                self.send(peer, ack.clone());
                let Some(call) = self.calls.get_mut(&handle) else {
                    return;
                };
                call.ack_2xx = Some(ack);
                call.state = CallState::Confirmed;
                if hangup {
                    self.send_bye(now, handle);
                } else {
                    self.event(UaEvent::Answered {
                        call: handle,
                        sdp: body,
                    });
                }
                self.resched_call(handle);
            }
            _ => {
                let hangup = call.hangup;
                self.ack_non_2xx(now, tx, msg);
                if (code == 401 || code == 407) && !hangup {
                    match self.try_auth(now, source, tx, code, msg) {
                        Ok(()) => return,
                        Err(reason) => {
                            self.report(
                                handle,
                                UaEvent::Failed {
                                    call: handle,
                                    code,
                                    reason: reason.into(),
                                },
                            );
                            self.remove_call(now, handle);
                            return;
                        }
                    }
                }
                let Some(call) = self.calls.get(&handle) else {
                    return;
                };
                let e = if call.hangup {
                    UaEvent::Ended {
                        call: handle,
                        by_remote: false,
                    }
                } else {
                    let reason = match msg.start {
                        skybridge_codecs::sip::StartLine::Response { reason, .. } => {
                            reason.to_owned()
                        }
                        _ => String::new(),
                    };
                    UaEvent::Failed {
                        call: handle,
                        code,
                        reason,
                    }
                };
                self.report(handle, e);
                self.remove_call(now, handle);
            }
        }
    }

    /// Builds and sends the ACK for a non-2xx final (§17.1.1.3): same branch, To from the
    /// response.
    fn ack_non_2xx(&mut self, now: Instant, tx: u64, msg: &Message<'_>) {
        let ua = self.config.user_agent.clone();
        let Some(e) = self.clients.get_mut(&tx) else {
            return;
        };
        let to = msg.header("To").unwrap_or_default().to_owned();
        let tpl = RequestTemplate {
            method: "ACK",
            contact: None,
            body: Vec::new(),
            to,
            ..e.template.clone()
        };
        let ack = tpl.render(&e.via, e.cseq, "ACK", None, &ua);
        e.tx.ack_non_2xx(now, ack.clone());
        let dest = e.tx.destination;
        self.send(dest, ack);
    }

    /// Answers a 401/407 to client transaction `tx` by re-sending its request with
    /// credentials, if allowed (HOSTILE-INPUTS row 13). Computes nothing when refused.
    fn try_auth(
        &mut self,
        now: Instant,
        source: SocketAddr,
        tx: u64,
        code: u16,
        msg: &Message<'_>,
    ) -> Result<(), &'static str> {
        let e = self.clients.get(&tx).ok_or("unknown transaction")?;
        let (owner_call, owner_reg) = (e.call, e.reg);
        if source != e.tx.destination {
            return Err("challenge from unexpected address");
        }
        if e.auth_attempts >= MAX_AUTH_ATTEMPTS {
            return Err("too many challenges");
        }
        let creds = match (owner_call, owner_reg) {
            (Some(h), _) => self.calls.get(&h).ok_or("no call")?.credentials.clone(),
            (None, Some(r)) => self
                .regs
                .get(&r)
                .ok_or("no registration")?
                .credentials()
                .cloned(),
            (None, None) => return Err("no owner"),
        };
        let creds = creds.ok_or("no credentials")?;
        let (hname, aname) = if code == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        // Pick the strongest Digest challenge we support in our realm.
        let mut best: Option<(ChallengeParams<'_>, bool)> = None;
        let mut realm_mismatch = false;
        for h in msg.headers.iter().filter(|h| header_name_eq(h.name, hname)) {
            let Ok(c) = parse_challenge(h.value) else {
                continue;
            };
            if !c.scheme.eq_ignore_ascii_case("Digest") {
                continue;
            }
            let (Some(realm), Some(nonce)) = (c.realm, c.nonce) else {
                continue;
            };
            let Some(algorithm) = Algorithm::from_param(c.algorithm) else {
                continue;
            };
            if creds.realm.as_deref().is_some_and(|r| r != realm) {
                realm_mismatch = true;
                continue;
            }
            let qop_auth = match c.qop {
                Some(q) if digest::qop_offers_auth(q) => true,
                Some(_) => continue,
                None => false,
            };
            let p = ChallengeParams {
                realm,
                nonce,
                opaque: c.opaque,
                algorithm,
                qop_auth,
            };
            if best
                .as_ref()
                .is_none_or(|(b, _)| b.algorithm.strength() < algorithm.strength())
            {
                best = Some((p, c.stale));
            }
        }
        let Some((ch, stale)) = best else {
            return Err(if realm_mismatch {
                "challenge for another realm"
            } else {
                "no usable digest challenge"
            });
        };
        if e.last_nonce.as_deref() == Some(ch.nonce) && !stale {
            return Err("credentials rejected");
        }
        let cnonce = self.hex();
        let e = self.clients.get(&tx).ok_or("unknown transaction")?;
        let header = digest::authorize(
            &ch,
            &creds.username,
            &creds.password,
            e.template.method,
            &e.template.uri,
            ClientNonce {
                cnonce: &cnonce,
                nc: 1,
            },
        );
        let nonce = ch.nonce.to_owned();
        let (template, purpose, attempts, dest) = (
            e.template.clone(),
            e.purpose,
            e.auth_attempts + 1,
            e.tx.destination,
        );
        let seq = match (owner_call, owner_reg) {
            (Some(h), _) => self.calls.get_mut(&h).ok_or("no call")?.dialog.next_seq(),
            (None, Some(r)) => self.regs.get_mut(&r).ok_or("no registration")?.next_seq(),
            (None, None) => return Err("no owner"),
        };
        let new = self.start_client(
            now,
            owner_call,
            purpose,
            template,
            seq,
            None,
            Some((aname, &header)),
            dest,
        );
        if let Some(n) = self.clients.get_mut(&new) {
            n.reg = owner_reg;
            n.auth_attempts = attempts;
            n.last_nonce = Some(nonce);
        }
        match (purpose, owner_call, owner_reg) {
            (Purpose::Invite, Some(h), _) => {
                if let Some(c) = self.calls.get_mut(&h) {
                    c.state = CallState::Calling;
                }
            }
            (Purpose::Reinvite, Some(h), _) => {
                if let Some(out) = self.calls.get_mut(&h).and_then(|c| c.reinvite_out.as_mut()) {
                    out.tx = Some(new);
                }
            }
            (Purpose::Register, _, Some(r)) => self.reg_sent(r, new),
            _ => {}
        }
        Ok(())
    }

    fn handle_request(&mut self, now: Instant, source: SocketAddr, req: &Req<'_>) {
        let key = (req.branch.to_owned(), method_key(req.method));
        // ACK: non-2xx ACK matches the INVITE server transaction; 2xx ACK the dialog.
        if req.method == Method::Ack {
            if let Some(&id) = self.server_index.get(&key) {
                if let Some(e) = self.servers.get_mut(&id) {
                    if e.tx.state != ServerState::Accepted {
                        e.tx.on_ack(now);
                        self.resched_server(id);
                        return;
                    }
                }
            }
            self.dialog_ack(now, req);
            return;
        }
        if let Some(&id) = self.server_index.get(&key) {
            // Retransmission.
            if let Some(e) = self.servers.get(&id) {
                if let Some(bytes) = e.tx.on_retransmission() {
                    let dest = e.tx.destination;
                    self.send(dest, bytes);
                }
            }
            return;
        }
        if self.at_tx_cap() {
            let echo = make_echo(req.msg, source);
            let bytes = build_response(&echo, 503, None, None, &self.config.user_agent, &[], &[]);
            self.send(source, bytes);
            self.event(UaEvent::ResponseSent { code: 503 });
            return;
        }
        let kind = if req.method == Method::Invite {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        let id = self.id();
        self.server_index.insert(key.clone(), id);
        self.servers.insert(
            id,
            ServerEntry {
                tx: ServerTx::new(kind, source, self.timers_cfg),
                key,
                call: None,
                reinvite: None,
                scheduled: None,
            },
        );
        let echo = make_echo(req.msg, source);
        if req.method == Method::Invite {
            // 100 Trying at once (§17.2.1).
            self.server_respond(now, id, &echo, 100, None, &[]);
        }
        match req.method {
            Method::Cancel => self.handle_cancel(now, id, req, &echo),
            _ if req.to_tag.is_some() => self.in_dialog(now, id, source, req, &echo),
            Method::Invite => self.new_invite(now, id, source, req, echo),
            Method::Options => {
                self.server_respond(now, id, &echo, 200, None, &[]);
            }
            Method::Bye => self.server_respond(now, id, &echo, 481, None, &[]),
            _ => self.server_respond(now, id, &echo, 405, None, &[]),
        }
        self.resched_server(id);
    }

    /// Sends a response through server transaction `id`. `tag` is added to To when the
    /// request had none (a fresh one if `None`).
    fn server_respond(
        &mut self,
        now: Instant,
        id: u64,
        echo: &Echo,
        code: u16,
        tag: Option<&str>,
        body: &[u8],
    ) {
        let fresh;
        let tag = match tag {
            Some(t) => Some(t),
            None if code > 100 => {
                fresh = self.hex();
                Some(fresh.as_str())
            }
            None => None,
        };
        let contact = (code > 100 && code < 300).then(|| self.contact());
        let extra: &[(&str, &str)] = if code == 200 && echo.cseq.ends_with("OPTIONS") {
            &[("Allow", ALLOW), ("Accept", "application/sdp")]
        } else {
            &[]
        };
        let bytes = build_response(
            echo,
            code,
            tag,
            contact.as_deref(),
            &self.config.user_agent,
            extra,
            body,
        );
        let Some(e) = self.servers.get_mut(&id) else {
            return;
        };
        if !e.tx.send_response(now, code, bytes.clone()) {
            return;
        }
        let dest = e.tx.destination;
        self.send(dest, bytes);
        self.event(UaEvent::ResponseSent { code });
    }

    fn new_invite(&mut self, now: Instant, id: u64, source: SocketAddr, req: &Req<'_>, echo: Echo) {
        let contact = req
            .msg
            .contact()
            .and_then(Result::ok)
            .map(|c| c.uri.to_owned());
        let (Some(contact), Some(from_tag)) = (contact, req.from_tag) else {
            self.server_respond(now, id, &echo, 400, None, &[]);
            return;
        };
        if self.calls.len() >= self.config.max_dialogs {
            self.server_respond(now, id, &echo, 503, None, &[]);
            return;
        }
        let handle = CallHandle(self.id());
        let local_tag = self.hex();
        let local = format!("{};tag={local_tag}", echo.to);
        let seq = self.rng.random_range(1..10_000u32);
        let dialog = Dialog::uas(
            req.call_id.to_owned(),
            local_tag.clone(),
            local,
            echo.from.clone(),
            from_tag.to_owned(),
            req.cseq,
            echo.record_routes.clone(),
            contact,
            source,
            seq,
        );
        if let Some(e) = self.servers.get_mut(&id) {
            e.call = Some(handle);
        }
        let sdp = req.msg.body.to_vec();
        let event = UaEvent::IncomingCall {
            call: handle,
            from: echo.from.clone(),
            to: echo.to.clone(),
            request_uri: req.msg.request_uri().unwrap_or_default().to_owned(),
            sdp,
            source,
        };
        self.calls.insert(
            handle,
            Call {
                server_tx: Some(id),
                echo: Some(echo),
                ..Call::new(Role::Uas, dialog, Vec::new(), req.cseq)
            },
        );
        self.dialogs
            .insert((req.call_id.to_owned(), local_tag), handle);
        self.event(event);
    }

    fn handle_cancel(&mut self, now: Instant, id: u64, req: &Req<'_>, echo: &Echo) {
        let invite_key = (req.branch.to_owned(), "INVITE".to_owned());
        let target = self.server_index.get(&invite_key).copied();
        let Some(inv_id) = target else {
            self.server_respond(now, id, echo, 481, None, &[]);
            return;
        };
        self.server_respond(now, id, echo, 200, None, &[]);
        if let Some(handle) = self.servers.get(&inv_id).and_then(|e| e.reinvite) {
            // A re-INVITE cancelled before we answered it: 487, the call goes on.
            if self
                .calls
                .get(&handle)
                .and_then(|c| c.reinvite_in.as_ref())
                .is_some_and(|i| i.tx == inv_id)
            {
                self.abort_reinvite_in(now, handle);
            }
            return;
        }
        let Some(handle) = self.servers.get(&inv_id).and_then(|e| e.call) else {
            return;
        };
        self.terminate_unanswered(now, handle, inv_id);
    }

    /// UAS: the remote gave up before our final response (CANCEL, or BYE on an early
    /// dialog): 487 to the INVITE and report the end.
    fn terminate_unanswered(&mut self, now: Instant, handle: CallHandle, inv_id: u64) {
        let pending = self.servers.get(&inv_id).is_some_and(|e| !e.tx.has_final());
        if !pending {
            return;
        }
        let Some(call) = self.calls.get(&handle) else {
            return;
        };
        if let Some(echo) = call.echo.clone() {
            let tag = call.dialog.local_tag.clone();
            self.server_respond(now, inv_id, &echo, 487, Some(&tag), &[]);
            self.resched_server(inv_id);
        }
        self.report(
            handle,
            UaEvent::Ended {
                call: handle,
                by_remote: true,
            },
        );
        self.remove_call(now, handle);
    }

    fn find_dialog(&self, req: &Req<'_>) -> Option<CallHandle> {
        let tag = req.to_tag?;
        let h = *self
            .dialogs
            .get(&(req.call_id.to_owned(), tag.to_owned()))?;
        let call = self.calls.get(&h)?;
        call.dialog.remote_tag_matches(req.from_tag).then_some(h)
    }

    fn dialog_ack(&mut self, now: Instant, req: &Req<'_>) {
        let Some(handle) = self.find_dialog(req) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if call.retrans.is_none() {
            return;
        }
        call.retrans = None;
        let first = call.state == CallState::AwaitingAck;
        if first {
            call.state = CallState::Confirmed;
        }
        let hangup = call.hangup;
        self.resched_call(handle);
        if first {
            if hangup {
                self.send_bye(now, handle);
            } else {
                self.event(UaEvent::Confirmed { call: handle });
            }
        }
    }

    fn in_dialog(
        &mut self,
        now: Instant,
        id: u64,
        _source: SocketAddr,
        req: &Req<'_>,
        echo: &Echo,
    ) {
        let Some(handle) = self.find_dialog(req) else {
            self.server_respond(now, id, echo, 481, None, &[]);
            return;
        };
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        if !call.dialog.accept_remote_cseq(req.cseq) {
            self.server_respond(now, id, echo, 500, None, &[]);
            return;
        }
        let tag = call.dialog.local_tag.clone();
        match req.method {
            Method::Bye => {
                self.server_respond(now, id, echo, 200, Some(&tag), &[]);
                let Some(call) = self.calls.get(&handle) else {
                    return;
                };
                match (call.role, call.state, call.server_tx) {
                    (Role::Uas, CallState::Calling | CallState::Early, Some(inv)) => {
                        self.terminate_unanswered(now, handle, inv);
                    }
                    (Role::Uac, CallState::Calling | CallState::Early, _) => {
                        // BYE on our early dialog: the INVITE still needs its final.
                        self.report(
                            handle,
                            UaEvent::Ended {
                                call: handle,
                                by_remote: true,
                            },
                        );
                        self.hangup(now, handle);
                    }
                    _ => {
                        self.report(
                            handle,
                            UaEvent::Ended {
                                call: handle,
                                by_remote: true,
                            },
                        );
                        self.remove_call(now, handle);
                    }
                }
            }
            Method::Invite => {
                if !call.reinvite_allowed() {
                    // §14.2: a re-INVITE while one is pending (either way), or before the
                    // dialog is confirmed.
                    self.server_respond(now, id, echo, 491, Some(&tag), &[]);
                    return;
                }
                if let Some(Ok(c)) = req.msg.contact() {
                    call.dialog.remote_target = c.uri.to_owned();
                }
                call.reinvite_in = Some(InReinvite {
                    tx: id,
                    echo: echo.clone(),
                    deadline: now + REINVITE_ANSWER_TIMEOUT,
                });
                if let Some(e) = self.servers.get_mut(&id) {
                    e.reinvite = Some(handle);
                }
                self.resched_call(handle);
                self.event(UaEvent::Reinvite {
                    call: handle,
                    sdp: req.msg.body.to_vec(),
                });
            }
            Method::Info => {
                let digit = is_dtmf_relay(req.msg.content_type())
                    .then(|| parse_dtmf_relay(req.msg.body))
                    .flatten();
                self.server_respond(now, id, echo, 200, Some(&tag), &[]);
                if let Some(digit) = digit {
                    self.event(UaEvent::Dtmf {
                        call: handle,
                        digit,
                    });
                }
            }
            Method::Options | Method::Notify => {
                self.server_respond(now, id, echo, 200, Some(&tag), &[]);
            }
            Method::Update => {
                let sdp = if req.msg.body.is_empty() {
                    Vec::new()
                } else {
                    call.local_sdp.clone()
                };
                self.server_respond(now, id, echo, 200, Some(&tag), &sdp);
            }
            _ => self.server_respond(now, id, echo, 501, Some(&tag), &[]),
        }
    }
}

/// A DTMF digit in canonical form (`a`-`d` upper-cased), if it is one.
fn dtmf_digit(c: char) -> Option<char> {
    let c = c.to_ascii_uppercase();
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
}

/// Whether a Content-Type is `application/dtmf-relay` (parameters and case ignored).
fn is_dtmf_relay(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(DTMF_RELAY))
}

/// The digit of an `application/dtmf-relay` body: `Signal=` with one of `0-9*#A-D`, or the
/// event numbers 10-15 (RFC 4733 order: `*`, `#`, `A`-`D`). Looks at the first 16 lines only.
fn parse_dtmf_relay(body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body.get(..body.len().min(1024))?).ok()?;
    let value = text.lines().take(16).find_map(|line| {
        let (name, value) = line.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("Signal")
            .then_some(value.trim())
    })?;
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => dtmf_digit(c),
        _ => match value {
            "10" => Some('*'),
            "11" => Some('#'),
            "12" => Some('A'),
            "13" => Some('B'),
            "14" => Some('C'),
            "15" => Some('D'),
            _ => None,
        },
    }
}

/// Checks the fields every request must have in a usable form.
fn checked_request<'m>(msg: &'m Message<'m>) -> Option<Req<'m>> {
    let method = msg.method()?;
    let via = msg.top_via().ok()?;
    let branch = via.branch()?;
    let call_id = msg.call_id().ok()?;
    let cseq = msg.cseq().ok()?;
    let from = msg.from().ok()?;
    let to = msg.to().ok()?;
    Some(Req {
        msg,
        method,
        branch,
        call_id,
        cseq: cseq.seq,
        from_tag: from.tag(),
        to_tag: to.tag(),
    })
}

/// The top Via with `received` and (if asked for) `rport` filled in (RFC 3581 §4).
fn stamp_via(via: &Via<'_>, source: SocketAddr) -> String {
    let mut out = format!("SIP/2.0/{} {}", via.transport, via.host);
    if let Some(p) = via.port {
        out.push_str(&format!(":{p}"));
    }
    let mut rport = false;
    for p in via
        .params
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let name = p.split('=').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("rport") {
            rport = true;
        } else if !name.eq_ignore_ascii_case("received") {
            out.push(';');
            out.push_str(p);
        }
    }
    out.push_str(&format!(";received={}", source.ip()));
    if rport {
        out.push_str(&format!(";rport={}", source.port()));
    }
    out
}

fn make_echo(msg: &Message<'_>, source: SocketAddr) -> Echo {
    let mut vias: Vec<String> = msg.header_values("Via").map(str::to_owned).collect();
    if let (Some(first), Ok(top)) = (vias.first_mut(), msg.top_via()) {
        *first = stamp_via(&top, source);
    }
    let to = msg.header("To").unwrap_or_default().to_owned();
    Echo {
        vias,
        from: msg.header("From").unwrap_or_default().to_owned(),
        has_to_tag: msg.to().ok().and_then(|t| t.tag()).is_some(),
        to,
        call_id: msg.header("Call-ID").unwrap_or_default().to_owned(),
        cseq: msg.header("CSeq").unwrap_or_default().to_owned(),
        record_routes: msg
            .header_values("Record-Route")
            .map(str::to_owned)
            .collect(),
    }
}

/// Best-effort extraction of Via/From/To/Call-ID/CSeq from a request that failed to parse,
/// for a 400. `None` (drop silently) unless it looks like a non-ACK request with Via,
/// Call-ID and CSeq.
fn salvage(data: &[u8]) -> Option<Echo> {
    if data.len() > skybridge_codecs::sip::MAX_MESSAGE_SIZE {
        return None;
    }
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let text = std::str::from_utf8(data.get(..end)?).ok()?;
    let mut lines = text.split("\r\n");
    let start = lines.next()?;
    if !start.ends_with(" SIP/2.0") || start.starts_with("SIP/") || start.starts_with("ACK ") {
        return None;
    }
    let mut echo = Echo {
        vias: Vec::new(),
        from: String::new(),
        to: String::new(),
        call_id: String::new(),
        cseq: String::new(),
        record_routes: Vec::new(),
        has_to_tag: true,
    };
    for line in lines.take(skybridge_codecs::sip::MAX_HEADERS) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return None;
        }
        let name = name.trim();
        let slot = if header_name_eq(name, "Via") {
            echo.vias.push(value.to_owned());
            continue;
        } else if header_name_eq(name, "From") {
            &mut echo.from
        } else if header_name_eq(name, "To") {
            &mut echo.to
        } else if header_name_eq(name, "Call-ID") {
            &mut echo.call_id
        } else if header_name_eq(name, "CSeq") {
            &mut echo.cseq
        } else {
            continue;
        };
        if slot.is_empty() {
            *slot = value.to_owned();
        }
    }
    let cseq_method = echo.cseq.split_whitespace().nth(1).unwrap_or_default();
    if echo.vias.is_empty()
        || echo.call_id.is_empty()
        || echo.cseq.is_empty()
        || cseq_method.eq_ignore_ascii_case("ACK")
    {
        return None;
    }
    Some(echo)
}

/// Serializes a response echoing `echo` (§8.2.6.2).
fn build_response(
    echo: &Echo,
    code: u16,
    to_tag: Option<&str>,
    contact: Option<&str>,
    server: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut b = MessageBuilder::response(code, reason_phrase(code));
    for v in &echo.vias {
        b.header("Via", v);
    }
    if (101..300).contains(&code) {
        for rr in &echo.record_routes {
            b.header("Record-Route", rr);
        }
    }
    b.header("From", &echo.from);
    match to_tag {
        Some(t) if !echo.has_to_tag && code > 100 => {
            b.header("To", &format!("{};tag={t}", echo.to));
        }
        _ => {
            b.header("To", &echo.to);
        }
    }
    b.header("Call-ID", &echo.call_id)
        .header("CSeq", &echo.cseq);
    if let Some(c) = contact {
        b.header("Contact", c);
    }
    if !server.is_empty() {
        b.header("Server", server);
    }
    for (n, v) in extra {
        b.header(n, v);
    }
    let ctype = (!body.is_empty()).then_some("application/sdp");
    b.finish(ctype, body)
}

#[path = "ua_register.rs"]
mod register;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "ua_tests.rs"]
mod tests;
