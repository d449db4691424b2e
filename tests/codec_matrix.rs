//! The transcoding matrix (README, "Codecs and transcoding"): rows are the client's codec,
//! columns the SIP leg's codec, and every supported cell is one test here, a real call through
//! skybridge on loopback with a known tone each way.
//!
//! - SIP side (columns PCMU, PCMA, G.722, Opus, L16 16 kHz, Speex-WB, Speex-NB): skybridge
//!   offers only the column's codec (`rtp.codecs = ["<codec>"]`) to a phone that plays 440 Hz
//!   and records what it hears: baresip loaded with one codec module, or, for Speex (Debian's
//!   baresip has no Speex codec), the scripted UAS (`common::uas`) answering `speex/<rate>` and
//!   relaying its RTP to GStreamer's libspeex (`speexenc ! rtpspeexpay` playing 440 Hz,
//!   `rtpspeexdepay ! speexdec` recording).
//! - Client side, RTMP rows: an ffmpeg publisher sends 1 kHz in the row's format and an ffmpeg
//!   player on the same stream name (`?codec=` naming the row's codec) records what it is sent;
//!   both join one call. AAC is decoded only, so its row has no player direction (what an AAC
//!   publisher's player hears is the Nellymoser/G.711/PCM/Speex rows' player direction).
//! - Client side, the Opus row: the scripted WebSocket client (`common::ws_client`) offering
//!   Opus, encoding 1 kHz with `skybridge_codecs::opus` and decoding what it gets.
//!
//!   (`tests/browser_calls.rs` covers Opus → PCMU and Opus → Opus with Chromium's WebCodecs.)
//!
//! Each cell asserts: the phone hears 1 kHz and the client 440 Hz, dominant, for ≥ 1.5 s, above
//! the SNR floor of the codecs involved ([`floor_db`]); the client is sent the codec it asked
//! for (ffmpeg's input stream; Opus payload types only); and the log's `codec pair CLIENT/SIP`
//! names the pair and says pass-through or transcoding as designed ([`passes_through`]), with
//! no transcoder toward a publish-only leg. Cells run in parallel (each has its own relay, phone and ports); `--nocapture` prints one `[matrix]` line
//! per cell with the SNRs.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::audio::{active_duration, dominant_frequency, read_wav, tone_snr_db};
use common::baresip::{Baresip, BaresipOpts};
use common::ffmpeg::{Player, Publisher};
use common::procs::{free_udp_port, have_program, loopback, wait_until, Child, TestDir};
use common::scenario::{anonymous, dialplan};
use common::skybridge::{Skybridge, SkybridgeOpts};
use common::tlsutil::gst;
use common::uas::{Uas, UasOpts};
use common::ws_client::WsClient;
use serde_json::{json, Value};

const SEC: Duration = Duration::from_secs(1);

/// Seconds of 1 kHz the client sends (and the player records).
const TONE_SECS: f64 = 3.0;

/// The client's codec (a row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Pcmu,
    Pcma,
    Pcm,
    Nellymoser,
    Speex,
    Aac,
    /// A WebSocket client that offered Opus in `hello`.
    Opus,
}

impl Client {
    fn from_row(row: &str) -> Client {
        match row {
            "rtmp_pcmu" => Client::Pcmu,
            "rtmp_pcma" => Client::Pcma,
            "rtmp_pcm" => Client::Pcm,
            "rtmp_nellymoser" => Client::Nellymoser,
            "rtmp_speex" => Client::Speex,
            "rtmp_aac" => Client::Aac,
            "ws_opus" => Client::Opus,
            other => panic!("no matrix row {other}"),
        }
    }

    /// The ffmpeg encoder and rate an RTMP publisher of this row uses.
    fn publisher(self) -> Option<(&'static str, u32)> {
        Some(match self {
            Client::Pcmu => ("pcm_mulaw", 8000),
            Client::Pcma => ("pcm_alaw", 8000),
            Client::Pcm => ("pcm_s16le", 16000),
            Client::Nellymoser => ("nellymoser", 16000),
            Client::Speex => ("libspeex", 16000),
            Client::Aac => ("aac", 44100),
            Client::Opus => return None,
        })
    }

