//! RFC 3261 §17 transaction state machines (with the RFC 6026 Accepted states), UDP only.
//!
//! The machines hold serialized bytes and timers; they never parse or build messages. The user
//! agent builds the request/response/ACK bytes, feeds status codes and timeouts in, and sends
//! what the machines hand back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::timer::{Timer, TimerConfig, TimerTable};

/// INVITE or non-INVITE transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Invite,
    NonInvite,
}

/// Client transaction state (§17.1.1, §17.1.2; Accepted from RFC 6026).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientState {
    /// INVITE "Calling" / non-INVITE "Trying".
    Calling,
    Proceeding,
    Completed,
    /// INVITE got a 2xx; absorbs 2xx retransmits for timer M.
    Accepted,
    Terminated,
}

/// What the UA should do with a response matched to a client transaction.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientVerdict {
    /// A 1xx: pass up.
    Provisional,
    /// First final response: pass up. For an INVITE non-2xx the UA must build the ACK and call
    /// [`ClientTx::ack_non_2xx`].
    Final,
    /// A retransmitted 2xx to an INVITE: the dialog re-sends its ACK.
    Retransmitted2xx,
    /// A retransmitted non-2xx final to an INVITE: send these ACK bytes again.
    ResendAck(Vec<u8>),
    /// Absorbed (retransmission of a non-INVITE final, late provisional).
    Ignore,
}

/// What a client transaction timer asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientTimeout {
    /// Retransmit the request.
    Retransmit(Vec<u8>),
    /// Timer B/F: no final response; report 408.
    TimedOut,
    /// Timer D/K/M: the transaction is over (no report needed).
    Terminated,
}

/// A client transaction (INVITE: timers A, B, D, M; non-INVITE: E, F, K).
#[derive(Debug)]
pub(crate) struct ClientTx {
    pub(crate) kind: Kind,
    pub(crate) state: ClientState,
    request: Vec<u8>,
    pub(crate) destination: SocketAddr,
    ack: Option<Vec<u8>>,
    interval: Duration,
    timers: TimerTable,
    cfg: TimerConfig,
}

impl ClientTx {
    /// Starts the transaction; the caller sends `request` once now.
    pub(crate) fn new(
        now: Instant,
        kind: Kind,
        request: Vec<u8>,
        destination: SocketAddr,
        cfg: TimerConfig,
    ) -> Self {
        let mut timers = TimerTable::default();
        match kind {
            Kind::Invite => {
                timers.set(Timer::A, now + cfg.t1);
                timers.set(Timer::B, now + cfg.t1x64());
            }
            Kind::NonInvite => {
                timers.set(Timer::E, now + cfg.t1);
                timers.set(Timer::F, now + cfg.t1x64());
            }
        }
        Self {
            kind,
            state: ClientState::Calling,
            request,
            destination,
            ack: None,
            interval: cfg.t1,
            timers,
            cfg,
        }
    }

    /// Earliest armed timer.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    /// Feeds a response status code.
    pub(crate) fn on_response(&mut self, now: Instant, code: u16) -> ClientVerdict {
        let provisional = code < 200;
        match (self.kind, self.state) {
            (_, ClientState::Terminated) => ClientVerdict::Ignore,
            (Kind::Invite, ClientState::Calling | ClientState::Proceeding) => {
                if provisional {
                    self.state = ClientState::Proceeding;
                    self.timers.stop(Timer::A);
                    self.timers.stop(Timer::B);
                    ClientVerdict::Provisional
                } else if code < 300 {
                    self.state = ClientState::Accepted;
                    self.timers.stop_all();
                    self.timers.set(Timer::M, now + self.cfg.t1x64());
                    ClientVerdict::Final
                } else {
                    // Completed is entered in `ack_non_2xx` once the UA built the ACK.
                    self.timers.stop_all();
                    ClientVerdict::Final
                }
            }
            (Kind::Invite, ClientState::Accepted) => {
                if (200..300).contains(&code) {
                    ClientVerdict::Retransmitted2xx
                } else {
                    ClientVerdict::Ignore
                }
            }
            (Kind::Invite, ClientState::Completed) => match (&self.ack, provisional) {
                (Some(ack), false) if code >= 300 => ClientVerdict::ResendAck(ack.clone()),
                _ => ClientVerdict::Ignore,
            },
            (Kind::NonInvite, ClientState::Calling | ClientState::Proceeding) => {
                if provisional {
                    if self.state == ClientState::Calling {
                        self.state = ClientState::Proceeding;
                        // §17.1.2.2: in Proceeding, E fires every T2.
                        self.interval = self.cfg.t2;
                    }
                    ClientVerdict::Provisional
                } else {
                    self.state = ClientState::Completed;
                    self.timers.stop_all();
                    self.timers.set(Timer::K, now + self.cfg.t4);
                    ClientVerdict::Final
                }
            }
            (Kind::NonInvite, _) => ClientVerdict::Ignore,
        }
    }

