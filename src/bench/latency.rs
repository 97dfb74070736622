//! The delay distributions bench records: round-trip times for every
//! protocol, and STAMP's one-way delays and residence time.

use hdrhistogram::Histogram;

use super::{
    protocol::{Arrival, Sample},
    Config,
};
use crate::reflect::stamp::Reflected;

/// The delay distributions of measured-phase echoes, in nanoseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    /// Round-trip times: send stamp to read (CLOCK_MONOTONIC); with
    /// `--stamp`, (T4 − T1) − (T3 − T2).
    pub rtt: Histogram<u64>,
    /// With `--stamp`: one-way delays and the reflector's residence time.
    pub stamp: Option<StampDelays>,
}

impl Latency {
    pub fn new(cfg: &Config) -> Latency {
        Latency {
            rtt: new_histogram(cfg.rtt_high_ns()),
            stamp: cfg.stamp.then(|| StampDelays::new(cfg.rtt_high_ns())),
        }
    }

    /// Records one measured-phase reply that arrived `at`.
    #[inline]
    pub fn record(&mut self, sample: &Sample, at: Arrival) {
        match (sample, &mut self.stamp) {
            (Sample::SentAt(sent_ns), _) => {
                self.rtt
                    .saturating_record(at.mono_ns.saturating_sub(*sent_ns));
            }
            (Sample::Stamp(r), Some(stamp)) => stamp.record(r, at.real_ns, &mut self.rtt),
            // A STAMP sample without STAMP delays cannot be made: the
            // protocol and the latency come from the same configuration.
            (Sample::Stamp(_), None) => {}
        }
    }

    /// Adds `o`, which has the same bounds and kind.
    pub fn add(&mut self, o: &Latency) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.rtt.add(&o.rtt);
        if let (Some(a), Some(b)) = (&mut self.stamp, &o.stamp) {
            a.add(b);
        }
    }
}

/// A histogram of nanoseconds up to `high_ns`, 3 significant figures.
pub fn new_histogram(high_ns: u64) -> Histogram<u64> {
    // Bounds are constants within hdrhistogram's limits (1 < 2 * 1 <= high).
    Histogram::new_with_bounds(1, high_ns.max(2), 3).expect("valid histogram bounds")
}

/// A distribution of delays in nanoseconds that may come out negative.
#[derive(Debug, Clone)]
pub struct Signed {
    /// Negative samples are recorded as 0, so `len()` counts every sample.
    pub hist: Histogram<u64>,
    /// Samples that were negative.
    pub negative: u64,
}

impl Signed {
    fn new(high_ns: u64) -> Signed {
        Signed {
            hist: new_histogram(high_ns),
            negative: 0,
        }
    }

    fn record(&mut self, ns: i64) {
        if ns < 0 {
            self.negative += 1;
        }
        self.hist.saturating_record(ns.max(0) as u64);
    }

    fn add(&mut self, o: &Signed) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.hist.add(&o.hist);
        self.negative += o.negative;
    }
}

/// What STAMP measures beyond the round trip, for received measured-phase
/// replies.
#[derive(Debug, Clone)]
pub struct StampDelays {
    /// T2 − T1: sender to reflector (reflector clock minus ours).
    pub forward: Signed,
    /// T4 − T3: reflector to sender (our clock minus the reflector's).
    pub reverse: Signed,
    /// T3 − T2: time the request spent in the reflector (its clock only).
    pub residence: Signed,
    /// Round trips, (T4 − T1) − (T3 − T2), that came out negative (a clock
    /// step on either side); they are recorded as 0 in the RTT histogram.
    pub rtt_negative: u64,
}

impl StampDelays {
    pub fn new(high_ns: u64) -> StampDelays {
        StampDelays {
            forward: Signed::new(high_ns),
            reverse: Signed::new(high_ns),
            residence: Signed::new(high_ns),
            rtt_negative: 0,
        }
    }

    /// Records one exchange that arrived at `t4_ns` (CLOCK_REALTIME); records
    /// its round trip in `rtt` too.
    pub fn record(&mut self, r: &Reflected, t4_ns: u64, rtt: &mut Histogram<u64>) {
        let d = r.delays(t4_ns);
        self.forward.record(d.forward_ns);
        self.reverse.record(d.reverse_ns);
        self.residence.record(r.t3_ns.wrapping_sub(r.t2_ns) as i64);
        if d.round_trip_ns < 0 {
            self.rtt_negative += 1;
        }
        rtt.saturating_record(d.round_trip_ns.max(0) as u64);
    }

    pub fn add(&mut self, o: &StampDelays) {
        self.forward.add(&o.forward);
        self.reverse.add(&o.reverse);
        self.residence.add(&o.residence);
        self.rtt_negative += o.rtt_negative;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reflect::{
        stamp::{decode_reflected, encode_sender, reflect},
        RxMeta,
    };

    const T1: u64 = 1_700_000_000_500_000_000;
    const T2: u64 = T1 + 20_000;
    const T3: u64 = T2 + 5_000;

    fn reflected() -> Reflected {
        let mut d = vec![0u8; 44];
        encode_sender(1, T1, &mut d).unwrap();
        let meta = RxMeta {
            rx_time_ns: Some(T2),
            ttl: Some(64),
        };
        reflect(&meta, &mut d, 44, T3);
        decode_reflected(&d).unwrap()
    }

    #[test]
    fn delays_and_their_signs() {
        let r = reflected();
        let mut s = StampDelays::new(1_000_000_000);
        let mut rtt = new_histogram(1_000_000_000);
        s.record(&r, T3 + 30_000, &mut rtt);
        assert_eq!(
            s.forward.hist.max(),
            s.forward.hist.highest_equivalent(20_000)
        );
        assert_eq!(
            s.reverse.hist.min(),
            s.reverse.hist.lowest_equivalent(30_000)
        );
        assert_eq!(
            s.residence.hist.max(),
            s.residence.hist.highest_equivalent(5_000)
        );
        assert_eq!(rtt.max(), rtt.highest_equivalent(50_000), "fwd + rev");
        // The reflector's clock 1 ms behind ours: forward negative, reverse long.
        let mut behind = r;
        behind.t2_ns -= 1_000_000;
        behind.t3_ns -= 1_000_000;
        s.record(&behind, T3 + 30_000, &mut rtt);
        assert_eq!((s.forward.negative, s.reverse.negative), (1, 0));
        assert_eq!(s.forward.hist.min(), 0, "recorded as 0");
        assert_eq!(s.forward.hist.len(), 2);
        assert_eq!(s.rtt_negative, 0, "the round trip does not care");
        assert_eq!(rtt.len(), 2);
        let mut total = StampDelays::new(1_000_000_000);
        total.add(&s);
        total.add(&s);
        assert_eq!((total.forward.hist.len(), total.forward.negative), (4, 2));
    }
}
