//! The softphone page in real headless Chromium (Debian's package, driven by playwright-core
//! through `tests/browser/softphone.mjs`) calling through skybridge to a real SIP phone
//! (baresip), and answering an inbound call while an RTMP session of the same user is told.
//! Chromium's fake microphone plays a 1 kHz tone; baresip plays 440 Hz; both directions are
//! measured. The screenshot of the page in the call goes to `target/artifacts/`.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::audio::read_wav;
use common::baresip::{Baresip, BaresipOpts};
use common::procs::{wait_until, Child, TestDir};
use common::rtmp_client::RtmpClient;
use common::scenario::{anonymous, assert_tone_samples, dialplan, serial, user_block};
use common::skybridge::{Skybridge, SkybridgeOpts};

const SEC: Duration = Duration::from_secs(1);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn artifacts() -> PathBuf {
    let dir = repo().join("target").join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the page driver; returns its JSON summary line (it exits non-zero on failure).
fn softphone(dir: &Path, name: &str, args: &[String]) -> Child {
    let script = repo().join("tests/browser/softphone.mjs");
    assert!(
        repo()
            .join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core missing: run scripts/install-deps.sh (npm ci in tests/browser)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(script).args(args);
    Child::spawn(name, &mut cmd, dir)
}

fn baresip_playing_440(dir: &TestDir, user: &str) -> Baresip {
    Baresip::start(BaresipOpts::answering_with_tone(
        dir.path(),
        user,
        440.0,
        30.0,
    ))
}

#[test]
fn chromium_calls_baresip_and_audio_flows_both_ways() {
    let _serial = serial();
    let dir = TestDir::new("chromium-to-baresip");
    let mut bob = baresip_playing_440(&dir, "bob");
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: dialplan(&[("bob", &bob.uri())]),
            ..Default::default()
        },
    );
    let received = dir.path().join("page-received.wav");
    let png = artifacts().join("softphone-in-call.png");
    let summary = dir.path().join("summary.json");
    let mut page = softphone(
        dir.path(),
        "softphone",
        &[
            // G.711 forced: this test keeps the JavaScript G.711 path covered.
            format!("--url=http://{}/?processing=off&codec=pcmu", sb.web),
            format!("--json={}", summary.display()),
            "--target=bob".into(),
            "--seconds=4".into(),
            "--tone=1000".into(),
            format!("--wav={}", received.display()),
            format!("--png={}", png.display()),
            "--timeout=30".into(),
        ],
    );
    let status = page
        .wait_timeout(60 * SEC)
        .expect("the page driver finishes");
    let context = format!("{}\n{}\n{}", page.tails(3000), sb.tails(), bob.tails());
    assert!(status.success(), "page driver failed\n{context}");
    bob.expect_event("CALL_CLOSED", 10 * SEC);
    assert_eq!(read_summary(&summary)["codec"], "pcmu", "{context}");
    let rec = bob
        .recording_path()
        .unwrap_or_else(|| panic!("bob recorded nothing\n{context}"));
    let wav = read_wav(&rec).unwrap();
    assert_tone_samples(
        "baresip hears the browser",
        &wav.mono(),
        wav.rate,
        1000.0,
        3.0,
        &context,
    );
    let heard = read_wav(&received).unwrap_or_else(|e| panic!("page audio: {e}\n{context}"));
    assert_tone_samples(
        "the browser hears baresip",
        &heard.mono(),
        heard.rate,
        440.0,
        3.0,
        &context,
    );
    assert!(png.exists(), "no screenshot\n{context}");
    eprintln!("[artifact] {}", png.display());
}

#[test]
fn chromium_answers_an_inbound_call_and_the_rtmp_session_is_told() {
    let _serial = serial();
    let dir = TestDir::new("chromium-inbound");
    let token = "alice-token";
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: "required = true\nanonymous_targets = []".into(),
            tail: user_block("alice", token, &[], None),
            ..Default::default()
        },
    );
    // An RTMP session of the same user, signed in with the token.
    let mut rtmp = RtmpClient::connect(sb.rtmp, &format!("call?token={token}")).unwrap();
    let received = dir.path().join("page-received.wav");
    let mut page = softphone(
        dir.path(),
        "softphone",
        &[
            format!("--url=http://{}/?processing=off", sb.web),
            format!("--token={token}"),
            "--mode=answer".into(),
            "--seconds=3".into(),
            "--tone=1000".into(),
            format!("--wav={}", received.display()),
            format!(
                "--png={}",
                artifacts().join("softphone-inbound.png").display()
            ),
            "--timeout=30".into(),
        ],
    );
    // Wait until the page is signed in (its `hello` shows in skybridge's log), then call.
    assert!(
        wait_until(20 * SEC, || sb.log().contains("websocket client signed in")),
        "the page never signed in\n{}\n{}",
        page.tails(3000),
        sb.tails()
    );
    let mut carol = baresip_playing_440(&dir, "carol");
    carol.dial(&format!("sip:alice@{}", sb.sip));
    let status = page
        .wait_timeout(60 * SEC)
        .expect("the page driver finishes");
    let context = format!("{}\n{}\n{}", page.tails(3000), sb.tails(), carol.tails());
    assert!(status.success(), "page driver failed\n{context}");
    let incoming = rtmp.wait_command("onIncoming", 2 * SEC);
    let elsewhere = rtmp.wait_command("onAnsweredElsewhere", 2 * SEC);
    assert!(
        incoming.is_some() && elsewhere.is_some(),
        "the RTMP session was not told: {rtmp:?}\n{context}"
    );
    let rec = carol
        .recording_path()
        .unwrap_or_else(|| panic!("carol recorded nothing\n{context}"));
    let wav = read_wav(&rec).unwrap();
    assert_tone_samples(
        "the caller hears the browser",
        &wav.mono(),
        wav.rate,
        1000.0,
        2.0,
        &context,
    );
    let heard = read_wav(&received).unwrap_or_else(|e| panic!("page audio: {e}\n{context}"));
    assert_tone_samples(
        "the browser hears the caller",
        &heard.mono(),
        heard.rate,
        440.0,
        2.0,
        &context,
    );
}