    /// The player's `?codec=` (None: no player direction for this row).
    fn play_codec(self) -> Option<&'static str> {
        match self {
            Client::Pcmu => Some("pcmu"),
            Client::Pcma => Some("pcma"),
            Client::Pcm => Some("pcm"),
            Client::Nellymoser => Some("nellymoser"),
            Client::Speex => Some("speex"),
            Client::Aac | Client::Opus => None,
        }
    }

    /// The client side of the log's `codec pair CLIENT/SIP`.
    fn pair_name(self) -> &'static str {
        match self {
            Client::Pcmu => "pcmu",
            Client::Pcma => "pcma",
            Client::Pcm => "pcm_s16le",
            Client::Nellymoser => "nellymoser",
            Client::Speex => "speex",
            Client::Aac => "aac",
            Client::Opus => "opus",
        }
    }
}

/// The SIP leg's codec (a column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sip {
    Pcmu,
    Pcma,
    G722,
    Opus,
    /// L16 16 kHz mono (`l16/16000`): Debian baresip's `l16` module has 48, 44.1, 32, 16 and
    /// 8 kHz, each stereo and mono; skybridge's L16 is mono at 8, 16, 44.1 or 48 kHz. 16 kHz is
    /// the wideband rate the RTMP world shares (PCM, Nellymoser, Speex-WB).
    L16,
    /// Speex wideband (`speex/16000`), the Speex FLV carries: pass-through with Speex clients.
    SpeexWb,
    /// Speex narrowband (`speex`, 8 kHz).
    SpeexNb,
}

impl Sip {
    fn from_column(column: &str) -> Sip {
        match column {
            "sip_pcmu" => Sip::Pcmu,
            "sip_pcma" => Sip::Pcma,
            "sip_g722" => Sip::G722,
            "sip_opus" => Sip::Opus,
            "sip_l16" => Sip::L16,
            "sip_speex_wb" => Sip::SpeexWb,
            "sip_speex_nb" => Sip::SpeexNb,
            other => panic!("no matrix column {other}"),
        }
    }

    /// Its `rtp.codecs` name.
    fn config_name(self) -> &'static str {
        match self {
            Sip::Pcmu => "pcmu",
            Sip::Pcma => "pcma",
            Sip::G722 => "g722",
            Sip::Opus => "opus",
            Sip::L16 => "l16/16000",
            Sip::SpeexWb => "speex/16000",
            Sip::SpeexNb => "speex",
        }
    }

    /// The SIP side of the log's `codec pair CLIENT/SIP`.
    fn pair_name(self) -> &'static str {
        match self {
            Sip::L16 => "l16",
            Sip::SpeexWb | Sip::SpeexNb => "speex",
            other => other.config_name(),
        }
    }

    /// The baresip codec module (None: the GStreamer phone).
    fn baresip_module(self) -> Option<&'static str> {
        match self {
            Sip::Pcmu | Sip::Pcma => Some("g711.so"),
            Sip::G722 => Some("g722.so"),
            Sip::Opus => Some("opus.so"),
            Sip::L16 => Some("l16.so"),
            Sip::SpeexWb | Sip::SpeexNb => None,
        }
    }
}

/// Whether skybridge should relay this cell without a transcoder: the same codec on both legs
/// both ways, or G.711 law swaps (a table lookup in the call, not a transcoder).
fn passes_through(client: Client, sip: Sip) -> bool {
    matches!(
        (client, sip),
        (Client::Pcmu | Client::Pcma, Sip::Pcmu | Sip::Pcma)
            | (Client::Speex, Sip::SpeexWb)
            | (Client::Opus, Sip::Opus)
    )
}

/// The SNR floor (dB) of a path through `codecs`: 20 dB (the harness's calibrated floor:
/// clean G.711 measures > 30 dB) for everything but Nellymoser, whose ffmpeg encoder alone
/// leaves about 20 dB on a pure tone (measured 20.5 dB for Nellymoser → PCMA, the lowest cell),
/// so 14 dB there. Speex, Opus and AAC measure ≥ 25 dB in every cell.
fn floor_db(codecs: &[&str]) -> f64 {
    if codecs.contains(&"nellymoser") {
        14.0
    } else {
        20.0
    }
}

