//! The call driver (one tokio task per call) and the registry that finds or creates calls.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn, Instrument};

use super::client_queue::{self, AudioRx, AudioTx};
use super::core::{CallCore, CallSettings, ClientCommand, Output};
use crate::config::Config;
use crate::media::{ClientCaps, Codec, MediaFrame};
use crate::ops::metrics as m;
use crate::rtp_leg::{PortPair, PortPool};
use crate::session::{Authority, Identity, Route};
use crate::sip::{CallHandle, Credentials, OutgoingCall};
use crate::sip_endpoint::{sleep_until_opt, SipCallEvent, SipHandle};
use crate::transcode::pool::{TranscodeHandle, TranscodePool, Work};
use crate::transcode::{Link, Transcoder};

/// Where a call sends what its client legs must see. Everything is tagged with the leg it is
/// for, so one connection can hold several calls (and several legs) on one pair of channels.
#[derive(Clone, Debug)]
pub struct ClientSink {
    /// Audio toward the client, bounded by age: when the client is behind, the oldest frames
    /// are dropped (see [`super::client_queue`]).
    pub audio: ClientAudioTx,
    /// Signalling toward the client (few messages per call).
    pub control: mpsc::UnboundedSender<ToClient>,
    /// What the client can receive (the call transcodes toward it when needed).
    pub caps: ClientCaps,
    /// Whether this leg plays audio (false for an RTMP publish stream: it only sends, and the
    /// call must spend nothing, such as a transcoder, on audio toward it).
    pub wants_audio: bool,
}

/// The sending side of a connection's audio queue.
pub type ClientAudioTx = AudioTx<(LegId, MediaFrame)>;
/// The receiving side of a connection's audio queue (the door drains it).
pub type ClientAudioRx = AudioRx<(LegId, MediaFrame)>;

/// The audio queue toward one client connection of `transport`: frames older than
/// `rtp.max_delay_ms` are dropped (oldest first) and counted. `measure` when this queue feeds
/// the socket directly (it then sets the client-delay gauge).
pub fn client_audio_queue(
    config: &Config,
    transport: &'static str,
    measure: bool,
) -> (ClientAudioTx, ClientAudioRx) {
    let bound = Duration::from_millis(config.rtp.max_delay_ms);
    let ptime = Duration::from_millis(u64::from(config.rtp.ptime_ms));
    client_queue::channel(
        bound,
        client_queue::capacity_for(bound, ptime),
        transport,
        measure,
    )
}

/// A signalling message for one client leg, with the call it concerns (so a session can answer,
/// hang up or send DTMF on a call it was only offered).
#[derive(Clone, Debug)]
pub struct ToClient {
    pub leg: LegId,
    pub call: CallRef,
    pub cmd: ClientCommand,
}

/// Identifies one attachment of a client (a connection's publish, play or control role).
pub type LegId = u64;

static NEXT_LEG: AtomicU64 = AtomicU64::new(1);

/// A fresh leg id.
pub fn new_leg_id() -> LegId {
    NEXT_LEG.fetch_add(1, Ordering::Relaxed)
}

#[derive(Debug)]
enum Control {
    Attach {
        leg: LegId,
        sink: Option<ClientSink>,
    },
    Detach {
        leg: LegId,
    },
    Hangup,
    Dtmf {
        leg: LegId,
        digits: String,
    },
    Answer {
        leg: LegId,
    },
    Reject {
        leg: LegId,
        code: u16,
    },
    Hold {
        hold: bool,
    },
    Shutdown,
}

/// A handle on a running call.
#[derive(Clone, Debug)]
pub struct CallRef {
    pub id: u64,
    audio: mpsc::Sender<MediaFrame>,
    control: mpsc::UnboundedSender<Control>,
    status: StatusRef,
}

/// What the operations listener's `GET /calls` shows of a call, kept up to date by its task at
/// the few moments it changes (answer, codec pair, legs), never per packet.
#[derive(Debug)]
struct CallStatus {
    user: String,
    target: String,
    inbound: bool,
    started: Instant,
    answered: Option<Instant>,
    client_codec: Option<&'static str>,
    sip_codec: Option<&'static str>,
    transcoding: bool,
    legs: usize,
}

type StatusRef = Arc<Mutex<CallStatus>>;

fn lock_status(s: &StatusRef) -> std::sync::MutexGuard<'_, CallStatus> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// One active call as `GET /calls` lists it (JSON).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CallInfo {
    pub id: u64,
    pub user: String,
    pub target: String,
    /// `outbound` (a client dialled) or `inbound` (a SIP INVITE).
    pub direction: &'static str,
    /// `ringing` or `answered`.
    pub state: &'static str,
    pub age_secs: f64,
    pub answered_secs: Option<f64>,
    /// Codec the client leg sends (or, before it sent any, is sent), and the SIP leg's.
    pub client_codec: Option<&'static str>,
    pub sip_codec: Option<&'static str>,
    pub transcoding: bool,
    /// Client legs attached (a publisher and a player are two).
    pub legs: usize,
}

