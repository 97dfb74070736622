//! `--metrics ADDR:PORT`: `/metrics` in the Prometheus text format, served
//! by a thread of its own.
//!
//! A scrape reads what the workers already publish: their counters
//! ([`SharedCounters`] snapshots), their latency histograms (through
//! [`LatencyHub`], which asks each worker to hand its histogram over at the
//! end of a flush) and the host counters ([`HostReader`]). Nothing here runs
//! on a worker. The format comes from `prometheus-client`, HTTP from
//! `tiny_http`.

use std::{
    fmt, io,
    net::SocketAddr,
    sync::Arc,
    thread::JoinHandle,
    time::{SystemTime, UNIX_EPOCH},
};

use hdrhistogram::Histogram;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use crate::{
    hostdrops::{HostCounters, HostReader},
    live::{merged, LatencyHub},
    reflect::NoReply,
    stats::{Counters, SharedCounters},
};

/// Upper bounds of the latency histogram's buckets, in nanoseconds: 1, 2, 5
/// per decade from 1 µs to 1 s (`+Inf` is added by the encoder).
pub const BUCKETS_NS: [u64; 19] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
];

/// `# HELP` text of each summary counter (the `no_reply_*` reasons share one).
fn help(counter: &str) -> &'static str {
    Counters::help(counter).unwrap_or("A reflector counter; see README.md, section Counters.")
}

fn host_help(name: &str) -> String {
    let what = match name {
        n if n.starts_with("softnet_dropped") => {
            "packets the host dropped because a CPU's input backlog was full (/proc/net/softnet_stat, all CPUs)".to_string()
        }
        n if n.starts_with("softnet_time_squeeze") => {
            "times a CPU's receive softirq ran out of budget with work left (/proc/net/softnet_stat, all CPUs)".to_string()
        }
        n if n.starts_with("nic_") => format!(
            "the --interface NIC's {} (sysfs statistics)",
            &n["nic_".len()..]
        ),
        n => {
            let (table, field) = n.split_once('_').unwrap_or((n, ""));
            format!(
                "{} {} of the host's network namespace (/proc/net/snmp{})",
                table.to_uppercase(),
                field,
                if table == "udp6" { "6" } else { "" }
            )
        }
    };
    format!("Host-wide, since the reflector started: {what}.")
}

/// Per-bucket counts (not cumulative) for [`BUCKETS_NS`], in seconds, and
/// `+Inf`. Each recorded value counts in the first bucket whose bound is at
/// least the lowest value HdrHistogram holds as equal to it.
pub fn buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    let mut out: Vec<(f64, u64)> = BUCKETS_NS
        .iter()
        .map(|&b| (b as f64 / 1e9, 0))
        .chain([(f64::INFINITY, 0)])
        .collect();
    for v in h.iter_recorded() {
        let value = h.lowest_equivalent(v.value_iterated_to());
        let i = BUCKETS_NS
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(BUCKETS_NS.len());
        out[i].1 += v.count_at_value();
    }
    out
}

/// The histogram's `_sum` in seconds: HdrHistogram's mean times its count.
pub fn sum_seconds(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.mean() * h.len() as f64 / 1e9
    }
}

/// One worker as the metrics see it.
pub struct WorkerSource {
    pub worker: usize,
    pub cpu: usize,
    pub counters: Arc<SharedCounters>,
}

/// Everything a scrape reads.
pub struct Source {
    pub workers: Vec<WorkerSource>,
    pub latency: Arc<LatencyHub>,
    pub host: HostReader,
    pub host_start: HostCounters,
    pub backend: &'static str,
    pub started: SystemTime,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("workers", &self.workers.len())
            .finish()
    }
}

type Labels = Vec<(&'static str, String)>;

fn encode_counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        if labels.is_empty() {
            ConstCounter::new(*v).encode(m.encode_family(&Vec::<(&str, String)>::new())?)?;
        } else {
            ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
        }
    }
    Ok(())
}

fn encode_histograms(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, &Histogram<u64>)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        m.encode_family(labels)?.encode_histogram::<Labels>(
            sum_seconds(h),
            h.len(),
            &buckets(h),
            None,
        )?;
    }
    Ok(())
}

impl Collector for Source {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let per_worker: Vec<(Labels, Counters)> = self
            .workers
            .iter()
            .map(|w| {
                (
                    vec![("worker", w.worker.to_string()), ("cpu", w.cpu.to_string())],
                    w.counters.snapshot(),
                )
            })
            .collect();
        let mut total = Counters::default();
        per_worker.iter().for_each(|(_, c)| total.add(c));

