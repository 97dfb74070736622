//! End-to-end tests of `udp-reflector serve`: the binary is run as a user
//! would run it, driven over loopback (127.0.0.0/8, ::1, a second local
//! address of this host) or, as root, inside a network namespace of the
//! test's own with documentation addresses, and judged by what comes back
//! on the wire and by its final JSON summary.
//!
//! Every reflector-behaviour test runs for both backends: `NAME::uring` and
//! `NAME::mmsg`. Every load loop is bounded in packets and in time.

mod common;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use common::{
    assert_summary_consistent, both_backends, counter, payload, recv_gro, recv_within,
    refuse_syscall, run_to_exit, send_while_stopped, serve_command, skip, softnet_dropped, start,
    start_cmd, stop_and_summarise, threads, Need, Outcome, Reflector, Started, REPLY_TIMEOUT,
};

/// How long we listen to be sure that no reply comes.
const SILENCE: Duration = Duration::from_millis(300);
/// The promise: SIGINT/SIGTERM stops the reflector within 1 s. The slack
/// absorbs this test's own polling and a busy CI scheduler, not a design
/// that needs more than a second.
const STOP_BUDGET: Duration = Duration::from_millis(1200);

both_backends!(
    echo_every_size_up_to_max_datagram,
    replies_leave_from_the_v4_address_asked,
    replies_leave_from_the_v6_address_asked,
    replies_leave_from_the_address_asked_in_a_netns,
    two_workers_answer_every_flow_and_share_them,
    incoming_cpu_keeps_each_datagram_on_the_cpu_that_processed_it,
    every_datagram_is_counted_exactly_once,
    overflow_of_a_tiny_rcvbuf_is_counted_exactly,
    ring_stalls_are_waits_not_losses,
    duration_ends_the_run_by_itself,
    an_idle_worker_sleeps_until_asked_to_stop,
    sigterm_under_load_stops_within_a_second,
    replies_to_one_peer_leave_as_one_gso_train,
    no_gso_sends_one_datagram_per_message,
    a_route_that_refuses_gso_trains_gets_the_datagrams_one_by_one,
);

