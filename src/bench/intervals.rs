//! bench's record of each second: counters and round-trip percentiles per
//! interval, for `--json`'s `intervals[]`, and the interval's RTT histogram
//! for `--hlog` (HdrHistogram's interval-log format, values in ns).

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    time::{Duration, SystemTime},
};

use hdrhistogram::{
    serialization::{interval_log::IntervalLogWriterBuilder, V2DeflateSerializer},
    Histogram,
};
use serde_json::{json, Value};

/// Cumulative figures at one instant, all phases (warmup included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
}

/// An interval log being written.
struct Hlog {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
}

/// Turns cumulative samples into per-interval objects (and log lines).
pub struct Intervals {
    last_t: Duration,
    last: Counts,
    last_rtt: Histogram<u64>,
    pub items: Vec<Value>,
    hlog: Option<Hlog>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl Intervals {
    /// `empty_rtt`: an empty histogram with the run's bounds. `hlog`: the
    /// `--hlog` file, whose header records `started` (the run's time zero).
    pub fn new(
        empty_rtt: Histogram<u64>,
        hlog: Option<File>,
        started: SystemTime,
        about: &str,
    ) -> io::Result<Intervals> {
        let hlog = match hlog {
            None => None,
            Some(f) => {
                let mut out = BufWriter::new(f);
                let mut serializer = V2DeflateSerializer::new();
                IntervalLogWriterBuilder::new()
                    .add_comment(&format!("udp-reflector bench {about}"))
                    .add_comment("round-trip times in nanoseconds, one histogram per interval")
                    .with_start_time(started)
                    .with_base_time(started)
                    .begin_log_with(&mut out, &mut serializer)?;
                out.flush()?;
                Some(Hlog { out, serializer })
            }
        };
        Ok(Intervals {
            last_t: Duration::ZERO,
            last: Counts::default(),
            last_rtt: empty_rtt,
            items: Vec::new(),
            hlog,
        })
    }

    /// Closes the interval that ends at `t` (time since the run's start),
    /// given the cumulative counts and RTT histogram at `t`.
    pub fn sample(&mut self, t: Duration, now: Counts, rtt: &Histogram<u64>) -> io::Result<()> {
        let dt = t.saturating_sub(self.last_t);
        let mut delta = rtt.clone();
        // Cumulative histograms only grow: the subtraction cannot fail.
        let _ = delta.subtract(&self.last_rtt);
        let secs = dt.as_secs_f64().max(1e-9);
        let d = Counts {
            sent: now.sent.saturating_sub(self.last.sent),
            received: now.received.saturating_sub(self.last.received),
            lost: now.lost.saturating_sub(self.last.lost),
        };
        let q = |p: f64| (!delta.is_empty()).then(|| us(delta.value_at_quantile(p)));
        self.items.push(json!({
            "start_s": self.last_t.as_secs_f64(),
            "end_s": t.as_secs_f64(),
            "sent": d.sent,
            "received": d.received,
            "lost": d.lost,
            "pps_sent": d.sent as f64 / secs,
            "pps_received": d.received as f64 / secs,
            "rtt_us": {
                "count": delta.len(),
                "p50": q(0.5),
                "p99": q(0.99),
                "max": (!delta.is_empty()).then(|| us(delta.max())),
            },
        }));
        if let Some(h) = &mut self.hlog {
            let mut w =
                IntervalLogWriterBuilder::new().begin_log_with(&mut h.out, &mut h.serializer)?;
            w.write_histogram(&delta, self.last_t, dt, None)
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
            h.out.flush()?;
        }
        self.last_t = t;
        self.last = now;
        self.last_rtt = rtt.clone();
        Ok(())
    }
}