impl CallRef {
    /// Audio from a client; returns false if it was dropped (call busy or gone).
    pub fn audio(&self, frame: MediaFrame) -> bool {
        // `try_send` never waits: a call that is behind drops the frame (counted by the caller).
        self.audio.try_send(frame).is_ok()
    }
    pub fn detach(&self, leg: LegId) {
        let _ = self.control.send(Control::Detach { leg });
    }
    pub fn hangup(&self) {
        let _ = self.control.send(Control::Hangup);
    }
    /// DTMF digits from `leg`; an error (no telephone-event) comes back to that leg.
    pub fn dtmf(&self, leg: LegId, digits: String) {
        let _ = self.control.send(Control::Dtmf { leg, digits });
    }
    /// `leg` answers the inbound call (the first answer wins).
    pub fn answer(&self, leg: LegId) {
        let _ = self.control.send(Control::Answer { leg });
    }
    /// `leg` declines the inbound call (486 Busy Here or 603 Decline when every leg declined).
    pub fn reject(&self, leg: LegId, code: u16) {
        let _ = self.control.send(Control::Reject { leg, code });
    }
    /// Hold (re-INVITE sendonly) or resume (sendrecv).
    pub fn hold(&self, hold: bool) {
        let _ = self.control.send(Control::Hold { hold });
    }
}

/// An inbound SIP call to hand to a user's sessions.
#[derive(Debug)]
pub struct Inbound {
    pub handle: CallHandle,
    pub from: String,
    pub offer: Vec<u8>,
}

/// Why a call could not be joined or created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinError {
    TooManyCalls,
    TooManyCallsForUser,
    NoPorts,
    ShuttingDown,
}