/// Sends `data` on a connected socket and checks the reply byte for byte and
/// its source; the error says what went wrong.
fn round_trip(sock: &UdpSocket, data: &[u8], expect_from: SocketAddr) -> Result<(), String> {
    let mut buf = vec![0u8; 65536];
    sock.send(data)
        .map_err(|e| format!("send to {expect_from}: {e}"))?;
    let (n, from) = recv_within(sock, &mut buf, REPLY_TIMEOUT).ok_or_else(|| {
        format!(
            "no reply within {REPLY_TIMEOUT:?} to a {}-byte datagram sent from {} to {expect_from} \
             (a connected socket drops replies from any other source address)",
            data.len(),
            sock.local_addr().map_or("?".into(), |a| a.to_string())
        )
    })?;
    if from != expect_from {
        return Err(format!("reply came from {from}, expected {expect_from}"));
    }
    if buf[..n] != *data {
        return Err(format!(
            "reply of {n} bytes differs from the {}-byte request",
            data.len()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 1. Echo, byte for byte, of every size the buffer holds; one more is
//    counted as truncated and never echoed.

fn echo_every_size_up_to_max_datagram(backend: &'static str) {
    // Two reflectors at once: the default buffer and a small one.
    let default = thread::spawn(move || echo_sizes(backend, None, &[0, 1, 64, 1472, 9000, 9216]));
    let small = thread::spawn(move || echo_sizes(backend, Some(512), &[0, 1, 64, 511, 512]));
    let results = [default.join(), small.join()];
    for r in results {
        if let Err(e) = r {
            std::panic::resume_unwind(e);
        }
    }
}

fn echo_sizes(backend: &str, max_datagram: Option<usize>, sizes: &[usize]) {
    let max_arg = max_datagram.map(|m| m.to_string());
    let mut args = vec!["--listen", "127.0.0.1:0", "--workers", "1"];
    if let Some(m) = &max_arg {
        args.extend(["--max-datagram", m.as_str()]);
    }
    let Some(r) = start(backend, &args) else {
        return;
    };
    let max = max_datagram.unwrap_or(9216);
    assert_eq!(
        sizes.last(),
        Some(&max),
        "the largest size tested is the buffer's"
    );
    let ctx = format!("[{backend}, --max-datagram {max}]");

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(r.addr()).unwrap();
    for (i, &n) in sizes.iter().enumerate() {
        round_trip(&client, &payload(n, i as u64 + 1), r.addr())
            .unwrap_or_else(|e| panic!("{ctx} echo of {n} bytes: {e}"));
    }

    // One byte more than the buffer holds: counted, not echoed (not even cut).
    client.send(&payload(max + 1, 99)).unwrap();
    let mut buf = vec![0u8; 65536];
    if let Some((n, _)) = recv_within(&client, &mut buf, SILENCE) {
        panic!("{ctx} a {}-byte datagram was answered with {n} bytes; it must be counted as truncated and not echoed", max + 1);
    }
    // Still answering, and nothing late from the oversized one.
    let after = payload(7, 1234);
    round_trip(&client, &after, r.addr())
        .unwrap_or_else(|e| panic!("{ctx} after the oversized datagram: {e}"));

    let s = stop_and_summarise(r);
    let t = &s["total"];
    let echoed = sizes.len() as u64 + 1;
    let echoed_bytes = sizes.iter().sum::<usize>() as u64 + after.len() as u64;
    assert_eq!(counter(t, "truncated"), 1, "{ctx} {t}");
    assert_eq!(counter(t, "rx_packets"), echoed + 1, "{ctx} {t}");
    assert_eq!(counter(t, "tx_packets"), echoed, "{ctx} {t}");
    assert_eq!(counter(t, "tx_bytes"), echoed_bytes, "{ctx} {t}");
    assert_eq!(
        counter(t, "rx_bytes"),
        echoed_bytes + max as u64 + 1,
        "{ctx} rx_bytes must count the truncated datagram at its full length: {t}"
    );
}

// ---------------------------------------------------------------------------
// 2. Replies leave from the address the request was sent to, on wildcard
//    listeners. Clients are connected sockets: they drop datagrams from any
//    other source, so a reply received proves its source.

fn replies_leave_from_the_v4_address_asked(backend: &'static str) {
    let Some(r) = start(backend, &["--listen", "0.0.0.0:0", "--workers", "1"]) else {
        return;
    };
    let port = r.addr().port();
    let dsts = [
        [127, 0, 0, 1],
        [127, 0, 0, 2],
        [127, 0, 0, 53],
        [127, 1, 2, 3],
    ];
    let mut failures = Vec::new();
    for (i, d) in dsts.iter().enumerate() {
        let dst = SocketAddr::from((Ipv4Addr::from(*d), port));
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.connect(dst).unwrap();
        if let Err(e) = round_trip(&c, &payload(100, i as u64), dst) {
            failures.push(e);
        }
    }
    let s = stop_and_summarise(r);
    assert!(
        failures.is_empty(),
        "[{backend}] replies not from the address asked: {failures:#?}"
    );
    assert_eq!(counter(&s["total"], "tx_packets"), dsts.len() as u64, "{s}");
    assert_eq!(counter(&s["total"], "tx_errors"), 0, "{s}");
}

/// A global (non-link-local) IPv6 address of this host other than ::1 that
/// the kernel delivers locally (`ip -6 route get` says `local`): datagrams
/// to it never leave the host.
fn second_local_v6() -> Result<Ipv6Addr, String> {
    let out = common::ip(&["-6", "-o", "addr", "show", "scope", "global"])?;
    for line in out.lines() {
        if line.contains("tentative") || line.contains("dadfailed") || line.contains("deprecated") {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(cidr) = words.find(|w| *w == "inet6").and_then(|_| words.next()) else {
            continue;
        };
        let Ok(addr) = cidr.split('/').next().unwrap_or("").parse::<Ipv6Addr>() else {
            continue;
        };
        // Outside namespaces the suite sends only to addresses set aside for
        // tests: a second local address must be in 2001:db8::/32.
        if addr.is_loopback() || addr.segments()[..2] != [0x2001, 0x0db8] {
            continue;
        }
        let route = common::ip(&["-6", "route", "get", &addr.to_string()])?;
        if route.trim_start().starts_with("local ") {
            return Ok(addr);
        }
    }
    Err("this host has no second local IPv6 address in 2001:db8::/32 besides ::1 (`ip -6 addr`); the netns test covers two IPv6 addresses".into())
}

fn replies_leave_from_the_v6_address_asked(backend: &'static str) {
    if UdpSocket::bind("[::1]:0").is_err() {
        skip(Need::Ipv6, "IPv6 loopback (::1) is not available");
        return;
    }
    let Some(r) = start(backend, &["--listen", "[::]:0", "--workers", "1"]) else {
        return;
    };
    let port = r.addr().port();
    let mut failures = Vec::new();
    let mut sent = 0u64;
    let mut skipped = None;
    let lo = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let c = UdpSocket::bind("[::1]:0").unwrap();
    c.connect(lo).unwrap();
    sent += 1;
    if let Err(e) = round_trip(&c, &payload(200, 6), lo) {
        failures.push(e);
    }
    match second_local_v6() {
        Ok(addr) => {
            let dst = SocketAddr::from((addr, port));
            let c = UdpSocket::bind("[::1]:0").unwrap();
            c.connect(dst).unwrap();
            sent += 1;
            if let Err(e) = round_trip(&c, &payload(300, 7), dst) {
                failures.push(e);
            }
        }
        Err(reason) => skipped = Some(reason),
    }
    let s = stop_and_summarise(r);
    assert!(
        failures.is_empty(),
        "[{backend}] IPv6 replies not from the address asked: {failures:#?}"
    );
    assert_eq!(counter(&s["total"], "tx_packets"), sent, "{s}");
    if let Some(reason) = skipped {
        skip(Need::Host, format!("checked ::1 only; {reason}"));
    }
}

/// A network namespace of this test's own, named after `tag`; `None`, with
/// the reason printed, where this host cannot make one (not root, no `ip`).
fn own_netns(tag: &str) -> Option<common::NetNs> {
    if !common::is_root() {
        skip(Need::Netns, "needs root to create a network namespace");
        return None;
    }
    if let Err(e) = common::ip(&["-V"]) {
        skip(Need::Netns, format!("no usable `ip` command: {e}"));
        return None;
    }
    common::NetNs::create(tag)
        .map_err(|e| {
            skip(
                Need::Netns,
                format!("cannot create a network namespace here: {e}"),
            )
        })
        .ok()
}

fn replies_leave_from_the_address_asked_in_a_netns(backend: &'static str) {
    let Some(ns) = own_netns(backend) else {
        return;
    };
    // One interface carrying two addresses of each family: a dummy if this
    // kernel has it, else a veth pair with both ends in the namespace.
    if let Err(dummy) = ns.ip(&["link", "add", "urt0", "type", "dummy"]) {
        let veth = ns
            .ip(&[
                "link", "add", "urt0", "type", "veth", "peer", "name", "urt1",
            ])
            .and_then(|_| ns.ip(&["link", "set", "urt1", "up"]));
        if let Err(veth) = veth {
            skip(
                Need::Netns,
                format!("neither a dummy nor a veth interface can be made: {dummy}; {veth}"),
            );
            return;
        }
    }
    for a in ["198.51.100.1/24", "198.51.100.2/24"] {
        ns.ip(&["addr", "add", a, "dev", "urt0"]).unwrap();
    }
    for a in ["2001:db8::1/64", "2001:db8::2/64"] {
        ns.ip(&["addr", "add", a, "dev", "urt0", "nodad"]).unwrap();
    }
    ns.ip(&["link", "set", "urt0", "up"]).unwrap();

    let mut cmd = serve_command([
        "--backend",
        backend,
        "--json",
        "--listen",
        "0.0.0.0:0",
        "--listen",
        "[::]:0",
        "--workers",
        "1",
    ]);
    ns.apply(&mut cmd).expect("opening the namespace");
    let Some(r) = start_cmd(backend, &mut cmd) else {
        return;
    };
    let (p4, p6) = (r.addrs[0].port(), r.addrs[1].port());

    // The client runs on a thread of its own moved into the namespace.
    let pairs: Vec<(IpAddr, IpAddr, u16)> = vec![
        (
            "198.51.100.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
            p4,
        ),
        (
            "198.51.100.2".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
            p4,
        ),
        (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            p6,
        ),
        (
            "2001:db8::2".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            p6,
        ),
    ];
    let failures: Vec<String> = thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread().expect("setns into our namespace");
            let mut failures = Vec::new();
            for (i, &(src, dst, port)) in pairs.iter().enumerate() {
                let dst = SocketAddr::new(dst, port);
                let c = UdpSocket::bind(SocketAddr::new(src, 0)).unwrap();
                c.connect(dst).unwrap();
                if let Err(e) = round_trip(&c, &payload(64 + i, i as u64), dst) {
                    failures.push(e);
                }
            }
            failures
        })
        .join()
        .expect("client thread")
    });
    let s = stop_and_summarise(r);
    assert!(
        failures.is_empty(),
        "[{backend}] in netns {}: {failures:#?}",
        ns.name
    );
    assert_eq!(
        counter(&s["total"], "tx_packets"),
        pairs.len() as u64,
        "{s}"
    );
    assert_eq!(counter(&s["total"], "tx_errors"), 0, "{s}");
}

// ---------------------------------------------------------------------------
// 3. Two workers: SO_REUSEPORT spreads 64 flows over both, and every flow
//    is answered.

fn two_workers_answer_every_flow_and_share_them(backend: &'static str) {
    if common::usable_cpus() < 2 {
        skip(Need::Cpus, "needs 2 usable CPUs for 2 workers");
        return;
    }
    const FLOWS: usize = 64;
    const PER_FLOW: usize = 4;
    let Some(r) = start(backend, &["--listen", "127.0.0.1:0", "--workers", "2"]) else {
        return;
    };
    let flows: Vec<UdpSocket> = (0..FLOWS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.connect(r.addr()).unwrap();
            s
        })
        .collect();
    let sent = |f: usize, k: usize| payload(16 + k, (f * PER_FLOW + k) as u64 + 1);
    for k in 0..PER_FLOW {
        for (f, s) in flows.iter().enumerate() {
            s.send(&sent(f, k)).unwrap();
        }
    }
    let mut missing = Vec::new();
    let mut buf = [0u8; 2048];
    for (f, s) in flows.iter().enumerate() {
        let mut want: Vec<Vec<u8>> = (0..PER_FLOW).map(|k| sent(f, k)).collect();
        while !want.is_empty() {
            match recv_within(s, &mut buf, REPLY_TIMEOUT) {
                Some((n, from)) => {
                    assert_eq!(from, r.addr());
                    let i = want
                        .iter()
                        .position(|w| *w == buf[..n])
                        .unwrap_or_else(|| panic!("flow {f}: a reply that matches no request"));
                    want.swap_remove(i);
                }
                None => {
                    missing.push((f, want.len()));
                    break;
                }
            }
        }
    }
    let s = stop_and_summarise(r);
    assert!(
        missing.is_empty(),
        "[{backend}] (flow, replies missing): {missing:?}"
    );
    let workers = s["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{s}");
    assert_ne!(
        workers[0]["cpu"], workers[1]["cpu"],
        "two workers on one cpu: {s}"
    );
    let per_worker: Vec<u64> = workers.iter().map(|w| counter(w, "rx_packets")).collect();
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "[{backend}] {FLOWS} flows but a worker got none (rx per worker {per_worker:?}): {s}"
    );
    let total = (FLOWS * PER_FLOW) as u64;
    assert_eq!(counter(&s["total"], "rx_packets"), total, "{s}");
    assert_eq!(counter(&s["total"], "tx_packets"), total, "{s}");
}

