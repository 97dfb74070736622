//! Trains in, trains out: with UDP_GRO (the default) a GSO train a client
//! sends arrives in one read and goes back as one UDP_SEGMENT train of the
//! same segment size; the client receives exactly the datagrams it sent, in
//! order, and every counter counts datagrams. Both backends.

mod common;
use common::both_backends;

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    process::Command,
    time::Duration,
};

use common::{
    assert_summary_consistent, counter, payload, recv_gro, recv_within, serve_command, Reflector,
    REPLY_TIMEOUT,
};
use serde_json::Value;

both_backends!(
    a_gso_train_comes_back_as_the_same_datagrams_in_order,
    trains_and_single_datagrams_from_several_peers_each_come_back_in_order,
    a_train_of_datagrams_longer_than_max_datagram_is_truncated_per_datagram,
    sockperf_mode_answers_each_datagram_of_a_train,
    stamp_mode_answers_each_datagram_of_a_train,
    bench_reads_trains_of_echoes_with_or_without_gro,
    bench_busy_poll_ping_pong_completes,
    no_gro_receives_datagram_by_datagram,
);

fn start(backend: &str, args: &[&str]) -> Option<Reflector> {
    let mut cmd: Command = serve_command(
        [
            "--backend",
            backend,
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
        ]
        .iter()
        .chain(args),
    );
    common::start_cmd(backend, &mut cmd)
}

fn stop_and_summarise(r: Reflector) -> Value {
    let out = r.stop();
    assert_eq!(out.status.code(), Some(0), "exit after SIGTERM: {out:#?}");
    assert!(
        out.stderr_lines().is_empty(),
        "unexpected stderr: {:?}",
        out.stderr
    );
    let s = out.expect_summary();
    assert_summary_consistent(&s);
    s
}

fn setsockopt_int(sock: &UdpSocket, level: i32, name: i32, value: i32) -> std::io::Result<()> {
    // SAFETY: passes a live c_int of the stated size to setsockopt.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A client connected to the reflector; with `gro`, it reads trains whole.
/// UDP GSO and GRO are in every kernel the reflector supports (>= 5.0):
/// their absence is a failure, not a skip.
fn client(target: SocketAddr, gro: bool) -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(target).unwrap();
    setsockopt_int(&sock, libc::SOL_UDP, libc::UDP_SEGMENT, 0).expect("UDP_SEGMENT");
    if gro {
        setsockopt_int(&sock, libc::SOL_UDP, libc::UDP_GRO, 1).expect("UDP_GRO");
    }
    sock
}

/// Sends `datagrams` (all of one size but the last, which may be shorter)
/// as one GSO train: one send, which the kernel keeps whole on loopback up
/// to a socket with UDP_GRO.
fn send_train(sock: &UdpSocket, datagrams: &[Vec<u8>]) {
    let segment = datagrams[0].len();
    setsockopt_int(sock, libc::SOL_UDP, libc::UDP_SEGMENT, segment as i32).unwrap();
    sock.send(&datagrams.concat()).unwrap();
    setsockopt_int(sock, libc::SOL_UDP, libc::UDP_SEGMENT, 0).unwrap();
}

/// `count` distinct datagrams of `size` bytes, the last one `last` bytes.
fn train(count: usize, size: usize, last: usize, seed: u64) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let len = if i + 1 == count { last } else { size };
            payload(len, seed * 1000 + i as u64)
        })
        .collect()
}

/// Reads `expect` on a plain client: one datagram each, in order, byte for byte.
fn expect_each_in_order(backend: &str, sock: &UdpSocket, expect: &[Vec<u8>]) {
    let mut buf = vec![0u8; 65536];
    for (i, d) in expect.iter().enumerate() {
        let (n, _) = recv_within(sock, &mut buf, REPLY_TIMEOUT)
            .unwrap_or_else(|| panic!("[{backend}] reply {i} of {} missing", expect.len()));
        assert_eq!(buf[..n], d[..], "[{backend}] reply {i}");
    }
}

