//! The SIP endpoint driver: one UDP socket and one sans-IO [`UserAgent`], as a tokio task.
//!
//! Calls talk to it through a [`SipHandle`]; it routes each call's events back on the channel
//! the call registered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, trace, warn};

use crate::ops::metrics as m;
use crate::sip::{CallHandle, OutgoingCall, RegHandle, Registration, UaEvent, UserAgent};

/// What the SIP side tells the owner of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationEvent {
    Registered { expires: u32 },
    Failed { code: u16, reason: String },
    Unregistered,
}

/// What the SIP side tells one call.
#[derive(Debug)]
pub enum SipCallEvent {
    Progress {
        code: u16,
        sdp: Option<Vec<u8>>,
    },
    Answered {
        sdp: Vec<u8>,
    },
    Confirmed,
    Failed {
        code: u16,
        reason: String,
    },
    Ended {
        by_remote: bool,
    },
    /// The far end's re-INVITE (answer with [`SipHandle::respond_reinvite`]).
    Reinvite {
        sdp: Vec<u8>,
    },
    /// Our re-INVITE was answered.
    ReinviteAnswered {
        sdp: Vec<u8>,
    },
    /// Our re-INVITE was refused; the dialog goes on.
    ReinviteFailed {
        code: u16,
    },
    /// DTMF by SIP INFO.
    Dtmf {
        digit: char,
    },
}

/// A call offered to this endpoint.
#[derive(Debug)]
pub struct IncomingCall {
    pub call: CallHandle,
    pub from: String,
    pub to: String,
    pub request_uri: String,
    pub sdp: Vec<u8>,
    pub source: SocketAddr,
}

enum Command {
    Invite {
        call: Box<OutgoingCall>,
        events: mpsc::UnboundedSender<SipCallEvent>,
        reply: oneshot::Sender<CallHandle>,
    },
    Attach {
        call: CallHandle,
        events: mpsc::UnboundedSender<SipCallEvent>,
    },
    Respond {
        call: CallHandle,
        code: u16,
        sdp: Option<Vec<u8>>,
    },
    Hangup(CallHandle),
    Reinvite {
        call: CallHandle,
        sdp: Vec<u8>,
    },
    RespondReinvite {
        call: CallHandle,
        code: u16,
        sdp: Option<Vec<u8>>,
    },
    Register {
        registration: Box<Registration>,
        events: mpsc::UnboundedSender<RegistrationEvent>,
        reply: oneshot::Sender<RegHandle>,
    },
    Unregister(RegHandle),
    InfoDtmf {
        call: CallHandle,
        digit: char,
    },
}

/// Cheap handle to the endpoint task.
#[derive(Clone, Debug)]
pub struct SipHandle {
    tx: mpsc::UnboundedSender<Command>,
    active: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sip endpoint command")
    }
}

