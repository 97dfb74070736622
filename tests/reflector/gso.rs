//! Replies to one peer leave as UDP GSO trains, or one by one where the
//! route refuses trains or --no-gso asks.

use super::*;

both_backends!(
    replies_to_one_peer_leave_as_one_gso_train,
    no_gso_sends_one_datagram_per_message,
    a_route_that_refuses_gso_trains_gets_the_datagrams_one_by_one,
);

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