impl JoinError {
    pub fn label(self) -> &'static str {
        match self {
            JoinError::TooManyCalls => "too_many_calls",
            JoinError::TooManyCallsForUser => "too_many_calls_for_user",
            JoinError::NoPorts => "no_rtp_ports",
            JoinError::ShuttingDown => "shutting_down",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CallKey {
    identity: Identity,
    target: String,
}

/// Finds the call a client joins (same identity and target) or starts a new one.
#[derive(Clone)]
pub struct Calls {
    inner: Arc<Mutex<Registry>>,
    ctx: Arc<Context>,
}

struct Registry {
    by_key: HashMap<CallKey, CallRef>,
    per_user: HashMap<Identity, usize>,
    closed: bool,
}

struct Context {
    config: Arc<Config>,
    sip: SipHandle,
    pool: Arc<PortPool>,
    authority: Authority,
    next_id: AtomicU64,
    done: watch::Sender<usize>,
}

impl Calls {
    pub fn new(
        config: Arc<Config>,
        sip: SipHandle,
        pool: Arc<PortPool>,
        authority: Authority,
    ) -> Calls {
        let (done, _) = watch::channel(0);
        Calls {
            inner: Arc::new(Mutex::new(Registry {
                by_key: HashMap::new(),
                per_user: HashMap::new(),
                closed: false,
            })),
            ctx: Arc::new(Context {
                config,
                sip,
                pool,
                authority,
                next_id: AtomicU64::new(1),
                done,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls in progress.
    pub fn active(&self) -> usize {
        self.lock().by_key.len()
    }

    /// Joins the call of `identity` to `route.target`, starting it if there is none.
    pub fn join(
        &self,
        identity: &Identity,
        route: &Route,
        leg: LegId,
        sink: Option<ClientSink>,
    ) -> Result<CallRef, JoinError> {
        let key = CallKey {
            identity: identity.clone(),
            target: route.target.clone(),
        };
        self.join_key(key, identity, route, leg, sink)
    }

    /// Starts a new call of `identity` to `route`, never joining an existing one (a client that
    /// places calls explicitly, like the WebSocket softphone).
    pub fn start(
        &self,
        identity: &Identity,
        route: &Route,
        leg: LegId,
        sink: ClientSink,
    ) -> Result<CallRef, JoinError> {
        let key = CallKey {
            identity: identity.clone(),
            target: format!("{}#{leg}", route.target),
        };
        self.join_key(key, identity, route, leg, Some(sink))
    }

    fn join_key(
        &self,
        key: CallKey,
        identity: &Identity,
        route: &Route,
        leg: LegId,
        sink: Option<ClientSink>,
    ) -> Result<CallRef, JoinError> {
        let mut reg = self.lock();
        if reg.closed {
            return Err(JoinError::ShuttingDown);
        }
        if let Some(call) = reg.by_key.get(&key) {
            if call
                .control
                .send(Control::Attach {
                    leg,
                    sink: sink.clone(),
                })
                .is_ok()
            {
                return Ok(call.clone());
            }
            // The call task already ended; start afresh.
            reg.by_key.remove(&key);
        }
        let legs = HashMap::from([(leg, Leg::new(sink, false))]);
        self.spawn_call(
            reg,
            identity,
            Some(key.target),
            Direction::Outbound(route.clone()),
            legs,
        )
    }

    /// Checks the limits, allocates ports and starts the call task; `target` None names an
    /// inbound call by its id.
    fn spawn_call(
        &self,
        mut reg: std::sync::MutexGuard<'_, Registry>,
        identity: &Identity,
        target: Option<String>,
        direction: Direction,
        legs: HashMap<LegId, Leg>,
    ) -> Result<CallRef, JoinError> {
        if reg.by_key.len() >= self.ctx.config.limits.max_calls {
            return Err(JoinError::TooManyCalls);
        }
        let user_calls = reg.per_user.get(identity).copied().unwrap_or(0);
        if identity != &Identity::Anonymous
            && user_calls >= self.ctx.config.limits.max_calls_per_user
        {
            return Err(JoinError::TooManyCallsForUser);
        }
        let ports = self.ctx.pool.allocate().map_err(|_| JoinError::NoPorts)?;
        let id = self.ctx.next_id.fetch_add(1, Ordering::Relaxed);
        let key = CallKey {
            identity: identity.clone(),
            target: target.unwrap_or_else(|| format!("inbound-{id}")),
        };
        let (audio_tx, audio_rx) = mpsc::channel(64);
        let (xcoded_tx, xcoded_rx) = mpsc::channel(64);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(CallStatus {
            user: identity.name().to_string(),
            target: match &direction {
                Direction::Outbound(route) => route.target.clone(),
                Direction::Inbound(_) => key.target.clone(),
            },
            inbound: matches!(direction, Direction::Inbound(_)),
            started: Instant::now(),
            answered: None,
            client_codec: None,
            sip_codec: None,
            transcoding: false,
            legs: legs.len(),
        }));
        let call = CallRef {
            id,
            audio: audio_tx,
            control: control_tx,
            status: Arc::clone(&status),
        };
        reg.by_key.insert(key.clone(), call.clone());
        *reg.per_user.entry(identity.clone()).or_insert(0) += 1;
        drop(reg);
        let span = tracing::info_span!("call", id, user = identity.name(), target = %key.target);
        let task = CallTask {
            calls: self.clone(),
            me: call.clone(),
            key,
            id,
            direction,
            ports,
            audio_rx,
            control_rx,
            legs,
            media: Media::new(xcoded_tx, xcoded_rx, status),
        };
        tokio::spawn(task.run().instrument(span));
        Ok(call)
    }

    /// Offers an inbound SIP call to `legs` (every session of `identity`); the first to answer
    /// gets it. Errors with the SIP status to reject the INVITE with.
    pub fn offer(
        &self,
        identity: &Identity,
        inbound: Inbound,
        legs: Vec<(LegId, ClientSink)>,
    ) -> Result<CallRef, u16> {
        let reg = self.lock();
        if reg.closed {
            return Err(503);
        }
        let legs = legs
            .into_iter()
            .map(|(leg, sink)| (leg, Leg::new(Some(sink), true)))
            .collect();
        self.spawn_call(reg, identity, None, Direction::Inbound(inbound), legs)
            .map_err(|e| match e {
                JoinError::TooManyCallsForUser => 486,
                _ => 503,
            })
    }

    /// Every active call, oldest first (`GET /calls` on the operations listener).
    pub fn list(&self) -> Vec<CallInfo> {
        let calls: Vec<CallRef> = self.lock().by_key.values().cloned().collect();
        let now = Instant::now();
        let mut out: Vec<CallInfo> = calls
            .iter()
            .map(|c| {
                let s = lock_status(&c.status);
                CallInfo {
                    id: c.id,
                    user: s.user.clone(),
                    target: s.target.clone(),
                    direction: if s.inbound { "inbound" } else { "outbound" },
                    state: if s.answered.is_some() {
                        "answered"
                    } else {
                        "ringing"
                    },
                    age_secs: round_ms(now.saturating_duration_since(s.started)),
                    answered_secs: s
                        .answered
                        .map(|a| round_ms(now.saturating_duration_since(a))),
                    client_codec: s.client_codec,
                    sip_codec: s.sip_codec,
                    transcoding: s.transcoding,
                    legs: s.legs,
                }
            })
            .collect();
        out.sort_by_key(|c| c.id);
        out
    }

    fn finished(&self, key: &CallKey, id: u64) {
        let mut reg = self.lock();
        if reg.by_key.get(key).is_some_and(|c| c.id == id) {
            reg.by_key.remove(key);
        }
        if let Some(n) = reg.per_user.get_mut(&key.identity) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                reg.per_user.remove(&key.identity);
            }
        }
        let left = reg.by_key.len();
        drop(reg);
        self.ctx.done.send_replace(left);
    }

    /// Refuses new calls and hangs up every call; returns when all call tasks are done or
    /// `deadline` passed.
    pub async fn shutdown(&self, grace: Duration) {
        let calls: Vec<CallRef> = {
            let mut reg = self.lock();
            reg.closed = true;
            reg.by_key.values().cloned().collect()
        };
        let mut rx = self.ctx.done.subscribe();
        if !grace.is_zero() {
            let _ = tokio::time::timeout(grace, rx.wait_for(|_| self.active() == 0)).await;
        }
        for call in &calls {
            let _ = call.control.send(Control::Shutdown);
        }
        let _ =
            tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|_| self.active() == 0)).await;
    }
}

enum Direction {
    Outbound(Route),
    Inbound(Inbound),
}

struct Leg {
    sink: Option<ClientSink>,
    /// Offered an inbound call and not answered (yet).
    offered: bool,
    /// Transcoder toward this leg's client, when it cannot take the SIP codec: (from, to).
    xcode: Option<(Codec, Codec, TranscodeHandle)>,
    /// Loss concealment of a pass-through leg (a transcoder from the SIP codec to itself).
    concealer: Option<(Codec, TranscodeHandle)>,
}

impl Leg {
    fn new(sink: Option<ClientSink>, offered: bool) -> Leg {
        Leg {
            sink,
            offered,
            xcode: None,
            concealer: None,
        }
    }
}

/// Seconds, to the millisecond.
fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// A call's media plumbing beyond the core: transcoding (on the pool), loss concealment, and
/// the codec-pair bookkeeping for logs and metrics.
struct Media {
    /// Frames transcoded toward SIP come back here (from the pool's worker).
    xcoded_tx: mpsc::Sender<MediaFrame>,
    xcoded_rx: mpsc::Receiver<MediaFrame>,
    /// Transcoder of client audio toward SIP: (from, to), `to` None while it only decodes
    /// (warming its decoder before the SIP answer).
    to_sip: Option<(Codec, Option<Codec>, TranscodeHandle)>,
    /// The (from, to) pair that could not be built toward SIP (`to` None: warming), tried
    /// and logged once.
    refused: Option<(Codec, Option<Codec>)>,
    /// RTP packets missing before the next frame toward the client.
    pending_loss: u16,
    /// Last frame toward the clients (primes a pass-through leg's concealer).
    last_audio: Option<MediaFrame>,
    /// Codec the client sends (first seen), and the one sent to the first client leg.
    client_in: Option<Codec>,
    client_out: Option<Codec>,
    /// Labels of the codec-pair gauge this call holds, and whether it counts as transcoding.
    pair: Option<(&'static str, &'static str)>,
    transcoding: bool,
    /// What `GET /calls` shows.
    status: StatusRef,
}

impl Media {
    fn new(
        xcoded_tx: mpsc::Sender<MediaFrame>,
        xcoded_rx: mpsc::Receiver<MediaFrame>,
        status: StatusRef,
    ) -> Media {
        Media {
            xcoded_tx,
            xcoded_rx,
            to_sip: None,
            refused: None,
            pending_loss: 0,
            last_audio: None,
            client_in: None,
            client_out: None,
            pair: None,
            transcoding: false,
            status,
        }
    }