impl SipHandle {
    /// Starts an INVITE; the call's events arrive on `events`.
    pub async fn invite(
        &self,
        call: OutgoingCall,
        events: mpsc::UnboundedSender<SipCallEvent>,
    ) -> Option<CallHandle> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Invite {
                call: Box::new(call),
                events,
                reply,
            })
            .ok()?;
        rx.await.ok()
    }

    /// Routes an incoming call's later events to `events`.
    pub fn attach(&self, call: CallHandle, events: mpsc::UnboundedSender<SipCallEvent>) {
        let _ = self.tx.send(Command::Attach { call, events });
    }

    pub fn respond(&self, call: CallHandle, code: u16, sdp: Option<Vec<u8>>) {
        let _ = self.tx.send(Command::Respond { call, code, sdp });
    }

    /// CANCEL or BYE, as the dialog state requires.
    pub fn hangup(&self, call: CallHandle) {
        let _ = self.tx.send(Command::Hangup(call));
    }

    /// Sends a re-INVITE (hold / resume).
    pub fn reinvite(&self, call: CallHandle, sdp: Vec<u8>) {
        let _ = self.tx.send(Command::Reinvite { call, sdp });
    }

    /// Answers the far end's re-INVITE.
    pub fn respond_reinvite(&self, call: CallHandle, code: u16, sdp: Option<Vec<u8>>) {
        let _ = self.tx.send(Command::RespondReinvite { call, code, sdp });
    }

    /// Registers on behalf of a user; the outcome arrives on `events`, refreshes are automatic.
    pub async fn register(
        &self,
        registration: Registration,
        events: mpsc::UnboundedSender<RegistrationEvent>,
    ) -> Option<RegHandle> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Register {
                registration: Box::new(registration),
                events,
                reply,
            })
            .ok()?;
        rx.await.ok()
    }

    /// Sends one DTMF digit as SIP INFO (`application/dtmf-relay`, 160 ms).
    pub fn info_dtmf(&self, call: CallHandle, digit: char) {
        let _ = self.tx.send(Command::InfoDtmf { call, digit });
    }

    /// Removes a registration (REGISTER with Expires: 0).
    pub fn unregister(&self, reg: RegHandle) {
        let _ = self.tx.send(Command::Unregister(reg));
    }

    /// SIP calls (dialogs and pending INVITEs) and registrations the user agent still holds.
    pub fn active_calls(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until the user agent holds no call, e.g. after BYEs on shutdown.
    pub async fn drained(&self, limit: std::time::Duration) {
        let until = tokio::time::Instant::now() + limit;
        while self.active_calls() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Spawns the endpoint task. Incoming calls go to `incoming` (or are refused with 480 when
/// there is none). The task ends when every handle is dropped and no call is left.
pub fn spawn(
    socket: UdpSocket,
    ua: UserAgent,
    incoming: Option<mpsc::UnboundedSender<IncomingCall>>,
    label: &'static str,
) -> SipHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let active = Arc::new(AtomicUsize::new(0));
    tokio::spawn(run(socket, ua, rx, incoming, label, Arc::clone(&active)));
    SipHandle { tx, active }
}

async fn run(
    socket: UdpSocket,
    mut ua: UserAgent,
    mut rx: mpsc::UnboundedReceiver<Command>,
    incoming: Option<mpsc::UnboundedSender<IncomingCall>>,
    label: &'static str,
    active: Arc<AtomicUsize>,
) {
    let mut calls: HashMap<CallHandle, mpsc::UnboundedSender<SipCallEvent>> = HashMap::new();
    let mut regs: HashMap<RegHandle, mpsc::UnboundedSender<RegistrationEvent>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut handles_open = true;
    loop {
        let wake = ua.poll_timeout();
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => {
                    trace!(%source, bytes = n, "sip datagram");
                    ua.handle_datagram(Instant::now(), source, buf.get(..n).unwrap_or_default());
                }
                Err(e) => debug!(error = %e, "sip recv error"),
            },
            cmd = rx.recv(), if handles_open => match cmd {
                Some(Command::Invite { call, events, reply }) => {
                    let handle = ua.invite(Instant::now(), *call);
                    calls.insert(handle, events);
                    let _ = reply.send(handle);
                }
                Some(Command::Attach { call, events }) => {
                    calls.insert(call, events);
                }
                Some(Command::Respond { call, code, sdp }) => ua.respond(Instant::now(), call, code, sdp),
                Some(Command::Hangup(call)) => ua.hangup(Instant::now(), call),
                Some(Command::Reinvite { call, sdp }) => ua.reinvite(Instant::now(), call, sdp),
                Some(Command::RespondReinvite { call, code, sdp }) => ua.respond_reinvite(Instant::now(), call, code, sdp),
                Some(Command::Register { registration, events, reply }) => {
                    let handle = ua.register(Instant::now(), *registration);
                    regs.insert(handle, events);
                    let _ = reply.send(handle);
                }
                Some(Command::Unregister(reg)) => ua.unregister(Instant::now(), reg),
                Some(Command::InfoDtmf { call, digit }) => ua.send_info_dtmf(Instant::now(), call, digit, 160),
                None => handles_open = false,
            },
            _ = sleep_until_opt(wake) => ua.handle_timeout(Instant::now()),
        }
        while let Some(t) = ua.poll_transmit() {
            if let Err(e) = socket.send_to(&t.payload, t.destination).await {
                debug!(dest = %t.destination, error = %e, "sip send failed");
            }
        }
        while let Some(event) = ua.poll_event() {
            dispatch(
                event,
                &mut calls,
                &mut regs,
                incoming.as_ref(),
                &mut ua,
                label,
            );
        }
        active.store(ua.active_calls() + ua.registrations(), Ordering::Relaxed);
        if !handles_open && ua.active_calls() == 0 && ua.registrations() == 0 {
            debug!(label, "sip endpoint done");
            return;
        }
    }
}

