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
    header::Phase,
    latency::{Latency, Signed},
    threads::{Shared, Threads, Totals},
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

/// The quantiles of the text report, with their labels.
const TEXT_QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
];

/// Everything the final report needs.
pub struct Report<'a> {
    pub cfg: &'a Config,
    pub totals: &'a Totals,
    /// Delays of received measured-phase datagrams, nanoseconds.
    pub latency: &'a Latency,
    /// How long sending was measured (shorter than --duration if interrupted).
    pub measured: Duration,
    /// Datagrams bench's own sockets dropped (receive queue full).
    pub local_drops: u64,
    /// GSO was in effect for the whole run.
    pub gso: bool,
    pub interrupted: bool,
    /// One object per second of the run (see `intervals.rs`).
    pub intervals: &'a [Value],
}

/// Version of the JSON report's layout: bumped when a key changes meaning
/// or goes away (new keys do not bump it).
pub const SCHEMA: u32 = 1;

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// A distribution as JSON, microseconds: count, min, mean, stdev, the
/// [`QUANTILES`], max (null when empty), and `negative` if given.
pub(crate) fn distribution(h: &Histogram<u64>, negative: Option<u64>) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("count".into(), json!(h.len()));
    let empty = h.is_empty();
    let stat = |v: f64| if empty { Value::Null } else { json!(v) };
    o.insert("min".into(), stat(us(h.min())));
    o.insert("mean".into(), stat(h.mean() / 1000.0));
    o.insert("stdev".into(), stat(h.stdev() / 1000.0));
    for (name, q) in QUANTILES {
        o.insert(name.into(), stat(us(h.value_at_quantile(q))));
    }
    o.insert("max".into(), stat(us(h.max())));
    if let Some(n) = negative {
        o.insert("negative".into(), json!(n));
    }
    Value::Object(o)
}

fn signed(d: Option<&Signed>) -> Value {
    d.map_or(Value::Null, |d| distribution(&d.hist, Some(d.negative)))
}

