//! Overload soak: one worker offered about three times what it can answer,
//! for 10 s (`UDP_REFLECTOR_SOAK_SECS` for longer; `perf/soak.sh` runs 60 s).
//! Both identities must hold exactly and the resident memory must not grow.
//!
//! It loads the whole machine, so it is `#[ignore]`d in the main run and
//! run on its own: `.ci/run` has a step for it
//! (`cargo nextest run --run-ignored only -E 'binary(soak)'`).
//!
//! The load is `udp-reflector bench` in open loop (a real client), at
//! three times the rate a closed-loop calibration run got answered. Plain
//! datagrams, not GSO trains: the reflector reads with UDP_GRO, and a train
//! dropped whole at a full socket queue counts once in the kernel's drop
//! counter (`rxq_overflow` counts skbs there, not datagrams), so the second
//! identity is exact only for datagrams that arrive one by one. Bounded: the bench run ends after its duration, and each
//! process is waited for with a deadline.

mod common;
use common::both_backends;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{assert_summary_consistent, counter, serve_command, softnet_dropped, BIN};
use serde_json::Value;

both_backends!(
    #[ignore = "loads the whole machine: run alone (.ci/run, perf/soak.sh)"]
    three_times_overload_keeps_both_identities_and_memory_flat
);

fn soak_secs() -> f64 {
    std::env::var("UDP_REFLECTOR_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0)
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: libc::pid_t) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `udp-reflector bench ARGS --json` to its end (deadline: duration +
/// 30 s) and returns its JSON.
fn bench(args: &[String], secs: f64) -> Value {
    let mut child = Command::new(BIN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning bench");
    let deadline = Instant::now() + Duration::from_secs_f64(secs + 30.0);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bench still running 30 s after its duration");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "bench output is not JSON ({e}): {text:?}; stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn u(j: &Value, k: &str) -> u64 {
    j[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {j}"))
}

fn three_times_overload_keeps_both_identities_and_memory_flat(backend: &'static str) {
    let secs = soak_secs();
    let cpus = common::usable_cpus();
    // The reflector on the last CPU, the load on the others when there are.
    let (refl_cpu, load_cpus) = if cpus >= 2 {
        ((cpus - 1).to_string(), format!("0-{}", cpus - 2))
    } else {
        ("0".to_string(), "0".to_string())
    };
    let mut cmd = serve_command([
        "--backend",
        backend,
        "--json",
        "--cpus",
        &refl_cpu,
        "--listen",
        "127.0.0.1:0",
    ]);
    let Some(r) = common::start_cmd(backend, &mut cmd) else {
        return;
    };
    let target = r.addr().to_string();
    let pid = r.proc.pid();

    // What one worker answers: a closed loop with plenty in flight.
    let cal = bench(
        &[
            "--target",
            &target,
            "--flows",
            "8",
            "--window",
            "64",
            "--duration",
            "1",
            "--cpus",
            &load_cpus,
        ]
        .map(String::from),
        1.0,
    );
    let capacity = u(&cal, "received").max(1000);
    let rate = 3 * capacity;

    let rss_start = rss_kib(pid);
    let drops_before = softnet_dropped();
    let samples = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut v = Vec::new();
            let end = Instant::now() + Duration::from_secs_f64(secs + 1.0);
            while Instant::now() < end {
                v.push(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(250));
            }
            v
        });
        let run = bench(
            &[
                "--target".into(),
                target.clone(),
                "--flows".into(),
                "8".into(),
                "--rate".into(),
                rate.to_string(),
                "--duration".into(),
                secs.to_string(),
                "--timeout".into(),
                "0.5".into(),
                "--cpus".into(),
                load_cpus.clone(),
            ],
            secs,
        );
        (run, sampler.join().unwrap())
    });
    let (run, rss) = samples;
    std::thread::sleep(Duration::from_millis(300));
    let backlog_drops = softnet_dropped() - drops_before;
    let out = r.stop();
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let s = out.expect_summary();
    // Identity 1, total and per worker: every datagram in one outcome.
    assert_summary_consistent(&s);
    let t = &s["total"];
    let (rx, ovfl, tx) = (
        counter(t, "rx_packets"),
        counter(t, "rxq_overflow"),
        counter(t, "tx_packets"),
    );
    // Identity 2: every datagram offered was read or counted as dropped at
    // the socket (the calibration run's too), unless the host's input
    // backlog dropped it before any socket (softnet_stat), within that.
    let offered = u(&cal, "sent") + u(&run, "sent") + u(&run, "warmup_sent");
    assert!(
        rx + ovfl <= offered && rx + ovfl + backlog_drops >= offered,
        "[{backend}] offered {offered}, rx_packets {rx} + rxq_overflow {ovfl} = {} \
         (host backlog drops {backlog_drops}): {t}",
        rx + ovfl
    );
    // tx_packets includes the calibration run's replies.
    let answered_pps = tx.saturating_sub(u(&cal, "received")) as f64 / secs;
    let offered_pps = u(&run, "sent") as f64 / secs;
    eprintln!(
        "[{backend}] capacity {capacity}/s, offered {offered_pps:.0}/s ({:.1}x), answered \
         {answered_pps:.0}/s, rxq_overflow {ovfl}, RSS {rss_start} KiB -> {:?} KiB",
        offered_pps / capacity as f64,
        rss.last()
    );
    assert!(ovfl > 0, "[{backend}] not overloaded: {t}");
    // Memory: flat after the first second of load (buffers and histograms
    // are allocated up front); 1 MiB of slack for the allocator.
    let settled = rss[rss.len().min(4) - 1];
    let peak = *rss.iter().max().unwrap();
    assert!(
        peak <= settled + 1024,
        "[{backend}] RSS grew from {settled} KiB to {peak} KiB under load: {rss:?}"
    );
}