/// With `--incoming-cpu`, SO_INCOMING_CPU overrides the flow hash: on
/// loopback the kernel processes a datagram on the sender's CPU, so a client
/// pinned to one worker's CPU reaches that worker only, whatever its flows.
fn incoming_cpu_keeps_each_datagram_on_the_cpu_that_processed_it(backend: &'static str) {
    if common::usable_cpus() < 2 {
        skip(Need::Cpus, "needs 2 usable CPUs for 2 workers");
        return;
    }
    const FLOWS: usize = 64;
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--incoming-cpu",
    ];
    let Some(r) = start(backend, &args) else {
        return;
    };
    let target = r.addr();
    let cpus: Vec<usize> = r.listening["cpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap() as usize)
        .collect();
    // One pinned client per worker CPU, one after the other, each waiting
    // for all its replies. Unequal counts per CPU: a flow hash spreading
    // them could not give each worker exactly its CPU's share.
    let per_flow = |i: usize| 3 - 2 * (i % 2);
    for (i, &cpu) in cpus.iter().enumerate() {
        let per = per_flow(i);
        let answered = std::thread::spawn(move || {
            assert!(core_affinity::set_for_current(core_affinity::CoreId {
                id: cpu
            }));
            let flows: Vec<UdpSocket> = (0..FLOWS)
                .map(|_| {
                    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                    s.connect(target).unwrap();
                    s
                })
                .collect();
            let mut buf = [0u8; 64];
            let mut answered = 0;
            for s in &flows {
                for k in 0..per {
                    s.send(&[k as u8; 16]).unwrap();
                }
                for _ in 0..per {
                    answered += usize::from(recv_within(s, &mut buf, REPLY_TIMEOUT).is_some());
                }
            }
            answered
        })
        .join()
        .unwrap();
        assert_eq!(answered, FLOWS * per, "[{backend}] client on cpu {cpu}");
    }
    let s = stop_and_summarise(r);
    for w in s["workers"].as_array().unwrap() {
        let i = cpus
            .iter()
            .position(|&c| c as u64 == w["cpu"].as_u64().unwrap())
            .unwrap();
        assert_eq!(
            counter(w, "rx_packets"),
            (FLOWS * per_flow(i)) as u64,
            "[{backend}] each worker gets exactly the datagrams sent from its cpu: {s}"
        );
    }
}

