//! bench as a pipeline gate: `--max-loss` and `--max-p99` turn a run into
//! exit status 0 (within limits) or 1 (one line saying which limit and by
//! how much); a usage error stays 2.

mod common;
use common::both_backends;

use std::{net::UdpSocket, time::Duration};

use common::Outcome;

fn bench(args: &[&str]) -> Outcome {
    common::run_to_exit(&mut common::bench_command(args), Duration::from_secs(20))
        .expect("spawning bench")
}

/// A reflector on 127.0.0.1 with one worker; `None` when io_uring is refused.
fn reflector(backend: &str) -> Option<common::Reflector> {
    let mut cmd = common::serve_command([
        "--backend",
        backend,
        "--json",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
    ]);
    common::start_cmd(backend, &mut cmd)
}

both_backends!(within_limits_exits_0, a_p99_above_max_p99_exits_1);

fn within_limits_exits_0(backend: &str) {
    let Some(r) = reflector(backend) else { return };
    let target = r.addr().to_string();
    let out = bench(&[
        "--target",
        &target,
        "--duration",
        "0.3",
        "--flows",
        "1",
        "--window",
        "4",
        "--json",
        "--max-loss",
        "0.5",
        "--max-p99",
        "1000000",
    ]);
    r.stop();
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let j: serde_json::Value = serde_json::from_str(&out.stdout[0]).expect("bench JSON");
    assert!(j["received"].as_u64().unwrap() > 0, "{j}");
    assert!(!out.stderr.contains("FAILED"), "{}", out.stderr);
}

fn a_p99_above_max_p99_exits_1(backend: &str) {
    let Some(r) = reflector(backend) else { return };
    let target = r.addr().to_string();
    // No round trip on any host takes less than 0.001 us.
    let out = bench(&[
        "--target",
        &target,
        "--duration",
        "0.2",
        "--flows",
        "1",
        "--window",
        "4",
        "--json",
        "--max-p99",
        "0.001",
    ]);
    r.stop();
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    // The report is still printed in full.
    let j: serde_json::Value = serde_json::from_str(&out.stdout[0]).expect("bench JSON");
    let p99 = j["rtt_us"]["p99"].as_f64().expect("a p99");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", out.stderr);
    assert!(
        lines[0].contains("--max-p99 0.001 us by") && lines[0].contains(&format!("{p99:.1} us")),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains("--max-loss"), "{}", lines[0]);
}

#[test]
fn loss_above_max_loss_exits_1_saying_by_how_much() {
    // A port with nothing listening: every datagram is lost.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("127.0.0.1:{port}");
    let out = bench(&[
        "--target",
        &target,
        "--duration",
        "0.2",
        "--timeout",
        "0.05",
        "--flows",
        "1",
        "--rate",
        "1000",
        "--json",
        "--max-loss",
        "0.01",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    let j: serde_json::Value = serde_json::from_str(&out.stdout[0]).expect("bench JSON");
    let (sent, lost) = (j["sent"].as_u64().unwrap(), j["lost"].as_u64().unwrap());
    assert!(sent > 0 && lost == sent, "{j}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", out.stderr);
    assert!(
        lines[0].contains("loss ratio 1.000000")
            && lines[0].contains(&format!("({lost} of {sent} sent)"))
            && lines[0].contains("--max-loss 0.01 by 0.990000"),
        "{}",
        lines[0]
    );
    // The same run within a limit it keeps passes.
    let ok = bench(&[
        "--target",
        &target,
        "--duration",
        "0.1",
        "--timeout",
        "0.05",
        "--flows",
        "1",
        "--rate",
        "1000",
        "--json",
        "--max-loss",
        "1",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{ok:#?}");
}

#[test]
fn bad_limits_are_usage_errors_exiting_2() {
    for (flag, value, valid) in [
        ("--max-loss", "1.5", "0 to 1"),
        ("--max-loss", "-0.1", "0 to 1"),
        ("--max-loss", "lots", "0 to 1"),
        ("--max-p99", "0", "positive number of microseconds"),
        ("--max-p99", "soon", "positive number of microseconds"),
    ] {
        let out = bench(&["--target", "127.0.0.1:9", "--duration", "0.1", flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {out:#?}");
        assert!(
            out.stderr.contains(flag) && out.stderr.contains(valid),
            "{flag} {value}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "nothing was run: {:?}", out.stdout);
    }
}