    /// Updates the codec-pair gauge and logs the pair when it changes.
    fn note_pair(&mut self, sip: Option<Codec>, transcoding: bool) {
        let Some(sip) = sip else { return };
        let Some(client) = self.client_in.or(self.client_out) else {
            return;
        };
        let pair = (client.name(), sip.name());
        let was = self.transcoding;
        self.transcoding |= transcoding;
        if self.pair == Some(pair) && was == self.transcoding {
            return;
        }
        if let Some((c, s)) = self.pair.replace(pair) {
            metrics::gauge!(m::CALLS_BY_CODEC_PAIR, m::codec_label::CLIENT => c, m::codec_label::SIP => s)
                .decrement(1.0);
        }
        metrics::gauge!(m::CALLS_BY_CODEC_PAIR, m::codec_label::CLIENT => pair.0, m::codec_label::SIP => pair.1)
            .increment(1.0);
        if self.transcoding && !was {
            metrics::gauge!(m::TRANSCODING_CALLS).increment(1.0);
        }
        {
            let mut s = lock_status(&self.status);
            s.client_codec = Some(pair.0);
            s.sip_codec = Some(pair.1);
            s.transcoding = self.transcoding;
        }
        info!(
            client = ?client,
            sip = ?sip,
            transcoding = self.transcoding,
            "codec pair {}/{}",
            pair.0,
            pair.1
        );
    }

    fn release(&mut self) {
        if let Some((c, s)) = self.pair.take() {
            metrics::gauge!(m::CALLS_BY_CODEC_PAIR, m::codec_label::CLIENT => c, m::codec_label::SIP => s)
                .decrement(1.0);
        }
        if std::mem::take(&mut self.transcoding) {
            metrics::gauge!(m::TRANSCODING_CALLS).decrement(1.0);
        }
    }

    /// A client frame in a codec the SIP leg does not use: onto the pool toward `sip`.
    fn transcode_to_sip(&mut self, frame: MediaFrame, sip: Option<Codec>, ptime: Duration) {
        let Some(sip) = sip else { return };
        let from = frame.codec;
        if self.refused == Some((from, Some(sip))) {
            // Tried once; building coders again for every frame would only churn memory.
            metrics::counter!(m::PACKETS_DROPPED_TOTAL, m::label::REASON => m::drop_reason::UNSUPPORTED_CODEC)
                .increment(1);
            return;
        }
        match &mut self.to_sip {
            Some((f, Some(t), _)) if *f == from && *t == sip => {}
            // The decoder has followed the stream since before the answer: keep it.
            Some((f, to @ None, h))
                if *f == from
                    && h.submit(Work::Retarget {
                        to: sip,
                        frame: ptime,
                    }) =>
            {
                *to = Some(sip);
                self.note_pair(Some(sip), true);
            }
            _ => {
                self.to_sip = None;
                match new_session(Link::Lossy, from, sip, ptime, self.xcoded_sink()) {
                    Ok(h) => self.to_sip = Some((from, Some(sip), h)),
                    Err(e) => {
                        metrics::counter!(m::PACKETS_DROPPED_TOTAL, m::label::REASON => m::drop_reason::UNSUPPORTED_CODEC)
                            .increment(1);
                        self.refused = Some((from, Some(sip)));
                        warn!(error = %e, "client audio cannot be transcoded to {}", sip.name());
                        return;
                    }
                }
                self.note_pair(Some(sip), true);
            }
        }
        if let Some((_, _, h)) = &self.to_sip {
            h.submit(Work::Frame(frame));
        }
    }

