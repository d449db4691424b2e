//! Codec negotiation and transcoding end to end, on loopback: ffmpeg publishes a 1 kHz tone
//! over RTMP in each format skybridge decodes, baresip (configured with one codec) records
//! it; baresip's 440 Hz goes back to an ffmpeg player. One call at a time (`serial()`), every
//! wait bounded.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::Path;
use std::time::Duration;

use common::audio::{read_wav, write_tone_wav, Wav};
use common::baresip::{Answer, Baresip, BaresipOpts};
use common::ffmpeg::{Player, Publisher};
use common::procs::TestDir;
use common::scenario::{anonymous, assert_tone_samples, assert_tone_snr, dialplan, serial};
use common::skybridge::{Skybridge, SkybridgeOpts};

const SEC: Duration = Duration::from_secs(1);

fn phone(dir: &TestDir, modules: &[&str], play: Option<std::path::PathBuf>) -> Baresip {
    Baresip::start(BaresipOpts {
        name: "bob".into(),
        user: "bob".into(),
        record: true,
        answer: Answer::Auto,
        play_wav: play,
        dir: Some(dir.path().to_path_buf()),
        codec_modules: modules.iter().map(|m| m.to_string()).collect(),
        ..Default::default()
    })
}

fn relay(dir: &TestDir, bob: &Baresip) -> Skybridge {
    relay_with_codecs(dir, bob, None)
}

/// A relay whose `rtp.codecs` is `codecs` (the default when None).
fn relay_with_codecs(dir: &TestDir, bob: &Baresip, codecs: Option<&[&str]>) -> Skybridge {
    let rtp = codecs
        .map(|list| {
            let names: Vec<String> = list.iter().map(|c| format!("\"{c}\"")).collect();
            format!("codecs = [{}]", names.join(", "))
        })
        .unwrap_or_default();
    Skybridge::start(
        dir.path(),
        &SkybridgeOpts {
            auth: anonymous(&["bob"]),
            dialplan: dialplan(&[("bob", &bob.uri())]),
            rtp,
            ..Default::default()
        },
    )
}

fn wav_or_panic(path: Option<&Path>, context: &str) -> Wav {
    let Some(path) = path else {
        panic!("no recording\n{context}");
    };
    read_wav(path).unwrap_or_else(|e| panic!("read {}: {e}\n{context}", path.display()))
}

/// Publishes a 3 s 1 kHz tone as `codec` at `rate` to `bob` and returns baresip's recording
/// of that call.
fn publish_to_phone(
    dir: &TestDir,
    sb: &Skybridge,
    bob: &mut Baresip,
    codec: &str,
    rate: u32,
) -> (Wav, String) {
    publish_to_phone_channels(dir, sb, bob, codec, rate, 1)
}

/// [`publish_to_phone`] with `channels` audio channels.
fn publish_to_phone_channels(
    dir: &TestDir,
    sb: &Skybridge,
    bob: &mut Baresip,
    codec: &str,
    rate: u32,
    channels: u32,
) -> (Wav, String) {
    let mut publisher = Publisher::new(&sb.rtmp_url("call/bob"), 1000, 3.0);
    publisher.codec = codec.into();
    publisher.rate = rate;
    publisher.channels = channels;
    // The tone starts with the publish, before the phone answers: Speex is predictive, and a
    // decoder that joins a stationary tone mid-stream can lock onto a wrong pitch for seconds
    // (−4.2 dB in one run of three when the relay started decoding at the answer). The relay
    // decodes a stateful codec from the stream's first frame, so this must come out clean.
    let mut child = publisher.spawn(&format!("publish-{codec}-{rate}-{channels}"), dir.path());
    let ctx = |bob: &Baresip, sb: &Skybridge, p: &common::procs::Child| {
        format!("{}\n{}\n{}", bob.tails(), sb.tails(), p.tails(1500))
    };
    if bob.wait_for_event("CALL_ESTABLISHED", 5 * SEC).is_none() {
        panic!(
            "{codec}/{rate}: bob never answered\n{}",
            ctx(bob, sb, &child)
        );
    }
    if bob.wait_for_event("CALL_CLOSED", 10 * SEC).is_none() {
        panic!(
            "{codec}/{rate}: the call did not end after the publish\n{}",
            ctx(bob, sb, &child)
        );
    }
    child.wait_timeout(5 * SEC);
    let context = ctx(bob, sb, &child);
    let wav = wav_or_panic(bob.recording_path().as_deref(), &context);
    (wav, context)
}