    /// INVITE got a 300-699: remember the ACK (the caller sends it now) and enter Completed.
    pub(crate) fn ack_non_2xx(&mut self, now: Instant, ack: Vec<u8>) {
        self.ack = Some(ack);
        self.state = ClientState::Completed;
        self.timers.stop_all();
        self.timers.set(Timer::D, now + self.cfg.timer_d());
    }

    /// Terminates at once (transport error, or the owner gave up).
    pub(crate) fn terminate(&mut self) {
        self.state = ClientState::Terminated;
        self.timers.stop_all();
    }

    /// Runs expired timers.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> Vec<ClientTimeout> {
        let mut out = Vec::new();
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                Timer::A => {
                    // §17.1.1.2: INVITE retransmits double without a T2 cap.
                    self.interval = self.interval.saturating_mul(2);
                    self.timers.set(Timer::A, now + self.interval);
                    out.push(ClientTimeout::Retransmit(self.request.clone()));
                }
                Timer::E => {
                    if self.state == ClientState::Calling {
                        self.interval = self.cfg.next_capped(self.interval);
                    }
                    self.timers.set(Timer::E, now + self.interval);
                    out.push(ClientTimeout::Retransmit(self.request.clone()));
                }
                Timer::B | Timer::F => {
                    self.terminate();
                    out.push(ClientTimeout::TimedOut);
                    break;
                }
                Timer::D | Timer::K | Timer::M => {
                    self.terminate();
                    out.push(ClientTimeout::Terminated);
                    break;
                }
                _ => {}
            }
        }
        out
    }
}

/// Server transaction state (§17.2.1, §17.2.2; Accepted from RFC 6026).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServerState {
    /// INVITE "Proceeding" / non-INVITE "Trying" or "Proceeding".
    Proceeding,
    Completed,
    /// INVITE: ACK for the non-2xx received.
    Confirmed,
    /// INVITE: 2xx sent; absorbs INVITE retransmits for timer L.
    Accepted,
    Terminated,
}

/// What a server transaction timer asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ServerTimeout {
    /// Timer G: retransmit the final response.
    Retransmit(Vec<u8>),
    /// Timer H: no ACK for our non-2xx final.
    AckTimedOut,
    /// Timer I/J/L: over.
    Terminated,
}

/// A server transaction (INVITE: G, H, I, L; non-INVITE: J).
#[derive(Debug)]
pub(crate) struct ServerTx {
    pub(crate) kind: Kind,
    pub(crate) state: ServerState,
    last_response: Option<Vec<u8>>,
    /// Where responses go (the request's source: RFC 3581 symmetric response routing).
    pub(crate) destination: SocketAddr,
    interval: Duration,
    timers: TimerTable,
    cfg: TimerConfig,
}

