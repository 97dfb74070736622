//! Against our reflector: both sides count the same datagrams.

use super::*;

common::both_backends!(
    bench_and_reflector_agree,
    overload_is_accounted_on_both_sides,
);

/// Closed loop with warmup: nothing lost, and the two sides agree exactly.
fn bench_and_reflector_agree(backend: &str) {
    let _load = exact();
    let workers = if common::usable_cpus() >= 2 { "2" } else { "1" };
    let Some(r) = reflector(backend, &["--workers", workers]) else {
        return;
    };
    let run = bench_at(
        &r.addr().to_string(),
        "--flows 4 --window 8 --warmup 0.1 --duration 0.4 --json",
    );
    let t = reflector_totals(r);
    let j = run.json();
    assert_consistent(&j);
    let (rx, ovfl, tx) = (
        common::counter(&t, "rx_packets"),
        common::counter(&t, "rxq_overflow"),
        common::counter(&t, "tx_packets"),
    );
    assert_eq!(
        u(&j, "sent") + u(&j, "warmup_sent"),
        rx + ovfl,
        "bench {j}\nreflector {t}"
    );
    assert_eq!(
        u(&j, "received") + u(&j, "warmup_received"),
        tx,
        "bench {j}\nreflector {t}"
    );
    assert_eq!(u(&j, "echoes"), tx, "bench {j}\nreflector {t}");
    assert_eq!(u(&j, "lost"), 0, "{j}");
    assert!(u(&j, "sent") > 100 && u(&j, "warmup_sent") > 10, "{j}");
}

/// Open loop far beyond a reflector with a 4 KiB receive buffer: whatever
/// bench counts as sent, the reflector received or counted as overflow.
fn overload_is_accounted_on_both_sides(backend: &str) {
    let _load = flood();
    // --no-gro: the kernel counts a GRO train it drops at a full queue once
    // (one skb), so only datagram-by-datagram reads make the drop count exact.
    let Some(r) = reflector(backend, &["--workers", "1", "--rcvbuf", "4096", "--no-gro"]) else {
        return;
    };
    let backlog_drops_before = common::softnet_dropped();
    let run = bench_at(
        &r.addr().to_string(),
        "--flows 4 --rate 0 --gso --duration 0.3 --timeout 0.2 --json",
    );
    let backlog_drops = common::softnet_dropped() - backlog_drops_before;
    let t = reflector_totals(r);
    let j = run.json();
    assert_consistent(&j);
    let (rx, ovfl, tx) = (
        common::counter(&t, "rx_packets"),
        common::counter(&t, "rxq_overflow"),
        common::counter(&t, "tx_packets"),
    );
    let sent = u(&j, "sent");
    assert!(
        u(&j, "lost") > 0 && ovfl > 0,
        "overload expected: bench {j}\nreflector {t}"
    );
    // Exact, unless the host's input backlog itself dropped some (before any socket).
    assert!(
        rx + ovfl <= sent && rx + ovfl + backlog_drops >= sent,
        "sent {sent}, reflector rx_packets {rx} + rxq_overflow {ovfl} (backlog drops {backlog_drops})\n{j}\n{t}"
    );
    // Every reply was read, dropped by bench's own sockets, or still queued when bench stopped reading.
    assert!(
        u(&j, "echoes") + u(&j, "local_drops") <= tx,
        "bench {j}\nreflector {t}"
    );
    assert!(u(&j, "received") <= tx, "{j}\n{t}");
}