#[test]
fn every_rtmp_format_reaches_a_pcmu_only_phone_as_a_1khz_tone() {
    let _serial = serial();
    let dir = TestDir::new("codecs-to-pcmu");
    let mut bob = phone(&dir, &["g711.so"], None);
    let sb = relay(&dir, &bob);
    let formats = [
        ("pcm_mulaw", 8000, "pcmu", false),
        ("pcm_alaw", 8000, "pcma", false),
        ("pcm_s16le", 8000, "pcm_s16le", true),
        ("pcm_s16le", 16000, "pcm_s16le", true),
        ("nellymoser", 8000, "nellymoser", true),
        ("nellymoser", 16000, "nellymoser", true),
    ];
    for (codec, rate, client, transcodes) in formats {
        let (wav, context) = publish_to_phone(&dir, &sb, &mut bob, codec, rate);
        // Nellymoser is a perceptual codec: ffmpeg's encoder alone leaves ~20 dB.
        let floor = if codec == "nellymoser" { 14.0 } else { 20.0 };
        assert_tone_snr(
            &format!("{codec} {rate} Hz → PCMU"),
            &wav.mono(),
            wav.rate,
            1000.0,
            1.5,
            floor,
            &context,
        );
        let line = format!("transcoding={transcodes}");
        assert!(
            sb.wait_log(&[&format!("codec pair {client}/pcmu"), &line], 2 * SEC),
            "{codec}/{rate}: no `codec pair {client}/pcmu` with {line} in the log\n{context}"
        );
    }
    let metrics = sb.metrics();
    let m =
        |name: &str, labels: &[(&str, &str)]| common::skybridge::metric_sum(&metrics, name, labels);
    assert_eq!(
        m("skybridge_transcoding_calls", &[]),
        0.0,
        "every call ended:\n{metrics}"
    );
    assert!(
        metrics.contains("skybridge_calls_by_codec_pair{client=\"nellymoser\",sip=\"pcmu\"}")
            || metrics
                .contains("skybridge_calls_by_codec_pair{sip=\"pcmu\",client=\"nellymoser\"}"),
        "the pair gauge names nellymoser/pcmu:\n{metrics}"
    );
}

/// What one call heard: a pcm_mulaw publisher and a default ffmpeg player against a phone.
struct Heard {
    sb: Skybridge,
    recorded: Wav,
    exited: Option<std::process::ExitStatus>,
    played: std::path::PathBuf,
    context: String,
    _dir: TestDir,
}

/// A phone with only `module`, playing 440 Hz, behind a relay offering `codecs` (the default
/// when None); the player (ffmpeg announces Nellymoser, G.711, … in `audioCodecs`) and a
/// pcm_mulaw publisher of 1 kHz join one call by the stream name.
fn pcmu_publisher_and_default_player(name: &str, module: &str, codecs: Option<&[&str]>) -> Heard {
    let dir = TestDir::new(name);
    let tone = dir.path().join("tone440.wav");
    write_tone_wav(&tone, 440.0, 20.0, 8000).unwrap();
    let mut bob = phone(&dir, &[module], Some(tone));
    let sb = relay_with_codecs(&dir, &bob, codecs);
    let played = dir.path().join("played.wav");
    let mut player =
        Player::new(&sb.rtmp_url("call/bob"), 3.0, &played).spawn("player", dir.path());
    let (recorded, context) = publish_to_phone(&dir, &sb, &mut bob, "pcm_mulaw", 8000);
    let exited = player.wait_timeout(10 * SEC);
    let context = format!("{context}\n{}", player.tails(2000));
    Heard {
        sb,
        recorded,
        exited,
        played,
        context,
        _dir: dir,
    }
}

#[test]
fn an_rtmp_pcmu_client_is_transcoded_to_a_g722_only_phone_both_ways() {
    let _serial = serial();
    let Heard {
        sb,
        recorded,
        exited,
        played: out,
        context,
        _dir,
    } = pcmu_publisher_and_default_player("pcmu-to-g722", "g722.so", None);
    assert_tone_samples(
        "pcm_mulaw → G.722",
        &recorded.mono(),
        recorded.rate,
        1000.0,
        1.5,
        &context,
    );
    assert!(
        exited.is_some_and(|s| s.success()),
        "player did not finish: {exited:?}\n{context}"
    );
    let played = wav_or_panic(Some(&out), &context);
    assert_tone_samples(
        "G.722 → ffmpeg player (Nellymoser 16 kHz)",
        &played.mono(),
        played.rate,
        440.0,
        1.5,
        &context,
    );
    assert!(
        sb.wait_log(&["codec pair pcmu/g722", "transcoding=true"], 2 * SEC),
        "the log names the pair and the transcoding\n{context}"
    );
    // One transcoder toward a client: the player's. The publisher's leg plays nothing.
    let toward_clients = sb
        .logs()
        .lines()
        .filter(|l| l.contains("transcoding toward a client"))
        .count();
    assert_eq!(toward_clients, 1, "{context}");
}