/// What ffmpeg's player should report decoding for `?codec=<play>` on a call whose SIP leg is
/// `sip`: (ffmpeg codec name, rate it reports). Nellymoser runs at the SIP leg's band
/// (8 kHz for G.711, 16 kHz for wideband codecs); PCM is s16le at the SIP leg's rate.
fn expected_player_stream(play: &str, sip: Sip) -> (&'static str, u32) {
    let narrowband = matches!(sip, Sip::Pcmu | Sip::Pcma | Sip::SpeexNb);
    match play {
        "pcmu" => ("pcm_mulaw", 8000),
        "pcma" => ("pcm_alaw", 8000),
        "nellymoser" if narrowband => ("nellymoser", 8000),
        "nellymoser" => ("nellymoser", 16000),
        "speex" => ("speex", 16000),
        "pcm" => ("pcm_s16le", relay_pcm_rate(sip)),
        other => panic!("no player codec {other}"),
    }
}

/// The rate of the PCM a `?codec=pcm` player is sent on a call whose SIP leg is `sip`: one an
/// FLV tag header names, at or above the SIP leg's (`media.rs` `ClientCaps::choose`).
fn relay_pcm_rate(sip: Sip) -> u32 {
    match sip {
        Sip::Pcmu | Sip::Pcma | Sip::SpeexNb => 11025,
        Sip::G722 | Sip::L16 | Sip::SpeexWb => 22050,
        Sip::Opus => 44100,
    }
}

/// The first `Stream #0:0: Audio: <codec>, <rate> Hz` ffmpeg logged (its input).
fn ffmpeg_input_audio(stderr: &str) -> Option<(String, u32)> {
    let line = stderr
        .lines()
        .find(|l| l.contains("Stream #0:0: Audio: "))?;
    let rest = line.split_once("Audio: ")?.1;
    let mut parts = rest.split(", ");
    let codec = parts.next()?.split_whitespace().next()?.to_string();
    let rate = parts.find_map(|p| p.strip_suffix(" Hz"))?.parse().ok()?;
    Some((codec, rate))
}

// ---------------------------------------------------------------- the phone

/// The Speex phone: the scripted UAS answering `speex/<rate>` and relaying its RTP to and from
/// two gst-launch pipelines.
struct GstSpeexPhone {
    uas: Uas,
    dir: PathBuf,
    /// 8000 (narrowband) or 16000 (wideband).
    rate: u32,
    receiver: Child,
    sender: Option<Child>,
    raw: PathBuf,
}

/// The payload type skybridge offers Speex with when it is the only codec (96 + its position
/// in `rtp.codecs`).
const SPEEX_PT: u8 = 96;

impl GstSpeexPhone {
    fn start(dir: &Path, rate: u32) -> GstSpeexPhone {
        assert!(
            have_program("gst-launch-1.0"),
            "gst-launch-1.0 missing: run scripts/install-deps.sh"
        );
        let rx_port = free_udp_port();
        let raw = dir.join("phone-rx.s16le");
        // Unbuffered: every decoded buffer is on disk when the pipeline is stopped.
        let mut receiver = gst(
            dir,
            "gst-speex-rx",
            &format!(
                "udpsrc address=127.0.0.1 port={rx_port} \
                 caps=application/x-rtp,media=audio,clock-rate={rate},encoding-name=SPEEX,payload={SPEEX_PT} ! \
                 rtpspeexdepay ! speexdec ! audioconvert ! audioresample ! \
                 audio/x-raw,format=S16LE,rate={rate},channels=1 ! \
                 filesink buffer-mode=unbuffered location={}",
                raw.display()
            ),
        );
        // A live source: gst-launch says so once the pipeline is READY (udpsrc bound).
        let ready = wait_until(5 * SEC, || {
            !receiver.is_running() || receiver.stdout_text().contains("Pipeline is live")
        });
        assert!(
            ready && receiver.is_running(),
            "the GStreamer Speex receiver did not start\n{}",
            receiver.tails(2000)
        );
        let uas = Uas::start_with(UasOpts {
            answer_rtpmap: Some(format!("speex/{rate}")),
            relay_to: Some(loopback(rx_port)),
        });
        GstSpeexPhone {
            uas,
            dir: dir.to_path_buf(),
            rate,
            receiver,
            sender: None,
            raw,
        }
    }