/// One line of percentiles, or `none` if `h` is empty.
fn text_line(o: &mut String, label: &str, h: &Histogram<u64>, none: &str) {
    if h.is_empty() {
        let _ = writeln!(o, "  {label:<10} {none}");
        return;
    }
    let _ = write!(o, "  {label:<10}");
    for (name, q) in TEXT_QUANTILES {
        let _ = write!(o, " {name} {:.1}", us(h.value_at_quantile(q)));
    }
    let _ = writeln!(o, " max {:.1}", us(h.max()));
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
        let stamp = self.latency.stamp.as_ref();
        let rtt = distribution(&self.latency.rtt, stamp.map(|s| s.rtt_negative));
        let (mode, rate, window) = match self.cfg.load {
            Load::Rate(r) => ("open", json!(r), Value::Null),
            Load::Window(n) => ("closed", Value::Null, json!(n)),
        };
        let mut v = json!({
            "target": self.cfg.target.to_string(),
            "protocol": if self.cfg.stamp { "stamp" } else { "echo" },
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
            "forward_us": signed(stamp.map(|s| &s.forward)),
            "reverse_us": signed(stamp.map(|s| &s.reverse)),
            "residence_us": signed(stamp.map(|s| &s.residence)),
        });
        v["schema"] = json!(SCHEMA);
        v["target_name"] = json!(self.cfg.target_name);
        v["intervals"] = Value::Array(self.intervals.to_vec());
        v
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
            "bench {}{}: {} flow{}, {}-byte payloads, {load}{}, {:.3} s measured{}",
            cfg.target,
            if cfg.stamp { " (STAMP)" } else { "" },
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
        text_line(&mut o, "rtt (us)", &self.latency.rtt, "no echo received");
        if let Some(s) = &self.latency.stamp {
            for (label, d) in [
                ("fwd (us)", &s.forward),
                ("rev (us)", &s.reverse),
                ("res (us)", &s.residence),
            ] {
                text_line(&mut o, label, &d.hist, "-");
            }
            let _ = writeln!(
                o,
                "  {:<10} rtt = (T4-T1)-(T3-T2); fwd = T2-T1, rev = T4-T3 (one-way: across hosts \
                 only as good as the clocks' sync); res = T3-T2 (in the reflector)",
                "STAMP"
            );
            for (what, n) in [
                ("forward delays", s.forward.negative),
                ("reverse delays", s.reverse.negative),
                ("residence times", s.residence.negative),
                ("round trips", s.rtt_negative),
            ] {
                if n > 0 {
                    let _ = writeln!(
                        o,
                        "  note: {n} {what} came out negative and count as 0: the two clocks \
                         disagree (or one stepped)"
                    );
                }
            }
            if m.received + w.received == 0 && self.totals.invalid > 0 {
                let _ = writeln!(
                    o,
                    "  note: no reply was a STAMP reflector packet answering ours: is {} a STAMP \
                     session-reflector? (an echo server returns the sender packet unchanged)",
                    cfg.target
                );
            }
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

    pub fn next(&mut self, cfg: &Config, threads: &Threads, shared: &Shared) -> String {
        let (mut sent, mut received, mut lost) = (0, 0, 0);
        let mut p99 = None;
        let mut merged: Option<Histogram<u64>> = None;
        for live in &threads.lives {
            sent += live.sent.load(Relaxed);
            received += live.received.load(Relaxed);
            lost += live.lost.load(Relaxed);
            let l = live.latency.lock().unwrap_or_else(|p| p.into_inner());
            match &mut merged {
                None => merged = Some(l.rtt.clone()),
                Some(m) => {
                    let _ = m.add(&l.rtt);
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
    use crate::bench::parse_for_test;

    fn config(extra: &[&str]) -> Config {
        parse_for_test(extra).unwrap().validate(false).unwrap()
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
        let mut latency = Latency::new(&cfg);
        for v in 1..=1990u64 {
            latency.rtt.record(v * 100).unwrap();
        }
        let r = Report {
            cfg: &cfg,
            totals: &totals,
            latency: &latency,
            measured: Duration::from_secs(2),
            local_drops: 0,
            gso: false,
            interrupted: false,
            intervals: &[],
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
        assert_eq!(j["protocol"], "echo");
        for k in ["forward_us", "reverse_us", "residence_us"] {
            assert!(j[k].is_null(), "{k} is STAMP's: {j}");
        }
        assert!(j["rtt_us"].get("negative").is_none());
        assert_eq!(j["schema"], SCHEMA);
        assert!(j["intervals"].as_array().is_some_and(Vec::is_empty));
        assert!(j["target_name"].is_null(), "an address was given: {j}");
        // README.md documents every key (its bench JSON table names each in backticks).
        let readme = include_str!("../../README.md");
        let keys = j.as_object().unwrap().keys().cloned();
        let rtt_keys = j["rtt_us"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| format!("rtt_us.{k}"));
        for k in keys.chain(rtt_keys) {
            assert!(
                readme.contains(&format!("`{k}`")),
                "README.md does not document `{k}`"
            );
        }
        let text = r.text();
        assert!(text.contains("p99.99"), "{text}");
        assert!(text.contains("(0.5000%)"), "{text}");
        assert!(!text.contains("fwd"), "{text}");
    }

    #[test]
    fn stamp_reports_one_way_delays_and_residence() {
        use crate::reflect::stamp::{decode_reflected, encode_sender, reflect};
        let cfg = config(&["--stamp", "--window", "1"]);
        let mut totals = Totals::default();
        totals.counts[Phase::Measured as usize].sent = 100;
        totals.counts[Phase::Measured as usize].received = 100;
        let mut latency = Latency::new(&cfg);
        let t1 = 1_700_000_000_000_000_000u64;
        for i in 0..100u64 {
            let mut d = [0u8; 44];
            encode_sender(i as u32, t1, &mut d).unwrap();
            let meta = crate::reflect::RxMeta {
                rx_time_ns: Some(t1 + 10_000 + i),
                ttl: None,
            };
            reflect(&meta, &mut d, 44, t1 + 12_000 + i);
            let r = decode_reflected(&d).unwrap();
            let Latency { rtt, stamp } = &mut latency;
            stamp.as_mut().unwrap().record(&r, t1 + 20_000 + i, rtt);
        }
        let r = Report {
            cfg: &cfg,
            totals: &totals,
            latency: &latency,
            measured: Duration::from_secs(1),
            local_drops: 0,
            gso: false,
            interrupted: false,
            intervals: &[],
        };
        let j = r.json();
        assert_eq!(
            (j["protocol"].as_str(), j["size"].as_u64()),
            (Some("stamp"), Some(44))
        );
        let p50 = |k: &str| j[k]["p50"].as_f64().unwrap();
        assert!((10.0..=10.1).contains(&p50("forward_us")), "{j}");
        assert!((8.0..=8.01).contains(&p50("reverse_us")), "{j}");
        assert!((2.0..=2.01).contains(&p50("residence_us")), "{j}");
        assert!(
            (18.0..=18.2).contains(&p50("rtt_us")),
            "residence removed: {j}"
        );
        for k in ["forward_us", "reverse_us", "residence_us", "rtt_us"] {
            for q in ["p50", "p90", "p99", "p999", "p9999", "max", "min", "mean"] {
                assert!(j[k][q].as_f64().is_some(), "{k}.{q}: {j}");
            }
            assert_eq!(j[k]["count"], 100, "{k}");
            assert_eq!(j[k]["negative"], 0, "{k}");
        }
        let text = r.text();
        for w in ["(STAMP)", "fwd (us)", "rev (us)", "res (us)", "T4-T1"] {
            assert!(text.contains(w), "{w}: {text}");
        }
        assert!(!text.contains("note:"), "{text}");
    }

    #[test]
    fn an_empty_histogram_reports_null_percentiles() {
        let cfg = config(&[]);
        let totals = Totals::default();
        let latency = Latency::new(&cfg);
        let r = Report {
            cfg: &cfg,
            totals: &totals,
            latency: &latency,
            measured: Duration::ZERO,
            local_drops: 0,
            gso: false,
            interrupted: true,
            intervals: &[],
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