        // Counters: the total, then per worker; no_reply as one family by reason.
        let names = Counters::names();
        for (i, name) in names.iter().enumerate() {
            if name.starts_with("no_reply_") {
                continue;
            }
            encode_counter(&mut enc, name, help(name), &[(vec![], total.to_array()[i])])?;
            let rows: Vec<(Labels, u64)> = per_worker
                .iter()
                .map(|(l, c)| (l.clone(), c.to_array()[i]))
                .collect();
            encode_counter(&mut enc, &format!("worker_{name}"), help(name), &rows)?;
        }
        let reason_rows = |c: &Counters, labels: &Labels| -> Vec<(Labels, u64)> {
            NoReply::ALL
                .iter()
                .map(|r| {
                    let mut l = labels.clone();
                    let reason = r.counter_name().trim_start_matches("no_reply_");
                    l.push(("reason", reason.to_string()));
                    (l, c.no_reply[*r as usize])
                })
                .collect()
        };
        let no_reply_help =
            "Datagrams received and deliberately not answered, by reason (see README.md).";
        encode_counter(
            &mut enc,
            "no_reply",
            no_reply_help,
            &reason_rows(&total, &vec![]),
        )?;
        let rows: Vec<(Labels, u64)> = per_worker
            .iter()
            .flat_map(|(l, c)| reason_rows(c, l))
            .collect();
        encode_counter(&mut enc, "worker_no_reply", no_reply_help, &rows)?;

        // Latency: total and per worker.
        let hists = self.latency.collect();
        let all = merged(&hists);
        let latency_help = "Time from a request's arrival in the kernel (SO_TIMESTAMPNS) \
                            to its reply's sendmmsg returning, in seconds.";
        encode_histograms(&mut enc, "latency_seconds", latency_help, &[(vec![], &all)])?;
        let rows: Vec<(Labels, &Histogram<u64>)> = per_worker
            .iter()
            .map(|(l, _)| l.clone())
            .zip(hists.iter())
            .collect();
        encode_histograms(&mut enc, "worker_latency_seconds", latency_help, &rows)?;

        // Host counters, as deltas since start.
        let host = self.host.read().since(&self.host_start);
        for (name, v) in host.named() {
            encode_counter(
                &mut enc,
                &format!("host_{name}"),
                &host_help(name),
                &[(vec![], v)],
            )?;
        }

        // Build and start time.
        let info = enc.encode_descriptor(
            "build",
            "The reflector's version and backend (value 1).",
            None,
            MetricType::Info,
        )?;
        let labels: Labels = vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("backend", self.backend.to_string()),
        ];
        prometheus_client::metrics::info::Info::new(labels).encode(info)?;
        let start = self
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let m = enc.encode_descriptor(
            "start_time_seconds",
            "When the reflector started, in seconds since the Unix epoch.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(start).encode(m)?;
        Ok(())
    }
}

/// The running endpoint.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks one) and serves `/metrics` from `source`.
    pub fn start(addr: SocketAddr, source: Source) -> io::Result<MetricsServer> {
        let server = Arc::new(
            tiny_http::Server::http(addr)
                .map_err(|e| io::Error::other(format!("binding {addr}: {e}")))?,
        );
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("the metrics server is not on an IP address"))?;
        let mut registry = Registry::with_prefix("udp_reflector");
        registry.register_collector(Box::new(source));
        let serving = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&serving, &registry))?;
        Ok(MetricsServer {
            server,
            thread: Some(thread),
            addr,
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, registry: &Registry) {
    for request in server.incoming_requests() {
        let response = match (request.method(), request.url()) {
            (tiny_http::Method::Get, "/metrics") => {
                let mut body = String::new();
                match prometheus_client::encoding::prometheus_text::encode(&mut body, registry) {
                    Ok(()) => tiny_http::Response::from_string(body).with_header(
                        tiny_http::Header::from_bytes(
                            "Content-Type",
                            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                        )
                        .expect("a static header is valid"),
                    ),
                    Err(_) => {
                        tiny_http::Response::from_string("encoding failed\n").with_status_code(500)
                    }
                }
            }
            (_, "/metrics") => tiny_http::Response::from_string("only GET\n").with_status_code(405),
            _ => {
                tiny_http::Response::from_string("not found: try /metrics\n").with_status_code(404)
            }
        };
        let _ = request.respond(response);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_latency_histogram;

    #[test]
    fn buckets_hold_every_sample_once_at_the_right_bound() {
        let mut h = new_latency_histogram();
        h.record_n(1_000, 3).unwrap(); // exactly on the 1 µs bound
        h.record(1_001).unwrap();
        h.record(1_000_000).unwrap(); // exactly 1 ms
        h.record(5_000_000_000).unwrap(); // 5 s: +Inf
        let b = buckets(&h);
        assert_eq!(b.len(), BUCKETS_NS.len() + 1);
        assert_eq!(b[0], (1e-6, 3));
        assert_eq!(b[1], (2e-6, 1));
        assert_eq!(b[9], (1e-3, 1));
        assert_eq!(b[BUCKETS_NS.len()], (f64::INFINITY, 1));
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), h.len());
        let sum = sum_seconds(&h);
        let exact = (3_000 + 1_001 + 1_000_000 + 5_000_000_000u64) as f64 / 1e9;
        assert!((sum - exact).abs() / exact < 0.001, "{sum} vs {exact}");
    }

    #[test]
    fn every_fixed_counter_has_its_own_help() {
        for n in Counters::names()
            .iter()
            .filter(|n| !n.starts_with("no_reply_"))
        {
            assert!(!help(n).starts_with("A reflector counter"), "{n}");
        }
        assert!(host_help("udp6_rcvbuf_errors").contains("snmp6"));
    }
}