#[test]
fn speex_and_aac_publishers_reach_a_pcmu_only_phone_as_a_1khz_tone() {
    let _serial = serial();
    let dir = TestDir::new("speex-aac-to-pcmu");
    let mut bob = phone(&dir, &["g711.so"], None);
    let sb = relay(&dir, &bob);
    // (ffmpeg encoder, rate, channels, pair name in the log, SNR floor). Measured one run:
    // Speex-WB 32.7 dB, AAC 44.1 kHz 26.6 dB, AAC 48 kHz stereo 27.6 dB.
    let formats = [
        ("libspeex", 16000, 1, "speex", 20.0),
        ("aac", 44100, 1, "aac", 20.0),
        ("aac", 48000, 2, "aac", 20.0),
    ];
    for (codec, rate, channels, client, floor) in formats {
        let (wav, context) = publish_to_phone_channels(&dir, &sb, &mut bob, codec, rate, channels);
        assert_tone_snr(
            &format!("{codec} {rate} Hz ×{channels} → PCMU"),
            &wav.mono(),
            wav.rate,
            1000.0,
            1.5,
            floor,
            &context,
        );
        assert!(
            sb.wait_log(
                &[&format!("codec pair {client}/pcmu"), "transcoding=true"],
                2 * SEC
            ),
            "{codec}/{rate}: no `codec pair {client}/pcmu` with transcoding=true in the log\n{context}"
        );
    }
    let metrics = sb.metrics();
    let dropped = common::skybridge::metric_sum(
        &metrics,
        "skybridge_packets_dropped_total",
        &[("reason", "transcode_error")],
    );
    assert_eq!(dropped, 0.0, "no real frame failed to decode:\n{metrics}");
    let refused = common::skybridge::metric_sum(
        &metrics,
        "skybridge_packets_dropped_total",
        &[("reason", "unsupported_codec")],
    );
    assert_eq!(refused, 0.0, "no frame refused as unsupported:\n{metrics}");
}

#[test]
fn an_opus_only_phone_and_an_rtmp_pcmu_client_hear_each_other() {
    let _serial = serial();
    let Heard {
        sb,
        recorded,
        exited,
        played: out,
        context,
        _dir,
    } = pcmu_publisher_and_default_player("pcmu-to-opus", "opus.so", Some(&["opus", "pcmu"]));
    assert!(
        sb.wait_log(&["codec pair pcmu/opus", "transcoding=true"], 2 * SEC),
        "the call negotiated Opus\n{context}"
    );
    // Opus is perceptual: the tone keeps its frequency and most of its purity.
    assert_tone_snr(
        "pcm_mulaw → Opus (coded at 8 kHz) → baresip",
        &recorded.mono(),
        recorded.rate,
        1000.0,
        1.5,
        20.0,
        &context,
    );
    assert!(
        exited.is_some_and(|s| s.success()),
        "player did not finish: {exited:?}\n{context}"
    );
    let played = wav_or_panic(Some(&out), &context);
    assert_tone_snr(
        "baresip Opus → ffmpeg player (Nellymoser 16 kHz)",
        &played.mono(),
        played.rate,
        440.0,
        1.5,
        20.0,
        &context,
    );
}

#[test]
fn with_opus_and_pcmu_offered_the_offer_order_decides() {
    let _serial = serial();
    for (order, pair, transcodes) in [
        (["opus", "pcmu"], "pcmu/opus", true),
        (["pcmu", "opus"], "pcmu/pcmu", false),
    ] {
        let dir = TestDir::new(&format!("offer-{}", order[0]));
        // baresip lists PCMU first itself: the choice follows our offer, not its preference.
        let mut bob = phone(&dir, &["g711.so", "opus.so"], None);
        let sb = relay_with_codecs(&dir, &bob, Some(&order));
        let (wav, context) = publish_to_phone(&dir, &sb, &mut bob, "pcm_mulaw", 8000);
        let line = format!("transcoding={transcodes}");
        assert!(
            sb.wait_log(&[&format!("codec pair {pair}"), &line], 2 * SEC),
            "offer {order:?}: no `codec pair {pair}` with {line}\n{context}"
        );
        assert_tone_snr(
            &format!("pcm_mulaw → {pair} (offer {order:?})"),
            &wav.mono(),
            wav.rate,
            1000.0,
            1.5,
            20.0,
            &context,
        );
    }
}

