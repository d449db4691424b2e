//! Playout pacer toward RTP: absorbs TCP bursts and bounds the delay a stall can add.
//!
//! Frames are queued with their media timestamp. The first frame anchors media time to wall
//! time; each frame is due at `anchor + (ts - anchor_ts)`. A frame more than `max_delay` past
//! due is dropped (counted) rather than sent late, so a 3-second stall costs 3 seconds of audio,
//! not 3 seconds of permanent delay — however the backlog arrives after the stall (at once, or
//! trickling in faster than real time over seconds): the anchor is what says how old a frame
//! is, so it is not moved by late frames alone.
//!
//! The anchor moves in three cases:
//! - **fresher than the timeline**: a frame arriving more than `max_delay` *before* it is due
//!   (the client's clock runs fast, or it restarted ahead): the anchor moves to it and older
//!   queued frames become overdue;
//! - **steady lag**: every frame for [`LEAD_WINDOW`] arrived more than `max_delay / 2` late,
//!   all by about the same amount (spread ≤ `max_delay / 2`): the client's timeline is behind
//!   ours (it paused and resumed with contiguous timestamps, or its clock runs slow), not
//!   catching up after a stall, so the anchor moves later by the smallest lag seen. A backlog
//!   draining after a stall arrives faster than real time, its lag shrinking frame by frame,
//!   and never looks steady;
//! - **steady lead**: every frame for [`LEAD_WINDOW`] arrived before it was due: the anchor
//!   moves earlier by the smallest lead, so no waiting is added.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::media::MediaFrame;

/// What the pacer decided for one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Paced {
    Send(MediaFrame),
    DroppedLate,
    DroppedQueueFull,
}

/// How long every frame must arrive early before the timeline is moved earlier.
pub const LEAD_WINDOW: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct Pacer {
    queue: VecDeque<(MediaFrame, Instant)>,
    anchor: Option<(Instant, u32)>,
    clock_rate: u32,
    max_delay: Duration,
    capacity: usize,
    reanchors: u64,
    /// Smallest lead seen since `lead_since`.
    lead_min: Duration,
    lead_since: Option<Instant>,
    /// The current run of frames that arrived more than `max_delay / 2` late.
    lag_run: Option<LagRun>,
}

/// Frames arriving late since `since`, with the smallest and largest lag among them.
#[derive(Debug, Clone, Copy)]
struct LagRun {
    since: Instant,
    min: Duration,
    max: Duration,
}