    /// Client audio before the SIP answer, in a codec whose decoder keeps state: decoded on
    /// the pool from the stream's first frame, so the transcoder toward SIP that the answer
    /// starts continues that decoder instead of joining mid-stream.
    fn warm_to_sip(&mut self, frame: MediaFrame, ptime: Duration) {
        let from = frame.codec;
        if self.refused == Some((from, None)) {
            return;
        }
        if !matches!(&self.to_sip, Some((f, None, _)) if *f == from) {
            self.to_sip = None;
            let Some(pool) = TranscodePool::global() else {
                return;
            };
            match Transcoder::warming(from, ptime) {
                Ok(t) => self.to_sip = Some((from, None, pool.session(t, self.xcoded_sink()))),
                Err(e) => {
                    // Once per codec, not per frame.
                    self.refused = Some((from, None));
                    debug!(error = %e, "client audio not decoded before the answer");
                    return;
                }
            }
        }
        if let Some((_, _, h)) = &self.to_sip {
            h.submit(Work::Frame(frame));
        }
    }

    /// Where the pool's frames toward SIP go: back to the call task.
    fn xcoded_sink(&self) -> crate::transcode::pool::Sink {
        let tx = self.xcoded_tx.clone();
        Box::new(move |f: MediaFrame| {
            if tx.try_send(f).is_err() {
                metrics::counter!(m::PACKETS_DROPPED_TOTAL, m::label::REASON => m::drop_reason::QUEUE_FULL)
                    .increment(1);
            }
        })
    }
}

/// A transcoder from `from` to `to` on the process's pool.
fn new_session(
    link: Link,
    from: Codec,
    to: Codec,
    frame: Duration,
    sink: crate::transcode::pool::Sink,
) -> Result<TranscodeHandle, String> {
    let t = Transcoder::toward(link, from, to, frame).map_err(|e| e.to_string())?;
    let pool = TranscodePool::global().ok_or("no transcoding pool")?;
    Ok(pool.session(t, sink))
}

/// Whether a codec's frames can be concealed by repeating them (G.711, L16, G.722).
fn concealable(codec: Codec) -> bool {
    matches!(
        codec,
        Codec::Pcmu | Codec::Pcma | Codec::L16 { .. } | Codec::G722
    )
}

struct CallTask {
    calls: Calls,
    /// This call's own handle, handed to clients with every message.
    me: CallRef,
    key: CallKey,
    id: u64,
    direction: Direction,
    ports: PortPair,
    audio_rx: mpsc::Receiver<MediaFrame>,
    control_rx: mpsc::UnboundedReceiver<Control>,
    legs: HashMap<LegId, Leg>,
    media: Media,
}

impl CallTask {
    fn settings(&self) -> CallSettings {
        let c = &self.calls.ctx.config;
        CallSettings {
            rtp_ip: c.rtp_advertised_ip(),
            rtp_port: self.ports.rtp_port,
            ptime: Duration::from_millis(u64::from(c.rtp.ptime_ms)),
            max_delay: Duration::from_millis(c.rtp.max_delay_ms),
            inactivity_timeout: Duration::from_secs(c.rtp.inactivity_timeout_secs),
            ring_timeout: Duration::from_secs(c.sip.ring_timeout_secs),
            telephone_event_pt: c.rtp.telephone_event_pt,
            dtmf_info: c.sip.dtmf_info,
            seed: rand::random(),
        }
    }

    fn outgoing(&self, route: &Route, sdp: Vec<u8>) -> OutgoingCall {
        let c = &self.calls.ctx.config;
        let user = self.calls.ctx.authority.user(&self.key.identity);
        let domain = c
            .sip
            .domain
            .clone()
            .unwrap_or_else(|| c.sip_advertised().to_string());
        let from_user = user
            .and_then(|u| u.sip_username.clone())
            .unwrap_or_else(|| self.key.identity.name().to_string());
        OutgoingCall {
            request_uri: route.request_uri.clone(),
            from_uri: format!("sip:{from_user}@{domain}"),
            from_display: user.and_then(|u| u.display_name.clone()),
            to_uri: route.request_uri.clone(),
            next_hop: route.next_hop,
            sdp,
            credentials: user.and_then(|u| {
                Some(Credentials {
                    username: u.sip_username.clone()?,
                    password: u.sip_password.clone()?,
                    realm: u.sip_realm.clone(),
                })
            }),
        }
    }

