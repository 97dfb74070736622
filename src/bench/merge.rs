//! `udp-reflector bench merge FILE...`: one report from several bench runs
//! (say, one per load host).
//!
//! Each FILE is either a `bench --json` result or a `bench --hlog` interval
//! log (told apart by content). Counters add up across results; the
//! round-trip percentiles come from the interval logs' histograms added
//! together, never from averaging the runs' percentiles (which has no
//! meaning). Without an interval log the merged report has counts but no
//! percentiles.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use hdrhistogram::{
    serialization::{
        interval_log::{IntervalLogIterator, LogEntry},
        Deserializer,
    },
    Histogram,
};
use serde_json::{json, Map, Value};

use super::report::{distribution, SCHEMA};
use crate::Error;

/// Counters of a `bench --json` result that add up across runs.
pub const SUMMED: [&str; 19] = [
    "sent",
    "received",
    "lost",
    "duplicates",
    "reordered",
    "late",
    "corrupt",
    "invalid",
    "warmup_sent",
    "warmup_received",
    "warmup_lost",
    "warmup_duplicates",
    "warmup_late",
    "echoes",
    "local_drops",
    "refused",
    "send_errors",
    "send_stalls",
    "tracking_stalls",
];
/// Rates that add up across runs made at the same time.
const RATES: [&str; 4] = ["pps_sent", "pps_received", "bps_sent", "bps_received"];

/// Flags of `bench merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// `bench --json` results and `bench --hlog` interval logs, in any order.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// Print the merged report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What a set of files adds up to.
#[derive(Debug)]
pub struct Merged {
    pub results: usize,
    pub logs: usize,
    pub intervals: usize,
    pub counters: Map<String, Value>,
    /// Round-trip times in nanoseconds, from the interval logs.
    pub rtt: Histogram<u64>,
    /// The results' own `rtt_us.count`, summed (to check the logs against).
    pub results_rtt_count: u64,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Invalid {
        flag: "bench merge",
        reason: format!("{}: {what}", path.display()),
    }
}

/// Adds every interval histogram of an interval log into `into`.
pub fn add_log(text: &[u8], into: &mut Histogram<u64>) -> Result<usize, String> {
    let mut n = 0;
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(text) {
        match entry.map_err(|e| format!("not an interval log ({e:?})"))? {
            LogEntry::Interval(i) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(i.encoded_histogram())
                    .map_err(|e| format!("interval {n}: bad base64 ({e})"))?;
                let h: Histogram<u64> = de
                    .deserialize(&mut &bytes[..])
                    .map_err(|e| format!("interval {n}: bad histogram ({e:?})"))?;
                into.add(&h)
                    .map_err(|e| format!("interval {n}: cannot add ({e:?})"))?;
                n += 1;
            }
            LogEntry::StartTime(_) | LogEntry::BaseTime(_) => {}
        }
    }
    Ok(n)
}

/// Reads and adds up `files`.
pub fn merge(files: &[PathBuf]) -> Result<Merged, Error> {
    let mut m = Merged {
        results: 0,
        logs: 0,
        intervals: 0,
        counters: Map::new(),
        // Auto-resizing: runs with different --timeout have different bounds.
        rtt: Histogram::new(3).expect("3 significant figures is valid"),
        results_rtt_count: 0,
    };
    for path in files {
        let bytes = std::fs::read(path).map_err(|e| bad(path, e))?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'{') {
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| bad(path, format!("not a bench --json result ({e})")))?;
            match v.get("schema").and_then(Value::as_u64) {
                Some(s) if s == u64::from(SCHEMA) => {}
                other => {
                    return Err(bad(
                        path,
                        format!("schema {other:?}, this bench reads schema {SCHEMA}"),
                    ))
                }
            }
            for key in SUMMED.iter().chain(&RATES) {
                let Some(x) = v.get(*key).filter(|x| x.is_number()) else {
                    continue;
                };
                let sum = m.counters.entry(key.to_string()).or_insert(json!(0));
                *sum = match (sum.as_u64(), x.as_u64()) {
                    (Some(a), Some(b)) => json!(a + b),
                    _ => json!(sum.as_f64().unwrap_or(0.0) + x.as_f64().unwrap_or(0.0)),
                };
            }
            m.results_rtt_count += v["rtt_us"]["count"].as_u64().unwrap_or(0);
            m.results += 1;
        } else {
            m.intervals += add_log(&bytes, &mut m.rtt).map_err(|e| bad(path, e))?;
            m.logs += 1;
        }
    }
    Ok(m)
}

impl Merged {
    pub fn json(&self) -> Value {
        let mut o = self.counters.clone();
        let get = |k: &str| o.get(k).and_then(Value::as_u64).unwrap_or(0);
        let (sent, lost) = (get("sent"), get("lost"));
        o.insert("schema".into(), json!(SCHEMA));
        o.insert(
            "merged".into(),
            json!({"results": self.results, "interval_logs": self.logs, "intervals": self.intervals}),
        );
        o.insert(
            "loss_ratio".into(),
            json!(if sent > 0 {
                lost as f64 / sent as f64
            } else {
                0.0
            }),
        );
        o.insert("rtt_us".into(), distribution(&self.rtt, None));
        Value::Object(o)
    }