/// Reads on a GRO client until `expect`'s datagrams are all in, splitting
/// each train at its segment size; returns the segment size of each read.
fn expect_trains_in_order(backend: &str, sock: &UdpSocket, expect: &[Vec<u8>]) -> Vec<Option<u16>> {
    let mut buf = vec![0u8; 65536];
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut reads = Vec::new();
    while got.len() < expect.len() {
        let (n, segment) = recv_gro(sock, &mut buf)
            .unwrap_or_else(|| panic!("[{backend}] {} of {} replies in", got.len(), expect.len()));
        reads.push(segment);
        match segment {
            Some(g) => got.extend(buf[..n].chunks(usize::from(g)).map(<[u8]>::to_vec)),
            None => got.push(buf[..n].to_vec()),
        }
    }
    assert_eq!(
        got, expect,
        "[{backend}] the replies differ from the requests"
    );
    reads
}

/// A train from a GSO client comes back as one train of the same segment
/// size to a GRO client, and as the same datagrams one by one, in order, to
/// a plain client; every counter counts datagrams.
fn a_gso_train_comes_back_as_the_same_datagrams_in_order(backend: &'static str) {
    let Some(r) = start(backend, &[]) else {
        return;
    };
    let (gro, plain) = (client(r.addr(), true), client(r.addr(), false));
    let a = train(8, 200, 120, 1);
    let b = train(5, 64, 64, 2);
    send_train(&gro, &a);
    send_train(&plain, &b);
    let mut buf = vec![0u8; 65536];
    let (n, segment) = recv_gro(&gro, &mut buf).expect("a reply to the train");
    assert_eq!(
        (n, segment),
        (7 * 200 + 120, Some(200)),
        "[{backend}] the reply did not come back as one train of the same segments"
    );
    assert_eq!(buf[..n], a.concat(), "[{backend}] train content");
    expect_each_in_order(backend, &plain, &b);

    let s = stop_and_summarise(r);
    let t = &s["total"];
    assert_eq!(counter(t, "rx_packets"), 8 + 5, "{s}");
    assert_eq!(counter(t, "tx_packets"), 8 + 5, "{s}");
    assert_eq!(counter(t, "rx_trains"), 2, "{s}");
    assert_eq!(counter(t, "rx_bytes"), 7 * 200 + 120 + 5 * 64, "{s}");
    assert_eq!(counter(t, "tx_bytes"), 7 * 200 + 120 + 5 * 64, "{s}");
}

/// Three peers at once: two send trains of different segment sizes, one
/// sends single datagrams; each receives exactly what it sent, in order.
fn trains_and_single_datagrams_from_several_peers_each_come_back_in_order(backend: &'static str) {
    let Some(r) = start(backend, &[]) else {
        return;
    };
    let (a, b, c) = (
        client(r.addr(), true),
        client(r.addr(), false),
        client(r.addr(), true),
    );
    let mut sent_a = Vec::new();
    let mut sent_b = Vec::new();
    let mut sent_c = Vec::new();
    for round in 0..4u64 {
        let ta = train(10, 100, 37, 10 + round);
        send_train(&a, &ta);
        sent_a.extend(ta);
        let single = payload(80 + round as usize, 20 + round);
        b.send(&single).unwrap();
        sent_b.push(single);
        let tc = train(3, 1000, 1000, 30 + round);
        send_train(&c, &tc);
        sent_c.extend(tc);
        let single = payload(40, 40 + round);
        c.send(&single).unwrap();
        sent_c.push(single);
    }
    expect_trains_in_order(backend, &a, &sent_a);
    expect_each_in_order(backend, &b, &sent_b);
    expect_trains_in_order(backend, &c, &sent_c);

    let s = stop_and_summarise(r);
    let t = &s["total"];
    let all = (sent_a.len() + sent_b.len() + sent_c.len()) as u64;
    assert_eq!(counter(t, "rx_packets"), all, "{s}");
    assert_eq!(counter(t, "tx_packets"), all, "{s}");
    assert_eq!(counter(t, "rxq_overflow"), 0, "{s}");
    assert_eq!(counter(t, "rx_trains"), 8, "{s}");
}