    async fn run(mut self) {
        let started = Instant::now();
        let (sip_tx, mut sip_rx) = mpsc::unbounded_channel();
        metrics::gauge!(m::CALLS_ACTIVE).increment(1.0);
        let sip = self.calls.ctx.sip.clone();
        let mut outcome = "failed";
        let (mut core, handle) = match &self.direction {
            Direction::Outbound(route) => {
                let core = CallCore::new(started, self.settings())
                    .with_codecs(&self.calls.ctx.config.rtp_codecs());
                let handle = sip
                    .invite(self.outgoing(route, core.offer_sdp()), sip_tx)
                    .await;
                info!(
                    rtp_port = self.ports.rtp_port,
                    "dialling {}", route.request_uri
                );
                (core, handle)
            }
            Direction::Inbound(inbound) => {
                sip.attach(inbound.handle, sip_tx);
                let handle = Some(inbound.handle);
                let codecs = self.calls.ctx.config.rtp_codecs();
                match CallCore::new_incoming_with(started, self.settings(), &codecs, &inbound.offer)
                {
                    Ok(core) => {
                        info!(rtp_port = self.ports.rtp_port, from = %inbound.from, "inbound call offered to {} session(s)", self.legs.len());
                        sip.respond(inbound.handle, 180, None);
                        let codec = core.codec().unwrap_or(crate::media::Codec::Pcmu);
                        let from = inbound.from.clone();
                        self.to_clients(ClientCommand::Incoming { from, codec });
                        (core, handle)
                    }
                    Err(code) => {
                        sip.respond(inbound.handle, code, None);
                        let mut core = CallCore::new(started, self.settings());
                        core.sip_failed(code, "no common audio codec in the offer");
                        (core, None)
                    }
                }
            }
        };
        let mut rtp_buf = BytesMut::with_capacity(64 * 1024);
        let mut rtcp_buf = vec![0u8; 2048];
        let mut finished = false;
        if handle.is_none() && core.state() != super::State::Ended {
            core.sip_failed(503, "SIP endpoint unavailable");
        }
        while !finished {
            if rtp_buf.capacity() - rtp_buf.len() < 2048 {
                rtp_buf.reserve(64 * 1024);
            }
            let wake = core.poll_timeout();
            tokio::select! {
                r = self.ports.rtp.recv_buf_from(&mut rtp_buf) => {
                    if let Ok((n, source)) = r {
                        let packet: Bytes = rtp_buf.split_to(n).freeze();
                        metrics::counter!(m::PACKETS_TOTAL, "leg" => "rtp", "direction" => "in").increment(1);
                        metrics::counter!(m::BYTES_TOTAL, "leg" => "rtp", "direction" => "in").increment(n as u64);
                        core.rtp_received(Instant::now(), source, packet);
                    }
                }
                r = self.ports.rtcp.recv_from(&mut rtcp_buf) => {
                    if let Ok((n, source)) = r {
                        core.rtcp_received(Instant::now(), source, rtcp_buf.get(..n).unwrap_or_default());
                    }
                }
                Some(frame) = self.audio_rx.recv() => {
                    if self.media.client_in != Some(frame.codec) {
                        self.media.client_in = Some(frame.codec);
                        let sip = core.codec();
                        let swap_or_same = sip == Some(frame.codec)
                            || matches!((frame.codec, sip), (Codec::Pcmu, Some(Codec::Pcma)) | (Codec::Pcma, Some(Codec::Pcmu)));
                        self.media.note_pair(sip, !swap_or_same);
                    }
                    core.client_audio(Instant::now(), frame)
                }
                Some(frame) = self.media.xcoded_rx.recv() => core.client_audio(Instant::now(), frame),
                ctl = self.control_rx.recv() => self.on_control(&mut core, ctl),
                Some(ev) = sip_rx.recv() => {
                    let now = Instant::now();
                    match ev {
                        SipCallEvent::Progress { code, sdp } => core.sip_progress(now, code, sdp.as_deref()),
                        SipCallEvent::Answered { sdp } => {
                            core.sip_answered(now, &sdp);
                            if core.state() == super::State::Answered {
                                outcome = "answered";
                                lock_status(&self.me.status).answered = Some(now);
                                metrics::histogram!(m::CALL_SETUP_SECONDS).record((now - started).as_secs_f64());
                            }
                        }
                        SipCallEvent::Confirmed => {}
                        SipCallEvent::Failed { code, reason } => {
                            info!(code, %reason, "call failed");
                            core.sip_failed(code, &reason);
                        }
                        SipCallEvent::Ended { by_remote } => core.sip_ended(by_remote),
                        SipCallEvent::Reinvite { sdp } => core.sip_reinvite(now, &sdp),
                        SipCallEvent::ReinviteAnswered { sdp } => core.sip_reinvite_answered(&sdp),
                        SipCallEvent::ReinviteFailed { code } => {
                            debug!(code, "re-INVITE refused; the call goes on");
                            core.sip_reinvite_failed();
                        }
                        SipCallEvent::Dtmf { digit } => core.sip_dtmf(digit),
                    }
                }
                _ = sleep_until_opt(wake) => core.handle_timeout(Instant::now(), SystemTime::now()),
            }
            while let Some(out) = core.poll_output() {
                match out {
                    Output::Rtp {
                        dest,
                        header,
                        payload,
                    } => send_rtp(&self.ports.rtp, dest, &header, &payload),
                    Output::RtpOwned { dest, packet } => {
                        let _ = self.ports.rtp.try_send_to(&packet, dest);
                    }
                    Output::Rtcp { dest, packet, len } => {
                        let _ = self
                            .ports
                            .rtcp
                            .try_send_to(packet.get(..len).unwrap_or_default(), dest);
                    }
                    Output::Client(ClientCommand::Audio(frame)) => {
                        self.audio_to_clients(frame, core.codec())
                    }
                    Output::Client(cmd) => self.to_clients(cmd),
                    Output::TranscodeToSip(frame) => {
                        let ptime =
                            Duration::from_millis(u64::from(self.calls.ctx.config.rtp.ptime_ms));
                        self.media.transcode_to_sip(frame, core.codec(), ptime)
                    }
                    Output::WarmDecoder(frame) => {
                        let ptime =
                            Duration::from_millis(u64::from(self.calls.ctx.config.rtp.ptime_ms));
                        self.media.warm_to_sip(frame, ptime)
                    }
                    Output::ClientLoss { packets } => self.media.pending_loss = packets,
                    Output::SipHangup => {
                        if let Some(h) = handle {
                            sip.hangup(h);
                        }
                        if outcome == "failed" {
                            outcome = "cancelled";
                        }
                    }
                    Output::SipRespond { code, sdp } => {
                        if let Some(h) = handle {
                            sip.respond(h, code, sdp);
                        }
                        if (200..300).contains(&code) {
                            outcome = "answered";
                            lock_status(&self.me.status).answered = Some(Instant::now());
                            metrics::histogram!(m::CALL_SETUP_SECONDS)
                                .record(started.elapsed().as_secs_f64());
                        }
                    }
                    Output::SipReinvite { sdp } => {
                        if let Some(h) = handle {
                            sip.reinvite(h, sdp);
                        }
                    }
                    Output::SipInfoDtmf { digit } => {
                        if let Some(h) = handle {
                            sip.info_dtmf(h, digit);
                        }
                    }
                    Output::SipReinviteAnswer { sdp } => {
                        if let Some(h) = handle {
                            sip.respond_reinvite(h, 200, Some(sdp));
                        }
                    }
                    Output::Dropped(reason) => {
                        if reason == m::drop_reason::LATE {
                            // The pacer's bound toward SIP.
                            metrics::counter!(m::PACKETS_DROPPED_TOTAL, m::label::REASON => reason, m::label::LEG => m::leg::RTP)
                                .increment(1);
                        } else {
                            metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => reason)
                                .increment(1);
                        }
                    }
                    Output::Forwarded { toward_sip, bytes } => {
                        if toward_sip {
                            metrics::counter!(m::PACKETS_TOTAL, "leg" => "rtp", "direction" => "out").increment(1);
                            metrics::counter!(m::BYTES_TOTAL, "leg" => "rtp", "direction" => "out")
                                .increment(bytes as u64);
                        }
                    }
                    Output::Finished => finished = true,
                }
            }
        }
        info!(
            outcome,
            secs = started.elapsed().as_secs_f32(),
            "call ended"
        );
        self.media.release();
        metrics::counter!(m::CALLS_TOTAL, "outcome" => outcome).increment(1);
        metrics::gauge!(m::CALLS_ACTIVE).decrement(1.0);
        self.calls.finished(&self.key, self.id);
    }