fn dispatch(
    event: UaEvent,
    calls: &mut HashMap<CallHandle, mpsc::UnboundedSender<SipCallEvent>>,
    regs: &mut HashMap<RegHandle, mpsc::UnboundedSender<RegistrationEvent>>,
    incoming: Option<&mpsc::UnboundedSender<IncomingCall>>,
    ua: &mut UserAgent,
    label: &'static str,
) {
    let send =
        |calls: &mut HashMap<CallHandle, _>, call: CallHandle, ev: SipCallEvent, last: bool| {
            let tx: Option<&mpsc::UnboundedSender<SipCallEvent>> = calls.get(&call);
            if let Some(tx) = tx {
                let _ = tx.send(ev);
            }
            if last {
                calls.remove(&call);
            }
        };
    match event {
        UaEvent::IncomingCall {
            call,
            from,
            to,
            request_uri,
            sdp,
            source,
        } => {
            metrics::counter!(m::SIP_REQUESTS_TOTAL, "method" => "INVITE", "direction" => "in")
                .increment(1);
            match incoming {
                Some(tx) => {
                    let offered = IncomingCall {
                        call,
                        from,
                        to,
                        request_uri,
                        sdp,
                        source,
                    };
                    if tx.send(offered).is_err() {
                        ua.respond(Instant::now(), call, 480, None);
                    }
                }
                None => ua.respond(Instant::now(), call, 480, None),
            }
        }
        UaEvent::Progress { call, code, sdp } => {
            send(calls, call, SipCallEvent::Progress { code, sdp }, false)
        }
        UaEvent::Answered { call, sdp } => send(calls, call, SipCallEvent::Answered { sdp }, false),
        UaEvent::Confirmed { call } => send(calls, call, SipCallEvent::Confirmed, false),
        UaEvent::Failed { call, code, reason } => {
            send(calls, call, SipCallEvent::Failed { code, reason }, true);
        }
        UaEvent::Ended { call, by_remote } => {
            send(calls, call, SipCallEvent::Ended { by_remote }, true)
        }
        UaEvent::ResponseReceived { code } => {
            metrics::counter!(m::SIP_RESPONSES_TOTAL, "code" => code.to_string(), "direction" => "in").increment(1);
        }
        UaEvent::ResponseSent { code } => {
            metrics::counter!(m::SIP_RESPONSES_TOTAL, "code" => code.to_string(), "direction" => "out").increment(1);
        }
        UaEvent::Reinvite { call, sdp } => send(calls, call, SipCallEvent::Reinvite { sdp }, false),
        UaEvent::ReinviteAnswered { call, sdp } => {
            send(calls, call, SipCallEvent::ReinviteAnswered { sdp }, false)
        }
        UaEvent::ReinviteFailed { call, code } => {
            send(calls, call, SipCallEvent::ReinviteFailed { code }, false)
        }
        UaEvent::Dtmf { call, digit } => send(calls, call, SipCallEvent::Dtmf { digit }, false),
        UaEvent::Registered { reg, expires } => {
            if let Some(tx) = regs.get(&reg) {
                let _ = tx.send(RegistrationEvent::Registered { expires });
            }
        }
        UaEvent::RegistrationFailed { reg, code, reason } => {
            if let Some(tx) = regs.get(&reg) {
                let _ = tx.send(RegistrationEvent::Failed { code, reason });
            }
        }
        UaEvent::Unregistered { reg } => {
            if let Some(tx) = regs.remove(&reg) {
                let _ = tx.send(RegistrationEvent::Unregistered);
            }
        }
        UaEvent::Dropped { source, reason } => {
            warn!(%source, reason, endpoint = label, "sip datagram dropped");
            metrics::counter!(m::SIP_DROPPED_TOTAL, "reason" => reason).increment(1);
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
pub async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
