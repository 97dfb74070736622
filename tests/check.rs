//! `serve --check` (validates, binds nothing, prints the resolved
//! configuration, exits 0 or 2) and the default listeners on a host
//! without IPv6.

mod common;
use common::both_backends;

use std::{
    net::{SocketAddr, UdpSocket},
    process::Command,
    time::Duration,
};

use common::{refuse_syscall, refuse_syscall_with_arg0, serve_command, skip, Need, Outcome};
use serde_json::Value;

both_backends!(
    check_prints_the_configuration_and_binds_nothing,
    without_ipv6_the_default_serves_ipv4_and_says_so_once,
    without_ipv6_an_explicit_ipv6_listener_is_an_error,
);

fn run(cmd: &mut Command) -> Outcome {
    common::run_to_exit(cmd, Duration::from_secs(10)).expect("spawning udp-reflector")
}

/// The one JSON line of `--check --json`.
fn check_json(out: &Outcome) -> Value {
    assert_eq!(out.stdout.len(), 1, "{out:#?}");
    let j: Value = serde_json::from_str(&out.stdout[0]).expect("check prints JSON");
    assert_eq!(j["event"], "check", "{j}");
    j
}

fn uring_refused_here(backend: &str, out: &Outcome) -> bool {
    if backend == "uring"
        && out.status.code() == Some(2)
        && out.stderr.contains("io_uring unavailable")
    {
        skip(
            Need::Uring,
            format!("io_uring is refused here: {}", out.stderr.trim()),
        );
        return true;
    }
    false
}