    /// Once the call is confirmed (ACK), starts sending 440 Hz Speex-WB toward skybridge.
    fn wait_answered(&mut self, timeout: Duration) -> bool {
        if !wait_until(timeout, || self.uas.confirmed()) {
            return false;
        }
        assert_eq!(
            self.uas.payload_type(),
            Some(SPEEX_PT),
            "skybridge offered Speex with another payload type than the receiver expects"
        );
        // 10 s at most (500 × 20 ms), to the UAS, which relays it from the answered address.
        let rate = self.rate;
        self.sender = Some(gst(
            &self.dir,
            "gst-speex-tx",
            &format!(
                "audiotestsrc is-live=true wave=sine freq=440 volume=0.5 samplesperbuffer={} \
                 num-buffers=500 ! audio/x-raw,format=S16LE,rate={rate},channels=1 ! speexenc ! \
                 rtpspeexpay pt={SPEEX_PT} ! udpsink host=127.0.0.1 port={}",
                rate / 50,
                self.uas.rtp.port()
            ),
        ));
        true
    }

    fn wait_closed(&mut self, timeout: Duration) -> bool {
        let closed = wait_until(timeout, || self.uas.byes() > 0);
        if let Some(s) = self.sender.as_mut() {
            s.stop(SEC);
        }
        // Let the last relayed packets through the decoder before stopping it.
        std::thread::sleep(Duration::from_millis(200));
        self.receiver.stop(SEC);
        closed
    }

    fn recording(&self) -> Result<(Vec<f64>, u32), String> {
        let bytes = std::fs::read(&self.raw).map_err(|e| format!("{}: {e}", self.raw.display()))?;
        let samples = bytes
            .chunks_exact(2)
            .map(|c| f64::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
            .collect();
        Ok((samples, self.rate))
    }

    fn tails(&self) -> String {
        let sender = self
            .sender
            .as_ref()
            .map(|s| s.tails(1500))
            .unwrap_or_default();
        format!(
            "UAS: {} RTP packets received, {} INVITE, {} BYE\n{}\n{sender}",
            self.uas.received().len(),
            self.uas.invites(),
            self.uas.byes(),
            self.receiver.tails(1500)
        )
    }
}

/// The SIP phone of a column: answers, plays 440 Hz, records.
enum Phone {
    Baresip(Baresip),
    Gst(GstSpeexPhone),
}

impl Phone {
    fn start(dir: &Path, sip: Sip) -> Phone {
        match sip.baresip_module() {
            Some(module) => Phone::Baresip(Baresip::start(BaresipOpts {
                codec_modules: vec![module.into()],
                ..BaresipOpts::answering_with_tone(dir, "bob", 440.0, 20.0)
            })),
            None => Phone::Gst(GstSpeexPhone::start(
                dir,
                if sip == Sip::SpeexNb { 8000 } else { 16000 },
            )),
        }
    }

    fn uri(&self) -> String {
        match self {
            Phone::Baresip(b) => b.uri(),
            Phone::Gst(g) => g.uas.uri("bob"),
        }
    }

    fn wait_answered(&mut self, timeout: Duration) -> bool {
        match self {
            Phone::Baresip(b) => b.wait_for_event("CALL_ESTABLISHED", timeout).is_some(),
            Phone::Gst(g) => g.wait_answered(timeout),
        }
    }

    fn wait_closed(&mut self, timeout: Duration) -> bool {
        match self {
            Phone::Baresip(b) => b.wait_for_event("CALL_CLOSED", timeout).is_some(),
            Phone::Gst(g) => g.wait_closed(timeout),
        }
    }

    /// What it heard: mono samples and their rate.
    fn recording(&self) -> Result<(Vec<f64>, u32), String> {
        match self {
            Phone::Baresip(b) => {
                let path = b.recording_path().ok_or("baresip recorded nothing")?;
                let wav = read_wav(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                Ok((wav.mono(), wav.rate))
            }
            Phone::Gst(g) => g.recording(),
        }
    }

    fn tails(&self) -> String {
        match self {
            Phone::Baresip(b) => b.tails(),
            Phone::Gst(g) => g.tails(),
        }
    }
}

// ---------------------------------------------------------------- measuring

/// One direction's tone measurement.
#[derive(Debug)]
struct Heard {
    snr: f64,
    dominant: f64,
    active: f64,
    secs: f64,
}

impl Heard {
    fn of(samples: &[f64], rate: u32, freq: f64) -> Heard {
        Heard {
            snr: tone_snr_db(samples, rate, freq),
            dominant: dominant_frequency(samples, rate),
            active: active_duration(samples, rate, 0.01),
            secs: samples.len() as f64 / f64::from(rate.max(1)),
        }
    }

