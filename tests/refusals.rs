//! Configurations that can never answer are refused, and start-up errors
//! name their cause and the fix, each in one line on stderr with status 2.
//! Both backends (each flag is tried with `--backend uring` and `mmsg`).

mod common;

use std::{
    net::{SocketAddr, UdpSocket},
    os::unix::process::CommandExt,
    time::Duration,
};

use common::{
    recv_within, run_to_exit, serve_command, skip, Need, NetNs, Outcome, Reflector, Started,
};

const BACKENDS: [&str; 2] = ["uring", "mmsg"];

fn run(args: &[&str]) -> Outcome {
    run_to_exit(&mut serve_command(args), Duration::from_secs(10)).expect("spawning udp-reflector")
}

/// Status 2 and exactly one stderr line holding every one of `words`.
fn assert_one_line(out: &Outcome, words: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "one line: {out:#?}");
    for w in words {
        assert!(lines[0].contains(w), "{w:?} missing in {:?}", lines[0]);
    }
    assert!(out.stdout.is_empty(), "nothing on stdout: {out:#?}");
}

#[test]
fn configurations_that_can_never_answer_are_refused_saying_why() {
    for backend in BACKENDS {
        let b = ["--backend", backend];
        let cases: [(&[&str], &[&str]); 5] = [
            (
                &[
                    "--mode",
                    "stamp",
                    "--max-datagram",
                    "43",
                    "--listen",
                    "127.0.0.1:0",
                ],
                &["--max-datagram", "43", "44", "stamp"],
            ),
            (
                &[
                    "--mode",
                    "sockperf",
                    "--max-datagram",
                    "13",
                    "--listen",
                    "127.0.0.1:0",
                ],
                &["--max-datagram", "14", "sockperf"],
            ),
            (
                &["--rcvbuf", "0", "--listen", "127.0.0.1:0"],
                &["--rcvbuf", "0"],
            ),
            (
                &["--listen", "224.0.0.1:7007"],
                &["--listen", "224.0.0.1:7007", "multicast"],
            ),
            (&["--listen", "[ff02::1]:7007"], &["--listen", "multicast"]),
        ];
        for (args, words) in cases {
            let all: Vec<&str> = b.iter().chain(args).copied().collect();
            assert_one_line(&run(&all), words);
        }
    }
}

#[test]
fn link_local_addresses_need_a_scope_and_take_interface_names() {
    for backend in BACKENDS {
        let out = run(&["--backend", backend, "--listen", "[fe80::1]:7007"]);
        assert_one_line(&out, &["--listen", "link-local", "[fe80::1%eth0]:7007"]);
        let out = run(&["--backend", backend, "--listen", "[fe80::1%nosuch0]:7007"]);
        assert_one_line(&out, &["--listen", "nosuch0", "not a network interface"]);
    }
}

/// In a namespace of our own: `[fe80::1%urt0]:0` names the interface, and
/// the reflector listens and answers there.
#[test]
fn a_link_local_listener_named_by_interface_answers() {
    if !common::is_root() {
        skip(Need::Netns, "needs root for a network namespace");
        return;
    }
    let ns = match NetNs::create("ll") {
        Ok(ns) => ns,
        Err(e) => {
            skip(
                Need::Netns,
                format!("cannot create a network namespace: {e}"),
            );
            return;
        }
    };
    let setup = ns
        .ip(&[
            "link", "add", "urt0", "type", "veth", "peer", "name", "urt1",
        ])
        .and_then(|_| ns.ip(&["addr", "add", "fe80::1/64", "dev", "urt0", "nodad"]))
        .and_then(|_| ns.ip(&["link", "set", "urt1", "up"]))
        .and_then(|_| ns.ip(&["link", "set", "urt0", "up"]));
    if let Err(e) = setup {
        skip(Need::Netns, format!("cannot make a veth pair: {e}"));
        return;
    }
    for backend in BACKENDS {
        let mut cmd = serve_command([
            "--backend",
            backend,
            "--json",
            "--workers",
            "1",
            "--listen",
            "[fe80::1%urt0]:0",
        ]);
        ns.apply(&mut cmd).unwrap();
        let r = match Reflector::start(&mut cmd).unwrap() {
            Started::Listening(r) => r,
            Started::Exited(o)
                if backend == "uring" && o.stderr.contains("io_uring unavailable") =>
            {
                skip(Need::Uring, o.stderr.trim());
                continue;
            }
            Started::Exited(o) => panic!("[{backend}] did not listen: {o:#?}"),
        };
        let to = r.addr();
        let SocketAddr::V6(a) = to else {
            panic!("not IPv6: {to}")
        };
        assert_ne!(a.scope_id(), 0, "the interface became a scope id: {to}");
        let answered = std::thread::scope(|s| {
            s.spawn(|| {
                ns.enter_current_thread().unwrap();
                let c = UdpSocket::bind(SocketAddr::V6(std::net::SocketAddrV6::new(
                    *a.ip(),
                    0,
                    0,
                    a.scope_id(),
                )))
                .unwrap();
                c.send_to(b"link-local", to).unwrap();
                let mut buf = [0u8; 32];
                recv_within(&c, &mut buf, Duration::from_secs(2))
                    .map(|(n, from)| (buf[..n].to_vec(), from))
            })
            .join()
            .unwrap()
        });
        let out = r.stop();
        assert_eq!(out.status.code(), Some(0), "{out:#?}");
        assert_eq!(answered, Some((b"link-local".to_vec(), to)), "[{backend}]");
    }
}

/// A port below 1024 without privilege: the error says so and how to grant
/// it. As root, the child runs as nobody.
#[test]
fn a_privileged_port_without_privilege_says_how_to_grant_it() {
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    if start <= 100 {
        skip(
            Need::Host,
            format!("every port from {start} up is unprivileged here"),
        );
        return;
    }
    for backend in BACKENDS {
        let mut cmd = serve_command([
            "--backend",
            backend,
            "--registry",
            "off",
            "--listen",
            "127.0.0.1:99",
        ]);
        if common::is_root() {
            cmd.uid(65534).gid(65534);
        }
        let out = run_to_exit(&mut cmd, Duration::from_secs(10)).unwrap();
        if backend == "uring" && out.stderr.contains("io_uring unavailable") {
            skip(Need::Uring, out.stderr.trim());
            continue;
        }
        assert_one_line(
            &out,
            &[
                "127.0.0.1:99",
                "cap_net_bind_service",
                "setcap",
                &start.to_string(),
            ],
        );
    }
}

/// `ulimit -n 5`: one line about file descriptors, and no misleading
/// io_uring fallback line before it.
#[test]
fn too_few_file_descriptors_is_said_first_and_alone() {
    for backend in ["auto", "uring", "mmsg"] {
        let mut cmd = serve_command(["--backend", backend, "--listen", "127.0.0.1:0"]);
        // SAFETY: setrlimit(2) in the child before exec; async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let r = libc::rlimit {
                    rlim_cur: 5,
                    rlim_max: 5,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &r);
                Ok(())
            });
        }
        let out = run_to_exit(&mut cmd, Duration::from_secs(10)).unwrap();
        assert_one_line(&out, &["file descriptors", "ulimit -n", "5"]);
        assert!(!out.stderr.contains("io_uring"), "{out:#?}");
    }
}
