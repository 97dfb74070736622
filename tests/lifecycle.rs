//! A process that dies well: every stop signal ends the run with the
//! summary, SIGUSR1 prints the summary so far and goes on, stdout that
//! fails or blocks is told on stderr with a failing status and never delays
//! a stop, a restart on the same port right after an exit always binds, and
//! a too short `--stats-interval` is refused in one line. Both backends.

mod common;
use common::both_backends;

use std::{
    fs::OpenOptions,
    io::{BufRead, BufReader, Read},
    net::UdpSocket,
    os::{fd::AsRawFd, unix::process::CommandExt},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    assert_summary_consistent, counter, recv_within, run_to_exit, serve_command, skip, Need,
    Reflector, Started, BIN,
};

const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// The promise: a stop takes at most a second (drain included); the slack
/// absorbs a busy CI machine.
const STOP_BUDGET: Duration = Duration::from_millis(1200);

both_backends!(
    hangup_quit_usr2_and_alarm_stop_with_the_summary,
    sigusr1_prints_the_summary_so_far_and_goes_on,
    a_summary_that_cannot_be_written_fails_the_run_in_one_line,
    a_blocked_stdout_does_not_delay_a_stop,
    a_restart_on_the_same_port_right_after_exit_always_binds,
);

fn start(backend: &str, args: &[&str]) -> Option<Reflector> {
    let mut cmd = serve_command(
        ["--backend", backend, "--json", "--workers", "1"]
            .iter()
            .chain(args),
    );
    common::start_cmd(backend, &mut cmd)
}

fn echo(c: &UdpSocket, data: &[u8]) {
    c.send(data).unwrap();
    let mut buf = [0u8; 256];
    let (n, _) = recv_within(c, &mut buf, REPLY_TIMEOUT).expect("a reply");
    assert_eq!(&buf[..n], data);
}

fn client(r: &Reflector) -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(r.addr()).unwrap();
    c
}

fn hangup_quit_usr2_and_alarm_stop_with_the_summary(backend: &'static str) {
    for (sig, name) in [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGALRM, "SIGALRM"),
    ] {
        let Some(mut r) = start(backend, &["--listen", "127.0.0.1:0"]) else {
            return;
        };
        let c = client(&r);
        for i in 0..3u8 {
            echo(&c, &[i; 8]);
        }
        let out = r.proc.signal_and_wait(sig, Duration::from_secs(5));
        assert_eq!(out.status.code(), Some(0), "{name}: {out:#?}");
        assert!(out.exited_after < STOP_BUDGET, "{name}: {out:#?}");
        let s = out.expect_summary();
        assert_summary_consistent(&s);
        assert_eq!(counter(&s["total"], "tx_packets"), 3, "{name}: {s}");
    }
}

fn sigusr1_prints_the_summary_so_far_and_goes_on(backend: &'static str) {
    let Some(mut r) = start(backend, &["--listen", "127.0.0.1:0"]) else {
        return;
    };
    let c = client(&r);
    for i in 0..3u8 {
        echo(&c, &[i; 8]);
    }
    // A worker publishes its counters right after its sendmmsg returns,
    // which may be after the client has the reply.
    std::thread::sleep(Duration::from_millis(50));
    r.proc.signal(libc::SIGUSR1);
    let line = r
        .proc
        .next_line(Duration::from_secs(5))
        .expect("a line after SIGUSR1");
    let so_far: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(so_far["event"], "summary_so_far", "{line}");
    assert_eq!(counter(&so_far["total"], "rx_packets"), 3, "{line}");
    assert_eq!(counter(&so_far["total"], "tx_packets"), 3, "{line}");
    assert_eq!(
        so_far["total"]["latency_us"]["samples"].as_u64(),
        Some(3),
        "the latency so far: {line}"
    );
    // It goes on answering.
    for i in 3..5u8 {
        echo(&c, &[i; 8]);
    }
    let out = r.stop();
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let s = out.expect_summary();
    assert_summary_consistent(&s);
    assert_eq!(counter(&s["total"], "tx_packets"), 5, "{s}");
}

/// Waits for `child` to exit within `timeout` (killed, by its pid, and a
/// panic if not); returns its status, stderr, and the time it took.
fn wait_child(mut child: Child, timeout: Duration) -> (std::process::ExitStatus, String, Duration) {
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {timeout:?} after it should have stopped");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = t0.elapsed();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status, err, took)
}

