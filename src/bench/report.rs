//! What bench prints: the final report (text or one JSON object) and the
//! live line on stderr.

use std::{
    fmt::Write as _,
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::{
    engine::{Engine, Shared, Totals},
    header::Phase,
    Config, Load,
};

/// The quantiles reported, with their JSON names.
const QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p999", 0.999),
    ("p9999", 0.9999),
];

/// Everything the final report needs.
pub struct Report<'a> {
    pub cfg: &'a Config,
    pub totals: &'a Totals,
    /// Round-trip times of received measured-phase datagrams, nanoseconds.
    pub rtt: &'a Histogram<u64>,
    /// How long sending was measured (shorter than --duration if interrupted).
    pub measured: Duration,
    /// Datagrams bench's own sockets dropped (receive queue full).
    pub local_drops: u64,
    /// GSO was in effect for the whole run.
    pub gso: bool,
    pub interrupted: bool,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl Report<'_> {
    fn per_sec(&self, n: u64) -> f64 {
        let s = self.measured.as_secs_f64();
        if s > 0.0 {
            n as f64 / s
        } else {
            0.0
        }
    }

    /// Payload bits per second for `n` datagrams.
    fn bps(&self, n: u64) -> f64 {
        self.per_sec(n) * (self.cfg.size * 8) as f64
    }

    /// One JSON object; the field names are part of the interface.
    pub fn json(&self) -> Value {
        let m = &self.totals.counts[Phase::Measured as usize];
        let w = &self.totals.counts[Phase::Warmup as usize];
        let mut rtt = serde_json::Map::new();
        rtt.insert("count".into(), json!(self.rtt.len()));
        let empty = self.rtt.is_empty();
        let stat = |v: f64| if empty { Value::Null } else { json!(v) };
        rtt.insert("min".into(), stat(us(self.rtt.min())));
        rtt.insert("mean".into(), stat(self.rtt.mean() / 1000.0));
        rtt.insert("stdev".into(), stat(self.rtt.stdev() / 1000.0));
        for (name, q) in QUANTILES {
            rtt.insert(name.into(), stat(us(self.rtt.value_at_quantile(q))));
        }
        rtt.insert("max".into(), stat(us(self.rtt.max())));
        let (mode, rate, window) = match self.cfg.load {
            Load::Rate(r) => ("open", json!(r), Value::Null),
            Load::Window(n) => ("closed", Value::Null, json!(n)),
        };
        json!({
            "target": self.cfg.target.to_string(),
            "flows": self.cfg.flows,
            "size": self.cfg.size,
            "mode": mode,
            "rate": rate,
            "window": window,
            "batch": self.cfg.batch,
            "gso": self.gso,
            "duration_s": self.measured.as_secs_f64(),
            "warmup_s": self.cfg.warmup.as_secs_f64(),
            "timeout_s": self.cfg.timeout.as_secs_f64(),
            "interrupted": self.interrupted,
            "sent": m.sent,
            "received": m.received,
            "lost": m.lost,
            "duplicates": m.duplicates,
            "reordered": m.reordered,
            "late": m.late,
            "corrupt": self.totals.corrupt,
            "invalid": self.totals.invalid,
            "loss_ratio": if m.sent > 0 { m.lost as f64 / m.sent as f64 } else { 0.0 },
            "warmup_sent": w.sent,
            "warmup_received": w.received,
            "warmup_lost": w.lost,
            "warmup_duplicates": w.duplicates,
            "warmup_late": w.late,
            "echoes": self.totals.echoes,
            "local_drops": self.local_drops,
            "refused": self.totals.refused,
            "send_errors": self.totals.send_errors,
            "send_stalls": self.totals.send_stalls,
            "tracking_stalls": self.totals.tracking_stalls,
            "pps_sent": self.per_sec(m.sent),
            "pps_received": self.per_sec(m.received),
            "bps_sent": self.bps(m.sent),
            "bps_received": self.bps(m.received),
            "rtt_us": rtt,
        })
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let cfg = self.cfg;
        let m = &self.totals.counts[Phase::Measured as usize];
        let w = &self.totals.counts[Phase::Warmup as usize];
        let mut o = String::new();
        let load = match cfg.load {
            Load::Rate(0) => "open loop, as fast as possible".to_string(),
            Load::Rate(r) => format!("open loop at {r} pps"),
            Load::Window(n) => format!("closed loop, window {n} per flow"),
        };
        let _ = writeln!(
            o,
            "bench {}: {} flow{}, {}-byte payloads, {load}{}, {:.3} s measured{}",
            cfg.target,
            cfg.flows,
            if cfg.flows == 1 { "" } else { "s" },
            cfg.size,
            if self.gso { ", GSO" } else { "" },
            self.measured.as_secs_f64(),
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
        );
        let _ = writeln!(
            o,
            "  {:<10} {:>12} {:>12} {:>12}",
            "", "datagrams", "pkt/s", "bit/s"
        );
        for (name, n) in [("sent", m.sent), ("received", m.received)] {
            let _ = writeln!(
                o,
                "  {name:<10} {n:>12} {:>12} {:>12}",
                si(self.per_sec(n)),
                si(self.bps(n))
            );
        }
        let loss = if m.sent > 0 {
            100.0 * m.lost as f64 / m.sent as f64
        } else {
            0.0
        };
        let _ = writeln!(
            o,
            "  {:<10} {:>12} ({loss:.4}%), {} of them late",
            "lost", m.lost, m.late
        );
        let _ = writeln!(
            o,
            "  {:<10} duplicates {}, reordered {}, corrupt {}, invalid {}",
            "anomalies", m.duplicates, m.reordered, self.totals.corrupt, self.totals.invalid
        );
        if self.rtt.is_empty() {
            let _ = writeln!(o, "  {:<10} no echo received", "rtt");
        } else {
            let _ = write!(o, "  {:<10}", "rtt (us)");
            for (name, q) in [
                ("p50", 0.5),
                ("p90", 0.9),
                ("p99", 0.99),
                ("p99.9", 0.999),
                ("p99.99", 0.9999),
            ] {
                let _ = write!(o, " {name} {:.1}", us(self.rtt.value_at_quantile(q)));
            }
            let _ = writeln!(o, " max {:.1}", us(self.rtt.max()));
        }
        if w.sent > 0 {
            let _ = writeln!(
                o,
                "  {:<10} sent {}, received {}, lost {} (not counted above)",
                "warmup", w.sent, w.received, w.lost
            );
        }
        if self.local_drops > 0 {
            let _ = writeln!(
                o,
                "  note: bench's own sockets dropped {} echoes (receive queue full); they count as lost",
                self.local_drops
            );
        }
        if self.totals.refused > 0 {
            let _ = writeln!(
                o,
                "  note: {} ICMP port unreachable from {}: is an echo server listening there?",
                self.totals.refused, cfg.target
            );
        }
        if self.totals.send_errors > 0 {
            let e = self
                .totals
                .first_send_error
                .map(std::io::Error::from_raw_os_error);
            let _ = writeln!(
                o,
                "  note: {} sends failed (first: {})",
                self.totals.send_errors,
                e.map_or("?".into(), |e| e.to_string())
            );
        }
        if self.totals.tracking_stalls > 0 {
            let _ = writeln!(
                o,
                "  note: senders waited {} times for the oldest datagram of a flow to be answered or time out \
                 (too many in flight to track; lower --rate or --timeout)",
                self.totals.tracking_stalls
            );
        }
        o
    }
}

