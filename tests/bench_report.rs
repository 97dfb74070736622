//! bench's reports for pipelines, end to end against our reflector:
//! `intervals[]` and `schema` in `--json`, `--hlog` interval logs,
//! `--target` by host name, and `bench merge` of two runs.

mod common;
use common::both_backends;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use hdrhistogram::{
    serialization::{
        interval_log::{IntervalLogIterator, LogEntry},
        Deserializer,
    },
    Histogram,
};
use serde_json::Value;

both_backends!(two_runs_merge_into_their_added_histograms);

fn start(backend: &str) -> Option<Reflector> {
    let mut cmd = serve_command(["--backend", backend, "--json", "--listen", "127.0.0.1:0"]);
    common::start_cmd(backend, &mut cmd)
}

/// Runs `udp-reflector bench ARGS` (bounded); returns (status, stdout, stderr).
fn udp_reflector(args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let o = run_to_exit(&mut cmd, Duration::from_secs(30)).expect("spawning");
    (
        o.status.code().unwrap_or(-1),
        o.stdout.iter().map(|l| format!("{l}\n")).collect(),
        o.stderr,
    )
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing or not a count in {v}"))
}

/// Every interval histogram of an interval log, added up.
fn read_log(path: &Path) -> (usize, Histogram<u64>) {
    let bytes = std::fs::read(path).unwrap();
    let mut total: Histogram<u64> = Histogram::new(3).unwrap();
    let mut count = 0;
    let mut de = Deserializer::new();
    for e in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(i) = e.unwrap() {
            let raw = decode_base64(i.encoded_histogram());
            let h: Histogram<u64> = de.deserialize(&mut &raw[..]).unwrap();
            total.add(&h).unwrap();
            count += 1;
        }
    }
    (count, total)
}

