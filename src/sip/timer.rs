//! SIP timers (RFC 3261 §17, table 4 in appendix A) as one table per transaction, plus the
//! UA-wide queue of wake-ups.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Base timer values (RFC 3261 §17.1.1.1, appendix A). Everything else derives from these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Maximum duration a message stays in the network, default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: timers B, F, H, J (UDP), L, M, and the 2xx-without-ACK give-up.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer D: at least 32 s for unreliable transports.
    pub fn timer_d(&self) -> Duration {
        self.t1x64().max(Duration::from_secs(32))
    }

    /// Next retransmit interval for the capped series (E, G, 2xx): `min(2*prev, T2)`.
    pub fn next_capped(&self, prev: Duration) -> Duration {
        prev.saturating_mul(2).min(self.t2)
    }
}

/// The RFC 3261 timers a transaction may run (RFC 6026 adds L and M).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE client: request retransmit (T1, doubling).
    A,
    /// INVITE client: transaction timeout (64*T1).
    B,
    /// INVITE client: wait for response retransmits in Completed (≥ 32 s).
    D,
    /// Non-INVITE client: request retransmit (T1 doubling, capped at T2).
    E,
    /// Non-INVITE client: transaction timeout (64*T1).
    F,
    /// Non-INVITE client: wait for response retransmits (T4).
    K,
    /// INVITE server: final non-2xx response retransmit (T1 doubling, capped at T2).
    G,
    /// INVITE server: wait for ACK (64*T1).
    H,
    /// INVITE server: wait for ACK retransmits (T4).
    I,
    /// Non-INVITE server: wait for request retransmits (64*T1).
    J,
    /// INVITE server (RFC 6026 Accepted): absorb INVITE retransmits after 2xx (64*T1).
    L,
    /// INVITE client (RFC 6026 Accepted): absorb 2xx retransmits (64*T1).
    M,
}

const TIMERS: [Timer; 12] = [
    Timer::A,
    Timer::B,
    Timer::D,
    Timer::E,
    Timer::F,
    Timer::K,
    Timer::G,
    Timer::H,
    Timer::I,
    Timer::J,
    Timer::L,
    Timer::M,
];

/// One deadline slot per [`Timer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerTable {
    slots: [Option<Instant>; 12],
}

impl TimerTable {
    fn index(timer: Timer) -> usize {
        timer as usize
    }

    /// Arms `timer` to fire at `at` (replacing any earlier deadline).
    pub fn set(&mut self, timer: Timer, at: Instant) {
        if let Some(slot) = self.slots.get_mut(Self::index(timer)) {
            *slot = Some(at);
        }
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        if let Some(slot) = self.slots.get_mut(Self::index(timer)) {
            *slot = None;
        }
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.slots = [None; 12];
    }

    /// The deadline of `timer`, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots.get(Self::index(timer)).copied().flatten()
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }

    /// The earliest timer whose deadline is at or before `now`; it is disarmed.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let (timer, _) = TIMERS
            .iter()
            .filter_map(|&t| self.get(t).map(|at| (t, at)))
            .filter(|&(_, at)| at <= now)
            .min_by_key(|&(_, at)| at)?;
        self.stop(timer);
        Some(timer)
    }
}

/// UA-wide ordered set of `(deadline, owner)` wake-ups; each owner has at most one entry,
/// which the owner keeps in sync through [`TimerQueue::reschedule`].
#[derive(Debug)]
pub struct TimerQueue<K: Ord + Copy> {
    entries: BTreeSet<(Instant, K)>,
}

impl<K: Ord + Copy> Default for TimerQueue<K> {
    fn default() -> Self {
        Self {
            entries: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy> TimerQueue<K> {
    /// Replaces `key`'s entry `old` by `new`.
    pub fn reschedule(&mut self, key: K, old: Option<Instant>, new: Option<Instant>) {
        if old == new {
            return;
        }
        if let Some(old) = old {
            self.entries.remove(&(old, key));
        }
        if let Some(new) = new {
            self.entries.insert((new, key));
        }
    }

    /// Earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.entries.first().map(|&(at, _)| at)
    }

    /// Removes and returns an owner whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<K> {
        let &(at, key) = self.entries.first()?;
        if at > now {
            return None;
        }
        self.entries.remove(&(at, key));
        Some(key)
    }

    /// Number of scheduled owners.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn table_pops_earliest_expired_timer_first_and_disarms_it() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        table.set(Timer::B, t0 + Duration::from_secs(32));
        table.set(Timer::A, t0 + Duration::from_millis(500));
        assert_eq!(table.next(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(table.pop_expired(t0), None);
        assert_eq!(
            table.pop_expired(t0 + Duration::from_secs(40)),
            Some(Timer::A)
        );
        assert_eq!(
            table.pop_expired(t0 + Duration::from_secs(40)),
            Some(Timer::B)
        );
        assert_eq!(table.next(), None);
    }

    #[test]
    fn capped_series_doubles_up_to_t2() {
        let cfg = TimerConfig::default();
        let mut d = cfg.t1;
        let mut seen = vec![d];
        for _ in 0..5 {
            d = cfg.next_capped(d);
            seen.push(d);
        }
        let ms: Vec<u128> = seen.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(cfg.t1x64(), Duration::from_secs(32));
    }

    #[test]
    fn queue_keeps_one_entry_per_owner() {
        let t0 = Instant::now();
        let mut q = TimerQueue::<u64>::default();
        q.reschedule(1, None, Some(t0 + Duration::from_secs(2)));
        q.reschedule(2, None, Some(t0 + Duration::from_secs(1)));
        q.reschedule(1, Some(t0 + Duration::from_secs(2)), Some(t0));
        assert_eq!(q.len(), 2);
        assert_eq!(q.next(), Some(t0));
        assert_eq!(q.pop_expired(t0 + Duration::from_secs(1)), Some(1));
        assert_eq!(q.pop_expired(t0 + Duration::from_secs(1)), Some(2));
        assert!(q.is_empty());
    }
}
