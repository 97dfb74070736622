//! Per-worker counters and latency histograms.
//!
//! Each worker owns a plain [`Counters`] and a [`Histogram`]; nothing on the
//! hot path is shared. After each batch the worker publishes its counters to
//! a [`SharedCounters`] (relaxed stores, single writer) that the reporter
//! reads for interval lines. Histograms travel back when the worker ends.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use crate::reflect::NoReply;

/// Declares the plain counters once: each one's name (the field, as printed,
/// in JSON and in metrics), its help line, and its part in the accounting
/// identity (`Received`: counts datagrams in; `Outcome`: one of the ends a
/// received datagram meets; `Other`). The struct, the names, the array
/// order, the help and [`Counters::outcomes`] all come from this list; the
/// `no_reply_*` counters follow, one per [`NoReply`] reason.
macro_rules! counters {
    ($( #[doc = $help:literal] $name:ident: $role:ident, )*) => {
        /// Every counter a worker keeps. See README.md for what each means.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Counters {
            $( #[doc = $help] pub $name: u64, )*
            /// Datagrams deliberately not answered, by reason.
            pub no_reply: [u64; NoReply::COUNT],
        }

        /// The plain counters, in [`Counters::to_array`] order.
        pub const PLAIN: &[Counter] = &[
            $( Counter { name: stringify!($name), help: $help, role: Role::$role }, )*
        ];

        impl Counters {
            pub fn to_array(&self) -> [u64; COUNTER_SLOTS] {
                let mut a = [0; COUNTER_SLOTS];
                a[..PLAIN.len()].copy_from_slice(&[$( self.$name, )*]);
                a[PLAIN.len()..].copy_from_slice(&self.no_reply);
                a
            }

            pub fn from_array(a: [u64; COUNTER_SLOTS]) -> Self {
                let mut plain = a.into_iter();
                let mut c = Counters::default();
                $( c.$name = plain.next().unwrap_or(0); )*
                for (slot, v) in c.no_reply.iter_mut().zip(plain) {
                    *slot = v;
                }
                c
            }

            /// Every received datagram ends in exactly one outcome: the sum
            /// of the `Outcome` counters and every no_reply reason.
            pub fn outcomes(&self) -> u64 {
                let mut sum = self.no_reply_total();
                $( if matches!(Role::$role, Role::Outcome) { sum += self.$name; } )*
                sum
            }
        }
    };
}

/// What a counter counts in the accounting identity
/// `rx_packets == tx_packets + tx_dropped + tx_errors + truncated + no_reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Datagrams in (the left side).
    Received,
    /// One of the ends a received datagram meets (the right side).
    Outcome,
    /// Outside the identity (bytes, kernel drops before us, stalls).
    Other,
}

/// One plain counter's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub name: &'static str,
    pub help: &'static str,
    pub role: Role,
}

counters! {
    /// Datagrams received by the reflector's sockets.
    rx_packets: Received,
    /// Payload bytes received (full wire length, truncated ones included).
    rx_bytes: Other,
    /// Replies sent.
    tx_packets: Outcome,
    /// Payload bytes sent in replies.
    tx_bytes: Other,
    /// Datagrams the kernel dropped because a reflector socket's receive queue was full (SO_RXQ_OVFL).
    rxq_overflow: Other,
    /// Times the provided-buffer ring ran dry; datagrams waited in the socket queue (not a loss).
    ring_stalls: Other,
    /// Replies the kernel refused with EAGAIN or ENOBUFS (send queue full).
    tx_dropped: Outcome,
    /// Replies the kernel refused with any other error.
    tx_errors: Outcome,
    /// Datagrams larger than --max-datagram: counted, never answered.
    truncated: Outcome,
    /// Reads that held a GRO train of several datagrams (each counted in rx_packets).
    rx_trains: Other,
}

/// Number of u64 slots in [`Counters`], in [`Counters::to_array`] order.
pub const COUNTER_SLOTS: usize = PLAIN.len() + NoReply::COUNT;

impl Counters {
    /// Names in the order of [`Counters::to_array`].
    pub fn names() -> [&'static str; COUNTER_SLOTS] {
        std::array::from_fn(|i| match PLAIN.get(i) {
            Some(c) => c.name,
            None => NoReply::ALL[i - PLAIN.len()].counter_name(),
        })
    }

