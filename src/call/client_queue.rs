//! Audio queued toward one client connection, bounded by age: the client-leg half of the
//! mouth-to-ear bound (the pacer is the RTP half).
//!
//! When a client's TCP link stalls, the connection's writer stops taking frames while the call
//! keeps producing them. Each frame is stamped when queued; the **oldest** frames go first —
//! at push time when the queue is full, and at pop time when a frame waited longer than the
//! bound (`rtp.max_delay_ms`) — so when the link recovers the client gets audio at most the
//! bound old, never the backlog of the stall. Nothing is signalled to the client; drops are
//! counted in `skybridge_packets_dropped_total{reason="late",leg=<transport>}` and the age of
//! what is written in `skybridge_client_delay_seconds{transport}`.
//!
//! [`AgeQueue`] is the sans-IO core (times passed in); [`channel`] wraps it for one producer
//! side (cloneable) and one consumer (a door's connection task). The queue's storage is
//! allocated once, so queueing a frame never allocates.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::ops::metrics as m;

/// Why [`AgeQueue`] discarded an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discard {
    /// It waited longer than the bound.
    Late,
    /// The queue was full and it was the oldest (it had not yet waited the bound).
    Full,
}

/// A FIFO of timestamped items that discards the oldest: beyond `capacity`, or once older
/// than `bound`.
#[derive(Debug)]
pub struct AgeQueue<T> {
    items: VecDeque<(T, Instant)>,
    bound: Duration,
    capacity: usize,
}

impl<T> AgeQueue<T> {
    /// Holds at most `capacity` (≥ 1) items, each for at most `bound`.
    pub fn new(bound: Duration, capacity: usize) -> AgeQueue<T> {
        let capacity = capacity.max(1);
        AgeQueue {
            items: VecDeque::with_capacity(capacity),
            bound,
            capacity,
        }
    }

    /// Queues `item` at `now`; returns what was discarded to make room (with its age), if
    /// anything.
    pub fn push(&mut self, now: Instant, item: T) -> Option<(Discard, Duration)> {
        let dropped = if self.items.len() >= self.capacity {
            self.items.pop_front().map(|(_, at)| {
                let age = now.saturating_duration_since(at);
                let why = if age > self.bound {
                    Discard::Late
                } else {
                    Discard::Full
                };
                (why, age)
            })
        } else {
            None
        };
        self.items.push_back((item, now));
        dropped
    }

