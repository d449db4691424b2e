//! Reference tests against ffmpeg: streams ffmpeg encodes must decode with our codecs to the
//! tone that went in (frequency and level), and what we encode must decode in ffmpeg.
//!
//! ffmpeg is required (scripts/install-deps.sh installs it); these tests fail, loudly, when it
//! is missing rather than pass without checking anything.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use skybridge_codecs::aac::AacDecoder;
use skybridge_codecs::flv::AudioTagHeader;
use skybridge_codecs::g722::{G722Decoder, G722Encoder};
use skybridge_codecs::nellymoser::NellymoserDecoder;
use skybridge_codecs::opus::{OpusDecoder, OpusEncoder};
use skybridge_codecs::speex::{SpeexDecoder, SpeexEncoder, SpeexMode};
use skybridge_codecs::{l16, opus, speex, tone};

/// A scratch directory unique to this process and test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "skybridge-codecs-ref-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs ffmpeg quietly with `args`; panics with its stderr on failure, or with install
/// instructions when ffmpeg is not on PATH.
fn ffmpeg(args: &[&str]) {
    // One ffmpeg at a time: the machine's cores are shared with timing-sensitive tests.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = match Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "ffmpeg is required for the codec reference tests but could not be run ({e}); \
             run scripts/install-deps.sh"
        ),
    };
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_s16le(path: &Path, pcm: &[i16]) {
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

fn read_s16le(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Decodes a file with ffmpeg to mono s16le at its own rate.
fn ffmpeg_decode(input_args: &[&str], input: &Path, out: &Path) -> Vec<i16> {
    let mut args: Vec<&str> = input_args.to_vec();
    args.extend(["-i", input.to_str().unwrap(), "-f", "s16le", "-ac", "1"]);
    args.push(out.to_str().unwrap());
    ffmpeg(&args);
    read_s16le(out)
}

/// Audio tags of an FLV file: (tag header, payload after the audio header byte(s)).
///
/// ```text
/// file = "FLV" version(8) flags(8) header_size(32) prev_tag_size0(32) *(tag prev_tag_size(32))
/// tag  = type(8) data_size(24) timestamp(24) timestamp_ext(8) stream_id(24) data
/// ```
fn flv_audio_tags(flv: &[u8]) -> Vec<(AudioTagHeader, Vec<u8>)> {
    assert_eq!(&flv[..3], b"FLV", "not an FLV file");
    let header_size = u32::from_be_bytes(flv[5..9].try_into().unwrap()) as usize;
    let mut pos = header_size + 4;
    let mut tags = Vec::new();
    while pos + 11 <= flv.len() {
        let kind = flv[pos] & 0x1F;
        let size = u32::from_be_bytes([0, flv[pos + 1], flv[pos + 2], flv[pos + 3]]) as usize;
        let data = &flv[pos + 11..pos + 11 + size];
        if kind == 8 && !data.is_empty() {
            let (h, n) = AudioTagHeader::parse(data).unwrap();
            tags.push((h, data[n..].to_vec()));
        }
        pos += 11 + size + 4;
    }
    tags
}

/// How closely `x` matches `reference`: reference power over difference power, in dB.
fn agreement_db(x: &[i16], reference: &[i16]) -> f64 {
    let n = x.len().min(reference.len());
    let (mut sig, mut err) = (0.0f64, 0.0f64);
    for (&a, &b) in x[..n].iter().zip(&reference[..n]) {
        sig += f64::from(b) * f64::from(b);
        err += (f64::from(a) - f64::from(b)).powi(2);
    }
    10.0 * (sig / err.max(1e-9)).log10()
}

/// Level of `x` against the source tone amplitude `amp`, in dB.
fn level_vs_source_db(x: &[i16], amp: f64) -> f64 {
    tone::level_db(tone::rms(x), amp / 2f64.sqrt())
}

const TONE_HZ: f64 = 1000.0;
const TONE_AMP: f64 = 10_000.0;

#[test]
fn nellymoser_from_ffmpeg_decodes_to_the_source_tone() {
    for (rate, format) in [(8000u32, 5u8), (16000, 4), (22050, 6)] {
        let dir = Scratch::new(&format!("nelly{rate}"));
        let src = tone::sine(TONE_HZ, TONE_AMP, rate, rate as usize * 2);
        let raw = dir.path("src.raw");
        let flv = dir.path("nelly.flv");
        write_s16le(&raw, &src);
        let rate_s = rate.to_string();
        ffmpeg(&[
            "-f",
            "s16le",
            "-ar",
            &rate_s,
            "-ac",
            "1",
            "-i",
            raw.to_str().unwrap(),
            "-c:a",
            "nellymoser",
            "-f",
            "flv",
            flv.to_str().unwrap(),
        ]);
        let tags = flv_audio_tags(&std::fs::read(&flv).unwrap());
        assert!(tags.len() > 10, "{rate} Hz: only {} audio tags", tags.len());
        let mut ours = Vec::new();
        let mut dec = NellymoserDecoder::new();
        let mut buf = vec![0i16; 4096];
        for (h, payload) in &tags {
            assert_eq!(h.sound_format, format, "{rate} Hz");
            assert_eq!(h.sample_rate_hz(), rate, "{rate} Hz");
            let n = dec.decode(payload, &mut buf).unwrap();
            ours.extend_from_slice(&buf[..n]);
        }
        let theirs = ffmpeg_decode(&[], &flv, &dir.path("theirs.raw"));
        // Skip the codec's start-up and the encoder's fade-in.
        let ours = &ours[rate as usize / 4..rate as usize * 3 / 2];
        let theirs = &theirs[rate as usize / 4..rate as usize * 3 / 2];
        let hz = tone::zero_crossing_hz(ours, rate).unwrap();
        let level = level_vs_source_db(ours, TONE_AMP);
        let level_ff = level_vs_source_db(theirs, TONE_AMP);
        let snr = tone::snr_db(ours, TONE_HZ, rate);
        let agreement = agreement_db(ours, theirs);
        eprintln!(
            "nellymoser {rate} Hz: tone {hz:.1} Hz, level {level:.2} dB (ffmpeg's decoder \
             {level_ff:.2} dB), SNR {snr:.1} dB, agreement with ffmpeg {agreement:.1} dB"
        );
        assert!((hz - TONE_HZ).abs() < 5.0, "{rate} Hz: tone at {hz:.1} Hz");
        assert!(snr > 20.0, "{rate} Hz: SNR {snr:.1} dB");
        // ffmpeg's decoder is the reference for level; ffmpeg's *encoder* (5.x) loses about
        // 13 dB on the way in, so the level against the source only has a loose bound.
        assert!(
            (level - level_ff).abs() < 0.5,
            "{rate} Hz: ours {level:.2} dB, ffmpeg's decoder {level_ff:.2} dB"
        );
        assert!(
            (-14.0..1.0).contains(&level),
            "{rate} Hz: level {level:.2} dB"
        );
        assert!(
            agreement > 20.0,
            "{rate} Hz: differs from ffmpeg's decoder, {agreement:.1} dB"
        );
    }
}

#[test]
fn g722_from_ffmpeg_decodes_like_ffmpeg() {
    let dir = Scratch::new("g722dec");
    let src = tone::sine(TONE_HZ, TONE_AMP, 16000, 32000);
    let raw = dir.path("src.raw");
    let g722 = dir.path("tone.g722");
    write_s16le(&raw, &src);
    ffmpeg(&[
        "-f",
        "s16le",
        "-ar",
        "16000",
        "-ac",
        "1",
        "-i",
        raw.to_str().unwrap(),
        "-c:a",
        "g722",
        "-f",
        "g722",
        g722.to_str().unwrap(),
    ]);
    let octets = std::fs::read(&g722).unwrap();
    assert_eq!(
        octets.len(),
        src.len() / 2,
        "64 kbit/s: one octet per two samples"
    );
    let mut ours = vec![0i16; octets.len() * 2];
    G722Decoder::new().decode(&octets, &mut ours).unwrap();
    let theirs = ffmpeg_decode(&["-f", "g722"], &g722, &dir.path("theirs.raw"));
    assert_eq!(ours, theirs, "bit-exact with ffmpeg's G.722 decoder");
    let tail = &ours[4000..];
    let level = level_vs_source_db(tail, TONE_AMP);
    let hz = tone::zero_crossing_hz(tail, 16000).unwrap();
    let snr = tone::snr_db(tail, TONE_HZ, 16000);
    assert!(level.abs() < 0.5, "level {level:.2} dB");
    assert!((hz - TONE_HZ).abs() < 2.0, "tone at {hz:.1} Hz");
    assert!(snr > 30.0, "SNR {snr:.1} dB");
}

#[test]
fn g722_we_encode_decodes_in_ffmpeg_to_the_source_tone() {
    let dir = Scratch::new("g722enc");
    let src = tone::sine(TONE_HZ, TONE_AMP, 16000, 32000);
    let mut enc = G722Encoder::new();
    let mut octets = vec![0u8; src.len() / 2];
    for (pcm, out) in src.chunks(320).zip(octets.chunks_mut(160)) {
        assert_eq!(enc.encode(pcm, out), Ok(160));
    }
    let file = dir.path("ours.g722");
    std::fs::write(&file, &octets).unwrap();
    let theirs = ffmpeg_decode(&["-f", "g722"], &file, &dir.path("theirs.raw"));
    assert_eq!(theirs.len(), src.len());
    let mut ours = vec![0i16; src.len()];
    G722Decoder::new().decode(&octets, &mut ours).unwrap();
    assert_eq!(ours, theirs, "our decoder and ffmpeg's agree on our stream");
    let tail = &theirs[4000..];
    let level = level_vs_source_db(tail, TONE_AMP);
    let hz = tone::zero_crossing_hz(tail, 16000).unwrap();
    let snr = tone::snr_db(tail, TONE_HZ, 16000);
    assert!(level.abs() < 0.5, "level {level:.2} dB");
    assert!((hz - TONE_HZ).abs() < 2.0, "tone at {hz:.1} Hz");
    assert!(snr > 30.0, "SNR {snr:.1} dB");
}

#[test]
fn l16_we_write_is_read_by_ffmpeg_in_both_byte_orders() {
    let dir = Scratch::new("l16");
    let src = tone::sine(TONE_HZ, TONE_AMP, 8000, 8000);
    let mut bytes = vec![0u8; src.len() * 2];
    for (format, encode) in [
        (
            "s16be",
            l16::encode_be as fn(&[i16], &mut [u8]) -> Result<usize, l16::L16Error>,
        ),
        ("s16le", l16::encode_le),
    ] {
        encode(&src, &mut bytes).unwrap();
        let file = dir.path(&format!("ours.{format}"));
        std::fs::write(&file, &bytes).unwrap();
        let back = ffmpeg_decode(
            &["-f", format, "-ar", "8000", "-ac", "1"],
            &file,
            &dir.path("back.raw"),
        );
        assert_eq!(back, src, "{format}");
    }
    // And ffmpeg's big-endian L16 decodes with ours.
    let raw = dir.path("src.raw");
    write_s16le(&raw, &src);
    let be = dir.path("theirs.s16be");
    ffmpeg(&[
        "-f",
        "s16le",
        "-ar",
        "8000",
        "-ac",
        "1",
        "-i",
        raw.to_str().unwrap(),
        "-f",
        "s16be",
        be.to_str().unwrap(),
    ]);
    let mut back = vec![0i16; src.len()];
    assert_eq!(
        l16::decode_be(&std::fs::read(&be).unwrap(), &mut back),
        Ok(src.len())
    );
    assert_eq!(back, src);
}

/// Writes `pcm` as a raw s16le file and has ffmpeg encode it with `codec_args` into `out`.
fn ffmpeg_encode(dir: &Scratch, pcm: &[i16], rate: u32, codec_args: &[&str], out: &Path) {
    let raw = dir.path("src.raw");
    write_s16le(&raw, pcm);
    let rate_s = rate.to_string();
    let mut args = vec![
        "-f",
        "s16le",
        "-ar",
        &rate_s,
        "-ac",
        "1",
        "-i",
        raw.to_str().unwrap(),
    ];
    args.extend_from_slice(codec_args);
    args.push(out.to_str().unwrap());
    ffmpeg(&args);
}

/// The packets of the first logical stream of an Ogg file (RFC 3533): pages are
/// `"OggS" version(8) type(8) granule(64) serial(32) seq(32) crc(32) nsegs(8) lacing(nsegs)`,
/// a packet ends at a lacing value below 255.
fn ogg_packets(ogg: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut pos = 0;
    while pos + 27 <= ogg.len() {
        assert_eq!(&ogg[pos..pos + 4], b"OggS", "Ogg page sync at {pos}");
        let nsegs = ogg[pos + 26] as usize;
        let lacing = &ogg[pos + 27..pos + 27 + nsegs];
        let mut body = pos + 27 + nsegs;
        for &l in lacing {
            current.extend_from_slice(&ogg[body..body + l as usize]);
            body += l as usize;
            if l < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        pos = body;
    }
    packets
}

/// CRC-32 of Ogg pages (polynomial 0x04C11DB7, no reflection, initial 0).
fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// An Ogg file of one logical stream, one packet per page (each packet < 255·255 bytes);
/// `granules[i]` is page i's granule position.
fn ogg_file(packets: &[Vec<u8>], granules: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    for (seq, (p, &granule)) in packets.iter().zip(granules).enumerate() {
        let mut page = b"OggS\0".to_vec();
        let flags = match seq {
            0 => 0x02,
            s if s + 1 == packets.len() => 0x04,
            _ => 0,
        };
        page.push(flags);
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&0x5eed_u32.to_le_bytes());
        page.extend_from_slice(&(seq as u32).to_le_bytes());
        page.extend_from_slice(&[0; 4]);
        let mut lacing = vec![255u8; p.len() / 255];
        lacing.push((p.len() % 255) as u8);
        page.push(lacing.len() as u8);
        page.extend_from_slice(&lacing);
        page.extend_from_slice(p);
        let crc = ogg_crc(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&page);
    }
    out
}

/// An FLV file with one audio tag per payload, `header` the tag's first byte, 20 ms apart.
fn flv_file(header: u8, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"FLV\x01\x04\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
    for (i, p) in payloads.iter().enumerate() {
        let size = (p.len() + 1) as u32;
        let ts = (i as u32) * 20;
        out.push(8);
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.push((ts >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.push(header);
        out.extend_from_slice(p);
        out.extend_from_slice(&(size + 11).to_be_bytes());
    }
    out
}

/// Frequency, level (dB against the source tone) and SNR of `x`, printed and asserted.
fn assert_tone(what: &str, x: &[i16], rate: u32, level_db: std::ops::Range<f64>, min_snr: f64) {
    let hz = tone::zero_crossing_hz(x, rate).unwrap();
    let level = level_vs_source_db(x, TONE_AMP);
    let snr = tone::snr_db(x, TONE_HZ, rate);
    eprintln!("{what}: tone {hz:.1} Hz, level {level:.2} dB, SNR {snr:.1} dB");
    assert!((hz - TONE_HZ).abs() < 5.0, "{what}: tone at {hz:.1} Hz");
    assert!(level_db.contains(&level), "{what}: level {level:.2} dB");
    assert!(snr > min_snr, "{what}: SNR {snr:.1} dB");
}

#[test]
fn speex_wideband_from_ffmpeg_flv_decodes_to_the_source_tone() {
    let dir = Scratch::new("speexwb");
    let src = tone::sine(TONE_HZ, TONE_AMP, 16000, 32000);
    let flv = dir.path("speex.flv");
    ffmpeg_encode(&dir, &src, 16000, &["-c:a", "libspeex", "-f", "flv"], &flv);
    let tags = flv_audio_tags(&std::fs::read(&flv).unwrap());
    assert!(tags.len() > 10, "only {} audio tags", tags.len());
    let mut dec = SpeexDecoder::new(speex::FLV_MODE).unwrap();
    let mut ours = Vec::new();
    let mut buf = vec![0i16; 320 * speex::MAX_FRAMES_PER_PACKET];
    for (h, payload) in &tags {
        assert_eq!(h.sound_format, 11);
        let n = dec.decode(Some(payload), &mut buf).unwrap();
        ours.extend_from_slice(&buf[..n]);
    }
    assert!(ours.len() >= 30000, "{} samples", ours.len());
    assert_tone(
        "speex wb from ffmpeg",
        &ours[4000..30000],
        16000,
        -1.0..1.0,
        30.0,
    );
}

#[test]
fn speex_narrowband_from_ffmpeg_ogg_decodes_to_the_source_tone() {
    let dir = Scratch::new("speexnb");
    let src = tone::sine(TONE_HZ, TONE_AMP, 8000, 16000);
    let ogg = dir.path("speex.ogg");
    ffmpeg_encode(&dir, &src, 8000, &["-c:a", "libspeex", "-f", "ogg"], &ogg);
    let packets = ogg_packets(&std::fs::read(&ogg).unwrap());
    assert!(packets[0].starts_with(b"Speex   "), "Speex header first");
    let mut dec = SpeexDecoder::new(SpeexMode::Narrowband).unwrap();
    let mut ours = Vec::new();
    let mut buf = vec![0i16; 160 * speex::MAX_FRAMES_PER_PACKET];
    for p in &packets[2..] {
        let n = dec.decode(Some(p), &mut buf).unwrap();
        ours.extend_from_slice(&buf[..n]);
    }
    assert!(ours.len() >= 15000, "{} samples", ours.len());
    assert_tone(
        "speex nb from ffmpeg",
        &ours[2000..15000],
        8000,
        -1.0..1.0,
        30.0,
    );
}

#[test]
fn speex_wideband_we_encode_decodes_in_ffmpeg_and_ours() {
    let dir = Scratch::new("speexenc");
    let src = tone::sine(TONE_HZ, TONE_AMP, 16000, 32000);
    let mut enc = SpeexEncoder::new(SpeexMode::Wideband, speex::DEFAULT_QUALITY).unwrap();
    let mut dec = SpeexDecoder::new(SpeexMode::Wideband).unwrap();
    let mut payloads = Vec::new();
    let mut ours = Vec::new();
    let mut pkt = [0u8; 200];
    let mut pcm = [0i16; 320];
    for frame in src.chunks_exact(320) {
        let n = enc.encode(frame, &mut pkt).unwrap();
        payloads.push(pkt[..n].to_vec());
        assert_eq!(dec.decode(Some(&pkt[..n]), &mut pcm), Ok(320));
        ours.extend_from_slice(&pcm);
    }
    assert_tone("speex wb round trip", &ours[4000..], 16000, -1.0..1.0, 30.0);
    // FLV SoundFormat 11 (0xB2: speex, 16-bit, mono), as Flash would send it.
    let file = dir.path("ours.flv");
    std::fs::write(&file, flv_file(0xB2, &payloads)).unwrap();
    let theirs = ffmpeg_decode(&[], &file, &dir.path("theirs.raw"));
    assert!(theirs.len() >= 30000, "{} samples", theirs.len());
    assert_tone(
        "speex wb ours in ffmpeg",
        &theirs[4000..30000],
        16000,
        -1.0..1.0,
        30.0,
    );
}

/// Frequency (within 0.5 %), level (within 1 dB of the source's) and SNR of a tone at `hz`
/// in 16 kHz `x`, printed and asserted.
fn assert_tone_at(what: &str, x: &[i16], hz: f64, min_snr: f64) {
    let got = tone::zero_crossing_hz(x, 16000).unwrap();
    let level = level_vs_source_db(x, TONE_AMP);
    let snr = tone::snr_db(x, hz, 16000);
    eprintln!("{what}: tone {got:.1} Hz, level {level:.2} dB, SNR {snr:.1} dB");
    assert!((got - hz).abs() < hz * 0.005, "{what}: tone at {got:.1} Hz");
    assert!(level.abs() < 1.0, "{what}: level {level:.2} dB");
    assert!(snr > min_snr, "{what}: SNR {snr:.1} dB");
}

/// FLV payloads of `src` through `enc`, `frames` 20 ms frames per tag.
fn speex_payloads(enc: &mut SpeexEncoder, src: &[i16], frames: usize) -> Vec<Vec<u8>> {
    let mut pkt = [0u8; 600];
    src.chunks_exact(enc.mode().frame_samples() * frames)
        .map(|chunk| {
            let n = enc.encode(chunk, &mut pkt).unwrap();
            pkt[..n].to_vec()
        })
        .collect()
}

/// Both of ffmpeg's Speex decoders (its own float `speex`, the default for FLV, and
/// `libspeex`) on an FLV file of SoundFormat 11 tags, 16 kHz; (decoder, samples) each.
fn ffmpeg_speex_decoders(
    dir: &Scratch,
    payloads: &[Vec<u8>],
    frames: usize,
) -> Vec<(&'static str, Vec<i16>)> {
    let file = dir.path(&format!("speex{frames}.flv"));
    std::fs::write(&file, flv_file(0xB2, payloads)).unwrap();
    // ffmpeg 5.1's own decoder takes one frame per FLV tag, whoever encoded it: several
    // frames per tag are for libspeex-based players only. It also drifts off a stationary
    // tone after about two seconds, whatever the encoder settings (libspeex-based decoders,
    // ours included, do not), so the tests measure the first two seconds, as the ones above.
    let decoders: &[&str] = if frames == 1 {
        &["speex", "libspeex"]
    } else {
        &["libspeex"]
    };
    decoders
        .iter()
        .map(|&d| {
            let out = dir.path(&format!("{d}{frames}.raw"));
            (d, ffmpeg_decode(&["-c:a", d], &file, &out))
        })
        .collect()
}

#[test]
fn speex_wideband_stream_of_8_khz_audio_plays_in_both_ffmpeg_decoders() {
    // Narrowband frames, no high-band layer: a wideband (FLV) decoder plays them at 16 kHz.
    let dir = Scratch::new("speexnbwb");
    for (hz, floor) in [(1000.0, 35.0), (3400.0, 28.0)] {
        let src = tone::sine(hz, TONE_AMP, 8000, 16000);
        for frames in [1, 3] {
            let mut enc = speex::encoder_for_source(SpeexMode::Wideband, 8000).unwrap();
            assert_eq!(enc.mode(), SpeexMode::Narrowband);
            let payloads = speex_payloads(&mut enc, &src, frames);
            for (decoder, pcm) in ffmpeg_speex_decoders(&dir, &payloads, frames) {
                assert!(pcm.len() >= 30000, "{decoder}: {} samples", pcm.len());
                let what = format!("8 kHz {hz} Hz in ffmpeg {decoder}, {frames} frames/tag");
                assert_tone_at(&what, &pcm[4000..30000], hz, floor);
            }
        }
    }
}

#[test]
fn speex_wideband_with_the_cheap_high_band_plays_in_both_ffmpeg_decoders() {
    let dir = Scratch::new("speexwbhb1");
    for (hz, floor) in [(1000.0, 30.0), (3400.0, 28.0)] {
        let src = tone::sine(hz, TONE_AMP, 16000, 32000);
        let mut enc = speex::encoder_for_source(SpeexMode::Wideband, 16000).unwrap();
        let payloads = speex_payloads(&mut enc, &src, 1);
        for (decoder, pcm) in ffmpeg_speex_decoders(&dir, &payloads, 1) {
            assert!(pcm.len() >= 30000, "{decoder}: {} samples", pcm.len());
            let what = format!("16 kHz {hz} Hz in ffmpeg {decoder}");
            assert_tone_at(&what, &pcm[4000..30000], hz, floor);
        }
    }
}

#[test]
fn aac_from_ffmpeg_flv_decodes_to_the_source_tone() {
    let dir = Scratch::new("aac");
    let src = tone::sine(TONE_HZ, TONE_AMP, 44100, 88200);
    let flv = dir.path("aac.flv");
    ffmpeg_encode(
        &dir,
        &src,
        44100,
        &["-c:a", "aac", "-b:a", "96k", "-f", "flv"],
        &flv,
    );
    let tags = flv_audio_tags(&std::fs::read(&flv).unwrap());
    let (first, config) = &tags[0];
    assert_eq!(first.aac_packet_type, Some(0), "sequence header first");
    let mut dec = AacDecoder::new(config).unwrap();
    assert_eq!(dec.config().sample_rate, 44100);
    assert_eq!(dec.config().channels(), 1);
    let mut ours = Vec::new();
    let mut buf = vec![0i16; 2048];
    for (h, au) in &tags[1..] {
        assert_eq!(h.aac_packet_type, Some(1));
        let n = dec.decode(au, &mut buf).unwrap();
        ours.extend_from_slice(&buf[..n]);
    }
    assert!(ours.len() >= 80000, "{} samples", ours.len());
    assert_tone(
        "aac from ffmpeg",
        &ours[11025..80000],
        44100,
        -1.0..1.0,
        30.0,
    );
}

#[test]
fn opus_from_ffmpeg_ogg_decodes_to_the_source_tone_at_48_and_8_khz() {
    let dir = Scratch::new("opusdec");
    let src = tone::sine(TONE_HZ, TONE_AMP, 48000, 96000);
    let ogg = dir.path("opus.ogg");
    ffmpeg_encode(
        &dir,
        &src,
        48000,
        &["-c:a", "libopus", "-b:a", "32k", "-f", "ogg"],
        &ogg,
    );
    let packets = ogg_packets(&std::fs::read(&ogg).unwrap());
    assert!(packets[0].starts_with(b"OpusHead"));
    assert!(packets[1].starts_with(b"OpusTags"));
    for rate in [48000u32, 8000] {
        let mut dec = OpusDecoder::new(rate).unwrap();
        let mut ours = Vec::new();
        let mut buf = vec![0i16; 48 * 120];
        for p in &packets[2..] {
            let n = dec.decode(Some(p), &mut buf).unwrap();
            ours.extend_from_slice(&buf[..n]);
        }
        let r = rate as usize;
        assert!(ours.len() >= r * 19 / 10, "{rate}: {} samples", ours.len());
        let what = format!("opus from ffmpeg at {rate} Hz");
        assert_tone(&what, &ours[r / 4..r * 19 / 10], rate, -1.0..1.0, 12.0);
    }
}

#[test]
fn opus_we_encode_decodes_in_ffmpeg_and_ours() {
    let dir = Scratch::new("opusenc");
    let src = tone::sine(TONE_HZ, TONE_AMP, 8000, 16000);
    // PCMU-side rate in, RTP's 48 kHz clock on the wire.
    let mut enc = OpusEncoder::new(8000, 24000).unwrap();
    let mut dec = OpusDecoder::new(8000).unwrap();
    let mut head = b"OpusHead\x01\x01".to_vec();
    head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip
    head.extend_from_slice(&8000u32.to_le_bytes()); // input rate, informative
    head.extend_from_slice(&[0, 0, 0]); // gain, mapping family 0
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&4u32.to_le_bytes());
    tags.extend_from_slice(b"test");
    tags.extend_from_slice(&0u32.to_le_bytes());
    let mut packets = vec![head, tags];
    let mut granules = vec![0u64, 0];
    let mut ours = Vec::new();
    let mut pkt = [0u8; opus::MAX_PACKET];
    let mut pcm = [0i16; 160];
    for (i, frame) in src.chunks_exact(160).enumerate() {
        let n = enc.encode(frame, &mut pkt).unwrap();
        packets.push(pkt[..n].to_vec());
        granules.push(u64::from(opus::rtp_ticks(160, 8000)) * (i as u64 + 1));
        assert_eq!(dec.decode(Some(&pkt[..n]), &mut pcm), Ok(160));
        ours.extend_from_slice(&pcm);
    }
    assert_tone(
        "opus round trip 8 kHz",
        &ours[2000..],
        8000,
        -1.0..1.0,
        20.0,
    );
    let file = dir.path("ours.ogg");
    std::fs::write(&file, ogg_file(&packets, &granules)).unwrap();
    let theirs = ffmpeg_decode(&["-f", "ogg"], &file, &dir.path("theirs.raw"));
    assert!(theirs.len() >= 90000, "{} samples at 48 kHz", theirs.len());
    assert_tone(
        "opus ours in ffmpeg",
        &theirs[12000..90000],
        48000,
        -1.0..1.0,
        12.0,
    );
}

/// A relay's decoder joins a publisher's stream wherever the call starts. Speex is
/// predictive: a decoder that joins a *stationary tone* mid-stream can lock onto a wrong pitch
/// for seconds (seen here: 533 Hz from the second tag of ffmpeg's pure 1 kHz), so the relay
/// relies on joining before the caller speaks. Joining anywhere in a stretch of silence, the
/// decoder must then follow the tone that starts after it.
#[test]
fn speex_wideband_joined_during_silence_decodes_the_tone_that_follows() {
    let dir = Scratch::new("speexwb-join");
    let mut src = vec![0i16; 8000]; // 0.5 s of silence (25 tags)
    src.extend(tone::sine(TONE_HZ, TONE_AMP, 16000, 40000));
    let flv = dir.path("speex.flv");
    ffmpeg_encode(&dir, &src, 16000, &["-c:a", "libspeex", "-f", "flv"], &flv);
    let tags = flv_audio_tags(&std::fs::read(&flv).unwrap());
    let mut buf = vec![0i16; 320 * speex::MAX_FRAMES_PER_PACKET];
    for start in 0..24 {
        let mut dec = SpeexDecoder::new(speex::FLV_MODE).unwrap();
        let mut ours = Vec::new();
        for (_, payload) in &tags[start..] {
            let n = dec.decode(Some(payload), &mut buf).unwrap();
            ours.extend_from_slice(&buf[..n]);
        }
        // The tone starts 8000 − 320 × start samples into what this decoder produced.
        let onset = 8000 - 320 * start;
        assert!(ours.len() >= onset + 30000, "{} samples", ours.len());
        assert_tone(
            &format!("speex wb joined at tag {start}"),
            &ours[onset + 4000..onset + 30000],
            16000,
            -1.0..1.0,
            30.0,
        );
    }
}
