//! How workers wait. `--busy-poll`: workers that never sleep still answer
//! every datagram, and stop within a second of being asked (both backends).
//! `--coalesce-us`: uring only; the mmsg backend refuses it by name. (What
//! each buys is measured by perf/compare.sh.)

mod common;

use std::{net::UdpSocket, time::Duration};

use common::run_to_exit;

use common::{
    assert_summary_consistent, counter, payload, recv_within, serve_command, skip, Need, Reflector,
    Started,
};

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn uring() {
                super::$name("uring")
            }
            #[test]
            fn mmsg() {
                super::$name("mmsg")
            }
        }
    )*};
}

both_backends!(busy_poll_answers_and_stops_within_a_second);

/// The threads of `pid` and the CPU time (utime + stime, clock ticks) each
/// has used, by name.
fn thread_ticks(pid: libc::pid_t) -> Vec<(String, u64)> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for t in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let name = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map_or(String::new(), |(n, _)| n.to_string());
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        // After the name: state is field 0, utime 11, stime 12.
        let ticks = fields
            .get(11)
            .and_then(|u| u.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
        out.push((name, ticks));
    }
    out
}

fn busy_poll_answers_and_stops_within_a_second(backend: &'static str) {
    let mut cmd = serve_command([
        "--backend",
        backend,
        "--json",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--busy-poll",
    ]);
    let r = match Reflector::start(&mut cmd).expect("spawning udp-reflector") {
        Started::Listening(r) => r,
        Started::Exited(o)
            if backend == "uring"
                && o.status.code() == Some(2)
                && o.stderr.contains("io_uring unavailable") =>
        {
            return skip(
                Need::Uring,
                format!("io_uring is refused on this host: {}", o.stderr.trim()),
            );
        }
        Started::Exited(o) => panic!("udp-reflector exited before listening: {o:#?}"),
    };
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(r.addr()).unwrap();
    let mut buf = vec![0u8; 2048];
    for i in 0..50u64 {
        let d = payload(64 + i as usize, i);
        sock.send(&d).unwrap();
        let (n, _) = recv_within(&sock, &mut buf, Duration::from_secs(2))
            .unwrap_or_else(|| panic!("[{backend}] no reply to datagram {i}"));
        assert_eq!(buf[..n], d[..], "[{backend}] reply {i}");
    }
    // Idle, the worker still spins: it has used about all of a core over
    // 300 ms (a blocked worker would use none). Generous bounds: the machine
    // may be shared.
    let worker = |pid| {
        thread_ticks(pid)
            .into_iter()
            .find(|(n, _)| n.starts_with("reflector-0"))
            .map(|(_, t)| t)
            .expect("a thread named reflector-0")
    };
    let before = worker(r.proc.pid());
    std::thread::sleep(Duration::from_millis(300));
    let spun = worker(r.proc.pid()) - before;
    assert!(
        spun >= 3,
        "[{backend}] an idle --busy-poll worker used only {spun} ticks in 300 ms: it slept"
    );

    let out = r.stop();
    assert_eq!(out.status.code(), Some(0), "[{backend}] {out:#?}");
    assert!(
        out.exited_after < Duration::from_secs(1),
        "[{backend}] took {:?} to stop",
        out.exited_after
    );
    // The only line allowed: socket busy polling refused without CAP_NET_ADMIN.
    for line in out.stderr_lines() {
        assert!(
            line.contains("SO_BUSY_POLL refused"),
            "[{backend}] stderr: {line}"
        );
    }
    let s = out.expect_summary();
    assert_summary_consistent(&s);
    assert_eq!(counter(&s["total"], "tx_packets"), 50, "{s}");
}

/// `--coalesce-us 50` on uring: every datagram is still answered (the wait
/// returns after at most 50 µs with what has arrived), and it stops promptly.
#[test]
fn coalesce_us_still_answers_every_datagram_on_uring() {
    let mut cmd = serve_command([
        "--backend",
        "uring",
        "--json",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--coalesce-us",
        "50",
    ]);
    let r = match Reflector::start(&mut cmd).expect("spawning udp-reflector") {
        Started::Listening(r) => r,
        Started::Exited(o) if o.stderr.contains("io_uring unavailable") => {
            return skip(
                Need::Uring,
                format!("io_uring is refused on this host: {}", o.stderr.trim()),
            );
        }
        Started::Exited(o) => panic!("udp-reflector exited before listening: {o:#?}"),
    };
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(r.addr()).unwrap();
    let mut buf = vec![0u8; 2048];
    for i in 0..20u64 {
        let d = payload(100, i);
        sock.send(&d).unwrap();
        let (n, _) = recv_within(&sock, &mut buf, Duration::from_secs(2))
            .unwrap_or_else(|| panic!("no reply to datagram {i}"));
        assert_eq!(buf[..n], d[..], "reply {i}");
    }
    let out = r.stop();
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    assert!(
        out.exited_after < Duration::from_secs(1),
        "{:?}",
        out.exited_after
    );
    let s = out.expect_summary();
    assert_summary_consistent(&s);
    assert_eq!(counter(&s["total"], "tx_packets"), 20, "{s}");
}

/// `--coalesce-us` is io_uring's min-wait; asked of the mmsg backend it is
/// a usage error that names the flag, and nothing is bound.
#[test]
fn coalesce_us_with_the_mmsg_backend_is_refused_by_name() {
    let mut cmd = serve_command([
        "--backend",
        "mmsg",
        "--listen",
        "127.0.0.1:0",
        "--coalesce-us",
        "50",
    ]);
    let out = run_to_exit(&mut cmd, Duration::from_secs(5)).expect("spawning udp-reflector");
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(
        out.stderr.contains("--coalesce-us") && out.stderr.contains("uring"),
        "{}",
        out.stderr
    );
}