// ---------------------------------------------------------------------------
// 4. Counting: paced traffic is counted exactly; a flood into a tiny
//    receive buffer shows its losses exactly.

fn every_datagram_is_counted_exactly_once(backend: &'static str) {
    const N: usize = 2000;
    const BURST: usize = 20;
    let Some(r) = start(backend, &["--listen", "127.0.0.1:0", "--workers", "1"]) else {
        return;
    };
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(r.addr()).unwrap();
    let size = |i: usize| (i * 37) % 1473;
    let mut buf = [0u8; 2048];
    let mut bytes = 0u64;
    let mut lost = 0usize;
    let deadline = Instant::now() + Duration::from_secs(20);
    for burst in 0..N / BURST {
        let mut want: Vec<Vec<u8>> = (0..BURST)
            .map(|k| payload(size(burst * BURST + k), (burst * BURST + k) as u64))
            .collect();
        for w in &want {
            c.send(w).unwrap();
            bytes += w.len() as u64;
        }
        while !want.is_empty() {
            match recv_within(&c, &mut buf, REPLY_TIMEOUT) {
                Some((n, _)) => {
                    let i = want.iter().position(|w| *w == buf[..n]).unwrap_or_else(|| {
                        panic!("[{backend}] a {n}-byte reply that matches no request")
                    });
                    want.swap_remove(i);
                }
                None => {
                    lost += want.len();
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "[{backend}] 2000 paced round trips took over 20 s"
        );
    }
    let s = stop_and_summarise(r);
    let t = &s["total"];
    assert_eq!(lost, 0, "[{backend}] {lost} replies never came: {t}");
    assert_eq!(counter(t, "rx_packets"), N as u64, "{t}");
    assert_eq!(counter(t, "tx_packets"), N as u64, "{t}");
    assert_eq!(counter(t, "rx_bytes"), bytes, "{t}");
    assert_eq!(counter(t, "tx_bytes"), bytes, "{t}");
    for zero in ["rxq_overflow", "tx_dropped", "tx_errors", "truncated"] {
        assert_eq!(counter(t, zero), 0, "{zero}: {t}");
    }
    assert_eq!(
        t["latency_us"]["samples"].as_u64(),
        Some(N as u64),
        "one latency sample per reply sent: {t}"
    );
}

/// Sends `per_sender` 32-byte datagrams to `target` from each of `senders`
/// sockets (one thread each), as fast as they go, never reading replies;
/// at most 10 s. Returns the number of successful sends and the sockets
/// (kept open by the caller until the reflector has stopped).
fn flood(target: SocketAddr, senders: usize, per_sender: usize) -> (u64, Vec<UdpSocket>) {
    thread::scope(|s| {
        let handles: Vec<_> = (0..senders)
            .map(|i| {
                s.spawn(move || {
                    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                    let data = payload(32, i as u64);
                    let deadline = Instant::now() + Duration::from_secs(10);
                    let mut ok = 0u64;
                    for _ in 0..per_sender {
                        if Instant::now() > deadline {
                            break;
                        }
                        if sock.send_to(&data, target).is_ok_and(|n| n == data.len()) {
                            ok += 1;
                        }
                    }
                    (ok, sock)
                })
            })
            .collect();
        let mut sockets = Vec::with_capacity(senders);
        let mut sent = 0;
        for h in handles {
            let (ok, sock) = h.join().unwrap();
            sent += ok;
            sockets.push(sock);
        }
        (sent, sockets)
    })
}

fn overflow_of_a_tiny_rcvbuf_is_counted_exactly(backend: &'static str) {
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 12_500;
    let Some(r) = start(
        backend,
        &[
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--rcvbuf",
            "4096",
        ],
    ) else {
        return;
    };
    let target = r.addr();
    let backlog_drops_before = softnet_dropped();
    let (sent, _sockets) = flood(target, SENDERS, PER_SENDER);
    // Let the reflector empty its queue, then stop it.
    thread::sleep(Duration::from_millis(500));
    let backlog_drops = softnet_dropped() - backlog_drops_before;
    let s = stop_and_summarise(r);
    let t = &s["total"];
    let (rx, ovfl) = (counter(t, "rx_packets"), counter(t, "rxq_overflow"));
    assert!(
        ovfl > 0,
        "[{backend}] {sent} datagrams into a 4 KiB receive buffer and rxq_overflow == 0: {t}"
    );
    // Exact, unless the host's input backlog itself dropped some (counted in
    // /proc/net/softnet_stat, before any socket): then within that many.
    assert!(
        rx + ovfl <= sent && rx + ovfl + backlog_drops >= sent,
        "[{backend}] sent {sent} (all sends succeeded), but rx_packets {rx} + rxq_overflow {ovfl} = {} \
         (host backlog drops meanwhile: {backlog_drops}): {t}",
        rx + ovfl
    );
}

/// A buffer ring of 2 entries runs dry at once under a flood: the
/// multishot receive ends with ENOBUFS (a `ring_stalls`), the datagrams wait
/// in the socket queue, and the reflector must re-arm and go on answering.
fn ring_stalls_are_waits_not_losses(backend: &'static str) {
    let Some(r) = start(
        backend,
        &[
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--buffers",
            "2",
        ],
    ) else {
        return;
    };
    let target = r.addr();
    let backlog_drops_before = softnet_dropped();
    let (sent, _sockets) = flood(target, 4, 5_000);
    thread::sleep(Duration::from_millis(300));
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(target).unwrap();
    const AFTER: u64 = 50;
    for i in 0..AFTER {
        round_trip(&c, &payload(100, 1000 + i), target).unwrap_or_else(|e| {
            panic!("[{backend}] round trip {i} after the flood over 2 buffers: {e}")
        });
    }
    let backlog_drops = softnet_dropped() - backlog_drops_before;
    let s = stop_and_summarise(r);
    let t = &s["total"];
    let (rx, ovfl) = (counter(t, "rx_packets"), counter(t, "rxq_overflow"));
    if backend == "uring" {
        assert!(
            counter(t, "ring_stalls") > 0,
            "[{backend}] 2 buffers, {sent} datagrams, no stall: {t}"
        );
    }
    let all = sent + AFTER;
    assert!(
        rx + ovfl <= all && rx + ovfl + backlog_drops >= all,
        "[{backend}] sent {all}, but rx_packets {rx} + rxq_overflow {ovfl} = {} \
         (host backlog drops meanwhile: {backlog_drops}): {t}",
        rx + ovfl
    );
}

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

const TRAIN: usize = 8;
const SEGMENT: usize = 200;

/// TRAIN distinct datagrams of `size` bytes.
fn burst(size: usize) -> Vec<Vec<u8>> {
    (0..TRAIN as u64).map(|i| payload(size, i)).collect()
}

/// A client connected to `r`, with UDP_GRO on if `gro`, that has had one
/// answer already (so the reflector is serving).
fn ready_client(backend: &str, r: &Reflector, gro: bool) -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(r.addr()).unwrap();
    if gro {
        common::set_udp_gro(&sock);
    }
    round_trip(&sock, b"ready", r.addr()).unwrap_or_else(|e| panic!("[{backend}] {e}"));
    sock
}

/// Reads `burst`'s replies on `sock`: one datagram each, in order, byte for
/// byte.
fn expect_each_in_order(backend: &str, sock: &UdpSocket, burst: &[Vec<u8>]) {
    let mut buf = vec![0u8; 65536];
    for (i, d) in burst.iter().enumerate() {
        let (n, _) = recv_within(sock, &mut buf, REPLY_TIMEOUT)
            .unwrap_or_else(|| panic!("[{backend}] reply {i} of the burst missing"));
        assert_eq!(buf[..n], d[..], "[{backend}] reply {i} of the burst");
    }
}

/// Two peers' bursts of datagrams of one size, interleaved, that the
/// reflector reads in one batch: each peer's replies come back as one GSO
/// train. A client with UDP_GRO on reads its whole train at once; a plain
/// client reads the very same datagrams one by one, in order, byte for
/// byte.
fn replies_to_one_peer_leave_as_one_gso_train(backend: &'static str) {
    let Some(r) = start(backend, &["--listen", "127.0.0.1:0", "--workers", "1"]) else {
        return;
    };
    let burst = burst(SEGMENT);
    let mut buf = vec![0u8; 65536];
    let gro = ready_client(backend, &r, true);
    let plain = ready_client(backend, &r, false);

    let sends: Vec<(&UdpSocket, &[u8])> = burst
        .iter()
        .flat_map(|d| [(&gro, &d[..]), (&plain, &d[..])])
        .collect();
    send_while_stopped(&r, &sends);
    let (n, segment) = recv_gro(&gro, &mut buf).expect("a reply to the burst");
    assert_eq!(
        (n, segment),
        (TRAIN * SEGMENT, Some(SEGMENT as u16)),
        "[{backend}] the burst's replies did not arrive as one GSO train"
    );
    assert_eq!(buf[..n], burst.concat(), "[{backend}] train content");
    expect_each_in_order(backend, &plain, &burst);

    let s = stop_and_summarise(r);
    let sent = 2 * (TRAIN as u64 + 1);
    assert_eq!(counter(&s["total"], "tx_packets"), sent, "{s}");
    assert_eq!(
        counter(&s["total"], "tx_bytes"),
        2 * (TRAIN * SEGMENT + 5) as u64,
        "{s}"
    );
}

/// A route whose MTU is below the segment size refuses a GSO train
/// (EINVAL): the reflector says so once, sends the same replies one by one
/// (the kernel fragments each), and loses or double-counts none of them.
/// Runs on the loopback of a network namespace of the test's own, whose
/// MTU the test lowers to 1280.
fn a_route_that_refuses_gso_trains_gets_the_datagrams_one_by_one(backend: &'static str) {
    let Some(ns) = own_netns(&format!("gso-{backend}")) else {
        return;
    };
    ns.ip(&["link", "set", "lo", "mtu", "1280"]).unwrap();
    let mut cmd = serve_command([
        "--backend",
        backend,
        "--json",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
    ]);
    ns.apply(&mut cmd).expect("opening the namespace");
    let Some(r) = start_cmd(backend, &mut cmd) else {
        return;
    };
    let target = r.addr();
    let sock = thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread().expect("entering the namespace");
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.connect(target).unwrap();
            sock
        })
        .join()
        .unwrap()
    });
    round_trip(&sock, b"ready", target).unwrap_or_else(|e| panic!("[{backend}] {e}"));
    // 1400-byte datagrams: above what one 1280-byte frame holds.
    let burst = burst(1400);
    let sends: Vec<(&UdpSocket, &[u8])> = burst.iter().map(|d| (&sock, &d[..])).collect();
    send_while_stopped(&r, &sends);
    expect_each_in_order(backend, &sock, &burst);

    let out = r.stop();
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let refusals: Vec<&str> = out
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("refused a UDP GSO reply"))
        .collect();
    assert_eq!(
        refusals.len(),
        1,
        "[{backend}] expected one line about the refused train: {:?}",
        out.stderr
    );
    let s = out.expect_summary();
    assert_summary_consistent(&s);
    let t = &s["total"];
    assert_eq!(counter(t, "tx_packets"), TRAIN as u64 + 1, "{s}");
    assert_eq!(counter(t, "tx_errors"), 0, "{s}");
}