impl ServerTx {
    pub(crate) fn new(kind: Kind, destination: SocketAddr, cfg: TimerConfig) -> Self {
        Self {
            kind,
            state: ServerState::Proceeding,
            last_response: None,
            destination,
            interval: cfg.t1,
            timers: TimerTable::default(),
            cfg,
        }
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    /// Whether a final response was sent.
    pub(crate) fn has_final(&self) -> bool {
        self.state != ServerState::Proceeding
    }

    /// Records a response the caller is sending now. Returns false (and records nothing) if
    /// the transaction already sent a final response.
    pub(crate) fn send_response(&mut self, now: Instant, code: u16, bytes: Vec<u8>) -> bool {
        if self.state != ServerState::Proceeding {
            return false;
        }
        self.last_response = Some(bytes);
        if code < 200 {
            return true;
        }
        match self.kind {
            Kind::Invite if code < 300 => {
                self.state = ServerState::Accepted;
                self.timers.set(Timer::L, now + self.cfg.t1x64());
            }
            Kind::Invite => {
                self.state = ServerState::Completed;
                self.timers.set(Timer::G, now + self.interval);
                self.timers.set(Timer::H, now + self.cfg.t1x64());
            }
            Kind::NonInvite => {
                self.state = ServerState::Completed;
                self.timers.set(Timer::J, now + self.cfg.t1x64());
            }
        }
        true
    }

    /// The last response sent, if any.
    pub(crate) fn last_response(&self) -> Option<Vec<u8>> {
        self.last_response.clone()
    }

    /// A retransmission of the request arrived: the bytes to send again, if any.
    pub(crate) fn on_retransmission(&self) -> Option<Vec<u8>> {
        match self.state {
            ServerState::Proceeding | ServerState::Completed => self.last_response.clone(),
            _ => None,
        }
    }

    /// An ACK matched this INVITE transaction (non-2xx case). Returns true if it was the
    /// first ACK (Completed → Confirmed).
    pub(crate) fn on_ack(&mut self, now: Instant) -> bool {
        if self.kind != Kind::Invite || self.state != ServerState::Completed {
            return false;
        }
        self.state = ServerState::Confirmed;
        self.timers.stop_all();
        self.timers.set(Timer::I, now + self.cfg.t4);
        true
    }

    /// Runs expired timers.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> Vec<ServerTimeout> {
        let mut out = Vec::new();
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                Timer::G => {
                    self.interval = self.cfg.next_capped(self.interval);
                    self.timers.set(Timer::G, now + self.interval);
                    if let Some(r) = &self.last_response {
                        out.push(ServerTimeout::Retransmit(r.clone()));
                    }
                }
                Timer::H => {
                    self.state = ServerState::Terminated;
                    self.timers.stop_all();
                    out.push(ServerTimeout::AckTimedOut);
                    break;
                }
                Timer::I | Timer::J | Timer::L => {
                    self.state = ServerState::Terminated;
                    self.timers.stop_all();
                    out.push(ServerTimeout::Terminated);
                    break;
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "192.0.2.1:5060".parse().unwrap()
    }

    /// Drives `tx` to `end` in 100 ms steps; returns the offsets (ms) of retransmissions and
    /// the offset of a timeout or termination.
    fn drive_client(
        tx: &mut ClientTx,
        t0: Instant,
        end: Duration,
    ) -> (Vec<u128>, Option<(u128, ClientTimeout)>) {
        let mut retrans = Vec::new();
        let mut step = Duration::ZERO;
        while step <= end {
            let now = t0 + step;
            for out in tx.on_timeout(now) {
                match out {
                    ClientTimeout::Retransmit(_) => retrans.push(step.as_millis()),
                    other => return (retrans, Some((step.as_millis(), other))),
                }
            }
            step += Duration::from_millis(100);
        }
        (retrans, None)
    }

    #[test]
    fn invite_client_retransmits_on_timer_a_doubling_and_times_out_at_b() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ClientTx::new(t0, Kind::Invite, b"INVITE".to_vec(), addr(), cfg);
        let (retrans, end) = drive_client(&mut tx, t0, Duration::from_secs(40));
        assert_eq!(retrans, [500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(end, Some((32000, ClientTimeout::TimedOut)));
        assert!(tx.is_terminated());
        assert_eq!(tx.next_timeout(), None);
    }

    #[test]
    fn invite_client_stops_retransmitting_after_provisional() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(
            t0,
            Kind::Invite,
            b"x".to_vec(),
            addr(),
            TimerConfig::default(),
        );
        assert_eq!(tx.on_response(t0, 100), ClientVerdict::Provisional);
        assert_eq!(tx.next_timeout(), None);
        assert_eq!(tx.on_response(t0, 180), ClientVerdict::Provisional);
        assert_eq!(tx.on_response(t0, 200), ClientVerdict::Final);
        assert_eq!(tx.state, ClientState::Accepted);
        assert_eq!(tx.on_response(t0, 200), ClientVerdict::Retransmitted2xx);
        let (_, end) = drive_client(&mut tx, t0, Duration::from_secs(40));
        assert_eq!(end, Some((32000, ClientTimeout::Terminated)));
    }

    #[test]
    fn invite_client_non_2xx_resends_ack_on_retransmission_until_timer_d() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(
            t0,
            Kind::Invite,
            b"x".to_vec(),
            addr(),
            TimerConfig::default(),
        );
        assert_eq!(tx.on_response(t0, 486), ClientVerdict::Final);
        tx.ack_non_2xx(t0, b"ACK".to_vec());
        assert_eq!(
            tx.on_response(t0, 486),
            ClientVerdict::ResendAck(b"ACK".to_vec())
        );
        let (retrans, end) = drive_client(&mut tx, t0, Duration::from_secs(40));
        assert!(retrans.is_empty());
        assert_eq!(end, Some((32000, ClientTimeout::Terminated)));
    }

