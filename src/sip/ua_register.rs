//! Registration on behalf of users (RFC 3261 §10.2): REGISTER with digest, refresh before the
//! granted expiry, back-off after failures, un-REGISTER.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use skybridge_codecs::sip::{Message, SipUri, StartLine};

use super::{
    Credentials, Purpose, RegHandle, Registration, RequestTemplate, TimerKey, UaEvent, UserAgent,
};

/// Expiry asked for when the caller passes 0.
const DEFAULT_EXPIRES: u32 = 3600;
/// Refreshes happen at least this long before the binding runs out ...
const REFRESH_MARGIN: u32 = 30;
/// ... but never sooner than this after the previous success.
const MIN_REFRESH: u32 = 5;
/// Longest wait before a refresh, whatever the registrar grants (keeps `Instant` sums small).
const MAX_REFRESH: u32 = 7 * 24 * 3600;
/// Retry delay after the first failure; doubles per further failure up to `MAX_BACKOFF`.
const FIRST_BACKOFF: u32 = 30;
const MAX_BACKOFF: u32 = 600;
/// Largest Min-Expires (423) we follow.
const MAX_EXPIRES: u32 = 24 * 3600;
/// Longest contact user we accept.
const MAX_CONTACT_USER: usize = 64;

/// One registration.
#[derive(Debug)]
pub(super) struct Reg {
    registrar: SocketAddr,
    credentials: Option<Credentials>,
    /// Request-URI: the AoR's domain.
    uri: String,
    /// `<aor>;tag=…` (stable: one Call-ID and From tag per registration, §10.2.4).
    from: String,
    to: String,
    call_id: String,
    /// `sip:contact_user@advertised`.
    contact_uri: String,
    cseq: u32,
    /// Expiry we ask for (raised by a 423's Min-Expires).
    requested: u32,
    /// The REGISTER in flight.
    tx: Option<u64>,
    unregistering: bool,
    failures: u32,
    /// Next refresh or retry.
    next_at: Option<Instant>,
    pub(super) scheduled: Option<Instant>,
}

impl Reg {
    pub(super) fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    pub(super) fn next_seq(&mut self) -> u32 {
        self.cseq = self.cseq.saturating_add(1).min((1 << 31) - 1);
        self.cseq
    }
}

/// `sip:alice@example.com:5070;x` → `sip:example.com:5070`. `None` for anything but a
/// `sip`/`sips` URI.
fn registrar_uri(aor: &str) -> Option<String> {
    let u = SipUri::parse(aor).ok()?;
    let scheme = u.scheme.to_ascii_lowercase();
    Some(match u.port {
        Some(p) => format!("{scheme}:{}:{p}", u.host),
        None => format!("{scheme}:{}", u.host),
    })
}

/// RFC 3261 `user` characters we allow in a contact user (unreserved and a few user-unreserved,
/// no escapes, nothing that ends a header or parameter).
fn valid_contact_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_CONTACT_USER
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$".contains(c))
}

/// Seconds until the refresh of a binding granted for `expires` s: half of it, or 30 s before
/// it runs out if that is sooner, at least 5 s.
pub(super) fn refresh_after(expires: u32) -> Duration {
    let secs = (expires / 2)
        .min(expires.saturating_sub(REFRESH_MARGIN))
        .clamp(MIN_REFRESH, MAX_REFRESH);
    Duration::from_secs(u64::from(secs))
}

/// Retry delay after `failures` consecutive failures (≥ 1).
pub(super) fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(8);
    let secs = FIRST_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF);
    Duration::from_secs(u64::from(secs))
}

/// `delta-seconds`: digits only, saturating at `u32::MAX`.
fn delta_seconds(v: &str) -> Option<u32> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = v.trim_start_matches('0');
    if significant.len() > 10 {
        return Some(u32::MAX);
    }
    Some(
        significant
            .parse::<u64>()
            .map_or(0, |n| n.min(u64::from(u32::MAX)) as u32),
    )
}

/// The URI part before any parameters, for comparing contacts.
fn uri_base(uri: &str) -> &str {
    uri.split([';', '?']).next().unwrap_or(uri)
}

/// Granted expiry in a 2xx to REGISTER (§10.2.4): our Contact's `expires`, else the Expires
/// header, else what we asked for.
fn granted_expiry(msg: &Message<'_>, contact_uri: &str, requested: u32) -> u32 {
    let ours = msg
        .header_values("Contact")
        .take(skybridge_codecs::sip::MAX_HEADERS)
        .filter_map(|v| skybridge_codecs::sip::NameAddr::parse(v).ok())
        .find(|c| uri_base(c.uri).eq_ignore_ascii_case(contact_uri));
    ours.and_then(|c| c.param("expires").flatten().and_then(delta_seconds))
        .or_else(|| msg.header("Expires").and_then(delta_seconds))
        .unwrap_or(requested)
}

