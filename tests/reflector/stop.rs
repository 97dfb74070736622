//! Stopping: by --duration, by a signal under load, and an idle worker
//! that sleeps until asked.

use super::*;

both_backends!(
    duration_ends_the_run_by_itself,
    an_idle_worker_sleeps_until_asked_to_stop,
    sigterm_under_load_stops_within_a_second,
);

/// `--duration` ends the run by itself: summary, exit 0, on time.
fn duration_ends_the_run_by_itself(backend: &'static str) {
    let Some(mut r) = start(
        backend,
        &[
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--duration",
            "0.3",
        ],
    ) else {
        return;
    };
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(r.addr()).unwrap();
    round_trip(&c, b"before the end", r.addr()).unwrap_or_else(|e| panic!("[{backend}] {e}"));
    let out = r.proc.wait(Duration::from_secs(3));
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    assert!(out.stderr_lines().is_empty(), "stderr: {:?}", out.stderr);
    let s = out.expect_summary();
    assert_summary_consistent(&s);
    let elapsed = s["elapsed_s"].as_f64().unwrap_or(-1.0);
    assert!(
        (0.3..1.0).contains(&elapsed),
        "[{backend}] elapsed_s {elapsed} for --duration 0.3: {s}"
    );
    assert_eq!(counter(&s["total"], "tx_packets"), 1, "{s}");
}

/// Context switches of the thread named `name` in process `pid`.
fn thread_switches(pid: libc::pid_t, name: &str) -> Option<u64> {
    for dir in threads(pid) {
        if std::fs::read_to_string(dir.join("comm")).ok()?.trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        return Some(
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
                .sum(),
        );
    }
    None
}

/// An idle worker blocks until there is traffic or a stop: no timer wakes
/// it (each timed wait would arm a timer, and on a VM that is a trap to the
/// hypervisor), and the stop still reaches it at once.
fn an_idle_worker_sleeps_until_asked_to_stop(backend: &'static str) {
    let Some(r) = start(backend, &["--listen", "127.0.0.1:0", "--workers", "1"]) else {
        return;
    };
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(r.addr()).unwrap();
    round_trip(&c, b"wake once", r.addr()).unwrap_or_else(|e| panic!("[{backend}] {e}"));
    let pid = r.proc.pid();
    let before = thread_switches(pid, "reflector-0").expect("worker thread reflector-0");
    thread::sleep(Duration::from_millis(1000));
    let after = thread_switches(pid, "reflector-0").expect("worker thread reflector-0");
    assert!(
        after - before <= 2,
        "[{backend}] an idle worker woke {} times in a second",
        after - before
    );
    let started = Instant::now();
    let s = stop_and_summarise(r);
    assert!(
        started.elapsed() < STOP_BUDGET,
        "[{backend}] idle worker took {:?} to stop",
        started.elapsed()
    );
    assert_eq!(counter(&s["total"], "tx_packets"), 1, "{s}");
}

fn sigterm_under_load_stops_within_a_second(backend: &'static str) {
    stop_under_load(backend, libc::SIGTERM);
}

#[test]
fn sigint_under_load_stops_within_a_second() {
    stop_under_load("auto", libc::SIGINT);
}

fn stop_under_load(backend: &str, sig: libc::c_int) {
    let Some(mut r) = start(backend, &["--listen", "127.0.0.1:0", "--workers", "1"]) else {
        return;
    };
    let target = r.addr();
    let stop = AtomicBool::new(false);
    let (out, sent): (Outcome, u64) = thread::scope(|s| {
        let sender = s.spawn(|| {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let data = payload(256, 5);
            let started = Instant::now();
            let mut sent = 0u64;
            // Bounded: stops when told, after 2 s, or after 5 M datagrams.
            while !stop.load(Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(2)
                && sent < 5_000_000
            {
                if sock.send_to(&data, target).is_ok() {
                    sent += 1;
                }
            }
            sent
        });
        thread::sleep(Duration::from_millis(300));
        let out = r.proc.signal_and_wait(sig, Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        (out, sender.join().unwrap())
    });
    let name = if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    assert_eq!(
        out.status.code(),
        Some(0),
        "[{backend}] exit after {name}: {out:#?}"
    );
    assert!(
        out.exited_after <= STOP_BUDGET,
        "[{backend}] exited {:?} after {name}; the promise is within 1 s",
        out.exited_after
    );
    let s = out.expect_summary();
    assert_summary_consistent(&s);
    let t = &s["total"];
    let rx = counter(t, "rx_packets");
    assert!(rx > 0, "[{backend}] no traffic seen under load: {t}");
    assert!(
        rx + counter(t, "rxq_overflow") <= sent,
        "[{backend}] more received than {sent} sent: {t}"
    );
    eprintln!(
        "[{backend}] {name}: exited {:?} after the signal; {rx} of {sent} datagrams received",
        out.exited_after
    );
}