/// `--no-gso`: the same burst comes back as separate datagrams even to a
/// client that would accept a train.
fn no_gso_sends_one_datagram_per_message(backend: &'static str) {
    let Some(r) = start(
        backend,
        &["--listen", "127.0.0.1:0", "--workers", "1", "--no-gso"],
    ) else {
        return;
    };
    let burst = burst(SEGMENT);
    let mut buf = vec![0u8; 65536];
    let gro = ready_client(backend, &r, true);
    let sends: Vec<(&UdpSocket, &[u8])> = burst.iter().map(|d| (&gro, &d[..])).collect();
    send_while_stopped(&r, &sends);
    for (i, d) in burst.iter().enumerate() {
        let (n, segment) = recv_gro(&gro, &mut buf)
            .unwrap_or_else(|| panic!("[{backend}] reply {i} of the burst missing"));
        assert_eq!(segment, None, "[{backend}] reply {i} came as a GSO train");
        assert_eq!(buf[..n], d[..], "[{backend}] reply {i} of the burst");
    }
    let s = stop_and_summarise(r);
    assert_eq!(counter(&s["total"], "tx_packets"), TRAIN as u64 + 1, "{s}");
}

// ---------------------------------------------------------------------------
// 5. A stop signal under load: summary printed, exit 0, within a second.

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

