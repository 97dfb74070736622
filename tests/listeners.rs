//! The CLI's maximum number of `--listen` flags starts, survives a flood on
//! all of them at once, and accounts for every datagram.

mod common;

use std::{net::UdpSocket, time::Instant};

use common::{
    both_backends, counter, payload, recv_within, send_while_stopped, start, stop_and_summarise,
    REPLY_TIMEOUT,
};

both_backends!(the_most_listeners_survive_a_flood_on_all_of_them);

/// The CLI's limit on `--listen` flags.
const MAX_LISTENERS: usize = 64;
/// Datagrams per listener per round, and rounds.
const PER_LISTENER: usize = 8;
const ROUNDS: usize = 4;

/// 64 listeners on one worker with a tiny buffer ring: each round, every
/// listener gets a burst while the reflector is stopped, so when it resumes
/// the ring runs dry and every multishot receive ends and is re-armed in the
/// same turn. Every datagram must come back, and the summary must hold both
/// identities: sent = rx_packets + rxq_overflow, and rx_packets =
/// tx_packets + tx_dropped + tx_errors + truncated + no_reply.
fn the_most_listeners_survive_a_flood_on_all_of_them(backend: &'static str) {
    let mut args = vec!["--workers", "1", "--buffers", "16"];
    for _ in 0..MAX_LISTENERS {
        args.extend(["--listen", "127.0.0.1:0"]);
    }
    let Some(r) = start(backend, &args) else {
        return;
    };
    assert_eq!(r.addrs.len(), MAX_LISTENERS, "{}", r.listening);
    let clients: Vec<UdpSocket> = r
        .addrs
        .iter()
        .map(|a| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.connect(a).unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let mut buf = [0u8; 2048];
    let mut sent = 0u64;
    for round in 0..ROUNDS {
        let data: Vec<Vec<Vec<u8>>> = (0..clients.len())
            .map(|c| {
                (0..PER_LISTENER)
                    .map(|k| payload(64, (round * 10_000 + c * 100 + k) as u64))
                    .collect()
            })
            .collect();
        // Interleaved over listeners, so all of them have a queue at once.
        let sends: Vec<(&UdpSocket, &[u8])> = (0..PER_LISTENER)
            .flat_map(|k| clients.iter().zip(&data).map(move |(c, d)| (c, &d[k][..])))
            .collect();
        send_while_stopped(&r, &sends);
        sent += sends.len() as u64;
        for (c, (sock, want)) in clients.iter().zip(&data).enumerate() {
            for (k, w) in want.iter().enumerate() {
                match recv_within(sock, &mut buf, REPLY_TIMEOUT) {
                    Some((n, _)) if buf[..n] == w[..] => {}
                    Some((n, _)) => panic!(
                        "[{backend}] round {round} listener {c} reply {k}: {n} bytes that are not its request"
                    ),
                    None => {
                        let out = r.stop();
                        panic!(
                            "[{backend}] round {round}: no reply {k} on listener {c} within \
                             {REPLY_TIMEOUT:?}; the reflector said: {out:#?}"
                        );
                    }
                }
            }
        }
    }
    assert!(started.elapsed().as_secs() < 30, "bounded in time");
    let s = stop_and_summarise(r);
    let t = &s["total"];
    assert_eq!(
        counter(t, "rx_packets") + counter(t, "rxq_overflow"),
        sent,
        "[{backend}] sent {sent}: {t}"
    );
    assert_eq!(counter(t, "tx_packets"), sent, "[{backend}] {t}");
}