impl Pacer {
    /// `capacity` frames at most are held; beyond it the oldest is dropped.
    /// Media clock the pacer counts in.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    pub fn new(clock_rate: u32, max_delay: Duration, capacity: usize) -> Pacer {
        Pacer {
            queue: VecDeque::with_capacity(capacity),
            anchor: None,
            clock_rate: clock_rate.max(1),
            max_delay,
            capacity: capacity.max(1),
            reanchors: 0,
            lead_min: Duration::MAX,
            lead_since: None,
            lag_run: None,
        }
    }

    fn due(&self, anchor: (Instant, u32), ts: u32) -> Instant {
        // Signed distance in the media clock, so a timestamp just behind the anchor is "early".
        let delta = ts.wrapping_sub(anchor.1) as i32;
        let micros = i64::from(delta) * 1_000_000 / i64::from(self.clock_rate);
        if micros >= 0 {
            anchor.0 + Duration::from_micros(micros.unsigned_abs())
        } else {
            anchor
                .0
                .checked_sub(Duration::from_micros(micros.unsigned_abs()))
                .unwrap_or(anchor.0)
        }
    }

    /// Queues a frame that arrived at `now`. Returns a drop if the queue was full.
    pub fn push(&mut self, now: Instant, frame: MediaFrame) -> Option<Paced> {
        let anchor = *self.anchor.get_or_insert((now, frame.timestamp));
        let mut due = self.due(anchor, frame.timestamp);
        // A timestamp jump of more than a few seconds either way is a new timeline (client
        // restarted its clock): re-anchor on it.
        let off = if due > now { due - now } else { now - due };
        if off > Duration::from_secs(5) {
            self.anchor = Some((now, frame.timestamp));
            self.reanchors += 1;
            due = now;
        } else if due > now + self.max_delay {
            // Fresher than our timeline allows: pull the timeline forward to this frame and
            // re-time what is queued (older frames become overdue and are dropped by `poll`).
            let anchor = (now, frame.timestamp);
            self.anchor = Some(anchor);
            self.reanchors += 1;
            for i in 0..self.queue.len() {
                let ts = self.queue.get(i).map(|(f, _)| f.timestamp);
                if let Some(ts) = ts {
                    let d = self.due(anchor, ts);
                    if let Some((_, due)) = self.queue.get_mut(i) {
                        *due = d;
                    }
                }
            }
            due = now;
        }
        due = self.track_lag(now, due);
        let dropped = if self.queue.len() >= self.capacity {
            self.queue.pop_front();
            Some(Paced::DroppedQueueFull)
        } else {
            None
        };
        self.queue.push_back((frame, due));
        self.track_lead(now, due);
        dropped
    }

    /// Watches for a steady lag (see the module doc) and moves the timeline later when one has
    /// lasted [`LEAD_WINDOW`]. Returns the (possibly re-timed) due instant of the new frame.
    fn track_lag(&mut self, now: Instant, due: Instant) -> Instant {
        let lag = now.saturating_duration_since(due);
        if lag <= self.max_delay / 2 {
            self.lag_run = None;
            return due;
        }
        let run = self.lag_run.get_or_insert(LagRun {
            since: now,
            min: lag,
            max: lag,
        });
        run.min = run.min.min(lag);
        run.max = run.max.max(lag);
        let run = *run;
        if now.saturating_duration_since(run.since) < LEAD_WINDOW
            || run.max - run.min > self.max_delay / 2
        {
            if run.max - run.min > self.max_delay / 2 {
                // Catching up (a backlog draining): start watching afresh from this frame.
                self.lag_run = Some(LagRun {
                    since: now,
                    min: lag,
                    max: lag,
                });
            }
            return due;
        }
        self.lag_run = None;
        self.reanchors += 1;
        let shift = run.min;
        if let Some((at, _)) = self.anchor.as_mut() {
            *at += shift;
        }
        for (_, d) in self.queue.iter_mut() {
            *d += shift;
        }
        due + shift
    }

    /// Moves the timeline earlier by the smallest lead (due − arrival) seen over a whole
    /// [`LEAD_WINDOW`], when every frame in it arrived before it was due: the client's audio
    /// reaches us sooner than our anchor assumes (a re-anchor in the middle of a burst), so
    /// holding it back would only add delay.
    fn track_lead(&mut self, now: Instant, due: Instant) {
        let lead = due.saturating_duration_since(now);
        let Some(since) = self.lead_since else {
            self.lead_since = Some(now);
            self.lead_min = lead;
            return;
        };
        self.lead_min = self.lead_min.min(lead);
        if now.saturating_duration_since(since) < LEAD_WINDOW {
            return;
        }
        let shift = self.lead_min;
        self.lead_since = Some(now);
        self.lead_min = Duration::MAX;
        if shift.is_zero() {
            return;
        }
        if let Some((at, _)) = self.anchor.as_mut() {
            *at = at.checked_sub(shift).unwrap_or(*at);
        }
        for (_, d) in self.queue.iter_mut() {
            *d = d.checked_sub(shift).unwrap_or(*d);
        }
    }

    /// Next instant a frame becomes due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.front().map(|(_, due)| *due)
    }

    /// Frames to send or drop at `now`, oldest first.
    pub fn poll(&mut self, now: Instant) -> Option<Paced> {
        let (_, due) = self.queue.front()?;
        if *due + self.max_delay < now {
            self.queue.pop_front();
            return Some(Paced::DroppedLate);
        }
        if *due <= now {
            return self.queue.pop_front().map(|(f, _)| Paced::Send(f));
        }
        None
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// How many times the pacer re-anchored its timeline.
    pub fn reanchors(&self) -> u64 {
        self.reanchors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Codec;
    use bytes::Bytes;

    fn frame(ts: u32) -> MediaFrame {
        MediaFrame {
            codec: Codec::Pcmu,
            timestamp: ts,
            marker: false,
            payload: Bytes::from_static(&[0xFF; 160]),
        }
    }

    fn drain(p: &mut Pacer, now: Instant) -> (Vec<u32>, usize) {
        let mut sent = Vec::new();
        let mut late = 0;
        for _ in 0..10_000 {
            match p.poll(now) {
                Some(Paced::Send(f)) => sent.push(f.timestamp),
                Some(Paced::DroppedLate) => late += 1,
                Some(Paced::DroppedQueueFull) => {}
                None => break,
            }
        }
        (sent, late)
    }

    #[test]
    fn frames_are_released_at_their_media_time() {
        let t0 = Instant::now();
        let mut p = Pacer::new(8000, Duration::from_millis(200), 100);
        for i in 0..5 {
            p.push(t0, frame(i * 160));
        }
        assert_eq!(drain(&mut p, t0).0, vec![0]);
        assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_millis(20)));
        assert_eq!(
            drain(&mut p, t0 + Duration::from_millis(45)).0,
            vec![160, 320]
        );
        assert_eq!(
            drain(&mut p, t0 + Duration::from_millis(80)).0,
            vec![480, 640]
        );
        assert!(p.is_empty());
    }

    #[test]
    fn a_burst_after_a_stall_keeps_only_what_is_within_the_bound() {
        let t0 = Instant::now();
        let mut p = Pacer::new(8000, Duration::from_millis(200), 1000);
        p.push(t0, frame(0));
        assert_eq!(drain(&mut p, t0).0, vec![0]);
        // 3 s stall: 150 frames of 20 ms arrive at once at t0 + 3 s.
        let now = t0 + Duration::from_secs(3);
        for i in 1..=150 {
            p.push(now, frame(i * 160));
        }
        let (sent, late) = drain(&mut p, now);
        // Frames due more than 200 ms ago are dropped; those within the bound go out now.
        assert!((138..=141).contains(&late), "late {late}");
        assert_eq!(sent.len() + late, 150);
        // What remains to send is never more than 200 ms behind.
        assert!(sent.iter().all(|ts| *ts >= (150 - 11) * 160), "{sent:?}");
    }

    #[test]
    fn a_burst_whose_first_frame_arrives_alone_does_not_keep_the_stall_as_delay() {
        let t0 = Instant::now();
        let mut p = Pacer::new(8000, Duration::from_millis(200), 1000);
        p.push(t0, frame(0));
        assert_eq!(drain(&mut p, t0).0, vec![0]);
        // After a 3 s stall the first frame of the backlog arrives (and is polled) alone: it
        // is 3 s late by the anchor, so it is dropped, not taken as a new timeline…
        let now = t0 + Duration::from_secs(3);
        p.push(now, frame(160));
        assert_eq!(drain(&mut p, now), (vec![], 1));
        // …then the rest of the burst, up to the frame spoken just now.
        let at = now + Duration::from_millis(2);
        for i in 2..=150 {
            p.push(at, frame(i * 160));
        }
        let (sent, late) = drain(&mut p, at);
        // Only what was spoken within the bound of now goes out.
        assert_eq!(sent.len() + late, 149);
        assert!(late >= 138, "late {late}");
        assert!(sent.iter().all(|ts| *ts >= (150 - 11) * 160), "{sent:?}");
        assert_eq!(p.reanchors(), 0);
        // Frames keep arriving in real time: each goes out as it arrives.
        for k in 1..=75u32 {
            let t = at + Duration::from_millis(20) * k;
            p.push(t, frame((150 + k) * 160));
            assert_eq!(drain(&mut p, t), (vec![(150 + k) * 160], 0), "frame {k}");
        }
    }

    #[test]
    fn a_backlog_draining_at_twice_real_time_is_still_dropped() {
        let t0 = Instant::now();
        let mut p = Pacer::new(8000, Duration::from_millis(200), 1000);
        p.push(t0, frame(0));
        drain(&mut p, t0);
        // A 3 s stall, then the backlog arrives at twice real time (one frame every 10 ms)
        // until it has caught up with the present, then frames arrive in real time.
        let thaw = t0 + Duration::from_secs(3);
        let mut i = 1u32;
        let mut t = thaw;
        let mut sent_late = Vec::new();
        for _ in 0..2000 {
            let spoken = t0 + Duration::from_millis(20) * i;
            if spoken > t {
                t = spoken;
            }
            p.push(t, frame(i * 160));
            for ts in drain(&mut p, t).0 {
                let spoken = t0 + Duration::from_millis(u64::from(ts / 8));
                sent_late.push(t.saturating_duration_since(spoken));
            }
            i += 1;
            t += Duration::from_millis(10);
            if i > 500 {
                break;
            }
        }
        let worst = sent_late.iter().max().copied().unwrap_or_default();
        assert!(
            worst <= Duration::from_millis(200),
            "a frame went out {worst:?} after it was spoken"
        );
        assert_eq!(p.reanchors(), 0, "a draining backlog is not a steady lag");
    }

    #[test]
    fn a_client_that_paused_and_resumed_with_contiguous_timestamps_is_followed() {
        let t0 = Instant::now();
        let mut p = Pacer::new(8000, Duration::from_millis(200), 100);
        p.push(t0, frame(0));
        drain(&mut p, t0);
        // The client paused for 2 s without a backlog, then resumed in real time with ts
        // continuing at 160: every frame is 2 s late by the anchor, steadily.
        let resume = t0 + Duration::from_secs(2);
        let mut sent = Vec::new();
        let mut late = 0;
        for k in 0..50u32 {
            let t = resume + Duration::from_millis(20) * k;
            p.push(t, frame((k + 1) * 160));
            let (s, l) = drain(&mut p, t);
            sent.extend(s);
            late += l;
        }
        // After one LEAD_WINDOW of steady lag the timeline follows the client; from then on
        // every frame goes out as it arrives.
        assert_eq!(p.reanchors(), 1);
        assert!((24..=27).contains(&late), "dropped {late} before following");
        assert_eq!(sent.len() + late, 50);
        assert_eq!(sent.last(), Some(&(50 * 160)));
    }

    #[test]
    fn a_slow_client_clock_is_followed_without_drops() {
        let t0 = Instant::now();
        let mut p = Pacer::new(8000, Duration::from_millis(200), 100);
        // The client's clock runs 1 % slow: each 20 ms frame arrives 20.2 ms after the last.
        let mut late = 0;
        let mut sent = 0;
        for k in 0..3000u32 {
            let t = t0 + Duration::from_micros(20_200) * k;
            p.push(t, frame(k * 160));
            let (s, l) = drain(&mut p, t);
            sent += s.len();
            late += l;
        }
        assert_eq!((sent, late), (3000, 0), "a drifting clock costs no audio");
        assert!(p.reanchors() >= 1);
    }

    #[test]
    fn a_full_queue_drops_the_oldest() {
        let t0 = Instant::now();
        let mut p = Pacer::new(8000, Duration::from_millis(200), 3);
        for i in 0..3 {
            assert_eq!(p.push(t0, frame(i * 160)), None);
        }
        assert_eq!(p.push(t0, frame(480)), Some(Paced::DroppedQueueFull));
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn a_timestamp_jump_starts_a_new_timeline() {
        let t0 = Instant::now();
        let mut p = Pacer::new(8000, Duration::from_millis(200), 100);
        p.push(t0, frame(1_000_000));
        drain(&mut p, t0);
        p.push(t0 + Duration::from_millis(20), frame(0));
        assert_eq!(drain(&mut p, t0 + Duration::from_millis(20)).0, vec![0]);
    }
}