fn reflector_cmd(backend: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--backend", backend, "--json", "--workers", "1"])
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Checks the one stderr line and the failing status; `None` if the run
/// only failed because io_uring is refused here.
fn assert_output_failure(backend: &str, case: &str, status: std::process::ExitStatus, err: &str) {
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_ne!(
        status.code(),
        Some(0),
        "{case}: exit status 0; stderr {err:?}"
    );
    assert!(
        status.code().is_some(),
        "{case}: killed by a signal: {status:?}"
    );
    assert_eq!(
        lines.len(),
        1,
        "{case} [{backend}]: one line on stderr: {err:?}"
    );
    assert!(lines[0].contains("stdout"), "{case}: {err:?}");
}

fn uring_refused(backend: &str, err: &str) -> bool {
    if backend == "uring" && err.contains("io_uring unavailable") {
        skip(
            Need::Uring,
            format!("io_uring is refused here: {}", err.trim()),
        );
        return true;
    }
    false
}

fn a_summary_that_cannot_be_written_fails_the_run_in_one_line(backend: &'static str) {
    // stdout on /dev/full: every write fails with ENOSPC.
    let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
    let child = reflector_cmd(backend, &["--duration", "0.3"])
        .stdout(full)
        .spawn()
        .unwrap();
    let (status, err, _) = wait_child(child, Duration::from_secs(10));
    if uring_refused(backend, &err) {
        return;
    }
    assert_output_failure(backend, "/dev/full", status, &err);
    assert!(err.contains("summary"), "{err:?}");

    // stdout closed: refused at start (the summary could never be written,
    // and a socket would take descriptor 1).
    let mut cmd = reflector_cmd(backend, &["--duration", "0.3"]);
    cmd.stdout(Stdio::null());
    // SAFETY: close(2) in the child before exec; async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(1);
            Ok(())
        });
    }
    let (status, err, _) = wait_child(cmd.spawn().unwrap(), Duration::from_secs(10));
    assert_output_failure(backend, "closed stdout", status, &err);
    assert!(err.contains("closed"), "{err:?}");

    // `| head -1`: the reader goes away after the first line.
    let mut child = reflector_cmd(backend, &[])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    if first.is_empty() {
        let (_, err, _) = wait_child(child, Duration::from_secs(10));
        assert!(
            uring_refused(backend, &err),
            "no first line; stderr {err:?}"
        );
        return;
    }
    assert!(first.contains("listening"), "{first:?}");
    // SAFETY: kill(2) of our own unreaped child, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (status, err, _) = wait_child(child, Duration::from_secs(10));
    assert_output_failure(backend, "| head -1", status, &err);
}

fn a_blocked_stdout_does_not_delay_a_stop(backend: &'static str) {
    let mut child = reflector_cmd(backend, &["--stats-interval", "0.01"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    // A small pipe that nobody reads: interval lines fill it within 100 ms.
    // SAFETY: F_SETPIPE_SZ on our own end of the pipe.
    unsafe { libc::fcntl(out.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    std::thread::sleep(Duration::from_millis(800));
    if let Ok(Some(_)) = child.try_wait() {
        let (_, err, _) = wait_child(child, Duration::from_secs(1));
        assert!(uring_refused(backend, &err), "exited early: {err:?}");
        return;
    }
    // SAFETY: kill(2) of our own unreaped child, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (status, err, took) = wait_child(child, Duration::from_secs(10));
    drop(out);
    // Without the writer thread the stop never ends (the main thread waits
    // in write(2) forever); with it, about 250 ms after the drain. The
    // budget leaves room for a loaded machine.
    assert!(
        took < 2 * STOP_BUDGET,
        "the stop took {took:?} with stdout blocked"
    );
    assert_output_failure(backend, "blocked stdout", status, &err);
    assert!(err.contains("blocked"), "{err:?}");
}

fn a_restart_on_the_same_port_right_after_exit_always_binds(backend: &'static str) {
    let Some(r) = start(backend, &["--listen", "127.0.0.1:0"]) else {
        return;
    };
    let addr = r.addr();
    let listen = addr.to_string();
    assert_eq!(r.stop().status.code(), Some(0));
    for run in 0..20 {
        let mut cmd = serve_command([
            "--backend",
            backend,
            "--json",
            "--workers",
            "1",
            "--listen",
            &listen,
        ]);
        match Reflector::start(&mut cmd).expect("spawning udp-reflector") {
            Started::Listening(r) => {
                echo(&client(&r), &[run as u8; 16]);
                let out = r.stop();
                assert_eq!(out.status.code(), Some(0), "run {run}: {out:#?}");
            }
            Started::Exited(o) => {
                panic!("run {run}: {addr} could not be bound right after the last exit: {o:#?}")
            }
        }
    }
}

/// `--stats-interval` below 10 ms would print faster than anyone reads.
#[test]
fn a_stats_interval_below_10_ms_is_refused_in_one_line() {
    let out = run_to_exit(
        &mut serve_command(["--stats-interval", "1e-9", "--listen", "127.0.0.1:0"]),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{out:#?}");
    assert!(
        lines[0].contains("--stats-interval") && lines[0].contains("10 ms"),
        "{lines:?}"
    );
}
