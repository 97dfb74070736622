//! How workers wait. `--busy-poll`: workers that never sleep still answer
//! every datagram, and stop within a second of being asked (both backends).
//! `--coalesce-us`: uring only; the mmsg backend refuses it by name. (What
//! each buys is measured by perf/compare.sh.)

mod common;
use common::both_backends;

use std::{net::UdpSocket, time::Duration};

use common::run_to_exit;

use common::{assert_summary_consistent, counter, payload, recv_within, serve_command};

both_backends!(busy_poll_answers_and_stops_within_a_second);

/// The scheduler state (R, S, D, ...) of `pid`'s thread named `name`.
fn thread_state(pid: libc::pid_t, name: &str) -> Option<char> {
    let dir = format!("/proc/{pid}/task");
    for t in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (head, rest) = stat.rsplit_once(')')?;
        if head.split_once('(').map(|(_, n)| n) == Some(name) {
            return rest.split_whitespace().next()?.chars().next();
        }
    }
    None
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
    let Some(r) = common::start_cmd(backend, &mut cmd) else {
        return;
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
    // Idle, the worker still spins: whenever we look, it is running or
    // runnable (R), never asleep (S), even on a machine busy with other work.
    let samples: Vec<char> = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(10));
            thread_state(r.proc.pid(), "reflector-0").expect("a thread named reflector-0")
        })
        .collect();
    let running = samples.iter().filter(|&&c| c == 'R').count();
    assert!(
        running >= 18,
        "[{backend}] an idle --busy-poll worker was asleep: states {samples:?}"
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
    let Some(r) = common::start_cmd("uring", &mut cmd) else {
        return;
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
