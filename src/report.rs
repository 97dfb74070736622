//! What the user sees: the listening line, interval lines and the final
//! summary, as human text or JSON lines on stdout.

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::{
    hostdrops::HostCounters,
    reflect::Mode,
    stats::{Counters, LatencySummary},
};

/// One worker's final figures.
pub struct WorkerFigures {
    pub worker: usize,
    pub cpu: usize,
    pub counters: Counters,
    pub latency: Histogram<u64>,
}

pub struct Reporter {
    pub json: bool,
    /// stdout, written by a thread of its own (src/output.rs).
    out: crate::output::Output,
}

fn counters_map(c: &Counters) -> Map<String, Value> {
    Counters::names()
        .iter()
        .zip(c.to_array())
        .map(|(n, v)| (n.to_string(), json!(v)))
        .collect()
}

fn latency_value(l: &LatencySummary) -> Value {
    json!({ "samples": l.samples, "mean": l.mean, "p50": l.p50, "p90": l.p90, "p99": l.p99, "p999": l.p999, "max": l.max })
}

/// `name=value` for the always-shown counters, plus the reasons that occurred.
fn counters_text(c: &Counters, only_moved: bool) -> String {
    let always = ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"];
    Counters::names()
        .iter()
        .zip(c.to_array())
        .filter(|(n, v)| {
            *v != 0 || (always.contains(n)) || (!only_moved && !n.starts_with("no_reply_"))
        })
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn host_map(h: &HostCounters) -> Map<String, Value> {
    h.named().map(|(n, v)| (n.to_string(), json!(v))).collect()
}

/// `name=value` for the host counters (only those that moved if `only_moved`).
fn host_text(h: &HostCounters, only_moved: bool) -> String {
    h.named()
        .filter(|(_, v)| !only_moved || *v != 0)
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn latency_text(l: &LatencySummary) -> String {
    format!(
        "latency_us p50={:.1} p90={:.1} p99={:.1} p999={:.1} max={:.1}",
        l.p50, l.p90, l.p99, l.p999, l.max
    )
}

impl Reporter {
    /// Starts the stdout writer thread.
    pub fn new(json: bool) -> std::io::Result<Reporter> {
        Ok(Reporter {
            json,
            out: crate::output::Output::new()?,
        })
    }

    fn emit(&self, line: String) {
        self.out.line(line);
    }

    /// Waits up to `wait` for every line to reach stdout; says what failed.
    pub fn finish(self, wait: Duration) -> Result<(), crate::output::OutputError> {
        self.out.finish(wait)
    }

    /// SIGUSR1: the counters and latency so far, per worker and in total
    /// (each worker's histogram as the live-latency hub last collected it).
    pub fn summary_so_far(
        &self,
        backend: &str,
        elapsed: Duration,
        workers: &[(usize, usize, Counters, Histogram<u64>)],
    ) {
        let mut total = Counters::default();
        let mut merged = crate::stats::new_latency_histogram();
        for (_, _, c, h) in workers {
            total.add(c);
            let _ = merged.add(h);
        }
        let total_lat = LatencySummary::of(&merged);
        if self.json {
            let ws: Vec<Value> = workers
                .iter()
                .map(|(id, cpu, c, h)| {
                    let mut m = counters_map(c);
                    m.insert("worker".into(), json!(id));
                    m.insert("cpu".into(), json!(cpu));
                    m.insert("latency_us".into(), latency_value(&LatencySummary::of(h)));
                    Value::Object(m)
                })
                .collect();
            let mut t = counters_map(&total);
            t.insert("latency_us".into(), latency_value(&total_lat));
            self.emit(
                json!({"event": "summary_so_far", "backend": backend,
                       "elapsed_s": elapsed.as_secs_f64(),
                       "total": Value::Object(t), "workers": ws})
                .to_string(),
            );
        } else {
            let mut lines = vec![format!(
                "summary so far: backend {backend}, {:.2} s, {} worker(s)",
                elapsed.as_secs_f64(),
                workers.len()
            )];
            lines.push(format!("  total:  {}", counters_text(&total, false)));
            lines.push(format!("          {}", latency_text(&total_lat)));
            for (id, cpu, c, h) in workers {
                lines.push(format!(
                    "  worker {id} (cpu {cpu}): {}",
                    counters_text(c, false)
                ));
                lines.push(format!(
                    "          {}",
                    latency_text(&LatencySummary::of(h))
                ));
            }
            self.emit(lines.join("\n"));
        }
    }

    /// The sockets are bound: say where (ports resolved) and how.
    pub fn listening(
        &self,
        listeners: &[(SocketAddr, Mode)],
        backend: &str,
        cpus: &[usize],
        rcvbuf: Option<u32>,
    ) {
        if self.json {
            let addrs: Vec<String> = listeners.iter().map(|(a, _)| a.to_string()).collect();
            let modes: Vec<&str> = listeners.iter().map(|(_, m)| m.name()).collect();
            self.emit(
                json!({"event": "listening", "addrs": addrs, "modes": modes, "backend": backend,
                       "cpus": cpus, "rcvbuf_granted": rcvbuf})
                .to_string(),
            );
        } else {
            let l: Vec<String> = listeners
                .iter()
                .map(|(a, m)| format!("{a} ({m})"))
                .collect();
            let rcv = rcvbuf.map_or(String::new(), |b| format!(", SO_RCVBUF granted {b} bytes"));
            self.emit(format!(
                "udp-reflector: listening on {} with {} worker(s) on cpus {}, backend {backend}{rcv}",
                l.join(", "),
                cpus.len(),
                crate::parse::format_cpu_list(cpus),
            ));
        }
    }

    /// `--metrics` is being served: say where (a port 0 resolved).
    pub fn metrics(&self, addr: SocketAddr) {
        let url = format!("http://{addr}/metrics");
        if self.json {
            self.emit(
                json!({"event": "metrics", "url": url, "addr": addr.to_string()}).to_string(),
            );
        } else {
            self.emit(format!("udp-reflector: Prometheus metrics at {url}"));
        }
    }

    /// Deltas over the last interval, totalled over workers: counters,
    /// that interval's latency, what the host dropped; stamped with `at`.
    pub fn interval(
        &self,
        at: SystemTime,
        elapsed: Duration,
        dt: Duration,
        delta: &Counters,
        latency: &LatencySummary,
        host: &HostCounters,
    ) {
        let secs = dt.as_secs_f64().max(1e-9);
        let rx_pps = delta.rx_packets as f64 / secs;
        let tx_pps = delta.tx_packets as f64 / secs;
        let time = crate::wallclock::rfc3339(at);
        if self.json {
            let mut m = counters_map(delta);
            m.insert("event".into(), json!("interval"));
            m.insert("time".into(), json!(time));
            m.insert("unix_s".into(), json!(crate::wallclock::unix_seconds(at)));
            m.insert("elapsed_s".into(), json!(elapsed.as_secs_f64()));
            m.insert("interval_s".into(), json!(secs));
            m.insert("rx_pps".into(), json!(rx_pps));
            m.insert("tx_pps".into(), json!(tx_pps));
            m.insert(
                "latency_us".into(),
                json!({ "samples": latency.samples, "p50": latency.p50, "p99": latency.p99, "max": latency.max }),
            );
            m.insert("host".into(), Value::Object(host_map(host)));
            self.emit(Value::Object(m).to_string());
        } else {
            let lat = if latency.samples == 0 {
                "latency_us -".to_string()
            } else {
                format!(
                    "latency_us p50={:.1} p99={:.1} max={:.1}",
                    latency.p50, latency.p99, latency.max
                )
            };
            let host = host_text(host, true);
            let host = if host.is_empty() {
                String::new()
            } else {
                format!("; host {host}")
            };
            self.emit(format!(
                "[{:7.1}s] {time} rx {rx_pps:.0} pps, tx {tx_pps:.0} pps; {}; {lat}{host}",
                elapsed.as_secs_f64(),
                counters_text(delta, true)
            ));
        }
    }

    /// The final figures, per worker and merged, and what the host dropped
    /// while the reflector ran.
    pub fn summary(
        &self,
        backend: &str,
        elapsed: Duration,
        workers: &[WorkerFigures],
        host: &HostCounters,
    ) {
        let mut total = Counters::default();
        let mut merged = crate::stats::new_latency_histogram();
        for w in workers {
            total.add(&w.counters);
            let _ = merged.add(&w.latency);
        }
        let total_lat = LatencySummary::of(&merged);
        if self.json {
            let mut t = counters_map(&total);
            t.insert("latency_us".into(), latency_value(&total_lat));
            let ws: Vec<Value> = workers
                .iter()
                .map(|w| {
                    let mut m = counters_map(&w.counters);
                    m.insert("worker".into(), json!(w.worker));
                    m.insert("cpu".into(), json!(w.cpu));
                    m.insert(
                        "latency_us".into(),
                        latency_value(&LatencySummary::of(&w.latency)),
                    );
                    Value::Object(m)
                })
                .collect();
            self.emit(
                json!({"event": "summary", "backend": backend, "elapsed_s": elapsed.as_secs_f64(),
                       "total": t, "workers": ws, "host": host_map(host)})
                .to_string(),
            );
        } else {
            let mut lines = vec![format!(
                "summary: backend {backend}, {:.2} s, {} worker(s)",
                elapsed.as_secs_f64(),
                workers.len()
            )];
            lines.push(format!("  total:  {}", counters_text(&total, false)));
            lines.push(format!("          {}", latency_text(&total_lat)));
            lines.push(format!("  host:   {}", host_text(host, false)));
            for w in workers {
                lines.push(format!(
                    "  worker {} (cpu {}): {}",
                    w.worker,
                    w.cpu,
                    counters_text(&w.counters, false)
                ));
                lines.push(format!(
                    "          {}",
                    latency_text(&LatencySummary::of(&w.latency))
                ));
            }
            self.emit(lines.join("\n"));
        }
    }
}