    fn on_control(&mut self, core: &mut CallCore, ctl: Option<Control>) {
        self.on_control_inner(core, ctl);
        lock_status(&self.me.status).legs = self.legs.len();
    }

    fn on_control_inner(&mut self, core: &mut CallCore, ctl: Option<Control>) {
        match ctl {
            Some(Control::Attach { leg, sink }) => {
                if let Some(s) = &sink {
                    replay_state(core, leg, &self.me, s);
                }
                self.legs.insert(leg, Leg::new(sink, false));
            }
            Some(Control::Detach { leg }) => {
                self.legs.remove(&leg);
                if self.legs.is_empty() {
                    debug!("every client leg left");
                    core.client_hangup();
                }
            }
            Some(Control::Hangup) => core.client_hangup(),
            Some(Control::Dtmf { leg, digits }) => {
                if let Err(why) = core.client_dtmf(Instant::now(), &digits) {
                    self.to_leg(
                        leg,
                        ClientCommand::Error {
                            code: "dtmf_unavailable",
                            reason: why.to_string(),
                        },
                    );
                }
            }
            Some(Control::Answer { leg }) => {
                let offered = self.legs.get(&leg).is_some_and(|l| l.offered);
                if core.state() != super::State::Incoming || !offered {
                    self.to_leg(
                        leg,
                        ClientCommand::Error {
                            code: "not_ringing",
                            reason: "this call is not ringing".into(),
                        },
                    );
                    return;
                }
                // The first answer wins; every other session is told and let go.
                let others: Vec<LegId> = self.legs.keys().copied().filter(|l| *l != leg).collect();
                for other in others {
                    self.to_leg(other, ClientCommand::AnsweredElsewhere);
                    self.legs.remove(&other);
                }
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.offered = false;
                }
                core.client_answer(Instant::now());
            }
            Some(Control::Reject { leg, code }) => {
                if core.state() != super::State::Incoming {
                    return;
                }
                self.legs.remove(&leg);
                if !self.legs.values().any(|l| l.offered) {
                    core.client_reject(code, "declined");
                }
            }
            Some(Control::Hold { hold }) => core.client_hold(hold),
            Some(Control::Shutdown) => core.shutdown(),
            None => core.client_hangup(),
        }
    }

    fn to_leg(&self, leg: LegId, cmd: ClientCommand) {
        if let Some(sink) = self.legs.get(&leg).and_then(|l| l.sink.as_ref()) {
            let _ = sink.control.send(ToClient {
                leg,
                call: self.me.clone(),
                cmd,
            });
        }
    }

    /// Sends to every attached client once, even when one connection holds several legs
    /// (a publish and a play stream) with the same sink.
    fn to_clients(&self, cmd: ClientCommand) {
        let mut seen: Vec<&ClientSink> = Vec::with_capacity(self.legs.len());
        for (leg, l) in &self.legs {
            let Some(sink) = l.sink.as_ref() else {
                continue;
            };
            if seen.iter().any(|s| s.control.same_channel(&sink.control)) {
                continue;
            }
            seen.push(sink);
            match &cmd {
                // Each client is told the codec it gets.
                ClientCommand::Answered { sip, .. } => {
                    let _ = sink.control.send(ToClient {
                        leg: *leg,
                        call: self.me.clone(),
                        cmd: ClientCommand::Answered {
                            codec: sink.caps.choose(*sip),
                            sip: *sip,
                        },
                    });
                }
                ClientCommand::Audio(frame) => {
                    // A full or stale queue drops its oldest frames itself (counted there); a
                    // closed one means the connection is going away.
                    let _ = sink.audio.send((*leg, frame.clone()));
                }
                other => {
                    let _ = sink.control.send(ToClient {
                        leg: *leg,
                        call: self.me.clone(),
                        cmd: other.clone(),
                    });
                }
            }
        }
    }
}

