//! The transcoding worker pool: `std` threads (one per core), each with a bounded job queue.
//!
//! A [`TranscodeHandle`] is one transcoder pinned to one worker, so its jobs run in order.
//! [`TranscodeHandle::submit`] never blocks: when the worker's queue is full the job is
//! dropped and counted (`skybridge_packets_dropped_total{reason="transcode_busy"}`), so a
//! socket task never waits for codec work. Output frames go to the handle's sink (a channel
//! toward the call task or toward a client's audio queue), from the worker thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::debug;

use std::time::Duration;

use tracing::warn;

use super::Transcoder;
use crate::media::{Codec, MediaFrame};
use crate::ops::metrics as m;

/// Jobs each worker may have queued.
pub const QUEUE_DEPTH: usize = 256;

/// Where a transcoder's output frames go (called on the worker thread; must not block).
pub type Sink = Box<dyn FnMut(MediaFrame) + Send>;

/// A transcoder and where its output goes.
struct Session {
    transcoder: Transcoder,
    sink: Sink,
}

/// What a worker does for a handle.
#[derive(Debug)]
pub enum Work {
    /// Convert one frame.
    Frame(MediaFrame),
    /// `lost` frames are missing before `frame`: conceal them (recovering the last from
    /// `frame`'s in-band FEC where the codec has it), then convert `frame`.
    FrameAfterLoss { frame: MediaFrame, lost: u32 },
    /// A pass-through leg lost `lost` frames after `last`: prime with it, then conceal.
    PrimeConceal { last: MediaFrame, lost: u32 },
    /// A warming transcoder ([`Transcoder::warming`]) now encodes to `to` in `frame` frames.
    Retarget { to: Codec, frame: Duration },
}

struct Job {
    session: Arc<Mutex<Session>>,
    work: Work,
}

/// The pool. One per process ([`TranscodePool::global`]).
pub struct TranscodePool {
    workers: Vec<SyncSender<Job>>,
    next: AtomicUsize,
}

impl TranscodePool {
    /// A pool of `threads` workers (at least one).
    pub fn new(threads: usize) -> std::io::Result<TranscodePool> {
        let mut workers = Vec::with_capacity(threads.max(1));
        for i in 0..threads.max(1) {
            let (tx, rx) = sync_channel::<Job>(QUEUE_DEPTH);
            std::thread::Builder::new()
                .name(format!("skybridge-xcode-{i}"))
                .spawn(move || {
                    // No catch_unwind: a coder that panics on hostile bytes is a bug to fix in
                    // the coder (every decoder here is fuzzed: fuzz/), not to hide.
                    while let Ok(job) = rx.recv() {
                        run(job);
                    }
                })?;
            workers.push(tx);
        }
        Ok(TranscodePool {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// The process's pool: as many workers as cores, started on first use.
    pub fn global() -> Option<&'static TranscodePool> {
        static POOL: OnceLock<Option<TranscodePool>> = OnceLock::new();
        POOL.get_or_init(|| {
            let n = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2);
            TranscodePool::new(n).ok()
        })
        .as_ref()
    }

    /// Pins `transcoder` to a worker; its output goes to `sink`.
    pub fn session(&self, transcoder: Transcoder, sink: Sink) -> TranscodeHandle {
        let worker = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len().max(1);
        TranscodeHandle {
            session: Arc::new(Mutex::new(Session { transcoder, sink })),
            queue: self.workers.get(worker).cloned(),
        }
    }
}

/// One transcoder on the pool (cheap to clone; dropped with its last handle and queued job).
#[derive(Clone)]
pub struct TranscodeHandle {
    session: Arc<Mutex<Session>>,
    queue: Option<SyncSender<Job>>,
}

impl std::fmt::Debug for TranscodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TranscodeHandle")
    }
}

impl TranscodeHandle {
    /// Queues work; false (and counted) when the worker's queue is full.
    pub fn submit(&self, work: Work) -> bool {
        let Some(queue) = &self.queue else {
            return false;
        };
        let job = Job {
            session: Arc::clone(&self.session),
            work,
        };
        match queue.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                metrics::counter!(m::PACKETS_DROPPED_TOTAL, m::label::REASON => m::drop_reason::TRANSCODE_BUSY)
                    .increment(1);
                false
            }
        }
    }
}

fn run(job: Job) {
    let mut guard = job.session.lock().unwrap_or_else(|e| e.into_inner());
    let session = &mut *guard;
    let t = &mut session.transcoder;
    match job.work {
        Work::Frame(frame) => {
            if let Err(e) = t.push(&frame) {
                debug!(error = %e, "frame not transcoded");
                metrics::counter!(m::PACKETS_DROPPED_TOTAL, m::label::REASON => m::drop_reason::TRANSCODE_ERROR)
                    .increment(1);
            }
        }
        Work::FrameAfterLoss { frame, lost } => {
            let (concealed, recovered, result) = t.push_after_loss(&frame, lost);
            metrics::counter!(m::PLC_FRAMES_TOTAL).increment(u64::from(concealed));
            metrics::counter!(m::FEC_DECODED_FRAMES_TOTAL).increment(u64::from(recovered));
            if let Err(e) = result {
                debug!(error = %e, "frame not transcoded");
                metrics::counter!(m::PACKETS_DROPPED_TOTAL, m::label::REASON => m::drop_reason::TRANSCODE_ERROR)
                    .increment(1);
            }
        }
        Work::PrimeConceal { last, lost } => {
            if t.prime(&last).is_ok() {
                let n = t.conceal(lost);
                metrics::counter!(m::PLC_FRAMES_TOTAL).increment(u64::from(n));
            }
        }
        Work::Retarget { to, frame } => {
            if let Err(e) = t.retarget(to, frame) {
                warn!(error = %e, from = t.from().name(), to = to.name(), "no transcoder toward SIP");
            }
        }
    }
    while let Some(out) = t.poll() {
        (session.sink)(out);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn frame(ts: u32) -> MediaFrame {
        MediaFrame {
            codec: Codec::Pcmu,
            timestamp: ts,
            marker: false,
            payload: bytes::Bytes::from(vec![0xFFu8; 160]),
        }
    }

    #[test]
    fn a_sessions_frames_come_out_in_order_on_the_sink() {
        let pool = TranscodePool::new(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = Transcoder::new(Codec::Pcmu, Codec::G722, Duration::from_millis(20)).unwrap();
        let h = pool.session(
            t,
            Box::new(move |f| {
                let _ = tx.send(f.timestamp);
            }),
        );
        for i in 0..50 {
            assert!(h.submit(Work::Frame(frame(i * 160))));
        }
        let got: Vec<u32> = (0..50)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        let want: Vec<u32> = (0..50).map(|i| i * 160).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        let pool = TranscodePool::new(1).unwrap();
        let (block_tx, block_rx) = std::sync::mpsc::channel::<()>();
        let t = Transcoder::new(Codec::Pcmu, Codec::Pcma, Duration::from_millis(20)).unwrap();
        // The sink blocks the only worker until the test lets it go.
        let block_rx = Mutex::new(block_rx);
        let h = pool.session(
            t,
            Box::new(move |_| {
                let _ = block_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(10));
            }),
        );
        let started = std::time::Instant::now();
        let accepted = (0..QUEUE_DEPTH as u32 + 50)
            .filter(|i| h.submit(Work::Frame(frame(i * 160))))
            .count();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "submit never waits"
        );
        assert!(accepted <= QUEUE_DEPTH + 1, "{accepted} accepted");
        assert!(accepted < QUEUE_DEPTH + 50, "some were dropped");
        drop(block_tx);
    }
}
