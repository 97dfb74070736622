//! A reply that the route refuses for one peer fails that peer's message
//! only: it counts in tx_errors, GSO stays on, and another peer's burst in
//! the same batch still leaves as one train.
//!
//! Runs in a private network namespace: documentation addresses on its
//! loopback, and a policy rule that prohibits routes to one of them.

mod common;

use std::{net::UdpSocket, thread};

use common::{
    both_backends, counter, payload, recv_gro, send_while_stopped, serve_command, set_udp_gro,
    skip, start_cmd, Need, NetNs, REPLY_TIMEOUT,
};

both_backends!(a_peer_whose_route_is_prohibited_fails_alone_and_gso_stays_on);

const SERVER: &str = "198.51.100.1";
const GOOD: &str = "198.51.100.2";
/// Replies to this peer meet a `prohibit` rule (EACCES on send).
const REFUSED: &str = "198.51.100.9";
const TRAIN: usize = 8;
const REFUSED_BURST: usize = 3;
const SIZE: usize = 200;

fn a_peer_whose_route_is_prohibited_fails_alone_and_gso_stays_on(backend: &'static str) {
    if !common::is_root() {
        skip(Need::Netns, "needs root to create a network namespace");
        return;
    }
    let ns = match NetNs::create(&format!("txerr-{backend}")) {
        Ok(ns) => ns,
        Err(e) => {
            skip(
                Need::Netns,
                format!("cannot create a network namespace: {e}"),
            );
            return;
        }
    };
    for a in [SERVER, GOOD, REFUSED] {
        ns.ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"])
            .unwrap();
    }
    // Routes to REFUSED are prohibited, even though it is local: the rule
    // comes before the local table's (moved from preference 0 to 100).
    ns.ip(&["rule", "add", "pref", "100", "table", "local"])
        .unwrap();
    ns.ip(&["rule", "del", "pref", "0", "table", "local"])
        .unwrap();
    ns.ip(&["rule", "add", "pref", "10", "to", REFUSED, "prohibit"])
        .unwrap();

    let mut cmd = serve_command([
        "--backend",
        backend,
        "--json",
        "--listen",
        &format!("{SERVER}:0"),
        "--workers",
        "1",
    ]);
    ns.apply(&mut cmd).expect("opening the namespace");
    let Some(r) = start_cmd(backend, &mut cmd) else {
        return;
    };
    let target = r.addr();
    let (good, refused) = thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread().expect("entering the namespace");
            let bind = |ip: &str| {
                let sock = UdpSocket::bind((ip, 0)).unwrap();
                sock.connect(target).unwrap();
                sock
            };
            (bind(GOOD), bind(REFUSED))
        })
        .join()
        .unwrap()
    });
    set_udp_gro(&good);

    // The refused peer first, so that its train is the batch's first
    // message; then the good peer's burst, interleaved with it.
    let burst: Vec<Vec<u8>> = (0..TRAIN as u64).map(|i| payload(SIZE, i)).collect();
    let refused_burst: Vec<Vec<u8>> = (0..REFUSED_BURST as u64)
        .map(|i| payload(SIZE, 100 + i))
        .collect();
    let mut sends: Vec<(&UdpSocket, &[u8])> = Vec::new();
    for (i, d) in burst.iter().enumerate() {
        if let Some(x) = refused_burst.get(i) {
            sends.push((&refused, x));
        }
        sends.push((&good, d));
    }
    send_while_stopped(&r, &sends);

    let mut buf = vec![0u8; 65536];
    let got = recv_gro(&good, &mut buf);
    let out = r.stop();
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let (n, segment) = got.unwrap_or_else(|| {
        panic!("[{backend}] no reply to the good peer within {REPLY_TIMEOUT:?}: {out:#?}")
    });
    assert_eq!(
        (n, segment),
        (TRAIN * SIZE, Some(SIZE as u16)),
        "[{backend}] the good peer's replies did not arrive as one GSO train: {out:#?}"
    );
    assert_eq!(buf[..n], burst.concat(), "[{backend}] train content");
    assert!(
        !out.stderr.contains("GSO"),
        "[{backend}] stderr speaks of GSO: {:?}",
        out.stderr
    );
    let s = out.expect_summary();
    common::assert_summary_consistent(&s);
    let t = &s["total"];
    assert_eq!(counter(t, "tx_errors"), REFUSED_BURST as u64, "{s}");
    assert_eq!(counter(t, "tx_packets"), TRAIN as u64, "{s}");
}