/// `12345678.0` as "12.35 M".
fn si(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2} G", v / 1e9),
        v if v >= 1e6 => format!("{:.2} M", v / 1e6),
        v if v >= 1e3 => format!("{:.2} k", v / 1e3),
        v => format!("{v:.1}"),
    }
}

/// The once-a-second line on stderr: rates over the last interval, loss and
/// p99 so far.
pub struct LiveLine {
    last: Instant,
    sent: u64,
    received: u64,
}

impl LiveLine {
    pub fn new() -> LiveLine {
        LiveLine {
            last: Instant::now(),
            sent: 0,
            received: 0,
        }
    }

    pub fn next(&mut self, cfg: &Config, engine: &Engine, shared: &Shared) -> String {
        let (mut sent, mut received, mut lost) = (0, 0, 0);
        let mut p99 = None;
        let mut merged: Option<Histogram<u64>> = None;
        for live in &engine.lives {
            sent += live.sent.load(Relaxed);
            received += live.received.load(Relaxed);
            lost += live.lost.load(Relaxed);
            let h = live.rtt.lock().unwrap_or_else(|p| p.into_inner());
            match &mut merged {
                None => merged = Some(h.clone()),
                Some(m) => {
                    let _ = m.add(&*h);
                }
            }
        }
        if let Some(m) = merged.filter(|m| !m.is_empty()) {
            p99 = Some(us(m.value_at_quantile(0.99)));
        }
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64().max(1e-9);
        let (tx, rx) = (
            (sent - self.sent) as f64 / dt,
            (received - self.received) as f64 / dt,
        );
        (self.last, self.sent, self.received) = (now, sent, received);
        let t = shared.epoch.elapsed();
        let phase = if t < cfg.warmup {
            " warmup"
        } else if t >= cfg.warmup + cfg.duration {
            " drain"
        } else {
            ""
        };
        let resolved = received + lost;
        let loss = if resolved > 0 {
            100.0 * lost as f64 / resolved as f64
        } else {
            0.0
        };
        format!(
            "bench {:>4.0}s{phase}: tx {}pps  rx {}pps  lost {lost} ({loss:.3}%)  p99 {}",
            t.as_secs_f64(),
            si(tx),
            si(rx),
            p99.map_or("-".to_string(), |v| format!("{v:.1} us"))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{engine::new_histogram, BenchArgs};
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn config(extra: &[&str]) -> Config {
        let mut argv = vec!["t", "--target", "127.0.0.1:7"];
        argv.extend_from_slice(extra);
        Wrap::try_parse_from(argv)
            .unwrap()
            .args
            .validate(false)
            .unwrap()
    }

    #[test]
    fn json_has_the_documented_names_and_rates() {
        let cfg = config(&["--size", "100", "--rate", "1000"]);
        let mut totals = Totals::default();
        totals.counts[Phase::Measured as usize] = crate::bench::tracker::PhaseCounts {
            sent: 2000,
            received: 1990,
            lost: 10,
            duplicates: 3,
            reordered: 2,
            late: 1,
        };
        totals.counts[Phase::Warmup as usize].sent = 5;
        let mut rtt = new_histogram(cfg.rtt_high_ns());
        for v in 1..=1990u64 {
            rtt.record(v * 100).unwrap();
        }
        let r = Report {
            cfg: &cfg,
            totals: &totals,
            rtt: &rtt,
            measured: Duration::from_secs(2),
            local_drops: 0,
            gso: false,
            interrupted: false,
        };
        let j = r.json();
        for k in [
            "sent",
            "received",
            "lost",
            "duplicates",
            "reordered",
            "late",
            "corrupt",
            "invalid",
            "pps_sent",
            "pps_received",
            "bps_sent",
            "bps_received",
            "warmup_sent",
            "warmup_received",
            "echoes",
            "local_drops",
        ] {
            assert!(j.get(k).is_some(), "missing {k}");
        }
        assert_eq!(j["sent"], 2000);
        assert_eq!(j["lost"], 10);
        assert_eq!(j["warmup_sent"], 5);
        assert_eq!(j["mode"], "open");
        assert_eq!(j["pps_sent"], 1000.0);
        assert_eq!(j["bps_received"], 995.0 * 800.0);
        for k in ["p50", "p90", "p99", "p999", "p9999", "max", "min", "mean"] {
            assert!(j["rtt_us"][k].as_f64().is_some(), "rtt_us.{k}");
        }
        let p50 = j["rtt_us"]["p50"].as_f64().unwrap();
        assert!((99.0..=100.0).contains(&p50), "{p50}");
        let text = r.text();
        assert!(text.contains("p99.99"), "{text}");
        assert!(text.contains("(0.5000%)"), "{text}");
    }

    #[test]
    fn an_empty_histogram_reports_null_percentiles() {
        let cfg = config(&[]);
        let totals = Totals::default();
        let rtt = new_histogram(cfg.rtt_high_ns());
        let r = Report {
            cfg: &cfg,
            totals: &totals,
            rtt: &rtt,
            measured: Duration::ZERO,
            local_drops: 0,
            gso: false,
            interrupted: true,
        };
        let j = r.json();
        assert!(j["rtt_us"]["p99"].is_null());
        assert_eq!(j["rtt_us"]["count"], 0);
        assert_eq!(j["pps_sent"], 0.0);
        assert_eq!(j["mode"], "closed");
        assert_eq!(j["window"], 32);
        assert!(r.text().contains("no echo received"));
    }

    #[test]
    fn si_units() {
        assert_eq!(si(999.0), "999.0");
        assert_eq!(si(1500.0), "1.50 k");
        assert_eq!(si(2.5e6), "2.50 M");
        assert_eq!(si(1e10), "10.00 G");
    }
}