    /// The help line of counter `name` (metrics), if it is a plain one.
    pub fn help(name: &str) -> Option<&'static str> {
        PLAIN.iter().find(|c| c.name == name).map(|c| c.help)
    }

    /// Datagrams received but deliberately not answered, all reasons.
    pub fn no_reply_total(&self) -> u64 {
        self.no_reply.iter().sum()
    }

    #[inline]
    pub fn count_no_reply(&mut self, reason: NoReply) {
        self.no_reply[reason as usize] += 1;
    }

    pub fn add(&mut self, other: &Counters) {
        let (a, b) = (self.to_array(), other.to_array());
        *self = Counters::from_array(std::array::from_fn(|i| a[i] + b[i]));
    }

    /// `self - earlier`, counter by counter (counters only grow).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let (a, b) = (self.to_array(), earlier.to_array());
        Counters::from_array(std::array::from_fn(|i| a[i].wrapping_sub(b[i])))
    }
}

/// A worker's counters, readable by the reporter while the worker runs.
///
/// Aligned (and so sized) to 128 bytes, two cache lines, the unit the
/// adjacent-line prefetcher of x86 pulls in: each worker's counters sit on
/// lines of their own, so two busy workers storing theirs after every batch
/// never bounce a line between their cores (nor with an `Arc`'s counts,
/// which precede the value).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct SharedCounters {
    slots: [AtomicU64; COUNTER_SLOTS],
}

impl SharedCounters {
    /// Called by the owning worker only (single writer).
    #[inline]
    pub fn publish(&self, c: &Counters) {
        for (slot, v) in self.slots.iter().zip(c.to_array()) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> Counters {
        Counters::from_array(std::array::from_fn(|i| {
            self.slots[i].load(Ordering::Relaxed)
        }))
    }
}

/// Latency histogram in nanoseconds, 3 significant figures, up to 100 s.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("static histogram bounds are valid")
}

/// Records one reply's latency: `now_ns - rx_ns`, clamped at 0 (clock steps).
#[inline]
pub fn record_latency(h: &mut Histogram<u64>, rx_ns: u64, now_ns: u64) {
    h.saturating_record(now_ns.saturating_sub(rx_ns).max(1));
}

/// Percentiles in microseconds, as reported.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    pub samples: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        LatencySummary {
            samples: h.len(),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_round_trip_through_arrays_and_shared_slots() {
        let mut c = Counters {
            rx_packets: 7,
            tx_packets: 3,
            truncated: 2,
            ..Default::default()
        };
        c.count_no_reply(NoReply::Warmup);
        c.count_no_reply(NoReply::Warmup);
        let shared = SharedCounters::default();
        shared.publish(&c);
        assert_eq!(shared.snapshot(), c);
        assert_eq!(c.outcomes(), 7);
        let later = Counters {
            rx_packets: 10,
            ..c
        };
        assert_eq!(later.since(&c).rx_packets, 3);
        assert_eq!(later.since(&c).no_reply[NoReply::Warmup as usize], 0);
        assert_eq!(
            Counters::names()[PLAIN.len() + NoReply::Warmup as usize],
            "no_reply_warmup"
        );
    }

    #[test]
    fn each_workers_shared_counters_own_their_cache_lines() {
        assert_eq!(std::mem::align_of::<SharedCounters>(), 128);
        assert_eq!(std::mem::size_of::<SharedCounters>() % 128, 0);
        let workers: Vec<std::sync::Arc<SharedCounters>> =
            (0..4).map(|_| Default::default()).collect();
        for w in &workers {
            let addr = std::sync::Arc::as_ptr(w) as usize;
            assert_eq!(addr % 128, 0, "counters at {addr:#x}");
        }
    }

    #[test]
    fn latency_is_clamped_and_summarised_in_microseconds() {
        let mut h = new_latency_histogram();
        record_latency(&mut h, 2_000, 1_000); // clock stepped back: clamped
        for i in 1..=100u64 {
            record_latency(&mut h, 0, i * 1_000);
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.samples, 101);
        assert!((s.p50 - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.max - 100.0).abs() < 0.1, "{s:?}");
    }
}