impl UserAgent {
    /// Registers `reg.contact_user` at `reg.registrar` for `reg.aor` (RFC 3261 §10.2) and keeps
    /// the binding refreshed: [`UaEvent::Registered`] on each success (refresh at half the
    /// granted expiry, or 30 s before it ends if sooner, at least 5 s later);
    /// [`UaEvent::RegistrationFailed`] on each failure, retried after 30 s, doubling up to
    /// 10 min. A 423 is retried at once with the registrar's Min-Expires (up to 24 h). Beyond
    /// `max_registrations`, or with an AoR that is no SIP URI or a contact user with other
    /// characters than alphanumerics and `-_.!~*'()&=+$`, fails at once (503/400) and the
    /// handle is not kept.
    pub fn register(&mut self, now: Instant, reg: Registration) -> RegHandle {
        let handle = RegHandle(self.id());
        let fail = |code: u16, reason: &str| UaEvent::RegistrationFailed {
            reg: handle,
            code,
            reason: reason.to_owned(),
        };
        if self.regs.len() >= self.config.max_registrations {
            self.event(fail(503, "local registration limit reached"));
            return handle;
        }
        let Some(uri) = registrar_uri(&reg.aor) else {
            self.event(fail(400, "address of record is not a SIP URI"));
            return handle;
        };
        if !valid_contact_user(&reg.contact_user) {
            self.event(fail(400, "invalid contact user"));
            return handle;
        }
        let call_id = self.hex();
        let tag = self.hex();
        let cseq = self.rng_seq();
        let requested = if reg.expires == 0 {
            DEFAULT_EXPIRES
        } else {
            reg.expires
        };
        let r = Reg {
            registrar: reg.registrar,
            credentials: reg.credentials,
            uri,
            from: format!("<{}>;tag={tag}", reg.aor),
            to: format!("<{}>", reg.aor),
            call_id,
            contact_uri: format!("sip:{}@{}", reg.contact_user, self.config.advertised),
            cseq,
            requested,
            tx: None,
            unregistering: false,
            failures: 0,
            next_at: None,
            scheduled: None,
        };
        self.regs.insert(handle, r);
        self.send_register(now, handle);
        handle
    }

    /// Removes a registration: a REGISTER with `Expires: 0` (any REGISTER still in flight is
    /// abandoned), then [`UaEvent::Unregistered`] once it is answered or timed out, and the
    /// handle is forgotten. Unknown handles or a second call: nothing happens.
    pub fn unregister(&mut self, now: Instant, handle: RegHandle) {
        let Some(r) = self.regs.get_mut(&handle) else {
            return;
        };
        if r.unregistering {
            return;
        }
        r.unregistering = true;
        r.next_at = None;
        if let Some(tx) = r.tx.take() {
            if let Some(e) = self.clients.get_mut(&tx) {
                e.reg = None;
            }
        }
        self.send_register(now, handle);
    }

    /// Registrations held (including ones being removed).
    pub fn registrations(&self) -> usize {
        self.regs.len()
    }

    fn rng_seq(&mut self) -> u32 {
        use rand::Rng as _;
        self.rng.random_range(1..10_000u32)
    }

    pub(super) fn resched_reg(&mut self, handle: RegHandle) {
        if let Some(r) = self.regs.get_mut(&handle) {
            let new = r.next_at;
            self.timers
                .reschedule(TimerKey::Reg(handle.0), r.scheduled, new);
            r.scheduled = new;
        }
    }

    /// Client transaction `tx` now carries the REGISTER of `handle`.
    pub(super) fn reg_sent(&mut self, handle: RegHandle, tx: u64) {
        if let Some(r) = self.regs.get_mut(&handle) {
            r.tx = Some(tx);
        }
    }

    fn send_register(&mut self, now: Instant, handle: RegHandle) {
        if self.at_tx_cap() {
            self.register_failed(now, handle, None, 503, "local transaction limit reached");
            return;
        }
        let Some(r) = self.regs.get_mut(&handle) else {
            return;
        };
        let expires = if r.unregistering { 0 } else { r.requested };
        let template = RequestTemplate {
            method: "REGISTER",
            uri: r.uri.clone(),
            from: r.from.clone(),
            to: r.to.clone(),
            call_id: r.call_id.clone(),
            routes: Vec::new(),
            contact: Some(format!("<{}>;expires={expires}", r.contact_uri)),
            extra: vec![("Expires", expires.to_string())],
            content_type: super::SDP,
            body: Vec::new(),
        };
        let seq = r.next_seq();
        let dest = r.registrar;
        r.next_at = None;
        let id = self.start_client(
            now,
            None,
            Purpose::Register,
            template,
            seq,
            None,
            None,
            dest,
        );
        if let Some(e) = self.clients.get_mut(&id) {
            e.reg = Some(handle);
        }
        self.reg_sent(handle, id);
        self.resched_reg(handle);
    }

    pub(super) fn reg_timeout(&mut self, now: Instant, handle: RegHandle) {
        let due = self
            .regs
            .get(&handle)
            .is_some_and(|r| r.tx.is_none() && r.next_at.is_some_and(|at| at <= now));
        if due {
            self.send_register(now, handle);
        }
    }