    #[test]
    fn non_invite_client_retransmits_on_e_capped_at_t2_and_times_out_at_f() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ClientTx::new(t0, Kind::NonInvite, b"BYE".to_vec(), addr(), cfg);
        let (retrans, end) = drive_client(&mut tx, t0, Duration::from_secs(40));
        assert_eq!(
            retrans,
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(end, Some((32000, ClientTimeout::TimedOut)));
    }

    #[test]
    fn non_invite_client_in_proceeding_retransmits_every_t2_and_k_ends_completed() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ClientTx::new(t0, Kind::NonInvite, b"BYE".to_vec(), addr(), cfg);
        assert_eq!(tx.on_response(t0, 100), ClientVerdict::Provisional);
        let (retrans, _) = drive_client(&mut tx, t0, Duration::from_millis(9000));
        // First E was armed at T1; after that every T2.
        assert_eq!(retrans, [500, 4500, 8500]);
        let now = t0 + Duration::from_secs(9);
        assert_eq!(tx.on_response(now, 200), ClientVerdict::Final);
        assert_eq!(tx.on_response(now, 200), ClientVerdict::Ignore);
        assert_eq!(tx.next_timeout(), Some(now + cfg.t4));
        assert_eq!(tx.on_timeout(now + cfg.t4), vec![ClientTimeout::Terminated]);
    }

    #[test]
    fn invite_server_retransmits_non_2xx_on_g_until_ack_then_i() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ServerTx::new(Kind::Invite, addr(), cfg);
        assert!(tx.send_response(t0, 100, b"100".to_vec()));
        assert_eq!(tx.on_retransmission(), Some(b"100".to_vec()));
        assert!(tx.send_response(t0, 486, b"486".to_vec()));
        assert!(!tx.send_response(t0, 200, b"200".to_vec()));
        let mut fired = Vec::new();
        for ms in (0..=3600).step_by(100) {
            for out in tx.on_timeout(t0 + Duration::from_millis(ms)) {
                assert_eq!(out, ServerTimeout::Retransmit(b"486".to_vec()));
                fired.push(ms);
            }
        }
        assert_eq!(fired, [500, 1500, 3500]);
        let now = t0 + Duration::from_millis(3600);
        assert!(tx.on_ack(now));
        assert!(!tx.on_ack(now));
        assert_eq!(tx.on_retransmission(), None);
        assert_eq!(tx.on_timeout(now + cfg.t4), vec![ServerTimeout::Terminated]);
    }

    #[test]
    fn invite_server_without_ack_gives_up_at_h() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ServerTx::new(Kind::Invite, addr(), cfg);
        tx.send_response(t0, 480, b"480".to_vec());
        let mut last = None;
        for s in 0..=40 {
            for out in tx.on_timeout(t0 + Duration::from_secs(s)) {
                if out == ServerTimeout::AckTimedOut {
                    last = Some(s);
                }
            }
        }
        assert_eq!(last, Some(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn non_invite_server_answers_retransmissions_until_j() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ServerTx::new(Kind::NonInvite, addr(), cfg);
        tx.send_response(t0, 200, b"200".to_vec());
        assert_eq!(tx.on_retransmission(), Some(b"200".to_vec()));
        assert_eq!(tx.next_timeout(), Some(t0 + cfg.t1x64()));
        assert_eq!(
            tx.on_timeout(t0 + cfg.t1x64()),
            vec![ServerTimeout::Terminated]
        );
    }
}