    /// Why it fails the cell (None: it passes): `freq` dominant, SNR above `floor`, audible
    /// for at least 1.5 s.
    fn fault(&self, freq: f64, floor: f64) -> Option<String> {
        let ok = self.snr > floor && self.dominant == freq && self.active >= 1.5;
        (!ok).then(|| {
            format!(
                "{freq} Hz: SNR {:.1} dB (want > {floor}), dominant {} Hz, active {:.2} s \
                 (want ≥ 1.5) of {:.2} s",
                self.snr, self.dominant, self.active, self.secs
            )
        })
    }
}

/// Checks a cell's measurements and the relay's pass-through/transcoding decision; prints the
/// `[matrix]` line first, so both directions' figures show even when one fails.
/// What a cell measured.
struct Outcome {
    /// The phone's recording of the client's 1 kHz.
    to_phone: Result<Heard, String>,
    /// The client's recording of the phone's 440 Hz (None for a decode-only client codec).
    to_client: Option<ClientSide>,
    /// Faults found while collecting them.
    faults: Vec<String>,
}

/// The client's direction of a cell.
struct ClientSide {
    /// What the client decoded, for the report (e.g. `speex 16000 Hz`).
    label: String,
    /// The codec name [`floor_db`] goes by.
    floor_codec: &'static str,
    heard: Result<Heard, String>,
}

fn judge(cell: &str, client: Client, sip: Sip, outcome: Outcome, sb: &Skybridge, context: &str) {
    let Outcome {
        to_phone,
        to_client,
        mut faults,
    } = outcome;
    let show = |h: &Result<Heard, String>| match h {
        Ok(h) => format!("{:.1} dB", h.snr),
        Err(e) => format!("none ({e})"),
    };
    let back = match &to_client {
        Some(c) => format!("client hears 440 Hz at {} ({})", show(&c.heard), c.label),
        None => "no client direction (decode-only codec)".into(),
    };
    let mode = match (client.pair_name(), passes_through(client, sip)) {
        (c, true) if c == sip.pair_name() => "pass-through",
        (_, true) => "G.711 law swap, no transcoder",
        (_, false) => "transcoded",
    };
    eprintln!(
        "[matrix] {cell} ({mode}): phone hears 1 kHz at {}; {back}",
        show(&to_phone)
    );
    let floor_up = floor_db(&[client.pair_name(), sip.pair_name()]);
    match &to_phone {
        Ok(h) => faults.extend(h.fault(1000.0, floor_up).map(|f| format!("phone: {f}"))),
        Err(e) => faults.push(format!("phone: {e}")),
    }
    if let Some(c) = &to_client {
        let floor_down = floor_db(&[c.floor_codec, sip.pair_name()]);
        match &c.heard {
            Ok(h) => faults.extend(h.fault(440.0, floor_down).map(|f| format!("client: {f}"))),
            Err(e) => faults.push(format!("client: {e}")),
        }
    }
    // The pair is logged when known and again when it changes; transcoding only ever turns on.
    let pair = format!("codec pair {}/{}", client.pair_name(), sip.pair_name());
    let logs = sb.logs();
    let pair_lines: Vec<&str> = logs.lines().filter(|l| l.contains("codec pair")).collect();
    let transcoded = pair_lines.iter().any(|l| l.contains("transcoding=true"));
    if !pair_lines.iter().any(|l| l.contains(&pair)) {
        faults.push(format!("no `{pair}` in the log: {pair_lines:#?}"));
    }
    // A publish stream plays nothing: the only transcoder toward a client is the player's.
    let toward_clients = logs
        .lines()
        .filter(|l| l.contains("transcoding toward a client"))
        .count();
    let players_transcoded = usize::from(client.play_codec().is_some());
    if client != Client::Opus && toward_clients > players_transcoded {
        faults.push(format!(
            "{toward_clients} transcoders toward clients, want at most {players_transcoded} (the player's)"
        ));
    }
    if transcoded == passes_through(client, sip) {
        faults.push(format!(
            "want transcoding={}, the log says: {pair_lines:#?}",
            !passes_through(client, sip)
        ));
    }
    assert!(faults.is_empty(), "{cell}: {faults:#?}\n{context}");
}

fn relay(dir: &TestDir, phone: &Phone, sip: Sip) -> Skybridge {
    Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: dialplan(&[("bob", &phone.uri())]),
            rtp: format!("codecs = [\"{}\"]", sip.config_name()),
            ..Default::default()
        },
    )
}

