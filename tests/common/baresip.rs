//! baresip (v1.0 as packaged by Debian) as a headless SIP user agent on loopback, driven over
//! its ctrl_tcp JSON socket.
//!
//! Facts this relies on (verified against baresip 1.0.0):
//! - `net_interface 127.0.0.1` (an address, not `lo`: baresip cannot resolve `lo`) makes it pick
//!   127.0.0.1 as its local address, so Contact/Via and the SDP `c=`/`o=` lines say 127.0.0.1;
//!   `sip_listen 127.0.0.1:P` binds UDP+TCP on P **and TLS on P+1**, so P+1 must be free too.
//! - `dns_server 127.0.0.1:53` keeps any DNS query on loopback (none is made for IP URIs).
//! - Modules: g711 (PCMU/PCMA), aufile (source: a mono S16LE WAV at 8000 Hz, stops at EOF),
//!   aubridge (a null player), sndfile (audio filter recording each call to
//!   `<snd_path>/dump-<YYYY-MM-DD-hh-mm-ss>-dec.wav` = what it hears and `-enc.wav` = what it
//!   sends, 16-bit mono 8 kHz), menu (provides the dial/hangup/accept commands), ctrl_tcp.
//! - ctrl_tcp speaks netstrings (`<len>:<json>,`). Command: `{"command":"dial",
//!   "params":"sip:bob@127.0.0.1:5062","token":"t1"}`; response: `{"response":true,"ok":true,
//!   "data":"...","token":"t1"}`; events: `{"event":true,"type":"CALL_ESTABLISHED","class":"call",
//!   "accountaor":"...","direction":"outgoing","peeruri":"...","id":"...","param":"..."}`.
//!   Event types seen: CALL_LOCAL_SDP, CALL_RINGING, CALL_PROGRESS, CALL_REMOTE_SDP,
//!   CALL_ESTABLISHED, CALL_RTPESTAB, CALL_RTCP, CALL_INCOMING, CALL_CLOSED (param = reason, e.g.
//!   "486 Busy Here" or "Connection reset by user"), REGISTER_OK, REGISTER_FAIL.
//! - Account line: `<sip:user@127.0.0.1:P>;regint=0;answermode=auto` (no registrar), or
//!   `<sip:user@<registrar>>;auth_pass=...;regint=60;answermode=...` to register.
//! - Started as `stdbuf -oL -eL baresip -4 -v -s -f <dir>` (IPv4 only, verbose, SIP trace;
//!   line-buffered so its log file is current while it runs).
//! - `hangup` rejects an incoming unanswered call (baresip answers it with 486 Busy Here).

use super::audio::{write_tone_wav, write_wav_s16};
use super::procs::{free_port_block, free_tcp_port, loopback, wait_until, Child, TestDir};
use std::collections::VecDeque;
use std::fs;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What baresip does with an incoming call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Answers at once (`answermode=auto`).
    Auto,
    /// Rings until [`Baresip::answer`] or [`Baresip::hangup`].
    Manual,
    /// Rejects every incoming call (486 Busy Here).
    RejectBusy,
}

/// Register with a registrar (e.g. [`super::kamailio::Kamailio`]) using digest auth.
#[derive(Debug, Clone)]
pub struct Registration {
    pub registrar: SocketAddr,
    pub user: String,
    pub pass: String,
}

/// Options for [`Baresip::start`].
#[derive(Debug, Clone)]
pub struct BaresipOpts {
    /// Label used in file names and logs.
    pub name: String,
    /// SIP user part of the account (ignored when `register_to` gives one).
    pub user: String,
    /// WAV to play as microphone (mono S16LE 8000 Hz, see [`super::audio::write_tone_wav`]);
    /// playback stops at its end. `None` plays 60 s of silence (RTP still flows).
    pub play_wav: Option<PathBuf>,
    /// Record each call (`<dir>/rec/dump-*-dec.wav`).
    pub record: bool,
    pub answer: Answer,
    pub register_to: Option<Registration>,
    /// Credentials answered to a 401/407 when not registering (e.g. for a SIPp digest UAS).
    pub auth: Option<(String, String)>,
    /// Parent directory; `None` creates a fresh [`TestDir`] owned by the instance.
    pub dir: Option<PathBuf>,
    /// Audio codec modules to load, in preference order (baresip offers/answers in this
    /// order): `g711.so` (PCMU, PCMA) by default; also `g722.so`, `l16.so`, `opus.so`.
    pub codec_modules: Vec<String>,
}