fn check_prints_the_configuration_and_binds_nothing(backend: &str) {
    // The port is held by a plain socket: serve would fail to claim it, so
    // an exit 0 shows that --check bound nothing.
    let held = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let listen_stamp = format!("{addr},mode=stamp");
    let mut cmd = serve_command([
        "--check",
        "--json",
        "--backend",
        backend,
        "--listen",
        &listen_stamp,
        "--workers",
        "1",
        "--batch",
        "16",
        "--rcvbuf",
        "1000000",
        "--duration",
        "3",
    ]);
    let out = run(&mut cmd);
    if uring_refused_here(backend, &out) {
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let j = check_json(&out);
    assert_eq!(
        j["listen"],
        serde_json::json!([{"addr": addr, "mode": "stamp"}]),
        "{j}"
    );
    assert_eq!(j["workers"], 1, "{j}");
    assert_eq!(j["backend"], backend, "{j}");
    assert_eq!(j["batch"], 16, "{j}");
    assert_eq!(j["rcvbuf"], 1_000_000, "{j}");
    assert_eq!(j["duration_s"], 3.0, "{j}");
    // And the port is still ours alone.
    let again = serve_command([
        "--json",
        "--backend",
        backend,
        "--listen",
        &addr,
        "--workers",
        "1",
    ])
    .output()
    .unwrap();
    assert_eq!(
        again.status.code(),
        Some(2),
        "serve must find the port held"
    );

    // The human form says the same.
    let out = run(&mut serve_command([
        "--check",
        "--backend",
        backend,
        "--listen",
        &addr,
    ]));
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let text = out.stdout.join("\n");
    assert!(
        text.contains("configuration OK") && text.contains(&format!("listen        {addr} (echo)")),
        "{text}"
    );
    assert!(text.contains(&format!("backend       {backend}")), "{text}");
}

#[test]
fn check_exits_2_naming_the_bad_flag() {
    for (args, named) in [
        (vec!["--workers", "0"], "--workers"),
        (vec!["--workers", "100000"], "--workers"),
        (vec!["--cpus", "100000"], "cpu 100000"),
        (
            vec!["--listen", "127.0.0.1:9", "--listen", "127.0.0.1:9"],
            "given twice",
        ),
        (vec!["--listen", "nowhere"], "ADDR:PORT"),
        (vec!["--batch", "0"], "--batch"),
    ] {
        let mut cmd = serve_command(["--check"].iter().chain(&args));
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:#?}");
        assert!(out.stderr.contains(named), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {:?}", out.stdout);
    }
}

#[test]
fn check_with_io_uring_refused_resolves_auto_to_mmsg_and_refuses_uring() {
    let mut cmd = serve_command(["--check", "--json", "--listen", "127.0.0.1:0"]);
    refuse_syscall(&mut cmd, libc::SYS_io_uring_setup, libc::EPERM);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let j = check_json(&out);
    assert_eq!(j["backend"], "mmsg", "{j}");
    assert_eq!(j["backend_asked"], "auto", "{j}");
    assert!(
        j["backend_fallback"].as_str().unwrap().contains("seccomp"),
        "{j}"
    );

    let mut cmd = serve_command(["--check", "--backend", "uring", "--listen", "127.0.0.1:0"]);
    refuse_syscall(&mut cmd, libc::SYS_io_uring_setup, libc::EPERM);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(
        out.stderr.contains("io_uring unavailable"),
        "{}",
        out.stderr
    );
}

/// What a kernel booted with `ipv6.disable=1` does: no AF_INET6 sockets.
/// (A network namespace with `disable_ipv6=1` does not: its AF_INET6
/// sockets still open and bind.)
fn without_ipv6(cmd: &mut Command) {
    refuse_syscall_with_arg0(
        cmd,
        libc::SYS_socket,
        libc::AF_INET6 as u32,
        libc::EAFNOSUPPORT,
    );
}

fn ipv6_lines(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("IPv6 is unavailable"))
        .count()
}

fn without_ipv6_the_default_serves_ipv4_and_says_so_once(backend: &str) {
    // The resolved configuration, anywhere.
    let mut cmd = serve_command(["--check", "--json", "--backend", backend, "--mode", "stamp"]);
    without_ipv6(&mut cmd);
    let out = run(&mut cmd);
    if uring_refused_here(backend, &out) {
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    assert_eq!(
        check_json(&out)["listen"],
        serde_json::json!([{"addr": "0.0.0.0:862", "mode": "stamp"}])
    );
    assert_eq!(ipv6_lines(&out.stderr), 1, "{}", out.stderr);
    // With IPv6, both.
    let out = run(&mut serve_command([
        "--check",
        "--json",
        "--backend",
        backend,
    ]));
    assert_eq!(
        check_json(&out)["listen"].as_array().unwrap().len(),
        2,
        "{out:#?}"
    );
    assert_eq!(ipv6_lines(&out.stderr), 0, "{}", out.stderr);

    // Serving for real on the default port needs a namespace of its own.
    if !common::is_root() {
        skip(
            Need::Netns,
            "needs root for a network namespace to serve the default port in",
        );
        return;
    }
    let ns = common::NetNs::create(&format!("v6-{backend}")).expect("a network namespace");
    let mut cmd = serve_command(["--json", "--backend", backend, "--workers", "1"]);
    ns.apply(&mut cmd).unwrap();
    without_ipv6(&mut cmd);
    let r = match common::Reflector::start(&mut cmd).unwrap() {
        common::Started::Listening(r) => r,
        common::Started::Exited(o) => panic!("did not start without IPv6: {o:#?}"),
    };
    assert_eq!(r.addrs, vec!["0.0.0.0:7007".parse::<SocketAddr>().unwrap()]);
    let echoed = std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread().unwrap();
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            c.send_to(b"v4 only", "127.0.0.1:7007").unwrap();
            let mut buf = [0u8; 64];
            let n = c.recv(&mut buf).expect("an echo");
            buf[..n].to_vec()
        })
        .join()
        .unwrap()
    });
    assert_eq!(echoed, b"v4 only");
    let out = r.stop();
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    assert_eq!(ipv6_lines(&out.stderr), 1, "{}", out.stderr);
    assert_eq!(
        common::counter(&out.expect_summary()["total"], "tx_packets"),
        1
    );
}

fn without_ipv6_an_explicit_ipv6_listener_is_an_error(backend: &str) {
    let mut cmd = serve_command(["--json", "--backend", backend, "--listen", "[::1]:0"]);
    without_ipv6(&mut cmd);
    let out = run(&mut cmd);
    if uring_refused_here(backend, &out) {
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(
        out.stderr.contains("[::1]:0"),
        "names the address: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert_eq!(ipv6_lines(&out.stderr), 0, "{}", out.stderr);
}
