//! Signal and packet builders shared by the benches (`mod support;` from each bench).
#![allow(dead_code, unreachable_pub)] // each bench uses part of it
#![allow(clippy::unwrap_used)] // bench set-up may unwrap

use skybridge_codecs::tone;

/// `n` samples at `rate` of two tones and a little noise: enough for the coders to do their
/// full work.
pub fn speech_like(rate: u32, n: usize) -> Vec<i16> {
    let a = tone::sine(440.0, 6000.0, rate, n);
    let b = tone::sine(1870.0, 2500.0, rate, n);
    let mut x = 12345u32;
    a.iter()
        .zip(&b)
        .map(|(&a, &b)| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            a.saturating_add(b)
                .saturating_add(((x >> 16) % 600) as i16 - 300)
        })
        .collect()
}

/// (AudioSpecificConfig, access units in order) of ffmpeg's AAC-LC at 44.1 kHz mono coding
/// `pcm`, via FLV. None without ffmpeg.
pub fn aac_stream(pcm: &[i16]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let dir = std::env::temp_dir().join(format!(
        "skybridge-bench-aac-{}-{}",
        std::process::id(),
        pcm.len()
    ));
    std::fs::create_dir_all(&dir).ok()?;
    let raw = dir.join("src.raw");
    let flv = dir.join("aac.flv");
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&raw, bytes).ok()?;
    let ok = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "s16le", "-ar", "44100", "-ac", "1", "-i"])
        .arg(&raw)
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv"])
        .arg(&flv)
        .status()
        .ok()?
        .success();
    let data = std::fs::read(&flv).ok();
    let _ = std::fs::remove_dir_all(&dir);
    if !ok {
        return None;
    }
    let data = data?;
    // FLV: 9-byte header + 4, then tags: type(1) size(3) ts(4) stream(3) body, prev size(4).
    let mut pos = 13;
    let mut config = None;
    let mut units = Vec::new();
    while pos + 11 <= data.len() {
        let size = u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let body = data.get(pos + 11..pos + 11 + size)?;
        if data[pos] == 8 && body.len() > 2 {
            match body[1] {
                0 => config = Some(body[2..].to_vec()),
                _ => units.push(body[2..].to_vec()),
            }
        }
        pos += 11 + size + 4;
    }
    if units.is_empty() {
        return None;
    }
    Some((config?, units))
}
