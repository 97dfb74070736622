//! Counting: paced traffic is counted exactly; a flood into a tiny
//! receive buffer shows its losses exactly; ring stalls are waits.

use super::*;

both_backends!(
    every_datagram_is_counted_exactly_once,
    overflow_of_a_tiny_rcvbuf_is_counted_exactly,
    ring_stalls_are_waits_not_losses,
);

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