    /// A final response to REGISTER transaction `tx` of `handle`.
    pub(super) fn register_response(
        &mut self,
        now: Instant,
        source: SocketAddr,
        tx: u64,
        handle: RegHandle,
        code: u16,
        msg: &Message<'_>,
    ) {
        let Some(r) = self.regs.get(&handle) else {
            return;
        };
        if r.tx != Some(tx) {
            return;
        }
        let reason = match msg.start {
            StartLine::Response { reason, .. } => reason,
            StartLine::Request { .. } => "",
        };
        match code {
            200..=299 if r.unregistering => self.finish_unregister(handle),
            200..=299 => {
                let granted = granted_expiry(msg, &r.contact_uri, r.requested);
                if granted == 0 {
                    self.register_failed(now, handle, Some(tx), code, "registrar granted no time");
                    return;
                }
                let Some(r) = self.regs.get_mut(&handle) else {
                    return;
                };
                r.tx = None;
                r.failures = 0;
                r.next_at = Some(now + refresh_after(granted));
                self.resched_reg(handle);
                self.event(UaEvent::Registered {
                    reg: handle,
                    expires: granted,
                });
            }
            401 | 407 => {
                if let Err(why) = self.try_auth(now, source, tx, code, msg) {
                    self.register_failed(now, handle, Some(tx), code, why);
                }
            }
            423 if !r.unregistering => {
                let min = msg.header("Min-Expires").and_then(delta_seconds);
                match min {
                    Some(min) if min > r.requested && min <= MAX_EXPIRES => {
                        if let Some(r) = self.regs.get_mut(&handle) {
                            r.requested = min;
                            r.tx = None;
                        }
                        self.send_register(now, handle);
                    }
                    _ => self.register_failed(now, handle, Some(tx), code, reason),
                }
            }
            _ => {
                let reason = reason.to_owned();
                self.register_failed(now, handle, Some(tx), code, &reason);
            }
        }
    }

    /// The REGISTER of `handle` (transaction `tx`, `None` when it could not be sent) failed:
    /// an un-REGISTER is over; a registration reports and retries with back-off.
    pub(super) fn register_failed(
        &mut self,
        now: Instant,
        handle: RegHandle,
        tx: Option<u64>,
        code: u16,
        reason: &str,
    ) {
        let Some(r) = self.regs.get_mut(&handle) else {
            return;
        };
        if tx.is_some() && r.tx != tx {
            return;
        }
        r.tx = None;
        if r.unregistering {
            self.finish_unregister(handle);
            return;
        }
        r.failures = r.failures.saturating_add(1);
        r.next_at = Some(now + backoff(r.failures));
        self.resched_reg(handle);
        self.event(UaEvent::RegistrationFailed {
            reg: handle,
            code,
            reason: reason.to_owned(),
        });
    }

    fn finish_unregister(&mut self, handle: RegHandle) {
        if let Some(r) = self.regs.remove(&handle) {
            self.timers
                .reschedule(TimerKey::Reg(handle.0), r.scheduled, None);
            if let Some(e) = r.tx.and_then(|tx| self.clients.get_mut(&tx)) {
                e.reg = None;
            }
            self.event(UaEvent::Unregistered { reg: handle });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_is_half_the_expiry_or_30_s_before_it_ends_and_at_least_5_s() {
        let s = |e| refresh_after(e).as_secs();
        assert_eq!(s(3600), 1800);
        assert_eq!(s(60), 30);
        assert_eq!(s(50), 20);
        assert_eq!(s(20), 5);
        assert_eq!(s(0), 5);
        assert_eq!(s(u32::MAX), u64::from(MAX_REFRESH));
    }

    #[test]
    fn backoff_doubles_from_30_s_and_is_capped() {
        let s: Vec<u64> = (1..=7).map(|f| backoff(f).as_secs()).collect();
        assert_eq!(s, [30, 60, 120, 240, 480, 600, 600]);
        assert_eq!(backoff(u32::MAX).as_secs(), 600);
    }

    #[test]
    fn registrar_uri_is_the_aor_domain_and_bad_aors_are_refused() {
        assert_eq!(
            registrar_uri("sip:alice@example.com").as_deref(),
            Some("sip:example.com")
        );
        assert_eq!(
            registrar_uri("SIPS:bob@10.0.0.2:5071;transport=tls").as_deref(),
            Some("sips:10.0.0.2:5071")
        );
        assert_eq!(registrar_uri("tel:+123"), None);
        assert_eq!(registrar_uri("sip:a@b>\r\nX: y"), None);
        assert!(valid_contact_user("alice-7_x.y"));
        assert!(!valid_contact_user("a;b"));
        assert!(!valid_contact_user("a@b"));
        assert!(!valid_contact_user(""));
        assert!(!valid_contact_user(&"a".repeat(65)));
    }

    #[test]
    fn delta_seconds_saturates_and_rejects_non_digits() {
        assert_eq!(delta_seconds(" 600 "), Some(600));
        assert_eq!(delta_seconds("000"), Some(0));
        assert_eq!(delta_seconds("99999999999999999999"), Some(u32::MAX));
        assert_eq!(delta_seconds("-1"), None);
        assert_eq!(delta_seconds("1e3"), None);
        assert_eq!(delta_seconds(""), None);
    }
}