    pub fn text(&self) -> String {
        let v = self.json();
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let r = &v["rtt_us"];
        let q = |k: &str| r[k].as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
        format!(
            "merged {} result(s) and {} interval log(s) ({} intervals)\n\
             sent {} received {} lost {} (loss ratio {:.6})\n\
             rtt (us) from the added histograms: count {} p50 {} p90 {} p99 {} p999 {} max {}\n",
            self.results,
            self.logs,
            self.intervals,
            n("sent"),
            n("received"),
            n("lost"),
            v["loss_ratio"].as_f64().unwrap_or(0.0),
            r["count"],
            q("p50"),
            q("p90"),
            q("p99"),
            q("p999"),
            q("max"),
        )
    }
}

/// `bench merge`: prints the merged report.
pub fn run(args: &MergeArgs) -> Result<(), Error> {
    let m = merge(&args.files)?;
    if m.results > 0 && m.logs > 0 && m.results_rtt_count != m.rtt.len() {
        eprintln!(
            "bench merge: the interval logs hold {} round trips but the results count {}: \
             were they written by the same runs?",
            m.rtt.len(),
            m.results_rtt_count
        );
    }
    if args.json {
        println!("{}", m.json());
    } else {
        print!("{}", m.text());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::intervals::{Counts, Intervals};
    use std::time::{Duration, SystemTime};

    /// Deterministic pseudo-random round trips from 5 µs to ~50 ms.
    fn samples(seed: u64, n: usize) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                5_000 + (x % 1000) * (x % 50_000) / 1000
            })
            .collect()
    }

    /// Writes `raw` as an interval log of a few intervals, the way bench does.
    fn log_of(raw: &[u64], path: &Path) {
        let f = std::fs::File::create(path).unwrap();
        let empty = crate::bench::latency::new_histogram(2_000_000_000);
        let mut iv = Intervals::new(empty.clone(), Some(f), SystemTime::now(), "test").unwrap();
        let mut cum = empty;
        for (i, chunk) in raw.chunks(raw.len() / 3 + 1).enumerate() {
            for &v in chunk {
                cum.record(v).unwrap();
            }
            let t = Duration::from_secs(i as u64 + 1);
            iv.sample(t, Counts::default(), &cum).unwrap();
        }
    }

    #[test]
    fn merging_two_logs_equals_the_histogram_of_all_raw_samples() {
        let dir = std::env::temp_dir().join(format!("urt-merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (samples(1, 5000), samples(2, 3000));
        log_of(&a, &dir.join("a.hlog"));
        log_of(&b, &dir.join("b.hlog"));
        let m = merge(&[dir.join("a.hlog"), dir.join("b.hlog")]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        let mut all: Vec<u64> = a.iter().chain(&b).copied().collect();
        let mut direct = crate::bench::latency::new_histogram(2_000_000_000);
        all.iter().for_each(|&v| direct.record(v).unwrap());
        assert_eq!(m.rtt.len(), all.len() as u64);
        assert_eq!(m.logs, 2);
        // Same counts at every recorded value: the histograms are equal.
        let got: Vec<(u64, u64)> = m
            .rtt
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        let want: Vec<(u64, u64)> = direct
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        assert_eq!(got, want);
        // And the percentiles are the raw samples' within HdrHistogram's 0.1%.
        all.sort_unstable();
        for q in [0.5, 0.9, 0.99, 0.999] {
            let exact = all[((q * all.len() as f64).ceil() as usize).max(1) - 1] as f64;
            let got = m.rtt.value_at_quantile(q) as f64;
            assert!(
                (got - exact).abs() <= exact * 0.001,
                "q {q}: {got} vs {exact}"
            );
        }
        assert_eq!(m.rtt.max(), m.rtt.highest_equivalent(*all.last().unwrap()));
    }

    #[test]
    fn results_add_up_and_a_stranger_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("urt-merge-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = |sent: u64, lost: u64| {
            json!({"schema": SCHEMA, "sent": sent, "received": sent - lost, "lost": lost,
                   "pps_sent": 10.5, "rtt_us": {"count": sent - lost}})
        };
        std::fs::write(dir.join("a.json"), r(100, 10).to_string()).unwrap();
        std::fs::write(dir.join("b.json"), r(300, 0).to_string()).unwrap();
        std::fs::write(dir.join("old.json"), json!({"sent": 1}).to_string()).unwrap();
        std::fs::write(dir.join("junk"), "hello\n").unwrap();
        let m = merge(&[dir.join("a.json"), dir.join("b.json")]).unwrap();
        let v = m.json();
        assert_eq!(
            (v["sent"].as_u64(), v["lost"].as_u64()),
            (Some(400), Some(10))
        );
        assert_eq!(v["loss_ratio"].as_f64(), Some(10.0 / 400.0));
        assert_eq!(v["pps_sent"].as_f64(), Some(21.0));
        assert_eq!(v["rtt_us"]["count"].as_u64(), Some(0));
        let e = merge(&[dir.join("old.json")]).unwrap_err().to_string();
        assert!(e.contains("schema"), "{e}");
        let e = merge(&[dir.join("junk")]).unwrap_err().to_string();
        assert!(e.contains("junk") && e.contains("interval log"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