// ---------------------------------------------------------------------------
// 6. io_uring refused by seccomp (EPERM), as Docker's default profile does.

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

// ---------------------------------------------------------------------------
// 7. Errors a user can meet: exit 2, one line "udp-reflector: ..." naming
//    the culprit, no panic, no backtrace, no listening line.

/// Checks the error contract; the error describes every breach.
fn user_error(out: &Outcome, culprits: &[&str]) -> Result<(), String> {
    let mut breaches = Vec::new();
    if out.status.code() != Some(2) {
        breaches.push(format!("exit status {:?}, expected 2", out.status.code()));
    }
    let lines = out.stderr_lines();
    if lines.len() != 1 || !lines[0].starts_with("udp-reflector: ") {
        breaches.push(format!(
            "stderr is not one line \"udp-reflector: ...\": {lines:?}"
        ));
    }
    for c in culprits {
        if !out.stderr.contains(c) {
            breaches.push(format!("stderr does not name {c:?}"));
        }
    }
    if out.stderr.contains("panicked") || out.stderr.contains("backtrace") {
        breaches.push("a panic or a backtrace on stderr".into());
    }
    if !out.stdout.is_empty() {
        breaches.push(format!("stdout not empty: {:?}", out.stdout));
    }
    if breaches.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n    full stderr: {:?}",
            breaches.join("; "),
            out.stderr
        ))
    }
}