/// Standard base64 (the log's encoding), decoded here independently.
fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| u32::from(val(c))).collect();
        let word = v
            .iter()
            .enumerate()
            .fold(0u32, |w, (i, x)| w | x << (18 - 6 * i));
        out.extend_from_slice(&word.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// Two bench runs (one by host name) with `--json --hlog`: each run's
/// intervals add up to its totals, each log holds exactly its run's round
/// trips, and `bench merge` of both gives the counters added and the
/// percentiles of the two logs' histograms added together.
fn two_runs_merge_into_their_added_histograms(backend: &'static str) {
    let Some(r) = start(backend) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("urt-bench-{backend}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = r.addr().port();
    let mut runs: Vec<(Value, PathBuf)> = Vec::new();
    for (i, (target, rate)) in [
        (format!("localhost:{port}"), "3000"),
        (r.addr().to_string(), "1000"),
    ]
    .iter()
    .enumerate()
    {
        let hlog = dir.join(format!("run{i}.hlog"));
        let (status, out, err) = udp_reflector(&[
            "bench",
            "--target",
            target,
            "--rate",
            rate,
            "--duration",
            "1.5",
            "--warmup",
            "0.3",
            "--flows",
            "2",
            "--json",
            "--hlog",
            hlog.to_str().unwrap(),
        ]);
        assert_eq!(status, 0, "bench {target}: {err}");
        let j: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(j["schema"], 1, "{j}");
        if i == 0 {
            assert_eq!(j["target_name"], "localhost", "{j}");
            assert!(err.contains("localhost resolved to"), "stderr: {err}");
            let t: std::net::SocketAddr = j["target"].as_str().unwrap().parse().unwrap();
            assert!(t.ip().is_loopback() && t.port() == port, "{j}");
        } else {
            assert!(j["target_name"].is_null(), "{j}");
        }
        assert!(n(&j, "received") > 0, "{j}");

        // Intervals: about one a second, adding up to the totals.
        let iv = j["intervals"].as_array().unwrap();
        assert!((2..=5).contains(&iv.len()), "{} intervals: {j}", iv.len());
        let sum = |k: &str| iv.iter().map(|x| n(x, k)).sum::<u64>();
        assert_eq!(sum("sent"), n(&j, "sent") + n(&j, "warmup_sent"));
        assert_eq!(
            sum("received"),
            n(&j, "received") + n(&j, "warmup_received")
        );
        assert_eq!(sum("lost"), n(&j, "lost") + n(&j, "warmup_lost"));
        let rtt_sum: u64 = iv.iter().map(|x| n(&x["rtt_us"], "count")).sum();
        assert_eq!(rtt_sum, n(&j["rtt_us"], "count"));
        for w in iv.windows(2) {
            assert_eq!(w[0]["end_s"], w[1]["start_s"], "intervals are contiguous");
        }

        // The log: one histogram per interval, holding exactly the run's round trips.
        let (count, h) = read_log(&hlog);
        assert_eq!(count, iv.len());
        assert_eq!(h.len(), n(&j["rtt_us"], "count"));
        let p99 = h.value_at_quantile(0.99) as f64 / 1000.0;
        assert!(
            (p99 - j["rtt_us"]["p99"].as_f64().unwrap()).abs() < 1e-6,
            "log p99 {p99} vs {}",
            j["rtt_us"]
        );
        let json_path = dir.join(format!("run{i}.json"));
        std::fs::write(&json_path, out).unwrap();
        runs.push((j, hlog));
    }
    let _ = r.stop();

    let files: Vec<String> = (0..2)
        .flat_map(|i| [format!("run{i}.json"), format!("run{i}.hlog")])
        .map(|f| dir.join(f).to_str().unwrap().to_string())
        .collect();
    let mut args = vec!["bench", "merge", "--json"];
    args.extend(files.iter().map(String::as_str));
    let (status, out, err) = udp_reflector(&args);
    assert_eq!(status, 0, "merge: {err}");
    assert!(err.is_empty(), "the logs and the results agree: {err}");
    let m: Value = serde_json::from_str(out.trim()).unwrap();
    for k in ["sent", "received", "lost", "warmup_sent", "echoes"] {
        assert_eq!(n(&m, k), n(&runs[0].0, k) + n(&runs[1].0, k), "{k}: {m}");
    }
    let (_, mut added) = read_log(&runs[0].1);
    added.add(read_log(&runs[1].1).1).unwrap();
    assert_eq!(n(&m["rtt_us"], "count"), added.len());
    for (k, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
        let want = added.value_at_quantile(q) as f64 / 1000.0;
        let got = m["rtt_us"][k].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-6,
            "{k}: merged {got} vs added logs {want}"
        );
    }
    assert_eq!(
        m["rtt_us"]["max"].as_f64().unwrap(),
        added.max() as f64 / 1000.0
    );

    // Text output, and a file that is neither kind.
    let (status, text, _) = udp_reflector(&["bench", "merge", &files[1], &files[3]]);
    assert_eq!(status, 0);
    assert!(
        text.contains("interval log(s)") && text.contains("p99"),
        "{text}"
    );
    let junk = dir.join("junk.txt");
    std::fs::write(&junk, "not a log\n").unwrap();
    let (status, _, err) = udp_reflector(&["bench", "merge", junk.to_str().unwrap()]);
    assert_eq!(status, 2, "{err}");
    assert!(err.contains("junk.txt"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A host name that does not resolve is a usage error naming the flag.
#[test]
fn an_unresolvable_target_is_a_usage_error() {
    let (status, _, err) = udp_reflector(&[
        "bench",
        "--target",
        "no-such-host.invalid:7",
        "--duration",
        "0.1",
    ]);
    assert_eq!(status, 2, "{err}");
    assert!(
        err.contains("--target") && err.contains("no-such-host.invalid"),
        "{err}"
    );
    let (status, _, err) = udp_reflector(&["bench", "--target", "[::1", "--duration", "0.1"]);
    assert_eq!(status, 2, "{err}");
    assert!(err.contains("HOST:PORT"), "{err}");
}