impl Default for BaresipOpts {
    fn default() -> Self {
        BaresipOpts {
            name: "baresip".into(),
            user: "user".into(),
            play_wav: None,
            record: false,
            answer: Answer::Auto,
            register_to: None,
            auth: None,
            dir: None,
            codec_modules: vec!["g711.so".into()],
        }
    }
}

/// One ctrl_tcp event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `type`, e.g. "CALL_ESTABLISHED".
    pub kind: String,
    /// `param`, e.g. the close reason of CALL_CLOSED.
    pub param: String,
    /// `peeruri`.
    pub peer: String,
    /// The whole JSON text.
    pub raw: String,
}

#[derive(Debug, Default)]
struct Shared {
    /// Events not yet taken by `wait_for_event`.
    pending: VecDeque<Event>,
    /// Every event, in order.
    history: Vec<Event>,
    /// Responses (token, ok, data).
    responses: Vec<(String, bool, String)>,
    closed: bool,
}

type SharedState = Arc<(Mutex<Shared>, Condvar)>;

impl BaresipOpts {
    /// A phone `user` living in `dir` that auto-answers, records what it hears and plays a
    /// `freq` Hz tone for `secs` (written to `dir/tone<freq>.wav`).
    pub fn answering_with_tone(dir: &Path, user: &str, freq: f64, secs: f64) -> BaresipOpts {
        let tone = dir.join(format!("tone{freq}.wav"));
        write_tone_wav(&tone, freq, secs, 8000).expect("write the phone's tone");
        BaresipOpts {
            name: user.into(),
            user: user.into(),
            record: true,
            answer: Answer::Auto,
            play_wav: Some(tone),
            dir: Some(dir.to_path_buf()),
            ..Default::default()
        }
    }
}

/// A running baresip; killed on drop.
pub struct Baresip {
    child: Child,
    dir: PathBuf,
    _own_dir: Option<TestDir>,
    _rec_dir: TestDir,
    sip_port: u16,
    user: String,
    ctrl: Arc<Mutex<TcpStream>>,
    state: SharedState,
    token_seq: u64,
}

impl std::fmt::Debug for Baresip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Baresip")
            .field("dir", &self.dir)
            .field("sip_port", &self.sip_port)
            .finish()
    }
}

const CMD_TIMEOUT: Duration = Duration::from_secs(5);

impl Baresip {
    /// Starts baresip, waits (≤ 5 s) for its control socket, and when registering, for
    /// REGISTER_OK (≤ 5 s). Panics with its log tail on failure.
    pub fn start(opts: BaresipOpts) -> Baresip {
        let mut last_err = String::new();
        for _attempt in 0..3 {
            match Self::try_start(&opts) {
                Ok(b) => return b,
                Err(e) => last_err = e,
            }
        }
        panic!("baresip {} failed to start: {last_err}", opts.name);
    }