fn run_args(args: &[&str]) -> Outcome {
    run_to_exit(&mut serve_command(args), Duration::from_secs(10)).expect("spawning udp-reflector")
}

#[test]
fn port_in_use_is_refused_naming_the_address() {
    let mut failures = Vec::new();
    // Held by an ordinary socket, v4 and v6.
    let mut holders = vec![UdpSocket::bind("127.0.0.1:0").unwrap()];
    holders.extend(UdpSocket::bind("[::1]:0"));
    for h in &holders {
        let addr = h.local_addr().unwrap().to_string();
        let out = run_args(&[
            "--listen",
            &addr,
            "--backend",
            "mmsg",
            "--workers",
            "1",
            "--duration",
            "1",
        ]);
        if let Err(e) = user_error(&out, &[&addr]) {
            failures.push(format!("{addr} held by a plain socket: {e}"));
        }
    }
    // Held by another reflector (an SO_REUSEPORT group must not be joined
    // silently: the two would split the traffic).
    let mut cmd = serve_command([
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "mmsg",
        "--workers",
        "1",
        "--json",
    ]);
    if let Some(first) = start_cmd("mmsg", &mut cmd) {
        let addr = first.addr().to_string();
        let out = run_args(&[
            "--listen",
            &addr,
            "--backend",
            "mmsg",
            "--workers",
            "1",
            "--duration",
            "1",
        ]);
        if let Err(e) = user_error(&out, &[&addr]) {
            failures.push(format!("{addr} held by another reflector: {e}"));
        }
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.connect(first.addr()).unwrap();
        round_trip(&c, b"still mine", first.addr())
            .unwrap_or_else(|e| panic!("first reflector: {e}"));
        stop_and_summarise(first);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn address_not_local_is_refused_naming_it() {
    // Documentation addresses (TEST-NET-1..3): only ever bound, never sent
    // to. Take the first that is really not assigned here.
    let Some(addr) = ["192.0.2.1:7007", "198.51.100.1:7007", "203.0.113.1:7007"].into_iter().find(|a| {
        matches!(UdpSocket::bind(a), Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable)
    }) else {
        skip(Need::Host, "every documentation address tried is bindable here (assigned, or ip_nonlocal_bind)");
        return;
    };
    let out = run_args(&[
        "--listen",
        addr,
        "--backend",
        "mmsg",
        "--workers",
        "1",
        "--duration",
        "1",
    ]);
    if let Err(e) = user_error(&out, &[addr]) {
        panic!("{addr}: {e}");
    }
}

#[test]
fn missing_cpu_is_refused_naming_it() {
    let mut failures = Vec::new();
    for (args, culprit) in [
        (["--cpus", "4096"], "4096"),
        (["--workers", "4096"], "--workers"),
    ] {
        let mut all = vec![
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "mmsg",
            "--duration",
            "1",
        ];
        all.extend(args);
        if let Err(e) = user_error(&run_args(&all), &[culprit]) {
            failures.push(format!("{args:?}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn bad_flag_values_are_refused_in_one_line_naming_the_flag() {
    // Each case would otherwise run: `--duration 1` bounds a wrongly
    // accepted one (it then exits 0 and the breach says so).
    let cases: [(&[&str], &str); 10] = [
        (&["--batch", "0"], "--batch"),
        (&["--listen", "nonsense"], "--listen"),
        (&["--backend", "bogus"], "--backend"),
        (&["--max-datagram", "0"], "--max-datagram"),
        (&["--buffers", "3"], "--buffers"),
        (&["--cpus", "x"], "--cpus"),
        (&["--rcvbuf", "lots"], "--rcvbuf"),
        (&["--stats-interval", "soon"], "--stats-interval"),
        (&["--workers", "0"], "--workers"),
        (&["--listen", "127.0.0.1:0,mode=nope"], "--listen"),
    ];
    let outcomes: Vec<(String, Result<(), String>)> = thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(args, flag)| {
                s.spawn(move || {
                    let mut all = vec!["--duration", "1"];
                    if *flag != "--listen" {
                        all.extend(["--listen", "127.0.0.1:0"]);
                    }
                    all.extend(args.iter());
                    (format!("{args:?}"), user_error(&run_args(&all), &[flag]))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failures: Vec<String> = outcomes
        .into_iter()
        .filter_map(|(case, r)| r.err().map(|e| format!("{case}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} bad flag values break the error contract (exit 2, ONE stderr line \
         \"udp-reflector: ...\" naming the flag). Values rejected by clap's own parsers are \
         printed in clap's multi-line format (\"error: ...\", usage tip) without the \
         \"udp-reflector: \" prefix:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