// ---------------------------------------------------------------- the cells

fn run_cell(row: &str, column: &str) {
    let (client, sip) = (Client::from_row(row), Sip::from_column(column));
    let cell = format!("{row}::{column}");
    let dir = TestDir::new(&format!("matrix-{row}-{column}"));
    let phone = Phone::start(dir.path(), sip);
    let sb = relay(&dir, &phone, sip);
    match client {
        Client::Opus => ws_opus_cell(&cell, &dir, phone, sb, sip),
        _ => rtmp_cell(&cell, &dir, phone, sb, client, sip),
    }
}

/// An ffmpeg publisher (1 kHz in the row's format) and, unless the row is decode-only, an
/// ffmpeg player (`?codec=`) on the same name: one call to the phone.
fn rtmp_cell(cell: &str, dir: &TestDir, mut phone: Phone, sb: Skybridge, client: Client, sip: Sip) {
    let (codec, rate) = client.publisher().unwrap();
    let played = dir.path().join("played.wav");
    let mut player = client.play_codec().map(|c| {
        Player::new(
            &sb.rtmp_url(&format!("call/bob?codec={c}")),
            TONE_SECS,
            &played,
        )
        .spawn("player", dir.path())
    });
    // The player joins (and so places the call) first: a player joining a Speex stream
    // mid-way decodes it wrong for most of a second (seen under load, when the publisher's
    // ffmpeg won the race: 18.9 dB instead of 27 dB).
    if let Some(p) = &player {
        assert!(
            sb.wait_log(&["dialling"], 10 * SEC),
            "{cell}: the player did not place the call\n{}\n{}",
            sb.tails(),
            p.tails(1500)
        );
    }
    let mut publisher = Publisher::new(&sb.rtmp_url("call/bob"), 1000, TONE_SECS);
    publisher.codec = codec.into();
    publisher.rate = rate;
    let mut publisher = publisher.spawn("publisher", dir.path());
    let context = |phone: &Phone, publisher: &Child, player: &Option<Child>| {
        format!(
            "{}\n{}\n{}\n{}",
            phone.tails(),
            sb.tails(),
            publisher.tails(1500),
            player.as_ref().map(|p| p.tails(1500)).unwrap_or_default()
        )
    };
    if !phone.wait_answered(10 * SEC) {
        panic!(
            "{cell}: the phone never answered\n{}",
            context(&phone, &publisher, &player)
        );
    }
    if !phone.wait_closed(15 * SEC) {
        panic!(
            "{cell}: the call did not end after the publish\n{}",
            context(&phone, &publisher, &player)
        );
    }
    publisher.wait_timeout(5 * SEC);
    let player_exit = player.as_mut().map(|p| p.wait_timeout(10 * SEC));
    let context = context(&phone, &publisher, &player);
    let to_phone = phone
        .recording()
        .map(|(samples, rate)| Heard::of(&samples, rate, 1000.0));
    let mut faults = Vec::new();
    let to_client = client.play_codec().map(|c| {
        let stream = player
            .as_ref()
            .and_then(|p| ffmpeg_input_audio(&p.stderr_text()));
        let want = expected_player_stream(c, sip);
        if stream.as_ref().map(|(c, r)| (c.as_str(), *r)) != Some(want) {
            faults.push(format!(
                "client: the player decoded {stream:?}, want {want:?} for ?codec={c}"
            ));
        }
        let heard = match player_exit.flatten() {
            Some(s) if s.success() => read_wav(&played)
                .map(|w| Heard::of(&w.mono(), w.rate, 440.0))
                .map_err(|e| format!("{}: {e}", played.display())),
            other => Err(format!("player did not finish: {other:?}")),
        };
        let floor_codec = match c {
            "nellymoser" => "nellymoser",
            "speex" => "speex",
            _ => "pcm",
        };
        let label = match &stream {
            Some((codec, rate)) => format!("{codec} {rate} Hz"),
            None => "nothing".into(),
        };
        ClientSide {
            label,
            floor_codec,
            heard,
        }
    });
    let outcome = Outcome {
        to_phone,
        to_client,
        faults,
    };
    judge(cell, client, sip, outcome, &sb, &context);
}