impl CallTask {
    /// Audio from RTP (in the SIP codec) to every attached client once: as it is where the
    /// client takes that codec (zero-copy), through the leg's transcoder on the pool where it
    /// does not. Packets lost before it are concealed on either path.
    fn audio_to_clients(&mut self, frame: MediaFrame, sip: Option<Codec>) {
        let loss = std::mem::take(&mut self.media.pending_loss);
        let sip = sip.unwrap_or(frame.codec);
        let mut seen: Vec<mpsc::UnboundedSender<ToClient>> = Vec::with_capacity(self.legs.len());
        let mut first_out = None;
        let mut transcoding = false;
        for (id, leg) in self.legs.iter_mut() {
            let Some(sink) = leg.sink.as_ref().filter(|s| s.wants_audio) else {
                continue;
            };
            if seen.iter().any(|s| s.same_channel(&sink.control)) {
                continue;
            }
            seen.push(sink.control.clone());
            let want = sink.caps.choose(frame.codec);
            first_out.get_or_insert(want);
            if want == frame.codec {
                if loss > 0 && concealable(frame.codec) {
                    if let Some(last) = &self.media.last_audio {
                        if !matches!(&leg.concealer, Some((c, _)) if *c == frame.codec) {
                            let audio = sink.audio.clone();
                            let leg_id = *id;
                            let out = Box::new(move |f: MediaFrame| {
                                let _ = audio.send((leg_id, f));
                            });
                            let frame_len = Duration::from_millis(
                                u64::from(
                                    frame.codec.ticks_for_len(last.payload.len()).unwrap_or(160),
                                ) * 1000
                                    / u64::from(frame.codec.clock_rate()),
                            );
                            leg.concealer = new_session(
                                Link::Reliable,
                                frame.codec,
                                frame.codec,
                                frame_len,
                                out,
                            )
                            .ok()
                            .map(|h| (frame.codec, h));
                        }
                        if let Some((_, h)) = &leg.concealer {
                            h.submit(Work::PrimeConceal {
                                last: last.clone(),
                                lost: u32::from(loss),
                            });
                        }
                    }
                }
                // A full or stale queue drops its oldest frames itself (counted there); a
                // closed one means the connection is going away.
                let _ = sink.audio.send((*id, frame.clone()));
                continue;
            }
            let law_swap = matches!(
                (frame.codec, want),
                (Codec::Pcmu, Codec::Pcma) | (Codec::Pcma, Codec::Pcmu)
            );
            transcoding |= !law_swap;
            if !matches!(&leg.xcode, Some((f, t, _)) if *f == frame.codec && *t == want) {
                let audio = sink.audio.clone();
                let leg_id = *id;
                let out = Box::new(move |f: MediaFrame| {
                    let _ = audio.send((leg_id, f));
                });
                // One Speex frame per FLV tag: ffmpeg's own Speex decoder plays only the first
                // frame of a tag.
                let ptime = match want {
                    Codec::Speex { .. } => Duration::from_millis(20),
                    _ => Duration::from_millis(u64::from(self.calls.ctx.config.rtp.ptime_ms)),
                };
                match new_session(Link::Reliable, frame.codec, want, ptime, out) {
                    Ok(h) => {
                        debug!(
                            from = frame.codec.name(),
                            to = want.name(),
                            "transcoding toward a client"
                        );
                        leg.xcode = Some((frame.codec, want, h));
                    }
                    Err(e) => {
                        warn!(error = %e, "no transcoder toward the client");
                        leg.xcode = None;
                    }
                }
            }
            if let Some((_, _, h)) = &leg.xcode {
                h.submit(if loss > 0 {
                    Work::FrameAfterLoss {
                        frame: frame.clone(),
                        lost: u32::from(loss),
                    }
                } else {
                    Work::Frame(frame.clone())
                });
            }
        }
        if self.media.client_out.is_none() {
            self.media.client_out = first_out;
        }
        if self.media.pair.is_none() || (transcoding && !self.media.transcoding) {
            self.media.note_pair(Some(sip), transcoding);
        }
        self.media.last_audio = Some(frame);
    }
}

/// A leg that joins late learns where the call stands.
fn replay_state(core: &CallCore, leg: LegId, call: &CallRef, sink: &ClientSink) {
    let cmd = match core.state() {
        super::State::Early => ClientCommand::Ringing { code: 180 },
        super::State::Answered => match core.codec() {
            Some(sip) => ClientCommand::Answered {
                codec: sink.caps.choose(sip),
                sip,
            },
            None => return,
        },
        _ => return,
    };
    let _ = sink.control.send(ToClient {
        leg,
        call: call.clone(),
        cmd,
    });
}

/// Sends header + payload as one datagram without joining them in memory (sendmsg with two
/// iovecs), so the payload slice is never copied in user space.
fn send_rtp(socket: &UdpSocket, dest: SocketAddr, header: &[u8], payload: &[u8]) {
    let iov = [IoSlice::new(header), IoSlice::new(payload)];
    let addr = socket2::SockAddr::from(dest);
    let r = socket.try_io(Interest::WRITABLE, || {
        socket2::SockRef::from(socket).send_to_vectored(&iov, &addr)
    });
    if let Err(e) = r {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            metrics::counter!(m::PACKETS_DROPPED_TOTAL, "reason" => "socket_full").increment(1);
        } else {
            warn!(%dest, error = %e, "rtp send failed");
        }
    }
}