    fn try_start(opts: &BaresipOpts) -> Result<Baresip, String> {
        let (own_dir, parent) = match &opts.dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = TestDir::new(&opts.name);
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let dir = parent.join(format!(
            "{}-{}",
            opts.name,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // sndfile writes `<snd_path>/dump-<date>-dec.wav` into a 128-byte buffer; keep the real
        // directory short and link it from the instance directory for whoever reads the logs.
        let rec_dir = TestDir::short("rec");
        let rec = rec_dir.path().to_path_buf();
        std::os::unix::fs::symlink(&rec, dir.join("rec")).map_err(|e| e.to_string())?;
        let sip_port = free_port_block(2);
        let ctrl_port = free_tcp_port();
        let play = match &opts.play_wav {
            Some(p) => p.clone(),
            None => {
                // aufile needs a file; 60 s of silence keeps RTP flowing like a muted phone.
                let p = dir.join("silence.wav");
                write_wav_s16(&p, 8000, 1, &vec![0i16; 8000 * 60]).map_err(|e| e.to_string())?;
                p
            }
        };
        let source = format!("aufile,{}", play.display());
        let codec_modules: String = opts
            .codec_modules
            .iter()
            .map(|m| format!("module {m}\n"))
            .collect();
        let mut config = format!(
            "poll_method epoll\n\
             call_local_timeout 120\n\
             call_max_calls 4\n\
             sip_listen 127.0.0.1:{sip_port}\n\
             net_interface 127.0.0.1\n\
             dns_server 127.0.0.1:53\n\
             audio_player aubridge,nil\n\
             audio_source {source}\n\
             audio_alert aubridge,nil\n\
             ausrc_srate 8000\n\
             auplay_srate 8000\n\
             ausrc_channels 1\n\
             auplay_channels 1\n\
             rtp_tos 0\n\
             rtcp_mux no\n\
             jitter_buffer_delay 5-10\n\
             module_path /usr/lib/baresip/modules\n\
             {codec_modules}\
             module aufile.so\n\
             module aubridge.so\n\
             module_tmp account.so\n\
             module_app menu.so\n\
             module_app ctrl_tcp.so\n\
             ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n\
             snd_path {}\n",
            rec.display()
        );
        if opts.record {
            config.push_str("module sndfile.so\n");
        }
        let answermode = match opts.answer {
            Answer::Auto => "auto",
            Answer::Manual | Answer::RejectBusy => "manual",
        };
        let (user, account) = match &opts.register_to {
            Some(r) => (
                r.user.clone(),
                format!(
                    "<sip:{}@{}>;auth_pass={};regint=60;answermode={answermode}\n",
                    r.user, r.registrar, r.pass
                ),
            ),
            None => {
                let auth = match &opts.auth {
                    Some((u, p)) => format!(";auth_user={u};auth_pass={p}"),
                    None => String::new(),
                };
                (
                    opts.user.clone(),
                    format!(
                        "<sip:{}@127.0.0.1:{sip_port}>{auth};regint=0;answermode={answermode}\n",
                        opts.user
                    ),
                )
            }
        };
        fs::write(dir.join("config"), config).map_err(|e| e.to_string())?;
        fs::write(dir.join("accounts"), account).map_err(|e| e.to_string())?;
        fs::write(dir.join("contacts"), "").map_err(|e| e.to_string())?;

        // stdbuf: line-buffered stdout, so the log file is current while baresip runs.
        let mut cmd = Command::new("stdbuf");
        cmd.args(["-oL", "-eL", "baresip"])
            .arg("-4")
            .arg("-v")
            .arg("-f")
            .arg(&dir)
            .current_dir(&dir);
        let mut child = Child::spawn(&opts.name, &mut cmd, &dir);

        let mut stream = None;
        let up = wait_until(Duration::from_secs(5), || {
            if !child.is_running() {
                return true;
            }
            stream = TcpStream::connect(loopback(ctrl_port)).ok();
            stream.is_some()
        });
        let Some(stream) = stream.filter(|_| up) else {
            let tails = child.tails(2000);
            return Err(format!("control socket did not come up\n{tails}"));
        };
        let reader = stream.try_clone().map_err(|e| e.to_string())?;
        let ctrl = Arc::new(Mutex::new(stream));
        let state: SharedState = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        {
            let state = state.clone();
            let ctrl = ctrl.clone();
            let reject = opts.answer == Answer::RejectBusy;
            thread::spawn(move || read_events(reader, state, ctrl, reject));
        }
        let mut b = Baresip {
            child,
            dir,
            _own_dir: own_dir,
            _rec_dir: rec_dir,
            sip_port,
            user,
            ctrl,
            state,
            token_seq: 0,
        };
        if opts.register_to.is_some() {
            b.wait_registered(&opts.name);
        }
        Ok(b)
    }

    /// Registration may finish before the control socket is connected (then its REGISTER_OK
    /// event is lost), so this also polls `reginfo`, whose text marks the account "OK" or "ERR".
    fn wait_registered(&mut self, name: &str) {
        let deadline = Instant::now() + CMD_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(ev) = self.wait_for_any(&["REGISTER_OK", "REGISTER_FAIL"], Duration::ZERO) {
                assert!(
                    ev.kind == "REGISTER_OK",
                    "baresip {name}: registration failed: {}",
                    ev.raw
                );
                return;
            }
            last = self.command("reginfo", "").unwrap_or_else(|e| e);
            if last.contains("OK") {
                return;
            }
            assert!(
                !last.contains("ERR"),
                "baresip {name}: registration failed: {last}"
            );
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "baresip {name}: not registered within {CMD_TIMEOUT:?} (reginfo: {last:?})\n{}",
            self.child.tails(3000)
        );
    }

    /// Where it listens for SIP (UDP and TCP), always 127.0.0.1.
    pub fn sip_addr(&self) -> SocketAddr {
        loopback(self.sip_port)
    }

    /// Its own URI `sip:<user>@127.0.0.1:<port>` (reachable directly, without a registrar).
    pub fn uri(&self) -> String {
        format!("sip:{}@127.0.0.1:{}", self.user, self.sip_port)
    }

    /// The instance directory (config, logs, `rec/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends a ctrl_tcp command and waits (≤ 5 s) for its response; `Ok(data)` when ok.
    pub fn command(&mut self, command: &str, params: &str) -> Result<String, String> {
        self.token_seq += 1;
        let token = format!("h{}", self.token_seq);
        let json = format!(
            "{{\"command\":{},\"params\":{},\"token\":{}}}",
            json_quote(command),
            json_quote(params),
            json_quote(&token)
        );
        let frame = format!("{}:{json},", json.len());
        self.ctrl
            .lock()
            .map_err(|_| "ctrl lock poisoned".to_string())?
            .write_all(frame.as_bytes())
            .map_err(|e| format!("ctrl write: {e}"))?;
        let (lock, cv) = &*self.state;
        let deadline = Instant::now() + CMD_TIMEOUT;
        let mut st = lock.lock().map_err(|_| "state poisoned".to_string())?;
        loop {
            if let Some(i) = st.responses.iter().position(|r| r.0 == token) {
                let (_, ok, data) = st.responses.remove(i);
                return if ok { Ok(data) } else { Err(data) };
            }
            let now = Instant::now();
            if now >= deadline || st.closed {
                return Err(format!("no response to {command} within {CMD_TIMEOUT:?}"));
            }
            st = cv
                .wait_timeout(st, deadline - now)
                .map_err(|_| "state poisoned".to_string())?
                .0;
        }
    }

    /// Places a call (`dial <uri>`). Panics if baresip refuses the command.
    pub fn dial(&mut self, uri: &str) {
        if let Err(e) = self.command("dial", uri) {
            panic!("baresip dial {uri}: {e}\n{}", self.child.tails(2000));
        }
    }

    /// Hangs up the current call (or rejects a ringing incoming one with 486).
    pub fn hangup(&mut self) {
        if let Err(e) = self.command("hangup", "") {
            panic!("baresip hangup: {e}");
        }
    }

    /// Answers the ringing incoming call (`accept`).
    pub fn answer(&mut self) {
        if let Err(e) = self.command("accept", "") {
            panic!("baresip accept: {e}");
        }
    }

    /// Waits for the next not-yet-taken event of type `kind` (e.g. "CALL_ESTABLISHED"), taking
    /// it; earlier events of other types stay available. `None` after `timeout`.
    pub fn wait_for_event(&mut self, kind: &str, timeout: Duration) -> Option<Event> {
        self.wait_for_any(&[kind], timeout)
    }

    /// Like [`Self::wait_for_event`] for the first of several types.
    pub fn wait_for_any(&mut self, kinds: &[&str], timeout: Duration) -> Option<Event> {
        let (lock, cv) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut st = lock.lock().ok()?;
        loop {
            if let Some(i) = st
                .pending
                .iter()
                .position(|e| kinds.contains(&e.kind.as_str()))
            {
                return st.pending.remove(i);
            }
            let now = Instant::now();
            if now >= deadline || st.closed {
                return None;
            }
            st = cv.wait_timeout(st, deadline - now).ok()?.0;
        }
    }

    /// Waits for `kind` and panics (with the event history and log tail) if it does not come.
    pub fn expect_event(&mut self, kind: &str, timeout: Duration) -> Event {
        match self.wait_for_event(kind, timeout) {
            Some(e) => e,
            None => panic!(
                "baresip: no {kind} within {timeout:?}; events so far: {:?}\n{}",
                self.history().iter().map(|e| &e.kind).collect::<Vec<_>>(),
                self.child.tails(3000)
            ),
        }
    }

    /// Every event received so far.
    pub fn history(&self) -> Vec<Event> {
        self.state
            .0
            .lock()
            .map(|s| s.history.clone())
            .unwrap_or_default()
    }

    /// The latest recording of received audio (`rec/dump-*-dec.wav`), if any. Each call gets a
    /// file named by its start time; read it after CALL_CLOSED, when sndfile has finalised it.
    pub fn recording_path(&self) -> Option<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.dir.join("rec"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("dump-") && n.ends_with("-dec.wav"))
            })
            .collect();
        files.sort();
        files.pop()
    }

    /// Its log so far (stdout + stderr).
    pub fn log(&self) -> String {
        self.child.stdout_text() + &self.child.stderr_text()
    }

    /// The log tails, for failure messages.
    pub fn tails(&self) -> String {
        self.child.tails(3000)
    }
}

