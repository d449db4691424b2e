//! Small pieces every end-to-end test file needs: one-test-at-a-time lock, config snippets,
//! tone assertions.

use std::sync::{Mutex, MutexGuard};

use super::audio::{active_duration, dominant_frequency, tone_snr_db};

/// Calibrated in the harness self-test: a clean G.711 loopback call measures > 30 dB; 20 dB
/// leaves room for jitter-buffer adjustments and packet-loss concealment.
pub const MIN_SNR_DB: f64 = 20.0;

static SERIAL: Mutex<()> = Mutex::new(());

/// One audio test at a time in a test binary (a failed test poisons the lock; the next one
/// still runs), so that timing is not disturbed by a parallel call.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lowercase hex SHA-256, as `token_sha256` stores it.
pub fn sha256_hex(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `[auth]` lines letting anonymous clients dial `targets` (auth off, loopback only).
pub fn anonymous(targets: &[&str]) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "required = false\nanonymous_targets = [{}]",
        list.join(", ")
    )
}

/// Dial-plan entries from `(name, uri)` pairs.
pub fn dialplan(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(n, u)| (n.to_string(), u.to_string()))
        .collect()
}

/// A `[[users]]` block; `sip` is (user, password, realm).
pub fn user_block(
    name: &str,
    token: &str,
    targets: &[&str],
    sip: Option<(&str, &str, &str)>,
) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    let mut s = format!(
        "[[users]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\ntargets = [{}]\n",
        sha256_hex(token),
        list.join(", ")
    );
    if let Some((user, pass, realm)) = sip {
        s.push_str(&format!(
            "sip_username = \"{user}\"\nsip_password = \"{pass}\"\nsip_realm = \"{realm}\"\n"
        ));
    }
    s
}

/// Asserts `x` (mono samples at `rate`) carries a clean `freq` tone: dominant, SNR above
/// [`MIN_SNR_DB`], audible for at least `min_active` seconds.
pub fn assert_tone_samples(
    what: &str,
    x: &[f64],
    rate: u32,
    freq: f64,
    min_active: f64,
    context: &str,
) {
    assert_tone_snr(what, x, rate, freq, min_active, MIN_SNR_DB, context);
}

/// Like [`assert_tone_samples`] with an explicit SNR floor.
pub fn assert_tone_snr(
    what: &str,
    x: &[f64],
    rate: u32,
    freq: f64,
    min_active: f64,
    min_snr_db: f64,
    context: &str,
) {
    let snr = tone_snr_db(x, rate, freq);
    let dominant = dominant_frequency(x, rate);
    let active = active_duration(x, rate, 0.01);
    let secs = x.len() as f64 / f64::from(rate.max(1));
    eprintln!("[measure] {what}: {freq} Hz SNR {snr:.1} dB, dominant {dominant} Hz, active {active:.2} s of {secs:.2} s");
    assert!(
        snr > min_snr_db && dominant == freq && active >= min_active,
        "{what}: {freq} Hz tone: SNR {snr:.1} dB (want > {min_snr_db}), dominant {dominant} Hz, \
         active {active:.2} s (want ≥ {min_active}) of {secs:.2} s\n{context}"
    );
}