/// `--max-datagram 100`: a train of 150-byte datagrams is one read of 900
/// bytes, but each of its 6 datagrams is longer than allowed: 6 truncated,
/// none answered. A train of 100-byte datagrams is answered.
fn a_train_of_datagrams_longer_than_max_datagram_is_truncated_per_datagram(backend: &'static str) {
    let Some(r) = start(backend, &["--max-datagram", "100"]) else {
        return;
    };
    let sock = client(r.addr(), false);
    send_train(&sock, &train(6, 150, 150, 3));
    let ok = train(4, 100, 20, 4);
    send_train(&sock, &ok);
    // The first reply is the second train's: the first got none.
    expect_each_in_order(backend, &sock, &ok);
    let mut buf = [0u8; 2048];
    assert!(
        recv_within(&sock, &mut buf, Duration::from_millis(200)).is_none(),
        "[{backend}] a datagram longer than --max-datagram was answered"
    );
    let s = stop_and_summarise(r);
    let t = &s["total"];
    assert_eq!(counter(t, "rx_packets"), 10, "{s}");
    assert_eq!(counter(t, "truncated"), 6, "{s}");
    assert_eq!(counter(t, "tx_packets"), 4, "{s}");
    assert_eq!(counter(t, "rx_bytes"), 900 + 320, "{s}");
}

/// A sockperf frame: u64 sequence, u16 flags, u32 total length, padding.
fn sockperf_frame(seq: u64, flags: u16, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..8].copy_from_slice(&seq.to_be_bytes());
    f[8..10].copy_from_slice(&flags.to_be_bytes());
    f[10..14].copy_from_slice(&(len as u32).to_be_bytes());
    f
}

/// sockperf mode handles each datagram of a train as sockperf's server
/// would: pings are answered (CLIENT cleared), a warm-up frame is not.
fn sockperf_mode_answers_each_datagram_of_a_train(backend: &'static str) {
    let Some(r) = start(backend, &["--mode", "sockperf"]) else {
        return;
    };
    let sock = client(r.addr(), false);
    const CLIENT: u16 = 0x1;
    const PONG: u16 = 0x2;
    const WARMUP: u16 = 0x4;
    let frames: Vec<Vec<u8>> = (0..6u64)
        .map(|i| {
            let warmup = if i == 2 { WARMUP } else { 0 };
            sockperf_frame(i, CLIENT | PONG | warmup, 64)
        })
        .collect();
    send_train(&sock, &frames);
    let expect: Vec<Vec<u8>> = frames
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, f)| {
            let mut reply = f.clone();
            reply[9] &= !(CLIENT as u8);
            reply
        })
        .collect();
    expect_each_in_order(backend, &sock, &expect);
    let s = stop_and_summarise(r);
    let t = &s["total"];
    assert_eq!(counter(t, "rx_packets"), 6, "{s}");
    assert_eq!(counter(t, "tx_packets"), 5, "{s}");
    assert_eq!(counter(t, "no_reply_warmup"), 1, "{s}");
    assert_eq!(counter(t, "rx_trains"), 1, "{s}");
}

/// `--no-gro`: the kernel cuts a client's train into datagrams before the
/// reflector's socket; it reads them one by one (no train), and the client
/// still gets each back, in order.
fn no_gro_receives_datagram_by_datagram(backend: &'static str) {
    let Some(r) = start(backend, &["--no-gro"]) else {
        return;
    };
    let sock = client(r.addr(), false);
    let t = train(8, 200, 120, 5);
    send_train(&sock, &t);
    expect_each_in_order(backend, &sock, &t);
    let s = stop_and_summarise(r);
    let tot = &s["total"];
    assert_eq!(counter(tot, "rx_trains"), 0, "{s}");
    assert_eq!(counter(tot, "rx_packets"), 8, "{s}");
    assert_eq!(counter(tot, "tx_packets"), 8, "{s}");
}

