//! io_uring refused by seccomp (EPERM), as Docker's default profile does.

use super::*;

fn seccomp_child(backend: &str) -> Command {
    let mut cmd = serve_command([
        "--backend",
        backend,
        "--json",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
    ]);
    refuse_syscall(&mut cmd, libc::SYS_io_uring_setup, libc::EPERM);
    cmd
}

fn assert_says_why_uring_is_unavailable(line: &str) {
    for needle in ["io_uring unavailable", "seccomp", "Operation not permitted"] {
        assert!(
            line.contains(needle),
            "stderr line lacks {needle:?}: {line:?}"
        );
    }
}

#[test]
fn auto_falls_back_to_mmsg_when_seccomp_refuses_io_uring() {
    let r = match Reflector::start(&mut seccomp_child("auto")) {
        Ok(Started::Listening(r)) => r,
        Ok(Started::Exited(o)) => panic!("--backend auto did not start under seccomp: {o:#?}"),
        Err(e) => {
            skip(
                Need::Seccomp,
                format!("cannot install a seccomp filter here: {e}"),
            );
            return;
        }
    };
    assert_eq!(r.listening["backend"], "mmsg", "{}", r.listening);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(r.addr()).unwrap();
    round_trip(&c, &payload(1000, 3), r.addr()).unwrap_or_else(|e| panic!("fallback backend: {e}"));
    let out = r.stop();
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let s = out.expect_summary();
    assert_summary_consistent(&s);
    assert_eq!(s["backend"], "mmsg", "{s}");
    assert_eq!(counter(&s["total"], "tx_packets"), 1, "{s}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "exactly one line saying why: {lines:?}");
    assert_says_why_uring_is_unavailable(lines[0]);
    assert!(
        lines[0].contains("recvmmsg/sendmmsg"),
        "says what it uses instead: {:?}",
        lines[0]
    );
}

#[test]
fn uring_refused_by_seccomp_is_an_error_that_says_why() {
    let out = match run_to_exit(&mut seccomp_child("uring"), Duration::from_secs(10)) {
        Ok(o) => o,
        Err(e) => {
            skip(
                Need::Seccomp,
                format!("cannot install a seccomp filter here: {e}"),
            );
            return;
        }
    };
    if let Err(e) = user_error(&out, &["io_uring unavailable"]) {
        panic!("{e}");
    }
    assert_says_why_uring_is_unavailable(out.stderr_lines()[0]);
}