// ---------------------------------------------------------------- Opus through WebCodecs

fn read_summary(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    serde_json::from_str(text.trim()).unwrap_or(serde_json::Value::Null)
}

/// The page (Opus through WebCodecs unless `?codec=` forces G.711) calls `bob`, sends 1 kHz,
/// records what it plays; returns (bob's recording, the page's, the driver's summary, context).
fn opus_page_calls(
    dir: &TestDir,
    sb: &Skybridge,
    bob: &mut Baresip,
    png: &str,
) -> (
    common::audio::Wav,
    common::audio::Wav,
    serde_json::Value,
    String,
) {
    let received = dir.path().join("page-received.wav");
    let summary = dir.path().join("summary.json");
    let mut page = softphone(
        dir.path(),
        "softphone",
        &[
            format!("--url=http://{}/?processing=off", sb.web),
            "--target=bob".into(),
            "--seconds=4".into(),
            "--tone=1000".into(),
            format!("--wav={}", received.display()),
            format!("--json={}", summary.display()),
            format!("--png={}", artifacts().join(png).display()),
            "--timeout=30".into(),
        ],
    );
    let status = page
        .wait_timeout(60 * SEC)
        .expect("the page driver finishes");
    let context = format!("{}\n{}\n{}", page.tails(3000), sb.tails(), bob.tails());
    assert!(status.success(), "page driver failed\n{context}");
    bob.expect_event("CALL_CLOSED", 10 * SEC);
    let summary = read_summary(&summary);
    assert_eq!(
        summary["opusAvailable"], true,
        "Debian's headless Chromium encodes and decodes Opus with WebCodecs\n{context}"
    );
    assert_eq!(summary["codec"], "opus", "{summary}\n{context}");
    assert_eq!(summary["receivedRate"], 48000, "{summary}");
    let rec = bob
        .recording_path()
        .unwrap_or_else(|| panic!("bob recorded nothing\n{context}"));
    let bob_wav = read_wav(&rec).unwrap();
    let page_wav = read_wav(&received).unwrap_or_else(|e| panic!("page audio: {e}\n{context}"));
    (bob_wav, page_wav, summary, context)
}

#[test]
fn chromium_with_opus_calls_a_pcmu_only_phone_transcoded_both_ways() {
    let _serial = serial();
    let dir = TestDir::new("chromium-opus-to-pcmu");
    let mut bob = baresip_playing_440(&dir, "bob");
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: dialplan(&[("bob", &bob.uri())]),
            ..Default::default()
        },
    );
    let (bob_wav, page_wav, _, context) =
        opus_page_calls(&dir, &sb, &mut bob, "softphone-opus-in-call.png");
    assert!(
        sb.wait_log(&["codec pair opus/pcmu", "transcoding=true"], 2 * SEC),
        "{context}"
    );
    assert_tone_samples(
        "PCMU baresip hears the Opus browser",
        &bob_wav.mono(),
        bob_wav.rate,
        1000.0,
        3.0,
        &context,
    );
    assert_tone_samples(
        "the Opus browser hears PCMU baresip",
        &page_wav.mono(),
        page_wav.rate,
        440.0,
        3.0,
        &context,
    );
}

#[test]
fn chromium_with_opus_to_an_opus_only_phone_passes_opus_through() {
    let _serial = serial();
    let dir = TestDir::new("chromium-opus-to-opus");
    let mut bob = Baresip::start(BaresipOpts {
        codec_modules: vec!["opus.so".into()],
        ..BaresipOpts::answering_with_tone(dir.path(), "bob", 440.0, 30.0)
    });
    let sb = Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: dialplan(&[("bob", &bob.uri())]),
            rtp: "codecs = [\"pcmu\", \"opus\"]".into(),
            ..Default::default()
        },
    );
    let (bob_wav, page_wav, _, context) =
        opus_page_calls(&dir, &sb, &mut bob, "softphone-opus-passthrough.png");
    let log = sb.logs();
    assert!(
        log.contains("codec pair opus/opus") && log.contains("transcoding=false"),
        "{context}"
    );
    assert!(
        !log.contains("transcoding=true") && !log.contains("transcoding toward a client"),
        "pass-through: nothing transcoded\n{context}"
    );
    assert_tone_samples(
        "Opus baresip hears the Opus browser",
        &bob_wav.mono(),
        bob_wav.rate,
        1000.0,
        3.0,
        &context,
    );
    assert_tone_samples(
        "the Opus browser hears Opus baresip",
        &page_wav.mono(),
        page_wav.rate,
        440.0,
        3.0,
        &context,
    );
}