fn call_id(v: &Value) -> u16 {
    v["call"]
        .as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .unwrap()
}

/// The scripted WebSocket client offering Opus: sends 1 kHz Opus, decodes what it gets.
fn ws_opus_cell(cell: &str, _dir: &TestDir, mut phone: Phone, sb: Skybridge, sip: Sip) {
    let (mut c, welcome) =
        WsClient::signed_in_with(sb.web, "ws-opus", None, Some(&["opus", "pcmu", "pcma"])).unwrap();
    let pt = welcome["payload_types"]["opus"]
        .as_u64()
        .and_then(|n| u8::try_from(n).ok())
        .unwrap_or_else(|| panic!("{cell}: no Opus number in {welcome}"));
    let context = |c: &WsClient, phone: &Phone| format!("{c:?}\n{}\n{}", phone.tails(), sb.tails());
    let expect = |c: &mut WsClient, phone: &Phone, kind: &str| -> Value {
        match c.wait_for(kind, 10 * SEC) {
            Some(v) => v,
            None => panic!("{cell}: no {kind}\n{}", context(c, phone)),
        }
    };
    c.send_json(&json!({"type": "call", "target": "bob"}));
    let id = call_id(&expect(&mut c, &phone, "calling"));
    let answered = expect(&mut c, &phone, "answered");
    assert_eq!(
        (call_id(&answered), &answered["codec"]),
        (id, &json!("opus")),
        "{cell}: {answered}"
    );
    if !phone.wait_answered(10 * SEC) {
        panic!("{cell}: the phone never answered\n{}", context(&c, &phone));
    }
    c.start_tone_opus(id, 1000.0, pt);
    c.pump(Duration::from_secs_f64(TONE_SECS));
    c.stop_tone();
    c.send_json(&json!({"type": "hangup", "call": id}));
    expect(&mut c, &phone, "hangup");
    if !phone.wait_closed(10 * SEC) {
        panic!("{cell}: the call did not end\n{}", context(&c, &phone));
    }
    let context = context(&c, &phone);
    let to_phone = phone
        .recording()
        .map(|(samples, rate)| Heard::of(&samples, rate, 1000.0));
    let mut faults = Vec::new();
    let codecs: Vec<u8> = c.codecs_received.keys().copied().collect();
    if codecs != [pt] {
        faults.push(format!(
            "client: payload types received {codecs:?}, want only Opus ({pt})"
        ));
    }
    let outcome = Outcome {
        to_phone,
        to_client: Some(ClientSide {
            label: "opus, decoded at 8 kHz".into(),
            floor_codec: "opus",
            heard: Ok(Heard::of(&c.decoded_opus(id), 8000, 440.0)),
        }),
        faults,
    };
    judge(cell, Client::Opus, sip, outcome, &sb, &context);
}

/// `matrix! { row => [column, …], … }`: one test `row::column` per cell, calling
/// [`run_cell`] with the two names.
macro_rules! matrix {
    ($($row:ident => [$($column:ident),* $(,)?]),* $(,)?) => {
        $(
            mod $row {
                $(
                    #[test]
                    fn $column() {
                        super::run_cell(stringify!($row), stringify!($column));
                    }
                )*
            }
        )*
    };
}

matrix! {
    rtmp_pcmu => [sip_pcmu, sip_pcma, sip_g722, sip_opus, sip_l16, sip_speex_wb, sip_speex_nb],
    rtmp_pcma => [sip_pcmu, sip_pcma, sip_g722, sip_opus, sip_l16, sip_speex_wb, sip_speex_nb],
    rtmp_pcm => [sip_pcmu, sip_pcma, sip_g722, sip_opus, sip_l16, sip_speex_wb, sip_speex_nb],
    rtmp_nellymoser => [sip_pcmu, sip_pcma, sip_g722, sip_opus, sip_l16, sip_speex_wb, sip_speex_nb],
    rtmp_speex => [sip_pcmu, sip_pcma, sip_g722, sip_opus, sip_l16, sip_speex_wb, sip_speex_nb],
    rtmp_aac => [sip_pcmu, sip_pcma, sip_g722, sip_opus, sip_l16, sip_speex_wb, sip_speex_nb],
    ws_opus => [sip_pcmu, sip_pcma, sip_g722, sip_opus, sip_l16, sip_speex_wb, sip_speex_nb],
}