    /// The oldest item still within the bound at `now`, with its age; `on_late` is called
    /// with the age of each older one discarded on the way.
    pub fn pop(
        &mut self,
        now: Instant,
        mut on_late: impl FnMut(Duration),
    ) -> Option<(T, Duration)> {
        while let Some((item, at)) = self.items.pop_front() {
            let age = now.saturating_duration_since(at);
            if age > self.bound {
                on_late(age);
                continue;
            }
            return Some((item, age));
        }
        None
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Queue capacity for a bound: twice the frames the bound holds at `ptime` (a connection may
/// carry two calls' audio), plus slack for jitter.
pub fn capacity_for(bound: Duration, ptime: Duration) -> usize {
    let per = ptime.as_millis().max(1);
    usize::try_from(bound.as_millis() / per)
        .unwrap_or(usize::MAX / 4)
        .saturating_mul(2)
        .saturating_add(8)
}

#[derive(Debug)]
struct Inner<T> {
    queue: Mutex<AgeQueue<T>>,
    ready: Notify,
    closed: AtomicBool,
    transport: &'static str,
    measure: bool,
}

impl<T> Inner<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, AgeQueue<T>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count_late(&self, age: Duration) {
        metrics::counter!(m::PACKETS_DROPPED_TOTAL, m::label::REASON => m::drop_reason::LATE, m::label::LEG => self.transport)
            .increment(1);
        if self.measure {
            metrics::gauge!(m::CLIENT_DELAY_SECONDS, m::label::TRANSPORT => self.transport)
                .set(age.as_secs_f64());
        }
    }
}

/// The producing side (the call task); cloneable.
#[derive(Debug)]
pub struct AudioTx<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for AudioTx<T> {
    fn clone(&self) -> Self {
        AudioTx {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// The consuming side (the connection's writer).
#[derive(Debug)]
pub struct AudioRx<T> {
    inner: Arc<Inner<T>>,
}

/// A queue toward one client connection of `transport` (the `leg` label of its drops), holding
/// frames at most `bound`. With `measure`, what it hands out sets the client-delay gauge (set
/// it on the queue right before the socket; a queue that is drained at once would only
/// report zeros).
pub fn channel<T>(
    bound: Duration,
    capacity: usize,
    transport: &'static str,
    measure: bool,
) -> (AudioTx<T>, AudioRx<T>) {
    let inner = Arc::new(Inner {
        queue: Mutex::new(AgeQueue::new(bound, capacity)),
        ready: Notify::new(),
        closed: AtomicBool::new(false),
        transport,
        measure,
    });
    (
        AudioTx {
            inner: Arc::clone(&inner),
        },
        AudioRx { inner },
    )
}

impl<T> AudioTx<T> {
    /// Queues `item`, discarding the oldest if full (counted). False if the receiver is gone.
    pub fn send(&self, item: T) -> bool {
        if self.inner.closed.load(Ordering::Relaxed) {
            return false;
        }
        let dropped = self.inner.lock().push(Instant::now(), item);
        match dropped {
            Some((Discard::Late, age)) => self.inner.count_late(age),
            Some((Discard::Full, _)) => {
                metrics::counter!(m::PACKETS_DROPPED_TOTAL, m::label::REASON => m::drop_reason::QUEUE_FULL, m::label::LEG => self.inner.transport)
                    .increment(1);
            }
            None => {}
        }
        self.inner.ready.notify_one();
        true
    }

    /// Whether both handles feed the same queue.
    pub fn same_queue(&self, other: &AudioTx<T>) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl<T> Drop for AudioTx<T> {
    fn drop(&mut self) {
        // Wakes the receiver so it can see that the last sender went away.
        self.inner.ready.notify_one();
    }
}

impl<T> AudioRx<T> {
    /// The next frame within the bound, discarding (and counting) older ones; None once every
    /// sender is gone and the queue is empty. Cancel-safe: a frame is only taken when returned.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self.try_recv() {
                return Some(item);
            }
            // Only this receiver holds the queue: no sender can push again.
            if Arc::strong_count(&self.inner) == 1 {
                return None;
            }
            self.inner.ready.notified().await;
        }
    }

    /// The next frame within the bound, if one is queued now.
    pub fn try_recv(&mut self) -> Option<T> {
        let inner = &self.inner;
        let popped = inner
            .lock()
            .pop(Instant::now(), |age| inner.count_late(age));
        let (item, age) = popped?;
        if inner.measure {
            metrics::gauge!(m::CLIENT_DELAY_SECONDS, m::label::TRANSPORT => inner.transport)
                .set(age.as_secs_f64());
        }
        Some(item)
    }
}

impl<T> Drop for AudioRx<T> {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn items_come_out_in_order_with_their_age() {
        let t0 = Instant::now();
        let mut q = AgeQueue::new(200 * MS, 10);
        q.push(t0, 1);
        q.push(t0 + 20 * MS, 2);
        let mut late = 0;
        assert_eq!(q.pop(t0 + 50 * MS, |_| late += 1), Some((1, 50 * MS)));
        assert_eq!(q.pop(t0 + 50 * MS, |_| late += 1), Some((2, 30 * MS)));
        assert_eq!(q.pop(t0 + 50 * MS, |_| late += 1), None);
        assert_eq!(late, 0);
    }

    #[test]
    fn after_a_stall_only_frames_within_the_bound_are_handed_out() {
        let t0 = Instant::now();
        let mut q = AgeQueue::new(200 * MS, capacity_for(200 * MS, 20 * MS));
        // The writer is stuck for 3 s while a frame arrives every 20 ms.
        let mut discarded = Vec::new();
        for i in 0..150u32 {
            if let Some(d) = q.push(t0 + i * 20 * MS, i) {
                discarded.push(d);
            }
        }
        let now = t0 + 149 * 20 * MS;
        let mut late = Vec::new();
        let mut out = Vec::new();
        while let Some((i, age)) = q.pop(now, |age| late.push(age)) {
            assert!(age <= 200 * MS, "frame {i} handed out {age:?} old");
            out.push(i);
        }
        // The newest 200 ms (11 frames: ages 0, 20, … 200 ms) survive, in order.
        assert_eq!(out, (139..150).collect::<Vec<_>>());
        assert_eq!(discarded.len() + late.len() + out.len(), 150);
        // Frames the full queue pushed out were the oldest and already past the bound.
        assert!(discarded.iter().all(|(why, _)| *why == Discard::Late));
        assert!(late.iter().all(|age| *age > 200 * MS));
    }

    #[test]
    fn a_full_queue_drops_the_oldest_even_within_the_bound() {
        let t0 = Instant::now();
        let mut q = AgeQueue::new(200 * MS, 2);
        assert_eq!(q.push(t0, 'a'), None);
        assert_eq!(q.push(t0, 'b'), None);
        assert_eq!(q.push(t0 + MS, 'c'), Some((Discard::Full, MS)));
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(t0 + MS, |_| {}).map(|(c, _)| c), Some('b'));
    }

    #[test]
    fn capacity_covers_twice_the_bound_plus_slack() {
        assert_eq!(capacity_for(200 * MS, 20 * MS), 28);
        assert_eq!(capacity_for(Duration::ZERO, 20 * MS), 8);
    }

    #[tokio::test]
    async fn the_channel_wakes_the_receiver_and_ends_when_senders_are_gone() {
        let (tx, mut rx) = channel::<u32>(Duration::from_secs(1), 4, "test", false);
        let tx2 = tx.clone();
        assert!(tx.same_queue(&tx2));
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            (first, second)
        });
        tokio::task::yield_now().await;
        assert!(tx.send(7));
        drop(tx);
        drop(tx2);
        let (first, second) = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("receiver woke")
            .expect("task");
        assert_eq!((first, second), (Some(7), None));
    }

    #[test]
    fn sending_to_a_dropped_receiver_reports_it() {
        let (tx, rx) = channel::<u32>(Duration::from_secs(1), 4, "test", false);
        drop(rx);
        assert!(!tx.send(1));
    }
}