#[test]
fn a_client_that_republishes_in_another_format_is_transcoded_anew() {
    let _serial = serial();
    let dir = TestDir::new("republish");
    let tone = dir.path().join("tone440.wav");
    write_tone_wav(&tone, 440.0, 12.0, 8000).unwrap();
    let mut bob = phone(&dir, &["g711.so"], Some(tone));
    let sb = relay(&dir, &bob);
    // A player on the call keeps it up while its publisher leaves and comes back.
    let heard = dir.path().join("player.wav");
    let mut player =
        Player::new(&sb.rtmp_url("call/bob"), 10.0, &heard).spawn("player", dir.path());
    let ctx = |bob: &Baresip, sb: &Skybridge| format!("{}\n{}", bob.tails(), sb.tails());
    assert!(
        bob.wait_for_event("CALL_ESTABLISHED", 5 * SEC).is_some(),
        "bob never answered\n{}",
        ctx(&bob, &sb)
    );
    // First Nellymoser at 1 kHz, then (same call, new stream) Speex at 1.5 kHz.
    for (codec, freq, client) in [
        ("nellymoser", 1000, "nellymoser"),
        ("libspeex", 1500, "speex"),
    ] {
        let mut publisher = Publisher::new(&sb.rtmp_url("call/bob"), freq, 3.0);
        publisher.codec = codec.into();
        publisher.rate = 16000;
        let mut child = publisher.spawn(&format!("publish-{codec}"), dir.path());
        assert!(
            child.wait_timeout(10 * SEC).is_some(),
            "{codec}: the publisher did not finish\n{}",
            child.tails(1500)
        );
        assert!(
            sb.wait_log(
                &[&format!("codec pair {client}/pcmu"), "transcoding=true"],
                2 * SEC
            ),
            "{codec}: no `codec pair {client}/pcmu` in the log\n{}",
            ctx(&bob, &sb)
        );
    }
    player.wait_timeout(15 * SEC);
    assert!(
        bob.wait_for_event("CALL_CLOSED", 10 * SEC).is_some(),
        "the call did not end after the player left\n{}",
        ctx(&bob, &sb)
    );
    let context = ctx(&bob, &sb);
    let wav = wav_or_panic(bob.recording_path().as_deref(), &context);
    let mono = wav.mono();
    // Half-second windows: which tone each one carries, in order.
    let win = wav.rate as usize / 2;
    let tones: Vec<u32> = mono
        .chunks(win)
        .filter(|w| w.len() == win)
        .filter_map(|w| {
            [1000u32, 1500]
                .into_iter()
                .find(|&f| common::audio::tone_snr_db(w, wav.rate, f64::from(f)) > 10.0)
        })
        .collect();
    let count = |f| tones.iter().filter(|&&t| t == f).count();
    assert!(
        count(1000) >= 3 && count(1500) >= 3,
        "both publishes heard for ≥ 1.5 s each: windows {tones:?}\n{context}"
    );
    let first_1500 = tones.iter().position(|&t| t == 1500).unwrap_or(0);
    assert!(
        !tones[first_1500..].contains(&1000),
        "the second format follows the first: {tones:?}"
    );
    let snrs: Vec<String> = mono
        .chunks(win)
        .map(|w| {
            format!(
                "{:.0}/{:.0}",
                common::audio::tone_snr_db(w, wav.rate, 1000.0),
                common::audio::tone_snr_db(w, wav.rate, 1500.0)
            )
        })
        .collect();
    println!("[measure] republish nellymoser → speex: half-second windows {tones:?}, SNR 1000/1500 Hz {snrs:?}");
    let metrics = sb.metrics();
    let dropped = common::skybridge::metric_sum(
        &metrics,
        "skybridge_packets_dropped_total",
        &[("reason", "transcode_error")],
    );
    assert_eq!(dropped, 0.0, "no frame of either format failed to decode");
}
