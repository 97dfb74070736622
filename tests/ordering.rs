//! Replies to one peer leave in the order their requests arrived, for any
//! mix of lengths and peers, byte for byte.
//!
//! Each burst is sent while the reflector is held with SIGSTOP, so that it
//! waits in the socket queue and is read (and grouped into GSO trains) in
//! one batch when the reflector resumes: the case where grouping could
//! reorder. Clients are plain sockets, so each reply is read as the
//! datagram it is.

mod common;

use std::net::UdpSocket;

use common::{
    both_backends, counter, payload, recv_within, send_while_stopped, start, stop_and_summarise,
    REPLY_TIMEOUT,
};

both_backends!(
    one_peer_with_mixed_lengths_gets_its_replies_in_order,
    two_interleaved_peers_with_random_lengths_get_their_replies_in_order,
    twenty_interleaved_peers_with_random_lengths_get_their_replies_in_order,
);

/// xorshift64: a fixed, reproducible "random" sequence per seed.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// Sends `plan` (peer index, datagram) in order while the reflector is
/// stopped, then checks that each peer gets exactly its datagrams back, in
/// the order it sent them, byte for byte, and that the summary accounts
/// for every one.
fn check_order(backend: &str, peers: usize, plan: &[(usize, Vec<u8>)]) {
    // A batch larger than the burst: it is reflected in one go.
    let Some(r) = start(
        backend,
        &[
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--batch",
            "256",
        ],
    ) else {
        return;
    };
    let socks: Vec<UdpSocket> = (0..peers)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.connect(r.addr()).unwrap();
            s
        })
        .collect();
    let sends: Vec<(&UdpSocket, &[u8])> = plan.iter().map(|(p, d)| (&socks[*p], &d[..])).collect();
    send_while_stopped(&r, &sends);

    let mut buf = vec![0u8; 65536];
    let mut failures = Vec::new();
    for (p, sock) in socks.iter().enumerate() {
        let expect: Vec<&Vec<u8>> = plan
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, d)| d)
            .collect();
        let mut got = Vec::new();
        while got.len() < expect.len() {
            match recv_within(sock, &mut buf, REPLY_TIMEOUT) {
                Some((n, _)) => got.push(buf[..n].to_vec()),
                None => break,
            }
        }
        let lens = |v: &[&Vec<u8>]| v.iter().map(|d| d.len()).collect::<Vec<_>>();
        let got_refs: Vec<&Vec<u8>> = got.iter().collect();
        if got_refs != expect {
            failures.push(format!(
                "peer {p}: sent lengths {:?}, got back {:?}{}",
                lens(&expect),
                lens(&got_refs),
                if lens(&expect) == lens(&got_refs) {
                    " (same lengths, different bytes)"
                } else {
                    ""
                }
            ));
        }
    }
    let s = stop_and_summarise(r);
    assert!(
        failures.is_empty(),
        "[{backend}] replies reordered or altered: {failures:#?}"
    );
    let t = &s["total"];
    assert_eq!(counter(t, "rxq_overflow"), 0, "the burst overflowed: {s}");
    assert_eq!(counter(t, "tx_packets"), plan.len() as u64, "{s}");
    let bytes: usize = plan.iter().map(|(_, d)| d.len()).sum();
    assert_eq!(counter(t, "tx_bytes"), bytes as u64, "{s}");
}

/// One peer, lengths that go up and down (64, 32, 64 ... and runs of
/// equal ones): each reply in its request's place.
fn one_peer_with_mixed_lengths_gets_its_replies_in_order(backend: &'static str) {
    let lens = [
        64, 32, 64, 64, 64, 200, 10, 10, 300, 300, 299, 1, 64, 1000, 64,
    ];
    let plan: Vec<(usize, Vec<u8>)> = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| (0, payload(len, i as u64 + 1)))
        .collect();
    check_order(backend, 1, &plan);
}

/// `peers` clients, `per_peer` datagrams each of random lengths (1 to
/// 400 bytes), sent in a random interleaving.
fn random_plan(peers: usize, per_peer: usize, seed: u64) -> Vec<(usize, Vec<u8>)> {
    let mut next = rng(seed);
    let mut left = vec![per_peer; peers];
    let mut plan = Vec::new();
    while plan.len() < peers * per_peer {
        let p = (next() % peers as u64) as usize;
        if left[p] == 0 {
            continue;
        }
        left[p] -= 1;
        // Often the same length as the peer's last one (so trains form),
        // else a new one.
        let len = match plan.iter().rev().find(|(q, _): &&(usize, Vec<u8>)| *q == p) {
            Some((_, last)) if next() % 2 == 0 => last.len(),
            _ => 1 + (next() % 400) as usize,
        };
        plan.push((p, payload(len, next())));
    }
    plan
}

fn two_interleaved_peers_with_random_lengths_get_their_replies_in_order(backend: &'static str) {
    check_order(backend, 2, &random_plan(2, 30, 0x5eed_0002));
}

fn twenty_interleaved_peers_with_random_lengths_get_their_replies_in_order(backend: &'static str) {
    check_order(backend, 20, &random_plan(20, 6, 0x5eed_0020));
}