/// STAMP mode handles each datagram of a train as a request of its own:
/// each reply carries its own sender sequence, T1, and T2/T3, and keeps its
/// size (60 bytes: 44 plus padding the reflector leaves alone).
fn stamp_mode_answers_each_datagram_of_a_train(backend: &'static str) {
    use udp_reflector::reflect::stamp;
    let Some(r) = start(backend, &["--mode", "stamp"]) else {
        return;
    };
    let sock = client(r.addr(), false);
    let t1 = 1_700_000_000_000_000_000u64;
    let frames: Vec<Vec<u8>> = (0..5u32)
        .map(|i| {
            let mut f = vec![0u8; 60];
            stamp::encode_sender(100 + i, t1 + u64::from(i) * 1_000_000, &mut f).unwrap();
            f
        })
        .collect();
    send_train(&sock, &frames);
    let mut buf = vec![0u8; 65536];
    for i in 0..5u32 {
        let (n, _) = recv_within(&sock, &mut buf, REPLY_TIMEOUT)
            .unwrap_or_else(|| panic!("[{backend}] STAMP reply {i} missing"));
        assert_eq!(n, 60, "[{backend}] reply {i} keeps the request's size");
        let reply = stamp::decode_reflected(&buf[..n]).expect("a STAMP reply");
        assert_eq!(reply.sender_seq, 100 + i, "[{backend}] reply {i} in order");
        assert_eq!(reply.seq, 100 + i, "[{backend}] stateless: seq copied");
        assert!(
            reply.t1_ns.abs_diff(t1 + u64::from(i) * 1_000_000) < 1_000,
            "[{backend}] reply {i}: T1 copied from its own request"
        );
        assert!(
            reply.t2_ns > 0 && reply.t3_ns >= reply.t2_ns,
            "[{backend}] {reply:?}"
        );
    }
    let s = stop_and_summarise(r);
    let t = &s["total"];
    assert_eq!(counter(t, "rx_packets"), 5, "{s}");
    assert_eq!(counter(t, "tx_packets"), 5, "{s}");
    assert_eq!(counter(t, "rx_trains"), 1, "{s}");
}

/// `udp-reflector bench ARGS... --json`, run to its end; its JSON report.
fn bench_json(target: SocketAddr, args: &[&str]) -> Value {
    let out = Command::new(common::BIN)
        .arg("bench")
        .args(["--target", &target.to_string(), "--json"])
        .args(args)
        .output()
        .expect("running bench");
    assert!(out.status.success(), "bench {args:?}: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("a JSON report");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
}

/// bench sends GSO trains; the reflector answers each with a train; bench
/// reads them with UDP_GRO (split back into datagrams) or, with --no-gro,
/// one by one. Either way every echo is one received datagram, intact.
fn bench_reads_trains_of_echoes_with_or_without_gro(backend: &'static str) {
    let Some(r) = start(backend, &[]) else {
        return;
    };
    let mut sent = 0;
    for flags in [&[][..], &["--no-gro"][..]] {
        let mut args = vec![
            "--gso",
            "--flows",
            "2",
            "--rate",
            "10000",
            "--duration",
            "0.3",
            "--timeout",
            "1",
        ];
        args.extend(flags);
        let j = bench_json(r.addr(), &args);
        let n = |k: &str| counter(&j, k);
        assert!(n("sent") > 1000, "[{backend}] {flags:?}: {j}");
        assert_eq!(n("received"), n("sent"), "[{backend}] {flags:?}: {j}");
        assert_eq!(n("echoes"), n("sent"), "[{backend}] {flags:?}: {j}");
        assert_eq!(n("corrupt") + n("invalid"), 0, "[{backend}] {flags:?}: {j}");
        sent += n("sent");
    }
    let s = stop_and_summarise(r);
    let t = &s["total"];
    assert_eq!(counter(t, "tx_packets"), sent, "{s}");
    assert!(
        counter(t, "rx_trains") > 0,
        "bench's trains arrived whole: {s}"
    );
}

/// `bench --busy-poll` ping-pong: every round trip completes.
fn bench_busy_poll_ping_pong_completes(backend: &'static str) {
    let Some(r) = start(backend, &[]) else {
        return;
    };
    let j = bench_json(
        r.addr(),
        &[
            "--busy-poll",
            "--flows",
            "1",
            "--window",
            "1",
            "--duration",
            "0.3",
        ],
    );
    assert!(counter(&j, "received") > 50, "[{backend}] {j}");
    assert_eq!(counter(&j, "lost"), 0, "[{backend}] {j}");
    let s = stop_and_summarise(r);
    assert_eq!(
        counter(&s["total"], "tx_packets"),
        counter(&j, "echoes"),
        "{s}"
    );
}
