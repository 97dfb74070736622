//! Latency while the reflector runs.
//!
//! A worker records latencies into its own histogram, as before. When the
//! reporting side (interval lines, `/metrics`) wants them, it raises the
//! worker's `requested` flag; at the end of its next flush the worker adds
//! its histogram into a hand-over slot and starts afresh. The hot path pays
//! one relaxed load and one relaxed store per flush, no lock and no clock
//! read; the worker takes the slot's lock only when asked, and only with
//! `try_lock`, so it never waits.
//!
//! A worker blocked with no traffic would never flush: when it has samples
//! it has not handed over and does not answer within a few milliseconds,
//! the reporter wakes it with a signal ([`crate::sys::wake`]) and its loop
//! comes round once. A worker with nothing pending is left asleep.
//!
//! The hub keeps each worker's cumulative histogram; the final summary adds
//! what the worker still held when it ended, so nothing is counted twice
//! or lost.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use crate::{stats::new_latency_histogram, sys::wake};

/// How long a collection waits for the workers to hand over (the reporting
/// thread waits this long at most; a worker that was not scheduled in time,
/// on a loaded machine, hands over to the next collection).
const COLLECT_LIMIT: Duration = Duration::from_millis(100);
/// A worker that has not answered this soon is asleep: wake it.
const WAKE_AFTER: Duration = Duration::from_millis(2);
/// Repeat the wake at this pace (a signal can land just before the worker
/// enters its wait, and then interrupts nothing).
const WAKE_EVERY: Duration = Duration::from_millis(10);

/// One worker's side of the hand-over.
#[derive(Debug)]
pub struct LiveSlot {
    /// Raised by the hub, cleared by the worker when it has handed over.
    requested: AtomicBool,
    /// Samples the worker holds and has not handed over (as of its last flush).
    pending: AtomicU64,
    /// The worker's thread id, to wake it (0 until the worker starts).
    tid: AtomicI32,
    handed: Mutex<Histogram<u64>>,
}

impl Default for LiveSlot {
    fn default() -> Self {
        LiveSlot {
            requested: AtomicBool::new(false),
            pending: AtomicU64::new(0),
            tid: AtomicI32::new(0),
            handed: Mutex::new(new_latency_histogram()),
        }
    }
}

impl LiveSlot {
    /// Called by the worker thread when it starts.
    pub fn set_thread(&self) {
        self.tid.store(wake::current_tid(), Ordering::Release);
    }

    /// Asks the worker to hand over at its next flush (what [`LatencyHub::collect`]
    /// does first).
    pub fn request(&self) {
        self.requested.store(true, Ordering::Release);
    }

    /// Worker side, at the end of each flush: hands `local` over when asked.
    #[inline]
    pub fn after_flush(&self, local: &mut Histogram<u64>) {
        if self.requested.load(Ordering::Acquire) {
            self.hand_over(local);
        } else {
            self.pending.store(local.len(), Ordering::Relaxed);
        }
    }

    #[cold]
    fn hand_over(&self, local: &mut Histogram<u64>) {
        // The hub holds the lock only while it takes what is there; if it
        // does right now, try again at the next flush.
        let Ok(mut handed) = self.handed.try_lock() else {
            return;
        };
        if !local.is_empty() {
            // Same bounds on both sides: addition cannot fail.
            let _ = handed.add(&*local);
            local.reset();
        }
        drop(handed);
        self.pending.store(0, Ordering::Relaxed);
        self.requested.store(false, Ordering::Release);
    }

    fn take_into(&self, total: &mut Histogram<u64>) {
        let mut handed = self.handed.lock().unwrap_or_else(|p| p.into_inner());
        if !handed.is_empty() {
            let _ = total.add(&*handed);
            handed.reset();
        }
    }
}

struct HubWorker {
    slot: Arc<LiveSlot>,
    total: Histogram<u64>,
}

/// The reporting side: collects every worker's latency on demand.
pub struct LatencyHub {
    workers: Mutex<Vec<HubWorker>>,
    /// Set before the workers are joined: wake no thread after that.
    retired: AtomicBool,
}