/// JSON string literal.
fn json_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of a top-level `"key":` in a flat JSON object: strings unescaped, other scalars
/// as their text. Good enough for baresip's flat event objects.
pub fn json_field(json: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":");
    let start = json.find(&pat)? + pat.len();
    let rest = json[start..].trim_start();
    if let Some(body) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => match chars.next()? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
        None
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim().to_string())
    }
}

/// Reader thread: splits netstrings, records events and responses, rejects calls if asked.
fn read_events(stream: TcpStream, state: SharedState, ctrl: Arc<Mutex<TcpStream>>, reject: bool) {
    let mut r = BufReader::new(stream);
    loop {
        // Netstring: digits ':' payload ','.
        let mut len = 0usize;
        let mut byte = [0u8; 1];
        let ok = loop {
            if r.read_exact(&mut byte).is_err() {
                break false;
            }
            match byte[0] {
                b'0'..=b'9' if len < 1_000_000 => len = len * 10 + usize::from(byte[0] - b'0'),
                b':' => break true,
                _ => break false,
            }
        };
        let mut payload = vec![0u8; len];
        if !ok || r.read_exact(&mut payload).is_err() || r.read_exact(&mut byte).is_err() {
            break;
        }
        let json = String::from_utf8_lossy(&payload).into_owned();
        let (lock, cv) = &*state;
        let Ok(mut st) = lock.lock() else { break };
        if json_field(&json, "event").as_deref() == Some("true") {
            let ev = Event {
                kind: json_field(&json, "type").unwrap_or_default(),
                param: json_field(&json, "param").unwrap_or_default(),
                peer: json_field(&json, "peeruri").unwrap_or_default(),
                raw: json.clone(),
            };
            if reject && ev.kind == "CALL_INCOMING" {
                let cmd = r#"{"command":"hangup","params":"","token":"reject"}"#;
                if let Ok(mut w) = ctrl.lock() {
                    let _ = w.write_all(format!("{}:{cmd},", cmd.len()).as_bytes());
                }
            }
            st.history.push(ev.clone());
            st.pending.push_back(ev);
        } else if json_field(&json, "response").as_deref() == Some("true") {
            st.responses.push((
                json_field(&json, "token").unwrap_or_default(),
                json_field(&json, "ok").as_deref() == Some("true"),
                json_field(&json, "data").unwrap_or_default(),
            ));
        }
        cv.notify_all();
    }
    if let Ok(mut st) = state.0.lock() {
        st.closed = true;
    }
    state.1.notify_all();
}