impl LatencyHub {
    /// Installs the wake handler; `slots` are the workers' slots, in worker order.
    pub fn new(slots: impl IntoIterator<Item = Arc<LiveSlot>>) -> std::io::Result<LatencyHub> {
        wake::install()?;
        Ok(LatencyHub {
            workers: Mutex::new(
                slots
                    .into_iter()
                    .map(|slot| HubWorker {
                        slot,
                        total: new_latency_histogram(),
                    })
                    .collect(),
            ),
            retired: AtomicBool::new(false),
        })
    }

    /// Asks every worker with pending samples to hand them over (waking it
    /// if it sleeps), then returns each worker's cumulative histogram.
    pub fn collect(&self) -> Vec<Histogram<u64>> {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let asked: Vec<&Arc<LiveSlot>> = workers
            .iter()
            .map(|w| &w.slot)
            .filter(|s| s.pending.load(Ordering::Relaxed) > 0)
            .collect();
        for s in &asked {
            s.request();
        }
        let started = Instant::now();
        let mut next_wake = started + WAKE_AFTER;
        loop {
            let waiting: Vec<_> = asked
                .iter()
                .filter(|s| s.requested.load(Ordering::Acquire))
                .collect();
            let now = Instant::now();
            if waiting.is_empty() || now - started > COLLECT_LIMIT {
                break;
            }
            if now >= next_wake && !self.retired.load(Ordering::Acquire) {
                for s in waiting {
                    let tid = s.tid.load(Ordering::Acquire);
                    if tid != 0 {
                        let _ = wake::wake(tid);
                    }
                }
                next_wake = now + WAKE_EVERY;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // A worker that did not answer keeps its flag and hands over later.
        workers
            .iter_mut()
            .map(|w| {
                w.slot.take_into(&mut w.total);
                w.total.clone()
            })
            .collect()
    }

    /// Stops waking threads: call before joining the workers.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Worker `i`'s whole-run histogram: what the hub collected, what was
    /// handed over since, and `remainder`, what the worker still held.
    pub fn final_latency(&self, i: usize, remainder: &Histogram<u64>) -> Histogram<u64> {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let w = &mut workers[i];
        w.slot.take_into(&mut w.total);
        let mut h = w.total.clone();
        let _ = h.add(remainder);
        h
    }
}

/// All workers' histograms added into one.
pub fn merged(hists: &[Histogram<u64>]) -> Histogram<u64> {
    let mut m = new_latency_histogram();
    for h in hists {
        let _ = m.add(h);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_hands_over_only_when_asked_and_nothing_is_counted_twice() {
        let slot = Arc::new(LiveSlot::default());
        let hub = LatencyHub::new([Arc::clone(&slot)]).unwrap();
        let mut local = new_latency_histogram();
        local.record(1_000).unwrap();
        slot.after_flush(&mut local);
        assert_eq!(local.len(), 1, "not asked: the worker keeps its samples");
        assert_eq!(slot.pending.load(Ordering::Relaxed), 1);

        // The "worker" flushes from another thread while the hub collects.
        let worker = {
            let slot = Arc::clone(&slot);
            std::thread::spawn(move || {
                while !slot.requested.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                slot.after_flush(&mut local);
                local.record(5_000).unwrap(); // recorded after the hand-over
                local
            })
        };
        // A worker slower than COLLECT_LIMIT (a loaded machine) keeps its
        // flag and hands over later: a later collection gets it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = hub.collect();
        while got[0].is_empty() && Instant::now() < deadline {
            got = hub.collect();
        }
        let remainder = worker.join().unwrap();
        assert_eq!(got[0].len(), 1);
        assert_eq!(remainder.len(), 1);
        let whole = hub.final_latency(0, &remainder);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole.max(), whole.highest_equivalent(5_000));
        assert_eq!(merged(&[whole.clone(), whole]).len(), 4);
    }
}
